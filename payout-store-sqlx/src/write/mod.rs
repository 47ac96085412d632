//! The writing half of the store, written once for both dialects. Every write is one transaction
//! (or one statement) that checks before it writes; any error rolls everything back.

mod apply;
mod create;
pub(crate) mod insert;

use payout_core::domain::{Payout, PayoutId};
use payout_core::{Error, Result};

pub(crate) use apply::{apply, apply_all};
pub(crate) use create::{clawbacks_due, create_payout, create_period, existing_payouts, held_consultations};

use crate::db::{Args, Tx, Value, args};
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
