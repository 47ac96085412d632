//! Reconciliation's follow-ups (`payout_checks`), written once for both dialects: claims under a
//! lease, finished checks, a payout's follow-up, the attention queue (whole, or a run's part of
//! it), and the follow-up a change
//! writes in its own transaction ([`write_follow_up`]; Postgres's one-statement apply writes it
//! as a step of its statement, `write/apply.rs`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use payout_core::domain::{PayoutId, RunId};
use payout_core::store::{AttentionPage, CheckClaim, CheckDone, CheckState, ClaimedCheck, Flagged, FollowUp, Page};
use payout_core::{Error, Result};

use crate::db::{Db, Dialect, RowExt, Tx, Value, args};
use crate::error::db;
use crate::read::{ATTEMPT_PREFIX, Prefixed, qualified};
use crate::rows::{self, ATTEMPT_COLUMNS, PAYOUT_READ_COLUMNS};
use crate::write::lookup;

/// The upsert of a change's follow-up: `$1` payout, `$2` next check, `$3` attention, `$4` its
/// `since` (the change's time when flagged). A flag that stays set keeps its `since`; the count
/// restarts and any lease ends.
pub(crate) const UPSERT_FOLLOW_UP: &str = "ON CONFLICT (payout_id) DO UPDATE SET \
     next_check_at = excluded.next_check_at, checks = 0, lease = payout_checks.lease + 1, \
     attention = excluded.attention, \
     attention_since = CASE WHEN excluded.attention IS NULL THEN NULL \
                            ELSE COALESCE(payout_checks.attention_since, excluded.attention_since) END";

/// Writes `follow_up` for `id` inside a change's transaction (SQLite's apply).
pub(crate) async fn write_follow_up<T: Tx>(
    tx: &mut T,
    id: &PayoutId,
    follow_up: &FollowUp,
    at: DateTime<Utc>,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO payout_checks (payout_id, next_check_at, checks, lease, attention, attention_since) \
         VALUES ($1, $2, 0, 1, $3, $4) {UPSERT_FOLLOW_UP}"
    );
    let since = follow_up.attention.as_ref().map(|_| at);
    tx.execute(
        &sql,
        args![id.as_str(), follow_up.next_check_at, follow_up.attention.clone(), since],
    )
    .await
    .map_err(db)?;
    Ok(())
}

