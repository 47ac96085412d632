//! An in-memory [`PayoutStore`] with the same semantics as a database.
//!
//! Everything lives behind one mutex, and every method does all its checks before it changes
//! anything, so each call is atomic and all-or-nothing exactly like a transaction. The lock is never
//! held across an `.await`. It passes the conformance suite in `testkit::store` like the SQL stores.
//!
//! Choices the [`PayoutStore`] docs leave open, made here (and pinned by the conformance suite):
//! - An invalid request is [`Error::InvalidInput`] and writes nothing: what
//!   [`NewPayout::validate`] and [`PayoutChange::validate`] refuse, or an
//!   [`AttemptUpdate`](crate::store::AttemptUpdate) for an attempt the payout does not have.
//! - `attempts` and `audit_trail` of an unknown payout are [`Error::NotFound`], like `get` and `items`.
//! - [`PayoutStore::apply`] checks, in order: ids belong to the payout (`InvalidInput`), the payout
//!   exists (`NotFound`), the webhook event is new (`DuplicateEvent`), version and status are as
//!   expected (`Conflict`), the new attempt's number and idempotency key are new (`Conflict`;
//!   idempotency keys are unique across all payouts), the updated attempt exists (`InvalidInput`).
//!   A change that inserts an attempt and updates it is written as [`PayoutChange::normalized`]
//!   leaves it.
//! - [`PayoutStore::create_period`] and [`PayoutStore::create_payout`] write what
//!   [`PeriodBatch::decide`] and [`NewPayout::check_against`] decide, from the facts of the
//!   batch's keys read under the lock (the SQL stores decide with the same functions).
//! - A carry-over is open while it was never consumed or the payout that consumed it is
//!   `CANCELLED`: cancelling that payout reopens it, and the next payout to consume it re-points
//!   `consumed_by`. [`PayoutStore::open_carry_overs`] returns every carry-over with
//!   `consumed_by: None`.
//! - The consultation ledger is a map from consultation to the payout holding it, filled when a
//!   payout is inserted and emptied of a payout's consultations when a change releases them (the
//!   in-memory counterpart of the SQL stores' partial unique index).
//! - [`PayoutStore::find_attempt`] by provider reference returns the newest matching attempt when
//!   several share a reference (a batch id); [`PayoutStore::open_carry_overs`] is ordered by doctor,
//!   then period; [`PayoutStore::claim_checks`] by `next_check_at`, then id.
//! - A run's totals are a map from (status, provider, currency) to a count and a sum, changed as
//!   members join and as [`PayoutStore::apply`] moves them (each payout knows its runs), never
//!   recounted. [`PayoutStore::runs`] orders by `created_at`, then id, newest first.
//! - [`PayoutStore::stream`] reads the matching rows in keyset pages of [`STREAM_CHUNK`] rows, so
//!   it never copies the whole table and never holds the lock while the consumer works; a payout
//!   created meanwhile with an older `created_at` than the last row read may appear, as with a
//!   database cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use crate::domain::{
    AuditEntry, DoctorHold, DoctorId, FundsOverride, ItemKind, NewRun, Payout, PayoutAttempt, PayoutId, PayoutItem,
    PayoutOrigin, Provider, Run, RunEvent, RunId, RunResult, RunSummary, RunTally, order_totals,
};
use crate::error::{Error, Result};
use crate::events::in_memory::Outbox;
use crate::events::{ClaimedEvent, EventClaim, EventCursor, EventDone, EventOutbox, EventPage, StoredEvent};
use crate::money::{Currency, Money, MoneyError};
use crate::provider::EventReference;
use crate::status::PayoutStatus;
use crate::store::{
    AttentionPage, BatchKeys, BulkPayoutStore, CarryOver, CheckClaim, CheckDone, CheckState, ClaimedCheck, ClawbackDue,
    Cursor, DoctorHoldPage, Flagged, FollowUp, HeldConsultation, Holder, LedgerRelease, MonthTotal, NewPayout, Page,
    PayoutChange, PayoutFilter, PayoutPage, PayoutStore, PeriodBatch, PeriodBatchOutcome, RunPage, RunResultPage, Slot,
    StatusTally, StoredFacts, TotalsFilter, WebhookEventRecord, add_minor, first_of_month, sort_tallies,
};

/// How many rows [`PayoutStore::stream`] reads under the lock at a time.
pub const STREAM_CHUNK: usize = 256;

