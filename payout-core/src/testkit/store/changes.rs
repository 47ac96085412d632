//! Checks of changing payouts: `apply`, attempts, webhook events, audit trail, stuck payouts, races.

use std::sync::Arc;

use tokio::sync::Barrier;

use crate::domain::{AttemptOutcome, Payout, PayoutAttempt, PayoutId, Provider};
use crate::error::Error;
use crate::provider::EventReference;
use crate::status::PayoutStatus;
use crate::store::{AttemptUpdate, PayoutChange, PayoutPatch, PayoutStore, PayoutStoreExt, PeriodBatch};
use crate::testkit::fixtures::{self, at, month};

use super::{assert_err, assert_unchanged, count, is_conflict_for, move_to, seed, seed_one, snapshot};

async fn apply(store: &dyn PayoutStore, change: PayoutChange, context: &str) -> Payout {
    store
        .apply(change)
        .await
        .unwrap_or_else(|e| panic!("{context}: apply failed: {e}"))
}

/// A change of `p` that would write a bit of everything: a status, a patch, an attempt, a webhook
/// event and an audit entry.
fn everything(p: &Payout, event_id: &str) -> PayoutChange {
    let mut change = fixtures::status_change(p, PayoutStatus::Approved, at(50));
    change.patch.notes = Some("must not be written".to_string());
    change.new_attempt = Some(fixtures::attempt(&p.id, 9, Provider::MpesaB2c, at(50)));
    change.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, event_id, &p.id, at(50)));
    change
}

async fn assert_event_not_recorded(store: &dyn PayoutStore, event_id: &str, context: &str) {
    let seen = store
        .webhook_event_seen(Provider::MpesaB2c, event_id)
        .await
        .expect("webhook_event_seen");
    assert!(
        !seen,
        "{context}: the webhook event {event_id} of a refused change was recorded"
    );
}

/// `apply` sets the new status and the patched fields (`None` leaves a field alone, `Some` replaces
/// it), bumps the version by one, sets `updated_at` to the change's `at`, appends the audit entries
/// and returns the payout as stored.
pub async fn apply_bumps_version_and_appends_audit(store: &dyn PayoutStore) {
    let p = seed_one(store, "po_01").await;
    let create = store.audit_trail(&p.id).await.expect("audit_trail");

    let mut approve = fixtures::status_change(&p, PayoutStatus::Approved, at(10));
    approve.patch = PayoutPatch {
        approved_by: Some("admin:a".to_string()),
        notes: Some("looks right".to_string()),
        ..PayoutPatch::default()
    };
    let approve_audit = approve.audit.clone();
    let approved = apply(store, approve, "approving").await;
    let mut expected = p.clone();
    expected.status = PayoutStatus::Approved;
    expected.approved_by = Some("admin:a".to_string());
    expected.notes = Some("looks right".to_string());
    expected.version = p.version + 1;
    expected.updated_at = at(10);
    assert_eq!(
        approved, expected,
        "apply returns the payout with status, patch, version and updated_at"
    );
    assert_eq!(store.get(&p.id).await.expect("get"), approved, "get() after apply");

    // No status change; other fields patched; notes and approver left alone.
    let mut note = PayoutChange::of(&approved, at(20));
    note.patch = PayoutPatch {
        provider: Some(Provider::MpesaB2c),
        provider_reference: Some("ws_CO_1".to_string()),
        processed_at: Some(at(19)),
        ..PayoutPatch::default()
    };
    note.audit.push(fixtures::audit(&p.id, "NOTE", None, None, at(20)));
    let note_audit = note.audit.clone();
    let noted = apply(store, note, "patching without a status change").await;
    expected.provider = Some(Provider::MpesaB2c);
    expected.provider_reference = Some("ws_CO_1".to_string());
    expected.processed_at = Some(at(19));
    expected.version += 1;
    expected.updated_at = at(20);
    assert_eq!(
        noted, expected,
        "None fields of a patch must leave the payout's fields as they are"
    );

    let mut replace = PayoutChange::of(&noted, at(30));
    replace.patch.notes = Some("replaced".to_string());
    let replaced = apply(store, replace, "replacing the notes").await;
    expected.notes = Some("replaced".to_string());
    expected.version += 1;
    expected.updated_at = at(30);
    assert_eq!(
        replaced, expected,
        "Some(notes) replaces the notes; a change with no audit entry is fine"
    );

    let trail = store.audit_trail(&p.id).await.expect("audit_trail");
    let want: Vec<_> = create.into_iter().chain(approve_audit).chain(note_audit).collect();
    assert_eq!(
        trail, want,
        "the audit trail is the CREATE entry then each change's entries, in order"
    );
}

