//! PayoutService end to end over the in-memory store, with mocked and simulated providers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use http::HeaderMap;
use payout_core::clock::{Clock, ManualClock, SequentialIds};
use payout_core::domain::{
    Actor, AttemptOutcome, Consultation, ItemKind, Payout, PayoutAttempt, PayoutId, Period, Provider, Recipient,
};
use payout_core::error::{Error, ProviderError, ProviderErrorKind, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::premium::{Plan, StaticSubscriptions, Subscription, SubscriptionStatus};
use payout_core::provider::{
    AttemptLookup, Capabilities, EventReference, MockPayoutProvider, PayoutInstruction, PayoutProvider, ProviderEvent,
    ProviderEventKind, ProviderStatus, SendReceipt,
};
use payout_core::service::{
    CalculationPolicy, CalculationReport, Deduction, EventOutcome, ManualPayout, PayoutService, ServicePolicy,
};
use payout_core::simulated::{SIMULATED_NOTE, SIMULATION_TOKEN_HEADER, SimulatedProvider, SimulatedSettlement};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::{PayoutEvent, PayoutStatus};
use payout_core::store::{Page, PayoutFilter, PayoutStore};
use rust_decimal::Decimal;

mod common;
use common::{consultation, month, recipient};

const TOKEN: &str = "test-simulation-token";

fn jan() -> Period {
    month(2025, 1)
}

fn feb() -> Period {
    month(2025, 2)
}

fn kes(s: &str) -> Money {
    Money::parse(s, Currency::KES).unwrap()
}

/// A deduction of `percent` per cent.
fn deduction(name: &str, percent: i64) -> Deduction {
    Deduction {
        name: name.into(),
        percent: Decimal::new(percent, 0),
    }
}

struct Harness {
    service: PayoutService,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    sim: Arc<SimulatedProvider>,
    admin: Actor,
}

fn default_consultations() -> Vec<Consultation> {
    vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("b1", "dr-b", 2025, 1, 4),
        consultation("a2", "dr-a", 2025, 1, 20),
        consultation("a3", "dr-a", 2025, 1, 31),
        consultation("c1", "dr-c", 2025, 2, 1), // February: not in January
        consultation("b0", "dr-b", 2024, 12, 31),
    ]
}

fn harness_with(
    consultations: Vec<Consultation>,
    providers: Vec<Arc<dyn PayoutProvider>>,
    policy: ServicePolicy,
) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    let sim = Arc::new(
        SimulatedProvider::new(Provider::MpesaB2c)
            .with_settlement(SimulatedSettlement::Deferred)
            .with_webhook_token(TOKEN),
    );
    let mut recipients: Vec<Recipient> = ["dr-a", "dr-b", "dr-c"].into_iter().map(recipient).collect();
    recipients.push(Recipient {
        doctor_id: "dr-nobank".into(),
        name: "No Bank".into(),
        ..Default::default()
    });
    let subs = StaticSubscriptions::new([(
        "dr-a".to_string(),
        Subscription {
            plan: Plan::Premium,
            status: SubscriptionStatus::Active,
            current_period_end: None,
        },
    )]);
    let mut builder = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(recipients)))
        .subscriptions(Arc::new(subs))
        .provider(sim.clone())
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .policy(policy);
    for p in providers {
        builder = builder.provider(p);
    }
    Harness {
        service: builder.build().unwrap(),
        store,
        clock,
        sim,
        admin: Actor::admin("admin-1"),
    }
}

fn harness() -> Harness {
    harness_with(default_consultations(), vec![], ServicePolicy::default())
}

impl Harness {
    /// Runs the calculation of `period` (the previous month when `None`) with `policy`.
    async fn calculation(&self, period: Option<Period>, policy: &CalculationPolicy) -> CalculationReport {
        self.service
            .calculate_period(&self.admin, period, policy)
            .await
            .unwrap()
    }

    /// Calculates January with the default policy; the payouts it created, by doctor.
    async fn calculate(&self) -> Vec<Payout> {
        let report = self.calculation(Some(jan()), &CalculationPolicy::default()).await;
        let mut out = Vec::new();
        for id in &report.created {
            out.push(self.store.get(id).await.unwrap());
        }
        out.sort_by(|a, b| a.doctor_id.cmp(&b.doctor_id));
        out
    }

    async fn approved(&self, doctor: &str) -> Payout {
        let p = self
            .calculate()
            .await
            .into_iter()
            .find(|p| p.doctor_id.as_str() == doctor)
            .unwrap();
        self.service.approve(&self.admin, &p.id).await.unwrap()
    }

    /// `doctor`'s January payout, approved and sent to the simulated M-Pesa: PROCESSING, awaiting its
    /// webhook.
    async fn in_flight(&self, doctor: &str) -> Payout {
        let p = self.approved(doctor).await;
        self.trigger(&p.id, Provider::MpesaB2c).await
    }

    /// Triggers payout `id` with `provider`, which must work.
    async fn trigger(&self, id: &PayoutId, provider: Provider) -> Payout {
        self.service.trigger(&self.admin, id, provider).await.unwrap()
    }

    /// Triggers payout `id` with `provider`, which must be refused; the error.
    async fn refused_trigger(&self, id: &PayoutId, provider: Provider) -> Error {
        self.service.trigger(&self.admin, id, provider).await.unwrap_err()
    }

    async fn webhook(&self, event_id: &str, reference: &str, status: &str) -> Result<Vec<EventOutcome>, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(SIMULATION_TOKEN_HEADER, TOKEN.parse().unwrap());
        let body = serde_json::json!({"eventId": event_id, "reference": reference, "status": status}).to_string();
        self.service
            .handle_webhook(Provider::MpesaB2c, &headers, body.as_bytes())
            .await
            .map(|r| r.events)
    }

    /// How many payouts the store holds.
    async fn total(&self) -> u64 {
        let all = self.store.list(&PayoutFilter::default(), &Page::default()).await;
        all.unwrap().total
    }

    async fn audit_actions(&self, id: &PayoutId) -> Vec<String> {
        self.store
            .audit_trail(id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect()
    }
}

