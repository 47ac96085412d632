//! The [`PayoutStore`] trait: durable payouts, items, attempts, webhook events, audit trail and
//! carried-over balances, changed only through atomic, conditional steps.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::domain::{
    AttemptOutcome, AuditEntry, DoctorId, Payout, PayoutAttempt, PayoutId, PayoutItem, Period, Provider,
};
use crate::error::Result;
use crate::money::Money;
use crate::provider::EventReference;
use crate::status::PayoutStatus;

/// A payout to insert, with its items and its `CREATE` audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayout {
    /// The payout as it starts (status `PENDING`, version 1). `amount_due` must equal the sum of `items`.
    pub payout: Payout,
    /// Its items, in order.
    pub items: Vec<PayoutItem>,
    /// Carried-over balances (by their source period) this payout pays out; marked consumed with it.
    /// Each must be open (see [`PayoutStore::open_carry_overs`]): never consumed, or consumed by a
    /// payout that was cancelled since.
    pub consumes_carry_overs: Vec<Period>,
    /// The `CREATE` audit entry.
    pub audit: AuditEntry,
}

/// Earnings below the minimum payout, kept for a later period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarryOver {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The period the earnings are from (one carry-over per doctor and period).
    pub period: Period,
    /// The gross earnings carried (deductions apply when they are paid).
    pub amount: Money,
    /// Why, for the record.
    pub note: String,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// The payout that consumed it (paid it out), once one did.
    ///
    /// A carry-over consumed by a payout that is later `CANCELLED` is open again, so its earnings are
    /// never lost: [`PayoutStore::open_carry_overs`] returns it (with `consumed_by: None`, like every
    /// carry-over it returns) and a later payout may consume it, which re-points `consumed_by` to
    /// that payout. Until then the store keeps the cancelled payout's id.
    pub consumed_by: Option<PayoutId>,
}

/// One chunk of a period calculation, written atomically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeriodBatch {
    /// Payouts to create.
    pub payouts: Vec<NewPayout>,
    /// Balances to carry over.
    pub carry_overs: Vec<CarryOver>,
}

/// Why a doctor was skipped by a period calculation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum SkipReason {
    /// A non-cancelled calculated payout already exists for this doctor and period.
    AlreadyCalculated,
    /// This period's earnings were already carried over.
    AlreadyCarriedOver,
    /// A carried-over balance it wanted is missing, or was consumed by another payout that is not
    /// cancelled (or by an earlier payout of the same batch).
    CarryOverTaken,
}

/// What a [`PeriodBatch`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeriodBatchOutcome {
    /// Payouts created.
    pub created: Vec<PayoutId>,
    /// Carry-overs recorded (by doctor).
    pub carried_over: Vec<DoctorId>,
    /// Doctors skipped, and why.
    pub skipped: Vec<(DoctorId, SkipReason)>,
}

/// A provider event recorded once per (provider, event id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventRecord {
    /// The provider.
    pub provider: Provider,
    /// The provider's event id.
    pub event_id: String,
    /// The payout it applied to.
    pub payout_id: PayoutId,
    /// The provider's event type.
    pub event_type: String,
    /// Received.
    pub received_at: DateTime<Utc>,
}

/// New facts about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptUpdate {
    /// Which attempt.
    pub attempt_no: u32,
    /// Its outcome now.
    pub outcome: AttemptOutcome,
    /// The provider's reference, if learned (kept if `None`).
    pub provider_reference: Option<String>,
    /// The last error (kept if `None`).
    pub error: Option<String>,
}

/// Fields a change may set on a payout; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayoutPatch {
    /// The provider chosen.
    pub provider: Option<Provider>,
    /// The provider's reference.
    pub provider_reference: Option<String>,
    /// Notes (replace).
    pub notes: Option<String>,
    /// The approver.
    pub approved_by: Option<String>,
    /// When the outcome was confirmed.
    pub processed_at: Option<DateTime<Utc>>,
}

/// One atomic, conditional change to a payout.
///
/// Everything in it commits together or not at all: the status change, the patch, the attempt
/// insert/update, the webhook event record and the audit entries.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutChange {
    /// The payout.
    pub payout_id: PayoutId,
    /// The version the caller read; a different current version is a [`Conflict`](crate::Error::Conflict).
    pub expected_version: i64,
    /// The status the caller read; a different current status is a `Conflict`.
    pub expected_status: PayoutStatus,
    /// The new status, if it changes.
    pub new_status: Option<PayoutStatus>,
    /// Fields to set.
    pub patch: PayoutPatch,
    /// An attempt to record (before its provider call).
    pub new_attempt: Option<PayoutAttempt>,
    /// An existing attempt's outcome.
    pub attempt_update: Option<AttemptUpdate>,
    /// A webhook event to record once; if already recorded the whole change is refused with
    /// [`DuplicateEvent`](crate::Error::DuplicateEvent).
    pub webhook_event: Option<WebhookEventRecord>,
    /// Audit entries (append-only).
    pub audit: Vec<AuditEntry>,
    /// When (becomes `updated_at`).
    pub at: DateTime<Utc>,
}

