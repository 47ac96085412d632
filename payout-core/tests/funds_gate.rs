//! The funds gate of a run (issue 17, item 2): a shortfall blocks `trigger_run` (nothing sent,
//! nothing written) until one admin requests a funds override and a second admin confirms it;
//! pending and unknown balances never block; enough funds pass.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use payout_core::ProviderError;
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{Actor, Provider, Recipient, RunEvent, RunId};
use payout_core::error::Error;
use payout_core::funds::{BalanceAnswer, BalanceSource, FundsState};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{CalculationPolicy, PayoutService, ServicePolicy};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter, PayoutStore};

use common::rail::Rail;
use common::{consultation, month};

fn first() -> Actor {
    Actor::admin("admin-1")
}
fn second() -> Actor {
    Actor::admin("admin-2")
}
fn kes(s: &str) -> Money {
    Money::parse(s, Currency::KES).unwrap()
}

/// An M-Pesa balance the test sets.
struct Balance(Mutex<BalanceAnswer>);

impl Balance {
    fn set(&self, answer: BalanceAnswer) {
        *self.0.lock().unwrap() = answer;
    }
}

#[async_trait]
impl BalanceSource for Balance {
    fn provider(&self) -> Provider {
        Provider::MpesaB2c
    }
    async fn balance(&self) -> Result<BalanceAnswer, ProviderError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn known(amount: &str) -> BalanceAnswer {
    BalanceAnswer::Known {
        available: vec![kes(amount)],
        as_of: Utc.with_ymd_and_hms(2025, 2, 3, 7, 0, 0).unwrap(),
    }
}

struct Setup {
    service: PayoutService,
    store: Arc<MemoryStore>,
    mpesa: Arc<Rail>,
    balance: Option<Arc<Balance>>,
    run: RunId,
}

/// Two M-Pesa doctors with one 500 KES January payout each, calculated and approved as a run:
/// the run needs 1000 KES from M-Pesa. `balance`: the M-Pesa balance source's first answer
/// (`None`: no source registered).
async fn setup(balance: Option<BalanceAnswer>) -> Setup {
    let doctors: Vec<Recipient> = ["dr-a", "dr-b"]
        .iter()
        .map(|d| {
            let mut r = common::recipient(d);
            r.stripe_account_id = None;
            r.paypal_payout_email = None;
            r.bank_details = None;
            r.preferred_provider = None;
            r
        })
        .collect();
    let consultations = doctors
        .iter()
        .map(|d| consultation(&format!("apt-{}", d.doctor_id), d.doctor_id.as_str(), 2025, 1, 10))
        .collect();
    let store = Arc::new(MemoryStore::new());
    let mpesa = Arc::new(Rail::new(Provider::MpesaB2c));
    let balance = balance.map(|b| Arc::new(Balance(Mutex::new(b))));
    let mut builder = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(doctors)))
        .provider(mpesa.clone())
        .clock(Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap(),
        )))
        .ids(Arc::new(SequentialIds::default()))
        .policy(ServicePolicy {
            four_eyes: true,
            ..Default::default()
        });
    if let Some(b) = &balance {
        builder = builder.balance_source(b.clone());
    }
    let service = builder.build().unwrap();
    let report = service
        .calculate_period(&first(), Some(month(2025, 1)), &CalculationPolicy::default())
        .await
        .unwrap();
    let run = report.run.unwrap();
    service.approve_run(&first(), &run).await.unwrap();
    Setup {
        service,
        store,
        mpesa,
        balance,
        run,
    }
}

impl Setup {
    async fn statuses(&self) -> Vec<PayoutStatus> {
        let page = self
            .store
            .list(&PayoutFilter::default(), &Page::default())
            .await
            .unwrap();
        page.payouts.iter().map(|p| p.status).collect()
    }

