//! Checks of attempts and webhook events: duplicates, updates, lookups by reference, stuck payouts.

use crate::domain::{AttemptOutcome, PayoutAttempt, Provider};
use crate::error::Error;
use crate::provider::EventReference;
use crate::status::PayoutStatus;
use crate::store::{PayoutChange, PayoutStore};
use crate::testkit::fixtures::{self, at};

use super::{
    apply, assert_err, assert_refused_as_conflict, assert_unchanged, event_seen, everything, seed_numbered, seed_one,
    snapshot, with_keyed_attempt,
};

/// A new attempt whose number the payout already has, or whose idempotency key any payout already
/// has, is a `Conflict` and writes nothing.
pub async fn duplicate_attempt_conflicts(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 2).await;
    let (p1, p2) = (&created[0], &created[1]);
    let mut first = PayoutChange::of(p1, at(1));
    first.new_attempt = Some(fixtures::attempt(&p1.id, 1, Provider::MpesaB2c, at(1)));
    let p1 = apply(store, first, "recording attempt 1").await;
    let before1 = snapshot(store, &p1.id).await;
    let before2 = snapshot(store, &p2.id).await;

    let key1 = PayoutAttempt::key_for(&p1.id, 1);
    let same_no = with_keyed_attempt(everything(&p1, "evt_dup_no"), 1, &format!("{key1}-other"), at(2));
    assert_refused_as_conflict(store, same_no, &before1, "a second attempt 1").await;
    let same_key = with_keyed_attempt(everything(&p1, "evt_dup_key"), 2, &key1, at(2));
    assert_refused_as_conflict(store, same_key, &before1, "attempt 2 reusing attempt 1's key").await;
    // Keys are unique across payouts.
    let other_payouts_key = with_keyed_attempt(PayoutChange::of(p2, at(3)), 1, &key1, at(3));
    assert_refused_as_conflict(
        store,
        other_payouts_key,
        &before2,
        "an attempt reusing another payout's key",
    )
    .await;

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
    let created = seed_numbered(store, 2).await;
    let (p, q) = (&created[0], &created[1]);
    assert!(!event_seen(store, Provider::MpesaB2c, "evt_1").await);
    let mut change = fixtures::status_change(p, PayoutStatus::Approved, at(1));
    change.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, "evt_1", &p.id, at(1)));
    let p = apply(store, change, "the first delivery").await;
    assert!(
        event_seen(store, Provider::MpesaB2c, "evt_1").await,
        "a recorded event is seen"
    );
    assert!(
        !event_seen(store, Provider::StripeConnect, "evt_1").await,
        "event ids are per provider"
    );
    assert!(!event_seen(store, Provider::MpesaB2c, "evt_2").await);

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
    assert!(event_seen(store, Provider::StripeConnect, "evt_1").await);
}

/// A change that is refused for several reasons at once gets the first in a fixed order: the
/// webhook event is recorded (`DuplicateEvent`), then the new attempt's number or key is taken
/// (`Conflict`), then the updated attempt is missing (`InvalidInput`); each writes nothing. (A
/// store whose write fails as a whole, as one SQL statement does, must still answer in this order.)
pub async fn refusals_come_in_one_order(store: &dyn PayoutStore) {
    let p = seed_one(store, "po_01").await;
    let mut first = PayoutChange::of(&p, at(1));
    first.new_attempt = Some(fixtures::attempt(&p.id, 1, Provider::MpesaB2c, at(1)));
    first.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, "evt_1", &p.id, at(1)));
    let p = apply(store, first, "an attempt and an event").await;
    let before = snapshot(store, &p.id).await;

    // Attempt 2 under attempt 1's key, an update of an attempt 9 that does not exist.
    let mut taken = fixtures::attempt(&p.id, 2, Provider::MpesaB2c, at(2));
    taken.idempotency_key = PayoutAttempt::key_for(&p.id, 1);
    let missing = fixtures::attempt_update(9, AttemptOutcome::Accepted, None);
    let change = |event: bool, attempt: bool| {
        let mut c = PayoutChange::of(&p, at(2));
        c.attempt_update = Some(missing.clone());
        c.new_attempt = attempt.then(|| taken.clone());
        c.webhook_event = event.then(|| fixtures::webhook_event(Provider::MpesaB2c, "evt_1", &p.id, at(2)));
        c
    };
    assert_err!(
        store.apply(change(true, true)).await,
        Error::DuplicateEvent { ref event_id, .. } if event_id == "evt_1",
        "a recorded event, a taken key and a missing attempt"
    );
    assert_unchanged(store, &before, "a recorded event, a taken key and a missing attempt").await;
    assert_err!(
        store.apply(change(false, true)).await,
        Error::Conflict(ref id) if *id == p.id,
        "a taken key and a missing attempt"
    );
    assert_unchanged(store, &before, "a taken key and a missing attempt").await;
    assert_err!(
        store.apply(change(false, false)).await,
        Error::InvalidInput(_),
        "a missing attempt"
    );
    assert_unchanged(store, &before, "a missing attempt").await;
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
        let mut update = fixtures::attempt_update(1, outcome.clone(), reference);
        update.error = error.map(String::from);
        change.attempt_update = Some(update);
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
    missing.attempt_update = Some(fixtures::attempt_update(7, AttemptOutcome::Succeeded, None));
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
    let created = seed_numbered(store, 2).await;
    for (p, provider, reference) in [
        (&created[0], Provider::MpesaB2c, "ws_CO_1"),
        (&created[1], Provider::StripeConnect, "tr_1"),
    ] {
        let mut change = PayoutChange::of(p, at(1));
        change.new_attempt = Some(fixtures::attempt(&p.id, 1, provider, at(1)));
        change.attempt_update = None;
        let p = apply(store, change, "recording an attempt").await;
        let mut update = PayoutChange::of(&p, at(2));
        update.attempt_update = Some(fixtures::attempt_update(1, AttemptOutcome::Accepted, Some(reference)));
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
