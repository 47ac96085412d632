//! `GET /api/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

/// The API description.
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
        api::doctor_payouts
    ),
    components(schemas(PayoutStatusName, ProviderName, api::PayoutView, api::ItemView, api::CreatePayout, api::PatchPayout, api::BulkRequest)),
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

/// `GET /api/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
