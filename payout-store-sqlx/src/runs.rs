//! Runs and doctors' holds, written once for both dialects: a run's members, its totals (read
//! from `payout_run_tallies`, which triggers keep as payouts join and move; see the migration
//! `20261207000100_runs`), its results and events, and the doctors on hold.

use std::collections::{HashMap, HashSet};

use payout_core::domain::{
    DoctorHold, DoctorId, FundsOverride, NewRun, Period, Run, RunEvent, RunId, RunKind, RunResult, RunSummary,
    RunTally, order_totals,
};
use payout_core::money::Money;
use payout_core::store::{DoctorHoldPage, Page, RunPage, RunResultPage};
use payout_core::{Error, Result};

use crate::db::{Args, Db, Dialect, RowExt, Tx, Value, args};
use crate::error::{corrupt, db};
use crate::rows::{self, from_json, from_name, to_json};
use crate::write::existing_payouts;
use crate::write::insert::insert_rows;

/// The columns of `payout_runs`, in the order a run is inserted with them.
const RUN_COLUMNS: &str = "id, kind, label, period_start, period_end, created_by, created_at, funds_override";

const RESULT_COLUMNS: &str = "run_id, payout_id, action, provider, outcome, status_after, message, at, by_actor";

const EVENT_COLUMNS: &str = "run_id, at, actor, action, details";

const HOLD_COLUMNS: &str = "doctor_id, reason, placed_by, placed_at";

/// The most ids one `IN (...)` read binds.
const IDS_PER_READ: usize = 500;

fn run_row(r: &impl RowExt) -> Result<Run> {
    let period = match (
        r.opt_date("period_start").map_err(db)?,
        r.opt_date("period_end").map_err(db)?,
    ) {
        (Some(start), Some(end)) => Some(Period::new(start, end).map_err(|e| corrupt("run period", e))?),
        _ => None,
    };
    Ok(Run {
        id: RunId::new(r.text("id").map_err(db)?),
        kind: r
            .text("kind")
            .map_err(db)?
            .parse::<RunKind>()
            .map_err(|e| corrupt("run kind", e))?,
        label: r.text("label").map_err(db)?,
        period,
        created_by: r.text("created_by").map_err(db)?,
        created_at: r.ts("created_at").map_err(db)?,
        funds_override: from_json("funds override", r.opt_text("funds_override").map_err(db)?)?,
    })
}

fn result_row(r: &impl RowExt) -> Result<RunResult> {
    Ok(RunResult {
        payout_id: r.text("payout_id").map_err(db)?.into(),
        action: from_name("run action", &r.text("action").map_err(db)?)?,
        provider: r
            .opt_text("provider")
            .map_err(db)?
            .as_deref()
            .map(rows::provider)
            .transpose()?,
        ok: r.text("outcome").map_err(db)? == "OK",
        status_after: r
            .opt_text("status_after")
            .map_err(db)?
            .as_deref()
            .map(rows::status)
            .transpose()?,
        message: r.opt_text("message").map_err(db)?,
        at: r.ts("at").map_err(db)?,
        by: r.text("by_actor").map_err(db)?,
    })
}

fn event_row(r: &impl RowExt) -> Result<RunEvent> {
    Ok(RunEvent {
        run_id: RunId::new(r.text("run_id").map_err(db)?),
        at: r.ts("at").map_err(db)?,
        actor: r.text("actor").map_err(db)?,
        action: r.text("action").map_err(db)?,
        details: r.opt_text("details").map_err(db)?,
    })
}

fn hold_row(r: &impl RowExt) -> Result<DoctorHold> {
    Ok(DoctorHold {
        doctor_id: DoctorId::new(r.text("doctor_id").map_err(db)?),
        reason: r.text("reason").map_err(db)?,
        placed_by: r.text("placed_by").map_err(db)?,
        placed_at: r.ts("placed_at").map_err(db)?,
    })
}

fn limit_and_skip(page: &Page) -> (i64, i64) {
    (
        i64::from(page.limit.min(Page::MAX_LIMIT)),
        i64::try_from(page.skip).unwrap_or(i64::MAX),
    )
}

