//! Checks of `apply`: versions and statuses, patches, the audit trail, records naming another payout.

use crate::domain::{PayoutAttempt, PayoutId, PayoutOrigin, Provider};
use crate::error::Error;
use crate::provider::EventReference;
use crate::status::PayoutStatus;
use crate::store::{PayoutChange, PayoutPatch, PayoutStore};
use crate::testkit::fixtures::{self, at, month};

use super::{
    apply, assert_err, assert_refused_as_conflict, assert_unchanged, count, event_seen, everything, seed_one, snapshot,
};

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

    assert_refused_as_conflict(store, everything(&read, "evt_stale"), &before, "a stale change").await;
    let key = EventReference::IdempotencyKey(PayoutAttempt::key_for(&read.id, 9));
    let found = store
        .find_attempt(Provider::MpesaB2c, &key)
        .await
        .expect("find_attempt");
    assert_eq!(found, None, "the attempt of a refused change must not be recorded");

    let mut future = current.clone();
    future.version += 5;
    let at_future_version = everything(&future, "evt_future");
    assert_refused_as_conflict(store, at_future_version, &before, "a change at a future version").await;
}

/// A change that expects another status than the current one is a `Conflict` and writes nothing.
pub async fn apply_with_wrong_status_conflicts(store: &dyn PayoutStore) {
    let p = seed_one(store, "po_01").await;
    let before = snapshot(store, &p.id).await;
    let mut wrong = p.clone();
    wrong.status = PayoutStatus::Approved;
    let mut change = everything(&wrong, "evt_status");
    change.new_status = Some(PayoutStatus::Processing);
    assert_refused_as_conflict(
        store,
        change,
        &before,
        "a change expecting APPROVED on a PENDING payout",
    )
    .await;
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
    new.payout.origin = PayoutOrigin::Calculated;
    assert_err!(
        store.create_period(fixtures::batch(vec![new], Vec::new())).await,
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
    assert!(
        !event_seen(store, Provider::MpesaB2c, "evt_other").await,
        "the webhook event of a refused change was recorded"
    );
}
