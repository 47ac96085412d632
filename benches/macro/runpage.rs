//! `runpage`: the dashboard's run page for runs of 10,000 payouts on Postgres.
//!
//! The data (not measured): 20 monthly runs of 10,000 payouts each (200,000 payouts of 10,000
//! doctors), filled by set-based `INSERT ... SELECT generate_series` like the `list` section, each
//! run a `CALCULATION` run holding its month's payouts. The older runs are mostly `PAID` (with
//! failures, returns and a few still processing); the newest is in flight: pending, approved,
//! processing, failed. The run tallies are filled by the store's own triggers as the members are
//! inserted. 50 payouts of the newest run are put on hold through the service (each an audited
//! change), and 2,000 per-payout results are recorded on it. A `doctor_profiles` table of the host
//! gives the page its doctors' names. Then `VACUUM ANALYZE`.
//!
//! What is measured: `GET /dashboard/admin/runs/{id}` through the library's router (signed-in
//! admin cookie, the whole HTML body read), for the newest run and for the oldest one, and the
//! runs list page; p50/p99 of each over 300 requests after 20 warm-up requests. Target: p99 under
//! 50 ms. There is no baseline: the figure is absolute. Before timing, the run's totals as the
//! service reads them (from the tallies) are checked against a `GROUP BY` over its members by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use payout_core::PayoutService;
use payout_core::domain::{Actor, PayoutId, RunId};
use payout_core::store::{Page, PayoutFilter};
use payout_server::{AppState, Claims, JwtKey, Role, ServerConfig, router};
use payout_store_sqlx::{PgStore, RecipientTable, SqlRecipientDirectory};
use sqlx::Row;
use sqlx::postgres::PgPool;
use tower::ServiceExt;

use crate::common::{Report, bench_schema, percentile, secs, timed};

const SECTION: &str = "runpage";
/// Payouts per run.
const RUN_SIZE: usize = 10_000;
/// Runs in the data.
const RUNS: usize = 20;
/// Requests timed per page, after the warm-up.
const REQUESTS: usize = 300;
const WARM_UP: usize = 20;
/// The target: p99 under this.
const TARGET: Duration = Duration::from_millis(50);
const SECRET: &str = "bench-secret-bench-secret-bench-secret";

pub async fn run(report: &mut Report) {
    let run_size = report.scaled(RUN_SIZE, 100);
    let schema = bench_schema(SECTION).await;
    let store = PgStore::connect_with(schema.options())
        .await
        .expect("the Postgres store");
    let pool = store.pool().clone();
    let store = Arc::new(store);
    let (_, load) = timed(seed(&pool, run_size)).await;
    eprintln!(
        "[{SECTION}] loaded {RUNS} runs of {run_size} payouts in {} (not measured)",
        secs(load)
    );
    let directory = SqlRecipientDirectory::new(pool.clone(), RecipientTable::default()).expect("the directory");
    let service = Arc::new(
        PayoutService::builder()
            .store(store.clone())
            .directory(Arc::new(directory))
            .build()
            .expect("the service"),
    );
    let newest = RunId::new(run_id(RUNS - 1));
    let oldest = RunId::new(run_id(0));
    hold_some(&service, &newest).await;
    record_results(&store, &pool, &newest, run_size).await;
    sqlx::raw_sql("VACUUM ANALYZE")
        .execute(&pool)
        .await
        .expect("VACUUM ANALYZE");
    for run in [&newest, &oldest] {
        check_totals(&service, &pool, run).await;
    }

    let app = router(AppState::new(service.clone(), ServerConfig::new(SECRET)));
    let cookie = format!(
        "payouts_token={}",
        JwtKey::new(SECRET).sign(&Claims {
            sub: "bench-admin".into(),
            role: Role::Admin,
            doctor_id: None,
            exp: Utc::now().timestamp() + 3600,
        })
    );
    let pages = [
        (
            "run page, newest run (in flight)",
            format!("/dashboard/admin/runs/{newest}"),
        ),
        (
            "run page, oldest run (settled)",
            format!("/dashboard/admin/runs/{oldest}"),
        ),
        ("runs list", "/dashboard/admin/runs".to_string()),
    ];
    for (name, uri) in pages {
        let mut samples = Vec::with_capacity(REQUESTS);
        let mut bytes = 0;
        for i in 0..WARM_UP + REQUESTS {
            let request = Request::get(&uri)
                .header("cookie", &cookie)
                .body(Body::empty())
                .expect("a request");
            let started = Instant::now();
            let response = app.clone().oneshot(request).await.expect("a response");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("the body");
            let took = started.elapsed();
            assert_eq!(status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&body));
            if i >= WARM_UP {
                samples.push(took);
            }
            bytes = body.len();
        }
        let p50 = percentile(&mut samples, 50.0);
        let p99 = percentile(&mut samples, 99.0);
        eprintln!(
            "[{SECTION}] {name}: p50 {} p99 {} ({} KiB of HTML)",
            secs(p50),
            secs(p99),
            bytes / 1024
        );
        report.absolute(
            SECTION,
            format!("{name}, {run_size} payouts: p99 (p50 {})", secs(p50)),
            secs(p99),
            format!("p99 < {}", secs(TARGET)),
            p99 < TARGET,
        );
    }

    pool.close().await;
    schema.drop().await;
}

