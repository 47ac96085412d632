//! The API's request and response bodies as types: the handlers take and return these, and the OpenAPI
//! document is generated from them (`GET /api/openapi.json`).
//!
//! Bodies are `{"data": …}` (with `pagination` or `summary` beside it where a list has them) and
//! errors `{"error": {"code", "message"}}`. Amounts are exact decimal strings; statuses and providers are
//! the uppercase names ([`PayoutStatusName`], [`ProviderName`] in the document).

use chrono::{DateTime, NaiveDate, Utc};
use payout_core::domain::{
    AuditEntry, DoctorHold, FundsOverride, Hold, Payout, PayoutItem, Provider, ResolutionOutcome, Run, RunEvent,
    RunResult, RunSummary,
};
use payout_core::funds::{FundsLine, FundsState};
use payout_core::money::Money;
use payout_core::service::{CancelConsultations, EventOutcome, RunFunds, RunReport};
use payout_core::status::PayoutStatus;
use payout_core::store::{AttentionPage, PayoutPage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::openapi::{PayoutStatusName, ProviderName};

// ------------------------------------------------------------------ requests

/// A manual payout to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePayout {
    /// The doctor.
    pub doctor_id: String,
    /// The amount: a decimal string (a JSON number is read as its decimal text).
    #[schema(value_type = String, example = "1500.00")]
    pub amount: Value,
    /// ISO 4217 code (default `KES`).
    pub currency: Option<String>,
    /// First day of the period it pays for (give both days or neither).
    pub period_start: Option<NaiveDate>,
    /// Last day of that period.
    pub period_end: Option<NaiveDate>,
    /// Notes, at most 2,000 characters.
    pub notes: Option<String>,
}

/// An action on one payout (`PATCH /api/admin/payouts/{id}`), named by `action`; each action takes only
/// its own fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum PatchPayout {
    /// `PENDING` → `APPROVED`.
    Approve {},
    /// Approves again after the doctor's payout details changed.
    Reapprove {},
    /// Sends an `APPROVED` payout through `provider`.
    Trigger {
        /// The provider.
        #[schema(value_type = ProviderName)]
        provider: Provider,
    },
    /// Cancels a payout that has not been sent.
    Cancel {
        /// Why (kept in the audit trail).
        reason: Option<String>,
        /// What happens to its consultations (default `release`).
        consultations: Option<Consultations>,
    },
    /// Sends a `FAILED` payout again, through `provider` or the one it failed with.
    Retry {
        /// Another provider.
        #[schema(value_type = Option<ProviderName>)]
        provider: Option<Provider>,
    },
    /// Claims the outcome of a `PROCESSING` payout whose outcome is unknown, with evidence; a second
    /// admin confirms or rejects it.
    #[serde(rename_all = "camelCase")]
    Resolve {
        /// The outcome claimed.
        outcome: ClaimedOutcome,
        /// The provider's reference the evidence carries.
        provider_reference: Option<String>,
        /// What the evidence is.
        note: String,
    },
    /// Confirms another admin's resolution.
    ConfirmResolution {},
    /// Rejects another admin's resolution.
    RejectResolution {
        /// Why.
        reason: Option<String>,
    },
    /// Puts the payout on hold: it is not sent, by any path, until released.
    Hold {
        /// Why (required, at most 500 characters); shown with the payout everywhere.
        reason: String,
    },
    /// Releases the payout's hold (with four eyes on, by another admin than the one who held it).
    Release {},
}

/// An action on many payouts (`POST /api/admin/payouts/bulk`): one result per id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum BulkRequest {
    /// Approves each.
    #[serde(rename_all = "camelCase")]
    Approve {
        /// The payouts.
        payout_ids: Vec<String>,
    },
    /// Approves each again after details changed.
    #[serde(rename_all = "camelCase")]
    Reapprove {
        /// The payouts.
        payout_ids: Vec<String>,
    },
    /// Sends each through `provider`.
    #[serde(rename_all = "camelCase")]
    Trigger {
        /// The payouts.
        payout_ids: Vec<String>,
        /// The provider.
        #[schema(value_type = ProviderName)]
        provider: Provider,
    },
    /// Cancels each.
    #[serde(rename_all = "camelCase")]
    Cancel {
        /// The payouts.
        payout_ids: Vec<String>,
        /// What happens to their consultations (default `release`).
        consultations: Option<Consultations>,
    },
}

