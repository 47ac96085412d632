//! Store behaviour beyond the conformance suite: long streams, claims, connecting.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
// With one backend only, the other's tests and helpers are compiled out.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use futures::TryStreamExt;
use payout_core::domain::Payout;
use payout_core::status::PayoutStatus;
use payout_core::store::{CheckClaim, Cursor, Page, PayoutFilter, PeriodBatch};
use payout_core::testkit::fixtures::{self, at, month};
use payout_core::{Error, PayoutStore, StoreErrorKind};

#[cfg(feature = "postgres")]
use common::PgSchemas;
#[cfg(feature = "sqlite")]
use common::SqliteFiles;

/// More rows than one stream chunk (500), several per timestamp so chunks end inside a tie.
const ROWS: usize = 1203;

async fn seed_many(store: &dyn PayoutStore) {
    common::seed_spread(store, ROWS, 7).await;
}

/// Every page of the list, walked by keyset.
async fn list_all(store: &dyn PayoutStore, filter: &PayoutFilter) -> Vec<Payout> {
    let mut all = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = Page {
            limit: 400,
            skip: 0,
            after: after.clone(),
        };
        let got = store.list(filter, &page).await.expect("list");
        all.extend(got.payouts);
        match got.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
}

async fn stream_reads_past_chunk_boundaries(store: &dyn PayoutStore) {
    seed_many(store).await;
    common::approve(store, "po_00003").await;
    for filter in [
        PayoutFilter::default(),
        PayoutFilter {
            status: Some(PayoutStatus::Pending),
            ..Default::default()
        },
    ] {
        let streamed: Vec<Payout> = store.stream(filter.clone()).try_collect().await.expect("stream");
        let listed = list_all(store, &filter).await;
        assert_eq!(streamed.len(), listed.len());
        assert_eq!(streamed, listed, "stream and keyset list agree with {filter:?}");
        let total = store.list(&filter, &Page::new(1, 0)).await.expect("list").total;
        assert_eq!(streamed.len() as u64, total);
    }
    let newest = store
        .list(&PayoutFilter::default(), &Page::new(1, 0))
        .await
        .expect("list");
    assert_eq!(
        newest.payouts[0].id.as_str(),
        "po_01202",
        "newest first, ties by id descending"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_stream_reads_past_chunk_boundaries() {
    // A single-connection in-memory pool: the stream must not hold the connection between chunks.
    stream_reads_past_chunk_boundaries(&common::sqlite_memory().await).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_stream_reads_past_chunk_boundaries() {
    PgSchemas::run(|schemas| async move {
        stream_reads_past_chunk_boundaries(&schemas.fresh().await).await;
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_stream_can_be_read_while_the_store_is_used() {
    let store = common::sqlite_memory().await;
    seed_many(&store).await;
    let mut stream = store.stream(PayoutFilter::default());
    let mut n = 0;
    while let Some(p) = stream.try_next().await.expect("stream") {
        if n % 300 == 0 {
            // Another call between rows, on the one connection an in-memory database has.
            store.items(&p.id).await.expect("items while streaming");
        }
        n += 1;
    }
    assert_eq!(n, ROWS);
}

/// Moves `n` fresh payouts to PROCESSING, the i-th at minute i.
async fn processing(store: &dyn PayoutStore, n: usize) -> Vec<Payout> {
    let payouts: Vec<_> = (0..n)
        .map(|i| fixtures::new_payout(&format!("po_{i:02}"), &format!("dr-{i}"), month(2025, 1), &["500"]))
        .collect();
    store
        .create_period(PeriodBatch {
            payouts,
            carry_overs: Vec::new(),
            run: None,
        })
        .await
        .expect("seeding");
    let mut out = Vec::new();
    for i in 0..n {
        let p = store.get(&format!("po_{i:02}").into()).await.expect("get");
        let p = store
            .apply(fixtures::status_change(&p, PayoutStatus::Approved, at(0)))
            .await
            .expect("approve");
        let p = store
            .apply(fixtures::status_change(&p, PayoutStatus::Processing, at(i as i64)))
            .await
            .expect("trigger");
        out.push(p);
    }
    out
}

fn ids(v: &[Payout]) -> Vec<String> {
    v.iter().map(|p| p.id.to_string()).collect()
}

/// A claim of reconciliation checks at `at(100)` with a lease to `at(200)`, at most `limit`.
async fn claim(store: &dyn PayoutStore, limit: u32) -> Vec<Payout> {
    let claim = CheckClaim {
        due_by: at(100),
        limit,
        lease_until: at(200),
    };
    let mut claimed: Vec<Payout> = store
        .claim_checks(&claim)
        .await
        .expect("claim")
        .into_iter()
        .map(|c| c.payout)
        .collect();
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    claimed
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_claims_take_the_earliest_due_checks_once() {
    let store = common::sqlite_memory().await;
    let stored = processing(&store, 6).await;
    let first = claim(&store, 2).await;
    assert_eq!(ids(&first), ["po_00", "po_01"]);
    assert_eq!(first, stored[..2], "a claim changes no payout");
    let second = claim(&store, 10).await;
    assert_eq!(ids(&second), ["po_02", "po_03", "po_04", "po_05"]);
    assert!(claim(&store, 10).await.is_empty());
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claims_never_share_a_payout() {
    PgSchemas::run(|schemas| async move {
        let store = schemas.fresh().await;
        processing(&store, 40).await;
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claimed = claim(&store, 3).await;
                    if claimed.is_empty() {
                        return mine;
                    }
                    mine.extend(ids(&claimed));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("claiming task"));
        }
        all.sort();
        let mut unique = all.clone();
        unique.dedup();
        assert_eq!(all, unique, "no payout is claimed twice");
        assert_eq!(all.len(), 40, "every due check is claimed");
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn connect_picks_the_backend_by_url() {
    let store = payout_store_sqlx::connect("sqlite::memory:").await.expect("sqlite");
    assert_eq!(
        store
            .list(&PayoutFilter::default(), &Page::default())
            .await
            .expect("list")
            .total,
        0
    );
    let files = SqliteFiles::new();
    let url = files.url();
    payout_store_sqlx::connect(&url).await.expect("a new file");
    // Reconnecting to a migrated file applies nothing twice.
    payout_store_sqlx::connect(&url).await.expect("the same file again");
    assert!(matches!(
        payout_store_sqlx::connect("mysql://root:hunter2@localhost/db").await,
        Err(Error::InvalidInput(m)) if !m.contains("hunter2")
    ));
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn connection_errors_do_not_leak_the_password() {
    use std::str::FromStr;
    // Nothing listens on port 1; a short acquire timeout keeps the test quick.
    let url = "postgres://payouts:hunter2-secret@127.0.0.1:1/payouts";
    let options = sqlx::postgres::PgConnectOptions::from_str(url).expect("a valid URL");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy_with(options);
    let store = payout_store_sqlx::PgStore::new(pool);
    assert!(!format!("{store:?}").contains("hunter2"), "{store:?}");
    match store.get(&"po_1".into()).await {
        Ok(_) => panic!("read from a closed port"),
        Err(e) => {
            let text = format!("{e} {e:?}");
            assert!(
                matches!(&e, Error::Store(s) if s.kind() == StoreErrorKind::Unavailable),
                "an unreachable database is retryable: {text}"
            );
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
    let bad = "postgres://payouts:hunter2-secret@127.0.0.1:notaport/payouts";
    let e = payout_store_sqlx::connect(bad).await.err().expect("a bad URL fails");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
}

/// With every connection of its pool taken, a call waits the pool's acquire timeout and then fails
/// with a retryable `Unavailable` store error: never a hang, never another kind.
async fn an_exhausted_pool_is_unavailable_not_a_hang<S: PayoutStore>(store: &S, hold: impl std::future::Future) {
    let seeded = store
        .create_payout(fixtures::manual_payout("po_1", "dr-1", month(2025, 1), &["500"]))
        .await
        .expect("seed");
    let held = hold.await;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), store.get(&seeded.id))
        .await
        .expect("the call must not hang past the acquire timeout");
    match answer {
        Err(Error::Store(e)) => {
            assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
            assert!(e.kind().is_retryable());
        }
        other => panic!("expected an Unavailable store error, got {other:?}"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    store
        .get(&seeded.id)
        .await
        .expect("served again once a connection is free");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_exhausted_pool_is_unavailable_not_a_hang() {
    let files = SqliteFiles::new();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_with(payout_store_sqlx::sqlite::connect_options(&files.url()).expect("options"))
        .await
        .expect("a pool");
    payout_store_sqlx::sqlite::setup(&pool).await.expect("migrations");
    let store = payout_store_sqlx::SqliteStore::new(pool.clone());
    an_exhausted_pool_is_unavailable_not_a_hang(&store, async { pool.acquire().await.expect("the one connection") })
        .await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_exhausted_pool_is_unavailable_not_a_hang() {
    PgSchemas::run(|schemas| async move {
        let schema = schemas.schema().await;
        schema.migrated_pool(1).await.close().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_millis(300))
            .connect_with(schema.options())
            .await
            .expect("a pool");
        let store = payout_store_sqlx::PgStore::new(pool.clone());
        an_exhausted_pool_is_unavailable_not_a_hang(&store, async {
            pool.acquire().await.expect("the one connection")
        })
        .await;
        pool.close().await;
    })
    .await;
}
