//! Macro benchmarks: each figure measured beside its baseline in the same run, the ratio printed.
//!
//! ```sh
//! cargo bench --features postgres,stripe,paypal --bench macro -- [SECTION...] [--scale F]
//! ```
//!
//! Sections (default: all, in this order):
//! - `calc`: the period calculation, 1,000,000 consultations across 10,000 doctors, on SQLite and
//!   on Postgres, against a hand-written `INSERT ... SELECT ... GROUP BY` plus items insert.
//! - `trigger`: 10,000 approved payouts bulk-triggered against local provider doubles with 50 ms
//!   latency at concurrency 64, against the ideal `n * latency / concurrency`; PayPal batching
//!   against one call per payout.
//! - `webhooks`: signed webhooks through the demo server on Postgres against `pgbench` running the
//!   equivalent update + insert transaction with the same number of clients.
//! - `list`: the admin list and the CSV export at 1,000,000 payouts on Postgres, against an index
//!   scan by hand and `COPY ... TO STDOUT (FORMAT csv)`.
//! - `reconcile`: 100,000 PROCESSING payouts on Postgres, 1% settled at a lookup double with 50 ms
//!   latency: the time until they are PAID against the ideal `n * latency / concurrency`, one
//!   instance and then two at once (and no attempt looked up twice in one pass).
//! - `ratelimit`: 10,000 Stripe payouts bulk-triggered with the adapter's default request budget
//!   against a double admitting 25 transfers per second and answering 429 beyond: the rate against
//!   that limit, the share of calls answered 429, and no payout left with an unknown outcome.
//! - `runpage`: the dashboard's run page for runs of 10,000 payouts among 200,000 on Postgres:
//!   p99 against an absolute target of 50 ms, the run's totals checked against a recount.
//!
//! `--scale F` multiplies every size (e.g. `--scale 0.01` for a quick check). Postgres comes from
//! `PAYOUTS_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each section
//! works in its own schema and drops it at the end. Results print as a Markdown table at the end.

mod calc;
mod common;
mod listing;
mod ratelimit;
mod reconcile;
mod runpage;
mod trigger;
mod webhooks;

use common::Report;

const SECTIONS: [&str; 7] = [
    "calc",
    "trigger",
    "webhooks",
    "list",
    "reconcile",
    "ratelimit",
    "runpage",
];

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(calc::CHILD_ARG) {
        calc::child_main(&argv[2], &argv[3]);
        return;
    }
    if argv.get(1).map(String::as_str) == Some(listing::CHILD_ARG) {
        listing::child_main(&argv[2], &argv[3], &argv[4]);
        return;
    }
    let mut scale = 1.0_f64;
    let mut wanted: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // cargo bench passes `--bench` to every bench target.
            "--bench" => {}
            "--scale" => {
                scale = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v: &f64| *v > 0.0)
                    .expect("--scale takes a positive number");
            }
            s if SECTIONS.contains(&s) || s == "all" => wanted.push(s.to_string()),
            other => panic!("unknown argument {other:?}; sections: {SECTIONS:?} or all; option: --scale F"),
        }
    }
    if wanted.is_empty() || wanted.iter().any(|w| w == "all") {
        wanted = SECTIONS.iter().map(|s| s.to_string()).collect();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut report = Report::new(scale);
    common::print_machine();
    for section in &wanted {
        runtime.block_on(async {
            match section.as_str() {
                "calc" => calc::run(&mut report).await,
                "trigger" => trigger::run(&mut report).await,
                "webhooks" => webhooks::run(&mut report).await,
                "list" => listing::run(&mut report).await,
                "reconcile" => reconcile::run(&mut report).await,
                "ratelimit" => ratelimit::run(&mut report).await,
                "runpage" => runpage::run(&mut report).await,
                _ => unreachable!(),
            }
        });
    }
    report.print();
}