impl BulkRequest {
    /// The payouts it names.
    pub fn payout_ids(&self) -> &[String] {
        match self {
            BulkRequest::Approve { payout_ids }
            | BulkRequest::Reapprove { payout_ids }
            | BulkRequest::Trigger { payout_ids, .. }
            | BulkRequest::Cancel { payout_ids, .. } => payout_ids,
        }
    }
}

/// What cancelling does with the payout's consultations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consultations {
    /// They are free again for a later calculation (the default).
    Release,
    /// They stay held, so they are never paid; the audit entry records it.
    Void,
}

impl From<Consultations> for CancelConsultations {
    fn from(c: Consultations) -> Self {
        match c {
            Consultations::Release => CancelConsultations::Release,
            Consultations::Void => CancelConsultations::Void,
        }
    }
}

/// The outcome a resolution claims: `PAID` or `FAILED` (read case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimedOutcome {
    /// The money reached the doctor.
    Paid,
    /// The payment did not happen.
    Failed,
}

impl<'de> Deserialize<'de> for ClaimedOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim().to_ascii_uppercase().as_str() {
            "PAID" => Ok(ClaimedOutcome::Paid),
            "FAILED" => Ok(ClaimedOutcome::Failed),
            _ => Err(serde::de::Error::custom(format!(
                "outcome must be PAID or FAILED, got {text:?}"
            ))),
        }
    }
}

impl From<ClaimedOutcome> for ResolutionOutcome {
    fn from(o: ClaimedOutcome) -> Self {
        match o {
            ClaimedOutcome::Paid => ResolutionOutcome::Paid,
            ClaimedOutcome::Failed => ResolutionOutcome::Failed,
        }
    }
}

// ------------------------------------------------------------------ payouts

/// A payout as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutView {
    /// Id.
    pub id: String,
    /// The doctor.
    pub doctor_id: String,
    /// Status.
    #[schema(value_type = PayoutStatusName)]
    pub status: PayoutStatus,
    /// Provider chosen at trigger time.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// The provider's reference.
    pub provider_reference: Option<String>,
    /// Amount owed, exact decimal string.
    #[schema(example = "1500.00")]
    pub amount_due: String,
    /// ISO 4217 code.
    pub currency: String,
    /// First day of the period.
    pub period_start: NaiveDate,
    /// Last day of the period.
    pub period_end: NaiveDate,
    /// When the provider confirmed the outcome.
    pub processed_at: Option<DateTime<Utc>>,
    /// Notes (the provider's last answer).
    pub notes: Option<String>,
    /// `CALCULATED` or `MANUAL`.
    pub origin: String,
    /// Creator.
    pub created_by: String,
    /// Approver.
    pub approved_by: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Version (bumped by every change).
    pub version: i64,
    /// Items (on the detail view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemView>>,
    /// What the approval vouched for: `detailsFingerprint` (SHA-256 of the doctor's payout details
    /// when approved) and `approvers`, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub approval: Option<Value>,
    /// The latest operator resolution (`state` `PENDING`, `CONFIRMED` or `REJECTED`, with the
    /// evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resolution: Option<Value>,
    /// Why the payout is on the attention queue (`?attention=true` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionView>,
    /// Its latest hold, on (`active`) or released, when it has been held: the reason it is kept
    /// back shows wherever the payout does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldView>,
}

impl From<Payout> for PayoutView {
    fn from(p: Payout) -> Self {
        PayoutView {
            id: p.id.to_string(),
            doctor_id: p.doctor_id.to_string(),
            status: p.status,
            provider: p.provider,
            provider_reference: p.provider_reference,
            amount_due: p.amount_due.amount_str(),
            currency: p.amount_due.currency().to_string(),
            period_start: p.period_start,
            period_end: p.period_end,
            processed_at: p.processed_at,
            notes: p.notes,
            origin: p.origin.as_str().to_string(),
            created_by: p.created_by,
            approved_by: p.approved_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
            version: p.version,
            items: None,
            approval: p.approval.and_then(|a| serde_json::to_value(a).ok()),
            resolution: p.resolution.and_then(|r| serde_json::to_value(r).ok()),
            attention: None,
            hold: p.hold.map(HoldView::from),
        }
    }
}

