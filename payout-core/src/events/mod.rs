//! Every change as an event: a transactional outbox, and the ways a host consumes it.
//!
//! A store that keeps an outbox ([`EventOutbox`]) writes an event row in the **same transaction**
//! as the change it reports, derived from what that transaction writes anyway, so no path can
//! change a payout and forget its event:
//!
//! | event type | written when |
//! |---|---|
//! | `payout.created` | a payout is created (its `CREATE` audit entry, no status before) |
//! | `payout.status_changed` | an audit entry records a move from one status to another |
//! | `payout.held` / `payout.released` | a `HOLD` / `RELEASE` audit entry |
//! | `payout.attention_flagged` | reconciliation flags a payout for a person (no flag before) |
//! | `run.completed` | a run's step finished: its `APPROVE`, `TRIGGER`, `RETRY_FAILED`, `BANK_FILE` or `BANK_FILE_SETTLED` run event |
//!
//! [`event_type_of`] and [`run_event_type_of`] are the rules; the SQL stores apply the same ones
//! in triggers, and the conformance suite (`testkit::outbox`) checks that every store does.
//!
//! Events leave the outbox through an [`EventRelay`]: it claims due events under a lease (of
//! several instances, each event goes to one), hands each to a [`PayoutEventSink`] and records
//! the outcome: delivered, retried later with exponential back-off, or dead-lettered after
//! [`RelayConfig::max_tries`]. Delivery is at least once and in order per payout: an event is not
//! handed over while an earlier event of the same payout (or run) is undelivered and not
//! dead-lettered. A receiver deduplicates by [`PayoutEvent::id`].

pub(crate) mod in_memory;
pub mod notify;
mod relay;
pub mod signature;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use in_memory::{ATTENTION_ACTION, ATTENTION_ACTOR};
pub use relay::{Backoff, EventRelay, RelayConfig, RelayPass};

use crate::domain::{AuditEntry, DoctorId, PayoutId, Period, Provider, RunEvent, RunId};
use crate::error::Result;
use crate::money::Money;
use crate::status::PayoutStatus;

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
#[non_exhaustive]
pub enum EventType {
    /// `payout.created`.
    PayoutCreated,
    /// `payout.status_changed`.
    PayoutStatusChanged,
    /// `payout.held`.
    PayoutHeld,
    /// `payout.released`.
    PayoutReleased,
    /// `payout.attention_flagged`.
    PayoutAttentionFlagged,
    /// `run.completed`.
    RunCompleted,
}

impl EventType {
    /// Every type, in the order of the table in the module docs.
    pub const ALL: [EventType; 6] = [
        EventType::PayoutCreated,
        EventType::PayoutStatusChanged,
        EventType::PayoutHeld,
        EventType::PayoutReleased,
        EventType::PayoutAttentionFlagged,
        EventType::RunCompleted,
    ];

    /// The wire name (`payout.created`, ...), as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PayoutCreated => "payout.created",
            EventType::PayoutStatusChanged => "payout.status_changed",
            EventType::PayoutHeld => "payout.held",
            EventType::PayoutReleased => "payout.released",
            EventType::PayoutAttentionFlagged => "payout.attention_flagged",
            EventType::RunCompleted => "run.completed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<EventType> for &'static str {
    fn from(t: EventType) -> Self {
        t.as_str()
    }
}

/// An unknown event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_string()))
    }
}

impl TryFrom<String> for EventType {
    type Error = UnknownEventType;

    fn try_from(s: String) -> std::result::Result<Self, Self::Error> {
        s.parse()
    }
}

/// The event a payout's audit entry makes, if any: the rule every store applies when it writes
/// the entry (see the table in the module docs). Audit entries that change no status and are no
/// hold or release (notes, attempt references, ...) make none.
pub fn event_type_of(entry: &AuditEntry) -> Option<EventType> {
    match (entry.action.as_str(), entry.from, entry.to) {
        ("HOLD", _, _) => Some(EventType::PayoutHeld),
        ("RELEASE", _, _) => Some(EventType::PayoutReleased),
        (_, None, Some(_)) => Some(EventType::PayoutCreated),
        (_, Some(from), Some(to)) if from != to => Some(EventType::PayoutStatusChanged),
        _ => None,
    }
}

