//! The host's own tables as consultation source and recipient directory.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
// With one backend only, the other's tests and helpers are compiled out.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use chrono::{TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use payout_core::Error;
use payout_core::domain::{Consultation, DoctorId};
use payout_core::source::{ConsultationSource, RecipientDirectory};
use payout_core::testkit::fixtures::month;
use payout_store_sqlx::{ConsultationTable, RecipientTable, SqlConsultationSource, SqlRecipientDirectory};

#[cfg(feature = "postgres")]
use common::PgSchemas;
#[cfg(feature = "sqlite")]
use common::SqliteFiles;

fn summary(v: &[Consultation]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|c| {
            (
                c.doctor_id.to_string(),
                c.appointment_id.clone(),
                c.completed_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
            )
        })
        .collect()
}

fn owned(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

/// January 2025's completed consultations, grouped by doctor (in byte order of the id as text).
fn expected_january() -> Vec<(String, String, String)> {
    owned(&[
        ("dr-1", "5", "2025-01-01T00:00:00"),
        ("dr-1", "2", "2025-01-31T23:59:59"),
        ("dr-10", "7", "2025-01-15T00:00:00"),
        ("dr-2", "1", "2025-01-10T09:00:00"),
    ])
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_source_reads_completed_consultations_of_the_period_by_doctor() {
    let files = SqliteFiles::new();
    let pool = files.fresh_pool().await;
    sqlx::query(
        "CREATE TABLE visits (visit_id INTEGER PRIMARY KEY, physician TEXT NOT NULL, state TEXT NOT NULL, \
         finished_at TEXT)",
    )
    .execute(&pool)
    .await
    .expect("host table");
    // Text in the forms hosts write: RFC 3339, and sqlx's own `YYYY-MM-DD HH:MM:SS`.
    for (id, doctor, state, at) in [
        (1, "dr-2", "DONE", Some("2025-01-10T09:00:00Z")),
        (2, "dr-1", "DONE", Some("2025-01-31 23:59:59")),
        (3, "dr-1", "DONE", Some("2025-02-01T00:00:00Z")),
        (4, "dr-1", "CANCELLED", Some("2025-01-05T00:00:00Z")),
        (5, "dr-1", "DONE", Some("2025-01-01T00:00:00.000000Z")),
        (6, "dr-2", "DONE", Some("2024-12-31T23:59:59Z")),
        (7, "dr-10", "DONE", Some("2025-01-15 00:00:00+00:00")),
        (8, "dr-3", "DONE", None),
    ] {
        sqlx::query("INSERT INTO visits VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(doctor)
            .bind(state)
            .bind(at)
            .execute(&pool)
            .await
            .expect("host row");
    }
    let table = ConsultationTable {
        table: "visits".into(),
        id: "visit_id".into(),
        doctor_id: "physician".into(),
        status: "state".into(),
        completed_at: "finished_at".into(),
        completed_status: "DONE".into(),
    };
    let source = SqlConsultationSource::new(pool.clone(), table).expect("valid names");
    let got: Vec<Consultation> = source.completed(month(2025, 1)).try_collect().await.expect("read");
    assert_eq!(summary(&got), expected_january());
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_source_streams_many_rows_and_stops_when_dropped() {
    let files = SqliteFiles::new();
    let pool = files.fresh_pool().await;
    sqlx::query("CREATE TABLE appointments (id TEXT PRIMARY KEY, doctor_id TEXT, status TEXT, completed_at TEXT)")
        .execute(&pool)
        .await
        .expect("host table");
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..3000 {
        let at = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(i);
        sqlx::query("INSERT INTO appointments VALUES ($1, $2, 'COMPLETED', $3)")
            .bind(format!("apt-{i:05}"))
            .bind(format!("dr-{}", i % 37))
            .bind(at.to_rfc3339())
            .execute(&mut *tx)
            .await
            .expect("row");
    }
    tx.commit().await.expect("commit");
    let source = SqlConsultationSource::new(pool.clone(), ConsultationTable::default()).expect("defaults");
    let got: Vec<Consultation> = source.completed(month(2025, 1)).try_collect().await.expect("read");
    assert_eq!(got.len(), 3000);
    let keys: Vec<_> = got.iter().map(|c| (c.doctor_id.clone(), c.completed_at)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by doctor, then completion");

    // A consumer that stops early: the reading task ends and gives its connection back.
    let first: Vec<_> = source.completed(month(2025, 1)).take(5).collect().await;
    assert_eq!(first.len(), 5);
    for _ in 0..20 {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM appointments")
            .fetch_one(&pool)
            .await
            .expect("the pool still serves");
        assert_eq!(n, 3000);
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn names_that_are_not_identifiers_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.expect("pool");
        for table in [
            ConsultationTable {
                table: "appointments; DROP TABLE payouts".into(),
                ..Default::default()
            },
            ConsultationTable {
                completed_at: "completed_at) OR (1=1".into(),
                ..Default::default()
            },
            ConsultationTable {
                status: "\"status\"".into(),
                ..Default::default()
            },
        ] {
            assert!(matches!(
                SqlConsultationSource::new(pool.clone(), table),
                Err(Error::InvalidInput(_))
            ));
        }
        assert!(matches!(
            SqlRecipientDirectory::new(
                pool,
                RecipientTable {
                    email: "email, (SELECT 1)".into(),
                    ..Default::default()
                }
            ),
            Err(Error::InvalidInput(_))
        ));
    });
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_directory_reads_profiles_in_one_query() {
    let files = SqliteFiles::new();
    let pool = files.fresh_pool().await;
    sqlx::query(
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT, email TEXT, stripe_account_id TEXT, \
         paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT)",
    )
    .execute(&pool)
    .await
    .expect("host table");
    sqlx::query(
        "INSERT INTO doctor_profiles VALUES \
         ('dr-1', 'Dr. A', 'a@example.com', 'acct_1', NULL, '254712345678', NULL), \
         ('dr-2', 'Dr. B', 'b@example.com', NULL, 'b@example.com', NULL, \
          '{\"accountName\": \"Dr. B\", \"accountNumber\": \"0123456789\", \"bankCode\": \"01\"}'), \
         ('dr-3', 'Dr. C', 'c@example.com', NULL, NULL, NULL, '{\"accountNumber\": 98765}')",
    )
    .execute(&pool)
    .await
    .expect("host rows");
    let directory = SqlRecipientDirectory::new(pool, RecipientTable::default()).expect("defaults");
    let one = directory
        .recipient(&DoctorId::new("dr-1"))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(one.stripe_account_id.as_deref(), Some("acct_1"));
    assert_eq!(one.mpesa_phone_number.as_deref(), Some("254712345678"));
    assert!(
        directory
            .recipient(&DoctorId::new("dr-404"))
            .await
            .expect("read")
            .is_none()
    );
    let two = directory
        .recipients(&[DoctorId::new("dr-2"), DoctorId::new("dr-404")])
        .await
        .expect("read");
    assert_eq!(two.len(), 1);
    let bank = two[0].bank_details.as_ref().expect("bank details");
    assert_eq!(bank.account_number, "0123456789");
    assert_eq!(bank.bank_code.as_deref(), Some("01"));
    match directory.recipient(&DoctorId::new("dr-3")).await {
        Err(Error::Source(m)) => assert!(!m.contains("98765"), "{m}"),
        other => panic!("bad bank JSON should be a Source error, got {other:?}"),
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_source_reads_enum_statuses_and_integer_doctor_ids() {
    PgSchemas::run(|schemas| async move {
        let pool = schemas.fresh_pool().await;
        for sql in [
            "CREATE TYPE appointment_status AS ENUM ('SCHEDULED', 'COMPLETED', 'CANCELLED')",
            "CREATE TABLE appointments (id BIGINT PRIMARY KEY, doctor_id BIGINT NOT NULL, \
             status appointment_status NOT NULL, completed_at TIMESTAMPTZ)",
            "INSERT INTO appointments VALUES \
             (1, 2, 'COMPLETED', '2025-01-10T09:00:00Z'), \
             (2, 1, 'COMPLETED', '2025-01-31T23:59:59Z'), \
             (3, 1, 'COMPLETED', '2025-02-01T00:00:00Z'), \
             (4, 1, 'CANCELLED', '2025-01-05T00:00:00Z'), \
             (5, 1, 'COMPLETED', '2025-01-01T00:00:00Z'), \
             (6, 2, 'COMPLETED', '2024-12-31T23:59:59Z'), \
             (7, 10, 'COMPLETED', '2025-01-15T00:00:00+03:00'), \
             (8, 3, 'COMPLETED', NULL)",
            "CREATE TABLE doctor_profiles (doctor_id BIGINT PRIMARY KEY, name TEXT, email TEXT, \
             stripe_account_id TEXT, paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details JSONB)",
            "INSERT INTO doctor_profiles VALUES (10, 'Dr. J', 'j@example.com', NULL, NULL, NULL, \
             '{\"accountName\": \"Dr. J\", \"accountNumber\": \"555\"}')",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        let source = SqlConsultationSource::new(pool.clone(), ConsultationTable::default()).expect("defaults");
        let got: Vec<Consultation> = source.completed(month(2025, 1)).try_collect().await.expect("read");
        assert_eq!(
            summary(&got),
            owned(&[
                ("1", "5", "2025-01-01T00:00:00"),
                ("1", "2", "2025-01-31T23:59:59"),
                ("10", "7", "2025-01-14T21:00:00"),
                ("2", "1", "2025-01-10T09:00:00"),
            ])
        );
        let directory = SqlRecipientDirectory::new(pool, RecipientTable::default()).expect("defaults");
        let j = directory
            .recipient(&DoctorId::new("10"))
            .await
            .expect("read")
            .expect("known");
        assert_eq!(j.bank_details.expect("bank").account_number, "555");
    })
    .await;
}