/// A payout's hold: why it is kept back, by whom, and its release once released.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldView {
    /// `true` while the hold is on: the payout is not sent.
    pub active: bool,
    /// `PAYOUT` (its own hold) or `DOCTOR` (its doctor is on hold).
    pub scope: String,
    /// Why, in the admin's words.
    pub reason: String,
    /// Who held it (`admin:<id>`).
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
    /// Who released it, once released.
    pub released_by: Option<String>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
}

impl From<Hold> for HoldView {
    fn from(h: Hold) -> Self {
        HoldView {
            active: h.is_active(),
            scope: h.scope.as_str().to_string(),
            reason: h.reason,
            placed_by: h.placed_by,
            placed_at: h.placed_at,
            released_by: h.released_by,
            released_at: h.released_at,
        }
    }
}

/// Why a payout needs a person, and since when.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttentionView {
    /// The reason.
    pub reason: String,
    /// Flagged since.
    pub since: DateTime<Utc>,
}

/// A payout item as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    /// `CONSULTATION`, `CARRY_OVER`, `DEDUCTION`, `ADJUSTMENT` or `CLAWBACK`.
    pub kind: String,
    /// What it refers to (an appointment id, ...).
    pub reference: String,
    /// Exact decimal string; negative for deductions and clawbacks.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Description.
    pub description: String,
}

impl From<PayoutItem> for ItemView {
    fn from(i: PayoutItem) -> Self {
        ItemView {
            kind: serde_json::to_value(i.kind)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            reference: i.reference,
            amount: i.amount.amount_str(),
            currency: i.amount.currency().to_string(),
            occurred_at: i.occurred_at,
            description: i.description,
        }
    }
}

/// One entry of a payout's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Who.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What (`approve`, `trigger`, `webhook`, ...).
    pub action: String,
    /// The status before, for a change of status.
    #[schema(value_type = Option<PayoutStatusName>)]
    pub from: Option<PayoutStatus>,
    /// The status after.
    #[schema(value_type = Option<PayoutStatusName>)]
    pub to: Option<PayoutStatus>,
    /// Details.
    pub detail: String,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(a: AuditEntry) -> Self {
        AuditEntryView {
            actor: a.actor,
            at: a.at,
            action: a.action,
            from: a.from,
            to: a.to,
            detail: a.detail,
        }
    }
}

/// Where a list page is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    /// Payouts matching in all.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Rows skipped.
    pub skip: u64,
    /// Keyset cursor of the next page (`createdAt|id`), when there may be one.
    pub next: Option<String>,
}

impl Pagination {
    /// Where `page` is, asked for with `limit` and `skip`.
    pub fn of(page: &PayoutPage, limit: u32, skip: u64) -> Self {
        Pagination {
            total: page.total,
            limit,
            skip,
            next: page
                .next
                .as_ref()
                .map(|c| format!("{}|{}", c.created_at.to_rfc3339(), c.id)),
        }
    }
}

/// A page of payouts.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutList {
    /// The payouts, newest first (the attention queue: oldest flag first).
    pub data: Vec<PayoutView>,
    /// Where the page is.
    pub pagination: Pagination,
}

impl PayoutList {
    /// The API's page of a page of the attention queue (the whole queue, or a run's part of it),
    /// each payout with its `attention` reason and since when.
    pub fn flagged(page: AttentionPage, limit: u32, skip: u64) -> Self {
        PayoutList {
            data: page
                .flagged
                .into_iter()
                .map(|f| PayoutView {
                    attention: Some(AttentionView {
                        reason: f.reason,
                        since: f.since,
                    }),
                    ..PayoutView::from(f.payout)
                })
                .collect(),
            pagination: Pagination {
                total: page.total,
                limit,
                skip,
                next: None,
            },
        }
    }