fn run_id(r: usize) -> String {
    format!("run_bench_{r:03}")
}

async fn seed(pool: &PgPool, run_size: usize) {
    let doctors = run_size;
    let profiles = format!(
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, \
         stripe_account_id TEXT, paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT); \
         INSERT INTO doctor_profiles \
         SELECT 'doc_' || lpad(d::text, 6, '0'), 'Dr. Amina Wanjiru ' || d, 'doctor' || d || '@clinic.example', \
                'acct_' || md5(d::text), 'doctor' || d || '@paypal.example', '2547' || lpad(d::text, 8, '0'), NULL \
         FROM generate_series(0, {last}) AS d",
        last = doctors - 1
    );
    sqlx::raw_sql(&profiles)
        .execute(pool)
        .await
        .expect("seeding doctor_profiles");

    // Payout i: doctor `i % doctors`, run (= monthly period) `i / doctors`; `h` spreads statuses.
    let payouts = format!(
        "INSERT INTO payouts (id, doctor_id, period_start, period_end, amount_minor, currency, status, provider, \
             provider_reference, notes, origin, created_by, approved_by, processed_at, created_at, updated_at, version) \
         SELECT id, 'doc_' || lpad(d::text, 6, '0'), ps, (ps + INTERVAL '1 month' - INTERVAL '1 day')::date, \
                5000 + abs(hashint8(i + 31)::bigint) % 400000, \
                CASE WHEN pref = 'MPESA_B2C' THEN 'KES' ELSE 'USD' END, status, \
                CASE WHEN status = 'PENDING' THEN NULL ELSE pref END, \
                CASE WHEN status IN ('PENDING', 'APPROVED') THEN NULL ELSE 'ref_' || i END, \
                NULL, 'CALCULATED', 'system:calculate', \
                CASE WHEN status = 'PENDING' THEN NULL ELSE 'admin_' || (h % 5) END, \
                CASE WHEN status IN ('PAID', 'FAILED', 'RETURNED') THEN created_at + INTERVAL '3 days' END, \
                created_at, created_at, 2 \
         FROM ( \
             SELECT i, d, ps, h, \
                    lpad(to_hex(i), 8, '0') || '-0190-7000-8000-' || lpad(to_hex(abs(hashint8(i)::bigint)), 12, '0') AS id, \
                    (ARRAY['STRIPE_CONNECT', 'STRIPE_CONNECT', 'PAYPAL_PAYOUTS', 'MPESA_B2C', 'MPESA_B2C'])[(d % 5 + 1)::int] AS pref, \
                    CASE WHEN p = {newest} THEN \
                        CASE WHEN h < 300 THEN 'PENDING' WHEN h < 600 THEN 'APPROVED' WHEN h < 950 THEN 'PROCESSING' ELSE 'FAILED' END \
                    ELSE CASE WHEN h < 930 THEN 'PAID' WHEN h < 960 THEN 'FAILED' WHEN h < 980 THEN 'RETURNED' ELSE 'PROCESSING' END \
                    END AS status, \
                    (ps + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC' + make_interval(secs => i % 86400) AS created_at \
             FROM ( \
                 SELECT i, i % {doctors} AS d, i / {doctors} AS p, abs(hashint8(i)::bigint) % 1000 AS h, \
                        (DATE '2024-01-01' + make_interval(months => (i / {doctors})::int))::date AS ps \
                 FROM generate_series(0::bigint, {last}::bigint) AS i \
             ) g \
         ) s",
        newest = RUNS - 1,
        last = RUNS * run_size - 1,
    );
    sqlx::raw_sql(&payouts).execute(pool).await.expect("seeding payouts");

    // One calculation run per month, created when its payouts were; members through the store's
    // own table, so its triggers fill the run tallies.
    let runs = format!(
        "INSERT INTO payout_runs (id, kind, label, period_start, period_end, created_by, created_at) \
         SELECT 'run_bench_' || lpad(r::text, 3, '0'), 'CALCULATION', 'Calculation ' || to_char(ps, 'YYYY-MM'), \
                ps, (ps + INTERVAL '1 month' - INTERVAL '1 day')::date, 'system:calculate', \
                (ps + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC' \
         FROM (SELECT r, (DATE '2024-01-01' + make_interval(months => r))::date AS ps \
               FROM generate_series(0, {last_run}) AS r) g; \
         INSERT INTO payout_run_members (run_id, payout_id, status, created_at, held) \
         SELECT 'run_bench_' || lpad((i / {run_size})::text, 3, '0'), p.id, p.status, p.created_at, FALSE \
         FROM generate_series(0::bigint, {last}::bigint) AS i \
         JOIN payouts p ON p.id = lpad(to_hex(i), 8, '0') || '-0190-7000-8000-' || lpad(to_hex(abs(hashint8(i)::bigint)), 12, '0')",
        last_run = RUNS - 1,
        last = RUNS * run_size - 1,
    );
    sqlx::raw_sql(&runs).execute(pool).await.expect("seeding runs");
}

