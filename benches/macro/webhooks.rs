//! Webhook ingestion through the demo server on Postgres, against `pgbench` running the same writes.
//!
//! **Measured.** The demo wiring (`payout_server::demo::build` on a fresh [`PgSchema`], the real
//! Stripe adapter with a webhook secret, no sample data, no background jobs) served by axum on
//! `127.0.0.1:0` in this process. `N` payouts are PROCESSING with an ACCEPTED Stripe attempt (written
//! through the `PayoutStore` API beforehand, not timed). [`CLIENTS`] concurrent reqwest clients
//! (keep-alive) then POST one signed `transfer.created` event per payout (about 1 KiB, the transfer
//! `tr_bench_<i>` with the attempt's idempotency key in `metadata`, as Stripe sends it) to `/api/webhooks/stripe-payouts`. Each
//! request is the whole path: HTTP, `Stripe-Signature` verification on the raw bytes, translation,
//! dedup, the attempt lookup and the store transaction that moves the payout to PAID and records the
//! webhook event and the audit entry. The rate is `N` over the wall time of the requests; each
//! request's latency gives p50 and p99. A warm-up of `8 * CLIENTS` events on other payouts opens
//! the connections first (pgbench too excludes connecting). Afterwards every response must have been
//! 2xx with the event `applied`, and every payout PAID with exactly one `webhook_events` row, or the
//! benchmark panics.
//!
//! **Baseline.** `pgbench -n -M prepared -c CLIENTS -j CLIENTS -T <the webhook round's seconds>` in the
//! same schema, on a separate copy of the payouts and attempts, running the transaction one webhook
//! commits (see `payout-store-sqlx/src/write/apply.rs`): the payout's conditional status update by
//! primary key (PROCESSING to PAID, or back when a payout is drawn again, so that every transaction
//! changes a status as every webhook does), the attempt's outcome update, the `webhook_events` insert (`ON CONFLICT DO NOTHING`),
//! the audit insert and the follow-up upsert into `payout_checks` (since issue 14 every status change
//! writes one, see `PayoutChange::follow_up_written`), between `BEGIN` and `COMMIT`, on the same
//! tables, indexes, foreign keys and triggers. Its tps is what Postgres alone can commit here; the target is `>= 70%` of it, and
//! p99 `< 50 ms`. The two alternate in [`ROUNDS`] rounds (a third of the events, then pgbench for as
//! long, after a `VACUUM ANALYZE` of the five tables each time), so that load from elsewhere on a
//! shared machine falls on both alike; the rate and the tps are over all rounds.
//!
//! **Client count.** [`CLIENTS`] = 16 for both: Stripe delivers webhooks concurrently, and 16 keeps
//! two cores busy through commit waits on either side. The demo's pool (`PgStore`'s default, 16
//! connections, as many as pgbench's) is part of what is measured.
//!
//! The demo's per-client webhook rate limit (50/s per IP) is turned off: every client here is
//! 127.0.0.1, where in production Stripe delivers from many addresses. No tracing subscriber is
//! installed, so logging costs nothing. Client, server and Postgres share the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use payout_core::PayoutStore;
use payout_core::domain::{AttemptOutcome, PayoutAttempt, PayoutId, Provider};
use payout_core::status::{PayoutEvent, PayoutStatus};
use payout_core::testkit::fixtures;
use payout_providers::Secret;
use payout_providers::stripe::{SIGNATURE_HEADER, signature_header};
use payout_server::demo::{DemoConfig, app, build};
use payout_server::{AppState, ServerConfig};
use payout_store_sqlx::PgStore;
use sqlx::PgPool;

use crate::common::{PgTestSchema, Report, bench_schema, percentile, pg_url, secs};

/// Concurrent HTTP clients, and pgbench clients (see the module docs).
const CLIENTS: usize = 16;
/// Webhook events (one per payout) at scale 1.
const EVENTS: usize = 20_000;
/// Webhook and pgbench runs alternate this many times; the figures are over all rounds.
const ROUNDS: usize = 3;
/// Warm-up events per client, on payouts of their own.
const WARMUP_PER_CLIENT: usize = 8;
const WEBHOOK_SECRET: &str = "whsec_bench_4f9c2a7e1b3d5f8a6c0e2b4d6f8a1c3e";
const ROUTE: &str = "/api/webhooks/stripe-payouts";
/// Payout ids of the webhook run are `wh-<n>`, of the pgbench copy `pgb-<n>`.
const WEBHOOK_PREFIX: &str = "wh-";
const PGBENCH_PREFIX: &str = "pgb-";

