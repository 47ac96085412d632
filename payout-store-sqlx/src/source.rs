//! The host's own tables as a [`ConsultationSource`] and a [`RecipientDirectory`].
//!
//! Table and column names come from configuration and are written into SQL, so each one is checked
//! to be a plain identifier (`[A-Za-z_][A-Za-z0-9_.]*`, `.` for `schema.table`) before any query
//! is built; values (the statuses, the period, doctor ids) are always bound, never written in.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Days, NaiveDate};
use futures::StreamExt;
use futures::stream::BoxStream;
use payout_core::domain::{BankAccount, Consultation, DoctorId, Period, Provider, Recipient, Reversal};
use payout_core::source::{ConsultationSource, RecipientDirectory};
use payout_core::{Error, Result};

use crate::db::{Args, Db, Dialect, RowExt, Value};

/// How many rows the reading task may run ahead of the calculation: enough to keep reading while the
/// calculation writes a chunk (so reading and writing overlap), little memory (about 1 MiB).
const READ_AHEAD: usize = 8_192;

/// How many rows go to the calculation in one message.
const READ_BATCH: usize = 128;

/// How many doctor ids one directory query asks for.
const IDS_PER_QUERY: usize = 500;

/// Refuses anything but a plain (optionally schema-qualified) SQL identifier.
fn identifier(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let plain = name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !name.ends_with('.')
        && !name.contains("..");
    if plain {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "{what} {name:?} is not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_.]*)"
        )))
    }
}

/// A failure reading the host's tables.
fn source_err(e: sqlx::Error) -> Error {
    match crate::error::db(e) {
        Error::Store(store) => Error::Source(store.message().to_string()),
        other => other,
    }
}

/// Where the host keeps its consultations. Every default is the original system's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultationTable {
    /// The table (or `schema.table`). Default `appointments`.
    pub table: String,
    /// The appointment id column (read as text). Default `id`.
    pub id: String,
    /// The doctor id column (read as text). Default `doctor_id`.
    pub doctor_id: String,
    /// The status column. Default `status`.
    pub status: String,
    /// The completion time column. Default `completed_at`. In Postgres a `timestamptz` (or
    /// `timestamp`, read as UTC); in SQLite UTC ISO 8601 text (`2025-01-10T09:00:00Z` or
    /// `2025-01-10 09:00:00`), which is what sqlx writes for a `DateTime<Utc>`.
    pub completed_at: String,
    /// The status value of a completed consultation. Default `COMPLETED`.
    pub completed_status: String,
    /// How the table records a completed consultation taken back (refunded, voided), so that its pay
    /// is clawed back. Default `None`: the source reports no reversals.
    pub reversals: Option<Reversals>,
}

/// How the host's consultation table records a completed consultation taken back: its status
/// becomes one of [`statuses`](Self::statuses) and [`reversed_at`](Self::reversed_at) says when.
///
/// ```
/// use payout_store_sqlx::{ConsultationTable, Reversals};
/// let table = ConsultationTable {
///     reversals: Some(Reversals {
///         statuses: vec!["REFUNDED".into(), "VOIDED".into()],
///         reversed_at: "refunded_at".into(),
///     }),
///     ..Default::default()
/// };
/// # let _ = table;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversals {
    /// The status values of a consultation taken back, e.g. `REFUNDED` and `VOIDED`, compared exactly
    /// as stored (like [`ConsultationTable::completed_status`]). At least one, none of them blank or
    /// the completed status. The matched value, lower-cased (`refunded`), is the
    /// [`Reversal::reason`] that the clawback item's description quotes.
    pub statuses: Vec<String>,
    /// The column holding when it was taken back, e.g. `refunded_at` or `updated_at`, read like
    /// [`ConsultationTable::completed_at`]. A row whose value is `NULL` is not reported.
    pub reversed_at: String,
}

impl Reversals {
    /// The variable holding the statuses, comma-separated (`REFUNDED,VOIDED`).
    pub const STATUSES_VAR: &str = "PAYOUTS_REVERSED_STATUSES";
    /// The variable naming the column of the reversal time (`refunded_at`).
    pub const AT_COLUMN_VAR: &str = "PAYOUTS_REVERSED_AT_COLUMN";

