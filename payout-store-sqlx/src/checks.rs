//! Reconciliation's follow-ups (`payout_checks`), written once for both dialects: claims under a
//! lease, finished checks, a payout's follow-up, the attention queue, and the follow-up a change
//! writes in its own transaction ([`write_follow_up`]; Postgres's one-statement apply writes it
//! as a step of its statement, `write/apply.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use payout_core::domain::PayoutId;
use payout_core::store::{AttentionPage, CheckClaim, CheckDone, CheckState, ClaimedCheck, Flagged, FollowUp, Page};
use payout_core::{Error, Result};

use crate::db::{Db, Dialect, RowExt, Tx, args};
use crate::error::db;
use crate::rows::{self, PAYOUT_READ_COLUMNS};
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
pub(crate) async fn claim<D: Db>(d: &D, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>> {
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
    let payouts = lookup(
        &mut tx,
        &format!("SELECT {PAYOUT_READ_COLUMNS} FROM payouts WHERE id IN ({{in}})"),
        &[],
        &ids,
    )
    .await?;
    let mut out = Vec::with_capacity(payouts.len());
    for row in &payouts {
        let payout = rows::payout(row)?;
        if let Some((lease, checks, attention)) = leases.remove(payout.id.as_str()) {
            out.push(ClaimedCheck {
                payout,
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

/// See [`PayoutStore::finish_check`](payout_core::store::PayoutStore::finish_check).
pub(crate) async fn finish<D: Db>(d: &D, done: &CheckDone) -> Result<bool> {
    let f = &done.follow_up;
    let mut tx = d.begin_write().await.map_err(db)?;
    let changed = tx
        .execute(
            "UPDATE payout_checks SET next_check_at = $1, checks = checks + 1, lease = lease + 1, \
                 attention_since = CASE WHEN $2 IS NULL THEN NULL ELSE COALESCE(attention_since, $3) END, \
                 attention = $2 \
             WHERE payout_id = $4 AND lease = $5",
            args![
                f.next_check_at,
                f.attention.clone(),
                done.at,
                done.payout_id.as_str(),
                done.lease
            ],
        )
        .await
        .map_err(db)?;
    if changed == 0 && !crate::write::payout_exists(&mut tx, &done.payout_id).await? {
        return Err(Error::NotFound(done.payout_id.clone()));
    }
    tx.commit().await.map_err(db)?;
    Ok(changed == 1)
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
