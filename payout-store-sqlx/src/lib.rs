//! # payout-store-sqlx
//!
//! Durable [`PayoutStore`] implementations over `sqlx`: [`SqliteStore`] (embedded, the default) and
//! [`PgStore`] (Postgres), both passing the `payout-core` conformance suite. Also the host's own
//! tables as a [`ConsultationSource`](payout_core::source::ConsultationSource)
//! ([`SqlConsultationSource`]) and a [`RecipientDirectory`](payout_core::source::RecipientDirectory)
//! ([`SqlRecipientDirectory`]).
//!
//! ```
//! # #[cfg(feature = "sqlite")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use payout_core::store::{Page, PayoutFilter};
//! use payout_store_sqlx::SqliteStore;
//! use payout_core::PayoutStore;
//!
//! // A file would be "sqlite://payouts.db?mode=rwc"; the schema is created on connect.
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! let page = store.list(&PayoutFilter::default(), &Page::default()).await?;
//! assert_eq!(page.total, 0);
//! # Ok::<(), payout_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! ## Picking a backend
//! - **SQLite** (feature `sqlite`, on by default) for one app instance: nothing to run beside the
//!   app. `connect("sqlite://payouts.db?mode=rwc")` opens or creates the file, in WAL mode with a
//!   5 s busy timeout and foreign keys on; writes take the write lock up front (`BEGIN IMMEDIATE`).
//!   `sqlite::memory:` gives a private in-memory database for tests.
//! - **Postgres** (feature `postgres`) when several app instances share the data:
//!   `connect("postgres://user:password@host/payouts")`. Races between instances are decided by
//!   conditional updates; reconciliation's claims
//!   ([`claim_checks`](payout_core::store::PayoutStore::claim_checks)) share the work out with
//!   `FOR UPDATE SKIP LOCKED`.
//!
//! Both are one generic [`SqlStore`] over the dialect: [`SqliteStore`] is `SqlStore<SqlitePool>`,
//! [`PgStore`] is `SqlStore<PgPool>`. Each offers the bulk abilities
//! ([`BulkPayoutStore`](payout_core::store::BulkPayoutStore)).
//!
//! Errors keep their kind: a failure is [`Error::Store`] with a
//! [`StoreErrorKind`](payout_core::StoreErrorKind) (`Unavailable` for a lost connection or a pool
//! with no connection free within its acquire timeout, `Conflict`, `Corrupt`, `Other`) and the
//! driver's error as its cause ([`DatabaseError`], credentials removed from its text).
//!
//! [`connect`] picks the backend from the URL and returns an `Arc<dyn PayoutStore>`; the stores'
//! own `connect` return the concrete types. Both apply the migrations (`migrations/sqlite`,
//! `migrations/postgres`) on connect; [`sqlite::setup`] and [`postgres::migrate`] do it for a pool
//! you built yourself.
//!
//! ## Beside the host's own migrations
//! The store's tables and its migration history (`_sqlx_migrations`) never share the host's, so a
//! host's own `sqlx::migrate!` on the same database runs before or after the store's:
//! - **Postgres**: a schema of its own, [`postgres::DEFAULT_SCHEMA`] (`payouts`) or any
//!   [`postgres::PgSchema`] ([`PgStore::connect_in`]); hosts that run migrations themselves use
//!   [`postgres::migrate`] (the exported [`postgres::MIGRATOR`], applied in the schema).
//! - **SQLite**: a database file of its own; [`SqliteStore::connect_attaching`] attaches the
//!   host's file to read its consultations, and a host attaches the store's file to read its
//!   tables ([`sqlite::setup`] says more).
//!
//! ## What the database itself guarantees
//! One live calculated payout per doctor and period (a partial unique index), one attempt per
//! number per payout, one attempt per idempotency key, one record per provider event, one
//! carry-over per doctor and period, foreign keys from every child row to its payout, and an
//! append-only audit trail (a trigger refuses `UPDATE` and `DELETE`). Money is an integer of minor
//! units plus the currency code; timestamps are UTC.
//!
//! ## Features
//! | feature | what it adds |
//! |---|---|
//! | `sqlite` (default) | [`SqliteStore`], [`sqlite::setup`]; `sqlx` with bundled SQLite |
//! | `postgres` | [`PgStore`], [`postgres::migrate`], [`postgres::setup`] |
//! | `testkit` | `testkit::PgTestSchema`: throw-away Postgres schemas for tests and benchmarks (implies `postgres`) |
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Built with no backend, only `connect` (answering `NotSupported`) is left; the shared code is idle.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_macros)
)]

mod checks;
mod db;
mod error;
mod export;
mod outbox;
mod read;
mod rows;
mod runs;
mod source;
mod sqlite_time;
mod store;
mod totals;
mod write;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::sync::Arc;

pub use payout_core;
use payout_core::{Error, PayoutStore, Result};

pub use error::DatabaseError;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use source::{ConsultationTable, RecipientTable, Reversals, SqlConsultationSource, SqlRecipientDirectory};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::SqlStore;

/// Connects to the store at `url`, applying the migrations: `sqlite://payouts.db?mode=rwc`,
/// `sqlite::memory:`, or `postgres://user:password@host/db`.
///
/// A scheme whose feature is not compiled in is [`Error::NotSupported`]; an unknown scheme is
/// [`Error::InvalidInput`]. Errors never repeat the URL (it may hold a password).
pub async fn connect(url: &str) -> Result<Arc<dyn PayoutStore>> {
    Ok(connect_with_outbox(url).await?.0)
}

/// [`connect`], with the same store as its transactional outbox too
/// ([`EventOutbox`](payout_core::events::EventOutbox)), for an
/// [`EventRelay`](payout_core::events::EventRelay) or the events API.
pub async fn connect_with_outbox(
    url: &str,
) -> Result<(Arc<dyn PayoutStore>, Arc<dyn payout_core::events::EventOutbox>)> {
    fn both<S: PayoutStore + payout_core::events::EventOutbox + 'static>(
        store: S,
    ) -> (Arc<dyn PayoutStore>, Arc<dyn payout_core::events::EventOutbox>) {
        let store = Arc::new(store);
        (store.clone(), store)
    }
    let scheme = url.split(':').next().unwrap_or_default().to_ascii_lowercase();
    match scheme.as_str() {
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(both(SqliteStore::connect(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(both(PgStore::connect(url).await?)),
        // Reached only for a backend that is not compiled in.
        #[allow(unreachable_patterns)]
        "sqlite" | "postgres" | "postgresql" => Err(Error::NotSupported(format!(
            "payout-store-sqlx was built without the {} feature",
            if scheme == "sqlite" { "sqlite" } else { "postgres" }
        ))),
        _ => Err(Error::InvalidInput(format!(
            "unsupported database URL scheme {scheme:?} (expected sqlite: or postgres:)"
        ))),
    }
}

/// The crate README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
