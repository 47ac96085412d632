//! The outbox over HTTP: `GET /api/admin/events?after=` (and the dead letters) for admins, and, with
//! the feature `event-webhooks`, the built-in outbound webhook sender ([`webhook::WebhookSink`]),
//! and with the feature `nats`, the NATS JetStream publisher ([`nats::NatsSink`]).

#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "event-webhooks")]
pub mod webhook;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use payout_core::Error;
use payout_core::domain::Provider;
use payout_core::events::{EventCursor, EventOutbox, StoredEvent};
use payout_core::status::PayoutStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::ApiQuery;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::openapi::{PayoutStatusName, ProviderName};
use crate::wire::{AmountView, ErrorBody};

/// The default page of events.
const DEFAULT_LIMIT: u32 = 100;

/// Paging through the outbox in commit order.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this cursor: the `cursor` of the last event read (or the page's
    /// `nextAfter`); absent: from the first.
    #[serde(default, deserialize_with = "crate::api::query_value::event_cursor")]
    #[param(value_type = Option<String>, example = "7421-118")]
    pub after: Option<EventCursor>,
    /// Page size (default 100).
    #[serde(default, deserialize_with = "crate::api::query_value::limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Paging through the dead letters by `seq`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Dead letters after this `seq` (the page's `nextAfter`); absent: from the first.
    #[serde(default, deserialize_with = "crate::api::query_value::skip")]
    pub after: Option<u64>,
    /// Page size (default 100).
    #[serde(default, deserialize_with = "crate::api::query_value::limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// An event as the outbox holds it: the JSON a webhook receives, and where its delivery stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Unique id (`evt_` and 32 hex digits): deduplicate by it.
    pub id: String,
    /// Position in the outbox, in order of writing (the `seq` of delivered events).
    pub seq: u64,
    /// Where a reader stands after this event: pass it as `after` to read on from here.
    #[schema(example = "7421-118")]
    pub cursor: String,
    /// `payout.created`, `payout.status_changed`, `payout.held`, `payout.released`,
    /// `payout.attention_flagged` or `run.completed`.
    #[serde(rename = "type")]
    #[schema(example = "payout.status_changed")]
    pub event_type: String,
    /// The payout (none for `run.completed`).
    pub payout_id: Option<String>,
    /// Its doctor.
    pub doctor_id: Option<String>,
    /// The run (only for `run.completed`).
    pub run_id: Option<String>,
    /// First day of the payout's period.
    pub period_start: Option<NaiveDate>,
    /// Last day of the payout's period.
    pub period_end: Option<NaiveDate>,
    /// The payout's status after the change.
    #[schema(value_type = Option<PayoutStatusName>)]
    pub status: Option<PayoutStatus>,
    /// Its status before (`payout.status_changed`).
    #[schema(value_type = Option<PayoutStatusName>)]
    pub previous_status: Option<PayoutStatus>,
    /// The payout's amount, exact.
    pub amount: Option<AmountView>,
    /// The provider chosen, if any yet.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// Who made the change.
    pub actor: String,
    /// The audit action or run step.
    pub action: String,
    /// Why.
    pub detail: String,
    /// When the change was made.
    pub occurred_at: DateTime<Utc>,
    /// `PENDING`, `DELIVERED` or `DEAD_LETTERED`.
    #[schema(example = "DELIVERED")]
    pub delivery: String,
    /// Failed deliveries so far.
    pub tries: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

impl From<StoredEvent> for EventView {
    fn from(s: StoredEvent) -> Self {
        let e = s.event;
        EventView {
            id: e.id,
            seq: e.seq,
            cursor: s.cursor.to_string(),
            event_type: e.event_type.to_string(),
            payout_id: e.payout_id.map(|p| p.to_string()),
            doctor_id: e.doctor_id.map(|d| d.to_string()),
            run_id: e.run_id.map(|r| r.to_string()),
            period_start: e.period.map(|p| p.start),
            period_end: e.period.map(|p| p.end),
            status: e.status,
            previous_status: e.previous_status,
            amount: e.amount.map(AmountView::from),
            provider: e.provider,
            actor: e.actor,
            action: e.action,
            detail: e.detail,
            occurred_at: e.occurred_at,
            delivery: s.delivery.as_str().to_string(),
            tries: s.tries,
            last_error: s.last_error,
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    /// In commit order.
    pub events: Vec<EventView>,
    /// The `after` of the next page: the last event's cursor when the page is full; absent
    /// when this page is the last one so far.
    pub next_after: Option<String>,
    /// Later events are committed but not shown yet, as a transaction that could commit before
    /// them was still running (Postgres): ask again shortly with the same `after`.
    pub withheld: bool,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    /// Oldest first (by `seq`).
    pub events: Vec<EventView>,
    /// The `after` of the next page (a `seq`); absent when this page is the last one so far.
    pub next_after: Option<u64>,
}

fn outbox(state: &AppState) -> Result<&dyn EventOutbox, ApiError> {
    state
        .events
        .as_deref()
        .ok_or_else(|| ApiError::Core(Error::NotSupported("this server keeps no event outbox".into())))
}

/// The last event's `key` when the page is full.
fn next<T>(events: &[StoredEvent], limit: u32, key: impl Fn(&StoredEvent) -> T) -> Option<T> {
    (events.len() as u32 >= limit).then(|| events.last().map(key)).flatten()
}

/// Pages through every event, oldest first.
#[utoipa::path(
    get, path = "/api/admin/events", tag = "events", summary = "Page through the event outbox",
    description = "Every change as an event, in the order of commits, whatever its delivery. Page with \
                   `after` = the `cursor` of the last event read (a full page's `nextAfter`): a reader that does \
                   sees every event once, each payout's in the order written. On Postgres an event shows once \
                   every transaction that began writing before it has ended; `withheld` says some are waiting.",
    params(EventsQuery),
    responses(
        (status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 501, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_events(
    State(state): State<AppState>,
    Admin(_user): Admin,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let page = outbox(&state)?
        .events_after(q.after.unwrap_or(EventCursor::START), limit)
        .await?;
    Ok(Json(EventList {
        next_after: next(&page.events, limit, |e| e.cursor.to_string()),
        events: page.events.into_iter().map(EventView::from).collect(),
        withheld: page.withheld,
    }))
}

/// Pages through the dead letters.
#[utoipa::path(
    get, path = "/api/admin/events/dead-letters", tag = "events", summary = "Page through the dead letters",
    description = "The events given up on after the configured number of tries, oldest first.",
    params(DeadLettersQuery),
    responses(
        (status = 200, body = DeadLetterList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 501, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    Admin(_user): Admin,
    ApiQuery(q): ApiQuery<DeadLettersQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let events = outbox(&state)?.dead_letters(q.after.unwrap_or(0), limit).await?;
    Ok(Json(DeadLetterList {
        next_after: next(&events, limit, |e| e.event.seq),
        events: events.into_iter().map(EventView::from).collect(),
    }))
}
