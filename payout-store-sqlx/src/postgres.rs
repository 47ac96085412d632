//! The Postgres store: for several app instances sharing one database.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use crate::db::{Args, Dialect, RowExt, Value, impl_db};
use crate::error::StoreError;

/// Creates or upgrades the schema in `pool` (idempotent: applied migrations are skipped). The tables
/// go into the first schema of the connections' `search_path`.
pub async fn setup(pool: &PgPool) -> payout_core::Result<()> {
    sqlx::migrate!("./migrations/postgres")
        .run(pool)
        .await
        .map_err(StoreError::from)?;
    Ok(())
}

/// A [`PayoutStore`](payout_core::PayoutStore) in Postgres. Cloning it is cheap: clones share the pool.
///
/// Every write is one transaction; concurrent changes of one payout are decided by a conditional
/// `UPDATE ... WHERE version = $v AND status = $s`, so of two admins approving at once exactly one
/// wins and the other gets [`Conflict`](payout_core::Error::Conflict).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host/db`), applies the migrations and returns the store.
    pub async fn connect(url: &str) -> payout_core::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::from)?;
        Self::connect_with(options).await
    }

    /// Connects with `options` (e.g. with a `search_path` set), applies the migrations and returns the store.
    ///
    /// The pool holds up to 16 connections (the service's default trigger concurrency, so a bulk
    /// trigger's sends never queue for one) and does not ping a connection before each use (sqlx's
    /// default does): the ping is a network round trip on every store call, a third of a webhook's
    /// writes. A connection the server dropped fails its next statement with a store error, which
    /// callers already treat as retryable, and is replaced. Build your own pool and use
    /// [`PgStore::new`] for other settings.
    pub async fn connect_with(options: PgConnectOptions) -> payout_core::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(StoreError::from)?;
        setup(&pool).await?;
        Ok(PgStore { pool })
    }

    /// A store over a pool whose schema [`setup`] already created.
    pub fn new(pool: PgPool) -> Self {
        PgStore { pool }
    }

    /// The pool, e.g. to share it with a [`SqlConsultationSource`](crate::SqlConsultationSource).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Claims up to `limit` `PROCESSING` payouts not changed since `updated_before`, for one
    /// reconciliation worker among several: each claimed payout gets `updated_at = at` and a new
    /// version in one statement, so other workers' [`stuck_processing`](payout_core::PayoutStore::stuck_processing)
    /// and claims skip it until it is stale again, and rows another worker is claiming right now
    /// are skipped (`FOR UPDATE SKIP LOCKED`) instead of waited for. The oldest are claimed first;
    /// the claimed payouts are returned in id order.
    ///
    /// A claim is a lease, not a transition: the status does not change and nothing is audited.
    pub async fn claim_stuck_processing(
        &self,
        updated_before: DateTime<Utc>,
        limit: u32,
        at: DateTime<Utc>,
    ) -> payout_core::Result<Vec<payout_core::domain::Payout>> {
        crate::write::claim_stuck_processing(&self.pool, updated_before, limit, at).await
    }
}

crate::store_impl::delegate_payout_store!(PgStore);

fn bind(
    mut q: sqlx::query::Query<'_, sqlx::Postgres, PgArguments>,
    args: Args,
) -> sqlx::query::Query<'_, sqlx::Postgres, PgArguments> {
    for v in args.0 {
        q = match v {
            Value::Text(s) => q.bind(s),
            Value::Static(s) => q.bind(s),
            Value::OptText(s) => q.bind(s),
            Value::Int(i) => q.bind(i),
            Value::OptInt(i) => q.bind(i),
            Value::Date(d) => q.bind(d),
            Value::Ts(t) => q.bind(t),
            Value::OptTs(t) => q.bind(t),
            Value::TextArray(a) => q.bind(a),
            Value::IntArray(a) => q.bind(a),
            Value::TsArray(a) => q.bind(a),
        };
    }
    q
}

impl RowExt for PgRow {
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.try_get(col)
    }
    fn date(&self, col: &str) -> Result<NaiveDate, sqlx::Error> {
        self.try_get(col)
    }
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(col)
    }
    fn host_ts(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
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
