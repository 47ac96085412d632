//! Checks of writing payouts: period batches, carry-overs, manual payouts, amounts.

use chrono::NaiveDate;

use crate::domain::{DoctorId, ItemKind, PayoutId, PayoutOrigin, Period};
use crate::error::Error;
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{CarryOver, PayoutStore, PeriodBatch, PeriodBatchOutcome, SkipReason};
use crate::testkit::fixtures::{self, at, day, kes, month};

use super::{assert_err, assert_unchanged, count, move_to, seed, snapshot};

fn doctor(id: &str) -> DoctorId {
    DoctorId::new(id)
}

/// The carry-overs `open_carry_overs(before)` returns.
async fn open_carry_overs(store: &dyn PayoutStore, before: NaiveDate) -> Vec<CarryOver> {
    store
        .open_carry_overs(before)
        .await
        .unwrap_or_else(|e| panic!("open_carry_overs({before}) failed: {e}"))
}

/// Asserts `open_carry_overs(before)` is exactly `want`.
async fn assert_open(store: &dyn PayoutStore, before: NaiveDate, want: &[CarryOver], context: &str) {
    let open = open_carry_overs(store, before).await;
    assert_eq!(open, want, "{context}: open_carry_overs({before})");
}

/// Records a 300 KES carry-over for each (doctor, period).
async fn record_carry_overs(store: &dyn PayoutStore, carried: &[(&str, Period)]) {
    let carry_overs = carried
        .iter()
        .map(|(doctor, period)| fixtures::carry_over(doctor, *period, kes("300")))
        .collect();
    run(store, fixtures::batch(Vec::new(), carry_overs), "recording carry-overs").await;
}

async fn run(store: &dyn PayoutStore, batch: PeriodBatch, context: &str) -> PeriodBatchOutcome {
    store
        .create_period(batch)
        .await
        .unwrap_or_else(|e| panic!("{context}: create_period failed: {e}"))
}

/// `create_period` creates each payout as given, with its items in order and its `CREATE` audit
/// entry, and records carry-overs; the outcome lists what it created and carried over.
pub async fn create_period_creates_payouts_items_and_audit(store: &dyn PayoutStore) {
    let jan = month(2025, 1);
    let a = fixtures::new_payout("po_01", "dr-1", jan, &["500", "750.25"]);
    let b = fixtures::new_payout("po_02", "dr-2", jan, &["1000"]);
    let batch = fixtures::batch(
        vec![a.clone(), b.clone()],
        vec![fixtures::carry_over("dr-3", jan, kes("200"))],
    );
    let outcome = run(store, batch, "a fresh batch").await;
    assert_eq!(
        outcome.created,
        vec![PayoutId::new("po_01"), PayoutId::new("po_02")],
        "created"
    );
    assert_eq!(outcome.carried_over, vec![doctor("dr-3")], "carried_over");
    assert!(
        outcome.skipped.is_empty(),
        "nothing should be skipped: {:?}",
        outcome.skipped
    );

    for new in [a, b] {
        let s = snapshot(store, &new.payout.id).await;
        assert_eq!(
            s.payout, new.payout,
            "get() should return the payout exactly as created"
        );
        assert_eq!(
            s.items, new.items,
            "items() should return the items as created, in order"
        );
        assert_eq!(
            s.audit,
            vec![new.audit.clone()],
            "the audit trail should hold the CREATE entry only"
        );
        assert!(s.attempts.is_empty(), "a new payout has no attempts");
    }
    assert_eq!(count(store).await, 2, "list total after creating two payouts");
    assert_open(
        store,
        day(2025, 2, 1),
        &[fixtures::carry_over("dr-3", jan, kes("200"))],
        "the carry-over as recorded",
    )
    .await;
}

