//! Soak (issue 19, item 5): the demo server on Postgres under steady mixed traffic for 30 minutes, its
//! resident memory, open database connections and p99 latencies recorded every minute; none may trend
//! upward, and every payout sent is paid exactly once.
//!
//! The traffic, all at once, for the whole run:
//! - **cycles** (one after another): the host's consultations of the next month are written (two for
//!   each of 100 doctors), the month is calculated by the engine in this process, as a host's monthly
//!   job does (100 PENDING payouts), approved and triggered with M-Pesa in one bulk request each (the
//!   real adapter, against a Daraja double in this process: `common/daraja_double.rs`), paid by 100
//!   HMAC-signed result callbacks (every tenth delivered twice), and the PROCESSING payouts exported;
//! - **readers**: the admin list, the runs list and a doctor's history, one request every 100 ms;
//! - **the server's own jobs**: reconciliation every 5 s (it looks up the PROCESSING payouts) and the
//!   event relay (every change is an event, delivered to the logging notifier).
//!
//! Every sample (one a minute) records the server's resident memory (`VmRSS`), its open database
//! sessions (`pg_stat_activity` by application name), and the p99 of each kind of request in that
//! minute. At the end, with the first sample left out as the warm-up: the last third's median is held
//! against the first third's (memory at most 1.25x + 16 MiB; sessions at most 2 more and never above
//! the pool's 16; each p99 at most 2x + 25 ms); every request answered 2xx; every payout PAID with one
//! attempt, one TRIGGER and one PROVIDER_PAID audit entry.
//!
//! Run it (figures of a run are in RELIABILITY.md, "Soak"):
//! `PAYOUTS_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo test --all-features --test soak -- --ignored --nocapture`
//! (`--release` for a server built as it is deployed; `PAYOUTS_SOAK_MINUTES` sets another length.) `soak_harness_runs_briefly` runs the same traffic for
//! 45 seconds in every test run, checking everything but the trends, so the harness cannot rot.

mod common;
#[path = "common/daraja_double.rs"]
mod daraja_double;
mod demo_process;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike, Months, NaiveDate, TimeZone, Utc};
use demo_process::*;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::PayoutService;
use payouts::PayoutStore;
use payouts::domain::{Actor, PayoutId, Period};
use payouts::service::CalculationPolicy;
use payouts::status::PayoutStatus;
use payouts::store_sqlx::{ConsultationTable, PgStore, RecipientTable, SqlConsultationSource, SqlRecipientDirectory};
use serde_json::json;
use sqlx::postgres::PgPool;

const DOCTORS: usize = 100;
const MPESA_WEBHOOK_SECRET: &str = "soak-test-mpesa-hmac-secret-5d2b8e1f";
/// The demo's Postgres pool (`payout_store_sqlx::postgres::MAX_CONNECTIONS`).
const POOL_MAX: i64 = 16;
/// The gap between a cycle's webhooks: under the demo's 50/s per client.
const WEBHOOK_GAP: Duration = Duration::from_millis(30);
const READ_GAP: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "30 minutes: cargo test --all-features --test soak -- --ignored --nocapture"]
async fn soak_holds_memory_connections_and_latency_steady() {
    let minutes = std::env::var("PAYOUTS_SOAK_MINUTES")
        .ok()
        .map(|m| m.parse::<u64>().expect("PAYOUTS_SOAK_MINUTES is whole minutes"))
        .unwrap_or(30);
    soak(Duration::from_secs(minutes * 60), Duration::from_secs(60), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_harness_runs_briefly() {
    soak(Duration::from_secs(45), Duration::from_secs(15), false).await;
}

/// The kinds of request whose latencies are sampled.
const KINDS: [&str; 7] = ["calculate", "approve", "trigger", "webhook", "export", "list", "doctor"];

#[derive(Default)]
struct Latencies {
    by_kind: HashMap<&'static str, Vec<Duration>>,
}

/// One minute's figures.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    sessions: i64,
    payouts: i64,
    p99_ms: HashMap<&'static str, f64>,
}

struct Traffic {
    http: reqwest::Client,
    base: String,
    token: String,
    doctor_token: String,
    latencies: Mutex<Latencies>,
    /// Answers that were not 2xx: (what, status, body).
    refused: Mutex<Vec<String>>,
    triggered: Mutex<Vec<PayoutId>>,
}

impl Traffic {
    fn record(&self, kind: &'static str, took: Duration) {
        self.latencies
            .lock()
            .unwrap()
            .by_kind
            .entry(kind)
            .or_default()
            .push(took);
    }

    /// Sends `request`, timing it as `kind`; a non-2xx answer is recorded as refused.
    async fn send(&self, kind: &'static str, request: reqwest::RequestBuilder) -> Option<serde_json::Value> {
        let started = Instant::now();
        let response = request.timeout(Duration::from_secs(60)).send().await;
        self.record(kind, started.elapsed());
        match response {
            Ok(r) if r.status().is_success() => {
                let text = r.text().await.unwrap_or_default();
                Some(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
            }
            Ok(r) => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                self.refused.lock().unwrap().push(format!(
                    "{kind}: {status} {}",
                    body.chars().take(300).collect::<String>()
                ));
                None
            }
            Err(e) => {
                self.refused.lock().unwrap().push(format!("{kind}: {e}"));
                None
            }
        }
    }

    fn take_p99s(&self) -> HashMap<&'static str, f64> {
        let taken = std::mem::take(&mut self.latencies.lock().unwrap().by_kind);
        taken
            .into_iter()
            .map(|(kind, mut all)| {
                all.sort();
                let at = ((all.len() * 99).div_ceil(100)).saturating_sub(1);
                (kind, all[at].as_secs_f64() * 1000.0)
            })
            .collect()
    }
}

