//! Runs and holds beyond the conformance suite: everything a run keeps survives closing the store
//! and opening it again, and a run's totals stay right when many connections move its payouts at
//! once (on Postgres each session counts in its own tally slot).
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use payout_core::domain::{DoctorHold, HoldScope, Payout, PayoutId, RunEvent, RunId, RunResult, RunSummary};
use payout_core::status::PayoutStatus;
use payout_core::store::{Cursor, DoctorHoldPage, Page, PayoutChange, PayoutFilter};
use payout_core::testkit::fixtures::{self, at, month};
use payout_core::{PayoutStore, PayoutStoreExt};

#[cfg(feature = "postgres")]
use common::PgSchemas;
#[cfg(feature = "sqlite")]
use common::SqliteFiles;

/// What a store keeps of a run and of holds, read back.
#[derive(Debug, PartialEq)]
struct Kept {
    run: RunSummary,
    results: Vec<RunResult>,
    events: Vec<RunEvent>,
    doctor_holds: DoctorHoldPage,
    held: Payout,
    held_ids: Vec<PayoutId>,
}

async fn read_kept(store: &dyn PayoutStore) -> Kept {
    let run = RunId::new("run_jan");
    let held_ids = store
        .list(
            &PayoutFilter {
                run: Some(run.clone()),
                held: Some(true),
                ..Default::default()
            },
            &Page::default(),
        )
        .await
        .expect("held members")
        .payouts
        .into_iter()
        .map(|p| p.id)
        .collect();
    Kept {
        run: store.run(&run).await.expect("run"),
        results: store
            .run_results(&run, &Page::default())
            .await
            .expect("results")
            .results,
        events: store.run_events(&run).await.expect("events"),
        doctor_holds: store.all_doctor_holds(&Page::default()).await.expect("doctor holds"),
        held: store.get(&"po_02".into()).await.expect("the held payout"),
        held_ids,
    }
}

/// Writes a calculation's run with its members, results, events, an override, a payout's hold
/// and a doctor's hold, and moves a member, then reads it all.
async fn write_run(store: &dyn PayoutStore) -> Kept {
    let jan = month(2025, 1);
    store
        .create_run(fixtures::calculation_run("run_jan", jan), &[])
        .await
        .expect("create_run");
    let mut batch = fixtures::batch(
        (1..=3)
            .map(|i| fixtures::new_payout(&format!("po_{i:02}"), &format!("dr-{i}"), jan, &["500"]))
            .collect(),
        Vec::new(),
    );
    batch.run = Some("run_jan".into());
    store.create_period(batch).await.expect("create_period");
    let first = store.get(&"po_01".into()).await.expect("get");
    store
        .apply(fixtures::status_change(&first, PayoutStatus::Approved, at(1)))
        .await
        .expect("approve");
    let second = store.get(&"po_02".into()).await.expect("get");
    let mut hold = PayoutChange::of(&second, at(2));
    hold.patch.hold = Some(fixtures::hold(HoldScope::Payout, at(2)));
    store.apply(hold).await.expect("hold");
    let run = RunId::new("run_jan");
    let results = vec![
        fixtures::run_result(&"po_01".into(), true, at(3)),
        fixtures::run_result(&"po_02".into(), false, at(3)),
    ];
    store.record_run_results(&run, &results).await.expect("results");
    store
        .record_run_event(RunEvent {
            run_id: run.clone(),
            at: at(3),
            actor: "admin:testkit".into(),
            action: RunEvent::TRIGGER.into(),
            details: Some("1 sent, 1 refused".into()),
        })
        .await
        .expect("event");
    store
        .set_funds_override(&run, None, fixtures::funds_override(at(4)))
        .await
        .expect("override");
    let doctor: DoctorHold = fixtures::doctor_hold("dr-3", at(5));
    store.place_doctor_hold(doctor).await.expect("doctor hold");
    let kept = read_kept(store).await;
    assert_eq!(kept.run.count(), 3);
    assert_eq!(kept.run.count_of(PayoutStatus::Approved), 1);
    assert_eq!(kept.results, results);
    assert_eq!(kept.events.len(), 3, "CREATE, TRIGGER, FUNDS_OVERRIDE_REQUESTED");
    assert_eq!(kept.held_ids, vec![PayoutId::new("po_02")]);
    kept
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_runs_and_holds_survive_reopening_the_file() {
    let files = SqliteFiles::new();
    let url = files.url();
    let store = payout_store_sqlx::SqliteStore::connect(&url).await.expect("open");
    let written = write_run(&store).await;
    store.pool().close().await;
    drop(store);
    let again = payout_store_sqlx::SqliteStore::connect(&url).await.expect("open again");
    assert_eq!(read_kept(&again).await, written);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_runs_and_holds_survive_reopening_the_schema() {
    PgSchemas::run(|schemas| async move {
        let schema = schemas.schema().await;
        let store = schema.store(4).await;
        let written = write_run(&store).await;
        store.pool().close().await;
        drop(store);
        let again = schema.store(4).await;
        assert_eq!(read_kept(&again).await, written);
        again.pool().close().await;
    })
    .await;
}

/// Tasks on their own connections move a run's members at once, one `apply` or one
/// `apply_many` at a time; the run's totals then equal a recount of its members.
async fn concurrent_moves_keep_run_totals(store: Arc<dyn PayoutStore>) {
    const PAYOUTS: usize = 120;
    let payouts = (0..PAYOUTS)
        .map(|i| fixtures::new_payout(&format!("po_{i:03}"), &format!("dr-{i}"), month(2025, 1), &["500"]))
        .collect();
    payout_core::testkit::store::seed(&*store, payouts).await;
    let ids: Vec<PayoutId> = (0..PAYOUTS).map(|i| PayoutId::new(format!("po_{i:03}"))).collect();
    store
        .create_run(fixtures::new_run("run_a", at(1)), &ids)
        .await
        .expect("create_run");
    let mut tasks = Vec::new();
    for (task, chunk) in ids.chunks(PAYOUTS / 6).enumerate() {
        let store = Arc::clone(&store);
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut approvals = Vec::new();
            for id in &chunk {
                let p = store.get(id).await.expect("get");
                approvals.push(fixtures::status_change(&p, PayoutStatus::Approved, at(2)));
            }
            for r in store.apply_many(approvals).await {
                r.expect("approve");
            }
            // Every other payout on to PROCESSING with a provider, one at a time.
            for id in chunk.iter().step_by(2) {
                let p = store.get(id).await.expect("get");
                let mut change = fixtures::status_change(&p, PayoutStatus::Processing, at(3));
                change.patch.provider = Some(if task % 2 == 0 {
                    payout_core::domain::Provider::MpesaB2c
                } else {
                    payout_core::domain::Provider::BankTransfer
                });
                store.apply(change).await.expect("send");
            }
        }));
    }
    for t in tasks {
        t.await.expect("a task");
    }
    let totals = store.run(&"run_a".into()).await.expect("run").totals;
    let mut recount: BTreeMap<(PayoutStatus, Option<payout_core::domain::Provider>), u64> = BTreeMap::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store
            .list(
                &PayoutFilter {
                    run: Some("run_a".into()),
                    ..Default::default()
                },
                &Page {
                    limit: 50,
                    skip: 0,
                    after,
                },
            )
            .await
            .expect("list");
        for p in &page.payouts {
            *recount.entry((p.status, p.provider)).or_default() += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let tallied: BTreeMap<_, _> = totals.iter().map(|t| ((t.status, t.provider), t.count)).collect();
    assert_eq!(tallied, recount, "the run's totals are a recount of its members");
    assert_eq!(recount.values().sum::<u64>(), PAYOUTS as u64);
    assert_eq!(
        totals
            .iter()
            .map(|t| t.amount.to_minor_units().expect("minor"))
            .sum::<i64>(),
        PAYOUTS as i64 * 50_000
    );
    // The member rows the run's pages are read from followed every move: counted there (none is
    // held, so "not held" counts them by their own status), each status has its recount.
    let mut by_status: BTreeMap<PayoutStatus, u64> = BTreeMap::new();
    for ((status, _), n) in &recount {
        *by_status.entry(*status).or_default() += n;
    }
    for (status, n) in by_status {
        let filter = PayoutFilter {
            run: Some("run_a".into()),
            status: Some(status),
            held: Some(false),
            ..Default::default()
        };
        let page = store.list(&filter, &Page::new(500, 0)).await.expect("list");
        assert_eq!(page.total, n, "{status} members counted among the member rows");
        assert_eq!(
            page.payouts.len() as u64,
            n,
            "{status} members listed from the member rows"
        );
        assert!(
            page.payouts.iter().all(|p| p.status == status),
            "{status} members listed"
        );
    }
}

