//! The `payout-core` store conformance suite, run in full on every backend.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
// With one backend only, the other's tests and helpers are compiled out.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::sync::Arc;

use payout_core::PayoutStore;
use payout_core::testkit::store;

#[cfg(feature = "postgres")]
use common::PgSchemas;
#[cfg(feature = "sqlite")]
use common::SqliteFiles;

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_memory_passes_the_store_suite() {
    store::run_all(|| async { Arc::new(common::sqlite_memory().await) as Arc<dyn PayoutStore> }).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_passes_the_store_suite() {
    let files = SqliteFiles::new();
    store::run_all(|| async { Arc::new(files.fresh().await) as Arc<dyn PayoutStore> }).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_store_suite() {
    PgSchemas::run(|schemas| async move {
        store::run_all(|| async { Arc::new(schemas.fresh().await) as Arc<dyn PayoutStore> }).await;
    })
    .await;
}
