//! The little the store logic needs from a database, so that it is written once for both dialects.
//!
//! SQL text is shared: both SQLite and Postgres read `$1`-style placeholders. What differs is how a
//! timestamp is bound and read (fixed-width UTC text in SQLite, `TIMESTAMPTZ` in Postgres) and how a
//! write transaction starts (`BEGIN IMMEDIATE` in SQLite); each backend module supplies those.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    /// Text known at compile time (a status, a currency code): bound without a copy.
    Static(&'static str),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Date(NaiveDate),
    Ts(DateTime<Utc>),
    OptTs(Option<DateTime<Utc>>),
    /// A Postgres array (`TEXT[]`, with NULLs): bound only in Postgres statements.
    TextArray(Vec<Option<String>>),
    /// A Postgres `BIGINT[]`, with NULLs.
    IntArray(Vec<Option<i64>>),
    /// A Postgres `TIMESTAMPTZ[]`, with NULLs.
    TsArray(Vec<Option<DateTime<Utc>>>),
}

/// `impl From<$type> for Value` for each type a variant holds as it is.
macro_rules! value_from {
    ($($type:ty => $variant:ident),* $(,)?) => {
        $(impl From<$type> for Value {
            fn from(v: $type) -> Self {
                Value::$variant(v)
            }
        })*
    };
}

value_from! {
    String => Text,
    Option<String> => OptText,
    i64 => Int,
    Option<i64> => OptInt,
    NaiveDate => Date,
    DateTime<Utc> => Ts,
    Option<DateTime<Utc>> => OptTs,
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::OptText(v.map(str::to_string))
    }
}

/// The values of one statement, in placeholder order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub(crate) Vec<Value>);

impl Args {
    /// No values.
    pub(crate) fn new() -> Self {
        Args(Vec::new())
    }

    /// Adds a value and returns its placeholder (`$n`), for SQL built piece by piece.
    pub(crate) fn push(&mut self, v: impl Into<Value>) -> String {
        self.0.push(v.into());
        format!("${}", self.0.len())
    }
}

/// Builds [`Args`] from a list of values: `args![id, version]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        $crate::db::Args(vec![$($crate::db::Value::from($v)),*])
    };
}
pub(crate) use args;

/// Binds every value of `$args` to the query `$q`: the values both drivers bind as they are, then
/// the arms a backend writes itself (timestamps and arrays).
macro_rules! bind_args {
    ($q:ident, $args:expr, $($backend_arms:tt)*) => {
        for v in $args.0 {
            $q = match v {
                $crate::db::Value::Text(s) => $q.bind(s),
                $crate::db::Value::Static(s) => $q.bind(s),
                $crate::db::Value::OptText(s) => $q.bind(s),
                $crate::db::Value::Int(i) => $q.bind(i),
                $crate::db::Value::OptInt(i) => $q.bind(i),
                $crate::db::Value::Date(d) => $q.bind(d),
                $($backend_arms)*
            };
        }
    };
}
pub(crate) use bind_args;

/// The reads of [`RowExt`] that both drivers decode the same way (`try_get` of the Rust type), for
/// the body of each backend's `impl RowExt`.
macro_rules! plain_columns {
    () => {
        fn text(&self, col: &str) -> Result<String, sqlx::Error> {
            sqlx::Row::try_get(self, col)
        }
        fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
            sqlx::Row::try_get(self, col)
        }
        fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
            sqlx::Row::try_get(self, col)
        }
        fn date(&self, col: &str) -> Result<chrono::NaiveDate, sqlx::Error> {
            sqlx::Row::try_get(self, col)
        }
        fn opt_date(&self, col: &str) -> Result<Option<chrono::NaiveDate>, sqlx::Error> {
            sqlx::Row::try_get(self, col)
        }
        fn host_ts(&self, col: &str) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
            // SQLite: ISO 8601 text (with `T` or a space), unix seconds and Julian days.
            sqlx::Row::try_get(self, col)
        }
    };
}
pub(crate) use plain_columns;

/// Typed reads of a result row by column name.
pub trait RowExt: Send {
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn date(&self, col: &str) -> Result<NaiveDate, sqlx::Error>;
    fn opt_date(&self, col: &str) -> Result<Option<NaiveDate>, sqlx::Error>;
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error>;
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    /// A timestamp in a host's table, in whatever form the driver can read as UTC.
    fn host_ts(&self, col: &str) -> Result<DateTime<Utc>, sqlx::Error>;
}

/// Which SQL dialect, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

/// A pool the store and the sources can run on: `SqlitePool` or `PgPool`.
///
/// Public only so it can bound [`SqlConsultationSource`](crate::SqlConsultationSource) and
/// [`SqlRecipientDirectory`](crate::SqlRecipientDirectory); it lives in a private module, so no other
/// crate can name or implement it (a sealed trait).
#[async_trait]
pub trait Db: Clone + Send + Sync + 'static {
    type Row: RowExt;
    type Tx: Tx<Row = Self::Row>;

    fn dialect(&self) -> Dialect;

    /// Starts a transaction that will write: in SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock upgrading a read lock.
    async fn begin_write(&self) -> Result<Self::Tx, sqlx::Error>;

    async fn fetch_all(&self, sql: &str, args: Args) -> Result<Vec<Self::Row>, sqlx::Error>;

    async fn fetch_optional(&self, sql: &str, args: Args) -> Result<Option<Self::Row>, sqlx::Error>;

    /// The rows of one query as they arrive, on one pooled connection held until the stream ends.
    fn fetch_stream<'q>(&self, sql: &'q str, args: Args) -> BoxStream<'q, Result<Self::Row, sqlx::Error>>;
}