/// 50 of the newest run's pending payouts on hold, each through the service (audited).
async fn hold_some(service: &PayoutService, run: &RunId) {
    let admin = Actor::admin("bench-admin");
    let filter = PayoutFilter {
        status: Some(payout_core::status::PayoutStatus::Pending),
        ..Default::default()
    };
    let page = service
        .run_payouts(&admin, run, filter, &Page::new(50, 0))
        .await
        .expect("the run's pending payouts");
    for p in &page.payouts {
        service
            .hold(&admin, &p.id, "bank details under review")
            .await
            .expect("a hold");
    }
}

/// 2,000 per-payout results on the run, as a trigger of that many would leave.
async fn record_results(store: &PgStore, pool: &PgPool, run: &RunId, run_size: usize) {
    let n = 2_000.min(run_size);
    let ids: Vec<String> =
        sqlx::query("SELECT payout_id FROM payout_run_members WHERE run_id = $1 ORDER BY payout_id LIMIT $2")
            .bind(run.as_str())
            .bind(n as i64)
            .fetch_all(pool)
            .await
            .expect("members")
            .into_iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
    let results: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| payout_core::domain::RunResult {
            payout_id: PayoutId::new(id.clone()),
            action: payout_core::domain::RunAction::Trigger,
            provider: Some(payout_core::domain::Provider::StripeConnect),
            ok: i % 20 != 0,
            status_after: Some(if i % 20 != 0 {
                payout_core::status::PayoutStatus::Processing
            } else {
                payout_core::status::PayoutStatus::Failed
            }),
            message: (i % 20 == 0).then(|| "account_closed: the destination account is closed".to_string()),
            at: Utc::now(),
            by: "admin:bench-admin".into(),
        })
        .collect();
    for chunk in results.chunks(500) {
        payout_core::store::PayoutStore::record_run_results(store, run, chunk)
            .await
            .expect("results");
    }
}

/// The run's totals as the service reads them (tallies) equal a GROUP BY over its members.
async fn check_totals(service: &PayoutService, pool: &PgPool, run: &RunId) {
    let summary = service
        .run_summary(&Actor::admin("bench-admin"), run)
        .await
        .expect("the run");
    let rows = sqlx::query(
        "SELECT p.status, COUNT(*), SUM(p.amount_minor)::BIGINT FROM payout_run_members m \
         JOIN payouts p ON p.id = m.payout_id WHERE m.run_id = $1 GROUP BY 1",
    )
    .bind(run.as_str())
    .fetch_all(pool)
    .await
    .expect("a recount");
    let mut counted: u64 = 0;
    for row in &rows {
        let status: String = row.get(0);
        let n: i64 = row.get(1);
        let status = status.parse().expect("a status");
        assert_eq!(
            summary.count_of(status),
            n as u64,
            "{run} {status}: tallies against a recount"
        );
        counted += n as u64;
    }
    assert_eq!(summary.count(), counted, "{run}: total against a recount");
    // The member rows the pages are read from agree with their payouts (kept by the trigger).
    let stale: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payout_run_members m JOIN payouts p ON p.id = m.payout_id \
         WHERE m.run_id = $1 AND (m.status <> p.status OR m.created_at <> p.created_at \
               OR m.held <> (p.hold IS NOT NULL AND (p.hold::jsonb ->> 'releasedAt') IS NULL))",
    )
    .bind(run.as_str())
    .fetch_one(pool)
    .await
    .expect("a comparison");
    assert_eq!(stale, 0, "{run}: member rows that disagree with their payouts");
}
