//! Trigger throughput: `PayoutService::bulk_trigger` over approved payouts in Postgres, against
//! provider doubles that answer after a fixed latency.
//!
//! # What is measured
//! `n` (10,000 at scale 1) `APPROVED` payouts, created and approved before the clock starts, are
//! bulk-triggered through the real service, the real Postgres store (`PgStore` built the way a host
//! builds it, in a fresh schema) and the real adapters (`reqwest`, JSON/form encoding, the
//! idempotency headers). The provider is an in-process axum server on 127.0.0.1 that sleeps
//! [`LATENCY`] (50 ms) on every request and then answers like the provider's API:
//!
//! - **Stripe** (`POST /v1/transfers`, one call per payout) at `trigger_concurrency` 64, against
//!   the ideal `n * latency / concurrency`: what a perfect scheduler with free store writes would
//!   take. Target: at most 1.15x.
//! - **PayPal batching** (token, one `POST /v1/payments/payouts` per 15,000 items, then the batch
//!   read back 1,000 items a page), the same `n` and concurrency, against the Stripe time of the
//!   same run as the one-call-per-payout baseline. Target: at most 0.2x.
//!
//! Why Stripe and not "PayPal with batching off" as the baseline: the service has no switch to
//! turn batching off, and a single PayPal payout costs two provider round trips (create, then read
//! the batch to learn the item's status), so PayPal one at a time would take about twice the Stripe
//! time and flatter batching by 2x. Stripe is exactly one round trip per payout at the same latency
//! and concurrency through the same service and store, so it is the conservative baseline.
//!
//! # What is checked (a benchmark that silently fails is worthless)
//! Every outcome is a success and every payout is `PAID` (or `PROCESSING`) in the database
//! afterwards; the Stripe double saw exactly `n` calls carrying `n` distinct idempotency keys, each
//! the payout's first-attempt key and the same in the header and the metadata; the PayPal double
//! saw one token call, `ceil(n / 15,000)` create calls carrying `n` distinct `sender_item_id`s in
//! all and `PayPal-Request-Id == sender_batch_id`, and the page reads. The peak number of requests
//! in flight at the Stripe double is printed: it shows whether anything (an HTTP or database pool)
//! held concurrency below 64.
//!
//! # Where the time goes
//! The store and the adapters are wrapped in timers ([`TimedStore`], [`TimedProvider`]) and each
//! run prints the calls and mean wall time of `store.get`, `store.attempts`, `store.apply` and
//! `provider.send`/`send_batch`. At concurrency 64 a payout's slot is busy for its store round trips
//! plus the provider's 50 ms, so the ratio to the ideal is about `(50 ms + store time) / 50 ms` once
//! the store, not the provider, is the bottleneck. Batching removes the provider's share only: each
//! payout still costs the same store writes (`APPROVED -> PROCESSING` with its attempt before the
//! call, the answer after it), so the batched figure's floor is the store's write throughput.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use payout_core::domain::{
    Actor, AuditEntry, Payout, PayoutAttempt, PayoutId, PayoutItem, Period, Provider, Recipient,
};
use payout_core::money::{Currency, Money};
use payout_core::provider::{
    AttemptLookup, Capabilities, EventReference, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus,
    SendReceipt,
};
use payout_core::service::{BulkOutcome, PerformanceConfig};
use payout_core::source::StaticDirectory;
use payout_core::status::PayoutStatus;
use payout_core::store::{
    BulkPayoutStore, CarryOver, ExportRow, NewPayout, Page, PayoutChange, PayoutFilter, PayoutPage, PeriodBatch,
    PeriodBatchOutcome,
};
use payout_core::testkit::fixtures;
use payout_core::{PayoutService, PayoutStore, ProviderError, WebhookError};
use payout_providers::RetryPolicy;
use payout_providers::paypal::{MAX_BATCH_ITEMS, PaypalConfig, PaypalProvider};
use payout_providers::stripe::{StripeConfig, StripeProvider};
use payout_store_sqlx::PgStore;
use serde_json::{Value, json};

