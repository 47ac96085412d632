//! Checks of what the approval policy and the operator's actions keep: each attempt's destination,
//! a payout's approval (the details fingerprint and the approvers) and its resolution.

use futures::StreamExt;

use crate::domain::{
    Approval, BankAccount, PayoutDestination, Provider, Resolution, ResolutionOutcome, ResolutionState,
    details_fingerprint,
};
use crate::error::Error;
use crate::provider::EventReference;
use crate::status::PayoutStatus;
use crate::store::{NewPayout, Page, PayoutChange, PayoutFilter, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at, month};

use super::{apply, assert_err, count, seed_numbered};

/// A bank destination with every field set, characters that need escaping included.
fn bank() -> PayoutDestination {
    PayoutDestination::Bank(BankAccount {
        account_name: "Dr \"Quote\" O'Neil, \u{e9}\u{e8}".to_string(),
        account_number: "GB33BUKB20201555555555".to_string(),
        bank_name: Some("Bank \\ of Tests".to_string()),
        bank_code: Some("BUKBGB22".to_string()),
        branch_code: Some("202015".to_string()),
        country: Some("GB".to_string()),
    })
}

/// A provider batch's members are the attempts stored with its id, whichever way they were written
/// (`apply`, or `apply_many`): `batch_attempts` returns exactly them, ordered by key, for that
/// provider only; every read gives each attempt its batch id back, and an update of the attempt
/// keeps it.
pub async fn batch_members_are_the_attempts_stored_with_its_id(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 4).await;
    let in_batch = |n: usize, provider: Provider, batch: Option<&str>| {
        let mut a = fixtures::attempt(&created[n].id, 1, provider, at(1));
        a.batch_id = batch.map(str::to_string);
        a
    };
    let members = [
        in_batch(2, Provider::PaypalPayouts, Some("batch-1")),
        in_batch(0, Provider::PaypalPayouts, Some("batch-1")),
    ];
    let other_provider = in_batch(1, Provider::StripeConnect, Some("batch-1"));
    let alone = in_batch(3, Provider::PaypalPayouts, None);
    let mut change = PayoutChange::of(&created[2], at(1));
    change.new_attempt = Some(members[0].clone());
    apply(store, change, "a batch member by apply").await;
    let mut many = Vec::new();
    for (n, a) in [(0, &members[1]), (1, &other_provider), (3, &alone)] {
        let mut change = PayoutChange::of(&created[n], at(1));
        change.new_attempt = Some(a.clone());
        many.push(change);
    }
    for r in store.apply_many(many).await {
        r.unwrap_or_else(|e| panic!("apply_many of batch members failed: {e}"));
    }
    let mut expected = members.to_vec();
    expected.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
    let found = store
        .batch_attempts(Provider::PaypalPayouts, "batch-1")
        .await
        .expect("batch_attempts");
    assert_eq!(found, expected, "the members, by key, of that provider only");
    assert!(
        store
            .batch_attempts(Provider::PaypalPayouts, "batch-2")
            .await
            .expect("batch_attempts")
            .is_empty()
    );
    assert_eq!(
        store.attempts(&created[3].id).await.expect("attempts"),
        vec![alone],
        "an attempt in no batch reads back without one"
    );
    // An update of the attempt keeps its batch.
    let payout = store.get(&created[0].id).await.expect("get");
    let mut change = PayoutChange::of(&payout, at(2));
    change.attempt_update = Some(fixtures::attempt_update(
        1,
        crate::domain::AttemptOutcome::Accepted,
        Some("item-1"),
    ));
    apply(store, change, "an update of a batch member").await;
    let read = store.attempts(&created[0].id).await.expect("attempts");
    assert_eq!(read[0].batch_id.as_deref(), Some("batch-1"));
    assert_eq!(read[0].provider_reference.as_deref(), Some("item-1"));
}

