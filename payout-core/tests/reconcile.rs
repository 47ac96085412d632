//! Reconciliation that never starves: leases, back-off, several instances, the attention queue,
//! forward-only after PAID and the settlement watch, against a provider double that counts its
//! lookups per attempt.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use futures::stream::BoxStream;
use http::HeaderMap;
use payout_core::clock::{Clock, ManualClock, SequentialIds};
use payout_core::domain::{
    Actor, AttemptOutcome, AuditEntry, Consultation, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider,
};
use payout_core::error::{ProviderError, Result, StoreError, StoreErrorKind, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::provider::{
    AttemptLookup, Capabilities, EventReference, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderEventKind,
    ProviderStatus, SendReceipt,
};
use payout_core::service::{CalculationPolicy, EventOutcome, PayoutService, PerformanceConfig, ServicePolicy};
use payout_core::status::PayoutStatus;
use payout_core::store::{
    AttentionPage, BulkPayoutStore, CarryOver, CheckClaim, CheckDone, CheckState, ClaimedCheck, ClawbackDue,
    HeldConsultation, MonthTotal, NewPayout, Page, PayoutChange, PayoutFilter, PayoutPage, PayoutStore, PeriodBatch,
    PeriodBatchOutcome, StatusTally, TotalsFilter,
};

use common::{consultation, month, recipient};

/// A payment rail double: accepts every send, answers lookups from a table (default: still
/// pending), and counts lookups per idempotency key.
struct Rail {
    provider: Provider,
    answers: Mutex<HashMap<PayoutId, ProviderStatus>>,
    default: ProviderStatus,
    lookups: Mutex<HashMap<String, usize>>,
    /// What the next webhook delivery verifies to.
    deliveries: Mutex<Vec<ProviderEvent>>,
}

impl Rail {
    fn new(provider: Provider, default: ProviderStatus) -> Arc<Self> {
        Arc::new(Rail {
            provider,
            answers: Mutex::new(HashMap::new()),
            default,
            lookups: Mutex::new(HashMap::new()),
            deliveries: Mutex::new(Vec::new()),
        })
    }

    /// The next webhook delivery verifies to `event`.
    fn deliver(&self, event: ProviderEvent) {
        *self.deliveries.lock().unwrap() = vec![event];
    }

    fn answer(&self, id: &PayoutId, status: ProviderStatus) {
        self.answers.lock().unwrap().insert(id.clone(), status);
    }

    /// Lookups per idempotency key so far, and forgets them.
    fn take_lookups(&self) -> HashMap<String, usize> {
        std::mem::take(&mut *self.lookups.lock().unwrap())
    }
}

#[async_trait]
impl PayoutProvider for Rail {
    fn provider(&self) -> Provider {
        self.provider
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn send(&self, i: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        Ok(SendReceipt {
            reference: Some(format!("ref-{}", i.idempotency_key)),
            status: ProviderStatus::Accepted,
            note: "accepted".into(),
        })
    }

    async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Ok(self.deliveries.lock().unwrap().clone())
    }

    async fn lookup(&self, a: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        *self
            .lookups
            .lock()
            .unwrap()
            .entry(a.idempotency_key.clone())
            .or_default() += 1;
        // Let the other instance run between lookups, as a network call would.
        tokio::task::yield_now().await;
        let answer = self.answers.lock().unwrap().get(&a.payout_id).cloned();
        Ok(answer.unwrap_or_else(|| self.default.clone()))
    }
}

struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    rail: Arc<Rail>,
    /// The PROCESSING payouts, in the order they were triggered.
    ids: Vec<PayoutId>,
    policy: ServicePolicy,
    performance: PerformanceConfig,
    directory: Arc<payout_core::source::StaticDirectory>,
}

impl World {
    /// An instance of the engine over the world's store, rail and clock.
    fn instance(&self) -> PayoutService {
        PayoutService::builder()
            .store(self.store.clone())
            .directory(self.directory.clone())
            .provider(self.rail.clone())
            .clock(self.clock.clone())
            .ids(Arc::new(SequentialIds::default()))
            .policy(self.policy.clone())
            .performance(self.performance.clone())
            .build()
            .unwrap()
    }

