//! Creating payouts: a calculation's chunk ([`create_period`]) and a manual payout
//! ([`create_payout`]), each one transaction that checks before it writes.

use std::collections::HashSet;

use payout_core::domain::{DoctorId, Payout, PayoutId, Period};
use payout_core::money::{Currency, Money};
use payout_core::store::{
    BatchDecision, BatchKeys, CarryOver, ClawbackDue, HeldConsultation, Holder, NewPayout, PeriodBatch,
    PeriodBatchOutcome, SkipReason, Slot, StoredFacts,
};
use payout_core::{Error, Result};

use super::insert::{insert_audit, insert_audits, insert_items, insert_rows, item_values, payout_values, values_list};
use super::{lookup, payout_exists, read_payout};
use crate::db::{Args, Db, Dialect, RowExt, Tx, Value, args};
use crate::error::{broken, db};
use crate::rows::{self, CARRY_OVER_IS_OPEN, PAYOUT_COLUMNS};

/// Row locks a check takes so that what it saw still holds when the transaction writes. SQLite
/// needs none: `BEGIN IMMEDIATE` already made the transaction the only writer.
fn lock_rows(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => " FOR UPDATE",
        Dialect::Sqlite => "",
    }
}

/// Which of `slots` have a carry-over, and which of those are open (never consumed, or consumed
/// by a payout cancelled since: [`CARRY_OVER_IS_OPEN`]).
///
/// With `lock` (Postgres) the rows stay locked until the transaction ends. A transaction that waited
/// for that lock sees a row as the winner left it: its `consumed_by` names the winner's payout, which
/// is not cancelled, so the carry-over is not open for the loser.
async fn carry_over_states<T: Tx>(tx: &mut T, slots: &[Slot], lock: &str) -> Result<(HashSet<Slot>, HashSet<Slot>)> {
    let sql = format!(
        "SELECT doctor_id, CASE WHEN {CARRY_OVER_IS_OPEN} THEN 'OPEN' ELSE 'TAKEN' END AS state FROM carry_overs \
         WHERE period_start = $1 AND period_end = $2 AND doctor_id IN ({{in}}){lock}"
    );
    let mut present = HashSet::new();
    let mut open = HashSet::new();
    for (slot, row) in slot_rows(tx, &sql, slots).await? {
        if row.text("state").map_err(db)? == "OPEN" {
            open.insert(slot.clone());
        }
        present.insert(slot);
    }
    Ok((present, open))
}

/// How a transaction learns which of its ledger entries are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LedgerCheck {
    /// Reads every entry of the batch: live items and carried items.
    Read,
    /// Reads the carried items of every entry, but live items only for the carry-overs' entries,
    /// and leaves the payouts' entries to the partial unique indexes over live items, which refuse
    /// a taken one at the insert ([`Written::LedgerTaken`]).
    ByIndex,
}

/// What the database holds about `keys`, read in the transaction; the carry-overs payouts want to
/// consume are locked (Postgres), so what decided their consumption still holds at the write.
/// The carried items are read for all of `keys`' ledger entries, the live items for all of them
/// too, or only for `live_only`'s ([`LedgerCheck::ByIndex`]: the carry-overs' entries).
async fn facts<T: Tx>(tx: &mut T, keys: &BatchKeys, live_only: Option<&BatchKeys>) -> Result<StoredFacts> {
    let lock = lock_rows(tx.dialect());
    let live_calculated = live_calculated_among(tx, &keys.slots).await?;
    let mut carry_overs = carried_over_among(tx, &keys.slots).await?;
    let (wanted, open_carry_overs) = carry_over_states(tx, &keys.wanted_carry_overs, lock).await?;
    carry_overs.extend(wanted);
    let ids: Vec<&str> = keys.payout_ids.iter().map(PayoutId::as_str).collect();
    let payout_ids = existing_payouts(tx, &ids)
        .await?
        .into_iter()
        .map(PayoutId::new)
        .collect();
    let held_consultations = ledger_taken(
        tx,
        "CONSULTATION",
        &keys.consultations,
        live_only.map(|k| k.consultations.as_slice()),
    )
    .await?;
    let held_clawbacks = ledger_taken(
        tx,
        "CLAWBACK",
        &keys.clawbacks,
        live_only.map(|k| k.clawbacks.as_slice()),
    )
    .await?;
    Ok(StoredFacts {
        live_calculated,
        carry_overs,
        open_carry_overs,
        payout_ids,
        held_consultations,
        held_clawbacks,
    })
}

