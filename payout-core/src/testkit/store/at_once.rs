//! Checks of many changes at once: a batch through `apply_many`, and tasks racing to change one
//! payout.

use std::sync::Arc;

use tokio::sync::Barrier;

use crate::domain::{AttemptOutcome, Payout, PayoutAttempt, PayoutId, Provider};
use crate::error::Error;
use crate::status::PayoutStatus;
use crate::store::{PayoutChange, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at, month};

use super::{apply, assert_unchanged, is_conflict_for, seed, seed_numbered, seed_one, snapshot, with_keyed_attempt};

/// Bulk changes (through [`PayoutStoreExt`]: the store's [`BulkPayoutStore`](crate::store::BulkPayoutStore)
/// when it offers one, one at a time otherwise): `apply_many` answers each change as `apply` would, in order, and applies exactly the ones it
/// answers `Ok`: refused changes (stale, unknown, a second change of one payout, a duplicate event,
/// a missing attempt, a taken key) write nothing, in a batch with good changes or not, and a good
/// change is applied once even when others in its batch fail. Batches larger than a store's
/// statement size are answered in full, and `read_with_attempts` reads them back as `get` and
/// `attempts` do, in the order asked, unknown and repeated ids left out.
pub async fn apply_all_answers_each_change_as_apply_would(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 6).await;
    let mut with_attempt = PayoutChange::of(&created[5], at(1));
    with_attempt.new_attempt = Some(fixtures::attempt(&created[5].id, 1, Provider::MpesaB2c, at(1)));
    let p6 = apply(store, with_attempt, "recording po_06's attempt").await;
    let mut seen = fixtures::status_change(&created[4], PayoutStatus::Approved, at(1));
    seen.webhook_event = Some(fixtures::webhook_event(
        Provider::MpesaB2c,
        "evt_seen",
        &created[4].id,
        at(1),
    ));
    let p5 = apply(store, seen, "recording evt_seen on po_05").await;
    let p2_before = snapshot(store, &created[1].id).await;

    // A batch the store can write in one go, with refusals that only skip their own change.
    let mut stale = fixtures::status_change(&created[1], PayoutStatus::Approved, at(2));
    stale.expected_version = 7;
    let mut attempt = fixtures::status_change(&created[2], PayoutStatus::Approved, at(2));
    attempt.patch.notes = Some("first attempt".into());
    attempt.new_attempt = Some(fixtures::attempt(&created[2].id, 1, Provider::MpesaB2c, at(2)));
    let mut answer = PayoutChange::of(&p6, at(2));
    answer.attempt_update = Some(fixtures::attempt_update(1, AttemptOutcome::Accepted, Some("ref_6")));
    answer
        .audit
        .push(fixtures::audit(&p6.id, "ATTEMPT_ACCEPTED", None, None, at(2)));
    let mut unknown = created[0].clone();
    unknown.id = PayoutId::new("po_99");
    let results = store
        .apply_many(vec![
            fixtures::status_change(&created[0], PayoutStatus::Approved, at(2)),
            stale,
            attempt,
            answer,
            fixtures::status_change(&created[0], PayoutStatus::Cancelled, at(2)),
            fixtures::status_change(&unknown, PayoutStatus::Approved, at(2)),
        ])
        .await;
    assert_eq!(results.len(), 6, "one result per change");
    let p1 = results[0].as_ref().expect("the first change of po_01 applies").clone();
    assert_eq!((p1.status, p1.version), (PayoutStatus::Approved, 2));
    assert!(
        conflicted(&results[1], &created[1].id),
        "a stale change: {:?}",
        results[1]
    );
    let p3 = results[2].as_ref().expect("po_03's attempt applies").clone();
    assert_eq!(p3.notes.as_deref(), Some("first attempt"));
    results[3].as_ref().expect("po_06's answer applies");
    assert!(
        conflicted(&results[4], &created[0].id),
        "a second change of po_01 read at the same version: {:?}",
        results[4]
    );
    assert!(
        matches!(&results[5], Err(Error::NotFound(id)) if id.as_str() == "po_99"),
        "an unknown payout: {:?}",
        results[5]
    );
    assert_unchanged(store, &p2_before, "a stale change in a batch").await;
    assert_eq!(
        store.get(&p1.id).await.expect("get"),
        p1,
        "apply_many returns the stored payout"
    );
    assert_eq!(approvals(store, &p1.id).await, 1);
    assert_eq!(
        store.attempts(&p3.id).await.expect("attempts"),
        vec![fixtures::attempt(&p3.id, 1, Provider::MpesaB2c, at(2))]
    );
    let a6 = store.attempts(&p6.id).await.expect("attempts").remove(0);
    assert_eq!(
        (a6.outcome, a6.provider_reference.as_deref()),
        (AttemptOutcome::Accepted, Some("ref_6"))
    );

    // A batch whose refusals a store may only find by failing a whole statement.
    let p3_before = snapshot(store, &p3.id).await;
    let p5_before = snapshot(store, &p5.id).await;
    let mut duplicate = fixtures::status_change(&p2_before.payout, PayoutStatus::Approved, at(3));
    duplicate.webhook_event = Some(fixtures::webhook_event(
        Provider::MpesaB2c,
        "evt_seen",
        &p2_before.payout.id,
        at(3),
    ));
    let mut missing = PayoutChange::of(&p3, at(3));
    missing.attempt_update = Some(fixtures::attempt_update(5, AttemptOutcome::Accepted, None));
    let processing = fixtures::status_change(&p5, PayoutStatus::Processing, at(3));
    let taken_key = with_keyed_attempt(processing, 1, &PayoutAttempt::key_for(&p3.id, 1), at(3));
    let results = store
        .apply_many(vec![
            fixtures::status_change(&created[3], PayoutStatus::Approved, at(3)),
            duplicate,
            missing,
            taken_key,
        ])
        .await;
    assert_eq!(results.len(), 4, "one result per change");
    let p4 = results[0].as_ref().expect("po_04 applies beside failing changes");
    assert_eq!((p4.status, p4.version), (PayoutStatus::Approved, 2));
    assert_eq!(approvals(store, &p4.id).await, 1, "a good change is applied once");
    assert!(
        matches!(&results[1], Err(Error::DuplicateEvent { event_id, .. }) if event_id == "evt_seen"),
        "a recorded event: {:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], Err(Error::InvalidInput(_))),
        "an update of a missing attempt: {:?}",
        results[2]
    );
    assert!(conflicted(&results[3], &p5.id), "a taken key: {:?}", results[3]);
    assert_unchanged(store, &p2_before, "a duplicate event in a batch").await;
    assert_unchanged(store, &p3_before, "a missing attempt in a batch").await;
    assert_unchanged(store, &p5_before, "a taken key in a batch").await;

    // More changes than one statement holds.
    let many = seed(
        store,
        (0..700)
            .map(|n| fixtures::new_payout(&format!("po_m{n:03}"), &format!("dr-m{n}"), month(2025, 2), &["500"]))
            .collect(),
    )
    .await;
    let results = store
        .apply_many(
            many.iter()
                .map(|p| fixtures::status_change(p, PayoutStatus::Approved, at(4)))
                .collect(),
        )
        .await;
    assert_eq!(results.len(), many.len());
    for (p, r) in many.iter().zip(&results) {
        let got = r.as_ref().unwrap_or_else(|e| panic!("{} in a large batch: {e}", p.id));
        assert_eq!((&got.id, got.status, got.version), (&p.id, PayoutStatus::Approved, 2));
    }

    let mut ids: Vec<PayoutId> = many.iter().rev().map(|p| p.id.clone()).collect();
    ids.insert(3, PayoutId::new("po_unknown"));
    ids.push(p6.id.clone());
    ids.push(many[0].id.clone());
    let read = store.read_with_attempts(&ids).await.expect("read_with_attempts");
    let mut expected_ids: Vec<PayoutId> = many.iter().rev().map(|p| p.id.clone()).collect();
    expected_ids.push(p6.id.clone());
    assert_eq!(
        read.iter().map(|(p, _)| p.id.clone()).collect::<Vec<_>>(),
        expected_ids,
        "read_with_attempts keeps the order asked, without unknown or repeated ids"
    );
    for (p, attempts) in &read {
        assert_eq!(p, &store.get(&p.id).await.expect("get"));
        assert_eq!(attempts, &store.attempts(&p.id).await.expect("attempts"));
    }
    assert_eq!(read.last().map(|(_, a)| a.len()), Some(1), "po_06 has its attempt");
}