use crate::common::{Report, bench_schema, secs, timed};

/// The most items the service's bulk trigger puts in one batch call.
const SERVICE_BATCH_ITEMS: usize = 1_000;

const SECTION: &str = "trigger";
/// What every provider call costs at the double.
const LATENCY: Duration = Duration::from_millis(50);
/// The service's bounded concurrency under test.
const CONCURRENCY: usize = 64;
/// How many payouts one `create_period` call writes while setting up.
const SETUP_CHUNK: usize = 500;
/// The double's PayPal credentials and token.
const PAYPAL_CLIENT_ID: &str = "bench-client";
const PAYPAL_SECRET: &str = "bench-secret";
const PAYPAL_TOKEN: &str = "A21AA-bench-token";
/// The page size the PayPal adapter reads batches with.
const PAYPAL_PAGE: usize = 1000;

pub async fn run(report: &mut Report) {
    let n = report.scaled(10_000, CONCURRENCY);
    let double = Double::start().await;
    let schema = bench_schema("trigger").await;
    // The constructor a host uses (default pool size): the production shape.
    let store = PgStore::connect_with(schema.options())
        .await
        .expect("the Postgres store in the benchmark schema");
    let pool = store.pool().clone();
    let directory = StaticDirectory::new((0..n).map(recipient));
    let stripe = StripeProvider::new(
        StripeConfig::builder()
            .secret_key("sk_test_bench")
            .api_base(double.url.clone())
            .retry(RetryPolicy::no_retries())
            .build()
            .expect("a Stripe config"),
    )
    .expect("the Stripe adapter");
    let paypal = PaypalProvider::new(
        PaypalConfig::builder()
            .client_id(PAYPAL_CLIENT_ID)
            .client_secret(PAYPAL_SECRET)
            .api_base(double.url.clone())
            .retry(RetryPolicy::no_retries())
            .build()
            .expect("a PayPal config"),
    )
    .expect("the PayPal adapter");
    let spans = Arc::new(Spans::default());
    let service = PayoutService::builder()
        .store(Arc::new(TimedStore {
            inner: Arc::new(store),
            spans: spans.clone(),
        }))
        .directory(Arc::new(directory))
        .provider(Arc::new(TimedProvider {
            inner: Arc::new(stripe),
            spans: spans.clone(),
        }))
        .provider(Arc::new(TimedProvider {
            inner: Arc::new(paypal),
            spans: spans.clone(),
        }))
        .performance(PerformanceConfig::default().trigger_concurrency(CONCURRENCY))
        .build()
        .expect("the payout service");
    let admin = Actor::admin("bench");

    // One call per payout: Stripe.
    let ids = approved_payouts(&service, "s", fixtures::month(2025, 1), n).await;
    spans.take();
    let (outcomes, stripe_time) = timed(service.bulk_trigger(&admin, &ids, Provider::StripeConnect)).await;
    eprintln!("[{SECTION}] Stripe spans: {}", spans.take());
    check_outcomes("Stripe", &ids, &outcomes);
    check_stored(&pool, "po_s_", n).await;
    double.check_stripe(&ids);
    let ideal = LATENCY.mul_f64(n as f64 / CONCURRENCY as f64);
    eprintln!(
        "[{SECTION}] Stripe: {} calls, peak {} in flight at the double; {:.0} payouts/s",
        double.stripe_calls.load(Ordering::Relaxed),
        double.stripe_peak.load(Ordering::Relaxed),
        n as f64 / stripe_time.as_secs_f64()
    );
    report.time(
        SECTION,
        format!("bulk trigger {n} payouts, Stripe, concurrency {CONCURRENCY}, 50 ms provider"),
        stripe_time,
        format!("ideal n x 50 ms / {CONCURRENCY}"),
        ideal,
        1.15,
    );

    // Batching: PayPal.
    let ids = approved_payouts(&service, "p", fixtures::month(2025, 2), n).await;
    spans.take();
    let (outcomes, paypal_time) = timed(service.bulk_trigger(&admin, &ids, Provider::PaypalPayouts)).await;
    eprintln!("[{SECTION}] PayPal spans: {}", spans.take());
    check_outcomes("PayPal", &ids, &outcomes);
    check_stored(&pool, "po_p_", n).await;
    double.check_paypal(&ids);
    eprintln!(
        "[{SECTION}] PayPal: {} token, {} create ({} items), {} page reads; {:.0} payouts/s",
        double.paypal_tokens.load(Ordering::Relaxed),
        double.paypal_creates.load(Ordering::Relaxed),
        double.paypal_items.load(Ordering::Relaxed),
        double.paypal_reads.load(Ordering::Relaxed),
        n as f64 / paypal_time.as_secs_f64()
    );
    report.time(
        SECTION,
        format!("bulk trigger {n} payouts, PayPal batched, 50 ms provider"),
        paypal_time,
        format!("one call per payout (Stripe, concurrency {CONCURRENCY})"),
        stripe_time,
        0.2,
    );

    schema.drop().await;
}

