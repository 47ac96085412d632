//! The operator's actions over HTTP: `409 details_changed` until a re-approval (one payout and in
//! bulk, and the dashboard says why), and `resolve` with four eyes through `confirm_resolution`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use payout_core::PayoutService;
use payout_core::domain::{Actor, AuditEntry, DoctorId, PayoutId, Provider, Recipient};
use payout_core::memory::MemoryStore;
use payout_core::service::CalculationPolicy;
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::{RecipientDirectory, StaticConsultations};
use payout_core::status::PayoutStatus;
use payout_core::store::{PayoutChange, PayoutStore};
use payout_server::{ServerConfig, router};
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Default)]
struct EditableDirectory(Mutex<HashMap<DoctorId, Recipient>>);

#[async_trait]
impl RecipientDirectory for EditableDirectory {
    async fn recipient(&self, doctor_id: &DoctorId) -> payout_core::Result<Option<Recipient>> {
        Ok(self.0.lock().unwrap().get(doctor_id).cloned())
    }
}

async fn setup() -> (axum::Router, Arc<EditableDirectory>, Vec<String>) {
    let (app, directory, ids, _) = setup_with_store().await;
    (app, directory, ids)
}

/// [`setup`], with the store the engine writes to.
async fn setup_with_store() -> (axum::Router, Arc<EditableDirectory>, Vec<String>, Arc<MemoryStore>) {
    let directory = Arc::new(EditableDirectory::default());
    for r in doctors() {
        directory.0.lock().unwrap().insert(r.doctor_id.clone(), r);
    }
    let store = Arc::new(MemoryStore::new());
    let mut b = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(directory.clone());
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM_TOKEN),
        ));
    }
    let service = Arc::new(b.build().unwrap());
    let report = service
        .calculate_period(&Actor::system("test"), Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap();
    let ids = report.created.iter().map(|id| id.to_string()).collect();
    let state = payout_server::AppState::new(service, ServerConfig::new(SECRET));
    (router(state), directory, ids, store)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

fn patch(id: &str, token: &str, body: Value) -> Request<Body> {
    Request::patch(format!("/api/admin/payouts/{id}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn bulk(token: &str, body: Value) -> Request<Body> {
    Request::post("/api/admin/payouts/bulk")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn dashboard(id: &str, token: &str) -> Request<Body> {
    Request::get(format!("/dashboard/admin/payouts/{id}"))
        .header("cookie", format!("payouts_token={token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_trigger_after_the_details_changed_is_409_details_changed_until_reapproved() {
    let (app, directory, ids) = setup().await;
    let a = admin("admin-1");
    for id in &ids {
        let (s, _, text) = call(&app, patch(id, &a, json!({"action": "approve"}))).await;
        assert_eq!(s, StatusCode::OK, "{text}");
    }
    let (_, body, _) = call(&app, patch(&ids[0], &a, json!({"action": "cancel"}))).await;
    assert_eq!(body["data"]["status"], "CANCELLED");
    // Every doctor moves their M-Pesa number.
    for r in directory.0.lock().unwrap().values_mut() {
        r.mpesa_phone_number = Some("254700000009".into());
    }
    let (s, body, _) = call(
        &app,
        patch(&ids[1], &a, json!({"action": "trigger", "provider": "MPESA_B2C"})),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("details_changed"))
    );

    let (s, _, html) = call(&app, dashboard(&ids[1], &a)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains("id=\"details-changed\""),
        "the dashboard says why: {html}"
    );
    assert!(html.contains("value=\"reapprove\""), "and offers the re-approval");

    // Bulk: refused per item.
    let (s, body, _) = call(
        &app,
        bulk(
            &a,
            json!({"payoutIds": [ids[1], ids[2]], "action": "trigger", "provider": "MPESA_B2C"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for r in body["data"].as_array().unwrap() {
        assert_eq!(r["error"]["code"], "details_changed", "{r}");
    }

    let (s, body, _) = call(&app, bulk(&a, json!({"payoutIds": [ids[1]], "action": "reapprove"}))).await;
    assert_eq!((s, &body["data"][0]["ok"]), (StatusCode::OK, &json!(true)), "{body}");
    let (s, body, _) = call(&app, patch(&ids[2], &a, json!({"action": "reapprove"}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["approval"]["approvers"], json!(["admin:admin-1"]));
    assert_eq!(
        body["data"]["approval"]["detailsFingerprint"].as_str().map(str::len),
        Some(64)
    );
    let (_, _, html_after) = call(&app, dashboard(&ids[2], &a)).await;
    assert!(!html_after.contains("id=\"details-changed\""));

    let (s, body, _) = call(
        &app,
        patch(&ids[1], &a, json!({"action": "trigger", "provider": "MPESA_B2C"})),
    )
    .await;
    assert_eq!(
        (s, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("PROCESSING"))
    );
}

/// A payout approved before migration `20261205000300_operator` (no details fingerprint) is
/// answered `409 details_changed` on trigger, one payout and in bulk, saying why; the dashboard
/// offers the re-approval, after which it is triggered.
#[tokio::test]
async fn an_approval_without_a_fingerprint_is_409_details_changed_until_reapproved() {
    let (app, _, ids, store) = setup_with_store().await;
    let a = admin("admin-1");
    let id = PayoutId::new(ids[0].as_str());
    let p = store.get(&id).await.unwrap();
    let mut legacy = PayoutChange::of(&p, p.updated_at);
    legacy.new_status = Some(PayoutStatus::Approved);
    legacy.patch.approved_by = Some("admin:before-the-upgrade".into());
    legacy.audit.push(AuditEntry {
        payout_id: id.clone(),
        actor: "admin:before-the-upgrade".into(),
        at: p.updated_at,
        action: "APPROVE".into(),
        from: Some(PayoutStatus::Pending),
        to: Some(PayoutStatus::Approved),
        detail: "approved before approvals recorded a details fingerprint".into(),
    });
    store.apply(legacy).await.unwrap();

    let trigger = json!({"action": "trigger", "provider": "MPESA_B2C"});
    let (s, body, _) = call(&app, patch(&ids[0], &a, trigger.clone())).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("details_changed")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("predates"), "says why: {message}");
    let (s, body, _) = call(
        &app,
        bulk(
            &a,
            json!({"payoutIds": [ids[0]], "action": "trigger", "provider": "MPESA_B2C"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["data"][0]["error"]["code"], "details_changed", "{body}");
    assert_eq!(store.get(&id).await.unwrap().status, PayoutStatus::Approved);

    let (_, _, html) = call(&app, dashboard(&ids[0], &a)).await;
    assert!(
        html.contains("id=\"details-changed\""),
        "the dashboard says why: {html}"
    );
    assert!(html.contains("value=\"reapprove\""), "and offers the re-approval");

    let (s, body, _) = call(&app, patch(&ids[0], &a, json!({"action": "reapprove"}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body, _) = call(&app, patch(&ids[0], &a, trigger)).await;
    assert_eq!(
        (s, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("PROCESSING")),
        "{body}"
    );
}

#[tokio::test]
async fn resolve_needs_a_second_admin_then_a_confirmed_failure_allows_a_retry() {
    let (app, _, ids) = setup().await;
    let (a, b) = (admin("admin-1"), admin("admin-2"));
    let id = &ids[0];
    call(&app, patch(id, &a, json!({"action": "approve"}))).await;
    let (_, body, _) = call(
        &app,
        patch(id, &a, json!({"action": "trigger", "provider": "MPESA_B2C"})),
    )
    .await;
    assert_eq!(body["data"]["status"], "PROCESSING");

    let (s, body, _) = call(&app, patch(id, &a, json!({"action": "resolve", "outcome": "FAILED"}))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_input"))
    );
    let (s, body, _) = call(&app, patch(id, &a, json!({"action": "retry"}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "no retry while PROCESSING: {body}");

    let resolve = json!({"action": "resolve", "outcome": "FAILED", "providerReference": "MP-0001",
                         "note": "Safaricom statement: no debit"});
    let (s, body, _) = call(&app, patch(id, &a, resolve)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "PROCESSING");
    assert_eq!(body["data"]["resolution"]["state"], "PENDING");
    assert_eq!(body["data"]["resolution"]["requestedBy"], "admin:admin-1");

    let (_, _, html) = call(&app, dashboard(id, &b)).await;
    assert!(html.contains("value=\"confirm_resolution\""), "{html}");

    let (s, body, _) = call(&app, patch(id, &a, json!({"action": "confirm_resolution"}))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (s, body, _) = call(&app, patch(id, &b, json!({"action": "confirm_resolution"}))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "FAILED");
    assert_eq!(body["data"]["resolution"]["state"], "CONFIRMED");

    let (s, body, _) = call(&app, patch(id, &a, json!({"action": "retry"}))).await;
    assert_eq!(
        (s, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("PROCESSING"))
    );
    let (_, audit, _) = call(
        &app,
        Request::get(format!("/api/admin/payouts/{id}/audit"))
            .header("authorization", format!("Bearer {a}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"RESOLVE_REQUESTED") && actions.contains(&"RESOLVE_CONFIRMED"),
        "{actions:?}"
    );

    let (s, body, _) = call(
        &app,
        patch(id, &a, json!({"action": "resolve", "outcome": "PAID", "note": "x"})),
    )
    .await;
    // The retry's attempt is in flight again: a resolution of it waits for its own evidence.
    assert_eq!(s, StatusCode::OK, "{body}");
}
