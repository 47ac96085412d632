//! The runs and holds API (issue 17): `/api/admin/runs…` (list, create from a selection, a run's
//! page, its payouts, flagged payouts, results and funds check, approve, trigger, retry-failed, the funds override)
//! and `/api/admin/doctors…/hold(s)`. Admins only; bodies and errors as the rest of the API.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use payout_core::domain::{DoctorId, RunId};
use payout_core::service::DoctorHoldReport;
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery, query_value};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::wire::{
    CreateRun, DoctorHoldBody, DoctorHoldList, DoctorHoldOutcome, DoctorHoldRequest, DoctorHoldView, ErrorBody,
    FundsOverrideRequest, PageQuery, Pagination, PayoutList, RunBody, RunDetail, RunEventView, RunFundsBody, RunList,
    RunOnlyBody, RunReportBody, RunResultList, RunResultView, RunSummaryBody, RunSummaryView, TriggerRun,
};

/// Page size when `limit` is left out.
const DEFAULT_LIMIT: u32 = 50;

/// How many held and failed payouts, and results, a run's page shows.
const DETAIL_PAGE: u32 = 20;

fn run_id(raw: &str) -> Result<RunId, ApiError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ApiError::BadRequest("invalid run id".into()));
    }
    Ok(RunId::new(raw))
}

fn doctor_id(raw: &str) -> Result<DoctorId, ApiError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ApiError::BadRequest("invalid doctor id".into()));
    }
    Ok(DoctorId::new(raw))
}

fn page_of(limit: Option<u32>, skip: Option<u64>) -> Page {
    Page::new(limit.unwrap_or(DEFAULT_LIMIT), skip.unwrap_or(0))
}

fn pagination(total: u64, page: &Page) -> Pagination {
    Pagination {
        total,
        limit: page.limit,
        skip: page.skip,
        next: None,
    }
}

/// Filters of a run's payouts.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunPayoutsQuery {
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
    pub provider: Option<payout_core::domain::Provider>,
    /// `true`: only payouts on hold; `false`: only the others.
    #[serde(default, deserialize_with = "query_value::flag")]
    pub held: Option<bool>,
    /// Page size (default 50).
    #[serde(default, deserialize_with = "query_value::limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    #[serde(default, deserialize_with = "query_value::skip")]
    pub skip: Option<u64>,
}

/// The provider a run's funds check plans with.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FundsQuery {
    /// Every payout with this provider; left out: each with its doctor's preferred method.
    #[serde(default, deserialize_with = "query_value::provider")]
    #[param(value_type = Option<crate::openapi::ProviderName>)]
    pub provider: Option<payout_core::domain::Provider>,
}