/// `RunNotFound` unless `run` exists, read in the transaction that is about to write to it.
pub(crate) async fn require_run_in<T: Tx>(tx: &mut T, run: &RunId) -> Result<()> {
    let found = tx
        .fetch_optional("SELECT 1 AS one FROM payout_runs WHERE id = $1", args![run.as_str()])
        .await
        .map_err(db)?;
    found.map(|_| ()).ok_or_else(|| Error::RunNotFound(run.clone()))
}

/// `RunNotFound` unless `run` exists.
async fn require_run<D: Db>(d: &D, run: &RunId) -> Result<()> {
    let found = d
        .fetch_optional("SELECT 1 AS one FROM payout_runs WHERE id = $1", args![run.as_str()])
        .await
        .map_err(db)?;
    found.map(|_| ()).ok_or_else(|| Error::RunNotFound(run.clone()))
}

/// Makes the payouts `ids` (existing, distinct, members of no run `run` yet) members of `run`, each
/// row with its payout's status, creation time and hold (migration `20261208000100_run_member_order`);
/// the tally triggers count them.
///
/// `existing`: the payouts were committed before this transaction, so others may be changing them.
/// On Postgres they are then locked `FOR SHARE` in id order as they are read: a change committed
/// meanwhile is read (the read waits for it), and one that comes after waits for this transaction,
/// whose member rows its trigger then finds, so neither the rows nor the run's tallies miss it.
pub(crate) async fn insert_members<T: Tx>(tx: &mut T, run: &RunId, ids: &[&str], existing: bool) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let dialect = tx.dialect();
    let head = format!(
        "INSERT INTO payout_run_members (run_id, payout_id, status, created_at, held) \
         SELECT v.column1, p.id, p.status, p.created_at, {} FROM (",
        crate::read::hold_is_on(dialect, "p.")
    );
    let tail = match (dialect, existing) {
        (Dialect::Postgres, true) => ") AS v JOIN payouts p ON p.id = v.column2 ORDER BY p.id FOR SHARE OF p",
        _ => ") AS v JOIN payouts p ON p.id = v.column2",
    };
    let inserted = insert_rows(tx, &head, tail, false, 2, ids, |id, out| {
        out.extend([Value::from(run.as_str()), Value::from(*id)]);
        Ok(())
    })
    .await?;
    if inserted.changed != ids.len() as u64 {
        // A payout of `ids` was not found: the callers check first, so this is a bug, not bad input.
        return Err(corrupt(
            "run members",
            format!(
                "{} of {} payouts joined run {}",
                inserted.changed,
                ids.len(),
                run.as_str()
            ),
        ));
    }
    Ok(())
}

async fn insert_event<T: Tx>(tx: &mut T, event: &RunEvent) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO payout_run_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
        args![
            event.run_id.as_str(),
            event.at,
            event.actor.as_str(),
            event.action.as_str(),
            event.details.clone(),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// See [`PayoutStore::create_run`](payout_core::store::PayoutStore::create_run): one transaction
/// that checks the payouts exist, inserts the run, its members (the triggers count them) and its
/// `CREATE` event.
pub(crate) async fn create_run<D: Db>(
    d: &D,
    run: NewRun,
    payouts: &[payout_core::domain::PayoutId],
) -> Result<RunSummary> {
    run.validate()?;
    let mut seen = HashSet::with_capacity(payouts.len());
    let ids: Vec<&str> = payouts
        .iter()
        .map(|id| id.as_str())
        .filter(|id| seen.insert(*id))
        .collect();
    let mut tx = d.begin_write().await.map_err(db)?;
    let existing = existing_payouts(&mut tx, &ids).await?;
    if let Some(missing) = ids.iter().find(|id| !existing.contains(**id)) {
        return Err(Error::NotFound((*missing).into()));
    }
    let run = run.into_run();
    let mut args = Args::new();
    let values = [
        args.push(run.id.as_str()),
        args.push(run.kind.as_str()),
        args.push(run.label.as_str()),
        // A NULL date is written as such: a NULL bound as text is not a date to Postgres.
        run.period.map_or_else(|| "NULL".to_string(), |p| args.push(p.start)),
        run.period.map_or_else(|| "NULL".to_string(), |p| args.push(p.end)),
        args.push(run.created_by.as_str()),
        args.push(run.created_at),
        "NULL".to_string(),
    ];
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO payout_runs ({RUN_COLUMNS}) VALUES ({}) ON CONFLICT DO NOTHING",
                values.join(", ")
            ),
            args,
        )
        .await
        .map_err(db)?;
    if inserted == 0 {
        return Err(Error::RunConflict(run.id));
    }
    insert_members(&mut tx, &run.id, &ids, true).await?;
    insert_event(&mut tx, &RunEvent::created(&run)).await?;
    tx.commit().await.map_err(db)?;
    self::run(d, &run.id).await
}