    async fn actions(&self) -> Vec<String> {
        self.service
            .run_events(&first(), &self.run)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

#[tokio::test]
async fn a_shortfall_blocks_the_trigger_until_a_second_admin_confirms_an_override() {
    let s = setup(Some(known("999.99"))).await;
    let funds = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert!(funds.blocked);
    assert_eq!(
        (funds.approved, funds.planned, funds.held, funds.unplanned),
        (2, 2, 0, 0)
    );
    assert_eq!(funds.report.lines.len(), 1);
    assert_eq!(funds.report.lines[0].needed, kes("1000"));
    assert_eq!(
        funds.report.lines[0].state,
        FundsState::Shortfall { short_by: kes("0.01") }
    );
    assert_eq!(funds.funds_override, None);

    let refused = s.service.trigger_run(&first(), &s.run, None).await.unwrap_err();
    match &refused {
        Error::FundsShortfall { run_id, shortfalls } => {
            assert_eq!(run_id, &s.run);
            assert_eq!(shortfalls, "MPESA_B2C KES: needs 1000.00, holds 999.99, short by 0.01");
        }
        other => panic!("expected FundsShortfall, got {other:?}"),
    }
    assert!(refused.to_string().contains("nothing was sent"), "{refused}");
    assert!(s.mpesa.keys().is_empty(), "nothing sent");
    assert_eq!(s.statuses().await, [PayoutStatus::Approved, PayoutStatus::Approved]);
    assert_eq!(
        s.actions().await,
        [RunEvent::CREATE, RunEvent::APPROVE],
        "nothing written"
    );

    // The same admin cannot both ask and confirm.
    let run = s
        .service
        .request_funds_override(&first(), &s.run, "  top-up lands at noon  ")
        .await
        .unwrap();
    let asked = run.funds_override.clone().unwrap();
    assert_eq!(asked.requested_by, "admin:admin-1");
    assert_eq!(asked.reason, "top-up lands at noon");
    assert!(!asked.is_confirmed());
    assert!(matches!(
        s.service.confirm_funds_override(&first(), &s.run).await,
        Err(Error::Forbidden(m)) if m.contains("second admin")
    ));
    assert!(
        matches!(
            s.service.request_funds_override(&second(), &s.run, "again").await,
            Err(Error::InvalidInput(m)) if m.contains("already")
        ),
        "one override per run"
    );
    let still = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert!(still.blocked, "a request alone does not unblock");
    assert!(matches!(
        s.service.trigger_run(&first(), &s.run, None).await,
        Err(Error::FundsShortfall { .. })
    ));
    assert!(s.mpesa.keys().is_empty());

    let run = s.service.confirm_funds_override(&second(), &s.run).await.unwrap();
    let confirmed = run.funds_override.unwrap();
    assert_eq!(confirmed.confirmed_by.as_deref(), Some("admin:admin-2"));
    assert_eq!(confirmed.requested_by, "admin:admin-1");
    assert!(matches!(
        s.service.confirm_funds_override(&second(), &s.run).await,
        Err(Error::InvalidInput(m)) if m.contains("confirmed already")
    ));
    let funds = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert!(!funds.blocked);
    assert!(funds.report.blocks(), "the shortfall is still shown");

    let report = s.service.trigger_run(&first(), &s.run, None).await.unwrap();
    assert_eq!((report.considered, report.ok), (2, 2));
    assert_eq!(s.mpesa.keys().len(), 2);
    assert_eq!(s.statuses().await, [PayoutStatus::Paid, PayoutStatus::Paid]);
    assert_eq!(
        s.actions().await,
        [
            RunEvent::CREATE,
            RunEvent::APPROVE,
            RunEvent::FUNDS_OVERRIDE_REQUESTED,
            RunEvent::FUNDS_OVERRIDE_CONFIRMED,
            RunEvent::TRIGGER
        ]
    );
}

#[tokio::test]
async fn overrides_are_for_admins_with_a_reason() {
    let s = setup(Some(known("1"))).await;
    assert!(matches!(
        s.service.request_funds_override(&first(), &s.run, "   ").await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.service
            .request_funds_override(&first(), &s.run, &"x".repeat(501))
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        s.service
            .request_funds_override(&Actor::doctor("dr-a"), &s.run, "mine")
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.service.confirm_funds_override(&second(), &s.run).await,
        Err(Error::InvalidInput(m)) if m.contains("no funds override")
    ));
    assert!(matches!(
        s.service
            .request_funds_override(&first(), &RunId::new("run_unknown"), "why")
            .await,
        Err(Error::RunNotFound(_))
    ));
    assert_eq!(
        s.actions().await,
        [RunEvent::CREATE, RunEvent::APPROVE],
        "nothing written"
    );
}

#[tokio::test]
async fn unknown_and_pending_balances_do_not_block() {
    // No balance source at all.
    let s = setup(None).await;
    let funds = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert!(!funds.blocked);
    assert!(matches!(funds.report.lines[0].state, FundsState::Unknown { .. }));
    assert_eq!(s.service.trigger_run(&first(), &s.run, None).await.unwrap().ok, 2);

    // An answer still on its way.
    let s = setup(Some(BalanceAnswer::Pending {
        requested_at: Utc.with_ymd_and_hms(2025, 2, 3, 7, 59, 0).unwrap(),
    }))
    .await;
    let funds = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert!(!funds.blocked);
    assert!(matches!(funds.report.lines[0].state, FundsState::Pending { .. }));
    assert_eq!(s.service.trigger_run(&first(), &s.run, None).await.unwrap().ok, 2);
}

#[tokio::test]
async fn enough_funds_pass_and_a_balance_that_drops_blocks_what_is_left() {
    let s = setup(Some(known("1000.00"))).await;
    let funds = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert!(!funds.blocked);
    assert_eq!(funds.report.lines[0].state, FundsState::Enough);
    // Only what is still approved counts: a cancelled member needs nothing.
    let page = s.store.list(&PayoutFilter::default(), &Page::default()).await.unwrap();
    s.service.cancel(&first(), &page.payouts[0].id, None).await.unwrap();
    s.balance.as_ref().unwrap().set(known("499.99"));
    let funds = s.service.run_funds(&first(), &s.run, None).await.unwrap();
    assert_eq!(funds.report.lines[0].needed, kes("500"));
    assert!(funds.blocked);
    s.balance.as_ref().unwrap().set(known("500"));
    let report = s.service.trigger_run(&first(), &s.run, None).await.unwrap();
    assert_eq!((report.considered, report.ok), (1, 1));
}
