//! The period calculation at 1,000,000 completed consultations across 10,000 doctors.
//!
//! For each backend (SQLite on a file, Postgres) three identical databases are prepared: the store's
//! migrations plus the host's `appointments` table (as the demo server creates it) holding the
//! period's completed consultations, 100 per doctor, with 20% noise around them (cancelled
//! consultations in the period, completed ones of the month before that no payout holds: late
//! consultations, which the calculation's default 90-day look-back finds and pays with the period).
//! Then, in the same run:
//!
//! - **baseline**: hand-written SQL in one transaction: `INSERT ... SELECT ... GROUP BY doctor_id`
//!   for the payouts, `INSERT ... SELECT` with `ROW_NUMBER()` for one item per consultation, and
//!   `INSERT ... SELECT` for one audit entry per payout: the same rows the service writes, with ids as
//!   long as the service's UUIDs and the same texts (see [`baseline_sql`]). Like the
//!   service it reads the period and its look-back, and pays only consultations no live item holds (the consultation ledger: a `NOT EXISTS`
//!   over the ledger's partial unique index), and its items are checked by that index as it inserts
//!   them, so both pay for the same uniqueness.
//! - **measured**: `PayoutService::calculate_period` with the store and `SqlConsultationSource` over
//!   the same tables, in a child process of this benchmark (so its peak memory is its own).
//! - **memory**: the measured run again on a database with a tenth of the consultations (10 per
//!   doctor, same doctors); the peaks above the process's resident set before the calculation are
//!   compared: flat in the number of consultations means the 1M peak stays within 1.25x (+4 MiB) of
//!   the 100k peak.
//!
//! Both results are checked to be the same: payouts, items, audit entries, total amount, and the
//! characters of the ids and texts written. Before each measured run the page cache is written to
//! disk (`sync`), so no run pays for the writeback of the one before it.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use payout_core::PayoutService;
use payout_core::domain::{Actor, Period};
use payout_core::service::CalculationPolicy;
use payout_core::service::PerformanceConfig;
use payout_store_sqlx::{ConsultationTable, PgStore, SqlConsultationSource, SqliteStore};
use sqlx::{PgPool, SqlitePool};

use crate::common::{
    Report, bench_schema, child_figures, existing_schema, peak_rss_kib, reset_peak_rss, rss_kib, secs,
};

/// What the calculation (or the baseline) wrote in `$pool`, counted with [`WRITTEN_SQL`].
macro_rules! written {
    ($pool:expr) => {
        Written::from(
            sqlx::query_as::<_, (i64, i64, i64, i64, i64)>(WRITTEN_SQL)
                .fetch_one($pool)
                .await
                .expect("counting"),
        )
    };
}

const SECTION: &str = "calc";
/// The argument that makes this benchmark a measured child: `--calc-child <sqlite|postgres> <location>`.
pub const CHILD_ARG: &str = "--calc-child";

fn period() -> Period {
    Period {
        start: NaiveDate::from_ymd_opt(2026, 10, 1).expect("a date"),
        end: NaiveDate::from_ymd_opt(2026, 10, 31).expect("a date"),
    }
}

/// What a run wrote, to check the baseline and the service did the same.
#[derive(Debug, PartialEq, Eq)]
struct Written {
    payouts: i64,
    items: i64,
    audit: i64,
    total_minor: i64,
    /// The characters of the ids and texts written (payout ids, item references and descriptions,
    /// audit details): the same when both wrote the same rows.
    text_bytes: i64,
}