// ---------------------------------------------------------------- calculation

/// The default policy without a look-back, for the tests of a period's own boundaries: the
/// fixtures' December consultation would otherwise be paid late with January
/// (`tests/late_and_clawbacks.rs` covers the look-back).
fn period_only() -> CalculationPolicy {
    CalculationPolicy {
        lookback_days: 0,
        ..Default::default()
    }
}

#[tokio::test]
async fn calculation_groups_by_doctor_at_the_rate_within_the_period() {
    let h = harness();
    let report = h.calculation(Some(jan()), &period_only()).await;
    assert_eq!(report.consultations, 4);
    assert_eq!(report.doctors, 2);
    assert_eq!(report.created.len(), 2);
    assert_eq!(report.total_created, kes("2000"));
    let payouts = h.calculate().await; // second run creates nothing
    assert!(payouts.is_empty());
    let all = h.store.list(&PayoutFilter::default(), &Page::default()).await.unwrap();
    let by_doctor: HashMap<String, Payout> = all.payouts.into_iter().map(|p| (p.doctor_id.to_string(), p)).collect();
    let a = &by_doctor["dr-a"];
    assert_eq!(a.amount_due, kes("1500"));
    assert_eq!(a.status, PayoutStatus::Pending);
    assert_eq!((a.period_start, a.period_end), (jan().start, jan().end));
    let items = h.store.items(&a.id).await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.reference.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
    assert!(
        items
            .iter()
            .all(|i| i.kind == ItemKind::Consultation && i.amount == kes("500"))
    );
    assert_eq!(by_doctor["dr-b"].amount_due, kes("500"));
    assert!(!by_doctor.contains_key("dr-c"));
    assert_eq!(h.audit_actions(&a.id).await, ["CREATE"]);
}

#[tokio::test]
async fn rerunning_a_period_creates_nothing_and_reports_the_skips() {
    let h = harness();
    let first = h.calculation(Some(jan()), &CalculationPolicy::default()).await;
    let second = h.calculation(Some(jan()), &CalculationPolicy::default()).await;
    assert_eq!(first.created.len(), 2);
    assert!(second.created.is_empty());
    // The consultation ledger answers first: every consultation is on a live payout already.
    let mut already: Vec<(String, u64)> = second
        .already_paid
        .iter()
        .map(|a| (a.doctor_id.to_string(), a.consultations))
        .collect();
    already.sort();
    assert_eq!(already, vec![("dr-a".to_string(), 3), ("dr-b".to_string(), 1)]);
    assert!(second.skipped.is_empty(), "{:?}", second.skipped);
    assert!(second.nothing_due.is_empty(), "{:?}", second.nothing_due);
    assert_eq!(h.total().await, 2);
}