    /// The API's page of `page`.
    pub fn new(page: PayoutPage, limit: u32, skip: u64) -> Self {
        PayoutList {
            pagination: Pagination::of(&page, limit, skip),
            data: page.payouts.into_iter().map(PayoutView::from).collect(),
        }
    }
}

/// The doctor's own history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorHistory {
    /// The doctor's payouts, newest first, as the doctor sees them (no internal fields).
    pub data: Vec<crate::doctor::DoctorPayoutView>,
    /// Where the page is.
    pub pagination: Pagination,
    /// What the doctor's plan includes.
    #[schema(value_type = Object)]
    pub features: Value,
    /// Earnings analytics (premium plans only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub analytics: Option<Value>,
}

/// One payout.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutBody {
    /// The payout.
    pub data: PayoutView,
}

/// A payout's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemsBody {
    /// The items.
    pub data: Vec<ItemView>,
}

/// A payout's audit trail, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditBody {
    /// The entries.
    pub data: Vec<AuditEntryView>,
}

/// The result of a bulk action for one id.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// The payout id as given.
    pub id: String,
    /// Whether the action was applied.
    pub ok: bool,
    /// The status after it (when `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<PayoutStatusName>)]
    pub status: Option<PayoutStatus>,
    /// Why not (when not `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Counts of a bulk action.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkSummary {
    /// Applied.
    pub succeeded: usize,
    /// Refused.
    pub failed: usize,
}

/// A bulk action's answer: one result per id, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkBody {
    /// The results.
    pub data: Vec<BulkResult>,
    /// The counts.
    pub summary: BulkSummary,
}

// ------------------------------------------------------------------ errors, health, webhooks

/// An error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable (`invalid_input`, `not_found`, `invalid_transition`, `rate_limited`, ...).
    pub code: String,
    /// For people; never internal details of stores.
    pub message: String,
}

/// `GET /healthz`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Whether the store answers.
    pub status: HealthStatus,
}

/// Whether the store answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// It does (200).
    Ok,
    /// It does not (503).
    Unavailable,
}

/// A webhook delivery's answer: what the engine did with each event in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookBody {
    /// The receipt.
    pub data: WebhookReceipt,
}

/// What the engine did with a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    /// Always `true`: the delivery was verified and processed.
    pub received: bool,
    /// One result per event.
    pub events: Vec<WebhookEvent>,
}

/// What the engine did with one event, named by `result`. A delivery whose claim the provider
/// contradicts is refused as a whole (422, `webhook_contradicted_by_provider`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The payout moved.
    #[serde(rename_all = "camelCase")]
    Applied {
        /// The provider's event id.
        event_id: String,
        /// The payout.
        payout_id: String,
        /// Status before.
        #[schema(value_type = PayoutStatusName)]
        from: PayoutStatus,
        /// Status after.
        #[schema(value_type = PayoutStatusName)]
        to: PayoutStatus,
    },
    /// Nothing to do (the payout is already there, or the event says nothing new).
    #[serde(rename_all = "camelCase")]
    Ignored {
        /// The provider's event id.
        event_id: String,
        /// The payout.
        payout_id: String,
        /// Why.
        reason: String,
    },
    /// Put on the attention queue for a person.
    #[serde(rename_all = "camelCase")]
    Flagged {
        /// The provider's event id.
        event_id: String,
        /// The payout.
        payout_id: String,
        /// Why.
        reason: String,
    },
    /// Seen before; applied once.
    #[serde(rename_all = "camelCase")]
    Duplicate {
        /// The provider's event id.
        event_id: String,
    },
    /// About money this system did not send.
    #[serde(rename_all = "camelCase")]
    NotOurs {
        /// The provider's event id.
        event_id: String,
        /// The provider's event type.
        event_type: String,
    },
    /// An outcome this server version does not name.
    Other {
        /// The engine's description of it.
        detail: String,
    },
}

impl WebhookEvent {
    /// The `result` name, as the answer gives it.
    pub fn result(&self) -> &'static str {
        match self {
            WebhookEvent::Applied { .. } => "applied",
            WebhookEvent::Ignored { .. } => "ignored",
            WebhookEvent::Flagged { .. } => "flagged",
            WebhookEvent::Duplicate { .. } => "duplicate",
            WebhookEvent::NotOurs { .. } => "not_ours",
            WebhookEvent::Other { .. } => "other",
        }
    }
}

