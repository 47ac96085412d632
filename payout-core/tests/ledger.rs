//! The consultation ledger through the service: overlapping and repeated runs pay each
//! consultation once and report what is already paid; cancelling releases or voids the
//! consultations; a chunk that loses the ledger to a concurrent calculation is planned again.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use futures::stream::BoxStream;
use payout_core::calculation::CalculationPolicy;
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{
    Actor, AuditEntry, Consultation, ItemKind, Payout, PayoutAttempt, PayoutId, PayoutItem, Period, Provider,
};
use payout_core::error::Result;
use payout_core::memory::MemoryStore;
use payout_core::money::Currency;
use payout_core::provider::EventReference;
use payout_core::service::{CancelConsultations, PayoutService};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::{
    AttentionPage, BulkPayoutStore, CarryOver, CheckClaim, CheckDone, CheckState, ClaimedCheck, ClawbackDue,
    HeldConsultation, Holder, MonthTotal, NewPayout, Page, PayoutChange, PayoutFilter, PayoutPage, PayoutStore,
    PeriodBatch, PeriodBatchOutcome, StatusTally, TotalsFilter,
};

mod common;
use common::{consultation, month, recipient};

fn consultations() -> Vec<Consultation> {
    vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("a2", "dr-a", 2025, 1, 20),
        consultation("a3", "dr-a", 2025, 1, 31),
        consultation("b1", "dr-b", 2025, 1, 25),
        consultation("b2", "dr-b", 2025, 2, 5),
    ]
}

fn service(store: Arc<dyn PayoutStore>) -> PayoutService {
    PayoutService::builder()
        .store(store)
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(Arc::new(StaticDirectory::new(["dr-a", "dr-b"].map(recipient))))
        .clock(Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2025, 2, 10, 8, 0, 0).unwrap(),
        )))
        .ids(Arc::new(SequentialIds::default()))
        .build()
        .unwrap()
}

/// January 15 to February 14: overlaps January.
fn overlapping() -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(2025, 1, 15).unwrap(),
        NaiveDate::from_ymd_opt(2025, 2, 14).unwrap(),
    )
    .unwrap()
}

fn admin() -> Actor {
    Actor::admin("admin-1")
}

/// The default policy without a look-back: these tests are about overlapping periods, so each run
/// reads its own period alone (`tests/late_and_clawbacks.rs` covers the look-back).
fn period_only() -> CalculationPolicy {
    CalculationPolicy {
        lookback_days: 0,
        ..Default::default()
    }
}

/// The consultations of `id`'s items.
async fn consultations_of(store: &dyn PayoutStore, id: &PayoutId) -> Vec<String> {
    let mut refs: Vec<String> = store
        .items(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == ItemKind::Consultation)
        .map(|i| i.reference)
        .collect();
    refs.sort();
    refs
}

/// The payout of `doctor` among `ids`.
async fn payout_of(store: &dyn PayoutStore, ids: &[PayoutId], doctor: &str) -> Payout {
    for id in ids {
        let p = store.get(id).await.unwrap();
        if p.doctor_id.as_str() == doctor {
            return p;
        }
    }
    panic!("no payout of {doctor} among {ids:?}");
}

#[tokio::test]
async fn an_overlapping_run_pays_only_what_no_live_payout_holds_and_reports_the_rest() {
    let store = Arc::new(MemoryStore::new());
    let s = service(store.clone());
    let policy = period_only();
    let jan = s
        .calculate_period(&admin(), Some(month(2025, 1)), &policy)
        .await
        .unwrap();
    assert_eq!(jan.created.len(), 2);
    let jan_a = payout_of(&*store, &jan.created, "dr-a").await;
    let jan_b = payout_of(&*store, &jan.created, "dr-b").await;

    let over = s
        .calculate_period(&admin(), Some(overlapping()), &policy)
        .await
        .unwrap();
    assert_eq!(over.consultations, 4, "a2, a3, b1 and b2 are in the overlapping period");
    assert_eq!(over.created.len(), 1, "{over:?}");
    let feb_b = store.get(&over.created[0]).await.unwrap();
    assert_eq!(feb_b.doctor_id.as_str(), "dr-b");
    assert_eq!(
        consultations_of(&*store, &feb_b.id).await,
        ["b2"],
        "only the unpaid one"
    );
    assert_eq!(feb_b.amount_due, policy.rate);
    let mut already: Vec<(String, Holder, u64)> = over
        .already_paid
        .iter()
        .map(|a| (a.doctor_id.to_string(), a.held_by.clone(), a.consultations))
        .collect();
    already.sort();
    assert_eq!(
        already,
        vec![
            ("dr-a".into(), Holder::Payout(jan_a.id.clone()), 2),
            ("dr-b".into(), Holder::Payout(jan_b.id.clone()), 1)
        ]
    );
    assert!(over.skipped.is_empty() && over.nothing_due.is_empty(), "{over:?}");

    // Repeating it creates nothing more.
    let again = s
        .calculate_period(&admin(), Some(overlapping()), &policy)
        .await
        .unwrap();
    assert!(again.created.is_empty(), "{again:?}");
    assert_eq!(again.already_paid.iter().map(|a| a.consultations).sum::<u64>(), 4);
}

