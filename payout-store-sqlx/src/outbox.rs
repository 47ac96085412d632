//! The transactional outbox (`payout_outbox`), read and delivered the same way on both dialects.
//!
//! Events are written by triggers in the transactions of the changes they report (migration
//! `20261208000200_outbox`), so no write path here inserts one: the store's write code is the same
//! with or without a relay reading them.

use payout_core::Result;
use payout_core::domain::Period;
use payout_core::events::{
    ClaimedEvent, DeliveryOutcome, DeliveryState, EventClaim, EventCursor, EventDone, EventPage, PayoutEvent,
    StoredEvent,
};
use payout_core::money::Money;

use crate::db::{Db, Dialect, RowExt, Tx, args};
use crate::error::{corrupt, db};
use crate::rows;

/// The largest page of `events_after` and `dead_letters`.
const MAX_PAGE: u32 = 1000;

const COLUMNS: &str = "seq, id, event_type, payout_id, doctor_id, run_id, period_start, period_end, status, previous_status, amount_minor, \
     currency, provider, actor, action, detail, occurred_at, delivery, tries, last_error, lease";

fn event(r: &impl RowExt) -> Result<StoredEvent> {
    let amount = match (r.opt_text("currency").map_err(db)?, r.opt_int("amount_minor")?) {
        (Some(code), Some(minor)) => Some(Money::from_minor_units(minor, rows::currency(&code)?)),
        _ => None,
    };
    let opt_status = |col: &str| -> Result<_> { r.opt_text(col).map_err(db)?.map(|s| rows::status(&s)).transpose() };
    let delivery = r.text("delivery").map_err(db)?;
    Ok(StoredEvent {
        event: PayoutEvent {
            id: r.text("id").map_err(db)?,
            seq: u64::try_from(r.int("seq").map_err(db)?).map_err(|e| corrupt("event seq", e))?,
            event_type: r
                .text("event_type")
                .map_err(db)?
                .parse()
                .map_err(|e| corrupt("event type", e))?,
            payout_id: r.opt_text("payout_id").map_err(db)?.map(Into::into),
            doctor_id: r.opt_text("doctor_id").map_err(db)?.map(Into::into),
            run_id: r.opt_text("run_id").map_err(db)?.map(Into::into),
            period: match (
                r.opt_date("period_start").map_err(db)?,
                r.opt_date("period_end").map_err(db)?,
            ) {
                (Some(start), Some(end)) => Some(Period { start, end }),
                _ => None,
            },
            status: opt_status("status")?,
            previous_status: opt_status("previous_status")?,
            amount,
            provider: r
                .opt_text("provider")
                .map_err(db)?
                .map(|p| rows::provider(&p))
                .transpose()?,
            actor: r.text("actor").map_err(db)?,
            action: r.text("action").map_err(db)?,
            detail: r.text("detail").map_err(db)?,
            occurred_at: r.ts("occurred_at").map_err(db)?,
        },
        delivery: DeliveryState::parse(&delivery).ok_or_else(|| corrupt("event delivery", &delivery))?,
        tries: u32::try_from(r.int("tries").map_err(db)?).unwrap_or(u32::MAX),
        last_error: r.opt_text("last_error").map_err(db)?,
        // The commit order's key is the reader's to set (see `events_after`).
        cursor: EventCursor::START,
    })
}

/// `opt_int` for the one nullable integer column read here.
trait OptInt {
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
}

impl<R: RowExt> OptInt for R {
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        // NULL amount_minor goes with NULL currency (run events): read the currency first.
        match self.opt_text("currency").map_err(db)? {
            None => Ok(None),
            Some(_) => self.int(col).map(Some).map_err(db),
        }
    }
}

