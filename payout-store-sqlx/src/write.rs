//! The writing half of the store, written once for both dialects. Every method is one transaction
//! that checks before it writes; any error drops the transaction, which rolls everything back.

use std::collections::HashSet;

use payout_core::domain::{AuditEntry, DoctorId, Payout, PayoutAttempt, PayoutId, PayoutItem, PayoutOrigin, Period};
use payout_core::money::Money;
use payout_core::status::PayoutStatus;
use payout_core::store::{NewPayout, PayoutChange, PeriodBatch, PeriodBatchOutcome, SkipReason};
use payout_core::{Error, Result};

use crate::db::{Args, Db, Dialect, RowExt, Tx, Value, args};
use crate::error::{db, is_unique_violation};
use crate::rows::{self, CARRY_OVER_IS_OPEN, PAYOUT_COLUMNS};

/// The most values one multi-row `INSERT` binds: well under both dialects' limits (SQLite 32,766,
/// Postgres 65,535), so a period's rows go in a few statements instead of one per row (2,000
/// items a statement; each statement is a round trip to SQLite's worker thread).
const VALUES_PER_INSERT: usize = 16_000;

/// The most ids one `IN (...)` lookup binds.
const IDS_PER_LOOKUP: usize = 500;

type Slot = (DoctorId, Period);

/// Row locks a check takes so that what it saw still holds when the transaction writes. SQLite
/// needs none: `BEGIN IMMEDIATE` already made the transaction the only writer.
fn lock_rows(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    }
}

/// Refuses a new payout whose amount is not the sum of its items, or whose audit entry is another's.
fn check_new(new: &NewPayout) -> Result<()> {
    let p = &new.payout;
    let sum = Money::sum(p.currency(), new.items.iter().map(|i| &i.amount))
        .map_err(|e| Error::InvalidInput(format!("payout {}: items do not add up: {e}", p.id)))?;
    if sum != p.amount_due {
        return Err(Error::InvalidInput(format!(
            "payout {}: amount due {} is not the sum of its items {sum}",
            p.id, p.amount_due
        )));
    }
    belongs(&p.id, &new.audit.payout_id, "audit entry")
}

fn belongs(payout: &PayoutId, named: &PayoutId, what: &str) -> Result<()> {
    if payout != named {
        return Err(Error::InvalidInput(format!(
            "{what} names payout {named}, not payout {payout}"
        )));
    }
    Ok(())
}

pub(crate) fn check_change_ids(change: &PayoutChange) -> Result<()> {
    let id = &change.payout_id;
    for entry in &change.audit {
        belongs(id, &entry.payout_id, "audit entry")?;
    }
    if let Some(a) = &change.new_attempt {
        belongs(id, &a.payout_id, "attempt")?;
    }
    if let Some(e) = &change.webhook_event {
        belongs(id, &e.payout_id, "webhook event")?;
    }
    Ok(())
}

