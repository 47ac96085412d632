//! The summary totals, read from `payout_tallies` (kept by triggers in the same transaction as every
//! change; see the migration `20261207000500_payout_tallies_by_currency`), written once for both
//! dialects: a few hundred tally rows, however many payouts there are.

use chrono::NaiveDate;
use payout_core::Result;
use payout_core::money::{Currency, Money};
use payout_core::status::PayoutStatus;
use payout_core::store::{MonthTotal, StatusTally, TotalsFilter, first_of_month, sort_tallies};

use crate::db::{Args, Db, RowExt};
use crate::error::db;
use crate::rows;

/// `WHERE` and the conditions joined, or nothing.
fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// The count and amount of a grouped tally row (`n`, `amount_minor`). Sums are cast back to
/// BIGINT (Postgres sums BIGINT as NUMERIC; a sum beyond BIGINT is an error there, never wrapped).
const SUMS: &str = "CAST(SUM(n) AS BIGINT) AS n, CAST(SUM(amount_minor) AS BIGINT) AS amount_minor";

fn count_and_amount(row: &impl RowExt, currency: Currency) -> Result<(u64, Money)> {
    let n = row.int("n").map_err(db)?;
    let count = u64::try_from(n).map_err(|_| crate::error::corrupt("payout tally", format!("count {n}")))?;
    Ok((
        count,
        Money::from_minor_units(row.int("amount_minor").map_err(db)?, currency),
    ))
}

pub(crate) async fn totals<D: Db>(d: &D, filter: &TotalsFilter) -> Result<Vec<StatusTally>> {
    let mut args = Args::new();
    let mut conditions = Vec::new();
    if let Some(provider) = filter.provider {
        conditions.push(format!("provider = {}", args.push(provider.as_str())));
    }
    if let Some(currency) = filter.currency {
        conditions.push(format!("currency = {}", args.push(currency.code())));
    }
    let sql = format!(
        "SELECT status, provider, currency, {SUMS} FROM payout_tallies {} \
         GROUP BY status, provider, currency HAVING SUM(n) <> 0",
        where_clause(&conditions)
    );
    let mut out = Vec::new();
    for row in &d.fetch_all(&sql, args).await.map_err(db)? {
        let currency = rows::currency(&row.text("currency").map_err(db)?)?;
        let provider = row.text("provider").map_err(db)?;
        let (count, amount) = count_and_amount(row, currency)?;
        out.push(StatusTally {
            status: rows::status(&row.text("status").map_err(db)?)?,
            provider: if provider.is_empty() {
                None
            } else {
                Some(rows::provider(&provider)?)
            },
            currency,
            count,
            amount,
        });
    }
    sort_tallies(&mut out);
    Ok(out)
}

pub(crate) async fn paid_by_month<D: Db>(
    d: &D,
    currency: Option<Currency>,
    from: NaiveDate,
) -> Result<Vec<MonthTotal>> {
    let mut args = Args::new();
    let mut conditions = vec![
        format!("status = {}", args.push(PayoutStatus::Paid.as_str())),
        format!("month >= {}", args.push(first_of_month(from))),
    ];
    if let Some(currency) = currency {
        conditions.push(format!("currency = {}", args.push(currency.code())));
    }
    let sql = format!(
        "SELECT month, currency, {SUMS} FROM payout_tallies {} \
         GROUP BY month, currency HAVING SUM(n) <> 0 ORDER BY month, currency",
        where_clause(&conditions)
    );
    let mut out = Vec::new();
    for row in &d.fetch_all(&sql, args).await.map_err(db)? {
        let currency = rows::currency(&row.text("currency").map_err(db)?)?;
        let (count, amount) = count_and_amount(row, currency)?;
        out.push(MonthTotal {
            month: row.date("month").map_err(db)?,
            currency,
            count,
            amount,
        });
    }
    Ok(out)
}
