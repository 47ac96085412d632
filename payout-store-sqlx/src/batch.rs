//! Many payouts at once: [`apply_all`] writes a batch of changes in one statement per few hundred
//! (Postgres), and [`payouts_with_attempts`] reads a batch of payouts with their attempts in two
//! queries per few hundred. The bulk trigger of a batching provider uses both, so its cost in round
//! trips and commits does not grow with one per payout.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};

use payout_core::domain::{Payout, PayoutAttempt, PayoutId};
use payout_core::store::PayoutChange;
use payout_core::{Error, Result};

use chrono::{DateTime, Utc};

use crate::db::{Args, Db, Dialect, RowExt, Value};
use crate::error::db;
use crate::rows::{self, ATTEMPT_COLUMNS, PAYOUT_COLUMNS};
use crate::write;

/// The payouts one statement changed, by position among its changes.
type Applied = HashMap<usize, Payout>;

/// The most changes one statement of [`apply_all`] carries.
const CHANGES_PER_STATEMENT: usize = 500;

/// How many statements of one [`apply_all`] run at once.
const STATEMENTS_AT_ONCE: usize = 2;

/// The most ids one read of [`payouts_with_attempts`] binds.
const IDS_PER_READ: usize = 500;

/// See [`PayoutStore::parallel_writes`](payout_core::store::PayoutStore::parallel_writes): Postgres
/// runs transactions side by side (a period calculation written two chunks at a time took 0.9x the
/// time of hand-written SQL instead of 1.4x); SQLite has one writer at a time, and a second
/// transaction would only wait for the lock.
pub(crate) fn parallel_writes<D: Db>(d: &D) -> usize {
    match d.dialect() {
        Dialect::Postgres => 2,
        Dialect::Sqlite => 1,
    }
}

/// See [`PayoutStore::apply_all`](payout_core::store::PayoutStore::apply_all).
///
/// On Postgres, changes go in statements of up to [`CHANGES_PER_STATEMENT`], [`STATEMENTS_AT_ONCE`]
/// at a time, each one statement of data-modifying steps that does for every change what
/// [`write::apply`] does for one (see [`apply_chunk`]): one round trip and one commit for hundreds of
/// changes. A change the statement
/// refuses (its version or status moved on) is applied alone afterwards, which refuses it again with
/// the precise reason. A statement that fails as a whole (a duplicate event or attempt key, a missing
/// attempt, a lost connection) writes nothing, and its changes are then applied one by one, so each
/// gets its own answer. SQLite applies them one by one: there a round trip is a function call.
pub(crate) async fn apply_all<D: Db>(d: &D, changes: Vec<PayoutChange>) -> Vec<Result<Payout>> {
    let n = changes.len();
    let mut results: Vec<Option<Result<Payout>>> = (0..n).map(|_| None).collect();
    let mut alone = Vec::new();
    let mut batched = Vec::new();
    if d.dialect() == Dialect::Postgres {
        let mut ids = HashSet::new();
        for (i, change) in changes.iter().enumerate() {
            // A change that updates the attempt it inserts needs two steps in order, and two changes
            // of one payout in one statement would both join its one updated row: those go alone.
            let two_steps = change.new_attempt.is_some() && change.attempt_update.is_some();
            if write::check_change_ids(change).is_ok() && !two_steps && ids.insert(&change.payout_id) {
                batched.push(i);
            } else {
                alone.push(i);
            }
        }
    } else {
        alone.extend(0..n);
    }

    // Statements of a fixed text, a few at a time: the changes are of distinct payouts, so they do
    // not wait on each other, and Postgres works on more than one at once.
    let pending: Vec<BoxFuture<'_, (&[usize], Result<Applied>)>> = batched
        .chunks(CHANGES_PER_STATEMENT)
        .map(|chunk| {
            let members: Vec<&PayoutChange> = chunk.iter().map(|&i| &changes[i]).collect();
            async move { (chunk, apply_chunk(d, &members).await) }.boxed()
        })
        .collect();
    let statements: Vec<_> = futures::stream::iter(pending)
        .buffer_unordered(STATEMENTS_AT_ONCE)
        .collect()
        .await;
    for (chunk, outcome) in statements {
        match outcome {
            Ok(mut applied) => {
                for (k, &i) in chunk.iter().enumerate() {
                    match applied.remove(&k) {
                        Some(p) => results[i] = Some(Ok(p)),
                        None => alone.push(i),
                    }
                }
            }
            Err(_) => alone.extend_from_slice(chunk),
        }
    }
    alone.sort_unstable();
    for i in alone {
        results[i] = Some(write::apply(d, changes[i].clone()).await);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Store("a change of the batch was lost".into()))))
        .collect()
}

/// One value of a batch row, before the rows become arrays.
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Ts(Option<DateTime<Utc>>),
}

fn text(v: Option<impl Into<String>>) -> Cell {
    Cell::Text(v.map(Into::into))
}

/// A batch's rows as one array per column, so a statement's text and its number of bound values do
/// not grow with the batch: it is prepared once and planned like any other statement.
#[derive(Default)]
struct Columns(Vec<Value>);

