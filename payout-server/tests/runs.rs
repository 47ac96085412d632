//! The runs and holds API with `oneshot` (issue 17): runs listed, made from a selection, read with
//! their totals, approved, triggered with each doctor's method (results kept), retried (only the
//! confirmed failures); the funds gate (409 `funds_shortfall` until one admin requests and a second
//! confirms an override); holds of a payout and of a doctor, with four eyes on release and the
//! reason shown wherever the payout is.

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use common::*;
use payout_core::ProviderError;
use payout_core::domain::{Actor, Provider};
use payout_core::funds::{BalanceAnswer, BalanceSource};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{CalculationPolicy, PayoutService, ServicePolicy};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

/// Stripe's KES balance, as the test sets it.
struct Balance(Mutex<Money>);

#[async_trait]
impl BalanceSource for Balance {
    fn provider(&self) -> Provider {
        Provider::StripeConnect
    }
    async fn balance(&self) -> Result<BalanceAnswer, ProviderError> {
        Ok(BalanceAnswer::Known {
            available: vec![*self.0.lock().unwrap()],
            as_of: Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap(),
        })
    }
}

fn kes(s: &str) -> Money {
    Money::parse(s, Currency::KES).unwrap()
}

/// The shared doctors, each preferring Stripe; January calculated as a run (dr-a 500, dr-b 1000,
/// dr-c 1500 KES); simulated providers that settle by webhook; Stripe's balance is `balance`.
async fn app(balance: &str) -> axum::Router {
    app_and_service(balance).await.0
}

/// [`app`], with its service (to reach its store).
async fn app_and_service(balance: &str) -> (axum::Router, Arc<PayoutService>) {
    let doctors: Vec<payout_core::domain::Recipient> = doctors()
        .into_iter()
        .map(|mut d| {
            d.preferred_provider = Some(Provider::StripeConnect);
            d
        })
        .collect();
    let mut b = PayoutService::builder()
        .store(Arc::new(MemoryStore::new()))
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(Arc::new(StaticDirectory::new(doctors)))
        .policy(ServicePolicy {
            four_eyes: true,
            ..Default::default()
        })
        .balance_source(Arc::new(Balance(Mutex::new(kes(balance)))));
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM_TOKEN),
        ));
    }
    let service = Arc::new(b.build().unwrap());
    service
        .calculate_period(&Actor::system("test"), Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap();
    (
        payout_server::router(AppState::new(service.clone(), ServerConfig::new(SECRET))),
        service,
    )
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

fn get(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn send(method: &str, uri: &str, token: &str, body: Value) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn post(uri: &str, token: &str, body: Value) -> Request<Body> {
    send("POST", uri, token, body)
}

/// The calculation's run id.
async fn the_run(app: &axum::Router, token: &str) -> String {
    let (s, runs) = call(app, get("/api/admin/runs", token)).await;
    assert_eq!(s, StatusCode::OK, "{runs}");
    runs["data"][0]["run"]["id"].as_str().unwrap().to_string()
}

/// The id of `doctor`'s payout (each has one).
async fn payout_of(app: &axum::Router, token: &str, doctor: &str) -> Value {
    let (_, list) = call(app, get(&format!("/api/admin/payouts?doctor={doctor}"), token)).await;
    assert_eq!(list["pagination"]["total"], 1, "{list}");
    list["data"][0].clone()
}

/// A simulated Stripe webhook settling `reference` as `status`.
fn webhook(event: &str, reference: &str, status: &str) -> Request<Body> {
    Request::post("/api/webhooks/stripe-payouts")
        .header("x-simulation-token", SIM_TOKEN)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"eventId": event, "reference": reference, "status": status}).to_string(),
        ))
        .unwrap()
}