    /// Reads [`STATUSES_VAR`](Self::STATUSES_VAR) and [`AT_COLUMN_VAR`](Self::AT_COLUMN_VAR):
    /// `None` when neither is set (the default: no reversals).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when only one is set or the statuses list none.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables read by `var` (a blank value counts as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        match (var(Self::STATUSES_VAR), var(Self::AT_COLUMN_VAR)) {
            (None, None) => Ok(None),
            (Some(statuses), Some(reversed_at)) => {
                let statuses: Vec<String> = statuses
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if statuses.is_empty() {
                    return Err(Error::InvalidInput(format!(
                        "{} lists no status (e.g. REFUNDED,VOIDED)",
                        Self::STATUSES_VAR
                    )));
                }
                Ok(Some(Reversals {
                    statuses,
                    reversed_at: reversed_at.trim().to_string(),
                }))
            }
            (Some(_), None) => Err(Error::InvalidInput(format!(
                "{} is set but {} is not: name the column holding when a consultation was taken back",
                Self::STATUSES_VAR,
                Self::AT_COLUMN_VAR
            ))),
            (None, Some(_)) => Err(Error::InvalidInput(format!(
                "{} is set but {} is not: list the statuses of a consultation taken back",
                Self::AT_COLUMN_VAR,
                Self::STATUSES_VAR
            ))),
        }
    }

    fn validate(&self, completed_status: &str) -> Result<()> {
        identifier("reversed_at column", &self.reversed_at)?;
        if self.statuses.is_empty() {
            return Err(Error::InvalidInput(
                "reversal statuses: list at least one (e.g. REFUNDED)".into(),
            ));
        }
        for status in &self.statuses {
            if status.trim().is_empty() {
                return Err(Error::InvalidInput("reversal statuses: a status is blank".into()));
            }
            if status == completed_status {
                return Err(Error::InvalidInput(format!(
                    "reversal status {status:?} is the completed status: a consultation cannot be both"
                )));
            }
        }
        Ok(())
    }
}

impl Default for ConsultationTable {
    fn default() -> Self {
        ConsultationTable {
            table: "appointments".into(),
            id: "id".into(),
            doctor_id: "doctor_id".into(),
            status: "status".into(),
            completed_at: "completed_at".into(),
            completed_status: "COMPLETED".into(),
            reversals: None,
        }
    }
}

impl ConsultationTable {
    /// Checks what [`SqlConsultationSource::new`] checks, without a pool: every name is a plain
    /// identifier and [`reversals`](Self::reversals), when set, lists usable statuses. For
    /// programs that want to refuse a bad configuration before they connect to anything.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] saying which setting is wrong.
    pub fn validate(&self) -> Result<()> {
        identifier("table", &self.table)?;
        identifier("id column", &self.id)?;
        identifier("doctor id column", &self.doctor_id)?;
        identifier("status column", &self.status)?;
        identifier("completed_at column", &self.completed_at)?;
        match &self.reversals {
            Some(reversals) => reversals.validate(&self.completed_status),
            None => Ok(()),
        }
    }

