//! The migration that keeps the tallies by currency, with amounts (`20261207000500`), counts the
//! payouts written before it: a database migrated up to the migration before, with payouts in two
//! currencies over three months and some moved on, answers every total as a recount once it is
//! migrated to the end, and keeps doing so as payouts change afterwards.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![cfg_attr(not(all(feature = "sqlite", feature = "postgres")), allow(unused))]

mod common;

use std::path::Path;

use chrono::{TimeZone, Utc};
use payout_core::PayoutStore;
use payout_core::domain::Provider;
use payout_core::money::{Currency, Money};
use payout_core::status::PayoutStatus;
use payout_core::store::NewPayout;
use payout_core::testkit::fixtures::{self, at, month};
use payout_core::testkit::store::{assert_totals_match_a_recount, seed};
use sqlx::migrate::Migrator;

/// The first migration of the tallies by currency.
const BY_CURRENCY: i64 = 20261207000500;

/// A migrator of the store's migrations in `dir` before [`BY_CURRENCY`], copied byte for byte into
/// `into` (so their checksums are the ones the full migrator expects later).
async fn migrations_before(dir: &str, into: &Path) -> Migrator {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(dir);
    let mut copied = 0;
    for entry in std::fs::read_dir(&source).expect("the migrations folder") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name")
            .to_string();
        let version: i64 = name
            .split('_')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a versioned migration");
        if version < BY_CURRENCY {
            std::fs::copy(&path, into.join(&name)).expect("copying a migration");
            copied += 1;
        }
    }
    assert!(copied > 5, "the earlier migrations were found");
    Migrator::new(into).await.expect("a migrator of the earlier migrations")
}

/// Payouts written under the old tallies: KES and USD over three months, some moved on.
async fn write_before(store: &dyn PayoutStore) {
    let mut payouts: Vec<NewPayout> = Vec::new();
    let months = [(2024, 12, 31), (2025, 1, 15), (2025, 2, 1)];
    for (i, (y, m, d)) in months.into_iter().cycle().take(9).enumerate() {
        let created = Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).single().expect("a time");
        let mut new = fixtures::new_payout(&format!("po_{i:02}"), &format!("dr-{i}"), month(2025, 1), &["100.25"]);
        if i % 3 == 1 {
            let usd = Money::parse("3.50", Currency::USD).expect("USD");
            new.items[0].amount = usd;
            new.payout.amount_due = usd;
            new.audit = fixtures::create_audit(&new.payout);
        }
        payouts.push(fixtures::created_at(new, created));
    }
    let created = seed(store, payouts).await;
    for (i, p) in created.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let mut change = fixtures::status_change(p, PayoutStatus::Paid, at(i as i64));
        change.patch.provider = Some(Provider::MpesaB2c);
        store.apply(change).await.expect("paid");
    }
}

/// After the migration, a change moves a payout between the rebuilt tallies.
async fn change_after(store: &dyn PayoutStore) {
    let p = store.get(&"po_01".into()).await.expect("po_01");
    let mut change = fixtures::status_change(&p, PayoutStatus::Approved, at(100));
    change.patch.provider = Some(Provider::StripeConnect);
    store.apply(change).await.expect("approved");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_tallies_count_the_payouts_written_before_the_migration() {
    use payout_store_sqlx::sqlite::{self, SqliteStore};
    let dir = tempfile::tempdir().expect("a temp dir");
    let earlier = dir.path().join("earlier");
    std::fs::create_dir(&earlier).expect("a folder");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("payouts.db").display());
    let pool = sqlite::pool(&url).await.expect("a pool");
    migrations_before("sqlite", &earlier)
        .await
        .run(&pool)
        .await
        .expect("the earlier migrations");
    let store = SqliteStore::new(pool.clone());
    write_before(&store).await;
    sqlite::setup(&pool).await.expect("the remaining migrations");
    assert_totals_match_a_recount(&store, "SQLite, just migrated").await;
    change_after(&store).await;
    assert_totals_match_a_recount(&store, "SQLite, after a change").await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_tallies_count_the_payouts_written_before_the_migration() {
    use payout_store_sqlx::postgres::{self, PgStore};
    common::PgSchemas::run(|schemas| async move {
        let dir = tempfile::tempdir().expect("a temp dir");
        let pool = schemas.schema().await.pool(4).await;
        migrations_before("postgres", dir.path())
            .await
            .run(&pool)
            .await
            .expect("the earlier migrations");
        let store = PgStore::new(pool.clone());
        write_before(&store).await;
        postgres::setup(&pool).await.expect("the remaining migrations");
        assert_totals_match_a_recount(&store, "Postgres, just migrated").await;
        change_after(&store).await;
        assert_totals_match_a_recount(&store, "Postgres, after a change").await;
        pool.close().await;
    })
    .await;
}