/// Re-running the same batch (same ids) skips every doctor as `AlreadyCalculated` or
/// `AlreadyCarriedOver` and writes nothing; a doctor twice in one batch is created once.
pub async fn create_period_is_idempotent(store: &dyn PayoutStore) {
    let jan = month(2025, 1);
    let batch = fixtures::batch(
        vec![
            fixtures::new_payout("po_01", "dr-1", jan, &["500"]),
            fixtures::new_payout("po_02", "dr-2", jan, &["600"]),
        ],
        vec![fixtures::carry_over("dr-3", jan, kes("100"))],
    );
    run(store, batch.clone(), "the first run").await;
    let before = snapshot(store, &PayoutId::new("po_01")).await;

    let again = run(store, batch, "the same batch again").await;
    assert!(
        again.created.is_empty(),
        "a re-run must create nothing, created {:?}",
        again.created
    );
    assert!(again.carried_over.is_empty(), "a re-run must carry nothing over");
    assert_eq!(
        again.skipped,
        vec![
            (doctor("dr-1"), SkipReason::AlreadyCalculated),
            (doctor("dr-2"), SkipReason::AlreadyCalculated),
            (doctor("dr-3"), SkipReason::AlreadyCarriedOver),
        ],
        "a re-run skips every doctor, payouts first, in batch order"
    );
    // New ids for the same doctors and period: still skipped.
    let fresh_ids = fixtures::batch(vec![fixtures::new_payout("po_03", "dr-1", jan, &["999"])], Vec::new());
    let outcome = run(store, fresh_ids, "the same doctors under new ids").await;
    assert_eq!(outcome.skipped, vec![(doctor("dr-1"), SkipReason::AlreadyCalculated)]);
    assert_eq!(count(store).await, 2, "a re-run must not add payouts");
    assert_err!(
        store.get(&PayoutId::new("po_03")).await,
        Error::NotFound(_),
        "a skipped payout"
    );
    assert_unchanged(store, &before, "a re-run").await;
    let open = open_carry_overs(store, day(2025, 2, 1)).await;
    assert_eq!(open.len(), 1, "the carry-over is recorded once: {open:?}");

    // One doctor twice in one batch: the first is created, the second skipped.
    let twice = fixtures::batch(
        vec![
            fixtures::new_payout("po_04", "dr-4", jan, &["500"]),
            fixtures::new_payout("po_05", "dr-4", jan, &["500"]),
        ],
        Vec::new(),
    );
    let outcome = run(store, twice, "a doctor twice in one batch").await;
    assert_eq!(outcome.created, vec![PayoutId::new("po_04")]);
    assert_eq!(outcome.skipped, vec![(doctor("dr-4"), SkipReason::AlreadyCalculated)]);
    assert_eq!(count(store).await, 3);
}

/// A cancelled calculated payout, or a manual one, does not block a recalculation of the same
/// doctor and period; a live calculated one does.
pub async fn only_live_calculated_payouts_block_recalculation(store: &dyn PayoutStore) {
    let jan = month(2025, 1);
    let first = seed(store, vec![fixtures::new_payout("po_01", "dr-1", jan, &["500"])]).await;
    move_to(store, &first[0], PayoutStatus::Cancelled, at(5)).await;

    let redo = fixtures::batch(vec![fixtures::new_payout("po_02", "dr-1", jan, &["550"])], Vec::new());
    let outcome = run(store, redo, "recalculating after a cancel").await;
    assert_eq!(
        outcome.created,
        vec![PayoutId::new("po_02")],
        "a cancelled payout must not block a recalculation (skipped: {:?})",
        outcome.skipped
    );
    let third = fixtures::batch(vec![fixtures::new_payout("po_03", "dr-1", jan, &["600"])], Vec::new());
    let outcome = run(store, third, "recalculating while a live payout exists").await;
    assert_eq!(outcome.skipped, vec![(doctor("dr-1"), SkipReason::AlreadyCalculated)]);

    let manual = fixtures::manual_payout("po_04", "dr-2", jan, &["100"]);
    assert_eq!(manual.payout.origin, PayoutOrigin::Manual);
    store
        .create_payout(manual)
        .await
        .expect("create_payout of a manual payout");
    let calc = fixtures::batch(vec![fixtures::new_payout("po_05", "dr-2", jan, &["500"])], Vec::new());
    let outcome = run(store, calc, "calculating next to a manual payout").await;
    assert_eq!(
        outcome.created,
        vec![PayoutId::new("po_05")],
        "a manual payout must not block the calculation (skipped: {:?})",
        outcome.skipped
    );
}

