//! The calculation's rules, as pure functions: what one doctor is owed for a period, item by item.
//!
//! [`plan_doctor`] turns a doctor's completed consultations (the period's, and late ones of
//! earlier periods that nobody paid), clawbacks and open carried-over balances into a
//! [`DoctorPlan`]: pay (the items and their net), carry over (below the minimum payout, or a negative
//! remainder when clawbacks took more than was earned), or nothing due (deductions took
//! everything). It reads no store, no clock and no id generator, so every rule
//! (rate and per-doctor overrides, carry-overs, deductions and their rounding, the minimum payout)
//! can be checked on its own; [`PayoutService::calculate_period`](crate::PayoutService::calculate_period)
//! streams the consultations, asks it for each doctor and writes what it decides.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::domain::{Consultation, DoctorId, ItemKind, PayoutItem, Period, Reversal};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::store::CarryOver;

/// A deduction taken from gross earnings as an explicit negative item (platform fee, withholding tax).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deduction {
    /// Its name, used as the item's reference (`platform_fee`, `withholding_tax`).
    pub name: String,
    /// Percent of gross earnings, 0..=100 (a decimal string or number in JSON).
    #[serde(with = "crate::money::decimal_serde")]
    pub percent: Decimal,
}

/// How a period is calculated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalculationPolicy {
    /// Pay per completed consultation. Default: 500 KES.
    pub rate: Money,
    /// Per-doctor rates (same currency as `rate`).
    pub overrides: HashMap<DoctorId, Money>,
    /// Net amounts below this are carried over to the next period instead of paid. Default: none.
    pub minimum_payout: Option<Money>,
    /// Deductions, each a percent of gross earnings.
    pub deductions: Vec<Deduction>,
    /// How a deduction is rounded to the currency's minor unit. Default: half away from zero.
    #[serde(skip, default = "default_rounding")]
    pub rounding: RoundingStrategy,
    /// The look-back, in days before the period's first day: completed consultations of that
    /// window that no payout holds (completed late, after their period was calculated) are paid
    /// with this period, dated when they happened and labelled late, and reversals of that window
    /// are clawed back. Default: [`DEFAULT_LOOKBACK_DAYS`]; 0 reads the period alone.
    #[serde(default = "default_lookback")]
    pub lookback_days: u32,
}

/// The default look-back of a calculation, in days.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 90;

/// The longest look-back a policy accepts, in days (ten years).
pub const MAX_LOOKBACK_DAYS: u32 = 3660;

fn default_rounding() -> RoundingStrategy {
    RoundingStrategy::MidpointAwayFromZero
}

fn default_lookback() -> u32 {
    DEFAULT_LOOKBACK_DAYS
}

impl Default for CalculationPolicy {
    fn default() -> Self {
        CalculationPolicy {
            rate: Money::from_minor_units(50_000, Currency::KES),
            overrides: HashMap::new(),
            minimum_payout: None,
            deductions: Vec::new(),
            rounding: default_rounding(),
            lookback_days: DEFAULT_LOOKBACK_DAYS,
        }
    }
}

impl CalculationPolicy {
    /// A policy paying `rate` per consultation.
    pub fn with_rate(rate: Money) -> Self {
        CalculationPolicy {
            rate,
            ..Default::default()
        }
    }

    /// The currency every amount of the calculation is in.
    pub fn currency(&self) -> Currency {
        self.rate.currency()
    }

