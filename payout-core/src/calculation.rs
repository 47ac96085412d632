//! The calculation's rules, as pure functions: what one doctor is owed for a period, item by item.
//!
//! [`plan_doctor`] turns a doctor's completed consultations and open carried-over balances into a
//! [`DoctorPlan`]: pay (the items and their net), carry over (below the minimum payout), or nothing
//! due (deductions took everything). It reads no store, no clock and no id generator, so every rule
//! (rate and per-doctor overrides, carry-overs, deductions and their rounding, the minimum payout)
//! can be checked on its own; [`PayoutService::calculate_period`](crate::PayoutService::calculate_period)
//! streams the consultations, asks it for each doctor and writes what it decides.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::domain::{Consultation, DoctorId, ItemKind, PayoutItem, Period};
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
}

fn default_rounding() -> RoundingStrategy {
    RoundingStrategy::MidpointAwayFromZero
}

impl Default for CalculationPolicy {
    fn default() -> Self {
        CalculationPolicy {
            rate: Money::from_minor_units(50_000, Currency::KES),
            overrides: HashMap::new(),
            minimum_payout: None,
            deductions: Vec::new(),
            rounding: default_rounding(),
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
        Ok(())
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
    /// The net is below the minimum payout: `amount` (this period's consultations' gross earnings)
    /// is carried over to a later period, with `note` saying why. `amount` is `None` when the doctor
    /// had no consultations this period: the balances already carried stay open as they are.
    CarryOver {
        /// This period's earnings to carry, if any.
        amount: Option<Money>,
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
    /// One line for the `CREATE` audit entry.
    pub fn summary(&self, period: Period) -> String {
        format!(
            "calculated {period}: {} consultations at {} = {}; carried over {}; deductions {}; net {}",
            self.consultations, self.rate, self.earned, self.carried, self.deducted, self.net
        )
    }
}

/// One item per consultation at `rate`, dated when the consultation was completed.
pub fn consultation_items(rate: Money, consultations: &[Consultation]) -> Vec<PayoutItem> {
    consultations
        .iter()
        .map(|c| PayoutItem {
            kind: ItemKind::Consultation,
            reference: c.appointment_id.clone(),
            amount: rate,
            occurred_at: c.completed_at,
            description: format!("Consultation {} at {rate}", c.appointment_id),
        })
        .collect()
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

/// What `doctor` is owed for `period` under `policy`: their completed `consultations` of the
/// period and the open carry-overs they have (`carried`, in the policy's currency).
///
/// Gross is the consultations at the doctor's rate plus the carried balances; each deduction is a
/// percent of gross; net is gross less the deductions. Below the minimum payout the consultations'
/// earnings are carried over (the carried balances stay open); a net of zero or less is nothing
/// due; otherwise the doctor is paid net, with every amount an item.
pub fn plan_doctor(
    policy: &CalculationPolicy,
    period: Period,
    doctor: &DoctorId,
    consultations: &[Consultation],
    carried: &[CarryOver],
) -> Result<DoctorPlan> {
    let currency = policy.currency();
    let rate = policy.rate_for(doctor);
    let mut items = consultation_items(rate, consultations);
    items.extend(carry_over_items(carried));
    let earned = rate.checked_mul(consultations.len() as i64)?;
    let gross = Money::sum(currency, items.iter().map(|i| &i.amount))?;
    let (deduction_items, deducted) = deductions(policy, gross, period)?;
    items.extend(deduction_items);
    let net = gross.checked_sub(&deducted)?;

    if let Some(min) = policy.minimum_payout.filter(|min| net.amount() < min.amount()) {
        return Ok(DoctorPlan::CarryOver {
            amount: (!consultations.is_empty()).then_some(earned),
            note: format!("net {net} below the minimum payout {min}"),
        });
    }
    if !net.amount().is_sign_positive() || net.is_zero() {
        return Ok(DoctorPlan::NothingDue);
    }
    Ok(DoctorPlan::Pay(PlannedPayout {
        items,
        rate,
        consultations: consultations.len(),
        earned,
        carried: gross.checked_sub(&earned)?,
        deducted,
        net,
        consumes_carry_overs: carried.iter().map(|c| c.period).collect(),
    }))
}

/// The carry-over a [`DoctorPlan::CarryOver`] with an amount records, made at `at`.
pub fn carry_over_record(
    doctor: &DoctorId,
    period: Period,
    amount: Money,
    note: String,
    at: DateTime<Utc>,
) -> CarryOver {
    CarryOver {
        doctor_id: doctor.clone(),
        period,
        amount,
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
            "below minimum".into(),
            next.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        )
    }

    /// `doctor`'s plan for January with `n` consultations and `carried` balances.
    fn plan(policy: &CalculationPolicy, doctor: &str, n: u32, carried: &[CarryOver]) -> DoctorPlan {
        plan_doctor(policy, january(), &doctor.into(), &consultations(doctor, n), carried).unwrap()
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
        assert_eq!(
            plan(&policy, "dr-a", 3, &[carried("300", 12)]),
            DoctorPlan::CarryOver {
                amount: Some(kes("1500")),
                note: "net 1800.00 KES below the minimum payout 2000.00 KES".into()
            }
        );
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