pub async fn run(report: &mut Report) {
    let doctors = report.scaled(10_000, 10);
    let big = doctors * 100;
    let small = doctors * 10;
    eprintln!("[calc] {doctors} doctors; {big} and {small} consultations");

    // SQLite: three files in one temporary directory.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = |name: &str| dir.path().join(name);
    for name in ["base.db", "big.db", "small.db"] {
        let per_doctor = if name == "small.db" { 10 } else { 100 };
        let pool = sqlite_setup(&path(name)).await;
        load_sqlite(&pool, doctors, per_doctor).await;
        pool.close().await;
    }
    settle_disk();
    let pool = sqlite_pool(&path("base.db")).await;
    let (base, base_time) = baseline_sqlite(&pool).await;
    pool.close().await;
    let big_run = child("sqlite", path("big.db").to_str().expect("a UTF-8 path"));
    let small_run = child("sqlite", path("small.db").to_str().expect("a UTF-8 path"));
    let pool = sqlite_pool(&path("big.db")).await;
    let ours = written!(&pool);
    pool.close().await;
    record(
        report, "SQLite", big, small, &base, base_time, &ours, &big_run, &small_run,
    );
    drop(dir);

    // Postgres: three schemas.
    let mut schemas = Vec::new();
    for (name, per_doctor) in [("calc_base", 100), ("calc_big", 100), ("calc_small", 10)] {
        let schema = bench_schema(name).await;
        let pool = schema.pool(2).await;
        payout_store_sqlx::postgres::setup(&pool).await.expect("migrating");
        load_postgres(&pool, doctors, per_doctor).await;
        pool.close().await;
        schemas.push(schema);
    }
    settle_disk();
    let pool = schemas[0].pool(1).await;
    let (base, base_time) = baseline_postgres(&pool).await;
    pool.close().await;
    let big_run = child("postgres", schemas[1].name());
    let small_run = child("postgres", schemas[2].name());
    let pool = schemas[1].pool(1).await;
    let ours = written!(&pool);
    pool.close().await;
    record(
        report, "Postgres", big, small, &base, base_time, &ours, &big_run, &small_run,
    );
    for s in schemas {
        s.drop().await;
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    report: &mut Report,
    backend: &str,
    big: usize,
    small: usize,
    base: &Written,
    base_time: Duration,
    ours: &Written,
    big_run: &ChildRun,
    small_run: &ChildRun,
) {
    assert_eq!(
        base, ours,
        "{backend}: the baseline and the service wrote different things"
    );
    let late = big / 10;
    assert_eq!(
        ours.items as usize,
        big + late,
        "{backend}: one item per consultation, the month before's late ones included"
    );
    eprintln!(
        "[calc] {backend}: service {} (peak +{} KiB) vs baseline {}; 1/10 size {} (peak +{} KiB)",
        secs(big_run.time),
        big_run.peak_kib,
        secs(base_time),
        secs(small_run.time),
        small_run.peak_kib
    );
    report.time(
        SECTION,
        format!(
            "{backend}: `calculate_period`, {big} consultations (+{late} late), {} doctors",
            ours.payouts
        ),
        big_run.time,
        "hand-written INSERT ... SELECT ... GROUP BY + items + audit",
        base_time,
        1.3,
    );
    let flat = big_run.peak_kib as f64 <= small_run.peak_kib as f64 * 1.25 + 4096.0;
    report.absolute(
        SECTION,
        format!("{backend}: peak memory of the calculation, {small} -> {big} consultations"),
        format!(
            "{:.1} MiB -> {:.1} MiB",
            small_run.peak_kib as f64 / 1024.0,
            big_run.peak_kib as f64 / 1024.0
        ),
        "flat: 1M peak <= 1.25x the 100k peak + 4 MiB",
        flat,
    );
}

// ---------------------------------------------------------------------------------------------
// The measured child process

struct ChildRun {
    time: Duration,
    peak_kib: u64,
}

/// Writes what the page cache holds to disk (`sync`) before a measured run, so that no run pays for
/// the writeback of what was written before it (the databases loaded, the baseline's file).
fn settle_disk() {
    let status = Command::new("sync").status().expect("running sync");
    assert!(status.success(), "sync failed: {status}");
}

/// Runs the service's calculation in a child process of this benchmark and reads its figures.
fn child(backend: &str, location: &str) -> ChildRun {
    let exe = std::env::current_exe().expect("this benchmark's path");
    // `PAYOUTS_BENCH_PROFILE=DIR` records each measured child with `perf record -g` into DIR.
    let mut command = match std::env::var("PAYOUTS_BENCH_PROFILE") {
        Ok(dir) if !dir.is_empty() => {
            let mut c = Command::new("perf");
            let name = location.rsplit('/').next().unwrap_or(location);
            c.args(["record", "-F", "999", "-g", "-o"])
                .arg(format!("{dir}/perf.calc.{backend}.{name}.data"))
                .arg("--")
                .arg(exe);
            c
        }
        _ => Command::new(exe),
    };
    command.args([CHILD_ARG, backend, location]);
    settle_disk();
    let figures = child_figures(command);
    ChildRun {
        time: Duration::from_nanos(figures.get("CALC_NANOS")),
        peak_kib: figures.get("CALC_PEAK_KIB"),
    }
}

/// The child's body: connects, then calculates the period once, measured; prints its figures.
pub fn child_main(backend: &str, location: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let service = match backend {
            "sqlite" => {
                let pool = sqlite_pool(Path::new(location)).await;
                let source = SqlConsultationSource::new(pool.clone(), ConsultationTable::default()).expect("a source");
                service(Arc::new(SqliteStore::new(pool)), Arc::new(source), 1)
            }
            "postgres" => {
                let schema = existing_schema(location);
                let store = PgStore::connect_with(schema.options()).await.expect("connecting");
                let source =
                    SqlConsultationSource::new(store.pool().clone(), ConsultationTable::default()).expect("a source");
                service(Arc::new(store), Arc::new(source), PgStore::WRITES_IN_FLIGHT)
            }
            other => panic!("unknown backend {other}"),
        };
        reset_peak_rss();
        let before = rss_kib();
        let start = Instant::now();
        let report = service
            .calculate_period(&Actor::system("bench"), Some(period()), &CalculationPolicy::default())
            .await
            .expect("the calculation");
        let time = start.elapsed();
        let peak = peak_rss_kib().saturating_sub(before);
        assert!(report.skipped.is_empty() && !report.created.is_empty());
        println!("CALC_NANOS {}", time.as_nanos());
        println!("CALC_PEAK_KIB {peak}");
    });
}

