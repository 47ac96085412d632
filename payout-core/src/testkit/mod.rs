//! Conformance suites for implementations of the core traits (feature `testkit`).
//!
//! Every [`PayoutStore`](crate::PayoutStore) — the in-memory one, SQLite, Postgres, or yours — must
//! pass every check in [`store`], and every [`PayoutProvider`](crate::PayoutProvider) adapter must
//! pass [`provider::check_provider`] against its mock server. The checks are plain `pub async fn`s
//! that panic with a message saying what broke, so they run inside any test harness.
//!
//! # Running the store suite on your store
//! Add `payout-core` with the `testkit` feature (and `tokio` with `macros` and `rt-multi-thread`) to
//! your dev-dependencies, then hand [`store::run_all`] a closure that makes a **fresh, empty** store
//! for each check (a new database, a new schema, or truncated tables): the checks count rows and
//! ask global questions (`claim_checks`, `attention`, `open_carry_overs`), so they assume nothing else is
//! there.
//!
//! ```
//! use std::sync::Arc;
//! use payout_core::memory::MemoryStore;
//! use payout_core::testkit::store;
//! use payout_core::PayoutStore;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! // In your crate: #[tokio::test(flavor = "multi_thread")] async fn conformance() { ... }
//! store::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn PayoutStore> }).await;
//! # });
//! ```
//!
//! `run_all` prints each check's name, runs them all even when one fails, and panics at the end
//! naming every failed check. To get one test per check instead (e.g. one `#[sqlx::test]` database
//! each), iterate [`store::STORE_CHECKS`] or call the check functions directly:
//!
//! ```
//! # use std::sync::Arc;
//! # use payout_core::{memory::MemoryStore, testkit::store, PayoutStore};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let s = MemoryStore::new();
//! store::apply_with_stale_version_conflicts_and_changes_nothing(&s).await;
//! let check = store::check_named("list_keyset_paging_walks_every_row_once").unwrap();
//! check.run(Arc::new(MemoryStore::new())).await;
//! # });
//! ```
//!
//! Data the checks write uses ids like `po_01` and doctors like `dr-1`, whole-second timestamps
//! around [`fixtures::base_time`] and KES amounts, so any store that keeps text ids, timestamps to
//! the second and exact decimals round-trips it unchanged.
//!
//! # Running the provider check on your adapter
//! Point the adapter at a local mock server that answers a payout request (and, if the adapter
//! reports `lookup`, a status request) as the provider would, then call
//! [`provider::check_provider`] with an instruction it can send, e.g. [`fixtures::instruction`].
//!
//! # Fixtures
//! [`fixtures`] builds the records the checks use — payouts, items, audit entries, attempts and
//! their updates, carry-overs, period batches, webhook events and provider instructions — at a fixed
//! base time; other crates' tests may use them too.

pub mod fixtures;
pub mod outbox;
pub mod provider;
pub mod store;
