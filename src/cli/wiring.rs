//! Opening the database every command works on: the store, and the host's consultations and
//! doctors read through the store's pool.

use std::sync::Arc;

use crate::PayoutStore;
use crate::service::PerformanceConfig;
use crate::source::{ConsultationSource, RecipientDirectory};
use crate::store_sqlx::postgres::PgSchema;
use crate::store_sqlx::{
    ConsultationTable, PgStore, RecipientTable, SqlConsultationSource, SqlRecipientDirectory, SqliteStore,
};

use super::CliError;

/// The demo server's SQLite file, the default database.
const DEFAULT_DATABASE: &str = "sqlite://payouts-demo.db";

/// Which database, shared by the commands.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// The database: `sqlite://FILE` or `postgres://USER:PASSWORD@HOST/DB` [default: the demo's
    /// SQLite file payouts-demo.db]
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Postgres: the schema of the store's tables and migration history [default: payouts, or the
    /// URL's own search_path when it sets one]
    #[arg(long, env = "PAYOUTS_PG_SCHEMA", value_name = "SCHEMA")]
    pub schema: Option<String>,
}

/// A store opened by [`DatabaseArgs`].
pub(crate) enum Opened {
    Sqlite(SqliteStore),
    Postgres(PgStore, Option<PgSchema>),
}

impl Opened {
    /// One line saying where the store's tables are.
    pub(crate) fn describe(&self) -> String {
        match self {
            Opened::Sqlite(_) => format!(
                "SQLite store up to date ({} migrations)",
                crate::store_sqlx::sqlite::MIGRATOR.iter().count()
            ),
            Opened::Postgres(_, schema) => format!(
                "Postgres store up to date ({} migrations) in schema {}",
                crate::store_sqlx::postgres::MIGRATOR.iter().count(),
                schema
                    .as_ref()
                    .map_or_else(|| "payouts (or the URL's search_path)".to_string(), |s| s.to_string())
            ),
        }
    }
}

/// The service's parts over one database.
pub(crate) struct Wired {
    pub store: Arc<dyn PayoutStore>,
    pub consultations: Arc<dyn ConsultationSource>,
    pub directory: Arc<dyn RecipientDirectory>,
    pub performance: PerformanceConfig,
}

impl DatabaseArgs {
    /// The URL: the flag, `DATABASE_URL`, or the demo's file (created only when `create`).
    pub(crate) fn url(&self, create: bool) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            let mode = if create { "rwc" } else { "rw" };
            format!("{DEFAULT_DATABASE}?mode={mode}")
        })
    }

    /// True when the database is SQLite.
    pub(crate) fn is_sqlite(&self) -> bool {
        self.url(false).starts_with("sqlite:")
    }

    /// Opens (and migrates) the store; `create` makes a missing SQLite file when no URL is given.
    pub(crate) async fn open_store(&self, create: bool) -> Result<Opened, CliError> {
        let url = self.url(create);
        let unreachable = |e: crate::Error| {
            CliError::failure(format!(
                "cannot open the database ({e}); check DATABASE_URL or --database-url"
            ))
        };
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let schema = self
                .schema
                .as_deref()
                .map(PgSchema::new)
                .transpose()
                .map_err(|e| CliError::usage(format!("--schema: {e}")))?;
            let store = match &schema {
                Some(schema) => PgStore::connect_url_in(&url, schema).await,
                None => PgStore::connect(&url).await,
            }
            .map_err(unreachable)?;
            Ok(Opened::Postgres(store, schema))
        } else if url.starts_with("sqlite:") {
            if self.schema.is_some() {
                return Err(CliError::usage(
                    "--schema is for Postgres; a SQLite store keeps its tables in a file of its own",
                ));
            }
            Ok(Opened::Sqlite(SqliteStore::connect(&url).await.map_err(unreachable)?))
        } else {
            Err(CliError::usage(
                "the database URL must start with sqlite: or postgres: (check DATABASE_URL or --database-url)",
            ))
        }
    }

    /// Opens the store and reads `table` (and the default doctor profiles) through its pool.
    pub(crate) async fn open_with(&self, create: bool, table: ConsultationTable) -> Result<Wired, CliError> {
        let mut performance = PerformanceConfig::default();
        let wired = match self.open_store(create).await? {
            Opened::Sqlite(store) => {
                let pool = store.pool().clone();
                wire(
                    store,
                    pool,
                    table,
                    SqlConsultationSource::new,
                    SqlRecipientDirectory::new,
                )?
            }
            Opened::Postgres(store, _) => {
                // Postgres runs transactions side by side: two calculation chunks are written at once.
                performance.calculation_writes_in_flight = PgStore::WRITES_IN_FLIGHT;
                let pool = store.pool().clone();
                wire(
                    store,
                    pool,
                    table,
                    SqlConsultationSource::new,
                    SqlRecipientDirectory::new,
                )?
            }
        };
        Ok(Wired { performance, ..wired })
    }

    /// [`open_with`](Self::open_with) the default consultation table.
    pub(crate) async fn open(&self, create: bool) -> Result<Wired, CliError> {
        self.open_with(create, ConsultationTable::default()).await
    }
}

/// Wires a store and the host's tables over its pool, for either database. The two constructors
/// are passed in because the pool bound they need is sealed inside `payout-store-sqlx`.
fn wire<P: Clone, C, D>(
    store: impl PayoutStore + 'static,
    pool: P,
    table: ConsultationTable,
    source: fn(P, ConsultationTable) -> crate::Result<C>,
    directory: fn(P, RecipientTable) -> crate::Result<D>,
) -> Result<Wired, CliError>
where
    C: ConsultationSource + 'static,
    D: RecipientDirectory + 'static,
{
    let source = source(pool.clone(), table).map_err(|e| CliError::usage(e.to_string()))?;
    let directory = directory(pool, RecipientTable::default()).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(Wired {
        store: Arc::new(store),
        consultations: Arc::new(source),
        directory: Arc::new(directory),
        performance: PerformanceConfig::default(),
    })
}
