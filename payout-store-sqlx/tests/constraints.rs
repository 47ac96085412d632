//! The database refuses bad rows on its own, whatever code writes them: raw SQL, no store involved.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
// With one backend only, the other's tests and helpers are compiled out.
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::future::Future;

#[cfg(feature = "postgres")]
use common::PgSchemas;
#[cfg(feature = "sqlite")]
use common::SqliteFiles;

const PAYOUT_COLUMNS: &str = "id, doctor_id, period_start, period_end, amount_minor, currency, status, origin, \
     created_by, created_at, updated_at, version";

/// A raw payout row; the literals read the same in SQLite and Postgres.
fn payout(id: &str, doctor: &str, status: &str, origin: &str) -> String {
    format!(
        "INSERT INTO payouts ({PAYOUT_COLUMNS}) VALUES ('{id}', '{doctor}', '2025-01-01', '2025-01-31', 50000, 'KES', \
         '{status}', '{origin}', 'system:test', '2025-02-01T08:00:00.000000000Z', \
         '2025-02-01T08:00:00.000000000Z', 1)"
    )
}

fn attempt(payout: &str, no: u32, key: &str) -> String {
    format!(
        "INSERT INTO payout_attempts (payout_id, attempt_no, provider, idempotency_key, request_summary, outcome, \
         created_at, updated_at) VALUES ('{payout}', {no}, 'MPESA_B2C', '{key}', 'test', 'PENDING', \
         '2025-02-01T08:00:00.000000000Z', '2025-02-01T08:00:00.000000000Z')"
    )
}

fn audit(payout: &str) -> String {
    format!(
        "INSERT INTO audit_entries (payout_id, actor, at, action, from_status, to_status, detail) \
         VALUES ('{payout}', 'admin:a', '2025-02-01T08:00:00.000000000Z', 'CREATE', NULL, 'PENDING', 'x')"
    )
}

fn webhook(payout: &str, event: &str) -> String {
    format!(
        "INSERT INTO webhook_events (provider, event_id, payout_id, event_type, received_at) \
         VALUES ('MPESA_B2C', '{event}', '{payout}', 'paid', '2025-02-01T08:00:00.000000000Z')"
    )
}

fn carry_over(doctor: &str) -> String {
    format!(
        "INSERT INTO carry_overs (doctor_id, period_start, period_end, amount_minor, currency, note, created_at) \
         VALUES ('{doctor}', '2025-01-01', '2025-01-31', 100, 'KES', 'small', '2025-02-01T08:00:00.000000000Z')"
    )
}

/// Runs every constraint case through `exec`, which runs one statement on a fresh, migrated database.
async fn constraints_hold<F, Fut>(exec: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let ok = |sql: String| {
        let fut = exec(sql.clone());
        async move {
            if let Err(e) = fut.await {
                panic!("{sql}\nshould be accepted, got {e}");
            }
        }
    };
    let refused = |sql: String, why: &'static str| {
        let fut = exec(sql.clone());
        async move {
            if fut.await.is_ok() {
                panic!("{why}: the database accepted\n{sql}");
            }
        }
    };

    ok(payout("po_1", "dr-1", "PENDING", "CALCULATED")).await;
    refused(
        payout("po_2", "dr-1", "PENDING", "CALCULATED"),
        "a second live calculated payout for one doctor and period",
    )
    .await;
    ok(payout("po_3", "dr-1", "PENDING", "MANUAL")).await;
    ok("UPDATE payouts SET status = 'CANCELLED' WHERE id = 'po_1'".to_string()).await;
    ok(payout("po_2", "dr-1", "PENDING", "CALCULATED")).await;
    refused(
        "UPDATE payouts SET status = 'PENDING' WHERE id = 'po_1'".to_string(),
        "reviving a cancelled calculated payout beside a live one",
    )
    .await;
    refused(payout("po_2", "dr-9", "PENDING", "MANUAL"), "a duplicate payout id").await;
    refused(payout("po_4", "dr-2", "ON_HOLD", "MANUAL"), "an unknown status").await;
    refused(
        payout("po_4", "dr-2", "PENDING", "MANUAL").replace("'KES'", "'KESH'"),
        "a currency that is not a 3-letter code",
    )
    .await;

    ok(attempt("po_2", 1, "po_2-1")).await;
    refused(attempt("po_2", 1, "po_2-1-again"), "a second attempt 1 of one payout").await;
    refused(attempt("po_3", 1, "po_2-1"), "an idempotency key used twice").await;
    refused(attempt("po_404", 1, "po_404-1"), "an attempt of an unknown payout").await;

    ok(webhook("po_2", "evt_1")).await;
    refused(webhook("po_3", "evt_1"), "a provider event recorded twice").await;
    refused(webhook("po_404", "evt_2"), "an event of an unknown payout").await;

    ok(carry_over("dr-1")).await;
    refused(carry_over("dr-1"), "a second carry-over for one doctor and period").await;
    refused(
        "UPDATE carry_overs SET consumed_by = 'po_404'".to_string(),
        "a carry-over consumed by an unknown payout",
    )
    .await;

    refused(
        "INSERT INTO payout_items (payout_id, position, kind, reference, amount_minor, currency, occurred_at, \
         description) VALUES ('po_404', 0, 'CONSULTATION', 'apt', 100, 'KES', '2025-02-01T08:00:00.000000000Z', 'x')"
            .to_string(),
        "an item of an unknown payout",
    )
    .await;

    ok(audit("po_2")).await;
    refused(audit("po_404"), "an audit entry of an unknown payout").await;
    refused(
        "UPDATE audit_entries SET detail = 'rewritten'".to_string(),
        "rewriting the audit trail",
    )
    .await;
    refused("DELETE FROM audit_entries".to_string(), "deleting the audit trail").await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_enforces_the_constraints() {
    let files = SqliteFiles::new();
    let pool = files.fresh_pool().await;
    constraints_hold(|sql| {
        let pool = pool.clone();
        async move { Ok(sqlx::query(&sql).execute(&pool).await?.rows_affected()) }
    })
    .await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, 1, "the audit row survived the attempts to change it");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_enforces_the_constraints() {
    PgSchemas::run(|schemas| async move {
        let pool = schemas.fresh_pool().await;
        constraints_hold(|sql| {
            let pool = pool.clone();
            async move { Ok(sqlx::query(&sql).execute(&pool).await?.rows_affected()) }
        })
        .await;
        let refused = sqlx::query("TRUNCATE audit_entries").execute(&pool).await;
        assert!(refused.is_err(), "truncating the audit trail must fail");
    })
    .await;
}
