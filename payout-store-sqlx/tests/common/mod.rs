//! Fresh, empty stores for tests: SQLite in memory, SQLite files in a temp dir, and Postgres
//! schemas (one per store, dropped at the end) when `PAYOUTS_TEST_POSTGRES_URL` is set.
#![allow(dead_code)]

#[cfg(feature = "postgres")]
use std::future::Future;
#[cfg(feature = "postgres")]
use std::panic::AssertUnwindSafe;
#[cfg(feature = "postgres")]
use std::sync::{Arc, Mutex};

#[cfg(feature = "postgres")]
use futures::FutureExt;

use payout_core::PayoutStore;
use payout_core::status::PayoutStatus;
use payout_core::testkit::fixtures::{self, at, month};
#[cfg(feature = "sqlite")]
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "postgres")]
use payout_store_sqlx::postgres::PgStore;
#[cfg(feature = "sqlite")]
use payout_store_sqlx::sqlite::{self, SqliteStore};
#[cfg(feature = "postgres")]
use payout_store_sqlx::testkit::PgTestSchema;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgPool;

#[cfg(feature = "postgres")]
/// The variable naming the Postgres server the Postgres tests use.
pub const POSTGRES_URL_VAR: &str = "PAYOUTS_TEST_POSTGRES_URL";

/// Two tests of one check (an `async fn(Arc<dyn PayoutStore>)`, run on a multi-threaded runtime so
/// races are real): `$sqlite` on a SQLite file, `$postgres` on a new Postgres schema.
#[allow(unused_macros)] // used by some of the test binaries that include this module
macro_rules! on_every_backend {
    ($check:ident: $sqlite:ident, $postgres:ident) => {
        #[cfg(feature = "sqlite")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $sqlite() {
            let files = common::SqliteFiles::new();
            $check(std::sync::Arc::new(files.fresh().await)).await;
        }

        #[cfg(feature = "postgres")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $postgres() {
            common::PgSchemas::run(|schemas| async move { $check(std::sync::Arc::new(schemas.fresh().await)).await })
                .await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_backend;

/// `n` fresh calculated payouts `po_00000`, `po_00001`, ... of January 2025, written in one batch,
/// `per_second` of them sharing each `created_at`, so keyset chunks end inside a tie.
pub async fn seed_spread(store: &dyn PayoutStore, n: usize, per_second: usize) {
    let payouts = (0..n)
        .map(|i| {
            let new = fixtures::new_payout(&format!("po_{i:05}"), &format!("dr-{i}"), month(2025, 1), &["500"]);
            fixtures::created_at(new, at(0) + chrono::Duration::seconds((i / per_second) as i64))
        })
        .collect();
    payout_core::testkit::store::seed(store, payouts).await;
}

/// Approves the seeded payout `id` (so filters by status have something to tell apart).
pub async fn approve(store: &dyn PayoutStore, id: &str) {
    let p = store.get(&id.into()).await.expect("get");
    store
        .apply(fixtures::status_change(&p, PayoutStatus::Approved, at(1)))
        .await
        .expect("approve");
}

#[cfg(feature = "sqlite")]
/// A new private in-memory SQLite store.
pub async fn sqlite_memory() -> SqliteStore {
    SqliteStore::connect("sqlite::memory:")
        .await
        .expect("an in-memory SQLite store")
}

#[cfg(feature = "sqlite")]
/// SQLite files in one temp dir that lives as long as this value.
pub struct SqliteFiles {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

#[cfg(feature = "sqlite")]
impl SqliteFiles {
    pub fn new() -> Self {
        SqliteFiles {
            dir: tempfile::tempdir().expect("a temp dir"),
            next: AtomicUsize::new(0),
        }
    }

    /// The URL of a new database file.
    pub fn url(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        format!(
            "sqlite://{}?mode=rwc",
            self.dir.path().join(format!("payouts-{n}.db")).display()
        )
    }

    /// A store over a new database file.
    pub async fn fresh(&self) -> SqliteStore {
        SqliteStore::connect(&self.url()).await.expect("a SQLite file store")
    }

    /// A raw pool over a new, migrated database file (for constraint tests).
    pub async fn fresh_pool(&self) -> sqlx::SqlitePool {
        let pool = sqlite::pool(&self.url()).await.expect("a SQLite pool");
        sqlite::setup(&pool).await.expect("migrations");
        pool
    }
}

#[cfg(feature = "postgres")]
/// Postgres stores, each in its own new schema of the test database ([`PgTestSchema`]).
pub struct PgSchemas {
    url: String,
    made: Mutex<Vec<PgTestSchema>>,
}

#[cfg(feature = "postgres")]
impl PgSchemas {
    /// `None` (after saying so) when the variable is not set.
    pub async fn from_env() -> Option<Self> {
        Some(PgSchemas {
            url: PgTestSchema::url_from_env(POSTGRES_URL_VAR)?,
            made: Mutex::new(Vec::new()),
        })
    }

    /// A new, empty schema, dropped by [`cleanup`](Self::cleanup).
    pub async fn schema(&self) -> PgTestSchema {
        let schema = PgTestSchema::create(&self.url, "payouts_test").await;
        self.made.lock().expect("lock").push(schema.clone());
        schema
    }

    /// A migrated pool whose connections see only a new schema. The pool is the caller's: when
    /// the last handle on it is dropped, its connections close.
    pub async fn fresh_pool(&self) -> PgPool {
        self.schema().await.migrated_pool(8).await
    }

    /// A store in a new schema.
    pub async fn fresh(&self) -> PgStore {
        PgStore::new(self.fresh_pool().await)
    }

    /// Runs `body` with the test database's schemas, then drops every schema it made, even if it
    /// panicked (then passes the panic on). Skipped, saying so, when the variable is not set.
    pub async fn run<F, Fut>(body: F)
    where
        F: FnOnce(Arc<PgSchemas>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(schemas) = PgSchemas::from_env().await.map(Arc::new) else {
            return;
        };
        let outcome = AssertUnwindSafe(body(Arc::clone(&schemas))).catch_unwind().await;
        schemas.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// Drops every schema made.
    pub async fn cleanup(&self) {
        let made = std::mem::take(&mut *self.made.lock().expect("lock"));
        for schema in made {
            schema.drop().await;
        }
    }
}
