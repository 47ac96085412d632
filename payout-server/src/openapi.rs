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
    components(schemas(api::PayoutView, api::ItemView, api::CreatePayout, api::PatchPayout, api::BulkRequest)),
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

/// `GET /api/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
