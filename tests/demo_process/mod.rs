//! What the tests that run the demo server as a process share (`crash_recovery`, `graceful_shutdown`,
//! `event_delivery`, `two_instances`, `db_restart`): the Postgres URL, the host tables, the `demo_server` example
//! built with the test's features, the running process, and reads of the schema it works on.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use payout_server::{Claims, JwtKey, Role};
use payouts::domain::{Actor, AuditEntry, Payout, PayoutAttempt, PayoutId};
use payouts::store::PayoutFilter;
use payouts::store_sqlx::{ConsultationTable, PgStore, RecipientTable, SqlConsultationSource, SqlRecipientDirectory};
use payouts::{PayoutService, PayoutStore};
use serde_json::{Value, json};
use sqlx::postgres::PgPool;

use crate::common::{calculate, january};

pub const POSTGRES_URL_VAR: &str = "PAYOUTS_TEST_POSTGRES_URL";
/// The token secret the servers are started with.
pub const JWT_SECRET: &str = "crash-recovery-test-secret-not-for-production";
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a signalled server may take to be gone.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(10);
pub const POLL: Duration = Duration::from_millis(50);

pub fn postgres_url() -> Option<String> {
    let url = std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: {POSTGRES_URL_VAR} not set");
    }
    url
}

pub fn doctor(i: usize) -> String {
    format!("dr-{i:04}")
}

