//! The API's request and response bodies as types: the handlers take and return these, and the OpenAPI
//! document is generated from them (`GET /api/openapi.json`).
//!
//! Bodies are `{"data": …}` (with `pagination` or `summary` beside it where a list has them) and
//! errors `{"error": {"code", "message"}}`. Amounts are exact decimal strings; statuses and providers are
//! the uppercase names ([`PayoutStatusName`], [`ProviderName`] in the document).

use chrono::{DateTime, NaiveDate, Utc};
use payout_core::domain::{AuditEntry, Payout, PayoutItem, Provider, ResolutionOutcome};
use payout_core::service::{CancelConsultations, EventOutcome};
use payout_core::status::PayoutStatus;
use payout_core::store::PayoutPage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

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

/// A page of payouts.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutList {
    /// The payouts, newest first (the attention queue: oldest flag first).
    pub data: Vec<PayoutView>,
    /// Where the page is.
    pub pagination: Pagination,
}

impl PayoutList {
    /// The API's page of `page`.
    pub fn new(page: PayoutPage, limit: u32, skip: u64) -> Self {
        let next = page
            .next
            .as_ref()
            .map(|c| format!("{}|{}", c.created_at.to_rfc3339(), c.id));
        PayoutList {
            data: page.payouts.into_iter().map(PayoutView::from).collect(),
            pagination: Pagination {
                total: page.total,
                limit,
                skip,
                next,
            },
        }
    }
}

/// The doctor's own history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorHistory {
    /// The doctor's payouts, newest first.
    pub data: Vec<PayoutView>,
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
