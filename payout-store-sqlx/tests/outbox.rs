//! The outbox conformance suite (`payout_core::testkit::outbox`) on SQLite and Postgres: events
//! written by the migrations' triggers in each change's transaction, claimed under a lease.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::sync::Arc;

use payout_core::PayoutStore;
use payout_core::events::{EventCursor, EventOutbox};
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

/// Writes one event row in `tx`, as the triggers do (the columns without defaults), for `stream`.
#[cfg(feature = "postgres")]
async fn write_event(tx: &mut sqlx::PgConnection, id: &str) {
    sqlx::query(
        "INSERT INTO payout_outbox (id, event_type, stream_key, run_id, actor, action, detail, occurred_at, next_try_at) \
         VALUES ($1, 'run.completed', 'run:' || $1, $1, 'admin:a', 'TRIGGER', '', now(), now())",
    )
    .bind(id)
    .execute(tx)
    .await
    .expect("an event row");
}

/// Reads on from `cursor` until nothing is withheld, appending what it reads; the new cursor.
#[cfg(feature = "postgres")]
async fn read_on(outbox: &dyn EventOutbox, cursor: EventCursor, read: &mut Vec<String>) -> (EventCursor, bool) {
    let page = outbox.events_after(cursor, 1000).await.expect("events_after");
    let next = page.events.last().map_or(cursor, |e| e.cursor);
    read.extend(page.events.into_iter().map(|e| e.event.id));
    (next, page.withheld)
}

/// A reader paging with cursors misses no event whose transaction commits after a later-numbered
/// one, in both orders of taking transaction ids: (1) the late transaction took its id and `seq`
/// first; (2) the late transaction took its id *after* the early one but its `seq` *before* it.
/// Paging by `seq` fails (2) outright and (1) once the early one has been read. Each reader sees
/// every event exactly once.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_late_commit_is_never_paged_past() {
    use sqlx::Connection;

    PgSchemas::run(|schemas| async move {
        let pool = schemas.fresh_pool().await;
        let store = payout_store_sqlx::PgStore::new(pool.clone());
        let mut read = Vec::new();
        let mut cursor = EventCursor::START;

        // (1) late: xid and seq first; early: both after it, committed first.
        let mut late = pool.acquire().await.unwrap().detach();
        let mut early = pool.acquire().await.unwrap().detach();
        let mut late_tx = late.begin().await.unwrap();
        write_event(&mut late_tx, "evt_late_1").await;
        let mut early_tx = early.begin().await.unwrap();
        write_event(&mut early_tx, "evt_early_1").await;
        early_tx.commit().await.unwrap();
        let (next, withheld) = read_on(&store, cursor, &mut read).await;
        assert!(
            read.is_empty(),
            "evt_early_1 waits for evt_late_1's transaction: {read:?}"
        );
        assert!(withheld, "and the page says something is withheld");
        cursor = next;
        late_tx.commit().await.unwrap();
        cursor = read_until_settled(&store, cursor, &mut read).await;
        assert_eq!(read, ["evt_late_1", "evt_early_1"]);

        // (2) late: its xid after early's, its seq before early's. Ordered by seq alone and shown
        // once older transactions end, evt_early_2 (xid older than every running one) would be
        // read before evt_late_2 commits with a lower seq, and a seq cursor would step over it.
        let mut early_tx = early.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *early_tx)
            .await
            .unwrap();
        let mut late_tx = late.begin().await.unwrap();
        write_event(&mut late_tx, "evt_late_2").await;
        write_event(&mut early_tx, "evt_early_2").await;
        early_tx.commit().await.unwrap();
        let (next, _) = read_on(&store, cursor, &mut read).await;
        cursor = next;
        late_tx.commit().await.unwrap();
        read_until_settled(&store, cursor, &mut read).await;
        assert_eq!(read, ["evt_late_1", "evt_early_1", "evt_early_2", "evt_late_2"]);
        let seqs: Vec<u64> = outbox_all(&store).await.iter().map(|e| e.event.seq).collect();
        assert_eq!(seqs.len(), 4);
        late.close().await.unwrap();
        early.close().await.unwrap();
    })
    .await;
}

#[cfg(feature = "postgres")]
async fn read_until_settled(outbox: &dyn EventOutbox, mut cursor: EventCursor, read: &mut Vec<String>) -> EventCursor {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (next, withheld) = read_on(outbox, cursor, read).await;
        cursor = next;
        if !withheld {
            return cursor;
        }
        assert!(std::time::Instant::now() < deadline, "still withheld after 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(feature = "postgres")]
async fn outbox_all(outbox: &dyn EventOutbox) -> Vec<payout_core::events::StoredEvent> {
    outbox::settled_events(outbox, EventCursor::START, 1000).await.events
}
