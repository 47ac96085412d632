//! A throttling Stripe (issue 19 item 3; RELIABILITY.md, "Throttling provider"): the engine with the
//! real Stripe adapter (default request budget and retry policy of a `sk_test_` key: 25 requests per
//! second) pays through a Stripe double (`common/stripe_double.rs`) that answers 429 to every second
//! call for a while, then recovers.
//!
//! The window opens once the double has made 50 transfers (a count, so the "before" phase is the
//! same everywhere) and lasts `PAYOUTS_THROTTLE_WINDOW_SECS` seconds (5 by default; the issue's
//! minute is `PAYOUTS_THROTTLE_WINDOW_SECS=60`, the same test). The payouts are calculated, approved
//! and bulk-triggered through `PayoutService`, then reconciled until none is PROCESSING.
//!
//! Checked: no payout ends FAILED; after reconciliation every attempt has a known outcome and every
//! payout is PAID with its one attempt (key `{id}-1`) succeeded; the double moved money exactly once
//! per payout (one transfer per key and per payout, the amounts the payouts' own); and the client
//! backed off: the 429s it drew are at most a quarter of what a client keeping its rate through the
//! window would draw (`window x 25/s / 2`). That bound is a count, not a timing assert: a slower
//! machine only makes fewer calls. The figures (request rates before, during and after the window,
//! 429s per successful send) are printed; run with `--nocapture` to see them.

mod common;
#[path = "common/stripe_double.rs"]
mod stripe_double;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use payouts::domain::{Actor, AttemptOutcome, Consultation, Provider, Recipient};
use payouts::memory::MemoryStore;
use payouts::providers::RetryPolicy;
use payouts::providers::stripe::{StripeConfig, StripeProvider};
use payouts::service::{ReconcilePolicy, ServicePolicy};
use payouts::source::{StaticConsultations, StaticDirectory};
use payouts::status::PayoutStatus;
use payouts::{PayoutService, PayoutStore};

use common::{calculate, january};
use stripe_double::{StripeDouble, Throttle};

/// The throttle window's length in seconds.
const WINDOW_VAR: &str = "PAYOUTS_THROTTLE_WINDOW_SECS";
const DEFAULT_WINDOW_SECS: u64 = 5;
/// Transfers made before the window opens.
const BEFORE: usize = 50;
/// The adapter's default budget for a test-mode key (requests per second).
const BUDGET: u64 = 25;
/// How long reconciliation may take, after the window has closed, to settle every payout.
const RECONCILE_LIMIT: Duration = Duration::from_secs(180);

fn window() -> Duration {
    let secs = std::env::var(WINDOW_VAR)
        .ok()
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .expect("PAYOUTS_THROTTLE_WINDOW_SECS: whole seconds")
        })
        .unwrap_or(DEFAULT_WINDOW_SECS);
    assert!(secs > 0, "{WINDOW_VAR} must be at least 1");
    Duration::from_secs(secs)
}

fn doctor(i: usize) -> String {
    format!("dr-{i:04}")
}

fn service(n: usize, stripe: StripeProvider, store: Arc<MemoryStore>) -> PayoutService {
    let base = Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap();
    let consultations = StaticConsultations::new(
        (0..n)
            .map(|i| Consultation {
                appointment_id: format!("apt-{i:04}"),
                doctor_id: doctor(i).into(),
                completed_at: base + chrono::Duration::minutes(i as i64),
            })
            .collect(),
    );
    let directory = StaticDirectory::new((0..n).map(|i| Recipient {
        doctor_id: doctor(i).into(),
        name: format!("Dr. {i:04}"),
        email: format!("dr{i:04}@example.com"),
        stripe_account_id: Some(format!("acct_throttle{i:04}")),
        ..Default::default()
    }));
    // Failed lookups are looked at again after a second (two at most), so the passes below see
    // them again soon; everything else is the default.
    let policy = ServicePolicy {
        reconcile: ReconcilePolicy {
            recheck_after: chrono::Duration::seconds(1),
            recheck_at_most: chrono::Duration::seconds(2),
            ..Default::default()
        },
        ..Default::default()
    };
    PayoutService::builder()
        .store(store)
        .consultations(Arc::new(consultations))
        .directory(Arc::new(directory))
        .provider(Arc::new(stripe))
        .policy(policy)
        .build()
        .expect("the payout service")
}

/// Requests per second among `calls` arriving in `[from, to)`.
fn rate(calls: &[stripe_double::Call], from: Instant, to: Instant) -> (usize, f64) {
    let n = calls.iter().filter(|c| c.at >= from && c.at < to).count();
    let secs = to.saturating_duration_since(from).as_secs_f64();
    (n, if secs > 0.0 { n as f64 / secs } else { 0.0 })
}

/// With the adapter's default retry policy (three tries): most refused sends go through on a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_answering_429_to_half_the_calls_for_a_while_pays_every_payout_exactly_once() {
    throttled_run("default retries", RetryPolicy::default()).await;
}

/// With no retries in the adapter: every refused send leaves its payout PROCESSING with an unknown
/// outcome, and reconciliation (a lookup by the attempt's key, then a re-send with it) pays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_adapter_retries_reconciliation_pays_every_refused_send_exactly_once() {
    let left = throttled_run("no retries", RetryPolicy::no_retries()).await;
    assert!(left > 0, "no send was refused, so reconciliation had nothing to do");
}