/// Statements run inside one transaction. Dropping it without [`Tx::commit`] rolls everything back.
#[async_trait]
pub trait Tx: Send {
    type Row: RowExt;

    fn dialect(&self) -> Dialect;

    /// Runs a statement and returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, args: Args) -> Result<u64, sqlx::Error>;

    async fn fetch_all(&mut self, sql: &str, args: Args) -> Result<Vec<Self::Row>, sqlx::Error>;

    async fn fetch_optional(&mut self, sql: &str, args: Args) -> Result<Option<Self::Row>, sqlx::Error>;

    /// Values already encoded for this database (see [`Tx::encode`]).
    type Encoded: Send;

    /// Encodes `args` for [`Tx::fetch_all_encoded`]. Encoding thousands of values takes a while, so
    /// a caller can do it while the database runs the statement before.
    fn encode(args: Args) -> Result<Self::Encoded, sqlx::Error>
    where
        Self: Sized;

    /// [`Tx::fetch_all`] with values [`Tx::encode`] encoded.
    async fn fetch_all_encoded(&mut self, sql: &str, args: Self::Encoded) -> Result<Vec<Self::Row>, sqlx::Error>;

    /// [`Tx::execute`] with values [`Tx::encode`] encoded.
    async fn execute_encoded(&mut self, sql: &str, args: Self::Encoded) -> Result<u64, sqlx::Error>;

    /// Streams `data` into `statement` (`COPY ... FROM STDIN`) and returns the rows copied, or `None`
    /// (doing nothing) where the database has no `COPY` (SQLite).
    async fn copy_in(&mut self, statement: &str, data: Vec<u8>) -> Result<Option<u64>, sqlx::Error>;

    async fn commit(self) -> Result<(), sqlx::Error>;
}

/// Implements [`Db`] for a pool and [`Tx`] for its transaction, given how values are bound.
macro_rules! impl_db {
    ($db:ty, $pool:ty, $row:ty, $dialect:expr, $begin:expr, $bind:path, $copy_in:path) => {
        #[async_trait::async_trait]
        impl $crate::db::Db for $pool {
            type Row = $row;
            type Tx = sqlx::Transaction<'static, $db>;

            fn dialect(&self) -> $crate::db::Dialect {
                $dialect
            }

            async fn begin_write(&self) -> Result<Self::Tx, sqlx::Error> {
                let begin: Option<&'static str> = $begin;
                match begin {
                    Some(statement) => self.begin_with(statement).await,
                    None => self.begin().await,
                }
            }

            async fn fetch_all(&self, sql: &str, args: $crate::db::Args) -> Result<Vec<$row>, sqlx::Error> {
                $bind(sqlx::query(sql), args).fetch_all(self).await
            }

            async fn fetch_optional(&self, sql: &str, args: $crate::db::Args) -> Result<Option<$row>, sqlx::Error> {
                $bind(sqlx::query(sql), args).fetch_optional(self).await
            }

            fn fetch_stream<'q>(
                &self,
                sql: &'q str,
                args: $crate::db::Args,
            ) -> futures::stream::BoxStream<'q, Result<$row, sqlx::Error>> {
                // The pool's executor clones the pool into the stream, so only `sql` is borrowed.
                sqlx::Executor::fetch(self, $bind(sqlx::query(sql), args))
            }
        }

        #[async_trait::async_trait]
        impl $crate::db::Tx for sqlx::Transaction<'static, $db> {
            type Row = $row;

            fn dialect(&self) -> $crate::db::Dialect {
                $dialect
            }

            async fn execute(&mut self, sql: &str, args: $crate::db::Args) -> Result<u64, sqlx::Error> {
                Ok($bind(sqlx::query(sql), args)
                    .execute(&mut **self)
                    .await?
                    .rows_affected())
            }

            async fn fetch_all(&mut self, sql: &str, args: $crate::db::Args) -> Result<Vec<$row>, sqlx::Error> {
                $bind(sqlx::query(sql), args).fetch_all(&mut **self).await
            }

            async fn fetch_optional(&mut self, sql: &str, args: $crate::db::Args) -> Result<Option<$row>, sqlx::Error> {
                $bind(sqlx::query(sql), args).fetch_optional(&mut **self).await
            }

            type Encoded = <$db as sqlx::Database>::Arguments<'static>;

            fn encode(args: $crate::db::Args) -> Result<Self::Encoded, sqlx::Error> {
                let mut query = $bind(sqlx::query(""), args);
                Ok(sqlx::Execute::take_arguments(&mut query)
                    .map_err(sqlx::Error::Encode)?
                    .unwrap_or_default())
            }

            async fn fetch_all_encoded(&mut self, sql: &str, args: Self::Encoded) -> Result<Vec<$row>, sqlx::Error> {
                sqlx::query_with(sql, args).fetch_all(&mut **self).await
            }

            async fn execute_encoded(&mut self, sql: &str, args: Self::Encoded) -> Result<u64, sqlx::Error> {
                Ok(sqlx::query_with(sql, args)
                    .execute(&mut **self)
                    .await?
                    .rows_affected())
            }

            async fn copy_in(&mut self, statement: &str, data: Vec<u8>) -> Result<Option<u64>, sqlx::Error> {
                $copy_in(&mut **self, statement, data).await
            }

            async fn commit(self) -> Result<(), sqlx::Error> {
                sqlx::Transaction::commit(self).await
            }
        }
    };
}
pub(crate) use impl_db;
