//! The admin and doctor API: the original system's paths, with JSON bodies `{"data": ...}` and errors
//! `{"error": {"code", "message"}}`. Amounts are exact decimal strings; statuses and providers are the
//! uppercase names.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use payout_core::domain::{AuditEntry, DoctorId, Payout, PayoutId, PayoutItem, Period, Provider, ResolutionOutcome};
use payout_core::error::Error;
use payout_core::money::{Currency, Money};
use payout_core::service::{CancelConsultations, ManualPayout, ResolveRequest};
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter, PayoutPage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{Admin, Doctor};
use crate::error::ApiError;

// ------------------------------------------------------------------ extractors

/// A JSON body whose errors are answered as JSON errors.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest("expected Content-Type: application/json".into()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = T::deserialize(&mut de).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
        de.end()
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
        Ok(ApiJson(value))
    }
}

/// Path parameters whose errors (such as percent-escapes that are not UTF-8) are answered as JSON errors.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(ApiPath(value))
    }
}

/// A query string decoded by axum's [`Query`], whose rejection is answered as the JSON 400 error.
///
/// One addition to `Query`: a query that is not UTF-8 once percent-decoded is refused, where
/// `Query` would quietly turn the bad bytes into U+FFFD and filter by a value nobody sent.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = parts.uri.query().unwrap_or("");
        if percent_encoding::percent_decode_str(raw).decode_utf8().is_err() {
            return Err(ApiError::BadRequest(
                "invalid query string: not UTF-8 once percent-decoded".into(),
            ));
        }
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        Ok(ApiQuery(value))
    }
}

/// Query values are parsed by these, so a bad one is named with a clear message; an empty value
/// (`status=`, as an HTML form sends an untouched field) is the same as leaving the parameter out.
mod query_value {
    use chrono::NaiveDate;
    use payout_core::domain::Provider;
    use payout_core::status::PayoutStatus;
    use payout_core::store::Page;
    use serde::de::{Deserialize, Deserializer, Error};

    fn parse<'de, D: Deserializer<'de>, T>(
        d: D,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        parse(&text).map(Some).map_err(D::Error::custom)
    }

    pub fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PayoutStatus>, D::Error> {
        parse(d, |s| {
            s.parse().map_err(|e: payout_core::status::UnknownStatus| e.to_string())
        })
    }

    pub fn provider<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Provider>, D::Error> {
        parse(d, |s| {
            s.parse()
                .map_err(|e: payout_core::domain::UnknownProvider| e.to_string())
        })
    }

    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        parse(d, |s| Ok(s.to_string()))
    }

    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        parse(d, |s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("must be a date like 2025-01-31, got {s:?}"))
        })
    }

    pub fn limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        parse(d, |s| {
            s.parse::<u32>()
                .ok()
                .filter(|l| (1..=Page::MAX_LIMIT).contains(l))
                .ok_or_else(|| format!("must be a whole number from 1 to {}, got {s:?}", Page::MAX_LIMIT))
        })
    }

    pub fn skip<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        parse(d, |s| {
            s.parse::<u64>()
                .map_err(|_| format!("must be a whole number, got {s:?}"))
        })
    }

    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        parse(d, |s| match s {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("must be true or false, got {s:?}")),
        })
    }
}

pub(crate) fn form_pairs(q: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("truncated percent escape")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "bad percent escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent escape")?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "query is not UTF-8".to_string())
}

// ------------------------------------------------------------------ views

/// A payout as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutView {
    /// Id.
    pub id: String,
    /// The doctor.
    pub doctor_id: String,
    /// Status (uppercase name).
    pub status: String,
    /// Provider chosen at trigger time.
    pub provider: Option<String>,
    /// The provider's reference.
    pub provider_reference: Option<String>,
    /// Amount owed, exact decimal string.
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
}