    async fn status(&self, id: &PayoutId) -> PayoutStatus {
        self.store.get(id).await.unwrap().status
    }
}

/// `n` doctors' January payouts, triggered through `rail` one after the other (so the later ones
/// are the newer), then an hour passes.
async fn processing(n: usize, rail: Arc<Rail>, policy: ServicePolicy) -> World {
    let doctors: Vec<String> = (0..n).map(|i| format!("dr-{i:05}")).collect();
    let consultations: Vec<Consultation> = doctors
        .iter()
        .map(|d| consultation(&format!("c-{d}"), d, 2025, 1, 10))
        .collect();
    let directory = Arc::new(payout_core::source::StaticDirectory::new(
        doctors.iter().map(|d| recipient(d)).collect::<Vec<_>>(),
    ));
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    let performance = PerformanceConfig {
        lookup_concurrency: 8,
        reconcile_claim: 50,
        ..Default::default()
    };
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(payout_core::source::StaticConsultations::new(consultations)))
        .directory(directory.clone())
        .provider(rail.clone())
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .policy(policy.clone())
        .build()
        .unwrap();
    let admin = Actor::admin("admin-1");
    let report = service
        .calculate_period(&admin, Some(month(2025, 1)), &CalculationPolicy::default())
        .await
        .unwrap();
    assert_eq!(report.created.len(), n);
    let mut ids = Vec::new();
    for id in &report.created {
        service.approve(&Actor::admin("admin-2"), id).await.unwrap();
        clock.advance(Duration::milliseconds(10));
        let p = service.trigger(&admin, id, rail.provider).await.unwrap();
        assert_eq!(p.status, PayoutStatus::Processing);
        ids.push(id.clone());
    }
    clock.advance(Duration::hours(1));
    World {
        store,
        clock,
        rail,
        ids,
        policy,
        performance,
        directory,
    }
}

/// Issue 14 item 4: 2,000 PROCESSING payouts the provider keeps answering "pending", and 10 newer
/// ones it has settled. The old pass read the 500 oldest and wrote nothing back, so the 10 were
/// never looked at; now they settle within the first two passes.
#[tokio::test]
async fn ten_settled_among_two_thousand_pending_settle_within_two_passes() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Accepted);
    let w = processing(2_010, rail, ServicePolicy::default()).await;
    let settled: Vec<PayoutId> = w.ids[2_000..].to_vec();
    for id in &settled {
        w.rail.answer(id, ProviderStatus::Paid);
    }
    let service = w.instance();
    for _ in 0..2 {
        service.reconcile(Duration::minutes(30)).await.unwrap();
        w.clock.advance(Duration::minutes(30));
    }
    for id in &settled {
        assert_eq!(w.status(id).await, PayoutStatus::Paid, "{id} settled within two passes");
    }
    assert_eq!(w.status(&w.ids[0]).await, PayoutStatus::Processing);
}

/// Two instances reconciling the same 1,000 PROCESSING payouts at once look each attempt up
/// exactly once per pass, pass after pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_look_each_attempt_up_once_per_pass() {
    let rail = Rail::new(Provider::PaypalPayouts, ProviderStatus::Accepted);
    let w = processing(1_000, rail, ServicePolicy::default()).await;
    let (a, b) = (w.instance(), w.instance());
    for pass in 1..=2 {
        let (ra, rb) = tokio::join!(a.reconcile(Duration::minutes(30)), b.reconcile(Duration::minutes(30)));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            ra.examined + rb.examined,
            1_000,
            "pass {pass}: every payout examined once"
        );
        let lookups = w.rail.take_lookups();
        assert_eq!(lookups.len(), 1_000, "pass {pass}: every attempt looked up");
        let twice: Vec<_> = lookups.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "pass {pass}: attempts looked up more than once: {twice:?}"
        );
        // Past the longest back-off of the second check: every payout due again.
        w.clock.advance(Duration::hours(1));
    }
}