/// An attempt keeps the destination it was recorded with, in full, whichever way it is written
/// (`apply`, or `apply_many` through the store's bulk ability) and read (`attempts`,
/// `read_with_attempts`, `find_attempt`); an attempt recorded without one reads back without one,
/// and an update of the attempt keeps it.
pub async fn attempts_keep_their_destination(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 3).await;
    let mut one = fixtures::attempt(&created[0].id, 1, Provider::BankTransfer, at(1));
    one.destination = Some(bank());
    let mut change = PayoutChange::of(&created[0], at(1));
    change.new_attempt = Some(one.clone());
    apply(store, change, "an attempt with a bank destination").await;

    let mut many = Vec::new();
    let mut expected = vec![one.clone()];
    for (p, destination) in created[1..].iter().zip([
        Some(PayoutDestination::PaypalEmail {
            email: "dr.two+payouts@example.com".to_string(),
        }),
        None,
    ]) {
        let mut a = fixtures::attempt(&p.id, 1, Provider::PaypalPayouts, at(2));
        a.destination = destination;
        let mut change = PayoutChange::of(p, at(2));
        change.new_attempt = Some(a.clone());
        many.push(change);
        expected.push(a);
    }
    for r in store.apply_many(many).await {
        r.unwrap_or_else(|e| panic!("apply_many of attempts with destinations failed: {e}"));
    }

    for a in &expected {
        let read = store.attempts(&a.payout_id).await.expect("attempts");
        assert_eq!(
            read,
            vec![a.clone()],
            "attempts() of {}: the destination as recorded",
            a.payout_id
        );
        let found = store
            .find_attempt(a.provider, &EventReference::IdempotencyKey(a.idempotency_key.clone()))
            .await
            .expect("find_attempt");
        assert_eq!(found.as_ref(), Some(a), "find_attempt of {}", a.payout_id);
    }
    let ids: Vec<_> = expected.iter().map(|a| a.payout_id.clone()).collect();
    let read = store.read_with_attempts(&ids).await.expect("read_with_attempts");
    for (payout, attempts) in read {
        let a = expected
            .iter()
            .find(|a| a.payout_id == payout.id)
            .expect("a payout asked for");
        assert_eq!(attempts, vec![a.clone()], "read_with_attempts of {}", payout.id);
    }

    // An update of the attempt (its outcome, a reference) keeps the destination.
    let p = store.get(&created[0].id).await.expect("get");
    let mut update = PayoutChange::of(&p, at(3));
    update.attempt_update = Some(crate::store::AttemptUpdate {
        attempt_no: 1,
        outcome: crate::domain::AttemptOutcome::Accepted,
        provider_reference: Some("bank-ref-1".to_string()),
        error: None,
    });
    apply(store, update, "an update of the attempt").await;
    let read = store.attempts(&p.id).await.expect("attempts");
    assert_eq!(read[0].destination, Some(bank()), "an update keeps the destination");
}

/// A payout's approval and resolution are written whole by a patch and read back exactly by
/// `get`, `list`, `stream` and `read_with_attempts`; a patch without them keeps them; a later
/// approval or resolution replaces the earlier one (a second approver gone with a re-approval, a
/// pending resolution confirmed), and a new payout has neither.
pub async fn approval_and_resolution_are_kept(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 1).await;
    let p = &created[0];
    assert_eq!((&p.approval, &p.resolution), (&None, &None), "a new payout");
    let got = store.get(&p.id).await.expect("get");
    assert_eq!((&got.approval, &got.resolution), (&None, &None), "a new payout as read");

    let approval = Approval {
        details_fingerprint: details_fingerprint(None),
        approvers: vec!["admin:a".to_string(), "admin:b".to_string()],
    };
    let mut change = fixtures::status_change(p, PayoutStatus::Approved, at(1));
    change.patch.approved_by = Some("admin:a".to_string());
    change.patch.approval = Some(approval.clone());
    let p = apply(store, change, "an approval").await;
    assert_eq!(p.approval.as_ref(), Some(&approval), "apply returns the approval");

    let requested = Resolution {
        attempt_no: 1,
        outcome: ResolutionOutcome::Failed,
        provider_reference: Some("stmt-2025-01-31 \"line 4\"".to_string()),
        note: "bank statement: no debit".to_string(),
        provider_answer: "the provider still reports the attempt accepted, not settled".to_string(),
        requested_by: "admin:a".to_string(),
        requested_at: at(2),
        state: ResolutionState::Pending,
    };
    let mut change = PayoutChange::of(&p, at(2));
    change.patch.resolution = Some(requested.clone());
    let p = apply(store, change, "a pending resolution").await;
    let p = apply(
        store,
        fixtures::status_change(&p, PayoutStatus::Processing, at(3)),
        "a patch without them",
    )
    .await;

    for (what, read) in [
        ("get", store.get(&p.id).await.expect("get")),
        (
            "list",
            store
                .list(&PayoutFilter::default(), &Page::new(10, 0))
                .await
                .expect("list")
                .payouts
                .remove(0),
        ),
        (
            "stream",
            store
                .stream(PayoutFilter::default())
                .next()
                .await
                .expect("a streamed payout")
                .expect("stream"),
        ),
        (
            "read_with_attempts",
            store
                .read_with_attempts(std::slice::from_ref(&p.id))
                .await
                .expect("read_with_attempts")
                .remove(0)
                .0,
        ),
    ] {
        assert_eq!(read.approval.as_ref(), Some(&approval), "{what}: the approval");
        assert_eq!(
            read.resolution.as_ref(),
            Some(&requested),
            "{what}: the pending resolution"
        );
    }

    let replaced = Approval {
        details_fingerprint: "f".repeat(64),
        approvers: vec!["admin:c".to_string()],
    };
    let confirmed = Resolution {
        state: ResolutionState::Confirmed {
            by: "admin:b".to_string(),
            at: at(4),
        },
        ..requested
    };
    let mut change = PayoutChange::of(&p, at(4));
    change.patch.approval = Some(replaced.clone());
    change.patch.resolution = Some(confirmed.clone());
    apply(store, change, "a replaced approval and a confirmed resolution").await;
    let read = store.get(&p.id).await.expect("get");
    assert_eq!(
        read.approval,
        Some(replaced),
        "a later approval replaces the earlier one whole"
    );
    assert_eq!(read.resolution, Some(confirmed), "the resolution, confirmed");
}

