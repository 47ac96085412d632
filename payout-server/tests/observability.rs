//! What operators see of the HTTP edge and the engine behind it (issue 16 item 4): request ids in and
//! out, and the metrics a Prometheus exporter renders after a few requests and webhooks: the request
//! latency histogram and the engine's sends, send times, webhook outcomes (not ours included) and
//! gauges. Each test records into a local Prometheus recorder of its own, never the global one.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use payout_server::{ServerConfig, observe, router};
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value, Option<String>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), id)
}

fn get(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn patch(id: &str, token: &str, body: Value) -> Request<Body> {
    Request::patch(format!("/api/admin/payouts/{id}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn webhook(body: Value) -> Request<Body> {
    Request::post("/api/webhooks/stripe-payouts")
        .header("x-simulation-token", SIM_TOKEN)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn recorder() -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &[0.001, 0.01, 0.1, 1.0, 10.0])
        .unwrap()
        .build_recorder()
}

#[tokio::test]
async fn a_request_id_is_kept_when_sent_and_made_up_when_not() {
    let app = observe::layers(router(calculated_state(ServerConfig::new(SECRET)).await));
    let a = admin("admin-1");

    let (status, _, id) = call(&app, get("/api/admin/payouts", &a)).await;
    assert_eq!(status, StatusCode::OK);
    let id = id.expect("an x-request-id on the answer");
    assert!(uuid_like(&id), "a UUID: {id}");
    // Another request, another id.
    let (_, _, other) = call(&app, get("/api/admin/payouts", &a)).await;
    assert_ne!(other.as_deref(), Some(id.as_str()));

    let mut req = get("/api/admin/payouts", &a);
    req.headers_mut()
        .insert("x-request-id", "host-trace-42".parse().unwrap());
    let (_, _, echoed) = call(&app, req).await;
    assert_eq!(echoed.as_deref(), Some("host-trace-42"));

    // Refusals and unknown routes carry one too.
    let (status, _, id) = call(&app, Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(id.is_some_and(|id| uuid_like(&id)));
    let (status, _, id) = call(&app, get("/api/admin/payouts", "not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(id.is_some());
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().filter(|c| *c == '-').count() == 4
        && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The line of `text` for `metric` with every one of `labels`, and its value.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// A current-thread runtime: the local recorder is this thread's, and every future runs on it.
#[tokio::test]
async fn requests_sends_and_webhooks_show_in_the_prometheus_text() {
    let recorder = recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);

    let state = calculated_state(ServerConfig::new(SECRET)).await;
    let service = state.service.clone();
    let app = observe::layers(router(state));
    let a = admin("admin-1");
    let (_, list, _) = call(&app, get("/api/admin/payouts?status=PENDING", &a)).await;
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(&app, patch(&id, &a, json!({"action": "approve"}))).await.0,
        StatusCode::OK
    );
    let (status, body, _) = call(
        &app,
        patch(&id, &a, json!({"action": "trigger", "provider": "STRIPE_CONNECT"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reference = body["data"]["providerReference"].as_str().unwrap().to_string();
    let paid = json!({"eventId": "evt_1", "reference": reference, "status": "PAID"});
    for (event, result) in [
        (paid.clone(), "applied"),
        (paid, "duplicate"),
        (
            json!({"eventId": "evt_foreign", "reference": "", "status": "FAILED"}),
            "not_ours",
        ),
    ] {
        let (status, body, _) = call(&app, webhook(event)).await;
        assert_eq!(
            (status, body["data"]["events"][0]["result"].as_str()),
            (StatusCode::OK, Some(result))
        );
    }
    // A forged delivery is refused and counted as such.
    let forged = Request::post("/api/webhooks/stripe-payouts")
        .header("x-simulation-token", "wrong")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"eventId": "evt_x", "reference": "x", "status": "PAID"}).to_string(),
        ))
        .unwrap();
    assert_eq!(call(&app, forged).await.0, StatusCode::UNAUTHORIZED);
    service.publish_gauges().await.unwrap();

    let text = handle.render();
    // The request histogram, by method, matched route and status.
    let requests = "payouts_http_request_duration_seconds_count";
    let route = |r: &str| format!("route=\"{r}\"");
    let list_route = route("/api/admin/payouts");
    let one_route = route("/api/admin/payouts/{id}");
    let hook_route = route("/api/webhooks/stripe-payouts");
    assert_eq!(
        sample(&text, requests, &["method=\"GET\"", &list_route, "status=\"200\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, requests, &["method=\"PATCH\"", &one_route, "status=\"200\""]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, requests, &["method=\"POST\"", &hook_route, "status=\"200\""]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, requests, &["method=\"POST\"", &hook_route, "status=\"401\""]),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.contains("payouts_http_request_duration_seconds_bucket{") && text.contains("le=\"0.1\""),
        "a histogram, with buckets: {text}"
    );
    // The engine: one send, accepted (the simulated provider settles by webhook), and its time.
    let stripe = "provider=\"STRIPE_CONNECT\"";
    assert_eq!(
        sample(&text, "payouts_sends_total", &[stripe, "outcome=\"accepted\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "payouts_send_duration_seconds_count", &[stripe]),
        Some(1.0),
        "{text}"
    );
    for (result, n) in [
        ("applied", 1.0),
        ("duplicate", 1.0),
        ("not_ours", 1.0),
        ("refused", 1.0),
    ] {
        let result = format!("result=\"{result}\"");
        assert_eq!(
            sample(&text, "payouts_webhook_events_total", &[stripe, &result]),
            Some(n),
            "{text}"
        );
    }
    // The gauges, read from the store: two of the three payouts still PENDING, one PAID.
    assert_eq!(
        sample(&text, "payouts_payouts", &["status=\"PAID\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "payouts_payouts", &["status=\"PENDING\""]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "payouts_reconcile_backlog", &[]), Some(0.0), "{text}");
    assert_eq!(sample(&text, "payouts_attention", &[]), Some(0.0), "{text}");
}
