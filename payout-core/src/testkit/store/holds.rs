//! Checks of holds: a payout's hold kept as written, and doctors put on hold once.

use futures::StreamExt;

use crate::domain::{DoctorId, HoldScope, PayoutId};
use crate::error::Error;
use crate::status::PayoutStatus;
use crate::store::{Page, PayoutChange, PayoutFilter, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at, month};

use super::{apply, assert_err, count, seed_numbered};

/// A payout's hold is read back exactly as written, whichever way it is written (`apply`,
/// `apply_many`) and read (`get`, `list`, `stream`, `read_with_attempts`); a change without one
/// keeps it, a release replaces it whole and is kept; a new payout carrying a hold is refused.
pub async fn holds_are_kept_as_written(store: &dyn PayoutStore) {
    let seeded = seed_numbered(store, 3).await;
    let mut hold = fixtures::hold(HoldScope::Payout, at(1));
    hold.reason = "\"quoted\", accents \u{e9}\u{e8} and a\nnew line".into();
    let mut change = PayoutChange::of(&seeded[0], at(1));
    change.patch.hold = Some(hold.clone());
    change
        .audit
        .push(fixtures::audit(&seeded[0].id, "HOLD", None, None, at(1)));
    let held = apply(store, change, "a hold").await;
    assert_eq!(held.hold.as_ref(), Some(&hold));
    assert_eq!(held.active_hold(), Some(&hold));

    let doctor_hold = fixtures::hold(HoldScope::Doctor, at(2));
    let mut many = Vec::new();
    for p in &seeded[1..] {
        let mut change = PayoutChange::of(p, at(2));
        change.patch.hold = Some(doctor_hold.clone());
        many.push(change);
    }
    for r in store.apply_many(many).await {
        assert_eq!(r.expect("apply_many of holds").hold.as_ref(), Some(&doctor_hold));
    }

    let approve = fixtures::status_change(&held, PayoutStatus::Approved, at(3));
    let approved = apply(store, approve, "a change without a hold").await;
    assert_eq!(approved.hold.as_ref(), Some(&hold), "a change without a hold keeps it");
    let mut release = PayoutChange::of(&approved, at(4));
    let released = hold.released("admin:second".into(), at(4));
    release.patch.hold = Some(released.clone());
    let after = apply(store, release, "a release").await;
    assert_eq!(after.hold.as_ref(), Some(&released), "a released hold is kept");
    assert_eq!(after.active_hold(), None);

    let read = store.get(&seeded[0].id).await.expect("get");
    assert_eq!(read.hold.as_ref(), Some(&released));
    let listed = store
        .list(&PayoutFilter::default(), &Page::default())
        .await
        .expect("list")
        .payouts;
    let streamed: Vec<_> = store
        .stream(PayoutFilter::default())
        .map(|p| p.expect("stream"))
        .collect()
        .await;
    let ids: Vec<PayoutId> = seeded.iter().map(|p| p.id.clone()).collect();
    let with_attempts = store.read_with_attempts(&ids).await.expect("read_with_attempts");
    for p in listed
        .iter()
        .chain(&streamed)
        .chain(with_attempts.iter().map(|(p, _)| p))
    {
        let expected = if p.id == seeded[0].id { &released } else { &doctor_hold };
        assert_eq!(p.hold.as_ref(), Some(expected), "{} as read", p.id);
    }
    let trail = store.audit_trail(&seeded[0].id).await.expect("audit");
    assert!(trail.iter().any(|e| e.action == "HOLD"), "the hold's audit entry");

    let mut new = fixtures::new_payout("po_held", "dr-held", month(2025, 1), &["500"]);
    new.payout.hold = Some(hold);
    let before = count(store).await;
    assert_err!(
        store.create_payout(new.clone()).await,
        Error::InvalidInput(_),
        "a new payout carrying a hold"
    );
    assert_err!(
        store.create_period(fixtures::batch(vec![new], Vec::new())).await,
        Error::InvalidInput(_),
        "a batch with a payout carrying a hold"
    );
    assert_eq!(count(store).await, before, "nothing written");
}

/// A doctor is put on hold once (a second hold is `DoctorAlreadyHeld` and keeps the first), is
/// found by `doctor_holds` and listed oldest first by `all_doctor_holds`, and released once
/// (`DoctorNotHeld` after), which returns the hold.
pub async fn doctor_holds_are_placed_once_and_released(store: &dyn PayoutStore) {
    let first = fixtures::doctor_hold("dr-1", at(5));
    let second = fixtures::doctor_hold("dr-2", at(1));
    let third = fixtures::doctor_hold("dr-3", at(1));
    for hold in [&first, &second, &third] {
        store.place_doctor_hold(hold.clone()).await.expect("place");
    }
    let mut again = fixtures::doctor_hold("dr-1", at(9));
    again.reason = "another reason".into();
    assert_err!(
        store.place_doctor_hold(again).await,
        Error::DoctorAlreadyHeld(d) if d.as_str() == "dr-1",
        "a doctor held twice"
    );
    let asked = [
        DoctorId::new("dr-1"),
        DoctorId::new("dr-9"),
        DoctorId::new("dr-1"),
        DoctorId::new("dr-3"),
    ];
    let mut found = store.doctor_holds(&asked).await.expect("doctor_holds");
    found.sort_by(|a, b| a.doctor_id.cmp(&b.doctor_id));
    assert_eq!(
        found,
        vec![first.clone(), third.clone()],
        "each held doctor once; the first hold kept"
    );
    assert!(store.doctor_holds(&[]).await.expect("doctor_holds").is_empty());

    let page = store.all_doctor_holds(&Page::new(2, 0)).await.expect("all");
    assert_eq!(page.total, 3);
    assert_eq!(
        page.holds,
        vec![second.clone(), third.clone()],
        "oldest first, then by doctor"
    );
    let page = store.all_doctor_holds(&Page::new(2, 2)).await.expect("all");
    assert_eq!(page.holds, vec![first.clone()]);

    assert_eq!(
        store
            .release_doctor_hold(&DoctorId::new("dr-1"))
            .await
            .expect("release"),
        first
    );
    assert_err!(
        store.release_doctor_hold(&DoctorId::new("dr-1")).await,
        Error::DoctorNotHeld(d) if d.as_str() == "dr-1",
        "a doctor released twice"
    );
    assert_eq!(store.all_doctor_holds(&Page::default()).await.expect("all").total, 2);
    store
        .place_doctor_hold(fixtures::doctor_hold("dr-1", at(20)))
        .await
        .expect("held again after a release");
}
