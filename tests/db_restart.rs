//! Database restart for real (RELIABILITY.md, "Database restart"; fault matrix: "database restarted or
//! stopped mid bulk trigger").
//!
//! Needs a Postgres cluster of its own that the test may restart and stop: never the shared one.
//! `PAYOUTS_TEST_RESTART_POSTGRES_URL` names a database in it (`postgres://postgres@127.0.0.1:5433/postgres`)
//! and `PAYOUTS_TEST_RESTART_PG_CLUSTER` the cluster as `pg_ctlcluster` knows it (`15/payouts_faults`);
//! `.ci/run` creates it. Without both the test prints `skipped: ...` and passes.
//!
//! The demo server runs as a child process on a fresh schema of that cluster, with the bank adapter and the
//! Stripe adapter pointed at API doubles served by this test. 1,100 doctors each have one completed January
//! 2025 consultation; their payouts are calculated and approved; the last 100 doctors have a Stripe
//! connected account. One bulk trigger sends the 1,000 others by bank transfer and, at the same time, one
//! sends the 100 by Stripe. The Stripe double delivers a signed `transfer.created` webhook for every
//! transfer it makes, as Stripe does: at once (often before the send's answer is back), one delivery
//! every 25 ms at most, and again a second after any answer that is not 2xx, re-signed each time.
//!
//! Both doubles are idempotent by `Idempotency-Key` (a repeated key gets the first transfer back and moves
//! nothing), record every transfer as it arrives, and hold the answers of transfers past a gate that the
//! test opens stage by stage, so that each fault lands mid-bulk whatever the machine's speed:
//! 1. bank transfers up to 250 and Stripe transfers up to 40 are answered; once one past each gate has
//!    arrived, the cluster is restarted (`pg_ctlcluster restart`: fast shutdown, every session cut);
//! 2. the gates open to 500 and 70; once one past each has arrived (so the server went on after the restart
//!    by itself), the cluster is stopped, the gates open fully, and 20 s later the cluster is started again.
//!
//! Meanwhile three probes ask the server every 250 ms (each request on its own, without waiting for the
//! one before): `GET /api/admin/payouts`, `GET /healthz`, and a redelivery of the first Stripe event. Every answer must be 200 or 503 (429 for the webhook, which shares
//! the per-client webhook budget with the double's deliveries), with a JSON body; every probe sent and
//! answered while the cluster was stopped must be a 503 with `{"error": {"code": "unavailable", ...}}`
//! (`{"status": "unavailable"}` from `/healthz`). The server process must never exit.
//!
//! Once the cluster is back, `/healthz` must answer 200 again (bounded wait) and the API serve. The payouts
//! the bulk triggers could not prepare while the database was away are still APPROVED: the test triggers
//! them again, as an operator would. Reconciliation (every second) settles the PROCESSING ones whose
//! answers could not be stored. The test waits (bounded) until all 1,100 are PAID and every webhook event
//! was delivered, then checks that each double moved money exactly once per payout, with the attempt's key
//! `{id}-1` and the right amount, and that every payout has one attempt (succeeded) and exactly one TRIGGER
//! and one PROVIDER_PAID audit entry.
//!
//! Run: `cargo test --all-features --test db_restart -- --nocapture` with the two variables set.

mod common;
mod demo_process;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use demo_process::*;
use futures::StreamExt;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::PayoutStore;
use payouts::domain::{AttemptOutcome, Payout, PayoutAttempt, PayoutId};
use payouts::providers::Secret;
use payouts::providers::stripe::{SIGNATURE_HEADER, signature_header};
use payouts::status::PayoutStatus;
use payouts::store_sqlx::PgStore;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

const URL_VAR: &str = "PAYOUTS_TEST_RESTART_POSTGRES_URL";
const CLUSTER_VAR: &str = "PAYOUTS_TEST_RESTART_PG_CLUSTER";

const BANK_PAYOUTS: usize = 1000;
const STRIPE_PAYOUTS: usize = 100;
const DOCTORS: usize = BANK_PAYOUTS + STRIPE_PAYOUTS;
/// Doctors from this one on (`dr-1000`) have a Stripe connected account and are paid by Stripe.
const FIRST_STRIPE_DOCTOR: &str = "dr-1000";

/// The gates: answers of transfers numbered above the stage's figure wait until the next stage.
const BANK_GATE_BEFORE_RESTART: usize = 250;
const BANK_GATE_BEFORE_STOP: usize = 500;
const STRIPE_GATE_BEFORE_RESTART: usize = 40;
const STRIPE_GATE_BEFORE_STOP: usize = 70;
/// How long the cluster stays stopped.
const STOPPED_FOR: Duration = Duration::from_secs(20);

/// How long each double takes to answer a transfer.
const BANK_LATENCY: Duration = Duration::from_millis(20);
const STRIPE_LATENCY: Duration = Duration::from_millis(30);
/// At most one webhook delivery per this long (the server allows 50 a second per client).
const DELIVERY_PACE: Duration = Duration::from_millis(25);
/// How long a delivery that was not answered 2xx waits before it is sent again.
const REDELIVERY_AFTER: Duration = Duration::from_secs(1);
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Longer than the pool's wait for a connection (10 s), so that a probe gets the server's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What one consultation pays by default (`CalculationPolicy::default`): KES 500.00, in the bank's
/// decimal text and in Stripe's minor units.
const BANK_AMOUNT: (&str, &str) = ("500.00", "KES");
const STRIPE_AMOUNT: (&str, &str) = ("50000", "kes");

