//! [`SqlStore`]: one [`PayoutStore`] over either dialect. Every method hands the pool to the one
//! implementation in [`read`](crate::read), [`export`](crate::export) or [`write`](crate::write).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use futures::stream::BoxStream;
use payout_core::Result;
use payout_core::domain::{
    AuditEntry, DoctorHold, DoctorId, FundsOverride, NewRun, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider,
    Run, RunEvent, RunId, RunResult, RunSummary,
};
use payout_core::events::{ClaimedEvent, EventClaim, EventCursor, EventDone, EventOutbox, EventPage, StoredEvent};
use payout_core::money::Currency;
use payout_core::provider::EventReference;
use payout_core::store::{
    AttentionPage, BulkPayoutStore, CarryOver, CheckClaim, CheckDone, CheckState, ClaimedCheck, ClawbackDue,
    DoctorHoldPage, ExportRow, HeldConsultation, MonthTotal, NewPayout, Page, PayoutChange, PayoutFilter, PayoutPage,
    PayoutStore, PeriodBatch, PeriodBatchOutcome, RunPage, RunResultPage, StatusTally, TotalsFilter,
};

use crate::db::Db;
use crate::export::{Chunking, EXPORT_CHUNKS};
use crate::rows::ExportRowExt;
use crate::{checks, export, outbox, read, runs, totals, write};

/// A [`PayoutStore`] in SQL: [`SqliteStore`](crate::SqliteStore) (`SqlStore<SqlitePool>`) or
/// [`PgStore`](crate::PgStore) (`SqlStore<PgPool>`). The behaviour is the same on both, written
/// once; what differs is how each database binds and reads a value and starts a write (see the
/// `sqlite` and `postgres` modules). Cloning it is cheap: clones share the pool.
///
/// It offers the bulk abilities ([`BulkPayoutStore`]): a batch of changes in one statement per few
/// hundred on Postgres, payouts read with their attempts in one query, and exports read in keyset
/// chunks of a few columns.
#[derive(Debug, Clone)]
pub struct SqlStore<D> {
    pub(crate) pool: D,
    export_chunks: Chunking,
}

impl<D: Db> SqlStore<D> {
    /// A store over a pool whose schema is already migrated (`sqlite::setup`, `postgres::setup`).
    pub fn new(pool: D) -> Self {
        SqlStore {
            pool,
            export_chunks: EXPORT_CHUNKS,
        }
    }

    /// The pool, e.g. to share it with a [`SqlConsultationSource`](crate::SqlConsultationSource).
    pub fn pool(&self) -> &D {
        &self.pool
    }

    /// Reads exports `rows` rows per query, handed over `batch` rows at a time (default: 10,000
    /// and 1,000). Tuning only: the rows and their order are the same whatever the sizes.
    pub fn with_export_chunks(mut self, rows: usize, batch: usize) -> Self {
        self.export_chunks = Chunking {
            rows: rows.max(1),
            batch: batch.max(1),
        };
        self
    }
}