    /// The status column as compared: in Postgres as text, so an enum column (as an ORM makes)
    /// works too; in SQLite as stored, so its index is used.
    fn status_expr(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::Postgres => format!("CAST({} AS TEXT)", self.status),
            Dialect::Sqlite => self.status.clone(),
        }
    }

    fn query(&self, dialect: Dialect) -> String {
        let ConsultationTable {
            table,
            id,
            doctor_id,
            completed_at,
            ..
        } = self;
        // Doctors in byte order of their id as text, as Rust orders them, whatever the column's type
        // or collation; the calculation needs each doctor's rows together.
        let status = self.status_expr(dialect);
        let completed = instant(completed_at, dialect);
        let doctor_order = match dialect {
            Dialect::Postgres => format!("CAST({doctor_id} AS TEXT) COLLATE \"C\""),
            Dialect::Sqlite => format!("CAST({doctor_id} AS TEXT)"),
        };
        match dialect {
            Dialect::Postgres => format!(
                "SELECT CAST({id} AS TEXT) AS appointment_id, CAST({doctor_id} AS TEXT) AS doctor_id, \
                 {completed} AS completed_at FROM {table} \
                 WHERE {status} = $1 AND {completed_at} >= $2 AND {completed_at} < $3 \
                 ORDER BY {doctor_order}, {completed_at}, CAST({id} AS TEXT)"
            ),
            // One row per doctor, the doctor's consultations in one JSON array in the same order:
            // sqlx hands each SQLite row from its worker thread to the reader one at a time (a
            // thread wake-up per row), so a million rows cost more in hand-offs than in reading.
            Dialect::Sqlite => format!(
                "SELECT doctor_id, json_group_array(json_array(appointment_id, completed_at) \
                     ORDER BY completed_at, appointment_id) AS consultations \
                 FROM (SELECT CAST({id} AS TEXT) AS appointment_id, {doctor_order} AS doctor_id, \
                              {completed} AS completed_at FROM {table} \
                       WHERE {status} = $1 AND {completed_at} >= $2 AND {completed_at} < $3) \
                 GROUP BY doctor_id ORDER BY doctor_id"
            ),
        }
    }

    /// The reversals' query, when the table records them: the window's bounds are `$1` and `$2`,
    /// the statuses `$3` on. One row per reversal, in no particular order.
    fn reversal_query(&self, dialect: Dialect) -> Option<String> {
        let Reversals { statuses, reversed_at } = self.reversals.as_ref()?;
        let ConsultationTable {
            table, id, doctor_id, ..
        } = self;
        let status = self.status_expr(dialect);
        let at = instant(reversed_at, dialect);
        let placeholders: Vec<String> = (0..statuses.len()).map(|i| format!("${}", i + 3)).collect();
        let placeholders = placeholders.join(", ");
        Some(format!(
            "SELECT CAST({id} AS TEXT) AS appointment_id, CAST({doctor_id} AS TEXT) AS doctor_id, \
             {at} AS reversed_at, {status} AS reason FROM {table} \
             WHERE {reversed_at} >= $1 AND {reversed_at} < $2 AND {status} IN ({placeholders})"
        ))
    }
}

/// A host's time column as an instant: Postgres reads a `timestamptz` as it is and a `timestamp` as
/// UTC; SQLite's text is read as it is (see [`ConsultationTable::completed_at`]).
fn instant(column: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Postgres => format!("CAST({column} AS TIMESTAMPTZ)"),
        Dialect::Sqlite => column.to_string(),
    }
}

/// Completed consultations read from the host's own table (see [`ConsultationTable`]), streamed in
/// `ORDER BY doctor_id, completed_at` on one connection while the calculation consumes them.
///
/// ```no_run
/// # async fn example() -> payout_core::Result<()> {
/// use payout_store_sqlx::{ConsultationTable, SqlConsultationSource, SqliteStore};
/// let store = SqliteStore::connect("sqlite://clinic.db?mode=rwc").await?;
/// let source = SqlConsultationSource::new(
///     store.pool().clone(),
///     ConsultationTable { table: "visits".into(), ..Default::default() },
/// )?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqlConsultationSource<P> {
    pool: P,
    sql: Arc<str>,
    completed_status: String,
    /// The reversals' query and its statuses, when the table records reversals.
    reversals: Option<(Arc<str>, Vec<String>)>,
}

impl<P: Db> SqlConsultationSource<P> {
    /// Reads `table` through `pool` (a `SqlitePool` or a `PgPool`). Refuses names that are not plain
    /// identifiers, and a reversal configuration without statuses, with [`Error::InvalidInput`].
    pub fn new(pool: P, table: ConsultationTable) -> Result<Self> {
        table.validate()?;
        let dialect = pool.dialect();
        let reversals = table
            .reversal_query(dialect)
            .zip(table.reversals.as_ref())
            .map(|(sql, r)| (sql.into(), r.statuses.clone()));
        Ok(SqlConsultationSource {
            sql: table.query(dialect).into(),
            completed_status: table.completed_status,
            reversals,
            pool,
        })
    }

