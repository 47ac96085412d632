//! The [`PayoutStore`] trait: durable payouts, items, attempts, webhook events, audit trail and
//! carried-over balances, changed only through atomic, conditional steps.
//!
//! [`PayoutStore`] is the minimal contract every store implements. Doing many payouts at once is an
//! optional ability ([`BulkPayoutStore`], reported by [`PayoutStore::bulk`]); callers use
//! [`PayoutStoreExt`], which uses it when offered. The rules a store applies to what it is given
//! live on the types themselves ([`NewPayout::validate`], [`PayoutChange::validate`],
//! [`PayoutChange::normalized`], [`PayoutPatch::apply_to`]), so every store applies them the same way.

mod bulk;
mod change;
mod checks;
mod decide;
mod query;
mod records;
mod runs;
mod totals;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use futures::stream::BoxStream;

pub use bulk::{BulkPayoutStore, PayoutStoreExt};
pub use change::{AttemptUpdate, LedgerRelease, PayoutChange, PayoutPatch, WebhookEventRecord};
pub use checks::{AttentionPage, CheckClaim, CheckDone, CheckState, ClaimedCheck, Flagged, FollowUp};
pub use decide::{BatchDecision, BatchKeys, Slot, StoredFacts};
pub use query::{Cursor, ExportRow, Page, PayoutFilter, PayoutPage};
pub use records::{
    CarryOver, ClawbackDue, HeldConsultation, Holder, NewPayout, PeriodBatch, PeriodBatchOutcome, SkipReason,
};
pub use runs::{DoctorHoldPage, RunPage, RunResultPage};
pub(crate) use totals::add_minor;
pub use totals::{MonthTotal, StatusTally, TotalsFilter, fill_months, first_of_month, month_range, sort_tallies};

use crate::domain::{
    AuditEntry, DoctorHold, DoctorId, FundsOverride, NewRun, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider,
    Run, RunEvent, RunId, RunResult, RunSummary,
};
use crate::error::Result;
use crate::money::Currency;
use crate::provider::EventReference;