/// The totals of `runs`, summed over the tallies' slots.
async fn totals_of<D: Db>(d: &D, runs: &[&str]) -> Result<HashMap<String, Vec<RunTally>>> {
    let mut out: HashMap<String, Vec<RunTally>> = HashMap::new();
    for chunk in runs.chunks(IDS_PER_READ) {
        let mut args = Args::new();
        let list: Vec<String> = chunk.iter().map(|id| args.push(*id)).collect();
        // SUM of BIGINT is NUMERIC in Postgres: cast back.
        let sql = format!(
            "SELECT run_id, status, provider, currency, CAST(SUM(n) AS BIGINT) AS n, \
             CAST(SUM(amount_minor) AS BIGINT) AS amount_minor FROM payout_run_tallies \
             WHERE run_id IN ({}) GROUP BY run_id, status, provider, currency",
            list.join(", ")
        );
        for row in d.fetch_all(&sql, args).await.map_err(db)? {
            let currency = rows::currency(&row.text("currency").map_err(db)?)?;
            let provider = row.text("provider").map_err(db)?;
            let n = row.int("n").map_err(db)?;
            if n < 0 {
                return Err(corrupt("run tally", format!("a negative count ({n})")));
            }
            out.entry(row.text("run_id").map_err(db)?).or_default().push(RunTally {
                status: rows::status(&row.text("status").map_err(db)?)?,
                provider: (!provider.is_empty()).then(|| rows::provider(&provider)).transpose()?,
                currency,
                count: n as u64,
                amount: Money::from_minor_units(row.int("amount_minor").map_err(db)?, currency),
            });
        }
    }
    Ok(out)
}

/// See [`PayoutStore::run`](payout_core::store::PayoutStore::run).
pub(crate) async fn run<D: Db>(d: &D, id: &RunId) -> Result<RunSummary> {
    let row = d
        .fetch_optional(
            &format!("SELECT {RUN_COLUMNS} FROM payout_runs WHERE id = $1"),
            args![id.as_str()],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| Error::RunNotFound(id.clone()))?;
    let run = run_row(&row)?;
    let totals = totals_of(d, &[id.as_str()])
        .await?
        .remove(id.as_str())
        .unwrap_or_default();
    Ok(RunSummary {
        run,
        totals: order_totals(totals),
    })
}

/// See [`PayoutStore::runs`](payout_core::store::PayoutStore::runs).
pub(crate) async fn runs<D: Db>(d: &D, page: &Page) -> Result<RunPage> {
    let (limit, skip) = limit_and_skip(page);
    let rows = d
        .fetch_all(
            &format!("SELECT {RUN_COLUMNS} FROM payout_runs ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"),
            args![limit, skip],
        )
        .await
        .map_err(db)?;
    let runs = rows.iter().map(run_row).collect::<Result<Vec<_>>>()?;
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut totals = totals_of(d, &ids).await?;
    let runs = runs
        .into_iter()
        .map(|run| {
            let t = totals.remove(run.id.as_str()).unwrap_or_default();
            RunSummary {
                run,
                totals: order_totals(t),
            }
        })
        .collect();
    Ok(RunPage {
        runs,
        total: count(d, "SELECT COUNT(*) AS n FROM payout_runs", Args::new()).await?,
    })
}

