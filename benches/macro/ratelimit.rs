//! Outbound rate limits (issue 15 item 6): a bulk trigger against a Stripe that enforces its limit.
//!
//! **Measured.** `N` = 10,000 approved payouts (in the memory store: the store is not what is
//! measured here) bulk-triggered with Stripe at `trigger_concurrency` 64 through the real Stripe
//! adapter with its default request budget (a `sk_test_` key: 25 requests per second, 25 per
//! endpoint) and its default retry policy, against the Stripe double the tests use
//! (`tests/common/stripe_double.rs`) admitting 25 requests per second (a token bucket of 25,
//! refilled continuously) and answering Stripe's `429 rate_limit` error beyond it, with no
//! `Retry-After` (Stripe sends none), each admitted call taking 50 ms. The rate is `N` over the wall time of the bulk trigger.
//!
//! **Baseline.** The double's limit, 25 transfers per second: no client can do better. Targets:
//! at least 90% of it, at most 1% of the calls answered 429, and no payout left with an unknown
//! outcome (every one PAID, every attempt SUCCEEDED, the double saw every key and paid each once).
//!
//! `PAYOUTS_BENCH_NO_BUDGET=1` runs the same without the budget (what the engine did before it had
//! one); the rate then counts only the payouts that were paid.

use std::sync::Arc;
use std::time::Duration;

use payout_core::domain::{Actor, AttemptOutcome, Provider};
use payout_core::memory::MemoryStore;
use payout_core::service::PerformanceConfig;
use payout_core::source::StaticDirectory;
use payout_core::status::PayoutStatus;
use payout_core::testkit::fixtures;
use payout_core::{PayoutService, PayoutStore};

use crate::trigger;
use payout_providers::stripe::{StripeConfig, StripeProvider};

use crate::common::{Report, timed};

/// The Stripe double the tests use too (`tests/throttling.rs`), here enforcing a rate limit.
#[path = "../../tests/common/stripe_double.rs"]
mod stripe_double;
use stripe_double::{StripeDouble, Throttle};

const SECTION: &str = "ratelimit";
/// What Stripe admits on `POST /v1/transfers` (its default per-endpoint limit, and the test-mode
/// account limit).
const LIMIT: f64 = 25.0;
/// What an admitted call costs at the double.
const LATENCY: Duration = Duration::from_millis(50);
const CONCURRENCY: usize = 64;

pub async fn run(report: &mut Report) {
    let n = report.scaled(10_000, CONCURRENCY);
    // A Stripe that enforces its rate limit: a token bucket of 25, refilled continuously.
    let double = StripeDouble::start_with_latency(Throttle::Bucket { per_second: LIMIT }, LATENCY).await;
    let url = double.url.clone();

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
    let transfers = double.transfers();
    let twice = transfers.values().filter(|t| t.posts > 1).count();
    if budget {
        assert_eq!(transfers.len(), n, "the double made one transfer per payout");
    }
    let answered = double.calls();
    let calls = answered.len();
    let too_many = answered.iter().filter(|c| c.status == 429).count();
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