impl From<Payout> for PayoutView {
    fn from(p: Payout) -> Self {
        PayoutView {
            id: p.id.to_string(),
            doctor_id: p.doctor_id.to_string(),
            status: p.status.to_string(),
            provider: p.provider.map(|v| v.to_string()),
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
        }
    }
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

fn audit_view(a: AuditEntry) -> Value {
    json!({
        "actor": a.actor, "at": a.at, "action": a.action,
        "from": a.from.map(|s| s.to_string()), "to": a.to.map(|s| s.to_string()), "detail": a.detail,
    })
}

fn page_json(page: PayoutPage, limit: u32, skip: u64) -> Value {
    let next = page
        .next
        .as_ref()
        .map(|c| format!("{}|{}", c.created_at.to_rfc3339(), c.id));
    let data: Vec<PayoutView> = page.payouts.into_iter().map(PayoutView::from).collect();
    json!({"data": data, "pagination": {"total": page.total, "limit": limit, "skip": skip, "next": next}})
}

// ------------------------------------------------------------------ queries

/// Filters of the admin list and export, with the original API's names.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this status.
    #[serde(default, deserialize_with = "query_value::status")]
    #[param(value_type = Option<crate::openapi::PayoutStatusName>)]
    pub status: Option<PayoutStatus>,
    /// Only this doctor id.
    #[serde(default, deserialize_with = "query_value::text")]
    pub doctor: Option<String>,
    /// Only this provider.
    #[serde(default, deserialize_with = "query_value::provider")]
    #[param(value_type = Option<crate::openapi::ProviderName>)]
    pub provider: Option<Provider>,
    /// Created on or after this day (UTC).
    #[serde(default, deserialize_with = "query_value::date")]
    pub start_date: Option<NaiveDate>,
    /// Created on or before this day (UTC).
    #[serde(default, deserialize_with = "query_value::date")]
    pub end_date: Option<NaiveDate>,
    /// Page size (default 50; the list only).
    #[serde(default, deserialize_with = "query_value::limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0; the list only).
    #[serde(default, deserialize_with = "query_value::skip")]
    pub skip: Option<u64>,
    /// `true`: only the payouts a person should look at (the attention queue), oldest flag first,
    /// each with its `attention` reason; not combined with the other filters (the list only).
    #[serde(default, deserialize_with = "query_value::flag")]
    pub attention: Option<bool>,
}

/// Filters of the dashboard's list form, the API's names and rules; other fields are ignored.
const FORM_FILTERS: [&str; 6] = ["status", "doctor", "provider", "startDate", "endDate", "skip"];

impl ListQuery {
    /// The filters among a form's `pairs`, parsed exactly as the API parses its query.
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let filters = pairs
            .iter()
            .filter(|(k, _)| FORM_FILTERS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        ListQuery::deserialize(serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
            filters,
        ))
        .map_err(|e| ApiError::BadRequest(format!("invalid filter: {e}")))
    }

    /// The store's filter; the list's paging and attention flag are not part of it.
    pub(crate) fn filter(&self) -> Result<PayoutFilter, ApiError> {
        if self.attention == Some(true) {
            return Err(ApiError::BadRequest(
                "attention is a filter of the admin list only, not combined with others".into(),
            ));
        }
        if let (Some(a), Some(b)) = (self.start_date, self.end_date) {
            if b < a {
                return Err(ApiError::BadRequest(format!("endDate {b} is before startDate {a}")));
            }
        }
        Ok(PayoutFilter {
            status: self.status,
            doctor_id: self.doctor.clone().map(DoctorId::from),
            provider: self.provider,
            created_from: self.start_date,
            created_to: self.end_date,
        })
    }

    fn page(&self) -> Page {
        Page::new(self.limit.unwrap_or(DEFAULT_LIMIT), self.skip.unwrap_or(0))
    }
}

/// Page size when `limit` is left out.
const DEFAULT_LIMIT: u32 = 50;