impl From<EventOutcome> for WebhookEvent {
    fn from(e: EventOutcome) -> Self {
        match e {
            EventOutcome::Applied {
                event_id,
                payout_id,
                from,
                to,
            } => WebhookEvent::Applied {
                event_id,
                payout_id: payout_id.to_string(),
                from,
                to,
            },
            EventOutcome::Ignored {
                event_id,
                payout_id,
                reason,
            } => WebhookEvent::Ignored {
                event_id,
                payout_id: payout_id.to_string(),
                reason,
            },
            EventOutcome::Flagged {
                event_id,
                payout_id,
                reason,
            } => WebhookEvent::Flagged {
                event_id,
                payout_id: payout_id.to_string(),
                reason,
            },
            EventOutcome::Duplicate { event_id } => WebhookEvent::Duplicate { event_id },
            EventOutcome::NotOurs { event_id, event_type } => WebhookEvent::NotOurs { event_id, event_type },
            other => WebhookEvent::Other {
                detail: format!("{other:?}"),
            },
        }
    }
}

// ------------------------------------------------------------------ runs and holds

/// Paging of a list (`limit`, `skip`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size (default 50).
    #[serde(default, deserialize_with = "crate::api::query_value::limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    #[serde(default, deserialize_with = "crate::api::query_value::skip")]
    pub skip: Option<u64>,
}

/// A run to make from a selection of payouts (`POST /api/admin/runs`): a label and the admin
/// list's filters; every payout matching them (at least one) becomes a member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRun {
    /// What the run is, for people (1 to 200 characters).
    pub label: String,
    /// Only payouts in this status.
    #[schema(value_type = Option<PayoutStatusName>)]
    pub status: Option<PayoutStatus>,
    /// Only this doctor's payouts.
    pub doctor: Option<String>,
    /// Only payouts sent with this provider.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// Only payouts created on or after this day (UTC).
    pub start_date: Option<NaiveDate>,
    /// Only payouts created on or before this day (UTC).
    pub end_date: Option<NaiveDate>,
    /// Only payouts on hold (`true`) or only those not on hold (`false`).
    pub held: Option<bool>,
}

/// Sends a run's approved payouts (`POST /api/admin/runs/{id}/trigger`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerRun {
    /// Send every payout with this provider; left out: each with its doctor's preferred method.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
}

/// A step of a run's funds override (`POST /api/admin/runs/{id}/funds-override`), named by
/// `action`: one admin requests it, a second admin confirms it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum FundsOverrideRequest {
    /// Asks to trigger the run despite a funds shortfall.
    Request {
        /// Why (required, at most 500 characters).
        reason: String,
    },
    /// Confirms another admin's request: from then on a shortfall does not block the trigger.
    Confirm {},
}

/// A hold on a doctor, or its release (`POST /api/admin/doctors/{id}/hold`), named by `action`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum DoctorHoldRequest {
    /// Puts the doctor on hold: none of the doctor's payouts is sent until released.
    Hold {
        /// Why (required, at most 500 characters).
        reason: String,
    },
    /// Takes the doctor off hold (with four eyes on, by another admin than the one who held).
    Release {},
}

/// An amount: an exact decimal string and its currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct AmountView {
    /// Exact decimal string.
    #[schema(example = "1500.00")]
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
}

impl From<Money> for AmountView {
    fn from(m: Money) -> Self {
        AmountView {
            amount: m.amount_str(),
            currency: m.currency().to_string(),
        }
    }
}

/// A run's funds override.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FundsOverrideView {
    /// `true` once a second admin confirmed it: a shortfall no longer blocks the trigger.
    pub confirmed: bool,
    /// Who asked for it.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// The second admin, once confirmed.
    pub confirmed_by: Option<String>,
    /// When it was confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl From<FundsOverride> for FundsOverrideView {
    fn from(o: FundsOverride) -> Self {
        FundsOverrideView {
            confirmed: o.is_confirmed(),
            requested_by: o.requested_by,
            requested_at: o.requested_at,
            reason: o.reason,
            confirmed_by: o.confirmed_by,
            confirmed_at: o.confirmed_at,
        }
    }
}

