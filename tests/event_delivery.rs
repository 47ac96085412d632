//! Nothing lost (issue 18, item 5): the demo server, SIGKILLed between the commit of a change and the
//! delivery of its event, delivers it after a restart: exactly once to a receiver that deduplicates by
//! event id, at least once in any case, in order per payout. Two servers on one database deliver each
//! event once between them (claims under a lease).
//!
//! Postgres only (`PAYOUTS_TEST_POSTGRES_URL`); the servers are the `demo_server` example as processes.
//! No sleeps for timing: the test waits for conditions (a request held by the receiver, the outbox
//! delivered), each with a deadline.

mod common;
mod demo_process;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use demo_process::*;
use payout_server::events::webhook::MIN_SECRET_BYTES;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::events::PayoutEvent;
use payouts::events::signature::{HEADER, verify};
use serde_json::json;
use sqlx::postgres::PgPool;
use tokio::sync::Notify;

const SECRET: &str = "whsec_event_delivery_test_secret";
const DEADLINE: Duration = Duration::from_secs(60);

/// The host's webhook receiver: verifies each request, records every delivery, and processes each
/// event id once (its deduplication). While `holding`, it takes requests and never answers them.
#[derive(Default)]
struct Receiver {
    holding: AtomicBool,
    held: Notify,
    /// Every request, by event id.
    received: Mutex<HashMap<String, usize>>,
    /// The events processed, once each, in the order processed.
    processed: Mutex<Vec<PayoutEvent>>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let header = headers.get(HEADER).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if verify(SECRET.as_bytes(), header, &body, chrono::Utc::now().timestamp(), 300).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let event: PayoutEvent = serde_json::from_slice(&body).expect("an event");
    *r.received.lock().unwrap().entry(event.id.clone()).or_default() += 1;
    if r.holding.load(Ordering::SeqCst) {
        r.held.notify_one();
        // Never answered: the sender dies with the request open.
        std::future::pending::<()>().await;
    }
    let mut processed = r.processed.lock().unwrap();
    if !processed.iter().any(|p| p.id == event.id) {
        processed.push(event);
    }
    StatusCode::NO_CONTENT
}

async fn serve_receiver(r: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks")
}

fn env(database_url: &str, port: u16, hook: &str, lease_secs: u64) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_string()),
        ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
        ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
        ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
        ("PAYOUTS_RECONCILE_SECS", "0".to_string()),
        ("PAYOUTS_EVENTS_WEBHOOK_URL", hook.to_string()),
        ("PAYOUTS_EVENTS_WEBHOOK_SECRET", SECRET.to_string()),
        ("PAYOUTS_EVENTS_LEASE_SECS", lease_secs.to_string()),
        ("PAYOUTS_EVENTS_POLL_MS", "50".to_string()),
        ("PAYOUTS_EVENTS_BACKOFF_SECS", "0".to_string()),
        ("RUST_LOG", "info".to_string()),
        ("NO_COLOR", "1".to_string()),
    ]
}

