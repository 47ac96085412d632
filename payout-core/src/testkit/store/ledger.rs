//! Checks of the consultation ledger: a consultation is held by at most one live payout item.

use crate::domain::{PayoutId, Period};
use crate::error::Error;
use crate::status::PayoutStatus;
use crate::store::{HeldConsultation, NewPayout, PayoutStore, SkipReason};
use crate::testkit::fixtures::{self, at, kes, month};

use super::{assert_err, assert_unchanged, count, seed, snapshot};

/// A calculated payout `id` of `doctor` for `period` with one 500 KES consultation item per id in
/// `consultations`.
fn paying(id: &str, doctor: &str, period: Period, consultations: &[&str]) -> NewPayout {
    let amounts: Vec<&str> = consultations.iter().map(|_| "500").collect();
    let mut new = fixtures::new_payout(id, doctor, period, &amounts);
    for (item, c) in new.items.iter_mut().zip(consultations) {
        item.reference = (*c).to_string();
    }
    new
}

/// `held_consultations(ids)`, sorted by consultation.
async fn held(store: &dyn PayoutStore, ids: &[&str]) -> Vec<(String, String)> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let mut held: Vec<(String, String)> = store
        .held_consultations(&ids)
        .await
        .unwrap_or_else(|e| panic!("held_consultations failed: {e}"))
        .into_iter()
        .map(
            |HeldConsultation {
                 appointment_id,
                 payout_id,
             }| (appointment_id, payout_id.to_string()),
        )
        .collect();
    held.sort();
    held
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// A consultation on a live payout is held by it; a payout of another period (or of the same
/// batch) with that consultation is skipped as `ConsultationHeld` and writes nothing; a manual
/// payout with it is a `Conflict`.
pub async fn a_consultation_is_held_by_one_live_payout(store: &dyn PayoutStore) {
    assert_eq!(held(store, &[]).await, pairs(&[]), "nothing held in an empty store");
    seed(
        store,
        vec![paying("po_01", "dr-1", month(2025, 1), &["apt-1", "apt-2"])],
    )
    .await;
    assert_eq!(
        held(store, &["apt-1", "apt-2", "apt-9", "apt-1"]).await,
        pairs(&[("apt-1", "po_01"), ("apt-2", "po_01")]),
        "held_consultations names the holder of each held id, once"
    );

    // An overlapping period: another slot, the same consultation.
    let overlap = fixtures::batch(
        vec![
            paying("po_02", "dr-1", month(2025, 2), &["apt-3", "apt-2"]),
            paying("po_03", "dr-2", month(2025, 2), &["apt-4"]),
            paying("po_04", "dr-3", month(2025, 2), &["apt-4", "apt-5"]),
            paying("po_05", "dr-4", month(2025, 2), &["apt-6", "apt-6"]),
        ],
        Vec::new(),
    );
    let outcome = store.create_period(overlap).await.expect("create_period");
    assert_eq!(outcome.created, vec![PayoutId::new("po_03")]);
    assert_eq!(
        outcome.skipped,
        vec![
            ("dr-1".into(), SkipReason::ConsultationHeld),
            ("dr-3".into(), SkipReason::ConsultationHeld),
            ("dr-4".into(), SkipReason::ConsultationHeld),
        ],
        "held by a stored payout, by an earlier payout of the batch, twice in one payout"
    );
    assert_err!(
        store.get(&PayoutId::new("po_02")).await,
        Error::NotFound(_),
        "a skipped payout"
    );
    assert_eq!(
        held(store, &["apt-3", "apt-4", "apt-5", "apt-6"]).await,
        pairs(&[("apt-4", "po_03")]),
        "a skipped payout's consultations stay free"
    );

    let before = snapshot(store, &PayoutId::new("po_01")).await;
    let mut manual = paying("po_06", "dr-1", month(2025, 3), &["apt-1"]);
    manual.payout.origin = crate::domain::PayoutOrigin::Manual;
    assert_err!(
        store.create_payout(manual).await,
        Error::Conflict(id) if id.as_str() == "po_06",
        "a manual payout with a held consultation"
    );
    assert_unchanged(store, &before, "a refused manual payout").await;
    assert_eq!(count(store).await, 2);
}

/// Cancelling with `release_consultations` frees the payout's consultations in the same step (a
/// new payout may hold them); cancelling without keeps them held (voided); releasing without a
/// move to `CANCELLED` is `InvalidInput` and changes nothing.
pub async fn cancelling_releases_or_voids_the_consultations(store: &dyn PayoutStore) {
    let written = seed(
        store,
        vec![
            paying("po_01", "dr-1", month(2025, 1), &["apt-1", "apt-2"]),
            paying("po_02", "dr-2", month(2025, 1), &["apt-3"]),
        ],
    )
    .await;
    let (released, voided) = (&written[0], &written[1]);

    let mut wrong = fixtures::status_change(released, PayoutStatus::Approved, at(10));
    wrong.release_consultations = true;
    assert_err!(
        store.apply(wrong).await,
        Error::InvalidInput(_),
        "releasing consultations without cancelling"
    );
    assert_eq!(
        held(store, &["apt-1", "apt-2"]).await,
        pairs(&[("apt-1", "po_01"), ("apt-2", "po_01")])
    );

    let mut cancel = fixtures::status_change(released, PayoutStatus::Cancelled, at(10));
    cancel.release_consultations = true;
    store.apply(cancel).await.expect("cancel, releasing");
    store
        .apply(fixtures::status_change(voided, PayoutStatus::Cancelled, at(10)))
        .await
        .expect("cancel, voiding");
    assert_eq!(
        held(store, &["apt-1", "apt-2", "apt-3"]).await,
        pairs(&[("apt-3", "po_02")]),
        "released consultations are free; voided ones stay held by the cancelled payout"
    );

    let again = fixtures::batch(
        vec![
            paying("po_03", "dr-1", month(2025, 2), &["apt-1", "apt-2"]),
            paying("po_04", "dr-2", month(2025, 2), &["apt-3"]),
        ],
        Vec::new(),
    );
    let outcome = store.create_period(again).await.expect("create_period");
    assert_eq!(outcome.created, vec![PayoutId::new("po_03")]);
    assert_eq!(outcome.skipped, vec![("dr-2".into(), SkipReason::ConsultationHeld)]);
    assert_eq!(
        held(store, &["apt-1", "apt-2"]).await,
        pairs(&[("apt-1", "po_03"), ("apt-2", "po_03")])
    );
    assert_eq!(
        store.get(&PayoutId::new("po_03")).await.expect("po_03").amount_due,
        kes("1000")
    );
}