/// Durable storage for payouts.
///
/// Implementations: the in-memory store in this crate, SQLite and Postgres in `payout-store-sqlx`.
/// Every one passes the conformance suite in `payout_core::testkit` (feature `testkit`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PayoutStore: Send + Sync {
    /// Writes one chunk of a period calculation atomically.
    ///
    /// # Behavior
    /// Checks every payout first ([`NewPayout::validate`]): one invalid payout refuses the whole
    /// batch with `InvalidInput`, writing nothing. With [`PeriodBatch::run`], the created payouts
    /// join that run in the same step (its totals count them); an unknown run is
    /// [`RunNotFound`](crate::Error::RunNotFound), writing nothing. Idempotent: a doctor who already has a non-cancelled calculated payout for the period, or a
    /// carry-over for it, is skipped and reported, not duplicated. Each created payout gets its items,
    /// its `CREATE` audit entry, and marks the carry-overs it consumes; all of it or none of it.
    ///
    /// A payout may consume only open carry-overs: ones never consumed, or consumed by a payout that
    /// has been `CANCELLED` since (consuming one re-points its `consumed_by` to the new payout). One
    /// that is missing, or consumed by a payout that is not cancelled, skips the payout as
    /// [`SkipReason::CarryOverTaken`]. The check and the mark are one conditional step, so of two
    /// calculations racing for the same carry-over at most one consumes it.
    ///
    /// The consultation ledger: a payout or a carry-over with a consultation item that is already
    /// held (see [`held_consultations`](PayoutStore::held_consultations)), or a clawback item whose
    /// consultation is already clawed back, stored or created earlier in the batch, is skipped as
    /// [`SkipReason::ConsultationHeld`]. Carry-overs' items join the ledger with them. A store enforces this with a
    /// unique constraint as well as the check, so that when two calculations race on overlapping
    /// periods the one that loses either skips the payout or fails the whole chunk with
    /// [`Conflict`](crate::Error::Conflict), writing nothing; never are both written.
    async fn create_period(&self, batch: PeriodBatch) -> Result<PeriodBatchOutcome>;

    /// Creates one manual payout with its items and audit entry.
    ///
    /// # Behavior
    /// Checks the payout first ([`NewPayout::validate`]: its items add up, and it starts `PENDING`
    /// with no approver, approval or resolution); an invalid one is `InvalidInput`, writing nothing.
    /// A consultation item already held by a live item is a [`Conflict`](crate::Error::Conflict).
    /// The carry-overs it consumes must be open, as in [`create_period`](PayoutStore::create_period).
    async fn create_payout(&self, new: NewPayout) -> Result<Payout>;

    /// One payout, or [`NotFound`](crate::Error::NotFound).
    async fn get(&self, id: &PayoutId) -> Result<Payout>;

    /// A page of payouts matching `filter`, newest first, with the total count.
    ///
    /// # Behavior
    /// Every condition of the filter applies, [`PayoutFilter::run`] (the run's members) and
    /// [`PayoutFilter::held`] included; so too in [`stream`](PayoutStore::stream) and the bulk
    /// export ([`BulkPayoutStore::export_rows`]).
    async fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage>;

    /// Every payout matching `filter`, newest first, as a stream (for exports: rows are read as they
    /// are written out, never all at once).
    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>>;

    /// A payout's items, in order ([`NotFound`](crate::Error::NotFound) for an unknown payout).
    async fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>>;

    /// Applies a [`PayoutChange`] atomically and returns the payout as it is afterwards.
    ///
    /// # Behavior
    /// Checks the change first ([`PayoutChange::validate`]); writes it as
    /// [`PayoutChange::normalized`] leaves it. A change of status or provider moves the payout
    /// between the buckets of every run it is in ([`run`](PayoutStore::run)) in the same step. Refuses with `Conflict` when the current version or status differs from the expected one, or
    /// when the new attempt's number or idempotency key already exists; with `DuplicateEvent` when the
    /// webhook event was already recorded. The version goes up by one. Audit entries are appended and
    /// never changed. A new attempt's `destination`, and the patch's `approval`, `resolution` and
    /// `hold` (each replacing the stored one whole), are kept exactly and read back by every read.
    /// The follow-up [`PayoutChange::follow_up_written`] names, if any, is written in
    /// the same step (see [`claim_checks`](PayoutStore::claim_checks)): it replaces the payout's
    /// follow-up, resets its count of checks and ends any lease on it.
    async fn apply(&self, change: PayoutChange) -> Result<Payout>;

    /// The consultation ledger: which of `appointment_ids` a live payout item or a carry-over
    /// holds, and which, in any order (ids nobody holds are left out).
    ///
    /// # Behavior
    /// An item of kind `CONSULTATION` holds its reference from its payout's creation until that
    /// payout is cancelled with its consultations released; an item of a payout cancelled without
    /// release (voided) holds it for good. A carry-over holds the consultation items it carries
    /// ([`CarryOver::items`]) for good. At most one holds a consultation. One query (or one lookup
    /// under the lock) per call, however many ids: the calculation asks once per chunk.
    async fn held_consultations(&self, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>>;

    /// Clawbacks: which of `appointment_ids` were paid and are not clawed back yet, with what was
    /// paid for each, in any order.
    ///
    /// # Behavior
    /// A consultation qualifies when the item holding it is a live `CONSULTATION` item of a payout
    /// that is `PAID`, or a carry-over's (whose earnings are paid with it), and no live `CLAWBACK`
    /// item (of a payout, or of a carry-over) has its reference. A consultation on a payout that
    /// is not paid yet does not qualify (cancelling that payout is the way to take it back), nor
    /// does one whose payout's money came back (`RETURNED`, `REVERSED`). The ledger allows one live
    /// `CLAWBACK` per consultation, as it allows one live `CONSULTATION`. One query per call.
    async fn clawbacks_due(&self, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>>;

    /// A payout's attempts, oldest first.
    async fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>>;

    /// The attempt a provider event refers to, by provider reference or idempotency key.
    async fn find_attempt(&self, provider: Provider, reference: &EventReference) -> Result<Option<PayoutAttempt>>;

    /// The members of a provider batch: every attempt of `provider` stored with `batch_id`
    /// ([`PayoutAttempt::batch_id`]), ordered by idempotency key. Empty when there is none.
    async fn batch_attempts(&self, provider: Provider, batch_id: &str) -> Result<Vec<PayoutAttempt>>;

    /// True when this provider event was already recorded.
    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> Result<bool>;

    /// A payout's audit trail, oldest first.
    async fn audit_trail(&self, id: &PayoutId) -> Result<Vec<AuditEntry>>;

    /// Claims due reconciliation checks, each under a lease.
    ///
    /// # Behavior
    /// Takes up to `claim.limit` payouts whose `next_check_at <= claim.due_by`, earliest first
    /// (then by id), and in the same atomic step moves their `next_check_at` to
    /// `claim.lease_until` and gives each a new lease token: of several instances claiming at once,
    /// each check goes to exactly one, and a check whose claimer never finishes it is due again
    /// when the lease ends. Each claimed check carries the payout and its latest attempt as stored,
    /// read in the same step (a claim of many costs no read per payout). A claim reads only due
    /// checks (the store keeps them indexed by `next_check_at`), however many payouts are
    /// scheduled later. The payout's version and `updated_at` do not change, and nothing is audited.
    async fn claim_checks(&self, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>>;

    /// Writes the follow-ups of checks claimed with [`claim_checks`](PayoutStore::claim_checks),
    /// all in one atomic step, and answers for each, in order, whether it was written.
    ///
    /// # Behavior
    /// Each only under its check's latest lease: when another claim or an
    /// [`apply`](PayoutStore::apply) that wrote a follow-up came since, it writes nothing for it and
    /// answers `false`. Otherwise it writes `done.follow_up` (a flag that stays set keeps its
    /// `since`; a new one is set since `done.at`), counts one more check, ends the lease and answers
    /// `true`; a payout listed again later in `done` then answers `false` (its lease ended). An
    /// unknown payout anywhere in `done` is [`NotFound`](crate::Error::NotFound) and nothing is
    /// written. The payouts' versions and `updated_at` do not change. One element is the single
    /// case, not a different path.
    async fn finish_checks(&self, done: &[CheckDone]) -> Result<Vec<bool>>;

    /// A payout's follow-up as stored: `CheckState::default()` when none was ever written,
    /// [`NotFound`](crate::Error::NotFound) for an unknown payout.
    async fn check_state(&self, id: &PayoutId) -> Result<CheckState>;

    /// The attention queue: the flagged payouts, oldest flag first (then by id), `page.limit` of
    /// them (at most [`Page::MAX_LIMIT`]) after skipping `page.skip` (`page.after` is not used),
    /// with the number flagged in all.
    async fn attention(&self, page: &Page) -> Result<AttentionPage>;

    /// A run's part of the attention queue: those of the run's members that are flagged, in the
    /// queue's order (oldest flag first, then by id), `page.limit` of them (at most
    /// [`Page::MAX_LIMIT`]) after skipping `page.skip` (`page.after` is not used), with how many
    /// of its members are flagged in all. An unknown run is
    /// [`RunNotFound`](crate::Error::RunNotFound).
    ///
    /// # Behavior
    /// Read from the flags and the run's membership by their indexes: its cost grows with the
    /// flagged payouts or the run's members, whichever the store reads from, never with all the
    /// payouts. A payout flagged and in several runs is in each run's part.
    async fn run_attention(&self, run: &RunId, page: &Page) -> Result<AttentionPage>;

    /// Open carry-overs whose period ended before `before` (`period.end < before`).
    ///
    /// Open means not paid out: never consumed, or consumed by a payout that was `CANCELLED` since
    /// (a cancelled payout gives its carried earnings back, so they are never lost). Every carry-over
    /// returned has `consumed_by: None`, whichever of the two it is.
    async fn open_carry_overs(&self, before: NaiveDate) -> Result<Vec<CarryOver>>;

    /// Creates a run with `payouts` as its members, and records its `CREATE` event
    /// ([`RunEvent::created`]); returns it with its totals.
    ///
    /// # Behavior
    /// Checks the run first ([`NewRun::validate`], `InvalidInput`). Atomic: an unknown payout is
    /// [`NotFound`](crate::Error::NotFound) and a taken run id
    /// [`RunConflict`](crate::Error::RunConflict), writing nothing. A payout named twice is a
    /// member once; `payouts` may be empty (a calculation's run, whose payouts join it as
    /// [`create_period`](PayoutStore::create_period) creates them). A payout may be a member of
    /// several runs.
    async fn create_run(&self, run: NewRun, payouts: &[PayoutId]) -> Result<RunSummary>;

    /// A run with its totals, or [`RunNotFound`](crate::Error::RunNotFound).
    ///
    /// # Behavior
    /// The totals are kept as the members move (created, joined, changed by
    /// [`apply`](PayoutStore::apply)), in the same atomic steps, so reading them costs the same
    /// however many members the run has: the store never counts them by reading the payouts.
    /// One bucket per status, provider and currency with at least one payout, ordered as
    /// [`order_totals`](crate::domain::order_totals) orders them.
    async fn run(&self, id: &RunId) -> Result<RunSummary>;

    /// A page of runs, newest first (`created_at`, then id, descending), each with its totals, and
    /// the number of runs: `page.limit` (at most [`Page::MAX_LIMIT`]) after skipping `page.skip`
    /// (`page.after` is not used).
    async fn runs(&self, page: &Page) -> Result<RunPage>;

    /// Appends per-payout results to a run, in order, all or none.
    ///
    /// # Behavior
    /// An unknown run is [`RunNotFound`](crate::Error::RunNotFound), writing nothing. Results are
    /// never changed or removed; they are not checked against the run's members.
    async fn record_run_results(&self, run: &RunId, results: &[RunResult]) -> Result<()>;

    /// A page of a run's results, oldest first (in the order recorded), and how many it has:
    /// `page.limit` (at most [`Page::MAX_LIMIT`]) after `page.skip`. An unknown run is
    /// [`RunNotFound`](crate::Error::RunNotFound).
    async fn run_results(&self, run: &RunId, page: &Page) -> Result<RunResultPage>;

    /// Appends an event to its run's trail ([`RunNotFound`](crate::Error::RunNotFound) for an
    /// unknown run). Events are never changed or removed.
    async fn record_run_event(&self, event: RunEvent) -> Result<()>;

    /// A run's events, oldest first (in the order recorded); an unknown run is
    /// [`RunNotFound`](crate::Error::RunNotFound).
    async fn run_events(&self, run: &RunId) -> Result<Vec<RunEvent>>;

    /// Writes a funds override on a run, if its current one is `expected`, and records the matching
    /// event ([`RunEvent::funds_override`]) in the same step; returns the run as it is afterwards.
    ///
    /// # Behavior
    /// Conditional: when the stored override differs from `expected` (`None`: none stored), it is
    /// [`RunConflict`](crate::Error::RunConflict) and nothing is written, so of two admins
    /// confirming at once one wins. An unknown run is [`RunNotFound`](crate::Error::RunNotFound).
    async fn set_funds_override(&self, run: &RunId, expected: Option<FundsOverride>, new: FundsOverride)
    -> Result<Run>;

    /// The holds of those of `ids` that are on hold, in any order (one lookup however many ids).
    async fn doctor_holds(&self, ids: &[DoctorId]) -> Result<Vec<DoctorHold>>;

    /// A page of the doctors on hold, oldest hold first (then by doctor), `page.limit` (at most
    /// [`Page::MAX_LIMIT`]) after `page.skip`, with how many there are.
    async fn all_doctor_holds(&self, page: &Page) -> Result<DoctorHoldPage>;

    /// Puts a doctor on hold.
    ///
    /// # Behavior
    /// [`DoctorAlreadyHeld`](crate::Error::DoctorAlreadyHeld) when the doctor is on hold already
    /// (the stored hold is kept), so of two admins holding at once one wins. Touches no payout:
    /// the service puts the doctor's payouts on hold, each with its own audited change.
    async fn place_doctor_hold(&self, hold: DoctorHold) -> Result<()>;

    /// Takes a doctor off hold and returns the hold removed;
    /// [`DoctorNotHeld`](crate::Error::DoctorNotHeld) when the doctor is not on hold.
    async fn release_doctor_hold(&self, doctor: &DoctorId) -> Result<DoctorHold>;

    /// The store's bulk abilities, if it offers them (see [`BulkPayoutStore`]); callers reach them
    /// through [`PayoutStoreExt`], which falls back to one payout at a time.
    ///
    /// # Behavior
    /// Required, with no default, so that a store wrapping another decides what to do: forward the
    /// inner store's answer (its bulk calls then bypass the wrapper), implement
    /// [`BulkPayoutStore`] itself, or answer `None`. Called once per bulk call, so a store may hand
    /// out a new handle each time (a clone of itself in an `Arc`).
    fn bulk(&self) -> Option<Arc<dyn BulkPayoutStore>>;

    // Summary totals, kept as the store writes: the dashboard's header and its chart of paid totals.

    /// How many payouts `filter` counts there are, and how much they add up to, per status,
    /// provider and currency (amounts are never converted).
    ///
    /// # Behavior
    /// Exact and current: what the committed changes left, read in one snapshot. One
    /// [`StatusTally`] per (status, provider, currency) with at least one payout, in the order of
    /// [`sort_tallies`]. A store keeps these figures as it writes (the SQL stores in tallies
    /// updated by triggers in the same transaction as each change), so the cost of reading them
    /// does not grow with the number of payouts. A sum beyond 64-bit minor units is an error,
    /// never a wrapped figure.
    async fn totals(&self, filter: &TotalsFilter) -> Result<Vec<StatusTally>>;

    /// What was paid per month: the `PAID` payouts created in `from`'s month or later, per month
    /// of creation (UTC) and currency, only in `currency` when it is given.
    ///
    /// # Behavior
    /// Read from the same figures as [`totals`](PayoutStore::totals), so its cost does not grow
    /// with the number of payouts either. The month is the payout's month of **creation**, the
    /// month the tallies are kept by (a calculated payout is created when its period is
    /// calculated, usually the month after the period). One [`MonthTotal`] per month and currency
    /// with at least one paid payout (months with none are left out; [`fill_months`] adds them),
    /// oldest month first, then by currency code.
    async fn paid_by_month(&self, currency: Option<Currency>, from: NaiveDate) -> Result<Vec<MonthTotal>>;
}