    /// Checks the policy; an invalid one changes nothing.
    pub fn validate(&self) -> Result<()> {
        let cur = self.currency();
        let bad = |m: String| Err(Error::InvalidInput(m));
        if self.rate.is_negative() || self.rate.is_zero() {
            return bad(format!("rate must be positive, got {}", self.rate));
        }
        for (doctor, r) in &self.overrides {
            if r.currency() != cur || r.is_negative() || r.is_zero() {
                return bad(format!(
                    "rate override for {doctor} must be a positive {cur} amount, got {r}"
                ));
            }
        }
        if let Some(m) = &self.minimum_payout {
            if m.currency() != cur || m.is_negative() {
                return bad(format!("minimum payout must be a non-negative {cur} amount, got {m}"));
            }
        }
        let mut total = Decimal::ZERO;
        for d in &self.deductions {
            if d.name.trim().is_empty() || d.percent < Decimal::ZERO || d.percent > Decimal::ONE_HUNDRED {
                return bad(format!(
                    "deduction {:?} must have a name and a percent in 0..=100",
                    d.name
                ));
            }
            total += d.percent;
        }
        if total > Decimal::ONE_HUNDRED {
            return bad(format!("deductions add up to {total}%, more than 100%"));
        }
        if self.lookback_days > MAX_LOOKBACK_DAYS {
            return bad(format!(
                "look-back of {} days is longer than {MAX_LOOKBACK_DAYS} days",
                self.lookback_days
            ));
        }
        Ok(())
    }

    /// What a calculation of `period` reads: the period and the look-back before it.
    pub fn window(&self, period: Period) -> Period {
        let start = period
            .start
            .checked_sub_days(chrono::Days::new(u64::from(self.lookback_days)))
            .unwrap_or(period.start);
        Period { start, end: period.end }
    }

    /// The rate `doctor` is paid per consultation: the override, or the policy's rate.
    pub fn rate_for(&self, doctor: &DoctorId) -> Money {
        self.overrides.get(doctor).copied().unwrap_or(self.rate)
    }
}

/// What the policy decides for one doctor's period.
#[derive(Debug, Clone, PartialEq)]
pub enum DoctorPlan {
    /// Pay the doctor: the items add up to `net`.
    Pay(PlannedPayout),
    /// The net is below the minimum payout, or not positive because clawbacks took more than was
    /// earned: `amount` (this period's consultations and clawbacks, `items`) is carried over to a
    /// later period, with `note` saying why. `amount` is `None` when the doctor had neither this
    /// period: the balances already carried stay open as they are.
    CarryOver {
        /// This period's earnings to carry, if any: the sum of `items`, negative when clawbacks took
        /// more than was earned.
        amount: Option<Money>,
        /// The consultation and clawback items carried: they join the consultation ledger with
        /// the carry-over.
        items: Vec<PayoutItem>,
        /// Why, for the record.
        note: String,
    },
    /// Nothing to pay: deductions took everything, or there was nothing to begin with.
    NothingDue,
}

/// A payout the policy decided on, before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPayout {
    /// Consultations, carried-over balances, then deductions (negative), in that order.
    pub items: Vec<PayoutItem>,
    /// The rate per consultation.
    pub rate: Money,
    /// How many consultations.
    pub consultations: usize,
    /// The consultations of earlier periods among them (completed late), by appointment id.
    pub late: Vec<String>,
    /// The consultations clawed back, by appointment id.
    pub clawbacks: Vec<String>,
    /// What the clawbacks took back, as a positive amount.
    pub clawed_back: Money,
    /// The consultations' earnings (`rate` x `consultations`).
    pub earned: Money,
    /// The carried-over balances paid out with it.
    pub carried: Money,
    /// The deductions, as a positive amount.
    pub deducted: Money,
    /// What is paid: `earned + carried - deducted`, the sum of `items`.
    pub net: Money,
    /// The periods of the carried-over balances it pays out.
    pub consumes_carry_overs: Vec<Period>,
}

impl PlannedPayout {
    /// One line for the `CREATE` audit entry: the figures, then the late consultations and the
    /// clawbacks by appointment id.
    pub fn summary(&self, period: Period) -> String {
        let mut line = format!(
            "calculated {period}: {} consultations at {} = {}; carried over {}; deductions {}; net {}",
            self.consultations, self.rate, self.earned, self.carried, self.deducted, self.net
        );
        if !self.late.is_empty() {
            line.push_str(&format!(
                "; late (completed before {}, not paid before): {}",
                period.start,
                listed(&self.late)
            ));
        }
        if !self.clawbacks.is_empty() {
            line.push_str(&format!(
                "; clawed back {}: {}",
                self.clawed_back,
                listed(&self.clawbacks)
            ));
        }
        line
    }
}

