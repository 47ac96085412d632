//! The dashboard's figures through the service: totals by status, provider and currency, paid
//! totals per month with every month of the range, and doctors' names in one directory call; each
//! for admins only.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use common::{consultation, month, recipient};
use payout_core::clock::ManualClock;
use payout_core::domain::{Actor, DoctorId, Provider, Recipient};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{CalculationPolicy, MAX_CHART_MONTHS, PayoutService};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::{RecipientDirectory, StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::{MonthTotal, StatusTally, TotalsFilter};
use payout_core::{Error, Result};

/// A directory that counts the calls it gets.
struct Counting {
    inner: StaticDirectory,
    batches: AtomicUsize,
    singles: AtomicUsize,
}

#[async_trait]
impl RecipientDirectory for Counting {
    async fn recipient(&self, doctor_id: &DoctorId) -> Result<Option<Recipient>> {
        self.singles.fetch_add(1, Ordering::SeqCst);
        self.inner.recipient(doctor_id).await
    }

    async fn recipients(&self, doctor_ids: &[DoctorId]) -> Result<Vec<Recipient>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::new();
        for id in doctor_ids {
            out.extend(self.inner.recipient(id).await?);
        }
        Ok(out)
    }
}

struct Setup {
    service: PayoutService,
    clock: Arc<ManualClock>,
    directory: Arc<Counting>,
}

/// January 2025 calculated on 3 February for `dr-a` (two consultations) and `dr-b` (one).
async fn setup() -> Setup {
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 9, 0, 0).unwrap()));
    let directory = Arc::new(Counting {
        inner: StaticDirectory::new([recipient("dr-a"), recipient("dr-b")]),
        batches: AtomicUsize::new(0),
        singles: AtomicUsize::new(0),
    });
    let consultations = vec![
        consultation("a1", "dr-a", 2025, 1, 10),
        consultation("a2", "dr-a", 2025, 1, 11),
        consultation("b1", "dr-b", 2025, 1, 12),
    ];
    let mut builder = PayoutService::builder()
        .store(Arc::new(MemoryStore::new()))
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(directory.clone())
        .clock(clock.clone());
    for p in Provider::ALL {
        builder = builder.provider(Arc::new(
            SimulatedProvider::new(p).with_settlement(SimulatedSettlement::Immediate),
        ));
    }
    let service = builder.build().unwrap();
    service
        .calculate_period(
            &Actor::system("test"),
            Some(month(2025, 1)),
            &CalculationPolicy::default(),
        )
        .await
        .unwrap();
    Setup {
        service,
        clock,
        directory,
    }
}

fn admin() -> Actor {
    Actor::admin("admin-1")
}

fn first(y: i32, m: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, 1).unwrap()
}

#[tokio::test]
async fn totals_count_and_sum_per_status_provider_and_currency() {
    let s = setup().await;
    let all = s.service.totals(&admin(), &TotalsFilter::default()).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (all[0].status, all[0].provider, all[0].count),
        (PayoutStatus::Pending, None, 2)
    );
    let pending_total = all[0].amount;
    // Pay dr-a's through M-Pesa.
    let page = s
        .service
        .list(&admin(), &Default::default(), &Default::default())
        .await
        .unwrap();
    let a = page.payouts.iter().find(|p| p.doctor_id.as_str() == "dr-a").unwrap();
    s.service.approve(&admin(), &a.id).await.unwrap();
    let paid = s.service.trigger(&admin(), &a.id, Provider::MpesaB2c).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);
    let b_amount = pending_total.checked_sub(&a.amount_due).unwrap();
    let all = s.service.totals(&admin(), &TotalsFilter::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            StatusTally {
                status: PayoutStatus::Pending,
                provider: None,
                currency: Currency::KES,
                count: 1,
                amount: b_amount,
            },
            StatusTally {
                status: PayoutStatus::Paid,
                provider: Some(Provider::MpesaB2c),
                currency: Currency::KES,
                count: 1,
                amount: a.amount_due,
            },
        ]
    );
    let by_stripe = TotalsFilter {
        provider: Some(Provider::StripeConnect),
        ..Default::default()
    };
    assert!(s.service.totals(&admin(), &by_stripe).await.unwrap().is_empty());
    let in_usd = TotalsFilter {
        currency: Some(Currency::USD),
        ..Default::default()
    };
    assert!(s.service.totals(&admin(), &in_usd).await.unwrap().is_empty());

    // Paid per month: every month of the range, the current one last, zero where nothing was paid.
    s.clock.set(Utc.with_ymd_and_hms(2025, 4, 20, 0, 0, 0).unwrap());
    let months = s.service.paid_by_month(&admin(), None, 4).await.unwrap();
    let zero = Money::zero(Currency::KES);
    let expected: Vec<MonthTotal> = [(1, 0, zero), (2, 1, a.amount_due), (3, 0, zero), (4, 0, zero)]
        .into_iter()
        .map(|(m, count, amount)| MonthTotal {
            month: first(2025, m),
            currency: Currency::KES,
            count,
            amount,
        })
        .collect();
    assert_eq!(months, expected, "paid in the month the payout was created (February)");
    // A range without payments, or another currency: no series at all.
    assert!(s.service.paid_by_month(&admin(), None, 2).await.unwrap().is_empty());
    assert!(
        s.service
            .paid_by_month(&admin(), Some(Currency::USD), 12)
            .await
            .unwrap()
            .is_empty()
    );
    for bad in [0, MAX_CHART_MONTHS + 1] {
        assert!(
            matches!(
                s.service.paid_by_month(&admin(), None, bad).await,
                Err(Error::InvalidInput(_))
            ),
            "{bad} months"
        );
    }
}

#[tokio::test]
async fn doctor_names_come_from_one_directory_call() {
    let s = setup().await;
    let before = s.directory.batches.load(Ordering::SeqCst);
    let names = s
        .service
        .doctor_names(
            &admin(),
            &["dr-b".into(), "dr-a".into(), "dr-a".into(), "dr-unknown".into()],
        )
        .await
        .unwrap();
    assert_eq!(s.directory.batches.load(Ordering::SeqCst), before + 1, "one batch call");
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[&DoctorId::from("dr-a")], "Dr. dr-a");
    assert_eq!(names[&DoctorId::from("dr-b")], "Dr. dr-b");
    assert!(s.service.doctor_names(&admin(), &[]).await.unwrap().is_empty());
    assert_eq!(
        s.directory.batches.load(Ordering::SeqCst),
        before + 1,
        "no call for no ids"
    );
}

#[tokio::test]
async fn the_figures_are_for_admins_only() {
    let s = setup().await;
    let doctor = Actor::doctor("dr-a");
    let asked = s.directory.batches.load(Ordering::SeqCst) + s.directory.singles.load(Ordering::SeqCst);
    assert!(matches!(
        s.service.totals(&doctor, &TotalsFilter::default()).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.service.paid_by_month(&doctor, None, 12).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.service.doctor_names(&doctor, &["dr-b".into()]).await,
        Err(Error::Forbidden(_))
    ));
    let after = s.directory.batches.load(Ordering::SeqCst) + s.directory.singles.load(Ordering::SeqCst);
    assert_eq!(after, asked, "the directory is not asked for a doctor");
}
