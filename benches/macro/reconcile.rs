//! Reconciliation: how long a pass over a large PROCESSING backlog takes to settle what the
//! provider has settled, and whether two instances ever look the same attempt up in one pass.
//!
//! # What is measured
//! `n` (100,000 at scale 1) `PROCESSING` payouts, each with one Stripe attempt, are written to a
//! fresh Postgres schema before the clock starts (through the store's batch path, as a trigger
//! writes them). The provider is an in-process double of `PayoutProvider::lookup` that sleeps
//! [`LATENCY`] (50 ms) per lookup and answers `Paid` for 1% of the attempts and "still pending"
//! (`Accepted`) for the rest. Each instance is a `PayoutService` over its own `PgStore` pool (as two
//! processes would be) with `lookup_concurrency` [`CONCURRENCY`]:
//!
//! 1. **One instance**: `reconcile` until the 1% are all `PAID`, against the ideal `n x 50 ms /
//!    concurrency` (one lookup per PROCESSING payout at the double's latency and the engine's
//!    concurrency, free store). Target: at most 1.3x.
//! 2. **Two instances at once**, one back-off later (the clock is moved past it), with another 1%
//!    settled at the double: the time until those are `PAID`, against `n x 50 ms / (2 x
//!    concurrency)`, and the number of attempts looked up more than once in the pass. Targets: at
//!    most 1.3x, and none.
//!
//! # What is checked
//! Every settled payout is `PAID` in the database afterwards and every other one still
//! `PROCESSING`; each pass looked every PROCESSING attempt up (exactly once); no pass reported an
//! error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use http::HeaderMap;
use payout_core::clock::{Clock, ManualClock};
use payout_core::domain::{PayoutId, Period, Provider, Recipient};
use payout_core::money::{Currency, Money};
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::service::{PerformanceConfig, ReconcileReport};
use payout_core::source::StaticDirectory;
use payout_core::status::PayoutStatus;
use payout_core::store::{NewPayout, PayoutStoreExt};
use payout_core::testkit::fixtures;
use payout_core::{PayoutService, PayoutStore, ProviderError, WebhookError};
use payout_store_sqlx::PgStore;

use crate::common::{Report, bench_schema, timed};

const SECTION: &str = "reconcile";
/// What every lookup costs at the double.
const LATENCY: Duration = Duration::from_millis(50);
/// Each instance's lookup concurrency.
const CONCURRENCY: usize = 64;
/// How many payouts one setup write carries.
const SETUP_CHUNK: usize = 500;
/// Each instance's pool: two instances (32 connections) stay well inside CI's 100.
const POOL: u32 = 16;

/// The lookup double: 50 ms per lookup, `Paid` for the attempts in `settled`, else `Accepted`;
/// counts lookups per idempotency key.
#[derive(Default)]
struct Rail {
    settled: Mutex<std::collections::HashSet<String>>,
    lookups: Mutex<HashMap<String, usize>>,
}

impl Rail {
    fn take_lookups(&self) -> HashMap<String, usize> {
        std::mem::take(&mut *self.lookups.lock().expect("lookups"))
    }
}

#[async_trait]
impl PayoutProvider for Rail {
    fn provider(&self) -> Provider {
        Provider::StripeConnect
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn send(&self, _: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        panic!("the reconciliation benchmark never sends: every attempt is known to the double")
    }

    async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Ok(Vec::new())
    }

    async fn lookup(&self, a: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        *self
            .lookups
            .lock()
            .expect("lookups")
            .entry(a.idempotency_key.clone())
            .or_default() += 1;
        tokio::time::sleep(LATENCY).await;
        let paid = self.settled.lock().expect("settled").contains(&a.idempotency_key);
        Ok(if paid {
            ProviderStatus::Paid
        } else {
            ProviderStatus::Accepted
        })
    }
}

pub async fn run(report: &mut Report) {
    let n = report.scaled(100_000, 200);
    let schema = bench_schema("reconcile").await;
    let stores = [schema.store(POOL).await, schema.store(POOL).await];
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let rail = Arc::new(Rail::default());
    let instances: Vec<PayoutService> = stores
        .iter()
        .map(|store| {
            PayoutService::builder()
                .store(Arc::new(store.clone()))
                .directory(Arc::new(StaticDirectory::new((0..n).map(recipient))))
                .provider(rail.clone())
                .clock(clock.clone())
                .performance(PerformanceConfig {
                    lookup_concurrency: CONCURRENCY,
                    ..Default::default()
                })
                .build()
                .expect("the payout service")
        })
        .collect();
    let ids = processing_payouts(&stores[0], n, clock.now()).await;
    let key = |id: &PayoutId| format!("{id}-1");
    let pool = stores[0].pool().clone();

    // 1. One instance.
    let first: Vec<&PayoutId> = ids.iter().step_by(100).collect();
    rail.settled
        .lock()
        .expect("settled")
        .extend(first.iter().map(|id| key(id)));
    let ((reports, passes), time) = timed(until_paid(&instances[..1], &first, &stores[0])).await;
    let lookups = rail.take_lookups();
    check_pass(&reports, &lookups, n, "one instance");
    eprintln!(
        "[{SECTION}] one instance: {passes} pass(es), {} lookups",
        lookups.values().sum::<usize>()
    );
    check_stored(&pool, n, first.len()).await;
    let ideal = LATENCY.mul_f64(n as f64 / CONCURRENCY as f64);
    report.time(
        SECTION,
        format!("settle 1% of {n} PROCESSING, one instance, concurrency {CONCURRENCY}, 50 ms lookups"),
        time,
        format!("ideal n x 50 ms / {CONCURRENCY}"),
        ideal,
        1.3,
    );

    // 2. Two instances at once, one back-off later.
    clock.advance(chrono::Duration::hours(1));
    let second: Vec<&PayoutId> = ids.iter().skip(50).step_by(100).collect();
    rail.settled
        .lock()
        .expect("settled")
        .extend(second.iter().map(|id| key(id)));
    let ((reports, passes), time) = timed(until_paid(&instances, &second, &stores[0])).await;
    let lookups = rail.take_lookups();
    let still = n - first.len();
    check_pass(&reports, &lookups, still, "two instances");
    let twice = lookups.values().filter(|c| **c > 1).count();
    let per_instance: Vec<usize> = reports.iter().map(|r| r.examined).collect();
    eprintln!("[{SECTION}] two instances: {passes} pass(es), examined {per_instance:?}");
    check_stored(&pool, n, first.len() + second.len()).await;
    let ideal = LATENCY.mul_f64(still as f64 / (2 * CONCURRENCY) as f64);
    report.time(
        SECTION,
        format!("settle 1% of {still} PROCESSING, two instances, concurrency {CONCURRENCY} each"),
        time,
        format!("ideal n x 50 ms / (2 x {CONCURRENCY})"),
        ideal,
        1.3,
    );
    report.absolute(
        SECTION,
        "attempts looked up twice in one pass, two instances",
        twice.to_string(),
        "0",
        twice == 0,
    );
    schema.drop().await;
}