/// See [`PayoutStore::claim_checks`](payout_core::store::PayoutStore::claim_checks). On Postgres,
/// checks another instance is claiming right now are skipped (`FOR UPDATE SKIP LOCKED`), not
/// waited for; SQLite has one writer at a time.
pub(crate) async fn claim<D: Db>(d: &D, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>>
where
    D::Row: Sync,
{
    let skip_locked = match d.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let sql = format!(
        "UPDATE payout_checks SET next_check_at = $1, lease = lease + 1 \
         WHERE payout_id IN (SELECT payout_id FROM payout_checks \
                             WHERE next_check_at IS NOT NULL AND next_check_at <= $2 \
                             ORDER BY next_check_at, payout_id LIMIT $3{skip_locked}) \
         RETURNING payout_id, lease, checks, attention"
    );
    let mut tx = d.begin_write().await.map_err(db)?;
    let claimed = tx
        .fetch_all(&sql, args![claim.lease_until, claim.due_by, i64::from(claim.limit)])
        .await
        .map_err(db)?;
    let mut leases = HashMap::with_capacity(claimed.len());
    for row in &claimed {
        let id = row.text("payout_id").map_err(db)?;
        let lease = row.int("lease").map_err(db)?;
        let checks = u32::try_from(row.int("checks").map_err(db)?).unwrap_or(u32::MAX);
        leases.insert(id, (lease, checks, row.opt_text("attention").map_err(db)?));
    }
    let ids: Vec<&str> = leases.keys().map(String::as_str).collect();
    // Each payout with its latest attempt, so that looking a check up reads nothing more.
    let payouts = lookup(
        &mut tx,
        &format!(
            "SELECT {}, {} FROM payouts p LEFT JOIN payout_attempts a ON a.payout_id = p.id \
             AND a.attempt_no = (SELECT MAX(attempt_no) FROM payout_attempts l WHERE l.payout_id = p.id) \
             WHERE p.id IN ({{in}})",
            qualified("p.", "", PAYOUT_READ_COLUMNS),
            qualified("a.", ATTEMPT_PREFIX, ATTEMPT_COLUMNS),
        ),
        &[],
        &ids,
    )
    .await?;
    let mut out = Vec::with_capacity(payouts.len());
    for row in &payouts {
        let payout = rows::payout(row)?;
        let attempt = Prefixed(row);
        // A payout without attempts comes with NULL attempt columns.
        let latest_attempt = match attempt.opt_text("payout_id").map_err(db)? {
            Some(_) => Some(rows::attempt(&attempt)?),
            None => None,
        };
        if let Some((lease, checks, attention)) = leases.remove(payout.id.as_str()) {
            out.push(ClaimedCheck {
                payout,
                latest_attempt,
                lease,
                checks,
                attention,
            });
        }
    }
    tx.commit().await.map_err(db)?;
    out.sort_by(|a, b| a.payout.id.cmp(&b.payout.id));
    Ok(out)
}

/// Writes a finished check's follow-up under its lease: `$1` next check, `$2` attention, `$3`
/// when, `$4` payout, `$5` lease (SQLite, one statement per check in the batch's transaction).
const FINISH_ONE: &str = "UPDATE payout_checks SET next_check_at = $1, checks = checks + 1, lease = lease + 1, \
         attention_since = CASE WHEN $2 IS NULL THEN NULL ELSE COALESCE(attention_since, $3) END, \
         attention = $2 \
     WHERE payout_id = $4 AND lease = $5";

/// The same for a whole batch in one statement (Postgres): one array per column, so the
/// statement's text, and its prepared plan, are the same whatever the batch's size.
const FINISH_MANY: &str = "UPDATE payout_checks c SET next_check_at = v.next_check_at, checks = c.checks + 1, \
         lease = c.lease + 1, \
         attention_since = CASE WHEN v.attention IS NULL THEN NULL ELSE COALESCE(c.attention_since, v.at) END, \
         attention = v.attention \
     FROM unnest($1::TEXT[], $2::BIGINT[], $3::TIMESTAMPTZ[], $4::TEXT[], $5::TIMESTAMPTZ[]) \
          AS v (payout_id, lease, next_check_at, attention, at) \
     WHERE c.payout_id = v.payout_id AND c.lease = v.lease \
     RETURNING c.payout_id";

/// See [`PayoutStore::finish_checks`](payout_core::store::PayoutStore::finish_checks): one
/// transaction per batch; on Postgres one statement.
pub(crate) async fn finish<D: Db>(d: &D, done: &[CheckDone]) -> Result<Vec<bool>> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    // A payout listed twice: only its first finish can hold the lease (the first ends it).
    let mut first = HashMap::with_capacity(done.len());
    for (i, c) in done.iter().enumerate() {
        first.entry(c.payout_id.as_str()).or_insert(i);
    }
    let once: Vec<&CheckDone> = done
        .iter()
        .enumerate()
        .filter(|(i, c)| first.get(c.payout_id.as_str()) == Some(i))
        .map(|(_, c)| c)
        .collect();
    let mut tx = d.begin_write().await.map_err(db)?;
    let mut written: HashSet<String> = HashSet::with_capacity(once.len());
    match tx.dialect() {
        Dialect::Postgres => {
            let rows = tx
                .fetch_all(
                    FINISH_MANY,
                    args![
                        Value::TextArray(once.iter().map(|c| Some(c.payout_id.to_string())).collect()),
                        Value::IntArray(once.iter().map(|c| Some(c.lease)).collect()),
                        Value::TsArray(once.iter().map(|c| c.follow_up.next_check_at).collect()),
                        Value::TextArray(once.iter().map(|c| c.follow_up.attention.clone()).collect()),
                        Value::TsArray(once.iter().map(|c| Some(c.at)).collect()),
                    ],
                )
                .await
                .map_err(db)?;
            for row in &rows {
                written.insert(row.text("payout_id").map_err(db)?);
            }
        }
        Dialect::Sqlite => {
            for c in &once {
                let f = &c.follow_up;
                let changed = tx
                    .execute(
                        FINISH_ONE,
                        args![
                            f.next_check_at,
                            f.attention.clone(),
                            c.at,
                            c.payout_id.as_str(),
                            c.lease
                        ],
                    )
                    .await
                    .map_err(db)?;
                if changed == 1 {
                    written.insert(c.payout_id.to_string());
                }
            }
        }
    }
    // Not written: a lease that ended, or a payout that does not exist (then nothing is).
    for c in &once {
        if !written.contains(c.payout_id.as_str()) && !crate::write::payout_exists(&mut tx, &c.payout_id).await? {
            return Err(Error::NotFound(c.payout_id.clone()));
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(done
        .iter()
        .enumerate()
        .map(|(i, c)| first.get(c.payout_id.as_str()) == Some(&i) && written.contains(c.payout_id.as_str()))
        .collect())
}

/// See [`PayoutStore::check_state`](payout_core::store::PayoutStore::check_state).
pub(crate) async fn state<D: Db>(d: &D, id: &PayoutId) -> Result<CheckState> {
    let row = d
        .fetch_optional(
            "SELECT p.id, c.next_check_at, COALESCE(c.checks, 0) AS checks, c.attention FROM payouts p \
             LEFT JOIN payout_checks c ON c.payout_id = p.id WHERE p.id = $1",
            args![id.as_str()],
        )
        .await
        .map_err(db)?
        .ok_or_else(|| Error::NotFound(id.clone()))?;
    Ok(CheckState {
        next_check_at: row.opt_ts("next_check_at").map_err(db)?,
        checks: u32::try_from(row.int("checks").map_err(db)?).unwrap_or(u32::MAX),
        attention: row.opt_text("attention").map_err(db)?,
    })
}

/// See [`PayoutStore::attention`](payout_core::store::PayoutStore::attention).
pub(crate) async fn attention<D: Db>(d: &D, page: &Page) -> Result<AttentionPage> {
    let limit = page.limit.min(Page::MAX_LIMIT);
    let sql = format!(
        "SELECT {PAYOUT_READ_COLUMNS}, c.attention, c.attention_since FROM payout_checks c \
         JOIN payouts ON payouts.id = c.payout_id WHERE c.attention IS NOT NULL \
         ORDER BY c.attention_since, c.payout_id LIMIT $1 OFFSET $2"
    );
    let skip = i64::try_from(page.skip).unwrap_or(i64::MAX);
    let rows = d.fetch_all(&sql, args![i64::from(limit), skip]).await.map_err(db)?;
    let mut flagged = Vec::with_capacity(rows.len());
    for row in &rows {
        flagged.push(Flagged {
            payout: rows::payout(row)?,
            reason: row.text("attention").map_err(db)?,
            since: row.ts("attention_since").map_err(db)?,
        });
    }
    let total = d
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM payout_checks WHERE attention IS NOT NULL",
            args![],
        )
        .await
        .map_err(db)?
        .map(|r| r.int("n"))
        .transpose()
        .map_err(db)?
        .unwrap_or(0);
    Ok(AttentionPage {
        flagged,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// A run's flagged members: the flagged checks (`payout_checks_flagged`, in the queue's order)
/// each probed in the run's membership (its primary key, `run_id, payout_id`). `CROSS JOIN` keeps
/// that order of the loops on SQLite, whose planner, without statistics, would rather walk every
/// member of the run (a run may hold hundreds of thousands; the queue is what people work down);
/// Postgres plans it by its statistics either way.
const RUN_FLAGGED_FROM: &str = "FROM payout_checks c CROSS JOIN payout_run_members m";

/// The conditions of [`RUN_FLAGGED_FROM`]: flagged, and a member of the run `$1`.
const RUN_FLAGGED: &str = "c.attention IS NOT NULL AND m.run_id = $1 AND m.payout_id = c.payout_id";

/// `n`: how many of the run `$1`'s members are flagged, in a row only when the run exists.
fn run_flagged_count() -> String {
    format!("SELECT (SELECT COUNT(*) {RUN_FLAGGED_FROM} WHERE {RUN_FLAGGED}) AS n FROM payout_runs WHERE id = $1")
}

/// The run `$1`'s flagged members with their flags, in the queue's order: `$2` of them after `$3`.
fn run_flagged_page() -> String {
    format!(
        "SELECT {}, c.attention, c.attention_since {RUN_FLAGGED_FROM} \
         JOIN payouts ON payouts.id = c.payout_id WHERE {RUN_FLAGGED} \
         ORDER BY c.attention_since, c.payout_id LIMIT $2 OFFSET $3",
        // Qualified: a member row has some of the payout's columns too (`status`, `created_at`).
        qualified("payouts.", "", PAYOUT_READ_COLUMNS)
    )
}

/// See [`PayoutStore::run_attention`](payout_core::store::PayoutStore::run_attention): one
/// statement tells whether the run exists and how many of its members are flagged; the page is
/// read only when it has rows to show (most runs have none flagged).
pub(crate) async fn run_attention<D: Db>(d: &D, run: &RunId, page: &Page) -> Result<AttentionPage> {
    let total = d
        .fetch_optional(&run_flagged_count(), args![run.as_str()])
        .await
        .map_err(db)?
        .ok_or_else(|| Error::RunNotFound(run.clone()))?
        .int("n")
        .map_err(db)?;
    let total = u64::try_from(total).unwrap_or(0);
    let limit = page.limit.min(Page::MAX_LIMIT);
    if total <= page.skip || limit == 0 {
        return Ok(AttentionPage {
            flagged: Vec::new(),
            total,
        });
    }
    let skip = i64::try_from(page.skip).unwrap_or(i64::MAX);
    let rows = d
        .fetch_all(&run_flagged_page(), args![run.as_str(), i64::from(limit), skip])
        .await
        .map_err(db)?;
    let mut flagged = Vec::with_capacity(rows.len());
    for row in &rows {
        flagged.push(Flagged {
            payout: rows::payout(row)?,
            reason: row.text("attention").map_err(db)?,
            since: row.ts("attention_since").map_err(db)?,
        });
    }
    Ok(AttentionPage { flagged, total })
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    /// SQLite's plans of a run's attention: the flagged checks walked by their index (already in
    /// the queue's order: no sort), each probed in the run's membership and its payout by primary
    /// key; never a scan of the run's members, of the payouts or of all the checks.
    #[tokio::test]
    async fn a_runs_attention_reads_by_indexes_on_sqlite() {
        let store = crate::SqliteStore::connect("sqlite::memory:").await.expect("sqlite");
        for (sql, args) in [
            (run_flagged_count(), args!["run_a"]),
            (run_flagged_page(), args!["run_a", 20_i64, 0_i64]),
        ] {
            let plan: Vec<String> = store
                .pool()
                .fetch_all(&format!("EXPLAIN QUERY PLAN {sql}"), args)
                .await
                .expect("EXPLAIN QUERY PLAN")
                .iter()
                .map(|row| row.text("detail").expect("detail"))
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains("SCAN c USING INDEX payout_checks_flagged"), "{plan}");
            assert!(
                plan.contains(
                    "SEARCH m USING COVERING INDEX sqlite_autoindex_payout_run_members_1 (run_id=? AND payout_id=?)"
                ),
                "{plan}"
            );
            for bad in ["SCAN m", "SCAN payouts", "SCAN payout_checks", "TEMP B-TREE"] {
                assert!(!plan.contains(bad), "{bad}: {plan}");
            }
        }
    }
}
