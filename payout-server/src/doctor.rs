//! The doctor's side of the API: a doctor's own payouts as the doctor sees them, statements and
//! the year's summary; and the admin routes that fetch any doctor's statement.
//!
//! A doctor's answers use their own types ([`DoctorPayoutView`], [`DoctorItemView`]), which hold
//! only what the doctor should see: no provider error text, no admin ids, no cancel or hold
//! reasons (only that a payout is on hold), no approval fingerprints or resolutions. The doctor is
//! always the authenticated one; another doctor's payout is `404`, as if it did not exist.
//!
//! The figures come from the engine ([`PayoutService::statement`](payout_core::PayoutService::statement),
//! [`year_summary`](payout_core::PayoutService::year_summary)); this module only renders them.

use axum::Json;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use payout_core::domain::{Actor, DoctorId, Payout, PayoutId, PayoutItem, Provider};
use payout_core::service::{LineKind, YearPayout, YearSummary, YearTotals};
use payout_core::status::PayoutStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::api::{ApiPath, ApiQuery};
use crate::auth::{Admin, Doctor};
use crate::error::ApiError;
use crate::openapi::{PayoutStatusName, ProviderName};
use crate::statement_html;
use crate::wire::ErrorBody;

// ------------------------------------------------------------------ views

/// A payout as its doctor sees it: the money, the period and where it stands, nothing internal.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoctorPayoutView {
    /// Id.
    pub id: String,
    /// The doctor (always the one signed in; kept as the original list had it).
    pub doctor_id: String,
    /// Status.
    #[schema(value_type = PayoutStatusName)]
    pub status: PayoutStatus,
    /// The provider it was sent with.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<Provider>,
    /// The provider's reference (an M-Pesa receipt, a transfer id), for the doctor's records.
    pub provider_reference: Option<String>,
    /// Amount, exact decimal string.
    #[schema(example = "1275.00")]
    pub amount_due: String,
    /// ISO 4217 code.
    pub currency: String,
    /// First day of the period.
    pub period_start: NaiveDate,
    /// Last day of the period.
    pub period_end: NaiveDate,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When the provider confirmed the outcome (paid, or failed).
    pub processed_at: Option<DateTime<Utc>>,
    /// `true` while the payout is kept back (the reason is the platform's, not shown).
    pub on_hold: bool,
    /// Its lines (on `GET /api/doctor/payouts/{id}` only), in order; they add up to `amountDue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<DoctorItemView>>,
}

impl From<Payout> for DoctorPayoutView {
    fn from(p: Payout) -> Self {
        DoctorPayoutView {
            on_hold: p.active_hold().is_some(),
            id: p.id.to_string(),
            doctor_id: p.doctor_id.to_string(),
            status: p.status,
            provider: p.provider,
            provider_reference: p.provider_reference,
            amount_due: p.amount_due.amount_str(),
            currency: p.amount_due.currency().to_string(),
            period_start: p.period_start,
            period_end: p.period_end,
            created_at: p.created_at,
            processed_at: p.processed_at,
            items: None,
        }
    }
}

impl DoctorPayoutView {
    /// `payout` with its `items`.
    pub fn with_items(payout: Payout, items: Vec<PayoutItem>) -> Self {
        let period = payout.period();
        DoctorPayoutView {
            items: Some(items.into_iter().map(|i| DoctorItemView::new(i, period)).collect()),
            ..DoctorPayoutView::from(payout)
        }
    }
}

/// One line of a doctor's payout.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DoctorItemView {
    /// `CONSULTATION`, `LATE_CONSULTATION` (completed before the period, paid late), `CARRY_OVER`,
    /// `DEDUCTION`, `ADJUSTMENT` or `CLAWBACK`.
    #[schema(value_type = String, example = "CONSULTATION")]
    pub kind: LineKind,
    /// What it refers to (an appointment id, a period, a deduction's name).
    pub reference: String,
    /// What it is.
    pub description: String,
    /// Exact decimal string; negative for deductions and clawbacks.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// When the thing it pays for happened.
    pub occurred_at: DateTime<Utc>,
}