/// How many ids an audit line lists before it says how many more there are.
const LISTED: usize = 20;

/// `ids`, comma-separated, at most [`LISTED`] of them.
fn listed(ids: &[String]) -> String {
    let mut out = ids.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if ids.len() > LISTED {
        out.push_str(&format!(" and {} more", ids.len() - LISTED));
    }
    out
}

/// One item per consultation at `rate`, dated when the consultation was completed; one completed
/// before `period` (late) says so in its description.
pub fn consultation_items(rate: Money, consultations: &[Consultation], period: Period) -> Vec<PayoutItem> {
    consultations
        .iter()
        .map(|c| PayoutItem {
            kind: ItemKind::Consultation,
            reference: c.appointment_id.clone(),
            amount: rate,
            occurred_at: c.completed_at,
            description: if is_late(c, period) {
                format!(
                    "Late consultation {} of {} at {rate}",
                    c.appointment_id,
                    c.completed_at.date_naive()
                )
            } else {
                format!("Consultation {} at {rate}", c.appointment_id)
            },
        })
        .collect()
}

/// True when `c` was completed before `period`: a late consultation the look-back found.
pub fn is_late(c: &Consultation, period: Period) -> bool {
    c.completed_at.date_naive() < period.start
}

/// The clawback item of a reversed consultation that was paid `paid`: its negation, dated when it
/// was reversed.
pub fn clawback_item(reversal: &Reversal, paid: Money) -> PayoutItem {
    PayoutItem {
        kind: ItemKind::Clawback,
        reference: reversal.appointment_id.clone(),
        amount: paid.negate(),
        occurred_at: reversal.reversed_at,
        description: format!(
            "Clawback of consultation {} ({}), paid {paid}",
            reversal.appointment_id, reversal.reason
        ),
    }
}

/// One item per carried-over balance, dated when it was carried.
pub fn carry_over_items(carried: &[CarryOver]) -> Vec<PayoutItem> {
    carried
        .iter()
        .map(|c| PayoutItem {
            kind: ItemKind::CarryOver,
            reference: c.period.to_string(),
            amount: c.amount,
            occurred_at: c.created_at,
            description: format!("Carried over from {}", c.period),
        })
        .collect()
}

/// One negative item per deduction of the policy, each its percent of `gross` rounded to the
/// currency's minor unit by the policy's rounding, dated the first instant after `period`.
pub fn deduction_items(policy: &CalculationPolicy, gross: Money, period: Period) -> Result<Vec<PayoutItem>> {
    Ok(deductions(policy, gross, period)?.0)
}

/// The deduction items and their total as a positive amount (summed before negating, so no
/// deductions total `0.00`, never `-0.00`).
fn deductions(policy: &CalculationPolicy, gross: Money, period: Period) -> Result<(Vec<PayoutItem>, Money)> {
    let mut total = Money::zero(gross.currency());
    let mut items = Vec::with_capacity(policy.deductions.len());
    for d in &policy.deductions {
        let amount = gross.percentage(d.percent, policy.rounding)?;
        total = total.checked_add(&amount)?;
        items.push(PayoutItem {
            kind: ItemKind::Deduction,
            reference: d.name.clone(),
            amount: amount.negate(),
            occurred_at: period.ends_before(),
            description: format!("{} {}% of {gross}", d.name, d.percent.normalize()),
        });
    }
    Ok((items, total))
}

