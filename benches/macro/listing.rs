//! `list`: the admin list and the CSV export at 1,000,000 payouts on Postgres.
//!
//! The data: `payouts` filled straight by one set-based `INSERT ... SELECT generate_series` (not
//! measured): 1,000,000 payouts of 10,000 doctors over 100 monthly periods, each created in the
//! first days after its period; every status (older periods mostly `PAID`, the newest one still
//! pending, approved or processing), every provider (none yet while pending or cancelled) and four
//! currencies, spread so each filter selects a realistic subset. A `doctor_profiles` table of the
//! host (read by [`SqlRecipientDirectory`]) gives the export its names, emails and bank details.
//! Then `VACUUM ANALYZE`, as autovacuum would have done on a live table.
//!
//! What is measured, each beside its baseline:
//! - **List**: `PayoutService::list` (50 rows, the total, the next cursor) over the admin UI's
//!   filters: none, status, provider, doctor, one month of `created_at` (a calendar month or the
//!   3rd to the 2nd, so partial months are counted too), and the combinations status + provider,
//!   status + month, provider + month, doctor + status; for each filter the first page and three
//!   deeper pages through the keyset cursor. p50/p99 per filter kind and overall; the target is
//!   p99 <= 10 ms. Each first page's total is checked against a `COUNT(*)` by hand (not timed).
//!   Baseline: the same page (same filter, same cursor, same rows, checked) fetched by hand with
//!   one indexed `SELECT ... ORDER BY created_at DESC, id DESC LIMIT 50` through sqlx, every column
//!   decoded: the ratio is the library's overhead, its total included.
//! - **Export**: `PayoutService::export_csv` of ten months (about 100,000 rows) and of everything
//!   (1,000,000 rows) into a sink that counts bytes and lines, against
//!   `COPY (SELECT <the same eight columns, joined to doctor_profiles> ... ORDER BY created_at DESC,
//!   id DESC) TO STDOUT (FORMAT csv)` streamed through `copy_out_raw` and counted the same way.
//!   Rows/s with a target of >= 60% of COPY; the row counts are checked against `COUNT(*)`. Each
//!   export runs in a child process of the benchmark (a fresh heap, so its peak is its own), whose
//!   peak memory growth (`VmHWM`) shows it flat: the 1M-row peak must stay within 16 MiB of the
//!   100k-row peak. The time of the store's row stream alone is printed too, to show where the
//!   export's time goes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use futures::StreamExt;
use payout_core::PayoutService;
use payout_core::domain::{Actor, DoctorId, Provider};
use payout_core::status::PayoutStatus;
use payout_core::store::{Cursor, Page, PayoutFilter};
use payout_store_sqlx::{PgStore, RecipientTable, SqlRecipientDirectory};
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use tokio::io::AsyncWrite;

use crate::common::{Report, bench_schema, child_figures, existing_schema, peak_growth_kib, percentile, secs, timed};

const SECTION: &str = "list";
/// Monthly periods in the data (the doctors are `payouts / PERIODS`).
const PERIODS: u32 = 100;
/// Rows per page, the admin UI's default.
const PAGE_ROWS: u32 = 50;
/// Pages read per filter: the first and deeper ones through the cursor.
const PAGES_PER_FILTER: usize = 4;
/// Filters drawn per filter kind.
const FILTERS_PER_KIND: usize = 10;
/// How far the 1M-row export's peak may exceed the 100k-row one and still count as flat.
const FLAT_KIB: u64 = 16 * 1024;

pub async fn run(report: &mut Report) {
    let payouts = report.scaled(1_000_000, 10_000);
    let doctors = (payouts / PERIODS as usize).max(1);
    let schema = bench_schema("list").await;
    let store = PgStore::connect_with(schema.options())
        .await
        .expect("the Postgres store");
    let pool = store.pool().clone();
    let (_, load) = timed(seed(&pool, payouts, doctors)).await;
    eprintln!(
        "[{SECTION}] loaded {payouts} payouts of {doctors} doctors in {} (not measured)",
        secs(load)
    );
    let directory = SqlRecipientDirectory::new(pool.clone(), RecipientTable::default()).expect("the directory");
    let service = PayoutService::builder()
        .store(Arc::new(store))
        .directory(Arc::new(directory))
        .build()
        .expect("the service");

    list(report, &service, &pool, doctors).await;
    export(report, &service, &pool, schema.name()).await;

    pool.close().await;
    schema.drop().await;
}