async fn payout_exists<T: Tx>(tx: &mut T, id: &PayoutId) -> Result<bool> {
    let row = tx
        .fetch_optional("SELECT 1 AS one FROM payouts WHERE id = $1", args![id.as_str()])
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

/// The carry-over of a slot: `None` if there is none, `Some(open)` if there is one, open meaning
/// never consumed or consumed by a payout cancelled since ([`CARRY_OVER_IS_OPEN`]).
///
/// With `lock` (Postgres) the row stays locked until the transaction ends. A transaction that waited
/// for that lock sees the row as the winner left it: its `consumed_by` names the winner's payout,
/// which is not cancelled, so the carry-over is not open for the loser.
async fn carry_over_state<T: Tx>(tx: &mut T, slot: &Slot, lock: &str) -> Result<Option<bool>> {
    let sql = format!(
        "SELECT CASE WHEN {CARRY_OVER_IS_OPEN} THEN 'OPEN' ELSE 'TAKEN' END AS state FROM carry_overs \
         WHERE doctor_id = $1 AND period_start = $2 AND period_end = $3{lock}"
    );
    let row = tx
        .fetch_optional(&sql, args![slot.0.as_str(), slot.1.start, slot.1.end])
        .await
        .map_err(db)?;
    row.map(|r| r.text("state").map(|s| s == "OPEN"))
        .transpose()
        .map_err(db)
}

/// Inserts a checked payout with its items, its audit entry and the carry-overs it consumes.
/// Returns `false` (writing nothing) when a unique constraint already holds the payout's place:
/// its id, or a live calculated payout for its doctor and period.
async fn insert_payout<T: Tx>(tx: &mut T, new: &NewPayout) -> Result<bool> {
    let sql = format!(
        "INSERT INTO payouts ({PAYOUT_COLUMNS}) VALUES {} ON CONFLICT DO NOTHING",
        values_list(tx.dialect(), 1, 17)
    );
    let inserted = tx.execute(&sql, Args(payout_values(&new.payout)?)).await.map_err(db)?;
    if inserted == 0 {
        return Ok(false);
    }
    insert_items(tx, &[new]).await?;
    insert_audit(tx, &new.audit).await?;
    consume_carry_overs(tx, new).await?;
    Ok(true)
}

/// Points the carry-overs `new` consumes at it. Consumes only a carry-over that is still open (never consumed, or its consumer cancelled), so
/// that of two calculations racing for it at most one takes it; re-points a reopened one.
async fn consume_carry_overs<T: Tx>(tx: &mut T, new: &NewPayout) -> Result<()> {
    let p = &new.payout;
    let consume = format!(
        "UPDATE carry_overs SET consumed_by = $1 \
         WHERE doctor_id = $2 AND period_start = $3 AND period_end = $4 AND {CARRY_OVER_IS_OPEN}"
    );
    for period in &new.consumes_carry_overs {
        let consumed = tx
            .execute(
                &consume,
                args![p.id.as_str(), p.doctor_id.as_str(), period.start, period.end],
            )
            .await
            .map_err(db)?;
        if consumed != 1 {
            // Checked (and, in Postgres, locked) before: someone changed it anyway. Refuse it all.
            return Err(Error::Conflict(p.id.clone()));
        }
    }
    Ok(())
}

/// The placeholders of one multi-row `INSERT`: `rows` groups of `width`. SQLite gets anonymous `?`
/// (bound in order): it looks a numbered parameter up by name in a list as long as the statement's
/// parameters, which made binding a statement quadratic in its size. Postgres gets `$1, $2, ...`.
fn values_list(dialect: Dialect, rows: usize, width: usize) -> String {
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
struct Inserted<Row> {
    /// The rows a `RETURNING` tail gave back (none without one).
    returned: Vec<Row>,
    /// How many rows the statements inserted (or, with `ON CONFLICT DO UPDATE`, changed).
    changed: u64,
}

/// Inserts `rows`, each `width` values by `values`, with as few multi-row statements as the bind
/// limit allows: `{head} VALUES (...), (...) {tail}`. With `returning`, the tail has a `RETURNING`
/// clause, and the rows it gives back are collected; without, only the count is.
///
/// The values of each statement are built and encoded while the database runs the one before, so
/// the database's thread (SQLite's worker, a Postgres backend) and this one work side by side.
async fn insert_rows<T: Tx, R: Sync>(
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
async fn insert_items<T: Tx>(tx: &mut T, payouts: &[&NewPayout]) -> Result<()> {
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
                Value::Static(item.kind.as_str()),
                Value::from(item.reference.as_str()),
                Value::from(rows::minor_units(&item.amount)?),
                Value::from(item.amount.currency().code()),
                Value::from(item.occurred_at),
                Value::from(item.description.as_str()),
            ]);
            Ok(())
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
async fn insert_audits<T: Tx>(tx: &mut T, payouts: &[&NewPayout]) -> Result<()> {
    let head = format!("INSERT INTO audit_entries ({})", rows::AUDIT_COLUMNS);
    insert_rows(tx, &head, "", false, 7, payouts, |new, out| {
        out.extend(audit_values(&new.audit));
        Ok(())
    })
    .await?;
    Ok(())
}

fn audit_values(entry: &AuditEntry) -> Vec<Value> {
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

fn payout_values(p: &Payout) -> Result<Vec<Value>> {
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

async fn insert_audit<T: Tx>(tx: &mut T, entry: &AuditEntry) -> Result<()> {
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

async fn read_payout<T: Tx>(tx: &mut T, id: &PayoutId) -> Result<Payout> {
    let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1");
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

/// Which of `slots` hold a live calculated payout, one query per period and chunk of doctors; the
/// condition is the partial unique index's own, so the lookup is answered from that index.
async fn live_calculated_among<T: Tx>(tx: &mut T, slots: &[Slot]) -> Result<HashSet<Slot>> {
    slots_present(
        tx,
        "SELECT doctor_id FROM payouts WHERE period_start = $1 AND period_end = $2 AND doctor_id IN ({in}) \
         AND origin = 'CALCULATED' AND status <> 'CANCELLED'",
        slots,
    )
    .await
}

/// Which of `slots` have a carry-over (open or consumed).
async fn carried_over_among<T: Tx>(tx: &mut T, slots: &[Slot]) -> Result<HashSet<Slot>> {
    slots_present(
        tx,
        "SELECT doctor_id FROM carry_overs WHERE period_start = $1 AND period_end = $2 AND doctor_id IN ({in})",
        slots,
    )
    .await
}

async fn slots_present<T: Tx>(tx: &mut T, sql: &str, slots: &[Slot]) -> Result<HashSet<Slot>> {
    let mut by_period: Vec<(Period, Vec<&str>)> = Vec::new();
    for (doctor, period) in slots {
        match by_period.iter_mut().find(|(p, _)| p == period) {
            Some((_, doctors)) => doctors.push(doctor.as_str()),
            None => by_period.push((*period, vec![doctor.as_str()])),
        }
    }
    let mut present = HashSet::new();
    for (period, doctors) in by_period {
        let fixed = [Value::from(period.start), Value::from(period.end)];
        for row in lookup(tx, sql, &fixed, &doctors).await? {
            present.insert((DoctorId::new(row.text("doctor_id").map_err(db)?), period));
        }
    }
    Ok(present)
}

/// Which of `ids` name an existing payout.
async fn existing_payouts<T: Tx>(tx: &mut T, ids: &[&str]) -> Result<HashSet<String>> {
    lookup(tx, "SELECT id FROM payouts WHERE id IN ({in})", &[], ids)
        .await?
        .iter()
        .map(|row| row.text("id").map_err(db))
        .collect()
}

/// Writes one chunk of a period's calculation in one transaction.
///
/// What is already there is read with a few set lookups (live payouts and carry-overs of the
/// batch's slots, taken ids) instead of a query per payout, and the rows are written with
/// multi-row `INSERT`s, so a chunk of 500 doctors costs a handful of statements, not thousands.
/// Carry-overs a payout consumes are still checked (and in Postgres locked) one by one: they are few.
pub(crate) async fn create_period<D: Db>(d: &D, batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
    for new in &batch.payouts {
        check_new(new)?;
    }
    let lock = lock_rows(d.dialect());
    let mut tx = d.begin_write().await.map_err(db)?;
    let mut outcome = PeriodBatchOutcome::default();

    let payout_slots: Vec<Slot> = batch
        .payouts
        .iter()
        .map(|new| (new.payout.doctor_id.clone(), new.payout.period()))
        .collect();
    let all_slots: Vec<Slot> = payout_slots
        .iter()
        .cloned()
        .chain(batch.carry_overs.iter().map(|c| (c.doctor_id.clone(), c.period)))
        .collect();
    let live = live_calculated_among(&mut tx, &all_slots).await?;
    let carried = carried_over_among(&mut tx, &payout_slots).await?;
    let ids: Vec<&str> = batch.payouts.iter().map(|new| new.payout.id.as_str()).collect();
    let taken_ids = existing_payouts(&mut tx, &ids).await?;

    let mut live_in_batch: HashSet<Slot> = HashSet::new();
    let mut consumed_in_batch: HashSet<Slot> = HashSet::new();
    let mut ids_in_batch: HashSet<&PayoutId> = HashSet::new();
    let mut accepted: Vec<&NewPayout> = Vec::new();
    for (new, slot) in batch.payouts.iter().zip(payout_slots) {
        let p = &new.payout;
        let skip = if live_in_batch.contains(&slot) || live.contains(&slot) {
            Some(SkipReason::AlreadyCalculated)
        } else if carried.contains(&slot) {
            Some(SkipReason::AlreadyCarriedOver)
        } else {
            let mut wanted = HashSet::new();
            let mut taken = false;
            for period in &new.consumes_carry_overs {
                let wanted_slot = (p.doctor_id.clone(), *period);
                let open = carry_over_state(&mut tx, &wanted_slot, lock).await? == Some(true);
                if !open || consumed_in_batch.contains(&wanted_slot) || !wanted.insert(wanted_slot) {
                    taken = true;
                    break;
                }
            }
            taken.then_some(SkipReason::CarryOverTaken)
        };
        if let Some(reason) = skip {
            outcome.skipped.push((p.doctor_id.clone(), reason));
            continue;
        }
        if !ids_in_batch.insert(&p.id) || taken_ids.contains(p.id.as_str()) {
            return Err(Error::Conflict(p.id.clone()));
        }
        if p.origin == PayoutOrigin::Calculated {
            live_in_batch.insert(slot);
        }
        consumed_in_batch.extend(
            new.consumes_carry_overs
                .iter()
                .map(|period| (p.doctor_id.clone(), *period)),
        );
        accepted.push(new);
    }

    // The payouts first: a row a concurrent calculation committed since the lookups is not
    // inserted, and that payout writes nothing else.
    let head = format!("INSERT INTO payouts ({PAYOUT_COLUMNS})");
    let values = |new: &&NewPayout, out: &mut Vec<Value>| {
        out.extend(payout_values(&new.payout)?);
        Ok(())
    };
    let mut created: Vec<&NewPayout> = Vec::with_capacity(accepted.len());
    if tx.dialect() == Dialect::Sqlite {
        // `BEGIN IMMEDIATE`: no other writer since the lookups, so every accepted payout goes in, and
        // the count proves it (without a `RETURNING` row per payout crossing to this thread).
        let inserted = insert_rows(&mut tx, &head, "ON CONFLICT DO NOTHING", false, 17, &accepted, values).await?;
        if inserted.changed != accepted.len() as u64 {
            return Err(Error::Store(format!(
                "{} of {} payouts were inserted although the transaction is the only writer",
                inserted.changed,
                accepted.len()
            )));
        }
        created = accepted;
    } else {
        let inserted: HashSet<String> = insert_rows(
            &mut tx,
            &head,
            "ON CONFLICT DO NOTHING RETURNING id",
            true,
            17,
            &accepted,
            values,
        )
        .await?
        .returned
        .iter()
        .map(|row| row.text("id").map_err(db))
        .collect::<Result<_>>()?;
        for new in accepted {
            let p = &new.payout;
            if inserted.contains(p.id.as_str()) {
                created.push(new);
            } else if payout_exists(&mut tx, &p.id).await? {
                return Err(Error::Conflict(p.id.clone()));
            } else {
                live_in_batch.remove(&(p.doctor_id.clone(), p.period()));
                outcome
                    .skipped
                    .push((p.doctor_id.clone(), SkipReason::AlreadyCalculated));
            }
        }
    }
    insert_items(&mut tx, &created).await?;
    insert_audits(&mut tx, &created).await?;
    for new in &created {
        consume_carry_overs(&mut tx, new).await?;
        outcome.created.push(new.payout.id.clone());
    }

    for c in &batch.carry_overs {
        let slot = (c.doctor_id.clone(), c.period);
        if live.contains(&slot) || live_in_batch.contains(&slot) {
            outcome
                .skipped
                .push((c.doctor_id.clone(), SkipReason::AlreadyCalculated));
            continue;
        }
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO carry_overs ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    rows::CARRY_OVER_COLUMNS
                ),
                args![
                    c.doctor_id.as_str(),
                    c.period.start,
                    c.period.end,
                    rows::minor_units(&c.amount)?,
                    c.amount.currency().code(),
                    c.note.as_str(),
                    c.created_at,
                    c.consumed_by.as_ref().map(|id| id.as_str()),
                ],
            )
            .await
            .map_err(db)?;
        if inserted == 0 {
            outcome
                .skipped
                .push((c.doctor_id.clone(), SkipReason::AlreadyCarriedOver));
        } else {
            outcome.carried_over.push(c.doctor_id.clone());
        }
    }

    tx.commit().await.map_err(db)?;
    Ok(outcome)
}

pub(crate) async fn create_payout<D: Db>(d: &D, new: NewPayout) -> Result<Payout> {
    check_new(&new)?;
    let lock = lock_rows(d.dialect());
    let mut tx = d.begin_write().await.map_err(db)?;
    let p = &new.payout;
    let slot = (p.doctor_id.clone(), p.period());
    if payout_exists(&mut tx, &p.id).await?
        || (p.origin == PayoutOrigin::Calculated
            && live_calculated_among(&mut tx, std::slice::from_ref(&slot))
                .await?
                .contains(&slot))
    {
        return Err(Error::Conflict(p.id.clone()));
    }
    let mut wanted = HashSet::new();
    for period in &new.consumes_carry_overs {
        let wanted_slot = (p.doctor_id.clone(), *period);
        match carry_over_state(&mut tx, &wanted_slot, lock).await? {
            None => {
                return Err(Error::InvalidInput(format!(
                    "payout {}: doctor {} has no carry-over for {period}",
                    p.id, p.doctor_id
                )));
            }
            Some(open) if !open || !wanted.insert(wanted_slot) => return Err(Error::Conflict(p.id.clone())),
            Some(_) => {}
        }
    }
    if !insert_payout(&mut tx, &new).await? {
        return Err(Error::Conflict(p.id.clone()));
    }
    let payout = read_payout(&mut tx, &p.id).await?;
    tx.commit().await.map_err(db)?;
    Ok(payout)
}

pub(crate) async fn apply<D: Db>(d: &D, change: PayoutChange) -> Result<Payout> {
    check_change_ids(&change)?;
    // In one statement where it can be (Postgres; an attempt update of an attempt inserted by the
    // same change needs the second step to see the first, which one statement's steps do not).
    if d.dialect() == Dialect::Postgres && !(change.new_attempt.is_some() && change.attempt_update.is_some()) {
        return apply_in_one_statement(d, &change).await;
    }
    let mut tx = d.begin_write().await.map_err(db)?;
    let id = &change.payout_id;

    // The conditional update is the race's referee: of two changes read at one version, one wins.
    // It goes first and returns the row, so a change that applies costs no reads (a webhook is
    // one transaction of four writes); only a refused one looks for the reason, in the order the
    // conformance suite pins: exists, event new, version, attempt.
    let patch = &change.patch;
    let updated = tx
        .fetch_optional(
            &format!(
                "UPDATE payouts SET \
                     status = COALESCE($1, status), \
                     provider = COALESCE($2, provider), \
                     provider_reference = COALESCE($3, provider_reference), \
                     notes = COALESCE($4, notes), \
                     approved_by = COALESCE($5, approved_by), \
                     processed_at = COALESCE($6, processed_at), \
                     updated_at = $7, \
                     version = version + 1 \
                 WHERE id = $8 AND version = $9 AND status = $10 \
                 RETURNING {PAYOUT_COLUMNS}"
            ),
            args![
                change.new_status.map(|s| s.as_str()),
                patch.provider.map(|p| p.as_str()),
                patch.provider_reference.clone(),
                patch.notes.clone(),
                patch.approved_by.clone(),
                patch.processed_at,
                change.at,
                id.as_str(),
                change.expected_version,
                change.expected_status.as_str(),
            ],
        )
        .await
        .map_err(db)?;
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
    for entry in &change.audit {
        insert_audit(&mut tx, entry).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(payout)
}

/// The SQLSTATE `payouts_require` raises (migration `20251201000000_refuse_in_statement`).
pub(crate) const REFUSED_IN_STATEMENT: &str = "PX001";

/// [`apply`] as one statement of data-modifying steps (Postgres), so a change costs one round trip
/// and one commit, with no `BEGIN` and `COMMIT` around it; the statement is atomic as a whole.
///
/// The steps run in a chain, each reading the one before, so they run in that order and only once
/// the conditional update of the payout (the race's referee) has returned its row:
///
/// 1. `p`: the conditional `UPDATE payouts ... RETURNING` (no row: refused; nothing else runs);
/// 2. `e`: the webhook event, without `ON CONFLICT`: a recorded one fails the statement with a
///    unique violation on `webhook_events_pkey`, which is [`Error::DuplicateEvent`];
/// 3. `a`: the new attempt (a number or key already taken is a unique violation: `Conflict`);
/// 4. `u`: the attempt update; when it finds no attempt, the final `SELECT` calls
///    `payouts_require(false, ...)`, which fails the statement ([`REFUSED_IN_STATEMENT`]);
/// 5. `au`: the audit entries, in order.
///
/// A refused change is then explained by reads outside the statement, in the order [`apply`] pins.
async fn apply_in_one_statement<D: Db>(d: &D, change: &PayoutChange) -> Result<Payout> {
    let id = &change.payout_id;
    let patch = &change.patch;
    let mut args = Args::new();
    let payout_id = args.push(id.as_str());
    let mut sql = format!(
        "WITH p AS (UPDATE payouts SET \
             status = COALESCE({}, status), \
             provider = COALESCE({}, provider), \
             provider_reference = COALESCE({}, provider_reference), \
             notes = COALESCE({}, notes), \
             approved_by = COALESCE({}, approved_by), \
             processed_at = COALESCE({}, processed_at), \
             updated_at = {}, \
             version = version + 1 \
         WHERE id = {payout_id} AND version = {} AND status = {} \
         RETURNING {PAYOUT_COLUMNS})",
        args.push(change.new_status.map(|s| s.as_str())),
        args.push(patch.provider.map(|p| p.as_str())),
        args.push(patch.provider_reference.clone()),
        args.push(patch.notes.clone()),
        args.push(patch.approved_by.clone()),
        args.push(patch.processed_at),
        args.push(change.at),
        args.push(change.expected_version),
        args.push(change.expected_status.as_str()),
    );
    // The step the next one reads: it has a row only if every step so far did its write.
    let mut gate = "p";
    if let Some(event) = &change.webhook_event {
        sql += &format!(
            ", e AS (INSERT INTO webhook_events (provider, event_id, payout_id, event_type, received_at) \
             SELECT {}, {}, {payout_id}, {}, {} FROM {gate} RETURNING 1)",
            args.push(event.provider.as_str()),
            args.push(event.event_id.as_str()),
            args.push(event.event_type.as_str()),
            args.push(event.received_at),
        );
        gate = "e";
    }
    if let Some(a) = &change.new_attempt {
        let (outcome, reason) = rows::outcome_parts(&a.outcome);
        sql += &format!(
            ", a AS (INSERT INTO payout_attempts ({}) SELECT {payout_id}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} \
             FROM {gate} RETURNING 1)",
            rows::ATTEMPT_COLUMNS,
            args.push(i64::from(a.attempt_no)),
            args.push(a.provider.as_str()),
            args.push(a.idempotency_key.as_str()),
            args.push(a.request_summary.as_str()),
            args.push(outcome),
            args.push(reason),
            args.push(a.provider_reference.clone()),
            args.push(a.error.clone()),
            args.push(a.created_at),
            args.push(a.updated_at),
        );
        gate = "a";
    }
    let mut check = String::new();
    if let Some(update) = &change.attempt_update {
        let (outcome, reason) = rows::outcome_parts(&update.outcome);
        sql += &format!(
            ", u AS (UPDATE payout_attempts SET outcome = {}, outcome_reason = {}, \
                 provider_reference = COALESCE({}, provider_reference), error = COALESCE({}, error), \
                 updated_at = {} \
             WHERE payout_id = {payout_id} AND attempt_no = {} AND EXISTS (SELECT 1 FROM {gate}) RETURNING 1)",
            args.push(outcome),
            args.push(reason),
            args.push(update.provider_reference.clone()),
            args.push(update.error.clone()),
            args.push(change.at),
            args.push(i64::from(update.attempt_no)),
        );
        check = format!(
            ", payouts_require(EXISTS (SELECT 1 FROM u), {}) AS attempt_found",
            args.push(format!("payout {id} has no attempt {}", update.attempt_no)),
        );
        gate = "u";
    }
    if !change.audit.is_empty() {
        let mut values = Vec::with_capacity(change.audit.len());
        for entry in &change.audit {
            values.push(format!(
                "({payout_id}, {}, {}, {}, {}, {}, {})",
                args.push(entry.actor.as_str()),
                args.push(entry.at),
                args.push(entry.action.as_str()),
                args.push(entry.from.map(|s| s.as_str())),
                args.push(entry.to.map(|s| s.as_str())),
                args.push(entry.detail.as_str()),
            ));
        }
        sql += &format!(
            ", au AS (INSERT INTO audit_entries ({}) SELECT v.* FROM {gate}, (VALUES {}) \
             AS v (payout_id, actor, at, action, from_status, to_status, detail) RETURNING 1)",
            rows::AUDIT_COLUMNS,
            values.join(", "),
        );
    }
    sql += &format!(" SELECT {PAYOUT_COLUMNS}{check} FROM p");

    match d.fetch_optional(&sql, args).await {
        Ok(Some(row)) => rows::payout(&row),
        Ok(None) => Err(refusal(d, change).await),
        Err(e) => Err(statement_error(e, change)),
    }
}

/// What a failed one-statement change means.
fn statement_error(e: sqlx::Error, change: &PayoutChange) -> Error {
    if let Some(event) = &change.webhook_event {
        if e.as_database_error().and_then(|d| d.constraint()) == Some("webhook_events_pkey") {
            return duplicate(event);
        }
    }
    if is_unique_violation(&e) {
        return Error::Conflict(change.payout_id.clone());
    }
    if let (Some(update), Some(d)) = (&change.attempt_update, e.as_database_error()) {
        if d.code().as_deref() == Some(REFUSED_IN_STATEMENT) {
            return Error::InvalidInput(format!(
                "payout {} has no attempt {}",
                change.payout_id, update.attempt_no
            ));
        }
    }
    db(e)
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
        let seen = d
            .fetch_optional(
                "SELECT 1 AS one FROM webhook_events WHERE provider = $1 AND event_id = $2",
                args![event.provider.as_str(), event.event_id.as_str()],
            )
            .await;
        match seen {
            Ok(Some(_)) => return duplicate(event),
            Ok(None) => {}
            Err(e) => return db(e),
        }
    }
    Error::Conflict(id.clone())
}

/// Whether `event` is already recorded (the reason an update was refused, when it is).
async fn event_recorded<T: Tx>(tx: &mut T, event: &payout_core::store::WebhookEventRecord) -> Result<bool> {
    let seen = tx
        .fetch_optional(
            "SELECT 1 AS one FROM webhook_events WHERE provider = $1 AND event_id = $2",
            args![event.provider.as_str(), event.event_id.as_str()],
        )
        .await
        .map_err(db)?;
    Ok(seen.is_some())
}

fn duplicate(event: &payout_core::store::WebhookEventRecord) -> Error {
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
                "INSERT INTO payout_attempts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
            ],
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(Error::Conflict(a.payout_id.clone())),
        Err(e) => Err(db(e)),
    }
}

/// See [`PgStore::claim_stuck_processing`](crate::PgStore::claim_stuck_processing).
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
         RETURNING {PAYOUT_COLUMNS}"
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

#[cfg(test)]
mod tests {
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