pub async fn run(report: &mut Report) {
    let n = report.scaled(EVENTS, 200);
    let warmup = CLIENTS * WARMUP_PER_CLIENT;
    let schema = bench_schema("webhooks").await;

    // The demo reads real providers from the environment; Stripe gets a secret, so its webhooks are
    // verified for real. Its API base points nowhere: nothing here calls Stripe.
    // SAFETY: sections run one at a time and the runtime's other threads are idle here, so nothing
    // reads the environment concurrently.
    unsafe {
        std::env::set_var("STRIPE_SECRET_KEY", "sk_test_bench");
        std::env::set_var("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET);
        std::env::set_var("STRIPE_API_BASE", "http://127.0.0.1:9");
    }
    let config = DemoConfig {
        addr: "127.0.0.1:0".parse().expect("an address"),
        database_url: schema.url(),
        jwt_secret: "payouts-bench-secret".into(),
        simulation_token: "payouts-bench-simulation".into(),
        sample_data: false,
        reconcile_every: 0,
        reconcile_lease: None,
        four_eyes: true,
        approver_may_not_trigger: false,
        second_approval_above: Vec::new(),
        reversals: None,
        trusted_proxies: Default::default(),
        metrics_addr: None,
        shutdown_grace: payout_server::demo::DEFAULT_SHUTDOWN_GRACE,
        events: Default::default(),
        platform_name: payout_server::DEFAULT_PLATFORM_NAME.into(),
    };
    let demo = build(&config).await.expect("the demo wiring on Postgres");
    // All clients are 127.0.0.1: one rate-limit bucket would refuse all but 50/s.
    let mut server_config = ServerConfig::new(&config.jwt_secret);
    server_config.webhook_rate = None;
    let state = AppState::new(demo.service.clone(), server_config);
    let listener = tokio::net::TcpListener::bind(config.addr).await.expect("a local port");
    let addr = listener.local_addr().expect("the bound address");
    let server = tokio::spawn(async move {
        axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>()).await
    });

    // Setup, not timed: payouts PROCESSING with an accepted Stripe attempt, through the store.
    let pool = schema.pool(CLIENTS as u32).await;
    let store = PgStore::new(pool.clone());
    let started = Instant::now();
    stream::iter(0..n + warmup)
        .for_each_concurrent(CLIENTS, |i| seed_processing(&store, i))
        .await;
    copy_for_pgbench(&pool).await;
    vacuum(&pool).await;
    eprintln!(
        "[webhooks] setup: {} PROCESSING payouts (+{warmup} warm-up, + a copy for pgbench) in {}",
        n,
        secs(started.elapsed())
    );

    // Warm-up on payouts n..n+warmup, then the measured run on 0..n.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("an HTTP client");
    let url = format!("http://{addr}{ROUTE}");
    let warm = deliver(&client, &url, n..n + warmup).await;
    assert!(
        warm.failures.is_empty(),
        "warm-up failed: {:?}",
        &warm.failures[..3.min(warm.failures.len())]
    );
    // Alternating rounds, so that load from elsewhere on the machine falls on both sides alike.
    let mut latencies = Vec::with_capacity(n);
    let mut elapsed = Duration::ZERO;
    let (mut pgbench_tx, mut pgbench_secs) = (0.0, 0u64);
    for round in 0..ROUNDS {
        let range = n * round / ROUNDS..n * (round + 1) / ROUNDS;
        vacuum(&pool).await;
        let run = deliver(&client, &url, range.clone()).await;
        assert!(
            run.failures.is_empty(),
            "{} of {} webhooks failed, e.g. {:?}",
            run.failures.len(),
            range.len(),
            &run.failures[..3.min(run.failures.len())]
        );
        // pgbench for as long as the webhooks took (at least 3 s), after the same vacuum.
        vacuum(&pool).await;
        let seconds = run.elapsed.as_secs_f64().ceil().max(3.0) as u64;
        let tps = pgbench(&schema, n, seconds);
        eprintln!(
            "[webhooks] round {}: {} webhooks in {} ({:.0}/s); pgbench {tps:.0} tps for {seconds} s",
            round + 1,
            range.len(),
            secs(run.elapsed),
            range.len() as f64 / run.elapsed.as_secs_f64()
        );
        latencies.extend(run.latencies);
        elapsed += run.elapsed;
        pgbench_tx += tps * seconds as f64;
        pgbench_secs += seconds;
    }
    verify(&pool, n + warmup).await;
    let rate = n as f64 / elapsed.as_secs_f64();
    let tps = pgbench_tx / pgbench_secs as f64;
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    eprintln!(
        "[webhooks] {n} webhooks, {CLIENTS} clients: {} ({rate:.0}/s), p50 {}, p99 {}, max {}; pgbench {tps:.0} tps",
        secs(elapsed),
        secs(p50),
        secs(p99),
        secs(*latencies.last().expect("samples"))
    );

    report.rate(
        "webhooks",
        format!("signed Stripe webhooks through the demo server, {CLIENTS} clients, {n} events"),
        rate,
        "tx/s",
        format!("pgbench, the same writes in one transaction, {CLIENTS} clients, {pgbench_secs} s"),
        tps,
        0.70,
    );
    report.absolute(
        "webhooks",
        format!("webhook latency p99 (p50 {})", secs(p50)),
        secs(p99),
        "< 50 ms",
        p99 < Duration::from_millis(50),
    );

    server.abort();
    drop(demo);
    pool.close().await;
    schema.drop().await;
}