#[tokio::test]
async fn default_period_is_the_previous_calendar_month() {
    let h = harness(); // clock: 2025-02-03
    let report = h.calculation(None, &period_only()).await;
    assert_eq!(report.period, jan());
    h.clock.set(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
    let report = h.calculation(None, &period_only()).await;
    assert_eq!(report.period.start, NaiveDate::from_ymd_opt(2024, 12, 1).unwrap());
    assert_eq!(report.created.len(), 1); // dr-b's b0 on 2024-12-31
}

#[tokio::test]
async fn per_doctor_rate_overrides_apply() {
    let h = harness();
    let mut policy = period_only();
    policy.overrides.insert("dr-b".into(), kes("750.50"));
    let report = h.calculation(Some(jan()), &policy).await;
    assert_eq!(report.total_created, kes("2250.50"));
}

#[tokio::test]
async fn deductions_are_explicit_negative_items_and_amount_is_the_sum_of_items() {
    let h = harness();
    let policy = CalculationPolicy {
        deductions: vec![deduction("platform_fee", 10), deduction("withholding_tax", 5)],
        ..Default::default()
    };
    let report = h.calculation(Some(jan()), &policy).await;
    for id in &report.created {
        let p = h.store.get(id).await.unwrap();
        let items = h.store.items(id).await.unwrap();
        let sum = Money::sum(Currency::KES, items.iter().map(|i| &i.amount)).unwrap();
        assert_eq!(sum, p.amount_due, "amount = sum of items");
        let deductions: Vec<_> = items.iter().filter(|i| i.kind == ItemKind::Deduction).collect();
        assert_eq!(deductions.len(), 2);
        assert!(deductions.iter().all(|d| d.amount.is_negative()));
    }
    let filter = PayoutFilter {
        doctor_id: Some("dr-a".into()),
        ..Default::default()
    };
    let a = h.store.list(&filter, &Page::default()).await.unwrap().payouts.remove(0);
    assert_eq!(a.amount_due, kes("1275")); // 1500 - 150 - 75
}

/// dr-b earns 500 in January, below the minimum payout (1000) of the policy returned, and 1000 in
/// February; `others` are more consultations.
fn below_the_minimum(others: Vec<Consultation>) -> (Harness, CalculationPolicy) {
    let mut consultations = vec![
        consultation("b1", "dr-b", 2025, 1, 5),
        consultation("b2", "dr-b", 2025, 2, 5),
        consultation("b3", "dr-b", 2025, 2, 6),
    ];
    consultations.extend(others);
    let policy = CalculationPolicy {
        minimum_payout: Some(kes("1000")),
        ..Default::default()
    };
    (harness_with(consultations, vec![], ServicePolicy::default()), policy)
}

#[tokio::test]
async fn below_the_minimum_carries_over_and_is_paid_with_a_later_period() {
    let (h, policy) = below_the_minimum(vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("a2", "dr-a", 2025, 1, 4),
    ]);
    let jan_report = h.calculation(Some(jan()), &policy).await;
    assert_eq!(jan_report.created.len(), 1); // dr-a: 1000
    assert_eq!(
        jan_report.carried_over,
        vec![payout_core::domain::DoctorId::from("dr-b")]
    );
    // Re-running January records the carry-over only once: the carry-over holds b1 in the ledger.
    let again = h.calculation(Some(jan()), &policy).await;
    assert!(again.carried_over.is_empty() && again.created.is_empty());
    assert!(
        again
            .already_paid
            .iter()
            .any(|a| a.doctor_id.as_str() == "dr-b" && a.held_by == payout_core::store::Holder::CarryOver(jan())),
        "{again:?}"
    );
    assert_eq!(h.store.open_carry_overs(feb().start).await.unwrap().len(), 1);

    let feb_report = h.calculation(Some(feb()), &policy).await;
    assert_eq!(feb_report.created.len(), 1);
    let p = h.store.get(&feb_report.created[0]).await.unwrap();
    assert_eq!(p.amount_due, kes("1500")); // 2 x 500 in February + 500 carried from January
    let items = h.store.items(&p.id).await.unwrap();
    let carried: Vec<_> = items.iter().filter(|i| i.kind == ItemKind::CarryOver).collect();
    assert_eq!(carried.len(), 1);
    assert_eq!(carried[0].amount, kes("500"));
    assert!(
        h.store
            .open_carry_overs(NaiveDate::from_ymd_opt(2025, 3, 1).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn cancelling_the_payout_that_paid_a_carry_over_gives_it_back_to_the_next_calculation() {
    let (h, policy) = below_the_minimum(Vec::new());
    let march = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
    let carried_items = |items: &[payout_core::domain::PayoutItem]| -> Vec<Money> {
        items
            .iter()
            .filter(|i| i.kind == ItemKind::CarryOver && i.reference == jan().to_string())
            .map(|i| i.amount)
            .collect()
    };

    // January: 500 is below the minimum and carries over; February pays it with February's 1000.
    let jan_report = h.calculation(Some(jan()), &policy).await;
    assert!(jan_report.created.is_empty());
    assert_eq!(
        jan_report.carried_over,
        vec![payout_core::domain::DoctorId::from("dr-b")]
    );
    let feb_report = h.calculation(Some(feb()), &policy).await;
    assert_eq!(feb_report.created.len(), 1);
    let first = h.store.get(&feb_report.created[0]).await.unwrap();
    assert_eq!(first.amount_due, kes("1500"));
    assert_eq!(
        carried_items(&h.store.items(&first.id).await.unwrap()),
        vec![kes("500")]
    );
    assert!(h.store.open_carry_overs(march).await.unwrap().is_empty());

    // Cancelling the February payout gives January's 500 back: it is open again...
    h.service
        .cancel(&h.admin, &first.id, Some("wrong account"))
        .await
        .unwrap();
    let open = h.store.open_carry_overs(march).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].doctor_id.as_str(), "dr-b");
    assert_eq!(open[0].period, jan());
    assert_eq!(open[0].amount, kes("500"));
    assert_eq!(open[0].consumed_by, None);

    // ... and recalculating February pays it again, in a new payout: nothing is lost.
    let redo = h.calculation(Some(feb()), &policy).await;
    assert_eq!(redo.created.len(), 1, "skipped: {:?}", redo.skipped);
    assert_ne!(redo.created[0], first.id);
    let second = h.store.get(&redo.created[0]).await.unwrap();
    assert_eq!(second.status, PayoutStatus::Pending);
    assert_eq!(second.amount_due, kes("1500")); // 2 x 500 in February + 500 carried from January
    assert_eq!(
        carried_items(&h.store.items(&second.id).await.unwrap()),
        vec![kes("500")]
    );
    assert!(h.store.open_carry_overs(march).await.unwrap().is_empty());
    assert_eq!(h.store.get(&first.id).await.unwrap().status, PayoutStatus::Cancelled);

    // Once more: the live payout holds it and the consultations, so a re-run creates nothing and
    // pays nothing twice.
    let again = h.calculation(Some(feb()), &policy).await;
    assert!(again.created.is_empty(), "{again:?}");
    assert!(
        again
            .already_paid
            .iter()
            .any(|a| a.doctor_id.as_str() == "dr-b"
                && a.held_by == payout_core::store::Holder::Payout(second.id.clone())),
        "{again:?}"
    );
}

#[tokio::test]
async fn invalid_policies_and_sources_change_nothing() {
    let h = harness();
    let bad = [
        CalculationPolicy::with_rate(kes("0")),
        CalculationPolicy::with_rate(kes("-5")),
        CalculationPolicy {
            deductions: vec![deduction("fee", 101)],
            ..Default::default()
        },
        CalculationPolicy {
            minimum_payout: Some(Money::parse("5", Currency::USD).unwrap()),
            ..Default::default()
        },
    ];
    for policy in bad {
        let err = h
            .service
            .calculate_period(&h.admin, Some(jan()), &policy)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    }
    let doctor = Actor::doctor("dr-a");
    assert!(matches!(
        h.service
            .calculate_period(&doctor, Some(jan()), &CalculationPolicy::default())
            .await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(h.total().await, 0);
}

#[tokio::test]
async fn a_source_that_does_not_group_by_doctor_is_refused() {
    struct Ungrouped;
    #[async_trait]
    impl payout_core::source::ConsultationSource for Ungrouped {
        fn completed(&self, _: Period) -> futures::stream::BoxStream<'static, payout_core::Result<Consultation>> {
            Box::pin(futures::stream::iter(vec![
                Ok(consultation("a1", "dr-a", 2025, 1, 3)),
                Ok(consultation("b1", "dr-b", 2025, 1, 3)),
                Ok(consultation("a2", "dr-a", 2025, 1, 4)),
            ]))
        }
    }
    let h = harness();
    let service = PayoutService::builder()
        .store(h.store.clone())
        .consultations(Arc::new(Ungrouped))
        .directory(Arc::new(StaticDirectory::default()))
        .build()
        .unwrap();
    let err = service
        .calculate_period(&h.admin, Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Source(ref m) if m.contains("not grouped")),
        "{err}"
    );
}

// ---------------------------------------------------------------- lifecycle

#[tokio::test]
async fn approve_before_trigger() {
    let h = harness();
    let p = h.calculate().await.remove(0);
    let err = h.refused_trigger(&p.id, Provider::MpesaB2c).await;
    assert!(matches!(
        err,
        Error::InvalidTransition {
            from: PayoutStatus::Pending,
            event: PayoutEvent::Trigger
        }
    ));
    assert!(h.sim.movements().is_empty());
    assert_eq!(
        h.store.get(&p.id).await.unwrap().version,
        p.version,
        "a refused action changes nothing"
    );
    h.service.approve(&h.admin, &p.id).await.unwrap();
    let after = h.trigger(&p.id, Provider::MpesaB2c).await;
    assert_eq!(after.status, PayoutStatus::Processing);
    assert_eq!(after.provider, Some(Provider::MpesaB2c));
    assert!(after.provider_reference.as_deref().unwrap().starts_with("sim_"));
    assert!(after.notes.as_deref().unwrap().contains(SIMULATED_NOTE));
    assert_eq!(
        h.audit_actions(&p.id).await,
        ["CREATE", "APPROVE", "TRIGGER", "ATTEMPT_ACCEPTED"]
    );
    let trail = h.store.audit_trail(&p.id).await.unwrap();
    assert!(
        trail[2].detail.contains(SIMULATED_NOTE),
        "the audit trail says it was simulated"
    );
}

#[tokio::test]
async fn cancel_only_before_money_moves_and_doctors_cannot_act() {
    let h = harness();
    let ps = h.calculate().await;
    let doctor = Actor::doctor("dr-a");
    assert!(matches!(
        h.service.approve(&doctor, &ps[0].id).await,
        Err(Error::Forbidden(_))
    ));
    let c = h.service.cancel(&h.admin, &ps[0].id, Some("duplicate")).await.unwrap();
    assert_eq!(c.status, PayoutStatus::Cancelled);
    assert!(matches!(
        h.service.approve(&h.admin, &ps[0].id).await,
        Err(Error::InvalidTransition { .. })
    ));
    h.service.approve(&h.admin, &ps[1].id).await.unwrap();
    h.trigger(&ps[1].id, Provider::MpesaB2c).await;
    assert!(matches!(
        h.service.cancel(&h.admin, &ps[1].id, None).await,
        Err(Error::InvalidTransition {
            from: PayoutStatus::Processing,
            ..
        })
    ));
    // A cancelled calculated payout no longer blocks recalculating the period for that doctor.
    let report = h.calculation(Some(jan()), &CalculationPolicy::default()).await;
    assert_eq!(report.created.len(), 1);
}

#[tokio::test]
async fn trigger_without_recipient_details_or_adapter_changes_nothing() {
    let h = harness_with(
        vec![consultation("n1", "dr-nobank", 2025, 1, 3)],
        vec![],
        ServicePolicy::default(),
    );
    let p = h.approved("dr-nobank").await;
    let err = h.refused_trigger(&p.id, Provider::MpesaB2c).await;
    assert!(
        matches!(
            err,
            Error::MissingRecipient {
                provider: Provider::MpesaB2c,
                ..
            }
        ),
        "{err}"
    );
    let err = h.refused_trigger(&p.id, Provider::StripeConnect).await;
    assert!(
        matches!(err, Error::ProviderNotConfigured(Provider::StripeConnect)),
        "{err}"
    );
    let after = h.store.get(&p.id).await.unwrap();
    assert_eq!((after.status, after.version), (PayoutStatus::Approved, p.version));
    assert!(h.store.attempts(&p.id).await.unwrap().is_empty());
}

fn receipt(reference: &str, status: ProviderStatus) -> SendReceipt {
    SendReceipt {
        reference: Some(reference.into()),
        status,
        note: String::new(),
    }
}

fn stripe_mock() -> MockPayoutProvider {
    let mut m = MockPayoutProvider::new();
    m.expect_provider().return_const(Provider::StripeConnect);
    m.expect_capabilities().return_const(Capabilities::default());
    m
}

#[tokio::test]
async fn trigger_passes_the_persisted_idempotency_key_and_sends_once() {
    let mut mock = stripe_mock();
    mock.expect_send()
        .withf(|i: &PayoutInstruction| {
            i.idempotency_key == "po_000001-1"
                && i.attempt_no == 1
                && i.amount == Money::parse("1500", Currency::KES).unwrap()
                && matches!(&i.destination, payout_core::domain::PayoutDestination::StripeAccount { account_id } if account_id == "acct_dr-a")
        })
        .times(1)
        .returning(|_| {
            Ok(receipt("tr_123", ProviderStatus::Accepted))
        });
    // Reconciliation asks, it does not send again.
    mock.expect_lookup()
        .withf(|l: &AttemptLookup| {
            l.idempotency_key == "po_000001-1" && l.provider_reference.as_deref() == Some("tr_123")
        })
        .times(1)
        .returning(|_| Ok(ProviderStatus::Paid));
    let h = harness_with(default_consultations(), vec![Arc::new(mock)], ServicePolicy::default());
    let p = h.approved("dr-a").await;
    assert_eq!(p.id.as_str(), "po_000001");
    let after = h.trigger(&p.id, Provider::StripeConnect).await;
    assert_eq!(after.status, PayoutStatus::Processing);
    assert_eq!(after.provider_reference.as_deref(), Some("tr_123"));
    let attempts = h.store.attempts(&p.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].idempotency_key, "po_000001-1");
    assert_eq!(attempts[0].outcome, AttemptOutcome::Accepted);
    // Triggering again while PROCESSING is refused before any call.
    assert!(matches!(
        h.service.trigger(&h.admin, &p.id, Provider::StripeConnect).await,
        Err(Error::InvalidTransition {
            from: PayoutStatus::Processing,
            ..
        })
    ));
    h.clock.advance(Duration::hours(1));
    let report = h.service.reconcile(Duration::minutes(30)).await.unwrap();
    assert_eq!(report.settled, vec![(p.id.clone(), PayoutStatus::Paid)]);
    let paid = h.store.get(&p.id).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);
    assert!(paid.processed_at.is_some());
}

