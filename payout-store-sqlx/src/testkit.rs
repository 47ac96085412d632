//! Throw-away Postgres schemas for tests and benchmarks (feature `testkit`): each test gets a new,
//! empty schema of a shared database, and drops it when it is done.
//!
//! ```no_run
//! # async fn run() {
//! use payout_store_sqlx::testkit::PgTestSchema;
//!
//! let Some(url) = PgTestSchema::url_from_env("PAYOUTS_TEST_POSTGRES_URL") else { return };
//! PgTestSchema::create(&url, "payouts_test")
//!     .await
//!     .run(|schema| async move {
//!         let store = schema.store(4).await;
//!         // ... use the store; the schema is dropped afterwards, even if this panics.
//! #       let _ = store;
//!     })
//!     .await;
//! # }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::PgStore;

/// A schema of its own in a shared Postgres database, whose connections see only it (their
/// `search_path` is the schema). It holds no connection itself: creating and dropping the schema
/// each use one short-lived connection, so many schemas cost the server nothing while they wait.
#[derive(Debug, Clone)]
pub struct PgTestSchema {
    name: String,
    url: String,
}

impl PgTestSchema {
    /// The database URL in the environment variable `var`, or `None` after printing
    /// `skipped: <var> not set` (so a skipped test says so).
    pub fn url_from_env(var: &str) -> Option<String> {
        match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                println!("skipped: {var} not set");
                None
            }
        }
    }

    /// A new schema `{prefix}_{process}_{n}` in the database at `url`.
    ///
    /// # Panics
    /// When the database cannot be reached or the schema cannot be created: a test cannot go on.
    pub async fn create(url: &str, prefix: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "{prefix}_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self::create_named(url, &name).await
    }

    /// The schema `name` in the database at `url`, created new (a leftover of that name, from a
    /// run that died, is dropped first).
    pub async fn create_named(url: &str, name: &str) -> Self {
        let schema = Self::existing(url, name);
        schema
            .admin(&[
                format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
                format!("CREATE SCHEMA {name}"),
            ])
            .await;
        schema
    }

    /// Runs `statements` on a connection of its own, closed afterwards.
    async fn admin(&self, statements: &[String]) {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e}"));
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        let _ = conn.close().await;
    }

    /// A handle on the schema `name` that another process created (and will drop).
    pub fn existing(url: &str, name: &str) -> Self {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a schema name of letters, digits and underscores: {name:?}"
        );
        PgTestSchema {
            name: name.to_string(),
            url: url.to_string(),
        }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection options whose `search_path` is this schema.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .expect("a postgres:// URL")
            .options([("search_path", self.name.as_str())])
    }

    /// The URL with this schema as `search_path` (sqlx passes the `options` parameter,
    /// `-c search_path=<schema>`, at connect), for code that takes a URL, like the demo server.
    pub fn url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }

    /// A pool of up to `max` connections working in this schema.
    pub async fn pool(&self, max: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max)
            .connect_with(self.options())
            .await
            .expect("connecting to the test schema")
    }

    /// A pool of up to `max` connections with the store's tables created.
    pub async fn migrated_pool(&self, max: u32) -> PgPool {
        let pool = self.pool(max).await;
        crate::postgres::setup(&pool).await.expect("migrations");
        pool
    }

    /// A store in this schema over a pool of up to `max` connections.
    pub async fn store(&self, max: u32) -> PgStore {
        PgStore::new(self.migrated_pool(max).await)
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        self.admin(&[format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name)])
            .await;
    }

    /// Runs `body` with the schema, then drops the schema whether or not `body` panicked, then
    /// passes the panic on. Close the pools `body` made before it returns (or drop them), so
    /// that the drop does not wait for their connections.
    pub async fn run<F, Fut>(self, body: F)
    where
        F: FnOnce(PgTestSchema) -> Fut,
        Fut: Future<Output = ()>,
    {
        let outcome = AssertUnwindSafe(body(self.clone())).catch_unwind().await;
        self.drop().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}