/// One run through a throttle window with `retry`; returns how many payouts the bulk trigger left
/// PROCESSING.
async fn throttled_run(name: &str, retry: RetryPolicy) -> usize {
    let window = window();
    // Enough payouts to keep sending through the window (at most about two calls a second get
    // through it) and for a while after it.
    let n = BEFORE + 100 + 4 * window.as_secs() as usize;
    let double = StripeDouble::start(Throttle::HalfDuring {
        after: BEFORE,
        length: window,
    })
    .await;
    // The adapter as a host builds it: a test-mode key, so Stripe's sandbox budget (25/s, 25/s per
    // endpoint), and the default retry policy.
    let config = StripeConfig::builder()
        .secret_key("sk_test_throttling_provider")
        .api_base(double.url.clone())
        .retry(retry)
        .build()
        .expect("a Stripe config");
    let stripe = StripeProvider::new(config).expect("the Stripe adapter");
    let store = Arc::new(MemoryStore::new());
    let service = service(n, stripe, store.clone());
    let ids = calculate(&service, january(), n).await;
    let approver = Actor::admin("approver");
    for id in &ids {
        service.approve(&approver, id).await.expect("approving");
    }

    // The bulk trigger: through the window, nothing may end FAILED.
    let outcomes = service
        .bulk_trigger(&Actor::admin("trigger"), &ids, Provider::StripeConnect)
        .await;
    let triggered = Instant::now();
    let mut left_processing = 0;
    for o in &outcomes {
        let payout = o.result.as_ref().expect("the bulk trigger took every payout");
        match payout.status {
            PayoutStatus::Paid => {}
            PayoutStatus::Processing => left_processing += 1,
            other => panic!("{} ended {other:?} after the bulk trigger: {:?}", o.id, payout.notes),
        }
    }
    let opened = double.window_opened().expect("the throttle window opened");
    let closed = opened + window;

    // Reconciliation until nothing is PROCESSING: a send refused every time it was tried was left
    // with an unknown outcome; the lookup finds no transfer and re-sends it with the same key.
    let deadline = closed.max(Instant::now()) + RECONCILE_LIMIT;
    let mut passes = 0;
    loop {
        let mut processing = 0;
        for id in &ids {
            let status = store.get(id).await.expect("a payout").status;
            assert!(
                matches!(status, PayoutStatus::Paid | PayoutStatus::Processing),
                "{id} is {status:?} during reconciliation"
            );
            if status == PayoutStatus::Processing {
                processing += 1;
            }
        }
        if processing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{processing} payouts still PROCESSING after {passes} reconciliation passes"
        );
        service
            .reconcile(chrono::Duration::zero())
            .await
            .expect("a reconciliation pass");
        passes += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every payout PAID by its one attempt, whose outcome is known.
    let mut expected_minor = 0i64;
    for id in &ids {
        let payout = store.get(id).await.expect("a payout");
        assert_eq!(payout.status, PayoutStatus::Paid, "{id}");
        expected_minor += payout.amount_due.to_minor_units().expect("minor units");
        let attempts = store.attempts(id).await.expect("its attempts");
        assert_eq!(attempts.len(), 1, "{id}: one attempt, re-sent with its key when needed");
        assert_eq!(attempts[0].idempotency_key, format!("{id}-1"));
        assert_eq!(attempts[0].outcome, AttemptOutcome::Succeeded, "{id}");
        assert!(attempts[0].provider_reference.is_some(), "{id}: the transfer's id");
    }

    // The double moved money exactly once per payout, with the payout's key and amount.
    assert_eq!(double.bad_requests(), 0, "requests the double refused as malformed");
    let transfers = double.transfers();
    assert_eq!(transfers.len(), n, "one transfer per idempotency key");
    let payouts_paid: HashSet<&str> = transfers
        .values()
        .map(|t| t.metadata.get("payout_id").expect("metadata[payout_id]").as_str())
        .collect();
    assert_eq!(payouts_paid.len(), n, "one transfer per payout");
    for id in &ids {
        let t = transfers
            .get(&format!("{id}-1"))
            .unwrap_or_else(|| panic!("no transfer for {id}"));
        assert_eq!(t.metadata.get("payout_id").map(String::as_str), Some(id.as_str()));
    }
    let moved: i64 = transfers.values().map(|t| t.amount).sum();
    assert_eq!(moved, expected_minor, "the money moved is what the payouts were due");

    // The figures.
    let calls = double.calls();
    let too_many = calls.iter().filter(|c| c.status == 429).count();
    let too_many_in_window = calls
        .iter()
        .filter(|c| c.status == 429 && c.at >= opened && c.at < closed)
        .count();
    let replays: usize = transfers.values().map(|t| t.posts - 1).sum();
    let first = calls.first().expect("calls").at;
    let (before_n, before) = rate(&calls, first, opened);
    let (during_n, during) = rate(&calls, opened, closed);
    let (after_n, after) = rate(&calls, closed, triggered);
    let unthrottled = window.as_secs() * BUDGET / 2;
    eprintln!(
        "[throttling, {name}] window {window:?}, {n} payouts, {left_processing} left PROCESSING by the bulk trigger, \
         {passes} reconciliation passes; {} calls, {too_many} answered 429 ({too_many_in_window} in the window), \
         {replays} replayed keys; 429s per successful send {:.3}; requests/s before {before:.1} ({before_n}), \
         during {during:.2} ({during_n}), after until the bulk trigger ended {after:.1} ({after_n}); \
         a client keeping its rate would have drawn {unthrottled} 429s in the window",
        calls.len(),
        too_many as f64 / n as f64,
    );

    // The window happened, and the client backed off through it.
    assert!(too_many_in_window > 0, "the double answered no 429 in its window");
    assert!(
        (too_many as u64) * 4 <= unthrottled,
        "{too_many} 429s: more than a quarter of the {unthrottled} a client keeping its rate of {BUDGET}/s \
         would draw in {window:?} of every second call refused"
    );
    left_processing
}