fn payout_id(raw: &str) -> Result<PayoutId, ApiError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ApiError::BadRequest("invalid payout id".into()));
    }
    Ok(PayoutId::new(raw))
}

// ------------------------------------------------------------------ handlers

/// `GET /api/admin/payouts`
#[utoipa::path(get, path = "/api/admin/payouts", params(ListQuery), responses((status = 200, description = "A page of payouts")), security(("bearer" = [])))]
pub async fn list_payouts(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = q.page();
    if q.attention == Some(true) {
        return attention_list(&state, &user, &q, page).await;
    }
    let filter = q.filter()?;
    let (limit, skip) = (page.limit, page.skip);
    let page = state.service.list(&user.actor(), &filter, &page).await?;
    Ok(Json(page_json(page, limit, skip)))
}

/// `GET /api/admin/payouts?attention=true`: the attention queue, each payout with its reason and
/// since when it is flagged.
async fn attention_list(
    state: &AppState,
    user: &crate::auth::User,
    q: &ListQuery,
    page: Page,
) -> Result<Json<Value>, ApiError> {
    let others = [
        q.status.is_some(),
        q.doctor.is_some(),
        q.provider.is_some(),
        q.start_date.is_some(),
        q.end_date.is_some(),
    ];
    if others.contains(&true) {
        return Err(ApiError::BadRequest(
            "attention=true lists the whole attention queue: leave out status, doctor, provider, startDate and endDate"
                .into(),
        ));
    }
    let (limit, skip) = (page.limit, page.skip);
    let queue = state.service.attention(&user.actor(), &page).await?;
    let data: Vec<Value> = queue
        .flagged
        .into_iter()
        .map(|f| {
            let mut v = json!(PayoutView::from(f.payout));
            v["attention"] = json!({"reason": f.reason, "since": f.since});
            v
        })
        .collect();
    Ok(Json(
        json!({"data": data, "pagination": {"total": queue.total, "limit": limit, "skip": skip, "next": null}}),
    ))
}

/// A manual payout to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePayout {
    /// The doctor.
    pub doctor_id: String,
    /// The amount: a decimal string (or number).
    #[schema(value_type = String, example = "1500.00")]
    pub amount: Value,
    /// ISO 4217 code (default `KES`).
    pub currency: Option<String>,
    /// First day of the period it pays for.
    pub period_start: Option<NaiveDate>,
    /// Last day of that period.
    pub period_end: Option<NaiveDate>,
    /// Notes.
    pub notes: Option<String>,
}

fn parse_amount(v: &Value, currency: Currency) -> Result<Money, ApiError> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(ApiError::BadRequest(
                "amount must be a decimal string such as \"1500.00\"".into(),
            ));
        }
    };
    let amount: rust_decimal::Decimal = payout_core::money::decimal_serde::deserialize(Value::String(text))
        .map_err(|e| ApiError::BadRequest(format!("amount: {e}")))?;
    Money::new(amount, currency).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `POST /api/admin/payouts`
#[utoipa::path(post, path = "/api/admin/payouts", request_body = CreatePayout, responses((status = 201, description = "Created", body = PayoutView)), security(("bearer" = [])))]
pub async fn create_payout(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<CreatePayout>,
) -> Result<Response, ApiError> {
    let currency = match body.currency.as_deref() {
        Some(c) => Currency::from_code(c).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        None => Currency::KES,
    };
    let amount = parse_amount(&body.amount, currency)?;
    let period = match (body.period_start, body.period_end) {
        (Some(s), Some(e)) => Some(Period::new(s, e).map_err(|e| ApiError::BadRequest(e.to_string()))?),
        (None, None) => None,
        _ => {
            return Err(ApiError::BadRequest(
                "give both periodStart and periodEnd, or neither".into(),
            ));
        }
    };
    if body.notes.as_ref().is_some_and(|n| n.len() > 2000) {
        return Err(ApiError::BadRequest("notes may be at most 2000 characters".into()));
    }
    let manual = ManualPayout {
        doctor_id: DoctorId::from(body.doctor_id),
        amount,
        period,
        notes: body.notes,
    };
    let payout = state.service.create_manual(&user.actor(), manual).await?;
    Ok((StatusCode::CREATED, Json(json!({"data": PayoutView::from(payout)}))).into_response())
}