/// Payout `wh-<i>`: created, approved and triggered with Stripe (attempt 1 ACCEPTED, `tr_bench_<i>`).
async fn seed_processing(store: &PgStore, i: usize) {
    let now = Utc::now();
    let id = format!("{WEBHOOK_PREFIX}{i}");
    let new = fixtures::created_at(
        fixtures::manual_payout(&id, &format!("dr-{i}"), fixtures::month(2025, 1), &["1250.00"]),
        now,
    );
    let payout = store.create_payout(new).await.expect("creating a payout");
    let mut approve = fixtures::status_change(&payout, PayoutStatus::Approved, now);
    approve.patch.approved_by = Some("admin:bench".into());
    let payout = store.apply(approve).await.expect("approving a payout");
    let reference = format!("tr_bench_{i}");
    let mut trigger = fixtures::status_change(&payout, PayoutStatus::Processing, now);
    trigger.patch.provider = Some(Provider::StripeConnect);
    trigger.patch.provider_reference = Some(reference.clone());
    let mut attempt = fixtures::attempt(&payout.id, 1, Provider::StripeConnect, now);
    attempt.request_summary = "1250.00 KES to stripe acct_bench".into();
    attempt.outcome = AttemptOutcome::Accepted;
    attempt.provider_reference = Some(reference);
    trigger.new_attempt = Some(attempt);
    store.apply(trigger).await.expect("triggering a payout");
}

/// `VACUUM ANALYZE` of the tables both runs write (a bare `VACUUM` would take every schema).
async fn vacuum(pool: &PgPool) {
    sqlx::query("VACUUM ANALYZE payouts, payout_attempts, webhook_events, audit_entries, payout_checks")
        .execute(pool)
        .await
        .expect("VACUUM ANALYZE");
}

/// `pgb-<i>` copies of the measured payouts, their attempts and follow-ups, for pgbench to write to.
async fn copy_for_pgbench(pool: &PgPool) {
    let cols = "doctor_id, period_start, period_end, amount_minor, currency, status, provider, \
                provider_reference, notes, origin, created_by, approved_by, processed_at, created_at, updated_at, version";
    sqlx::query(&format!(
        "INSERT INTO payouts (id, {cols}) SELECT '{PGBENCH_PREFIX}' || substr(id, {skip}), {cols} FROM payouts \
         WHERE id LIKE '{WEBHOOK_PREFIX}%'",
        skip = WEBHOOK_PREFIX.len() + 1
    ))
    .execute(pool)
    .await
    .expect("copying payouts for pgbench");
    let cols = "attempt_no, provider, request_summary, outcome, outcome_reason, provider_reference, error, \
                created_at, updated_at";
    sqlx::query(&format!(
        "INSERT INTO payout_attempts (payout_id, idempotency_key, {cols}) \
         SELECT '{PGBENCH_PREFIX}' || substr(payout_id, {skip}), '{PGBENCH_PREFIX}' || idempotency_key, {cols} \
         FROM payout_attempts WHERE payout_id LIKE '{WEBHOOK_PREFIX}%'",
        skip = WEBHOOK_PREFIX.len() + 1
    ))
    .execute(pool)
    .await
    .expect("copying attempts for pgbench");
    // Their follow-ups, as the trigger wrote them: a webhook's change updates the existing row.
    sqlx::query(&format!(
        "INSERT INTO payout_checks (payout_id, next_check_at, checks, lease, attention, attention_since) \
         SELECT '{PGBENCH_PREFIX}' || substr(payout_id, {skip}), next_check_at, checks, lease, attention, attention_since \
         FROM payout_checks WHERE payout_id LIKE '{WEBHOOK_PREFIX}%'",
        skip = WEBHOOK_PREFIX.len() + 1
    ))
    .execute(pool)
    .await
    .expect("copying follow-ups for pgbench");
}