/// The host app's tables, as the demo creates them: `doctors` doctors with bank details, one completed
/// consultation each in January 2025 (and a cancelled one that must not count).
pub async fn create_host_tables(pool: &PgPool, doctors: usize) {
    for sql in [
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, \
         stripe_account_id TEXT, paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT)",
        "CREATE TABLE appointments (id TEXT PRIMARY KEY, doctor_id TEXT NOT NULL, status TEXT NOT NULL, \
         completed_at TIMESTAMPTZ)",
    ] {
        sqlx::query(sql).execute(pool).await.expect("creating a host table");
    }
    let base = Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap();
    sqlx::query(
        "INSERT INTO doctor_profiles (doctor_id, name, email, bank_details) \
         SELECT 'dr-' || lpad(i::text, 4, '0'), 'Dr. ' || lpad(i::text, 4, '0'), \
                'dr-' || lpad(i::text, 4, '0') || '@clinic.example', \
                json_build_object('accountName', 'Dr. ' || lpad(i::text, 4, '0'), \
                                  'accountNumber', '01' || lpad(i::text, 8, '0'), 'bankName', 'Test Bank', \
                                  'bankCode', '01', 'branchCode', '001', 'country', 'KE')::text \
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(doctors as i32)
    .execute(pool)
    .await
    .expect("inserting the doctors");
    sqlx::query(
        "INSERT INTO appointments \
         SELECT 'apt-' || lpad(i::text, 4, '0'), 'dr-' || lpad(i::text, 4, '0'), 'COMPLETED', \
                $2 + make_interval(mins => i) \
         FROM generate_series(0, $1 - 1) AS i \
         UNION ALL SELECT 'apt-x', 'dr-0000', 'CANCELLED', $2",
    )
    .bind(doctors as i32)
    .bind(base)
    .execute(pool)
    .await
    .expect("inserting the appointments");
    let (found,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM doctor_profiles WHERE doctor_id = $1")
        .bind(doctor(doctors - 1))
        .fetch_one(pool)
        .await
        .expect("counting doctors");
    assert_eq!(found, 1, "the doctors are named like doctor()");
}

// ---------------------------------------------------------------------------------------------------------
// The demo server process
// ---------------------------------------------------------------------------------------------------------

/// The `demo_server` example, built with this test's features and profile. `cargo test --test crash_recovery`
/// builds no examples, so a binary next to the test could be missing or stale; without cargo at hand
/// (the test binary run by itself) that binary is used.
pub fn demo_server_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    // target/<profile>/deps/crash_recovery-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let sibling = profile_dir
        .join("examples")
        .join(format!("demo_server{}", std::env::consts::EXE_SUFFIX));
    let Some(cargo) = std::env::var("CARGO").ok().or(option_env!("CARGO").map(str::to_owned)) else {
        assert!(sibling.exists(), "{} not built", sibling.display());
        return sibling;
    };
    let features: Vec<&str> = [
        ("sqlite", cfg!(feature = "sqlite")),
        ("postgres", cfg!(feature = "postgres")),
        ("stripe", cfg!(feature = "stripe")),
        ("paypal", cfg!(feature = "paypal")),
        ("mpesa", cfg!(feature = "mpesa")),
        ("bank", cfg!(feature = "bank")),
    ]
    .into_iter()
    .filter_map(|(f, on)| on.then_some(f))
    .collect();
    let mut cmd = Command::new(cargo);
    // Not the variables cargo sets for this test process: build scripts that watch one (ring watches
    // CARGO_MANIFEST_DIR) would be rebuilt, and again by the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_for_tests = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_"]
            .iter()
            .any(|p| name.starts_with(p))
            || [
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&&*name);
        if set_by_cargo_for_tests {
            cmd.env_remove(&*name);
        }
    }
    cmd.args([
        "build",
        "--example",
        "demo_server",
        "--message-format=json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
    .args(["--no-default-features", "--features", &features.join(",")]);
    if let Some(target_dir) = profile_dir.parent() {
        cmd.arg("--target-dir").arg(target_dir);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("running cargo build --example demo_server");
    assert!(
        out.status.success(),
        "building the demo_server example failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "demo_server")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo named the demo_server executable")
}

/// A running demo server; killed (SIGKILL) and reaped when dropped, also when the test panics.
pub struct DemoServer {
    child: Child,
    log: PathBuf,
}

impl DemoServer {
    pub fn start(exe: &Path, env: &[(&str, String)], log: PathBuf) -> Self {
        let file = File::create(&log).expect("creating the server log");
        let child = Command::new(exe)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("the server log")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("starting the demo server");
        DemoServer { child, log }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `/healthz` until it answers 200.
    pub async fn wait_healthy(&mut self, http: &reqwest::Client, base: &str) {
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("checking the server") {
                panic!(
                    "the demo server exited ({status}) before it answered:\n{}",
                    self.log_tail(40)
                );
            }
            let ok = http
                .get(format!("{base}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the demo server did not answer /healthz within {SERVER_START_TIMEOUT:?}:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then waits (bounded) until the process is gone.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                return status;
            }
            assert!(Instant::now() < deadline, "the demo server outlived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl DemoServer {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, as `docker stop`, systemd and Kubernetes send it.
    #[cfg(unix)]
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {} failed", self.child.id());
    }

    /// How the process ended, if it has (`None` while it runs).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("checking the server")
    }

    /// Waits (bounded by `timeout`) until the process is gone.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo server still runs {timeout:?} later:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} (last lines) ---\n{}", self.log.display(), self.log_tail(30));
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn admin_token() -> String {
    admin_token_for("crash-test-admin")
}

/// An admin token for the admin `sub` (its audit entries name `admin:<sub>`).
pub fn admin_token_for(sub: &str) -> String {
    JwtKey::new(JWT_SECRET).sign(&Claims {
        sub: sub.into(),
        role: Role::Admin,
        doctor_id: None,
        exp: Utc::now().timestamp() + 3600,
    })
}

pub fn bulk_trigger_body(ids: &[PayoutId]) -> Value {
    json!({
        "payoutIds": ids.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "action": "trigger",
        "provider": "BANK_TRANSFER",
    })
}

// ---------------------------------------------------------------------------------------------------------
// Observing the database
// ---------------------------------------------------------------------------------------------------------

pub async fn all_payouts(store: &PgStore) -> Vec<Payout> {
    store
        .stream(PayoutFilter::default())
        .try_collect()
        .await
        .expect("reading the payouts")
}

pub async fn status_counts(pool: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT status, COUNT(*) FROM payouts GROUP BY status")
        .fetch_all(pool)
        .await
        .expect("counting payouts by status")
        .into_iter()
        .collect()
}

/// Waits (bounded) until no database session named `application_name` is left: a killed server's last
/// statements may still be running (or committing) after the process is gone. Returns how many were
/// open at first and how long they took to go.
pub async fn sessions_gone(pool: &PgPool, application_name: &str) -> (i64, Duration) {
    let started = Instant::now();
    let deadline = started + KILL_TIMEOUT;
    let mut first = None;
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(application_name)
            .fetch_one(pool)
            .await
            .expect("reading pg_stat_activity");
        let at_first = *first.get_or_insert(n);
        if n == 0 {
            return (at_first, started.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "{n} database sessions of the killed server still open after {KILL_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every payout's attempts, 16 lookups at a time.
pub async fn attempts_of(store: &PgStore, ids: &[PayoutId]) -> HashMap<PayoutId, Vec<PayoutAttempt>> {
    futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let a = store.attempts(&id).await.expect("reading attempts");
            (id, a)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Every payout's audit trail, 16 reads at a time.
pub async fn audit_trails(store: &PgStore, ids: &[PayoutId]) -> HashMap<PayoutId, Vec<AuditEntry>> {
    futures::stream::iter(ids.iter().cloned())
        .map(|id| async move {
            let trail = store.audit_trail(&id).await.expect("reading an audit trail");
            (id, trail)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Migrates the schema `database_url` names, creates the host's tables for `doctors` doctors, and
/// calculates and approves January through the engine: one APPROVED payout per doctor.
pub async fn approved_payouts(database_url: &str, doctors: usize) -> (PgStore, PgPool, Vec<PayoutId>) {
    approved_payouts_with(database_url, doctors, &[]).await
}

/// [`approved_payouts`], with `host_sql` run on the host's tables before the calculation (say, to
/// give some doctors another payout method), so that the approvals see the details it sets.
pub async fn approved_payouts_with(
    database_url: &str,
    doctors: usize,
    host_sql: &[&str],
) -> (PgStore, PgPool, Vec<PayoutId>) {
    let store = PgStore::connect(database_url).await.expect("migrating the test schema");
    let pool = store.pool().clone();
    create_host_tables(&pool, doctors).await;
    for sql in host_sql {
        sqlx::query(sql)
            .execute(&pool)
            .await
            .expect("changing the host's tables");
    }
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
    let ids = calculate(&service, january(), doctors).await;
    let approver = Actor::admin("approver");
    futures::stream::iter(&ids)
        .map(|id| service.approve(&approver, id))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("approving");
    (store, pool, ids)
}
