//! The store's migrations beside a host's own (issue 16, item 1): a host runs its own
//! `sqlx::migrate!` (`tests/host_migrations/`, with a table named `payouts`) on the database the
//! store uses, before and after the store's; both succeed and neither disturbs the other's tables
//! or migration history.

use futures::TryStreamExt;
use payout_core::PayoutStore;
use payout_core::domain::Consultation;
use payout_core::source::ConsultationSource;
use payout_core::store::{Page, PayoutFilter};
use payout_core::testkit::fixtures::{self, month};
use payout_store_sqlx::{ConsultationTable, SqlConsultationSource};

/// The versions of `migrator`, in order.
fn versions(migrator: &sqlx::migrate::Migrator) -> Vec<i64> {
    migrator.iter().map(|m| m.version).collect()
}

/// Seeds one payout through the store and checks the store sees exactly it.
async fn store_works(store: &dyn PayoutStore, id: &str) {
    payout_core::testkit::store::seed(store, vec![fixtures::new_payout(id, "dr-1", month(2025, 1), &["500"])]).await;
    let page = store
        .list(&PayoutFilter::default(), &Page::default())
        .await
        .expect("list");
    assert_eq!(page.total, 1, "the store's own payouts table holds its one payout");
}

/// The host's consultations of January 2025, read by `source`.
async fn january(source: impl ConsultationSource) -> Vec<Consultation> {
    source.completed(month(2025, 1)).try_collect().await.expect("read")
}

