//! The period calculation and manual payouts.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::Either;
use futures::stream::{BoxStream, FuturesOrdered};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::PayoutService;
use crate::domain::{
    Actor, AuditEntry, Consultation, DoctorId, ItemKind, Payout, PayoutId, PayoutItem, PayoutOrigin, Period,
};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{CarryOver, NewPayout, PeriodBatch, PeriodBatchOutcome, SkipReason};

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

    /// Checks the policy; an invalid one changes nothing.
    pub fn validate(&self) -> Result<()> {
        let cur = self.rate.currency();
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

    fn rate_for(&self, doctor: &DoctorId) -> Money {
        self.overrides.get(doctor).copied().unwrap_or(self.rate)
    }
}

/// What a calculation did.
#[derive(Debug, Clone, PartialEq)]
pub struct CalculationReport {
    /// The period calculated.
    pub period: Period,
    /// Completed consultations read.
    pub consultations: u64,
    /// Doctors considered (with consultations or an open carry-over).
    pub doctors: u64,
    /// Payouts created.
    pub created: Vec<PayoutId>,
    /// Doctors whose earnings were carried over (below the minimum).
    pub carried_over: Vec<DoctorId>,
    /// Doctors skipped because the period was already calculated for them, and why.
    pub skipped: Vec<(DoctorId, SkipReason)>,
    /// Doctors with nothing to pay (deductions took everything).
    pub nothing_due: Vec<DoctorId>,
    /// The sum of the created payouts.
    pub total_created: Money,
}

/// A payout an admin creates by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManualPayout {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The amount (positive).
    pub amount: Money,
    /// The period it pays for; default: the day it is created.
    #[serde(default)]
    pub period: Option<Period>,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
}

/// One doctor's consultations, gathered while streaming.
struct DoctorRun {
    doctor: DoctorId,
    consultations: Vec<Consultation>,
}