/// A carry-over is recorded once per doctor and period: a second one, or a payout for that doctor
/// and period, is skipped as `AlreadyCarriedOver`; a carry-over for a calculated doctor and period is
/// skipped as `AlreadyCalculated`. `open_carry_overs(before)` holds those whose period ended before
/// `before`.
pub async fn carry_over_is_recorded_once(store: &dyn PayoutStore) {
    let jan = month(2025, 1);
    let first = fixtures::batch(
        vec![fixtures::new_payout("po_01", "dr-2", jan, &["500"])],
        vec![fixtures::carry_over("dr-1", jan, kes("200"))],
    );
    run(store, first, "the first carry-over").await;
    let again = fixtures::batch(
        vec![fixtures::new_payout("po_02", "dr-1", jan, &["900"])],
        vec![
            fixtures::carry_over("dr-1", jan, kes("250")),
            fixtures::carry_over("dr-2", jan, kes("50")),
        ],
    );
    let outcome = run(store, again, "a second carry-over").await;
    assert!(
        outcome.created.is_empty() && outcome.carried_over.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.skipped,
        vec![
            (doctor("dr-1"), SkipReason::AlreadyCarriedOver),
            (doctor("dr-1"), SkipReason::AlreadyCarriedOver),
            (doctor("dr-2"), SkipReason::AlreadyCalculated),
        ]
    );
    assert_eq!(count(store).await, 1, "no payout for a carried-over doctor and period");

    assert_open(
        store,
        day(2025, 2, 1),
        &[fixtures::carry_over("dr-1", jan, kes("200"))],
        "the first carry-over stands",
    )
    .await;
    assert_open(
        store,
        jan.end,
        &[],
        "a period ending on `before` has not ended before it",
    )
    .await;
}

/// A payout that consumes a carry-over marks it consumed: it is no longer open.
pub async fn carry_over_is_consumed_once(store: &dyn PayoutStore) {
    let (dec, jan, feb) = (month(2024, 12), month(2025, 1), month(2025, 2));
    record_carry_overs(store, &[("dr-1", dec), ("dr-1", jan), ("dr-2", jan)]).await;
    let mut open = open_carry_overs(store, day(2025, 3, 1)).await;
    open.sort_by(|a, b| (&a.doctor_id, a.period).cmp(&(&b.doctor_id, b.period)));
    assert_eq!(open.len(), 3, "{open:?}");

    let paying = fixtures::payout_consuming("po_01", "dr-1", feb, &["500"], &[dec, jan]);
    let outcome = run(
        store,
        fixtures::batch(vec![paying.clone()], Vec::new()),
        "a payout consuming two carry-overs",
    )
    .await;
    assert_eq!(
        outcome.created,
        vec![PayoutId::new("po_01")],
        "skipped: {:?}",
        outcome.skipped
    );
    let items = store.items(&paying.payout.id).await.expect("items");
    assert_eq!(items, paying.items);
    assert_eq!(items.iter().filter(|i| i.kind == ItemKind::CarryOver).count(), 2);

    assert_open(
        store,
        day(2025, 3, 1),
        &[fixtures::carry_over("dr-2", jan, kes("300"))],
        "consumed carry-overs must no longer be open",
    )
    .await;
}

