//! A Stripe API double for the tests (and benchmarks) that run the real Stripe adapter over HTTP:
//! `POST /v1/transfers` (with `Idempotency-Key`), `GET /v1/transfers/{id}` and
//! `GET /v1/transfers?transfer_group=...`, served by axum on 127.0.0.1 on the caller's runtime.
//!
//! It keeps a ledger of the money it moved, by idempotency key and by payout (`metadata[payout_id]`),
//! so a test can prove that no payout was paid twice: a key seen again is replayed (the same transfer,
//! `Idempotent-Replayed: true`, no money moved), as Stripe does.
//!
//! It can refuse calls with Stripe's 429 ([`Throttle`]): the error object Stripe sends for a rate
//! limit (`type` `invalid_request_error`, `code` `rate_limit`), a `Request-Id`, and the
//! `Stripe-Rate-Limited-Reason` header Stripe's rate-limits page describes; no `Retry-After` (Stripe
//! documents none). A refused call moves no money and is decided before the request is read.
//!
//! Include it with `#[path = "common/stripe_double.rs"] mod stripe_double;` (it is not part of
//! `common`, so tests without a Stripe double do not build it).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// When the double answers 429.
#[derive(Debug, Clone, Copy)]
pub enum Throttle {
    /// Never.
    Never,
    /// Beyond a rate limit: a token bucket of `per_second` tokens, refilled continuously, one
    /// token per call (Stripe's own limiters are token buckets).
    Bucket {
        /// Calls admitted per second, and the bucket's size.
        per_second: f64,
    },
    /// Half the calls during a window that opens once `after` transfers have been made and lasts
    /// `length`; every call before and after is admitted. Which calls are refused is a fixed
    /// pseudo-random draw on each call's number within the window (the same on every run for the
    /// same order of calls), so a call may be refused several times running, as from a real
    /// limiter, rather than strictly every second one.
    HalfDuring {
        /// Transfers made before the window opens (a count, so the "before" phase is the same on
        /// every machine).
        after: usize,
        /// How long the window lasts.
        length: Duration,
    },
}

/// One call the double answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it arrived.
    pub at: Instant,
    /// `POST /v1/transfers`, `GET /v1/transfers/{id}` or `GET /v1/transfers`.
    pub endpoint: &'static str,
    /// What it was answered.
    pub status: u16,
}

/// A transfer the double made: one money movement.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// `tr_...`.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// Lowercase ISO 4217.
    pub currency: String,
    /// `acct_...`.
    pub destination: String,
    /// The request's `transfer_group`.
    pub transfer_group: Option<String>,
    /// The request's `metadata[...]`.
    pub metadata: BTreeMap<String, String>,
    /// How many admitted `POST`s carried its key (the first made it, the others were replays).
    pub posts: usize,
}

#[derive(Default)]
struct Ledger {
    /// By idempotency key.
    by_key: HashMap<String, Transfer>,
    /// Transfer id -> key.
    by_id: HashMap<String, String>,
    calls: Vec<Call>,
    /// When the throttle window opened, if it has.
    window_opened: Option<Instant>,
    /// Calls answered while the window was open (every second one was refused).
    in_window: usize,
    /// Requests refused as malformed (400).
    bad: usize,
    /// The token bucket of [`Throttle::Bucket`]: tokens, and when it was last filled.
    bucket: Option<(f64, Instant)>,
}

struct Inner {
    throttle: Throttle,
    /// How long an admitted call takes.
    latency: Duration,
    ledger: Mutex<Ledger>,
}

/// The double, serving on [`url`](Self::url).
#[derive(Clone)]
pub struct StripeDouble {
    /// `http://127.0.0.1:{port}`: the adapter's API base.
    pub url: String,
    inner: Arc<Inner>,
}

impl StripeDouble {
    /// Serves a double that throttles as `throttle` says and answers at once, on the current runtime.
    pub async fn start(throttle: Throttle) -> StripeDouble {
        Self::start_with_latency(throttle, Duration::ZERO).await
    }

    /// Serves a double that throttles as `throttle` says and takes `latency` to answer each call it
    /// admits (a 429 is answered at once), on the current runtime.
    pub async fn start_with_latency(throttle: Throttle, latency: Duration) -> StripeDouble {
        let inner = Arc::new(Inner {
            throttle,
            latency,
            ledger: Mutex::new(Ledger::default()),
        });
        let app = axum::Router::new()
            .route("/v1/transfers", get(list_transfers).post(create_transfer))
            .route("/v1/transfers/{id}", get(get_transfer))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("a port for the Stripe double");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the Stripe double serves") });
        StripeDouble { url, inner }
    }

    /// Every call answered so far, in order of arrival.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.ledger.lock().expect("ledger").calls.clone()
    }

    /// The transfers made (each one money movement), by idempotency key.
    pub fn transfers(&self) -> HashMap<String, Transfer> {
        self.inner.ledger.lock().expect("ledger").by_key.clone()
    }

    /// When the throttle window opened, if it has.
    pub fn window_opened(&self) -> Option<Instant> {
        self.inner.ledger.lock().expect("ledger").window_opened
    }

    /// Requests refused as malformed (a key missing, or header and metadata disagreeing).
    pub fn bad_requests(&self) -> usize {
        self.inner.ledger.lock().expect("ledger").bad
    }
}

