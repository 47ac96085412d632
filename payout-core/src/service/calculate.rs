//! The period calculation and manual payouts.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::Either;
use futures::stream::{BoxStream, FuturesOrdered};
use serde::{Deserialize, Serialize};

use super::PayoutService;
use crate::calculation::{CalculationPolicy, DoctorPlan, carry_over_record, plan_doctor};
use crate::domain::{
    Actor, AuditEntry, Consultation, DoctorId, ItemKind, Payout, PayoutId, PayoutItem, PayoutOrigin, Period,
};
use crate::error::{Error, Result};
use crate::money::Money;
use crate::status::PayoutStatus;
use crate::store::{CarryOver, NewPayout, PayoutStore, PeriodBatch, PeriodBatchOutcome, SkipReason};

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

impl PayoutService {
    /// Calculates a period: one `PENDING` payout per doctor with completed consultations, one item per
    /// consultation at the policy's rate, plus carried-over balances and deductions as explicit items,
    /// so the amount is always the sum of the items. The rules are [`plan_doctor`]'s.
    ///
    /// `period` defaults to the previous calendar month. Re-running a period creates nothing new and
    /// reports whom it skipped. Consultations are streamed and written in chunks (at most
    /// [`PerformanceConfig::calculation_chunk`](super::PerformanceConfig::calculation_chunk) doctors
    /// and [`calculation_chunk_items`](super::PerformanceConfig::calculation_chunk_items) items):
    /// memory holds one doctor's consultations and a few chunks at a time (up to
    /// [`calculation_writes_in_flight`](super::PerformanceConfig::calculation_writes_in_flight) being
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
        let period = period.unwrap_or_else(|| Period::previous_month(self.clock.now()));
        let currency = policy.currency();

        let mut open: HashMap<DoctorId, Vec<CarryOver>> = HashMap::new();
        for c in self.store.open_carry_overs(period.start).await? {
            if c.amount.currency() == currency {
                open.entry(c.doctor_id.clone()).or_default().push(c);
            }
        }

        let mut writer = ChunkWriter::new(self, period, currency);
        let mut finished: HashSet<DoctorId> = HashSet::new();
        let mut current: Option<(DoctorId, Vec<Consultation>)> = None;
        let mut stream = source.completed(period);
        while let Some(row) = writer.next_row(&mut stream).await? {
            let c = row?;
            if !period.contains(c.completed_at) {
                return Err(Error::Source(format!(
                    "consultation {} completed at {} is outside {period}",
                    c.appointment_id, c.completed_at
                )));
            }
            writer.report.consultations += 1;
            match &mut current {
                Some((doctor, consultations)) if *doctor == c.doctor_id => consultations.push(c),
                _ => {
                    if finished.contains(&c.doctor_id) {
                        return Err(Error::Source(format!(
                            "consultations of doctor {} are not grouped together; order the source by doctor",
                            c.doctor_id
                        )));
                    }
                    if let Some((doctor, consultations)) = current.take() {
                        finished.insert(doctor.clone());
                        let carried = open.remove(&doctor).unwrap_or_default();
                        let plan = plan_doctor(policy, period, &doctor, &consultations, &carried)?;
                        writer.add(actor, doctor, plan).await?;
                    }
                    current = Some((c.doctor_id.clone(), vec![c]));
                }
            }
        }
        if let Some((doctor, consultations)) = current.take() {
            let carried = open.remove(&doctor).unwrap_or_default();
            let plan = plan_doctor(policy, period, &doctor, &consultations, &carried)?;
            writer.add(actor, doctor, plan).await?;
        }
        // Doctors with only an open carry-over this period: it may now reach the minimum.
        let mut rest: Vec<_> = open.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (doctor, carried) in rest {
            let plan = plan_doctor(policy, period, &doctor, &[], &carried)?;
            writer.add(actor, doctor, plan).await?;
        }
        writer.finish().await
    }

    /// A new `PENDING` payout with a fresh id, created by `actor` at `now`.
    fn new_payout(
        &self,
        actor: &Actor,
        doctor: &DoctorId,
        period: Period,
        amount: Money,
        origin: PayoutOrigin,
        now: DateTime<Utc>,
    ) -> Payout {
        Payout::pending(
            self.ids.payout_id(),
            doctor.clone(),
            period,
            amount,
            origin,
            actor.label(),
            now,
        )
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
        let mut payout = self.new_payout(
            actor,
            &manual.doctor_id,
            period,
            manual.amount,
            PayoutOrigin::Manual,
            now,
        );
        payout.notes = manual.notes.clone();
        let item = PayoutItem {
            kind: ItemKind::Adjustment,
            reference: "manual".into(),
            amount: manual.amount,
            occurred_at: now,
            description: manual.notes.clone().unwrap_or_else(|| "Manual payout".into()),
        };
        let audit = create_audit(
            &payout,
            actor,
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
}

/// The `CREATE` audit entry of `payout`, at its creation.
fn create_audit(payout: &Payout, actor: &Actor, detail: String) -> AuditEntry {
    AuditEntry {
        payout_id: payout.id.clone(),
        actor: actor.label(),
        at: payout.created_at,
        action: "CREATE".into(),
        from: None,
        to: Some(PayoutStatus::Pending),
        detail,
    }
}

/// A chunk's write in progress: the amounts of its payouts (for the report's total) and the store's
/// answer.
type Writing = Pin<Box<dyn Future<Output = Result<(HashMap<PayoutId, Money>, PeriodBatchOutcome)>> + Send>>;

/// Plumbing only: turns the plans into chunks of payouts and carry-overs, writes each chunk in its
/// own transaction while the next one is planned (up to
/// [`calculation_writes_in_flight`](super::PerformanceConfig::calculation_writes_in_flight) at once),
/// and records what each write did in the report, in the order the chunks were planned.
struct ChunkWriter<'a> {
    service: &'a PayoutService,
    period: Period,
    report: CalculationReport,
    batch: PeriodBatch,
    /// The amounts of the batch's payouts, for the report's total.
    amounts: HashMap<PayoutId, Money>,
    /// Items held in `batch`.
    items: usize,
    /// The chunks being written, oldest first.
    writing: FuturesOrdered<Writing>,
}