/// An in-memory [`PayoutStore`]: for tests, demos and hosts that keep nothing.
///
/// Cloning it is cheap and the clones share the same data.
///
/// ```
/// use payout_core::memory::MemoryStore;
/// use payout_core::store::{Page, PayoutFilter, PayoutStore};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let page = store.list(&PayoutFilter::default(), &Page::default()).await?;
/// assert_eq!(page.total, 0);
/// # Ok::<(), payout_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("payouts", &state.payouts.len())
            .field("carry_overs", &state.carry_overs.len())
            .field("webhook_events", &state.webhook_events.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

/// Every method checks before it writes, so a panic elsewhere never leaves half a change behind
/// and a poisoned lock still guards consistent data.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A payout and what hangs off it.
#[derive(Debug)]
struct Record {
    payout: Payout,
    items: Vec<PayoutItem>,
    attempts: Vec<PayoutAttempt>,
    audit: Vec<AuditEntry>,
}

#[derive(Debug, Default)]
struct State {
    payouts: HashMap<PayoutId, Record>,
    /// The list order, ascending; read backwards for newest first. `created_at` never changes.
    order: BTreeSet<(DateTime<Utc>, PayoutId)>,
    /// Every calculated payout per (doctor, period), whatever its status.
    calculated: HashMap<Slot, Vec<PayoutId>>,
    /// Every attempt's idempotency key (unique across payouts).
    idempotency_keys: HashSet<String>,
    webhook_events: HashMap<(Provider, String), WebhookEventRecord>,
    carry_overs: BTreeMap<Slot, CarryOver>,
    /// Reconciliation's follow-up per payout, with its two indexes.
    checks: Checks,
    /// The consultation ledger: each consultation a live item or a carry-over holds, and which.
    held: HashMap<String, Held>,
    /// The ledger's clawbacks: each consultation a live `CLAWBACK` item has taken back, and which.
    clawed: HashMap<String, Held>,
    runs: HashMap<RunId, RunRecord>,
    /// The runs' order, ascending; read backwards for newest first.
    run_order: BTreeSet<(DateTime<Utc>, RunId)>,
    /// The runs each payout is a member of.
    memberships: HashMap<PayoutId, Vec<RunId>>,
    doctor_holds: HashMap<DoctorId, DoctorHold>,
    /// The events the changes above wrote, each with its change.
    outbox: Outbox,
}

/// A run's bucket: status, provider, currency.
type Bucket = (PayoutStatus, Option<Provider>, Currency);

/// A run and what hangs off it.
#[derive(Debug)]
struct RunRecord {
    run: Run,
    members: HashSet<PayoutId>,
    /// Count and sum in minor units per bucket.
    tallies: HashMap<Bucket, (i64, i128)>,
    results: Vec<RunResult>,
    events: Vec<RunEvent>,
}

impl RunRecord {
    fn count(&mut self, bucket: Bucket, n: i64, minor: i128) {
        let tally = self.tallies.entry(bucket).or_default();
        tally.0 += n;
        tally.1 += minor;
    }

    fn summary(&self) -> Result<RunSummary> {
        let mut totals = Vec::with_capacity(self.tallies.len());
        for (&(status, provider, currency), &(n, minor)) in &self.tallies {
            let minor = i64::try_from(minor).map_err(|_| MoneyError::Overflow)?;
            totals.push(RunTally {
                status,
                provider,
                currency,
                count: u64::try_from(n).unwrap_or(0),
                amount: Money::from_minor_units(minor, currency),
            });
        }
        Ok(RunSummary {
            run: self.run.clone(),
            totals: order_totals(totals),
        })
    }
}

/// A payout's bucket, and its amount in minor units.
fn bucket_of(p: &Payout) -> Result<(Bucket, i128)> {
    Ok((
        (p.status, p.provider, p.currency()),
        i128::from(p.amount_due.to_minor_units()?),
    ))
}

/// What `answer` says of each of `ids`, once per distinct id, leaving out the ids it has nothing for.
fn each_once<T>(ids: &[String], answer: impl Fn(&String) -> Option<T>) -> Vec<T> {
    ids.iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .filter_map(answer)
        .collect()
}

/// What holds a ledger entry in memory: a payout, or a carry-over by its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Payout(PayoutId),
    CarryOver(Slot),
}

impl Held {
    fn holder(&self) -> Holder {
        match self {
            Held::Payout(id) => Holder::Payout(id.clone()),
            Held::CarryOver((_, period)) => Holder::CarryOver(*period),
        }
    }
}

/// One payout's follow-up.
#[derive(Debug, Default)]
struct CheckRow {
    next_check_at: Option<DateTime<Utc>>,
    checks: u32,
    lease: i64,
    attention: Option<(String, DateTime<Utc>)>,
}

/// The follow-ups, indexed by when they are due and by when they were flagged, so a claim reads
/// only due checks.
#[derive(Debug, Default)]
struct Checks {
    rows: HashMap<PayoutId, CheckRow>,
    due: BTreeSet<(DateTime<Utc>, PayoutId)>,
    flagged: BTreeSet<(DateTime<Utc>, PayoutId)>,
}