/// Sixteen tasks race to change the same payout from the same read: exactly one wins, every other
/// one gets `Conflict`, and exactly one audit entry (and one attempt) is added. Three rounds: racing
/// approvals, racing notes that change no status (only the version protects them), then racing
/// triggers that each record attempt 1.
///
/// Takes an `Arc` because it spawns tokio tasks; run it on a multi-threaded runtime for a real race.
pub async fn concurrent_apply_has_one_winner(store: Arc<dyn PayoutStore>) {
    const TASKS: usize = 16;
    let p = seed_one(&*store, "po_01").await;

    for round in ["approve", "note", "trigger"] {
        let read = store.get(&p.id).await.expect("get");
        let trail_before = store.audit_trail(&p.id).await.expect("audit_trail");
        let barrier = Arc::new(Barrier::new(TASKS));
        let mut tasks = Vec::new();
        for i in 0..TASKS {
            let (store, barrier, read) = (Arc::clone(&store), Arc::clone(&barrier), read.clone());
            tasks.push(tokio::spawn(async move {
                let mut change = match round {
                    "approve" => {
                        let mut c = fixtures::status_change(&read, PayoutStatus::Approved, at(1));
                        c.patch.approved_by = Some(format!("admin:{i}"));
                        c
                    }
                    // No status change: only the version tells the racers apart.
                    "note" => {
                        let mut c = PayoutChange::of(&read, at(2));
                        c.patch.notes = Some(format!("task {i}"));
                        c.audit.push(fixtures::audit(&read.id, "NOTE", None, None, at(2)));
                        c
                    }
                    _ => {
                        let mut c = fixtures::status_change(&read, PayoutStatus::Processing, at(3));
                        let mut attempt = fixtures::attempt(&read.id, 1, Provider::MpesaB2c, at(3));
                        attempt.request_summary = format!("task {i}");
                        c.new_attempt = Some(attempt);
                        c
                    }
                };
                change.audit[0].detail = format!("task {i}");
                barrier.wait().await;
                store.apply(change).await
            }));
        }
        let mut winners = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.expect("a racing task panicked") {
                Ok(payout) => winners.push((i, payout)),
                Err(e) if is_conflict_for(&e, &p.id) => {}
                Err(e) => panic!("{round} race: task {i} got {e:?}, expected Ok or Conflict({})", p.id),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{round} race: exactly one of {TASKS} racing changes must win, {} did",
            winners.len()
        );
        let (winner, won) = winners.remove(0);
        assert_eq!(won.version, read.version + 1, "{round} race: the version goes up once");
        assert_eq!(
            store.get(&p.id).await.expect("get"),
            won,
            "{round} race: the winner's payout is stored"
        );
        let trail = store.audit_trail(&p.id).await.expect("audit_trail");
        assert_eq!(
            trail.len(),
            trail_before.len() + 1,
            "{round} race: exactly one audit entry is added"
        );
        assert_eq!(
            trail[trail.len() - 1].detail,
            format!("task {winner}"),
            "{round} race: the winner's entry"
        );
        if round == "approve" {
            assert_eq!(won.approved_by, Some(format!("admin:{winner}")));
        } else if round == "note" {
            assert_eq!(
                won.notes,
                Some(format!("task {winner}")),
                "{round} race: the winner's notes"
            );
        } else {
            let attempts = store.attempts(&p.id).await.expect("attempts");
            assert_eq!(attempts.len(), 1, "{round} race: exactly one attempt is recorded");
            assert_eq!(attempts[0].request_summary, format!("task {winner}"));
        }
    }
}

fn conflicted(result: &Result<Payout, Error>, id: &PayoutId) -> bool {
    result.as_ref().err().is_some_and(|e| is_conflict_for(e, id))
}

/// How many `APPROVED` entries a payout's audit trail holds.
async fn approvals(store: &dyn PayoutStore, id: &PayoutId) -> usize {
    let trail = store.audit_trail(id).await.expect("audit_trail");
    trail.iter().filter(|e| e.action == "APPROVED").count()
}