impl Columns {
    /// No rows yet, in columns of the types of `row`'s cells.
    fn shaped(row: &[Cell]) -> Self {
        Columns(
            row.iter()
                .map(|c| match c {
                    Cell::Text(_) => Value::TextArray(Vec::new()),
                    Cell::Int(_) => Value::IntArray(Vec::new()),
                    Cell::Ts(_) => Value::TsArray(Vec::new()),
                })
                .collect(),
        )
    }

    /// Appends a row; every row has the same cells in the same order (the first one sets them).
    fn push(&mut self, row: Vec<Cell>) {
        if self.0.is_empty() {
            *self = Columns::shaped(&row);
        }
        debug_assert_eq!(row.len(), self.0.len(), "every row has the same cells");
        for (column, cell) in self.0.iter_mut().zip(row) {
            match (column, cell) {
                (Value::TextArray(a), Cell::Text(v)) => a.push(v),
                (Value::IntArray(a), Cell::Int(v)) => a.push(v),
                (Value::TsArray(a), Cell::Ts(v)) => a.push(v),
                _ => debug_assert!(false, "a cell of another type than its column"),
            }
        }
    }

    /// Binds the arrays and returns the arguments of `unnest(...)` that read them, in column order.
    fn bind(self, args: &mut Args) -> String {
        let mut out = Vec::with_capacity(self.0.len());
        for column in self.0 {
            let cast = match &column {
                Value::IntArray(_) => "BIGINT[]",
                Value::TsArray(_) => "TIMESTAMPTZ[]",
                _ => "TEXT[]",
            };
            out.push(format!("{}::{cast}", args.push(column)));
        }
        out.join(", ")
    }
}