/// The service as a host configures it for the backend: `writes_in_flight` chunks written at once.
fn service(
    store: Arc<dyn payout_core::PayoutStore>,
    source: Arc<dyn payout_core::source::ConsultationSource>,
    writes_in_flight: usize,
) -> PayoutService {
    PayoutService::builder()
        .store(store)
        .consultations(source)
        .performance(PerformanceConfig {
            calculation_writes_in_flight: writes_in_flight,
            ..Default::default()
        })
        .directory(Arc::new(payout_core::source::StaticDirectory::default()))
        .build()
        .expect("a service")
}

// ---------------------------------------------------------------------------------------------
// The host's table

/// Completed consultations `0..n` of the period, doctor `g % doctors`, spread over the month; then
/// 10% cancelled in the period, which the calculation skips, and 10% completed the month before,
/// which nothing holds: its look-back pays them as late consultations.
fn appointment_rows(doctors: usize, per_doctor: usize) -> (i64, i64) {
    let n = (doctors * per_doctor) as i64;
    (n, n / 10)
}

async fn sqlite_setup(path: &Path) -> SqlitePool {
    let store = SqliteStore::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .expect("a SQLite store");
    store.pool().clone()
}

async fn sqlite_pool(path: &Path) -> SqlitePool {
    let options =
        payout_store_sqlx::sqlite::connect_options(&format!("sqlite://{}", path.display())).expect("SQLite options");
    sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .expect("opening the SQLite file")
}

/// The same rows in both dialects: `digits(g, w)` pads `g` to `w` digits.
fn appointments_select(dialect: &str, doctors: usize, from: i64, count: i64, status: &str, day0: &str) -> String {
    // Spread over 30 days: second `(g * 7919) % 2_592_000` of the month.
    let (series, id, doctor, at) = match dialect {
        "postgres" => (
            format!("generate_series(CAST({from} AS BIGINT), {}) AS s(g)", from + count - 1),
            "'appt-' || lpad(g::text, 9, '0')".to_string(),
            format!("'doc-' || lpad((g % {doctors})::text, 6, '0')"),
            format!("TIMESTAMPTZ '{day0} 00:00:00+00' + ((g * 7919) % 2592000) * INTERVAL '1 second'"),
        ),
        _ => (
            format!(
                "(WITH RECURSIVE s(g) AS (SELECT {from} UNION ALL SELECT g + 1 FROM s WHERE g < {}) SELECT g FROM s)",
                from + count - 1
            ),
            "'appt-' || printf('%09d', g)".to_string(),
            format!("'doc-' || printf('%06d', g % {doctors})"),
            // The store's own fixed-width UTC text.
            format!(
                "strftime('%Y-%m-%dT%H:%M:%S', '{day0}', '+' || ((g * 7919) % 2592000) || ' seconds') || '.000000000Z'"
            ),
        ),
    };
    format!("INSERT INTO appointments SELECT {id}, {doctor}, '{status}', {at} FROM {series}")
}

