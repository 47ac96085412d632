//! The period calculation and manual payouts.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::Either;
use futures::stream::{BoxStream, FuturesOrdered};
use serde::{Deserialize, Serialize};

use super::PayoutService;
use crate::calculation::{CalculationPolicy, DoctorPlan, carry_over_record, clawback_item, is_late, plan_doctor};
use crate::domain::{
    Actor, AuditEntry, Consultation, DoctorId, ItemKind, NewRun, Payout, PayoutId, PayoutItem, PayoutOrigin, Period,
    Reversal, RunId, RunKind,
};
use crate::error::{Error, Result, StoreErrorKind};
use crate::money::Money;
use crate::status::PayoutStatus;
use crate::store::{CarryOver, Holder, NewPayout, PeriodBatch, PeriodBatchOutcome, SkipReason};

/// What a calculation did.
#[derive(Debug, Clone, PartialEq)]
pub struct CalculationReport {
    /// The period calculated.
    pub period: Period,
    /// Completed consultations read, of the period and of its look-back.
    pub consultations: u64,
    /// Late consultations paid or carried by this run: completed in the look-back before the
    /// period, held by no payout (their period was calculated before they were completed).
    pub late: u64,
    /// Paid consultations reversed since (refunded, voided) whose pay this run clawed back, as
    /// negative items of a payout or of a carry-over.
    pub clawbacks: u64,
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
    /// Consultations skipped because a live payout already holds them (the consultation ledger:
    /// an overlapping or repeated run, or a calculation racing this one), by doctor and holding
    /// payout.
    pub already_paid: Vec<AlreadyPaid>,
    /// The sum of the created payouts.
    pub total_created: Money,
    /// The run the created payouts joined ([`RunKind::Calculation`]), made when the first chunk
    /// with a payout to create is written. `None` when the calculation planned no payout (a
    /// re-run of a calculated period, a period of carry-overs only): no empty run is made.
    pub run: Option<RunId>,
}

