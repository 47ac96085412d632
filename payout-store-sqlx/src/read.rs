//! The reading half of the store, written once for both dialects (streams and exports are in
//! [`export`](crate::export)).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use payout_core::domain::{AuditEntry, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider, RunId};
use payout_core::provider::EventReference;
use payout_core::store::{CarryOver, Cursor, Page, PayoutFilter, PayoutPage};
use payout_core::{Error, Result};

use crate::db::{Args, Db, Dialect, RowExt, args};
use crate::error::db;
use crate::rows::{
    self, ATTEMPT_COLUMNS, AUDIT_COLUMNS, CARRY_OVER_COLUMNS, CARRY_OVER_IS_OPEN, ITEM_COLUMNS, PAYOUT_READ_COLUMNS,
};

/// The most ids one read of [`payouts_with_attempts`] binds.
const IDS_PER_READ: usize = 500;

/// The list order: newest first, ties broken by id.
pub(crate) const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

pub(crate) async fn get<D: Db>(d: &D, id: &PayoutId) -> Result<Payout> {
    let sql = format!("SELECT {PAYOUT_READ_COLUMNS} FROM payouts WHERE id = $1");
    match d.fetch_optional(&sql, args![id.as_str()]).await.map_err(db)? {
        Some(row) => rows::payout(&row),
        None => Err(Error::NotFound(id.clone())),
    }
}

/// `NotFound` unless the payout exists.
async fn require<D: Db>(d: &D, id: &PayoutId) -> Result<()> {
    let found = d
        .fetch_optional("SELECT 1 AS one FROM payouts WHERE id = $1", args![id.as_str()])
        .await
        .map_err(db)?;
    found.map(|_| ()).ok_or_else(|| Error::NotFound(id.clone()))
}

/// The condition, on a `payouts` row (its columns named with `prefix`: `""` or `"p."`), of a hold
/// that is on: one is stored and it has no `releasedAt` (the JSON of `Hold`). The partial index
/// `payouts_with_hold` covers it; a run's member rows keep its value as `held`.
pub(crate) fn hold_is_on(dialect: Dialect, prefix: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("({prefix}hold IS NOT NULL AND ({prefix}hold::jsonb ->> 'releasedAt') IS NULL)"),
        Dialect::Sqlite => format!("({prefix}hold IS NOT NULL AND json_extract({prefix}hold, '$.releasedAt') IS NULL)"),
    }
}

