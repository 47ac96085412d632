//! The outbox conformance suite (`payout_core::testkit::outbox`) on SQLite and Postgres: events
//! written by the migrations' triggers in each change's transaction, claimed under a lease.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::sync::Arc;

use payout_core::PayoutStore;
use payout_core::events::EventOutbox;
use payout_core::testkit::outbox;

#[cfg(feature = "postgres")]
use common::PgSchemas;
#[cfg(feature = "sqlite")]
use common::SqliteFiles;

fn pair<S: PayoutStore + EventOutbox + 'static>(store: S) -> outbox::OutboxPair {
    let store = Arc::new(store);
    (store.clone() as Arc<dyn PayoutStore>, store as Arc<dyn EventOutbox>)
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_memory_passes_the_outbox_suite() {
    outbox::run_all(|| async { pair(common::sqlite_memory().await) }).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_passes_the_outbox_suite() {
    let files = SqliteFiles::new();
    outbox::run_all(|| async { pair(files.fresh().await) }).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_outbox_suite() {
    PgSchemas::run(|schemas| async move {
        outbox::run_all(|| async { pair(schemas.fresh().await) }).await;
    })
    .await;
}