impl DoctorItemView {
    fn new(i: PayoutItem, period: payout_core::domain::Period) -> Self {
        DoctorItemView {
            kind: LineKind::of(&i, period),
            reference: i.reference,
            description: i.description,
            amount: i.amount.amount_str(),
            currency: i.amount.currency().to_string(),
            occurred_at: i.occurred_at,
        }
    }
}

/// One of the doctor's payouts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DoctorPayoutBody {
    /// The payout, with its items.
    pub data: DoctorPayoutView,
}

/// A deduction's total over a year.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeductionView {
    /// Its name (`platform_fee`, `withholding_tax`).
    pub name: String,
    /// What it took, exact decimal string (positive).
    pub amount: String,
}

/// A year's totals in one currency.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct YearTotalsView {
    /// ISO 4217 code.
    pub currency: String,
    /// `PAID` payouts counted.
    pub payouts: u64,
    /// Consultations they paid for (late ones included).
    pub consultations: u64,
    /// Gross earnings: every item but the deductions (clawbacks taken off, carry-overs added).
    pub gross: String,
    /// Each deduction's total, by name.
    pub deductions: Vec<DeductionView>,
    /// The deductions together.
    pub deducted: String,
    /// What was paid: `gross - deducted`.
    pub net_paid: String,
    /// Payouts paid in the year whose money came back since (`RETURNED`, `REVERSED`): not counted.
    pub returned: u64,
    /// Their amounts together.
    pub returned_amount: String,
}

impl From<YearTotals> for YearTotalsView {
    fn from(t: YearTotals) -> Self {
        YearTotalsView {
            currency: t.currency.to_string(),
            payouts: t.payouts,
            consultations: t.consultations,
            gross: t.gross.amount_str(),
            deductions: t
                .deductions
                .into_iter()
                .map(|d| DeductionView {
                    name: d.name,
                    amount: d.amount.amount_str(),
                })
                .collect(),
            deducted: t.deducted.amount_str(),
            net_paid: t.net_paid.amount_str(),
            returned: t.returned,
            returned_amount: t.returned_amount.amount_str(),
        }
    }
}

/// A payout a year's summary counts or lists.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct YearPayoutView {
    /// The payout.
    pub id: String,
    /// Its status now.
    #[schema(value_type = PayoutStatusName)]
    pub status: PayoutStatus,
    /// First day of its period.
    pub period_start: NaiveDate,
    /// Last day of its period.
    pub period_end: NaiveDate,
    /// When its payment was confirmed.
    pub paid_at: DateTime<Utc>,
    /// Its amount, exact decimal string.
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
}

impl From<YearPayout> for YearPayoutView {
    fn from(p: YearPayout) -> Self {
        YearPayoutView {
            id: p.id.to_string(),
            status: p.status,
            period_start: p.period_start,
            period_end: p.period_end,
            paid_at: p.paid_at,
            amount: p.amount.amount_str(),
            currency: p.amount.currency().to_string(),
        }
    }
}

/// A doctor's year, for their tax return: the `PAID` payouts whose payment was confirmed in the year
/// (UTC), per currency; payouts whose money came back (`RETURNED`, `REVERSED`) are not income and
/// are listed apart under the year they were paid in.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct YearSummaryView {
    /// The doctor.
    pub doctor_id: String,
    /// The doctor's name, when the directory knows it.
    pub doctor_name: Option<String>,
    /// The calendar year.
    pub year: i32,
    /// Per currency (never converted), by code.
    pub totals: Vec<YearTotalsView>,
    /// The payouts counted, in order of payment.
    pub paid: Vec<YearPayoutView>,
    /// The payouts paid in the year whose money came back, in order of payment: not counted.
    pub returned: Vec<YearPayoutView>,
}