/// One statement that applies `changes` (distinct payouts; Postgres) and returns the payouts it
/// changed, by position in `changes`. The changes and their audit entries are bound as arrays
/// ([`Columns`]). The steps, each joined to the changes whose payout update took (`p`), so a
/// refused change writes nothing:
///
/// 1. `c`: the changes, one row each (`unnest`);
/// 2. `p`: the conditional update of every payout (`UPDATE ... FROM c`), the race's referee;
/// 3. `e`, `a`, `u`: the webhook events, new attempts and attempt updates of the changes in `p`;
/// 4. `au`: their audit entries, in order;
/// 5. the final `SELECT` fails the whole statement (`payouts_require`) if an attempt update found
///    no attempt, as a duplicate event or attempt key already did with a unique violation.
async fn apply_chunk<D: Db>(d: &D, changes: &[&PayoutChange]) -> Result<Applied> {
    let mut rows = Columns::default();
    let mut audits = Columns::shaped(&[
        Cell::Int(None),
        Cell::Int(None),
        Cell::Text(None),
        Cell::Ts(None),
        Cell::Text(None),
        Cell::Text(None),
        Cell::Text(None),
        Cell::Text(None),
    ]);
    for (k, change) in changes.iter().enumerate() {
        let k = k as i64;
        let patch = &change.patch;
        let event = change.webhook_event.as_ref();
        let attempt = change.new_attempt.as_ref();
        let (a_outcome, a_reason) = attempt.map(|a| rows::outcome_parts(&a.outcome)).unzip();
        let update = change.attempt_update.as_ref();
        let (u_outcome, u_reason) = update.map(|u| rows::outcome_parts(&u.outcome)).unzip();
        rows.push(vec![
            Cell::Int(Some(k)),
            text(Some(change.payout_id.as_str())),
            Cell::Int(Some(change.expected_version)),
            text(Some(change.expected_status.as_str())),
            text(change.new_status.map(|s| s.as_str())),
            text(patch.provider.map(|p| p.as_str())),
            text(patch.provider_reference.clone()),
            text(patch.notes.clone()),
            text(patch.approved_by.clone()),
            Cell::Ts(patch.processed_at),
            Cell::Ts(Some(change.at)),
            text(event.map(|e| e.provider.as_str())),
            text(event.map(|e| e.event_id.as_str())),
            text(event.map(|e| e.event_type.as_str())),
            Cell::Ts(event.map(|e| e.received_at)),
            Cell::Int(attempt.map(|a| i64::from(a.attempt_no))),
            text(attempt.map(|a| a.provider.as_str())),
            text(attempt.map(|a| a.idempotency_key.as_str())),
            text(attempt.map(|a| a.request_summary.as_str())),
            text(a_outcome),
            text(a_reason.flatten()),
            text(attempt.and_then(|a| a.provider_reference.clone())),
            text(attempt.and_then(|a| a.error.clone())),
            Cell::Ts(attempt.map(|a| a.created_at)),
            Cell::Ts(attempt.map(|a| a.updated_at)),
            Cell::Int(update.map(|u| i64::from(u.attempt_no))),
            text(u_outcome),
            text(u_reason.flatten()),
            text(update.and_then(|u| u.provider_reference.clone())),
            text(update.and_then(|u| u.error.clone())),
        ]);
        for (n, entry) in change.audit.iter().enumerate() {
            audits.push(vec![
                Cell::Int(Some(k)),
                Cell::Int(Some(n as i64)),
                text(Some(entry.actor.as_str())),
                Cell::Ts(Some(entry.at)),
                text(Some(entry.action.as_str())),
                text(entry.from.map(|s| s.as_str())),
                text(entry.to.map(|s| s.as_str())),
                text(Some(entry.detail.as_str())),
            ]);
        }
    }
    let mut args = Args::new();
    let changes_in = rows.bind(&mut args);
    let audits_in = audits.bind(&mut args);
    let sql = format!(
        "WITH c AS (SELECT * FROM unnest({changes_in}) \
                 AS c (c_i, c_id, c_version, c_status, c_new_status, c_provider, c_reference, c_notes, \
                       c_approved_by, c_processed_at, c_at, c_e_provider, c_e_id, c_e_type, c_e_at, c_a_no, \
                       c_a_provider, c_a_key, c_a_summary, c_a_outcome, c_a_reason, c_a_reference, c_a_error, \
                       c_a_created, c_a_updated, c_u_no, c_u_outcome, c_u_reason, c_u_reference, c_u_error)), \
         p AS (UPDATE payouts SET \
                 status = COALESCE(c_new_status, status), \
                 provider = COALESCE(c_provider, provider), \
                 provider_reference = COALESCE(c_reference, provider_reference), \
                 notes = COALESCE(c_notes, notes), \
                 approved_by = COALESCE(c_approved_by, approved_by), \
                 processed_at = COALESCE(c_processed_at, processed_at), \
                 updated_at = c_at, \
                 version = version + 1 \
               FROM c WHERE id = c_id AND version = c_version AND status = c_status \
               RETURNING c_i, {PAYOUT_COLUMNS}), \
         e AS (INSERT INTO webhook_events (provider, event_id, payout_id, event_type, received_at) \
               SELECT c_e_provider, c_e_id, c_id, c_e_type, c_e_at FROM p JOIN c USING (c_i) \
               WHERE c_e_id IS NOT NULL RETURNING 1), \
         a AS (INSERT INTO payout_attempts ({ATTEMPT_COLUMNS}) \
               SELECT c_id, c_a_no, c_a_provider, c_a_key, c_a_summary, c_a_outcome, c_a_reason, c_a_reference, \
                      c_a_error, c_a_created, c_a_updated \
               FROM p JOIN c USING (c_i) WHERE c_a_no IS NOT NULL RETURNING 1), \
         u AS (UPDATE payout_attempts t SET outcome = c_u_outcome, outcome_reason = c_u_reason, \
                      provider_reference = COALESCE(c_u_reference, t.provider_reference), \
                      error = COALESCE(c_u_error, t.error), updated_at = c_at \
               FROM p JOIN c USING (c_i) WHERE t.payout_id = c_id AND t.attempt_no = c_u_no \
               RETURNING c_i), \
         au AS (INSERT INTO audit_entries ({audit_columns}) \
               SELECT p.id, v_actor, v_at, v_action, v_from, v_to, v_detail \
               FROM unnest({audits_in}) AS v (v_i, v_n, v_actor, v_at, v_action, v_from, v_to, v_detail) \
               JOIN p ON p.c_i = v_i ORDER BY v_i, v_n RETURNING 1) \
         SELECT p.*, payouts_require(c_u_no IS NULL OR EXISTS (SELECT 1 FROM u WHERE u.c_i = p.c_i), \
                                     'an attempt update of the batch found no attempt') AS attempt_found \
         FROM p JOIN c USING (c_i)",
        audit_columns = rows::AUDIT_COLUMNS,
    );
    let returned = d.fetch_all(&sql, args).await.map_err(db)?;
    let mut applied = HashMap::with_capacity(returned.len());
    for row in &returned {
        let k = usize::try_from(row.int("c_i").map_err(db)?).map_err(|e| Error::Store(e.to_string()))?;
        applied.insert(k, rows::payout(row)?);
    }
    Ok(applied)
}

/// See [`PayoutStore::payouts_with_attempts`](payout_core::store::PayoutStore::payouts_with_attempts):
/// per [`IDS_PER_READ`] ids one query, the payouts joined to their attempts, so a payout and its
/// attempts come from one snapshot (and one id costs one round trip).
pub(crate) async fn payouts_with_attempts<D: Db>(d: &D, ids: &[PayoutId]) -> Result<Vec<(Payout, Vec<PayoutAttempt>)>>
where
    D::Row: Sync,
{
    let mut seen = HashSet::with_capacity(ids.len());
    let unique: Vec<&PayoutId> = ids.iter().filter(|id| seen.insert(*id)).collect();
    let payout_columns = qualified("p.", "", PAYOUT_COLUMNS);
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
const ATTEMPT_PREFIX: &str = "a_";

/// `columns` (`"x, y"`) as `"{table}x AS {alias}x, ..."` (no alias when `alias` is empty).
fn qualified(table: &str, alias: &str, columns: &str) -> String {
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
struct Prefixed<'a, R>(&'a R);

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
