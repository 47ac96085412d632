//! Events over HTTP: `GET /api/admin/events` pages through the outbox (admins only), and the
//! outbound webhook sender delivers each event signed, retrying a receiver's failure.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::*;
use payout_core::clock::SystemClock;
use payout_core::domain::Actor;
use payout_core::events::signature::{HEADER, verify};
use payout_core::events::{EventCursor, EventOutbox, EventRelay, PayoutEvent, RelayConfig};
use payout_core::memory::MemoryStore;
use payout_core::service::{CalculationPolicy, PayoutService};
use payout_server::events::webhook::{WebhookSink, WebhookSinkConfig};
use payout_server::{AppState, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// A calculated January (three payouts) with one approved, on a memory store that is its outbox.
async fn calculated() -> (Arc<MemoryStore>, Arc<PayoutService>) {
    let store = Arc::new(MemoryStore::new());
    let service = service_over(store.clone());
    let report = service
        .calculate_period(&Actor::system("test"), Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap();
    service
        .approve(&Actor::admin("admin-1"), &report.created[0])
        .await
        .unwrap();
    (store, service)
}

async fn get(app: &axum::Router, uri: &str, token: &str) -> (StatusCode, Value) {
    let request = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn admins_page_through_the_events_in_order() {
    let (store, service) = calculated().await;
    let app = payout_server::router(AppState::new(service, ServerConfig::new(SECRET)).with_events(store.clone()));
    let admin = admin("admin-1");

    let (status, all) = get(&app, "/api/admin/events", &admin).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let events = all["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let created = types.iter().filter(|t| **t == "payout.created").count();
    assert!(created >= 2, "{types:?}");
    assert_eq!(types.last(), Some(&"payout.status_changed"), "{types:?}");
    let approved = events.last().unwrap();
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["previousStatus"], "PENDING");
    assert_eq!(approved["delivery"], "PENDING");
    assert!(
        approved["amount"]["amount"].is_string(),
        "amounts are exact strings: {approved}"
    );
    assert_eq!(all["nextAfter"], Value::Null, "one page holds them all");

    // Two at a time, following nextAfter, reads the same events in the same order.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = get(&app, &format!("/api/admin/events?after={after}&limit=2"), &admin).await;
        assert_eq!(status, StatusCode::OK);
        let page_events = page["events"].as_array().unwrap();
        paged.extend(page_events.iter().map(|e| e["id"].clone()));
        match page["nextAfter"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), page_events.last().and_then(|e| e["cursor"].as_str()));
                after = next.to_string();
            }
            None => break,
        }
    }
    let ids: Vec<Value> = events.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(paged, ids);

    let (status, dead) = get(&app, "/api/admin/events/dead-letters", &admin).await;
    assert_eq!((status, dead["events"].as_array().unwrap().len()), (StatusCode::OK, 0));

    let (status, _) = get(&app, "/api/admin/events", &doctor("dr-a")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = get(&app, "/api/admin/events?after=-1", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let without = payout_server::router(AppState::new(service_over(store), ServerConfig::new(SECRET)));
    let (status, body) = get(&without, "/api/admin/events", &admin).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_IMPLEMENTED, Some("not_supported"))
    );
}

/// What the receiver saw: each body it verified, and how many requests it refused on purpose.
#[derive(Default)]
struct Receiver {
    verified: Mutex<Vec<PayoutEvent>>,
    fail_first: Mutex<u32>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = headers.get(HEADER).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if verify(WEBHOOK_SECRET.as_bytes(), header, &body, now, 300).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    {
        let mut fail = r.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let event: PayoutEvent = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        headers.get("payouts-event-id").and_then(|h| h.to_str().ok()),
        Some(event.id.as_str())
    );
    r.verified.lock().unwrap().push(event);
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn the_webhook_sender_signs_each_event_and_retries_a_failure() {
    let (store, _service) = calculated().await;
    let receiver = Arc::new(Receiver {
        fail_first: Mutex::new(1),
        ..Receiver::default()
    });
    let base = serve(
        axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(receiver.clone()),
    )
    .await;
    let sink = WebhookSink::new(WebhookSinkConfig::new(&format!("{base}/hooks"), WEBHOOK_SECRET).unwrap()).unwrap();
    let mut config = RelayConfig::default();
    config.backoff.base = std::time::Duration::ZERO;
    let relay = EventRelay::new(store.clone(), Arc::new(sink), Arc::new(SystemClock), config);

    // One refused (503), retried at once (no back-off here): every event lands, once each.
    let mut passes = 0;
    while store
        .events_after(EventCursor::START, 1000)
        .await
        .unwrap()
        .events
        .iter()
        .any(|e| e.delivery != payout_core::events::DeliveryState::Delivered)
    {
        relay.drain().await.unwrap();
        passes += 1;
        assert!(passes < 10, "the events are not delivered");
    }
    let stored = store.events_after(EventCursor::START, 1000).await.unwrap().events;
    let got = receiver.verified.lock().unwrap().clone();
    assert_eq!(got.len(), stored.len(), "each once");
    assert_eq!(stored.iter().map(|e| e.tries).sum::<u32>(), 1, "one failed try");
    // In order per payout.
    for e in &stored {
        let of_payout: Vec<u64> = got
            .iter()
            .filter(|g| g.stream_key() == e.event.stream_key())
            .map(|g| g.seq)
            .collect();
        assert!(of_payout.windows(2).all(|w| w[0] < w[1]), "{of_payout:?}");
    }
}