/// Creates the host's `appointments` table on `$pool` (`completed_at` of type `$at_type`) and fills
/// it in one transaction with `doctors * per_doctor` completed consultations of the period and the
/// noise the calculation skips, then runs `$analyze`.
macro_rules! load_appointments {
    ($pool:expr, $dialect:literal, $at_type:literal, $analyze:literal, $doctors:expr, $per_doctor:expr) => {{
        let (doctors, per_doctor) = ($doctors, $per_doctor);
        let (n, noise) = appointment_rows(doctors, per_doctor);
        let create = concat!(
            "CREATE TABLE appointments (id TEXT PRIMARY KEY, doctor_id TEXT NOT NULL, status TEXT NOT NULL, \
             completed_at ",
            $at_type,
            ")"
        );
        sqlx::query(create).execute($pool).await.expect("creating appointments");
        let mut tx = $pool.begin().await.expect("a transaction");
        for sql in [
            appointments_select($dialect, doctors, 0, n, "COMPLETED", "2026-10-01"),
            appointments_select($dialect, doctors, n, noise, "CANCELLED", "2026-10-01"),
            appointments_select($dialect, doctors, n + noise, noise, "COMPLETED", "2026-09-01"),
        ] {
            sqlx::query(&sql).execute(&mut *tx).await.expect("loading appointments");
        }
        tx.commit().await.expect("committing appointments");
        sqlx::query($analyze).execute($pool).await.expect($analyze);
    }};
}

async fn load_sqlite(pool: &SqlitePool, doctors: usize, per_doctor: usize) {
    load_appointments!(pool, "sqlite", "TEXT", "ANALYZE", doctors, per_doctor);
}

async fn load_postgres(pool: &PgPool, doctors: usize, per_doctor: usize) {
    load_appointments!(
        pool,
        "postgres",
        "TIMESTAMPTZ",
        "VACUUM ANALYZE appointments",
        doctors,
        per_doctor
    );
}

// ---------------------------------------------------------------------------------------------
// The baseline

/// The baseline's statements: payouts, items, audit entries. `$1`/`$2` the period's first and last
/// day, `$3` now, `$4`/`$5` the completion bounds of the period and its look-back (as the source
/// binds them).
///
/// They write the rows the service writes, byte for byte where the bytes are not a clock's or a
/// random id's: a payout's id is 36 characters like the service's UUID text (ordered by doctor, as
/// the service's time-ordered ids are by creation), a late consultation's item says so as the
/// service's does, and the `CREATE` entry lists the late consultations. [`Written`] checks it.
fn baseline_sql(dialect: &str) -> [String; 3] {
    // The day a consultation was completed, `YYYY-MM-DD`.
    let day = match dialect {
        "postgres" => "to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        _ => "substr(completed_at, 1, 10)",
    };
    let held =
        "NOT EXISTS (SELECT 1 FROM payout_items i WHERE i.live AND i.kind = 'CONSULTATION' AND i.reference = a.id)";
    let paid = format!(
        "FROM appointments a WHERE status = 'COMPLETED' AND completed_at >= $4 AND completed_at < $5 AND {held}"
    );
    let id = format!("'{BASELINE_ID_PREFIX}' || doctor_id");
    [
        format!(
            "INSERT INTO payouts (id, doctor_id, period_start, period_end, amount_minor, currency, status, origin, \
             created_by, created_at, updated_at, version) \
             SELECT {id}, doctor_id, $1, $2, COUNT(*) * 50000, 'KES', 'PENDING', 'CALCULATED', \
             'system:bench', $3, $3, 1 {paid} GROUP BY doctor_id"
        ),
        format!(
            "INSERT INTO payout_items (payout_id, position, kind, reference, amount_minor, currency, occurred_at, description) \
             SELECT {id}, ROW_NUMBER() OVER (PARTITION BY doctor_id ORDER BY completed_at, id) - 1, \
             'CONSULTATION', id, 50000, 'KES', completed_at, \
             CASE WHEN completed_at < $1 THEN 'Late consultation ' || id || ' of ' || {day} || ' at 500.00 KES' \
             ELSE 'Consultation ' || id || ' at 500.00 KES' END {paid}"
        ),
        "INSERT INTO audit_entries (payout_id, actor, at, action, from_status, to_status, detail) \
         SELECT id, 'system:bench', $3, 'CREATE', NULL, 'PENDING', \
         'calculated 2026-10-01..2026-10-31: ' || (amount_minor / 50000) || ' consultations at 500.00 KES = ' \
         || (amount_minor / 100) || '.00 KES; carried over 0.00 KES; deductions 0.00 KES; net ' \
         || (amount_minor / 100) || '.00 KES' \
         || COALESCE((SELECT '; late (completed before 2026-10-01, not paid before): ' \
         || string_agg(i.reference, ', ' ORDER BY i.position) \
         FROM payout_items i WHERE i.payout_id = p.id AND i.occurred_at < $1), '') \
         FROM payouts p WHERE created_by = 'system:bench' AND period_start = $1"
            .to_string(),
    ]
}