/// A change read at an older (or newer) version is a `Conflict` and writes nothing: not the status,
/// patch, attempt, webhook event or audit entry.
pub async fn apply_with_stale_version_conflicts_and_changes_nothing(store: &dyn PayoutStore) {
    let read = seed_one(store, "po_01").await;
    // Someone else changes it without changing its status.
    let mut other = PayoutChange::of(&read, at(5));
    other.patch.notes = Some("someone else".to_string());
    other.audit.push(fixtures::audit(&read.id, "NOTE", None, None, at(5)));
    let current = apply(store, other, "the concurrent change").await;
    assert_eq!(current.version, read.version + 1);
    let before = snapshot(store, &read.id).await;

    assert_err!(
        store.apply(everything(&read, "evt_stale")).await,
        e if is_conflict_for(&e, &read.id),
        "apply at a stale version (expected Conflict({}))",
        read.id
    );
    assert_unchanged(store, &before, "a stale change").await;
    assert_event_not_recorded(store, "evt_stale", "a stale change").await;
    let key = EventReference::IdempotencyKey(PayoutAttempt::key_for(&read.id, 9));
    let found = store
        .find_attempt(Provider::MpesaB2c, &key)
        .await
        .expect("find_attempt");
    assert_eq!(found, None, "the attempt of a refused change must not be recorded");

    let mut future = current.clone();
    future.version += 5;
    assert_err!(
        store.apply(everything(&future, "evt_future")).await,
        e if is_conflict_for(&e, &read.id),
        "apply at a version not reached yet"
    );
    assert_unchanged(store, &before, "a change at a future version").await;
    assert_event_not_recorded(store, "evt_future", "a change at a future version").await;
}

/// A change that expects another status than the current one is a `Conflict` and writes nothing.
pub async fn apply_with_wrong_status_conflicts(store: &dyn PayoutStore) {
    let p = seed_one(store, "po_01").await;
    let before = snapshot(store, &p.id).await;
    let mut wrong = p.clone();
    wrong.status = PayoutStatus::Approved;
    let mut change = everything(&wrong, "evt_status");
    change.new_status = Some(PayoutStatus::Processing);
    assert_err!(
        store.apply(change).await,
        e if is_conflict_for(&e, &p.id),
        "apply expecting APPROVED on a PENDING payout"
    );
    assert_unchanged(store, &before, "a change expecting the wrong status").await;
    assert_event_not_recorded(store, "evt_status", "a change expecting the wrong status").await;
}

/// A new attempt whose number the payout already has, or whose idempotency key any payout already
/// has, is a `Conflict` and writes nothing.
pub async fn duplicate_attempt_conflicts(store: &dyn PayoutStore) {
    let created = seed(
        store,
        vec![
            fixtures::new_payout("po_01", "dr-1", month(2025, 1), &["500"]),
            fixtures::new_payout("po_02", "dr-2", month(2025, 1), &["500"]),
        ],
    )
    .await;
    let (p1, p2) = (&created[0], &created[1]);
    let mut first = PayoutChange::of(p1, at(1));
    first.new_attempt = Some(fixtures::attempt(&p1.id, 1, Provider::MpesaB2c, at(1)));
    let p1 = apply(store, first, "recording attempt 1").await;
    let before1 = snapshot(store, &p1.id).await;
    let before2 = snapshot(store, &p2.id).await;

    let mut same_no = everything(&p1, "evt_dup_no");
    let mut attempt = fixtures::attempt(&p1.id, 1, Provider::MpesaB2c, at(2));
    attempt.idempotency_key = format!("{}-other", attempt.idempotency_key);
    same_no.new_attempt = Some(attempt);
    assert_err!(
        store.apply(same_no).await,
        e if is_conflict_for(&e, &p1.id),
        "a second attempt 1"
    );
    let mut same_key = everything(&p1, "evt_dup_key");
    let mut attempt = fixtures::attempt(&p1.id, 2, Provider::MpesaB2c, at(2));
    attempt.idempotency_key = PayoutAttempt::key_for(&p1.id, 1);
    same_key.new_attempt = Some(attempt);
    assert_err!(
        store.apply(same_key).await,
        e if is_conflict_for(&e, &p1.id),
        "attempt 2 reusing attempt 1's idempotency key"
    );
    assert_unchanged(store, &before1, "a duplicate attempt").await;
    assert_event_not_recorded(store, "evt_dup_no", "a duplicate attempt number").await;
    assert_event_not_recorded(store, "evt_dup_key", "a duplicate idempotency key").await;

    let mut other_payouts_key = PayoutChange::of(p2, at(3));
    let mut attempt = fixtures::attempt(&p2.id, 1, Provider::MpesaB2c, at(3));
    attempt.idempotency_key = PayoutAttempt::key_for(&p1.id, 1);
    other_payouts_key.new_attempt = Some(attempt);
    assert_err!(
        store.apply(other_payouts_key).await,
        e if is_conflict_for(&e, &p2.id),
        "an attempt reusing another payout's idempotency key (keys are unique across payouts)"
    );
    assert_unchanged(store, &before2, "an attempt reusing another payout's key").await;

    let mut second = PayoutChange::of(&p1, at(4));
    second.new_attempt = Some(fixtures::attempt(&p1.id, 2, Provider::MpesaB2c, at(4)));
    apply(store, second, "recording attempt 2").await;
    let attempts = store.attempts(&p1.id).await.expect("attempts");
    assert_eq!(
        attempts,
        vec![
            fixtures::attempt(&p1.id, 1, Provider::MpesaB2c, at(1)),
            fixtures::attempt(&p1.id, 2, Provider::MpesaB2c, at(4)),
        ],
        "attempts, oldest first"
    );
}

