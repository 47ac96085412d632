//! The SQLite store: embedded, one file (or memory), WAL mode, one writer at a time.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};

use crate::db::{Args, Dialect, RowExt, Value, bind_args, impl_db, plain_columns};
use crate::error::{db, migration};
use crate::store::SqlStore;

/// How long a connection waits for another writer before it gives up (`PRAGMA busy_timeout`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How much each connection caches, as `PRAGMA cache_size` (negative: KiB): 8 MiB instead of
/// SQLite's 2 MiB, so a calculation chunk's transaction (a few MB of table and index pages) fits
/// in the cache until its commit instead of spilling pages into the WAL and reading them back.
const CACHE_SIZE: &str = "-8192";

/// The most connections a file database's pool opens.
pub const MAX_CONNECTIONS: u32 = 8;

/// How long a call waits for a free connection of the pool before it fails with a
/// [`StoreErrorKind::Unavailable`](payout_core::StoreErrorKind::Unavailable) error.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store's migrations (`migrations/sqlite`), for hosts that run migrations themselves: run
/// them on the store's own database file (see [`setup`]).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Creates or upgrades the schema in `pool` (idempotent: applied migrations are skipped).
///
/// The store keeps its tables and its migration history (`_sqlx_migrations`) in a database file of
/// its own, never in the host's: SQLite has no schemas inside one file, and the store's tables
/// have plain names (`payouts`, `audit_entries`, ...). A host that wants both on one connection
/// attaches the other file (`ATTACH DATABASE 'payouts.db' AS payouts`, then `payouts.payouts`);
/// [`pool_attaching`] does it the other way round, for a
/// [`SqlConsultationSource`](crate::SqlConsultationSource) reading the host's tables through the
/// store's pool. Pointed at a file that holds another application's migration history, this
/// fails with an error that says so, and changes nothing.
pub async fn setup(pool: &SqlitePool) -> payout_core::Result<()> {
    MIGRATOR.run(pool).await.map_err(migration)
}

/// The options every connection gets: WAL, a busy timeout, foreign keys on, full sync, an 8 MiB
/// page cache.
pub fn connect_options(url: &str) -> payout_core::Result<SqliteConnectOptions> {
    let options = SqliteConnectOptions::from_str(url).map_err(db)?;
    Ok(options
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("cache_size", CACHE_SIZE))
}

/// True for URLs that open a private in-memory database (`sqlite::memory:`, `mode=memory`), which
/// lives only as long as its one connection.
fn is_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.starts_with(":memory:") || rest.is_empty() || url.contains("mode=memory")
}

/// A pool for the store's own database `url` (as [`pool`]) on whose every connection the host's
/// database file `host_file` is attached as schema `alias` (`ATTACH DATABASE`), so that a
/// [`SqlConsultationSource`](crate::SqlConsultationSource) on the store's pool reads the host's
/// tables as `alias.table` while the store's tables and migration history stay in `url`.
///
/// `alias` must be a plain identifier (letters, digits, `_`, not `main` or `temp`); anything else
/// is [`InvalidInput`](payout_core::Error::InvalidInput). The host file must exist.
pub async fn pool_attaching(url: &str, host_file: &Path, alias: &str) -> payout_core::Result<SqlitePool> {
    let plain = !alias.is_empty()
        && !alias.starts_with(|c: char| c.is_ascii_digit())
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain || alias.eq_ignore_ascii_case("main") || alias.eq_ignore_ascii_case("temp") {
        return Err(payout_core::Error::InvalidInput(format!(
            "attachment alias {alias:?}: expected letters, digits and '_', not main or temp"
        )));
    }
    if !host_file.is_file() {
        return Err(payout_core::Error::InvalidInput(format!(
            "the database file to attach does not exist: {}",
            host_file.display()
        )));
    }
    let host_file = host_file.to_string_lossy().into_owned();
    // The alias is a plain identifier (checked above); the file name is a bound value.
    let attach: Arc<str> = format!("ATTACH DATABASE ?1 AS {alias}").into();
    pool_with(url, move |options| {
        let (host_file, attach) = (host_file.clone(), attach.clone());
        options.after_connect(move |conn, _| {
            let (host_file, attach) = (host_file.clone(), attach.clone());
            Box::pin(async move { sqlx::query(&attach).bind(host_file).execute(conn).await.map(drop) })
        })
    })
    .await
}

/// A pool for `url` with the options above. An in-memory database gets a single connection that
/// is never closed (each connection to `sqlite::memory:` would be a different, empty database).
pub async fn pool(url: &str) -> payout_core::Result<SqlitePool> {
    pool_with(url, |options| options).await
}

