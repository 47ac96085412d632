//! Applying changes, one path per dialect: [`apply`] for one change, [`apply_all`] for many.
//!
//! - **Postgres**: one statement of data-modifying steps per batch of changes ([`apply_chunk`]),
//!   with no `BEGIN` and `COMMIT` around it (the statement is atomic as a whole); a single change is
//!   a batch of one. A refused change is explained by reads after the statement ([`refusal`]).
//! - **SQLite**: one `BEGIN IMMEDIATE` transaction per change; there a round trip is a function
//!   call, so a batch is applied one change at a time.
//!
//! Both write the change as [`PayoutChange::normalized`] leaves it, so no change needs to update an
//! attempt it inserts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use payout_core::domain::{Payout, PayoutAttempt};
use payout_core::store::{LedgerRelease, PayoutChange, WebhookEventRecord};
use payout_core::{Error, Result};

use super::insert::insert_audit;
use super::payout_exists;
use crate::db::{Args, Db, Dialect, RowExt, Tx, Value, args};
use crate::error::{broken, db, is_unique_violation};
use crate::rows::{self, ATTEMPT_COLUMNS, PAYOUT_READ_COLUMNS};

/// The most changes one statement of [`apply_all`] carries.
const CHANGES_PER_STATEMENT: usize = 500;

/// How many statements of one [`apply_all`] run at once.
const STATEMENTS_AT_ONCE: usize = 2;

/// The SQLSTATE `payouts_require` raises (migration `20251201000000_refuse_in_statement`).
pub(crate) const REFUSED_IN_STATEMENT: &str = "PX001";

/// The rows one statement returned, by position among its changes.
type Applied<R> = HashMap<usize, R>;

/// One statement of a batch in flight: the positions of its changes, and what it returned.
type Statement<'a, R> = BoxFuture<'a, (&'a [usize], Result<Applied<R>, sqlx::Error>)>;

/// See [`PayoutStore::apply`](payout_core::store::PayoutStore::apply).
pub(crate) async fn apply<D: Db>(d: &D, change: PayoutChange) -> Result<Payout> {
    change.validate()?;
    let change = change.normalized();
    match d.dialect() {
        Dialect::Postgres => apply_alone(d, &change).await,
        Dialect::Sqlite => apply_in_transaction(d, &change).await,
    }
}

/// See [`BulkPayoutStore::apply_all`](payout_core::store::BulkPayoutStore::apply_all).
///
/// On Postgres, changes go in statements of up to [`CHANGES_PER_STATEMENT`],
/// [`STATEMENTS_AT_ONCE`] at a time: one round trip and one commit for hundreds of changes. A
/// change the statement refuses (its version or status moved on) is applied alone afterwards,
/// which refuses it again with the precise reason. A statement that fails as a whole (a duplicate
/// event or attempt key, a missing attempt, a lost connection) writes nothing, and its changes are
/// then applied one by one, so each gets its own answer. Two changes of one payout never share a
/// statement (both would join its one updated row): the later ones are applied alone.
pub(crate) async fn apply_all<D: Db>(d: &D, changes: Vec<PayoutChange>) -> Vec<Result<Payout>> {
    let n = changes.len();
    let mut results: Vec<Option<Result<Payout>>> = (0..n).map(|_| None).collect();
    let mut checked = Vec::with_capacity(n);
    for (i, change) in changes.into_iter().enumerate() {
        match change.validate() {
            Ok(()) => checked.push((i, change.normalized())),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    if d.dialect() == Dialect::Sqlite {
        for (i, change) in checked {
            results[i] = Some(apply_in_transaction(d, &change).await);
        }
        return finish(results);
    }

    let mut alone = Vec::new();
    let mut batched = Vec::new();
    let mut ids = HashSet::new();
    for (k, (_, change)) in checked.iter().enumerate() {
        if ids.insert(&change.payout_id) {
            batched.push(k);
        } else {
            alone.push(k);
        }
    }
    // Statements of a fixed text, a few at a time: the changes are of distinct payouts, so they do
    // not wait on each other, and Postgres works on more than one at once.
    let pending: Vec<Statement<'_, D::Row>> = batched
        .chunks(CHANGES_PER_STATEMENT)
        .map(|chunk| {
            let members: Vec<&PayoutChange> = chunk.iter().map(|&k| &checked[k].1).collect();
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
                for (m, &k) in chunk.iter().enumerate() {
                    match applied.remove(&m) {
                        Some(row) => results[checked[k].0] = Some(rows::payout(&row)),
                        None => alone.push(k),
                    }
                }
            }
            Err(_) => alone.extend_from_slice(chunk),
        }
    }
    alone.sort_unstable();
    for k in alone {
        let (i, change) = &checked[k];
        results[*i] = Some(apply_alone(d, change).await);
    }
    finish(results)
}

fn finish(results: Vec<Option<Result<Payout>>>) -> Vec<Result<Payout>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(broken("a change of the batch was lost"))))
        .collect()
}