/// `GET /api/admin/payouts/{id}`
#[utoipa::path(get, path = "/api/admin/payouts/{id}", params(("id" = String, Path)), responses((status = 200, body = PayoutView), (status = 404)), security(("bearer" = [])))]
pub async fn get_payout(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = payout_id(&id)?;
    let actor = user.actor();
    let payout = state.service.get(&actor, &id).await?;
    let items = state.service.items(&actor, &id).await?;
    let mut view = PayoutView::from(payout);
    view.items = Some(items.into_iter().map(ItemView::from).collect());
    Ok(Json(json!({"data": view})))
}

/// `GET /api/admin/payouts/{id}/items`
#[utoipa::path(get, path = "/api/admin/payouts/{id}/items", params(("id" = String, Path)), responses((status = 200, body = [ItemView])), security(("bearer" = [])))]
pub async fn get_items(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let items = state.service.items(&user.actor(), &payout_id(&id)?).await?;
    let items: Vec<ItemView> = items.into_iter().map(ItemView::from).collect();
    Ok(Json(json!({"data": items})))
}

/// `GET /api/admin/payouts/{id}/audit`
#[utoipa::path(get, path = "/api/admin/payouts/{id}/audit", params(("id" = String, Path)), responses((status = 200)), security(("bearer" = [])))]
pub async fn get_audit(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = payout_id(&id)?;
    state.service.get(&user.actor(), &id).await?;
    let trail = state.service.audit_trail(&user.actor(), &id).await?;
    Ok(Json(
        json!({"data": trail.into_iter().map(audit_view).collect::<Vec<_>>()}),
    ))
}

/// An action on one payout.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchPayout {
    /// `approve`, `reapprove`, `trigger`, `cancel`, `retry`, `resolve`, `confirm_resolution` or
    /// `reject_resolution`.
    pub action: String,
    /// The provider for `trigger` (required) or `retry` (optional).
    pub provider: Option<String>,
    /// A reason for `cancel` or `reject_resolution`.
    pub reason: Option<String>,
    /// For `resolve`: the outcome claimed, `PAID` or `FAILED`.
    pub outcome: Option<String>,
    /// For `resolve`: the provider's reference the evidence carries.
    pub provider_reference: Option<String>,
    /// For `resolve`: what the evidence is (required).
    pub note: Option<String>,
    /// For `cancel`: `release` (default) frees the payout's consultations for a later
    /// calculation; `void` keeps them held, so they are never paid. The audit entry records which.
    pub consultations: Option<String>,
}

/// `release` (also when absent) or `void`.
fn parse_consultations(c: Option<&str>) -> Result<CancelConsultations, ApiError> {
    match c {
        None | Some("release") => Ok(CancelConsultations::Release),
        Some("void") => Ok(CancelConsultations::Void),
        Some(other) => Err(ApiError::BadRequest(format!(
            "consultations must be \"release\" or \"void\", got {other:?}"
        ))),
    }
}

/// The `resolve` action's request, from its fields.
fn resolve_request(body: &PatchPayout) -> Result<ResolveRequest, ApiError> {
    let outcome = match body
        .outcome
        .as_deref()
        .map(|o| o.trim().to_ascii_uppercase())
        .as_deref()
    {
        Some("PAID") => ResolutionOutcome::Paid,
        Some("FAILED") => ResolutionOutcome::Failed,
        _ => return Err(ApiError::BadRequest("resolve needs outcome PAID or FAILED".into())),
    };
    Ok(ResolveRequest {
        outcome,
        provider_reference: body.provider_reference.clone(),
        note: body
            .note
            .clone()
            .ok_or_else(|| ApiError::BadRequest("resolve needs a note saying what the evidence is".into()))?,
    })
}