#[tokio::test]
async fn cancelling_releases_the_consultations_by_default_and_voids_them_on_request() {
    let store = Arc::new(MemoryStore::new());
    let s = service(store.clone());
    let policy = period_only();
    let jan = s
        .calculate_period(&admin(), Some(month(2025, 1)), &policy)
        .await
        .unwrap();
    let jan_a = payout_of(&*store, &jan.created, "dr-a").await;
    let jan_b = payout_of(&*store, &jan.created, "dr-b").await;

    s.cancel(&admin(), &jan_a.id, Some("wrong rate")).await.unwrap();
    s.cancel_with(&admin(), &jan_b.id, Some("disputed"), CancelConsultations::Void)
        .await
        .unwrap();
    let details = |trail: Vec<AuditEntry>| trail.last().map(|e| (e.action.clone(), e.detail.clone())).unwrap();
    assert_eq!(
        details(store.audit_trail(&jan_a.id).await.unwrap()),
        ("CANCEL".into(), "wrong rate; consultations released".into())
    );
    assert_eq!(
        details(store.audit_trail(&jan_b.id).await.unwrap()),
        ("CANCEL".into(), "disputed; consultations voided".into())
    );
    let held = store
        .held_consultations(&["a1".into(), "a2".into(), "b1".into()])
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![HeldConsultation {
            appointment_id: "b1".into(),
            held_by: Holder::Payout(jan_b.id.clone())
        }]
    );

    // A later run over the overlapping period pays dr-a's released a2 and a3, never dr-b's voided b1.
    let over = s
        .calculate_period(&admin(), Some(overlapping()), &policy)
        .await
        .unwrap();
    let new_a = payout_of(&*store, &over.created, "dr-a").await;
    assert_eq!(consultations_of(&*store, &new_a.id).await, ["a2", "a3"]);
    let new_b = payout_of(&*store, &over.created, "dr-b").await;
    assert_eq!(consultations_of(&*store, &new_b.id).await, ["b2"]);
    assert_eq!(store.get(&jan_b.id).await.unwrap().status, PayoutStatus::Cancelled);

    // Re-running January itself pays the released a1 (and a2, a3 stay with the new payout).
    let rerun = s
        .calculate_period(&admin(), Some(month(2025, 1)), &policy)
        .await
        .unwrap();
    let again_a = payout_of(&*store, &rerun.created, "dr-a").await;
    assert_eq!(consultations_of(&*store, &again_a.id).await, ["a1"]);
}

/// A store whose first `create_period` is preceded by another calculation's write: the
/// consultation `b1` is taken between the service's ledger lookup and its write, as when two
/// calculations race.
struct Racing {
    inner: MemoryStore,
    rival: Mutex<Option<NewPayout>>,
    writes: Mutex<usize>,
}

#[async_trait]
impl PayoutStore for Racing {
    async fn create_period(&self, batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
        *self.writes.lock().unwrap() += 1;
        let rival = self.rival.lock().unwrap().take();
        if let Some(rival) = rival {
            self.inner.create_payout(rival).await?;
        }
        self.inner.create_period(batch).await
    }
    async fn create_payout(&self, new: NewPayout) -> Result<Payout> {
        self.inner.create_payout(new).await
    }
    async fn get(&self, id: &PayoutId) -> Result<Payout> {
        self.inner.get(id).await
    }
    async fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
        self.inner.list(filter, page).await
    }
    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>> {
        self.inner.stream(filter)
    }
    async fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>> {
        self.inner.items(id).await
    }
    async fn apply(&self, change: PayoutChange) -> Result<Payout> {
        self.inner.apply(change).await
    }
    async fn held_consultations(&self, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>> {
        self.inner.held_consultations(appointment_ids).await
    }
    async fn clawbacks_due(&self, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>> {
        self.inner.clawbacks_due(appointment_ids).await
    }
    async fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
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
        self.inner.claim_checks(claim).await
    }
    async fn finish_checks(&self, done: &[CheckDone]) -> Result<Vec<bool>> {
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

#[tokio::test]
async fn a_doctor_whose_consultation_is_taken_meanwhile_is_planned_again_without_it() {
    let rival_period = month(2024, 12);
    let at = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
    let rate = CalculationPolicy::default().rate;
    let rival = Payout::pending(
        "po_rival".into(),
        "dr-b".into(),
        rival_period,
        rate,
        payout_core::domain::PayoutOrigin::Manual,
        "admin:other".into(),
        at,
    );
    let rival = NewPayout {
        audit: AuditEntry {
            payout_id: rival.id.clone(),
            actor: "admin:other".into(),
            at,
            action: "CREATE".into(),
            from: None,
            to: Some(PayoutStatus::Pending),
            detail: "the other calculation".into(),
        },
        items: vec![PayoutItem {
            kind: ItemKind::Consultation,
            reference: "b1".into(),
            amount: rate,
            occurred_at: at,
            description: "b1".into(),
        }],
        consumes_carry_overs: Vec::new(),
        payout: rival,
    };
    let store = Arc::new(Racing {
        inner: MemoryStore::new(),
        rival: Mutex::new(Some(rival)),
        writes: Mutex::new(0),
    });
    let s = service(store.clone());
    let report = s
        .calculate_period(&admin(), Some(overlapping()), &period_only())
        .await
        .unwrap();
    assert_eq!(
        *store.writes.lock().unwrap(),
        2,
        "the chunk was written, then dr-b planned again"
    );
    assert_eq!(report.created.len(), 2, "{report:?}");
    let a = payout_of(&*store, &report.created, "dr-a").await;
    assert_eq!(consultations_of(&*store, &a.id).await, ["a2", "a3"]);
    let b = payout_of(&*store, &report.created, "dr-b").await;
    assert_eq!(consultations_of(&*store, &b.id).await, ["b2"], "b1 went to the rival");
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.already_paid.len(), 1, "{report:?}");
    assert_eq!(report.already_paid[0].held_by, Holder::Payout("po_rival".into()));
    assert_eq!(report.total_created, rate.checked_mul(3).unwrap());
}