async fn count<D: Db>(d: &D, sql: &str, args: Args) -> Result<u64> {
    let n = match d.fetch_optional(sql, args).await.map_err(db)? {
        Some(row) => row.int("n").map_err(db)?,
        None => 0,
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// See [`PayoutStore::record_run_results`](payout_core::store::PayoutStore::record_run_results):
/// one transaction, the results in multi-row inserts, in order (the identity column keeps it).
pub(crate) async fn record_results<D: Db>(d: &D, run: &RunId, results: &[RunResult]) -> Result<()> {
    let mut tx = d.begin_write().await.map_err(db)?;
    require_run_in(&mut tx, run).await?;
    if !results.is_empty() {
        insert_rows(
            &mut tx,
            &format!("INSERT INTO payout_run_results ({RESULT_COLUMNS})"),
            "",
            false,
            9,
            results,
            |r, out| {
                out.extend([
                    Value::from(run.as_str()),
                    Value::from(r.payout_id.as_str()),
                    Value::Static(r.action.as_str()),
                    Value::from(r.provider.map(|p| p.as_str())),
                    Value::Static(if r.ok { "OK" } else { "FAILED" }),
                    Value::from(r.status_after.map(|s| s.as_str())),
                    Value::from(r.message.clone()),
                    Value::from(r.at),
                    Value::from(r.by.as_str()),
                ]);
                Ok(())
            },
        )
        .await?;
    }
    tx.commit().await.map_err(db)
}

/// See [`PayoutStore::run_results`](payout_core::store::PayoutStore::run_results).
pub(crate) async fn results<D: Db>(d: &D, run: &RunId, page: &Page) -> Result<RunResultPage> {
    require_run(d, run).await?;
    let (limit, skip) = limit_and_skip(page);
    let results = d
        .fetch_all(
            &format!(
                "SELECT {RESULT_COLUMNS} FROM payout_run_results WHERE run_id = $1 ORDER BY seq LIMIT $2 OFFSET $3"
            ),
            args![run.as_str(), limit, skip],
        )
        .await
        .map_err(db)?
        .iter()
        .map(result_row)
        .collect::<Result<Vec<_>>>()?;
    let total = count(
        d,
        "SELECT COUNT(*) AS n FROM payout_run_results WHERE run_id = $1",
        args![run.as_str()],
    )
    .await?;
    Ok(RunResultPage { results, total })
}

/// See [`PayoutStore::record_run_event`](payout_core::store::PayoutStore::record_run_event).
pub(crate) async fn record_event<D: Db>(d: &D, event: RunEvent) -> Result<()> {
    let mut tx = d.begin_write().await.map_err(db)?;
    require_run_in(&mut tx, &event.run_id).await?;
    insert_event(&mut tx, &event).await?;
    tx.commit().await.map_err(db)
}

/// See [`PayoutStore::run_events`](payout_core::store::PayoutStore::run_events).
pub(crate) async fn events<D: Db>(d: &D, run: &RunId) -> Result<Vec<RunEvent>> {
    require_run(d, run).await?;
    d.fetch_all(
        &format!("SELECT {EVENT_COLUMNS} FROM payout_run_events WHERE run_id = $1 ORDER BY seq"),
        args![run.as_str()],
    )
    .await
    .map_err(db)?
    .iter()
    .map(event_row)
    .collect()
}

/// See [`PayoutStore::set_funds_override`](payout_core::store::PayoutStore::set_funds_override):
/// the run's row read (and, on Postgres, locked) in the transaction, compared with `expected`,
/// then written with its event.
pub(crate) async fn set_funds_override<D: Db>(
    d: &D,
    run: &RunId,
    expected: Option<FundsOverride>,
    new: FundsOverride,
) -> Result<Run> {
    let mut tx = d.begin_write().await.map_err(db)?;
    let lock = match tx.dialect() {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    };
    let row = tx
        .fetch_optional(
            &format!("SELECT {RUN_COLUMNS} FROM payout_runs WHERE id = $1{lock}"),
            args![run.as_str()],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| Error::RunNotFound(run.clone()))?;
    let mut stored = run_row(&row)?;
    if stored.funds_override != expected {
        return Err(Error::RunConflict(run.clone()));
    }
    tx.execute(
        "UPDATE payout_runs SET funds_override = $1 WHERE id = $2",
        args![to_json(Some(&new)), run.as_str()],
    )
    .await
    .map_err(db)?;
    insert_event(&mut tx, &RunEvent::funds_override(run, &new)).await?;
    tx.commit().await.map_err(db)?;
    stored.funds_override = Some(new);
    Ok(stored)
}

/// See [`PayoutStore::doctor_holds`](payout_core::store::PayoutStore::doctor_holds).
pub(crate) async fn doctor_holds<D: Db>(d: &D, ids: &[DoctorId]) -> Result<Vec<DoctorHold>> {
    let mut seen = HashSet::with_capacity(ids.len());
    let unique: Vec<&str> = ids.iter().map(DoctorId::as_str).filter(|id| seen.insert(*id)).collect();
    let mut out = Vec::new();
    for chunk in unique.chunks(IDS_PER_READ) {
        let mut args = Args::new();
        let list: Vec<String> = chunk.iter().map(|id| args.push(*id)).collect();
        let sql = format!(
            "SELECT {HOLD_COLUMNS} FROM doctor_holds WHERE doctor_id IN ({})",
            list.join(", ")
        );
        for row in d.fetch_all(&sql, args).await.map_err(db)? {
            out.push(hold_row(&row)?);
        }
    }
    Ok(out)
}

/// See [`PayoutStore::all_doctor_holds`](payout_core::store::PayoutStore::all_doctor_holds).
pub(crate) async fn all_doctor_holds<D: Db>(d: &D, page: &Page) -> Result<DoctorHoldPage> {
    let (limit, skip) = limit_and_skip(page);
    let holds = d
        .fetch_all(
            &format!("SELECT {HOLD_COLUMNS} FROM doctor_holds ORDER BY placed_at, doctor_id LIMIT $1 OFFSET $2"),
            args![limit, skip],
        )
        .await
        .map_err(db)?
        .iter()
        .map(hold_row)
        .collect::<Result<Vec<_>>>()?;
    let total = count(d, "SELECT COUNT(*) AS n FROM doctor_holds", Args::new()).await?;
    Ok(DoctorHoldPage { holds, total })
}

/// See [`PayoutStore::place_doctor_hold`](payout_core::store::PayoutStore::place_doctor_hold): one
/// conditional insert (the primary key decides between two admins).
pub(crate) async fn place_doctor_hold<D: Db>(d: &D, hold: DoctorHold) -> Result<()> {
    let mut tx = d.begin_write().await.map_err(db)?;
    let inserted = tx
        .execute(
            &format!("INSERT INTO doctor_holds ({HOLD_COLUMNS}) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"),
            args![
                hold.doctor_id.as_str(),
                hold.reason.as_str(),
                hold.placed_by.as_str(),
                hold.placed_at,
            ],
        )
        .await
        .map_err(db)?;
    if inserted == 0 {
        return Err(Error::DoctorAlreadyHeld(hold.doctor_id));
    }
    tx.commit().await.map_err(db)
}

/// See [`PayoutStore::release_doctor_hold`](payout_core::store::PayoutStore::release_doctor_hold):
/// one `DELETE ... RETURNING`.
pub(crate) async fn release_doctor_hold<D: Db>(d: &D, doctor: &DoctorId) -> Result<DoctorHold> {
    let mut tx = d.begin_write().await.map_err(db)?;
    let row = tx
        .fetch_optional(
            &format!("DELETE FROM doctor_holds WHERE doctor_id = $1 RETURNING {HOLD_COLUMNS}"),
            args![doctor.as_str()],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| Error::DoctorNotHeld(doctor.clone()))?;
    let hold = hold_row(&row)?;
    tx.commit().await.map_err(db)?;
    Ok(hold)
}
