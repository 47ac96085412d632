//! The Postgres store: for several app instances sharing one database.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Row};

use crate::db::{Args, Dialect, RowExt, Value, bind_args, impl_db, plain_columns};
use crate::error::{db, migration};
use crate::store::SqlStore;

/// The store's migrations (`migrations/postgres`), for hosts that run migrations themselves.
///
/// Run them with [`migrate`], which applies them in the store's own schema and so keeps their
/// history (`_sqlx_migrations`) apart from the host's. Running `MIGRATOR.run(&pool)` directly
/// applies them in the first schema of the pool's `search_path`, beside the host's own history:
/// whichever of the two migrators runs second then fails with `VersionMissing`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The schema the store's tables go into unless told otherwise: `payouts` (its tables are then
/// `payouts.payouts`, `payouts.audit_entries`, ... and `payouts._sqlx_migrations`).
pub const DEFAULT_SCHEMA: &str = "payouts";

/// The Postgres schema the store's tables and its migration history live in ([`DEFAULT_SCHEMA`]
/// unless told otherwise), apart from the host's own tables in `public` or elsewhere.
///
/// ```
/// use payout_store_sqlx::postgres::PgSchema;
/// assert_eq!(PgSchema::default().name(), "payouts");
/// assert!(PgSchema::new("billing_payouts").is_ok());
/// assert!(PgSchema::new("payouts; DROP TABLE x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSchema(String);

impl PgSchema {
    /// The schema `name`: a plain lower-case identifier (letters, digits, `_`, not starting with a
    /// digit, at most 63 bytes), so it needs no quoting anywhere. Anything else is
    /// [`InvalidInput`](payout_core::Error::InvalidInput).
    pub fn new(name: &str) -> payout_core::Result<Self> {
        let plain = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if plain && !name.starts_with("pg_") {
            Ok(PgSchema(name.to_string()))
        } else {
            Err(payout_core::Error::InvalidInput(format!(
                "schema name {name:?}: expected lower-case letters, digits and '_', not starting with a digit or pg_, at most 63 bytes"
            )))
        }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        PgSchema(DEFAULT_SCHEMA.to_string())
    }
}

impl fmt::Display for PgSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PgSchema {
    type Err = payout_core::Error;
    fn from_str(s: &str) -> payout_core::Result<Self> {
        PgSchema::new(s)
    }
}

/// Creates `schema` if it is missing and applies the store's migrations ([`MIGRATOR`]) in it, on
/// `conn`: the tables and the migration history (`_sqlx_migrations`) go into `schema`, never into
/// the host's. Idempotent (applied migrations are skipped). For hosts that run migrations
/// themselves, before or after their own `sqlx::migrate!`:
///
/// ```no_run
/// # async fn host(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use payout_store_sqlx::postgres::{self, PgSchema};
/// // sqlx::migrate!().run(&pool).await?;  // the host's own migrations, in its own schema
/// let mut conn = pool.acquire().await?;
/// postgres::migrate(&mut conn, &PgSchema::default()).await?;
/// # Ok(()) }
/// ```
///
/// The connection's `search_path` is the schema while the migrations run and is put back
/// afterwards, so a pooled connection returns to the pool as it was.
pub async fn migrate(conn: &mut PgConnection, schema: &PgSchema) -> payout_core::Result<()> {
    create_schema(conn, schema).await.map_err(db)?;
    let previous: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    set_search_path(conn, schema.name()).await.map_err(db)?;
    let outcome = MIGRATOR.run(&mut *conn).await.map_err(migration);
    let restored = set_search_path(conn, &previous).await.map_err(db);
    outcome.and(restored)
}

/// Creates `schema` unless it exists. Looking first lets a role without `CREATE` on the database
/// use a schema made for it; the lock makes two instances starting at once create it only once.
async fn create_schema(conn: &mut PgConnection, schema: &PgSchema) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema.name())
        .fetch_one(&mut *conn)
        .await?;
    if exists {
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("payout-store-sqlx schema {schema}"))
        .execute(&mut *tx)
        .await?;
    // The name is a plain identifier (PgSchema::new), so it is safe in the statement's text.
    tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
        .await?;
    tx.commit().await
}

async fn set_search_path(conn: &mut PgConnection, path: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(path)
        .execute(conn)
        .await
        .map(drop)
}

/// Creates or upgrades the schema in `pool` (idempotent: applied migrations are skipped). The tables
/// and the migration history go into the first schema of the connections' `search_path`, so this
/// is for a pool that already works in a schema of the store's own (as the test schemas of
/// [`testkit`](crate) do); [`migrate`] picks the schema itself.
pub async fn setup(pool: &PgPool) -> payout_core::Result<()> {
    MIGRATOR.run(pool).await.map_err(migration)
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

    /// Connects to `url` (`postgres://user:password@host/db`), applies the migrations and returns
    /// the store, in the schema [`connect_with`](Self::connect_with) describes.
    pub async fn connect(url: &str) -> payout_core::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db)?;
        Self::connect_with(options).await
    }

    /// Connects with `options`, applies the migrations and returns the store.
    ///
    /// The tables live in the schema [`DEFAULT_SCHEMA`] (`payouts`), as with
    /// [`connect_in`](Self::connect_in) — unless `options` set a `search_path` themselves
    /// (`PgConnectOptions::options([("search_path", ..)])`, or `?options=-c search_path=...` in a
    /// URL): then the connections keep that path and the tables go into its first schema, which
    /// must exist.
    pub async fn connect_with(options: PgConnectOptions) -> payout_core::Result<Self> {
        if options.get_options().is_some_and(|o| o.contains("search_path")) {
            let pool = pool_options().connect_with(options).await.map_err(db)?;
            setup(&pool).await?;
            Ok(SqlStore::new(pool))
        } else {
            Self::connect_in(options, &PgSchema::default()).await
        }
    }

    /// [`connect_in`](Self::connect_in) with the options of `url` (`postgres://user:password@host/db`).
    pub async fn connect_url_in(url: &str, schema: &PgSchema) -> payout_core::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db)?;
        Self::connect_in(options, schema).await
    }

    /// Connects with `options` to a store whose tables and migration history live in `schema`
    /// (created if missing, migrated with [`migrate`]), apart from the host's own.
    ///
    /// Each connection's `search_path` is `schema` followed by the path it would have had
    /// otherwise (`"$user", public` by default), so the store's statements find its tables
    /// first, and a [`SqlConsultationSource`](crate::SqlConsultationSource) on the same pool still
    /// finds the host's tables by their plain names.
    ///
    /// The pool holds up to [`MAX_CONNECTIONS`], waits at most [`ACQUIRE_TIMEOUT`] for a free one,
    /// and does not ping a connection before each use (sqlx's default does): the ping is a network
    /// round trip on every store call, a third of a webhook's writes. A connection the server
    /// dropped fails its next statement with an `Unavailable` store error, which callers already
    /// treat as retryable, and is replaced. Build your own pool and use [`SqlStore::new`] for other
    /// settings.
    pub async fn connect_in(options: PgConnectOptions, schema: &PgSchema) -> payout_core::Result<Self> {
        let name = schema.name().to_string();
        let pool = pool_options()
            .after_connect(move |conn, _| {
                let name = name.clone();
                Box::pin(async move {
                    sqlx::query("SELECT set_config('search_path', $1 || ', ' || current_setting('search_path'), false)")
                        .bind(name)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(db)?;
        let mut conn = pool.acquire().await.map_err(db)?;
        migrate(&mut conn, schema).await?;
        drop(conn);
        Ok(SqlStore::new(pool))
    }
}

/// The pool settings of [`PgStore::connect_in`].
fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
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
