//! Creating payouts: a calculation's chunk ([`create_period`]) and a manual payout
//! ([`create_payout`]), each one transaction that checks before it writes.

use std::collections::HashSet;

use payout_core::domain::{DoctorId, Payout, PayoutId, PayoutOrigin, Period};
use payout_core::store::{NewPayout, PeriodBatch, PeriodBatchOutcome, SkipReason};
use payout_core::{Error, Result};

use super::insert::{insert_audit, insert_audits, insert_items, insert_rows, payout_values, values_list};
use super::{lookup, payout_exists, read_payout};
use crate::db::{Args, Db, Dialect, RowExt, Tx, Value, args};
use crate::error::{broken, db};
use crate::rows::{self, CARRY_OVER_IS_OPEN, PAYOUT_COLUMNS};

type Slot = (DoctorId, Period);

/// Row locks a check takes so that what it saw still holds when the transaction writes. SQLite
/// needs none: `BEGIN IMMEDIATE` already made the transaction the only writer.
fn lock_rows(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    }
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
    batch.validate()?;
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
            return Err(broken(format!(
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
    new.validate()?;
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