/// A payout still pending is checked again after a growing back-off, not on every pass; the
/// schedule never changes the payout's version.
#[tokio::test]
async fn pending_payouts_back_off() {
    let rail = Rail::new(Provider::BankTransfer, ProviderStatus::Accepted);
    let w = processing(3, rail, ServicePolicy::default()).await;
    let service = w.instance();
    let version = w.store.get(&w.ids[0]).await.unwrap().version;
    let report = service.reconcile(Duration::minutes(30)).await.unwrap();
    assert_eq!(report.pending.len(), 3);
    let state = w.store.check_state(&w.ids[0]).await.unwrap();
    assert_eq!(state.checks, 1);
    assert_eq!(state.next_check_at, Some(w.clock.now() + Duration::minutes(5)));
    assert_eq!(w.store.get(&w.ids[0]).await.unwrap().version, version, "no new version");

    w.clock.advance(Duration::minutes(4));
    assert_eq!(
        service.reconcile(Duration::zero()).await.unwrap().examined,
        0,
        "not due yet"
    );
    w.clock.advance(Duration::minutes(1));
    assert_eq!(
        service.reconcile(Duration::zero()).await.unwrap().examined,
        3,
        "due after 5 minutes"
    );
    let state = w.store.check_state(&w.ids[0]).await.unwrap();
    assert_eq!(
        state.next_check_at,
        Some(w.clock.now() + Duration::minutes(10)),
        "then 10"
    );
}

/// A check claimed by an instance that crashed is taken over when its lease ends, not before.
#[tokio::test]
async fn a_crashed_instances_checks_are_taken_over_when_the_lease_ends() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Paid);
    let w = processing(2, rail, ServicePolicy::default()).await;
    let now = w.clock.now();
    let lease = w.policy.reconcile.lease;
    let crashed = w
        .store
        .claim_checks(&CheckClaim {
            due_by: now,
            limit: 10,
            lease_until: now + lease,
        })
        .await
        .unwrap();
    assert_eq!(crashed.len(), 2, "the crashed instance held both");
    let service = w.instance();
    assert_eq!(service.reconcile(Duration::zero()).await.unwrap().examined, 0, "leased");
    w.clock.advance(lease);
    let report = service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.settled.len(), 2, "taken over and settled: {report:?}");
}

/// An outcome a lookup cannot tell (an M-Pesa-like rail) is flagged for a person and listed in
/// the attention queue; it stays PROCESSING and is still re-checked.
#[tokio::test]
async fn an_outcome_a_lookup_cannot_tell_is_flagged() {
    let rail = Rail::new(
        Provider::MpesaB2c,
        ProviderStatus::Undetermined("answers by callback only".into()),
    );
    let w = processing(2, rail, ServicePolicy::default()).await;
    let service = w.instance();
    let report = service.reconcile(Duration::minutes(30)).await.unwrap();
    assert_eq!(report.needs_attention.len(), 2);
    let queue = service
        .attention(&Actor::admin("admin-1"), &Page::default())
        .await
        .unwrap();
    assert_eq!(queue.total, 2);
    assert!(
        queue.flagged[0].reason.contains("cannot tell"),
        "{:?}",
        queue.flagged[0]
    );
    assert_eq!(queue.flagged[0].payout.status, PayoutStatus::Processing);
    assert!(w.store.check_state(&w.ids[0]).await.unwrap().next_check_at.is_some());
    assert!(
        service
            .attention(&Actor::doctor("dr-00000"), &Page::default())
            .await
            .is_err(),
        "admins only"
    );

    // A person (or a webhook) settles it: the flag goes with the change.
    w.rail.answer(&w.ids[0], ProviderStatus::Paid);
    w.clock.advance(Duration::hours(1));
    service.reconcile(Duration::zero()).await.unwrap();
    let queue = service
        .attention(&Actor::admin("admin-1"), &Page::default())
        .await
        .unwrap();
    assert_eq!(queue.total, 1);
    assert_eq!(queue.flagged[0].payout.id, w.ids[1]);
}