/// Doctor `i`: a Stripe connected account and a PayPal email.
fn recipient(i: usize) -> Recipient {
    Recipient {
        doctor_id: format!("dr-{i:06}").into(),
        name: format!("Doctor {i}"),
        email: format!("dr{i}@example.com"),
        stripe_account_id: Some(format!("acct_bench{i:06}")),
        paypal_payout_email: Some(format!("dr{i}.paypal@example.com")),
        ..Recipient::default()
    }
}

/// `n` calculated payouts for `period`, one per doctor, ids `po_{tag}_{i}`, written with
/// `create_period` in chunks and approved through the service (not timed).
async fn approved_payouts(service: &PayoutService, tag: &str, period: Period, n: usize) -> Vec<PayoutId> {
    let store = service.store();
    let amount = Money::parse("123.45", Currency::USD).expect("an amount");
    let ids: Vec<PayoutId> = (0..n).map(|i| PayoutId::new(format!("po_{tag}_{i:06}"))).collect();
    for (c, chunk) in ids.chunks(SETUP_CHUNK).enumerate() {
        let payouts = chunk
            .iter()
            .enumerate()
            .map(|(j, id)| {
                let i = c * SETUP_CHUNK + j;
                let payout = fixtures::payout(id.as_str(), &format!("dr-{i:06}"), period, amount);
                NewPayout {
                    audit: fixtures::create_audit(&payout),
                    items: vec![fixtures::item(&format!("apt-{id}"), amount, period.starts_at())],
                    payout,
                    consumes_carry_overs: Vec::new(),
                }
            })
            .collect();
        let outcome = store
            .create_period(PeriodBatch {
                payouts,
                carry_overs: Vec::new(),
            })
            .await
            .expect("creating the payouts");
        assert_eq!(
            outcome.created.len(),
            chunk.len(),
            "every payout created: {:?}",
            outcome.skipped
        );
    }
    let approver = Actor::admin("bench-approver");
    let approved: Vec<bool> = futures::stream::iter(ids.iter())
        .map(|id| {
            let approver = &approver;
            async move { service.approve(approver, id).await.is_ok() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(approved.iter().all(|ok| *ok), "every payout approved");
    ids
}

/// Every outcome is for the right payout, a success, and leaves it `PAID` or `PROCESSING`.
fn check_outcomes(what: &str, ids: &[PayoutId], outcomes: &[BulkOutcome]) {
    assert_eq!(outcomes.len(), ids.len(), "{what}: one outcome per payout");
    let mut failures = 0;
    for (id, o) in ids.iter().zip(outcomes) {
        assert_eq!(&o.id, id, "{what}: outcomes in input order");
        match &o.result {
            Ok(Payout {
                status: PayoutStatus::Paid | PayoutStatus::Processing,
                ..
            }) => {}
            other => {
                if failures < 3 {
                    eprintln!("[{SECTION}] {what}: payout {id} ended {other:?}");
                }
                failures += 1;
            }
        }
    }
    assert_eq!(
        failures,
        0,
        "{what}: {failures} of {} payouts did not go through",
        ids.len()
    );
}

/// The database agrees: all `n` payouts with this id prefix are `PAID` or `PROCESSING`, each with
/// exactly one attempt.
async fn check_stored(pool: &sqlx::PgPool, prefix: &str, n: usize) {
    let like = format!("{prefix}%");
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM payouts WHERE id LIKE $1 GROUP BY status ORDER BY status")
            .bind(&like)
            .fetch_all(pool)
            .await
            .expect("counting payouts by status");
    let through: i64 = counts
        .iter()
        .filter(|(s, _)| s == "PAID" || s == "PROCESSING")
        .map(|(_, c)| *c)
        .sum();
    assert_eq!(through, n as i64, "stored statuses of {prefix}*: {counts:?}");
    let (attempts,): (i64,) = sqlx::query_as("SELECT count(*) FROM payout_attempts WHERE payout_id LIKE $1")
        .bind(&like)
        .fetch_one(pool)
        .await
        .expect("counting attempts");
    assert_eq!(attempts, n as i64, "one attempt per payout for {prefix}*");
}

/// The provider double: Stripe transfers and PayPal Payouts (token, create, read), each answered
/// after [`LATENCY`], recording what it was sent.
#[derive(Default)]
struct Double {
    url: String,
    stripe_calls: AtomicUsize,
    stripe_in_flight: AtomicUsize,
    stripe_peak: AtomicUsize,
    /// Idempotency keys whose header and `metadata[idempotency_key]` agreed.
    stripe_keys: Mutex<HashSet<String>>,
    /// Requests without a key, or whose header and metadata disagreed (answered 400).
    stripe_bad: AtomicUsize,
    paypal_tokens: AtomicUsize,
    paypal_creates: AtomicUsize,
    paypal_items: AtomicUsize,
    paypal_reads: AtomicUsize,
    /// Requests refused: bad token, `PayPal-Request-Id != sender_batch_id`, malformed body.
    paypal_bad: AtomicUsize,
    paypal_item_keys: Mutex<HashSet<String>>,
    /// Batch id -> its items as `GET /v1/payments/payouts/{id}` lists them.
    paypal_batches: Mutex<HashMap<String, Vec<Value>>>,
}

impl Double {
    /// Serves the double on 127.0.0.1 on a free port, on the current runtime.
    async fn start() -> Arc<Double> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the provider double");
        let addr = listener.local_addr().expect("the double's address");
        let double = Arc::new(Double {
            url: format!("http://{addr}"),
            ..Double::default()
        });
        let app = Router::new()
            .route("/v1/transfers", post(stripe_transfer))
            .route("/v1/oauth2/token", post(paypal_token))
            .route("/v1/payments/payouts", post(paypal_create))
            .route("/v1/payments/payouts/{id}", get(paypal_batch))
            .with_state(double.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serving the provider double");
        });
        double
    }

    /// Exactly one Stripe call per payout, each with the payout's first-attempt key.
    fn check_stripe(&self, ids: &[PayoutId]) {
        let keys = self.stripe_keys.lock().expect("keys");
        assert_eq!(
            self.stripe_bad.load(Ordering::Relaxed),
            0,
            "Stripe requests the double refused"
        );
        assert_eq!(self.stripe_calls.load(Ordering::Relaxed), ids.len(), "Stripe calls");
        assert_eq!(keys.len(), ids.len(), "distinct Stripe idempotency keys");
        for id in ids {
            assert!(keys.contains(&format!("{id}-1")), "no Stripe call carried {id}'s key");
        }
    }

    /// One token, `ceil(n / 1,000)` creates (the bulk trigger sends batches of up to 1,000 items, each
    /// as soon as its attempts are committed; PayPal's own limit is 15,000) carrying each payout's
    /// first-attempt key once, and every created batch read back page by page.
    fn check_paypal(&self, ids: &[PayoutId]) {
        let n = ids.len();
        let keys = self.paypal_item_keys.lock().expect("keys");
        assert_eq!(
            self.paypal_bad.load(Ordering::Relaxed),
            0,
            "PayPal requests the double refused"
        );
        assert_eq!(self.paypal_tokens.load(Ordering::Relaxed), 1, "PayPal token calls");
        let creates = n.div_ceil(SERVICE_BATCH_ITEMS.min(MAX_BATCH_ITEMS));
        assert_eq!(
            self.paypal_creates.load(Ordering::Relaxed),
            creates,
            "PayPal create calls"
        );
        assert_eq!(self.paypal_items.load(Ordering::Relaxed), n, "PayPal items sent");
        assert_eq!(keys.len(), n, "distinct sender_item_ids");
        for id in ids {
            assert!(keys.contains(&format!("{id}-1")), "no PayPal item carried {id}'s key");
        }
        let pages: usize = self
            .paypal_batches
            .lock()
            .expect("batches")
            .values()
            .map(|items| items.len().div_ceil(PAYPAL_PAGE))
            .sum();
        assert_eq!(
            self.paypal_reads.load(Ordering::Relaxed),
            pages,
            "PayPal batch page reads"
        );
    }
}

/// Decrements the in-flight count when a request ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `POST /v1/transfers`: a transfer object, like Stripe's.
async fn stripe_transfer(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = d.stripe_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    let _in_flight = InFlight(&d.stripe_in_flight);
    d.stripe_peak.fetch_max(now, Ordering::Relaxed);
    let call = d.stripe_calls.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    let form: HashMap<String, String> = form_fields(&body);
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let (Some(key), Some(amount), Some(currency), Some(destination)) = (
        header_key.filter(|k| form.get("metadata[idempotency_key]").map(String::as_str) == Some(*k)),
        form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        form.get("currency"),
        form.get("destination"),
    ) else {
        d.stripe_bad.fetch_add(1, Ordering::Relaxed);
        let error =
            json!({"error": {"type": "invalid_request_error", "message": "bench double: bad transfer request"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    d.stripe_keys.lock().expect("keys").insert(key.to_string());
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            let inner = k.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((inner.to_string(), Value::String(v.clone())))
        })
        .collect();
    Json(json!({
        "id": format!("tr_bench{call:08}"), "object": "transfer", "amount": amount, "amount_reversed": 0,
        "balance_transaction": format!("txn_bench{call:08}"), "created": 1_738_396_800, "currency": currency,
        "destination": destination, "destination_payment": format!("py_bench{call:08}"), "livemode": false,
        "metadata": metadata, "reversed": false, "transfer_group": form.get("transfer_group"),
    }))
    .into_response()
}

/// `POST /v1/oauth2/token`: a client-credentials token.
async fn paypal_token(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    d.paypal_tokens.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "));
    if !basic || form_fields(&body).get("grant_type").map(String::as_str) != Some("client_credentials") {
        d.paypal_bad.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    Json(json!({
        "scope": "https://uri.paypal.com/services/payments/payouts", "access_token": PAYPAL_TOKEN,
        "token_type": "Bearer", "app_id": "APP-BENCH", "expires_in": 32_400, "nonce": "2025-02-01T08:00:00Z",
    }))
    .into_response()
}

fn paypal_authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {PAYPAL_TOKEN}"))
}

fn paypal_refused(d: &Double, status: StatusCode, name: &str) -> Response {
    d.paypal_bad.fetch_add(1, Ordering::Relaxed);
    (
        status,
        Json(json!({"name": name, "message": "bench double refused the request", "debug_id": "bench"})),
    )
        .into_response()
}

/// `POST /v1/payments/payouts`: 201 with the batch header; the items are kept for the reads.
async fn paypal_create(State(d): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Response {
    let create = d.paypal_creates.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    if !paypal_authorized(&headers) {
        return paypal_refused(&d, StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILURE");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return paypal_refused(&d, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    };
    let sender_batch_id = request["sender_batch_header"]["sender_batch_id"].as_str().unwrap_or("");
    let request_id = headers.get("paypal-request-id").and_then(|v| v.to_str().ok());
    let items = request["items"].as_array();
    let (Some(items), true) = (
        items,
        !sender_batch_id.is_empty() && request_id == Some(sender_batch_id),
    ) else {
        return paypal_refused(&d, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    };
    let batch_id = format!("BENCHBATCH{create:06}");
    let mut listed = Vec::with_capacity(items.len());
    {
        let mut keys = d.paypal_item_keys.lock().expect("keys");
        for (i, item) in items.iter().enumerate() {
            let key = item["sender_item_id"].as_str().unwrap_or("");
            keys.insert(key.to_string());
            listed.push(json!({
                "payout_item_id": format!("ITEM{create:03}X{i:06}"), "transaction_id": format!("TX{create:03}X{i:06}"),
                "transaction_status": "SUCCESS", "payout_batch_id": batch_id,
                "payout_item_fee": {"currency": item["amount"]["currency"], "value": "0.25"},
                "payout_item": {"recipient_type": item["recipient_type"], "amount": item["amount"],
                                "receiver": item["receiver"], "note": item["note"], "sender_item_id": key,
                                "recipient_wallet": "PAYPAL"},
                "time_processed": "2025-02-01T08:00:00Z",
            }));
        }
    }
    d.paypal_items.fetch_add(items.len(), Ordering::Relaxed);
    d.paypal_batches
        .lock()
        .expect("batches")
        .insert(batch_id.clone(), listed);
    let answer = json!({
        "batch_header": {"payout_batch_id": batch_id, "batch_status": "PENDING",
                         "sender_batch_header": request["sender_batch_header"]},
        "links": [{"href": format!("{}/v1/payments/payouts/{batch_id}", d.url), "rel": "self", "method": "GET"}],
    });
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// `GET /v1/payments/payouts/{id}?page=&page_size=`: one page of a created batch.
async fn paypal_batch(
    State(d): State<Arc<Double>>,
    Path(batch_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    d.paypal_reads.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    if !paypal_authorized(&headers) {
        return paypal_refused(&d, StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILURE");
    }
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1).max(1);
    let size: usize = query
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let batches = d.paypal_batches.lock().expect("batches");
    let Some(items) = batches.get(&batch_id) else {
        drop(batches);
        return paypal_refused(&d, StatusCode::NOT_FOUND, "INVALID_RESOURCE_ID");
    };
    let on_page: Vec<Value> = items.iter().skip((page - 1) * size).take(size).cloned().collect();
    Json(json!({
        "total_items": items.len(), "total_pages": items.len().div_ceil(size),
        "batch_header": {"payout_batch_id": batch_id, "batch_status": "SUCCESS"},
        "items": on_page, "links": [],
    }))
    .into_response()
}

/// `application/x-www-form-urlencoded` fields (`+` is a space, `%XX` a byte).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| Some(hex(bytes[i + 1])? << 4 | hex(bytes[i + 2])?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b'+', None) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, None) => {
                    out.push(b);
                    i += 1;
                }
            }
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

/// Where the time goes: how many calls each store method and the provider's `send` got, and how
/// long they took in all (wall time per call, summed over concurrent calls).
#[derive(Default)]
struct Spans {
    calls: Mutex<HashMap<&'static str, (u64, Duration)>>,
}

impl Spans {
    async fn time<T>(&self, what: &'static str, f: impl std::future::Future<Output = T>) -> T {
        let start = std::time::Instant::now();
        let out = f.await;
        let took = start.elapsed();
        let mut calls = self.calls.lock().expect("spans");
        let e = calls.entry(what).or_default();
        e.0 += 1;
        e.1 += took;
        out
    }

    /// `what: calls x mean` for each span, and resets them.
    fn take(&self) -> String {
        let mut calls: Vec<_> = self.calls.lock().expect("spans").drain().collect();
        calls.sort_by_key(|(what, _)| *what);
        calls
            .iter()
            .map(|(what, (count, total))| format!("{what} {count} x {}", secs(*total / (*count).max(1) as u32)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A store that times every call of the trigger path.
struct TimedStore {
    inner: Arc<dyn PayoutStore>,
    spans: Arc<Spans>,
}

#[async_trait::async_trait]
impl PayoutStore for TimedStore {
    async fn create_period(&self, batch: PeriodBatch) -> payout_core::Result<PeriodBatchOutcome> {
        self.inner.create_period(batch).await
    }
    async fn create_payout(&self, new: NewPayout) -> payout_core::Result<Payout> {
        self.inner.create_payout(new).await
    }
    async fn get(&self, id: &PayoutId) -> payout_core::Result<Payout> {
        self.spans.time("store.get", self.inner.get(id)).await
    }
    async fn list(&self, filter: &PayoutFilter, page: &Page) -> payout_core::Result<PayoutPage> {
        self.inner.list(filter, page).await
    }
    fn stream(&self, filter: PayoutFilter) -> BoxStream<'static, payout_core::Result<Payout>> {
        self.inner.stream(filter)
    }
    async fn items(&self, id: &PayoutId) -> payout_core::Result<Vec<PayoutItem>> {
        self.inner.items(id).await
    }
    async fn apply(&self, change: PayoutChange) -> payout_core::Result<Payout> {
        self.spans.time("store.apply", self.inner.apply(change)).await
    }
    async fn attempts(&self, id: &PayoutId) -> payout_core::Result<Vec<PayoutAttempt>> {
        self.spans.time("store.attempts", self.inner.attempts(id)).await
    }
    async fn find_attempt(
        &self,
        provider: Provider,
        reference: &EventReference,
    ) -> payout_core::Result<Option<PayoutAttempt>> {
        self.inner.find_attempt(provider, reference).await
    }
    async fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> payout_core::Result<bool> {
        self.inner.webhook_event_seen(provider, event_id).await
    }
    async fn audit_trail(&self, id: &PayoutId) -> payout_core::Result<Vec<AuditEntry>> {
        self.inner.audit_trail(id).await
    }
    async fn stuck_processing(&self, updated_before: DateTime<Utc>, limit: u32) -> payout_core::Result<Vec<Payout>> {
        self.inner.stuck_processing(updated_before, limit).await
    }
    async fn open_carry_overs(&self, before: NaiveDate) -> payout_core::Result<Vec<CarryOver>> {
        self.inner.open_carry_overs(before).await
    }
    /// The inner store's bulk abilities, timed too.
    fn bulk(&self) -> Option<Arc<dyn BulkPayoutStore>> {
        let inner = self.inner.bulk()?;
        Some(Arc::new(TimedBulk {
            inner,
            spans: self.spans.clone(),
        }))
    }
}

/// The bulk half of [`TimedStore`].
struct TimedBulk {
    inner: Arc<dyn BulkPayoutStore>,
    spans: Arc<Spans>,
}

#[async_trait::async_trait]
impl BulkPayoutStore for TimedBulk {
    async fn apply_all(&self, changes: Vec<PayoutChange>) -> Vec<payout_core::Result<Payout>> {
        self.spans.time("store.apply_all", self.inner.apply_all(changes)).await
    }
    async fn payouts_with_attempts(&self, ids: &[PayoutId]) -> payout_core::Result<Vec<(Payout, Vec<PayoutAttempt>)>> {
        self.spans
            .time("store.payouts_with_attempts", self.inner.payouts_with_attempts(ids))
            .await
    }
    fn export_rows(&self, filter: PayoutFilter) -> BoxStream<'static, payout_core::Result<ExportRow>> {
        self.inner.export_rows(filter)
    }
}

/// A provider adapter whose sends are timed.
struct TimedProvider {
    inner: Arc<dyn PayoutProvider>,
    spans: Arc<Spans>,
}

#[async_trait::async_trait]
impl PayoutProvider for TimedProvider {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        self.spans.time("provider.send", self.inner.send(instruction)).await
    }
    async fn send_batch(
        &self,
        instructions: &[PayoutInstruction],
    ) -> Result<Vec<Result<SendReceipt, ProviderError>>, ProviderError> {
        self.spans
            .time("provider.send_batch", self.inner.send_batch(instructions))
            .await
    }
    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        self.inner.verify_webhook(headers, body).await
    }
    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        self.inner.lookup(attempt).await
    }
}
