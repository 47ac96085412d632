//! Payout runs end to end over the in-memory store (issue 17, item 1): a calculation makes a run
//! of the payouts it creates; an admin makes one from a filter; a run is approved, planned and
//! triggered with each doctor's method (or a provider named for it) through the bulk trigger,
//! batching providers in batches; its confirmed failures are retried; every outcome is kept on the
//! run and every action is a run event.

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{
    Actor, Consultation, DoctorId, PayoutId, Provider, Recipient, RunAction, RunEvent, RunId, RunKind,
};
use payout_core::error::Error;
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{CalculationPolicy, NoMethod, PayoutService, ServicePolicy};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter, PayoutStore};

use common::rail::Rail;
use common::{consultation, month};

fn admin() -> Actor {
    Actor::admin("admin-1")
}

/// A doctor with payout details for `methods` only, preferring `preferred`.
fn doctor(id: &str, methods: &[Provider], preferred: Option<Provider>) -> Recipient {
    let mut r = common::recipient(id);
    if !methods.contains(&Provider::StripeConnect) {
        r.stripe_account_id = None;
    }
    if !methods.contains(&Provider::PaypalPayouts) {
        r.paypal_payout_email = None;
    }
    if !methods.contains(&Provider::MpesaB2c) {
        r.mpesa_phone_number = None;
    }
    if !methods.contains(&Provider::BankTransfer) {
        r.bank_details = None;
    }
    r.preferred_provider = preferred;
    r
}

/// `n` January consultations of each of `doctors`.
fn consultations(doctors: &[Recipient], n: usize) -> Vec<Consultation> {
    doctors
        .iter()
        .flat_map(|d| {
            (0..n).map(move |k| consultation(&format!("apt-{}-{k}", d.doctor_id), d.doctor_id.as_str(), 2025, 1, 10))
        })
        .collect()
}

struct Setup {
    service: Arc<PayoutService>,
    store: Arc<MemoryStore>,
    stripe: Arc<Rail>,
    mpesa: Arc<Rail>,
    paypal: Arc<Rail>,
}

/// Stripe and M-Pesa rails sending one at a time, a batching PayPal rail, no bank adapter.
fn setup(doctors: Vec<Recipient>, per_doctor: usize) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let stripe = Arc::new(Rail::new(Provider::StripeConnect));
    let mpesa = Arc::new(Rail::new(Provider::MpesaB2c));
    let paypal = Arc::new(Rail::batching(Provider::PaypalPayouts));
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations(&doctors, per_doctor))))
        .directory(Arc::new(StaticDirectory::new(doctors)))
        .provider(stripe.clone())
        .provider(mpesa.clone())
        .provider(paypal.clone())
        .clock(Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap(),
        )))
        .ids(Arc::new(SequentialIds::default()))
        .policy(ServicePolicy {
            four_eyes: true,
            ..Default::default()
        })
        .build()
        .unwrap();
    Setup {
        service: Arc::new(service),
        store,
        stripe,
        mpesa,
        paypal,
    }
}

impl Setup {
    /// Calculates January and returns its run.
    async fn january(&self) -> RunId {
        let report = self
            .service
            .calculate_period(&admin(), Some(month(2025, 1)), &CalculationPolicy::default())
            .await
            .unwrap();
        report.run.expect("a calculation that creates payouts makes a run")
    }

    /// The payout of `doctor` (each has one).
    async fn payout_of(&self, doctor: &str) -> PayoutId {
        let filter = PayoutFilter {
            doctor_id: Some(DoctorId::new(doctor)),
            ..Default::default()
        };
        let page = self.store.list(&filter, &Page::default()).await.unwrap();
        assert_eq!(page.payouts.len(), 1, "{doctor} has one payout");
        page.payouts[0].id.clone()
    }

    async fn status_of(&self, doctor: &str) -> PayoutStatus {
        let id = self.payout_of(doctor).await;
        self.store.get(&id).await.unwrap().status
    }
}

