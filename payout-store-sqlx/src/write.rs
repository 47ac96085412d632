//! The writing half of the store, written once for both dialects. Every method is one transaction
//! that checks before it writes; any error drops the transaction, which rolls everything back.

use std::collections::HashSet;

use payout_core::domain::{AuditEntry, DoctorId, Payout, PayoutAttempt, PayoutId, PayoutItem, PayoutOrigin, Period};
use payout_core::money::Money;
use payout_core::status::PayoutStatus;
use payout_core::store::{NewPayout, PayoutChange, PeriodBatch, PeriodBatchOutcome, SkipReason};
use payout_core::{Error, Result};

use crate::db::{Args, Db, Dialect, RowExt, Tx, args};
use crate::error::{db, is_unique_violation};
use crate::rows::{self, CARRY_OVER_IS_OPEN, PAYOUT_COLUMNS};

/// How many item rows go into one `INSERT` (8 values each, well under both dialects' limits).
const ITEMS_PER_INSERT: usize = 100;

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

fn check_change_ids(change: &PayoutChange) -> Result<()> {
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

/// True when a non-cancelled calculated payout exists for the slot. The condition is written as the
/// partial unique index's own, literally, so the planner can answer from that index.
async fn live_calculated<T: Tx>(tx: &mut T, slot: &Slot) -> Result<bool> {
    let row = tx
        .fetch_optional(
            "SELECT 1 AS one FROM payouts WHERE doctor_id = $1 AND period_start = $2 AND period_end = $3 \
             AND origin = 'CALCULATED' AND status <> 'CANCELLED'",
            args![slot.0.as_str(), slot.1.start, slot.1.end],
        )
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
    let p = &new.payout;
    let inserted = tx
        .execute(
            &format!(
                "INSERT INTO payouts ({PAYOUT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT DO NOTHING"
            ),
            args![
                p.id.as_str(),
                p.doctor_id.as_str(),
                p.period_start,
                p.period_end,
                rows::minor_units(&p.amount_due)?,
                p.currency().code(),
                p.status.as_str(),
                p.provider.map(|v| v.as_str()),
                p.provider_reference.clone(),
                p.notes.clone(),
                p.origin.as_str(),
                p.created_by.as_str(),
                p.approved_by.clone(),
                p.processed_at,
                p.created_at,
                p.updated_at,
                p.version,
            ],
        )
        .await
        .map_err(db)?;
    if inserted == 0 {
        return Ok(false);
    }
    insert_items(tx, &p.id, &new.items).await?;
    insert_audit(tx, &new.audit).await?;
    // Consumes only a carry-over that is still open (never consumed, or its consumer cancelled), so
    // that of two calculations racing for it at most one takes it; re-points a reopened one.
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
    Ok(true)
}

async fn insert_items<T: Tx>(tx: &mut T, id: &PayoutId, items: &[PayoutItem]) -> Result<()> {
    for (n, chunk) in items.chunks(ITEMS_PER_INSERT).enumerate() {
        let mut args = Args::new();
        let mut rows = Vec::with_capacity(chunk.len());
        for (i, item) in chunk.iter().enumerate() {
            let position = i64::try_from(n * ITEMS_PER_INSERT + i).unwrap_or(i64::MAX);
            let values = [
                args.push(id.as_str()),
                args.push(position),
                args.push(rows::name_of(&item.kind)),
                args.push(item.reference.as_str()),
                args.push(rows::minor_units(&item.amount)?),
                args.push(item.amount.currency().code()),
                args.push(item.occurred_at),
                args.push(item.description.as_str()),
            ];
            rows.push(format!("({})", values.join(", ")));
        }
        let sql = format!(
            "INSERT INTO payout_items (payout_id, position, {}) VALUES {}",
            rows::ITEM_COLUMNS,
            rows.join(", ")
        );
        tx.execute(&sql, args).await.map_err(db)?;
    }
    Ok(())
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

pub(crate) async fn create_period<D: Db>(d: &D, batch: PeriodBatch) -> Result<PeriodBatchOutcome> {
    for new in &batch.payouts {
        check_new(new)?;
    }
    let lock = lock_rows(d.dialect());
    let mut tx = d.begin_write().await.map_err(db)?;
    let mut outcome = PeriodBatchOutcome::default();

    let mut live_in_batch: HashSet<Slot> = HashSet::new();
    let mut consumed_in_batch: HashSet<Slot> = HashSet::new();
    let mut ids_in_batch: HashSet<PayoutId> = HashSet::new();
    for new in &batch.payouts {
        let p = &new.payout;
        let slot = (p.doctor_id.clone(), p.period());
        let skip = if live_in_batch.contains(&slot) || live_calculated(&mut tx, &slot).await? {
            Some(SkipReason::AlreadyCalculated)
        } else if carry_over_state(&mut tx, &slot, "").await?.is_some() {
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
        if !ids_in_batch.insert(p.id.clone()) || payout_exists(&mut tx, &p.id).await? {
            return Err(Error::Conflict(p.id.clone()));
        }
        if !insert_payout(&mut tx, new).await? {
            // A concurrent calculation committed this payout's place after the checks above.
            if payout_exists(&mut tx, &p.id).await? {
                return Err(Error::Conflict(p.id.clone()));
            }
            outcome
                .skipped
                .push((p.doctor_id.clone(), SkipReason::AlreadyCalculated));
            continue;
        }
        if p.origin == PayoutOrigin::Calculated {
            live_in_batch.insert(slot);
        }
        consumed_in_batch.extend(
            new.consumes_carry_overs
                .iter()
                .map(|period| (p.doctor_id.clone(), *period)),
        );
        outcome.created.push(p.id.clone());
    }

    for c in &batch.carry_overs {
        let slot = (c.doctor_id.clone(), c.period);
        if live_calculated(&mut tx, &slot).await? {
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
        || (p.origin == PayoutOrigin::Calculated && live_calculated(&mut tx, &slot).await?)
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
    let mut tx = d.begin_write().await.map_err(db)?;
    let id = &change.payout_id;

    // The checks, in the order the conformance suite pins: exists, event new, version, attempt.
    if !payout_exists(&mut tx, id).await? {
        return Err(Error::NotFound(id.clone()));
    }
    if let Some(event) = &change.webhook_event {
        let seen = tx
            .fetch_optional(
                "SELECT 1 AS one FROM webhook_events WHERE provider = $1 AND event_id = $2",
                args![event.provider.as_str(), event.event_id.as_str()],
            )
            .await
            .map_err(db)?;
        if seen.is_some() {
            return Err(duplicate(event));
        }
    }

    // The conditional update is the race's referee: of two changes read at one version, one wins.
    let patch = &change.patch;
    let updated = tx
        .execute(
            "UPDATE payouts SET \
                 status = COALESCE($1, status), \
                 provider = COALESCE($2, provider), \
                 provider_reference = COALESCE($3, provider_reference), \
                 notes = COALESCE($4, notes), \
                 approved_by = COALESCE($5, approved_by), \
                 processed_at = COALESCE($6, processed_at), \
                 updated_at = $7, \
                 version = version + 1 \
             WHERE id = $8 AND version = $9 AND status = $10",
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
    if updated == 0 {
        return Err(Error::Conflict(id.clone()));
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
    if let Some(event) = &change.webhook_event {
        // Checked above; a concurrent delivery of the same event that committed since loses here.
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
    for entry in &change.audit {
        insert_audit(&mut tx, entry).await?;
    }
    let payout = read_payout(&mut tx, id).await?;
    tx.commit().await.map_err(db)?;
    Ok(payout)
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