common::on_every_backend!(concurrent_moves_keep_run_totals:
    sqlite_concurrent_moves_keep_run_totals, postgres_concurrent_moves_keep_run_totals);

/// A payout that another transaction is changing while a run is made of it: the run's insert of
/// its members waits for that transaction (it locks the payouts it copies `FOR SHARE`), so the
/// member row and the run's tallies have the change. Without the lock the run would copy the
/// payout as it was before the change, and the change's trigger, not seeing the uncommitted run,
/// would leave that copy stale.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_a_run_made_while_its_payout_changes_has_the_change() {
    PgSchemas::run(|schemas| async move {
        let pool = schemas.fresh_pool().await;
        let store = Arc::new(payout_store_sqlx::PgStore::new(pool.clone()));
        payout_core::testkit::store::seed(
            &*store,
            vec![fixtures::new_payout("po_01", "dr-1", month(2025, 1), &["500"])],
        )
        .await;

        // Another session approves the payout and has not committed yet.
        let mut other = pool.begin().await.expect("begin");
        let other_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *other)
            .await
            .expect("pid");
        sqlx::query("UPDATE payouts SET status = 'APPROVED' WHERE id = 'po_01'")
            .execute(&mut *other)
            .await
            .expect("approve");

        let making = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .create_run(fixtures::new_run("run_x", at(1)), &["po_01".into()])
                    .await
            }
        });
        // Until the run's insert waits on the other session (or is done without waiting, which
        // the assertions below then catch), for at most 30 s.
        let mut waited = false;
        for _ in 0..3_000 {
            let blocked: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))")
                    .bind(other_pid)
                    .fetch_one(&pool)
                    .await
                    .expect("pg_stat_activity");
            if blocked > 0 {
                waited = true;
                break;
            }
            if making.is_finished() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        other.commit().await.expect("commit");
        making.await.expect("the task").expect("create_run");

        assert!(waited, "the run's insert waited for the change");
        let run = store.run(&"run_x".into()).await.expect("run");
        assert_eq!(
            run.count_of(PayoutStatus::Approved),
            1,
            "the run's tallies have the change"
        );
        assert_eq!(run.count_of(PayoutStatus::Pending), 0);
        let approved = store
            .list(
                &PayoutFilter {
                    run: Some("run_x".into()),
                    status: Some(PayoutStatus::Approved),
                    held: Some(false),
                    ..Default::default()
                },
                &Page::default(),
            )
            .await
            .expect("list");
        assert_eq!(approved.total, 1, "the member row has the change");
        pool.close().await;
    })
    .await;
}
