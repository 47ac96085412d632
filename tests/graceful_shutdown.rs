//! Graceful shutdown for real (issue 16 item 5; RELIABILITY.md, "Graceful shutdown"), and the demo's
//! Prometheus endpoint on its own address (item 4).
//!
//! The demo server runs as a child process on a fresh Postgres schema with the bank adapter pointed at a
//! bank API double served by this test. 200 payouts are calculated and approved, and one bulk trigger sends
//! them. The double answers the first transfers at once, then holds every further one at a gate: once the
//! server's sends in flight (its trigger concurrency) are all held, the test scrapes the metrics address,
//! sends SIGTERM, waits until the server stops accepting connections, and opens the gate. The server must
//! then let the provider calls under way finish and record their answers, start no new send, and exit 0
//! within its grace; the bulk request is answered. Every payout is then either untouched (APPROVED, no
//! attempt) or has its attempt recorded with the bank's transfer id (PROCESSING), and the bank saw exactly
//! the recorded attempts' keys.
//!
//! Needs `PAYOUTS_TEST_POSTGRES_URL` (prints `skipped: ...` and passes without it); builds the
//! `demo_server` example like `crash_recovery`.

mod common;
mod demo_process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use demo_process::*;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::status::PayoutStatus;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

const PAYOUTS: usize = 200;
/// Transfers the double answers at once, before it starts holding them.
const ANSWERED_AT_ONCE: usize = 8;
/// The engine's default trigger concurrency: the sends in flight at once.
const IN_FLIGHT: usize = 16;
const BANK_API_KEY: &str = "test";
const GRACE_SECS: u64 = 30;
const WAIT: Duration = Duration::from_secs(30);

/// The bank API double: every `POST /transfers` is recorded by key and answered `PENDING` with a
/// transfer id once it gets a permit of `gate`.
struct Bank {
    gate: Semaphore,
    /// Idempotency key -> transfer id, for every POST received.
    received: Mutex<HashMap<String, String>>,
    /// POSTs waiting at the gate.
    held: Mutex<usize>,
    changed: Notify,
}