/// A webhook event is recorded once per (provider, event id), with its change: a second change with
/// it is `DuplicateEvent` and writes nothing, for this payout or any other; the same id from another
/// provider is a different event.
pub async fn webhook_event_is_recorded_once(store: &dyn PayoutStore) {
    let created = seed(
        store,
        vec![
            fixtures::new_payout("po_01", "dr-1", month(2025, 1), &["500"]),
            fixtures::new_payout("po_02", "dr-2", month(2025, 1), &["500"]),
        ],
    )
    .await;
    let (p, q) = (&created[0], &created[1]);
    assert!(
        !store
            .webhook_event_seen(Provider::MpesaB2c, "evt_1")
            .await
            .expect("seen")
    );
    let mut change = fixtures::status_change(p, PayoutStatus::Approved, at(1));
    change.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, "evt_1", &p.id, at(1)));
    let p = apply(store, change, "the first delivery").await;
    assert!(
        store
            .webhook_event_seen(Provider::MpesaB2c, "evt_1")
            .await
            .expect("seen"),
        "a recorded event is seen"
    );
    assert!(
        !store
            .webhook_event_seen(Provider::StripeConnect, "evt_1")
            .await
            .expect("seen"),
        "event ids are per provider"
    );
    assert!(
        !store
            .webhook_event_seen(Provider::MpesaB2c, "evt_2")
            .await
            .expect("seen")
    );

    let before = snapshot(store, &p.id).await;
    let mut again = fixtures::status_change(&p, PayoutStatus::Cancelled, at(2));
    again.new_attempt = Some(fixtures::attempt(&p.id, 1, Provider::MpesaB2c, at(2)));
    again.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, "evt_1", &p.id, at(2)));
    assert_err!(
        store.apply(again).await,
        Error::DuplicateEvent { provider: Provider::MpesaB2c, ref event_id } if event_id == "evt_1",
        "the second delivery of an event"
    );
    assert_unchanged(store, &before, "a duplicate event").await;

    let q_before = snapshot(store, &q.id).await;
    let mut elsewhere = fixtures::status_change(q, PayoutStatus::Approved, at(3));
    elsewhere.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, "evt_1", &q.id, at(3)));
    assert_err!(
        store.apply(elsewhere).await,
        Error::DuplicateEvent { .. },
        "the same event id for another payout"
    );
    assert_unchanged(store, &q_before, "a duplicate event for another payout").await;

    let mut stripe = fixtures::status_change(q, PayoutStatus::Approved, at(4));
    stripe.webhook_event = Some(fixtures::webhook_event(Provider::StripeConnect, "evt_1", &q.id, at(4)));
    apply(store, stripe, "the same event id from another provider").await;
    assert!(
        store
            .webhook_event_seen(Provider::StripeConnect, "evt_1")
            .await
            .expect("seen")
    );
}