const BANK_API_KEY: &str = "test";
const STRIPE_SECRET_KEY: &str = "sk_test_db_restart_double";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_db_restart_3b9e71c04d2a";

/// From the bulk triggers to a transfer past a gate, for each stage.
const STAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// From the cluster's start to `/healthz` answering 200.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// From the cluster's start to every payout PAID and every webhook event delivered.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------------------
// The Postgres cluster the test restarts
// ---------------------------------------------------------------------------------------------------------

/// The cluster of `PAYOUTS_TEST_RESTART_PG_CLUSTER` (`<version>/<name>`), driven by `pg_ctlcluster`.
/// Started again when dropped while stopped (a failed test leaves it running).
struct Cluster {
    version: String,
    name: String,
    stopped: bool,
}

impl Cluster {
    fn from_env() -> Option<Cluster> {
        let spec = std::env::var(CLUSTER_VAR).ok().filter(|v| !v.is_empty());
        let Some(spec) = spec else {
            println!("skipped: {CLUSTER_VAR} not set");
            return None;
        };
        let (version, name) = spec
            .split_once('/')
            .unwrap_or_else(|| panic!("{CLUSTER_VAR}={spec:?}: use <version>/<name>, e.g. 15/payouts_faults"));
        Some(Cluster {
            version: version.to_string(),
            name: name.to_string(),
            stopped: false,
        })
    }

    /// `pg_ctlcluster --skip-systemctl-redirect <version> <name> <action>`, which returns once it is done.
    fn ctl(&self, action: &str) -> Duration {
        let started = Instant::now();
        let out = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, &self.name, action])
            .output()
            .expect("running pg_ctlcluster");
        assert!(
            out.status.success(),
            "pg_ctlcluster {} {} {action} failed: {}{}",
            self.version,
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    }

    fn restart(&mut self) -> Duration {
        self.ctl("restart")
    }

    fn stop(&mut self) -> Duration {
        self.stopped = true;
        self.ctl("stop")
    }

    fn start(&mut self) -> Duration {
        let took = self.ctl("start");
        self.stopped = false;
        took
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stopped {
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &self.version, &self.name, "start"])
                .status();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The bank and Stripe API doubles
// ---------------------------------------------------------------------------------------------------------

/// One money movement.
#[derive(Debug, Clone)]
struct Movement {
    id: String,
    key: String,
    payout_id: String,
    amount: String,
    currency: String,
    /// Stripe only: the connected account and the metadata sent.
    destination: String,
    metadata: BTreeMap<String, String>,
    created: i64,
}

#[derive(Debug, Default)]
struct Ledger {
    /// Every movement, in order.
    movements: Vec<Movement>,
    /// Idempotency key -> its movements (indexes into `movements`; more than one would be a double payment).
    by_key: HashMap<String, Vec<usize>>,
    /// Sends received (first sends, retries and re-sends).
    posts: usize,
    /// Repeated keys answered with the first movement.
    replayed: usize,
    /// Lookups received.
    lookups: usize,
}

impl Ledger {
    /// Records a send: the key's first movement (and `true` if it is new), made with `new` otherwise.
    fn send(&mut self, key: &str, new: impl FnOnce(usize) -> Movement) -> (usize, Movement, bool) {
        self.posts += 1;
        if let Some(&i) = self.by_key.get(key).and_then(|v| v.first()) {
            self.replayed += 1;
            return (i + 1, self.movements[i].clone(), false);
        }
        let n = self.movements.len() + 1;
        let m = new(n);
        self.movements.push(m.clone());
        self.by_key.entry(key.to_string()).or_default().push(n - 1);
        (n, m, true)
    }
}

/// Holds the answers of transfers numbered above what it is open to.
struct Gate(watch::Sender<usize>);

impl Gate {
    fn new(open_to: usize) -> Self {
        Gate(watch::channel(open_to).0)
    }

    fn open_to(&self, n: usize) {
        self.0.send_replace(n);
    }

    async fn pass(&self, n: usize) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open >= n).await;
    }
}

struct Doubles {
    bank: Mutex<Ledger>,
    stripe: Mutex<Ledger>,
    bank_gate: Gate,
    stripe_gate: Gate,
    /// Stripe events to deliver to the server's webhook.
    events: mpsc::UnboundedSender<Value>,
}

