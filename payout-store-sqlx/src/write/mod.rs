//! The writing half of the store, written once for both dialects. Every write is one transaction
//! (or one statement) that checks before it writes; any error rolls everything back.

mod apply;
mod create;
mod insert;

use payout_core::domain::{Payout, PayoutId};
use payout_core::status::PayoutStatus;
use payout_core::{Error, Result};

pub(crate) use apply::{apply, apply_all};
pub(crate) use create::{create_payout, create_period};

use crate::db::{Args, Db, Dialect, Tx, Value, args};
use crate::error::db;
use crate::rows::{self, PAYOUT_READ_COLUMNS};

/// The most ids one `IN (...)` lookup binds.
const IDS_PER_LOOKUP: usize = 500;

pub(crate) async fn payout_exists<T: Tx>(tx: &mut T, id: &PayoutId) -> Result<bool> {
    let row = tx
        .fetch_optional("SELECT 1 AS one FROM payouts WHERE id = $1", args![id.as_str()])
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

pub(crate) async fn read_payout<T: Tx>(tx: &mut T, id: &PayoutId) -> Result<Payout> {
    let sql = format!("SELECT {PAYOUT_READ_COLUMNS} FROM payouts WHERE id = $1");
    match tx.fetch_optional(&sql, args![id.as_str()]).await.map_err(db)? {
        Some(row) => rows::payout(&row),
        None => Err(Error::NotFound(id.clone())),
    }
}

/// The values of `keys` in lookups of at most [`IDS_PER_LOOKUP`] each: `sql` holds `{in}` where the
/// `IN` list goes, after `fixed` (bound first).
pub(crate) async fn lookup<T: Tx>(tx: &mut T, sql: &str, fixed: &[Value], keys: &[&str]) -> Result<Vec<T::Row>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(IDS_PER_LOOKUP) {
        let mut args = Args(fixed.to_vec());
        let list: Vec<String> = chunk.iter().map(|k| args.push(*k)).collect();
        let sql = sql.replace("{in}", &list.join(", "));
        out.extend(tx.fetch_all(&sql, args).await.map_err(db)?);
    }
    Ok(out)
}

/// See [`SqlStore::claim_stuck_processing`](crate::SqlStore::claim_stuck_processing).
pub(crate) async fn claim_stuck_processing<D: Db>(
    d: &D,
    updated_before: chrono::DateTime<chrono::Utc>,
    limit: u32,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Payout>> {
    let skip_locked = match d.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    let sql = format!(
        "UPDATE payouts SET updated_at = $1, version = version + 1 \
         WHERE id IN (SELECT id FROM payouts WHERE status = $2 AND updated_at < $3 \
                      ORDER BY updated_at, id LIMIT $4{skip_locked}) \
         RETURNING {PAYOUT_READ_COLUMNS}"
    );
    let mut tx = d.begin_write().await.map_err(db)?;
    let rows = tx
        .fetch_all(
            &sql,
            args![at, PayoutStatus::Processing.as_str(), updated_before, i64::from(limit)],
        )
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    let mut claimed = rows.iter().map(rows::payout).collect::<Result<Vec<_>>>()?;
    // RETURNING gives no order; the claim took the oldest, and all of them now share `updated_at`.
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(claimed)
}
