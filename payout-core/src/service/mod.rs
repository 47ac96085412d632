//! [`PayoutService`]: the engine that takes a payout from calculation to `PAID`.
//!
//! The service holds no hidden I/O: the store, the providers, the host's data sources, the clock and the
//! id generator are all injected, so a test (or a seeded simulation) drives it deterministically.

mod answer;
mod approval;
mod bank_file;
mod bulk;
mod calculate;
mod export;
mod funds;
mod funds_gate;
mod holds;
mod lifecycle;
mod pipeline;
mod reconcile;
mod resolve;
mod runs;
mod statement;
mod summary;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::clock::{Clock, IdGenerator, SystemClock, UuidV7Ids};
use crate::domain::{Actor, AuditEntry, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider};
use crate::error::{Error, Result};
use crate::funds::BalanceSource;
use crate::premium::{FeatureAccess, SubscriptionSource};
use crate::provider::PayoutProvider;
use crate::simulated::SimulatedProvider;
use crate::source::{ConsultationSource, RecipientDirectory};
use crate::store::{Page, PayoutFilter, PayoutPage, PayoutStore};

pub use crate::calculation::{CalculationPolicy, Deduction};
pub use bank_file::{
    BankFile, BankFileRequest, BankFileTotals, BankPayouts, LeftOut, ReturnedItem, Settlement, SettlementReport,
};
pub use calculate::{AlreadyPaid, CHUNK_ROUNDS, CalculationReport, ManualPayout};
pub use export::EarningsAnalytics;
pub use funds_gate::{RunFunds, funds_blocked, shortfall_text};
pub use holds::{DoctorHoldReport, check_not_held};
pub use lifecycle::{BulkOutcome, CancelConsultations};
pub use reconcile::{ReconcilePolicy, ReconcileReport, SettlementWatch};
pub use resolve::ResolveRequest;
pub use runs::{FundsNeed, NoMethod, RunPlan, RunReport, Unplanned, choose_provider};
pub use statement::{
    DeductionTotal, LineKind, PaymentMethod, STATEMENT_CSV_HEADER, SUMMARY_YEARS, Statement, StatementLine,
    StatementTotals, YearPayout, YearSummary, YearTotals, mask_destination,
};
pub use summary::MAX_CHART_MONTHS;
pub use webhook::{EventOutcome, WebhookReport};

/// What the engine allows and when it gives up waiting: rules a finance team decides. Changing
/// them changes what the engine does; see [`PerformanceConfig`] for what only changes how fast.
/// Build one from the defaults: `ServicePolicy { four_eyes: false, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePolicy {
    /// The approver of a manual payout may not be its creator, and an operator's resolution of an
    /// unknown outcome waits for a second admin to confirm it. Default: on.
    pub four_eyes: bool,
    /// The approver (or second approver) of any payout, calculated or manual, may not trigger it.
    /// Default: off.
    pub approver_may_not_trigger: bool,
    /// Payouts above these amounts, one per currency (amounts are never converted), need a second
    /// approval by another admin before they can be triggered. Empty (the default): none does. When
    /// it is not empty, a payout in a currency it does not list always needs one.
    pub second_approval_above: Vec<crate::money::Money>,
    /// How long one provider call may take before its outcome counts as unknown. Default: 120 s
    /// (longer than the adapters' own retries with backoff, so an adapter normally answers first).
    pub send_timeout: Duration,
    /// A PROCESSING payout whose attempt went out longer ago than this is flagged for a person by
    /// `reconcile` (the attention queue). Default: 72 h.
    pub attention_after: chrono::Duration,
    /// Reconciliation's back-off, lease and settlement watch.
    pub reconcile: ReconcilePolicy,
}

impl Default for ServicePolicy {
    fn default() -> Self {
        ServicePolicy {
            four_eyes: true,
            approver_may_not_trigger: false,
            second_approval_above: Vec::new(),
            send_timeout: Duration::from_secs(120),
            attention_after: chrono::Duration::hours(72),
            reconcile: ReconcilePolicy::default(),
        }
    }
}

impl ServicePolicy {
    /// Reads the amounts above which a second approval is needed, written as
    /// `CUR:amount` pairs separated by commas (`"USD:5000,KES:500000"`, the form of
    /// `PAYOUTS_SECOND_APPROVAL_ABOVE`); an empty text is none. Each amount is exact in its
    /// currency's minor units; a currency given twice, a negative amount or a malformed pair is an
    /// `InvalidInput` error.
    pub fn parse_second_approval_above(text: &str) -> Result<Vec<crate::money::Money>> {
        let mut out: Vec<crate::money::Money> = Vec::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (code, amount) = pair.split_once(':').ok_or_else(|| {
                Error::InvalidInput(format!(
                    "second approval amount {pair:?} is not CUR:amount (e.g. USD:5000)"
                ))
            })?;
            let currency = crate::money::Currency::from_code(code.trim())?;
            let money = crate::money::Money::parse(amount.trim(), currency)?;
            if money.amount().is_sign_negative() {
                return Err(Error::InvalidInput(format!(
                    "second approval amount {pair:?} is negative"
                )));
            }
            if out.iter().any(|m| m.currency() == currency) {
                return Err(Error::InvalidInput(format!(
                    "second approval amount for {} is given twice",
                    currency.code()
                )));
            }
            out.push(money);
        }
        Ok(out)
    }
}