impl PayoutService {
    /// Calculates a period: one `PENDING` payout per doctor with completed consultations, one item per
    /// consultation at the policy's rate, plus carried-over balances and deductions as explicit items,
    /// so the amount is always the sum of the items.
    ///
    /// `period` defaults to the previous calendar month. Re-running a period creates nothing new and
    /// reports whom it skipped. Consultations are streamed and written in chunks (at most
    /// [`ServiceConfig::calculation_chunk`](super::ServiceConfig::calculation_chunk) doctors and
    /// [`calculation_chunk_items`](super::ServiceConfig::calculation_chunk_items) items): memory
    /// holds one doctor's consultations and a few chunks at a time (up to
    /// [`calculation_writes_in_flight`](super::ServiceConfig::calculation_writes_in_flight) being
    /// written while the next is planned), however long the period. Each chunk is one transaction: if
    /// the calculation fails part-way, the chunks already written stay (the ones in flight may be
    /// rolled back), and running it again creates the rest.
    pub async fn calculate_period(
        &self,
        actor: &Actor,
        period: Option<Period>,
        policy: &CalculationPolicy,
    ) -> Result<CalculationReport> {
        self.require_privileged(actor, "calculate payouts")?;
        policy.validate()?;
        let source = self
            .consultations
            .as_ref()
            .ok_or_else(|| Error::InvalidInput("no consultation source is configured".into()))?;
        let period = period.unwrap_or_else(|| crate::domain::Period::previous_month(self.clock.now()));
        let currency = policy.rate.currency();

        let mut open: HashMap<DoctorId, Vec<CarryOver>> = HashMap::new();
        for c in self.store.open_carry_overs(period.start).await? {
            if c.amount.currency() == currency {
                open.entry(c.doctor_id.clone()).or_default().push(c);
            }
        }

        let mut report = CalculationReport {
            period,
            consultations: 0,
            doctors: 0,
            created: Vec::new(),
            carried_over: Vec::new(),
            skipped: Vec::new(),
            nothing_due: Vec::new(),
            total_created: Money::zero(currency),
        };
        let mut batch = Batch::default();
        // The chunks being written while the next one is planned, in order: reading the source and
        // writing the store overlap instead of taking turns.
        let mut writing: Writes = FuturesOrdered::new();
        let mut finished: HashSet<DoctorId> = HashSet::new();
        let mut current: Option<DoctorRun> = None;
        let mut stream = source.completed(period);
        while let Some(row) = next_row(&mut stream, &mut writing, &mut report).await? {
            let c = row?;
            if !period.contains(c.completed_at) {
                return Err(Error::Source(format!(
                    "consultation {} completed at {} is outside {period}",
                    c.appointment_id, c.completed_at
                )));
            }
            report.consultations += 1;
            match &mut current {
                Some(run) if run.doctor == c.doctor_id => run.consultations.push(c),
                _ => {
                    if finished.contains(&c.doctor_id) {
                        return Err(Error::Source(format!(
                            "consultations of doctor {} are not grouped together; order the source by doctor",
                            c.doctor_id
                        )));
                    }
                    if let Some(run) = current.take() {
                        finished.insert(run.doctor.clone());
                        let carried = open.remove(&run.doctor).unwrap_or_default();
                        self.plan_doctor(actor, period, policy, run, carried, &mut batch, &mut report)?;
                        self.write_if_full(&mut batch, &mut writing, &mut report).await?;
                    }
                    current = Some(DoctorRun {
                        doctor: c.doctor_id.clone(),
                        consultations: vec![c],
                    });
                }
            }
        }
        if let Some(run) = current.take() {
            let carried = open.remove(&run.doctor).unwrap_or_default();
            self.plan_doctor(actor, period, policy, run, carried, &mut batch, &mut report)?;
        }
        // Doctors with only an open carry-over this period: it may now reach the minimum.
        let mut rest: Vec<_> = open.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (doctor, carried) in rest {
            let run = DoctorRun {
                doctor,
                consultations: Vec::new(),
            };
            self.plan_doctor(actor, period, policy, run, carried, &mut batch, &mut report)?;
            self.write_if_full(&mut batch, &mut writing, &mut report).await?;
        }
        if let Some(write) = self.start_writing(&mut batch) {
            writing.push_back(write);
        }
        finish_writing(&mut writing, &mut report).await?;
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_doctor(
        &self,
        actor: &Actor,
        period: Period,
        policy: &CalculationPolicy,
        run: DoctorRun,
        carried: Vec<CarryOver>,
        batch: &mut Batch,
        report: &mut CalculationReport,
    ) -> Result<()> {
        report.doctors += 1;
        let currency = policy.rate.currency();
        let rate = policy.rate_for(&run.doctor);
        let now = self.clock.now();
        let mut items = Vec::with_capacity(run.consultations.len() + carried.len() + policy.deductions.len());
        for c in &run.consultations {
            items.push(PayoutItem {
                kind: ItemKind::Consultation,
                reference: c.appointment_id.clone(),
                amount: rate,
                occurred_at: c.completed_at,
                description: format!("Consultation {} at {rate}", c.appointment_id),
            });
        }
        let earned = rate.checked_mul(run.consultations.len() as i64)?;
        for c in &carried {
            items.push(PayoutItem {
                kind: ItemKind::CarryOver,
                reference: c.period.to_string(),
                amount: c.amount,
                occurred_at: c.created_at,
                description: format!("Carried over from {}", c.period),
            });
        }
        let gross = Money::sum(currency, items.iter().map(|i| &i.amount))?;
        let mut deducted = Money::zero(currency);
        for d in &policy.deductions {
            let amount = gross.percentage(d.percent, policy.rounding)?;
            deducted = deducted.checked_add(&amount)?;
            items.push(PayoutItem {
                kind: ItemKind::Deduction,
                reference: d.name.clone(),
                amount: amount.negate(),
                occurred_at: period.ends_before(),
                description: format!("{} {}% of {gross}", d.name, d.percent.normalize()),
            });
        }
        let net = gross.checked_sub(&deducted)?;

        let below_minimum = policy
            .minimum_payout
            .as_ref()
            .is_some_and(|min| net.amount() < min.amount());
        if below_minimum {
            if !run.consultations.is_empty() {
                batch.inner.carry_overs.push(CarryOver {
                    doctor_id: run.doctor.clone(),
                    period,
                    amount: earned,
                    note: format!(
                        "net {net} below the minimum payout {}",
                        policy.minimum_payout.map(|m| m.to_string()).unwrap_or_default()
                    ),
                    created_at: now,
                    consumed_by: None,
                });
            }
            return Ok(());
        }
        if !net.amount().is_sign_positive() || net.is_zero() {
            report.nothing_due.push(run.doctor);
            return Ok(());
        }
        let payout = Payout {
            id: self.ids.payout_id(),
            doctor_id: run.doctor.clone(),
            period_start: period.start,
            period_end: period.end,
            amount_due: net,
            status: PayoutStatus::Pending,
            provider: None,
            provider_reference: None,
            notes: None,
            origin: PayoutOrigin::Calculated,
            created_by: actor.label(),
            approved_by: None,
            processed_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let audit = AuditEntry {
            payout_id: payout.id.clone(),
            actor: actor.label(),
            at: now,
            action: "CREATE".into(),
            from: None,
            to: Some(PayoutStatus::Pending),
            detail: format!(
                "calculated {period}: {} consultations at {rate} = {earned}; carried over {}; deductions {deducted}; net {net}",
                run.consultations.len(),
                gross.checked_sub(&earned)?,
            ),
        };
        batch.amounts.insert(payout.id.clone(), net);
        batch.items += items.len();
        batch.inner.payouts.push(NewPayout {
            payout,
            items,
            consumes_carry_overs: carried.iter().map(|c| c.period).collect(),
            audit,
        });
        Ok(())
    }

    /// When the batch is full: waits for the oldest chunk being written if as many as allowed are,
    /// then starts writing this one.
    async fn write_if_full(
        &self,
        batch: &mut Batch,
        writing: &mut Writes,
        report: &mut CalculationReport,
    ) -> Result<()> {
        let doctors = batch.inner.payouts.len() + batch.inner.carry_overs.len();
        if doctors >= self.config.calculation_chunk.max(1) || batch.items >= self.config.calculation_chunk_items {
            let in_flight = self
                .config
                .calculation_writes_in_flight
                .unwrap_or_else(|| self.store.parallel_writes())
                .max(1);
            while writing.len() >= in_flight {
                if let Some(written) = writing.next().await {
                    record_written(written?, report)?;
                }
            }
            if let Some(write) = self.start_writing(batch) {
                writing.push_back(write);
            }
        }
        Ok(())
    }

    /// Takes the batch and returns the write of it, which runs as it is polled.
    fn start_writing(&self, batch: &mut Batch) -> Option<Writing> {
        if batch.inner.payouts.is_empty() && batch.inner.carry_overs.is_empty() {
            return None;
        }
        let work = std::mem::take(batch);
        let store = self.store.clone();
        Some(Box::pin(async move {
            let outcome = store.create_period(work.inner).await?;
            Ok((work.amounts, outcome))
        }))
    }

    /// Creates a payout by hand (admins only): one adjustment item for the amount, status `PENDING`.
    /// With four eyes on, its creator may not approve it.
    pub async fn create_manual(&self, actor: &Actor, manual: ManualPayout) -> Result<Payout> {
        self.require_privileged(actor, "create payouts")?;
        if manual.amount.is_negative() || manual.amount.is_zero() {
            return Err(Error::InvalidInput(format!(
                "amount must be positive, got {}",
                manual.amount
            )));
        }
        if manual.doctor_id.as_str().trim().is_empty() {
            return Err(Error::InvalidInput("doctorId is required".into()));
        }
        if self.directory.recipient(&manual.doctor_id).await?.is_none() {
            return Err(Error::InvalidInput(format!("unknown doctor {}", manual.doctor_id)));
        }
        let now = self.clock.now();
        let today = now.date_naive();
        let period = manual.period.unwrap_or(Period {
            start: today,
            end: today,
        });
        let payout = Payout {
            id: self.ids.payout_id(),
            doctor_id: manual.doctor_id.clone(),
            period_start: period.start,
            period_end: period.end,
            amount_due: manual.amount,
            status: PayoutStatus::Pending,
            provider: None,
            provider_reference: None,
            notes: manual.notes.clone(),
            origin: PayoutOrigin::Manual,
            created_by: actor.label(),
            approved_by: None,
            processed_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let item = PayoutItem {
            kind: ItemKind::Adjustment,
            reference: "manual".into(),
            amount: manual.amount,
            occurred_at: now,
            description: manual.notes.clone().unwrap_or_else(|| "Manual payout".into()),
        };
        let audit = self.create_audit(
            &payout,
            actor,
            now,
            format!("manual payout of {} for {period}", manual.amount),
        );
        self.store
            .create_payout(NewPayout {
                payout,
                items: vec![item],
                consumes_carry_overs: Vec::new(),
                audit,
            })
            .await
    }

    fn create_audit(&self, payout: &Payout, actor: &Actor, at: DateTime<Utc>, detail: String) -> AuditEntry {
        AuditEntry {
            payout_id: payout.id.clone(),
            actor: actor.label(),
            at,
            action: "CREATE".into(),
            from: None,
            to: Some(PayoutStatus::Pending),
            detail,
        }
    }
}

/// A chunk's write in progress: the amounts of its payouts (for the report's total) and the store's
/// answer.
type Writing = Pin<Box<dyn Future<Output = Result<(HashMap<PayoutId, Money>, PeriodBatchOutcome)>> + Send>>;

/// The chunks being written, oldest first.
type Writes = FuturesOrdered<Writing>;

/// The next consultation, polling the chunks being written meanwhile, so the writes progress while
/// the calculation waits for rows. A finished write is recorded in the report (in the order the
/// chunks were planned); its error ends the calculation.
async fn next_row(
    stream: &mut BoxStream<'static, Result<Consultation>>,
    writing: &mut Writes,
    report: &mut CalculationReport,
) -> Result<Option<Result<Consultation>>> {
    let mut next = stream.next();
    loop {
        if writing.is_empty() {
            return Ok(next.await);
        }
        match futures::future::select(writing.next(), next).await {
            Either::Left((written, pending)) => {
                if let Some(written) = written {
                    record_written(written?, report)?;
                }
                next = pending;
            }
            Either::Right((row, _)) => return Ok(row),
        }
    }
}

/// Waits for the chunks being written, and records them.
async fn finish_writing(writing: &mut Writes, report: &mut CalculationReport) -> Result<()> {
    while let Some(written) = writing.next().await {
        record_written(written?, report)?;
    }
    Ok(())
}

fn record_written(
    (amounts, outcome): (HashMap<PayoutId, Money>, PeriodBatchOutcome),
    report: &mut CalculationReport,
) -> Result<()> {
    let PeriodBatchOutcome {
        created,
        carried_over,
        skipped,
    } = outcome;
    for id in &created {
        if let Some(a) = amounts.get(id) {
            report.total_created = report.total_created.checked_add(a)?;
        }
    }
    report.created.extend(created);
    report.carried_over.extend(carried_over);
    report.skipped.extend(skipped);
    Ok(())
}

#[derive(Default)]
struct Batch {
    inner: PeriodBatch,
    amounts: HashMap<PayoutId, Money>,
    /// Items held in `inner`.
    items: usize,
}