/// An attempt update sets the outcome and `updated_at`, and the reference and error only when given;
/// an update of an attempt the payout does not have is `InvalidInput` and writes nothing.
pub async fn attempt_update_changes_outcome_and_keeps_reference(store: &dyn PayoutStore) {
    let p = seed_one(store, "po_01").await;
    let mut insert = PayoutChange::of(&p, at(1));
    insert.new_attempt = Some(fixtures::attempt(&p.id, 1, Provider::MpesaB2c, at(1)));
    let p = apply(store, insert, "recording an attempt").await;
    let mut expected = fixtures::attempt(&p.id, 1, Provider::MpesaB2c, at(1));

    let steps = [
        (
            AttemptOutcome::Accepted,
            Some("ws_CO_1"),
            None,
            "accepted with a reference",
        ),
        (
            AttemptOutcome::Unknown {
                reason: "timeout".to_string(),
            },
            None,
            Some("timeout"),
            "unknown with an error and no reference",
        ),
        (
            AttemptOutcome::Failed {
                reason: "declined".to_string(),
            },
            None,
            None,
            "failed with neither",
        ),
    ];
    let mut p = p;
    for (i, (outcome, reference, error, what)) in steps.into_iter().enumerate() {
        let when = at(10 * (i as i64 + 1));
        let mut change = PayoutChange::of(&p, when);
        change.attempt_update = Some(AttemptUpdate {
            attempt_no: 1,
            outcome: outcome.clone(),
            provider_reference: reference.map(String::from),
            error: error.map(String::from),
        });
        p = apply(store, change, what).await;
        expected.outcome = outcome;
        if let Some(r) = reference {
            expected.provider_reference = Some(r.to_string());
        }
        if let Some(e) = error {
            expected.error = Some(e.to_string());
        }
        expected.updated_at = when;
        let attempts = store.attempts(&p.id).await.expect("attempts");
        assert_eq!(attempts, vec![expected.clone()], "after the update {what}");
    }
    assert_eq!(expected.provider_reference.as_deref(), Some("ws_CO_1"));
    assert_eq!(expected.error.as_deref(), Some("timeout"));

    let before = snapshot(store, &p.id).await;
    let mut missing = fixtures::status_change(&p, PayoutStatus::Approved, at(60));
    missing.attempt_update = Some(AttemptUpdate {
        attempt_no: 7,
        outcome: AttemptOutcome::Succeeded,
        provider_reference: None,
        error: None,
    });
    assert_err!(
        store.apply(missing).await,
        Error::InvalidInput(_),
        "updating an attempt the payout does not have"
    );
    assert_unchanged(store, &before, "an update of a missing attempt").await;
}

/// `find_attempt` finds an attempt by provider reference or by idempotency key, only among that
/// provider's attempts, and does not mix the two kinds of reference up.
pub async fn find_attempt_by_reference_and_key(store: &dyn PayoutStore) {
    let created = seed(
        store,
        vec![
            fixtures::new_payout("po_01", "dr-1", month(2025, 1), &["500"]),
            fixtures::new_payout("po_02", "dr-2", month(2025, 1), &["500"]),
        ],
    )
    .await;
    for (p, provider, reference) in [
        (&created[0], Provider::MpesaB2c, "ws_CO_1"),
        (&created[1], Provider::StripeConnect, "tr_1"),
    ] {
        let mut change = PayoutChange::of(p, at(1));
        change.new_attempt = Some(fixtures::attempt(&p.id, 1, provider, at(1)));
        change.attempt_update = None;
        let p = apply(store, change, "recording an attempt").await;
        let mut update = PayoutChange::of(&p, at(2));
        update.attempt_update = Some(AttemptUpdate {
            attempt_no: 1,
            outcome: AttemptOutcome::Accepted,
            provider_reference: Some(reference.to_string()),
            error: None,
        });
        apply(store, update, "storing the reference").await;
    }
    let mpesa = store.attempts(&created[0].id).await.expect("attempts").remove(0);
    let stripe = store.attempts(&created[1].id).await.expect("attempts").remove(0);
    let key1 = PayoutAttempt::key_for(&created[0].id, 1);
    let reference = |s: &str| EventReference::ProviderReference(s.to_string());
    let key = |s: &str| EventReference::IdempotencyKey(s.to_string());
    let cases = [
        (
            Provider::MpesaB2c,
            reference("ws_CO_1"),
            Some(&mpesa),
            "by provider reference",
        ),
        (Provider::MpesaB2c, key(&key1), Some(&mpesa), "by idempotency key"),
        (
            Provider::StripeConnect,
            reference("tr_1"),
            Some(&stripe),
            "another provider's reference",
        ),
        (
            Provider::StripeConnect,
            reference("ws_CO_1"),
            None,
            "a reference under the wrong provider",
        ),
        (
            Provider::PaypalPayouts,
            key(&key1),
            None,
            "a key under the wrong provider",
        ),
        (
            Provider::MpesaB2c,
            reference(&key1),
            None,
            "a key passed as a provider reference",
        ),
        (Provider::MpesaB2c, key("ws_CO_1"), None, "a reference passed as a key"),
        (Provider::MpesaB2c, reference("ws_CO_404"), None, "an unknown reference"),
    ];
    for (provider, r, want, what) in cases {
        let got = store
            .find_attempt(provider, &r)
            .await
            .unwrap_or_else(|e| panic!("find_attempt {what} failed: {e}"));
        assert_eq!(got.as_ref(), want, "find_attempt {what} ({provider}, {r:?})");
    }
}