/// Which of `references` the ledger holds for `kind` (`CONSULTATION` or `CLAWBACK`): a carry-over's
/// item has it, or a live item of a payout has it (looked for only among `live_only` when given).
/// One statement, the ids bound once when both lookups take all of them.
async fn ledger_taken<T: Tx>(
    tx: &mut T,
    kind: &'static str,
    references: &[String],
    live_only: Option<&[String]>,
) -> Result<HashSet<String>> {
    if references.is_empty() {
        return Ok(HashSet::new());
    }
    let dialect = tx.dialect();
    let live_param = if live_only.is_some() { "$2" } else { "$1" };
    let sql = format!(
        "SELECT t.reference {} UNION ALL SELECT t.reference {}",
        by_reference(dialect, "$1", "carried_items", &format!("t.kind = '{kind}'")),
        by_reference(
            dialect,
            live_param,
            "payout_items",
            &format!("t.live AND t.kind = '{kind}'")
        ),
    );
    let mut args = id_array(references);
    if let Some(live) = live_only {
        args.0.extend(id_array(live).0);
    }
    tx.fetch_all(&sql, args)
        .await
        .map_err(db)?
        .iter()
        .map(|row| row.text("reference").map_err(db))
        .collect()
}

/// `FROM` the rows of `table` (named `t`) that meet `condition` and whose `reference` is one of the
/// ids bound as `param` (`$1`: Postgres a `TEXT[]`, SQLite a JSON array), each id one probe of the
/// index `condition` selects. On SQLite the ids drive the join (`CROSS JOIN` fixes the order): `IN
/// (SELECT value FROM json_each($1))` first copied a chunk's 20,000 ids into a temporary index,
/// which took about as long as the probes.
fn by_reference(dialect: Dialect, param: &str, table: &str, condition: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("FROM {table} t WHERE {condition} AND t.reference = ANY({param}::text[])"),
        Dialect::Sqlite => {
            format!("FROM json_each({param}) j CROSS JOIN {table} t ON {condition} AND t.reference = j.value")
        }
    }
}

/// `IN` the array of ids bound as `$1` (Postgres `TEXT[]`, SQLite a JSON array read by `json_each`).
fn ids_in(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "= ANY($1::text[])",
        Dialect::Sqlite => "IN (SELECT value FROM json_each($1))",
    }
}

/// `ids` bound as one array, `$1`.
fn id_array(ids: &[String]) -> Args {
    Args(vec![Value::TextArray(ids.iter().cloned().map(Some).collect())])
}

/// `ids` without repeats bound as one array, `$1`: a join with the ids ([`by_reference`] on
/// SQLite) returns a row per id given, not per row matched.
fn distinct_id_array(ids: &[String]) -> Args {
    let mut seen = HashSet::with_capacity(ids.len());
    Args(vec![Value::TextArray(
        ids.iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .map(Some)
            .collect(),
    )])
}

/// The consultation ledger's lookup: which of `appointment_ids` a live `CONSULTATION` item holds,
/// and its payout (`reference`, `payout_id`). One statement however many ids, the ids bound as one
/// array; its condition is the partial unique index's own, so each id is one probe of that index
/// (whose only column is `reference`: an index on `(kind, reference)` leaves `kind`, fixed by the
/// predicate, without a condition, and Postgres's generic plan then scanned the table, comparing
/// every row with every id).
pub(crate) fn held_lookup(dialect: Dialect, appointment_ids: &[String]) -> (String, Args) {
    let sql = format!(
        "SELECT t.reference, t.payout_id {}",
        by_reference(dialect, "$1", "payout_items", "t.live AND t.kind = 'CONSULTATION'")
    );
    (sql, distinct_id_array(appointment_ids))
}

