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
use chrono::NaiveDate;
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
    AttentionPage, BulkPayoutStore, CarryOver, CheckClaim, CheckDone, CheckState, ClaimedCheck, ExportRow, NewPayout,
    Page, PayoutChange, PayoutFilter, PayoutPage, PeriodBatch, PeriodBatchOutcome,
};
use payout_core::testkit::fixtures;
use payout_core::{PayoutService, PayoutStore, ProviderError, WebhookError};
use payout_providers::paypal::{MAX_BATCH_ITEMS, PaypalConfig, PaypalProvider};
use payout_providers::stripe::{StripeConfig, StripeProvider};
use payout_providers::{RateLimit, RetryPolicy};
use payout_store_sqlx::PgStore;
use serde_json::{Value, json};

use crate::common::{Report, bench_schema, secs, timed};

pub(crate) mod double;
mod timed;

use double::Double;
use timed::{Spans, TimedProvider, TimedStore};

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
            // The double limits nothing: what is measured is the engine against the ideal.
            .rate_limit(RateLimit::unlimited())
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
            .rate_limit(RateLimit::unlimited())
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
        .performance(PerformanceConfig {
            trigger_concurrency: CONCURRENCY,
            ..Default::default()
        })
        .build()
        .expect("the payout service");
    let admin = Actor::admin("bench");

    let run = Run {
        service: &service,
        admin: &admin,
        spans: &spans,
        pool: &pool,
        n,
    };

    // One call per payout: Stripe.
    let (ids, stripe_time) = run
        .bulk_trigger(Provider::StripeConnect, "s", fixtures::month(2025, 1))
        .await;
    double.check_stripe(&ids);
    let ideal = LATENCY.mul_f64(n as f64 / CONCURRENCY as f64);
    run.report(
        report,
        Provider::StripeConnect,
        double.stripe_stats(),
        stripe_time,
        (format!("ideal n x 50 ms / {CONCURRENCY}"), ideal, 1.15),
    );

    // Batching: PayPal.
    let (ids, paypal_time) = run
        .bulk_trigger(Provider::PaypalPayouts, "p", fixtures::month(2025, 2))
        .await;
    double.check_paypal(&ids);
    run.report(
        report,
        Provider::PaypalPayouts,
        double.paypal_stats(),
        paypal_time,
        (
            format!("one call per payout (Stripe, concurrency {CONCURRENCY})"),
            stripe_time,
            0.2,
        ),
    );

    schema.drop().await;
}

/// What one measured bulk trigger runs with.
struct Run<'a> {
    service: &'a PayoutService,
    admin: &'a Actor,
    spans: &'a Spans,
    pool: &'a sqlx::PgPool,
    n: usize,
}

impl Run<'_> {
    /// Approves `n` new payouts `po_{tag}_…` of `period` (not timed), then bulk-triggers them with
    /// `provider` (timed); checks every outcome and stored status, and prints the spans.
    async fn bulk_trigger(&self, provider: Provider, tag: &str, period: Period) -> (Vec<PayoutId>, Duration) {
        let ids = approved_payouts(self.service, tag, period, self.n).await;
        self.spans.take();
        let (outcomes, time) = timed(self.service.bulk_trigger(self.admin, &ids, provider)).await;
        eprintln!("[{SECTION}] {provider} spans: {}", self.spans.take());
        check_outcomes(provider.as_str(), &ids, &outcomes);
        check_stored(self.pool, &format!("po_{tag}_"), self.n).await;
        (ids, time)
    }

    /// Prints what the double saw and the rate, and adds the measurement beside its baseline (what
    /// it is, its time, the target ratio) to the report.
    fn report(
        &self,
        report: &mut Report,
        provider: Provider,
        stats: String,
        time: Duration,
        (baseline, baseline_time, target): (String, Duration, f64),
    ) {
        let n = self.n;
        eprintln!(
            "[{SECTION}] {provider}: {stats}; {:.0} payouts/s",
            n as f64 / time.as_secs_f64()
        );
        let what = match provider {
            Provider::PaypalPayouts => "PayPal batched".to_string(),
            _ => format!("Stripe, concurrency {CONCURRENCY}"),
        };
        report.time(
            SECTION,
            format!("bulk trigger {n} payouts, {what}, 50 ms provider"),
            time,
            baseline,
            baseline_time,
            target,
        );
    }
}

/// Doctor `i`: a Stripe connected account and a PayPal email.
pub(crate) fn recipient(i: usize) -> Recipient {
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
pub(crate) async fn approved_payouts(service: &PayoutService, tag: &str, period: Period, n: usize) -> Vec<PayoutId> {
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
        payout_core::testkit::store::seed(store.as_ref(), payouts).await;
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
