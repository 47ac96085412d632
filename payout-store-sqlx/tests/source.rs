//! The host's own tables as consultation source and recipient directory.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
// With one backend only, the other's tests and helpers are compiled out.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use chrono::{NaiveDate, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use payout_core::Error;
use payout_core::domain::{Consultation, DoctorId, Period, Reversal};
use payout_core::source::{ConsultationSource, RecipientDirectory};
use payout_core::testkit::fixtures::month;
use payout_store_sqlx::{ConsultationTable, RecipientTable, Reversals, SqlConsultationSource, SqlRecipientDirectory};

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
        reversals: None,
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

/// A host that keeps each doctor's chosen method names its column; its values are read as
/// provider names (case-insensitive; empty is none), and an unknown name is a clear error.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_directory_reads_the_preferred_method_where_the_host_keeps_one() {
    let files = SqliteFiles::new();
    let pool = files.fresh_pool().await;
    sqlx::query(
        "CREATE TABLE profiles (doctor_id TEXT PRIMARY KEY, name TEXT, email TEXT, stripe_account_id TEXT, \
         paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT, payout_method TEXT)",
    )
    .execute(&pool)
    .await
    .expect("host table");
    sqlx::query(
        "INSERT INTO profiles VALUES \
         ('dr-1', 'Dr. A', 'a@example.com', 'acct_1', NULL, '254712345678', NULL, 'mpesa_b2c'), \
         ('dr-2', 'Dr. B', 'b@example.com', 'acct_2', NULL, NULL, NULL, ''), \
         ('dr-3', 'Dr. C', 'c@example.com', NULL, NULL, NULL, NULL, 'VENMO')",
    )
    .execute(&pool)
    .await
    .expect("host rows");
    let table = RecipientTable {
        table: "profiles".into(),
        preferred_provider: Some("payout_method".into()),
        ..Default::default()
    };
    let directory = SqlRecipientDirectory::new(pool.clone(), table).expect("a plain column name");
    let one = directory
        .recipient(&DoctorId::new("dr-1"))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(one.preferred_provider, Some(payout_core::domain::Provider::MpesaB2c));
    let two = directory
        .recipient(&DoctorId::new("dr-2"))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(two.preferred_provider, None, "empty is none");
    match directory.recipient(&DoctorId::new("dr-3")).await {
        Err(Error::Source(m)) => assert!(m.contains("dr-3") && m.contains("VENMO"), "{m}"),
        other => panic!("an unknown method should be a Source error, got {other:?}"),
    }
    // Without the column configured (the default), nobody has a preference.
    let plain = SqlRecipientDirectory::new(
        pool.clone(),
        RecipientTable {
            table: "profiles".into(),
            ..Default::default()
        },
    )
    .expect("defaults");
    let one = plain
        .recipient(&DoctorId::new("dr-1"))
        .await
        .expect("read")
        .expect("known");
    assert_eq!(one.preferred_provider, None);
    assert!(matches!(
        SqlRecipientDirectory::new(
            pool,
            RecipientTable {
                preferred_provider: Some("method; --".into()),
                ..Default::default()
            }
        ),
        Err(Error::InvalidInput(_))
    ));
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