/// The first 26 characters of the baseline's payout ids: with a doctor's id (`doc-` and 6 digits)
/// they are as long as a UUID's text.
const BASELINE_ID_PREFIX: &str = "00000000-0000-7000-8000-00";

/// Runs the baseline's statements in one transaction on `$pool`, binding now and the completion
/// bounds as the dialect stores times, and returns the time it took.
macro_rules! run_baseline {
    ($pool:expr, $dialect:literal, $now:expr, $from:expr, $to:expr) => {{
        let p = period();
        let start = Instant::now();
        let mut tx = $pool.begin().await.expect("a transaction");
        for sql in baseline_sql($dialect) {
            sqlx::query(&sql)
                .bind(p.start)
                .bind(p.end)
                .bind($now)
                .bind($from)
                .bind($to)
                .execute(&mut *tx)
                .await
                .expect("the baseline");
        }
        tx.commit().await.expect("committing the baseline");
        start.elapsed()
    }};
}

/// The first day the calculation reads: the period's start less the default look-back.
fn window_start() -> NaiveDate {
    CalculationPolicy::default().window(period()).start
}

async fn baseline_sqlite(pool: &SqlitePool) -> (Written, Duration) {
    // The store's fixed-width UTC text.
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let from = window_start().format("%Y-%m-%d").to_string();
    let time = run_baseline!(pool, "sqlite", &now, from.as_str(), "2026-11-01");
    (written!(pool), time)
}

async fn baseline_postgres(pool: &PgPool) -> (Written, Duration) {
    let from = window_start().and_hms_opt(0, 0, 0).expect("a time").and_utc();
    let to = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("a time");
    let time = run_baseline!(pool, "postgres", Utc::now(), from, to);
    (written!(pool), time)
}

const WRITTEN_SQL: &str = "SELECT (SELECT COUNT(*) FROM payouts), (SELECT COUNT(*) FROM payout_items), \
     (SELECT COUNT(*) FROM audit_entries), (SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM payouts), \
     (SELECT CAST(COALESCE(SUM(length(id)), 0) AS BIGINT) FROM payouts) \
     + (SELECT CAST(COALESCE(SUM(length(payout_id) + length(reference) + length(description)), 0) AS BIGINT) \
        FROM payout_items) \
     + (SELECT CAST(COALESCE(SUM(length(payout_id) + length(detail)), 0) AS BIGINT) FROM audit_entries)";

impl From<(i64, i64, i64, i64, i64)> for Written {
    fn from((payouts, items, audit, total_minor, text_bytes): (i64, i64, i64, i64, i64)) -> Self {
        Written {
            payouts,
            items,
            audit,
            total_minor,
            text_bytes,
        }
    }
}