impl Doubles {
    fn bank(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.bank.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stripe(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.stripe.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn bearer(headers: &HeaderMap, key: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {key}"))
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

fn bank_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn bank_json(m: &Movement, status: &str) -> Value {
    json!({"id": m.id, "status": status, "reference": m.key, "failure_reason": null})
}

/// `POST /transfers`: a new transfer answers `PENDING` (lookups say `COMPLETED`).
async fn bank_create(State(d): State<Arc<Doubles>>, headers: HeaderMap, body: Bytes) -> Response {
    if !bearer(&headers, BANK_API_KEY) {
        return bank_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key");
    }
    let Some(key) = idempotency_key(&headers) else {
        return bank_error(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "Idempotency-Key is required",
        );
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return bank_error(StatusCode::BAD_REQUEST, "invalid_json", "the body is not JSON");
    };
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_string();
    if text("reference") != key || text("payout_id").is_empty() || body["beneficiary"]["account_number"].is_null() {
        return bank_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "reference must repeat the key",
        );
    }
    let (n, m, new) = d.bank().send(&key, |n| Movement {
        id: format!("bt_{n:05}"),
        key: key.clone(),
        payout_id: text("payout_id"),
        amount: text("amount"),
        currency: text("currency"),
        destination: String::new(),
        metadata: BTreeMap::new(),
        created: chrono::Utc::now().timestamp(),
    });
    d.bank_gate.pass(n).await;
    tokio::time::sleep(BANK_LATENCY).await;
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    (status, axum::Json(bank_json(&m, "PENDING"))).into_response()
}

/// `GET /transfers/{id}`.
async fn bank_get(State(d): State<Arc<Doubles>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    if !bearer(&headers, BANK_API_KEY) {
        return bank_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key");
    }
    let mut l = d.bank();
    l.lookups += 1;
    match l.movements.iter().find(|m| m.id == id) {
        Some(m) => (StatusCode::OK, axum::Json(bank_json(m, "COMPLETED"))).into_response(),
        None => bank_error(StatusCode::NOT_FOUND, "not_found", "no such transfer"),
    }
}

/// `GET /transfers?reference={key}`.
async fn bank_find(
    State(d): State<Arc<Doubles>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !bearer(&headers, BANK_API_KEY) {
        return bank_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key");
    }
    let Some(reference) = q.get("reference") else {
        return bank_error(StatusCode::BAD_REQUEST, "invalid_request", "reference is required");
    };
    let mut l = d.bank();
    l.lookups += 1;
    let data: Vec<Value> = l
        .movements
        .iter()
        .filter(|m| &m.key == reference)
        .map(|m| bank_json(m, "COMPLETED"))
        .collect();
    (StatusCode::OK, axum::Json(json!({"data": data}))).into_response()
}

fn stripe_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"type": "invalid_request_error", "code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

fn stripe_json(m: &Movement) -> Value {
    json!({
        "id": m.id,
        "object": "transfer",
        "amount": m.amount.parse::<i64>().unwrap_or_default(),
        "amount_reversed": 0,
        "created": m.created,
        "currency": m.currency,
        "destination": m.destination,
        "livemode": false,
        "metadata": m.metadata,
        "reversed": false,
        "transfer_group": m.key,
    })
}

/// The `transfer.created` event of a transfer, as Stripe sends it.
fn transfer_created(m: &Movement) -> Value {
    json!({
        "id": format!("evt_{}", &m.id[3..]),
        "object": "event",
        "api_version": "2024-06-20",
        "created": m.created,
        "type": "transfer.created",
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": format!("req_{}", &m.id[3..]), "idempotency_key": m.key},
        "data": {"object": stripe_json(m)},
    })
}

/// `application/x-www-form-urlencoded`, decoded.
fn form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(byte) => {
                            out.push(byte);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// `POST /v1/transfers`: a new transfer is made (and its `transfer.created` event sent) at once.
async fn stripe_create(State(d): State<Arc<Doubles>>, headers: HeaderMap, body: Bytes) -> Response {
    if !bearer(&headers, STRIPE_SECRET_KEY) {
        return stripe_error(StatusCode::UNAUTHORIZED, "api_key_invalid", "Invalid API Key provided");
    }
    let Some(key) = idempotency_key(&headers) else {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "parameter_missing",
            "Idempotency-Key is required here",
        );
    };
    let f = form(&body);
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    if field("transfer_group") != key || field("metadata[idempotency_key]") != key || field("destination").is_empty() {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "parameter_invalid",
            "transfer_group and metadata[idempotency_key] must repeat the key",
        );
    }
    let (n, m, new) = d.stripe().send(&key, |n| Movement {
        id: format!("tr_{n:05}"),
        key: key.clone(),
        payout_id: field("metadata[payout_id]"),
        amount: field("amount"),
        currency: field("currency"),
        destination: field("destination"),
        metadata: f
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), v.clone())))
            .collect(),
        created: chrono::Utc::now().timestamp(),
    });
    if new {
        let _ = d.events.send(transfer_created(&m));
    }
    d.stripe_gate.pass(n).await;
    tokio::time::sleep(STRIPE_LATENCY).await;
    let mut response = (StatusCode::OK, axum::Json(stripe_json(&m))).into_response();
    if !new {
        response
            .headers_mut()
            .insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
    }
    response
}

/// `GET /v1/transfers/{id}`.
async fn stripe_get(State(d): State<Arc<Doubles>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    if !bearer(&headers, STRIPE_SECRET_KEY) {
        return stripe_error(StatusCode::UNAUTHORIZED, "api_key_invalid", "Invalid API Key provided");
    }
    let mut l = d.stripe();
    l.lookups += 1;
    match l.movements.iter().find(|m| m.id == id) {
        Some(m) => (StatusCode::OK, axum::Json(stripe_json(m))).into_response(),
        None => stripe_error(StatusCode::NOT_FOUND, "resource_missing", "No such transfer"),
    }
}

/// `GET /v1/transfers?transfer_group={key}`.
async fn stripe_list(
    State(d): State<Arc<Doubles>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !bearer(&headers, STRIPE_SECRET_KEY) {
        return stripe_error(StatusCode::UNAUTHORIZED, "api_key_invalid", "Invalid API Key provided");
    }
    let group = q.get("transfer_group").cloned().unwrap_or_default();
    let mut l = d.stripe();
    l.lookups += 1;
    let data: Vec<Value> = l.movements.iter().filter(|m| m.key == group).map(stripe_json).collect();
    (
        StatusCode::OK,
        axum::Json(json!({"object": "list", "data": data, "has_more": false})),
    )
        .into_response()
}