/// Reversals as (doctor, appointment, reversed at, reason), sorted: the source reports them in any order.
fn reversal_summary(v: &[Reversal]) -> Vec<(String, String, String, String)> {
    let mut out: Vec<_> = v
        .iter()
        .map(|r| {
            (
                r.doctor_id.to_string(),
                r.appointment_id.clone(),
                r.reversed_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
                r.reason.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

fn reversals_owned(v: &[(&str, &str, &str, &str)]) -> Vec<(String, String, String, String)> {
    v.iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect()
}

/// December 2024 and January 2025: a calculation's window with a look-back.
fn december_and_january() -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(),
        NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
    )
    .expect("a period")
}

fn refunded_or_voided(reversed_at: &str) -> Option<Reversals> {
    Some(Reversals {
        statuses: vec!["REFUNDED".into(), "VOIDED".into()],
        reversed_at: reversed_at.into(),
    })
}

#[cfg(feature = "sqlite")]
/// A host table `visits` whose refunds and voids are recorded with a status and `refunded_at`.
async fn sqlite_visits_with_refunds(pool: &sqlx::SqlitePool) -> ConsultationTable {
    sqlx::query(
        "CREATE TABLE visits (visit_id INTEGER PRIMARY KEY, physician TEXT NOT NULL, state TEXT NOT NULL, \
         finished_at TEXT, refunded_at TEXT)",
    )
    .execute(pool)
    .await
    .expect("host table");
    for (id, doctor, state, refunded_at) in [
        (1, "dr-1", "REFUNDED", Some("2025-01-10T09:00:00Z")),
        (2, "dr-2", "VOIDED", Some("2025-01-31 23:59:59")),
        (3, "dr-1", "REFUNDED", Some("2025-02-01T00:00:00Z")),
        (4, "dr-1", "REFUNDED", Some("2024-12-31T23:59:59.500Z")),
        (5, "dr-1", "CANCELLED", Some("2025-01-12T00:00:00Z")),
        (6, "dr-2", "DONE", Some("2025-01-13T00:00:00Z")),
        (7, "dr-3", "REFUNDED", None),
        (8, "dr-10", "REFUNDED", Some("2025-01-01T00:00:00Z")),
    ] {
        sqlx::query("INSERT INTO visits VALUES ($1, $2, $3, '2024-12-20T10:00:00Z', $4)")
            .bind(id)
            .bind(doctor)
            .bind(state)
            .bind(refunded_at)
            .execute(pool)
            .await
            .expect("host row");
    }
    ConsultationTable {
        table: "visits".into(),
        id: "visit_id".into(),
        doctor_id: "physician".into(),
        status: "state".into(),
        completed_at: "finished_at".into(),
        completed_status: "DONE".into(),
        reversals: refunded_or_voided("refunded_at"),
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_source_reads_reversals_of_the_window() {
    let files = SqliteFiles::new();
    let pool = files.fresh_pool().await;
    let table = sqlite_visits_with_refunds(&pool).await;
    let source = SqlConsultationSource::new(pool.clone(), table.clone()).expect("valid names");

    // January: not the refund of February 1st or of December 31st, not a cancellation or a
    // completed row with a refund time, not a refund without a time.
    let got: Vec<Reversal> = source.reversed(month(2025, 1)).try_collect().await.expect("read");
    assert_eq!(
        reversal_summary(&got),
        reversals_owned(&[
            ("dr-1", "1", "2025-01-10T09:00:00", "refunded"),
            ("dr-10", "8", "2025-01-01T00:00:00", "refunded"),
            ("dr-2", "2", "2025-01-31T23:59:59", "voided"),
        ])
    );
    // A window with a look-back reaches December's refund too.
    let got: Vec<Reversal> = source
        .reversed(december_and_january())
        .try_collect()
        .await
        .expect("read");
    assert_eq!(
        reversal_summary(&got).into_iter().map(|r| r.1).collect::<Vec<_>>(),
        ["1", "4", "8", "2"]
    );
    // One status of the two.
    let refunds_only = SqlConsultationSource::new(
        pool.clone(),
        ConsultationTable {
            reversals: Some(Reversals {
                statuses: vec!["REFUNDED".into()],
                reversed_at: "refunded_at".into(),
            }),
            ..table.clone()
        },
    )
    .expect("valid names");
    let got: Vec<Reversal> = refunds_only.reversed(month(2025, 1)).try_collect().await.expect("read");
    assert_eq!(
        reversal_summary(&got).into_iter().map(|r| r.1).collect::<Vec<_>>(),
        ["1", "8"]
    );
    // Without the configuration the same table reports none.
    let unconfigured = SqlConsultationSource::new(
        pool,
        ConsultationTable {
            reversals: None,
            ..table
        },
    )
    .expect("valid names");
    let got: Vec<Reversal> = unconfigured
        .reversed(december_and_january())
        .try_collect()
        .await
        .expect("read");
    assert!(got.is_empty(), "{got:?}");
}

#[cfg(feature = "sqlite")]
#[test]
fn a_bad_reversal_configuration_is_refused_when_the_source_is_built() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.expect("pool");
        for (reversals, says) in [
            (
                refunded_or_voided("refunded_at; DROP TABLE payouts"),
                "not a plain SQL identifier",
            ),
            (refunded_or_voided("refunded_at) OR (1=1"), "not a plain SQL identifier"),
            (refunded_or_voided(""), "not a plain SQL identifier"),
            (
                Some(Reversals {
                    statuses: Vec::new(),
                    reversed_at: "refunded_at".into(),
                }),
                "at least one",
            ),
            (
                Some(Reversals {
                    statuses: vec!["REFUNDED".into(), " ".into()],
                    reversed_at: "refunded_at".into(),
                }),
                "blank",
            ),
            (
                Some(Reversals {
                    statuses: vec!["REFUNDED".into(), "COMPLETED".into()],
                    reversed_at: "refunded_at".into(),
                }),
                "is the completed status",
            ),
        ] {
            let table = ConsultationTable {
                reversals,
                ..Default::default()
            };
            match SqlConsultationSource::new(pool.clone(), table.clone()) {
                Err(Error::InvalidInput(m)) => assert!(m.contains(says), "{table:?}: {m}"),
                other => panic!("{table:?} should be refused, got {other:?}"),
            }
        }
        // A quote in a status is a value, bound like any other: accepted, and it matches nothing here.
        let quoted = ConsultationTable {
            reversals: Some(Reversals {
                statuses: vec!["REFUNDED' OR '1'='1".into()],
                reversed_at: "refunded_at".into(),
            }),
            ..Default::default()
        };
        assert!(SqlConsultationSource::new(pool, quoted).is_ok());
    });
}

#[test]
fn reversals_are_read_from_the_environment_variables() {
    let vars = |statuses: Option<&'static str>, column: Option<&'static str>| {
        move |name: &str| match name {
            "PAYOUTS_REVERSED_STATUSES" => statuses.map(str::to_string),
            "PAYOUTS_REVERSED_AT_COLUMN" => column.map(str::to_string),
            _ => None,
        }
    };
    assert_eq!(Reversals::from_vars(vars(None, None)).expect("unset"), None);
    assert_eq!(Reversals::from_vars(vars(Some(" "), Some(""))).expect("blank"), None);
    assert_eq!(
        Reversals::from_vars(vars(Some("REFUNDED, VOIDED,"), Some(" refunded_at "))).expect("both set"),
        refunded_or_voided("refunded_at")
    );
    for (statuses, column, says) in [
        (Some("REFUNDED"), None, "PAYOUTS_REVERSED_AT_COLUMN is not"),
        (None, Some("refunded_at"), "PAYOUTS_REVERSED_STATUSES is not"),
        (Some(" , ,"), Some("refunded_at"), "lists no status"),
    ] {
        match Reversals::from_vars(vars(statuses, column)) {
            Err(Error::InvalidInput(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{statuses:?} / {column:?} should be refused, got {other:?}"),
        }
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_source_reads_reversals_of_the_window() {
    PgSchemas::run(|schemas| async move {
        let pool = schemas.fresh_pool().await;
        for sql in [
            "CREATE TYPE appointment_status AS ENUM ('SCHEDULED', 'COMPLETED', 'CANCELLED', 'REFUNDED', 'VOIDED')",
            "CREATE TABLE appointments (id BIGINT PRIMARY KEY, doctor_id BIGINT NOT NULL, \
             status appointment_status NOT NULL, completed_at TIMESTAMPTZ, refunded_at TIMESTAMPTZ)",
            "INSERT INTO appointments VALUES \
             (1, 1, 'REFUNDED', '2024-12-20T10:00:00Z', '2025-01-10T09:00:00Z'), \
             (2, 2, 'VOIDED', '2024-12-20T10:00:00Z', '2025-02-01T02:59:59+03:00'), \
             (3, 1, 'REFUNDED', '2024-12-20T10:00:00Z', '2025-02-01T03:00:00+03:00'), \
             (4, 1, 'REFUNDED', '2024-12-20T10:00:00Z', '2024-12-31T23:59:59Z'), \
             (5, 1, 'CANCELLED', '2024-12-20T10:00:00Z', '2025-01-12T00:00:00Z'), \
             (6, 2, 'COMPLETED', '2024-12-20T10:00:00Z', '2025-01-13T00:00:00Z'), \
             (7, 3, 'REFUNDED', '2024-12-20T10:00:00Z', NULL), \
             (8, 10, 'REFUNDED', '2024-12-20T10:00:00Z', '2025-01-01T00:00:00Z')",
            // A host that records the change in a `timestamp` column (read as UTC) and ids as text.
            "CREATE TABLE visits (visit_id TEXT PRIMARY KEY, physician TEXT NOT NULL, state TEXT NOT NULL, \
             finished_at TIMESTAMP, updated_at TIMESTAMP)",
            "INSERT INTO visits VALUES \
             ('v1', 'dr-1', 'VOIDED', '2025-01-02 10:00:00', '2025-01-31 23:59:59'), \
             ('v2', 'dr-1', 'VOIDED', '2025-01-02 10:00:00', '2025-02-01 00:00:00'), \
             ('v3', 'dr-2', 'DONE', '2025-01-02 10:00:00', '2025-01-20 00:00:00')",
        ] {
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        let table = ConsultationTable {
            reversals: refunded_or_voided("refunded_at"),
            ..Default::default()
        };
        let source = SqlConsultationSource::new(pool.clone(), table.clone()).expect("valid names");
        let got: Vec<Reversal> = source.reversed(month(2025, 1)).try_collect().await.expect("read");
        assert_eq!(
            reversal_summary(&got),
            reversals_owned(&[
                ("1", "1", "2025-01-10T09:00:00", "refunded"),
                ("10", "8", "2025-01-01T00:00:00", "refunded"),
                ("2", "2", "2025-01-31T23:59:59", "voided"),
            ])
        );
        let got: Vec<Reversal> = source
            .reversed(december_and_january())
            .try_collect()
            .await
            .expect("read");
        assert_eq!(
            reversal_summary(&got).into_iter().map(|r| r.1).collect::<Vec<_>>(),
            ["1", "4", "8", "2"]
        );
        // Reversed consultations are no longer completed ones.
        let completed: Vec<Consultation> = source
            .completed(december_and_january())
            .try_collect()
            .await
            .expect("read");
        assert_eq!(
            completed.iter().map(|c| c.appointment_id.as_str()).collect::<Vec<_>>(),
            ["6"]
        );
        let unconfigured = SqlConsultationSource::new(pool.clone(), ConsultationTable::default()).expect("defaults");
        let got: Vec<Reversal> = unconfigured.reversed(month(2025, 1)).try_collect().await.expect("read");
        assert!(got.is_empty(), "{got:?}");

        let visits = SqlConsultationSource::new(
            pool,
            ConsultationTable {
                table: "visits".into(),
                id: "visit_id".into(),
                doctor_id: "physician".into(),
                status: "state".into(),
                completed_at: "finished_at".into(),
                completed_status: "DONE".into(),
                reversals: refunded_or_voided("updated_at"),
            },
        )
        .expect("valid names");
        let got: Vec<Reversal> = visits.reversed(month(2025, 1)).try_collect().await.expect("read");
        assert_eq!(
            reversal_summary(&got),
            reversals_owned(&[("dr-1", "v1", "2025-01-31T23:59:59", "voided")])
        );
    })
    .await;
}

/// The whole path on SQLite: a paid consultation refunded in the host's `appointments` table is
/// clawed back by the next month's calculation, once.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_a_paid_consultation_refunded_in_the_host_table_is_clawed_back_next_month() {
    use std::sync::Arc;

    use payout_core::PayoutStore;
    use payout_core::calculation::CalculationPolicy;
    use payout_core::clock::ManualClock;
    use payout_core::domain::{Actor, ItemKind, Provider};
    use payout_core::money::{Currency, Money};
    use payout_core::service::PayoutService;
    use payout_core::simulated::SimulatedProvider;
    use payout_core::status::PayoutStatus;

    let kes = |units: i64| Money::from_minor_units(units * 100, Currency::KES);
    let files = SqliteFiles::new();
    let store = files.fresh().await;
    let pool = store.pool().clone();
    for sql in [
        "CREATE TABLE appointments (id TEXT PRIMARY KEY, doctor_id TEXT NOT NULL, status TEXT NOT NULL, \
         completed_at TEXT, refunded_at TEXT)",
        "CREATE TABLE doctor_profiles (doctor_id TEXT PRIMARY KEY, name TEXT, email TEXT, stripe_account_id TEXT, \
         paypal_payout_email TEXT, mpesa_phone_number TEXT, bank_details TEXT)",
        "INSERT INTO doctor_profiles VALUES ('dr-a', 'Dr. A', 'a@example.com', NULL, NULL, '254712345678', NULL)",
        "INSERT INTO appointments VALUES \
         ('a1', 'dr-a', 'COMPLETED', '2025-01-03T10:00:00Z', NULL), \
         ('a2', 'dr-a', 'COMPLETED', '2025-01-20T10:00:00Z', NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    let table = ConsultationTable {
        reversals: refunded_or_voided("refunded_at"),
        ..Default::default()
    };
    let store: Arc<dyn PayoutStore> = Arc::new(store);
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(
            SqlConsultationSource::new(pool.clone(), table).expect("valid names"),
        ))
        .directory(Arc::new(
            SqlRecipientDirectory::new(pool.clone(), RecipientTable::default()).expect("defaults"),
        ))
        .provider(Arc::new(SimulatedProvider::new(Provider::MpesaB2c)))
        .clock(Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2025, 3, 2, 8, 0, 0).unwrap(),
        )))
        .build()
        .expect("service");
    let admin = Actor::admin("admin-1");
    let policy = CalculationPolicy::default();

    let jan = service
        .calculate_period(&admin, Some(month(2025, 1)), &policy)
        .await
        .expect("January");
    assert_eq!(jan.created.len(), 1, "{jan:?}");
    let january = jan.created[0].clone();
    service
        .approve(&Actor::admin("admin-2"), &january)
        .await
        .expect("approve");
    let paid = service
        .trigger(&admin, &january, Provider::MpesaB2c)
        .await
        .expect("trigger");
    assert_eq!(paid.status, PayoutStatus::Paid);
    assert_eq!(paid.amount_due, kes(1000));

    // a1 is refunded in February; dr-a completes two more consultations.
    for sql in [
        "UPDATE appointments SET status = 'REFUNDED', refunded_at = '2025-02-03T09:00:00Z' WHERE id = 'a1'",
        "INSERT INTO appointments VALUES \
         ('a3', 'dr-a', 'COMPLETED', '2025-02-05T10:00:00Z', NULL), \
         ('a4', 'dr-a', 'COMPLETED', '2025-02-06T10:00:00Z', NULL)",
    ] {
        sqlx::query(sql).execute(&pool).await.expect(sql);
    }
    let feb = service
        .calculate_period(&admin, Some(month(2025, 2)), &policy)
        .await
        .expect("February");
    assert_eq!(feb.clawbacks, 1, "{feb:?}");
    assert_eq!(feb.created.len(), 1, "{feb:?}");
    let february = store.get(&feb.created[0]).await.expect("February's payout");
    assert_eq!(february.amount_due, kes(500), "a3 and a4 at 500, less a1's 500");
    let items = store.items(&february.id).await.expect("items");
    let clawbacks: Vec<_> = items.iter().filter(|i| i.kind == ItemKind::Clawback).collect();
    assert_eq!(clawbacks.len(), 1, "{items:?}");
    assert_eq!(clawbacks[0].reference, "a1");
    assert_eq!(clawbacks[0].amount, kes(-500));
    assert_eq!(
        clawbacks[0].occurred_at,
        Utc.with_ymd_and_hms(2025, 2, 3, 9, 0, 0).unwrap()
    );
    assert!(
        clawbacks[0].description.contains("(refunded)"),
        "{}",
        clawbacks[0].description
    );

    // The refund is still in March's look-back: it is not clawed back twice.
    let march = service
        .calculate_period(&admin, Some(month(2025, 3)), &policy)
        .await
        .expect("March");
    assert_eq!(march.clawbacks, 0, "{march:?}");
    assert!(march.created.is_empty(), "{march:?}");
}
