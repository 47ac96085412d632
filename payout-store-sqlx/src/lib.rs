//! Durable [`PayoutStore`](payout_core::PayoutStore) implementations over `sqlx`: SQLite (the embedded
//! default) and Postgres.
#![warn(missing_docs)]

pub use payout_core;
