//! The Postgres store: for several app instances sharing one database.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use crate::db::{Args, Dialect, RowExt, Value, bind_args, impl_db, plain_columns};
use crate::error::{db, migration};
use crate::store::SqlStore;

/// Creates or upgrades the schema in `pool` (idempotent: applied migrations are skipped). The tables
/// go into the first schema of the connections' `search_path`.
pub async fn setup(pool: &PgPool) -> payout_core::Result<()> {
    sqlx::migrate!("./migrations/postgres")
        .run(pool)
        .await
        .map_err(migration)
}

/// The [`SqlStore`] in Postgres: for several app instances sharing one database. Cloning it is
/// cheap: clones share the pool.
///
/// Every write is one statement or one transaction; concurrent changes of one payout are decided by
/// a conditional `UPDATE ... WHERE version = $v AND status = $s`, so of two admins approving at
/// once exactly one wins and the other gets [`Conflict`](payout_core::Error::Conflict).
pub type PgStore = SqlStore<PgPool>;

/// How long a call waits for a free connection of [`PgStore::connect`]'s pool before it fails with
/// a [`StoreErrorKind::Unavailable`](payout_core::StoreErrorKind::Unavailable) error.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections [`PgStore::connect`]'s pool opens: the service's default trigger
/// concurrency, so a bulk trigger's sends never queue for one.
pub const MAX_CONNECTIONS: u32 = 16;

impl SqlStore<PgPool> {
    /// How many calculation chunks to write at once on Postgres
    /// ([`PerformanceConfig::calculation_writes_in_flight`](payout_core::service::PerformanceConfig::calculation_writes_in_flight)):
    /// it runs transactions side by side, so two chunks written at once use two cores (measured:
    /// 0.85x of hand-written SQL against 1.39x one at a time).
    pub const WRITES_IN_FLIGHT: usize = 2;

    /// Connects to `url` (`postgres://user:password@host/db`), applies the migrations and returns the store.
    pub async fn connect(url: &str) -> payout_core::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db)?;
        Self::connect_with(options).await
    }

    /// Connects with `options` (e.g. with a `search_path` set), applies the migrations and returns the store.
    ///
    /// The pool holds up to [`MAX_CONNECTIONS`], waits at most [`ACQUIRE_TIMEOUT`] for a free one,
    /// and does not ping a connection before each use (sqlx's default does): the ping is a network
    /// round trip on every store call, a third of a webhook's writes. A connection the server
    /// dropped fails its next statement with an `Unavailable` store error, which callers already
    /// treat as retryable, and is replaced. Build your own pool and use [`SqlStore::new`] for other
    /// settings.
    pub async fn connect_with(options: PgConnectOptions) -> payout_core::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db)?;
        setup(&pool).await?;
        Ok(SqlStore::new(pool))
    }
}

fn bind(
    mut q: sqlx::query::Query<'_, sqlx::Postgres, PgArguments>,
    args: Args,
) -> sqlx::query::Query<'_, sqlx::Postgres, PgArguments> {
    bind_args!(q, args,
        Value::Ts(t) => q.bind(t),
        Value::OptTs(t) => q.bind(t),
        Value::TextArray(a) => q.bind(a),
        Value::IntArray(a) => q.bind(a),
        Value::TsArray(a) => q.bind(a),
    );
    q
}

impl RowExt for PgRow {
    plain_columns!();
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(col)
    }
}

/// `COPY ... FROM STDIN` on the transaction's connection.
async fn copy_in(conn: &mut sqlx::PgConnection, statement: &str, data: Vec<u8>) -> Result<Option<u64>, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(data).await {
        // Ends the COPY so the connection is usable again; the transaction rolls back anyway.
        let _ = copy.abort("sending the rows failed").await;
        return Err(e);
    }
    copy.finish().await.map(Some)
}

impl_db!(sqlx::Postgres, PgPool, PgRow, Dialect::Postgres, None, bind, copy_in);