fn parse_provider(p: Option<&str>, required: bool) -> Result<Option<Provider>, ApiError> {
    match p {
        Some(p) => Ok(Some(
            p.parse::<Provider>().map_err(|e| ApiError::BadRequest(e.to_string()))?,
        )),
        None if required => Err(ApiError::BadRequest(
            "provider is required: STRIPE_CONNECT, PAYPAL_PAYOUTS, MPESA_B2C or BANK_TRANSFER".into(),
        )),
        None => Ok(None),
    }
}

/// `PATCH /api/admin/payouts/{id}`
#[utoipa::path(patch, path = "/api/admin/payouts/{id}", params(("id" = String, Path)), request_body = PatchPayout, responses((status = 200, body = PayoutView), (status = 409, description = "Not allowed in this status, or changed concurrently")), security(("bearer" = [])))]
pub async fn patch_payout(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchPayout>,
) -> Result<Json<Value>, ApiError> {
    let id = payout_id(&id)?;
    let actor = user.actor();
    let s = &state.service;
    if body.consultations.is_some() && body.action != "cancel" {
        return Err(ApiError::BadRequest(
            "consultations is only for the cancel action".into(),
        ));
    }
    let payout = match body.action.as_str() {
        "approve" => s.approve(&actor, &id).await?,
        "reapprove" => s.reapprove(&actor, &id).await?,
        "resolve" => s.resolve(&actor, &id, resolve_request(&body)?).await?,
        "confirm_resolution" => s.confirm_resolution(&actor, &id).await?,
        "reject_resolution" => s.reject_resolution(&actor, &id, body.reason.as_deref()).await?,
        "cancel" => {
            let consultations = parse_consultations(body.consultations.as_deref())?;
            s.cancel_with(&actor, &id, body.reason.as_deref(), consultations)
                .await?
        }
        "trigger" => {
            let provider =
                parse_provider(body.provider.as_deref(), true)?.ok_or(ApiError::BadRequest("provider".into()))?;
            s.trigger(&actor, &id, provider).await?
        }
        "retry" => {
            s.retry(&actor, &id, parse_provider(body.provider.as_deref(), false)?)
                .await?
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown action {other:?}: use approve, reapprove, trigger, cancel, retry, resolve, confirm_resolution or reject_resolution"
            )));
        }
    };
    Ok(Json(json!({"data": PayoutView::from(payout)})))
}

/// A bulk action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkRequest {
    /// The payouts.
    pub payout_ids: Vec<String>,
    /// `approve`, `reapprove`, `trigger` or `cancel`.
    pub action: String,
    /// The provider for `trigger`.
    pub provider: Option<String>,
    /// For `cancel`: `release` (default) or `void`, as for one payout.
    pub consultations: Option<String>,
}