impl From<YearSummary> for YearSummaryView {
    fn from(s: YearSummary) -> Self {
        YearSummaryView {
            doctor_id: s.doctor_id.to_string(),
            doctor_name: s.doctor_name,
            year: s.year,
            totals: s.totals.into_iter().map(YearTotalsView::from).collect(),
            paid: s.paid.into_iter().map(YearPayoutView::from).collect(),
            returned: s.returned.into_iter().map(YearPayoutView::from).collect(),
        }
    }
}

/// A year's summary.
#[derive(Debug, Serialize, ToSchema)]
pub struct YearSummaryBody {
    /// The summary.
    pub data: YearSummaryView,
}

// ------------------------------------------------------------------ queries

/// How a statement is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatementFormat {
    /// A printable HTML page (the default).
    #[default]
    Html,
    /// CSV, one row per line (a doctor needs a plan with `earnings_export`).
    Csv,
}

/// The format of a payout's statement.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// `html` (default) or `csv`.
    #[serde(default)]
    pub format: Option<StatementFormat>,
}

/// How a year's summary is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SummaryFormat {
    /// JSON (the default).
    #[default]
    Json,
    /// A printable HTML page.
    Html,
}

/// The format of a year's summary.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// `json` (default) or `html`.
    #[serde(default)]
    pub format: Option<SummaryFormat>,
}

fn payout_id(raw: &str) -> Result<PayoutId, ApiError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ApiError::BadRequest("invalid payout id".into()));
    }
    Ok(PayoutId::new(raw))
}

fn year(raw: &str) -> Result<i32, ApiError> {
    raw.parse::<i32>()
        .ok()
        .filter(|y| payout_core::service::SUMMARY_YEARS.contains(y))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "year must be a year from {} to {}, got {raw:?}",
                payout_core::service::SUMMARY_YEARS.start(),
                payout_core::service::SUMMARY_YEARS.end()
            ))
        })
}

fn doctor_of(actor: &Actor) -> DoctorId {
    match actor {
        Actor::Doctor { doctor_id } => doctor_id.clone(),
        // The `Doctor` extractor lets only doctors through.
        _ => DoctorId::default(),
    }
}

// ------------------------------------------------------------------ handlers

