//! The OpenAPI document, generated from the handlers' annotations and the types in [`wire`](crate::wire):
//! `GET /api/openapi.json`, and a browsable reference at `GET /api/docs`.

use axum::Json;
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::doctor::{
    DeductionView, DoctorItemView, DoctorPayoutBody, DoctorPayoutView, StatementFormat, SummaryFormat, YearPayoutView,
    YearSummaryBody, YearSummaryView, YearTotalsView,
};
use crate::events::{DeadLetterList, EventList, EventView};
use crate::wire::{
    AmountView, AttentionView, AuditBody, AuditEntryView, BulkBody, BulkRequest, BulkResult, BulkSummary,
    ClaimedOutcome, Consultations, CreatePayout, CreateRun, CurrencyTotalView, DoctorHistory, DoctorHoldBody,
    DoctorHoldList, DoctorHoldOutcome, DoctorHoldRequest, DoctorHoldView, ErrorBody, ErrorDetail, FundsLineView,
    FundsOverrideRequest, FundsOverrideView, Health, HealthStatus, HoldView, ItemView, ItemsBody, Pagination,
    PatchPayout, PayoutBody, PayoutList, PayoutView, ProviderTotal, RunBody, RunDetail, RunEventView, RunFundsBody,
    RunFundsView, RunList, RunOnlyBody, RunReportBody, RunReportView, RunResultList, RunResultView, RunSummaryBody,
    RunSummaryView, RunTotals, RunView, StatusTotal, TriggerRun, WebhookBody, WebhookEvent, WebhookReceipt,
};
use crate::{api, doctor, events, runs, webhooks};

/// The API description: every route of the API and webhook routers, `/healthz` and `/metrics`.
#[derive(OpenApi)]
#[openapi(
    info(title = "payouts", description = "Doctor payouts: calculation, approval, provider triggers, webhooks."),
    paths(
        api::list_payouts,
        api::create_payout,
        api::get_payout,
        api::get_items,
        api::get_audit,
        api::patch_payout,
        api::bulk,
        api::export_csv,
        api::doctor_payouts,
        doctor::doctor_payout,
        doctor::doctor_statement,
        doctor::doctor_year,
        doctor::admin_statement,
        doctor::admin_year,
        runs::list_runs,
        runs::create_run,
        runs::get_run,
        runs::run_payouts,
        runs::run_attention,
        runs::run_results,
        runs::run_funds,
        runs::approve_run,
        runs::trigger_run,
        runs::retry_failed_run,
        runs::funds_override,
        runs::doctor_hold,
        runs::doctor_holds,
        events::list_events,
        events::dead_letters,
        webhooks::stripe,
        webhooks::paypal,
        webhooks::mpesa,
        webhooks::mpesa_status,
        webhooks::mpesa_timeout,
        webhooks::mpesa_with_token,
        webhooks::mpesa_with_token_and_kind,
        webhooks::mpesa_balance_result,
        webhooks::mpesa_balance_timeout,
        webhooks::mpesa_balance_with_token,
        webhooks::generic,
        openapi_json,
        docs_page,
        healthz,
        metrics,
    ),
    components(schemas(
        PayoutStatusName, ProviderName, PayoutView, AttentionView, ItemView, AuditEntryView, Pagination,
        PayoutList, PayoutBody, ItemsBody, AuditBody, DoctorHistory, CreatePayout, PatchPayout, BulkRequest,
        Consultations, ClaimedOutcome, BulkResult, BulkSummary, BulkBody, ErrorBody, ErrorDetail, Health,
        HealthStatus, WebhookBody, WebhookReceipt, WebhookEvent, HoldView, CreateRun, TriggerRun,
        FundsOverrideRequest, DoctorHoldRequest, AmountView, FundsOverrideView, RunView, StatusTotal, ProviderTotal,
        CurrencyTotalView, RunTotals, RunSummaryView, RunList, RunSummaryBody, RunResultView, RunResultList,
        RunEventView, RunDetail, RunBody, RunReportView, RunReportBody, FundsLineView, RunFundsView, RunFundsBody,
        RunOnlyBody, DoctorHoldView, DoctorHoldOutcome, DoctorHoldBody, DoctorHoldList, DoctorPayoutView,
        DoctorItemView, DoctorPayoutBody, DeductionView, YearTotalsView, YearPayoutView, YearSummaryView,
        YearSummaryBody, StatementFormat, SummaryFormat, EventView,
        EventList, DeadLetterList,
    )),
    tags(
        (name = "admin", description = "Payouts for admins (role `admin`)"),
        (name = "runs", description = "Payout runs, the funds check and holds (role `admin`)"),
        (name = "events", description = "Every change as an event: the transactional outbox (role `admin`)"),
        (name = "doctor", description = "A doctor's own payouts (role `doctor`)"),
        (name = "webhooks", description = "Provider callbacks, verified over the raw body before anything is read"),
        (name = "operations", description = "Health, metrics and this document"),
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// Names an enum of uppercase text values in the document, taken from the core's own list so the
/// schema cannot drift from what the API accepts (the core crate stays free of `utoipa`).
macro_rules! names_schema {
    ($(#[$doc:meta])* $name:ident = $title:literal, $all:expr, $describe:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($all.map(|v| v.as_str())))
                    .description(Some($describe))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($title)
            }
        }
    };
}