#[tokio::test]
async fn a_calculation_makes_one_run_of_the_payouts_it_creates() {
    let doctors = vec![
        doctor("dr-a", &[Provider::MpesaB2c], None),
        doctor("dr-b", &[Provider::MpesaB2c], None),
        doctor("dr-c", &[Provider::MpesaB2c], None),
    ];
    let s = setup(doctors, 2);
    let run = s.january().await;
    let summary = s.service.run_summary(&admin(), &run).await.unwrap();
    assert_eq!(summary.run.kind, RunKind::Calculation);
    assert_eq!(summary.run.period, Some(month(2025, 1)));
    assert_eq!(summary.run.created_by, "admin:admin-1");
    assert_eq!(summary.count(), 3);
    assert_eq!(summary.count_of(PayoutStatus::Pending), 3);
    assert_eq!(
        summary.by_currency().unwrap()[0].amount,
        Money::parse("3000", Currency::KES).unwrap(),
        "three doctors, two consultations of 500 each"
    );
    let events = s.service.run_events(&admin(), &run).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, RunEvent::CREATE);

    // A re-run creates nothing, so it makes no run.
    let again = s
        .service
        .calculate_period(&admin(), Some(month(2025, 1)), &CalculationPolicy::default())
        .await
        .unwrap();
    assert!(again.created.is_empty());
    assert_eq!(again.run, None);
    assert_eq!(s.service.runs(&admin(), &Page::default()).await.unwrap().total, 1);
}

#[tokio::test]
async fn a_run_is_approved_planned_and_sent_with_each_doctors_method() {
    let doctors = vec![
        doctor(
            "dr-a",
            &[Provider::StripeConnect, Provider::MpesaB2c],
            Some(Provider::StripeConnect),
        ),
        doctor("dr-b", &[Provider::MpesaB2c], None),
        doctor("dr-c", &[Provider::StripeConnect, Provider::MpesaB2c], None),
        doctor("dr-d", &[Provider::PaypalPayouts], Some(Provider::PaypalPayouts)),
        doctor(
            "dr-e",
            &[Provider::PaypalPayouts, Provider::MpesaB2c],
            Some(Provider::PaypalPayouts),
        ),
        doctor("dr-f", &[Provider::BankTransfer], None),
    ];
    let s = setup(doctors, 1);
    let run = s.january().await;

    let approved = s.service.approve_run(&admin(), &run).await.unwrap();
    assert_eq!((approved.considered, approved.ok, approved.failed), (6, 6, 0));

    let plan = s.service.run_plan(&admin(), &run, None).await.unwrap();
    assert_eq!(plan.approved, 6);
    assert_eq!(plan.planned(), 4);
    let kes = |n: i64| Money::from_minor_units(n * 50_000, Currency::KES);
    assert_eq!(
        plan.need(Provider::StripeConnect, Currency::KES).unwrap().amount,
        kes(1)
    );
    assert_eq!(plan.need(Provider::MpesaB2c, Currency::KES).unwrap().amount, kes(1));
    let paypal = plan.need(Provider::PaypalPayouts, Currency::KES).unwrap();
    assert_eq!((paypal.count, paypal.amount), (2, kes(2)));
    let funds = s.service.check_funds(&plan.funds_needs()).await.unwrap();
    assert_eq!(funds.lines.len(), 3, "one line per provider and currency: {funds:?}");
    let mut unplanned: Vec<(String, NoMethod)> = plan
        .unplanned
        .iter()
        .map(|u| (u.doctor_id.to_string(), u.reason.clone()))
        .collect();
    unplanned.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        unplanned,
        vec![
            (
                "dr-c".to_string(),
                NoMethod::NoPreference(vec![Provider::StripeConnect, Provider::MpesaB2c])
            ),
            ("dr-f".to_string(), NoMethod::NotConfigured(Provider::BankTransfer)),
        ]
    );

    let report = s.service.trigger_run(&admin(), &run, None).await.unwrap();
    assert_eq!((report.considered, report.ok, report.failed), (6, 4, 2));
    assert_eq!(report.without_method, 2);
    assert_eq!(s.stripe.keys(), vec![format!("{}-1", s.payout_of("dr-a").await)]);
    assert_eq!(s.mpesa.keys(), vec![format!("{}-1", s.payout_of("dr-b").await)]);
    assert_eq!(s.paypal.calls().len(), 1, "dr-d and dr-e in one PayPal batch");
    assert_eq!(s.paypal.calls()[0].len(), 2);
    for d in ["dr-a", "dr-b", "dr-d", "dr-e"] {
        assert_eq!(s.status_of(d).await, PayoutStatus::Paid, "{d}");
    }
    for d in ["dr-c", "dr-f"] {
        assert_eq!(s.status_of(d).await, PayoutStatus::Approved, "{d} is not touched");
    }

    let results = s.service.run_results(&admin(), &run, &Page::new(100, 0)).await.unwrap();
    assert_eq!(results.total, 12, "6 approvals, 6 trigger outcomes");
    let triggers: Vec<_> = results
        .results
        .iter()
        .filter(|r| r.action == RunAction::Trigger)
        .collect();
    let c = s.payout_of("dr-c").await;
    let refused = triggers.iter().find(|r| r.payout_id == c).unwrap();
    assert!(!refused.ok);
    assert!(
        refused.message.as_deref().unwrap().contains("no preferred method"),
        "{refused:?}"
    );
    let a = s.payout_of("dr-a").await;
    let sent = triggers.iter().find(|r| r.payout_id == a).unwrap();
    assert!(sent.ok);
    assert_eq!(sent.provider, Some(Provider::StripeConnect));
    assert_eq!(sent.status_after, Some(PayoutStatus::Paid));
    assert_eq!(sent.by, "admin:admin-1");

    let summary = s.service.run_summary(&admin(), &run).await.unwrap();
    let by_provider = summary.by_provider().unwrap();
    let paid_by: Vec<(Option<Provider>, u64)> = by_provider.iter().map(|(p, t)| (*p, t.count)).collect();
    assert_eq!(
        paid_by,
        vec![
            (None, 2),
            (Some(Provider::StripeConnect), 1),
            (Some(Provider::PaypalPayouts), 2),
            (Some(Provider::MpesaB2c), 1)
        ]
    );
    let actions: Vec<String> = s
        .service
        .run_events(&admin(), &run)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, [RunEvent::CREATE, RunEvent::APPROVE, RunEvent::TRIGGER]);

    // A second trigger sends only what is still approved, with a provider named for it: dr-c by
    // M-Pesa; dr-f has no M-Pesa details and stays.
    let again = s
        .service
        .trigger_run(&admin(), &run, Some(Provider::MpesaB2c))
        .await
        .unwrap();
    assert_eq!((again.considered, again.ok, again.without_method), (2, 1, 1));
    assert_eq!(s.status_of("dr-c").await, PayoutStatus::Paid);
    assert_eq!(s.status_of("dr-f").await, PayoutStatus::Approved);
    let f = s.payout_of("dr-f").await;
    let last = s.service.run_results(&admin(), &run, &Page::new(100, 0)).await.unwrap();
    let refused = last.results.iter().rev().find(|r| r.payout_id == f).unwrap();
    assert!(
        refused
            .message
            .as_deref()
            .unwrap()
            .contains("no MPESA_B2C payout details")
    );
}