impl Checks {
    /// Writes `follow_up` on `id`'s row (created when missing): the schedule, the flag (a flag
    /// that stays set keeps its `since`), and the count and lease as `counted` says: a finished
    /// check counts one more, a change resets the count. Returns the flag when it is new.
    fn write(
        &mut self,
        id: &PayoutId,
        follow_up: &FollowUp,
        at: DateTime<Utc>,
        counted: bool,
    ) -> Option<(String, DateTime<Utc>)> {
        let row = self.rows.entry(id.clone()).or_default();
        if let Some(due) = row.next_check_at.take() {
            self.due.remove(&(due, id.clone()));
        }
        row.next_check_at = follow_up.next_check_at;
        if let Some(due) = row.next_check_at {
            self.due.insert((due, id.clone()));
        }
        let since = match (&row.attention, &follow_up.attention) {
            (Some((_, since)), Some(_)) => Some(*since),
            (None, Some(_)) => Some(at),
            _ => None,
        };
        let new_flag = match (&row.attention, &follow_up.attention) {
            (None, Some(reason)) => Some((reason.clone(), at)),
            _ => None,
        };
        if let Some((_, old)) = row.attention.take() {
            self.flagged.remove(&(old, id.clone()));
        }
        row.attention = follow_up.attention.clone().zip(since);
        if let Some(since) = since {
            self.flagged.insert((since, id.clone()));
        }
        row.checks = if counted { row.checks + 1 } else { 0 };
        row.lease += 1;
        new_flag
    }
}

impl State {
    fn record(&self, id: &PayoutId) -> Result<&Record> {
        self.payouts.get(id).ok_or_else(|| Error::NotFound(id.clone()))
    }

    fn run_record(&self, id: &RunId) -> Result<&RunRecord> {
        self.runs.get(id).ok_or_else(|| Error::RunNotFound(id.clone()))
    }

    fn run_record_mut(&mut self, id: &RunId) -> Result<&mut RunRecord> {
        self.runs.get_mut(id).ok_or_else(|| Error::RunNotFound(id.clone()))
    }

    /// True when `p` passes every condition of `filter`, its run's membership included.
    fn passes(&self, filter: &PayoutFilter, p: &Payout) -> bool {
        filter.matches(p)
            && filter
                .run
                .as_ref()
                .is_none_or(|run| self.runs.get(run).is_some_and(|r| r.members.contains(&p.id)))
    }

    /// Makes the stored payouts `ids` members of `run` (both checked to exist), counting each
    /// new member in the run's totals.
    fn join(&mut self, run: &RunId, ids: &[PayoutId]) -> Result<()> {
        for id in ids {
            let (bucket, minor) = bucket_of(&self.record(id)?.payout)?;
            let Some(record) = self.runs.get_mut(run) else {
                return Err(Error::RunNotFound(run.clone()));
            };
            if record.members.insert(id.clone()) {
                record.count(bucket, 1, minor);
                self.memberships.entry(id.clone()).or_default().push(run.clone());
            }
        }
        Ok(())
    }

    /// Moves `before`'s runs' totals from its bucket to `after`'s.
    fn recount(&mut self, before: &Payout, after: &Payout) -> Result<()> {
        let (old, old_minor) = bucket_of(before)?;
        let (new, new_minor) = bucket_of(after)?;
        if old == new && old_minor == new_minor {
            return Ok(());
        }
        for run in self.memberships.get(&after.id).into_iter().flatten() {
            if let Some(record) = self.runs.get_mut(run) {
                record.count(old, -1, -old_minor);
                record.count(new, 1, new_minor);
            }
        }
        Ok(())
    }

    /// True when a non-cancelled calculated payout exists for the slot.
    fn has_live_calculated(&self, slot: &Slot) -> bool {
        self.calculated.get(slot).is_some_and(|ids| {
            ids.iter()
                .filter_map(|id| self.payouts.get(id))
                .any(|r| r.payout.status != PayoutStatus::Cancelled)
        })
    }

    /// True when the slot has a carry-over and it is open.
    fn carry_over_open(&self, slot: &Slot) -> bool {
        self.carry_overs.get(slot).is_some_and(|c| self.is_open(c))
    }

    /// True when `c` was never consumed, or the payout that consumed it has been cancelled since.
    fn is_open(&self, c: &CarryOver) -> bool {
        c.consumed_by.as_ref().is_none_or(|id| {
            self.payouts
                .get(id)
                .is_some_and(|r| r.payout.status == PayoutStatus::Cancelled)
        })
    }

    /// What the store holds about `keys`, for [`PeriodBatch::decide`] and [`NewPayout::check_against`].
    fn facts(&self, keys: &BatchKeys) -> StoredFacts {
        let slots = || keys.slots.iter().chain(&keys.wanted_carry_overs);
        StoredFacts {
            live_calculated: slots().filter(|s| self.has_live_calculated(s)).cloned().collect(),
            carry_overs: slots().filter(|s| self.carry_overs.contains_key(*s)).cloned().collect(),
            open_carry_overs: slots().filter(|s| self.carry_over_open(s)).cloned().collect(),
            payout_ids: keys
                .payout_ids
                .iter()
                .filter(|id| self.payouts.contains_key(*id))
                .cloned()
                .collect(),
            held_consultations: keys
                .consultations
                .iter()
                .filter(|c| self.held.contains_key(*c))
                .cloned()
                .collect(),
            held_clawbacks: keys
                .clawbacks
                .iter()
                .filter(|c| self.clawed.contains_key(*c))
                .cloned()
                .collect(),
        }
    }