fn actions(run: &Value) -> Vec<String> {
    run["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn runs_are_listed_made_read_approved_triggered_and_their_failures_retried() {
    let app = app("100000").await;
    let a = admin("admin-1");

    let (s, runs) = call(&app, get("/api/admin/runs?limit=10", &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(runs["pagination"]["total"], 1);
    let run = &runs["data"][0];
    assert_eq!(run["run"]["kind"], "CALCULATION");
    assert_eq!(run["run"]["periodStart"], "2025-01-01");
    assert_eq!(run["totals"]["count"], 3);
    assert_eq!(run["totals"]["byCurrency"][0]["amount"], "3000.00");
    assert_eq!(run["totals"]["byStatus"][0]["status"], "PENDING");
    assert_eq!(run["totals"]["byStatus"][0]["amounts"][0]["amount"], "3000.00");
    let id = run["run"]["id"].as_str().unwrap().to_string();

    // A run from a selection.
    let (s, made) = call(
        &app,
        post(
            "/api/admin/runs",
            &a,
            json!({"label": "Dr B only", "doctor": "dr-b", "status": "PENDING"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["data"]["run"]["kind"], "SELECTION");
    assert_eq!(made["data"]["totals"]["count"], 1);
    assert_eq!(made["data"]["totals"]["byCurrency"][0]["amount"], "1000.00");
    let (s, none) = call(
        &app,
        post("/api/admin/runs", &a, json!({"label": "Paid", "status": "PAID"})),
    )
    .await;
    assert_eq!(
        (s, none["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    let (s, _) = call(
        &app,
        post("/api/admin/runs", &a, json!({"label": "x", "colour": "red"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown fields are refused");
    let (_, runs) = call(&app, get("/api/admin/runs", &a)).await;
    assert_eq!(runs["pagination"]["total"], 2);
    assert_eq!(runs["data"][0]["run"]["label"], "Dr B only", "newest first");

    // Approve, check the funds, trigger with each doctor's method (Stripe).
    let (s, report) = call(&app, post(&format!("/api/admin/runs/{id}/approve"), &a, json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        (report["data"]["considered"].as_u64(), report["data"]["ok"].as_u64()),
        (Some(3), Some(3))
    );
    let (s, funds) = call(&app, get(&format!("/api/admin/runs/{id}/funds"), &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(funds["data"]["blocked"], false);
    assert_eq!(funds["data"]["planned"], 3);
    assert_eq!(funds["data"]["lines"][0]["provider"], "STRIPE_CONNECT");
    assert_eq!(funds["data"]["lines"][0]["needed"], "3000.00");
    assert_eq!(funds["data"]["lines"][0]["available"], "100000.00");
    assert_eq!(funds["data"]["lines"][0]["state"], "ENOUGH");
    let (s, mpesa) = call(&app, get(&format!("/api/admin/runs/{id}/funds?provider=MPESA_B2C"), &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        mpesa["data"]["lines"][0]["state"], "UNKNOWN",
        "M-Pesa has no balance source here"
    );
    let (s, report) = call(&app, post(&format!("/api/admin/runs/{id}/trigger"), &a, json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        (report["data"]["ok"].as_u64(), report["data"]["failed"].as_u64()),
        (Some(3), Some(0))
    );

    // The provider fails dr-a's payout, pays dr-b's; dr-c's stays PROCESSING (unknown, not failed).
    let pa = payout_of(&app, &a, "dr-a").await;
    let pb = payout_of(&app, &a, "dr-b").await;
    assert_eq!(pa["status"], "PROCESSING");
    assert_eq!(pa["provider"], "STRIPE_CONNECT");
    let (s, _) = call(
        &app,
        webhook("evt_a", pa["providerReference"].as_str().unwrap(), "FAILED"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &app,
        webhook("evt_b", pb["providerReference"].as_str().unwrap(), "PAID"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let (s, page) = call(&app, get(&format!("/api/admin/runs/{id}"), &a)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let d = &page["data"];
    assert_eq!(d["failed"], 1);
    assert_eq!(d["held"], 0);
    assert_eq!(d["failedPayouts"]["data"][0]["doctorId"], "dr-a");
    assert_eq!(d["results"]["pagination"]["total"], 6, "3 approvals, 3 sends");
    assert_eq!(d["results"]["data"][5]["action"], "TRIGGER");
    assert_eq!(d["results"]["data"][5]["provider"], "STRIPE_CONNECT");
    assert_eq!(actions(&page), ["CREATE", "APPROVE", "TRIGGER"]);
    let by_status: Vec<(&str, u64)> = d["totals"]["byStatus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["status"].as_str().unwrap(), t["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_status, [("PROCESSING", 1), ("PAID", 1), ("FAILED", 1)]);
    assert_eq!(d["totals"]["byProvider"][0]["provider"], "STRIPE_CONNECT");

    // Retry-failed touches only the confirmed failure.
    let pc_before = payout_of(&app, &a, "dr-c").await;
    let (s, report) = call(&app, post(&format!("/api/admin/runs/{id}/retry-failed"), &a, json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["data"]["action"], "RETRY_FAILED");
    assert_eq!(
        (report["data"]["considered"].as_u64(), report["data"]["ok"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(payout_of(&app, &a, "dr-a").await["status"], "PROCESSING");
    assert_eq!(payout_of(&app, &a, "dr-b").await["status"], "PAID");
    let pc = payout_of(&app, &a, "dr-c").await;
    assert_eq!(pc["status"], "PROCESSING");
    assert_eq!(
        pc["version"], pc_before["version"],
        "the unknown outcome is not touched"
    );
    let (s, results) = call(&app, get(&format!("/api/admin/runs/{id}/results?limit=2&skip=6"), &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(results["pagination"]["total"], 7);
    assert_eq!(results["data"].as_array().unwrap().len(), 1);
    assert_eq!(results["data"][0]["action"], "RETRY_FAILED");
    assert_eq!(results["data"][0]["payoutId"], pa["id"]);

    let (s, members) = call(
        &app,
        get(&format!("/api/admin/runs/{id}/payouts?status=PROCESSING&limit=10"), &a),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members["pagination"]["total"], 2);
    let (s, listed) = call(&app, get(&format!("/api/admin/payouts?run={id}&status=PAID"), &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(listed["pagination"]["total"], 1);
    assert_eq!(listed["data"][0]["doctorId"], "dr-b");

    // Unknown runs, bad ids, wrong roles.
    let (s, e) = call(&app, get("/api/admin/runs/run_nope", &a)).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("run_not_found"))
    );
    let (s, e) = call(&app, post("/api/admin/runs/run_nope/trigger", &a, json!({}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("run_not_found"))
    );
    let (s, _) = call(&app, get(&format!("/api/admin/runs/{id}/payouts?status=NOPE"), &a)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&app, get("/api/admin/runs", &doctor("dr-a"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_shortfall_is_409_until_a_second_admin_confirms_an_override() {
    let app = app("2999.99").await;
    let (a, b) = (admin("admin-1"), admin("admin-2"));
    let id = the_run(&app, &a).await;
    call(&app, post(&format!("/api/admin/runs/{id}/approve"), &a, json!({}))).await;

    let (_, funds) = call(&app, get(&format!("/api/admin/runs/{id}/funds"), &a)).await;
    assert_eq!(funds["data"]["blocked"], true);
    assert_eq!(funds["data"]["lines"][0]["state"], "SHORTFALL");
    assert_eq!(funds["data"]["lines"][0]["shortBy"], "0.01");

    let trigger = || post(&format!("/api/admin/runs/{id}/trigger"), &a, json!({}));
    let (s, e) = call(&app, trigger()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("funds_shortfall"))
    );
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("STRIPE_CONNECT KES: needs 3000.00, holds 2999.99, short by 0.01"),
        "{message}"
    );
    let (_, approved) = call(&app, get("/api/admin/payouts?status=APPROVED", &a)).await;
    assert_eq!(approved["pagination"]["total"], 3, "nothing sent");

    let route = format!("/api/admin/runs/{id}/funds-override");
    let (s, run) = call(
        &app,
        post(
            &route,
            &a,
            json!({"action": "request", "reason": "top-up lands at noon"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["data"]["fundsOverride"]["confirmed"], false);
    assert_eq!(run["data"]["fundsOverride"]["requestedBy"], "admin:admin-1");
    let (s, e) = call(&app, post(&route, &a, json!({"action": "confirm"}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("second admin"));
    let (s, _) = call(&app, trigger()).await;
    assert_eq!(s, StatusCode::CONFLICT, "a request alone does not unblock");
    let (s, _) = call(&app, post(&route, &b, json!({"action": "request", "reason": "again"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "one override per run");
    let (s, _) = call(&app, post(&route, &b, json!({"action": "request"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a request needs a reason");
    let (s, _) = call(&app, post(&route, &b, json!({"action": "approve"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, run) = call(&app, post(&route, &b, json!({"action": "confirm"}))).await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["data"]["fundsOverride"]["confirmed"], true);
    assert_eq!(run["data"]["fundsOverride"]["confirmedBy"], "admin:admin-2");
    let (_, funds) = call(&app, get(&format!("/api/admin/runs/{id}/funds"), &a)).await;
    assert_eq!(funds["data"]["blocked"], false);
    assert_eq!(funds["data"]["lines"][0]["state"], "SHORTFALL", "still shown");

    let (s, report) = call(&app, trigger()).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["data"]["ok"], 3);
    let (_, page) = call(&app, get(&format!("/api/admin/runs/{id}"), &a)).await;
    assert_eq!(
        actions(&page),
        [
            "CREATE",
            "APPROVE",
            "FUNDS_OVERRIDE_REQUESTED",
            "FUNDS_OVERRIDE_CONFIRMED",
            "TRIGGER"
        ]
    );
    assert_eq!(page["data"]["run"]["fundsOverride"]["reason"], "top-up lands at noon");
    let (s, e) = call(
        &app,
        post(
            "/api/admin/runs/run_nope/funds-override",
            &b,
            json!({"action": "confirm"}),
        ),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("run_not_found"))
    );
}

#[tokio::test]
async fn holds_show_their_reason_block_sends_and_are_released_by_a_second_admin() {
    let app = app("100000").await;
    let (a, b) = (admin("admin-1"), admin("admin-2"));
    let id = the_run(&app, &a).await;
    let pa = payout_of(&app, &a, "dr-a").await;
    let pa_id = pa["id"].as_str().unwrap().to_string();
    let payout_route = format!("/api/admin/payouts/{pa_id}");

    // A payout's own hold.
    let (s, held) = call(
        &app,
        send(
            "PATCH",
            &payout_route,
            &a,
            json!({"action": "hold", "reason": "IBAN in doubt"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{held}");
    assert_eq!(held["data"]["hold"]["active"], true);
    assert_eq!(held["data"]["hold"]["scope"], "PAYOUT");
    assert_eq!(held["data"]["hold"]["reason"], "IBAN in doubt");
    let (s, _) = call(
        &app,
        send("PATCH", &payout_route, &a, json!({"action": "hold", "reason": " "})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, list) = call(&app, get("/api/admin/payouts?held=true", &a)).await;
    assert_eq!(list["pagination"]["total"], 1);
    assert_eq!(list["data"][0]["hold"]["reason"], "IBAN in doubt");
    call(&app, send("PATCH", &payout_route, &a, json!({"action": "approve"}))).await;
    let (s, e) = call(
        &app,
        send(
            "PATCH",
            &payout_route,
            &a,
            json!({"action": "trigger", "provider": "STRIPE_CONNECT"}),
        ),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("on_hold"))
    );
    assert!(e["error"]["message"].as_str().unwrap().contains("IBAN in doubt"));
    // Four eyes: not by the admin who held it.
    let (s, _) = call(&app, send("PATCH", &payout_route, &a, json!({"action": "release"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, released) = call(&app, send("PATCH", &payout_route, &b, json!({"action": "release"}))).await;
    assert_eq!(s, StatusCode::OK, "{released}");
    assert_eq!(released["data"]["hold"]["active"], false);
    assert_eq!(released["data"]["hold"]["releasedBy"], "admin:admin-2");
    let (s, _) = call(&app, send("PATCH", &payout_route, &b, json!({"action": "release"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "not on hold any more");

    // A doctor's hold.
    let doctor_route = "/api/admin/doctors/dr-b/hold";
    let (s, hold) = call(
        &app,
        post(doctor_route, &a, json!({"action": "hold", "reason": "identity check"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{hold}");
    assert_eq!(hold["data"]["hold"]["doctorId"], "dr-b");
    assert_eq!(hold["data"]["payouts"].as_array().unwrap().len(), 1);
    let (s, e) = call(
        &app,
        post(doctor_route, &b, json!({"action": "hold", "reason": "again"})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("doctor_already_held"))
    );
    let (s, holds) = call(&app, get("/api/admin/doctors/holds?limit=5", &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(holds["pagination"]["total"], 1);
    assert_eq!(holds["data"][0]["reason"], "identity check");

    // The run sends the others and keeps dr-b's payout back, saying why.
    call(&app, post(&format!("/api/admin/runs/{id}/approve"), &a, json!({}))).await;
    let (s, report) = call(&app, post(&format!("/api/admin/runs/{id}/trigger"), &a, json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        (report["data"]["ok"].as_u64(), report["data"]["held"].as_u64()),
        (Some(2), Some(1))
    );
    let pb = payout_of(&app, &a, "dr-b").await;
    assert_eq!(pb["status"], "APPROVED");
    assert_eq!(pb["hold"]["scope"], "DOCTOR");
    assert_eq!(pb["hold"]["reason"], "identity check");
    let (_, page) = call(&app, get(&format!("/api/admin/runs/{id}"), &a)).await;
    let d = &page["data"];
    assert_eq!(d["held"], 1);
    assert_eq!(d["heldPayouts"]["data"][0]["id"], pb["id"]);
    assert_eq!(d["heldPayouts"]["data"][0]["hold"]["reason"], "identity check");
    let refused = d["results"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["payoutId"] == pb["id"] && r["action"] == "TRIGGER")
        .unwrap();
    assert_eq!(refused["ok"], false);
    assert!(
        refused["message"].as_str().unwrap().contains("identity check"),
        "{refused}"
    );
    let (_, held) = call(&app, get(&format!("/api/admin/runs/{id}/payouts?held=true"), &a)).await;
    assert_eq!(held["pagination"]["total"], 1);

    let (s, _) = call(&app, post(doctor_route, &a, json!({"action": "release"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "four eyes");
    let (s, released) = call(&app, post(doctor_route, &b, json!({"action": "release"}))).await;
    assert_eq!(s, StatusCode::OK, "{released}");
    assert_eq!(released["data"]["payouts"].as_array().unwrap().len(), 1);
    assert_eq!(payout_of(&app, &a, "dr-b").await["hold"]["active"], false);
    let (s, e) = call(&app, post(doctor_route, &b, json!({"action": "release"}))).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("doctor_not_held"))
    );
    let (_, holds) = call(&app, get("/api/admin/doctors/holds", &a)).await;
    assert_eq!(holds["pagination"]["total"], 0);
}

/// Acceptance of issue 17 ("which payouts are held, failed or need attention"): a run's page
/// counts its payouts on the attention queue (flagged by reconciliation, or because their money
/// came back) and lists the first of them with reason and since when; RETURNED and REVERSED keep
/// their own count; `/attention` pages through them; another run sees only its own.
#[tokio::test]
async fn a_runs_page_shows_its_payouts_that_need_attention() {
    use payout_core::domain::PayoutId;
    use payout_core::store::{FollowUp, PayoutChange};

    let (app, service) = app_and_service("100000").await;
    let a = admin("admin-1");
    let id = the_run(&app, &a).await;
    let (s, page) = call(&app, get(&format!("/api/admin/runs/{id}"), &a)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(
        (&page["data"]["attention"], &page["data"]["returned"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(page["data"]["attentionPayouts"]["data"], json!([]));
    call(&app, post(&format!("/api/admin/runs/{id}/approve"), &a, json!({}))).await;
    let (s, report) = call(&app, post(&format!("/api/admin/runs/{id}/trigger"), &a, json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let (s, dr_b_run) = call(
        &app,
        post("/api/admin/runs", &a, json!({"label": "Dr B", "doctor": "dr-b"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{dr_b_run}");
    let dr_b_run = dr_b_run["data"]["run"]["id"].as_str().unwrap().to_string();

    // dr-c's payout waits in PROCESSING with no answer: reconciliation flags it (an hour ago).
    let pc = payout_of(&app, &a, "dr-c").await;
    let store = service.store().clone();
    let stored = store.get(&PayoutId::new(pc["id"].as_str().unwrap())).await.unwrap();
    let flagged_at = Utc::now() - chrono::Duration::hours(1);
    let mut flag = PayoutChange::of(&stored, flagged_at);
    flag.follow_up =
        Some(FollowUp::check_at(Utc::now() + chrono::Duration::hours(1)).flagged("no answer from the provider"));
    store.apply(flag).await.unwrap();
    // dr-b's is paid, then its money comes back: flagged by the change. dr-a's is paid: not flagged.
    let pb = payout_of(&app, &a, "dr-b").await;
    let pa = payout_of(&app, &a, "dr-a").await;
    let b_ref = pb["providerReference"].as_str().unwrap();
    for (event, reference, status) in [
        ("evt_b_paid", b_ref, "PAID"),
        ("evt_b_returned", b_ref, "RETURNED"),
        ("evt_a_paid", pa["providerReference"].as_str().unwrap(), "PAID"),
    ] {
        let (s, _) = call(&app, webhook(event, reference, status)).await;
        assert_eq!(s, StatusCode::OK, "{event}");
    }

    let (s, page) = call(&app, get(&format!("/api/admin/runs/{id}"), &a)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let d = &page["data"];
    assert_eq!(d["attention"], 2, "dr-c's flagged and dr-b's returned: {d}");
    assert_eq!(d["returned"], 1, "dr-b's RETURNED, from the totals");
    let flagged = d["attentionPayouts"]["data"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = flagged
        .iter()
        .map(|p| {
            (
                p["doctorId"].as_str().unwrap(),
                p["attention"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("dr-c", "no answer from the provider"),
            ("dr-b", "RETURNED: the money came back after it was paid")
        ],
        "oldest flag first, each with its reason"
    );
    assert_eq!(flagged[0]["status"], "PROCESSING");
    assert_eq!(flagged[1]["status"], "RETURNED");
    let since: chrono::DateTime<Utc> = serde_json::from_value(flagged[0]["attention"]["since"].clone()).unwrap();
    assert_eq!(since.timestamp(), flagged_at.timestamp(), "since when");
    assert_eq!(d["attentionPayouts"]["pagination"]["total"], 2);

    let (s, second) = call(&app, get(&format!("/api/admin/runs/{id}/attention?limit=1&skip=1"), &a)).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_eq!(second["pagination"]["total"], 2);
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["data"][0]["id"], pb["id"]);
    assert_eq!(
        second["data"][0]["attention"]["reason"],
        "RETURNED: the money came back after it was paid"
    );
    let (_, only_b) = call(&app, get(&format!("/api/admin/runs/{dr_b_run}"), &a)).await;
    assert_eq!(
        only_b["data"]["attention"], 1,
        "another run: its own flagged payouts only"
    );
    assert_eq!(only_b["data"]["attentionPayouts"]["data"][0]["id"], pb["id"]);
    let (_, queue) = call(&app, get("/api/admin/payouts?attention=true", &a)).await;
    assert_eq!(
        queue["pagination"]["total"], 2,
        "the whole queue lists the same payouts"
    );

    let (s, e) = call(&app, get("/api/admin/runs/run_nope/attention", &a)).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("run_not_found"))
    );
    let (s, _) = call(&app, get(&format!("/api/admin/runs/{id}/attention?limit=0"), &a)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&app, get(&format!("/api/admin/runs/{id}/attention"), &doctor("dr-b"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
