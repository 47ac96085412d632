//! Timers around the store and the adapters of the trigger benchmark: where the time goes.

use super::*;
use payout_core::money::Currency;
use payout_core::store::{MonthTotal, StatusTally, TotalsFilter};

/// Where the time goes: how many calls each store method and the provider's `send` got, and how
/// long they took in all (wall time per call, summed over concurrent calls).
#[derive(Default)]
pub(super) struct Spans {
    pub(super) calls: Mutex<HashMap<&'static str, (u64, Duration)>>,
}

impl Spans {
    pub(super) async fn time<T>(&self, what: &'static str, f: impl std::future::Future<Output = T>) -> T {
        let start = std::time::Instant::now();
        let out = f.await;
        let took = start.elapsed();
        let mut calls = self.calls.lock().expect("spans");
        let e = calls.entry(what).or_default();
        e.0 += 1;
        e.1 += took;
        out
    }

    /// `what: calls x mean` for each span, and resets them.
    pub(super) fn take(&self) -> String {
        let mut calls: Vec<_> = self.calls.lock().expect("spans").drain().collect();
        calls.sort_by_key(|(what, _)| *what);
        calls
            .iter()
            .map(|(what, (count, total))| format!("{what} {count} x {}", secs(*total / (*count).max(1) as u32)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A store that times every call of the trigger path.
pub(super) struct TimedStore {
    pub(super) inner: Arc<dyn PayoutStore>,
    pub(super) spans: Arc<Spans>,
}

#[async_trait::async_trait]
impl PayoutStore for TimedStore {
    async fn create_period(&self, batch: PeriodBatch) -> payout_core::Result<PeriodBatchOutcome> {
        self.inner.create_period(batch).await
    }
    async fn create_payout(&self, new: NewPayout) -> payout_core::Result<Payout> {
        self.inner.create_payout(new).await
    }
    async fn get(&self, id: &PayoutId) -> payout_core::Result<Payout> {
        self.spans.time("store.get", self.inner.get(id)).await
    }
    async fn list(&self, filter: &PayoutFilter, page: &Page) -> payout_core::Result<PayoutPage> {
        self.inner.list(filter, page).await
    }
    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, payout_core::Result<Payout>> {
        self.inner.stream(filter)
    }
    async fn items(&self, id: &PayoutId) -> payout_core::Result<Vec<PayoutItem>> {
        self.inner.items(id).await
    }
    async fn apply(&self, change: PayoutChange) -> payout_core::Result<Payout> {
        self.spans.time("store.apply", self.inner.apply(change)).await
    }
    async fn held_consultations(
        &self,
        appointment_ids: &[String],
    ) -> payout_core::Result<Vec<payout_core::store::HeldConsultation>> {
        self.spans
            .time(
                "store.held_consultations",
                self.inner.held_consultations(appointment_ids),
            )
            .await
    }
    async fn clawbacks_due(
        &self,
        appointment_ids: &[String],
    ) -> payout_core::Result<Vec<payout_core::store::ClawbackDue>> {
        self.spans
            .time("store.clawbacks_due", self.inner.clawbacks_due(appointment_ids))
            .await
    }
    async fn attempts(&self, id: &PayoutId) -> payout_core::Result<Vec<PayoutAttempt>> {
        self.spans.time("store.attempts", self.inner.attempts(id)).await
    }
    async fn find_attempt(
        &self,
        provider: Provider,
        reference: &EventReference,
    ) -> payout_core::Result<Option<PayoutAttempt>> {
        self.inner.find_attempt(provider, reference).await
    }
    async fn batch_attempts(&self, provider: Provider, batch_id: &str) -> payout_core::Result<Vec<PayoutAttempt>> {
        self.inner.batch_attempts(provider, batch_id).await
    }
    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> payout_core::Result<bool> {
        self.inner.webhook_event_seen(provider, event_id).await
    }
    async fn audit_trail(&self, id: &PayoutId) -> payout_core::Result<Vec<AuditEntry>> {
        self.inner.audit_trail(id).await
    }
    async fn claim_checks(&self, claim: &CheckClaim) -> payout_core::Result<Vec<ClaimedCheck>> {
        self.inner.claim_checks(claim).await
    }
    async fn finish_checks(&self, done: &[CheckDone]) -> payout_core::Result<Vec<bool>> {
        self.inner.finish_checks(done).await
    }
    async fn check_state(&self, id: &PayoutId) -> payout_core::Result<CheckState> {
        self.inner.check_state(id).await
    }
    async fn attention(&self, page: &Page) -> payout_core::Result<AttentionPage> {
        self.inner.attention(page).await
    }
    async fn run_attention(&self, run: &payout_core::domain::RunId, page: &Page) -> payout_core::Result<AttentionPage> {
        self.inner.run_attention(run, page).await
    }
    async fn open_carry_overs(&self, before: NaiveDate) -> payout_core::Result<Vec<CarryOver>> {
        self.inner.open_carry_overs(before).await
    }
    async fn create_run(
        &self,
        run: payout_core::domain::NewRun,
        payouts: &[PayoutId],
    ) -> payout_core::Result<payout_core::domain::RunSummary> {
        self.inner.create_run(run, payouts).await
    }
    async fn run(&self, id: &payout_core::domain::RunId) -> payout_core::Result<payout_core::domain::RunSummary> {
        self.inner.run(id).await
    }
    async fn runs(&self, page: &Page) -> payout_core::Result<payout_core::store::RunPage> {
        self.inner.runs(page).await
    }
    async fn record_run_results(
        &self,
        run: &payout_core::domain::RunId,
        results: &[payout_core::domain::RunResult],
    ) -> payout_core::Result<()> {
        self.inner.record_run_results(run, results).await
    }
    async fn run_results(
        &self,
        run: &payout_core::domain::RunId,
        page: &Page,
    ) -> payout_core::Result<payout_core::store::RunResultPage> {
        self.inner.run_results(run, page).await
    }
    async fn record_run_event(&self, event: payout_core::domain::RunEvent) -> payout_core::Result<()> {
        self.inner.record_run_event(event).await
    }
    async fn run_events(
        &self,
        run: &payout_core::domain::RunId,
    ) -> payout_core::Result<Vec<payout_core::domain::RunEvent>> {
        self.inner.run_events(run).await
    }
    async fn set_funds_override(
        &self,
        run: &payout_core::domain::RunId,
        expected: Option<payout_core::domain::FundsOverride>,
        new: payout_core::domain::FundsOverride,
    ) -> payout_core::Result<payout_core::domain::Run> {
        self.inner.set_funds_override(run, expected, new).await
    }
    async fn doctor_holds(
        &self,
        ids: &[payout_core::domain::DoctorId],
    ) -> payout_core::Result<Vec<payout_core::domain::DoctorHold>> {
        self.inner.doctor_holds(ids).await
    }
    async fn all_doctor_holds(&self, page: &Page) -> payout_core::Result<payout_core::store::DoctorHoldPage> {
        self.inner.all_doctor_holds(page).await
    }
    async fn place_doctor_hold(&self, hold: payout_core::domain::DoctorHold) -> payout_core::Result<()> {
        self.inner.place_doctor_hold(hold).await
    }
    async fn release_doctor_hold(
        &self,
        doctor: &payout_core::domain::DoctorId,
    ) -> payout_core::Result<payout_core::domain::DoctorHold> {
        self.inner.release_doctor_hold(doctor).await
    }
    /// The inner store's bulk abilities, timed too.
    fn bulk(&self) -> Option<Arc<dyn BulkPayoutStore>> {
        let inner = self.inner.bulk()?;
        Some(Arc::new(TimedBulk {
            inner,
            spans: self.spans.clone(),
        }))
    }
    async fn totals(&self, filter: &TotalsFilter) -> payout_core::Result<Vec<StatusTally>> {
        self.inner.totals(filter).await
    }
    async fn paid_by_month(&self, currency: Option<Currency>, from: NaiveDate) -> payout_core::Result<Vec<MonthTotal>> {
        self.inner.paid_by_month(currency, from).await
    }
}

/// The bulk half of [`TimedStore`].
pub(super) struct TimedBulk {
    pub(super) inner: Arc<dyn BulkPayoutStore>,
    pub(super) spans: Arc<Spans>,
}

#[async_trait::async_trait]
impl BulkPayoutStore for TimedBulk {
    async fn apply_all(&self, changes: Vec<PayoutChange>) -> Vec<payout_core::Result<Payout>> {
        self.spans.time("store.apply_all", self.inner.apply_all(changes)).await
    }
    async fn payouts_with_attempts(&self, ids: &[PayoutId]) -> payout_core::Result<Vec<(Payout, Vec<PayoutAttempt>)>> {
        self.spans
            .time("store.payouts_with_attempts", self.inner.payouts_with_attempts(ids))
            .await
    }
    fn export_rows(&self, filter: PayoutFilter) -> BoxStream<'static, payout_core::Result<ExportRow>> {
        self.inner.export_rows(filter)
    }
}

/// A provider adapter whose sends are timed.
pub(super) struct TimedProvider {
    pub(super) inner: Arc<dyn PayoutProvider>,
    pub(super) spans: Arc<Spans>,
}

#[async_trait::async_trait]
impl PayoutProvider for TimedProvider {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        self.spans.time("provider.send", self.inner.send(instruction)).await
    }
    async fn send_batch(
        &self,
        instructions: &[PayoutInstruction],
    ) -> Result<Vec<Result<SendReceipt, ProviderError>>, ProviderError> {
        self.spans
            .time("provider.send_batch", self.inner.send_batch(instructions))
            .await
    }
    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        self.inner.verify_webhook(headers, body).await
    }
    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        self.inner.lookup(attempt).await
    }
}