/// A `transfer.created` event for payout `wh-<i>`'s transfer, as Stripe sends it, signed now. A
/// created transfer has paid the connected account's balance, so the event settles the payout.
fn signed_event(i: usize) -> (Vec<u8>, String) {
    let now = Utc::now().timestamp();
    let key = PayoutAttempt::key_for(&PayoutId::new(format!("{WEBHOOK_PREFIX}{i}")), 1);
    let body = serde_json::json!({
        "id": format!("evt_bench_{i}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "type": "transfer.created",
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": format!("req_bench_{i}"), "idempotency_key": key},
        "data": {"object": {
            "id": format!("tr_bench_{i}"),
            "object": "transfer",
            "amount": 125000,
            "amount_reversed": 0,
            "balance_transaction": format!("txn_bench_{i}"),
            "created": now,
            "currency": "kes",
            "description": "Consultations 2025-01",
            "destination": "acct_1PzQv2Ql8mXyZa0b",
            "destination_payment": format!("py_bench_{i}"),
            "livemode": false,
            "reversals": {"object": "list", "data": [], "has_more": false, "total_count": 0,
                          "url": format!("/v1/transfers/tr_bench_{i}/reversals")},
            "reversed": false,
            "source_transaction": null,
            "source_type": "card",
            "transfer_group": key,
            "metadata": {"idempotency_key": key, "payout_id": format!("{WEBHOOK_PREFIX}{i}"),
                         "attempt_no": "1", "doctor_id": format!("dr-{i}")},
        }},
    });
    let body = serde_json::to_vec(&body).expect("JSON");
    let header = signature_header(&Secret::new(WEBHOOK_SECRET), now, &body);
    (body, header)
}

/// What one delivery run saw.
struct Delivery {
    elapsed: Duration,
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

/// POSTs the events of payouts `range` from [`CLIENTS`] concurrent clients, each taking the next
/// payout until none is left. Bodies are built and signed before the clock starts.
async fn deliver(client: &reqwest::Client, url: &str, range: std::ops::Range<usize>) -> Delivery {
    let events: Arc<Vec<(Vec<u8>, String)>> = Arc::new(range.clone().map(signed_event).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (client, url, events, next) = (client.clone(), url.to_string(), events.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, header)) = events.get(k) else { break };
                    let t = Instant::now();
                    let res = client
                        .post(&url)
                        .header(SIGNATURE_HEADER, header)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let outcome = match res {
                        Ok(r) => {
                            let status = r.status();
                            match r.text().await {
                                Ok(text) if status.is_success() && text.contains(r#""result":"applied""#) => Ok(()),
                                Ok(text) => Err(format!("{status}: {text}")),
                                Err(e) => Err(format!("{status}: reading the body: {e}")),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    latencies.push(t.elapsed());
                    if let Err(e) = outcome {
                        failures.push(e);
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut out = Delivery {
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(range.len()),
        failures: Vec::new(),
    };
    for w in workers {
        let (l, f) = w.await.expect("a client task");
        out.latencies.extend(l);
        out.failures.extend(f);
    }
    out.elapsed = started.elapsed();
    out
}

/// Every webhook payout PAID, with exactly one webhook event and one PROVIDER_PAID audit entry.
async fn verify(pool: &PgPool, expected: usize) {
    let like = format!("{WEBHOOK_PREFIX}%");
    let (paid, total): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*) FILTER (WHERE status = $1), COUNT(*) FROM payouts WHERE id LIKE $2")
            .bind(PayoutStatus::Paid.as_str())
            .bind(&like)
            .fetch_one(pool)
            .await
            .expect("counting payouts");
    assert_eq!((paid, total), (expected as i64, expected as i64), "every payout PAID");
    let (events, distinct): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT payout_id) FROM webhook_events WHERE payout_id LIKE $1")
            .bind(&like)
            .fetch_one(pool)
            .await
            .expect("counting webhook events");
    assert_eq!(
        (events, distinct),
        (expected as i64, expected as i64),
        "exactly one webhook event per payout"
    );
    let (audits,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_entries WHERE payout_id LIKE $1 AND action = $2")
            .bind(&like)
            .bind(PayoutEvent::ProviderPaid.as_str())
            .fetch_one(pool)
            .await
            .expect("counting audit entries");
    assert_eq!(audits, expected as i64, "one PROVIDER_PAID audit entry per payout");
}

/// Runs pgbench on the `pgb-` copies for `seconds` and returns its tps.
fn pgbench(schema: &PgTestSchema, n: usize, seconds: u64) -> f64 {
    let provider = Provider::StripeConnect.as_str();
    let paid = PayoutStatus::Paid.as_str();
    let processing = PayoutStatus::Processing.as_str();
    let action = PayoutEvent::ProviderPaid.as_str();
    let succeeded = AttemptOutcome::Succeeded.as_str();
    // The statements `apply` runs for a webhook, with values of the same shape and size. A payout drawn
    // again flips back to PROCESSING, so that every transaction changes a status, as every webhook
    // does: the status indexes and anything keyed by status (the per-status tallies) change each time.
    let script = format!(
        r#"\set id random(0, {last})
\set evt random(1, 9000000000000000000)
BEGIN;
UPDATE payouts SET status = CASE WHEN status = '{paid}' THEN '{processing}' ELSE '{paid}' END, provider = COALESCE(NULL, provider), provider_reference = COALESCE(NULL, provider_reference), notes = 'transfer.created: paid', approved_by = COALESCE(NULL, approved_by), processed_at = now(), updated_at = now(), version = version + 1 WHERE id = '{PGBENCH_PREFIX}' || :id::text AND version >= 1 AND status IN ('{processing}', '{paid}');
UPDATE payout_attempts SET outcome = '{succeeded}', outcome_reason = NULL, provider_reference = COALESCE(NULL, provider_reference), error = COALESCE(NULL, error), updated_at = now() WHERE payout_id = '{PGBENCH_PREFIX}' || :id::text AND attempt_no = 1;
INSERT INTO webhook_events (provider, event_id, payout_id, event_type, received_at) VALUES ('{provider}', 'evt_pgbench_' || :evt::text, '{PGBENCH_PREFIX}' || :id::text, 'transfer.created', now()) ON CONFLICT DO NOTHING;
INSERT INTO audit_entries (payout_id, actor, at, action, from_status, to_status, detail) VALUES ('{PGBENCH_PREFIX}' || :id::text, 'provider:' || '{provider}', now(), '{action}', '{processing}', '{paid}', 'webhook evt_pgbench_' || :evt::text || ' transfer.created: paid');
INSERT INTO payout_checks (payout_id, next_check_at, checks, lease, attention, attention_since) VALUES ('{PGBENCH_PREFIX}' || :id::text, now() + interval '1 day', 0, 1, NULL, NULL) {upsert};
COMMIT;
"#,
        last = n - 1,
        // `checks::UPSERT_FOLLOW_UP` in payout-store-sqlx, as the engine's statement runs it.
        upsert = "ON CONFLICT (payout_id) DO UPDATE SET next_check_at = excluded.next_check_at, checks = 0, \
                  lease = payout_checks.lease + 1, attention = excluded.attention, \
                  attention_since = CASE WHEN excluded.attention IS NULL THEN NULL \
                  ELSE COALESCE(payout_checks.attention_since, excluded.attention_since) END",
    );
    let path = std::env::temp_dir().join(format!("payouts-bench-webhooks-{}.sql", std::process::id()));
    std::fs::write(&path, script).expect("writing the pgbench script");
    let clients = CLIENTS.to_string();
    let out = std::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c", &clients, "-j", &clients, "-T"])
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&path)
        .arg(pg_url())
        .env("PGOPTIONS", format!("-c search_path={}", schema.name()))
        .output()
        .expect("running pgbench (is it on PATH?)");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
    };
    if let Some(failed) = field("number of failed transactions:") {
        assert!(failed.trim().starts_with("0 "), "pgbench transactions failed: {failed}");
    }
    let tps: f64 = field("tps = ")
        .and_then(|v| v.split_whitespace().next().and_then(|t| t.parse().ok()))
        .unwrap_or_else(|| panic!("no tps in pgbench's output:\n{stdout}"));
    tps
}
