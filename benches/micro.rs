//! Micro-benchmarks, each measured beside its baseline in the same run (BENCHMARKS.md).
//!
//! `cargo bench --features stripe --bench micro`
//!
//! 1. `status/transition_all_pairs` vs `status/table_lookup_all_pairs`: the state machine over all
//!    8 x 9 (status, event) pairs against a precomputed `[[u8; 9]; 8]` table.
//! 2. `stripe_webhook/verify_webhook_1KiB` vs `stripe_webhook/raw_hmac_sha256_1KiB`: the Stripe
//!    adapter's public verification path (header parse, HMAC, constant-time compare, tolerance,
//!    JSON translation) against a bare HMAC-SHA256 over the same signed payload bytes.
//! 3. `csv/push_record_export_row` vs `csv/push_str_prejoined_row`: one 8-cell export row encoded
//!    against appending the already-encoded row.

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use payout_core::PayoutProvider;
use payout_core::clock::ManualClock;
use payout_core::status::{PayoutEvent, PayoutStatus, Transition, transition};
use payout_providers::Secret;
use payout_providers::stripe::{SIGNATURE_HEADER, StripeConfig, StripeProvider, signature_header};
use sha2::Sha256;

/// `transition`'s answer as one byte: a status index, `NOOP`, or `REFUSED`.
const NOOP: u8 = 8;
const REFUSED: u8 = 9;

fn status_index(s: PayoutStatus) -> u8 {
    PayoutStatus::ALL
        .iter()
        .position(|x| *x == s)
        .map_or(u8::MAX, |i| i as u8)
}

fn encode(r: Result<Transition, payout_core::status::RefusedTransition>) -> u8 {
    match r {
        Ok(Transition::To(s)) => status_index(s),
        Ok(Transition::NoOp) => NOOP,
        Err(_) => REFUSED,
    }
}

fn transition_table() -> [[u8; 9]; 8] {
    let mut table = [[0u8; 9]; 8];
    for (i, from) in PayoutStatus::ALL.into_iter().enumerate() {
        for (j, event) in PayoutEvent::ALL.into_iter().enumerate() {
            table[i][j] = encode(transition(from, event));
        }
    }
    table
}

fn bench_status(c: &mut Criterion) {
    let table = transition_table();
    let mut g = c.benchmark_group("status");
    g.bench_function("transition_all_pairs", |b| {
        b.iter(|| {
            for from in black_box(PayoutStatus::ALL) {
                for event in black_box(PayoutEvent::ALL) {
                    let _ = black_box(transition(from, event));
                }
            }
        })
    });
    g.bench_function("table_lookup_all_pairs", |b| {
        b.iter(|| {
            let table = black_box(&table);
            for i in black_box(0..8usize) {
                for j in black_box(0..9usize) {
                    black_box(table[i][j]);
                }
            }
        })
    });
    g.finish();
}

/// A realistic `payout.paid` event, padded through its metadata to exactly 1 KiB.
fn stripe_body() -> Vec<u8> {
    let head = r#"{"id":"evt_1QbXk2LkdIwHu7ixH0nR4sTq","object":"event","api_version":"2024-06-20","created":1700000000,"type":"payout.paid","livemode":false,"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"account":"acct_1PzQv2Ql8mXyZa0b","data":{"object":{"id":"po_1QbXjzQl8mXyZa0bC3dE4fGh","object":"payout","amount":125000,"arrival_date":1700006400,"automatic":false,"balance_transaction":"txn_1QbXjzQl8mXyZa0bYx9wVu8t","currency":"usd","description":"Consultations 2023-11","destination":"ba_1PzQv4Ql8mXyZa0bKj7hGf6e","failure_code":null,"failure_message":null,"method":"standard","source_type":"card","statement_descriptor":"PAYOUTS","status":"paid","type":"bank_account","metadata":{"idempotency_key":"payout-0190f2a4-7b3c-7d2e-9f1a-2b3c4d5e6f70-attempt-1","doctor_id":"doc_000042","note":""#;
    let tail = r#""}}}}"#;
    let pad = 1024 - head.len() - tail.len();
    let mut body = String::with_capacity(1024);
    body.push_str(head);
    body.extend(std::iter::repeat_n('x', pad));
    body.push_str(tail);
    assert_eq!(body.len(), 1024);
    body.into_bytes()
}

/// Drives a future that never waits on I/O (webhook verification is pure CPU) to completion.
fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn bench_stripe_webhook(c: &mut Criterion) {
    const SECRET: &str = "whsec_5f8a1c2e9b7d4f6a3c1e8b2d7f9a4c6e";
    const T: i64 = 1_700_000_000;
    let body = stripe_body();
    let header = signature_header(&Secret::new(SECRET), T, &body);
    let mut headers = HeaderMap::new();
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&header).expect("a valid header value"),
    );
    let now = chrono::DateTime::from_timestamp(T, 0).expect("a valid timestamp");
    let config = StripeConfig::builder()
        .secret_key("sk_test_bench")
        .webhook_secret(SECRET)
        .clock(Arc::new(ManualClock::new(now)))
        .build()
        .expect("a valid Stripe config");
    let provider = StripeProvider::new(config).expect("a Stripe provider");
    // The path must succeed, or the benchmark would time an early refusal.
    let events = run_ready(provider.verify_webhook(&headers, &body)).expect("the signature verifies");
    assert_eq!(events.len(), 1);

    // The exact bytes Stripe signs: `<t>.<body>`.
    let mut signed = format!("{T}.").into_bytes();
    signed.extend_from_slice(&body);

    let mut g = c.benchmark_group("stripe_webhook");
    g.bench_function("verify_webhook_1KiB", |b| {
        b.iter(|| run_ready(provider.verify_webhook(black_box(&headers), black_box(&body))))
    });
    g.bench_function("raw_hmac_sha256_1KiB", |b| {
        b.iter(|| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(black_box(SECRET.as_bytes())).expect("any key length");
            mac.update(black_box(&signed));
            mac.finalize().into_bytes()
        })
    });
    g.finish();
}

fn bench_csv(c: &mut Criterion) {
    let row: [&str; 8] = [
        "po_0190f2a4-7b3c-7d2e-9f1a-2b3c4d5e6f70",
        "doc_000042",
        "Okafor, Adaeze \"Ada\"",
        "=HYPERLINK(\"http://evil.example\")",
        "1250.00",
        "USD",
        "Bank of Example ****6789",
        "PAID",
    ];
    let mut expected = String::new();
    payout_core::csv::push_record(&mut expected, row);
    let prejoined = expected.clone();

    let mut g = c.benchmark_group("csv");
    g.bench_function("push_record_export_row", |b| {
        let mut out = String::with_capacity(256);
        b.iter(|| {
            out.clear();
            payout_core::csv::push_record(&mut out, black_box(row));
            black_box(&out);
        })
    });
    g.bench_function("push_str_prejoined_row", |b| {
        let mut out = String::with_capacity(256);
        b.iter(|| {
            out.clear();
            out.push_str(black_box(&prejoined));
            black_box(&out);
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
}

criterion_group! {
    name = micro;
    config = config();
    targets = bench_status, bench_stripe_webhook, bench_csv
}
criterion_main!(micro);