    /// The period's bounds as bound values: instants in Postgres; in SQLite the days as text,
    /// which bound any ISO 8601 text of an instant in those days.
    fn bounds(&self, period: Period) -> (crate::db::Value, crate::db::Value) {
        let after_end = period.end.checked_add_days(Days::new(1)).unwrap_or(NaiveDate::MAX);
        match self.pool.dialect() {
            Dialect::Postgres => (period.starts_at().into(), period.ends_before().into()),
            Dialect::Sqlite => (
                period.start.format("%Y-%m-%d").to_string().into(),
                after_end.format("%Y-%m-%d").to_string().into(),
            ),
        }
    }
}

#[async_trait]
impl<P: Db> ConsultationSource for SqlConsultationSource<P> {
    fn completed(&self, period: Period) -> BoxStream<'static, Result<Consultation>> {
        let (from, to) = self.bounds(period);
        let args = Args(vec![self.completed_status.clone().into(), from, to]);
        let pool = self.pool.clone();
        let dialect = pool.dialect();
        let sql = Arc::clone(&self.sql);
        // Rows travel in batches: one channel message (and at most one wake-up of the calculation)
        // per READ_BATCH rows instead of per row.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<Result<Consultation>>>(READ_AHEAD / READ_BATCH);
        // One query, read by a task that runs at most READ_AHEAD rows ahead and stops when the
        // stream is dropped; the stream owns nothing borrowed, so it is `'static`.
        let mut reader = Some(async move {
            let mut rows = pool.fetch_stream(&sql, args);
            let mut batch = Vec::with_capacity(READ_BATCH);
            while let Some(row) = rows.next().await {
                let items = match (row, dialect) {
                    (Ok(r), Dialect::Sqlite) => doctors_consultations(&r),
                    (Ok(r), Dialect::Postgres) => consultation(&r).map(|c| vec![c]),
                    (Err(e), _) => Err(source_err(e)),
                };
                let failed = items.is_err();
                match items {
                    Ok(items) => batch.extend(items.into_iter().map(Ok)),
                    Err(e) => batch.push(Err(e)),
                }
                if batch.len() >= READ_BATCH || failed {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH));
                    if sender.send(full).await.is_err() || failed {
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = sender.send(batch).await;
            }
        });
        futures::stream::poll_fn(move |cx| {
            // Started on first poll, so building the stream needs no runtime.
            if let Some(reader) = reader.take() {
                tokio::spawn(reader);
            }
            receiver.poll_recv(cx)
        })
        .flat_map(futures::stream::iter)
        .boxed()
    }

    /// The rows whose status is one of [`Reversals::statuses`] and whose
    /// [`Reversals::reversed_at`] falls in `window`; none when the table records no reversals.
    fn reversed(&self, window: Period) -> BoxStream<'static, Result<Reversal>> {
        let Some((sql, statuses)) = &self.reversals else {
            return futures::stream::empty().boxed();
        };
        let (from, to) = self.bounds(window);
        let mut args = Args(vec![from, to]);
        args.0.extend(statuses.iter().cloned().map(Value::from));
        let pool = self.pool.clone();
        let sql = Arc::clone(sql);
        // Reversals are few (a refund is the exception) and the calculation reads them whole.
        futures::stream::once(async move { pool.fetch_all(&sql, args).await })
            .flat_map(|rows| {
                let rows: Vec<Result<Reversal>> = match rows {
                    Ok(rows) => rows.iter().map(reversal).collect(),
                    Err(e) => vec![Err(source_err(e))],
                };
                futures::stream::iter(rows)
            })
            .boxed()
    }
}

/// The consultations of one doctor's row of the SQLite query: `doctor_id` and `consultations`, a
/// JSON array of `[appointment id, completed_at]`.
fn doctors_consultations(r: &impl RowExt) -> Result<Vec<Consultation>> {
    let doctor_id: DoctorId = r.text("doctor_id").map_err(source_err)?.into();
    let json = r.text("consultations").map_err(source_err)?;
    let listed: Vec<(String, String)> = serde_json::from_str(&json).map_err(|e| {
        Error::Source(format!(
            "consultations of doctor {doctor_id}: an id or completion time that is not text: {e}"
        ))
    })?;
    listed
        .into_iter()
        .map(|(appointment_id, completed_at)| {
            let completed_at = crate::sqlite_time::parse(&completed_at).ok_or_else(|| {
                Error::Source(format!(
                    "consultation {appointment_id}: completion time {completed_at:?} is not an SQLite time value"
                ))
            })?;
            Ok(Consultation {
                appointment_id,
                doctor_id: doctor_id.clone(),
                completed_at,
            })
        })
        .collect()
}