/// The `WHERE` clause of `filter` on `payouts` (empty when it filters nothing), its values pushed
/// onto `args`.
pub(crate) fn filter_clause(
    dialect: Dialect,
    filter: &PayoutFilter,
    after: Option<&Cursor>,
    args: &mut Args,
) -> String {
    let mut conditions = Vec::new();
    if let Some(run) = &filter.run {
        let run = args.push(run.as_str());
        conditions.push(match dialect {
            // The members first, then each one's row by primary key: with `IN (SELECT ...)` Postgres
            // walked the whole list newest first probing each payout's membership, fast for the
            // newest run and 200 ms for a run of 10,000 older payouts among 200,000 (17 ms this way,
            // whatever the run's age).
            Dialect::Postgres => {
                format!("id = ANY(ARRAY(SELECT payout_id FROM payout_run_members WHERE run_id = {run}))")
            }
            Dialect::Sqlite => format!("id IN (SELECT payout_id FROM payout_run_members WHERE run_id = {run})"),
        });
    }
    match filter.held {
        Some(true) => conditions.push(hold_is_on(dialect, "")),
        Some(false) => conditions.push(format!("NOT {}", hold_is_on(dialect, ""))),
        None => {}
    }
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", args.push(status.as_str())));
    }
    if let Some(doctor) = &filter.doctor_id {
        conditions.push(format!("doctor_id = {}", args.push(doctor.as_str())));
    }
    if let Some(provider) = filter.provider {
        conditions.push(format!("provider = {}", args.push(provider.as_str())));
    }
    if let Some(from) = filter.created_from {
        conditions.push(format!("created_at >= {}", args.push(start_of(from))));
    }
    if let Some(to) = filter.created_to {
        // Through the end of that day: before the next one starts.
        if let Some(next) = to.checked_add_days(Days::new(1)) {
            conditions.push(format!("created_at < {}", args.push(start_of(next))));
        }
    }
    if let Some(c) = after {
        let at = args.push(c.created_at);
        let id = args.push(c.id.as_str());
        conditions.push(format!("(created_at, id) < ({at}, {id})"));
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

pub(crate) async fn list<D: Db>(d: &D, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
    let total = count(d, filter).await?;
    let mut args = Args::new();
    let (limit_ph, skip_ph) = limit_and_skip(page, &mut args);
    let sql = if let Some(run) = filter.run.as_ref().filter(|_| by_members(filter)) {
        // The page is chosen among the run's member rows, in the list's order by their index, and
        // only its payouts are read: a run's page costs its own rows, not the run's size.
        let members = member_clause(run, filter, page.after.as_ref(), &mut args);
        let chosen = format!(
            "SELECT payout_id FROM payout_run_members {members} \
             ORDER BY created_at DESC, payout_id DESC LIMIT {limit_ph} OFFSET {skip_ph}"
        );
        let ids = match d.dialect() {
            Dialect::Postgres => format!("id = ANY(ARRAY({chosen}))"),
            Dialect::Sqlite => format!("id IN ({chosen})"),
        };
        format!("SELECT {PAYOUT_READ_COLUMNS} FROM payouts WHERE {ids} {NEWEST_FIRST}")
    } else {
        let clause = filter_clause(d.dialect(), filter, page.after.as_ref(), &mut args);
        format!("SELECT {PAYOUT_READ_COLUMNS} FROM payouts {clause} {NEWEST_FIRST} LIMIT {limit_ph} OFFSET {skip_ph}")
    };
    let payouts = d
        .fetch_all(&sql, args)
        .await
        .map_err(db)?
        .iter()
        .map(rows::payout)
        .collect::<Result<Vec<_>>>()?;
    let limit = page.limit.min(Page::MAX_LIMIT);
    let next = if limit > 0 && payouts.len() == limit as usize {
        payouts.last().map(Cursor::after)
    } else {
        None
    };
    Ok(PayoutPage { payouts, total, next })
}

/// The `LIMIT` and `OFFSET` placeholders of `page` (no offset after a cursor).
fn limit_and_skip(page: &Page, args: &mut Args) -> (String, String) {
    let skip = if page.after.is_some() {
        0
    } else {
        i64::try_from(page.skip).unwrap_or(i64::MAX)
    };
    let limit = args.push(i64::from(page.limit.min(Page::MAX_LIMIT)));
    (limit, args.push(skip))
}

/// Whether a run's payouts in `filter` are found among its member rows alone
/// (`payout_run_members` keeps each one's status, creation time and hold; not its doctor or
/// provider).
fn by_members(filter: &PayoutFilter) -> bool {
    filter.doctor_id.is_none() && filter.provider.is_none()
}

/// The `WHERE` clause, on `payout_run_members`, of `run`'s members in `filter` (see
/// [`by_members`]), its values pushed onto `args`.
fn member_clause(run: &RunId, filter: &PayoutFilter, after: Option<&Cursor>, args: &mut Args) -> String {
    let mut conditions = vec![format!("run_id = {}", args.push(run.as_str()))];
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", args.push(status.as_str())));
    }
    match filter.held {
        Some(true) => conditions.push("held".to_string()),
        Some(false) => conditions.push("NOT held".to_string()),
        None => {}
    }
    if let Some(from) = filter.created_from {
        conditions.push(format!("created_at >= {}", args.push(start_of(from))));
    }
    if let Some(next) = filter.created_to.and_then(|to| to.checked_add_days(Days::new(1))) {
        conditions.push(format!("created_at < {}", args.push(start_of(next))));
    }
    if let Some(c) = after {
        let at = args.push(c.created_at);
        let id = args.push(c.id.as_str());
        conditions.push(format!("(created_at, payout_id) < ({at}, {id})"));
    }
    format!("WHERE {}", conditions.join(" AND "))
}

