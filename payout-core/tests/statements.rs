//! Statements through the service: a payout's statement adds up to its amount line by line (late
//! consultations and deductions told apart), the method is masked, a doctor sees only their own,
//! CSV needs `earnings_export`, and a year's summary counts what was paid in it and lists what
//! came back apart.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use payout_core::calculation::{CalculationPolicy, Deduction};
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{Actor, Consultation, DoctorId, Payout, PayoutId, Provider};
use payout_core::error::Error;
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::premium::{Plan, StaticSubscriptions, Subscription, SubscriptionStatus};
use payout_core::service::{LineKind, PayoutService};
use payout_core::simulated::SimulatedProvider;
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::PayoutStore;
use rust_decimal::Decimal;

mod common;
use common::{consultation, month, recipient};

const TOKEN: &str = "sim-token";

fn kes(text: &str) -> Money {
    Money::parse(text, Currency::KES).unwrap()
}

fn policy() -> CalculationPolicy {
    CalculationPolicy {
        deductions: vec![
            Deduction {
                name: "platform_fee".into(),
                percent: Decimal::from(10),
            },
            Deduction {
                name: "withholding_tax".into(),
                percent: Decimal::from(5),
            },
        ],
        ..CalculationPolicy::default()
    }
}

fn service(
    store: &Arc<MemoryStore>,
    clock: &Arc<ManualClock>,
    ids: &Arc<SequentialIds>,
    consultations: Vec<Consultation>,
) -> PayoutService {
    let store: Arc<dyn PayoutStore> = store.clone();
    let premium = StaticSubscriptions::new([(
        "dr-b".to_string(),
        Subscription {
            plan: Plan::Premium,
            status: SubscriptionStatus::Active,
            current_period_end: None,
        },
    )]);
    let mut b = PayoutService::builder()
        .store(store)
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(["dr-a", "dr-b"].map(recipient))))
        .subscriptions(Arc::new(premium))
        .clock(clock.clone())
        .ids(ids.clone());
    for p in Provider::ALL {
        b = b.provider(Arc::new(SimulatedProvider::new(p).with_webhook_token(TOKEN)));
    }
    b.build().unwrap()
}

async fn payout_of(store: &MemoryStore, ids: &[PayoutId], doctor: &str) -> Payout {
    for id in ids {
        let p = store.get(id).await.unwrap();
        if p.doctor_id.as_str() == doctor {
            return p;
        }
    }
    panic!("no payout of {doctor}");
}

async fn send(service: &PayoutService, id: &PayoutId, provider: Provider) -> Payout {
    let admin = Actor::admin("admin-1");
    service.approve(&admin, id).await.unwrap();
    let p = service.trigger(&admin, id, provider).await.unwrap();
    assert_eq!(p.status, PayoutStatus::Paid, "the simulated provider pays at once");
    p
}