names_schema!(
    /// The schema of a payout status: [`PayoutStatus`](payout_core::status::PayoutStatus)'s names.
    PayoutStatusName = "PayoutStatus",
    payout_core::status::PayoutStatus::ALL,
    "A payout's status; statuses only move forward."
);

names_schema!(
    /// The schema of a provider: [`Provider`](payout_core::domain::Provider)'s names.
    ProviderName = "Provider",
    payout_core::domain::Provider::ALL,
    "A payment provider."
);

/// The whole document: [`ApiDoc`], and the bank file routes with the feature `bank-files`.
pub fn api_doc() -> utoipa::openapi::OpenApi {
    #[allow(unused_mut)]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "bank-files")]
    doc.merge(crate::bank_files::BankFilesDoc::openapi());
    doc
}

/// `GET /api/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(api_doc())
}

/// Where the reference page's one script comes from: Scalar's standalone bundle, pinned to one version.
const SCALAR_BUNDLE: &str = "https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.76.4/dist/browser/standalone.js";

/// The reference page: [`SCALAR_BUNDLE`], checked by its Subresource Integrity hash, reading the
/// document embedded in the page.
///
/// Why Scalar through `utoipa-scalar`: it has no build script (the build has no network, which rules out
/// `utoipa-swagger-ui`, whose build script downloads Swagger UI) and adds no dependencies beyond
/// `utoipa`; the page is one small HTML file. The script comes from a CDN into the reader's browser and
/// runs on this origin (beside the dashboard's session), so it is pinned by version and hash and the
/// page's CSP ([`DOCS_CSP`]) lets no other script run: a changed file on the CDN is refused, not run.
/// A CSP sandbox would isolate it further but Scalar cannot run sandboxed (it reads `localStorage`).
const DOCS_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <title>payouts API</title>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
  <noscript>This reference needs JavaScript; the document itself is at /api/openapi.json.</noscript>
  <script id="api-reference" type="application/json">$spec</script>
  <script src="$bundle"
    integrity="sha384-hwB9WroDTpZaI38gr+u9CXA6ksz5gUYgD2GxXazKl/agT1L2GWUiRFWGJYNiFu4Q"
    crossorigin="anonymous"></script>
</body>
</html>
"#;

/// The reference page's Content-Security-Policy: the pinned Scalar bundle is the only script; styles
/// inline (Scalar's own), its fonts, and requests to this origin only (its "try it" calls the API).
pub const DOCS_CSP: &str = "default-src 'none'; \
    script-src https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.76.4/dist/browser/standalone.js; \
    style-src 'unsafe-inline'; img-src data:; font-src https://fonts.scalar.com data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /api/docs`: the browsable reference.
pub async fn docs() -> impl IntoResponse {
    let html = utoipa_scalar::Scalar::new(api_doc())
        .custom_html(DOCS_HTML.replace("$bundle", SCALAR_BUNDLE))
        .to_html();
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, DOCS_CSP),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
}

// Routes answered by handlers documented elsewhere or outside this crate's routers (the host assembles
// `/healthz` and `/metrics`); these functions only carry their entries in the document.

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

/// The browsable reference to this document.
#[utoipa::path(get, path = "/api/docs", tag = "operations", summary = "Browsable reference",
    responses((status = 200, description = "An HTML page (Scalar) reading this document", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn docs_page() {}

/// Whether the store answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Health",
    responses((status = 200, description = "The store answers", body = Health),
              (status = 503, description = "It does not", body = Health)))]
#[allow(dead_code)]
fn healthz() {}

/// Prometheus metrics (the demo serves them on an address of their own, `PAYOUTS_METRICS_ADDR`, not
/// beside the API): request latencies by route and status, provider sends and call latencies, webhook
/// outcomes by provider and result, the reconciliation backlog, the attention queue, payouts by status.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4", body = String)))]
#[allow(dead_code)]
fn metrics() {}