/// The first day of period `p` (period 0 is January 2017).
fn period_start(p: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2017, 1, 1).expect("a date") + Months::new(p)
}

fn doctor_id(d: usize) -> String {
    format!("doc_{d:06}")
}

async fn seed(pool: &PgPool, payouts: usize, doctors: usize) {
    let profiles = format!(
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, \
         stripe_account_id TEXT, paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT); \
         INSERT INTO doctor_profiles \
         SELECT 'doc_' || lpad(d::text, 6, '0'), 'Dr. Amina Wanjiru ' || d, 'doctor' || d || '@clinic.example', \
                'acct_' || md5(d::text), 'doctor' || d || '@paypal.example', '2547' || lpad(d::text, 8, '0'), \
                CASE WHEN d % 10 < 3 THEN '{{\"accountName\":\"Dr. Amina Wanjiru ' || d || '\",\"accountNumber\":\"' \
                     || lpad(d::text, 10, '0') || '\",\"bankCode\":\"BANK' || (d % 17) || '\"}}' END \
         FROM generate_series(0, {last_doctor}) AS d",
        last_doctor = doctors - 1
    );
    sqlx::raw_sql(&profiles)
        .execute(pool)
        .await
        .expect("seeding doctor_profiles");

    // One payout per doctor and period: doctor `i % doctors`, period `i / doctors`; `h` spreads
    // statuses, `s` spreads creation times over the first five days after the period.
    let insert = format!(
        "INSERT INTO payouts (id, doctor_id, period_start, period_end, amount_minor, currency, status, provider, \
             provider_reference, notes, origin, created_by, approved_by, processed_at, created_at, updated_at, version) \
         SELECT id, 'doc_' || lpad(d::text, 6, '0'), ps, (ps + INTERVAL '1 month' - INTERVAL '1 day')::date, \
                5000 + abs(hashint8(i + 31)::bigint) % 400000, \
                CASE WHEN pref = 'MPESA_B2C' THEN 'KES' ELSE (ARRAY['USD', 'USD', 'EUR', 'GBP'])[((d / 10) % 4 + 1)::int] END, \
                status, \
                CASE WHEN status IN ('PENDING', 'CANCELLED') THEN NULL ELSE pref END, \
                CASE WHEN status IN ('PENDING', 'APPROVED', 'CANCELLED') THEN NULL ELSE 'ref_' || i END, \
                CASE WHEN h % 50 = 0 THEN 'adjusted after review' END, \
                CASE WHEN h % 97 = 0 THEN 'MANUAL' ELSE 'CALCULATED' END, \
                CASE WHEN h % 97 = 0 THEN 'admin_' || (h % 7) ELSE 'system:calculate' END, \
                CASE WHEN status IN ('PENDING', 'CANCELLED') THEN NULL ELSE 'admin_' || (h % 5) END, \
                CASE WHEN status IN ('PAID', 'FAILED', 'RETURNED', 'REVERSED') THEN created_at + INTERVAL '3 days' END, \
                created_at, created_at + make_interval(days => version - 1), version \
         FROM ( \
             SELECT *, CASE status WHEN 'PENDING' THEN 1 WHEN 'APPROVED' THEN 2 WHEN 'CANCELLED' THEN 2 \
                          WHEN 'PROCESSING' THEN 3 WHEN 'PAID' THEN 4 WHEN 'FAILED' THEN 4 ELSE 5 END AS version \
             FROM ( \
                 SELECT i, d, ps, h, \
                        lpad(to_hex(i), 8, '0') || '-0190-7000-8000-' || lpad(to_hex(abs(hashint8(i)::bigint)), 12, '0') AS id, \
                        (ARRAY['STRIPE_CONNECT', 'STRIPE_CONNECT', 'STRIPE_CONNECT', 'STRIPE_CONNECT', 'PAYPAL_PAYOUTS', \
                               'PAYPAL_PAYOUTS', 'MPESA_B2C', 'MPESA_B2C', 'MPESA_B2C', 'BANK_TRANSFER'])[(d % 10 + 1)::int] AS pref, \
                        CASE WHEN p = {newest} THEN \
                            CASE WHEN h < 500 THEN 'PENDING' WHEN h < 800 THEN 'APPROVED' ELSE 'PROCESSING' END \
                        ELSE CASE WHEN h < 850 THEN 'PAID' WHEN h < 890 THEN 'FAILED' WHEN h < 930 THEN 'CANCELLED' \
                            WHEN h < 950 THEN 'RETURNED' WHEN h < 960 THEN 'REVERSED' WHEN h < 970 THEN 'PROCESSING' \
                            WHEN h < 990 THEN 'PENDING' ELSE 'APPROVED' END \
                        END AS status, \
                        (ps + INTERVAL '1 month')::timestamp AT TIME ZONE 'UTC' \
                            + make_interval(secs => (abs(hashint8(i + 7919)::bigint) % 86400) + (h % 5) * 86400) AS created_at \
                 FROM ( \
                     SELECT i, i % {doctors} AS d, i / {doctors} AS p, abs(hashint8(i)::bigint) % 1000 AS h, \
                            (DATE '2017-01-01' + make_interval(months => (i / {doctors})::int))::date AS ps \
                     FROM generate_series(0::bigint, {last}::bigint) AS i \
                 ) g \
             ) s \
         ) v",
        newest = PERIODS - 1,
        last = payouts - 1,
    );
    sqlx::raw_sql(&insert).execute(pool).await.expect("seeding payouts");
    // One statement each: VACUUM refuses the implicit transaction of a multi-statement query.
    for table in ["payouts", "doctor_profiles"] {
        sqlx::raw_sql(&format!("VACUUM ANALYZE {table}"))
            .execute(pool)
            .await
            .expect("VACUUM ANALYZE");
    }
}