#[tokio::test]
async fn the_key_is_committed_before_the_provider_is_called() {
    let store_probe: Arc<std::sync::Mutex<Option<Arc<MemoryStore>>>> = Arc::default();
    let probe = store_probe.clone();
    let mut mock = stripe_mock();
    mock.expect_send().times(1).returning(move |i| {
        let store = probe.lock().unwrap().clone().unwrap();
        let id = i.payout_id.clone();
        let key = i.idempotency_key.clone();
        // Inside the provider call, the attempt with this key is already durable.
        let attempts = futures::executor::block_on(store.attempts(&id)).unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].idempotency_key, key);
        assert_eq!(attempts[0].outcome, AttemptOutcome::Pending);
        assert_eq!(
            futures::executor::block_on(store.get(&id)).unwrap().status,
            PayoutStatus::Processing
        );
        Ok(receipt("tr_1", ProviderStatus::Accepted))
    });
    let h = harness_with(default_consultations(), vec![Arc::new(mock)], ServicePolicy::default());
    *store_probe.lock().unwrap() = Some(h.store.clone());
    let p = h.approved("dr-a").await;
    h.trigger(&p.id, Provider::StripeConnect).await;
}

#[tokio::test]
async fn an_ambiguous_error_or_timeout_leaves_the_payout_processing() {
    let mut mock = stripe_mock();
    mock.expect_send().times(1).returning(|_| {
        Err(ProviderError::new(
            Provider::StripeConnect,
            ProviderErrorKind::Ambiguous,
            "read timed out",
        ))
    });
    let h = harness_with(default_consultations(), vec![Arc::new(mock)], ServicePolicy::default());
    let p = h.approved("dr-a").await;
    let after = h.trigger(&p.id, Provider::StripeConnect).await;
    assert_eq!(after.status, PayoutStatus::Processing, "a timeout is not a failure");
    assert!(matches!(
        h.store.attempts(&p.id).await.unwrap()[0].outcome,
        AttemptOutcome::Unknown { .. }
    ));
    assert!(matches!(
        h.service.retry(&h.admin, &p.id, None).await,
        Err(Error::InvalidTransition { .. })
    ));

    // The service's own time limit: a provider that never answers.
    struct Hang;
    #[async_trait]
    impl PayoutProvider for Hang {
        fn provider(&self) -> Provider {
            Provider::BankTransfer
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn send(&self, _: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
            futures::future::pending().await
        }
        async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
            Err(WebhookError::BadSignature)
        }
        async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
            Ok(ProviderStatus::Accepted)
        }
    }
    let policy = ServicePolicy {
        send_timeout: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let h = harness_with(default_consultations(), vec![Arc::new(Hang)], policy);
    let p = h.approved("dr-b").await;
    let after = h.trigger(&p.id, Provider::BankTransfer).await;
    assert_eq!(after.status, PayoutStatus::Processing);
    assert!(after.notes.unwrap().contains("outcome unknown"));
}

