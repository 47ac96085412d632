//! Shared set-up: a service over the in-memory store with simulated providers, token helpers, and a
//! router served over real HTTP.
//!
//! The `api_router` fuzz target compiles this file too (`#[path]`), and the fuzz crate is outside the
//! workspace and CI: after changing it, run `cargo check` in `fuzz/`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use payout_core::domain::{Actor, BankAccount, Consultation, Period, Provider, Recipient};
use payout_core::memory::MemoryStore;
use payout_core::premium::{Plan, StaticSubscriptions, Subscription, SubscriptionStatus};
use payout_core::service::{CalculationPolicy, PayoutService};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_server::{AppState, Claims, JwtKey, Role, ServerConfig};

pub const SECRET: &str = "test-nextauth-secret";
pub const SIM_TOKEN: &str = "sim-token";

pub fn jan() -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
    )
    .unwrap()
}

pub fn doctors() -> Vec<Recipient> {
    ["dr-a", "dr-b", "dr-c"]
        .into_iter()
        .map(|d| Recipient {
            doctor_id: d.into(),
            name: format!("Dr. {d}"),
            email: format!("{d}@example.com"),
            stripe_account_id: Some(format!("acct_{d}")),
            mpesa_phone_number: Some("254712345678".into()),
            bank_details: Some(BankAccount {
                account_name: format!("Dr. {d}"),
                account_number: "0123456789".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

pub fn consultations() -> Vec<Consultation> {
    let mut v = Vec::new();
    for (i, d) in ["dr-a", "dr-b", "dr-c"].into_iter().enumerate() {
        for n in 0..=i {
            v.push(Consultation {
                appointment_id: format!("apt-{d}-{n}"),
                doctor_id: d.into(),
                completed_at: Utc.with_ymd_and_hms(2025, 1, 10 + n as u32, 9, 0, 0).unwrap(),
            });
        }
    }
    v
}

pub fn service() -> Arc<PayoutService> {
    service_over(Arc::new(MemoryStore::new()))
}

/// [`service`] over `store`.
pub fn service_over(store: Arc<dyn payout_core::store::PayoutStore>) -> Arc<PayoutService> {
    let subs = StaticSubscriptions::new([(
        "dr-c".to_string(),
        Subscription {
            plan: Plan::Premium,
            status: SubscriptionStatus::Active,
            current_period_end: None,
        },
    )]);
    let mut b = PayoutService::builder()
        .store(store)
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(Arc::new(StaticDirectory::new(doctors())))
        .subscriptions(Arc::new(subs));
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM_TOKEN),
        ));
    }
    Arc::new(b.build().unwrap())
}

pub async fn calculated_state(config: ServerConfig) -> AppState {
    let service = service();
    service
        .calculate_period(&Actor::system("test"), Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap();
    AppState::new(service, config)
}

pub fn token(role: Role, sub: &str, doctor: Option<&str>) -> String {
    JwtKey::new(SECRET).sign(&Claims {
        sub: sub.into(),
        role,
        doctor_id: doctor.map(String::from),
        exp: Utc::now().timestamp() + 3600,
    })
}

pub fn admin(sub: &str) -> String {
    token(Role::Admin, sub, None)
}

pub fn doctor(id: &str) -> String {
    token(Role::Doctor, &format!("user-{id}"), Some(id))
}

/// Serves `app` on a free local port, with the peer address as the demo server has it; returns the base URL.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}
