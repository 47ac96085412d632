//! The whole router (`payout_server::router`) through `tower::ServiceExt::oneshot`, over a fresh
//! in-memory service with simulated providers and January calculated, for every input.
//!
//! Input: the first line is `METHOD /path?query`, then header lines, an empty line and the body (see
//! `payouts_fuzz::message`). Before parsing, `{id0}`, `{id1}`, `{id2}` become real payout ids,
//! `{admin}` and `{doctor}` valid tokens and `{sim}` the simulated providers' webhook token.
//!
//! Properties: no panic; no 5xx (nothing here can be unavailable); every 4xx under `/api/` is a JSON
//! error `{"error":{"code","message"}}`.
#![no_main]

use std::sync::Arc;

use axum::body::Body;
use chrono::{NaiveDate, TimeZone, Utc};
use http::Request;
use libfuzzer_sys::fuzz_target;
use payout_core::domain::{Actor, BankAccount, Consultation, Period, Provider, Recipient};
use payout_core::memory::MemoryStore;
use payout_core::service::{CalculationPolicy, PayoutService};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::store::{Page, PayoutFilter};
use payout_server::{AppState, Claims, JwtKey, Role, ServerConfig, router};
use payouts_fuzz::{block_on, message};
use tower::ServiceExt;

const SECRET: &str = "fuzz-secret";
const SIM: &str = "fuzz-sim-token";

fn service() -> Arc<PayoutService> {
    let doctors = ["dr-a", "dr-b", "dr-c"];
    let recipients: Vec<Recipient> = doctors
        .iter()
        .map(|d| Recipient {
            doctor_id: (*d).into(),
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
        .collect();
    let consultations: Vec<Consultation> = doctors
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            (0..=i).map(move |n| Consultation {
                appointment_id: format!("apt-{d}-{n}"),
                doctor_id: (*d).into(),
                completed_at: Utc.with_ymd_and_hms(2025, 1, 10 + n as u32, 9, 0, 0).unwrap(),
            })
        })
        .collect();
    let mut b = PayoutService::builder()
        .store(Arc::new(MemoryStore::new()))
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(recipients)));
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM),
        ));
    }
    Arc::new(b.build().expect("a service"))
}

fn token(role: Role, doctor: Option<&str>) -> String {
    JwtKey::new(SECRET).sign(&Claims {
        sub: "fuzz-user".into(),
        role,
        doctor_id: doctor.map(String::from),
        exp: Utc::now().timestamp() + 3600,
    })
}

fn replace(bytes: &[u8], subs: &[(String, String)]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let mut s = s.to_string();
            for (k, v) in subs {
                s = s.replace(k.as_str(), v);
            }
            s.into_bytes()
        }
        Err(_) => bytes.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    block_on(async {
        let service = service();
        let jan = Period::new(
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
        )
        .unwrap();
        service
            .calculate_period(&Actor::system("fuzz"), Some(jan), &CalculationPolicy::default())
            .await
            .expect("calculated");
        let ids: Vec<String> = service
            .store()
            .list(&PayoutFilter::default(), &Page::new(10, 0))
            .await
            .expect("listed")
            .payouts
            .into_iter()
            .map(|p| p.id.to_string())
            .collect();
        let mut subs: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("{{id{i}}}"), id.clone()))
            .collect();
        subs.push(("{admin}".into(), token(Role::Admin, None)));
        subs.push(("{doctor}".into(), token(Role::Doctor, Some("dr-c"))));
        subs.push(("{sim}".into(), SIM.into()));
        let data = replace(data, &subs);
        let Some(m) = message(&data) else { return };
        let Some((method, uri)) = m.first.split_once(' ') else {
            return;
        };
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in &m.headers {
            req = req.header(*k, *v);
        }
        let Ok(req) = req.body(Body::from(m.body.to_vec())) else {
            return;
        };
        let is_head = req.method() == http::Method::HEAD;
        let path = req.uri().path().to_string();
        let config = ServerConfig {
            webhook_rate: None,
            mutation_rate: None,
            ..ServerConfig::new(SECRET)
        };
        let app = router(AppState::new(service, config));
        let res = app.oneshot(req).await.expect("infallible");
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(res.into_body(), 64 << 20).await.expect("the body");
        assert!(
            !status.is_server_error(),
            "{status} for {method} {uri}: {}",
            String::from_utf8_lossy(&body)
        );
        if path.starts_with("/api/") && status.is_client_error() && !is_head {
            assert!(
                content_type.starts_with("application/json"),
                "{status} for {method} {uri} is {content_type:?}: {}",
                String::from_utf8_lossy(&body)
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
            assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
            assert!(v["error"]["message"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
        }
    });
});