impl Bank {
    fn received(&self) -> HashMap<String, String> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` POSTs are held at the gate.
    async fn wait_held(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let changed = self.changed.notified();
            if *self.held.lock().unwrap() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "{} of {n} sends held at the bank after {WAIT:?}",
                    self.held.lock().unwrap()
                );
            }
        }
    }
}

async fn create_transfer(State(bank): State<Arc<Bank>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if auth != Some(format!("Bearer {BANK_API_KEY}").as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad API key").into_response();
    }
    let Some(key) = key else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key is required").into_response();
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    if body["reference"] != key.as_str() {
        return (StatusCode::BAD_REQUEST, "reference must repeat the key").into_response();
    }
    let id = {
        let mut received = bank.received.lock().unwrap();
        let n = received.len() + 1;
        received
            .entry(key.clone())
            .or_insert_with(|| format!("trf_{n:05}"))
            .clone()
    };
    *bank.held.lock().unwrap() += 1;
    bank.changed.notify_waiters();
    bank.gate.acquire().await.expect("the gate stays").forget();
    *bank.held.lock().unwrap() -= 1;
    bank.changed.notify_waiters();
    let transfer = json!({"id": id, "status": "PENDING", "reference": key, "failure_reason": null});
    (StatusCode::CREATED, axum::Json(transfer)).into_response()
}

async fn serve_bank(bank: Arc<Bank>) -> SocketAddr {
    let app = Router::new()
        .route("/transfers", post(create_transfer))
        .with_state(bank);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the bank double");
    let addr = listener.local_addr().expect("the double's address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the bank double stopped") });
    addr
}

/// The value of the first line of `text` for `metric` with every one of `labels`.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_bulk_trigger_finishes_the_sends_under_way_starts_none_and_exits_0() {
    let Some(url) = postgres_url() else { return };
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    PgTestSchema::create(&url, "payouts_sigterm")
        .await
        .run(|schema| terminate_mid_bulk(schema.url(), exe))
        .await;
}

async fn terminate_mid_bulk(database_url: String, exe: std::path::PathBuf) {
    // 200 payouts, calculated and approved.
    let (store, pool, ids) = approved_payouts(&database_url, PAYOUTS).await;

    let bank = Arc::new(Bank {
        gate: Semaphore::new(ANSWERED_AT_ONCE),
        received: Mutex::default(),
        held: Mutex::new(0),
        changed: Notify::new(),
    });
    let bank_addr = serve_bank(bank.clone()).await;
    let (port, metrics_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        ("DATABASE_URL", database_url.clone()),
        ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
        ("PAYOUTS_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
        ("PAYOUTS_SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string()),
        ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
        ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
        ("PAYOUTS_RECONCILE_SECS", "0".to_string()),
        ("BANK_API_URL", format!("http://{bank_addr}")),
        ("BANK_API_KEY", BANK_API_KEY.to_string()),
        ("BANK_RATE_LIMIT", "0".to_string()),
        ("RUST_LOG", "info".to_string()),
        ("NO_COLOR", "1".to_string()),
    ];
    let logs = tempfile::tempdir().expect("a directory for the server log");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let mut server = DemoServer::start(&exe, &env, logs.path().join("server.log"));
    server.wait_healthy(&http, &base).await;

    let bulk = tokio::spawn({
        let request = http
            .post(format!("{base}/api/admin/payouts/bulk"))
            .bearer_auth(admin_token())
            .json(&bulk_trigger_body(&ids));
        async move {
            let res = request.send().await?;
            let status = res.status();
            res.json::<Value>().await.map(|body| (status, body))
        }
    });
    // The first sends answered, then a full set in flight, held.
    bank.wait_held(IN_FLIGHT).await;

    // The metrics, on their own address: the requests so far, the sends answered and their HTTP calls.
    let metrics = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("the metrics address")
        .text()
        .await
        .expect("the metrics text");
    let bank_label = "provider=\"BANK_TRANSFER\"";
    assert_eq!(
        sample(&metrics, "payouts_sends_total", &[bank_label, "outcome=\"accepted\""]),
        Some(ANSWERED_AT_ONCE as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "payouts_provider_call_duration_seconds_count",
            &[bank_label, "endpoint=\"POST /transfers\"", "status=\"2xx\""]
        ),
        Some(ANSWERED_AT_ONCE as f64),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "payouts_http_request_duration_seconds_count",
            &["route=\"/healthz\""]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "payouts_payouts", &["status=\"APPROVED\""]).map(|n| n < PAYOUTS as f64),
        Some(true),
        "{metrics}"
    );
    // The app's own listener has no /metrics.
    let app_metrics = http.get(format!("{base}/metrics")).send().await.expect("the app");
    assert_eq!(app_metrics.status(), StatusCode::NOT_FOUND);

    // SIGTERM with sends in flight; once the server stops accepting connections, the bank answers.
    server.terminate();
    let signalled = Instant::now();
    let deadline = signalled + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections {WAIT:?} after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let received_at_signal = bank.received().len();
    bank.gate.add_permits(PAYOUTS);
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(GRACE_SECS + 10)));
    let exited_after = signalled.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", server.log_tail(30));
    assert!(
        exited_after < Duration::from_secs(GRACE_SECS),
        "exited within the grace: {exited_after:?}"
    );
    let log = server.log_tail(200);
    assert!(
        log.contains("SIGTERM received") && log.contains("requests in flight finished"),
        "{log}"
    );

    // The bulk request was answered: each payout sent, or refused as the server was shutting down.
    let (answer_status, answer) = bulk
        .await
        .expect("the bulk request task")
        .expect("the bulk trigger was answered before the server exited");
    assert_eq!(answer_status, StatusCode::OK, "{answer}");
    let results = answer["data"].as_array().expect("one result per id");
    assert_eq!(results.len(), PAYOUTS);
    let answered_ok = results.iter().filter(|r| r["ok"] == true).count();
    let refused: Vec<&Value> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        refused.iter().all(|r| r.to_string().contains("shutting_down")),
        "refused only for the shutdown: {refused:#?}"
    );

    // Every payout untouched, or with its attempt and the bank's answer recorded; the bank saw exactly
    // the recorded attempts.
    let received = bank.received();
    let payouts = all_payouts(&store).await;
    let attempts = attempts_of(&store, &ids).await;
    let (mut untouched, mut sent) = (0, 0);
    for p in &payouts {
        let a = &attempts[&p.id];
        match p.status {
            PayoutStatus::Approved => {
                assert!(a.is_empty(), "{}: APPROVED with attempts {a:?}", p.id);
                untouched += 1;
            }
            PayoutStatus::Processing | PayoutStatus::Paid => {
                assert_eq!(a.len(), 1, "{}: one attempt: {a:?}", p.id);
                let transfer = received.get(&a[0].idempotency_key);
                assert!(transfer.is_some(), "{}: its attempt reached the bank", p.id);
                assert_eq!(
                    a[0].provider_reference.as_ref(),
                    transfer,
                    "{}: the bank's answer is recorded",
                    p.id
                );
                sent += 1;
            }
            other => panic!("{}: {other}", p.id),
        }
    }
    assert_eq!(
        sent,
        received.len(),
        "every transfer the bank made is a recorded attempt"
    );
    assert_eq!(sent, answered_ok, "the bulk answer says the same");
    assert!(untouched > 0, "the bulk trigger stopped starting sends");
    assert!(
        sent >= ANSWERED_AT_ONCE + IN_FLIGHT,
        "the sends under way finished: {sent}"
    );
    assert!(sent < PAYOUTS);
    println!(
        "SIGTERM with {IN_FLIGHT} sends held ({received_at_signal} at the bank when it stopped accepting); exit 0 \
         after {exited_after:?}: {sent} sent and recorded, {untouched} untouched"
    );
    pool.close().await;
}
