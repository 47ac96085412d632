//! The doctor's side of the API: a doctor's own payout with its items (another doctor's is 404),
//! the doctor view's exact fields (list and detail), statements in HTML and CSV (premium only for
//! doctors, any for admins), and the year's summary with a deduction and a returned payout.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use common::*;
use payout_core::calculation::Deduction;
use payout_core::clock::ManualClock;
use payout_core::domain::{Actor, Payout, PayoutId, Provider};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::premium::{Plan, StaticSubscriptions, Subscription, SubscriptionStatus};
use payout_core::service::{CalculationPolicy, ManualPayout, PayoutService};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::store::{Page, PayoutFilter};
use payout_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const PLATFORM: &str = "Afya <Telehealth>";

struct Setup {
    app: axum::Router,
    service: Arc<PayoutService>,
}

async fn call(app: &axum::Router, uri: &str, token: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json_of(app: &axum::Router, uri: &str, token: &str) -> (StatusCode, Value) {
    let (s, h, body) = call(app, uri, token).await;
    assert!(
        h["content-type"].to_str().unwrap().starts_with("application/json"),
        "{uri}: {h:?}"
    );
    (s, serde_json::from_str(&body).unwrap())
}

async fn webhook(service: &PayoutService, provider: Provider, reference: &str, event: &str, status: &str) {
    let body = json!({"eventId": event, "reference": reference, "status": status});
    let mut headers = http::HeaderMap::new();
    headers.insert("x-simulation-token", SIM_TOKEN.parse().unwrap());
    service
        .handle_webhook(provider, &headers, body.to_string().as_bytes())
        .await
        .unwrap();
}

/// Pays `id` through `provider` (approved by `approver`): PROCESSING, then the provider's PAID.
async fn pay(service: &PayoutService, id: &PayoutId, approver: &str, provider: Provider, event: &str) -> Payout {
    service.approve(&Actor::admin(approver), id).await.unwrap();
    let sent = service.trigger(&Actor::admin(approver), id, provider).await.unwrap();
    webhook(
        service,
        provider,
        sent.provider_reference.as_deref().unwrap(),
        event,
        "PAID",
    )
    .await;
    service.get(&Actor::admin("check"), id).await.unwrap()
}

async fn payout_of(service: &PayoutService, doctor: &str) -> Payout {
    let filter = PayoutFilter {
        doctor_id: Some(doctor.into()),
        ..Default::default()
    };
    let page = service
        .list(&Actor::admin("check"), &filter, &Page::new(10, 0))
        .await
        .unwrap();
    page.payouts.into_iter().last().unwrap()
}

/// January 2025 calculated with a 10% platform fee on 2 February (dr-a 1 consultation, dr-b 2,
/// dr-c 3; dr-c is premium), served with a platform name that needs escaping.
async fn setup() -> Setup {
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 2, 8, 0, 0).unwrap()));
    let subs = StaticSubscriptions::new([(
        "dr-c".to_string(),
        Subscription {
            plan: Plan::Premium,
            status: SubscriptionStatus::Active,
            current_period_end: None,
        },
    )]);
    let mut b = PayoutService::builder()
        .store(Arc::new(MemoryStore::new()))
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(Arc::new(StaticDirectory::new(doctors())))
        .subscriptions(Arc::new(subs))
        .clock(clock);
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM_TOKEN),
        ));
    }
    let service = Arc::new(b.build().unwrap());
    let policy = CalculationPolicy {
        deductions: vec![Deduction {
            name: "platform_fee".into(),
            percent: 10.into(),
        }],
        ..CalculationPolicy::default()
    };
    service
        .calculate_period(&Actor::system("test"), Some(jan()), &policy)
        .await
        .unwrap();
    let config = ServerConfig {
        platform_name: PLATFORM.into(),
        ..ServerConfig::new(SECRET)
    };
    Setup {
        app: payout_server::router(AppState::new(service.clone(), config)),
        service,
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every field a doctor's payout shows; nothing internal (notes, createdBy, approvedBy, approval,
/// resolution, hold reasons, version).
const DOCTOR_VIEW: [&str; 12] = [
    "id",
    "doctorId",
    "status",
    "provider",
    "providerReference",
    "amountDue",
    "currency",
    "periodStart",
    "periodEnd",
    "createdAt",
    "processedAt",
    "onHold",
];

#[tokio::test]
async fn a_doctor_reads_their_own_payout_with_its_items_and_no_internal_field() {
    let Setup { app, service } = setup().await;
    let a = payout_of(&service, "dr-a").await;
    let b = payout_of(&service, "dr-b").await;
    // Something internal to leave out: a hold with the admin's reason, and a provider's notes.
    service
        .hold(&Actor::admin("admin-1"), &a.id, "checking the doctor's licence")
        .await
        .unwrap();

    let (s, body) = json_of(&app, &format!("/api/doctor/payouts/{}", a.id), &doctor("dr-a")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let view = &body["data"];
    let mut detail = set(&DOCTOR_VIEW);
    detail.insert("items".into());
    assert_eq!(keys(view), detail, "{view}");
    assert_eq!(keys(&body), set(&["data"]));
    assert_eq!(view["onHold"], true);
    assert_eq!(view["amountDue"], "450.00");
    let text = body.to_string();
    for internal in ["licence", "admin-1", "system:", "fingerprint", "notes"] {
        assert!(!text.contains(internal), "{internal} leaked: {text}");
    }
    let items = view["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "a consultation and the fee: {items:?}");
    for item in items {
        assert_eq!(
            keys(item),
            set(&["kind", "reference", "description", "amount", "currency", "occurredAt"])
        );
    }
    assert_eq!(items[0]["kind"], "CONSULTATION");
    assert_eq!(items[0]["reference"], "apt-dr-a-0");
    assert_eq!(items[1]["kind"], "DEDUCTION");
    assert_eq!(items[1]["amount"], "-50.00");

    // The list shows the same view, without items.
    let (s, list) = json_of(&app, "/api/doctor/payouts", &doctor("dr-a")).await;
    assert_eq!(s, StatusCode::OK);
    let rows = list["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(keys(&rows[0]), set(&DOCTOR_VIEW), "{}", rows[0]);
    assert!(!list.to_string().contains("licence"));

    // Another doctor's payout is not found, exactly like one that does not exist.
    let (s, other) = json_of(&app, &format!("/api/doctor/payouts/{}", b.id), &doctor("dr-a")).await;
    let (s2, missing) = json_of(&app, "/api/doctor/payouts/no-such-payout", &doctor("dr-a")).await;
    assert_eq!((s, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(other["error"]["code"], "not_found");
    assert_eq!(missing["error"]["code"], "not_found");
    // An admin uses the admin routes; a doctor's routes are a doctor's.
    let (s, _) = json_of(&app, &format!("/api/doctor/payouts/{}", a.id), &admin("admin-1")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn statements_are_printable_masked_and_csv_is_premium() {
    let Setup { app, service } = setup().await;
    let a = payout_of(&service, "dr-a").await;
    let c = payout_of(&service, "dr-c").await;
    let paid = pay(&service, &a.id, "admin-1", Provider::MpesaB2c, "evt-a").await;
    let reference = paid.provider_reference.clone().unwrap();

    let (s, h, html) = call(
        &app,
        &format!("/api/doctor/payouts/{}/statement", a.id),
        &doctor("dr-a"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(!html.contains("<script"), "no script");
    assert!(html.contains("@media print"), "print styles");
    assert!(
        html.contains("Afya &lt;Telehealth&gt;"),
        "the platform, escaped: {html}"
    );
    assert!(html.contains("2025-01-01 to 2025-01-31"), "the period");
    assert!(html.contains("apt-dr-a-0"), "each consultation");
    assert!(html.contains("platform_fee"), "each deduction");
    assert!(
        html.contains(r#"<tr id="total-gross"><td>Gross earnings</td><td class="amount">500.00 KES</td></tr>"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<tr class="total" id="total-net"><td>Net paid</td><td class="amount">450.00 KES</td></tr>"#),
        "{html}"
    );
    assert!(
        html.contains("M-Pesa 2547*****678 (MPESA_B2C)"),
        "the method, masked: {html}"
    );
    assert!(!html.contains("254712345678"), "never the whole phone");
    assert!(html.contains(&reference), "the provider's reference");
    assert!(html.contains(r#"<dd id="status">PAID</dd>"#));

    // Another doctor's statement is not found; an admin reads any, on the admin route.
    let (s, _, _) = call(
        &app,
        &format!("/api/doctor/payouts/{}/statement", c.id),
        &doctor("dr-a"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, admin_html) = call(
        &app,
        &format!("/api/admin/payouts/{}/statement", a.id),
        &admin("admin-1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(admin_html.contains("M-Pesa 2547*****678"));
    let (s, _, _) = call(&app, &format!("/api/admin/payouts/{}/statement", a.id), &doctor("dr-a")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // CSV: a doctor without earnings_export gets a clear 403; a premium doctor and admins get it.
    let (s, body) = json_of(
        &app,
        &format!("/api/doctor/payouts/{}/statement?format=csv", a.id),
        &doctor("dr-a"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "premium_required");
    assert_eq!(
        body["error"]["message"],
        "CSV statements needs a premium plan (the earnings_export feature)"
    );
    let (s, h, csv) = call(
        &app,
        &format!("/api/doctor/payouts/{}/statement?format=csv", c.id),
        &doctor("dr-c"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{csv}");
    assert!(h["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"statement-")
    );
    let rows: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(
        rows[0],
        "payoutId,periodStart,periodEnd,status,kind,reference,occurredAt,description,amount,currency"
    );
    assert_eq!(rows.len(), 1 + 3 + 1, "three consultations and the fee");
    let sum = Money::sum(
        Currency::KES,
        &rows[1..]
            .iter()
            .map(|r| Money::parse(r.rsplit(',').nth(1).unwrap(), Currency::KES).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(sum, c.amount_due, "the rows add up to the payout");
    let (s, _, admin_csv) = call(
        &app,
        &format!("/api/admin/payouts/{}/statement?format=csv", a.id),
        &admin("admin-1"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(admin_csv.contains(",DEDUCTION,platform_fee,"), "{admin_csv}");
    let (s, body) = json_of(
        &app,
        &format!("/api/doctor/payouts/{}/statement?format=pdf", a.id),
        &doctor("dr-a"),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
}

#[tokio::test]
async fn the_year_counts_what_was_paid_with_its_deductions_and_lists_what_came_back() {
    let Setup { app, service } = setup().await;
    let a = payout_of(&service, "dr-a").await;
    pay(&service, &a.id, "admin-1", Provider::MpesaB2c, "evt-a").await;
    // A bonus paid, then returned by the bank.
    let bonus = service
        .create_manual(
            &Actor::admin("admin-1"),
            ManualPayout {
                doctor_id: "dr-a".into(),
                amount: Money::parse("200", Currency::KES).unwrap(),
                period: Some(jan()),
                notes: None,
            },
        )
        .await
        .unwrap();
    let bonus = pay(&service, &bonus.id, "admin-2", Provider::BankTransfer, "evt-bonus").await;
    webhook(
        &service,
        Provider::BankTransfer,
        bonus.provider_reference.as_deref().unwrap(),
        "evt-bonus-back",
        "RETURNED",
    )
    .await;
    // dr-b's payout, paid too, is not dr-a's.
    let b = payout_of(&service, "dr-b").await;
    pay(&service, &b.id, "admin-1", Provider::MpesaB2c, "evt-b").await;

    let (s, body) = json_of(&app, "/api/doctor/statements/2025", &doctor("dr-a")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let y = &body["data"];
    assert_eq!(y["doctorId"], "dr-a");
    assert_eq!(y["year"], 2025);
    assert_eq!(
        y["totals"],
        json!([{
            "currency": "KES",
            "payouts": 1,
            "consultations": 1,
            "gross": "500.00",
            "deductions": [{"name": "platform_fee", "amount": "50.00"}],
            "deducted": "50.00",
            "netPaid": "450.00",
            "returned": 1,
            "returnedAmount": "200.00",
        }])
    );
    assert_eq!(y["paid"].as_array().unwrap().len(), 1);
    assert_eq!(y["paid"][0]["id"], a.id.as_str());
    assert_eq!(y["returned"][0]["id"], bonus.id.as_str());
    assert_eq!(y["returned"][0]["status"], "RETURNED");

    // Nothing in 2024; the HTML form; an admin reads anyone's year; bad years are refused.
    let (_, before) = json_of(&app, "/api/doctor/statements/2024", &doctor("dr-a")).await;
    assert_eq!(before["data"]["totals"], json!([]));
    let (s, h, html) = call(&app, "/api/doctor/statements/2025?format=html", &doctor("dr-a")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        html.contains(r#"<tr class="total" id="net-KES"><td>Net paid</td><td class="amount">450.00 KES</td></tr>"#),
        "{html}"
    );
    assert!(!html.contains("<script"));
    let (s, by_admin) = json_of(&app, "/api/admin/doctors/dr-a/statements/2025", &admin("admin-1")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(by_admin, body);
    let (s, _) = json_of(&app, "/api/admin/doctors/dr-a/statements/2025", &doctor("dr-a")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for bad in ["1999", "twenty", "20250"] {
        let (s, e) = json_of(&app, &format!("/api/doctor/statements/{bad}"), &doctor("dr-a")).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_input")),
            "{bad}"
        );
    }
}