/// `GET /api/doctor/payouts/{id}`: one of the doctor's own payouts, with its items.
#[utoipa::path(
    get, path = "/api/doctor/payouts/{id}", tag = "doctor", summary = "One of the doctor's own payouts, with its items",
    params(("id" = String, Path, description = "Payout id")),
    responses(
        (status = 200, body = DoctorPayoutBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Not a doctor", body = ErrorBody),
        (status = 404, description = "No such payout, or another doctor's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn doctor_payout(
    State(state): State<AppState>,
    Doctor(user): Doctor,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DoctorPayoutBody>, ApiError> {
    let id = payout_id(&id)?;
    let actor = user.actor();
    let payout = state.service.get(&actor, &id).await?;
    let items = state.service.items(&actor, &id).await?;
    Ok(Json(DoctorPayoutBody {
        data: DoctorPayoutView::with_items(payout, items),
    }))
}

/// `GET /api/doctor/payouts/{id}/statement`: the statement of one of the doctor's own payouts.
#[utoipa::path(
    get, path = "/api/doctor/payouts/{id}/statement", tag = "doctor", summary = "A statement of one of the doctor's own payouts",
    params(("id" = String, Path, description = "Payout id"), StatementQuery),
    responses(
        (status = 200, description = "A printable HTML page (platform, period, each line, totals, the masked method, the provider's reference), or with `format=csv` one row per line (columns payoutId,periodStart,periodEnd,status,kind,reference,occurredAt,description,amount,currency; the amounts add up to the payout's)",
         content((String = "text/html"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "Not a doctor, or `format=csv` without a plan with `earnings_export` (`premium_required`)", body = ErrorBody),
        (status = 404, description = "No such payout, or another doctor's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn doctor_statement(
    State(state): State<AppState>,
    Doctor(user): Doctor,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatementQuery>,
) -> Result<Response, ApiError> {
    statement(&state, &user.actor(), &payout_id(&id)?, q.format.unwrap_or_default()).await
}

/// `GET /api/admin/payouts/{id}/statement`: any payout's statement, as its doctor gets it.
#[utoipa::path(
    get, path = "/api/admin/payouts/{id}/statement", tag = "admin", summary = "Any payout's statement",
    params(("id" = String, Path, description = "Payout id"), StatementQuery),
    responses(
        (status = 200, description = "The statement its doctor gets (HTML, or CSV with `format=csv`; no plan needed)",
         content((String = "text/html"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn admin_statement(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatementQuery>,
) -> Result<Response, ApiError> {
    statement(&state, &user.actor(), &payout_id(&id)?, q.format.unwrap_or_default()).await
}

async fn statement(
    state: &AppState,
    actor: &Actor,
    id: &PayoutId,
    format: StatementFormat,
) -> Result<Response, ApiError> {
    match format {
        StatementFormat::Html => {
            let statement = state.service.statement(actor, id).await?;
            Ok(statement_html::statement_page(&state.config.platform_name, &statement))
        }
        StatementFormat::Csv => {
            let csv = state.service.statement_csv(actor, id).await?;
            let name: String = id
                .as_str()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            Ok((
                [
                    (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        CONTENT_DISPOSITION,
                        format!("attachment; filename=\"statement-{name}.csv\""),
                    ),
                ],
                csv,
            )
                .into_response())
        }
    }
}

/// `GET /api/doctor/statements/{year}`: the doctor's year, for their tax return.
#[utoipa::path(
    get, path = "/api/doctor/statements/{year}", tag = "doctor", summary = "The doctor's year: gross, deductions by name, net paid",
    params(("year" = i32, Path, description = "Calendar year (UTC), 2000 to 9999"), SummaryQuery),
    responses(
        (status = 200, description = "JSON, or a printable HTML page with `format=html`. Counts the PAID payouts whose payment was confirmed in the year; RETURNED and REVERSED payouts are not counted and are listed apart",
         content((YearSummaryBody = "application/json"), (String = "text/html"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn doctor_year(
    State(state): State<AppState>,
    Doctor(user): Doctor,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Response, ApiError> {
    let actor = user.actor();
    let doctor = doctor_of(&actor);
    year_summary(&state, &actor, &doctor, year(&raw)?, q.format.unwrap_or_default()).await
}

/// `GET /api/admin/doctors/{id}/statements/{year}`: any doctor's year.
#[utoipa::path(
    get, path = "/api/admin/doctors/{id}/statements/{year}", tag = "admin", summary = "Any doctor's year",
    params(("id" = String, Path, description = "Doctor id"), ("year" = i32, Path, description = "Calendar year (UTC), 2000 to 9999"), SummaryQuery),
    responses(
        (status = 200, description = "What the doctor gets at `/api/doctor/statements/{year}`",
         content((YearSummaryBody = "application/json"), (String = "text/html"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn admin_year(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath((doctor, raw)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Response, ApiError> {
    if doctor.is_empty() || doctor.len() > 128 {
        return Err(ApiError::BadRequest("invalid doctor id".into()));
    }
    let doctor = DoctorId::from(doctor);
    year_summary(
        &state,
        &user.actor(),
        &doctor,
        year(&raw)?,
        q.format.unwrap_or_default(),
    )
    .await
}

async fn year_summary(
    state: &AppState,
    actor: &Actor,
    doctor: &DoctorId,
    year: i32,
    format: SummaryFormat,
) -> Result<Response, ApiError> {
    let summary = state.service.year_summary(actor, doctor, year).await?;
    Ok(match format {
        SummaryFormat::Json => Json(YearSummaryBody { data: summary.into() }).into_response(),
        SummaryFormat::Html => statement_html::year_page(&state.config.platform_name, &summary),
    })
}