/// A small deterministic generator, so every run reads the same pages.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// `created_at` within the month after period `p` (where that period's payouts are created).
fn month_filter(p: u32) -> (NaiveDate, NaiveDate) {
    let from = period_start(p + 1);
    (from, period_start(p + 2) - Days::new(1))
}

const KINDS: [&str; 9] = [
    "none",
    "status",
    "provider",
    "doctor",
    "month",
    "status+provider",
    "status+month",
    "provider+month",
    "doctor+status",
];

fn draw_filter(kind: &str, draw: &mut Draw, doctors: usize) -> PayoutFilter {
    let mut f = PayoutFilter::default();
    let month = month_filter(draw.below(PERIODS as usize) as u32);
    for part in kind.split('+') {
        match part {
            "none" => {}
            "status" => f.status = Some(PayoutStatus::ALL[draw.below(PayoutStatus::ALL.len())]),
            "provider" => f.provider = Some(Provider::ALL[draw.below(Provider::ALL.len())]),
            "doctor" => f.doctor_id = Some(DoctorId::from(doctor_id(draw.below(doctors)).as_str())),
            // Every other one from the 3rd to the 2nd, so partial months are counted too.
            "month" => {
                let shift = Days::new(2 * (draw.below(2) as u64));
                (f.created_from, f.created_to) = (Some(month.0 + shift), Some(month.1 + shift));
            }
            other => unreachable!("filter part {other}"),
        }
    }
    f
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The page by hand: one indexed query, every column decoded; returns the ids.
async fn hand_page(pool: &PgPool, filter: &PayoutFilter, after: Option<&Cursor>) -> Vec<String> {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.status.is_some() {
        conditions.push(format!("status = {}", next()));
    }
    if filter.doctor_id.is_some() {
        conditions.push(format!("doctor_id = {}", next()));
    }
    if filter.provider.is_some() {
        conditions.push(format!("provider = {}", next()));
    }
    if filter.created_from.is_some() {
        conditions.push(format!("created_at >= {}", next()));
    }
    if filter.created_to.is_some() {
        conditions.push(format!("created_at < {}", next()));
    }
    if after.is_some() {
        conditions.push(format!("(created_at, id) < ({}, {})", next(), next()));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT id, doctor_id, period_start, period_end, amount_minor, currency, status, provider, \
         provider_reference, notes, origin, created_by, approved_by, processed_at, created_at, updated_at, version \
         FROM payouts {clause} ORDER BY created_at DESC, id DESC LIMIT {PAGE_ROWS}"
    );
    let mut q = sqlx::query(&sql);
    if let Some(s) = filter.status {
        q = q.bind(s.as_str());
    }
    if let Some(d) = &filter.doctor_id {
        q = q.bind(d.as_str());
    }
    if let Some(p) = filter.provider {
        q = q.bind(p.as_str());
    }
    if let Some(from) = filter.created_from {
        q = q.bind(start_of(from));
    }
    if let Some(to) = filter.created_to {
        q = q.bind(start_of(to + Days::new(1)));
    }
    if let Some(c) = after {
        q = q.bind(c.created_at).bind(c.id.as_str());
    }
    let rows = q.fetch_all(pool).await.expect("the hand-written page");
    rows.iter()
        .map(|r| {
            let decoded: Result<_, sqlx::Error> = (|| {
                let id: String = r.try_get("id")?;
                let _: (String, NaiveDate, NaiveDate, i64, String, String) = (
                    r.try_get("doctor_id")?,
                    r.try_get("period_start")?,
                    r.try_get("period_end")?,
                    r.try_get("amount_minor")?,
                    r.try_get("currency")?,
                    r.try_get("status")?,
                );
                let _: (
                    Option<String>,
                    Option<String>,
                    Option<String>,
                    String,
                    String,
                    Option<String>,
                ) = (
                    r.try_get("provider")?,
                    r.try_get("provider_reference")?,
                    r.try_get("notes")?,
                    r.try_get("origin")?,
                    r.try_get("created_by")?,
                    r.try_get("approved_by")?,
                );
                let _: (Option<DateTime<Utc>>, DateTime<Utc>, DateTime<Utc>, i64) = (
                    r.try_get("processed_at")?,
                    r.try_get("created_at")?,
                    r.try_get("updated_at")?,
                    r.try_get("version")?,
                );
                Ok(id)
            })();
            decoded.expect("decoding a payout row")
        })
        .collect()
}

/// `COUNT(*)` of the filter by hand, to check the list's total (not timed).
async fn hand_count(pool: &PgPool, filter: &PayoutFilter) -> u64 {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payouts WHERE ($1::text IS NULL OR status = $1) \
         AND ($2::text IS NULL OR doctor_id = $2) AND ($3::text IS NULL OR provider = $3) \
         AND created_at >= COALESCE($4, '-infinity') AND created_at < COALESCE($5, 'infinity')",
    )
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.doctor_id.as_ref().map(|d| d.as_str()))
    .bind(filter.provider.map(|p| p.as_str()))
    .bind(filter.created_from.map(start_of))
    .bind(filter.created_to.map(|d| start_of(d + Days::new(1))))
    .fetch_one(pool)
    .await
    .expect("counting by hand");
    n as u64
}

