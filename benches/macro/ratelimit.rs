//! Outbound rate limits (issue 15 item 6): a bulk trigger against a Stripe that enforces its limit.
//!
//! **Measured.** `N` = 10,000 approved payouts (in the memory store: the store is not what is
//! measured here) bulk-triggered with Stripe at `trigger_concurrency` 64 through the real Stripe
//! adapter with its default request budget (a `sk_test_` key: 25 requests per second, 25 per
//! endpoint) and its default retry policy, against a local double of `POST /v1/transfers` that
//! admits 25 requests per second (a token bucket of 25, refilled continuously) and answers
//! Stripe's `429 rate_limit` error beyond it, with no `Retry-After` (Stripe sends none), each
//! admitted call taking 50 ms. The rate is `N` over the wall time of the bulk trigger.
//!
//! **Baseline.** The double's limit, 25 transfers per second: no client can do better. Targets:
//! at least 90% of it, at most 1% of the calls answered 429, and no payout left with an unknown
//! outcome (every one PAID, every attempt SUCCEEDED, the double saw every key and paid each once).
//!
//! `PAYOUTS_BENCH_NO_BUDGET=1` runs the same without the budget (what the engine did before it had
//! one); the rate then counts only the payouts that were paid.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use payout_core::domain::{Actor, AttemptOutcome, Provider};
use payout_core::memory::MemoryStore;
use payout_core::service::PerformanceConfig;
use payout_core::source::StaticDirectory;
use payout_core::status::PayoutStatus;
use payout_core::testkit::fixtures;
use payout_core::{PayoutService, PayoutStore};

use crate::trigger;
use payout_providers::stripe::{StripeConfig, StripeProvider};
use serde_json::json;

use crate::common::{Report, timed};

const SECTION: &str = "ratelimit";
/// What Stripe admits on `POST /v1/transfers` (its default per-endpoint limit, and the test-mode
/// account limit).
const LIMIT: f64 = 25.0;
/// What an admitted call costs at the double.
const LATENCY: Duration = Duration::from_millis(50);
const CONCURRENCY: usize = 64;

/// A Stripe that enforces its rate limit.
struct LimitedStripe {
    bucket: Mutex<(f64, Instant)>,
    calls: AtomicUsize,
    too_many: AtomicUsize,
    /// Transfers made, by idempotency key: (transfer id, times the key was sent and admitted).
    transfers: Mutex<HashMap<String, (String, usize)>>,
}

impl LimitedStripe {
    /// Takes a token if there is one.
    fn admit(&self) -> bool {
        let mut b = self.bucket.lock().expect("bucket");
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * LIMIT).min(LIMIT);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn transfer(State(d): State<Arc<LimitedStripe>>, headers: HeaderMap, body: Bytes) -> Response {
    d.calls.fetch_add(1, Ordering::Relaxed);
    if !d.admit() {
        d.too_many.fetch_add(1, Ordering::Relaxed);
        let error = json!({"error": {"type": "invalid_request_error", "code": "rate_limit",
            "message": "Too many requests hit the API too quickly."}});
        return (StatusCode::TOO_MANY_REQUESTS, Json(error)).into_response();
    }
    tokio::time::sleep(LATENCY).await;
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "invalid_request_error"}})),
        )
            .into_response();
    };
    let form: HashMap<String, String> = crate::trigger::double::form_fields(&body);
    let id = {
        let mut all = d.transfers.lock().expect("transfers");
        let next = all.len();
        let entry = all
            .entry(key.to_string())
            .or_insert_with(|| (format!("tr_rl{next:08}"), 0));
        entry.1 += 1;
        entry.0.clone()
    };
    let metadata: serde_json::Map<String, serde_json::Value> = form
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("metadata[")?.strip_suffix(']')?.to_string(), json!(v))))
        .collect();
    Json(json!({
        "id": id, "object": "transfer", "amount": form.get("amount").and_then(|a| a.parse::<i64>().ok()),
        "amount_reversed": 0, "created": 1_738_396_800, "currency": form.get("currency"),
        "destination": form.get("destination"), "livemode": false, "metadata": metadata, "reversed": false,
        "reversals": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/transfers/{id}/reversals")},
        "transfer_group": form.get("transfer_group"),
    }))
    .into_response()
}