/// `GET /api/admin/runs`: a page of runs, newest first, each with its totals.
#[utoipa::path(
    get, path = "/api/admin/runs", tag = "runs", summary = "List runs", params(PageQuery),
    responses(
        (status = 200, body = RunList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<RunList>, ApiError> {
    let page = page_of(q.limit, q.skip);
    let runs = state.service.runs(&user.actor(), &page).await?;
    let data = runs
        .runs
        .into_iter()
        .map(RunSummaryView::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(RunList {
        data,
        pagination: pagination(runs.total, &page),
    }))
}

/// `POST /api/admin/runs`: a run of every payout matching the filters.
#[utoipa::path(
    post, path = "/api/admin/runs", tag = "runs", summary = "Make a run from a selection", request_body = CreateRun,
    responses(
        (status = 201, description = "Created, with its totals", body = RunSummaryBody),
        (status = 400, description = "A bad label or filter, or no payout matches", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn create_run(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiJson(body): ApiJson<CreateRun>,
) -> Result<(StatusCode, Json<RunSummaryBody>), ApiError> {
    if let (Some(a), Some(b)) = (body.start_date, body.end_date) {
        if b < a {
            return Err(ApiError::BadRequest(format!("endDate {b} is before startDate {a}")));
        }
    }
    let filter = PayoutFilter {
        status: body.status,
        doctor_id: body.doctor.as_deref().map(doctor_id).transpose()?,
        provider: body.provider,
        created_from: body.start_date,
        created_to: body.end_date,
        held: body.held,
        ..Default::default()
    };
    let run = state.service.create_run(&user.actor(), &body.label, filter).await?;
    Ok((StatusCode::CREATED, Json(RunSummaryBody { data: run.try_into()? })))
}

/// `GET /api/admin/runs/{id}`: a run's page.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}", tag = "runs", summary = "Get a run with its totals, held, failed and flagged payouts, latest results and events",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, body = RunBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_run(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunBody>, ApiError> {
    let id = run_id(&id)?;
    let actor = user.actor();
    let s = &state.service;
    let summary = s.run_summary(&actor, &id).await?;
    let failed = summary.count_of(PayoutStatus::Failed);
    let returned = summary.count_of(PayoutStatus::Returned) + summary.count_of(PayoutStatus::Reversed);
    let first = Page::new(DETAIL_PAGE, 0);
    let attention = s.run_attention(&actor, &id, &first).await?;
    let held_filter = PayoutFilter {
        held: Some(true),
        ..Default::default()
    };
    let held_page = s.run_payouts(&actor, &id, held_filter, &first).await?;
    let failed_filter = PayoutFilter {
        status: Some(PayoutStatus::Failed),
        ..Default::default()
    };
    let failed_page = s.run_payouts(&actor, &id, failed_filter, &first).await?;
    let total_results = s.run_results(&actor, &id, &Page::new(1, 0)).await?.total;
    let latest = Page::new(DETAIL_PAGE, total_results.saturating_sub(u64::from(DETAIL_PAGE)));
    let results = s.run_results(&actor, &id, &latest).await?;
    let events = s.run_events(&actor, &id).await?;
    let view = RunSummaryView::try_from(summary)?;
    Ok(Json(RunBody {
        data: RunDetail {
            run: view.run,
            totals: view.totals,
            held: held_page.total,
            failed,
            attention: attention.total,
            returned,
            held_payouts: PayoutList::new(held_page, first.limit, 0),
            failed_payouts: PayoutList::new(failed_page, first.limit, 0),
            attention_payouts: PayoutList::flagged(attention, first.limit, 0),
            results: RunResultList {
                data: results.results.into_iter().map(RunResultView::from).collect(),
                pagination: pagination(results.total, &latest),
            },
            events: events.into_iter().map(RunEventView::from).collect(),
        },
    }))
}

/// `GET /api/admin/runs/{id}/payouts`: a page of a run's payouts, newest first.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}/payouts", tag = "runs", summary = "List a run's payouts",
    params(("id" = String, Path, description = "Run id"), RunPayoutsQuery),
    responses(
        (status = 200, body = PayoutList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_payouts(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RunPayoutsQuery>,
) -> Result<Json<PayoutList>, ApiError> {
    let id = run_id(&id)?;
    let page = page_of(q.limit, q.skip);
    let filter = PayoutFilter {
        status: q.status,
        doctor_id: q.doctor.as_deref().map(doctor_id).transpose()?,
        provider: q.provider,
        held: q.held,
        ..Default::default()
    };
    let found = state.service.run_payouts(&user.actor(), &id, filter, &page).await?;
    Ok(Json(PayoutList::new(found, page.limit, page.skip)))
}

/// `GET /api/admin/runs/{id}/attention`: a page of a run's payouts on the attention queue, oldest
/// flag first, each with its `attention` reason and since when.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}/attention", tag = "runs", summary = "List a run's payouts that need attention",
    params(("id" = String, Path, description = "Run id"), PageQuery),
    responses(
        (status = 200, body = PayoutList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_attention(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<PayoutList>, ApiError> {
    let id = run_id(&id)?;
    let page = page_of(q.limit, q.skip);
    let flagged = state.service.run_attention(&user.actor(), &id, &page).await?;
    Ok(Json(PayoutList::flagged(flagged, page.limit, page.skip)))
}

/// `GET /api/admin/runs/{id}/results`: a page of a run's per-payout results, oldest first.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}/results", tag = "runs", summary = "List a run's per-payout results",
    params(("id" = String, Path, description = "Run id"), PageQuery),
    responses(
        (status = 200, body = RunResultList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_results(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<RunResultList>, ApiError> {
    let id = run_id(&id)?;
    let page = page_of(q.limit, q.skip);
    let results = state.service.run_results(&user.actor(), &id, &page).await?;
    Ok(Json(RunResultList {
        data: results.results.into_iter().map(RunResultView::from).collect(),
        pagination: pagination(results.total, &page),
    }))
}

/// `GET /api/admin/runs/{id}/funds`: the run's funds check.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}/funds", tag = "runs", summary = "Check a run's funds against the providers' balances",
    params(("id" = String, Path, description = "Run id"), FundsQuery),
    responses(
        (status = 200, body = RunFundsBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn run_funds(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FundsQuery>,
) -> Result<Json<RunFundsBody>, ApiError> {
    let id = run_id(&id)?;
    let funds = state.service.run_funds(&user.actor(), &id, q.provider).await?;
    Ok(Json(RunFundsBody { data: funds.into() }))
}

/// `POST /api/admin/runs/{id}/approve`: approves the run's `PENDING` payouts.
#[utoipa::path(
    post, path = "/api/admin/runs/{id}/approve", tag = "runs", summary = "Approve a run's pending payouts",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "What it did; each payout's outcome is in the run's results", body = RunReportBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn approve_run(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunReportBody>, ApiError> {
    let id = run_id(&id)?;
    let report = state.service.approve_run(&user.actor(), &id).await?;
    Ok(Json(RunReportBody { data: report.into() }))
}

/// `POST /api/admin/runs/{id}/trigger`: sends the run's `APPROVED` payouts, after its funds check.
#[utoipa::path(
    post, path = "/api/admin/runs/{id}/trigger", tag = "runs", summary = "Send a run's approved payouts",
    params(("id" = String, Path, description = "Run id")), request_body = TriggerRun,
    responses(
        (status = 200, description = "What it did; held payouts and those without a method get a failed result saying why", body = RunReportBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`funds_shortfall`: a provider holds less than the run needs and no second admin confirmed an override; nothing was sent", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn trigger_run(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TriggerRun>,
) -> Result<Json<RunReportBody>, ApiError> {
    let id = run_id(&id)?;
    let report = state.service.trigger_run(&user.actor(), &id, body.provider).await?;
    Ok(Json(RunReportBody { data: report.into() }))
}

/// `POST /api/admin/runs/{id}/retry-failed`: retries the run's `FAILED` payouts.
#[utoipa::path(
    post, path = "/api/admin/runs/{id}/retry-failed", tag = "runs", summary = "Retry a run's failed payouts",
    params(("id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "What it did; only payouts with a confirmed failure are retried", body = RunReportBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn retry_failed_run(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunReportBody>, ApiError> {
    let id = run_id(&id)?;
    let report = state.service.retry_failed_run(&user.actor(), &id).await?;
    Ok(Json(RunReportBody { data: report.into() }))
}

/// `POST /api/admin/runs/{id}/funds-override`: requests, or (a second admin) confirms, a funds
/// override.
#[utoipa::path(
    post, path = "/api/admin/runs/{id}/funds-override", tag = "runs", summary = "Request or confirm a funds override",
    params(("id" = String, Path, description = "Run id")), request_body = FundsOverrideRequest,
    responses(
        (status = 200, description = "The run with its override", body = RunOnlyBody),
        (status = 400, description = "No reason, an override already there, or none to confirm", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin, or the admin who requested it confirming it", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`run_conflict`: another admin changed the override first", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn funds_override(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<FundsOverrideRequest>,
) -> Result<Json<RunOnlyBody>, ApiError> {
    let id = run_id(&id)?;
    let actor = user.actor();
    let run = match body {
        FundsOverrideRequest::Request { reason } => state.service.request_funds_override(&actor, &id, &reason).await?,
        FundsOverrideRequest::Confirm {} => state.service.confirm_funds_override(&actor, &id).await?,
    };
    Ok(Json(RunOnlyBody { data: run.into() }))
}

/// `POST /api/admin/doctors/{id}/hold`: puts a doctor on hold, or releases the doctor.
#[utoipa::path(
    post, path = "/api/admin/doctors/{id}/hold", tag = "runs", summary = "Hold or release a doctor",
    params(("id" = String, Path, description = "Doctor id")), request_body = DoctorHoldRequest,
    responses(
        (status = 200, description = "The doctor's hold, and the payouts held or released with it", body = DoctorHoldBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Not an admin, or (four eyes) the admin who placed the hold releasing it", body = ErrorBody),
        (status = 404, description = "`doctor_not_held`: released while not on hold", body = ErrorBody),
        (status = 409, description = "`doctor_already_held`", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn doctor_hold(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DoctorHoldRequest>,
) -> Result<Json<DoctorHoldBody>, ApiError> {
    let doctor = doctor_id(&id)?;
    let actor = user.actor();
    let DoctorHoldReport { hold, payouts } = match body {
        DoctorHoldRequest::Hold { reason } => state.service.hold_doctor(&actor, &doctor, &reason).await?,
        DoctorHoldRequest::Release {} => state.service.release_doctor(&actor, &doctor).await?,
    };
    Ok(Json(DoctorHoldBody {
        data: DoctorHoldOutcome {
            hold: hold.into(),
            payouts: payouts.into_iter().map(|p| p.to_string()).collect(),
        },
    }))
}

/// `GET /api/admin/doctors/holds`: the doctors on hold, oldest hold first.
#[utoipa::path(
    get, path = "/api/admin/doctors/holds", tag = "runs", summary = "List the doctors on hold", params(PageQuery),
    responses(
        (status = 200, body = DoctorHoldList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn doctor_holds(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<DoctorHoldList>, ApiError> {
    let page = page_of(q.limit, q.skip);
    let holds = state.service.doctor_holds(&user.actor(), &page).await?;
    Ok(Json(DoctorHoldList {
        data: holds.holds.into_iter().map(DoctorHoldView::from).collect(),
        pagination: pagination(holds.total, &page),
    }))
}
