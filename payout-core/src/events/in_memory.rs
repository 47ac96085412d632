//! The outbox as [`MemoryStore`](crate::memory::MemoryStore) keeps it, under the store's lock, so
//! an event is written in the same step as its change.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use super::{
    ClaimedEvent, DeliveryOutcome, DeliveryState, EventClaim, EventCursor, EventDone, EventType, PayoutEvent,
    StoredEvent, event_type_of, new_event_id, run_event_type_of,
};
use crate::domain::{AuditEntry, Payout, RunEvent};
use crate::status::PayoutStatus;

/// The largest page of [`events_after`](super::EventOutbox::events_after).
pub(crate) const MAX_PAGE: u32 = 1000;

#[derive(Debug)]
struct Row {
    stored: StoredEvent,
    next_try_at: DateTime<Utc>,
    lease: i64,
}

/// The events, by `seq`, and the pending ones in order.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    rows: BTreeMap<u64, Row>,
    pending: BTreeSet<u64>,
    last_seq: u64,
}

impl Outbox {
    fn push(&mut self, event: PayoutEvent) {
        self.last_seq += 1;
        let seq = self.last_seq;
        let next_try_at = event.occurred_at;
        self.rows.insert(
            seq,
            Row {
                stored: StoredEvent {
                    event: PayoutEvent { seq, ..event },
                    delivery: DeliveryState::Pending,
                    tries: 0,
                    last_error: None,
                    cursor: EventCursor::in_seq_order(seq),
                },
                next_try_at,
                lease: 0,
            },
        );
        self.pending.insert(seq);
    }

    /// The event `entry` makes, written with it, about `payout` as the change left it.
    pub(crate) fn audit(&mut self, payout: &Payout, entry: &AuditEntry) {
        let Some(event_type) = event_type_of(entry) else {
            return;
        };
        let previous_status = match event_type {
            EventType::PayoutStatusChanged => entry.from,
            _ => None,
        };
        self.push(payout_event(
            payout,
            event_type,
            entry.to.unwrap_or(payout.status),
            previous_status,
            &entry.actor,
            &entry.action,
            &entry.detail,
            entry.at,
        ));
    }

    /// A flag for a person, newly set on `payout` at `since`.
    pub(crate) fn flagged(&mut self, payout: &Payout, reason: &str, since: DateTime<Utc>) {
        self.push(payout_event(
            payout,
            EventType::PayoutAttentionFlagged,
            payout.status,
            None,
            ATTENTION_ACTOR,
            ATTENTION_ACTION,
            reason,
            since,
        ));
    }

    /// The event a run's event makes, if any.
    pub(crate) fn run(&mut self, event: &RunEvent) {
        let Some(event_type) = run_event_type_of(event) else {
            return;
        };
        self.push(PayoutEvent {
            id: new_event_id(),
            seq: 0,
            event_type,
            payout_id: None,
            doctor_id: None,
            run_id: Some(event.run_id.clone()),
            period: None,
            status: None,
            previous_status: None,
            amount: None,
            provider: None,
            actor: event.actor.clone(),
            action: event.action.clone(),
            detail: event.details.clone().unwrap_or_default(),
            occurred_at: event.at,
        });
    }

    pub(crate) fn after(&self, after: u64, limit: u32, dead_only: bool) -> Vec<StoredEvent> {
        self.rows
            .range(after.saturating_add(1)..)
            .map(|(_, r)| &r.stored)
            .filter(|s| !dead_only || s.delivery == DeliveryState::DeadLettered)
            .take(limit.min(MAX_PAGE) as usize)
            .cloned()
            .collect()
    }

    pub(crate) fn claim(&mut self, claim: &EventClaim) -> Vec<ClaimedEvent> {
        let mut keys = HashSet::new();
        let mut taken = Vec::new();
        for seq in &self.pending {
            if taken.len() >= claim.limit as usize {
                break;
            }
            let Some(row) = self.rows.get(seq) else { continue };
            // Only the first pending event of each payout (or run) may go.
            if !keys.insert(row.stored.event.stream_key()) {
                continue;
            }
            if row.next_try_at <= claim.now {
                taken.push(*seq);
            }
        }
        taken
            .into_iter()
            .filter_map(|seq| {
                let row = self.rows.get_mut(&seq)?;
                row.lease += 1;
                row.next_try_at = claim.lease_until;
                Some(ClaimedEvent {
                    event: row.stored.event.clone(),
                    lease: row.lease,
                    tries: row.stored.tries,
                })
            })
            .collect()
    }

    pub(crate) fn finish(&mut self, done: &[EventDone]) -> Vec<bool> {
        done.iter()
            .map(|d| {
                let Some(row) = self.rows.get_mut(&d.seq) else {
                    return false;
                };
                if row.lease != d.lease || row.stored.delivery != DeliveryState::Pending {
                    return false;
                }
                row.lease += 1;
                match &d.outcome {
                    DeliveryOutcome::Delivered => {
                        row.stored.delivery = DeliveryState::Delivered;
                        self.pending.remove(&d.seq);
                    }
                    DeliveryOutcome::Retry { next_try_at, error } => {
                        row.stored.tries += 1;
                        row.stored.last_error = Some(error.clone());
                        row.next_try_at = *next_try_at;
                    }
                    DeliveryOutcome::DeadLetter { error } => {
                        row.stored.tries += 1;
                        row.stored.last_error = Some(error.clone());
                        row.stored.delivery = DeliveryState::DeadLettered;
                        self.pending.remove(&d.seq);
                    }
                }
                true
            })
            .collect()
    }
}

/// The actor of an attention flag's event.
pub const ATTENTION_ACTOR: &str = "system:reconcile";
/// The action of an attention flag's event.
pub const ATTENTION_ACTION: &str = "ATTENTION";

#[allow(clippy::too_many_arguments)]
fn payout_event(
    payout: &Payout,
    event_type: EventType,
    status: PayoutStatus,
    previous_status: Option<PayoutStatus>,
    actor: &str,
    action: &str,
    detail: &str,
    at: DateTime<Utc>,
) -> PayoutEvent {
    PayoutEvent {
        id: new_event_id(),
        seq: 0,
        event_type,
        payout_id: Some(payout.id.clone()),
        doctor_id: Some(payout.doctor_id.clone()),
        run_id: None,
        period: Some(payout.period()),
        status: Some(status),
        previous_status,
        amount: Some(payout.amount_due),
        provider: payout.provider,
        actor: actor.to_string(),
        action: action.to_string(),
        detail: detail.to_string(),
        occurred_at: at,
    }
}
