//! The `payouts` binary as a user runs it (feature `cli`): `--help` of every command, `migrate`,
//! `calc --dry-run` then `calc`, `export` in CSV, pain.001 and NACHA, `reconcile`, and the exit codes
//! (0 done, 1 the work failed, 2 bad flags or settings).

use std::path::Path;
use std::process::{Command, Output};

fn payouts(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payouts"));
    command.args(args);
    // The caller's environment must not change what a test sees.
    for var in [
        "DATABASE_URL",
        "PAYOUTS_PG_SCHEMA",
        "PAYOUTS_REVERSED_STATUSES",
        "PAYOUTS_REVERSED_AT_COLUMN",
        "PAYOUTS_DEBTOR_NAME",
        "PAYOUTS_DEBTOR_ACCOUNT",
    ] {
        command.env_remove(var);
    }
    command.output().expect("the payouts binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A store file with the host's tables: two doctors with bank details, three consultations in
/// January 2025.
async fn host_db(dir: &Path) -> String {
    let url = format!("sqlite://{}?mode=rwc", dir.join("clinic.db").display());
    let store = payouts::store_sqlx::SqliteStore::connect(&url).await.unwrap();
    for sql in [
        "CREATE TABLE appointments (id TEXT PRIMARY KEY, doctor_id TEXT, status TEXT, completed_at TEXT)",
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT, email TEXT, stripe_account_id TEXT, \
         paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT)",
        "INSERT INTO appointments VALUES ('1', 'dr-a', 'COMPLETED', '2025-01-03T10:00:00Z'), \
         ('2', 'dr-a', 'COMPLETED', '2025-01-20T10:00:00Z'), ('3', 'dr-b', 'COMPLETED', '2025-01-10T08:00:00Z')",
        "INSERT INTO doctor_profiles VALUES \
         ('dr-a', 'Dr. A', 'a@example.com', NULL, NULL, NULL, \
          '{\"accountName\": \"Dr. A\", \"accountNumber\": \"DE89370400440532013000\", \"bankCode\": \"37040044\"}'), \
         ('dr-b', 'Dr. B', 'b@example.com', NULL, NULL, NULL, \
          '{\"accountName\": \"Dr. B\", \"accountNumber\": \"0123456789\", \"bankCode\": \"01\"}')",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    store.pool().close().await;
    url
}

async fn payout_count(url: &str) -> u64 {
    let store = payouts::store_sqlx::SqliteStore::connect(url).await.unwrap();
    let page = payouts::PayoutStore::list(&store, &Default::default(), &Default::default())
        .await
        .unwrap();
    store.pool().close().await;
    page.total
}

#[test]
fn every_command_has_help_with_the_exit_codes() {
    for (args, flags) in [
        (
            &["--help"][..],
            &["calc", "migrate", "reconcile", "export", "serve"][..],
        ),
        (
            &["calc", "--help"],
            &[
                "--start",
                "--end",
                "--rate",
                "--lookback",
                "--dry-run",
                "--database-url",
            ],
        ),
        (&["migrate", "--help"], &["--database-url", "--schema"]),
        (&["reconcile", "--help"], &["--older-than", "--database-url"]),
        (
            &["export", "--help"],
            &["--format", "pain001", "nacha", "--output", "--status"],
        ),
        (&["serve", "--help"], &["--addr", "--database-url"]),
    ] {
        let out = payouts(args);
        let help = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {help}");
        assert!(
            help.contains("Exit codes: 0 done; 1 the work failed"),
            "{args:?}: {help}"
        );
        for flag in flags {
            assert!(help.contains(flag), "{args:?} lacks {flag}: {help}");
        }
    }
}

#[tokio::test]
async fn migrate_creates_the_store_and_runs_again_as_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("new.db").display());
    for _ in 0..2 {
        let out = payouts(&["migrate", "--database-url", &url]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(text(&out).contains("SQLite store up to date"), "{}", text(&out));
    }
    let pool = payouts::store_sqlx::sqlite::pool(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, payouts::store_sqlx::sqlite::MIGRATOR.iter().count());
    // A schema is a Postgres setting: refused, nothing done.
    let out = payouts(&["migrate", "--database-url", &url, "--schema", "billing"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn calc_dry_run_writes_nothing_then_calc_writes_what_it_showed() {
    let dir = tempfile::tempdir().unwrap();
    let url = host_db(dir.path()).await;
    let period = ["--start", "2025-01-01", "--end", "2025-01-31", "--database-url", &url];
    let dry = payouts(&[&["calc", "--dry-run"][..], &period].concat());
    let shown = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{shown}");
    assert!(shown.contains("dry run"), "{shown}");
    assert!(
        shown.contains("payouts created (would be): 2 (1500.00 KES in all)"),
        "{shown}"
    );
    assert_eq!(payout_count(&url).await, 0, "a dry run writes nothing");

    let real = payouts(&[&["calc"][..], &period].concat());
    let shown = text(&real);
    assert_eq!(real.status.code(), Some(0), "{shown}");
    assert!(shown.contains("payouts created: 2 (1500.00 KES in all)"), "{shown}");
    assert_eq!(payout_count(&url).await, 2);

    // Bad flags: usage, exit 2.
    for bad in [
        &["calc", "--rate", "10.001"][..],
        &["calc", "--lookback", "ninety"],
        &["calc", "--nope"],
    ] {
        let out = payouts(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
    // Postgres has no dry run: usage, exit 2, before connecting.
    let out = payouts(&[
        "calc",
        "--dry-run",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains("nobody@"), "the URL is not echoed: {}", text(&out));
}

#[tokio::test]
async fn export_writes_csv_and_bank_files_and_refuses_what_a_format_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let url = host_db(dir.path()).await;
    let calc = payouts(&[
        "calc",
        "--start",
        "2025-01-01",
        "--end",
        "2025-01-31",
        "--database-url",
        &url,
    ]);
    assert_eq!(calc.status.code(), Some(0), "{}", text(&calc));

    let csv = payouts(&["export", "--database-url", &url]);
    assert_eq!(csv.status.code(), Some(0), "{}", text(&csv));
    let body = String::from_utf8_lossy(&csv.stdout);
    let rows: Vec<&str> = body.lines().collect();
    assert_eq!(
        rows[0],
        "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status"
    );
    assert_eq!(rows.len(), 3, "{body}");
    assert!(rows[1..].iter().all(|r| r.ends_with(",PENDING")), "{body}");

    // A bank file sends APPROVED payouts only: PENDING ones are refused, nothing written.
    let pain_args = |file: &Path, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "export",
            "--format",
            "pain001",
            "--debtor-name",
            "Clinic Ltd",
            "--debtor-account",
            "GB33BUKB20201555555555",
            "--output",
            file.to_str().unwrap(),
            "--database-url",
            &url,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.extend(extra.iter().map(ToString::to_string));
        args
    };
    let file = dir.path().join("pay.xml");
    let pending = payouts(&as_strs(&pain_args(&file, &["--status", "PENDING"])));
    assert_eq!(pending.status.code(), Some(2), "{}", text(&pending));
    assert!(text(&pending).contains("APPROVED"), "{}", text(&pending));
    let nothing = payouts(&as_strs(&pain_args(&file, &[])));
    assert_eq!(nothing.status.code(), Some(1), "nothing approved: {}", text(&nothing));
    assert!(text(&nothing).contains("no APPROVED bank payout"), "{}", text(&nothing));

    approve_all(&url).await;
    // NACHA pays USD only, and these payouts are KES: the file is refused before anything is marked.
    let nacha = payouts(&[
        "export",
        "--format",
        "nacha",
        "--nacha-destination",
        "091000019",
        "--nacha-destination-name",
        "WELLS FARGO",
        "--nacha-origin",
        "1234567890",
        "--nacha-origin-name",
        "CLINIC LTD",
        "--nacha-company-name",
        "CLINIC LTD",
        "--nacha-company-id",
        "1234567890",
        "--nacha-originating-dfi",
        "09100001",
        "--database-url",
        &url,
    ]);
    assert_eq!(nacha.status.code(), Some(1), "{}", text(&nacha));
    assert!(text(&nacha).contains("refused"), "{}", text(&nacha));
    assert_eq!(
        statuses(&url).await,
        vec!["APPROVED".to_string(); 2],
        "a refused file marks nothing"
    );

    let pain = payouts(&as_strs(&pain_args(&file, &[])));
    assert_eq!(pain.status.code(), Some(0), "{}", text(&pain));
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(xml.contains("urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"), "{xml}");
    let file_id = text(&pain)
        .split_whitespace()
        .find(|w| w.starts_with("bf-"))
        .map(|w| w.trim_end_matches(':').to_string())
        .unwrap_or_else(|| panic!("the file's id is printed: {}", text(&pain)));
    assert!(
        xml.contains(&format!("<MsgId>{file_id}</MsgId>")) && xml.contains("<NbOfTxs>2</NbOfTxs>"),
        "{xml}"
    );
    assert!(xml.contains("<CtrlSum>1500.00</CtrlSum>"), "{xml}");
    // Its payouts are marked sent by the file: none is APPROVED any more, so none can be sent again.
    assert_eq!(statuses(&url).await, vec!["PROCESSING".to_string(); 2]);
    let again_file = dir.path().join("again.xml");
    let twice = payouts(&as_strs(&pain_args(&again_file, &[])));
    assert_eq!(twice.status.code(), Some(1), "sent already: {}", text(&twice));
    // The same file, written again by its id: the same transfers, nothing marked.
    let again = payouts(&as_strs(&pain_args(&again_file, &["--bank-file", &file_id])));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(&again_file).unwrap(), xml);
    assert_eq!(statuses(&url).await, vec!["PROCESSING".to_string(); 2]);

    // A missing setting: usage, exit 2.
    let missing = payouts(&["export", "--format", "pain001", "--database-url", &url]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("--debtor-name"), "{}", text(&missing));
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Approves every payout of the store at `url`, as an admin would through the API.
async fn approve_all(url: &str) {
    let store = std::sync::Arc::new(payouts::store_sqlx::SqliteStore::connect(url).await.unwrap());
    let directory = payouts::store_sqlx::SqlRecipientDirectory::new(
        store.pool().clone(),
        payouts::store_sqlx::RecipientTable::default(),
    )
    .unwrap();
    let service = payouts::PayoutService::builder()
        .store(store.clone())
        .directory(std::sync::Arc::new(directory))
        .build()
        .unwrap();
    let admin = payouts::domain::Actor::admin("finance");
    let page = payouts::PayoutStore::list(&*store, &Default::default(), &Default::default())
        .await
        .unwrap();
    for p in page.payouts {
        service.approve(&admin, &p.id).await.unwrap();
    }
    store.pool().close().await;
}

/// Every payout's status, ordered.
async fn statuses(url: &str) -> Vec<String> {
    let store = payouts::store_sqlx::SqliteStore::connect(url).await.unwrap();
    let page = payouts::PayoutStore::list(&store, &Default::default(), &Default::default())
        .await
        .unwrap();
    store.pool().close().await;
    let mut statuses: Vec<String> = page.payouts.iter().map(|p| p.status.to_string()).collect();
    statuses.sort();
    statuses
}

#[tokio::test]
async fn reconcile_runs_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let url = host_db(dir.path()).await;
    let out = payouts(&["reconcile", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("examined:         0"), "{}", text(&out));
    let missing = format!("sqlite://{}?mode=rw", dir.path().join("nope.db").display());
    let out = payouts(&["reconcile", "--database-url", &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot open the database"), "{}", text(&out));
}