/// What `doctor` is owed for `period` under `policy`: their completed `consultations` (of the
/// period, and late ones of the look-back that nobody paid), the `clawbacks` of their paid
/// consultations that were reversed since (negative items, see [`clawback_item`]) and the open
/// carry-overs they have (`carried`, in the policy's currency).
///
/// Gross is the consultations at the doctor's rate, plus the carried balances, less the
/// clawbacks. A negative gross (clawbacks took more than was earned) carries this period's
/// consultations and clawbacks forward as one negative balance, and the carried balances stay
/// open, to be settled against later earnings. Otherwise each deduction is a percent of gross, and
/// net is gross less the deductions. Below the minimum payout this period's consultations and
/// clawbacks are carried over (the carried balances stay open); a net of zero or less is nothing
/// due, unless there are clawbacks, which are then carried so they are recorded and taken once;
/// otherwise the doctor is paid net, with every amount an item.
pub fn plan_doctor(
    policy: &CalculationPolicy,
    period: Period,
    doctor: &DoctorId,
    consultations: &[Consultation],
    clawbacks: &[PayoutItem],
    carried: &[CarryOver],
) -> Result<DoctorPlan> {
    let currency = policy.currency();
    let rate = policy.rate_for(doctor);
    let mut new_items = consultation_items(rate, consultations, period);
    new_items.extend(clawbacks.iter().cloned());
    let earned = rate.checked_mul(consultations.len() as i64)?;
    let new = Money::sum(currency, new_items.iter().map(|i| &i.amount))?;
    let clawed_back = earned.checked_sub(&new)?;
    let carry = |items: Vec<PayoutItem>, note: String| DoctorPlan::CarryOver {
        amount: (!items.is_empty()).then_some(new),
        items,
        note,
    };
    let mut items = new_items.clone();
    items.extend(carry_over_items(carried));
    let gross = Money::sum(currency, items.iter().map(|i| &i.amount))?;
    if gross.is_negative() {
        return Ok(carry(
            new_items,
            format!("net {gross} is negative (clawbacks {clawed_back}): carried forward"),
        ));
    }
    let (deduction_items, deducted) = deductions(policy, gross, period)?;
    items.extend(deduction_items);
    let net = gross.checked_sub(&deducted)?;

    if let Some(min) = policy.minimum_payout.filter(|min| net.amount() < min.amount()) {
        return Ok(carry(new_items, format!("net {net} below the minimum payout {min}")));
    }
    if !net.amount().is_sign_positive() || net.is_zero() {
        if clawbacks.is_empty() {
            return Ok(DoctorPlan::NothingDue);
        }
        return Ok(carry(
            new_items,
            format!("net {net} after clawbacks {clawed_back}: carried forward"),
        ));
    }
    Ok(DoctorPlan::Pay(PlannedPayout {
        items,
        rate,
        consultations: consultations.len(),
        late: consultations
            .iter()
            .filter(|c| is_late(c, period))
            .map(|c| c.appointment_id.clone())
            .collect(),
        clawbacks: clawbacks.iter().map(|c| c.reference.clone()).collect(),
        clawed_back,
        earned,
        carried: gross.checked_sub(&new)?,
        deducted,
        net,
        consumes_carry_overs: carried.iter().map(|c| c.period).collect(),
    }))
}