/// PROCESSING for longer than `attention_after`: flagged.
#[tokio::test]
async fn processing_past_attention_after_is_flagged() {
    let rail = Rail::new(Provider::BankTransfer, ProviderStatus::Accepted);
    let policy = ServicePolicy {
        attention_after: Duration::hours(2),
        ..Default::default()
    };
    let w = processing(1, rail, policy).await;
    let service = w.instance();
    assert!(
        service
            .reconcile(Duration::zero())
            .await
            .unwrap()
            .needs_attention
            .is_empty()
    );
    w.clock.advance(Duration::hours(2));
    let report = service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.needs_attention, w.ids);
    let queue = w.store.attention(&Page::default()).await.unwrap();
    assert!(
        queue.flagged[0].reason.contains("PROCESSING since"),
        "{:?}",
        queue.flagged
    );
}

/// Issue 14 items 8 and 9: a PAID payout is re-checked during its provider's window; a late
/// failure answer is recorded on the attempt and flagged, never a status change; money that
/// comes back moves it (and flags it); after the window it is not looked up any more.
#[tokio::test]
async fn paid_payouts_are_watched_and_only_money_back_moves_them() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Paid);
    let w = processing(2, rail, ServicePolicy::default()).await;
    let service = w.instance();
    let report = service.reconcile(Duration::minutes(30)).await.unwrap();
    assert_eq!(report.settled.len(), 2);
    let (late, back) = (&w.ids[0], &w.ids[1]);
    let next = w.store.check_state(late).await.unwrap().next_check_at;
    assert_eq!(next, Some(w.clock.now() + Duration::days(1)), "watched daily");
    w.rail.take_lookups();

    w.rail.answer(late, ProviderStatus::Failed("account closed".into()));
    w.rail
        .answer(back, ProviderStatus::Reversed("reversed by the platform".into()));
    w.clock.advance(Duration::days(1));
    let report = service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(
        w.status(late).await,
        PayoutStatus::Paid,
        "a late failure never moves PAID"
    );
    let attempts = w.store.attempts(late).await.unwrap();
    assert!(
        matches!(&attempts[0].outcome, AttemptOutcome::Failed { reason } if reason.contains("account closed")),
        "recorded on the attempt: {:?}",
        attempts[0].outcome
    );
    assert_eq!(w.status(back).await, PayoutStatus::Reversed, "money back moves it");
    assert!(report.needs_attention.contains(late), "{report:?}");
    let queue = w.store.attention(&Page::default()).await.unwrap();
    let mut flagged: Vec<&PayoutId> = queue.flagged.iter().map(|f| &f.payout.id).collect();
    flagged.sort();
    assert_eq!(flagged, [late, back], "both flagged for a person");
    let trail = w.store.audit_trail(late).await.unwrap();
    assert!(trail.iter().any(|e| e.action == "LATE_FAILURE"), "audited");

    // Still watched until Stripe's 7 days are over, then never looked up again.
    w.rail.take_lookups();
    for _ in 0..10 {
        w.clock.advance(Duration::days(1));
        service.reconcile(Duration::zero()).await.unwrap();
    }
    let lookups = w.rail.take_lookups();
    let n = lookups.values().sum::<usize>();
    assert!((4..=6).contains(&n), "looked up daily within the window only: {n}");
    assert_eq!(w.store.check_state(late).await.unwrap().next_check_at, None);
}

fn kes(minor: i64) -> Money {
    Money::from_minor_units(minor, Currency::from_code("KES").unwrap())
}

fn partially_reversed(minor: i64) -> ProviderStatus {
    ProviderStatus::PartiallyReversed {
        reversed: kes(minor),
        reason: format!("transfer reversed in part ({} reversed)", kes(minor)),
    }
}

/// The audit entries of `id` with `action`.
async fn audited(w: &World, id: &PayoutId, action: &str) -> Vec<AuditEntry> {
    let trail = w.store.audit_trail(id).await.unwrap();
    trail.into_iter().filter(|e| e.action == action).collect()
}

/// The attention queue's reason for `id`, if it is listed.
async fn flag_of(w: &World, id: &PayoutId) -> Option<String> {
    let queue = w.store.attention(&Page::default()).await.unwrap();
    queue.flagged.into_iter().find(|f| &f.payout.id == id).map(|f| f.reason)
}