    /// Enters `items`' consultations and clawbacks in the ledger, held by `by`.
    fn hold(&mut self, items: &[PayoutItem], by: &Held) {
        for item in items {
            let ledger = match item.kind {
                ItemKind::Consultation => &mut self.held,
                ItemKind::Clawback => &mut self.clawed,
                _ => continue,
            };
            ledger.insert(item.reference.clone(), by.clone());
        }
    }

    /// What was paid for `appointment_id`, when it can be clawed back (see
    /// [`PayoutStore::clawbacks_due`]).
    fn clawback_due(&self, appointment_id: &str) -> Option<Money> {
        if self.clawed.contains_key(appointment_id) {
            return None;
        }
        let consultation = |items: &[PayoutItem]| {
            items
                .iter()
                .find(|i| i.kind == ItemKind::Consultation && i.reference == appointment_id)
                .map(|i| i.amount)
        };
        match self.held.get(appointment_id)? {
            Held::Payout(id) => {
                let record = self.payouts.get(id)?;
                (record.payout.status == PayoutStatus::Paid)
                    .then(|| consultation(&record.items))
                    .flatten()
            }
            Held::CarryOver(slot) => consultation(&self.carry_overs.get(slot)?.items),
        }
    }

    /// Newest first, strictly after `after` when given.
    fn newest_first<'a>(&'a self, after: Option<&Cursor>) -> impl Iterator<Item = &'a Payout> + 'a {
        let keys: Box<dyn DoubleEndedIterator<Item = &(DateTime<Utc>, PayoutId)> + 'a> = match after {
            Some(c) => Box::new(self.order.range(..(c.created_at, c.id.clone()))),
            None => Box::new(self.order.iter()),
        };
        keys.rev().filter_map(|(_, id)| self.payouts.get(id)).map(|r| &r.payout)
    }

    /// Inserts a checked new payout.
    fn insert(&mut self, new: NewPayout) {
        let NewPayout {
            payout,
            items,
            consumes_carry_overs,
            audit,
        } = new;
        for period in consumes_carry_overs {
            if let Some(c) = self.carry_overs.get_mut(&(payout.doctor_id.clone(), period)) {
                c.consumed_by = Some(payout.id.clone());
            }
        }
        if payout.origin == PayoutOrigin::Calculated {
            self.calculated
                .entry((payout.doctor_id.clone(), payout.period()))
                .or_default()
                .push(payout.id.clone());
        }
        self.hold(&items, &Held::Payout(payout.id.clone()));
        self.outbox.audit(&payout, &audit);
        self.order.insert((payout.created_at, payout.id.clone()));
        self.payouts.insert(
            payout.id.clone(),
            Record {
                payout,
                items,
                attempts: Vec::new(),
                audit: vec![audit],
            },
        );
    }
}

#[async_trait]
impl PayoutStore for MemoryStore {
    async fn create_period(&self, mut batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
        batch.validate()?;
        let mut state = self.lock();
        let run = batch.run.take();
        if let Some(run) = &run {
            state.run_record(run)?;
        }
        // Decided in full before anything is written, so a refused batch writes nothing.
        let facts = state.facts(&batch.keys());
        let decision = batch.decide(&facts)?;
        // Amounts that do not fit minor units would fail the run's totals: refuse them first.
        for new in &decision.create {
            new.payout.amount_due.to_minor_units()?;
        }
        let mut outcome = PeriodBatchOutcome {
            skipped: decision.skipped,
            ..Default::default()
        };
        for new in decision.create {
            outcome.created.push(new.payout.id.clone());
            state.insert(new);
        }
        for c in decision.carry {
            outcome.carried_over.push(c.doctor_id.clone());
            let slot = (c.doctor_id.clone(), c.period);
            state.hold(&c.items, &Held::CarryOver(slot.clone()));
            state.carry_overs.insert(slot, c);
        }
        if let Some(run) = &run {
            state.join(run, &outcome.created)?;
        }
        Ok(outcome)
    }

    async fn create_payout(&self, new: NewPayout) -> Result<Payout> {
        new.validate()?;
        new.payout.amount_due.to_minor_units()?;
        let mut state = self.lock();
        new.check_against(&state.facts(&new.keys()))?;
        let payout = new.payout.clone();
        state.insert(new);
        Ok(payout)
    }

    async fn get(&self, id: &PayoutId) -> Result<Payout> {
        Ok(self.lock().record(id)?.payout.clone())
    }