async fn soak(length: Duration, every: Duration, check_trends: bool) {
    let Some(url) = postgres_url() else { return };
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    PgTestSchema::create(&url, "payouts_soak")
        .await
        .run(|schema| {
            run(
                schema.url(),
                schema.name().to_string(),
                exe,
                length,
                every,
                check_trends,
            )
        })
        .await;
}

/// Cycle `n`'s month: January 2025, then one month earlier each cycle (a later month could be one
/// not over yet, which is not calculated; earlier ones hold none of the later ones' consultations in
/// their look-back).
fn month(n: usize) -> Period {
    let first =
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() - Months::new(u32::try_from(n).expect("a few hundred cycles"));
    payout_core::testkit::fixtures::month(first.year(), first.month())
}

async fn run(
    database_url: String,
    schema: String,
    exe: std::path::PathBuf,
    length: Duration,
    every: Duration,
    check_trends: bool,
) {
    // The database: migrated, the host's tables (January's consultations written), M-Pesa numbers.
    let store = PgStore::connect(&database_url)
        .await
        .expect("migrating the soak schema");
    let pool = store.pool().clone();
    create_host_tables(&pool, DOCTORS).await;
    sqlx::query("UPDATE doctor_profiles SET mpesa_phone_number = '2547' || lpad(substr(doctor_id, 4), 8, '0')")
        .execute(&pool)
        .await
        .expect("M-Pesa numbers");
    let service = PayoutService::builder()
        .store(Arc::new(store.clone()))
        .consultations(Arc::new(
            SqlConsultationSource::new(pool.clone(), ConsultationTable::default()).expect("a consultation source"),
        ))
        .directory(Arc::new(
            SqlRecipientDirectory::new(pool.clone(), RecipientTable::default()).expect("a recipient directory"),
        ))
        .build()
        .expect("a service");

    let daraja = Arc::new(daraja_double::Daraja::default());
    let daraja_addr = daraja_double::serve(daraja.clone()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let sessions_name = format!("{schema}_server");
    let env = vec![
        (
            "DATABASE_URL",
            format!("{database_url}&application_name={sessions_name}"),
        ),
        ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
        ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
        ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
        ("PAYOUTS_RECONCILE_SECS", "5".to_string()),
        // The real M-Pesa adapter, against the Daraja double in this process: the server keeps no
        // ledger of its own (a simulated provider would, one entry per send, in the server's memory).
        ("MPESA_CONSUMER_KEY", "soak-key".to_string()),
        ("MPESA_CONSUMER_SECRET", "soak-secret".to_string()),
        ("MPESA_SHORTCODE", "600000".to_string()),
        ("MPESA_INITIATOR_NAME", "soak-initiator".to_string()),
        ("MPESA_B2C_SECURITY_CREDENTIAL", "soak-credential".to_string()),
        (
            "MPESA_RESULT_URL",
            format!("http://127.0.0.1:{port}/api/webhooks/mpesa-b2c"),
        ),
        (
            "MPESA_TIMEOUT_URL",
            format!("http://127.0.0.1:{port}/api/webhooks/mpesa-b2c/timeout"),
        ),
        ("MPESA_WEBHOOK_SECRET", MPESA_WEBHOOK_SECRET.to_string()),
        ("MPESA_API_BASE", format!("http://{daraja_addr}")),
        ("MPESA_RATE_LIMIT", "0".to_string()),
        ("PAYOUTS_EVENTS_POLL_MS", "200".to_string()),
        // Each notification and request would be a log line: 30 minutes of them is the log's size,
        // not the server's.
        ("RUST_LOG", "warn".to_string()),
        ("NO_COLOR", "1".to_string()),
    ];
    let logs = tempfile::tempdir().expect("a directory for the server log");
    let http = reqwest::Client::builder().build().expect("an HTTP client");
    let mut server = DemoServer::start(&exe, &env, logs.path().join("server.log"));
    server.wait_healthy(&http, &base).await;
    let pid = server.id();

    let traffic = Arc::new(Traffic {
        http,
        base,
        token: admin_token(),
        doctor_token: doctor_token(&doctor(7)),
        latencies: Mutex::default(),
        refused: Mutex::default(),
        triggered: Mutex::default(),
    });
    let started = Instant::now();
    let deadline = started + length;

    let cycles = tokio::spawn({
        let traffic = Arc::clone(&traffic);
        let pool = pool.clone();
        async move {
            let mut n: usize = 0;
            while Instant::now() < deadline {
                cycle(&traffic, &service, &pool, n).await;
                n += 1;
            }
            n
        }
    });
    let readers = tokio::spawn({
        let traffic = Arc::clone(&traffic);
        async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = &traffic;
                match i % 3 {
                    0 => t.send(
                        "list",
                        t.http
                            .get(format!("{}/api/admin/payouts?limit=50", t.base))
                            .bearer_auth(&t.token),
                    ),
                    1 => t.send(
                        "list",
                        t.http
                            .get(format!("{}/api/admin/runs?limit=20", t.base))
                            .bearer_auth(&t.token),
                    ),
                    _ => t.send(
                        "doctor",
                        t.http
                            .get(format!("{}/api/doctor/payouts?limit=20", t.base))
                            .bearer_auth(&t.doctor_token),
                    ),
                }
                .await;
                i += 1;
                tokio::time::sleep(READ_GAP).await;
            }
        }
    });

    // The samples, one per `every`.
    let mut samples = Vec::new();
    let mut next = started + every;
    while next <= deadline + Duration::from_millis(500) {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let (sessions,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&sessions_name)
            .fetch_one(&pool)
            .await
            .expect("reading pg_stat_activity");
        let (payouts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM payouts")
            .fetch_one(&pool)
            .await
            .expect("counting payouts");
        let sample = Sample {
            at: started.elapsed(),
            rss_kib: rss_kib(pid),
            sessions,
            payouts,
            p99_ms: traffic.take_p99s(),
        };
        println!("{}", row(&sample));
        samples.push(sample);
    }
    let cycles = cycles.await.expect("the cycles");
    readers.await.expect("the readers");
    println!("{cycles} cycles in {:?}", started.elapsed());

    // Nothing refused, nothing lost, nothing paid twice.
    let refused = traffic.refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "{} requests were not answered 2xx, e.g. {:#?}",
        refused.len(),
        &refused[..refused.len().min(10)]
    );
    let triggered = traffic.triggered.lock().unwrap().clone();
    assert_eq!(
        triggered.len(),
        cycles * DOCTORS,
        "every cycle sent every doctor's payout"
    );
    let counts = status_counts(&pool).await;
    assert_eq!(
        counts.get("PAID").copied().unwrap_or(0) as usize,
        triggered.len(),
        "every payout sent is PAID: {counts:?}"
    );
    check_trails(&store, &pool, &triggered).await;
    assert!(server.id() == pid, "one server process throughout");
    drop(server);
    sessions_gone(&pool, &sessions_name).await;

    assert!(samples.len() >= 3, "at least three samples: {samples:?}");
    if check_trends {
        check_no_trend(&samples);
    }
}

