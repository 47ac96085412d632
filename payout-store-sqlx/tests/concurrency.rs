//! Eight tasks race to approve the same 200 payouts, each from the same read: every payout is
//! approved exactly once, with exactly one APPROVE audit entry, and every loser gets `Conflict`.
//! Eight calculations race to consume the same carry-overs, reopened by cancelling the payouts that
//! had consumed them: each is consumed by exactly one new payout.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
// With one backend only, the other's tests and helpers are compiled out.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::sync::Arc;

use payout_core::domain::DoctorId;
use payout_core::status::PayoutStatus;
use payout_core::store::{PeriodBatch, SkipReason};
use payout_core::testkit::fixtures::{self, at, day, kes, month};
use payout_core::{Error, PayoutStore};
use tokio::sync::Barrier;

const TASKS: usize = 8;
const PAYOUTS: usize = 200;

async fn racing_approvals_approve_each_payout_once(store: Arc<dyn PayoutStore>) {
    let batch = PeriodBatch {
        payouts: (0..PAYOUTS)
            .map(|i| fixtures::new_payout(&format!("po_{i:03}"), &format!("dr-{i}"), month(2025, 1), &["500"]))
            .collect(),
        carry_overs: Vec::new(),
        run: None,
    };
    let created = store.create_period(batch).await.expect("seeding");
    assert_eq!(created.created.len(), PAYOUTS);

    // Every task reads every payout before any task writes, so all of them race from version 1.
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, barrier, ids) = (Arc::clone(&store), Arc::clone(&barrier), created.created.clone());
        tasks.push(tokio::spawn(async move {
            let mut reads = Vec::with_capacity(ids.len());
            for id in &ids {
                reads.push(store.get(id).await.expect("get"));
            }
            barrier.wait().await;
            let (mut won, mut lost) = (Vec::new(), 0usize);
            // Each task starts elsewhere in the list, so the races spread over the whole table.
            for k in 0..reads.len() {
                let read = &reads[(k + task * PAYOUTS / TASKS) % reads.len()];
                let mut change = fixtures::status_change(read, PayoutStatus::Approved, at(1));
                change.patch.approved_by = Some(format!("admin:{task}"));
                change.audit[0].detail = format!("task {task}");
                match store.apply(change).await {
                    Ok(p) => won.push(p.id),
                    Err(Error::Conflict(id)) if id == read.id => lost += 1,
                    Err(e) => panic!("task {task}: approving {} failed with {e:?}, not Conflict", read.id),
                }
            }
            (won, lost)
        }));
    }
    let mut winners = std::collections::HashMap::new();
    let mut losses = 0;
    for (task, handle) in tasks.into_iter().enumerate() {
        let (won, lost) = handle.await.expect("a racing task panicked");
        losses += lost;
        for id in won {
            assert!(winners.insert(id.clone(), task).is_none(), "{id} was approved twice");
        }
    }
    assert_eq!(winners.len(), PAYOUTS, "every payout is approved by exactly one task");
    assert_eq!(losses, PAYOUTS * (TASKS - 1), "every other attempt lost with Conflict");

    for id in &created.created {
        let p = store.get(id).await.expect("get");
        let winner = winners[id];
        assert_eq!(p.status, PayoutStatus::Approved);
        assert_eq!(p.version, 2, "{id}: one change, one version bump");
        assert_eq!(p.approved_by, Some(format!("admin:{winner}")));
        let trail = store.audit_trail(id).await.expect("audit_trail");
        let approvals: Vec<_> = trail.iter().filter(|e| e.action == "APPROVED").collect();
        assert_eq!(trail.len(), 2, "{id}: CREATE and exactly one approval: {trail:?}");
        assert_eq!(approvals.len(), 1);
        assert_eq!(
            approvals[0].detail,
            format!("task {winner}"),
            "{id}: the winner's entry"
        );
    }
}

const DOCTORS: usize = 20;

async fn racing_calculations_consume_a_reopened_carry_over_once(store: Arc<dyn PayoutStore>) {
    let (jan, feb) = (month(2025, 1), month(2025, 2));
    let doctors: Vec<String> = (0..DOCTORS).map(|d| format!("dr-{d:02}")).collect();
    let carried = PeriodBatch {
        payouts: Vec::new(),
        carry_overs: doctors
            .iter()
            .map(|d| fixtures::carry_over(d, jan, kes("300")))
            .collect(),
        run: None,
    };
    store.create_period(carried).await.expect("recording carry-overs");
    let consumers = PeriodBatch {
        payouts: doctors
            .iter()
            .map(|d| fixtures::payout_consuming(&format!("po_feb_{d}"), d, feb, &["500"], &[jan]))
            .collect(),
        carry_overs: Vec::new(),
        run: None,
    };
    let consumed = store.create_period(consumers).await.expect("consuming them");
    assert_eq!(consumed.created.len(), DOCTORS);
    for id in &consumed.created {
        let p = store.get(id).await.expect("get");
        store
            .apply(fixtures::status_change(&p, PayoutStatus::Cancelled, at(1)))
            .await
            .expect("cancelling");
    }
    let after = day(2026, 1, 1);
    assert_eq!(store.open_carry_overs(after).await.expect("open").len(), DOCTORS);

    // Each task calculates another month (so only the carry-over, not the one-live-payout index,
    // decides the race) for every doctor, consuming the reopened January balance.
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, barrier, doctors) = (Arc::clone(&store), Arc::clone(&barrier), doctors.clone());
        tasks.push(tokio::spawn(async move {
            let period = month(2025, 3 + task as u32);
            let batch = PeriodBatch {
                payouts: doctors
                    .iter()
                    .map(|d| fixtures::payout_consuming(&format!("po_{task}_{d}"), d, period, &["500"], &[jan]))
                    .collect(),
                carry_overs: Vec::new(),
                run: None,
            };
            barrier.wait().await;
            store
                .create_period(batch)
                .await
                .unwrap_or_else(|e| panic!("task {task}: create_period failed: {e:?}"))
        }));
    }
    let mut winners: std::collections::HashMap<DoctorId, usize> = std::collections::HashMap::new();
    let mut taken = 0;
    for (task, handle) in tasks.into_iter().enumerate() {
        let outcome = handle.await.expect("a racing task panicked");
        for id in &outcome.created {
            let p = store.get(id).await.expect("get");
            assert!(
                winners.insert(p.doctor_id.clone(), task).is_none(),
                "{}'s reopened carry-over was consumed twice",
                p.doctor_id
            );
        }
        for (doctor, reason) in &outcome.skipped {
            assert_eq!(*reason, SkipReason::CarryOverTaken, "task {task}: {doctor} skipped");
            taken += 1;
        }
    }
    assert_eq!(
        winners.len(),
        DOCTORS,
        "every reopened carry-over is consumed by one payout"
    );
    assert_eq!(
        taken,
        DOCTORS * (TASKS - 1),
        "every other payout is skipped as CarryOverTaken"
    );
    let open = store.open_carry_overs(after).await.expect("open");
    assert!(open.is_empty(), "{open:?}");
}

common::on_every_backend!(
    racing_calculations_consume_a_reopened_carry_over_once:
    sqlite_file_racing_calculations_for_a_reopened_carry_over,
    postgres_racing_calculations_for_a_reopened_carry_over
);

common::on_every_backend!(
    racing_approvals_approve_each_payout_once: sqlite_file_racing_approvals,
    postgres_racing_approvals
);