/// No store creates a payout pre-approved: a new payout that is not `PENDING`, or that carries an
/// approver, an approval or a resolution, is refused with `InvalidInput` by `create_payout` and by
/// `create_period` (the whole batch), and nothing is written; the same payout without them is
/// created, with neither.
pub async fn a_new_payout_is_never_pre_approved(store: &dyn PayoutStore) {
    let approval = Approval {
        details_fingerprint: details_fingerprint(None),
        approvers: vec!["admin:a".to_string()],
    };
    let resolution = Resolution {
        attempt_no: 1,
        outcome: ResolutionOutcome::Paid,
        provider_reference: None,
        note: "no evidence".to_string(),
        provider_answer: "never asked".to_string(),
        requested_by: "admin:a".to_string(),
        requested_at: at(0),
        state: ResolutionState::Pending,
    };
    /// Gives a new payout what it may not start with.
    type Carry = fn(&mut NewPayout, &Approval, &Resolution);
    let variants: [(&str, Carry); 4] = [
        ("an approval", |n, a, _| n.payout.approval = Some(a.clone())),
        ("a resolution", |n, _, r| n.payout.resolution = Some(r.clone())),
        ("an approver", |n, _, _| {
            n.payout.approved_by = Some("admin:a".to_string())
        }),
        ("status APPROVED", |n, _, _| {
            n.payout.status = PayoutStatus::Approved;
            n.audit = fixtures::create_audit(&n.payout);
        }),
    ];
    for (what, carry) in variants {
        let mut manual = fixtures::manual_payout("po_01", "dr-1", month(2025, 1), &["1000"]);
        carry(&mut manual, &approval, &resolution);
        assert_err!(
            store.create_payout(manual).await,
            Error::InvalidInput(_),
            "create_payout of a new payout with {what}"
        );
        let good = fixtures::new_payout("po_02", "dr-2", month(2025, 1), &["500"]);
        let mut calculated = fixtures::new_payout("po_03", "dr-3", month(2025, 1), &["700"]);
        carry(&mut calculated, &approval, &resolution);
        assert_err!(
            store
                .create_period(fixtures::batch(vec![good, calculated], Vec::new()))
                .await,
            Error::InvalidInput(_),
            "create_period of a batch with a new payout with {what}"
        );
        assert_eq!(count(store).await, 0, "a refused new payout ({what}) writes nothing");
    }

    let created = store
        .create_payout(fixtures::manual_payout("po_01", "dr-1", month(2025, 1), &["1000"]))
        .await
        .expect("the same payout as every payout starts");
    assert_eq!(created.status, PayoutStatus::Pending);
    assert_eq!(
        (&created.approved_by, &created.approval, &created.resolution),
        (&None, &None, &None),
        "a new payout has no approver, approval or resolution"
    );
}