/// `stuck_processing(before, limit)` returns PROCESSING payouts last changed strictly before
/// `before`, oldest change first, at most `limit`.
pub async fn stuck_processing_filters_orders_and_limits(store: &dyn PayoutStore) {
    let created = seed(
        store,
        (1..=6)
            .map(|i| fixtures::new_payout(&format!("po_{i:02}"), &format!("dr-{i}"), month(2025, 1), &["500"]))
            .collect(),
    )
    .await;
    let mut current = Vec::new();
    for p in &created {
        current.push(move_to(store, p, PayoutStatus::Approved, at(0)).await);
    }
    // po_01 at 10, po_02 at 5, po_03 at 30, po_05 at 20 (PROCESSING); po_04 stays APPROVED;
    // po_06 went PROCESSING at 2 and then PAID at 3.
    for (i, minute) in [(0, 10), (1, 5), (2, 30), (4, 20), (5, 2)] {
        current[i] = move_to(store, &current[i], PayoutStatus::Processing, at(minute)).await;
    }
    current[5] = move_to(store, &current[5], PayoutStatus::Paid, at(3)).await;

    let ids = |v: &[Payout]| v.iter().map(|p| p.id.as_str().to_string()).collect::<Vec<_>>();
    let cases: [(i64, u32, &[&str]); 5] = [
        (20, 10, &["po_02", "po_01"]),
        (20, 1, &["po_02"]),
        (100, 10, &["po_02", "po_01", "po_05", "po_03"]),
        (5, 10, &[]),
        (100, 0, &[]),
    ];
    for (before, limit, want) in cases {
        let got = store
            .stuck_processing(at(before), limit)
            .await
            .unwrap_or_else(|e| panic!("stuck_processing failed: {e}"));
        assert_eq!(
            ids(&got),
            want,
            "stuck_processing(before minute {before}, limit {limit})"
        );
        for p in &got {
            assert_eq!(
                Some(p),
                current.iter().find(|c| c.id == p.id),
                "stuck payouts as stored"
            );
        }
    }
}

/// Audit entries are only ever appended: after each change the trail is the earlier trail,
/// unchanged, followed by the change's entries; a refused change appends nothing.
pub async fn audit_trail_is_append_only(store: &dyn PayoutStore) {
    let mut p = seed_one(store, "po_01").await;
    let mut trail = store.audit_trail(&p.id).await.expect("audit_trail");
    assert_eq!(trail.len(), 1, "a new payout's trail holds its CREATE entry");
    let statuses = [PayoutStatus::Approved, PayoutStatus::Processing, PayoutStatus::Paid];
    for (i, to) in statuses.into_iter().enumerate() {
        let when = at(i as i64 + 1);
        let mut change = fixtures::status_change(&p, to, when);
        if to == PayoutStatus::Processing {
            // Two entries in one change, kept in order.
            change
                .audit
                .push(fixtures::audit(&p.id, "ATTEMPT_OUTCOME", None, None, when));
        }
        let entries = change.audit.clone();
        // A refused change first: it must append nothing.
        let mut stale = change.clone();
        stale.expected_version -= 1;
        assert_err!(store.apply(stale).await, Error::Conflict(_), "a stale change");
        p = apply(store, change, "an audited change").await;
        let now = store.audit_trail(&p.id).await.expect("audit_trail");
        assert_eq!(
            now.len(),
            trail.len() + entries.len(),
            "entries appended by moving to {to}"
        );
        assert_eq!(
            &now[..trail.len()],
            &trail[..],
            "earlier audit entries must never change"
        );
        assert_eq!(
            &now[trail.len()..],
            &entries[..],
            "the change's entries, appended in order"
        );
        trail = now;
    }
}