/// Issue 15 item 2: a transfer reversed in part, found by the settlement watch, leaves the payout
/// PAID, audited with the amount and listed for a person, once however many passes see it; more
/// reversed is recorded again; all of it moves the payout to REVERSED.
#[tokio::test]
async fn a_partial_reversal_found_by_the_watch_is_recorded_once_and_keeps_the_payout_paid() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Paid);
    let w = processing(1, rail, ServicePolicy::default()).await;
    let service = w.instance();
    service.reconcile(Duration::minutes(30)).await.unwrap();
    let id = &w.ids[0];
    assert_eq!(w.status(id).await, PayoutStatus::Paid);

    w.rail.answer(id, partially_reversed(12_000));
    for pass in 0..3 {
        w.clock.advance(Duration::days(1));
        let report = service.reconcile(Duration::zero()).await.unwrap();
        assert_eq!(w.status(id).await, PayoutStatus::Paid, "pass {pass}");
        assert_eq!(
            report.needs_attention.contains(id),
            pass == 0,
            "pass {pass}: {report:?}"
        );
    }
    let entries = audited(&w, id, "PARTIAL_REVERSAL").await;
    assert_eq!(entries.len(), 1, "recorded once: {entries:?}");
    assert!(
        entries[0].detail.contains("120.00 KES of 500.00 KES"),
        "{:?}",
        entries[0].detail
    );
    let flag = flag_of(&w, id).await.expect("listed for a person");
    assert!(flag.contains("partially reversed: 120.00 KES of 500.00 KES"), "{flag}");

    // More of it reversed: a new record; all of it: REVERSED.
    w.rail.answer(id, partially_reversed(30_000));
    w.clock.advance(Duration::days(1));
    service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(audited(&w, id, "PARTIAL_REVERSAL").await.len(), 2);
    assert!(flag_of(&w, id).await.unwrap().contains("300.00 KES of 500.00 KES"));
    w.rail.answer(id, ProviderStatus::Reversed("transfer reversed".into()));
    w.clock.advance(Duration::days(1));
    service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(w.status(id).await, PayoutStatus::Reversed);
}

/// Issue 15 item 2: the `transfer.reversed` webhook of a partial reversal and the watch's lookup
/// agree: the webhook records it (PAID, flagged, audited), the lookup that sees the same amount
/// records nothing more, and a redelivery is a duplicate. A partial reversal of a payout still
/// PROCESSING (its send's answer lost) makes it PAID, flagged.
#[tokio::test]
async fn a_partial_reversal_webhook_and_the_watch_record_it_once() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Accepted);
    let w = processing(2, rail, ServicePolicy::default()).await;
    let service = w.instance();
    let (paid, processing) = (&w.ids[0], &w.ids[1]);
    w.rail.answer(paid, ProviderStatus::Paid);
    service.reconcile(Duration::minutes(30)).await.unwrap();
    assert_eq!(w.status(paid).await, PayoutStatus::Paid);
    assert_eq!(w.status(processing).await, PayoutStatus::Processing);

    let event = |n: u32, id: &PayoutId| ProviderEvent {
        event_id: format!("evt_{n}"),
        references: vec![EventReference::IdempotencyKey(PayoutAttempt::key_for(id, 1))],
        kind: ProviderEventKind::PartiallyReversed {
            reversed: kes(12_000),
            reason: "transfer reversed in part".into(),
        },
        occurred_at: None,
        provider_type: "transfer.reversed".into(),
    };
    w.rail.deliver(event(1, paid));
    let report = service
        .handle_webhook(Provider::StripeConnect, &HeaderMap::new(), b"{}")
        .await
        .unwrap();
    assert!(
        matches!(&report.events[0], EventOutcome::Flagged { payout_id, reason, .. }
            if payout_id == paid && reason.contains("120.00 KES of 500.00 KES")),
        "{report:?}"
    );
    assert_eq!(w.status(paid).await, PayoutStatus::Paid);
    assert_eq!(audited(&w, paid, "PARTIAL_REVERSAL").await.len(), 1);
    assert!(flag_of(&w, paid).await.is_some());
    let again = service
        .handle_webhook(Provider::StripeConnect, &HeaderMap::new(), b"{}")
        .await
        .unwrap();
    assert!(matches!(again.events[0], EventOutcome::Duplicate { .. }), "{again:?}");

    // The watch's lookup sees the same reversal: nothing more recorded, still listed.
    w.rail.answer(paid, partially_reversed(12_000));
    w.clock.advance(Duration::days(1));
    service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(audited(&w, paid, "PARTIAL_REVERSAL").await.len(), 1);
    assert!(flag_of(&w, paid).await.unwrap().contains("120.00 KES of 500.00 KES"));

    w.rail.deliver(event(2, processing));
    let report = service
        .handle_webhook(Provider::StripeConnect, &HeaderMap::new(), b"{}")
        .await
        .unwrap();
    assert!(
        matches!(
            report.events[0],
            EventOutcome::Applied {
                to: PayoutStatus::Paid,
                ..
            }
        ),
        "{report:?}"
    );
    assert_eq!(w.status(processing).await, PayoutStatus::Paid);
    assert_eq!(audited(&w, processing, "PARTIAL_REVERSAL").await.len(), 1);
    assert!(flag_of(&w, processing).await.unwrap().contains("partially reversed"));
}