async fn list(report: &mut Report, service: &PayoutService, pool: &PgPool, doctors: usize) {
    let admin = Actor::admin("bench-admin");
    let mut draw = Draw(7);
    let mut all = Vec::new();
    let mut all_hand = Vec::new();
    let mut flip = false;
    for kind in KINDS {
        let mut lib_times = Vec::new();
        let mut hand_times = Vec::new();
        for _ in 0..FILTERS_PER_KIND {
            let filter = draw_filter(kind, &mut draw, doctors);
            let mut page = Page::new(PAGE_ROWS, 0);
            for _ in 0..PAGES_PER_FILTER {
                // Alternate which goes first, so neither always finds the other's pages cached.
                flip = !flip;
                let hand_first = if flip {
                    Some(timed(hand_page(pool, &filter, page.after.as_ref())).await)
                } else {
                    None
                };
                let (got, lib_time) = timed(service.list(&admin, &filter, &page)).await;
                let got = got.expect("the admin list");
                let (hand, hand_time) = match hand_first {
                    Some(h) => h,
                    None => timed(hand_page(pool, &filter, page.after.as_ref())).await,
                };
                let ids: Vec<&str> = got.payouts.iter().map(|p| p.id.as_str()).collect();
                assert_eq!(ids, hand, "the list and the hand-written page disagree for {filter:?}");
                if page.after.is_none() {
                    let counted = hand_count(pool, &filter).await;
                    assert_eq!(got.total, counted, "the list's total for {filter:?}");
                }
                lib_times.push(lib_time);
                hand_times.push(hand_time);
                match got.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
        }
        let (p50, p99) = (percentile(&mut lib_times, 50.0), percentile(&mut lib_times, 99.0));
        let (h50, h99) = (percentile(&mut hand_times, 50.0), percentile(&mut hand_times, 99.0));
        report.absolute(
            SECTION,
            format!(
                "list `{kind}`: p50 / p99 of {} pages (hand SQL {} / {})",
                lib_times.len(),
                secs(h50),
                secs(h99)
            ),
            format!("{} / {}", secs(p50), secs(p99)),
            "p99 <= 10 ms",
            p99 <= Duration::from_millis(10),
        );
        all.extend(lib_times);
        all_hand.extend(hand_times);
    }
    let (p50, p99) = (percentile(&mut all, 50.0), percentile(&mut all, 99.0));
    let (h50, h99) = (percentile(&mut all_hand, 50.0), percentile(&mut all_hand, 99.0));
    report.absolute(
        SECTION,
        format!("list, all {} pages: p50 / p99", all.len()),
        format!("{} / {}", secs(p50), secs(p99)),
        "p99 <= 10 ms",
        p99 <= Duration::from_millis(10),
    );
    // The library's overhead over the bare page query; informational beside the absolute target.
    report.time(SECTION, "list p50", p50, "hand-written indexed SELECT p50", h50, 3.0);
    report.time(SECTION, "list p99", p99, "hand-written indexed SELECT p99", h99, 3.0);
}

/// An `AsyncWrite` that keeps nothing: counts bytes and lines.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
    lines: u64,
}