/// See [`PayoutStore::held_consultations`](payout_core::store::PayoutStore::held_consultations):
/// the live items' lookup ([`held_lookup`]), then the carried items' (a primary-key probe per id).
pub(crate) async fn held_consultations<D: Db>(d: &D, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>> {
    if appointment_ids.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, args) = held_lookup(d.dialect(), appointment_ids);
    let mut held = d
        .fetch_all(&sql, args)
        .await
        .map_err(db)?
        .iter()
        .map(|row| {
            Ok(HeldConsultation {
                appointment_id: row.text("reference").map_err(db)?,
                held_by: Holder::Payout(PayoutId::new(row.text("payout_id").map_err(db)?)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let sql = format!(
        "SELECT t.reference, t.period_start, t.period_end {}",
        by_reference(d.dialect(), "$1", "carried_items", "t.kind = 'CONSULTATION'")
    );
    for row in d
        .fetch_all(&sql, distinct_id_array(appointment_ids))
        .await
        .map_err(db)?
    {
        held.push(HeldConsultation {
            appointment_id: row.text("reference").map_err(db)?,
            held_by: Holder::CarryOver(Period {
                start: row.date("period_start").map_err(db)?,
                end: row.date("period_end").map_err(db)?,
            }),
        });
    }
    Ok(held)
}

/// See [`PayoutStore::clawbacks_due`](payout_core::store::PayoutStore::clawbacks_due): the
/// consultations of `PAID` payouts' live items and of carry-overs, less the ones a live or carried
/// `CLAWBACK` item already took. One statement.
pub(crate) async fn clawbacks_due<D: Db>(d: &D, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>> {
    if appointment_ids.is_empty() {
        return Ok(Vec::new());
    }
    let list = ids_in(d.dialect());
    let not_clawed = "NOT EXISTS (SELECT 1 FROM payout_items c WHERE c.live AND c.kind = 'CLAWBACK' \
         AND c.reference = x.reference) \
         AND NOT EXISTS (SELECT 1 FROM carried_items c WHERE c.kind = 'CLAWBACK' AND c.reference = x.reference)";
    let sql = format!(
        "SELECT x.reference, x.amount_minor, x.currency FROM payout_items x JOIN payouts p ON p.id = x.payout_id \
         WHERE x.live AND x.kind = 'CONSULTATION' AND x.reference {list} AND p.status = 'PAID' AND {not_clawed} \
         UNION ALL SELECT x.reference, x.amount_minor, x.currency FROM carried_items x \
         WHERE x.kind = 'CONSULTATION' AND x.reference {list} AND {not_clawed}"
    );
    d.fetch_all(&sql, id_array(appointment_ids))
        .await
        .map_err(db)?
        .iter()
        .map(|row| {
            let currency = Currency::from_code(&row.text("currency").map_err(db)?)
                .map_err(|e| broken(format!("a carried or paid item's currency: {e}")))?;
            Ok(ClawbackDue {
                appointment_id: row.text("reference").map_err(db)?,
                amount: Money::from_minor_units(row.int("amount_minor").map_err(db)?, currency),
            })
        })
        .collect()
}

/// Inserts the ledger entries (consultation and clawback items) of the carry-overs just recorded.
/// A unique violation means a concurrent write took one (it cannot, past the doctors' locks and
/// the checks; the primary key is the backstop) and rolls the chunk back as a `Conflict`.
async fn insert_carried_items<T: Tx>(tx: &mut T, carried: &[&CarryOver]) -> Result<()> {
    let items: Vec<(&CarryOver, usize)> = carried
        .iter()
        .flat_map(|c| (0..c.items.len()).map(move |n| (*c, n)))
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let head = format!(
        "INSERT INTO carried_items (doctor_id, period_start, period_end, position, {})",
        rows::ITEM_COLUMNS
    );
    let inserted = insert_rows(tx, &head, "", false, 10, &items, |(c, n), out| {
        out.extend([
            Value::from(c.doctor_id.as_str()),
            Value::from(c.period.start),
            Value::from(c.period.end),
            Value::from(i64::try_from(*n).unwrap_or(i64::MAX)),
        ]);
        item_values(&c.items[*n], out)
    })
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(Error::Store(s)) if s.kind() == payout_core::error::StoreErrorKind::Conflict => {
            Err(Error::Conflict(PayoutId::new(format!(
                "carry-over of {} for {}",
                carried[0].doctor_id, carried[0].period
            ))))
        }
        Err(e) => Err(e),
    }
}

/// Postgres: takes a transaction-scoped advisory lock per doctor of `doctors`, in order, so two
/// transactions writing ledger entries of the same doctor (a payout's items in one, a carry-over's
/// in the other, which no single unique index spans) check and write one after the other. SQLite's
/// `BEGIN IMMEDIATE` already serializes writers.
async fn lock_doctors<T: Tx>(tx: &mut T, doctors: &[&str]) -> Result<()> {
    if tx.dialect() != Dialect::Postgres || doctors.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&str> = doctors.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let ids: Vec<String> = sorted.iter().map(|d| d.to_string()).collect();
    tx.fetch_all(
        "SELECT pg_advisory_xact_lock(hashtextextended(d, 1405)) FROM unnest($1::text[]) WITH ORDINALITY AS t(d, n) ORDER BY n",
        id_array(&ids),
    )
    .await
    .map_err(db)?;
    Ok(())
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
    if let Err(e) = insert_items(tx, &[new]).await {
        return Err(ledger_race(e, &[new]));
    }
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
    Ok(slot_rows(tx, sql, slots)
        .await?
        .into_iter()
        .map(|(slot, _)| slot)
        .collect())
}

/// The rows `sql` finds for `slots`, each with its slot: one query per period and chunk of doctors
/// (`sql` reads the period as `$1`, `$2` and has `{in}` where the doctors go, and returns
/// `doctor_id`).
async fn slot_rows<T: Tx>(tx: &mut T, sql: &str, slots: &[Slot]) -> Result<Vec<(Slot, T::Row)>> {
    let mut by_period: Vec<(Period, Vec<&str>)> = Vec::new();
    for (doctor, period) in slots {
        match by_period.iter_mut().find(|(p, _)| p == period) {
            Some((_, doctors)) => doctors.push(doctor.as_str()),
            None => by_period.push((*period, vec![doctor.as_str()])),
        }
    }
    let mut found = Vec::new();
    for (period, doctors) in by_period {
        let fixed = [Value::from(period.start), Value::from(period.end)];
        for row in lookup(tx, sql, &fixed, &doctors).await? {
            found.push(((DoctorId::new(row.text("doctor_id").map_err(db)?), period), row));
        }
    }
    Ok(found)
}

/// Which of `ids` name an existing payout.
pub(crate) async fn existing_payouts<T: Tx>(tx: &mut T, ids: &[&str]) -> Result<HashSet<String>> {
    lookup(tx, "SELECT id FROM payouts WHERE id IN ({in})", &[], ids)
        .await?
        .iter()
        .map(|row| row.text("id").map_err(db))
        .collect()
}

/// Writes one chunk of a period's calculation in one transaction: reads the facts of the batch's
/// keys with a few set lookups (not a query per payout), has [`PeriodBatch::decide`] decide, and
/// writes the payouts, items and audit entries with multi-row `INSERT`s (items by `COPY` on
/// Postgres), so a chunk of 2,000 doctors costs a handful of statements.
///
/// The consultation ledger: consultations a live item holds are looked up with the rest and
/// decide skips as [`SkipReason::ConsultationHeld`]. On Postgres a concurrent calculation may
/// insert an item for one of them after the lookup: then the partial unique index
/// `payout_items_ledger` makes this chunk's item insert wait for the other transaction and fail
/// with a unique violation if it commits, which rolls the whole chunk back and is answered as a
/// [`Conflict`](Error::Conflict) (the calculation plans the chunk again).
///
/// On Postgres a concurrent calculation may commit a payout for a slot after the lookups: that
/// payout's insert does nothing (`ON CONFLICT DO NOTHING`), and it is skipped as
/// `AlreadyCalculated` (or, if its id was taken meanwhile, the chunk is a `Conflict`); a carry-over
/// recorded meanwhile is skipped as `AlreadyCarriedOver`. SQLite's `BEGIN IMMEDIATE` makes the
/// transaction the only writer since its lookups.
///
/// On SQLite a chunk is first written optimistically ([`LedgerCheck::ByIndex`]): the payouts'
/// consultations and clawbacks are not read again (the calculation has just left out the held
/// ones), and the partial unique indexes refuse one taken meanwhile at the insert. Then, and only
/// then, the chunk is decided again on a full read in a new transaction, so the outcome is the same
/// as with the full read alone. The carry-overs' entries, which no index spans together with live
/// items, are always read. In the calculation benchmark this took the in-transaction read from
/// about 1.0 s to 0.3 s of the SQLite calculation's 11-12 s.
pub(crate) async fn create_period<D: Db>(d: &D, batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
    batch.validate()?;
    if d.dialect() == Dialect::Sqlite {
        // The calculation looked its chunk's consultations up just before (`held_consultations`)
        // and left the held ones out, so the indexes nearly always find nothing taken, and reading
        // every entry again would cost as much as the lookup. If one is taken after all, the
        // transaction rolls back and the batch is decided again on a full read.
        if let Written::Done(outcome) = write_period(d, batch.clone(), LedgerCheck::ByIndex).await? {
            return Ok(outcome);
        }
    }
    match write_period(d, batch, LedgerCheck::Read).await? {
        Written::Done(outcome) => Ok(outcome),
        Written::LedgerTaken(e) => Err(e),
    }
}

/// What [`write_period`] did.
enum Written {
    /// The transaction committed.
    Done(PeriodBatchOutcome),
    /// A payout's item lost to a partial unique index over live items (the error says which
    /// payout): the transaction rolled back.
    LedgerTaken(Error),
}

/// Decides and writes `batch` in one transaction, reading the ledger as `check` says.
async fn write_period<D: Db>(d: &D, mut batch: PeriodBatch, check: LedgerCheck) -> Result<Written> {
    let mut tx = d.begin_write().await.map_err(db)?;
    let run = batch.run.take();
    if let Some(run) = &run {
        crate::runs::require_run_in(&mut tx, run).await?;
    }
    let doctors: Vec<&str> = batch
        .payouts
        .iter()
        .map(|p| p.payout.doctor_id.as_str())
        .chain(batch.carry_overs.iter().map(|c| c.doctor_id.as_str()))
        .collect();
    lock_doctors(&mut tx, &doctors).await?;
    let keys = batch.keys();
    let facts = match check {
        LedgerCheck::Read => facts(&mut tx, &keys, None).await?,
        LedgerCheck::ByIndex => {
            let carried = PeriodBatch {
                payouts: Vec::new(),
                carry_overs: batch.carry_overs.clone(),
                run: None,
            }
            .keys();
            facts(&mut tx, &keys, Some(&carried)).await?
        }
    };
    let BatchDecision { create, carry, skipped } = batch.decide(&facts)?;
    let mut outcome = PeriodBatchOutcome {
        skipped,
        ..Default::default()
    };
    let created = insert_payouts(&mut tx, &create, &mut outcome).await?;
    if let Err(e) = insert_items(&mut tx, &created).await {
        return match ledger_race(e, &created) {
            e @ Error::Conflict(_) => Ok(Written::LedgerTaken(e)),
            e => Err(e),
        };
    }
    insert_audits(&mut tx, &created).await?;
    for new in &created {
        consume_carry_overs(&mut tx, new).await?;
        outcome.created.push(new.payout.id.clone());
    }
    if let Some(run) = &run {
        let ids: Vec<&str> = outcome.created.iter().map(PayoutId::as_str).collect();
        crate::runs::insert_members(&mut tx, run, &ids, false).await?;
    }
    let mut recorded: Vec<&CarryOver> = Vec::new();
    for c in &carry {
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
            recorded.push(c);
        }
    }
    insert_carried_items(&mut tx, &recorded).await?;
    tx.commit().await.map_err(db)?;
    Ok(Written::Done(outcome))
}

/// A unique violation while inserting a chunk's items: a concurrent calculation took one of its
/// consultations after the lookup (the ledger's index). The chunk rolls back; it is a `Conflict`.
fn ledger_race(e: Error, created: &[&NewPayout]) -> Error {
    match (&e, created.first()) {
        (Error::Store(s), Some(first)) if s.kind() == payout_core::error::StoreErrorKind::Conflict => {
            Error::Conflict(first.payout.id.clone())
        }
        _ => e,
    }
}

/// Inserts the payouts rows of `accepted` and returns the ones inserted; a payout whose slot a
/// concurrent transaction took since the lookups (Postgres) is skipped in `outcome`.
async fn insert_payouts<'a, T: Tx>(
    tx: &mut T,
    accepted: &'a [NewPayout],
    outcome: &mut PeriodBatchOutcome,
) -> Result<Vec<&'a NewPayout>> {
    let head = format!("INSERT INTO payouts ({PAYOUT_COLUMNS})");
    let values = |new: &&NewPayout, out: &mut Vec<Value>| {
        out.extend(payout_values(&new.payout)?);
        Ok(())
    };
    let accepted: Vec<&NewPayout> = accepted.iter().collect();
    if tx.dialect() == Dialect::Sqlite {
        // `BEGIN IMMEDIATE`: no other writer since the lookups, so every accepted payout goes in, and
        // the count proves it (without a `RETURNING` row per payout crossing to this thread).
        let inserted = insert_rows(tx, &head, "ON CONFLICT DO NOTHING", false, 17, &accepted, values).await?;
        if inserted.changed != accepted.len() as u64 {
            return Err(broken(format!(
                "{} of {} payouts were inserted although the transaction is the only writer",
                inserted.changed,
                accepted.len()
            )));
        }
        return Ok(accepted);
    }
    let inserted: HashSet<String> = insert_rows(
        tx,
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
    let mut created = Vec::with_capacity(accepted.len());
    for new in accepted {
        let p = &new.payout;
        if inserted.contains(p.id.as_str()) {
            created.push(new);
        } else if payout_exists(tx, &p.id).await? {
            return Err(Error::Conflict(p.id.clone()));
        } else {
            outcome
                .skipped
                .push((p.doctor_id.clone(), SkipReason::AlreadyCalculated));
        }
    }
    Ok(created)
}

pub(crate) async fn create_payout<D: Db>(d: &D, new: NewPayout) -> Result<Payout> {
    new.validate()?;
    let mut tx = d.begin_write().await.map_err(db)?;
    lock_doctors(&mut tx, &[new.payout.doctor_id.as_str()]).await?;
    new.check_against(&facts(&mut tx, &new.keys(), None).await?)?;
    if !insert_payout(&mut tx, &new).await? {
        return Err(Error::Conflict(new.payout.id.clone()));
    }
    let payout = read_payout(&mut tx, &new.payout.id).await?;
    tx.commit().await.map_err(db)?;
    Ok(payout)
}