/// [`pool`] with `extra` applied to its pool options (e.g. an `after_connect`).
async fn pool_with(
    url: &str,
    extra: impl FnOnce(SqlitePoolOptions) -> SqlitePoolOptions,
) -> payout_core::Result<SqlitePool> {
    let options = connect_options(url)?;
    let pool = if is_memory(url) {
        extra(SqlitePoolOptions::new())
            .min_connections(1)
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
    } else {
        // No ping before each use: a file database's connection does not go stale, and the ping is a
        // round trip to the connection's worker thread on every store call.
        extra(SqlitePoolOptions::new())
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await
    };
    pool.map_err(db)
}

/// The [`SqlStore`] in SQLite. Cloning it is cheap: clones share the pool.
///
/// Every write runs in a transaction started with `BEGIN IMMEDIATE`, so it holds the database's one
/// write lock from its first statement and never fails half-way to upgrade a read lock; other
/// writers wait up to [`BUSY_TIMEOUT`]. Reads run beside writers (WAL).
pub type SqliteStore = SqlStore<SqlitePool>;

impl SqlStore<SqlitePool> {
    /// Opens (creating it with `?mode=rwc`) the database at `url`, applies the migrations and
    /// returns the store: `sqlite://payouts.db?mode=rwc`, or `sqlite::memory:` for tests.
    pub async fn connect(url: &str) -> payout_core::Result<Self> {
        let pool = pool(url).await?;
        setup(&pool).await?;
        Ok(SqlStore::new(pool))
    }

    /// [`connect`](Self::connect) with the host's database file `host_file` attached as `alias` on
    /// every connection ([`pool_attaching`]): the store's tables and migration history stay in
    /// `url`, and a [`SqlConsultationSource`](crate::SqlConsultationSource) over
    /// [`pool`](Self::pool) reads the host's tables as `alias.table`.
    pub async fn connect_attaching(url: &str, host_file: &Path, alias: &str) -> payout_core::Result<Self> {
        let pool = pool_attaching(url, host_file, alias).await?;
        setup(&pool).await?;
        Ok(SqlStore::new(pool))
    }
}

/// Timestamps are written as UTC text of one fixed width, nanoseconds included, so text order is
/// time order and nothing is lost: `2025-02-01T08:00:00.000000000Z` ([`crate::sqlite_time::format`]).
pub(crate) fn timestamp(t: &DateTime<Utc>) -> String {
    crate::sqlite_time::format(t)
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>>,
    args: Args,
) -> sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments<'q>> {
    bind_args!(q, args,
        Value::Ts(t) => q.bind(timestamp(&t)),
        Value::OptTs(t) => q.bind(t.as_ref().map(timestamp)),
        // SQLite has no arrays: one is bound as a JSON array (read with `json_each`), timestamps
        // in their stored text form.
        Value::TextArray(a) => q.bind(json_array(&a)),
        Value::IntArray(a) => q.bind(json_array(&a)),
        Value::TsArray(a) => q.bind(json_array(
            &a.iter().map(|t| t.as_ref().map(timestamp)).collect::<Vec<_>>(),
        )),
    );
    q
}

fn json_array<T: serde::Serialize>(values: &[T]) -> String {
    // Serializing strings, numbers and nulls cannot fail.
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_string())
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, sqlx::Error> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| sqlx::Error::Decode(format!("timestamp {text:?}: {e}").into()))
}

impl RowExt for SqliteRow {
    plain_columns!();
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error> {
        parse_timestamp(&self.try_get::<String, _>(col)?)
    }
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get::<Option<String>, _>(col)?
            .as_deref()
            .map(parse_timestamp)
            .transpose()
    }
}

impl_db!(
    sqlx::Sqlite,
    SqlitePool,
    SqliteRow,
    Dialect::Sqlite,
    Some("BEGIN IMMEDIATE"),
    bind,
    no_copy_in
);

/// SQLite has no `COPY`: callers fall back to multi-row `INSERT`s.
async fn no_copy_in(_: &mut sqlx::SqliteConnection, _: &str, _: Vec<u8>) -> Result<Option<u64>, sqlx::Error> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_one_width_so_text_order_is_time_order() {
        let a = Utc.with_ymd_and_hms(2025, 2, 1, 8, 0, 0).unwrap();
        let b = a + chrono::Duration::nanoseconds(1);
        let c = a + chrono::Duration::milliseconds(500);
        assert_eq!(timestamp(&a), "2025-02-01T08:00:00.000000000Z");
        assert!(timestamp(&a) < timestamp(&b) && timestamp(&b) < timestamp(&c));
        assert_eq!(parse_timestamp(&timestamp(&b)).unwrap(), b);
    }

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory("sqlite::memory:"));
        assert!(is_memory("sqlite://:memory:"));
        assert!(is_memory("sqlite:file:x?mode=memory&cache=shared"));
        assert!(!is_memory("sqlite://payouts.db?mode=rwc"));
    }
}