/// One cycle: month `n`'s consultations, calculated, approved, triggered, paid by webhook, exported.
async fn cycle(t: &Traffic, service: &PayoutService, pool: &PgPool, n: usize) {
    let period = month(n);
    if n > 0 {
        let at = Utc.from_utc_datetime(&period.start.and_hms_opt(9, 0, 0).unwrap());
        sqlx::query(
            "INSERT INTO appointments \
             SELECT 'apt-' || $3 || '-' || k || '-' || lpad(i::text, 4, '0'), 'dr-' || lpad(i::text, 4, '0'), \
                    'COMPLETED', $2 + make_interval(days => k, mins => i) \
             FROM generate_series(0, $1 - 1) AS i, generate_series(1, 2) AS k",
        )
        .bind(DOCTORS as i32)
        .bind(at)
        .bind(n.to_string())
        .execute(pool)
        .await
        .expect("the month's consultations");
    }
    let started = Instant::now();
    let report = service
        .calculate_period(
            &Actor::system("soak-monthly-job"),
            Some(period),
            &CalculationPolicy::default(),
        )
        .await
        .expect("calculating the month");
    t.record("calculate", started.elapsed());
    assert_eq!(report.created.len(), DOCTORS, "one payout per doctor: {report:?}");
    let ids: Vec<String> = report.created.iter().map(ToString::to_string).collect();

    let bulk = |body: serde_json::Value| {
        t.http
            .post(format!("{}/api/admin/payouts/bulk", t.base))
            .bearer_auth(&t.token)
            .json(&body)
    };
    let approved = t
        .send("approve", bulk(json!({"payoutIds": ids, "action": "approve"})))
        .await;
    assert_eq!(
        succeeded(&approved),
        DOCTORS,
        "approved: {approved:?}, refused: {:?}",
        t.refused.lock().unwrap()
    );
    let sent = t
        .send(
            "trigger",
            bulk(json!({"payoutIds": ids, "action": "trigger", "provider": "MPESA_B2C"})),
        )
        .await;
    assert_eq!(succeeded(&sent), DOCTORS, "triggered: {sent:?}");
    t.triggered.lock().unwrap().extend(report.created.iter().cloned());

    // Each attempt's key and the ConversationID Daraja gave it, and the payout's amount in whole KES.
    let attempts: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT a.payout_id, a.idempotency_key, a.provider_reference, p.amount_minor / 100 \
         FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id WHERE a.payout_id = ANY($1) ORDER BY a.payout_id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .expect("the attempts' conversations");
    assert_eq!(attempts.len(), DOCTORS);
    let exported = t
        .send(
            "export",
            t.http
                .get(format!("{}/api/admin/payouts/export?status=PROCESSING", t.base))
                .bearer_auth(&t.token),
        )
        .await;
    assert!(exported.is_some(), "the export answered");
    for (i, (_, key, conversation, amount)) in attempts.iter().enumerate() {
        let body = daraja_double::paid_result(key, conversation, u64::try_from(*amount).expect("KES"), i);
        let signature = daraja_double::hmac_hex(MPESA_WEBHOOK_SECRET, &[&body]);
        let hook = || {
            t.http
                .post(format!("{}/api/webhooks/mpesa-b2c", t.base))
                .header("content-type", "application/json")
                .header("x-mpesa-signature", signature.clone())
                .body(body.clone())
        };
        t.send("webhook", hook()).await;
        if i % 10 == 0 {
            // A redelivery: acknowledged, changes nothing.
            t.send("webhook", hook()).await;
        }
        tokio::time::sleep(WEBHOOK_GAP).await;
    }
}