/// A payout that wants a carry-over that is missing, consumed already (stored or earlier in the same
/// batch) is skipped as `CarryOverTaken` and consumes nothing; the rest of the batch goes through.
pub async fn taken_carry_over_skips_the_payout(store: &dyn PayoutStore) {
    let (jan, feb, mar) = (month(2025, 1), month(2025, 2), month(2025, 3));
    record_carry_overs(store, &[("dr-1", jan), ("dr-3", jan)]).await;
    let feb_batch = fixtures::batch(
        vec![fixtures::payout_consuming("po_01", "dr-1", feb, &["500"], &[jan])],
        Vec::new(),
    );
    run(store, feb_batch, "consuming dr-1's carry-over").await;

    let mar_batch = fixtures::batch(
        vec![
            // dr-1's January balance was paid in February.
            fixtures::payout_consuming("po_02", "dr-1", mar, &["500"], &[jan]),
            // dr-2 never had one.
            fixtures::payout_consuming("po_03", "dr-2", mar, &["500"], &[jan]),
            // dr-3's is consumed by the first payout of this batch that wants it...
            fixtures::payout_consuming("po_04", "dr-3", feb, &["500"], &[jan]),
            // ... so a second payout of the same doctor wanting it is refused.
            fixtures::payout_consuming("po_05", "dr-3", mar, &["500"], &[jan]),
            fixtures::new_payout("po_06", "dr-4", mar, &["500"]),
        ],
        Vec::new(),
    );
    let outcome = run(store, mar_batch, "payouts wanting taken carry-overs").await;
    assert_eq!(outcome.created, vec![PayoutId::new("po_04"), PayoutId::new("po_06")]);
    assert_eq!(
        outcome.skipped,
        vec![
            (doctor("dr-1"), SkipReason::CarryOverTaken),
            (doctor("dr-2"), SkipReason::CarryOverTaken),
            (doctor("dr-3"), SkipReason::CarryOverTaken),
        ]
    );
    for id in ["po_02", "po_03", "po_05"] {
        assert_err!(
            store.get(&PayoutId::new(id)).await,
            Error::NotFound(_),
            "skipped payout {id}"
        );
    }
    assert_eq!(count(store).await, 3);
    assert_open(store, day(2025, 4, 1), &[], "every carry-over was consumed once").await;
}