/// How the engine spends time and memory: concurrency and chunk sizes. None of them changes what
/// the engine decides, only how fast it gets there and how much it holds at once. Build one from
/// the defaults: `PerformanceConfig { trigger_concurrency: 64, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerformanceConfig {
    /// How many payouts a bulk trigger sends at once. Default: 16.
    pub trigger_concurrency: usize,
    /// How many doctors a calculation writes per transaction, at most. Default: 2,000.
    pub calculation_chunk: usize,
    /// How many payout items a calculation holds before it writes them, at most (a doctor's items
    /// are never split, so one doctor with more items is written alone). With `calculation_chunk`
    /// this bounds the calculation's memory, whatever the number of consultations. Default: 20,000
    /// (a few MB per chunk; fewer, larger transactions write less: each commit rewrites the index
    /// pages it touched, and SQLite holds its write lock for one chunk, tens of milliseconds).
    pub calculation_chunk_items: usize,
    /// How many chunks a calculation writes at once, each in its own transaction, while it plans the
    /// next. Memory holds this many chunks plus the one being planned. Default: 1, right for a
    /// database with one writer at a time (SQLite, where a second transaction only waits for the
    /// lock) and the in-memory store; 2 for Postgres, which runs transactions side by side (a
    /// calculation written two chunks at a time took 0.9x the time of hand-written SQL instead of
    /// 1.4x; see `PgStore::WRITES_IN_FLIGHT`).
    pub calculation_writes_in_flight: usize,
    /// How many provider lookups a reconciliation pass has in flight at once. Default: 16.
    pub lookup_concurrency: usize,
    /// How many due checks a reconciliation pass claims per store call (each under a lease), and
    /// how many of their follow-ups it writes per store call. Default: 200.
    pub reconcile_claim: u32,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            trigger_concurrency: 16,
            calculation_chunk: 2_000,
            calculation_chunk_items: 20_000,
            calculation_writes_in_flight: 1,
            lookup_concurrency: 16,
            reconcile_claim: 200,
        }
    }
}

/// The payout engine. Cheap to share: hold it in an `Arc`.
pub struct PayoutService {
    store: Arc<dyn PayoutStore>,
    consultations: Option<Arc<dyn ConsultationSource>>,
    directory: Arc<dyn RecipientDirectory>,
    subscriptions: Option<Arc<dyn SubscriptionSource>>,
    providers: HashMap<Provider, Arc<dyn PayoutProvider>>,
    balance_sources: HashMap<Provider, Arc<dyn BalanceSource>>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    policy: ServicePolicy,
    performance: PerformanceConfig,
    /// Set by [`PayoutService::begin_shutdown`]: no new provider send is started.
    shutting_down: AtomicBool,
    /// Follow-ups of reconciliation checks this instance claimed and looked at but could not write
    /// (the store was away): written first by the next pass, so the checks are due again at once
    /// rather than when their leases run out.
    owed_checks: std::sync::Mutex<Vec<crate::store::CheckDone>>,
}

impl std::fmt::Debug for PayoutService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut providers: Vec<_> = self.providers.keys().collect();
        providers.sort();
        let mut balance_sources: Vec<_> = self.balance_sources.keys().collect();
        balance_sources.sort();
        f.debug_struct("PayoutService")
            .field("providers", &providers)
            .field("balance_sources", &balance_sources)
            .field("policy", &self.policy)
            .field("performance", &self.performance)
            .finish_non_exhaustive()
    }
}

/// Builds a [`PayoutService`].
#[derive(Default)]
pub struct PayoutServiceBuilder {
    store: Option<Arc<dyn PayoutStore>>,
    consultations: Option<Arc<dyn ConsultationSource>>,
    directory: Option<Arc<dyn RecipientDirectory>>,
    subscriptions: Option<Arc<dyn SubscriptionSource>>,
    providers: HashMap<Provider, Arc<dyn PayoutProvider>>,
    balance_sources: HashMap<Provider, Arc<dyn BalanceSource>>,
    simulate_missing: bool,
    clock: Option<Arc<dyn Clock>>,
    ids: Option<Arc<dyn IdGenerator>>,
    policy: ServicePolicy,
    performance: PerformanceConfig,
}