pub async fn run(report: &mut Report) {
    let n = report.scaled(10_000, CONCURRENCY);
    let double = Arc::new(LimitedStripe {
        bucket: Mutex::new((LIMIT, Instant::now())),
        calls: AtomicUsize::new(0),
        too_many: AtomicUsize::new(0),
        transfers: Mutex::new(HashMap::new()),
    });
    let app = axum::Router::new()
        .route("/v1/transfers", post(transfer))
        .with_state(double.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("a port for the double");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the double serves") });

    // The adapter as a host builds it: the default budget (a test-mode key) and retry policy.
    // `PAYOUTS_BENCH_NO_BUDGET=1` turns the budget off, to see what the engine did before it had one.
    let mut config = StripeConfig::builder()
        .secret_key("sk_test_bench_rate_limit")
        .api_base(url);
    let budget = std::env::var_os("PAYOUTS_BENCH_NO_BUDGET").is_none();
    if !budget {
        config = config.rate_limit(payout_providers::RateLimit::unlimited());
    }
    let stripe = StripeProvider::new(config.build().expect("a Stripe config")).expect("the Stripe adapter");
    let store = Arc::new(MemoryStore::new());
    let service = PayoutService::builder()
        .store(store.clone())
        .directory(Arc::new(StaticDirectory::new((0..n).map(trigger::recipient))))
        .provider(Arc::new(stripe))
        .performance(PerformanceConfig {
            trigger_concurrency: CONCURRENCY,
            ..Default::default()
        })
        .build()
        .expect("the payout service");
    let ids = trigger::approved_payouts(&service, "rl", fixtures::month(2025, 1), n).await;

    let (outcomes, time) = timed(service.bulk_trigger(&Actor::admin("bench"), &ids, Provider::StripeConnect)).await;

    // No payout with an unknown outcome: every one PAID with its attempt SUCCEEDED.
    let mut unknown = 0;
    for (id, o) in ids.iter().zip(&outcomes) {
        if !budget {
            break;
        }
        assert_eq!(&o.id, id);
        let paid = matches!(&o.result, Ok(p) if p.status == PayoutStatus::Paid);
        let attempts = store.attempts(id).await.expect("attempts");
        if !paid || attempts.len() != 1 || attempts[0].outcome != AttemptOutcome::Succeeded {
            unknown += 1;
        }
    }
    if !budget {
        let processing = futures::future::join_all(ids.iter().map(|id| store.get(id)))
            .await
            .into_iter()
            .filter(|p| matches!(p, Ok(p) if p.status == PayoutStatus::Processing))
            .count();
        unknown = processing;
    }
    let transfers = double.transfers.lock().expect("transfers").clone();
    let twice = transfers.values().filter(|(_, times)| *times > 1).count();
    if budget {
        assert_eq!(transfers.len(), n, "the double made one transfer per payout");
    }
    let calls = double.calls.load(Ordering::Relaxed);
    let too_many = double.too_many.load(Ordering::Relaxed);
    // Payouts paid per second (all of them with the budget; without it, those not left unknown).
    let rate = (n - unknown) as f64 / time.as_secs_f64();
    let share_429 = too_many as f64 / calls as f64;
    eprintln!(
        "[{SECTION}] {n} payouts in {time:.1?}: {rate:.2}/s; {calls} calls, {too_many} answered 429 ({:.2}%); \
         {unknown} with an unknown outcome; {twice} keys admitted more than once (idempotent replays)",
        share_429 * 100.0
    );
    report.rate(
        SECTION,
        format!(
            "bulk trigger {n} Stripe payouts, {}, double admitting 25/s",
            if budget { "default budget" } else { "NO budget" }
        ),
        rate,
        "payouts/s",
        "the double's limit",
        LIMIT,
        0.9,
    );
    report.absolute(
        SECTION,
        "calls answered 429",
        format!("{too_many} of {calls} ({:.2}%)", share_429 * 100.0),
        "<= 1%",
        share_429 <= 0.01,
    );
    report.absolute(
        SECTION,
        "payouts left with an unknown outcome",
        unknown.to_string(),
        "0",
        unknown == 0,
    );
}