/// A reversal row; its reason is the status as stored, lower-cased (`REFUNDED` is `refunded`).
fn reversal(r: &impl RowExt) -> Result<Reversal> {
    Ok(Reversal {
        appointment_id: r.text("appointment_id").map_err(source_err)?,
        doctor_id: r.text("doctor_id").map_err(source_err)?.into(),
        reversed_at: r.host_ts("reversed_at").map_err(source_err)?,
        reason: r.text("reason").map_err(source_err)?.to_lowercase(),
    })
}

fn consultation(r: &impl RowExt) -> Result<Consultation> {
    Ok(Consultation {
        appointment_id: r.text("appointment_id").map_err(source_err)?,
        doctor_id: r.text("doctor_id").map_err(source_err)?.into(),
        completed_at: r.host_ts("completed_at").map_err(source_err)?,
    })
}

/// Where the host keeps doctors' payout profiles. Every default is the original system's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientTable {
    /// The table (or `schema.table`). Default `doctor_profiles`.
    pub table: String,
    /// The doctor id column (read as text). Default `doctor_id`.
    pub doctor_id: String,
    /// Display name. Default `name`.
    pub name: String,
    /// Email. Default `email`.
    pub email: String,
    /// Stripe connected account. Default `stripe_account_id`.
    pub stripe_account_id: String,
    /// PayPal email. Default `paypal_payout_email`.
    pub paypal_payout_email: String,
    /// M-Pesa phone. Default `mpesa_phone_number`.
    pub mpesa_phone_number: String,
    /// Bank details as JSON (`{"accountName": ..., "accountNumber": ..., "bankCode": ...}`) in a
    /// text, `json` or `jsonb` column. Default `bank_details`.
    pub bank_details: String,
    /// The method the doctor chose ([`Recipient::preferred_provider`]): a column holding a
    /// provider's name (`MPESA_B2C`, `STRIPE_CONNECT`, ...; empty or NULL for none), if the host
    /// keeps one. Default: none (the original system has no such column).
    pub preferred_provider: Option<String>,
}

impl Default for RecipientTable {
    fn default() -> Self {
        RecipientTable {
            table: "doctor_profiles".into(),
            doctor_id: "doctor_id".into(),
            name: "name".into(),
            email: "email".into(),
            stripe_account_id: "stripe_account_id".into(),
            paypal_payout_email: "paypal_payout_email".into(),
            mpesa_phone_number: "mpesa_phone_number".into(),
            bank_details: "bank_details".into(),
            preferred_provider: None,
        }
    }
}

impl RecipientTable {
    fn validate(&self) -> Result<()> {
        identifier("table", &self.table)?;
        for (what, name) in [
            ("doctor id column", &self.doctor_id),
            ("name column", &self.name),
            ("email column", &self.email),
            ("stripe_account_id column", &self.stripe_account_id),
            ("paypal_payout_email column", &self.paypal_payout_email),
            ("mpesa_phone_number column", &self.mpesa_phone_number),
            ("bank_details column", &self.bank_details),
        ] {
            identifier(what, name)?;
        }
        if let Some(column) = &self.preferred_provider {
            identifier("preferred_provider column", column)?;
        }
        Ok(())
    }

    fn select(&self) -> String {
        format!(
            "SELECT CAST({} AS TEXT) AS doctor_id, {} AS name, {} AS email, {} AS stripe_account_id, \
             {} AS paypal_payout_email, {} AS mpesa_phone_number, CAST({} AS TEXT) AS bank_details, \
             {} AS preferred_provider FROM {}",
            self.doctor_id,
            self.name,
            self.email,
            self.stripe_account_id,
            self.paypal_payout_email,
            self.mpesa_phone_number,
            self.bank_details,
            self.preferred_provider
                .as_deref()
                .map_or_else(|| "CAST(NULL AS TEXT)".to_string(), |c| format!("CAST({c} AS TEXT)")),
            self.table
        )
    }
}