/// `POST /api/admin/payouts/bulk`
#[utoipa::path(post, path = "/api/admin/payouts/bulk", request_body = BulkRequest, responses((status = 200, description = "One result per id")), security(("bearer" = [])))]
pub async fn bulk(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<BulkRequest>,
) -> Result<Json<Value>, ApiError> {
    if body.payout_ids.is_empty() || body.payout_ids.len() > state.config.max_bulk {
        return Err(ApiError::BadRequest(format!(
            "payoutIds must hold 1 to {} ids",
            state.config.max_bulk
        )));
    }
    let ids = body
        .payout_ids
        .iter()
        .map(|s| payout_id(s))
        .collect::<Result<Vec<_>, _>>()?;
    if body.consultations.is_some() && body.action != "cancel" {
        return Err(ApiError::BadRequest(
            "consultations is only for the cancel action".into(),
        ));
    }
    let consultations = parse_consultations(body.consultations.as_deref())?;
    let actor = user.actor();
    let s = &state.service;
    let outcomes = match body.action.as_str() {
        "approve" => s.bulk_approve(&actor, &ids).await,
        "reapprove" => s.bulk_reapprove(&actor, &ids).await,
        "cancel" => s.bulk_cancel_with(&actor, &ids, None, consultations).await,
        "trigger" => {
            let provider =
                parse_provider(body.provider.as_deref(), true)?.ok_or(ApiError::BadRequest("provider".into()))?;
            s.bulk_trigger(&actor, &ids, provider).await
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown bulk action {other:?}: use approve, reapprove, trigger or cancel"
            )));
        }
    };
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o.result {
            Ok(p) => json!({"id": o.id.to_string(), "ok": true, "status": p.status.to_string()}),
            Err(e) => {
                let e = ApiError::from(e);
                json!({"id": o.id.to_string(), "ok": false, "error": {"code": e.status_and_code().1, "message": e.message()}})
            }
        })
        .collect();
    let succeeded = results.iter().filter(|r| r["ok"] == true).count();
    Ok(Json(
        json!({"data": results, "summary": {"succeeded": succeeded, "failed": results.len() - succeeded}}),
    ))
}

/// `GET /api/admin/payouts/export`: `text/csv`, streamed.
#[utoipa::path(get, path = "/api/admin/payouts/export", params(ListQuery), responses((status = 200, content_type = "text/csv", description = "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status")), security(("bearer" = [])))]
pub async fn export_csv(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let filter = q.filter()?;
    let actor = user.actor();
    // Refuse before streaming starts when the actor may not export.
    state.service.list(&actor, &filter, &Page::new(1, 0)).await?;
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    let service = state.service.clone();
    tokio::spawn(async move {
        if let Err(e) = service.export_csv(&actor, &filter, &mut writer).await {
            tracing::error!(error = %e, "CSV export stopped");
        }
    });
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (CONTENT_DISPOSITION, "attachment; filename=\"payouts.csv\""),
        ],
        body,
    )
        .into_response())
}

/// Paging of the doctor's history.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Page size (default 50).
    #[serde(default, deserialize_with = "query_value::limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    #[serde(default, deserialize_with = "query_value::skip")]
    pub skip: Option<u64>,
}

/// `GET /api/doctor/payouts`: the authenticated doctor's own history; premium doctors also get analytics.
#[utoipa::path(get, path = "/api/doctor/payouts", params(HistoryQuery), responses((status = 200)), security(("bearer" = [])))]
pub async fn doctor_payouts(
    State(state): State<AppState>,
    Doctor(user): Doctor,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let (limit, skip) = (q.limit.unwrap_or(DEFAULT_LIMIT), q.skip.unwrap_or(0));
    let actor = user.actor();
    let page = state.service.doctor_history(&actor, &Page::new(limit, skip)).await?;
    let mut body = page_json(page, limit, skip);
    let doctor_id = match &actor {
        payout_core::domain::Actor::Doctor { doctor_id } => doctor_id.to_string(),
        _ => String::new(),
    };
    let features = state.service.feature_access(&doctor_id).await?;
    body["features"] = serde_json::to_value(features).unwrap_or(Value::Null);
    if features.advanced_analytics {
        match state.service.earnings_analytics(&actor, Currency::KES).await {
            Ok(a) => body["analytics"] = serde_json::to_value(a).unwrap_or(Value::Null),
            Err(Error::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(body))
}

/// `GET /healthz`: the store answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state
        .service
        .store()
        .list(&PayoutFilter::default(), &Page::new(1, 0))
        .await
    {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable"}))).into_response(),
    }
}

/// A known path with a method it does not answer: a JSON 405.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": {"code": "method_not_allowed", "message": "this endpoint does not answer that method"}})),
    )
        .into_response()
}

/// Unknown paths: a JSON 404.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"code": "not_found", "message": "no such endpoint"}})),
    )
        .into_response()
}