    async fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
        let state = self.lock();
        let limit = page.limit.min(Page::MAX_LIMIT) as usize;
        let total = state.newest_first(None).filter(|p| state.passes(filter, p)).count() as u64;
        let matching = state
            .newest_first(page.after.as_ref())
            .filter(|p| state.passes(filter, p));
        let skip = if page.after.is_some() {
            0
        } else {
            usize::try_from(page.skip).unwrap_or(usize::MAX)
        };
        let payouts: Vec<Payout> = matching.skip(skip).take(limit).cloned().collect();
        let next = if limit > 0 && payouts.len() == limit {
            payouts.last().map(Cursor::after)
        } else {
            None
        };
        Ok(PayoutPage { payouts, total, next })
    }

    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>> {
        let state = Arc::clone(&self.state);
        // (cursor, done): each step reads one chunk after the cursor, under the lock.
        stream::unfold((None::<Cursor>, false), move |(after, done)| {
            let state = Arc::clone(&state);
            let filter = filter.clone();
            async move {
                if done {
                    return None;
                }
                let guard = lock(&state);
                let chunk: Vec<Payout> = guard
                    .newest_first(after.as_ref())
                    .filter(|p| guard.passes(&filter, p))
                    .take(STREAM_CHUNK)
                    .cloned()
                    .collect();
                drop(guard);
                let next = chunk.last().map(Cursor::after);
                let done = chunk.len() < STREAM_CHUNK;
                (!chunk.is_empty()).then(|| (stream::iter(chunk.into_iter().map(Ok)), (next, done)))
            }
        })
        .flatten()
        .boxed()
    }

    async fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>> {
        Ok(self.lock().record(id)?.items.clone())
    }

    async fn apply(&self, change: PayoutChange) -> Result<Payout> {
        change.validate()?;
        let change = change.normalized();
        let mut guard = self.lock();
        let state = &mut *guard;
        let id = &change.payout_id;

        // Every check before any write.
        let record = state.record(id)?;
        if let Some(event) = &change.webhook_event {
            if state
                .webhook_events
                .contains_key(&(event.provider, event.event_id.clone()))
            {
                return Err(Error::DuplicateEvent {
                    provider: event.provider,
                    event_id: event.event_id.clone(),
                });
            }
        }
        if record.payout.version != change.expected_version || record.payout.status != change.expected_status {
            return Err(Error::Conflict(id.clone()));
        }
        if let Some(attempt) = &change.new_attempt {
            if record.attempts.iter().any(|a| a.attempt_no == attempt.attempt_no)
                || state.idempotency_keys.contains(&attempt.idempotency_key)
            {
                return Err(Error::Conflict(id.clone()));
            }
        }
        if let Some(update) = &change.attempt_update {
            if !record.attempts.iter().any(|a| a.attempt_no == update.attempt_no) {
                return Err(Error::InvalidInput(format!(
                    "payout {id} has no attempt {}",
                    update.attempt_no
                )));
            }
        }

        let follow_up = change.follow_up_written();
        let release = change.ledger_release();
        let PayoutChange {
            payout_id,
            new_status,
            patch,
            new_attempt,
            attempt_update,
            webhook_event,
            audit,
            at,
            ..
        } = change;
        let record = state.payouts.get_mut(&payout_id).ok_or(Error::NotFound(payout_id))?;
        if release != LedgerRelease::Nothing {
            let by = Held::Payout(record.payout.id.clone());
            for item in &record.items {
                let ledger = match item.kind {
                    ItemKind::Consultation if release == LedgerRelease::All => &mut state.held,
                    ItemKind::Clawback => &mut state.clawed,
                    _ => continue,
                };
                if ledger.get(&item.reference) == Some(&by) {
                    ledger.remove(&item.reference);
                }
            }
        }
        let before = record.payout.clone();
        let p = &mut record.payout;
        if let Some(status) = new_status {
            p.status = status;
        }
        patch.apply_to(p);
        p.version += 1;
        p.updated_at = at;
        if let Some(attempt) = new_attempt {
            state.idempotency_keys.insert(attempt.idempotency_key.clone());
            record.attempts.push(attempt);
        }
        if let Some(update) = &attempt_update {
            if let Some(attempt) = record.attempts.iter_mut().find(|a| a.attempt_no == update.attempt_no) {
                update.apply_to(attempt, at);
            }
        }
        if let Some(event) = webhook_event {
            state
                .webhook_events
                .insert((event.provider, event.event_id.clone()), event);
        }
        let payout = record.payout.clone();
        for entry in &audit {
            state.outbox.audit(&payout, entry);
        }
        record.audit.extend(audit);
        if let Some(follow_up) = follow_up {
            if let Some((reason, since)) = state.checks.write(&payout.id, &follow_up, at, false) {
                state.outbox.flagged(&payout, &reason, since);
            }
        }
        // Amounts never change and were checked to fit minor units when created.
        state.recount(&before, &payout)?;
        Ok(payout)
    }

    async fn held_consultations(&self, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>> {
        let state = self.lock();
        Ok(each_once(appointment_ids, |c| {
            state.held.get(c).map(|by| HeldConsultation {
                appointment_id: c.clone(),
                held_by: by.holder(),
            })
        }))
    }

    async fn clawbacks_due(&self, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>> {
        let state = self.lock();
        Ok(each_once(appointment_ids, |c| {
            state.clawback_due(c).map(|amount| ClawbackDue {
                appointment_id: c.clone(),
                amount,
            })
        }))
    }

    async fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
        let mut attempts = self.lock().record(id)?.attempts.clone();
        attempts.sort_by_key(|a| a.attempt_no);
        Ok(attempts)
    }

    async fn find_attempt(&self, provider: Provider, reference: &EventReference) -> Result<Option<PayoutAttempt>> {
        let state = self.lock();
        let matches = |a: &PayoutAttempt| {
            a.provider == provider
                && match reference {
                    EventReference::ProviderReference(r) => a.provider_reference.as_deref() == Some(r.as_str()),
                    EventReference::IdempotencyKey(k) => &a.idempotency_key == k,
                }
        };
        Ok(state
            .payouts
            .values()
            .flat_map(|r| r.attempts.iter())
            .filter(|a| matches(a))
            .max_by(|a, b| (a.created_at, &a.payout_id, a.attempt_no).cmp(&(b.created_at, &b.payout_id, b.attempt_no)))
            .cloned())
    }

    async fn batch_attempts(&self, provider: Provider, batch_id: &str) -> Result<Vec<PayoutAttempt>> {
        let state = self.lock();
        let mut members: Vec<PayoutAttempt> = state
            .payouts
            .values()
            .flat_map(|r| r.attempts.iter())
            .filter(|a| a.provider == provider && a.batch_id.as_deref() == Some(batch_id))
            .cloned()
            .collect();
        members.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
        Ok(members)
    }

    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> Result<bool> {
        Ok(self
            .lock()
            .webhook_events
            .contains_key(&(provider, event_id.to_string())))
    }

    async fn audit_trail(&self, id: &PayoutId) -> Result<Vec<AuditEntry>> {
        Ok(self.lock().record(id)?.audit.clone())
    }

    async fn claim_checks(&self, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let due: Vec<PayoutId> = state
            .checks
            .due
            .iter()
            .take_while(|(at, _)| *at <= claim.due_by)
            .take(claim.limit as usize)
            .map(|(_, id)| id.clone())
            .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            let Some((payout, latest_attempt)) = state.payouts.get(&id).map(|r| {
                let latest = r.attempts.iter().max_by_key(|a| a.attempt_no).cloned();
                (r.payout.clone(), latest)
            }) else {
                continue;
            };
            let checks = &mut state.checks;
            let Some(row) = checks.rows.get_mut(&id) else {
                continue;
            };
            if let Some(at) = row.next_check_at.replace(claim.lease_until) {
                checks.due.remove(&(at, id.clone()));
            }
            checks.due.insert((claim.lease_until, id.clone()));
            row.lease += 1;
            claimed.push(ClaimedCheck {
                payout,
                latest_attempt,
                lease: row.lease,
                checks: row.checks,
                attention: row.attention.as_ref().map(|(reason, _)| reason.clone()),
            });
        }
        Ok(claimed)
    }

    async fn finish_checks(&self, done: &[CheckDone]) -> Result<Vec<bool>> {
        let mut state = self.lock();
        for d in done {
            state.record(&d.payout_id)?;
        }
        let mut written = Vec::with_capacity(done.len());
        for d in done {
            let current = state.checks.rows.get(&d.payout_id).map(|r| r.lease);
            let mine = current == Some(d.lease);
            if mine {
                if let Some((reason, since)) = state.checks.write(&d.payout_id, &d.follow_up, d.at, true) {
                    let state = &mut *state;
                    if let Some(record) = state.payouts.get(&d.payout_id) {
                        state.outbox.flagged(&record.payout, &reason, since);
                    }
                }
            }
            written.push(mine);
        }
        Ok(written)
    }

    async fn check_state(&self, id: &PayoutId) -> Result<CheckState> {
        let state = self.lock();
        state.record(id)?;
        Ok(state
            .checks
            .rows
            .get(id)
            .map(|r| CheckState {
                next_check_at: r.next_check_at,
                checks: r.checks,
                attention: r.attention.as_ref().map(|(reason, _)| reason.clone()),
            })
            .unwrap_or_default())
    }

    async fn attention(&self, page: &Page) -> Result<AttentionPage> {
        let state = self.lock();
        let limit = page.limit.min(Page::MAX_LIMIT) as usize;
        let skip = usize::try_from(page.skip).unwrap_or(usize::MAX);
        let flagged = state
            .checks
            .flagged
            .iter()
            .skip(skip)
            .take(limit)
            .filter_map(|(since, id)| {
                let payout = state.payouts.get(id)?.payout.clone();
                let (reason, _) = state.checks.rows.get(id)?.attention.clone()?;
                Some(Flagged {
                    payout,
                    reason,
                    since: *since,
                })
            })
            .collect();
        Ok(AttentionPage {
            flagged,
            total: state.checks.flagged.len() as u64,
        })
    }

    async fn run_attention(&self, run: &RunId, page: &Page) -> Result<AttentionPage> {
        let state = self.lock();
        let members = &state.run_record(run)?.members;
        let limit = page.limit.min(Page::MAX_LIMIT) as usize;
        let skip = usize::try_from(page.skip).unwrap_or(usize::MAX);
        let mut total = 0u64;
        let mut flagged = Vec::new();
        // The queue's order, the run's members only.
        for (since, id) in state.checks.flagged.iter().filter(|(_, id)| members.contains(id)) {
            total += 1;
            if total as usize > skip && flagged.len() < limit {
                let (Some(record), Some(row)) = (state.payouts.get(id), state.checks.rows.get(id)) else {
                    continue;
                };
                if let Some((reason, _)) = &row.attention {
                    flagged.push(Flagged {
                        payout: record.payout.clone(),
                        reason: reason.clone(),
                        since: *since,
                    });
                }
            }
        }
        Ok(AttentionPage { flagged, total })
    }

    async fn open_carry_overs(&self, before: NaiveDate) -> Result<Vec<CarryOver>> {
        let state = self.lock();
        Ok(state
            .carry_overs
            .values()
            .filter(|c| c.period.end < before && state.is_open(c))
            .map(|c| CarryOver {
                consumed_by: None,
                items: Vec::new(),
                ..c.clone()
            })
            .collect())
    }

    async fn create_run(&self, run: NewRun, payouts: &[PayoutId]) -> Result<RunSummary> {
        run.validate()?;
        let mut state = self.lock();
        if state.runs.contains_key(&run.id) {
            return Err(Error::RunConflict(run.id));
        }
        for id in payouts {
            state.record(id)?;
        }
        let run = run.into_run();
        let id = run.id.clone();
        state.run_order.insert((run.created_at, id.clone()));
        state.runs.insert(
            id.clone(),
            RunRecord {
                events: vec![RunEvent::created(&run)],
                run,
                members: HashSet::new(),
                tallies: HashMap::new(),
                results: Vec::new(),
            },
        );
        state.join(&id, payouts)?;
        state.run_record(&id)?.summary()
    }

    async fn run(&self, id: &RunId) -> Result<RunSummary> {
        self.lock().run_record(id)?.summary()
    }

    async fn runs(&self, page: &Page) -> Result<RunPage> {
        let state = self.lock();
        let limit = page.limit.min(Page::MAX_LIMIT) as usize;
        let skip = usize::try_from(page.skip).unwrap_or(usize::MAX);
        let runs = state
            .run_order
            .iter()
            .rev()
            .skip(skip)
            .take(limit)
            .map(|(_, id)| state.run_record(id)?.summary())
            .collect::<Result<Vec<_>>>()?;
        Ok(RunPage {
            runs,
            total: state.runs.len() as u64,
        })
    }

    async fn record_run_results(&self, run: &RunId, results: &[RunResult]) -> Result<()> {
        self.lock().run_record_mut(run)?.results.extend_from_slice(results);
        Ok(())
    }

    async fn run_results(&self, run: &RunId, page: &Page) -> Result<RunResultPage> {
        let state = self.lock();
        let record = state.run_record(run)?;
        let limit = page.limit.min(Page::MAX_LIMIT) as usize;
        let skip = usize::try_from(page.skip).unwrap_or(usize::MAX);
        Ok(RunResultPage {
            results: record.results.iter().skip(skip).take(limit).cloned().collect(),
            total: record.results.len() as u64,
        })
    }

    async fn record_run_event(&self, event: RunEvent) -> Result<()> {
        let mut state = self.lock();
        let state = &mut *state;
        state.run_record_mut(&event.run_id)?;
        state.outbox.run(&event);
        state.run_record_mut(&event.run_id)?.events.push(event);
        Ok(())
    }

    async fn run_events(&self, run: &RunId) -> Result<Vec<RunEvent>> {
        Ok(self.lock().run_record(run)?.events.clone())
    }

    async fn set_funds_override(
        &self,
        run: &RunId,
        expected: Option<FundsOverride>,
        new: FundsOverride,
    ) -> Result<Run> {
        let mut state = self.lock();
        let record = state.run_record_mut(run)?;
        if record.run.funds_override != expected {
            return Err(Error::RunConflict(run.clone()));
        }
        record.events.push(RunEvent::funds_override(run, &new));
        record.run.funds_override = Some(new);
        Ok(record.run.clone())
    }

    async fn doctor_holds(&self, ids: &[DoctorId]) -> Result<Vec<DoctorHold>> {
        let state = self.lock();
        Ok(ids
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .filter_map(|id| state.doctor_holds.get(id).cloned())
            .collect())
    }

    async fn all_doctor_holds(&self, page: &Page) -> Result<DoctorHoldPage> {
        let state = self.lock();
        let limit = page.limit.min(Page::MAX_LIMIT) as usize;
        let skip = usize::try_from(page.skip).unwrap_or(usize::MAX);
        let mut holds: Vec<&DoctorHold> = state.doctor_holds.values().collect();
        holds.sort_by(|a, b| (a.placed_at, &a.doctor_id).cmp(&(b.placed_at, &b.doctor_id)));
        Ok(DoctorHoldPage {
            holds: holds.into_iter().skip(skip).take(limit).cloned().collect(),
            total: state.doctor_holds.len() as u64,
        })
    }

    async fn place_doctor_hold(&self, hold: DoctorHold) -> Result<()> {
        let mut state = self.lock();
        if state.doctor_holds.contains_key(&hold.doctor_id) {
            return Err(Error::DoctorAlreadyHeld(hold.doctor_id));
        }
        state.doctor_holds.insert(hold.doctor_id.clone(), hold);
        Ok(())
    }

    async fn release_doctor_hold(&self, doctor: &DoctorId) -> Result<DoctorHold> {
        self.lock()
            .doctor_holds
            .remove(doctor)
            .ok_or_else(|| Error::DoctorNotHeld(doctor.clone()))
    }

    /// None: one lock around the whole store makes one payout at a time as fast as many.
    fn bulk(&self) -> Option<Arc<dyn BulkPayoutStore>> {
        None
    }

    /// Counted under the lock as it reads, as the list's total is: the in-memory store holds few
    /// payouts, and a count cannot drift from the payouts it counts.
    async fn totals(&self, filter: &TotalsFilter) -> Result<Vec<StatusTally>> {
        let state = self.lock();
        let mut buckets: BTreeMap<(PayoutStatus, Option<Provider>, Currency), (u64, i64)> = BTreeMap::new();
        for record in state.payouts.values().filter(|r| filter.matches(&r.payout)) {
            let p = &record.payout;
            let bucket = buckets.entry((p.status, p.provider, p.currency())).or_default();
            bucket.0 += 1;
            bucket.1 = add_minor(bucket.1, p.amount_due.to_minor_units()?)?;
        }
        let mut tallies: Vec<StatusTally> = buckets
            .into_iter()
            .map(|((status, provider, currency), (count, minor))| StatusTally {
                status,
                provider,
                currency,
                count,
                amount: Money::from_minor_units(minor, currency),
            })
            .collect();
        sort_tallies(&mut tallies);
        Ok(tallies)
    }

    async fn paid_by_month(&self, currency: Option<Currency>, from: NaiveDate) -> Result<Vec<MonthTotal>> {
        let state = self.lock();
        let from = first_of_month(from);
        let mut months: BTreeMap<(NaiveDate, String), (Currency, u64, i64)> = BTreeMap::new();
        for record in state.payouts.values() {
            let p = &record.payout;
            let month = first_of_month(p.created_at.date_naive());
            if p.status != PayoutStatus::Paid || month < from || currency.is_some_and(|c| c != p.currency()) {
                continue;
            }
            let slot = months
                .entry((month, p.currency().code().to_string()))
                .or_insert((p.currency(), 0, 0));
            slot.1 += 1;
            slot.2 = add_minor(slot.2, p.amount_due.to_minor_units()?)?;
        }
        Ok(months
            .into_iter()
            .map(|((month, _), (currency, count, minor))| MonthTotal {
                month,
                currency,
                count,
                amount: Money::from_minor_units(minor, currency),
            })
            .collect())
    }
}