/// Postgres's path for one change: a statement of one ([`apply_chunk`]), and the reason when it is
/// refused.
async fn apply_alone<D: Db>(d: &D, change: &PayoutChange) -> Result<Payout> {
    match apply_chunk(d, &[change]).await {
        Ok(mut applied) => match applied.remove(&0) {
            Some(row) => rows::payout(&row),
            None => Err(refusal(d, change).await),
        },
        Err(e) => Err(failure(d, change, e).await),
    }
}

/// SQLite's path: one `BEGIN IMMEDIATE` transaction.
async fn apply_in_transaction<D: Db>(d: &D, change: &PayoutChange) -> Result<Payout> {
    let mut tx = d.begin_write().await.map_err(db)?;
    let id = &change.payout_id;

    // The conditional update is the race's referee: of two changes read at one version, one wins.
    // It goes first and returns the row, so a change that applies costs no reads (a webhook is
    // one transaction of four writes); only a refused one looks for the reason, in the order the
    // conformance suite pins: exists, event new, version, attempt.
    let mut args = Args::new();
    let set = set_clause(patch_cells(change).map(|(column, cell)| (column, args.push(Value::from(cell)))));
    let sql = format!(
        "UPDATE payouts SET {set}, updated_at = {}, version = version + 1 \
         WHERE id = {} AND version = {} AND status = {} RETURNING {PAYOUT_READ_COLUMNS}",
        args.push(change.at),
        args.push(id.as_str()),
        args.push(change.expected_version),
        args.push(change.expected_status.as_str()),
    );
    let updated = tx.fetch_optional(&sql, args).await.map_err(db)?;
    let Some(row) = updated else {
        if !payout_exists(&mut tx, id).await? {
            return Err(Error::NotFound(id.clone()));
        }
        if let Some(event) = &change.webhook_event {
            if event_recorded(&mut tx, event).await? {
                return Err(duplicate(event));
            }
        }
        return Err(Error::Conflict(id.clone()));
    };
    let payout = rows::payout(&row)?;

    // Before the attempt writes, so that a recorded event wins over a bad attempt, as above. A
    // concurrent delivery of the same event waits here for the first and loses if it commits.
    if let Some(event) = &change.webhook_event {
        let recorded = tx
            .execute(
                "INSERT INTO webhook_events (provider, event_id, payout_id, event_type, received_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                args![
                    event.provider.as_str(),
                    event.event_id.as_str(),
                    event.payout_id.as_str(),
                    event.event_type.as_str(),
                    event.received_at,
                ],
            )
            .await
            .map_err(db)?;
        if recorded == 0 {
            return Err(duplicate(event));
        }
    }
    if let Some(attempt) = &change.new_attempt {
        insert_attempt(&mut tx, attempt).await?;
    }
    if let Some(update) = &change.attempt_update {
        let (outcome, reason) = rows::outcome_parts(&update.outcome);
        let changed = tx
            .execute(
                "UPDATE payout_attempts SET outcome = $1, outcome_reason = $2, \
                     provider_reference = COALESCE($3, provider_reference), error = COALESCE($4, error), \
                     updated_at = $5 \
                 WHERE payout_id = $6 AND attempt_no = $7",
                args![
                    outcome,
                    reason,
                    update.provider_reference.clone(),
                    update.error.clone(),
                    change.at,
                    id.as_str(),
                    i64::from(update.attempt_no),
                ],
            )
            .await
            .map_err(db)?;
        if changed == 0 {
            return Err(Error::InvalidInput(format!(
                "payout {id} has no attempt {}",
                update.attempt_no
            )));
        }
    }
    let release = match change.ledger_release() {
        LedgerRelease::Nothing => None,
        LedgerRelease::Clawbacks => {
            Some("UPDATE payout_items SET live = FALSE WHERE payout_id = $1 AND live AND kind = 'CLAWBACK'")
        }
        LedgerRelease::All => Some("UPDATE payout_items SET live = FALSE WHERE payout_id = $1 AND live"),
    };
    if let Some(sql) = release {
        tx.execute(sql, args![id.as_str()]).await.map_err(db)?;
    }
    for entry in &change.audit {
        insert_audit(&mut tx, entry).await?;
    }
    if let Some(follow_up) = change.follow_up_written() {
        crate::checks::write_follow_up(&mut tx, id, &follow_up, change.at).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(payout)
}