/// The outbox's event ids, in order, once none is pending any more (bounded wait).
async fn all_delivered(pool: &PgPool) -> Vec<(String, i64, String)> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (pending,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM payout_outbox WHERE delivery <> 'DELIVERED'")
            .fetch_one(pool)
            .await
            .expect("counting undelivered events");
        if pending == 0 {
            return sqlx::query_as("SELECT id, seq, stream_key FROM payout_outbox ORDER BY seq")
                .fetch_all(pool)
                .await
                .expect("reading the outbox");
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events still undelivered after {DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Each outbox event processed exactly once, received at least once, and processed in order per
/// payout.
fn assert_once_each_in_order(receiver: &Receiver, outbox: &[(String, i64, String)]) {
    let processed = receiver.processed.lock().unwrap().clone();
    let received = receiver.received.lock().unwrap().clone();
    let ids: HashSet<&str> = processed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), processed.len(), "processed once each");
    let expected: HashSet<&str> = outbox.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, expected, "every event of the outbox, and nothing else");
    for (id, _, _) in outbox {
        assert!(
            received.get(id).copied().unwrap_or(0) >= 1,
            "{id} received at least once"
        );
    }
    let mut last: HashMap<String, u64> = HashMap::new();
    for e in &processed {
        let before = last.insert(e.stream_key(), e.seq);
        assert!(
            before.is_none_or(|b| b < e.seq),
            "out of order for {}: {before:?} then {}",
            e.stream_key(),
            e.seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_committed_before_a_sigkill_is_delivered_after_the_restart() {
    let Some(url) = postgres_url() else { return };
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    PgTestSchema::create(&url, "payouts_events_kill")
        .await
        .run(|schema| kill_between_commit_and_delivery(schema.url(), exe))
        .await;
}

async fn kill_between_commit_and_delivery(database_url: String, exe: std::path::PathBuf) {
    assert!(SECRET.len() >= MIN_SECRET_BYTES);
    let (_store, pool, ids) = approved_payouts(&database_url, 3).await;
    let receiver = Arc::new(Receiver::default());
    receiver.holding.store(true, Ordering::SeqCst);
    let hook = serve_receiver(receiver.clone()).await;
    let logs = tempfile::tempdir().expect("a directory for the server logs");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // A short lease: the killed server's claims end soon after the restart.
    let mut server = DemoServer::start(&exe, &env(&database_url, port, &hook, 2), logs.path().join("first.log"));
    server.wait_healthy(&http, &base).await;

    // A change through the API, committed (200) while the receiver holds every delivery.
    let held = http
        .patch(format!("{base}/api/admin/payouts/{}", ids[0]))
        .bearer_auth(admin_token())
        .json(&json!({"action": "hold", "reason": "checking the doctor's bank details"}))
        .send()
        .await
        .expect("the hold request");
    assert_eq!(held.status(), reqwest::StatusCode::OK, "{}", server.log_tail(20));
    let (hold_event,): (String,) =
        sqlx::query_as("SELECT id FROM payout_outbox WHERE event_type = 'payout.held' AND payout_id = $1")
            .bind(ids[0].as_str())
            .fetch_one(&pool)
            .await
            .expect("the hold's event, committed with it");
    tokio::time::timeout(DEADLINE, receiver.held.notified())
        .await
        .expect("a delivery reached the receiver");
    assert!(
        receiver.processed.lock().unwrap().is_empty(),
        "nothing acknowledged yet"
    );

    server.kill();
    let (undelivered,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM payout_outbox WHERE delivery = 'PENDING'")
        .fetch_one(&pool)
        .await
        .expect("counting");
    assert!(
        undelivered >= 7,
        "3 created, 3 approved, 1 held: all pending at the kill ({undelivered})"
    );

    receiver.holding.store(false, Ordering::SeqCst);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = DemoServer::start(
        &exe,
        &env(&database_url, port, &hook, 60),
        logs.path().join("second.log"),
    );
    server.wait_healthy(&http, &base).await;
    let outbox = all_delivered(&pool).await;
    assert!(outbox.iter().any(|(id, _, _)| *id == hold_event));
    assert_once_each_in_order(&receiver, &outbox);
    let received = receiver.received.lock().unwrap().clone();
    assert!(
        received.values().any(|n| *n >= 2),
        "an event delivered before the kill was delivered again after it: {received:?}"
    );
    let log = server.log_tail(400);
    assert!(
        log.contains("notification to a doctor") && log.contains("is on hold"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_deliver_each_event_once() {
    let Some(url) = postgres_url() else { return };
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    PgTestSchema::create(&url, "payouts_events_two")
        .await
        .run(|schema| two_servers(schema.url(), exe))
        .await;
}

async fn two_servers(database_url: String, exe: std::path::PathBuf) {
    let (_store, pool, _ids) = approved_payouts(&database_url, 40).await;
    let receiver = Arc::new(Receiver::default());
    let hook = serve_receiver(receiver.clone()).await;
    let logs = tempfile::tempdir().expect("a directory for the server logs");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let mut servers = Vec::new();
    for n in 0..2 {
        let port = free_port();
        // A lease far longer than the test: a second delivery could only come from a second claim.
        let server = DemoServer::start(
            &exe,
            &env(&database_url, port, &hook, 600),
            logs.path().join(format!("{n}.log")),
        );
        servers.push((server, format!("http://127.0.0.1:{port}")));
    }
    for (server, base) in &mut servers {
        server.wait_healthy(&http, base).await;
    }
    let outbox = all_delivered(&pool).await;
    assert_eq!(outbox.len(), 80, "40 created, 40 approved");
    assert_once_each_in_order(&receiver, &outbox);
    let received = receiver.received.lock().unwrap().clone();
    assert!(received.values().all(|n| *n == 1), "each event sent once: {received:?}");
}