#[tokio::test]
async fn a_final_rejection_fails_and_retry_starts_a_new_attempt_with_a_new_key() {
    let mut mock = stripe_mock();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    mock.expect_send().times(2).returning(move |i| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            assert_eq!(i.idempotency_key, "po_000001-1");
            Err(ProviderError::new(
                Provider::StripeConnect,
                ProviderErrorKind::Final,
                "balance_insufficient",
            )
            .with_code("balance_insufficient"))
        } else {
            assert_eq!(i.idempotency_key, "po_000001-2");
            Ok(receipt("tr_2", ProviderStatus::Paid))
        }
    });
    let h = harness_with(default_consultations(), vec![Arc::new(mock)], ServicePolicy::default());
    let p = h.approved("dr-a").await;
    let failed = h.trigger(&p.id, Provider::StripeConnect).await;
    assert_eq!(failed.status, PayoutStatus::Failed);
    assert!(failed.notes.unwrap().contains("balance_insufficient"));
    let paid = h.service.retry(&h.admin, &p.id, None).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);
    let attempts = h.store.attempts(&p.id).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.idempotency_key.as_str()).collect::<Vec<_>>(),
        ["po_000001-1", "po_000001-2"]
    );
    assert_eq!(
        h.audit_actions(&p.id).await,
        [
            "CREATE",
            "APPROVE",
            "TRIGGER",
            "PROVIDER_FAILED",
            "RETRY",
            "TRIGGER",
            "PROVIDER_PAID"
        ]
    );
}

