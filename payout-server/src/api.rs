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
use chrono::NaiveDate;
use payout_core::domain::{DoctorId, PayoutId, Period, Provider};
use payout_core::error::Error;
use payout_core::money::{Currency, Money};
use payout_core::service::{CancelConsultations, ManualPayout, ResolveRequest};
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Admin, Doctor};
use crate::error::ApiError;
pub use crate::wire::{
    AttentionView, AuditBody, AuditEntryView, BulkBody, BulkRequest, BulkResult, BulkSummary, CreatePayout,
    DoctorHistory, ErrorBody, Health, HealthStatus, ItemView, ItemsBody, Pagination, PatchPayout, PayoutBody,
    PayoutList, PayoutView,
};

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
pub(crate) mod query_value {
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

    pub fn event_cursor<'de, D: Deserializer<'de>>(d: D) -> Result<Option<payout_core::events::EventCursor>, D::Error> {
        parse(d, |s| {
            s.parse().map_err(|e: payout_core::events::BadCursor| e.to_string())
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
    /// Only the payouts of this run.
    #[serde(default, deserialize_with = "query_value::text")]
    pub run: Option<String>,
    /// `true`: only payouts on hold (their own hold or their doctor's); `false`: only the others.
    #[serde(default, deserialize_with = "query_value::flag")]
    pub held: Option<bool>,
}

/// Filters of the dashboard's list form, the API's names and rules; other fields are ignored.
const FORM_FILTERS: [&str; 7] = ["status", "doctor", "provider", "startDate", "endDate", "limit", "skip"];

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
            run: self.run.clone().map(payout_core::domain::RunId::new),
            held: self.held,
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

/// `GET /api/admin/payouts`: a page of payouts, or with `attention=true` the attention queue.
#[utoipa::path(
    get, path = "/api/admin/payouts", tag = "admin", summary = "List payouts", params(ListQuery),
    responses(
        (status = 200, description = "A page of payouts", body = PayoutList),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_payouts(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PayoutList>, ApiError> {
    let page = q.page();
    if q.attention == Some(true) {
        return attention_list(&state, &user, &q, page).await;
    }
    let filter = q.filter()?;
    let (limit, skip) = (page.limit, page.skip);
    let page = state.service.list(&user.actor(), &filter, &page).await?;
    Ok(Json(PayoutList::new(page, limit, skip)))
}

/// `GET /api/admin/payouts?attention=true`: the attention queue, each payout with its reason and
/// since when it is flagged.
async fn attention_list(
    state: &AppState,
    user: &crate::auth::User,
    q: &ListQuery,
    page: Page,
) -> Result<Json<PayoutList>, ApiError> {
    let others = [
        q.status.is_some(),
        q.doctor.is_some(),
        q.provider.is_some(),
        q.start_date.is_some(),
        q.end_date.is_some(),
        q.run.is_some(),
        q.held.is_some(),
    ];
    if others.contains(&true) {
        return Err(ApiError::BadRequest(
            "attention=true lists the whole attention queue: leave out status, doctor, provider, startDate, endDate, run and held"
                .into(),
        ));
    }
    let (limit, skip) = (page.limit, page.skip);
    let queue = state.service.attention(&user.actor(), &page).await?;
    Ok(Json(PayoutList::flagged(queue, limit, skip)))
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

/// `POST /api/admin/payouts`: a manual payout.
#[utoipa::path(
    post, path = "/api/admin/payouts", tag = "admin", summary = "Create a manual payout", request_body = CreatePayout,
    responses(
        (status = 201, description = "Created, PENDING", body = PayoutBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn create_payout(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<CreatePayout>,
) -> Result<(StatusCode, Json<PayoutBody>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(PayoutBody { data: payout.into() })))
}

/// `GET /api/admin/payouts/{id}`: one payout with its items.
#[utoipa::path(
    get, path = "/api/admin/payouts/{id}", tag = "admin", summary = "Get a payout with its items", params(("id" = String, Path, description = "Payout id")),
    responses(
        (status = 200, body = PayoutBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_payout(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PayoutBody>, ApiError> {
    let id = payout_id(&id)?;
    let actor = user.actor();
    let payout = state.service.get(&actor, &id).await?;
    let items = state.service.items(&actor, &id).await?;
    let mut view = PayoutView::from(payout);
    view.items = Some(items.into_iter().map(ItemView::from).collect());
    Ok(Json(PayoutBody { data: view }))
}

/// `GET /api/admin/payouts/{id}/items`
#[utoipa::path(
    get, path = "/api/admin/payouts/{id}/items", tag = "admin", summary = "List a payout's items", params(("id" = String, Path, description = "Payout id")),
    responses(
        (status = 200, body = ItemsBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_items(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ItemsBody>, ApiError> {
    let items = state.service.items(&user.actor(), &payout_id(&id)?).await?;
    Ok(Json(ItemsBody {
        data: items.into_iter().map(ItemView::from).collect(),
    }))
}

/// `GET /api/admin/payouts/{id}/audit`
#[utoipa::path(
    get, path = "/api/admin/payouts/{id}/audit", tag = "admin", summary = "List a payout's audit trail", params(("id" = String, Path, description = "Payout id")),
    responses(
        (status = 200, body = AuditBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_audit(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<AuditBody>, ApiError> {
    let id = payout_id(&id)?;
    state.service.get(&user.actor(), &id).await?;
    let trail = state.service.audit_trail(&user.actor(), &id).await?;
    Ok(Json(AuditBody {
        data: trail.into_iter().map(AuditEntryView::from).collect(),
    }))
}

/// `PATCH /api/admin/payouts/{id}`: one action on one payout.
#[utoipa::path(
    patch, path = "/api/admin/payouts/{id}", tag = "admin", summary = "Act on a payout", params(("id" = String, Path, description = "Payout id")),
    request_body = PatchPayout,
    responses(
        (status = 200, description = "The payout after the action", body = PayoutBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not allowed in this status, changed concurrently, needs (re)approval, or on hold (`on_hold`, with the hold's reason)", body = ErrorBody),
        (status = 422, description = "No recipient details for the provider, or the provider is not configured", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 502, description = "The provider refused or failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn patch_payout(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PatchPayout>,
) -> Result<Json<PayoutBody>, ApiError> {
    let id = payout_id(&id)?;
    let actor = user.actor();
    let s = &state.service;
    let payout = match body {
        PatchPayout::Approve {} => s.approve(&actor, &id).await?,
        PatchPayout::Reapprove {} => s.reapprove(&actor, &id).await?,
        PatchPayout::Resolve {
            outcome,
            provider_reference,
            note,
        } => {
            let request = ResolveRequest {
                outcome: outcome.into(),
                provider_reference,
                note,
            };
            s.resolve(&actor, &id, request).await?
        }
        PatchPayout::ConfirmResolution {} => s.confirm_resolution(&actor, &id).await?,
        PatchPayout::RejectResolution { reason } => s.reject_resolution(&actor, &id, reason.as_deref()).await?,
        PatchPayout::Cancel { reason, consultations } => {
            let consultations = consultations.map_or(CancelConsultations::Release, Into::into);
            s.cancel_with(&actor, &id, reason.as_deref(), consultations).await?
        }
        PatchPayout::Trigger { provider } => s.trigger(&actor, &id, provider).await?,
        PatchPayout::Retry { provider } => s.retry(&actor, &id, provider).await?,
        PatchPayout::Hold { reason } => s.hold(&actor, &id, &reason).await?,
        PatchPayout::Release {} => s.release(&actor, &id).await?,
    };
    Ok(Json(PayoutBody { data: payout.into() }))
}

/// `POST /api/admin/payouts/bulk`: one action on many payouts, one result per id.
#[utoipa::path(
    post, path = "/api/admin/payouts/bulk", tag = "admin", summary = "Act on many payouts", request_body = BulkRequest,
    responses(
        (status = 200, description = "One result per id, in order", body = BulkBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn bulk(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<BulkRequest>,
) -> Result<Json<BulkBody>, ApiError> {
    let given = body.payout_ids();
    if given.is_empty() || given.len() > state.config.max_bulk {
        return Err(ApiError::BadRequest(format!(
            "payoutIds must hold 1 to {} ids",
            state.config.max_bulk
        )));
    }
    let ids = given.iter().map(|s| payout_id(s)).collect::<Result<Vec<_>, _>>()?;
    let actor = user.actor();
    let s = &state.service;
    let outcomes = match body {
        BulkRequest::Approve { .. } => s.bulk_approve(&actor, &ids).await,
        BulkRequest::Reapprove { .. } => s.bulk_reapprove(&actor, &ids).await,
        BulkRequest::Cancel { consultations, .. } => {
            let consultations = consultations.map_or(CancelConsultations::Release, Into::into);
            s.bulk_cancel_with(&actor, &ids, None, consultations).await
        }
        BulkRequest::Trigger { provider, .. } => s.bulk_trigger(&actor, &ids, provider).await,
    };
    let data: Vec<BulkResult> = outcomes
        .into_iter()
        .map(|o| match o.result {
            Ok(p) => BulkResult {
                id: o.id.to_string(),
                ok: true,
                status: Some(p.status),
                error: None,
            },
            Err(e) => BulkResult {
                id: o.id.to_string(),
                ok: false,
                status: None,
                error: Some(ApiError::from(e).detail()),
            },
        })
        .collect();
    let succeeded = data.iter().filter(|r| r.ok).count();
    let summary = BulkSummary {
        succeeded,
        failed: data.len() - succeeded,
    };
    Ok(Json(BulkBody { data, summary }))
}

/// `GET /api/admin/payouts/export`: `text/csv`, streamed.
#[utoipa::path(
    get, path = "/api/admin/payouts/export", tag = "admin", summary = "Export payouts as CSV", params(ListQuery),
    responses(
        (status = 200, content_type = "text/csv", body = String,
         description = "Header id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status; every match (limit, skip and attention do not apply)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
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

impl HistoryQuery {
    /// The paging among a form's `pairs` (`limit`, `skip`), parsed exactly as the API parses its query.
    pub(crate) fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, ApiError> {
        HistoryQuery::deserialize(serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
            pairs,
        ))
        .map_err(|e| ApiError::BadRequest(format!("invalid paging: {e}")))
    }
}

/// `GET /api/doctor/payouts`: the authenticated doctor's own history; premium doctors also get analytics.
#[utoipa::path(
    get, path = "/api/doctor/payouts", tag = "doctor", summary = "The doctor's own payouts", params(HistoryQuery),
    responses(
        (status = 200, body = DoctorHistory), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn doctor_payouts(
    State(state): State<AppState>,
    Doctor(user): Doctor,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<DoctorHistory>, ApiError> {
    let (limit, skip) = (q.limit.unwrap_or(DEFAULT_LIMIT), q.skip.unwrap_or(0));
    let actor = user.actor();
    let page = state.service.doctor_history(&actor, &Page::new(limit, skip)).await?;
    let pagination = Pagination::of(&page, limit, skip);
    let data = page
        .payouts
        .into_iter()
        .map(crate::doctor::DoctorPayoutView::from)
        .collect();
    let doctor_id = match &actor {
        payout_core::domain::Actor::Doctor { doctor_id } => doctor_id.to_string(),
        _ => String::new(),
    };
    let features = state.service.feature_access(&doctor_id).await?;
    let mut analytics = None;
    if features.advanced_analytics {
        match state.service.earnings_analytics(&actor, Currency::KES).await {
            Ok(a) => analytics = serde_json::to_value(a).ok(),
            Err(Error::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Json(DoctorHistory {
        data,
        pagination,
        features: serde_json::to_value(features).unwrap_or(Value::Null),
        analytics,
    }))
}

/// `GET /healthz`: the store answers.
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state
        .service
        .store()
        .list(&PayoutFilter::default(), &Page::new(1, 0))
        .await
    {
        Ok(_) => (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
            }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
            }),
        ),
    }
}

/// A known path with a method it does not answer: a JSON 405.
pub async fn method_not_allowed() -> Response {
    ErrorBody::new("method_not_allowed", "this endpoint does not answer that method")
        .into_response_with(StatusCode::METHOD_NOT_ALLOWED)
}

/// Unknown paths: a JSON 404.
pub async fn not_found() -> Response {
    ErrorBody::new("not_found", "no such endpoint").into_response_with(StatusCode::NOT_FOUND)
}