/// Cancelling the payout that consumed a carry-over reopens it, so its earnings are never lost:
/// `open_carry_overs` returns it again (with `consumed_by: None`), a new payout may consume it
/// (`create_period` or `create_payout`), and then it is taken by that payout. A carry-over consumed
/// by a payout that is not cancelled stays taken (`CarryOverTaken`, or `Conflict` in `create_payout`).
pub async fn cancelling_the_consumer_reopens_the_carry_over(store: &dyn PayoutStore) {
    let (jan, feb, mar) = (month(2025, 1), month(2025, 2), month(2025, 3));
    let after_march = day(2025, 4, 1);
    record_carry_overs(store, &[("dr-1", jan), ("dr-2", jan)]).await;
    let consumers = seed(
        store,
        vec![
            fixtures::payout_consuming("po_01", "dr-1", feb, &["500"], &[jan]),
            fixtures::payout_consuming("po_02", "dr-2", feb, &["500"], &[jan]),
        ],
    )
    .await;
    assert_open(store, after_march, &[], "both carry-overs are consumed").await;

    // Cancelling dr-1's February payout gives the January balance back.
    move_to(store, &consumers[0], PayoutStatus::Cancelled, at(5)).await;
    let cancelled = snapshot(store, &consumers[0].id).await;
    assert_open(
        store,
        after_march,
        &[fixtures::carry_over("dr-1", jan, kes("300"))],
        "a carry-over whose consumer was cancelled must be open again, with `consumed_by: None`",
    )
    .await;
    assert_open(
        store,
        jan.end,
        &[],
        "a reopened carry-over still means `period.end < before`",
    )
    .await;

    // Recalculating February consumes it again; dr-2's, consumed by a live payout, is still taken.
    let redo = fixtures::payout_consuming("po_03", "dr-1", feb, &["550"], &[jan]);
    let batch = fixtures::batch(
        vec![
            redo.clone(),
            fixtures::payout_consuming("po_04", "dr-2", mar, &["500"], &[jan]),
        ],
        Vec::new(),
    );
    let outcome = run(store, batch, "recalculating after the consumer was cancelled").await;
    assert_eq!(
        outcome.created,
        vec![PayoutId::new("po_03")],
        "a reopened carry-over may be consumed (skipped: {:?})",
        outcome.skipped
    );
    assert_eq!(
        outcome.skipped,
        vec![(doctor("dr-2"), SkipReason::CarryOverTaken)],
        "a carry-over consumed by a payout that is not cancelled stays taken"
    );
    assert_err!(
        store.get(&PayoutId::new("po_04")).await,
        Error::NotFound(_),
        "the payout wanting a taken carry-over"
    );
    assert_eq!(store.items(&redo.payout.id).await.expect("items"), redo.items);
    assert_unchanged(store, &cancelled, "re-consuming its carry-over").await;
    assert_open(store, after_march, &[], "the reopened carry-over is consumed again").await;

    // It now belongs to the new payout: a second consumer is refused.
    let batch = fixtures::batch(
        vec![fixtures::payout_consuming("po_05", "dr-1", mar, &["500"], &[jan])],
        Vec::new(),
    );
    let outcome = run(store, batch, "consuming a re-consumed carry-over").await;
    assert!(outcome.created.is_empty(), "created {:?}", outcome.created);
    assert_eq!(outcome.skipped, vec![(doctor("dr-1"), SkipReason::CarryOverTaken)]);
    let mut manual = fixtures::payout_consuming("po_06", "dr-2", mar, &["100"], &[jan]);
    manual.payout.origin = PayoutOrigin::Manual;
    assert_err!(
        store.create_payout(manual).await,
        Error::Conflict(id) if id.as_str() == "po_06",
        "create_payout consuming a carry-over of a live payout"
    );

    // Cancelled again, it is open again, and a manual payout may consume it too.
    let redone = store.get(&redo.payout.id).await.expect("get");
    move_to(store, &redone, PayoutStatus::Cancelled, at(10)).await;
    assert_open(
        store,
        after_march,
        &[fixtures::carry_over("dr-1", jan, kes("300"))],
        "reopened",
    )
    .await;
    let mut manual = fixtures::payout_consuming("po_07", "dr-1", mar, &["100"], &[jan]);
    manual.payout.origin = PayoutOrigin::Manual;
    store
        .create_payout(manual)
        .await
        .expect("create_payout consuming a reopened carry-over");
    assert_open(store, after_march, &[], "consumed by the manual payout").await;
    assert_eq!(count(store).await, 4, "po_01, po_02, po_03 and po_07");
}