impl CountingSink {
    fn take(&mut self, buf: &[u8]) {
        self.bytes += buf.len() as u64;
        self.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

impl AsyncWrite for CountingSink {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().take(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The export's eight columns in SQL, from the same tables, in the same order.
async fn copy_csv(conn: &mut PgConnection, filter: &PayoutFilter) -> CountingSink {
    let mut conditions = vec!["TRUE".to_string()];
    if let Some(from) = filter.created_from {
        conditions.push(format!("p.created_at >= '{}'", start_of(from).to_rfc3339()));
    }
    if let Some(to) = filter.created_to {
        conditions.push(format!("p.created_at < '{}'", start_of(to + Days::new(1)).to_rfc3339()));
    }
    let sql = format!(
        "COPY (SELECT p.id, p.doctor_id, d.name, d.email, \
               (p.amount_minor / 100)::text || '.' || lpad((p.amount_minor % 100)::text, 2, '0'), \
               p.currency, d.bank_details, p.status \
           FROM payouts p LEFT JOIN doctor_profiles d ON d.doctor_id = p.doctor_id \
           WHERE {} ORDER BY p.created_at DESC, p.id DESC) TO STDOUT (FORMAT csv, HEADER)",
        conditions.join(" AND ")
    );
    let mut sink = CountingSink::default();
    let mut stream = conn.copy_out_raw(&sql).await.expect("COPY TO STDOUT");
    while let Some(chunk) = stream.next().await {
        sink.take(&chunk.expect("a COPY chunk"));
    }
    sink
}

struct Exported {
    rows: u64,
    time: Duration,
    peak_kib: u64,
}

async fn export_once(service: &PayoutService, filter: &PayoutFilter) -> Exported {
    let admin = Actor::admin("bench-admin");
    let mut sink = CountingSink::default();
    let ((rows, time), peak_kib) = peak_growth_kib(timed(service.export_csv(&admin, filter, &mut sink))).await;
    let rows = rows.expect("export_csv");
    assert_eq!(sink.lines, rows + 1, "the export's lines are its rows and a header");
    eprintln!("[{SECTION}] export (child): {rows} rows, {} bytes", sink.bytes);
    Exported { rows, time, peak_kib }
}

/// The argument that makes this benchmark an export child: `--export-child <schema> <from|-> <to|->`.
pub const CHILD_ARG: &str = "--export-child";

/// Runs one export in a child process of this benchmark, so its peak memory is its own (in this
/// process the heap already holds what loading a million rows freed), and reads its figures.
fn export_in_child(schema: &str, filter: &PayoutFilter, expected: u64) -> Exported {
    let day = |d: Option<NaiveDate>| d.map_or_else(|| "-".to_string(), |d| d.to_string());
    let mut command = std::process::Command::new(std::env::current_exe().expect("this benchmark's path"));
    command.args([CHILD_ARG, schema, &day(filter.created_from), &day(filter.created_to)]);
    let figures = child_figures(command);
    let exported = Exported {
        rows: figures.get("EXPORT_ROWS"),
        time: Duration::from_nanos(figures.get("EXPORT_NANOS")),
        peak_kib: figures.get("EXPORT_PEAK_KIB"),
    };
    assert_eq!(
        exported.rows, expected,
        "export_csv wrote {} rows, {expected} match",
        exported.rows
    );
    exported
}

/// The export child's body: connects to `schema`, exports once, prints its figures.
pub fn child_main(schema: &str, from: &str, to: &str) {
    let day = |v: &str| (v != "-").then(|| v.parse::<NaiveDate>().expect("a day"));
    let filter = PayoutFilter {
        created_from: day(from),
        created_to: day(to),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let schema = existing_schema(schema);
        let store = PgStore::connect_with(schema.options())
            .await
            .expect("the Postgres store");
        let directory =
            SqlRecipientDirectory::new(store.pool().clone(), RecipientTable::default()).expect("the directory");
        let service = PayoutService::builder()
            .store(Arc::new(store))
            .directory(Arc::new(directory))
            .build()
            .expect("the service");
        let exported = export_once(&service, &filter).await;
        println!("EXPORT_ROWS {}", exported.rows);
        println!("EXPORT_NANOS {}", exported.time.as_nanos());
        println!("EXPORT_PEAK_KIB {}", exported.peak_kib);
    });
}

async fn export(report: &mut Report, service: &PayoutService, pool: &PgPool, schema: &str) {
    let ten_months = PayoutFilter {
        created_from: Some(month_filter(40).0),
        created_to: Some(month_filter(49).1),
        ..Default::default()
    };
    let everything = PayoutFilter::default();
    let mut conn = pool.acquire().await.expect("a connection for COPY");
    // Warm the cache for both sides: one unmeasured COPY of everything.
    copy_csv(&mut conn, &everything).await;

    let mut peaks = Vec::new();
    for (name, filter) in [("ten months", &ten_months), ("all", &everything)] {
        let mut args = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM payouts WHERE created_at >= COALESCE($1, '-infinity') \
             AND created_at < COALESCE($2, 'infinity')",
        );
        args = args
            .bind(filter.created_from.map(start_of))
            .bind(filter.created_to.map(|d| start_of(d + Days::new(1))));
        let expected = args.fetch_one(pool).await.expect("counting the export's rows") as u64;

        let ours = export_in_child(schema, filter, expected);
        // Where the export's time goes: reading the rows alone, without the lookups and the CSV.
        let (streamed, stream_time) = timed(service.store().stream(filter.clone()).count()).await;
        eprintln!(
            "[{SECTION}] store stream alone: {streamed} rows in {} ({:.0} rows/s)",
            secs(stream_time),
            streamed as f64 / stream_time.as_secs_f64()
        );
        let (copied, copy_time) = timed(copy_csv(&mut conn, filter)).await;
        assert_eq!(
            copied.lines,
            expected + 1,
            "COPY wrote {} lines for {expected} rows",
            copied.lines
        );
        eprintln!("[{SECTION}] COPY: {expected} rows, {} bytes", copied.bytes);
        let rate = ours.rows as f64 / ours.time.as_secs_f64();
        let copy_rate = expected as f64 / copy_time.as_secs_f64();
        report.rate(
            SECTION,
            format!("export_csv {name} ({} rows, {})", ours.rows, secs(ours.time)),
            rate,
            "rows/s",
            format!("COPY ... TO STDOUT (FORMAT csv) ({})", secs(copy_time)),
            copy_rate,
            0.60,
        );
        peaks.push((ours.rows, ours.peak_kib));
    }
    let (small_rows, small) = peaks[0];
    let (big_rows, big) = peaks[1];
    report.absolute(
        SECTION,
        format!("export_csv peak memory growth, {small_rows} rows / {big_rows} rows"),
        format!("{:.1} MiB / {:.1} MiB", small as f64 / 1024.0, big as f64 / 1024.0),
        format!("{big_rows}-row peak <= {small_rows}-row peak + {} MiB", FLAT_KIB / 1024),
        big <= small + FLAT_KIB,
    );
}