/// A run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    /// Id.
    pub id: String,
    /// `CALCULATION` (a period's calculation) or `SELECTION` (an admin's filter).
    pub kind: String,
    /// What it is, for people.
    pub label: String,
    /// First day of the period calculated (calculation runs).
    pub period_start: Option<NaiveDate>,
    /// Last day of that period.
    pub period_end: Option<NaiveDate>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Its funds override, if one was asked for.
    pub funds_override: Option<FundsOverrideView>,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            id: r.id.to_string(),
            kind: r.kind.as_str().to_string(),
            label: r.label,
            period_start: r.period.map(|p| p.start),
            period_end: r.period.map(|p| p.end),
            created_by: r.created_by,
            created_at: r.created_at,
            funds_override: r.funds_override.map(FundsOverrideView::from),
        }
    }
}

/// How many of a run's payouts are in one status, and their sums per currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusTotal {
    /// The status.
    #[schema(value_type = PayoutStatusName)]
    pub status: PayoutStatus,
    /// How many payouts.
    pub count: u64,
    /// Their sum per currency (never converted).
    pub amounts: Vec<AmountView>,
}

/// How many of a run's payouts went (or go) with one provider, and their sums per currency.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderTotal {
    /// The provider; `null`: not sent yet.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// How many payouts.
    pub count: u64,
    /// Their sum per currency (never converted).
    pub amounts: Vec<AmountView>,
}

/// How many of a run's payouts are in one currency, and their sum.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotalView {
    /// ISO 4217 code.
    pub currency: String,
    /// How many payouts.
    pub count: u64,
    /// Their sum, exact decimal string.
    pub amount: String,
}

/// A run's totals, kept by the store as its payouts move.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunTotals {
    /// How many payouts the run has.
    pub count: u64,
    /// By status, in lifecycle order.
    pub by_status: Vec<StatusTotal>,
    /// By provider (`null` first: not sent yet).
    pub by_provider: Vec<ProviderTotal>,
    /// By currency, ordered by code.
    pub by_currency: Vec<CurrencyTotalView>,
}

/// A run with its totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummaryView {
    /// The run.
    pub run: RunView,
    /// Its totals.
    pub totals: RunTotals,
}

impl TryFrom<RunSummary> for RunSummaryView {
    type Error = payout_core::error::Error;
    fn try_from(s: RunSummary) -> Result<Self, Self::Error> {
        let by_status = s
            .by_status()?
            .into_iter()
            .map(|(status, t)| StatusTotal {
                status,
                count: t.count,
                amounts: t.amounts.into_iter().map(AmountView::from).collect(),
            })
            .collect();
        let by_provider = s
            .by_provider()?
            .into_iter()
            .map(|(provider, t)| ProviderTotal {
                provider,
                count: t.count,
                amounts: t.amounts.into_iter().map(AmountView::from).collect(),
            })
            .collect();
        let by_currency = s
            .by_currency()?
            .into_iter()
            .map(|c| CurrencyTotalView {
                currency: c.currency.to_string(),
                count: c.count,
                amount: c.amount.amount_str(),
            })
            .collect();
        Ok(RunSummaryView {
            totals: RunTotals {
                count: s.count(),
                by_status,
                by_provider,
                by_currency,
            },
            run: s.run.into(),
        })
    }
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// The runs.
    pub data: Vec<RunSummaryView>,
    /// Where the page is (`next` is always `null`: page with `skip`).
    pub pagination: Pagination,
}

/// One run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummaryBody {
    /// The run with its totals.
    pub data: RunSummaryView,
}

/// What one action on a run did to one of its payouts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResultView {
    /// The payout.
    pub payout_id: String,
    /// `APPROVE`, `TRIGGER` or `RETRY_FAILED`.
    pub action: String,
    /// The provider it was sent (or meant to be sent) with.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// Whether the action did what it was asked (a send whose outcome is not known yet is `true`).
    pub ok: bool,
    /// The payout's status afterwards, when known.
    #[schema(value_type = Option<PayoutStatusName>)]
    pub status_after: Option<PayoutStatus>,
    /// Why it was refused (a hold's reason, a missing method), or what the provider said.
    pub message: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
}