/// The run actions that end a step of a run, each making a `run.completed` event.
pub const RUN_STEPS: [&str; 5] = [
    RunEvent::APPROVE,
    RunEvent::TRIGGER,
    RunEvent::RETRY_FAILED,
    RunEvent::BANK_FILE,
    RunEvent::BANK_FILE_SETTLED,
];

/// The event a run's event makes: `run.completed` for the end of a step ([`RUN_STEPS`]), none
/// for the others (its creation, funds overrides).
pub fn run_event_type_of(event: &RunEvent) -> Option<EventType> {
    RUN_STEPS
        .contains(&event.action.as_str())
        .then_some(EventType::RunCompleted)
}

/// One event of the outbox, as delivered (JSON, camelCase field names).
///
/// Amounts are exact ([`Money`] serializes as `{"amount": "6500.00", "currency": "KES"}`).
/// `detail` is the audit entry's reason (or the flag's, or the run step's details), meant for the
/// host's admins; it is never needed to act on an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutEvent {
    /// Unique across all events (`evt_` and 32 hex digits): the key a receiver deduplicates by.
    pub id: String,
    /// The position in the outbox, increasing in order of writing (on Postgres, a transaction
    /// that commits late can hold a lower `seq` than one already committed: readers page by
    /// [`StoredEvent::cursor`], which follows the order of commits).
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The payout (none for `run.completed`).
    pub payout_id: Option<PayoutId>,
    /// Its doctor.
    pub doctor_id: Option<DoctorId>,
    /// The run (only for `run.completed`).
    pub run_id: Option<RunId>,
    /// The period the payout pays for.
    pub period: Option<Period>,
    /// The payout's status after the change.
    pub status: Option<PayoutStatus>,
    /// Its status before, for `payout.status_changed`.
    pub previous_status: Option<PayoutStatus>,
    /// The payout's amount, exact.
    pub amount: Option<Money>,
    /// The provider chosen for the payout, if any yet.
    pub provider: Option<Provider>,
    /// Who made the change (`admin:<id>`, `system:<job>`, `provider:<NAME>`).
    pub actor: String,
    /// The audit action (`APPROVE`, `PROVIDER_PAID`, ...) or run step (`TRIGGER`, ...).
    pub action: String,
    /// Why, as the audit entry, flag or run event says.
    pub detail: String,
    /// When the change was made.
    pub occurred_at: DateTime<Utc>,
}

impl PayoutEvent {
    /// The key delivery is ordered by: the payout's id, or `run:<id>` for a run's event.
    pub fn stream_key(&self) -> String {
        match (&self.payout_id, &self.run_id) {
            (Some(p), _) => p.to_string(),
            (None, Some(r)) => format!("run:{r}"),
            (None, None) => String::new(),
        }
    }
}

/// A new event id: `evt_` and 32 random hex digits.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::new_v4().simple())
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum DeliveryState {
    /// Not delivered yet (maybe claimed, maybe waiting for a retry).
    Pending,
    /// Acknowledged by the sink.
    Delivered,
    /// Given up on after too many tries, or refused for good by the sink.
    DeadLettered,
}

impl DeliveryState {
    /// As stored (`PENDING`, `DELIVERED`, `DEAD_LETTERED`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "PENDING",
            DeliveryState::Delivered => "DELIVERED",
            DeliveryState::DeadLettered => "DEAD_LETTERED",
        }
    }

    /// From its stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::DeadLettered,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// An event with where its delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// The event.
    #[serde(flatten)]
    pub event: PayoutEvent,
    /// Its delivery.
    pub delivery: DeliveryState,
    /// How many deliveries were tried and failed.
    pub tries: u32,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Where a reader stands once it has read this event: the `after` of
    /// [`EventOutbox::events_after`] that continues behind it.
    pub cursor: EventCursor,
}