/// Runs `reconcile` on every instance at once, pass after pass, until every payout of `settled`
/// is `PAID`; returns the last pass's reports and the number of passes.
async fn until_paid(
    instances: &[PayoutService],
    settled: &[&PayoutId],
    store: &PgStore,
) -> (Vec<ReconcileReport>, usize) {
    let mut passes = 0;
    loop {
        passes += 1;
        let reports: Vec<ReconcileReport> =
            futures::future::join_all(instances.iter().map(|s| s.reconcile(chrono::Duration::zero())))
                .await
                .into_iter()
                .map(|r| r.expect("a reconciliation pass"))
                .collect();
        let mut all_paid = true;
        for id in settled {
            if store.get(id).await.expect("a payout").status != PayoutStatus::Paid {
                all_paid = false;
                break;
            }
        }
        if all_paid {
            return (reports, passes);
        }
        assert!(passes < 2, "the settled payouts are not all PAID after {passes} passes");
    }
}

/// The pass examined `expected` payouts in all, without errors, looking each attempt up.
fn check_pass(reports: &[ReconcileReport], lookups: &HashMap<String, usize>, expected: usize, what: &str) {
    let examined: usize = reports.iter().map(|r| r.examined).sum();
    assert_eq!(examined, expected, "{what}: payouts examined");
    let errors: Vec<_> = reports.iter().flat_map(|r| r.errors.iter()).take(3).collect();
    assert!(errors.is_empty(), "{what}: lookups failed: {errors:?}");
    assert_eq!(lookups.len(), expected, "{what}: every PROCESSING attempt looked up");
}

/// The database agrees: `paid` payouts `PAID`, the rest `PROCESSING`.
async fn check_stored(pool: &sqlx::PgPool, n: usize, paid: usize) {
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM payouts GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await
            .expect("counting payouts by status");
    let count = |s: &str| counts.iter().find(|(x, _)| x == s).map_or(0, |(_, c)| *c as usize);
    assert_eq!(
        (count("PAID"), count("PROCESSING")),
        (paid, n - paid),
        "stored statuses: {counts:?}"
    );
}

/// Doctor `i`: a Stripe connected account.
fn recipient(i: usize) -> Recipient {
    Recipient {
        doctor_id: format!("dr-{i:06}").into(),
        name: format!("Doctor {i}"),
        email: format!("dr{i}@example.com"),
        stripe_account_id: Some(format!("acct_bench{i:06}")),
        ..Recipient::default()
    }
}

/// `n` calculated payouts `po_r_{i}` moved to `PROCESSING` with one Stripe attempt each (key
/// `{id}-1`) an hour before `now`, through the store's batch path (not timed).
async fn processing_payouts(store: &PgStore, n: usize, now: chrono::DateTime<Utc>) -> Vec<PayoutId> {
    let period: Period = fixtures::month(2025, 1);
    let amount = Money::parse("123.45", Currency::USD).expect("an amount");
    let sent_at = now - chrono::Duration::hours(1);
    let ids: Vec<PayoutId> = (0..n).map(|i| PayoutId::new(format!("po_r_{i:06}"))).collect();
    for (c, chunk) in ids.chunks(SETUP_CHUNK).enumerate() {
        let payouts: Vec<NewPayout> = chunk
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
        let created = payout_core::testkit::store::seed(store, payouts).await;
        let approved = apply_all(
            store,
            created
                .iter()
                .map(|p| fixtures::status_change(p, PayoutStatus::Approved, sent_at))
                .collect(),
        )
        .await;
        let changes = approved
            .iter()
            .map(|p| {
                let mut change = fixtures::status_change(p, PayoutStatus::Processing, sent_at);
                change.patch.provider = Some(Provider::StripeConnect);
                let mut attempt = fixtures::attempt(&p.id, 1, Provider::StripeConnect, sent_at);
                attempt.idempotency_key = format!("{}-1", p.id);
                attempt.provider_reference = Some(format!("tr_{}", p.id));
                change.new_attempt = Some(attempt);
                change
            })
            .collect();
        apply_all(store, changes).await;
    }
    ids
}

async fn apply_all(
    store: &PgStore,
    changes: Vec<payout_core::store::PayoutChange>,
) -> Vec<payout_core::domain::Payout> {
    store
        .apply_many(changes)
        .await
        .into_iter()
        .map(|r| r.expect("a setup change"))
        .collect()
}