/// How many payouts match `filter`.
///
/// Whole months come from `payout_tallies` (kept by triggers, see the migration), so a broad
/// filter reads a few hundred tallies instead of counting up to every payout; the days of a
/// partial month at either end of a date range, and a doctor's payouts (few, and not tallied), are
/// counted in `payouts` through their indexes. A run's members by status and provider come from
/// the run's own tallies (`payout_run_tallies`); a run's narrowed by hold or date are counted
/// among its member rows (the held ones through their partial index), by doctor or provider too
/// in `payouts`, as are held payouts outside a run.
async fn count<D: Db>(d: &D, filter: &PayoutFilter) -> Result<u64> {
    let narrowed = filter.doctor_id.is_some()
        || filter.held.is_some()
        || filter.created_from.is_some()
        || filter.created_to.is_some();
    if let Some(run) = &filter.run {
        if !narrowed {
            return count_run_tallies(d, run.as_str(), filter).await;
        }
        if by_members(filter) {
            let mut args = Args::new();
            let sql = format!(
                "SELECT COUNT(*) AS n FROM payout_run_members {}",
                member_clause(run, filter, None, &mut args)
            );
            return read_count(d, &sql, args).await;
        }
    }
    if filter.doctor_id.is_some() || filter.held.is_some() || filter.run.is_some() {
        return count_rows(d, filter).await;
    }
    // Tallied: the months from `full_from` (inclusive) to `full_to` (exclusive); `None` is open.
    let full_from = filter.created_from.map(|from| {
        if from.day() == 1 {
            from
        } else {
            first_of_month(from)
                .checked_add_months(Months::new(1))
                .unwrap_or(NaiveDate::MAX)
        }
    });
    // The day after `created_to`; without one (`NaiveDate::MAX`) the range is open, as in `filter_clause`.
    let end = filter.created_to.and_then(|to| to.checked_add_days(Days::new(1)));
    let full_to = end.map(first_of_month);
    if matches!((full_from, full_to), (Some(a), Some(b)) if a >= b) {
        return count_rows(d, filter).await;
    }
    let mut total = count_tallies(d, filter, full_from, full_to).await?;
    if let (Some(from), Some(a)) = (filter.created_from, full_from) {
        if from < a {
            total += count_rows(d, &days(filter, from, a)).await?;
        }
    }
    if let (Some(b), Some(end)) = (full_to, end) {
        if b < end {
            total += count_rows(d, &days(filter, b, end)).await?;
        }
    }
    Ok(total)
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// `filter` narrowed to the days from `from` up to (not including) `until`.
fn days(filter: &PayoutFilter, from: NaiveDate, until: NaiveDate) -> PayoutFilter {
    PayoutFilter {
        created_from: Some(from),
        created_to: until.pred_opt(),
        ..filter.clone()
    }
}

/// `COUNT(*)` of the payouts matching `filter`.
async fn count_rows<D: Db>(d: &D, filter: &PayoutFilter) -> Result<u64> {
    let mut args = Args::new();
    let sql = format!(
        "SELECT COUNT(*) AS n FROM payouts {}",
        filter_clause(d.dialect(), filter, None, &mut args)
    );
    read_count(d, &sql, args).await
}

/// The members of `run` in `filter`'s status and provider, from the run's tallies.
async fn count_run_tallies<D: Db>(d: &D, run: &str, filter: &PayoutFilter) -> Result<u64> {
    let mut args = Args::new();
    let mut conditions = vec![format!("run_id = {}", args.push(run))];
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", args.push(status.as_str())));
    }
    if let Some(provider) = filter.provider {
        conditions.push(format!("provider = {}", args.push(provider.as_str())));
    }
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM payout_run_tallies WHERE {}",
        conditions.join(" AND ")
    );
    read_count(d, &sql, args).await
}

/// The tallied payouts of `filter`'s status and provider created in the months from `from` up to
/// (not including) `until`.
async fn count_tallies<D: Db>(
    d: &D,
    filter: &PayoutFilter,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
) -> Result<u64> {
    let mut args = Args::new();
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", args.push(status.as_str())));
    }
    if let Some(provider) = filter.provider {
        conditions.push(format!("provider = {}", args.push(provider.as_str())));
    }
    if let Some(from) = from {
        conditions.push(format!("month >= {}", args.push(from)));
    }
    if let Some(until) = until {
        conditions.push(format!("month < {}", args.push(until)));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // SUM of BIGINT is NUMERIC in Postgres: cast back.
    let sql = format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM payout_tallies {clause}");
    read_count(d, &sql, args).await
}