impl Inner {
    /// Records a call to `endpoint` and decides whether it is refused with a 429.
    fn admit(&self, endpoint: &'static str) -> bool {
        let mut l = self.ledger.lock().expect("ledger");
        let now = Instant::now();
        let refused = match self.throttle {
            Throttle::Never => false,
            Throttle::Bucket { per_second } => {
                let (tokens, filled) = l.bucket.get_or_insert((per_second, now));
                *tokens = (*tokens + now.duration_since(*filled).as_secs_f64() * per_second).min(per_second);
                *filled = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    false
                } else {
                    true
                }
            }
            Throttle::HalfDuring { after, length } => {
                if l.window_opened.is_none() && l.by_key.len() >= after {
                    l.window_opened = Some(now);
                }
                match l.window_opened {
                    Some(opened) if now.duration_since(opened) < length => {
                        l.in_window += 1;
                        splitmix64(l.in_window as u64) & 1 == 1
                    }
                    _ => false,
                }
            }
        };
        l.calls.push(Call {
            at: now,
            endpoint,
            status: if refused { 429 } else { 200 },
        });
        !refused
    }

    /// Sets the status of the last call to `endpoint` (an admitted call that was then refused).
    fn record_status(&self, l: &mut Ledger, endpoint: &'static str, status: u16) {
        if let Some(c) = l.calls.iter_mut().rev().find(|c| c.endpoint == endpoint) {
            c.status = status;
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood): a fixed, well-mixed function of `n`, for the refusals'
/// draw.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stripe's answer to a rate-limited request.
fn too_many_requests() -> Response {
    let body = json!({"error": {
        "type": "invalid_request_error",
        "code": "rate_limit",
        "message": "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
    }});
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("request-id", HeaderValue::from_static("req_double_rate_limited"));
    headers.insert("stripe-rate-limited-reason", HeaderValue::from_static("endpoint-rate"));
    response
}

fn bad_request(inner: &Inner, endpoint: &'static str, message: &str) -> Response {
    let mut l = inner.ledger.lock().expect("ledger");
    l.bad += 1;
    inner.record_status(&mut l, endpoint, 400);
    let error = json!({"error": {"type": "invalid_request_error", "message": message}});
    (StatusCode::BAD_REQUEST, Json(error)).into_response()
}

/// `application/x-www-form-urlencoded` fields.
pub fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url_decode_pairs(&String::from_utf8_lossy(body))
}

fn url_decode_pairs(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn transfer_json(t: &Transfer) -> Value {
    json!({
        "id": t.id, "object": "transfer", "amount": t.amount, "amount_reversed": 0,
        "balance_transaction": t.id.replace("tr_", "txn_"), "created": 1_738_396_800,
        "currency": t.currency, "destination": t.destination,
        "destination_payment": t.id.replace("tr_", "py_"), "livemode": false, "metadata": t.metadata,
        "reversed": false, "transfer_group": t.transfer_group,
        "reversals": {"object": "list", "data": [], "has_more": false,
            "url": format!("/v1/transfers/{}/reversals", t.id)},
    })
}

const POST_TRANSFERS: &str = "POST /v1/transfers";
const GET_TRANSFER: &str = "GET /v1/transfers/{id}";
const LIST_TRANSFERS: &str = "GET /v1/transfers";

/// `POST /v1/transfers`: a new key moves money once; a key seen before is replayed.
async fn create_transfer(State(d): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    if !d.admit(POST_TRANSFERS) {
        return too_many_requests();
    }
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    let form = form_fields(&body);
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let (Some(key), Some(amount), Some(currency), Some(destination)) = (
        header_key.filter(|k| form.get("metadata[idempotency_key]").map(String::as_str) == Some(*k)),
        form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        form.get("currency"),
        form.get("destination"),
    ) else {
        return bad_request(&d, POST_TRANSFERS, "double: no key, or the key and metadata disagree");
    };
    let mut l = d.ledger.lock().expect("ledger");
    let next = l.by_key.len();
    let replayed = l.by_key.contains_key(key);
    let t = l.by_key.entry(key.to_string()).or_insert_with(|| Transfer {
        id: format!("tr_double{next:08}"),
        amount,
        currency: currency.clone(),
        destination: destination.clone(),
        transfer_group: form.get("transfer_group").cloned(),
        metadata: form
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), v.clone())))
            .collect(),
        posts: 0,
    });
    t.posts += 1;
    let t = t.clone();
    l.by_id.insert(t.id.clone(), key.to_string());
    drop(l);
    let mut response = Json(transfer_json(&t)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// `GET /v1/transfers/{id}`.
async fn get_transfer(State(d): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    if !d.admit(GET_TRANSFER) {
        return too_many_requests();
    }
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    let l = d.ledger.lock().expect("ledger");
    match l.by_id.get(&id).and_then(|k| l.by_key.get(k)) {
        Some(t) => Json(transfer_json(t)).into_response(),
        None => {
            let error = json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                "message": format!("No such transfer: '{id}'")}});
            (StatusCode::NOT_FOUND, Json(error)).into_response()
        }
    }
}

/// `GET /v1/transfers?transfer_group=...`.
async fn list_transfers(State(d): State<Arc<Inner>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !d.admit(LIST_TRANSFERS) {
        return too_many_requests();
    }
    if !d.latency.is_zero() {
        tokio::time::sleep(d.latency).await;
    }
    let l = d.ledger.lock().expect("ledger");
    let data: Vec<Value> = l
        .by_key
        .values()
        .filter(|t| {
            q.get("transfer_group")
                .is_none_or(|g| t.transfer_group.as_ref() == Some(g))
        })
        .map(transfer_json)
        .collect();
    Json(json!({"object": "list", "data": data, "has_more": false, "url": "/v1/transfers"})).into_response()
}
