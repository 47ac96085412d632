//! Checks of the consultation ledger: a consultation is held by at most one live payout item or
//! carry-over, and clawed back at most once.

use crate::domain::{ItemKind, PayoutId, PayoutItem, Period};
use crate::error::Error;
use crate::money::Money;
use crate::status::PayoutStatus;
use crate::store::{
    CarryOver, ClawbackDue, HeldConsultation, Holder, NewPayout, PayoutStore, PayoutStoreExt, SkipReason,
};
use crate::testkit::fixtures::{self, at, kes, month};

use super::{assert_err, assert_unchanged, count, move_to, seed, snapshot};

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
                 held_by,
             }| {
                let by = match held_by {
                    Holder::Payout(id) => id.to_string(),
                    Holder::CarryOver(period) => format!("carry-over {period}"),
                };
                (appointment_id, by)
            },
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

/// An item of `kind` for consultation `reference`, of `amount` KES.
fn entry(kind: ItemKind, reference: &str, amount: &str) -> PayoutItem {
    let mut item = fixtures::item(reference, kes(amount), at(0));
    item.kind = kind;
    item
}

/// A carry-over of `doctor` for `period` holding `items`, its amount their sum.
fn carrying(doctor: &str, period: Period, items: Vec<PayoutItem>) -> CarryOver {
    let amount = Money::sum(crate::money::Currency::KES, items.iter().map(|i| &i.amount)).expect("KES");
    CarryOver {
        items,
        ..fixtures::carry_over(doctor, period, amount)
    }
}

/// `clawbacks_due(ids)`, sorted by consultation, as (consultation, amount).
async fn due(store: &dyn PayoutStore, ids: &[&str]) -> Vec<(String, Money)> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let mut due: Vec<(String, Money)> = store
        .clawbacks_due(&ids)
        .await
        .unwrap_or_else(|e| panic!("clawbacks_due failed: {e}"))
        .into_iter()
        .map(|ClawbackDue { appointment_id, amount }| (appointment_id, amount))
        .collect();
    due.sort_by(|a, b| a.0.cmp(&b.0));
    due
}