async fn read_count<D: Db>(d: &D, sql: &str, args: Args) -> Result<u64> {
    Ok(match d.fetch_optional(sql, args).await.map_err(db)? {
        Some(row) => u64::try_from(row.int("n").map_err(db)?).unwrap_or(0),
        None => 0,
    })
}

/// The rows `sql` reads for payout `id` (`$1`), each read by `read`.
async fn of_payout<D: Db, T>(d: &D, id: &PayoutId, sql: &str, read: fn(&D::Row) -> Result<T>) -> Result<Vec<T>> {
    d.fetch_all(sql, args![id.as_str()])
        .await
        .map_err(db)?
        .iter()
        .map(read)
        .collect()
}

pub(crate) async fn items<D: Db>(d: &D, id: &PayoutId) -> Result<Vec<PayoutItem>> {
    require(d, id).await?;
    let sql = format!("SELECT {ITEM_COLUMNS} FROM payout_items WHERE payout_id = $1 ORDER BY position");
    of_payout(d, id, &sql, rows::item).await
}

pub(crate) async fn attempts<D: Db>(d: &D, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt_no");
    let attempts = of_payout(d, id, &sql, rows::attempt).await?;
    // An attempt's foreign key proves its payout exists; only an empty answer needs the check (one
    // round trip fewer on a webhook's path).
    if attempts.is_empty() {
        require(d, id).await?;
    }
    Ok(attempts)
}

pub(crate) async fn find_attempt<D: Db>(
    d: &D,
    provider: Provider,
    reference: &EventReference,
) -> Result<Option<PayoutAttempt>> {
    let column = match reference {
        EventReference::ProviderReference(_) => "provider_reference",
        EventReference::IdempotencyKey(_) => "idempotency_key",
        other => return Err(Error::NotSupported(format!("finding an attempt by {other:?}"))),
    };
    // Several attempts may share a provider reference (a batch id): the newest wins.
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payout_attempts WHERE provider = $1 AND {column} = $2 \
         ORDER BY created_at DESC, payout_id DESC, attempt_no DESC LIMIT 1"
    );
    d.fetch_optional(&sql, args![provider.as_str(), reference.as_str()])
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::attempt)
        .transpose()
}

pub(crate) async fn batch_attempts<D: Db>(d: &D, provider: Provider, batch_id: &str) -> Result<Vec<PayoutAttempt>> {
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payout_attempts WHERE provider = $1 AND batch_id = $2 ORDER BY idempotency_key"
    );
    d.fetch_all(&sql, args![provider.as_str(), batch_id])
        .await
        .map_err(db)?
        .iter()
        .map(rows::attempt)
        .collect()
}