#[tokio::test]
async fn retry_failed_retries_only_confirmed_failures() {
    let doctors = vec![
        doctor("dr-a", &[Provider::MpesaB2c], None),
        doctor("dr-b", &[Provider::MpesaB2c], None),
        doctor("dr-c", &[Provider::MpesaB2c], None),
    ];
    let s = setup(doctors, 1);
    let run = s.january().await;
    s.service.approve_run(&admin(), &run).await.unwrap();
    s.mpesa.refuse(s.payout_of("dr-a").await.as_str());
    s.mpesa.leave_unanswered(s.payout_of("dr-b").await.as_str());
    let report = s.service.trigger_run(&admin(), &run, None).await.unwrap();
    assert_eq!((report.ok, report.failed), (2, 1), "a refused send is a failed result");
    assert_eq!(s.status_of("dr-a").await, PayoutStatus::Failed);
    assert_eq!(
        s.status_of("dr-b").await,
        PayoutStatus::Processing,
        "unknown, never FAILED"
    );

    let retried = s.service.retry_failed_run(&admin(), &run).await.unwrap();
    assert_eq!((retried.considered, retried.ok), (1, 1), "only the confirmed failure");
    assert_eq!(s.status_of("dr-a").await, PayoutStatus::Paid);
    assert_eq!(s.status_of("dr-b").await, PayoutStatus::Processing);
    let a = s.payout_of("dr-a").await;
    assert_eq!(
        s.mpesa.keys().iter().filter(|k| k.starts_with(a.as_str())).count(),
        2,
        "the failed attempt and the retry's new one"
    );
    let results = s.service.run_results(&admin(), &run, &Page::new(100, 0)).await.unwrap();
    let retry = results
        .results
        .iter()
        .find(|r| r.action == RunAction::RetryFailed)
        .unwrap();
    assert_eq!((retry.payout_id.clone(), retry.ok), (a, true));
    assert_eq!(retry.provider, Some(Provider::MpesaB2c));
    let failed = results
        .results
        .iter()
        .find(|r| r.action == RunAction::Trigger && !r.ok)
        .unwrap();
    assert_eq!(failed.status_after, Some(PayoutStatus::Failed));
    assert!(
        failed.message.as_deref().unwrap().contains("account is closed"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn an_admin_makes_a_run_from_a_filter() {
    let doctors = vec![
        doctor("dr-a", &[Provider::MpesaB2c], None),
        doctor("dr-b", &[Provider::MpesaB2c], None),
    ];
    let s = setup(doctors, 1);
    s.january().await;
    let a = s.payout_of("dr-a").await;
    s.service.approve(&admin(), &a).await.unwrap();
    let approved = PayoutFilter {
        status: Some(PayoutStatus::Approved),
        ..Default::default()
    };
    let run = s
        .service
        .create_run(&admin(), "  Approved in February  ", approved.clone())
        .await
        .unwrap();
    assert_eq!(run.run.kind, RunKind::Selection);
    assert_eq!(run.run.label, "Approved in February");
    assert_eq!(run.count(), 1);
    let members = s
        .service
        .run_payouts(&admin(), &run.run.id, PayoutFilter::default(), &Page::default())
        .await
        .unwrap();
    assert_eq!(
        members.payouts.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(
        s.service.runs(&admin(), &Page::default()).await.unwrap().runs[0].run.id,
        run.run.id,
        "newest first"
    );

    let nothing = PayoutFilter {
        status: Some(PayoutStatus::Paid),
        ..Default::default()
    };
    assert!(matches!(
        s.service.create_run(&admin(), "Paid", nothing).await,
        Err(Error::InvalidInput(m)) if m.contains("no payout matches")
    ));
    assert!(matches!(
        s.service.create_run(&admin(), " ", approved.clone()).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.service
            .create_run(&Actor::doctor("dr-a"), "Mine", approved.clone())
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.service.run_summary(&Actor::doctor("dr-a"), &run.run.id).await,
        Err(Error::Forbidden(_))
    ));
    let unknown = RunId::new("run_unknown");
    assert!(matches!(
        s.service.trigger_run(&admin(), &unknown, None).await,
        Err(Error::RunNotFound(_))
    ));
    assert!(matches!(
        s.service
            .run_payouts(&admin(), &unknown, PayoutFilter::default(), &Page::default())
            .await,
        Err(Error::RunNotFound(_))
    ));
    // A run's attention: admins only, of a run that exists; none of this run's payouts is flagged.
    let attention = s
        .service
        .run_attention(&admin(), &run.run.id, &Page::default())
        .await
        .expect("run_attention");
    assert_eq!((attention.flagged.len(), attention.total), (0, 0));
    assert!(matches!(
        s.service
            .run_attention(&Actor::doctor("dr-a"), &run.run.id, &Page::default())
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.service.run_attention(&admin(), &unknown, &Page::default()).await,
        Err(Error::RunNotFound(_))
    ));
}

#[tokio::test]
async fn a_large_run_is_sent_a_page_at_a_time_in_full_batches() {
    let doctors: Vec<Recipient> = (0..2500)
        .map(|i| doctor(&format!("dr-{i:04}"), &[Provider::PaypalPayouts], None))
        .collect();
    let s = setup(doctors, 1);
    let run = s.january().await;
    let approved = s.service.approve_run(&admin(), &run).await.unwrap();
    assert_eq!(approved.ok, 2500);
    let report = s.service.trigger_run(&admin(), &run, None).await.unwrap();
    assert_eq!(report.ok, 2500);
    let mut sizes: Vec<usize> = s.paypal.calls().iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [500, 1000, 1000], "one batch call per page of members");
    let summary = s.service.run_summary(&admin(), &run).await.unwrap();
    assert_eq!(summary.count_of(PayoutStatus::Paid), 2500);
    assert_eq!(
        s.service
            .run_results(&admin(), &run, &Page::new(1, 0))
            .await
            .unwrap()
            .total,
        5000
    );
}