/// The payout columns a change may set, in the order [`patch_cells`] gives their new values: the
/// status, then the fields of [`PayoutPatch`](payout_core::store::PayoutPatch). Both dialects write
/// their update from this one list, each column as `column = COALESCE(new value, column)`.
const PATCHED: [&str; 9] = [
    "status",
    "provider",
    "provider_reference",
    "notes",
    "approved_by",
    "processed_at",
    "approval",
    "resolution",
    "hold",
];

/// What `change` sets on its payout, column by column ([`PATCHED`]); `None` keeps a column.
fn patch_cells(change: &PayoutChange) -> impl Iterator<Item = (&'static str, Cell)> {
    let patch = &change.patch;
    let values = [
        text(change.new_status.map(|s| s.as_str())),
        text(patch.provider.map(|p| p.as_str())),
        text(patch.provider_reference.clone()),
        text(patch.notes.clone()),
        text(patch.approved_by.clone()),
        Cell::Ts(patch.processed_at),
        text(rows::to_json(patch.approval.as_ref())),
        text(rows::to_json(patch.resolution.as_ref())),
        text(rows::to_json(patch.hold.as_ref())),
    ];
    PATCHED.into_iter().zip(values)
}

/// `column = COALESCE(new, column), ...` for each column and the SQL that gives its new value.
fn set_clause<'a>(columns: impl IntoIterator<Item = (&'a str, String)>) -> String {
    columns
        .into_iter()
        .map(|(column, new)| format!("{column} = COALESCE({new}, {column})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One value of a batch row, before the rows are bound.
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Ts(Option<DateTime<Utc>>),
}

fn text(v: Option<impl Into<String>>) -> Cell {
    Cell::Text(v.map(Into::into))
}

impl Cell {
    /// Its SQL type, for a cast of its placeholder.
    fn sql_type(&self) -> &'static str {
        match self {
            Cell::Text(_) => "TEXT",
            Cell::Int(_) => "BIGINT",
            Cell::Ts(_) => "TIMESTAMPTZ",
        }
    }
}

impl From<Cell> for Value {
    fn from(cell: Cell) -> Self {
        match cell {
            Cell::Text(v) => Value::OptText(v),
            Cell::Int(v) => Value::OptInt(v),
            Cell::Ts(v) => Value::OptTs(v),
        }
    }
}

/// Rows of one kind (the changes of a statement, or their audit entries), bound as the `FROM` item
/// that reads them, in one of two ways:
///
/// - **arrays**, one per column, read by `unnest(...)`: for a batch, so that the statement's text
///   and its number of bound values do not grow with the batch, and it is prepared once;
/// - **`VALUES`** of scalars: for the rows of one change (`apply`). The planner then knows the
///   statement's row counts, and after a few executions Postgres keeps one generic plan for it.
///   Through arrays it could not tell one row from many, so it planned the statement again on
///   every call: 0.37 ms of planning against 0.1 ms of execution for a webhook's change.
struct Rows {
    /// The columns' SQL types ([`Cell::sql_type`]).
    types: Vec<&'static str>,
    rows: Vec<Vec<Cell>>,
}

impl Rows {
    /// No rows yet, in columns of the types of `shape`'s cells.
    fn shaped(shape: &[Cell]) -> Self {
        Rows {
            types: shape.iter().map(Cell::sql_type).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; every row has the cells of the shape, in its order.
    fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.types.len(), "every row has the same cells");
        self.rows.push(row);
    }

    /// Binds the rows onto `args` and returns the `FROM` item that reads them: `VALUES` when
    /// `scalars` (and there is a row), else `unnest` of arrays.
    fn bind(self, args: &mut Args, scalars: bool) -> String {
        if scalars && !self.rows.is_empty() {
            let rows: Vec<String> = self
                .rows
                .into_iter()
                .map(|row| {
                    let cells: Vec<String> = row
                        .into_iter()
                        .map(|cell| {
                            let cast = cell.sql_type();
                            format!("{}::{cast}", args.push(Value::from(cell)))
                        })
                        .collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            return format!("(VALUES {})", rows.join(", "));
        }
        let mut columns: Vec<(Value, &str)> = self
            .types
            .iter()
            .map(|sql_type| match *sql_type {
                "BIGINT" => (Value::IntArray(Vec::new()), "BIGINT[]"),
                "TIMESTAMPTZ" => (Value::TsArray(Vec::new()), "TIMESTAMPTZ[]"),
                _ => (Value::TextArray(Vec::new()), "TEXT[]"),
            })
            .collect();
        for row in self.rows {
            for ((column, _), cell) in columns.iter_mut().zip(row) {
                match (column, cell) {
                    (Value::TextArray(a), Cell::Text(v)) => a.push(v),
                    (Value::IntArray(a), Cell::Int(v)) => a.push(v),
                    (Value::TsArray(a), Cell::Ts(v)) => a.push(v),
                    _ => debug_assert!(false, "a cell of another type than its column"),
                }
            }
        }
        let arrays: Vec<String> = columns
            .into_iter()
            .map(|(column, cast)| format!("{}::{cast}", args.push(column)))
            .collect();
        format!("unnest({})", arrays.join(", "))
    }
}

/// One statement that applies `changes` (distinct payouts; Postgres) and returns the payouts it
/// changed, by position in `changes`. The changes and their audit entries are bound as [`Rows`]
/// (scalars for one change, arrays for many). The steps, each joined to the changes whose payout update took (`p`), so a
/// refused change writes nothing:
///
/// 1. `c`: the changes, one row each;
/// 2. `p`: the conditional update of every payout (`UPDATE ... FROM c`), the race's referee;
/// 3. `au`: their audit entries, in order;
/// 4. `e`, `a`, `r`, `u` (each only when a change of the statement needs it): the webhook events,
///    new attempts, released consultations (the items of a payout cancelled with
///    [`release_consultations`](PayoutChange::release_consultations) stop being live) and attempt
///    updates of the changes in `p` (a recorded event or a taken attempt key fails the whole
///    statement with a unique violation);
/// 5. the final `SELECT` fails the whole statement (`payouts_require`) if an attempt update found
///    no attempt, as a duplicate event or attempt key already did with a unique violation.
async fn apply_chunk<D: Db>(d: &D, changes: &[&PayoutChange]) -> Result<Applied<D::Row>, sqlx::Error> {
    let mut rows: Option<Rows> = None;
    let mut audits = Rows::shaped(&[
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
        let event = change.webhook_event.as_ref();
        let attempt = change.new_attempt.as_ref();
        let (a_outcome, a_reason) = attempt.map(|a| rows::outcome_parts(&a.outcome)).unzip();
        let update = change.attempt_update.as_ref();
        let (u_outcome, u_reason) = update.map(|u| rows::outcome_parts(&u.outcome)).unzip();
        let mut row = vec![
            Cell::Int(Some(k)),
            text(Some(change.payout_id.as_str())),
            Cell::Int(Some(change.expected_version)),
            text(Some(change.expected_status.as_str())),
        ];
        row.extend(patch_cells(change).map(|(_, cell)| cell));
        row.extend([
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
            text(rows::to_json(attempt.and_then(|a| a.destination.as_ref()))),
            text(attempt.and_then(|a| a.batch_id.clone())),
            Cell::Int(Some(change.ledger_release().code())),
        ]);
        let follow_up = change.follow_up_written();
        row.extend([
            Cell::Int(Some(i64::from(follow_up.is_some()))),
            Cell::Ts(follow_up.as_ref().and_then(|f| f.next_check_at)),
            text(follow_up.and_then(|f| f.attention)),
        ]);
        rows.get_or_insert_with(|| Rows::shaped(&row)).push(row);
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
    let one = changes.len() == 1;
    let changes_in = rows.map(|r| r.bind(&mut args, one)).unwrap_or_default();
    let audits_in = audits.bind(&mut args, one);
    let new_columns: Vec<String> = PATCHED.iter().map(|column| format!("new_{column}")).collect();
    let set = set_clause(
        PATCHED
            .iter()
            .zip(&new_columns)
            .map(|(column, new)| (*column, new.clone())),
    );
    // Only the steps some change of the statement needs: at most sixteen statement texts, each
    // prepared once per connection.
    let mut sql = format!(
        "WITH c AS (SELECT * FROM {changes_in} \
                 AS c (c_i, c_id, c_version, c_status, {new_columns}, c_at, c_e_provider, c_e_id, c_e_type, \
                       c_e_at, c_a_no, c_a_provider, c_a_key, c_a_summary, c_a_outcome, c_a_reason, c_a_reference, \
                       c_a_error, c_a_created, c_a_updated, c_u_no, c_u_outcome, c_u_reason, c_u_reference, \
                       c_u_error, c_a_destination, c_a_batch, c_release, c_f, c_f_next, c_f_attention)), \
         p AS (UPDATE payouts SET {set}, updated_at = c_at, version = version + 1 \
               FROM c WHERE id = c_id AND version = c_version AND status = c_status \
               RETURNING c_i, c_f, c_f_next, c_f_attention, {PAYOUT_READ_COLUMNS}), \
         au AS (INSERT INTO audit_entries ({audit_columns}) \
               SELECT p.id, v_actor, v_at, v_action, v_from, v_to, v_detail \
               FROM {audits_in} AS v (v_i, v_n, v_actor, v_at, v_action, v_from, v_to, v_detail) \
               JOIN p ON p.c_i = v_i ORDER BY v_i, v_n RETURNING 1)",
        audit_columns = rows::AUDIT_COLUMNS,
        new_columns = new_columns.join(", "),
    );
    if changes.iter().any(|c| c.webhook_event.is_some()) {
        sql += ", e AS (INSERT INTO webhook_events (provider, event_id, payout_id, event_type, received_at) \
                 SELECT c_e_provider, c_e_id, c_id, c_e_type, c_e_at FROM p JOIN c USING (c_i) \
                 WHERE c_e_id IS NOT NULL RETURNING 1)";
    }
    if changes.iter().any(|c| c.follow_up_written().is_some()) {
        // From `p` alone (its RETURNING carries the follow-up; `updated_at` is the change's time):
        // joined to `c`, the planner, which estimates `p` at one row and `c_f = 1` at two, chose a
        // nested loop, 500 x 500 comparisons for a statement of 500 changes (BENCHMARKS.md).
        sql += &format!(
            ", f AS (INSERT INTO payout_checks (payout_id, next_check_at, checks, lease, attention, attention_since) \
               SELECT id, c_f_next, 0, 1, c_f_attention, CASE WHEN c_f_attention IS NULL THEN NULL ELSE updated_at END \
               FROM p WHERE c_f = 1 {} RETURNING 1)",
            crate::checks::UPSERT_FOLLOW_UP
        );
    }
    if changes.iter().any(|c| c.new_attempt.is_some()) {
        sql += &format!(
            ", a AS (INSERT INTO payout_attempts ({ATTEMPT_COLUMNS}) \
               SELECT c_id, c_a_no, c_a_provider, c_a_key, c_a_summary, c_a_outcome, c_a_reason, c_a_reference, \
                      c_a_error, c_a_created, c_a_updated, c_a_destination, c_a_batch \
               FROM p JOIN c USING (c_i) WHERE c_a_no IS NOT NULL RETURNING 1)"
        );
    }
    if changes.iter().any(|c| c.ledger_release() != LedgerRelease::Nothing) {
        // c_release: LedgerRelease::code (1 clawbacks only, 2 every item).
        sql += ", r AS (UPDATE payout_items t SET live = FALSE FROM p JOIN c USING (c_i) \
                 WHERE t.payout_id = c_id AND t.live AND (c_release = 2 OR (c_release = 1 AND t.kind = 'CLAWBACK')) \
                 RETURNING 1)";
    }
    if changes.iter().any(|c| c.attempt_update.is_some()) {
        sql += ", u AS (UPDATE payout_attempts t SET outcome = c_u_outcome, outcome_reason = c_u_reason, \
                   provider_reference = COALESCE(c_u_reference, t.provider_reference), \
                   error = COALESCE(c_u_error, t.error), updated_at = c_at \
                 FROM p JOIN c USING (c_i) WHERE t.payout_id = c_id AND t.attempt_no = c_u_no \
                 RETURNING c_i) \
                 SELECT p.*, payouts_require(c_u_no IS NULL OR EXISTS (SELECT 1 FROM u WHERE u.c_i = p.c_i), \
                                             'an attempt update of the batch found no attempt') AS attempt_found \
                 FROM p JOIN c USING (c_i)";
    } else {
        sql += " SELECT p.* FROM p";
    }
    let returned = d.fetch_all(&sql, args).await?;
    let mut applied = HashMap::with_capacity(returned.len());
    for row in returned {
        let k = usize::try_from(row.int("c_i")?).map_err(|e| sqlx::Error::Decode(e.into()))?;
        applied.insert(k, row);
    }
    Ok(applied)
}

/// What a failed statement of one change means.
async fn failure<D: Db>(d: &D, change: &PayoutChange, e: sqlx::Error) -> Error {
    let refused = is_unique_violation(&e)
        || e.as_database_error().and_then(|d| d.code()).as_deref() == Some(REFUSED_IN_STATEMENT);
    if !refused {
        return db(e);
    }
    // The statement's steps run in no set order, so which refusal fired first says nothing: ask,
    // in the order `apply` answers in (a recorded event, a taken attempt, a missing attempt).
    if let Some(event) = &change.webhook_event {
        match event_recorded_in(d, event).await {
            Ok(true) => return duplicate(event),
            Ok(false) => {}
            Err(e) => return e,
        }
    }
    if let Some(attempt) = &change.new_attempt {
        let taken = d
            .fetch_optional(
                "SELECT 1 AS one FROM payout_attempts \
                 WHERE idempotency_key = $1 OR (payout_id = $2 AND attempt_no = $3)",
                args![
                    attempt.idempotency_key.as_str(),
                    attempt.payout_id.as_str(),
                    i64::from(attempt.attempt_no)
                ],
            )
            .await;
        match taken {
            Ok(Some(_)) => return Error::Conflict(change.payout_id.clone()),
            Ok(None) => {}
            Err(e) => return db(e),
        }
    }
    match &change.attempt_update {
        Some(update) if !is_unique_violation(&e) => Error::InvalidInput(format!(
            "payout {} has no attempt {}",
            change.payout_id, update.attempt_no
        )),
        // A unique violation neither the event nor the attempt explains: a concurrent change
        // took the same key first.
        _ => Error::Conflict(change.payout_id.clone()),
    }
}

/// Why a change's conditional update found no row: the payout is unknown, the event is recorded
/// already, or (otherwise) its version or status moved on.
async fn refusal<D: Db>(d: &D, change: &PayoutChange) -> Error {
    let id = &change.payout_id;
    let exists = d
        .fetch_optional("SELECT 1 AS one FROM payouts WHERE id = $1", args![id.as_str()])
        .await;
    match exists {
        Ok(None) => return Error::NotFound(id.clone()),
        Ok(Some(_)) => {}
        Err(e) => return db(e),
    }
    if let Some(event) = &change.webhook_event {
        match event_recorded_in(d, event).await {
            Ok(true) => return duplicate(event),
            Ok(false) => {}
            Err(e) => return e,
        }
    }
    Error::Conflict(id.clone())
}

/// Reads whether `event` is recorded.
const EVENT_RECORDED: &str = "SELECT 1 AS one FROM webhook_events WHERE provider = $1 AND event_id = $2";

/// Whether `event` is already recorded, read outside any transaction.
async fn event_recorded_in<D: Db>(d: &D, event: &WebhookEventRecord) -> Result<bool> {
    let seen = d
        .fetch_optional(EVENT_RECORDED, args![event.provider.as_str(), event.event_id.as_str()])
        .await
        .map_err(db)?;
    Ok(seen.is_some())
}

/// Whether `event` is already recorded (the reason an update was refused, when it is).
async fn event_recorded<T: Tx>(tx: &mut T, event: &WebhookEventRecord) -> Result<bool> {
    let seen = tx
        .fetch_optional(EVENT_RECORDED, args![event.provider.as_str(), event.event_id.as_str()])
        .await
        .map_err(db)?;
    Ok(seen.is_some())
}

fn duplicate(event: &WebhookEventRecord) -> Error {
    Error::DuplicateEvent {
        provider: event.provider,
        event_id: event.event_id.clone(),
    }
}

/// Inserts an attempt; its number (per payout) and idempotency key (across all payouts) must be new.
async fn insert_attempt<T: Tx>(tx: &mut T, a: &PayoutAttempt) -> Result<()> {
    let (outcome, reason) = rows::outcome_parts(&a.outcome);
    let result = tx
        .execute(
            &format!(
                "INSERT INTO payout_attempts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                rows::ATTEMPT_COLUMNS
            ),
            args![
                a.payout_id.as_str(),
                i64::from(a.attempt_no),
                a.provider.as_str(),
                a.idempotency_key.as_str(),
                a.request_summary.as_str(),
                outcome,
                reason,
                a.provider_reference.clone(),
                a.error.clone(),
                a.created_at,
                a.updated_at,
                rows::to_json(a.destination.as_ref()),
                a.batch_id.clone(),
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(Error::Conflict(a.payout_id.clone())),
        Err(e) => Err(db(e)),
    }
}