/// The host's consultation table by the name `table`, otherwise the defaults.
fn appointments(table: &str) -> ConsultationTable {
    ConsultationTable {
        table: table.into(),
        ..Default::default()
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPool};
    use sqlx::{Connection, PgConnection};

    use payout_core::status::PayoutStatus;
    use payout_store_sqlx::PgStore;
    use payout_store_sqlx::postgres::{self, MIGRATOR, PgSchema};
    use payout_store_sqlx::testkit::PgTestSchema;

    use super::*;

    static HOST: sqlx::migrate::Migrator = sqlx::migrate!("./tests/host_migrations/postgres");

    /// A database of its own on the test server (a host and the store share one whole database,
    /// `public` included, so a schema of the shared test database would not do), dropped after
    /// `body` even if it panics.
    async fn with_database<F, Fut>(body: F)
    where
        F: FnOnce(PgConnectOptions) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let Some(url) = PgTestSchema::url_from_env("PAYOUTS_TEST_POSTGRES_URL") else {
            return;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!("payouts_host_{}_{nanos}", std::process::id());
        let mut admin = PgConnection::connect(&url).await.expect("the test server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let options = PgConnectOptions::from_str(&url).expect("a URL").database(&name);
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body(options))).await;
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .expect("drop database");
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    async fn history(pool: &PgPool, schema: &str) -> Vec<i64> {
        sqlx::query_scalar(&format!(
            "SELECT version FROM {schema}._sqlx_migrations ORDER BY version"
        ))
        .fetch_all(pool)
        .await
        .expect("history")
    }

    async fn host_notes(pool: &PgPool) -> Vec<String> {
        sqlx::query_scalar("SELECT note FROM public.payouts ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("the host's payouts")
    }

    #[tokio::test]
    async fn host_migrations_before_and_after_the_stores_both_succeed() {
        with_database(|options| async move {
            let host = PgPool::connect_with(options.clone()).await.expect("host pool");
            HOST.run(&host).await.expect("the host's migrations, first");

            let store = PgStore::connect_with(options.clone())
                .await
                .expect("the store beside the host");
            store_works(&store, "po_1").await;

            HOST.run(&host).await.expect("the host's migrations, after the store's");
            let again = PgStore::connect_with(options.clone()).await.expect("the store, again");
            assert_eq!(
                again
                    .list(&PayoutFilter::default(), &Page::default())
                    .await
                    .expect("list")
                    .total,
                1
            );

            // Each history holds exactly its own versions; each `payouts` table its own rows.
            assert_eq!(history(&host, "public").await, versions(&HOST));
            assert_eq!(history(&host, "payouts").await, versions(&MIGRATOR));
            assert_eq!(host_notes(&host).await, ["the host's own payout row"]);
            let ours: i64 = sqlx::query_scalar("SELECT count(*) FROM payouts.payouts")
                .fetch_one(&host)
                .await
                .expect("count");
            assert_eq!(ours, 1);
            // The host's search_path is untouched: its `payouts` is still its own table.
            let plain: i64 = sqlx::query_scalar("SELECT count(*) FROM payouts WHERE note IS NOT NULL")
                .fetch_one(&host)
                .await
                .expect("the host's plain name");
            assert_eq!(plain, 1);
            // The store's pool still finds the host's consultations by their plain name.
            let read = january(
                SqlConsultationSource::new(again.pool().clone(), appointments("appointments")).expect("source"),
            )
            .await;
            assert_eq!(read.len(), 1);
            assert_eq!(read[0].appointment_id.as_str(), "apt-1");

            store.pool().close().await;
            again.pool().close().await;
            host.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_host_runs_the_stores_migrator_itself_in_a_schema_of_its_choice() {
        with_database(|options| async move {
            let host = PgPool::connect_with(options.clone()).await.expect("host pool");
            let schema = PgSchema::new("billing").expect("a schema name");
            let mut conn = host.acquire().await.expect("a connection");
            let before: String = sqlx::query_scalar("SHOW search_path")
                .fetch_one(&mut *conn)
                .await
                .expect("search_path");
            postgres::migrate(&mut conn, &schema)
                .await
                .expect("the store's migrations, first");
            postgres::migrate(&mut conn, &schema)
                .await
                .expect("again: nothing to do");
            let after: String = sqlx::query_scalar("SHOW search_path")
                .fetch_one(&mut *conn)
                .await
                .expect("search_path");
            assert_eq!(after, before, "the connection goes back to the pool as it was");
            drop(conn);

            HOST.run(&host).await.expect("the host's migrations, after the store's");

            let store = PgStore::connect_in(options.clone(), &schema).await.expect("the store");
            store_works(&store, "po_1").await;
            store
                .create_run(fixtures::new_run("run_1", fixtures::at(1)), &["po_1".into()])
                .await
                .expect("a run of the store's payout");
            assert_eq!(history(&host, "public").await, versions(&HOST));
            assert_eq!(history(&host, "billing").await, versions(&MIGRATOR));
            assert_eq!(host_notes(&host).await, ["the host's own payout row"]);

            // A host changing a payout from its own search_path (`public` first) keeps the
            // tallies right: the triggers find the store's tally table, not one on the host's path.
            sqlx::query("UPDATE billing.payouts SET status = 'APPROVED'")
                .execute(&host)
                .await
                .expect("a host's update of the store's table");
            let approved: i64 = sqlx::query_scalar(
                "SELECT COALESCE(sum(n), 0)::bigint FROM billing.payout_tallies WHERE status = 'APPROVED'",
            )
            .fetch_one(&host)
            .await
            .expect("tallies");
            assert_eq!(approved, 1);
            // So do the run's, which the same update moved.
            let totals = store.run(&"run_1".into()).await.expect("the run").totals;
            assert_eq!(totals.len(), 1);
            assert_eq!((totals[0].status, totals[0].count), (PayoutStatus::Approved, 1));
            store.pool().close().await;
            host.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn the_stores_migrations_in_the_hosts_history_fail_clearly_and_change_nothing() {
        with_database(|options| async move {
            let host = PgPool::connect_with(options.clone()).await.expect("host pool");
            HOST.run(&host).await.expect("the host's migrations");
            // `setup` migrates into the pool's own search_path: here the host's `public`.
            let e = postgres::setup(&host)
                .await
                .expect_err("a history that is not the store's");
            assert!(e.to_string().contains("another application's migrations"), "{e}");
            let audit: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.audit_entries')::text")
                .fetch_one(&host)
                .await
                .expect("lookup");
            assert_eq!(audit, None, "nothing of the store's was created");
            assert_eq!(history(&host, "public").await, versions(&HOST));
            host.close().await;
        })
        .await;
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert_eq!(PgSchema::default().name(), "payouts");
        for bad in [
            "",
            "Payouts",
            "1st",
            "pay-outs",
            "a b",
            "x;drop",
            "pg_payouts",
            &"a".repeat(64),
        ] {
            assert!(PgSchema::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!("billing_2".parse::<PgSchema>().expect("plain").name(), "billing_2");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use sqlx::SqlitePool;

    use payout_store_sqlx::SqliteStore;
    use payout_store_sqlx::sqlite::MIGRATOR;

    use super::*;

    static HOST: sqlx::migrate::Migrator = sqlx::migrate!("./tests/host_migrations/sqlite");

    async fn history(pool: &SqlitePool, schema: &str) -> Vec<i64> {
        sqlx::query_scalar(&format!(
            "SELECT version FROM {schema}._sqlx_migrations ORDER BY version"
        ))
        .fetch_all(pool)
        .await
        .expect("history")
    }

    #[tokio::test]
    async fn the_store_keeps_its_own_file_and_reads_the_hosts_attached() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host_file = dir.path().join("host.db");
        let host_url = format!("sqlite://{}?mode=rwc", host_file.display());
        let store_url = format!("sqlite://{}?mode=rwc", dir.path().join("payouts.db").display());

        let host = payout_store_sqlx::sqlite::pool(&host_url).await.expect("host pool");
        HOST.run(&host).await.expect("the host's migrations, first");

        let store = SqliteStore::connect_attaching(&store_url, &host_file, "host")
            .await
            .expect("the store beside the host");
        store_works(&store, "po_1").await;

        HOST.run(&host).await.expect("the host's migrations, after the store's");
        let again = SqliteStore::connect_attaching(&store_url, &host_file, "host")
            .await
            .expect("the store, again");

        assert_eq!(history(&host, "main").await, versions(&HOST));
        assert_eq!(history(again.pool(), "main").await, versions(&MIGRATOR));
        assert_eq!(history(again.pool(), "host").await, versions(&HOST));
        let notes: Vec<String> = sqlx::query_scalar("SELECT note FROM payouts")
            .fetch_all(&host)
            .await
            .expect("the host's payouts");
        assert_eq!(notes, ["the host's own payout row"]);
        let read = january(
            SqlConsultationSource::new(again.pool().clone(), appointments("host.appointments")).expect("source"),
        )
        .await;
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].appointment_id.as_str(), "apt-1");
    }

    #[tokio::test]
    async fn the_store_pointed_at_the_hosts_file_fails_clearly_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host_url = format!("sqlite://{}?mode=rwc", dir.path().join("host.db").display());
        let host = payout_store_sqlx::sqlite::pool(&host_url).await.expect("host pool");
        HOST.run(&host).await.expect("the host's migrations");

        let e = SqliteStore::connect(&host_url)
            .await
            .expect_err("a history that is not the store's");
        assert!(e.to_string().contains("another application's migrations"), "{e}");
        let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'audit_entries'")
            .fetch_one(&host)
            .await
            .expect("lookup");
        assert_eq!(audit, 0, "nothing of the store's was created");
        assert_eq!(history(&host, "main").await, versions(&HOST));
    }

    #[tokio::test]
    async fn attaching_refuses_odd_aliases_and_missing_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("payouts.db").display());
        let missing = dir.path().join("nope.db");
        assert!(matches!(
            SqliteStore::connect_attaching(&url, &missing, "host").await,
            Err(payout_core::Error::InvalidInput(_))
        ));
        let host = dir.path().join("host.db");
        std::fs::write(&host, b"").expect("an empty file");
        for alias in ["main", "temp", "a b", "x;y", ""] {
            assert!(
                matches!(
                    SqliteStore::connect_attaching(&url, &host, alias).await,
                    Err(payout_core::Error::InvalidInput(_))
                ),
                "{alias:?}"
            );
        }
    }
}
