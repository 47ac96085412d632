//! The `calc_payouts` example as a user runs it: flags, summary, idempotent re-run, clawbacks configured by
//! environment variables, and exit code 1 with a clear message when the database is unreachable, the
//! period has no completed consultations or the clawback settings are incomplete.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example() -> PathBuf {
    // Test binaries live in target/<profile>/deps; cargo builds examples into target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir
        .join("examples")
        .join(format!("calc_payouts{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built; run through `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// The clawback settings the example reads; cleared for every run so the caller's environment does
/// not change what a test sees.
const REVERSAL_VARS: [&str; 2] = ["PAYOUTS_REVERSED_STATUSES", "PAYOUTS_REVERSED_AT_COLUMN"];

fn run(database_url: &str, args: &[&str]) -> Output {
    run_with(database_url, args, &[])
}

/// [`run`] with `vars` set.
fn run_with(database_url: &str, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(example());
    command.args(args).env("DATABASE_URL", database_url);
    for name in REVERSAL_VARS {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied()).output().unwrap()
}

async fn host_db(dir: &std::path::Path, completed: &[(&str, &str, &str)]) -> String {
    let url = format!("sqlite://{}?mode=rwc", dir.join("host.db").display());
    let store = payouts::store_sqlx::SqliteStore::connect(&url).await.unwrap();
    let pool = store.pool();
    for sql in [
        "CREATE TABLE appointments (id TEXT PRIMARY KEY, doctor_id TEXT, status TEXT, completed_at TEXT)",
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT, email TEXT, stripe_account_id TEXT, \
         paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT)",
        "INSERT INTO appointments VALUES ('x', 'dr-a', 'CANCELLED', '2025-01-05T10:00:00Z')",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    for (id, doctor, at) in completed {
        sqlx::query("INSERT INTO appointments VALUES ($1, $2, 'COMPLETED', $3)")
            .bind(id)
            .bind(doctor)
            .bind(at)
            .execute(pool)
            .await
            .unwrap();
    }
    url
}

#[tokio::test]
async fn calculates_a_period_once_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let url = host_db(
        dir.path(),
        &[
            ("1", "dr-a", "2025-01-03T10:00:00Z"),
            ("2", "dr-a", "2025-01-31T23:59:59Z"),
            ("3", "dr-b", "2025-01-10T08:00:00Z"),
            ("4", "dr-b", "2025-02-01T00:00:00Z"),
        ],
    )
    .await;
    let out = run(&url, &["--start", "2025-01-01", "--end", "2025-01-31", "--rate", "750"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("consultations:  3"), "{stdout}");
    assert!(stdout.contains("payouts created: 2 (2250.00 KES in all)"), "{stdout}");
    let again = run(&url, &["--start=2025-01-01", "--end=2025-01-31", "--rate=750"]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains("payouts created: 0") && stdout.contains("already paid (on a live payout, skipped): 3"),
        "{stdout}"
    );
    // An overlapping period pays nothing twice either, and says what is already paid (read without
    // a look-back, so only the period's consultations are counted).
    let overlap = run(
        &url,
        &["--start=2025-01-15", "--end=2025-02-14", "--rate=750", "--lookback=0"],
    );
    let stdout = String::from_utf8_lossy(&overlap.stdout);
    assert!(overlap.status.success(), "{stdout}");
    assert!(stdout.contains("consultations:  2"), "{stdout}");
    assert!(stdout.contains("payouts created: 1 (750.00 KES in all)"), "{stdout}");
    assert!(
        stdout.contains("already paid (on a live payout, skipped): 1"),
        "{stdout}"
    );
    assert!(stdout.contains("1 consultations of dr-a held by payout"), "{stdout}");
}

#[tokio::test]
async fn a_consultation_completed_late_is_paid_by_the_next_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = host_db(dir.path(), &[("1", "dr-a", "2025-01-03T10:00:00Z")]).await;
    let jan = run(&url, &["--start", "2025-01-01", "--end", "2025-01-31"]);
    assert!(jan.status.success(), "{}", String::from_utf8_lossy(&jan.stderr));
    // Appointment 2 happened in January but is marked completed only now.
    let store = payouts::store_sqlx::SqliteStore::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO appointments VALUES ('2', 'dr-a', 'COMPLETED', '2025-01-30T16:00:00Z')")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO appointments VALUES ('3', 'dr-a', 'COMPLETED', '2025-02-03T09:00:00Z')")
        .execute(store.pool())
        .await
        .unwrap();
    let feb = run(&url, &["--start", "2025-02-01", "--end", "2025-02-28"]);
    let stdout = String::from_utf8_lossy(&feb.stdout);
    assert!(feb.status.success(), "{stdout}{}", String::from_utf8_lossy(&feb.stderr));
    assert!(stdout.contains("looking back 90 days"), "{stdout}");
    assert!(stdout.contains("payouts created: 1 (1000.00 KES in all)"), "{stdout}");
    assert!(
        stdout.contains("late consultations paid (completed after their period was calculated): 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("already paid (on a live payout, skipped): 0"),
        "{stdout}"
    );
    let again = run(
        &url,
        &["--start", "2025-03-01", "--end", "2025-03-31", "--lookback", "120"],
    );
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        stdout.contains("payouts created: 0")
            && stdout.contains("late consultations paid (completed after their period was calculated): 0"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_paid_consultation_refunded_since_is_clawed_back_when_the_reversal_columns_are_set() {
    use std::sync::Arc;

    use payouts::domain::{Actor, Provider};
    use payouts::simulated::SimulatedProvider;
    use payouts::store_sqlx::{RecipientTable, SqlRecipientDirectory, SqliteStore};

    let dir = tempfile::tempdir().unwrap();
    let url = host_db(
        dir.path(),
        &[
            ("1", "dr-a", "2025-01-03T10:00:00Z"),
            ("2", "dr-a", "2025-01-20T10:00:00Z"),
        ],
    )
    .await;
    let jan = run(&url, &["--start", "2025-01-01", "--end", "2025-01-31"]);
    assert!(jan.status.success(), "{}", String::from_utf8_lossy(&jan.stderr));
    // January's payout is approved and paid.
    let store = SqliteStore::connect(&url).await.unwrap();
    let pool = store.pool().clone();
    sqlx::query("ALTER TABLE appointments ADD COLUMN refunded_at TEXT")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO doctor_profiles VALUES ('dr-a', 'Dr. A', 'a@example.com', NULL, NULL, '254712345678', NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let service = payouts::PayoutService::builder()
        .store(Arc::new(store))
        .directory(Arc::new(
            SqlRecipientDirectory::new(pool.clone(), RecipientTable::default()).unwrap(),
        ))
        .provider(Arc::new(SimulatedProvider::new(Provider::MpesaB2c)))
        .build()
        .unwrap();
    let page = service
        .store()
        .list(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(page.payouts.len(), 1);
    let january = page.payouts[0].id.clone();
    service.approve(&Actor::admin("admin-2"), &january).await.unwrap();
    let paid = service
        .trigger(&Actor::admin("admin-1"), &january, Provider::MpesaB2c)
        .await
        .unwrap();
    assert_eq!(paid.status, payouts::status::PayoutStatus::Paid);

    // Consultation 1 is refunded in February; dr-a completes two more.
    for sql in [
        "UPDATE appointments SET status = 'REFUNDED', refunded_at = '2025-02-03T09:00:00Z' WHERE id = '1'",
        "INSERT INTO appointments VALUES ('3', 'dr-a', 'COMPLETED', '2025-02-05T10:00:00Z', NULL), \
         ('4', 'dr-a', 'COMPLETED', '2025-02-06T10:00:00Z', NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let feb_args = ["--start", "2025-02-01", "--end", "2025-02-28"];

    // Half a configuration is refused before anything is written.
    let half = run_with(&url, &feb_args, &[("PAYOUTS_REVERSED_STATUSES", "REFUNDED,VOIDED")]);
    assert_eq!(half.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(stderr.contains("PAYOUTS_REVERSED_AT_COLUMN"), "{stderr}");
    // A column name that is not an identifier is refused too.
    let bad = run_with(
        &url,
        &feb_args,
        &[
            ("PAYOUTS_REVERSED_STATUSES", "REFUNDED"),
            ("PAYOUTS_REVERSED_AT_COLUMN", "refunded_at; --"),
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("not a plain SQL identifier"), "{stderr}");
    let page = service
        .store()
        .list(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(page.payouts.len(), 1, "nothing was written");

    let feb = run_with(
        &url,
        &feb_args,
        &[
            ("PAYOUTS_REVERSED_STATUSES", "REFUNDED,VOIDED"),
            ("PAYOUTS_REVERSED_AT_COLUMN", "refunded_at"),
        ],
    );
    let stdout = String::from_utf8_lossy(&feb.stdout);
    assert!(feb.status.success(), "{stdout}{}", String::from_utf8_lossy(&feb.stderr));
    assert!(
        stdout.contains("clawing back paid consultations with status REFUNDED, VOIDED (reversal time in refunded_at)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("clawbacks (paid consultations refunded or voided since): 1"),
        "{stdout}"
    );
    assert!(stdout.contains("payouts created: 1 (500.00 KES in all)"), "{stdout}");
}

#[tokio::test]
async fn no_completed_consultations_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = host_db(dir.path(), &[]).await;
    let out = run(&url, &["--start", "2025-01-01", "--end", "2025-01-31"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no appointments with status COMPLETED between 2025-01-01 and 2025-01-31"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_database_exits_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}?mode=rw", dir.path().join("nope.db").display());
    for url in [missing.as_str(), "postgres://nobody@127.0.0.1:1/none"] {
        let out = run(url, &[]);
        assert_eq!(out.status.code(), Some(1), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot open the database") && stderr.contains("DATABASE_URL"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("nobody@"),
            "the URL (which may hold a password) is not echoed: {stderr}"
        );
    }
}

#[test]
fn bad_flags_are_refused() {
    let out = run("sqlite::memory:", &["--rate", "10.001"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate"));
    let out = run("sqlite::memory:", &["--start", "2025-02-30"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run("sqlite::memory:", &["--lookback", "ninety"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lookback"));
}