/// The store calls a pass makes, counted by method (the rest forwarded to the memory store); the
/// database can be made to go away (claims, changes and follow-ups then fail as unavailable).
struct Counting {
    inner: Arc<MemoryStore>,
    calls: Mutex<HashMap<&'static str, usize>>,
    /// The database is away.
    away: AtomicBool,
    /// The database goes away right after the next claim is answered.
    away_after_claim: AtomicBool,
}

impl Counting {
    fn new(inner: Arc<MemoryStore>) -> Self {
        Counting {
            inner,
            calls: Mutex::new(HashMap::new()),
            away: AtomicBool::new(false),
            away_after_claim: AtomicBool::new(false),
        }
    }

    fn count(&self, what: &'static str) {
        *self.calls.lock().unwrap().entry(what).or_default() += 1;
    }

    fn reachable(&self) -> Result<()> {
        if self.away.load(Ordering::SeqCst) {
            return Err(StoreError::new(StoreErrorKind::Unavailable, "the database is away").into());
        }
        Ok(())
    }

    fn calls(&self, what: &str) -> usize {
        self.calls.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

#[async_trait]
impl PayoutStore for Counting {
    async fn create_period(&self, batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
        self.inner.create_period(batch).await
    }
    async fn create_payout(&self, new: NewPayout) -> Result<Payout> {
        self.inner.create_payout(new).await
    }
    async fn get(&self, id: &PayoutId) -> Result<Payout> {
        self.count("get");
        self.inner.get(id).await
    }
    async fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
        self.inner.list(filter, page).await
    }
    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>> {
        self.inner.stream(filter)
    }
    async fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>> {
        self.count("items");
        self.inner.items(id).await
    }
    async fn apply(&self, change: PayoutChange) -> Result<Payout> {
        self.count("apply");
        self.reachable()?;
        self.inner.apply(change).await
    }
    async fn held_consultations(&self, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>> {
        self.inner.held_consultations(appointment_ids).await
    }
    async fn clawbacks_due(&self, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>> {
        self.inner.clawbacks_due(appointment_ids).await
    }
    async fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
        self.count("attempts");
        self.inner.attempts(id).await
    }
    async fn find_attempt(&self, provider: Provider, reference: &EventReference) -> Result<Option<PayoutAttempt>> {
        self.inner.find_attempt(provider, reference).await
    }
    async fn batch_attempts(&self, provider: Provider, batch_id: &str) -> Result<Vec<PayoutAttempt>> {
        self.inner.batch_attempts(provider, batch_id).await
    }
    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> Result<bool> {
        self.inner.webhook_event_seen(provider, event_id).await
    }
    async fn audit_trail(&self, id: &PayoutId) -> Result<Vec<AuditEntry>> {
        self.inner.audit_trail(id).await
    }
    async fn claim_checks(&self, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>> {
        self.count("claim_checks");
        self.reachable()?;
        let claimed = self.inner.claim_checks(claim).await;
        if self.away_after_claim.swap(false, Ordering::SeqCst) {
            self.away.store(true, Ordering::SeqCst);
        }
        claimed
    }
    async fn finish_checks(&self, done: &[CheckDone]) -> Result<Vec<bool>> {
        self.count("finish_checks");
        self.reachable()?;
        self.inner.finish_checks(done).await
    }
    async fn check_state(&self, id: &PayoutId) -> Result<CheckState> {
        self.inner.check_state(id).await
    }
    async fn attention(&self, page: &Page) -> Result<AttentionPage> {
        self.inner.attention(page).await
    }
    async fn run_attention(&self, run: &payout_core::domain::RunId, page: &Page) -> Result<AttentionPage> {
        self.inner.run_attention(run, page).await
    }
    async fn open_carry_overs(&self, before: NaiveDate) -> Result<Vec<CarryOver>> {
        self.inner.open_carry_overs(before).await
    }
    async fn create_run(
        &self,
        run: payout_core::domain::NewRun,
        payouts: &[PayoutId],
    ) -> Result<payout_core::domain::RunSummary> {
        self.inner.create_run(run, payouts).await
    }
    async fn run(&self, id: &payout_core::domain::RunId) -> Result<payout_core::domain::RunSummary> {
        self.inner.run(id).await
    }
    async fn runs(&self, page: &Page) -> Result<payout_core::store::RunPage> {
        self.inner.runs(page).await
    }
    async fn record_run_results(
        &self,
        run: &payout_core::domain::RunId,
        results: &[payout_core::domain::RunResult],
    ) -> Result<()> {
        self.inner.record_run_results(run, results).await
    }
    async fn run_results(
        &self,
        run: &payout_core::domain::RunId,
        page: &Page,
    ) -> Result<payout_core::store::RunResultPage> {
        self.inner.run_results(run, page).await
    }
    async fn record_run_event(&self, event: payout_core::domain::RunEvent) -> Result<()> {
        self.inner.record_run_event(event).await
    }
    async fn run_events(&self, run: &payout_core::domain::RunId) -> Result<Vec<payout_core::domain::RunEvent>> {
        self.inner.run_events(run).await
    }
    async fn set_funds_override(
        &self,
        run: &payout_core::domain::RunId,
        expected: Option<payout_core::domain::FundsOverride>,
        new: payout_core::domain::FundsOverride,
    ) -> Result<payout_core::domain::Run> {
        self.inner.set_funds_override(run, expected, new).await
    }
    async fn doctor_holds(
        &self,
        ids: &[payout_core::domain::DoctorId],
    ) -> Result<Vec<payout_core::domain::DoctorHold>> {
        self.inner.doctor_holds(ids).await
    }
    async fn all_doctor_holds(&self, page: &Page) -> Result<payout_core::store::DoctorHoldPage> {
        self.inner.all_doctor_holds(page).await
    }
    async fn place_doctor_hold(&self, hold: payout_core::domain::DoctorHold) -> Result<()> {
        self.inner.place_doctor_hold(hold).await
    }
    async fn release_doctor_hold(
        &self,
        doctor: &payout_core::domain::DoctorId,
    ) -> Result<payout_core::domain::DoctorHold> {
        self.inner.release_doctor_hold(doctor).await
    }
    /// None: a pass uses no bulk ability, and every call is counted above.
    fn bulk(&self) -> Option<Arc<dyn BulkPayoutStore>> {
        None
    }
    async fn totals(&self, filter: &TotalsFilter) -> Result<Vec<StatusTally>> {
        self.inner.totals(filter).await
    }
    async fn paid_by_month(&self, currency: Option<Currency>, from: NaiveDate) -> Result<Vec<MonthTotal>> {
        self.inner.paid_by_month(currency, from).await
    }
}

/// A pass costs the store per claim, not per lookup: each claim carries the latest attempts, and
/// the follow-ups of the checks still pending are written `reconcile_claim` at a time. 120
/// pending payouts, claims of 50: three claims and an empty one, three writes of follow-ups, and
/// no read of attempts for a lookup; the one settled payout is moved by its own audited change.
#[tokio::test]
async fn a_pass_reads_and_writes_the_store_per_claim_not_per_lookup() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Accepted);
    let w = processing(120, rail, ServicePolicy::default()).await;
    w.rail.answer(&w.ids[7], ProviderStatus::Paid);
    let store = Arc::new(Counting::new(w.store.clone()));
    let service = PayoutService::builder()
        .store(store.clone())
        .directory(w.directory.clone())
        .provider(w.rail.clone())
        .clock(w.clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .policy(w.policy.clone())
        .performance(w.performance.clone())
        .build()
        .unwrap();
    let report = service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.examined, 120);
    assert_eq!(report.pending.len(), 119);
    assert_eq!(report.settled, [(w.ids[7].clone(), PayoutStatus::Paid)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(w.performance.reconcile_claim, 50);
    assert_eq!(
        store.calls("claim_checks"),
        4,
        "claims of 50, 50 and 20, then an empty one"
    );
    assert_eq!(
        store.calls("finish_checks"),
        3,
        "119 follow-ups: 50, 50, then the last 19"
    );
    assert_eq!(
        store.calls("attempts"),
        1,
        "the claims carried the latest attempts: only recording the settled payout's answer reads them"
    );
    assert_eq!(store.calls("apply"), 1, "the settled payout's audited change");
    for id in &w.ids {
        let state = w.store.check_state(id).await.unwrap();
        if *id == w.ids[7] {
            assert_eq!(
                (state.checks, state.next_check_at),
                (0, Some(w.clock.now() + w.policy.reconcile.settlement_watch.every)),
                "PAID: its change wrote the settlement watch's follow-up"
            );
        } else {
            assert_eq!(
                (state.checks, state.next_check_at),
                (1, Some(w.clock.now() + Duration::minutes(5))),
                "{id}: rescheduled once, after the back-off"
            );
        }
    }
    let trail = w.store.audit_trail(&w.ids[7]).await.unwrap();
    assert_eq!(
        trail.last().and_then(|e| e.to).map(|s| s.to_string()),
        Some("PAID".to_string()),
        "the settling change is audited"
    );
}

/// Issue 19: the database goes away in the middle of a pass, right after its claim (a restart): the
/// lookups are made, but neither the changes they call for nor the checks' follow-ups can be written,
/// and the next claim fails. The pass fails; the next one, once the database is back, writes the owed
/// follow-ups first, so the checks are due again after the back-off (a minute here) instead of when
/// their leases run out (ten minutes), and then settle.
#[tokio::test]
async fn follow_ups_a_pass_could_not_write_are_written_by_the_next_not_when_the_lease_ends() {
    let rail = Rail::new(Provider::StripeConnect, ProviderStatus::Paid);
    let mut policy = ServicePolicy::default();
    policy.reconcile.recheck_after = Duration::minutes(1);
    let w = processing(3, rail, policy).await;
    assert_eq!(w.policy.reconcile.lease, Duration::minutes(10));
    let store = Arc::new(Counting::new(w.store.clone()));
    let service = PayoutService::builder()
        .store(store.clone())
        .directory(w.directory.clone())
        .provider(w.rail.clone())
        .clock(w.clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .policy(w.policy.clone())
        .performance(w.performance.clone())
        .build()
        .unwrap();
    store.away_after_claim.store(true, Ordering::SeqCst);
    let failed = service.reconcile(Duration::zero()).await;
    assert!(failed.is_err(), "the second claim failed: {failed:?}");
    assert_eq!(
        store.calls("apply"),
        3,
        "each lookup said PAID; the change could not be written"
    );
    for id in &w.ids {
        assert_eq!(w.status(id).await, PayoutStatus::Processing);
    }
    // Still away: the owed follow-ups stay owed.
    assert!(service.reconcile(Duration::zero()).await.is_err());

    store.away.store(false, Ordering::SeqCst);
    let report = service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.examined, 0, "not due before the back-off: {report:?}");
    for id in &w.ids {
        let state = w.store.check_state(id).await.unwrap();
        assert_eq!(
            (state.checks, state.next_check_at),
            (1, Some(w.clock.now() + Duration::minutes(1))),
            "{id}: the owed follow-up, written under the pass's lease"
        );
    }
    w.clock.advance(Duration::minutes(1));
    let report = service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.settled.len(), 3, "{report:?}");
    for id in &w.ids {
        assert_eq!(w.status(id).await, PayoutStatus::Paid);
        assert_eq!(audited(&w, id, "PROVIDER_PAID").await.len(), 1, "{id}");
    }
}