/// A carry-over's consultation and clawback items join the ledger with it, and hold for good; a
/// consultation of a `PAID` payout or of a carry-over is due for a clawback until a live
/// `CLAWBACK` item (of a payout or a carry-over) takes it, and again once that item's payout is
/// cancelled with release; one of an unpaid payout never is. A payout or carry-over whose ledger
/// entries are taken (stored or earlier in the batch) is skipped as `ConsultationHeld`.
pub async fn carry_overs_and_clawbacks_join_the_ledger(store: &dyn PayoutStore) {
    let jan = month(2025, 1);
    let feb = month(2025, 2);
    let written = seed(
        store,
        vec![
            paying("po_01", "dr-1", jan, &["apt-1", "apt-2"]),
            paying("po_02", "dr-2", jan, &["apt-3"]),
        ],
    )
    .await;
    let mut paid = written[0].clone();
    for (i, to) in [PayoutStatus::Approved, PayoutStatus::Processing, PayoutStatus::Paid]
        .into_iter()
        .enumerate()
    {
        paid = move_to(store, &paid, to, at(i as i64 + 1)).await;
    }
    let carried = vec![
        entry(ItemKind::Consultation, "apt-4", "500"),
        entry(ItemKind::Consultation, "apt-5", "500"),
    ];
    let outcome = store
        .create_period(fixtures::batch(Vec::new(), vec![carrying("dr-3", jan, carried)]))
        .await
        .expect("create_period, a carry-over with items");
    assert_eq!(outcome.carried_over, vec!["dr-3".into()]);
    assert_eq!(
        held(store, &["apt-2", "apt-4", "apt-5"]).await,
        pairs(&[
            ("apt-2", "po_01"),
            ("apt-4", "carry-over 2025-01-01..2025-01-31"),
            ("apt-5", "carry-over 2025-01-01..2025-01-31")
        ]),
        "a carry-over holds the consultations it carries"
    );
    assert_eq!(
        due(store, &["apt-1", "apt-3", "apt-4", "apt-9"]).await,
        vec![("apt-1".to_string(), kes("500")), ("apt-4".to_string(), kes("500"))],
        "paid (PAID payout) or carried consultations are due; an unpaid payout's and unknown ones are not"
    );

    let mut clawing = paying("po_03", "dr-1", feb, &["apt-6", "apt-7"]);
    clawing.items.insert(1, entry(ItemKind::Clawback, "apt-1", "-500"));
    clawing.payout.amount_due = kes("500");
    let batch = fixtures::batch(
        vec![clawing, paying("po_04", "dr-4", feb, &["apt-4"])],
        vec![
            carrying("dr-3", feb, vec![entry(ItemKind::Clawback, "apt-4", "-500")]),
            carrying("dr-5", feb, vec![entry(ItemKind::Clawback, "apt-1", "-500")]),
            carrying("dr-6", feb, vec![entry(ItemKind::Consultation, "apt-7", "500")]),
        ],
    );
    let outcome = store.create_period(batch).await.expect("create_period, clawbacks");
    assert_eq!(outcome.created, vec![PayoutId::new("po_03")]);
    assert_eq!(outcome.carried_over, vec!["dr-3".into()]);
    assert_eq!(
        outcome.skipped,
        vec![
            ("dr-4".into(), SkipReason::ConsultationHeld),
            ("dr-5".into(), SkipReason::ConsultationHeld),
            ("dr-6".into(), SkipReason::ConsultationHeld),
        ],
        "a consultation a carry-over holds, a clawback taken earlier in the batch, a consultation paid earlier in the batch"
    );
    assert_eq!(
        store.items(&PayoutId::new("po_03")).await.expect("items")[1].kind,
        ItemKind::Clawback,
        "a clawback item is stored as one"
    );
    assert_eq!(
        due(store, &["apt-1", "apt-4"]).await,
        Vec::new(),
        "each is clawed back once"
    );
    let open = store
        .open_carry_overs(month(2025, 3).start)
        .await
        .expect("open_carry_overs");
    let negative = open
        .iter()
        .find(|c| c.doctor_id.as_str() == "dr-3" && c.period == feb)
        .expect("the negative carry-over is open");
    assert_eq!(negative.amount, kes("-500"), "a carry-over may be negative");

    // A clawback released with its cancelled payout is due again; a voided one stays taken.
    let po_03 = store.get(&PayoutId::new("po_03")).await.expect("po_03");
    let mut cancel = fixtures::status_change(&po_03, PayoutStatus::Cancelled, at(20));
    cancel.release_consultations = true;
    store.apply(cancel).await.expect("cancel, releasing");
    assert_eq!(due(store, &["apt-1"]).await, vec![("apt-1".to_string(), kes("500"))]);
    assert_eq!(held(store, &["apt-6", "apt-7"]).await, pairs(&[]));
    assert_eq!(paid.status, PayoutStatus::Paid);

    // A cancel that voids the consultations still releases the clawbacks (a cancelled payout
    // collected nothing): one payout through `apply`, one through `apply_many`.
    let clawing_apt_1 = |id: &str, period: Period, consultation: &str| {
        let mut new = paying(id, "dr-1", period, &[consultation, "apt-1"]);
        new.items[0].amount = kes("500.01");
        new.items[1] = entry(ItemKind::Clawback, "apt-1", "-500");
        new.payout.amount_due = kes("0.01");
        new
    };
    let voided = vec![clawing_apt_1("po_05", month(2025, 3), "apt-8")];
    let written = seed(store, voided).await;
    assert_eq!(due(store, &["apt-1"]).await, Vec::new(), "po_05 takes apt-1's clawback");
    store
        .apply(fixtures::status_change(&written[0], PayoutStatus::Cancelled, at(30)))
        .await
        .expect("cancel, voiding");
    assert_eq!(
        due(store, &["apt-1"]).await,
        vec![("apt-1".to_string(), kes("500"))],
        "a voided payout's clawback is owed again"
    );
    assert_eq!(
        held(store, &["apt-8"]).await,
        pairs(&[("apt-8", "po_05")]),
        "its consultations stay voided"
    );

    let again = clawing_apt_1("po_07", month(2025, 4), "apt-10");
    let written = seed(store, vec![again]).await;
    let results = store
        .apply_many(vec![fixtures::status_change(
            &written[0],
            PayoutStatus::Cancelled,
            at(31),
        )])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        due(store, &["apt-1"]).await,
        vec![("apt-1".to_string(), kes("500"))],
        "the same through apply_many"
    );
    assert_eq!(held(store, &["apt-10"]).await, pairs(&[("apt-10", "po_07")]));
}