/// A payout whose `amount_due` is not the sum of its items (or whose items are in another currency)
/// is refused with `InvalidInput`, and nothing of its batch is written.
pub async fn amount_must_equal_sum_of_items(store: &dyn PayoutStore) {
    let (jan, feb) = (month(2025, 1), month(2025, 2));
    record_carry_overs(store, &[("dr-9", jan)]).await;

    let good = fixtures::payout_consuming("po_01", "dr-9", feb, &["500"], &[jan]);
    let mut wrong_sum = fixtures::new_payout("po_02", "dr-2", feb, &["500", "250"]);
    wrong_sum.payout.amount_due = kes("700");
    wrong_sum.audit = fixtures::create_audit(&wrong_sum.payout);
    let batch = fixtures::batch(
        vec![good.clone(), wrong_sum.clone()],
        vec![fixtures::carry_over("dr-3", feb, kes("100"))],
    );
    assert_err!(
        store.create_period(batch).await,
        Error::InvalidInput(_),
        "a batch with a wrong sum"
    );
    assert_eq!(count(store).await, 0, "a refused batch must write no payout");
    assert_err!(
        store.get(&good.payout.id).await,
        Error::NotFound(_),
        "the good payout of a refused batch"
    );
    assert_open(
        store,
        day(2025, 3, 1),
        &[fixtures::carry_over("dr-9", jan, kes("300"))],
        "a refused batch must record no carry-over and consume none",
    )
    .await;

    let mut other_currency = fixtures::new_payout("po_03", "dr-3", feb, &["500"]);
    other_currency.items[0].amount = Money::parse("500", Currency::USD).expect("USD");
    let batch = fixtures::batch(vec![other_currency], Vec::new());
    assert_err!(
        store.create_period(batch).await,
        Error::InvalidInput(_),
        "an item in another currency"
    );
    assert_err!(
        store.create_payout(wrong_sum).await,
        Error::InvalidInput(_),
        "create_payout with a wrong sum"
    );
    for (id, amounts) in [("po_05", ["500", "-500"]), ("po_06", ["500", "-600"])] {
        let mut not_positive = fixtures::manual_payout(id, "dr-5", feb, &amounts);
        not_positive.items[1].kind = ItemKind::Clawback;
        assert_err!(
            store.create_payout(not_positive.clone()).await,
            Error::InvalidInput(_),
            "a payout of zero or less"
        );
        not_positive.payout.origin = crate::domain::PayoutOrigin::Calculated;
        assert_err!(
            store
                .create_period(fixtures::batch(vec![not_positive], Vec::new()))
                .await,
            Error::InvalidInput(_),
            "a calculated payout of zero or less"
        );
    }
    assert_eq!(count(store).await, 0, "refused payouts must not be written");

    // Deductions count: 1000 - 150 = 850.
    let mut with_deduction = fixtures::manual_payout("po_04", "dr-4", feb, &["1000", "-150"]);
    with_deduction.items[1].kind = ItemKind::Deduction;
    assert_eq!(with_deduction.payout.amount_due, kes("850"));
    store
        .create_payout(with_deduction)
        .await
        .expect("a payout whose items (deductions included) add up");
}

/// `create_payout` stores a manual payout with its items and audit entry; an existing id is a
/// `Conflict` that changes nothing.
pub async fn create_payout_creates_a_manual_payout(store: &dyn PayoutStore) {
    let new = fixtures::manual_payout("po_01", "dr-1", month(2025, 1), &["1200", "300"]);
    let created = store.create_payout(new.clone()).await.expect("create_payout");
    assert_eq!(created, new.payout, "create_payout returns the payout as stored");
    let s = snapshot(store, &new.payout.id).await;
    assert_eq!(s.payout, new.payout);
    assert_eq!(s.items, new.items);
    assert_eq!(s.audit, vec![new.audit.clone()]);

    let mut dup = fixtures::manual_payout("po_01", "dr-2", month(2025, 2), &["10"]);
    dup.payout.created_at = at(60);
    assert_err!(
        store.create_payout(dup).await,
        Error::Conflict(id) if id.as_str() == "po_01",
        "create_payout with an existing id"
    );
    assert_unchanged(store, &s, "a refused duplicate").await;
    assert_eq!(count(store).await, 1);

    let dup_in_batch = fixtures::batch(
        vec![
            fixtures::new_payout("po_02", "dr-2", month(2025, 1), &["10"]),
            fixtures::new_payout("po_01", "dr-3", month(2025, 1), &["10"]),
        ],
        Vec::new(),
    );
    assert_err!(
        store.create_period(dup_in_batch).await,
        Error::Conflict(id) if id.as_str() == "po_01",
        "create_period creating an existing id"
    );
    assert_err!(
        store.get(&PayoutId::new("po_02")).await,
        Error::NotFound(_),
        "a refused batch's payout"
    );
    assert_unchanged(store, &s, "a refused batch").await;
}