/// Records that name another payout than the one written are `InvalidInput` and write nothing: a
/// new payout's audit entry, and a change's audit entries, new attempt or webhook event.
pub async fn records_must_belong_to_their_payout(store: &dyn PayoutStore) {
    let other = PayoutId::new("po_other");
    let mut new = fixtures::manual_payout("po_01", "dr-1", month(2025, 1), &["500"]);
    new.audit.payout_id = other.clone();
    assert_err!(
        store.create_payout(new.clone()).await,
        Error::InvalidInput(_),
        "create_payout with another payout's audit entry"
    );
    new.payout.origin = crate::domain::PayoutOrigin::Calculated;
    let batch = PeriodBatch {
        payouts: vec![new],
        carry_overs: Vec::new(),
    };
    assert_err!(
        store.create_period(batch).await,
        Error::InvalidInput(_),
        "create_period with another payout's audit entry"
    );
    assert_eq!(count(store).await, 0, "refused payouts must not be written");

    let p = seed_one(store, "po_02").await;
    let before = snapshot(store, &p.id).await;
    let mut audit = fixtures::status_change(&p, PayoutStatus::Approved, at(1));
    audit.audit[0].payout_id = other.clone();
    let mut attempt = PayoutChange::of(&p, at(1));
    attempt.new_attempt = Some(fixtures::attempt(&other, 1, Provider::MpesaB2c, at(1)));
    let mut event = PayoutChange::of(&p, at(1));
    event.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, "evt_other", &other, at(1)));
    for (change, what) in [
        (audit, "an audit entry"),
        (attempt, "an attempt"),
        (event, "a webhook event"),
    ] {
        assert_err!(
            store.apply(change).await,
            Error::InvalidInput(_),
            "apply with {what} of another payout"
        );
        assert_unchanged(store, &before, what).await;
    }
    assert_event_not_recorded(store, "evt_other", "a webhook event of another payout").await;
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

/// Bulk changes (through [`PayoutStoreExt`]: the store's [`BulkPayoutStore`](crate::store::BulkPayoutStore)
/// when it offers one, one at a time otherwise): `apply_many` answers each change as `apply` would, in order, and applies exactly the ones it
/// answers `Ok`: refused changes (stale, unknown, a second change of one payout, a duplicate event,
/// a missing attempt, a taken key) write nothing, in a batch with good changes or not, and a good
/// change is applied once even when others in its batch fail. Batches larger than a store's
/// statement size are answered in full, and `read_with_attempts` reads them back as `get` and
/// `attempts` do, in the order asked, unknown and repeated ids left out.
pub async fn apply_all_answers_each_change_as_apply_would(store: &dyn PayoutStore) {
    let created = seed(
        store,
        (1..=6)
            .map(|n| fixtures::new_payout(&format!("po_0{n}"), &format!("dr-{n}"), month(2025, 1), &["500"]))
            .collect(),
    )
    .await;
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
    answer.attempt_update = Some(AttemptUpdate {
        attempt_no: 1,
        outcome: AttemptOutcome::Accepted,
        provider_reference: Some("ref_6".into()),
        error: None,
    });
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
    missing.attempt_update = Some(AttemptUpdate {
        attempt_no: 5,
        outcome: AttemptOutcome::Accepted,
        provider_reference: None,
        error: None,
    });
    let mut taken_key = fixtures::status_change(&p5, PayoutStatus::Processing, at(3));
    let mut taken = fixtures::attempt(&p5.id, 1, Provider::MpesaB2c, at(3));
    taken.idempotency_key = PayoutAttempt::key_for(&p3.id, 1);
    taken_key.new_attempt = Some(taken);
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

fn conflicted(result: &Result<Payout, Error>, id: &PayoutId) -> bool {
    result.as_ref().err().is_some_and(|e| is_conflict_for(e, id))
}

/// How many `APPROVED` entries a payout's audit trail holds.
async fn approvals(store: &dyn PayoutStore, id: &PayoutId) -> usize {
    let trail = store.audit_trail(id).await.expect("audit_trail");
    trail.iter().filter(|e| e.action == "APPROVED").count()
}