impl PayoutChange {
    /// A change of `payout` as read, at `at`, with nothing in it yet.
    pub fn of(payout: &Payout, at: DateTime<Utc>) -> Self {
        PayoutChange {
            payout_id: payout.id.clone(),
            expected_version: payout.version,
            expected_status: payout.status,
            new_status: None,
            patch: PayoutPatch::default(),
            new_attempt: None,
            attempt_update: None,
            webhook_event: None,
            audit: Vec::new(),
            at,
        }
    }
}

/// Filters of the admin list (the original system's `status`, `doctor`, `provider`, `startDate`, `endDate`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutFilter {
    /// Only this status.
    pub status: Option<PayoutStatus>,
    /// Only this doctor.
    pub doctor_id: Option<DoctorId>,
    /// Only this provider.
    pub provider: Option<Provider>,
    /// Created on or after this day (UTC).
    pub created_from: Option<NaiveDate>,
    /// Created on or before this day (UTC).
    pub created_to: Option<NaiveDate>,
}

impl PayoutFilter {
    /// True when `p` passes the filter.
    pub fn matches(&self, p: &Payout) -> bool {
        self.status.is_none_or(|s| p.status == s)
            && self.doctor_id.as_ref().is_none_or(|d| &p.doctor_id == d)
            && self.provider.is_none_or(|v| p.provider == Some(v))
            && self.created_from.is_none_or(|d| p.created_at.date_naive() >= d)
            && self.created_to.is_none_or(|d| p.created_at.date_naive() <= d)
    }
}

/// A position in the list order (newest first: `created_at` desc, then `id` desc) for keyset paging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `created_at` of the last row seen.
    pub created_at: DateTime<Utc>,
    /// `id` of the last row seen.
    pub id: PayoutId,
}

impl Cursor {
    /// The cursor after `p`.
    pub fn after(p: &Payout) -> Self {
        Cursor {
            created_at: p.created_at,
            id: p.id.clone(),
        }
    }
}

/// Which page: `limit`/`skip` as the original system pages, or keyset paging after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many rows.
    pub limit: u32,
    /// Skip this many rows first (ignored when `after` is set).
    pub skip: u64,
    /// Start after this row.
    pub after: Option<Cursor>,
}

impl Page {
    /// The largest page size.
    pub const MAX_LIMIT: u32 = 1000;

    /// `limit`/`skip` paging.
    pub fn new(limit: u32, skip: u64) -> Self {
        Page {
            limit,
            skip,
            after: None,
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 50,
            skip: 0,
            after: None,
        }
    }
}