/// The carry-over a [`DoctorPlan::CarryOver`] with an amount records, made at `at`, holding
/// `items` in the consultation ledger.
pub fn carry_over_record(
    doctor: &DoctorId,
    period: Period,
    amount: Money,
    items: Vec<PayoutItem>,
    note: String,
    at: DateTime<Utc>,
) -> CarryOver {
    CarryOver {
        doctor_id: doctor.clone(),
        period,
        amount,
        items,
        note,
        created_at: at,
        consumed_by: None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    fn kes(s: &str) -> Money {
        Money::parse(s, Currency::KES).unwrap()
    }

    fn january() -> Period {
        Period::new(
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
        )
        .unwrap()
    }

    fn consultations(doctor: &str, n: u32) -> Vec<Consultation> {
        (1..=n)
            .map(|d| Consultation {
                appointment_id: format!("apt-{doctor}-{d}"),
                doctor_id: doctor.into(),
                completed_at: Utc.with_ymd_and_hms(2025, 1, d, 9, 0, 0).unwrap(),
            })
            .collect()
    }

    fn carried(amount: &str, month: u32) -> CarryOver {
        let start = NaiveDate::from_ymd_opt(2024, month, 1).unwrap();
        let next = start.checked_add_months(chrono::Months::new(1)).unwrap();
        carry_over_record(
            &"dr-a".into(),
            Period::new(start, next.pred_opt().unwrap()).unwrap(),
            kes(amount),
            Vec::new(),
            "below minimum".into(),
            next.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        )
    }

    /// `doctor`'s plan for January with `n` consultations and `carried` balances.
    fn plan(policy: &CalculationPolicy, doctor: &str, n: u32, carried: &[CarryOver]) -> DoctorPlan {
        plan_doctor(
            policy,
            january(),
            &doctor.into(),
            &consultations(doctor, n),
            &[],
            carried,
        )
        .unwrap()
    }

    fn paid(plan: DoctorPlan) -> PlannedPayout {
        match plan {
            DoctorPlan::Pay(p) => p,
            other => panic!("expected a payout, got {other:?}"),
        }
    }

    #[test]
    fn one_item_per_consultation_at_the_default_rate() {
        let p = paid(plan(&CalculationPolicy::default(), "dr-a", 3, &[]));
        assert_eq!(p.net, kes("1500"));
        assert_eq!(p.items.len(), 3);
        assert!(
            p.items
                .iter()
                .all(|i| i.kind == ItemKind::Consultation && i.amount == kes("500"))
        );
        assert_eq!(p.items[2].reference, "apt-dr-a-3");
        assert_eq!(
            p.items[2].occurred_at,
            Utc.with_ymd_and_hms(2025, 1, 3, 9, 0, 0).unwrap()
        );
        assert_eq!(
            p.summary(january()),
            "calculated 2025-01-01..2025-01-31: 3 consultations at 500.00 KES = 1500.00 KES; carried over 0.00 KES; deductions 0.00 KES; net 1500.00 KES"
        );
    }

    #[test]
    fn an_override_sets_one_doctors_rate() {
        let mut policy = CalculationPolicy::default();
        policy.overrides.insert("dr-b".into(), kes("750"));
        let b = paid(plan(&policy, "dr-b", 2, &[]));
        let a = paid(plan(&policy, "dr-a", 2, &[]));
        assert_eq!((b.rate, b.net), (kes("750"), kes("1500")));
        assert_eq!((a.rate, a.net), (kes("500"), kes("1000")));
    }

    #[test]
    fn carried_balances_are_items_and_are_consumed() {
        let open = [carried("300", 11), carried("200", 12)];
        let p = paid(plan(&CalculationPolicy::default(), "dr-a", 1, &open));
        assert_eq!(p.net, kes("1000"));
        assert_eq!((p.earned, p.carried), (kes("500"), kes("500")));
        assert_eq!(p.items[1].kind, ItemKind::CarryOver);
        assert_eq!(p.items[1].reference, "2024-11-01..2024-11-30");
        assert_eq!(p.consumes_carry_overs, vec![open[0].period, open[1].period]);
    }

    #[test]
    fn deductions_are_rounded_negative_items_of_gross() {
        let policy = CalculationPolicy {
            rate: kes("333.33"),
            deductions: vec![
                Deduction {
                    name: "platform_fee".into(),
                    percent: Decimal::new(10, 0),
                },
                Deduction {
                    name: "withholding_tax".into(),
                    percent: Decimal::new(5, 0),
                },
            ],
            ..Default::default()
        };
        let p = paid(plan(&policy, "dr-a", 1, &[]));
        // 10% of 333.33 = 33.333 -> 33.33; 5% = 16.6665 -> 16.67 (half away from zero).
        assert_eq!(p.items[1].amount, kes("-33.33"));
        assert_eq!(p.items[2].amount, kes("-16.67"));
        assert_eq!(p.deducted, kes("50.00"));
        assert_eq!(p.net, kes("283.33"));
        assert_eq!(
            Money::sum(Currency::KES, p.items.iter().map(|i| &i.amount)).unwrap(),
            p.net
        );
        assert_eq!(p.items[1].occurred_at, january().ends_before());
        assert_eq!(p.items[1].description, "platform_fee 10% of 333.33 KES");
    }

    #[test]
    fn below_the_minimum_this_periods_earnings_are_carried() {
        let policy = CalculationPolicy {
            minimum_payout: Some(kes("2000")),
            ..Default::default()
        };
        match plan(&policy, "dr-a", 3, &[carried("300", 12)]) {
            DoctorPlan::CarryOver { amount, items, note } => {
                assert_eq!(amount, Some(kes("1500")));
                assert_eq!(note, "net 1800.00 KES below the minimum payout 2000.00 KES");
                // The carried consultations join the ledger with the carry-over.
                let refs: Vec<_> = items.iter().map(|i| (i.kind, i.reference.as_str())).collect();
                assert_eq!(
                    refs,
                    [
                        (ItemKind::Consultation, "apt-dr-a-1"),
                        (ItemKind::Consultation, "apt-dr-a-2"),
                        (ItemKind::Consultation, "apt-dr-a-3")
                    ]
                );
            }
            other => panic!("expected a carry-over, got {other:?}"),
        }
        // No consultations: nothing new to carry; the open balance stays open.
        let decided = plan(&policy, "dr-a", 0, &[carried("300", 12)]);
        assert!(
            matches!(decided, DoctorPlan::CarryOver { amount: None, .. }),
            "{decided:?}"
        );
        // At the minimum exactly, it is paid.
        assert_eq!(paid(plan(&policy, "dr-a", 4, &[])).net, kes("2000"));
    }

    #[test]
    fn deductions_that_take_everything_leave_nothing_due() {
        let policy = CalculationPolicy {
            deductions: vec![Deduction {
                name: "all".into(),
                percent: Decimal::ONE_HUNDRED,
            }],
            ..Default::default()
        };
        assert_eq!(plan(&policy, "dr-a", 2, &[]), DoctorPlan::NothingDue);
        assert_eq!(
            plan(&CalculationPolicy::default(), "dr-a", 0, &[]),
            DoctorPlan::NothingDue
        );
    }

    fn reversal(id: &str, day: u32) -> Reversal {
        Reversal {
            appointment_id: id.into(),
            doctor_id: "dr-a".into(),
            reversed_at: Utc.with_ymd_and_hms(2025, 1, day, 12, 0, 0).unwrap(),
            reason: "refunded".into(),
        }
    }

    #[test]
    fn late_consultations_are_items_dated_when_they_happened_and_labelled_late() {
        let mut cs = consultations("dr-a", 2);
        let late = Consultation {
            appointment_id: "apt-dr-a-dec".into(),
            doctor_id: "dr-a".into(),
            completed_at: Utc.with_ymd_and_hms(2024, 12, 30, 16, 0, 0).unwrap(),
        };
        cs.insert(0, late.clone());
        let p = paid(plan_doctor(&CalculationPolicy::default(), january(), &"dr-a".into(), &cs, &[], &[]).unwrap());
        assert_eq!((p.consultations, p.net), (3, kes("1500")));
        assert_eq!(p.late, vec!["apt-dr-a-dec".to_string()]);
        assert_eq!(p.items[0].occurred_at, late.completed_at);
        assert_eq!(
            p.items[0].description,
            "Late consultation apt-dr-a-dec of 2024-12-30 at 500.00 KES"
        );
        assert_eq!(p.items[1].description, "Consultation apt-dr-a-1 at 500.00 KES");
        assert!(
            p.summary(january())
                .ends_with("net 1500.00 KES; late (completed before 2025-01-01, not paid before): apt-dr-a-dec"),
            "{}",
            p.summary(january())
        );
    }

    #[test]
    fn a_clawback_is_a_negative_item_of_what_was_paid() {
        let claw = clawback_item(&reversal("apt-old", 3), kes("500"));
        assert_eq!((claw.kind, claw.amount), (ItemKind::Clawback, kes("-500")));
        let p = paid(
            plan_doctor(
                &CalculationPolicy::default(),
                january(),
                &"dr-a".into(),
                &consultations("dr-a", 3),
                std::slice::from_ref(&claw),
                &[],
            )
            .unwrap(),
        );
        assert_eq!((p.earned, p.clawed_back, p.net), (kes("1500"), kes("500"), kes("1000")));
        assert_eq!(p.carried, kes("0"));
        assert_eq!(
            Money::sum(Currency::KES, p.items.iter().map(|i| &i.amount)).unwrap(),
            p.net,
            "the amount is still the sum of the items"
        );
        assert!(p.summary(january()).ends_with("; clawed back 500.00 KES: apt-old"));
    }

    #[test]
    fn clawbacks_larger_than_the_earnings_carry_the_remainder_forward() {
        let claws = [
            clawback_item(&reversal("apt-old-1", 3), kes("500")),
            clawback_item(&reversal("apt-old-2", 4), kes("500")),
        ];
        // One consultation (500) against two clawbacks (-1000), a carried 300 stays open.
        let decided = plan_doctor(
            &CalculationPolicy::default(),
            january(),
            &"dr-a".into(),
            &consultations("dr-a", 1),
            &claws,
            &[carried("300", 12)],
        )
        .unwrap();
        match decided {
            DoctorPlan::CarryOver { amount, items, note } => {
                assert_eq!(amount, Some(kes("-500")));
                assert_eq!(items.len(), 3, "the consultation and both clawbacks are carried");
                assert_eq!(
                    note,
                    "net -200.00 KES is negative (clawbacks 1000.00 KES): carried forward"
                );
            }
            other => panic!("expected a carry-over, got {other:?}"),
        }
        // Clawbacks that exactly cancel the earnings are carried too, so they are recorded once.
        let decided = plan_doctor(
            &CalculationPolicy::default(),
            january(),
            &"dr-a".into(),
            &consultations("dr-a", 1),
            &claws[..1],
            &[],
        )
        .unwrap();
        assert!(
            matches!(&decided, DoctorPlan::CarryOver { amount: Some(a), items, .. } if a.is_zero() && items.len() == 2),
            "{decided:?}"
        );
        // A negative balance carried earlier is settled against new earnings.
        let mut negative = carried("300", 12);
        negative.amount = kes("-300");
        let p = paid(plan(&CalculationPolicy::default(), "dr-a", 2, &[negative]));
        assert_eq!((p.earned, p.carried, p.net), (kes("1000"), kes("-300"), kes("700")));
    }

    #[test]
    fn the_window_is_the_period_and_its_look_back() {
        let policy = CalculationPolicy::default();
        assert_eq!(
            policy.window(january()).start,
            NaiveDate::from_ymd_opt(2024, 10, 3).unwrap(),
            "90 days before 2025-01-01"
        );
        assert_eq!(policy.window(january()).end, january().end);
        let none = CalculationPolicy {
            lookback_days: 0,
            ..Default::default()
        };
        assert_eq!(none.window(january()), january());
        let too_long = CalculationPolicy {
            lookback_days: MAX_LOOKBACK_DAYS + 1,
            ..Default::default()
        };
        assert!(too_long.validate().is_err());
    }

    #[test]
    fn invalid_policies_are_refused() {
        let mut p = CalculationPolicy::default();
        p.overrides
            .insert("dr-a".into(), Money::parse("5", Currency::USD).unwrap());
        assert!(p.validate().is_err());
        let p = CalculationPolicy {
            deductions: vec![
                Deduction {
                    name: "a".into(),
                    percent: Decimal::new(60, 0),
                },
                Deduction {
                    name: "b".into(),
                    percent: Decimal::new(50, 0),
                },
            ],
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(Error::InvalidInput(m)) if m.contains("110")));
        assert!(CalculationPolicy::with_rate(kes("0")).validate().is_err());
    }
}