/// Doctors' payout profiles read from the host's own table (see [`RecipientTable`]).
#[derive(Debug, Clone)]
pub struct SqlRecipientDirectory<P> {
    pool: P,
    select: String,
    doctor_id: String,
}

impl<P: Db> SqlRecipientDirectory<P> {
    /// Reads `table` through `pool` (a `SqlitePool` or a `PgPool`). Refuses names that are not plain
    /// identifiers with [`Error::InvalidInput`].
    pub fn new(pool: P, table: RecipientTable) -> Result<Self> {
        table.validate()?;
        Ok(SqlRecipientDirectory {
            select: table.select(),
            doctor_id: table.doctor_id,
            pool,
        })
    }

    /// The id condition: in SQLite the column's affinity converts the bound text, so its index is
    /// used; Postgres compares as text, so an integer id column works too.
    fn id_expr(&self) -> String {
        match self.pool.dialect() {
            Dialect::Sqlite => self.doctor_id.clone(),
            Dialect::Postgres => format!("CAST({} AS TEXT)", self.doctor_id),
        }
    }
}

#[async_trait]
impl<P: Db> RecipientDirectory for SqlRecipientDirectory<P> {
    async fn recipient(&self, doctor_id: &DoctorId) -> Result<Option<Recipient>> {
        Ok(self.recipients(std::slice::from_ref(doctor_id)).await?.pop())
    }

    async fn recipients(&self, doctor_ids: &[DoctorId]) -> Result<Vec<Recipient>> {
        let mut out = Vec::with_capacity(doctor_ids.len());
        for ids in doctor_ids.chunks(IDS_PER_QUERY) {
            let mut args = Args::new();
            let placeholders: Vec<String> = ids.iter().map(|id| args.push(id.as_str())).collect();
            let sql = format!(
                "{} WHERE {} IN ({})",
                self.select,
                self.id_expr(),
                placeholders.join(", ")
            );
            for row in self.pool.fetch_all(&sql, args).await.map_err(source_err)? {
                out.push(recipient(&row)?);
            }
        }
        Ok(out)
    }
}

fn recipient(r: &impl RowExt) -> Result<Recipient> {
    let doctor_id: DoctorId = r.text("doctor_id").map_err(source_err)?.into();
    let bank_details = match r.opt_text("bank_details").map_err(source_err)? {
        None => None,
        Some(json) if json.trim().is_empty() || json.trim() == "null" => None,
        // The parser's message could quote an account number: say only which doctor.
        Some(json) => Some(serde_json::from_str::<BankAccount>(&json).map_err(|_| {
            Error::Source(format!(
                "doctor {doctor_id}: bank_details is not a bank account in JSON"
            ))
        })?),
    };
    let preferred_provider = match r.opt_text("preferred_provider").map_err(source_err)? {
        Some(name) if !name.trim().is_empty() => Some(
            name.parse::<Provider>()
                .map_err(|e| Error::Source(format!("doctor {doctor_id}: preferred provider: {e}")))?,
        ),
        _ => None,
    };
    Ok(Recipient {
        preferred_provider,
        name: r.opt_text("name").map_err(source_err)?.unwrap_or_default(),
        email: r.opt_text("email").map_err(source_err)?.unwrap_or_default(),
        stripe_account_id: r.opt_text("stripe_account_id").map_err(source_err)?,
        paypal_payout_email: r.opt_text("paypal_payout_email").map_err(source_err)?,
        mpesa_phone_number: r.opt_text("mpesa_phone_number").map_err(source_err)?,
        bank_details,
        doctor_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_identifiers_pass() {
        for ok in ["appointments", "public.appointments", "_x1", "Completed_At"] {
            assert!(identifier("t", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "a b",
            "a;DROP TABLE payouts",
            "a--",
            "\"quoted\"",
            "a.",
            "a..b",
            "x)",
            "status = 'PAID' OR 1",
        ] {
            assert!(identifier("t", bad).is_err(), "{bad}");
        }
        let bad = ConsultationTable {
            status: "status; --".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