/// One page of payouts, with the total matching the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutPage {
    /// The rows, newest first.
    pub payouts: Vec<Payout>,
    /// How many payouts match the filter in all.
    pub total: u64,
    /// Where the next page starts (keyset), if there may be one.
    pub next: Option<Cursor>,
}

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
    /// Idempotent: a doctor who already has a non-cancelled calculated payout for the period, or a
    /// carry-over for it, is skipped and reported, not duplicated. Each created payout gets its items,
    /// its `CREATE` audit entry, and marks the carry-overs it consumes; all of it or none of it.
    ///
    /// A payout may consume only open carry-overs: ones never consumed, or consumed by a payout that
    /// has been `CANCELLED` since (consuming one re-points its `consumed_by` to the new payout). One
    /// that is missing, or consumed by a payout that is not cancelled, skips the payout as
    /// [`SkipReason::CarryOverTaken`]. The check and the mark are one conditional step, so of two
    /// calculations racing for the same carry-over at most one consumes it.
    async fn create_period(&self, batch: PeriodBatch) -> Result<PeriodBatchOutcome>;

    /// Creates one manual payout with its items and audit entry.
    ///
    /// The carry-overs it consumes must be open, as in [`create_period`](PayoutStore::create_period).
    async fn create_payout(&self, new: NewPayout) -> Result<Payout>;

    /// One payout, or [`NotFound`](crate::Error::NotFound).
    async fn get(&self, id: &PayoutId) -> Result<Payout>;

    /// A page of payouts matching `filter`, newest first, with the total count.
    async fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage>;

    /// Every payout matching `filter`, newest first, as a stream (for exports: rows are read as they
    /// are written out, never all at once).
    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>>;

    /// A payout's items, in order ([`NotFound`](crate::Error::NotFound) for an unknown payout).
    async fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>>;

    /// Applies a [`PayoutChange`] atomically and returns the payout as it is afterwards.
    ///
    /// # Behavior
    /// Refuses with `Conflict` when the current version or status differs from the expected one, or
    /// when the new attempt's number or idempotency key already exists; with `DuplicateEvent` when the
    /// webhook event was already recorded. The version goes up by one. Audit entries are appended and
    /// never changed.
    async fn apply(&self, change: PayoutChange) -> Result<Payout>;

    /// A payout's attempts, oldest first.
    async fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>>;

    /// Applies each change as [`apply`](PayoutStore::apply) would, and returns one result per
    /// change, in order. Each change is checked and applied on its own: a refused one (a conflict, a
    /// duplicate event, a missing attempt) changes nothing and leaves the others as they are. A store
    /// may write many of them in one statement or transaction (the bulk trigger records a batch
    /// provider's attempts and answers this way); the default applies them one by one.
    ///
    /// An error for the whole call (the database is down) is returned for every change it left
    /// unapplied.
    async fn apply_all(&self, changes: Vec<PayoutChange>) -> Vec<Result<Payout>> {
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            out.push(self.apply(change).await);
        }
        out
    }

    /// The payouts of `ids` that exist, each with its attempts oldest first, in the order of `ids`
    /// (unknown ids are left out, a repeated id is returned once). What [`get`](PayoutStore::get) and
    /// [`attempts`](PayoutStore::attempts) return for each, read in a few queries instead of two per
    /// payout; the default asks for each one in turn. The attempts are read after the payouts, so they
    /// are at least as new as the payout they come with.
    async fn payouts_with_attempts(&self, ids: &[PayoutId]) -> Result<Vec<(Payout, Vec<PayoutAttempt>)>> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            match self.get(id).await {
                Ok(p) => out.push((p, self.attempts(id).await?)),
                Err(crate::Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// How many writes this store runs side by side to advantage: a hint for bulk work, such as a
    /// period calculation writing its chunks. 1 (the default) for a store with one writer at a time
    /// (SQLite, the in-memory store); more for a database that runs transactions in parallel
    /// (Postgres). A store that wraps another should pass the inner store's answer on.
    fn parallel_writes(&self) -> usize {
        1
    }

    /// The attempt a provider event refers to, by provider reference or idempotency key.
    async fn find_attempt(&self, provider: Provider, reference: &EventReference) -> Result<Option<PayoutAttempt>>;

    /// True when this provider event was already recorded.
    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> Result<bool>;

    /// A payout's audit trail, oldest first.
    async fn audit_trail(&self, id: &PayoutId) -> Result<Vec<AuditEntry>>;

    /// PROCESSING payouts not changed since `updated_before`, oldest first, at most `limit`.
    async fn stuck_processing(&self, updated_before: DateTime<Utc>, limit: u32) -> Result<Vec<Payout>>;

    /// Open carry-overs whose period ended before `before` (`period.end < before`).
    ///
    /// Open means not paid out: never consumed, or consumed by a payout that was `CANCELLED` since
    /// (a cancelled payout gives its carried earnings back, so they are never lost). Every carry-over
    /// returned has `consumed_by: None`, whichever of the two it is.
    async fn open_carry_overs(&self, before: NaiveDate) -> Result<Vec<CarryOver>>;

    /// Every payout matching `filter`, newest first, with only what the CSV export writes of it.
    ///
    /// # Behavior
    /// The same rows, in the same order, as [`stream`](PayoutStore::stream) with the same filter,
    /// and read the same way (as they are written out, never all at once). The default maps
    /// `stream`; a store overrides it when it can read these few columns more cheaply than whole
    /// payouts.
    fn export_rows(&self, filter: PayoutFilter) -> BoxStream<'static, Result<ExportRow>> {
        use futures::StreamExt;
        self.stream(filter).map(|p| p.map(ExportRow::from)).boxed()
    }
}

/// What the CSV export writes of a payout (see [`PayoutStore::export_rows`]); the doctor's name,
/// email and bank details come from the recipient directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// The payout's id.
    pub id: PayoutId,
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The payout's `amount_due`.
    pub amount_due: Money,
    /// Its status.
    pub status: PayoutStatus,
}

impl From<Payout> for ExportRow {
    fn from(p: Payout) -> Self {
        ExportRow {
            id: p.id,
            doctor_id: p.doctor_id,
            amount_due: p.amount_due,
            status: p.status,
        }
    }
}