/// Consultations of a doctor's period that a calculation skipped because a live payout (or a
/// carry-over) already holds them. Late consultations of the look-back that are held are not
/// reported: being held is what is expected of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlreadyPaid {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The payout (its items list them) or the carry-over holding them.
    pub held_by: Holder,
    /// How many of the doctor's consultations it holds that this run read.
    pub consultations: u64,
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
    /// reports whom it skipped. The run also reads the policy's look-back
    /// ([`CalculationPolicy::lookback_days`]): completed consultations of it that no payout holds
    /// (completed after their period was calculated) are paid with this period as late items,
    /// and paid consultations reversed in the look-back or the period
    /// ([`ConsultationSource::reversed`](crate::source::ConsultationSource::reversed)) are clawed
    /// back as negative items, once each (the consultation ledger holds clawbacks too). Consultations are streamed and written in chunks (at most
    /// [`PerformanceConfig::calculation_chunk`](super::PerformanceConfig::calculation_chunk) doctors
    /// and [`calculation_chunk_items`](super::PerformanceConfig::calculation_chunk_items) items):
    /// memory holds one doctor's consultations and a few chunks at a time (up to
    /// [`calculation_writes_in_flight`](super::PerformanceConfig::calculation_writes_in_flight) being
    /// written while the next is planned), however long the period. Each chunk is one transaction: if
    /// the calculation fails part-way, the chunks already written stay (the ones in flight may be
    /// rolled back), and running it again creates the rest.
    ///
    /// The created payouts are the members of one run of kind [`RunKind::Calculation`]
    /// ([`CalculationReport::run`]), made (with its `CREATE` event) before the first chunk that
    /// creates a payout and joined by each chunk's payouts in the chunk's own transaction. A
    /// calculation run again after a failure makes a run of its own for the rest.
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
        let window = policy.window(period);

        // Reversals are few (a refund is the exception): read them whole, by doctor.
        let mut reversals: HashMap<DoctorId, Vec<Reversal>> = HashMap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut reversed = source.reversed(window);
        while let Some(r) = reversed.next().await {
            let r = r?;
            if !window.contains(r.reversed_at) {
                return Err(Error::Source(format!(
                    "reversal of consultation {} at {} is outside {window}",
                    r.appointment_id, r.reversed_at
                )));
            }
            if seen.insert(r.appointment_id.clone()) {
                reversals.entry(r.doctor_id.clone()).or_default().push(r);
            }
        }
        drop((reversed, seen));

        let mut open: HashMap<DoctorId, Vec<CarryOver>> = HashMap::new();
        for c in self.store.open_carry_overs(period.start).await? {
            if c.amount.currency() == currency {
                open.entry(c.doctor_id.clone()).or_default().push(c);
            }
        }

        let run = tokio::sync::OnceCell::new();
        let mut writer = ChunkWriter::new(self, actor, policy, period, &run);
        let mut finished: HashSet<DoctorId> = HashSet::new();
        let mut current: Option<(DoctorId, Vec<Consultation>)> = None;
        let mut stream = source.completed(window);
        while let Some(row) = writer.next_row(&mut stream).await? {
            let c = row?;
            if !window.contains(c.completed_at) {
                return Err(Error::Source(format!(
                    "consultation {} completed at {} is outside {window}",
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
                        let reversed = reversals.remove(&doctor).unwrap_or_default();
                        writer.add(doctor, consultations, carried, reversed).await?;
                    }
                    current = Some((c.doctor_id.clone(), vec![c]));
                }
            }
        }
        if let Some((doctor, consultations)) = current.take() {
            let carried = open.remove(&doctor).unwrap_or_default();
            let reversed = reversals.remove(&doctor).unwrap_or_default();
            writer.add(doctor, consultations, carried, reversed).await?;
        }
        // Doctors with only an open carry-over this period (it may now reach the minimum), or only
        // reversals (their clawbacks are recorded, carried forward).
        let mut rest: Vec<DoctorId> = open.keys().chain(reversals.keys()).cloned().collect();
        rest.sort();
        rest.dedup();
        for doctor in rest {
            let carried = open.remove(&doctor).unwrap_or_default();
            let reversed = reversals.remove(&doctor).unwrap_or_default();
            writer.add(doctor, Vec::new(), carried, reversed).await?;
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

/// How many times a calculation chunk is planned and written before it gives up: a chunk (or some
/// of its doctors) that loses the consultation ledger to a concurrent calculation is re-planned
/// without what the other one took; each round takes only what is still free, so two rounds
/// settle any race between two calculations, and the third is a margin.
pub const CHUNK_ROUNDS: usize = 3;

/// One doctor's share of a calculation, as read: consultations of the period and the look-back,
/// the open carry-overs, and the reversals of the period and the look-back.
struct DoctorInput {
    doctor: DoctorId,
    consultations: Vec<Consultation>,
    carried: Vec<CarryOver>,
    reversals: Vec<Reversal>,
}

/// What a chunk did, merged into the report in the order the chunks were read.
#[derive(Default)]
struct ChunkResult {
    created: Vec<PayoutId>,
    total: Vec<Money>,
    carried_over: Vec<DoctorId>,
    skipped: Vec<(DoctorId, SkipReason)>,
    nothing_due: Vec<DoctorId>,
    already_paid: Vec<AlreadyPaid>,
    late: u64,
    clawbacks: u64,
}

impl ChunkResult {
    fn extend(&mut self, other: ChunkResult) {
        self.created.extend(other.created);
        self.total.extend(other.total);
        self.carried_over.extend(other.carried_over);
        self.skipped.extend(other.skipped);
        self.nothing_due.extend(other.nothing_due);
        self.already_paid.extend(other.already_paid);
        self.late += other.late;
        self.clawbacks += other.clawbacks;
    }
}

/// A chunk's write in progress.
type Writing<'a> = Pin<Box<dyn Future<Output = Result<ChunkResult>> + Send + 'a>>;

/// True when a chunk's write failed because a concurrent write took what it wanted (the ledger's
/// unique constraint, a taken id, a serialization failure): nothing was written, so it can be
/// planned again.
fn lost_a_race(e: &Error) -> bool {
    matches!(e, Error::Conflict(_)) || matches!(e, Error::Store(s) if s.kind() == StoreErrorKind::Conflict)
}

/// Plumbing only: gathers doctors into chunks, plans each chunk against the consultation ledger
/// (one [`held_consultations`](crate::store::PayoutStore::held_consultations) lookup per chunk), writes it in
/// its own transaction while the next one is read (up to
/// [`calculation_writes_in_flight`](super::PerformanceConfig::calculation_writes_in_flight) at
/// once), and records what each write did in the report, in the order the chunks were read.
struct ChunkWriter<'a> {
    service: &'a PayoutService,
    actor: &'a Actor,
    policy: &'a CalculationPolicy,
    period: Period,
    /// The calculation's run, once a chunk made it.
    run: &'a tokio::sync::OnceCell<RunId>,
    report: CalculationReport,
    /// The doctors of the chunk being gathered.
    pending: Vec<DoctorInput>,
    /// Consultations held in `pending`.
    items: usize,
    /// The chunks being written, oldest first.
    writing: FuturesOrdered<Writing<'a>>,
}

impl<'a> ChunkWriter<'a> {
    fn new(
        service: &'a PayoutService,
        actor: &'a Actor,
        policy: &'a CalculationPolicy,
        period: Period,
        run: &'a tokio::sync::OnceCell<RunId>,
    ) -> Self {
        ChunkWriter {
            service,
            actor,
            policy,
            period,
            run,
            report: CalculationReport {
                period,
                consultations: 0,
                late: 0,
                clawbacks: 0,
                doctors: 0,
                created: Vec::new(),
                carried_over: Vec::new(),
                skipped: Vec::new(),
                nothing_due: Vec::new(),
                already_paid: Vec::new(),
                total_created: Money::zero(policy.currency()),
                run: None,
            },
            pending: Vec::new(),
            items: 0,
            writing: FuturesOrdered::new(),
        }
    }

    /// Adds a doctor to the chunk, and writes the chunk once it is full.
    async fn add(
        &mut self,
        doctor: DoctorId,
        consultations: Vec<Consultation>,
        carried: Vec<CarryOver>,
        reversals: Vec<Reversal>,
    ) -> Result<()> {
        self.report.doctors += 1;
        self.items += consultations.len() + carried.len() + reversals.len();
        self.pending.push(DoctorInput {
            doctor,
            consultations,
            carried,
            reversals,
        });
        let performance = &self.service.performance;
        if self.pending.len() >= performance.calculation_chunk.max(1)
            || self.items >= performance.calculation_chunk_items
        {
            while self.writing.len() >= performance.calculation_writes_in_flight.max(1) {
                if let Some(written) = self.writing.next().await {
                    self.record(written?)?;
                }
            }
            self.start_writing();
        }
        Ok(())
    }

    /// Starts writing the chunk gathered so far (the write runs as it is polled).
    fn start_writing(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let inputs = std::mem::take(&mut self.pending);
        self.items = 0;
        let (service, actor, policy, period, run) = (self.service, self.actor, self.policy, self.period, self.run);
        self.writing
            .push_back(Box::pin(write_chunk(service, actor, policy, period, run, inputs)));
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
        self.report.run = self.run.get().cloned();
        Ok(self.report)
    }

    fn record(&mut self, chunk: ChunkResult) -> Result<()> {
        for a in &chunk.total {
            self.report.total_created = self.report.total_created.checked_add(a)?;
        }
        self.report.created.extend(chunk.created);
        self.report.carried_over.extend(chunk.carried_over);
        self.report.skipped.extend(chunk.skipped);
        self.report.nothing_due.extend(chunk.nothing_due);
        self.report.already_paid.extend(chunk.already_paid);
        self.report.late += chunk.late;
        self.report.clawbacks += chunk.clawbacks;
        Ok(())
    }
}

/// Plans and writes one chunk: reads which of its consultations the ledger already holds and
/// which of its reversed consultations can be clawed back (one lookup each), plans each doctor
/// without what is held ([`plan_doctor`]) and writes the payouts and carry-overs in one
/// transaction. Doctors whose payout or carry-over the store skips because a concurrent
/// calculation took one of their ledger entries meanwhile ([`SkipReason::ConsultationHeld`]), or
/// the whole chunk when its transaction lost to one (a `Conflict`, nothing written), are planned
/// again, at most [`CHUNK_ROUNDS`] times in all.
async fn write_chunk(
    service: &PayoutService,
    actor: &Actor,
    policy: &CalculationPolicy,
    period: Period,
    run: &tokio::sync::OnceCell<RunId>,
    mut inputs: Vec<DoctorInput>,
) -> Result<ChunkResult> {
    let mut result = ChunkResult::default();
    for round in 1..=CHUNK_ROUNDS {
        let last = round == CHUNK_ROUNDS;
        let held = held_of(service, &inputs).await?;
        let due = clawbacks_due_of(service, &inputs).await?;
        let mut round_result = ChunkResult::default();
        let mut batch = PeriodBatch::default();
        let mut amounts: HashMap<PayoutId, Money> = HashMap::new();
        let mut already: HashMap<DoctorId, Vec<AlreadyPaid>> = HashMap::new();
        // Late consultations and clawbacks per doctor, counted once the store wrote them.
        let mut counts: HashMap<DoctorId, (u64, u64)> = HashMap::new();
        for input in &inputs {
            let (free, taken): (Vec<&Consultation>, Vec<&Consultation>) = input
                .consultations
                .iter()
                .partition(|c| !held.contains_key(&c.appointment_id));
            // A held consultation of the look-back is one paid with its own period: as expected.
            let taken: Vec<&Consultation> = taken.into_iter().filter(|c| !is_late(c, period)).collect();
            if !taken.is_empty() {
                already.insert(input.doctor.clone(), already_paid(&input.doctor, &taken, &held));
            }
            let clawbacks: Vec<PayoutItem> = input
                .reversals
                .iter()
                .filter_map(|r| due.get(&r.appointment_id).map(|paid| clawback_item(r, *paid)))
                .filter(|item| item.amount.currency() == policy.currency())
                .collect();
            if free.is_empty() && input.carried.is_empty() && clawbacks.is_empty() {
                // Everything it had is on a live payout already: reported as already paid.
                continue;
            }
            let free: Vec<Consultation> = free.into_iter().cloned().collect();
            let late = free.iter().filter(|c| is_late(c, period)).count() as u64;
            counts.insert(input.doctor.clone(), (late, clawbacks.len() as u64));
            let plan = plan_doctor(policy, period, &input.doctor, &free, &clawbacks, &input.carried)?;
            match plan {
                DoctorPlan::Pay(planned) => {
                    let now = service.clock.now();
                    let payout =
                        service.new_payout(actor, &input.doctor, period, planned.net, PayoutOrigin::Calculated, now);
                    let audit = create_audit(&payout, actor, planned.summary(period));
                    amounts.insert(payout.id.clone(), planned.net);
                    batch.payouts.push(NewPayout {
                        payout,
                        items: planned.items,
                        consumes_carry_overs: planned.consumes_carry_overs,
                        audit,
                    });
                }
                DoctorPlan::CarryOver {
                    amount: Some(amount),
                    items,
                    note,
                } => {
                    let at = service.clock.now();
                    batch
                        .carry_overs
                        .push(carry_over_record(&input.doctor, period, amount, items, note, at));
                }
                DoctorPlan::CarryOver { amount: None, .. } => {}
                DoctorPlan::NothingDue => round_result.nothing_due.push(input.doctor.clone()),
            }
        }
        let doctor_of: HashMap<PayoutId, DoctorId> = batch
            .payouts
            .iter()
            .map(|p| (p.payout.id.clone(), p.payout.doctor_id.clone()))
            .collect();
        let outcome = if batch.payouts.is_empty() && batch.carry_overs.is_empty() {
            PeriodBatchOutcome::default()
        } else {
            if !batch.payouts.is_empty() {
                batch.run = Some(calculation_run(service, actor, period, run).await?);
            }
            match service.store.create_period(batch).await {
                Ok(outcome) => outcome,
                Err(e) if !last && lost_a_race(&e) => continue,
                Err(e) => return Err(e),
            }
        };
        let lost: HashSet<DoctorId> = outcome
            .skipped
            .iter()
            .filter(|(_, reason)| *reason == SkipReason::ConsultationHeld && !last)
            .map(|(doctor, _)| doctor.clone())
            .collect();
        for id in &outcome.created {
            if let Some(a) = amounts.remove(id) {
                round_result.total.push(a);
            }
        }
        let written = outcome
            .created
            .iter()
            .filter_map(|id| doctor_of.get(id))
            .chain(&outcome.carried_over);
        for doctor in written {
            let (late, clawbacks) = counts.get(doctor).copied().unwrap_or_default();
            round_result.late += late;
            round_result.clawbacks += clawbacks;
        }
        round_result.created = outcome.created;
        round_result.carried_over = outcome.carried_over;
        round_result.skipped = outcome.skipped.into_iter().filter(|(d, _)| !lost.contains(d)).collect();
        round_result.nothing_due.retain(|d| !lost.contains(d));
        round_result.already_paid = inputs
            .iter()
            .filter(|d| !lost.contains(&d.doctor))
            .filter_map(|d| already.remove(&d.doctor))
            .flatten()
            .collect();
        result.extend(round_result);
        if lost.is_empty() {
            break;
        }
        inputs.retain(|d| lost.contains(&d.doctor));
    }
    Ok(result)
}

/// The calculation's run: made by the first chunk that asks (chunks written at once wait for it),
/// then the same for every chunk.
async fn calculation_run(
    service: &PayoutService,
    actor: &Actor,
    period: Period,
    run: &tokio::sync::OnceCell<RunId>,
) -> Result<RunId> {
    let id = run
        .get_or_try_init(|| async {
            let new = NewRun {
                id: service.ids.run_id(),
                kind: RunKind::Calculation,
                label: format!("Calculation {period}"),
                period: Some(period),
                created_by: actor.label(),
                created_at: service.clock.now(),
            };
            Ok::<_, Error>(service.store.create_run(new, &[]).await?.run.id)
        })
        .await?;
    Ok(id.clone())
}

/// What holds each of the chunk's consultations that is held (one ledger lookup).
async fn held_of(service: &PayoutService, inputs: &[DoctorInput]) -> Result<HashMap<String, Holder>> {
    let ids: Vec<String> = inputs
        .iter()
        .flat_map(|d| d.consultations.iter().map(|c| c.appointment_id.clone()))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(service
        .store
        .held_consultations(&ids)
        .await?
        .into_iter()
        .map(|h| (h.appointment_id, h.held_by))
        .collect())
}

/// What was paid for each of the chunk's reversed consultations that can be clawed back (one
/// lookup).
async fn clawbacks_due_of(service: &PayoutService, inputs: &[DoctorInput]) -> Result<HashMap<String, Money>> {
    let ids: Vec<String> = inputs
        .iter()
        .flat_map(|d| d.reversals.iter().map(|r| r.appointment_id.clone()))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(service
        .store
        .clawbacks_due(&ids)
        .await?
        .into_iter()
        .map(|c| (c.appointment_id, c.amount))
        .collect())
}

/// The consultations of `doctor` the ledger already holds, one entry per holding payout, in the
/// order the consultations were read.
fn already_paid(doctor: &DoctorId, taken: &[&Consultation], held: &HashMap<String, Holder>) -> Vec<AlreadyPaid> {
    let mut out: Vec<AlreadyPaid> = Vec::new();
    for c in taken {
        let Some(by) = held.get(&c.appointment_id) else {
            continue;
        };
        match out.iter_mut().find(|a| &a.held_by == by) {
            Some(a) => a.consultations += 1,
            None => out.push(AlreadyPaid {
                doctor_id: doctor.clone(),
                held_by: by.clone(),
                consultations: 1,
            }),
        }
    }
    out
}
