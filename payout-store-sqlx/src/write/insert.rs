//! Multi-row inserts: the rows of a calculation chunk (payouts, items, audit entries) in as few
//! statements as the bind limit allows, items by `COPY` on Postgres.

use payout_core::Result;
use payout_core::domain::{AuditEntry, Payout, PayoutId, PayoutItem};
use payout_core::store::NewPayout;

use crate::db::{Args, Dialect, Tx, Value, args};
use crate::error::db;
use crate::rows;

/// The most values one multi-row `INSERT` binds: well under both dialects' limits (SQLite 32,766,
/// Postgres 65,535), so a period's rows go in a few statements instead of one per row (2,000
/// items a statement; each statement is a round trip to SQLite's worker thread).
const VALUES_PER_INSERT: usize = 16_000;

/// The placeholders of one multi-row `INSERT`: `rows` groups of `width`. SQLite gets anonymous `?`
/// (bound in order): it looks a numbered parameter up by name in a list as long as the statement's
/// parameters, which made binding a statement quadratic in its size. Postgres gets `$1, $2, ...`.
pub(crate) fn values_list(dialect: Dialect, rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 6);
    let mut n = 0;
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            n += 1;
            match dialect {
                Dialect::Sqlite => out.push('?'),
                Dialect::Postgres => {
                    out.push('$');
                    out.push_str(&n.to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// How many rows each statement of a multi-row insert of `n` rows takes: `max` as often as it fits,
/// then the remainder as powers of two. A connection prepares (and caches) each statement text
/// once, so only a few sizes ever exist, not one per remainder.
fn statement_sizes(n: usize, max: usize) -> impl Iterator<Item = usize> {
    let rest = n % max;
    std::iter::repeat_n(max, n / max).chain(
        (0..usize::BITS)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

/// What [`insert_rows`] did.
pub(crate) struct Inserted<Row> {
    /// The rows a `RETURNING` tail gave back (none without one).
    pub(crate) returned: Vec<Row>,
    /// How many rows the statements inserted (or, with `ON CONFLICT DO UPDATE`, changed).
    pub(crate) changed: u64,
}

/// Inserts `rows`, each `width` values by `values`, with as few multi-row statements as the bind
/// limit allows: `{head} VALUES (...), (...) {tail}`. With `returning`, the tail has a `RETURNING`
/// clause, and the rows it gives back are collected; without, only the count is.
///
/// The values of each statement are built and encoded while the database runs the one before, so
/// the database's thread (SQLite's worker, a Postgres backend) and this one work side by side.
pub(crate) async fn insert_rows<T: Tx, R: Sync>(
    tx: &mut T,
    head: &str,
    tail: &str,
    returning: bool,
    width: usize,
    rows: &[R],
    values: impl Fn(&R, &mut Vec<Value>) -> Result<()>,
) -> Result<Inserted<T::Row>> {
    let dialect = tx.dialect();
    let build = |chunk: &[R]| -> Result<(String, T::Encoded)> {
        let mut args = Args(Vec::with_capacity(chunk.len() * width));
        for row in chunk {
            let before = args.0.len();
            values(row, &mut args.0)?;
            debug_assert_eq!(args.0.len() - before, width);
        }
        let sql = format!("{head} VALUES {} {tail}", values_list(dialect, chunk.len(), width));
        Ok((sql, T::encode(args).map_err(db)?))
    };
    let mut chunks = Vec::new();
    let mut rest = rows;
    for size in statement_sizes(rows.len(), (VALUES_PER_INSERT / width).max(1)) {
        let (chunk, after) = rest.split_at(size);
        chunks.push(chunk);
        rest = after;
    }
    let mut inserted = Inserted {
        returned: Vec::new(),
        changed: 0,
    };
    let mut chunks = chunks.into_iter();
    let mut next = chunks.next().map(build).transpose()?;
    while let Some((sql, args)) = next.take() {
        let following = chunks.next();
        let run = async {
            if returning {
                let rows = tx.fetch_all_encoded(&sql, args).await?;
                Ok::<_, sqlx::Error>((rows.len() as u64, rows))
            } else {
                Ok((tx.execute_encoded(&sql, args).await?, Vec::new()))
            }
        };
        let (ran, built) = futures::join!(run, async { following.map(build).transpose() });
        let (changed, rows) = ran.map_err(db)?;
        inserted.changed += changed;
        inserted.returned.extend(rows);
        next = built?;
    }
    Ok(inserted)
}

/// The item rows of `payouts`, each numbered from 0 within its payout: in Postgres one
/// `COPY ... FROM STDIN` (text format), elsewhere multi-row `INSERT`s.
/// An item's [`rows::ITEM_COLUMNS`] values, in that order.
pub(crate) fn item_values(item: &PayoutItem, out: &mut Vec<Value>) -> Result<()> {
    out.extend([
        Value::Static(item.kind.as_str()),
        Value::from(item.reference.as_str()),
        Value::from(rows::minor_units(&item.amount)?),
        Value::from(item.amount.currency().code()),
        Value::from(item.occurred_at),
        Value::from(item.description.as_str()),
    ]);
    Ok(())
}

pub(crate) async fn insert_items<T: Tx>(tx: &mut T, payouts: &[&NewPayout]) -> Result<()> {
    let items: Vec<(&PayoutId, usize, &PayoutItem)> = payouts
        .iter()
        .flat_map(|new| new.items.iter().enumerate().map(|(n, item)| (&new.payout.id, n, item)))
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let columns = format!("payout_items (payout_id, position, {})", rows::ITEM_COLUMNS);
    if tx.dialect() == Dialect::Postgres {
        let data = copy_text(&items)?;
        let sql = format!("COPY {columns} FROM STDIN");
        if tx.copy_in(&sql, data).await.map_err(db)?.is_some() {
            return Ok(());
        }
    }
    insert_rows(
        tx,
        &format!("INSERT INTO {columns}"),
        "",
        false,
        8,
        &items,
        |(id, position, item), out| {
            out.extend([
                Value::from(id.as_str()),
                Value::from(i64::try_from(*position).unwrap_or(i64::MAX)),
            ]);
            item_values(item, out)
        },
    )
    .await?;
    Ok(())
}

/// Item rows in `COPY`'s text format: tab-separated, one row per line, `\\`, `\t`, `\n` and `\r`
/// escaped. Times are written to the microsecond, truncated, as the driver binds them.
fn copy_text(items: &[(&PayoutId, usize, &PayoutItem)]) -> Result<Vec<u8>> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(items.len() * 128);
    for (id, position, item) in items {
        escape_copy(&mut out, id.as_str());
        let _ = write!(out, "\t{position}\t");
        out.push_str(item.kind.as_str());
        out.push('\t');
        escape_copy(&mut out, &item.reference);
        let _ = write!(
            out,
            "\t{}\t{}\t",
            rows::minor_units(&item.amount)?,
            item.amount.currency().code()
        );
        push_copy_timestamp(&mut out, &item.occurred_at);
        out.push('\t');
        escape_copy(&mut out, &item.description);
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00`, the microseconds truncated (written field by field: a
/// `strftime` pattern is parsed again for every value, which was a fifth of the writer's time).
fn push_copy_timestamp(out: &mut String, t: &chrono::DateTime<chrono::Utc>) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() % 1_000_000_000 / 1_000
    );
}

fn escape_copy(out: &mut String, text: &str) {
    if !text.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// The creation audit entries of `payouts`.
pub(crate) async fn insert_audits<T: Tx>(tx: &mut T, payouts: &[&NewPayout]) -> Result<()> {
    let head = format!("INSERT INTO audit_entries ({})", rows::AUDIT_COLUMNS);
    insert_rows(tx, &head, "", false, 7, payouts, |new, out| {
        out.extend(audit_values(&new.audit));
        Ok(())
    })
    .await?;
    Ok(())
}

pub(crate) fn audit_values(entry: &AuditEntry) -> Vec<Value> {
    vec![
        Value::from(entry.payout_id.as_str()),
        Value::from(entry.actor.as_str()),
        Value::from(entry.at),
        Value::from(entry.action.as_str()),
        Value::from(entry.from.map(|s| s.as_str())),
        Value::from(entry.to.map(|s| s.as_str())),
        Value::from(entry.detail.as_str()),
    ]
}

pub(crate) fn payout_values(p: &Payout) -> Result<Vec<Value>> {
    Ok(vec![
        Value::from(p.id.as_str()),
        Value::from(p.doctor_id.as_str()),
        Value::from(p.period_start),
        Value::from(p.period_end),
        Value::from(rows::minor_units(&p.amount_due)?),
        Value::from(p.currency().code()),
        Value::from(p.status.as_str()),
        Value::from(p.provider.map(|v| v.as_str())),
        Value::from(p.provider_reference.clone()),
        Value::from(p.notes.clone()),
        Value::from(p.origin.as_str()),
        Value::from(p.created_by.as_str()),
        Value::from(p.approved_by.clone()),
        Value::from(p.processed_at),
        Value::from(p.created_at),
        Value::from(p.updated_at),
        Value::from(p.version),
    ])
}

pub(crate) async fn insert_audit<T: Tx>(tx: &mut T, entry: &AuditEntry) -> Result<()> {
    tx.execute(
        &format!(
            "INSERT INTO audit_entries ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            rows::AUDIT_COLUMNS
        ),
        args![
            entry.payout_id.as_str(),
            entry.actor.as_str(),
            entry.at,
            entry.action.as_str(),
            entry.from.map(|s| s.as_str()),
            entry.to.map(|s| s.as_str()),
            entry.detail.as_str(),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use payout_core::money::Money;

    use super::*;

    #[test]
    fn statement_sizes_cover_every_row_with_few_distinct_sizes() {
        for n in [0, 1, 7, 499, 500, 501, 1_000, 5_099, 123_457] {
            let sizes: Vec<usize> = statement_sizes(n, 500).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "n = {n}");
            assert!(sizes.iter().all(|s| *s == 500 || (s.is_power_of_two() && *s < 500)));
        }
        let distinct: HashSet<usize> = (0..10_000).flat_map(|n| statement_sizes(n, 500)).collect();
        assert!(distinct.len() <= 10, "{distinct:?}");
    }

    #[test]
    fn copy_text_escapes_separators_and_keeps_microseconds() {
        use chrono::TimeZone;
        let id = PayoutId::new("po\\1");
        let item = PayoutItem {
            kind: payout_core::domain::ItemKind::Consultation,
            reference: "a\tb".into(),
            amount: Money::from_minor_units(50_000, payout_core::money::Currency::KES),
            occurred_at: chrono::Utc.timestamp_opt(1_790_000_000, 123_456_789).unwrap(),
            description: "line\nbreak\r".into(),
        };
        let text = String::from_utf8(copy_text(&[(&id, 3, &item)]).unwrap()).unwrap();
        assert_eq!(
            text,
            "po\\\\1\t3\tCONSULTATION\ta\\tb\t50000\tKES\t2026-09-21 14:13:20.123456+00\tline\\nbreak\\r\n"
        );
    }

    #[test]
    fn values_lists_number_postgres_placeholders_and_leave_sqlite_ones_anonymous() {
        assert_eq!(values_list(Dialect::Postgres, 2, 2), "($1, $2), ($3, $4)");
        assert_eq!(values_list(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }
}