/// `GET /v1/balance`: plenty, so the funds check lets every payout through.
async fn stripe_balance(headers: HeaderMap) -> Response {
    if !bearer(&headers, STRIPE_SECRET_KEY) {
        return stripe_error(StatusCode::UNAUTHORIZED, "api_key_invalid", "Invalid API Key provided");
    }
    let body = json!({
        "object": "balance",
        "livemode": false,
        "available": [{"amount": 100_000_000_000_i64, "currency": "kes"}],
        "pending": [{"amount": 0, "currency": "kes"}],
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Serves both doubles on 127.0.0.1:0 in this runtime; returns the address.
async fn serve_doubles(doubles: Arc<Doubles>) -> SocketAddr {
    let app = Router::new()
        .route("/transfers", post(bank_create).get(bank_find))
        .route("/transfers/{id}", get(bank_get))
        .route("/v1/transfers", post(stripe_create).get(stripe_list))
        .route("/v1/transfers/{id}", get(stripe_get))
        .route("/v1/balance", get(stripe_balance))
        .with_state(doubles);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the doubles");
    let addr = listener.local_addr().expect("the doubles' address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the doubles stopped");
    });
    addr
}

// ---------------------------------------------------------------------------------------------------------
// Webhook deliveries and probes
// ---------------------------------------------------------------------------------------------------------

/// The Stripe double's webhook deliveries.
#[derive(Debug, Default)]
struct Deliveries {
    /// Deliveries made (first ones and redeliveries).
    sent: usize,
    /// Answers by status (0: no answer).
    by_status: BTreeMap<u16, usize>,
    /// Event id -> the `result` of its 2xx answer.
    delivered: HashMap<String, String>,
}

/// Signs `event` now, as Stripe does for each delivery.
fn signed(event: &Value) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(event).expect("an event's JSON");
    let header = signature_header(
        &Secret::new(STRIPE_WEBHOOK_SECRET),
        chrono::Utc::now().timestamp(),
        &body,
    );
    (body, header)
}

/// Delivers each event of `events` to the server's Stripe route, paced, and sends it again a second after
/// any answer that is not 2xx (through `again`, the channel's own sender).
fn spawn_deliveries(
    mut events: mpsc::UnboundedReceiver<Value>,
    again: mpsc::UnboundedSender<Value>,
    http: reqwest::Client,
    url: String,
    log: Arc<Mutex<Deliveries>>,
) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let (http, url, log, again) = (http.clone(), url.clone(), log.clone(), again.clone());
            tokio::spawn(async move {
                let (body, header) = signed(&event);
                let answer = http
                    .post(&url)
                    .header(SIGNATURE_HEADER, header)
                    .header("content-type", "application/json")
                    .body(body)
                    .timeout(REQUEST_TIMEOUT)
                    .send()
                    .await;
                let (status, json) = match answer {
                    Ok(r) => (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null)),
                    Err(_) => (0, Value::Null),
                };
                {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.sent += 1;
                    *l.by_status.entry(status).or_default() += 1;
                    if (200..300).contains(&status) {
                        let result = json["data"]["events"][0]["result"].as_str().unwrap_or("?").to_string();
                        let id = event["id"].as_str().unwrap_or_default().to_string();
                        l.delivered.entry(id).or_insert(result);
                        return;
                    }
                }
                tokio::time::sleep(REDELIVERY_AFTER).await;
                let _ = again.send(event);
            });
            tokio::time::sleep(DELIVERY_PACE).await;
        }
    });
}

/// One probe's request and answer.
#[derive(Debug, Clone)]
struct Probe {
    what: &'static str,
    sent: Instant,
    answered: Instant,
    /// `None`: no HTTP answer at all.
    status: Option<u16>,
    body: String,
}

/// Asks the server every [`PROBE_EVERY`] with `request` until `done`, each request on its own (a request
/// that waits for the database does not hold the next one back), recording each answer; the task ends
/// when every request is answered.
fn spawn_probe(
    what: &'static str,
    request: impl Fn() -> reqwest::RequestBuilder + Send + 'static,
    done: Arc<AtomicBool>,
    probes: Arc<Mutex<Vec<Probe>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut asked = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let request = request().timeout(REQUEST_TIMEOUT);
            let probes = Arc::clone(&probes);
            asked.push(tokio::spawn(async move {
                let sent = Instant::now();
                let (status, body) = match request.send().await {
                    Ok(r) => (Some(r.status().as_u16()), r.text().await.unwrap_or_default()),
                    Err(e) => (None, e.to_string()),
                };
                probes.lock().unwrap_or_else(|e| e.into_inner()).push(Probe {
                    what,
                    sent,
                    answered: Instant::now(),
                    status,
                    body,
                });
            }));
            tokio::time::sleep(PROBE_EVERY).await;
        }
        for a in asked {
            a.await.expect("a probe");
        }
    })
}