#[tokio::test]
async fn a_statement_adds_up_to_its_payout_and_a_year_counts_what_was_paid() {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 1, 2, 8, 0, 0).unwrap()));
    let ids = Arc::new(SequentialIds::default());
    let system = Actor::system("calc");
    // December, before the late consultation is known.
    let december = service(&store, &clock, &ids, vec![consultation("d1", "dr-a", 2024, 12, 10)]);
    let dec = december
        .calculate_period(&system, Some(month(2024, 12)), &policy())
        .await
        .unwrap();
    let dec = payout_of(&store, &dec.created, "dr-a").await;
    assert_eq!(dec.amount_due, kes("425.00"));

    // January, with a December consultation completed late.
    clock.set(Utc.with_ymd_and_hms(2025, 2, 2, 8, 0, 0).unwrap());
    let all = vec![
        consultation("d1", "dr-a", 2024, 12, 10),
        consultation("d2", "dr-a", 2024, 12, 20),
        consultation("j1", "dr-a", 2025, 1, 5),
        consultation("j2", "dr-a", 2025, 1, 6),
        consultation("b1", "dr-b", 2025, 1, 7),
    ];
    let s = service(&store, &clock, &ids, all);
    let jan = s
        .calculate_period(&system, Some(month(2025, 1)), &policy())
        .await
        .unwrap();
    let jan_a = payout_of(&store, &jan.created, "dr-a").await;
    let jan_b = payout_of(&store, &jan.created, "dr-b").await;

    let dr_a = Actor::doctor("dr-a");
    let st = s.statement(&dr_a, &jan_a.id).await.unwrap();
    let kinds: Vec<LineKind> = st.lines.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == LineKind::LateConsultation).count(),
        1,
        "{kinds:?}"
    );
    let t = &st.totals;
    assert_eq!((t.consultations, t.late_consultations), (2, 1));
    assert_eq!(t.consultation_earnings, kes("1000.00"));
    assert_eq!(t.late_earnings, kes("500.00"));
    assert_eq!(t.gross, kes("1500.00"));
    let deductions: Vec<(&str, Money)> = t.deductions.iter().map(|d| (d.name.as_str(), d.amount)).collect();
    assert_eq!(
        deductions,
        [("platform_fee", kes("150.00")), ("withholding_tax", kes("75.00"))]
    );
    assert_eq!(t.deducted, kes("225.00"));
    // The items add up to the payout's amount, and the totals say the same.
    let sum = Money::sum(Currency::KES, st.lines.iter().map(|l| &l.amount)).unwrap();
    assert_eq!(sum, jan_a.amount_due);
    assert_eq!(t.net, jan_a.amount_due);
    assert_eq!(t.net, kes("1275.00"));
    assert_eq!(st.doctor_name.as_deref(), Some("Dr. dr-a"));
    assert_eq!(st.method, None, "not sent, and no preferred method");

    // Another doctor's payout does not exist for dr-a; an admin reads any.
    assert!(matches!(s.statement(&dr_a, &jan_b.id).await, Err(Error::NotFound(_))));
    assert!(s.statement(&Actor::admin("admin-1"), &jan_b.id).await.is_ok());

    // CSV: premium only for doctors; its amounts add up to the payout's.
    assert!(matches!(
        s.statement_csv(&dr_a, &jan_a.id).await,
        Err(Error::PremiumRequired {
            feature: "earnings_export",
            ..
        })
    ));
    let csv = s.statement_csv(&Actor::doctor("dr-b"), &jan_b.id).await.unwrap();
    assert!(csv.starts_with("payoutId,periodStart,periodEnd,status,kind,"), "{csv}");
    let admin_csv = s.statement_csv(&Actor::admin("admin-1"), &jan_a.id).await.unwrap();
    let amounts: Vec<Money> = admin_csv
        .trim_end()
        .split("\r\n")
        .skip(1)
        .map(|row| kes(row.rsplit(',').nth(1).unwrap()))
        .collect();
    assert_eq!(amounts.len(), 5);
    assert_eq!(Money::sum(Currency::KES, &amounts).unwrap(), jan_a.amount_due);

    // Paid by M-Pesa: the statement shows the masked phone and the provider's reference.
    let paid = send(&s, &jan_a.id, Provider::MpesaB2c).await;
    let st = s.statement(&dr_a, &jan_a.id).await.unwrap();
    let method = st.method.unwrap();
    assert_eq!(method.provider, Provider::MpesaB2c);
    assert_eq!(method.masked, "M-Pesa 2547*****678");
    assert!(st.payout.provider_reference.is_some());
    assert_eq!(st.payout.provider_reference, paid.provider_reference);

    // December's payout is paid in 2025 too, then its money comes back.
    let dec_paid = send(&s, &dec.id, Provider::StripeConnect).await;
    let body = serde_json::json!({
        "eventId": "evt-returned",
        "reference": dec_paid.provider_reference.unwrap(),
        "status": "RETURNED",
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(payout_core::simulated::SIMULATION_TOKEN_HEADER, TOKEN.parse().unwrap());
    s.handle_webhook(Provider::StripeConnect, &headers, body.to_string().as_bytes())
        .await
        .unwrap();
    assert_eq!(store.get(&dec.id).await.unwrap().status, PayoutStatus::Returned);

    let year = s.year_summary(&dr_a, &DoctorId::new("dr-a"), 2025).await.unwrap();
    assert_eq!(year.totals.len(), 1);
    let y = &year.totals[0];
    assert_eq!((y.currency, y.payouts, y.consultations), (Currency::KES, 1, 3));
    assert_eq!(y.gross, kes("1500.00"));
    assert_eq!(y.deducted, kes("225.00"));
    assert_eq!(y.net_paid, kes("1275.00"));
    let by_name: Vec<(&str, Money)> = y.deductions.iter().map(|d| (d.name.as_str(), d.amount)).collect();
    assert_eq!(
        by_name,
        [("platform_fee", kes("150.00")), ("withholding_tax", kes("75.00"))]
    );
    assert_eq!((y.returned, y.returned_amount), (1, kes("425.00")));
    assert_eq!(year.paid.iter().map(|p| &p.id).collect::<Vec<_>>(), [&jan_a.id]);
    assert_eq!(year.returned.iter().map(|p| &p.id).collect::<Vec<_>>(), [&dec.id]);
    // Nothing was paid in 2024 (December's payout was paid in February 2025).
    let before = s.year_summary(&dr_a, &DoctorId::new("dr-a"), 2024).await.unwrap();
    assert!(before.totals.is_empty() && before.paid.is_empty() && before.returned.is_empty());
    // An admin reads anyone's; a doctor only their own; a year out of range is refused.
    let by_admin = s
        .year_summary(&Actor::admin("admin-1"), &DoctorId::new("dr-a"), 2025)
        .await
        .unwrap();
    assert_eq!(by_admin, year);
    assert!(matches!(
        s.year_summary(&Actor::doctor("dr-b"), &DoctorId::new("dr-a"), 2025)
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.year_summary(&dr_a, &DoctorId::new("dr-a"), 1999).await,
        Err(Error::InvalidInput(_))
    ));
}