impl<'a> ChunkWriter<'a> {
    fn new(service: &'a PayoutService, period: Period, currency: crate::money::Currency) -> Self {
        ChunkWriter {
            service,
            period,
            report: CalculationReport {
                period,
                consultations: 0,
                doctors: 0,
                created: Vec::new(),
                carried_over: Vec::new(),
                skipped: Vec::new(),
                nothing_due: Vec::new(),
                total_created: Money::zero(currency),
            },
            batch: PeriodBatch::default(),
            amounts: HashMap::new(),
            items: 0,
            writing: FuturesOrdered::new(),
        }
    }

    /// Adds what the rules decided for `doctor` to the chunk, and writes the chunk once it is full.
    async fn add(&mut self, actor: &Actor, doctor: DoctorId, plan: DoctorPlan) -> Result<()> {
        self.report.doctors += 1;
        match plan {
            DoctorPlan::Pay(planned) => {
                let now = self.service.clock.now();
                let payout =
                    self.service
                        .new_payout(actor, &doctor, self.period, planned.net, PayoutOrigin::Calculated, now);
                let audit = create_audit(&payout, actor, planned.summary(self.period));
                self.amounts.insert(payout.id.clone(), planned.net);
                self.items += planned.items.len();
                self.batch.payouts.push(NewPayout {
                    payout,
                    items: planned.items,
                    consumes_carry_overs: planned.consumes_carry_overs,
                    audit,
                });
            }
            DoctorPlan::CarryOver {
                amount: Some(amount),
                note,
            } => {
                let at = self.service.clock.now();
                self.batch
                    .carry_overs
                    .push(carry_over_record(&doctor, self.period, amount, note, at));
            }
            DoctorPlan::CarryOver { amount: None, .. } => {}
            DoctorPlan::NothingDue => self.report.nothing_due.push(doctor),
        }
        let performance = &self.service.performance;
        let doctors = self.batch.payouts.len() + self.batch.carry_overs.len();
        if doctors >= performance.calculation_chunk.max(1) || self.items >= performance.calculation_chunk_items {
            while self.writing.len() >= performance.calculation_writes_in_flight.max(1) {
                if let Some(written) = self.writing.next().await {
                    self.record(written?)?;
                }
            }
            self.start_writing();
        }
        Ok(())
    }

    /// Starts writing the chunk planned so far (the write runs as it is polled).
    fn start_writing(&mut self) {
        if self.batch.payouts.is_empty() && self.batch.carry_overs.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let amounts = std::mem::take(&mut self.amounts);
        self.items = 0;
        let store: Arc<dyn PayoutStore> = self.service.store.clone();
        self.writing.push_back(Box::pin(async move {
            let outcome = store.create_period(batch).await?;
            Ok((amounts, outcome))
        }));
    }

    /// The next consultation, polling the chunks being written meanwhile, so the writes progress
    /// while the calculation waits for rows. A finished write is recorded in the report; its error
    /// ends the calculation.
    async fn next_row(
        &mut self,
        stream: &mut BoxStream<'static, Result<Consultation>>,
    ) -> Result<Option<Result<Consultation>>> {
        let mut next = stream.next();
        loop {
            if self.writing.is_empty() {
                return Ok(next.await);
            }
            match futures::future::select(self.writing.next(), next).await {
                Either::Left((written, pending)) => {
                    if let Some(written) = written {
                        self.record(written?)?;
                    }
                    next = pending;
                }
                Either::Right((row, _)) => return Ok(row),
            }
        }
    }

    /// Writes what is left, waits for every write, and returns the report.
    async fn finish(mut self) -> Result<CalculationReport> {
        self.start_writing();
        while let Some(written) = self.writing.next().await {
            self.record(written?)?;
        }
        Ok(self.report)
    }

    fn record(&mut self, (amounts, outcome): (HashMap<PayoutId, Money>, PeriodBatchOutcome)) -> Result<()> {
        let PeriodBatchOutcome {
            created,
            carried_over,
            skipped,
        } = outcome;
        for id in &created {
            if let Some(a) = amounts.get(id) {
                self.report.total_created = self.report.total_created.checked_add(a)?;
            }
        }
        self.report.created.extend(created);
        self.report.carried_over.extend(carried_over);
        self.report.skipped.extend(skipped);
        Ok(())
    }
}