impl From<RunResult> for RunResultView {
    fn from(r: RunResult) -> Self {
        RunResultView {
            payout_id: r.payout_id.to_string(),
            action: r.action.as_str().to_string(),
            provider: r.provider,
            ok: r.ok,
            status_after: r.status_after,
            message: r.message,
            at: r.at,
            by: r.by,
        }
    }
}

/// A page of a run's results, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunResultList {
    /// The results.
    pub data: Vec<RunResultView>,
    /// Where the page is (`next` is always `null`: page with `skip`).
    pub pagination: Pagination,
}

/// One line of a run's own audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunEventView {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What (`CREATE`, `APPROVE`, `TRIGGER`, `RETRY_FAILED`, `FUNDS_OVERRIDE_REQUESTED`, ...).
    pub action: String,
    /// Details.
    pub details: Option<String>,
}

impl From<RunEvent> for RunEventView {
    fn from(e: RunEvent) -> Self {
        RunEventView {
            at: e.at,
            actor: e.actor,
            action: e.action,
            details: e.details,
        }
    }
}

/// A run's page: the run and its totals, what needs a look, its latest results and its events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    /// The run.
    pub run: RunView,
    /// Its totals.
    pub totals: RunTotals,
    /// How many of its payouts are on hold.
    pub held: u64,
    /// How many are `FAILED` (a confirmed failure: `retry-failed` sends them again).
    pub failed: u64,
    /// How many need a person: its payouts on the attention queue (flagged by reconciliation:
    /// an outcome a lookup cannot tell, too long `PROCESSING`, money that came back, a failure
    /// after `PAID`), as `GET /api/admin/payouts?attention=true` lists them.
    pub attention: u64,
    /// How many are `RETURNED` or `REVERSED` (the money came back), from its totals; the ones
    /// nobody has dealt with yet are among `attention`.
    pub returned: u64,
    /// The first page of its payouts on hold, each with its hold's reason.
    pub held_payouts: PayoutList,
    /// The first page of its `FAILED` payouts.
    pub failed_payouts: PayoutList,
    /// The first page of its payouts on the attention queue, oldest flag first, each with its
    /// `attention` reason and since when (`GET /api/admin/runs/{id}/attention` pages through all).
    pub attention_payouts: PayoutList,
    /// The latest page of its per-payout results (oldest first within the page).
    pub results: RunResultList,
    /// Its events, oldest first.
    pub events: Vec<RunEventView>,
}

/// One run's page.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunBody {
    /// The run.
    pub data: RunDetail,
}

/// What an action on a run did (each payout's outcome is in its results).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReportView {
    /// The run.
    pub run_id: String,
    /// `APPROVE`, `TRIGGER` or `RETRY_FAILED`.
    pub action: String,
    /// Payouts in the status the action takes when reached.
    pub considered: u64,
    /// Done as asked.
    pub ok: u64,
    /// Not done, or refused by the provider (`held` and `withoutMethod` among them).
    pub failed: u64,
    /// Of the failed, on hold.
    pub held: u64,
    /// Of the failed, with no method to send with.
    pub without_method: u64,
    /// The action stopped early because the server is shutting down.
    pub stopped_by_shutdown: bool,
}

impl From<RunReport> for RunReportView {
    fn from(r: RunReport) -> Self {
        RunReportView {
            run_id: r.run_id.to_string(),
            action: r.action.as_str().to_string(),
            considered: r.considered,
            ok: r.ok,
            failed: r.failed,
            held: r.held,
            without_method: r.without_method,
            stopped_by_shutdown: r.stopped_by_shutdown,
        }
    }
}

/// An action on a run's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunReportBody {
    /// What it did.
    pub data: RunReportView,
}