pub(crate) async fn webhook_event_seen<D: Db>(d: &D, provider: Provider, event_id: &str) -> Result<bool> {
    let row = d
        .fetch_optional(
            "SELECT 1 AS one FROM webhook_events WHERE provider = $1 AND event_id = $2",
            args![provider.as_str(), event_id],
        )
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

pub(crate) async fn audit_trail<D: Db>(d: &D, id: &PayoutId) -> Result<Vec<AuditEntry>> {
    require(d, id).await?;
    // The identity column is the append order.
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_entries WHERE payout_id = $1 ORDER BY id");
    of_payout(d, id, &sql, rows::audit).await
}

/// Never consumed, or consumed by a payout cancelled since; returned with `consumed_by: None`.
pub(crate) async fn open_carry_overs<D: Db>(d: &D, before: NaiveDate) -> Result<Vec<CarryOver>> {
    let sql = format!(
        "SELECT {CARRY_OVER_COLUMNS} FROM carry_overs WHERE period_end < $1 AND {CARRY_OVER_IS_OPEN} \
         ORDER BY doctor_id, period_start, period_end"
    );
    d.fetch_all(&sql, args![before])
        .await
        .map_err(db)?
        .iter()
        .map(|row| rows::carry_over(row).map(|c| CarryOver { consumed_by: None, ..c }))
        .collect()
}

/// See [`BulkPayoutStore::payouts_with_attempts`](payout_core::store::BulkPayoutStore::payouts_with_attempts):
/// per [`IDS_PER_READ`] ids one query, the payouts joined to their attempts, so a payout and its
/// attempts come from one snapshot (and one id costs one round trip).
pub(crate) async fn payouts_with_attempts<D: Db>(d: &D, ids: &[PayoutId]) -> Result<Vec<(Payout, Vec<PayoutAttempt>)>>
where
    D::Row: Sync,
{
    let mut seen = HashSet::with_capacity(ids.len());
    let unique: Vec<&PayoutId> = ids.iter().filter(|id| seen.insert(*id)).collect();
    let payout_columns = qualified("p.", "", PAYOUT_READ_COLUMNS);
    let attempt_columns = qualified("a.", ATTEMPT_PREFIX, ATTEMPT_COLUMNS);
    let mut found: HashMap<PayoutId, (Payout, Vec<PayoutAttempt>)> = HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(IDS_PER_READ) {
        let mut args = Args::new();
        let list: Vec<String> = chunk.iter().map(|id| args.push(id.as_str())).collect();
        let sql = format!(
            "SELECT {payout_columns}, {attempt_columns} FROM payouts p \
             LEFT JOIN payout_attempts a ON a.payout_id = p.id \
             WHERE p.id IN ({}) ORDER BY p.id, a.attempt_no",
            list.join(", ")
        );
        for row in &d.fetch_all(&sql, args).await.map_err(db)? {
            let attempts = match found.entry(PayoutId::new(row.text("id").map_err(db)?)) {
                std::collections::hash_map::Entry::Occupied(e) => &mut e.into_mut().1,
                std::collections::hash_map::Entry::Vacant(e) => &mut e.insert((rows::payout(row)?, Vec::new())).1,
            };
            let attempt = Prefixed(row);
            // A payout without attempts comes once, with NULL attempt columns.
            if attempt.opt_text("payout_id").map_err(db)?.is_some() {
                attempts.push(rows::attempt(&attempt)?);
            }
        }
    }
    Ok(unique.into_iter().filter_map(|id| found.remove(id)).collect())
}

/// What the attempt columns of a joined read are named after: `a_attempt_no`, ...
pub(crate) const ATTEMPT_PREFIX: &str = "a_";

/// `columns` (`"x, y"`) as `"{table}x AS {alias}x, ..."` (no alias when `alias` is empty).
pub(crate) fn qualified(table: &str, alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(str::trim)
        .map(|c| {
            if alias.is_empty() {
                format!("{table}{c}")
            } else {
                format!("{table}{c} AS {alias}{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row read through the [`ATTEMPT_PREFIX`]ed names of its attempt columns, so [`rows::attempt`]
/// reads a joined row as it reads a plain one.
pub(crate) struct Prefixed<'a, R>(pub(crate) &'a R);

impl<R: RowExt + Sync> RowExt for Prefixed<'_, R> {
    fn text(&self, col: &str) -> std::result::Result<String, sqlx::Error> {
        self.0.text(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn opt_text(&self, col: &str) -> std::result::Result<Option<String>, sqlx::Error> {
        self.0.opt_text(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn int(&self, col: &str) -> std::result::Result<i64, sqlx::Error> {
        self.0.int(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn date(&self, col: &str) -> std::result::Result<chrono::NaiveDate, sqlx::Error> {
        self.0.date(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn opt_date(&self, col: &str) -> std::result::Result<Option<chrono::NaiveDate>, sqlx::Error> {
        self.0.opt_date(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn ts(&self, col: &str) -> std::result::Result<DateTime<Utc>, sqlx::Error> {
        self.0.ts(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn opt_ts(&self, col: &str) -> std::result::Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.0.opt_ts(&format!("{ATTEMPT_PREFIX}{col}"))
    }
    fn host_ts(&self, col: &str) -> std::result::Result<DateTime<Utc>, sqlx::Error> {
        self.0.host_ts(&format!("{ATTEMPT_PREFIX}{col}"))
    }
}