/// A reader's place in the outbox: opaque to readers, who pass back the cursor of the last event
/// they read ([`StoredEvent::cursor`]; `GET /api/admin/events?after=`).
///
/// It orders events by **commit**, not by `seq`: on Postgres, two transactions can commit in the
/// other order than they took their `seq`, and a reader paging by `seq` would step over the one
/// that commits late. So a Postgres store orders by the writing transaction's id first (`commit`,
/// `pg_current_xact_id()`), `seq` within it, and shows an event only once every transaction that
/// could still commit before it in that order has ended. Where writes commit in the order they
/// are numbered (SQLite's single writer, the in-memory store's lock), `commit` is the `seq`.
///
/// Written as `{commit}-{seq}`; [`EventCursor::START`] is before every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventCursor {
    /// The commit order's key (see the type's docs).
    pub commit: u64,
    /// The event's `seq`.
    pub seq: u64,
}

impl EventCursor {
    /// Before every event.
    pub const START: EventCursor = EventCursor { commit: 0, seq: 0 };

    /// The cursor of an event of a store whose writes commit in `seq` order.
    pub fn in_seq_order(seq: u64) -> Self {
        EventCursor { commit: seq, seq }
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.commit, self.seq)
    }
}

/// A cursor that is not of the form `{commit}-{seq}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event cursor is the `cursor` (or `nextAfter`) of an earlier page: two numbers joined by `-`")]
pub struct BadCursor;

impl FromStr for EventCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> std::result::Result<Self, BadCursor> {
        let (commit, seq) = s.split_once('-').ok_or(BadCursor)?;
        let number = |n: &str| {
            if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadCursor);
            }
            n.parse::<u64>().map_err(|_| BadCursor)
        };
        Ok(EventCursor {
            commit: number(commit)?,
            seq: number(seq)?,
        })
    }
}

impl Serialize for EventCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A page of [`EventOutbox::events_after`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventPage {
    /// In commit order.
    pub events: Vec<StoredEvent>,
    /// Events after the cursor were committed but are not shown yet: a transaction that could
    /// still commit before them in the cursor's order was running. Read again shortly; they come
    /// then. Always `false` where writes commit in `seq` order.
    pub withheld: bool,
}

/// What a relay asks for: due events, each under a lease until `lease_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventClaim {
    /// Now: events whose next try is due by then.
    pub now: DateTime<Utc>,
    /// Until when the claimed events are the claimer's.
    pub lease_until: DateTime<Utc>,
    /// How many at most.
    pub limit: u32,
}

/// An event claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    /// The event.
    pub event: PayoutEvent,
    /// The claim's lease: its outcome is recorded only under it.
    pub lease: i64,
    /// How many deliveries failed before.
    pub tries: u32,
}

/// A delivery's outcome, recorded with [`EventOutbox::finish_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryOutcome {
    /// The sink acknowledged it.
    Delivered,
    /// It failed; try again at `next_try_at`.
    Retry {
        /// When.
        next_try_at: DateTime<Utc>,
        /// What went wrong (no secrets: the sink's message).
        error: String,
    },
    /// Given up: it joins the dead letters.
    DeadLetter {
        /// What went wrong last.
        error: String,
    },
}

/// One claimed event's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDone {
    /// Which event ([`PayoutEvent::seq`]).
    pub seq: u64,
    /// The lease it was claimed under.
    pub lease: i64,
    /// What happened.
    pub outcome: DeliveryOutcome,
    /// When.
    pub at: DateTime<Utc>,
}

/// A store's transactional outbox: the events its changes wrote, and their delivery.
///
/// A store offering it writes each event in the transaction of its change (see the module docs
/// for which changes make which events), so an event exists if and only if its change committed.
/// The conformance suite `testkit::outbox` checks all of the below.
#[async_trait]
pub trait EventOutbox: Send + Sync {
    /// The events after `after` in commit order ([`EventCursor`]), at most `limit` (capped at
    /// 1,000).
    ///
    /// # Behavior
    /// Read-only; every event, whatever its delivery state. A reader that pages with the cursor
    /// of the last event it read sees every event exactly once, in an order that keeps each
    /// payout's events in the order written: no event can appear later *before* a cursor already
    /// handed out. On Postgres an event shows once every transaction that began writing before
    /// its own has ended (a long-running writer delays it, never hides it).
    async fn events_after(&self, after: EventCursor, limit: u32) -> Result<EventPage>;