impl PayoutServiceBuilder {
    /// The store (required).
    pub fn store(mut self, store: Arc<dyn PayoutStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// Where completed consultations come from (required for `calculate_period`).
    pub fn consultations(mut self, source: Arc<dyn ConsultationSource>) -> Self {
        self.consultations = Some(source);
        self
    }
    /// Doctors' profiles (required).
    pub fn directory(mut self, directory: Arc<dyn RecipientDirectory>) -> Self {
        self.directory = Some(directory);
        self
    }
    /// Subscriptions, for premium feature gating.
    pub fn subscriptions(mut self, source: Arc<dyn SubscriptionSource>) -> Self {
        self.subscriptions = Some(source);
        self
    }
    /// Adds a provider adapter (replacing one for the same provider).
    pub fn provider(mut self, provider: Arc<dyn PayoutProvider>) -> Self {
        self.providers.insert(provider.provider(), provider);
        self
    }
    /// Adds where a provider's balance is read for the funds check (replacing one for the same
    /// provider); see [`PayoutService::balances`]. An adapter that is also the provider's
    /// [`PayoutProvider`] is registered with both methods as the same `Arc` (the M-Pesa adapter
    /// keeps the balance its result callback brought, and callbacks reach it as the provider).
    /// A provider without a source has an unknown balance, which the check shows and never blocks on.
    pub fn balance_source(mut self, source: Arc<dyn BalanceSource>) -> Self {
        self.balance_sources.insert(source.provider(), source);
        self
    }
    /// Stands a clearly labelled [`SimulatedProvider`] in for every provider without an adapter (the
    /// original system's behaviour when credentials are missing). Off by default; each stand-in is
    /// logged at build time and every simulated attempt says so in the audit trail.
    pub fn simulate_missing_providers(mut self, on: bool) -> Self {
        self.simulate_missing = on;
        self
    }
    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// The id generator (default: UUIDv7).
    pub fn ids(mut self, ids: Arc<dyn IdGenerator>) -> Self {
        self.ids = Some(ids);
        self
    }
    /// What the engine allows (default: [`ServicePolicy::default`]).
    pub fn policy(mut self, policy: ServicePolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Concurrency and chunk sizes (default: [`PerformanceConfig::default`]).
    pub fn performance(mut self, performance: PerformanceConfig) -> Self {
        self.performance = performance;
        self
    }

    /// Builds the service; fails when the store or the directory is missing.
    pub fn build(self) -> Result<PayoutService> {
        let store = self
            .store
            .ok_or_else(|| Error::InvalidInput("PayoutService needs a store".into()))?;
        let directory = self
            .directory
            .ok_or_else(|| Error::InvalidInput("PayoutService needs a recipient directory".into()))?;
        let mut providers = self.providers;
        if self.simulate_missing {
            for p in Provider::ALL {
                providers.entry(p).or_insert_with(|| {
                    tracing::warn!(provider = %p, "no adapter configured: using the SIMULATED provider (no money moves)");
                    Arc::new(SimulatedProvider::new(p))
                });
            }
        }
        Ok(PayoutService {
            store,
            consultations: self.consultations,
            directory,
            subscriptions: self.subscriptions,
            providers,
            balance_sources: self.balance_sources,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            ids: self.ids.unwrap_or_else(|| Arc::new(UuidV7Ids)),
            policy: self.policy,
            performance: self.performance,
            shutting_down: AtomicBool::new(false),
            owed_checks: std::sync::Mutex::new(Vec::new()),
        })
    }
}

impl PayoutService {
    /// A builder.
    pub fn builder() -> PayoutServiceBuilder {
        PayoutServiceBuilder::default()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn PayoutStore> {
        &self.store
    }

    /// The adapter for `provider`.
    pub fn provider(&self, provider: Provider) -> Result<&Arc<dyn PayoutProvider>> {
        self.providers
            .get(&provider)
            .ok_or(Error::ProviderNotConfigured(provider))
    }

    /// The providers that have an adapter, and whether each is simulated.
    pub fn providers(&self) -> Vec<(Provider, bool)> {
        let mut v: Vec<_> = self
            .providers
            .iter()
            .map(|(p, a)| (*p, a.capabilities().simulated))
            .collect();
        v.sort();
        v
    }

    /// What the engine allows.
    pub fn policy(&self) -> &ServicePolicy {
        &self.policy
    }

    /// Concurrency and chunk sizes.
    pub fn performance(&self) -> &PerformanceConfig {
        &self.performance
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Stops starting provider sends, for a graceful shutdown: from now on [`trigger`](Self::trigger),
    /// [`retry`](Self::retry) and the rest of a running [`bulk_trigger`](Self::bulk_trigger) refuse
    /// with [`Error::ShuttingDown`] before committing anything, while the sends already committed
    /// go on and their answers are recorded. Reconciliation, webhooks and reads are unaffected.
    /// There is no way back: a new process starts a new service.
    pub fn begin_shutdown(&self) {
        if !self.shutting_down.swap(true, Ordering::SeqCst) {
            tracing::info!("shutting down: no new payout is sent; sends under way finish");
        }
    }

    /// True once [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    fn refuse_when_shutting_down(&self) -> Result<()> {
        if self.is_shutting_down() {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Reads the engine's gauges from the store and sets them through the `metrics` facade
    /// ([`telemetry`](crate::telemetry)): the reconciliation backlog (PROCESSING payouts), the
    /// attention queue's length and the payouts by status. A few counting reads; call it when the
    /// figures should be fresh (after a reconciliation pass, on a scrape).
    pub async fn publish_gauges(&self) -> Result<()> {
        for status in crate::status::PayoutStatus::ALL {
            let filter = PayoutFilter {
                status: Some(status),
                ..Default::default()
            };
            let total = self.store.list(&filter, &Page::new(1, 0)).await?.total;
            metrics::gauge!(crate::telemetry::PAYOUTS, "status" => status.to_string()).set(total as f64);
            if status == crate::status::PayoutStatus::Processing {
                metrics::gauge!(crate::telemetry::RECONCILE_BACKLOG).set(total as f64);
            }
        }
        let attention = self.store.attention(&Page::new(1, 0)).await?.total;
        metrics::gauge!(crate::telemetry::ATTENTION).set(attention as f64);
        Ok(())
    }

    fn require_privileged(&self, actor: &Actor, what: &str) -> Result<()> {
        if actor.is_privileged() {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("only an admin may {what}")))
        }
    }

    /// Loads a payout the actor may see; a doctor asking for another doctor's payout gets `NotFound`.
    async fn visible(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        let payout = self.store.get(id).await?;
        match actor {
            Actor::Doctor { doctor_id } if &payout.doctor_id != doctor_id => Err(Error::NotFound(id.clone())),
            _ => Ok(payout),
        }
    }

    fn audit(
        &self,
        payout: &Payout,
        actor: &str,
        action: &str,
        to: Option<crate::status::PayoutStatus>,
        detail: String,
    ) -> AuditEntry {
        AuditEntry {
            payout_id: payout.id.clone(),
            actor: actor.to_string(),
            at: self.clock.now(),
            action: action.to_string(),
            from: to.map(|_| payout.status),
            to,
            detail,
        }
    }

    /// One payout. Doctors see only their own (another doctor's is `NotFound`).
    pub async fn get(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        self.visible(actor, id).await
    }

    /// A payout's items. Doctors see only their own.
    pub async fn items(&self, actor: &Actor, id: &PayoutId) -> Result<Vec<PayoutItem>> {
        self.visible(actor, id).await?;
        self.store.items(id).await
    }

    /// A payout's attempts (admins only).
    pub async fn attempts(&self, actor: &Actor, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
        self.require_privileged(actor, "read payout attempts")?;
        self.store.attempts(id).await
    }

    /// A payout's audit trail (admins only).
    pub async fn audit_trail(&self, actor: &Actor, id: &PayoutId) -> Result<Vec<AuditEntry>> {
        self.require_privileged(actor, "read the audit trail")?;
        self.store.audit_trail(id).await
    }

    /// The admin list with the original system's filters and paging (admins only).
    pub async fn list(&self, actor: &Actor, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
        self.require_privileged(actor, "list all payouts")?;
        self.store.list(filter, &clamp(page)).await
    }

    /// The authenticated doctor's own payout history; the doctor comes from the actor, never from input.
    pub async fn doctor_history(&self, actor: &Actor, page: &Page) -> Result<PayoutPage> {
        let Actor::Doctor { doctor_id } = actor else {
            return Err(Error::Forbidden("the payout history is a doctor's own view".into()));
        };
        let filter = PayoutFilter {
            doctor_id: Some(doctor_id.clone()),
            ..Default::default()
        };
        self.store.list(&filter, &clamp(page)).await
    }

    /// True when `user_id` has any premium plan (the original `userHasPremium`). Without a
    /// subscription source nobody has.
    pub async fn user_has_premium(&self, user_id: &str) -> Result<bool> {
        match &self.subscriptions {
            Some(s) => crate::premium::user_has_premium(s.as_ref(), user_id, self.clock.now()).await,
            None => Ok(false),
        }
    }

    /// The features `user_id` may use (the original `getUserFeatureAccess`).
    pub async fn feature_access(&self, user_id: &str) -> Result<FeatureAccess> {
        match &self.subscriptions {
            Some(s) => crate::premium::feature_access(s.as_ref(), user_id, self.clock.now()).await,
            None => Ok(FeatureAccess::default()),
        }
    }
}

fn clamp(page: &Page) -> Page {
    let mut p = page.clone();
    p.limit = p.limit.clamp(1, Page::MAX_LIMIT);
    p
}
