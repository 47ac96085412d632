//! # payouts
//!
//! Pays doctors of a telehealth platform for the consultations they completed.
#![warn(missing_docs)]

pub use payout_core as core;
pub use payout_core::*;
pub use payout_providers as providers;
pub use payout_store_sqlx as store_sqlx;