/// One (provider, currency) line of a funds check.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FundsLineView {
    /// The provider.
    #[schema(value_type = ProviderName)]
    pub provider: Provider,
    /// ISO 4217 code.
    pub currency: String,
    /// What the run needs from it in this currency, exact decimal string.
    pub needed: String,
    /// What it holds in this currency, when its balance is known.
    pub available: Option<String>,
    /// When the balance was given.
    pub as_of: Option<DateTime<Utc>>,
    /// `ENOUGH`, `SHORTFALL` (blocks), `PENDING` (an answer is on its way) or `UNKNOWN` (no
    /// balance to read); pending and unknown do not block.
    pub state: String,
    /// How much is missing (`SHORTFALL`).
    pub short_by: Option<String>,
    /// When the outstanding query was sent (`PENDING`).
    pub requested_at: Option<DateTime<Utc>>,
    /// Why the balance is not known (`UNKNOWN`).
    pub why: Option<String>,
}

impl From<FundsLine> for FundsLineView {
    fn from(l: FundsLine) -> Self {
        let (state, short_by, requested_at, why) = match l.state {
            FundsState::Enough => ("ENOUGH", None, None, None),
            FundsState::Shortfall { short_by } => ("SHORTFALL", Some(short_by.amount_str()), None, None),
            FundsState::Pending { requested_at } => ("PENDING", None, Some(requested_at), None),
            FundsState::Unknown { why } => ("UNKNOWN", None, None, Some(why)),
        };
        FundsLineView {
            provider: l.provider,
            currency: l.currency.to_string(),
            needed: l.needed.amount_str(),
            available: l.available.map(|a| a.amount_str()),
            as_of: l.as_of,
            state: state.to_string(),
            short_by,
            requested_at,
            why,
        }
    }
}

/// A run's funds check: what a trigger would send now against the providers' balances.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunFundsView {
    /// The run.
    pub run_id: String,
    /// The provider asked for (`null`: each doctor's method).
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// Members `APPROVED`.
    pub approved: u64,
    /// Of them, what a trigger would send.
    pub planned: u64,
    /// Of them, on hold (not sent).
    pub held: u64,
    /// Of them, with no method to send with (not sent).
    pub unplanned: u64,
    /// One line per provider and currency.
    pub lines: Vec<FundsLineView>,
    /// The run's funds override, if one was asked for.
    pub funds_override: Option<FundsOverrideView>,
    /// `true`: a trigger is refused (409 `funds_shortfall`): a shortfall and no confirmed override.
    pub blocked: bool,
}

impl From<RunFunds> for RunFundsView {
    fn from(f: RunFunds) -> Self {
        RunFundsView {
            run_id: f.run_id.to_string(),
            provider: f.provider,
            approved: f.approved,
            planned: f.planned,
            held: f.held,
            unplanned: f.unplanned,
            lines: f.report.lines.into_iter().map(FundsLineView::from).collect(),
            funds_override: f.funds_override.map(FundsOverrideView::from),
            blocked: f.blocked,
        }
    }
}

/// A run's funds check.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunFundsBody {
    /// The check.
    pub data: RunFundsView,
}

/// A run after a step of its funds override.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOnlyBody {
    /// The run.
    pub data: RunView,
}

/// A doctor on hold.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoctorHoldView {
    /// The doctor.
    pub doctor_id: String,
    /// Why.
    pub reason: String,
    /// Who (`admin:<id>`).
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
}

impl From<DoctorHold> for DoctorHoldView {
    fn from(h: DoctorHold) -> Self {
        DoctorHoldView {
            doctor_id: h.doctor_id.to_string(),
            reason: h.reason,
            placed_by: h.placed_by,
            placed_at: h.placed_at,
        }
    }
}

/// What a doctor's hold, or its release, did.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorHoldOutcome {
    /// The doctor's hold (placed, or released).
    pub hold: DoctorHoldView,
    /// The doctor's payouts held (or released) with it, each by an audited change.
    pub payouts: Vec<String>,
}

/// A doctor's hold, or its release.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorHoldBody {
    /// What it did.
    pub data: DoctorHoldOutcome,
}

/// A page of the doctors on hold, oldest hold first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorHoldList {
    /// The holds.
    pub data: Vec<DoctorHoldView>,
    /// Where the page is (`next` is always `null`: page with `skip`).
    pub pagination: Pagination,
}