/// Checks a probe's answer: 200 or 503 with the JSON body each route gives (429 too for the webhook).
fn check_probe(p: &Probe) {
    let body: Value = serde_json::from_str(&p.body)
        .unwrap_or_else(|_| panic!("{}: not a JSON answer ({:?}): {}", p.what, p.status, p.body));
    match (p.what, p.status) {
        ("healthz", Some(200)) => assert_eq!(body, json!({"status": "ok"}), "{p:?}"),
        ("healthz", Some(503)) => assert_eq!(body, json!({"status": "unavailable"}), "{p:?}"),
        ("list", Some(200)) => assert!(body["data"].is_array(), "{p:?}"),
        ("webhook", Some(200)) => assert_eq!(body["data"]["received"], true, "{p:?}"),
        ("webhook", Some(429)) => assert_eq!(body["error"]["code"], "rate_limited", "{p:?}"),
        ("list" | "webhook", Some(503)) => {
            assert_eq!(body["error"]["code"], "unavailable", "{p:?}");
            assert!(body["error"]["message"].is_string(), "{p:?}");
        }
        _ => panic!("unexpected answer: {p:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_restarted_and_stopped_mid_bulk_trigger_the_server_recovers_and_pays_everyone_once() {
    let Some(url) = std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()) else {
        println!("skipped: {URL_VAR} not set");
        return;
    };
    let Some(cluster) = Cluster::from_env() else { return };
    let building = Instant::now();
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    println!(
        "demo_server example ready in {:?}: {}",
        building.elapsed(),
        exe.display()
    );
    PgTestSchema::create(&url, "payouts_dbrestart")
        .await
        .run(|schema| restart_and_recover(schema.url(), schema.name().to_string(), exe, cluster))
        .await;
}

/// Waits (bounded) until `done` says so, checking that the server still runs; `what` names the wait.
async fn wait_until(server: &mut DemoServer, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if let Some(status) = server.exit_status() {
            panic!(
                "the server exited ({status}) while waiting for {what}:\n{}",
                server.log_tail(40)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; server log:\n{}",
            server.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends a bulk trigger of `ids` with `provider`, returning the status and the answer's body.
async fn bulk_trigger(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[PayoutId],
    provider: &str,
) -> (u16, Value) {
    let mut body = bulk_trigger_body(ids);
    body["provider"] = json!(provider);
    let r = http
        .post(format!("{base}/api/admin/payouts/bulk"))
        .bearer_auth(token)
        .json(&body)
        .timeout(SETTLE_TIMEOUT)
        .send()
        .await
        .expect("the bulk trigger was answered");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The payouts not PAID (at most 10), with their reconciliation checks and audit trails, for a failure's
/// message.
async fn unsettled(pool: &sqlx::PgPool) -> String {
    sqlx::query_as::<_, (String,)>(
        "SELECT concat_ws(' | ', p.id, p.status, 'updated ' || p.updated_at::text, \
                          'next check ' || coalesce(c.next_check_at::text, '-'), 'checks ' || c.checks, \
                          'lease ' || c.lease, \
                          (SELECT string_agg(t.attempt_no || ' ' || t.outcome || ' ref ' \
                                             || coalesce(t.provider_reference, '-') || ' err ' \
                                             || coalesce(t.error, '-'), '; ') \
                           FROM payout_attempts t WHERE t.payout_id = p.id), \
                          (SELECT string_agg(a.action || ' by ' || a.actor || ' at ' || a.at::text || ': ' \
                                             || left(a.detail, 160), '; ' ORDER BY a.id) \
                           FROM audit_entries a WHERE a.payout_id = p.id)) \
         FROM payouts p LEFT JOIN payout_checks c ON c.payout_id = p.id \
         WHERE p.status <> 'PAID' ORDER BY p.id LIMIT 10",
    )
    .fetch_all(pool)
    .await
    .map(|rows| rows.into_iter().map(|(r,)| r).collect::<Vec<_>>().join("\n"))
    .unwrap_or_else(|e| format!("(could not read them: {e})"))
}

/// `ok` results and the failed ones' error codes, of a bulk answer.
fn tally(answer: &Value) -> (usize, BTreeMap<String, usize>) {
    let mut ok = 0;
    let mut failed = BTreeMap::new();
    for r in answer["data"].as_array().into_iter().flatten() {
        if r["ok"] == true {
            ok += 1;
        } else {
            let code = r["error"]["code"].as_str().unwrap_or("?").to_string();
            *failed.entry(code).or_default() += 1;
        }
    }
    (ok, failed)
}

/// Checks that a double moved money exactly once per payout of `payouts`, with the first attempt's key
/// and `amount`.
fn check_ledger(name: &str, l: &Ledger, payouts: &[PayoutId], amount: (&str, &str)) {
    let mut by_payout: BTreeMap<&str, Vec<&Movement>> = BTreeMap::new();
    for m in &l.movements {
        by_payout.entry(m.payout_id.as_str()).or_default().push(m);
    }
    let twice: Vec<(&&str, Vec<&str>)> = by_payout
        .iter()
        .filter(|(_, ms)| ms.len() != 1)
        .map(|(p, ms)| (p, ms.iter().map(|m| m.id.as_str()).collect()))
        .collect();
    assert!(
        twice.is_empty(),
        "{name}: payouts that moved money more than once: {twice:?}"
    );
    assert!(
        l.by_key.values().all(|v| v.len() == 1),
        "{name}: a key moved money twice"
    );
    assert_eq!(l.movements.len(), payouts.len(), "{name}: one movement per payout");
    for id in payouts {
        let Some([m]) = by_payout.get(id.as_str()).map(Vec::as_slice) else {
            panic!("{name}: {id} moved no money");
        };
        assert_eq!(
            m.key,
            PayoutAttempt::key_for(id, 1),
            "{name}: {id} moved with the first attempt's key"
        );
        assert_eq!((m.amount.as_str(), m.currency.as_str()), amount, "{name}: {id}");
    }
}

async fn restart_and_recover(database_url: String, schema: String, exe: std::path::PathBuf, mut cluster: Cluster) {
    let started = Instant::now();

    // The database: 1,100 payouts calculated and approved, the last 100 doctors with a Stripe account.
    let stripe_accounts = format!(
        "UPDATE doctor_profiles SET stripe_account_id = 'acct_' || replace(doctor_id, '-', '') \
         WHERE doctor_id >= '{FIRST_STRIPE_DOCTOR}'"
    );
    let (store, pool, ids) = approved_payouts_with(&database_url, DOCTORS, &[&stripe_accounts]).await;
    let payouts = all_payouts(&store).await;
    let (stripe_ids, bank_ids): (Vec<PayoutId>, Vec<PayoutId>) = {
        let (s, b): (Vec<&Payout>, Vec<&Payout>) = payouts
            .iter()
            .partition(|p| p.doctor_id.as_str() >= FIRST_STRIPE_DOCTOR);
        (
            s.into_iter().map(|p| p.id.clone()).collect(),
            b.into_iter().map(|p| p.id.clone()).collect(),
        )
    };
    assert_eq!((bank_ids.len(), stripe_ids.len()), (BANK_PAYOUTS, STRIPE_PAYOUTS));
    // This pool's connections would be cut by the restart: a new one reads the results.
    pool.close().await;
    drop(store);
    let seeded = started.elapsed();

    // The doubles, the deliveries, the server.
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let doubles = Arc::new(Doubles {
        bank: Mutex::default(),
        stripe: Mutex::default(),
        bank_gate: Gate::new(BANK_GATE_BEFORE_RESTART),
        stripe_gate: Gate::new(STRIPE_GATE_BEFORE_RESTART),
        events: events_tx.clone(),
    });
    let doubles_addr = serve_doubles(Arc::clone(&doubles)).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = vec![
        (
            "DATABASE_URL",
            format!("{database_url}&application_name={schema}_server"),
        ),
        ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
        ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
        ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
        ("PAYOUTS_RECONCILE_SECS", "1".to_string()),
        ("BANK_API_URL", format!("http://{doubles_addr}")),
        ("BANK_API_KEY", BANK_API_KEY.to_string()),
        ("BANK_RATE_LIMIT", "0".to_string()),
        ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY.to_string()),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET.to_string()),
        ("STRIPE_API_BASE", format!("http://{doubles_addr}")),
        ("STRIPE_RATE_LIMIT", "0".to_string()),
        ("NO_COLOR", "1".to_string()),
    ];
    // Kept when the test fails (its path is printed), removed when it passes.
    let logs = tempfile::Builder::new()
        .prefix("payouts-db-restart-")
        .tempdir()
        .expect("a directory for the server log")
        .keep();
    println!("server log: {}", logs.join("server.log").display());
    let http = reqwest::Client::builder().build().expect("an HTTP client");
    let token = admin_token();
    let mut server = DemoServer::start(&exe, &env, logs.join("server.log"));
    server.wait_healthy(&http, &base).await;
    let pid = server.id();
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    spawn_deliveries(
        events_rx,
        events_tx,
        http.clone(),
        format!("{base}/api/webhooks/stripe-payouts"),
        Arc::clone(&deliveries),
    );

    // Both bulk triggers, and the probes.
    let run_started = Instant::now();
    let bank_bulk = tokio::spawn({
        let (http, base, token, ids) = (http.clone(), base.clone(), token.clone(), bank_ids.clone());
        async move { bulk_trigger(&http, &base, &token, &ids, "BANK_TRANSFER").await }
    });
    let stripe_bulk = tokio::spawn({
        let (http, base, token, ids) = (http.clone(), base.clone(), token.clone(), stripe_ids.clone());
        async move { bulk_trigger(&http, &base, &token, &ids, "STRIPE_CONNECT").await }
    });
    let probes = Arc::new(Mutex::new(Vec::<Probe>::new()));
    let probing = Arc::new(AtomicBool::new(false));
    wait_until(&mut server, "the first Stripe transfer", STAGE_TIMEOUT, || {
        !doubles.stripe().movements.is_empty()
    })
    .await;
    let first_event = transfer_created(&doubles.stripe().movements[0]);
    let probe_tasks = vec![
        spawn_probe(
            "healthz",
            {
                let (http, url) = (http.clone(), format!("{base}/healthz"));
                move || http.get(&url)
            },
            Arc::clone(&probing),
            Arc::clone(&probes),
        ),
        spawn_probe(
            "list",
            {
                let (http, url, token) = (http.clone(), format!("{base}/api/admin/payouts?limit=1"), token.clone());
                move || http.get(&url).bearer_auth(&token)
            },
            Arc::clone(&probing),
            Arc::clone(&probes),
        ),
        spawn_probe(
            "webhook",
            {
                let (http, url) = (http.clone(), format!("{base}/api/webhooks/stripe-payouts"));
                move || {
                    let (body, header) = signed(&first_event);
                    http.post(&url)
                        .header(SIGNATURE_HEADER, header)
                        .header("content-type", "application/json")
                        .body(body)
                }
            },
            Arc::clone(&probing),
            Arc::clone(&probes),
        ),
    ];

    // Stage 1: a restart while transfers past the first gates are waiting for their answers.
    wait_until(&mut server, "transfers past the first gates", STAGE_TIMEOUT, || {
        doubles.bank().movements.len() > BANK_GATE_BEFORE_RESTART
            && doubles.stripe().movements.len() > STRIPE_GATE_BEFORE_RESTART
    })
    .await;
    assert!(
        !bank_bulk.is_finished() && !stripe_bulk.is_finished(),
        "the bulk triggers are under way"
    );
    let restart_at = run_started.elapsed();
    let restart_took = tokio::task::block_in_place(|| cluster.restart());
    let restarted = Instant::now();
    doubles.bank_gate.open_to(BANK_GATE_BEFORE_STOP);
    doubles.stripe_gate.open_to(STRIPE_GATE_BEFORE_STOP);

    // Stage 2: the server goes on by itself; then the cluster is stopped for 20 s.
    wait_until(&mut server, "transfers past the second gates", STAGE_TIMEOUT, || {
        doubles.bank().movements.len() > BANK_GATE_BEFORE_STOP
            && doubles.stripe().movements.len() > STRIPE_GATE_BEFORE_STOP
    })
    .await;
    let went_on_after_restart = restarted.elapsed();
    assert!(
        !bank_bulk.is_finished() && !stripe_bulk.is_finished(),
        "the bulk triggers are under way"
    );
    let (bank_at_stop, stripe_at_stop) = (doubles.bank().movements.len(), doubles.stripe().movements.len());
    let stop_at = run_started.elapsed();
    let stop_took = tokio::task::block_in_place(|| cluster.stop());
    let stopped = Instant::now();
    doubles.bank_gate.open_to(usize::MAX);
    doubles.stripe_gate.open_to(usize::MAX);
    while stopped.elapsed() < STOPPED_FOR {
        if let Some(status) = server.exit_status() {
            panic!(
                "the server exited ({status}) while the database was stopped:\n{}",
                server.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let starting = Instant::now();
    let start_took = tokio::task::block_in_place(|| cluster.start());
    let up = Instant::now();

    // The server answers again, by itself.
    let deadline = up + HEALTHY_TIMEOUT;
    loop {
        if let Some(status) = server.exit_status() {
            panic!("the server exited ({status}):\n{}", server.log_tail(40));
        }
        let healthy = http
            .get(format!("{base}/healthz"))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if healthy {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz not 200 within {HEALTHY_TIMEOUT:?} of the start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthy_after = up.elapsed();
    let list = http
        .get(format!("{base}/api/admin/payouts?limit=1"))
        .bearer_auth(&token)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .expect("the list after the start");
    assert_eq!(list.status(), StatusCode::OK, "the API serves again");

    // The bulk triggers end; what they could not prepare is still APPROVED and is triggered again.
    let (bank_status, bank_answer) = bank_bulk.await.expect("the bank bulk task");
    let (stripe_status, stripe_answer) = stripe_bulk.await.expect("the Stripe bulk task");
    let bulks_done = run_started.elapsed();
    let (bank_ok, bank_failed) = tally(&bank_answer);
    let (stripe_ok, stripe_failed) = tally(&stripe_answer);
    probing.store(true, Ordering::Relaxed);
    for t in probe_tasks {
        t.await.expect("a probe task");
    }
    let store = PgStore::connect(&database_url)
        .await
        .expect("connecting after the restarts");
    let pool = store.pool().clone();
    let approved: Vec<Payout> = all_payouts(&store)
        .await
        .into_iter()
        .filter(|p| p.status == PayoutStatus::Approved)
        .collect();
    let mut retriggered = BTreeMap::new();
    for (provider, of) in [("BANK_TRANSFER", &bank_ids), ("STRIPE_CONNECT", &stripe_ids)] {
        let again: Vec<PayoutId> = approved
            .iter()
            .filter(|p| of.contains(&p.id))
            .map(|p| p.id.clone())
            .collect();
        retriggered.insert(provider, again.len());
        if again.is_empty() {
            continue;
        }
        let (status, answer) = bulk_trigger(&http, &base, &token, &again, provider).await;
        assert_eq!(
            status, 200,
            "triggering the APPROVED {provider} payouts again: {answer}"
        );
        let (ok, failed) = tally(&answer);
        assert_eq!(ok, again.len(), "{provider} triggered again: {failed:?}");
    }

    // Bounded wait until every payout is PAID and every webhook event delivered.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let counts = status_counts(&pool).await;
        let stripe_made = doubles.stripe().movements.len();
        let delivered = deliveries.lock().unwrap_or_else(|e| e.into_inner()).delivered.len();
        if counts.get("PAID") == Some(&(DOCTORS as i64)) && delivered == stripe_made {
            break;
        }
        if let Some(status) = server.exit_status() {
            panic!("the server exited ({status}):\n{}", server.log_tail(40));
        }
        if Instant::now() >= deadline {
            let unsettled = unsettled(&pool).await;
            panic!(
                "not settled {SETTLE_TIMEOUT:?} after the start: {counts:?}, {delivered} of {stripe_made} events \
                 delivered; the payouts not PAID and their checks:\n{unsettled}\nserver log:\n{}",
                server.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_after = up.elapsed();
    assert!(server.exit_status().is_none(), "the server still runs");
    assert_eq!(server.id(), pid, "the same process throughout");
    drop(server);

    // The probes: 200 or 503 with a JSON body throughout; 503 whenever the database was stopped.
    let probes = probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    probes.iter().for_each(check_probe);
    let mut figures = BTreeMap::new();
    for what in ["healthz", "list", "webhook"] {
        let of: Vec<&Probe> = probes.iter().filter(|p| p.what == what).collect();
        let while_stopped: Vec<&&Probe> = of
            .iter()
            .filter(|p| p.sent >= stopped && p.answered <= starting)
            .collect();
        // 503, or 429 for a webhook when the double's deliveries and the probes ran out of the budget.
        for p in &while_stopped {
            assert!(
                p.status == Some(503) || (what == "webhook" && p.status == Some(429)),
                "{what} while the database was stopped: {p:?}"
            );
        }
        assert!(
            while_stopped.iter().any(|p| p.status == Some(503)),
            "{what}: no probe was sent and answered 503 while the database was stopped"
        );
        let slowest = while_stopped
            .iter()
            .map(|p| p.answered - p.sent)
            .max()
            .unwrap_or_default();
        let unavailable = of.iter().filter(|p| p.status == Some(503)).count();
        figures.insert(
            what,
            format!(
                "{} probes, {unavailable} answered 503 ({} of them sent and answered while stopped, the slowest in \
                 {slowest:?})",
                of.len(),
                while_stopped.len()
            ),
        );
    }

    // Exactly once at each double, with the first attempt's key; every event delivered with a 2xx,
    // whatever it found.
    let (doubles_summary, stripe_made) = {
        let (bank, stripe) = (doubles.bank(), doubles.stripe());
        check_ledger("bank", &bank, &bank_ids, BANK_AMOUNT);
        check_ledger("stripe", &stripe, &stripe_ids, STRIPE_AMOUNT);
        let deliveries = deliveries.lock().unwrap_or_else(|e| e.into_inner());
        let mut results: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &stripe.movements {
            let result = deliveries
                .delivered
                .get(transfer_created(m)["id"].as_str().unwrap_or_default())
                .unwrap_or_else(|| panic!("the event of {} was never delivered", m.id));
            assert!(
                ["applied", "ignored", "duplicate"].contains(&result.as_str()),
                "{}: {result}",
                m.id
            );
            *results.entry(result.as_str()).or_default() += 1;
        }
        let summary = format!(
            "bank: {} movements, {} POSTs ({} replayed by key), {} lookups; Stripe: {} movements, {} POSTs ({} \
             replayed), {} lookups; webhook deliveries {} by status {:?}, first 2xx results {results:?}",
            bank.movements.len(),
            bank.posts,
            bank.replayed,
            bank.lookups,
            stripe.movements.len(),
            stripe.posts,
            stripe.replayed,
            stripe.lookups,
            deliveries.sent,
            deliveries.by_status,
        );
        (summary, stripe.movements.len())
    };
    assert_eq!(stripe_made, STRIPE_PAYOUTS);

    // One attempt, succeeded; one TRIGGER and one PROVIDER_PAID each.
    let payouts = all_payouts(&store).await;
    assert!(payouts.iter().all(|p| p.status == PayoutStatus::Paid));
    let attempts = attempts_of(&store, &ids).await;
    let trails: HashMap<PayoutId, Vec<payouts::domain::AuditEntry>> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let store = &store;
            async move {
                let trail = store.audit_trail(&id).await.expect("reading an audit trail");
                (id, trail)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for p in &payouts {
        let a = &attempts[&p.id];
        assert_eq!(a.len(), 1, "{}: exactly one attempt: {a:?}", p.id);
        assert_eq!(a[0].idempotency_key, PayoutAttempt::key_for(&p.id, 1));
        assert_eq!(a[0].outcome, AttemptOutcome::Succeeded, "{}", p.id);
        let trail = &trails[&p.id];
        let count = |action: &str| trail.iter().filter(|e| e.action == action).count();
        assert_eq!(count("TRIGGER"), 1, "{}: one TRIGGER: {trail:#?}", p.id);
        assert_eq!(count("PROVIDER_PAID"), 1, "{}: one PROVIDER_PAID: {trail:#?}", p.id);
        assert_eq!(count("PROVIDER_FAILED"), 0, "{}: {trail:#?}", p.id);
    }

    println!(
        "restart {restart_at:?} into the bulks (took {restart_took:?}); the server went on by itself and made \
         transfers past the second gates {went_on_after_restart:?} after it; stopped {stop_at:?} into the bulks \
         (took {stop_took:?}; bank transfers {bank_at_stop}, Stripe {stripe_at_stop} by then) for {STOPPED_FOR:?}, \
         started (took {start_took:?}); /healthz 200 again {healthy_after:?} after the start; bulks answered \
         {bulks_done:?} into the run (bank {bank_status}: {bank_ok} ok, failed {bank_failed:?}; Stripe \
         {stripe_status}: {stripe_ok} ok, failed {stripe_failed:?}); triggered again {retriggered:?}; all \
         {DOCTORS} PAID {settled_after:?} after the start"
    );
    println!("probes: {figures:#?}");
    println!("{doubles_summary}; seeding {seeded:?}, all {:?}", started.elapsed());
    pool.close().await;
    let _ = std::fs::remove_dir_all(&logs);
}