#[tokio::test]
async fn reconcile_resends_an_attempt_the_provider_never_saw_with_the_same_key() {
    let mut mock = stripe_mock();
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let k = keys.clone();
    mock.expect_send().times(2).returning(move |i| {
        let mut k = k.lock().unwrap();
        k.push(i.idempotency_key.clone());
        if k.len() == 1 {
            Err(ProviderError::new(
                Provider::StripeConnect,
                ProviderErrorKind::Retryable,
                "503",
            ))
        } else {
            Ok(receipt("tr_9", ProviderStatus::Accepted))
        }
    });
    mock.expect_lookup()
        .times(1)
        .returning(|_| Ok(ProviderStatus::NotFound));
    let h = harness_with(default_consultations(), vec![Arc::new(mock)], ServicePolicy::default());
    let p = h.approved("dr-a").await;
    assert_eq!(
        h.trigger(&p.id, Provider::StripeConnect).await.status,
        PayoutStatus::Processing
    );
    h.clock.advance(Duration::hours(1));
    let report = h.service.reconcile(Duration::minutes(30)).await.unwrap();
    assert_eq!(report.resent, vec![p.id.clone()]);
    assert_eq!(
        *keys.lock().unwrap(),
        ["po_000001-1", "po_000001-1"],
        "same attempt, same key"
    );
    assert_eq!(h.store.attempts(&p.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn bulk_actions_report_per_payout_and_a_failure_never_aborts_the_others() {
    let h = harness();
    let ps = h.calculate().await;
    let ids = vec![
        ps[0].id.clone(),
        PayoutId::new("missing"),
        ps[1].id.clone(),
        ps[0].id.clone(),
    ];
    let results = h.service.bulk_approve(&h.admin, &ids).await;
    assert_eq!(results.len(), 4);
    assert!(results[0].result.is_ok());
    assert!(matches!(results[1].result, Err(Error::NotFound(_))));
    assert!(results[2].result.is_ok());
    assert!(
        matches!(results[3].result, Err(Error::InvalidTransition { .. })),
        "already approved"
    );
    let results = h.service.bulk_trigger(&h.admin, &ids, Provider::MpesaB2c).await;
    assert_eq!(results.iter().filter(|r| r.result.is_ok()).count(), 2);
    assert_eq!(h.sim.movements().len(), 2, "each payout sent exactly once");
    let results = h.service.bulk_cancel(&h.admin, &ids, None).await;
    assert!(
        results.iter().all(|r| r.result.is_err()),
        "processing payouts cannot be cancelled"
    );
}

#[tokio::test]
async fn a_batching_provider_gets_batches_with_per_item_results() {
    let consultations = vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("b1", "dr-b", 2025, 1, 3),
        consultation("c1", "dr-c", 2025, 1, 3),
    ];
    // PayPal batches two at a time and rejects dr-b's item; nothing goes through `send`.
    let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = sizes.clone();
    let mut batcher = MockPayoutProvider::new();
    batcher.expect_provider().return_const(Provider::PaypalPayouts);
    batcher.expect_capabilities().return_const(Capabilities {
        batch: true,
        max_batch_size: 2,
        ..Default::default()
    });
    batcher.expect_send().never();
    batcher.expect_send_batch().times(2).returning(move |instructions| {
        seen.lock().unwrap().push(instructions.len());
        let answer = |i: &PayoutInstruction| match i.doctor_id.as_str() {
            "dr-b" => Err(ProviderError::new(
                Provider::PaypalPayouts,
                ProviderErrorKind::Final,
                "RECEIVER_UNREGISTERED",
            )),
            _ => Ok(receipt(
                &format!("item-{}", i.idempotency_key),
                ProviderStatus::Accepted,
            )),
        };
        Ok(instructions.iter().map(answer).collect())
    });
    let h = harness_with(consultations, vec![Arc::new(batcher)], ServicePolicy::default());
    let ps = h.calculate().await;
    let ids: Vec<PayoutId> = ps.iter().map(|p| p.id.clone()).collect();
    h.service.bulk_approve(&h.admin, &ids).await;
    let results = h.service.bulk_trigger(&h.admin, &ids, Provider::PaypalPayouts).await;
    assert_eq!(*sizes.lock().unwrap(), [2, 1], "two batch calls: two items, then one");
    let statuses: Vec<_> = results.iter().map(|r| r.result.as_ref().unwrap().status).collect();
    assert_eq!(
        statuses,
        [PayoutStatus::Processing, PayoutStatus::Failed, PayoutStatus::Processing]
    );
}

#[tokio::test]
async fn four_eyes_on_manual_payouts() {
    let h = harness();
    let creator = Actor::admin("alice");
    let manual = ManualPayout {
        doctor_id: "dr-a".into(),
        amount: kes("1200.50"),
        period: None,
        notes: Some("bonus".into()),
    };
    let p = h.service.create_manual(&creator, manual.clone()).await.unwrap();
    assert_eq!(p.amount_due, kes("1200.50"));
    assert!(matches!(
        h.service.approve(&creator, &p.id).await,
        Err(Error::Forbidden(_))
    ));
    let approved = h.service.approve(&Actor::admin("bob"), &p.id).await.unwrap();
    assert_eq!(approved.approved_by.as_deref(), Some("admin:bob"));
    let bad = ManualPayout {
        amount: kes("0"),
        ..manual.clone()
    };
    assert!(matches!(
        h.service.create_manual(&creator, bad).await,
        Err(Error::InvalidInput(_))
    ));
    let unknown = ManualPayout {
        doctor_id: "nobody".into(),
        ..manual
    };
    assert!(matches!(
        h.service.create_manual(&creator, unknown).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn two_admins_approving_at_once_exactly_one_wins() {
    let h = Arc::new(harness());
    let p = h.calculate().await.remove(0);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let h = h.clone();
        let id = p.id.clone();
        tasks.push(tokio::spawn(async move {
            h.service.approve(&Actor::admin(format!("a{i}")), &id).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Conflict(_) | Error::InvalidTransition { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(h.audit_actions(&p.id).await, ["CREATE", "APPROVE"]);
}

// ---------------------------------------------------------------- webhooks

#[tokio::test]
async fn webhooks_apply_once_and_ignore_duplicates_and_stale_events() {
    let h = harness();
    let p = h.in_flight("dr-a").await;
    let reference = p.provider_reference.clone().unwrap();

    let out = h.webhook("evt-1", &reference, "PAID").await.unwrap();
    assert_eq!(
        out,
        vec![EventOutcome::Applied {
            event_id: "evt-1".into(),
            payout_id: p.id.clone(),
            from: PayoutStatus::Processing,
            to: PayoutStatus::Paid
        }]
    );
    let version = h.store.get(&p.id).await.unwrap().version;
    // The same event again: a no-op.
    assert_eq!(
        h.webhook("evt-1", &reference, "PAID").await.unwrap(),
        vec![EventOutcome::Duplicate {
            event_id: "evt-1".into()
        }]
    );
    assert_eq!(h.store.get(&p.id).await.unwrap().version, version);
    // An out-of-order PENDING after PAID is ignored; the status never moves backwards.
    let out = h.webhook("evt-0", &reference, "PENDING").await.unwrap();
    assert!(matches!(out[0], EventOutcome::Ignored { .. }));
    assert_eq!(h.store.get(&p.id).await.unwrap().status, PayoutStatus::Paid);
    // A failure reported after success means the money came back: a correcting transition.
    let out = h.webhook("evt-2", &reference, "RETURNED").await.unwrap();
    assert!(matches!(
        out[0],
        EventOutcome::Applied {
            to: PayoutStatus::Returned,
            ..
        }
    ));
    let actions = h.audit_actions(&p.id).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "PROVIDER_PAID").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(actions.last().unwrap(), "PROVIDER_RETURNED");
}

#[tokio::test]
async fn forged_webhooks_and_unknown_references_change_nothing() {
    let h = harness();
    let p = h.in_flight("dr-a").await;
    let body = serde_json::json!({"eventId": "e", "reference": p.provider_reference, "status": "PAID"}).to_string();
    let mut forged = HeaderMap::new();
    forged.insert(SIMULATION_TOKEN_HEADER, "wrong".parse().unwrap());
    let err = h
        .service
        .handle_webhook(Provider::MpesaB2c, &forged, body.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Webhook(WebhookError::BadSignature)));
    let err = h
        .service
        .handle_webhook(Provider::MpesaB2c, &HeaderMap::new(), body.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Webhook(WebhookError::MissingHeader(_))));
    // Authentic but about an attempt we do not know yet: refused so the provider delivers it again.
    let err = h.webhook("e2", "sim_unknown", "PAID").await.unwrap_err();
    assert!(matches!(err, Error::UnknownReference { .. }));
    assert_eq!(h.store.get(&p.id).await.unwrap().status, PayoutStatus::Processing);
    assert!(!h.store.webhook_event_seen(Provider::MpesaB2c, "e2").await.unwrap());
}

/// A Stripe adapter double whose every delivery verifies to `events`.
fn stripe_delivering(events: Vec<ProviderEvent>) -> Arc<dyn PayoutProvider> {
    let mut m = stripe_mock();
    m.expect_verify_webhook().returning(move |_, _| Ok(events.clone()));
    Arc::new(m)
}

fn stripe_event(id: &str, references: Vec<EventReference>) -> ProviderEvent {
    ProviderEvent {
        event_id: id.to_string(),
        references,
        kind: ProviderEventKind::Paid,
        occurred_at: None,
        provider_type: "payout.paid".to_string(),
    }
}

#[tokio::test]
async fn an_authentic_event_naming_nothing_of_ours_is_acknowledged_and_changes_nothing() {
    // A Connect account's own bank payout (no key in its metadata, so the adapter gives no
    // reference), and another system's item whose key is not of our form.
    let foreign = [
        stripe_event("evt_po", vec![]),
        stripe_event("evt_other", vec![EventReference::IdempotencyKey("INV-2024-001".into())]),
    ];
    for event in foreign {
        let h = harness_with(
            default_consultations(),
            vec![stripe_delivering(vec![event.clone()])],
            ServicePolicy::default(),
        );
        let p = h.in_flight("dr-a").await;
        let audit_before = h.store.audit_trail(&p.id).await.unwrap().len();
        let report = h
            .service
            .handle_webhook(Provider::StripeConnect, &HeaderMap::new(), b"{}")
            .await
            .unwrap();
        assert_eq!(
            report.events,
            vec![EventOutcome::NotOurs {
                event_id: event.event_id.clone(),
                event_type: "payout.paid".into(),
            }]
        );
        assert_eq!(h.store.get(&p.id).await.unwrap().status, PayoutStatus::Processing);
        assert_eq!(h.store.audit_trail(&p.id).await.unwrap().len(), audit_before);
        assert!(
            !h.store
                .webhook_event_seen(Provider::StripeConnect, &event.event_id)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn an_event_naming_a_key_or_reference_of_ours_that_is_not_recorded_is_refused_for_redelivery() {
    let ours = [
        vec![EventReference::IdempotencyKey(PayoutAttempt::key_for(
            &PayoutId::new("po_999999"),
            1,
        ))],
        vec![EventReference::ProviderReference("tr_not_recorded_yet".into())],
        // Ours by its key though another reference is foreign.
        vec![
            EventReference::IdempotencyKey("INV-7".into()),
            EventReference::IdempotencyKey(PayoutAttempt::key_for(&PayoutId::new("po_999999"), 2)),
        ],
    ];
    for references in ours {
        let h = harness_with(
            default_consultations(),
            vec![stripe_delivering(vec![stripe_event("evt_early", references.clone())])],
            ServicePolicy::default(),
        );
        let err = h
            .service
            .handle_webhook(Provider::StripeConnect, &HeaderMap::new(), b"{}")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownReference { .. }), "{references:?}: {err:?}");
        assert!(
            !h.store
                .webhook_event_seen(Provider::StripeConnect, "evt_early")
                .await
                .unwrap()
        );
    }
}

#[test]
fn our_key_form_is_a_payout_id_and_an_attempt_number() {
    let id = PayoutId::new("0190f2a4-7b3c-7d2e-9f1a-2b3c4d5e6f70");
    for n in [1, 2, 10, u32::MAX] {
        assert!(
            PayoutAttempt::is_key_form(&PayoutAttempt::key_for(&id, n)),
            "attempt {n}"
        );
    }
    for foreign in [
        "",
        "-1",
        "abc",
        "abc-",
        "abc-0",
        "abc-01",
        "INV-2024-001",
        "a b-1",
        "abc-1x",
    ] {
        assert!(!PayoutAttempt::is_key_form(foreign), "{foreign:?}");
    }
}

#[tokio::test]
async fn a_failure_webhook_for_an_older_attempt_does_not_touch_the_current_one() {
    let h = harness();
    let p = h.in_flight("dr-a").await;
    let first_ref = p.provider_reference.clone().unwrap();
    h.webhook("f1", &first_ref, "FAILED").await.unwrap();
    let p2 = h.service.retry(&h.admin, &p.id, None).await.unwrap();
    assert_eq!(p2.status, PayoutStatus::Processing);
    // The provider redelivers a (different) failure event about attempt 1.
    let out = h.webhook("f1-bis", &first_ref, "FAILED").await.unwrap();
    assert!(matches!(out[0], EventOutcome::Ignored { .. }), "{out:?}");
    assert_eq!(h.store.get(&p.id).await.unwrap().status, PayoutStatus::Processing);
}

// ---------------------------------------------------------------- reads

#[tokio::test]
async fn filters_pagination_and_doctor_isolation() {
    let consultations: Vec<Consultation> = (0..30)
        .map(|i| consultation(&format!("x{i}"), &format!("dr-{i:02}"), 2025, 1, 5))
        .collect();
    let h = harness_with(consultations, vec![], ServicePolicy::default());
    let ps = h.calculate().await;
    assert_eq!(ps.len(), 30);
    for p in ps.iter().take(5) {
        h.service.approve(&h.admin, &p.id).await.unwrap();
    }
    let approved = PayoutFilter {
        status: Some(PayoutStatus::Approved),
        ..Default::default()
    };
    let page = h.service.list(&h.admin, &approved, &Page::new(2, 0)).await.unwrap();
    assert_eq!((page.total, page.payouts.len()), (5, 2));
    let page3 = h.service.list(&h.admin, &approved, &Page::new(2, 4)).await.unwrap();
    assert_eq!(page3.payouts.len(), 1);
    let one = PayoutFilter {
        doctor_id: Some("dr-07".into()),
        ..Default::default()
    };
    assert_eq!(h.service.list(&h.admin, &one, &Page::default()).await.unwrap().total, 1);
    let created_today = PayoutFilter {
        created_from: Some(h.clock.now().date_naive()),
        created_to: Some(h.clock.now().date_naive()),
        ..Default::default()
    };
    assert_eq!(
        h.service
            .list(&h.admin, &created_today, &Page::default())
            .await
            .unwrap()
            .total,
        30
    );
    let later = PayoutFilter {
        created_from: Some(NaiveDate::from_ymd_opt(2025, 3, 1).unwrap()),
        ..Default::default()
    };
    assert_eq!(
        h.service.list(&h.admin, &later, &Page::default()).await.unwrap().total,
        0
    );

    let doctor = Actor::doctor("dr-07");
    assert!(matches!(
        h.service
            .list(&doctor, &PayoutFilter::default(), &Page::default())
            .await,
        Err(Error::Forbidden(_))
    ));
    let own = h.service.doctor_history(&doctor, &Page::default()).await.unwrap();
    assert_eq!(own.total, 1);
    assert_eq!(own.payouts[0].doctor_id.as_str(), "dr-07");
    let other = ps.iter().find(|p| p.doctor_id.as_str() == "dr-08").unwrap();
    assert!(
        matches!(h.service.get(&doctor, &other.id).await, Err(Error::NotFound(_))),
        "another doctor's is 404"
    );
    assert!(matches!(
        h.service.items(&doctor, &other.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(h.service.get(&doctor, &own.payouts[0].id).await.is_ok());
    assert!(matches!(
        h.service.audit_trail(&doctor, &own.payouts[0].id).await,
        Err(Error::Forbidden(_))
    ));
}

#[tokio::test]
async fn csv_export_has_the_seed_columns_and_neutralizes_formulas() {
    let h = harness_with(
        vec![
            consultation("a1", "dr-a", 2025, 1, 3),
            consultation("e1", "=evil", 2025, 1, 3),
        ],
        vec![],
        ServicePolicy::default(),
    );
    // A hostile name in the directory.
    let mut evil = recipient("=evil");
    evil.name = "=HYPERLINK(\"http://x\",\"click\")".into();
    evil.email = "@attacker".into();
    let service = PayoutService::builder()
        .store(h.store.clone())
        .consultations(Arc::new(StaticConsultations::new(vec![
            consultation("a1", "dr-a", 2025, 1, 3),
            consultation("e1", "=evil", 2025, 1, 3),
        ])))
        .directory(Arc::new(StaticDirectory::new([recipient("dr-a"), evil])))
        .clock(h.clock.clone())
        .build()
        .unwrap();
    service
        .calculate_period(&h.admin, Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    let rows = service
        .export_csv(&h.admin, &PayoutFilter::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status"
    );
    let evil_line = lines.iter().find(|l| l.contains("evil")).unwrap();
    assert!(evil_line.contains(",'=evil,"), "{evil_line}");
    assert!(
        evil_line.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"click\"\")\""),
        "{evil_line}"
    );
    assert!(evil_line.contains(",'@attacker,"), "{evil_line}");
    assert!(evil_line.contains(",500.00,KES,"), "{evil_line}");
    let good = lines.iter().find(|l| l.contains(",dr-a,")).unwrap();
    assert!(
        good.contains("\"{\"\"accountName\"\":\"\"Dr. dr-a\"\",\"\"accountNumber\"\":\"\"0123456789\"\""),
        "{good}"
    );
    assert!(good.ends_with(",PENDING"));
    let doctor = Actor::doctor("dr-a");
    assert!(matches!(
        service
            .export_csv(&doctor, &PayoutFilter::default(), &mut Vec::new())
            .await,
        Err(Error::Forbidden(_))
    ));
}

#[tokio::test]
async fn premium_gates_the_earnings_analytics() {
    let h = harness();
    let p = h.in_flight("dr-a").await;
    h.webhook("paid", p.provider_reference.as_deref().unwrap(), "PAID")
        .await
        .unwrap();
    assert!(h.service.user_has_premium("dr-a").await.unwrap());
    assert!(!h.service.user_has_premium("dr-b").await.unwrap());
    let a = h
        .service
        .earnings_analytics(&Actor::doctor("dr-a"), Currency::KES)
        .await
        .unwrap();
    assert_eq!(a.total_paid, kes("1500"));
    assert_eq!(a.consultations_paid, 3);
    assert_eq!(a.average_per_consultation, Some(kes("500")));
    assert_eq!(a.paid_by_month["2025-01"], kes("1500"));
    assert!(matches!(
        h.service
            .earnings_analytics(&Actor::doctor("dr-b"), Currency::KES)
            .await,
        Err(Error::Forbidden(_))
    ));
}

#[tokio::test]
async fn debug_output_holds_no_secrets() {
    let sim = SimulatedProvider::new(Provider::MpesaB2c).with_webhook_token("super-secret-token");
    assert!(!format!("{sim:?}").contains("super-secret-token"));
    let r = recipient("dr-a");
    let dbg = format!("{r:?}");
    assert!(
        !dbg.contains("0123456789") && !dbg.contains("254712345678") && !dbg.contains("dr-a@paypal"),
        "{dbg}"
    );
    let h = harness();
    let dbg = format!("{:?}", h.service);
    assert!(!dbg.contains(TOKEN), "{dbg}");
}