#[async_trait]
impl EventOutbox for MemoryStore {
    async fn events_after(&self, after: EventCursor, limit: u32) -> Result<EventPage> {
        // Written under the store's lock: commits are in `seq` order, nothing is withheld.
        Ok(EventPage {
            events: self.lock().outbox.after(after.seq, limit, false),
            withheld: false,
        })
    }

    async fn claim_events(&self, claim: &EventClaim) -> Result<Vec<ClaimedEvent>> {
        Ok(self.lock().outbox.claim(claim))
    }

    async fn finish_events(&self, done: &[EventDone]) -> Result<Vec<bool>> {
        Ok(self.lock().outbox.finish(done))
    }

    async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
        Ok(self.lock().outbox.after(after, limit, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The other tests of this store are in `tests/memory_store.rs`, where the testkit's fixtures are.

    /// A panic while the lock is held poisons the mutex; `lock` still hands out the data (every
    /// method checks before it writes, so the data is consistent) to every clone of the store.
    #[tokio::test]
    async fn a_poisoned_lock_still_guards_the_data() {
        let store = MemoryStore::new();
        // Any data will do: a key the poisoned lock must still hold.
        store.lock().idempotency_keys.insert("po_1-1".to_string());
        let poisoner = store.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(store.state.is_poisoned(), "the panic poisoned the lock");
        assert!(store.lock().idempotency_keys.contains("po_1-1"), "the data survives");
        assert!(format!("{store:?}").contains("payouts: 0"), "Debug locks too");
        let page = store.list(&PayoutFilter::default(), &Page::default()).await;
        assert_eq!(page.expect("the store keeps answering").total, 0);
    }
}