fn succeeded(answer: &Option<serde_json::Value>) -> usize {
    answer
        .as_ref()
        .and_then(|a| a["summary"]["succeeded"].as_u64())
        .unwrap_or(0) as usize
}

fn doctor_token(doctor: &str) -> String {
    payout_server::JwtKey::new(JWT_SECRET).sign(&payout_server::Claims {
        sub: format!("user-{doctor}"),
        role: payout_server::Role::Doctor,
        doctor_id: Some(doctor.to_string()),
        exp: Utc::now().timestamp() + 4 * 3600,
    })
}

/// The server's resident memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn row(s: &Sample) -> String {
    let p99s: Vec<String> = KINDS
        .iter()
        .map(|k| format!("{k} {}", s.p99_ms.get(k).map_or("-".into(), |v| format!("{v:.1}"))))
        .collect();
    format!(
        "soak sample at {:>5.0} s: rss {:.1} MiB, db sessions {}, payouts {}, p99 ms: {}",
        s.at.as_secs_f64(),
        s.rss_kib as f64 / 1024.0,
        s.sessions,
        s.payouts,
        p99s.join(", ")
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The last third's median against the first third's, the warm-up sample left out.
fn check_no_trend(samples: &[Sample]) {
    let steady = &samples[1..];
    let third = (steady.len() / 3).max(1);
    let (first, last) = (&steady[..third], &steady[steady.len() - third..]);
    let of = |part: &[Sample], f: &dyn Fn(&Sample) -> Option<f64>| median(part.iter().filter_map(f).collect());
    let mut trends = Vec::new();
    let rss = |s: &Sample| Some(s.rss_kib as f64 / 1024.0);
    let (rss_first, rss_last) = (of(first, &rss), of(last, &rss));
    if rss_last > rss_first * 1.25 + 16.0 {
        trends.push(format!("memory rose from {rss_first:.1} MiB to {rss_last:.1} MiB"));
    }
    let sessions = |s: &Sample| Some(s.sessions as f64);
    let (sessions_first, sessions_last) = (of(first, &sessions), of(last, &sessions));
    if sessions_last > sessions_first + 2.0 {
        trends.push(format!(
            "database sessions rose from {sessions_first} to {sessions_last}"
        ));
    }
    if let Some(max) = samples.iter().map(|s| s.sessions).max().filter(|m| *m > POOL_MAX) {
        trends.push(format!("{max} database sessions, above the pool's {POOL_MAX}"));
    }
    for kind in KINDS {
        let p99 = |s: &Sample| s.p99_ms.get(kind).copied();
        let (p_first, p_last) = (of(first, &p99), of(last, &p99));
        if p_last > p_first * 2.0 + 25.0 {
            trends.push(format!("{kind} p99 rose from {p_first:.1} ms to {p_last:.1} ms"));
        }
    }
    println!(
        "soak: memory {rss_first:.1} -> {rss_last:.1} MiB, sessions {sessions_first} -> {sessions_last} (medians of the first and last third)"
    );
    assert!(trends.is_empty(), "upward trends: {trends:#?}");
}

/// Every payout sent: PAID, one attempt; one TRIGGER and one PROVIDER_PAID audit entry. In SQL, as
/// a long run sends tens of thousands; a few are read back through the store as well.
async fn check_trails(store: &PgStore, pool: &PgPool, ids: &[PayoutId]) {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT p.id, p.status, \
                (SELECT COUNT(*) FROM payout_attempts a WHERE a.payout_id = p.id), \
                (SELECT COUNT(*) FROM audit_entries e WHERE e.payout_id = p.id AND e.action = 'TRIGGER'), \
                (SELECT COUNT(*) FROM audit_entries e WHERE e.payout_id = p.id AND e.action = 'PROVIDER_PAID') \
         FROM payouts p WHERE p.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .expect("the payouts' trails");
    let wrong: Vec<_> = rows
        .into_iter()
        .filter(|(_, status, attempts, triggers, paid)| {
            (status.as_str(), *attempts, *triggers, *paid) != ("PAID", 1, 1, 1)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} payouts not PAID once with one attempt, one TRIGGER and one PROVIDER_PAID \
         (id, status, attempts, triggers, paid): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    for id in ids.iter().step_by((ids.len() / 5).max(1)) {
        let payout = store.get(&id.as_str().into()).await.expect("a payout");
        assert_eq!(payout.status, PayoutStatus::Paid, "{id}");
        assert_eq!(store.attempts(&payout.id).await.expect("its attempts").len(), 1, "{id}");
    }
}