/// See [`EventOutbox::events_after`](payout_core::events::EventOutbox::events_after).
///
/// SQLite has one writer at a time, so its events commit in `seq` order: the cursor is the
/// `seq`. On Postgres the page and whether anything was withheld are read in one snapshot (a
/// read-only `REPEATABLE READ` transaction): rows in `(xid, seq)` order whose writing
/// transaction is older than every transaction still running, and whether a committed row
/// after the cursor is not (migration `20261209000100_outbox_commit_order`).
pub(crate) async fn events_after<D: Db>(d: &D, after: EventCursor, limit: u32) -> Result<EventPage> {
    let limit = i64::from(limit.min(MAX_PAGE));
    match d.dialect() {
        Dialect::Sqlite => {
            let rows = d
                .fetch_all(
                    &format!("SELECT {COLUMNS} FROM payout_outbox WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    args![i64::try_from(after.seq).unwrap_or(i64::MAX), limit],
                )
                .await
                .map_err(db)?;
            let events = rows
                .iter()
                .map(|r| {
                    let mut e = event(r)?;
                    e.cursor = EventCursor::in_seq_order(e.event.seq);
                    Ok(e)
                })
                .collect::<Result<_>>()?;
            Ok(EventPage {
                events,
                withheld: false,
            })
        }
        Dialect::Postgres => {
            // xid8 has no integer cast: both ways through text.
            let cursor = "($1::text::xid8, $2::bigint)";
            let mut tx = d.begin_write().await.map_err(db)?;
            tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", args![])
                .await
                .map_err(db)?;
            let rows = tx
                .fetch_all(
                    &format!(
                        "SELECT {COLUMNS}, xid::text AS commit_key FROM payout_outbox \
                         WHERE (xid, seq) > {cursor} AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
                         ORDER BY xid, seq LIMIT $3"
                    ),
                    args![after.commit.to_string(), seq_arg(after.seq), limit],
                )
                .await
                .map_err(db)?;
            let withheld = tx
                .fetch_optional(
                    &format!(
                        "SELECT 1 AS withheld FROM payout_outbox \
                         WHERE (xid, seq) > {cursor} AND xid >= pg_snapshot_xmin(pg_current_snapshot()) LIMIT 1"
                    ),
                    args![after.commit.to_string(), seq_arg(after.seq)],
                )
                .await
                .map_err(db)?
                .is_some();
            tx.commit().await.map_err(db)?;
            let events = rows
                .iter()
                .map(|r| {
                    let mut e = event(r)?;
                    let key = r.text("commit_key").map_err(db)?;
                    e.cursor = EventCursor {
                        commit: key.parse().map_err(|e| corrupt("event xid", e))?,
                        seq: e.event.seq,
                    };
                    Ok(e)
                })
                .collect::<Result<_>>()?;
            Ok(EventPage { events, withheld })
        }
    }
}

fn seq_arg(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// See [`EventOutbox::dead_letters`](payout_core::events::EventOutbox::dead_letters): by
/// `seq`, as they are a list to work through rather than a feed.
pub(crate) async fn dead_letters<D: Db>(d: &D, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
    let rows = d
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM payout_outbox WHERE seq > $1 AND delivery = 'DEAD_LETTERED' ORDER BY seq LIMIT $2"
            ),
            args![seq_arg(after), i64::from(limit.min(MAX_PAGE))],
        )
        .await
        .map_err(db)?;
    rows.iter().map(event).collect()
}

/// See [`EventOutbox::claim_events`](payout_core::events::EventOutbox::claim_events). On
/// Postgres, events another instance is claiming right now are skipped (`FOR UPDATE SKIP
/// LOCKED`); SQLite has one writer at a time.
pub(crate) async fn claim<D: Db>(d: &D, claim: &EventClaim) -> Result<Vec<ClaimedEvent>> {
    let skip_locked = match d.dialect() {
        Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        Dialect::Sqlite => "",
    };
    // Only the first pending event of its payout (or run): the order of delivery per payout.
    let sql = format!(
        "UPDATE payout_outbox SET next_try_at = $1, lease = lease + 1 \
         WHERE seq IN (SELECT o.seq FROM payout_outbox o \
                       WHERE o.delivery = 'PENDING' AND o.next_try_at <= $2 \
                         AND NOT EXISTS (SELECT 1 FROM payout_outbox e WHERE e.delivery = 'PENDING' \
                                         AND e.stream_key = o.stream_key AND e.seq < o.seq) \
                       ORDER BY o.seq LIMIT $3{skip_locked}) \
         RETURNING {COLUMNS}"
    );
    let mut tx = d.begin_write().await.map_err(db)?;
    let claimed = tx
        .fetch_all(&sql, args![claim.lease_until, claim.now, i64::from(claim.limit)])
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    let mut out = Vec::with_capacity(claimed.len());
    for row in &claimed {
        let stored = event(row)?;
        out.push(ClaimedEvent {
            event: stored.event,
            lease: row.int("lease").map_err(db)?,
            tries: stored.tries,
        });
    }
    out.sort_by_key(|c| c.event.seq);
    Ok(out)
}

/// See [`EventOutbox::finish_events`](payout_core::events::EventOutbox::finish_events): one
/// transaction, one conditional update per event.
pub(crate) async fn finish<D: Db>(d: &D, done: &[EventDone]) -> Result<Vec<bool>> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = d.begin_write().await.map_err(db)?;
    let mut written = Vec::with_capacity(done.len());
    for e in done {
        let (delivery, tried, error, next_try_at) = match &e.outcome {
            DeliveryOutcome::Delivered => (DeliveryState::Delivered, 0i64, None, None),
            DeliveryOutcome::Retry { next_try_at, error } => {
                (DeliveryState::Pending, 1, Some(error.clone()), Some(*next_try_at))
            }
            DeliveryOutcome::DeadLetter { error } => (DeliveryState::DeadLettered, 1, Some(error.clone()), None),
            _ => return Err(payout_core::Error::NotSupported("an unknown delivery outcome".into())),
        };
        let n = tx
            .execute(
                "UPDATE payout_outbox SET delivery = $1, tries = tries + $2, last_error = COALESCE($3, last_error), \
                     next_try_at = COALESCE($4, next_try_at), lease = lease + 1 \
                 WHERE seq = $5 AND lease = $6 AND delivery = 'PENDING'",
                args![
                    delivery.as_str(),
                    tried,
                    error,
                    next_try_at,
                    i64::try_from(e.seq).unwrap_or(i64::MAX),
                    e.lease,
                ],
            )
            .await
            .map_err(db)?;
        written.push(n == 1);
    }
    tx.commit().await.map_err(db)?;
    Ok(written)
}
