//! Router tests with `oneshot`: auth, the seed's workflow, validation, docs and health (metrics and request
//! ids: tests/observability.rs).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use payout_server::demo::app as demo_app;
use payout_server::{Role, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let json = if ct.starts_with("application/json") {
        serde_json::from_str(&text).unwrap()
    } else {
        Value::Null
    };
    (status, json, text)
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
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

/// `PATCH /api/admin/payouts/{id}`: an action on one payout.
fn patch(id: &str, token: &str, body: Value) -> Request<Body> {
    send("PATCH", &format!("/api/admin/payouts/{id}"), token, body)
}

async fn app() -> axum::Router {
    demo_app(calculated_state(ServerConfig::new(SECRET)).await)
}

#[tokio::test]
async fn auth_is_required_and_roles_are_enforced() {
    let app = app().await;
    let (s, body, _) = call(&app, get("/api/admin/payouts", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (s, _, _) = call(&app, get("/api/admin/payouts", Some("not.a.jwt"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let forged = payout_server::JwtKey::new("wrong-secret").sign(&payout_server::Claims {
        sub: "x".into(),
        role: Role::Admin,
        doctor_id: None,
        exp: chrono::Utc::now().timestamp() + 60,
    });
    assert_eq!(
        call(&app, get("/api/admin/payouts", Some(&forged))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let expired = payout_server::JwtKey::new(SECRET).sign(&payout_server::Claims {
        sub: "x".into(),
        role: Role::Admin,
        doctor_id: None,
        // Beyond the verifier's leeway.
        exp: chrono::Utc::now().timestamp() - 120,
    });
    let (s, body, _) = call(&app, get("/api/admin/payouts", Some(&expired))).await;
    assert_eq!(
        (s, body["error"]["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token expired"))
    );
    let (s, body, _) = call(&app, get("/api/admin/payouts", Some(&doctor("dr-a")))).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(
        call(&app, get("/api/doctor/payouts", Some(&admin("a1")))).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_seed_workflow_review_approve_trigger_webhook_paid() {
    let app = app().await;
    let a = admin("admin-1");
    // 1. Review pending payouts.
    let (s, list, _) = call(&app, get("/api/admin/payouts?status=PENDING", Some(&a))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["pagination"]["total"], 3);
    let first = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["doctorId"] == "dr-b")
        .unwrap()
        .clone();
    assert_eq!(first["amountDue"], "1000.00");
    assert_eq!(first["currency"], "KES");
    let id = first["id"].as_str().unwrap().to_string();
    // 2. Approve.
    let (s, body, _) = call(&app, patch(&id, &a, json!({"action": "approve"}))).await;
    assert_eq!((s, body["data"]["status"].as_str()), (StatusCode::OK, Some("APPROVED")));
    // 3. Trigger with a provider.
    let (s, body, _) = call(
        &app,
        patch(&id, &a, json!({"action": "trigger", "provider": "STRIPE_CONNECT"})),
    )
    .await;
    assert_eq!(
        (s, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("PROCESSING"))
    );
    assert_eq!(body["data"]["provider"], "STRIPE_CONNECT");
    let reference = body["data"]["providerReference"].as_str().unwrap().to_string();
    assert!(reference.starts_with("sim_"));
    // 4. The provider's webhook marks it paid; a repeat is a no-op.
    let hook = json!({"eventId": "evt_1", "reference": reference, "status": "PAID"}).to_string();
    let webhook = || {
        Request::post("/api/webhooks/stripe-payouts")
            .header("x-simulation-token", SIM_TOKEN)
            .header("content-type", "application/json")
            .body(Body::from(hook.clone()))
            .unwrap()
    };
    let (s, body, _) = call(&app, webhook()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["data"]["events"][0]["result"], "applied");
    let (s, body, _) = call(&app, webhook()).await;
    assert_eq!(
        (s, body["data"]["events"][0]["result"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    // An authentic event naming nothing of ours is acknowledged and changes nothing (counted: tests/observability.rs).
    let foreign = Request::post("/api/webhooks/stripe-payouts")
        .header("x-simulation-token", SIM_TOKEN)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"eventId": "evt_foreign", "reference": "", "status": "FAILED"}).to_string(),
        ))
        .unwrap();
    let (s, body, _) = call(&app, foreign).await;
    assert_eq!(
        (s, body["data"]["events"][0]["result"].as_str()),
        (StatusCode::OK, Some("not_ours"))
    );
    // Check status, items, audit.
    let (s, detail, _) = call(&app, get(&format!("/api/admin/payouts/{id}"), Some(&a))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(detail["data"]["status"], "PAID");
    assert!(detail["data"]["processedAt"].is_string());
    assert_eq!(detail["data"]["items"].as_array().unwrap().len(), 2);
    let (_, items, _) = call(&app, get(&format!("/api/admin/payouts/{id}/items"), Some(&a))).await;
    assert_eq!(items["data"][0]["amount"], "500.00");
    let (_, audit, _) = call(&app, get(&format!("/api/admin/payouts/{id}/audit"), Some(&a))).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["CREATE", "APPROVE", "TRIGGER", "ATTEMPT_ACCEPTED", "PROVIDER_PAID"]
    );
    // A forged webhook is refused and changes nothing.
    let forged = Request::post("/api/webhooks/stripe-payouts")
        .header("x-simulation-token", "guess")
        .body(Body::from(
            json!({"eventId": "evt_2", "reference": reference, "status": "FAILED"}).to_string(),
        ))
        .unwrap();
    let (s, body, _) = call(&app, forged).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_webhook_signature"))
    );
}

#[tokio::test]
async fn bulk_export_filters_and_doctor_history() {
    let app = app().await;
    let a = admin("admin-1");
    let (_, list, _) = call(&app, get("/api/admin/payouts", Some(&a))).await;
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().into())
        .collect();
    ids.push("no-such-payout".into());
    let (s, body, _) = call(
        &app,
        send(
            "POST",
            "/api/admin/payouts/bulk",
            &a,
            json!({"payoutIds": ids, "action": "approve"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["summary"], json!({"succeeded": 3, "failed": 1}));
    assert_eq!(body["data"][3]["error"]["code"], "not_found");
    let (_, body, _) = call(
        &app,
        send(
            "POST",
            "/api/admin/payouts/bulk",
            &a,
            json!({"payoutIds": ids, "action": "trigger", "provider": "MPESA_B2C"}),
        ),
    )
    .await;
    assert_eq!(body["summary"]["succeeded"], 3);
    let (_, f, _) = call(
        &app,
        get(
            "/api/admin/payouts?provider=MPESA_B2C&status=PROCESSING&limit=2&skip=0",
            Some(&a),
        ),
    )
    .await;
    assert_eq!(
        (f["pagination"]["total"].as_u64(), f["data"].as_array().unwrap().len()),
        (Some(3), 2)
    );
    let (_, f, _) = call(&app, get("/api/admin/payouts?doctor=dr-a", Some(&a))).await;
    assert_eq!(f["pagination"]["total"], 1);
    let (_, f, _) = call(
        &app,
        get("/api/admin/payouts?startDate=2000-01-01&endDate=2000-01-31", Some(&a)),
    )
    .await;
    assert_eq!(f["pagination"]["total"], 0);

    let (s, _, csv) = call(&app, get("/api/admin/payouts/export?status=PROCESSING", Some(&a))).await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<&str> = csv.trim_end().split("\r\n").collect();
    assert_eq!(
        lines[0],
        "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status"
    );
    assert_eq!(lines.len(), 4);
    assert!(lines[1..].iter().all(|l| l.ends_with(",PROCESSING")));

    // A doctor sees only their own payouts; a premium doctor also gets analytics.
    let (s, own, _) = call(&app, get("/api/doctor/payouts?limit=10", Some(&doctor("dr-a")))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(own["pagination"]["total"], 1);
    assert!(own["data"].as_array().unwrap().iter().all(|p| p["doctorId"] == "dr-a"));
    assert!(own.get("analytics").is_none());
    let (_, premium, _) = call(&app, get("/api/doctor/payouts", Some(&doctor("dr-c")))).await;
    assert_eq!(premium["features"]["advancedAnalytics"], true);
    assert_eq!(premium["analytics"]["totalUpcoming"]["amount"], "1500.00");
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_and_changes_nothing() {
    let app = app().await;
    let a = admin("admin-1");
    let (_, list, _) = call(&app, get("/api/admin/payouts", Some(&a))).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    let bad = (StatusCode::BAD_REQUEST, "invalid_input");
    let list = |query: &str| get(&format!("/api/admin/payouts{query}"), Some(&a));
    let create = |body: Value| send("POST", "/api/admin/payouts", &a, body);
    let bulk = |body: Value| send("POST", "/api/admin/payouts/bulk", &a, body);
    let cases: Vec<(Request<Body>, (StatusCode, &str))> = vec![
        (list("?status=DONE"), bad),
        (list("?provider=VENMO"), bad),
        (list("?startDate=2025-13-01"), bad),
        (list("?startDate=2025-02-01&endDate=2025-01-01"), bad),
        (list("?limit=0"), bad),
        (list("?limit=abc"), bad),
        (list("?sort=evil"), bad),
        (list("/nope"), (StatusCode::NOT_FOUND, "not_found")),
        (patch(&id, &a, json!({"action": "explode"})), bad),
        (patch(&id, &a, json!({"action": "trigger"})), bad),
        (patch(&id, &a, json!({"action": "trigger", "provider": "VENMO"})), bad),
        (
            patch(&id, &a, json!({"action": "trigger", "provider": "MPESA_B2C"})),
            (StatusCode::CONFLICT, "invalid_transition"),
        ),
        (patch(&id, &a, json!({"action": 7})), bad),
        (create(json!({"doctorId": "dr-a", "amount": "10.001"})), bad),
        (create(json!({"doctorId": "dr-a", "amount": "-5"})), bad),
        (
            create(json!({"doctorId": "dr-a", "amount": "5", "currency": "XYZ"})),
            bad,
        ),
        (create(json!({"doctorId": "ghost", "amount": "5"})), bad),
        (bulk(json!({"payoutIds": [], "action": "approve"})), bad),
        (bulk(json!({"payoutIds": [id], "action": "pay-twice"})), bad),
    ];
    for (req, (status, code)) in cases {
        let desc = format!("{} {}", req.method(), req.uri());
        let (s, body, _) = call(&app, req).await;
        assert_eq!(s, status, "{desc}: {body}");
        assert_eq!(body["error"]["code"], code, "{desc}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{desc}"
        );
    }
    let malformed = Request::post("/api/admin/payouts")
        .header("authorization", format!("Bearer {a}"))
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_eq!(call(&app, malformed).await.0, StatusCode::BAD_REQUEST);
    let (_, after, _) = call(&app, get("/api/admin/payouts", Some(&a))).await;
    assert_eq!(after["pagination"]["total"], 3, "nothing was created");
    assert!(
        after["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "PENDING" && p["version"] == 1)
    );
}

#[tokio::test]
async fn manual_payouts_need_a_second_admin() {
    let app = app().await;
    let alice = admin("alice");
    let (s, body, _) = call(
        &app,
        send(
            "POST",
            "/api/admin/payouts",
            &alice,
            json!({"doctorId": "dr-a", "amount": "1200.50", "notes": "bonus"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(body["data"]["amountDue"], "1200.50");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let (s, _, _) = call(&app, patch(&id, &alice, json!({"action": "approve"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = call(&app, patch(&id, &admin("bob"), json!({"action": "approve"}))).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn openapi_health_and_rate_limits() {
    let mut config = ServerConfig::new(SECRET);
    config.mutation_rate = Some(1);
    let app = demo_app(calculated_state(config).await);
    let (s, doc, _) = call(&app, get("/api/openapi.json", None)).await;
    assert_eq!(s, StatusCode::OK);
    for path in [
        "/api/admin/payouts",
        "/api/admin/payouts/{id}",
        "/api/admin/payouts/bulk",
        "/api/doctor/payouts",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from OpenAPI");
    }
    assert_eq!(call(&app, get("/healthz", None)).await.1["status"], "ok");
    let a = admin("admin-1");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let req = send(
            "POST",
            "/api/admin/payouts/bulk",
            &a,
            json!({"payoutIds": ["x"], "action": "approve"}),
        );
        statuses.push(call(&app, req).await.0);
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
}

/// Issue 16 item 6: query strings go through axum's `Query` into typed filters; a bad one is a JSON 400
/// naming the parameter, empty values are left-out ones (as HTML forms send them), and the original
/// parameter names keep their meaning.
#[tokio::test]
async fn query_strings_are_typed_and_refused_with_the_parameter_named() {
    let app = app().await;
    let a = admin("admin-1");
    let list = |q: &str| get(&format!("/api/admin/payouts?{q}"), Some(&a));
    for (q, names) in [
        ("limit=abc", "limit"),
        ("limit=1001", "1 to 1000"),
        ("skip=-1", "skip"),
        ("status=PAYED", "PAYED"),
        ("provider=VENMO", "VENMO"),
        ("startDate=yesterday", "startDate"),
        ("attention=yes", "attention"),
        ("page=2", "page"),
        ("limit=5&limit=6", "limit"),
        ("doctor=%FF%FE", "UTF-8"),
    ] {
        let (s, body, _) = call(&app, list(q)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{q}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{q}: {message}");
    }
    let (s, all, _) = call(&app, list("")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["pagination"]["total"], 3);
    assert_eq!(
        (all["pagination"]["limit"].as_u64(), all["pagination"]["skip"].as_u64()),
        (Some(50), Some(0))
    );
    let (s, empty_values, _) = call(&app, list("status=&provider=&startDate=&limit=&skip=&attention=")).await;
    assert_eq!(s, StatusCode::OK, "{empty_values}");
    assert_eq!(empty_values["data"], all["data"]);
    let (_, lower, _) = call(&app, list("status=pending&limit=1&skip=2")).await;
    assert_eq!(
        lower["pagination"]["total"], 3,
        "statuses are read case-insensitively, as before"
    );
    assert_eq!(lower["data"].as_array().unwrap().len(), 1);
    let (s, not_attention, _) = call(&app, list("attention=false&status=PENDING")).await;
    assert_eq!((s, &not_attention["data"]), (StatusCode::OK, &all["data"]));
    let (s, _, _) = call(&app, get("/api/doctor/payouts?limit=0", Some(&doctor("dr-a")))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// A bulk request from the socket peer `peer` with `forwarded_for` as `X-Forwarded-For`.
fn bulk_from(peer: &str, forwarded_for: &str) -> Request<Body> {
    let mut req = send(
        "POST",
        "/api/admin/payouts/bulk",
        &admin("admin-1"),
        json!({"payoutIds": ["x"], "action": "approve"}),
    );
    req.headers_mut()
        .insert("x-forwarded-for", forwarded_for.parse().unwrap());
    let peer: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    req
}

/// Issue 16 item 6: governor keys the limit on the client, which is the socket peer unless the peer is a
/// trusted proxy; then it is the right-most untrusted `X-Forwarded-For` entry. A 429 says when to retry.
#[tokio::test]
async fn rate_limits_key_on_the_client_behind_trusted_proxies_only() {
    let mut config = ServerConfig::new(SECRET);
    config.mutation_rate = Some(1); // burst 2
    config.trusted_proxies = "10.0.0.0/8".parse().unwrap();
    let app = demo_app(calculated_state(config).await);
    let status = |res: (StatusCode, Value, String)| res.0;

    // An untrusted peer changing its X-Forwarded-For on every request still has one bucket.
    for n in 0..2 {
        let req = bulk_from("203.0.113.7", &format!("198.51.100.{n}"));
        assert_eq!(status(call(&app, req).await), StatusCode::OK);
    }
    let res = app
        .clone()
        .oneshot(bulk_from("203.0.113.7", "198.51.100.99"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let body: Value = serde_json::from_slice(&axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another peer is another client.
    assert_eq!(
        status(call(&app, bulk_from("203.0.113.8", "198.51.100.0")).await),
        StatusCode::OK
    );

    // Through a trusted proxy, the forwarded client is the bucket: two clients behind one proxy...
    for _ in 0..2 {
        assert_eq!(
            status(call(&app, bulk_from("10.0.0.1", "192.0.2.1")).await),
            StatusCode::OK
        );
        assert_eq!(
            status(call(&app, bulk_from("10.0.0.1", "192.0.2.2")).await),
            StatusCode::OK
        );
    }
    // ...each limited on its own, also through another trusted hop, and a forged left-most entry does
    // not buy a fresh bucket.
    for xff in ["192.0.2.1", "192.0.2.1, 10.0.0.2", "203.0.113.250, 192.0.2.1"] {
        assert_eq!(
            status(call(&app, bulk_from("10.0.0.1", xff)).await),
            StatusCode::TOO_MANY_REQUESTS,
            "{xff}"
        );
    }
    assert_eq!(
        status(call(&app, bulk_from("10.0.0.1", "192.0.2.3")).await),
        StatusCode::OK
    );
}

/// Issue 14 item 5: money that came back puts the payout on the attention queue:
/// `GET /api/admin/payouts?attention=true` lists it with its reason, and the
/// queue is not mixed with the other filters.
#[tokio::test]
async fn money_that_came_back_is_on_the_attention_queue() {
    let app = app().await;
    let a = admin("admin-1");
    let (_, list, _) = call(&app, get("/api/admin/payouts?status=PENDING", Some(&a))).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    call(&app, patch(&id, &a, json!({"action": "approve"}))).await;
    let (_, body, _) = call(
        &app,
        patch(&id, &a, json!({"action": "trigger", "provider": "STRIPE_CONNECT"})),
    )
    .await;
    let reference = body["data"]["providerReference"].as_str().unwrap().to_string();
    let (_, queue, _) = call(&app, get("/api/admin/payouts?attention=true", Some(&a))).await;
    assert_eq!(queue["pagination"]["total"], 0, "{queue}");
    for (event, status) in [("evt_paid", "PAID"), ("evt_back", "RETURNED")] {
        let hook = json!({"eventId": event, "reference": reference, "status": status}).to_string();
        let req = Request::post("/api/webhooks/stripe-payouts")
            .header("x-simulation-token", SIM_TOKEN)
            .header("content-type", "application/json")
            .body(Body::from(hook))
            .unwrap();
        assert_eq!(call(&app, req).await.0, StatusCode::OK);
    }
    let (s, queue, _) = call(&app, get("/api/admin/payouts?attention=true", Some(&a))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(queue["pagination"]["total"], 1, "{queue}");
    assert_eq!(queue["data"][0]["id"], id);
    assert_eq!(queue["data"][0]["status"], "RETURNED");
    assert!(
        queue["data"][0]["attention"]["reason"]
            .as_str()
            .unwrap()
            .contains("came back"),
        "{queue}"
    );
    for bad in [
        "/api/admin/payouts?attention=true&status=PAID",
        "/api/admin/payouts?attention=yes",
    ] {
        let (s, body, _) = call(&app, get(bad, Some(&a))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (s, _, _) = call(&app, get("/api/admin/payouts?attention=true", Some(&doctor("dr-a")))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Cancelling says what happens to the consultations (`release` by default, or `void`), the audit
/// entry records it, and anything else is a 400 that changes nothing; bulk cancel takes it too.
#[tokio::test]
async fn cancel_releases_or_voids_the_consultations() {
    let app = app().await;
    let root = admin("root");
    let (s, body, _) = call(&app, get("/api/admin/payouts?status=PENDING", Some(&root))).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 2, "{body}");
    let last_audit = |body: Value| {
        let entries = body["data"].as_array().unwrap().clone();
        entries.last().unwrap()["detail"].as_str().unwrap().to_string()
    };

    let (s, body, _) = call(
        &app,
        patch(&ids[0], &root, json!({"action": "cancel", "consultations": "keep"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("release"), "{body}");
    let (s, body, _) = call(
        &app,
        patch(&ids[0], &root, json!({"action": "approve", "consultations": "void"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (_, body, _) = call(&app, get(&format!("/api/admin/payouts/{}", ids[0]), Some(&root))).await;
    assert_eq!(body["data"]["status"], "PENDING", "a refused cancel changes nothing");

    let (s, body, _) = call(
        &app,
        patch(
            &ids[0],
            &root,
            json!({"action": "cancel", "reason": "duplicate", "consultations": "void"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body, _) = call(&app, get(&format!("/api/admin/payouts/{}/audit", ids[0]), Some(&root))).await;
    assert_eq!(last_audit(body), "duplicate; consultations voided");

    let (s, body, _) = call(
        &app,
        send(
            "POST",
            "/api/admin/payouts/bulk",
            &root,
            json!({"payoutIds": [ids[1]], "action": "cancel", "consultations": "release"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body, _) = call(&app, get(&format!("/api/admin/payouts/{}/audit", ids[1]), Some(&root))).await;
    assert!(last_audit(body).ends_with("; consultations released"));
}
