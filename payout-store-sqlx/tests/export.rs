//! The export reader in any chunking: the rows of `stream`, in order, whatever the chunk and batch
//! sizes, on a single-connection pool, and a row that does not read ends the export with an error.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use payout_core::status::PayoutStatus;
use payout_core::store::{BulkPayoutStore, ExportRow, Page, PayoutFilter};
use payout_core::{Error, PayoutStore, Result, StoreErrorKind};
use payout_store_sqlx::SqlStore;

const ROWS: usize = 53;

/// `ROWS` payouts in runs of four with one `created_at`, so chunks end inside a tie, one approved.
async fn seed(store: &dyn PayoutStore) {
    common::seed_spread(store, ROWS, 4).await;
    common::approve(store, "po_00005").await;
}

/// Runs a check that must not hang (a reader that loops forever without rows would).
async fn within(check: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(std::time::Duration::from_secs(60), check)
        .await
        .expect("the check finishes within a minute");
}

/// Every chunking reads the rows of `stream`, in order: chunks and batches of one row, chunks
/// that end inside a tie, a last chunk that is exactly full, batches that do not divide a
/// chunk; and the store serves other calls between the rows.
async fn export_rows_match_stream_in_any_chunking<S>(store: &S)
where
    S: PayoutStore + BulkPayoutStore + Clone + Chunked,
{
    seed(store).await;
    let chunkings = [(1, 1), (4, 4), (7, 3), (10, 5), (53, 10), (53, 53), (100, 7)];
    for filter in [
        PayoutFilter::default(),
        PayoutFilter {
            status: Some(PayoutStatus::Pending),
            ..Default::default()
        },
    ] {
        let streamed: Vec<ExportRow> = store
            .stream(filter.clone())
            .map_ok(ExportRow::from)
            .try_collect()
            .await
            .expect("stream");
        for (rows, batch) in chunkings {
            // One row more than expected at most, so a reader that repeats rows fails instead of
            // hanging (one that loops without rows times out, see `within`).
            let exported: Vec<ExportRow> = store
                .chunked(rows, batch)
                .export_rows(filter.clone())
                .take(streamed.len() + 1)
                .try_collect()
                .await
                .expect("export_rows");
            assert_eq!(exported, streamed, "chunks of {rows}, batches of {batch}, {filter:?}");
        }
    }
    let mut rows = store.chunked(7, 3).export_rows(PayoutFilter::default());
    let mut n = 0;
    while let Some(row) = rows.try_next().await.expect("export_rows") {
        store.get(&row.id).await.expect("get while an export is read");
        n += 1;
        assert!(n <= ROWS, "more rows than were written");
    }
    assert_eq!(n, ROWS);
    // Dropped half-way, the reader stops and the store goes on serving.
    let mut rows = store.chunked(4, 2).export_rows(PayoutFilter::default());
    rows.try_next().await.expect("export_rows").expect("a row");
    drop(rows);
    assert_eq!(
        store
            .list(&PayoutFilter::default(), &Page::new(1, 0))
            .await
            .expect("list")
            .total,
        ROWS as u64
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_export_rows_match_stream_in_any_chunking() {
    // One connection only: the reader must never hold it while the consumer needs it.
    let store = common::sqlite_memory().await;
    within(export_rows_match_stream_in_any_chunking(&store)).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_row_that_does_not_read_ends_the_export_with_an_error() {
    let store = common::sqlite_memory().await;
    seed(&store).await;
    // The 21st row, newest first, in a currency this version does not know.
    sqlx::query("UPDATE payouts SET currency = 'XYZ' WHERE id = 'po_00032'")
        .execute(store.pool())
        .await
        .expect("update");
    let read: Vec<Result<ExportRow>> = within_collect(store.chunked(7, 3).export_rows(PayoutFilter::default())).await;
    assert_eq!(
        read.len(),
        21,
        "the rows before the bad one, then its error, then nothing"
    );
    assert!(read[..20].iter().all(Result::is_ok));
    assert!(
        matches!(&read[20], Err(Error::Store(e)) if e.kind() == StoreErrorKind::Corrupt && e.to_string().contains("currency")),
        "{:?}",
        read[20]
    );
}

/// Every item of `rows`, failing instead of hanging if it never ends.
async fn within_collect<T>(rows: BoxStream<'static, T>) -> Vec<T> {
    tokio::time::timeout(std::time::Duration::from_secs(60), rows.collect())
        .await
        .expect("the stream ends within a minute")
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn postgres_export_rows_match_stream_in_any_chunking() {
    common::PgSchemas::run(|schemas| async move {
        // One connection here too.
        let store = SqlStore::new(schemas.schema().await.migrated_pool(1).await);
        within(export_rows_match_stream_in_any_chunking(&store)).await;
        store.pool().close().await;
    })
    .await;
}

/// A store that reads exports in chunks of the given sizes.
trait Chunked: Sized {
    fn chunked(&self, rows: usize, batch: usize) -> Self;
}

#[cfg(feature = "sqlite")]
impl Chunked for payout_store_sqlx::SqliteStore {
    fn chunked(&self, rows: usize, batch: usize) -> Self {
        self.clone().with_export_chunks(rows, batch)
    }
}

#[cfg(feature = "postgres")]
impl Chunked for payout_store_sqlx::PgStore {
    fn chunked(&self, rows: usize, batch: usize) -> Self {
        self.clone().with_export_chunks(rows, batch)
    }
}