    /// Claims due events under a lease.
    ///
    /// # Behavior
    /// Takes up to `claim.limit` events that are `PENDING`, due (`next try <= claim.now`) and
    /// the **first pending event of their payout** (or run): an event is never claimed while an
    /// earlier one of the same payout is pending, claimed or waiting for a retry. In the same
    /// atomic step each gets a new lease and is not due again before `claim.lease_until`, so of
    /// several instances claiming at once each event goes to one, and an event whose claimer died
    /// is claimed again when its lease ends. Oldest first.
    async fn claim_events(&self, claim: &EventClaim) -> Result<Vec<ClaimedEvent>>;

    /// Records the outcomes of claimed deliveries in one atomic step; answers for each, in order,
    /// whether it was written.
    ///
    /// # Behavior
    /// Each only under its latest lease (a later claim took the event: `false`, nothing written).
    /// `Delivered` and `DeadLetter` end the event's delivery; `Retry` counts a try and makes it due
    /// at `next_try_at`. `DeadLetter` counts the last try too. An unknown `seq` answers `false`.
    async fn finish_events(&self, done: &[EventDone]) -> Result<Vec<bool>>;

    /// The dead letters, oldest first, `seq > after`, at most `limit` (capped at 1,000).
    async fn dead_letters(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>>;
}

/// Why a sink did not take an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Worth trying again later (a timeout, a 5xx, a connection refused, a 429).
    #[error("delivery failed, will retry: {message}")]
    Retryable {
        /// What went wrong (never a secret).
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Will never succeed (the receiver refused the event for good): dead-lettered at once.
    #[error("delivery refused for good: {message}")]
    Permanent {
        /// What went wrong (never a secret).
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl SinkError {
    /// A retryable failure with a message.
    pub fn retryable(message: impl Into<String>) -> Self {
        SinkError::Retryable {
            message: message.into(),
            source: None,
        }
    }

    /// A permanent failure with a message.
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError::Permanent {
            message: message.into(),
            source: None,
        }
    }
}

/// Where a host receives events: in process (a channel, a notifier, a broker's client) or the
/// built-in outbound webhook sender of `payout-server`.
///
/// # Behavior
/// `deliver` returns `Ok` only once the event is safely taken (written, acknowledged): the relay
/// then never hands it over again. It may be called again with an event it already took (a
/// crash between taking it and the relay recording so, or a lease that ran out), so a sink
/// deduplicates by [`PayoutEvent::id`] when it must act once (a broker's message id, a unique key).
/// Events of one payout arrive in order, one at a time; events of different payouts may arrive
/// concurrently.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PayoutEventSink: Send + Sync {
    /// Delivers one event.
    async fn deliver(&self, event: &PayoutEvent) -> std::result::Result<(), SinkError>;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_735_689_600 + s, 0).unwrap()
    }

    fn entry(action: &str, from: Option<PayoutStatus>, to: Option<PayoutStatus>) -> AuditEntry {
        AuditEntry {
            payout_id: "po_1".into(),
            actor: "admin:a".into(),
            at: at(0),
            action: action.into(),
            from,
            to,
            detail: String::new(),
        }
    }

    #[test]
    fn audit_entries_make_the_documented_events() {
        use PayoutStatus::*;
        assert_eq!(
            event_type_of(&entry("CREATE", None, Some(Pending))),
            Some(EventType::PayoutCreated)
        );
        assert_eq!(
            event_type_of(&entry("APPROVE", Some(Pending), Some(Approved))),
            Some(EventType::PayoutStatusChanged)
        );
        assert_eq!(event_type_of(&entry("HOLD", None, None)), Some(EventType::PayoutHeld));
        assert_eq!(
            event_type_of(&entry("RELEASE", Some(Approved), Some(Approved))),
            Some(EventType::PayoutReleased)
        );
        assert_eq!(event_type_of(&entry("NOTE", None, None)), None);
        assert_eq!(
            event_type_of(&entry("ATTEMPT_REFERENCE", Some(Processing), Some(Processing))),
            None
        );
    }

    #[test]
    fn event_types_round_trip_through_their_names() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!("payout.paid".parse::<EventType>().is_err());
    }
}