#[async_trait]
impl<D> PayoutStore for SqlStore<D>
where
    D: Db,
    D::Row: ExportRowExt + Sync,
{
    async fn create_period(&self, batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
        write::create_period(&self.pool, batch).await
    }

    async fn create_payout(&self, new: NewPayout) -> Result<Payout> {
        write::create_payout(&self.pool, new).await
    }

    async fn get(&self, id: &PayoutId) -> Result<Payout> {
        read::get(&self.pool, id).await
    }

    async fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
        read::list(&self.pool, filter, page).await
    }

    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>> {
        export::stream(self.pool.clone(), filter)
    }

    async fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>> {
        read::items(&self.pool, id).await
    }

    async fn apply(&self, change: PayoutChange) -> Result<Payout> {
        write::apply(&self.pool, change).await
    }

    async fn held_consultations(&self, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>> {
        write::held_consultations(&self.pool, appointment_ids).await
    }

    async fn clawbacks_due(&self, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>> {
        write::clawbacks_due(&self.pool, appointment_ids).await
    }

    async fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
        read::attempts(&self.pool, id).await
    }

    async fn find_attempt(&self, provider: Provider, reference: &EventReference) -> Result<Option<PayoutAttempt>> {
        read::find_attempt(&self.pool, provider, reference).await
    }

    async fn batch_attempts(&self, provider: Provider, batch_id: &str) -> Result<Vec<PayoutAttempt>> {
        read::batch_attempts(&self.pool, provider, batch_id).await
    }

    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> Result<bool> {
        read::webhook_event_seen(&self.pool, provider, event_id).await
    }

    async fn audit_trail(&self, id: &PayoutId) -> Result<Vec<AuditEntry>> {
        read::audit_trail(&self.pool, id).await
    }

    async fn claim_checks(&self, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>> {
        checks::claim(&self.pool, claim).await
    }

    async fn finish_checks(&self, done: &[CheckDone]) -> Result<Vec<bool>> {
        checks::finish(&self.pool, done).await
    }

    async fn check_state(&self, id: &PayoutId) -> Result<CheckState> {
        checks::state(&self.pool, id).await
    }

    async fn attention(&self, page: &Page) -> Result<AttentionPage> {
        checks::attention(&self.pool, page).await
    }

    async fn run_attention(&self, run: &RunId, page: &Page) -> Result<AttentionPage> {
        checks::run_attention(&self.pool, run, page).await
    }

    async fn open_carry_overs(&self, before: NaiveDate) -> Result<Vec<CarryOver>> {
        read::open_carry_overs(&self.pool, before).await
    }

    async fn create_run(&self, run: NewRun, payouts: &[PayoutId]) -> Result<RunSummary> {
        runs::create_run(&self.pool, run, payouts).await
    }

    async fn run(&self, id: &RunId) -> Result<RunSummary> {
        runs::run(&self.pool, id).await
    }

    async fn runs(&self, page: &Page) -> Result<RunPage> {
        runs::runs(&self.pool, page).await
    }

    async fn record_run_results(&self, run: &RunId, results: &[RunResult]) -> Result<()> {
        runs::record_results(&self.pool, run, results).await
    }

    async fn run_results(&self, run: &RunId, page: &Page) -> Result<RunResultPage> {
        runs::results(&self.pool, run, page).await
    }

    async fn record_run_event(&self, event: RunEvent) -> Result<()> {
        runs::record_event(&self.pool, event).await
    }

    async fn run_events(&self, run: &RunId) -> Result<Vec<RunEvent>> {
        runs::events(&self.pool, run).await
    }

    async fn set_funds_override(
        &self,
        run: &RunId,
        expected: Option<FundsOverride>,
        new: FundsOverride,
    ) -> Result<Run> {
        runs::set_funds_override(&self.pool, run, expected, new).await
    }

    async fn doctor_holds(&self, ids: &[DoctorId]) -> Result<Vec<DoctorHold>> {
        runs::doctor_holds(&self.pool, ids).await
    }

    async fn all_doctor_holds(&self, page: &Page) -> Result<DoctorHoldPage> {
        runs::all_doctor_holds(&self.pool, page).await
    }

    async fn place_doctor_hold(&self, hold: DoctorHold) -> Result<()> {
        runs::place_doctor_hold(&self.pool, hold).await
    }

    async fn release_doctor_hold(&self, doctor: &DoctorId) -> Result<DoctorHold> {
        runs::release_doctor_hold(&self.pool, doctor).await
    }

    fn bulk(&self) -> Option<Arc<dyn BulkPayoutStore>> {
        Some(Arc::new(self.clone()))
    }

    async fn totals(&self, filter: &TotalsFilter) -> Result<Vec<StatusTally>> {
        totals::totals(&self.pool, filter).await
    }

    async fn paid_by_month(&self, currency: Option<Currency>, from: NaiveDate) -> Result<Vec<MonthTotal>> {
        totals::paid_by_month(&self.pool, currency, from).await
    }
}

#[async_trait]
impl<D> BulkPayoutStore for SqlStore<D>
where
    D: Db,
    D::Row: ExportRowExt + Sync,
{
    async fn apply_all(&self, changes: Vec<PayoutChange>) -> Vec<Result<Payout>> {
        write::apply_all(&self.pool, changes).await
    }

    async fn payouts_with_attempts(&self, ids: &[PayoutId]) -> Result<Vec<(Payout, Vec<PayoutAttempt>)>> {
        read::payouts_with_attempts(&self.pool, ids).await
    }

    fn export_rows(&self, filter: PayoutFilter) -> BoxStream<'static, Result<ExportRow>> {
        export::export_rows(self.pool.clone(), filter, self.export_chunks)
    }
}

/// The outbox the migrations' triggers fill, in the transaction of each change.
#[async_trait]
impl<D> EventOutbox for SqlStore<D>
where
    D: Db,
    D::Row: Sync,
{
    async fn events_after(&self, after: EventCursor, limit: u32) -> Result<EventPage> {
        outbox::events_after(&self.pool, after, limit).await
    }

    async fn claim_events(&self, claim: &EventClaim) -> Result<Vec<ClaimedEvent>> {
        outbox::claim(&self.pool, claim).await
    }

    async fn finish_events(&self, done: &[EventDone]) -> Result<Vec<bool>> {
        outbox::finish(&self.pool, done).await
    }

    async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
        outbox::dead_letters(&self.pool, after, limit).await
    }
}
