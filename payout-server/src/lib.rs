//! # payout-server
//!
//! The HTTP face of `payouts`: the original system's API paths (`/api/admin/payouts`, `/api/doctor/payouts`,
//! `/api/webhooks/*`), real bearer-token auth instead of the `x-admin-id` placeholder, rate limits, an
//! OpenAPI document, health and Prometheus metrics, and a server-rendered admin dashboard. It is a library
//! so a host can mount [`router`] in its own axum app; `examples/demo_server.rs` runs it stand-alone.
//!
//! ```no_run
//! # async fn run(service: std::sync::Arc<payout_core::PayoutService>) -> std::io::Result<()> {
//! use payout_server::{AppState, ServerConfig, router};
//! let state = AppState::new(service, ServerConfig::new("a long random NEXTAUTH_SECRET"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, router(state).into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api;
pub mod auth;
pub mod dashboard;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
mod demo_providers;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod webhooks;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use payout_core::PayoutService;

pub use auth::{Claims, JwtKey, Role};
pub use error::ApiError;

/// Server settings, with their defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The HS256 key tokens are signed with (`NEXTAUTH_SECRET`).
    pub jwt: JwtKey,
    /// Largest request body accepted. Default: 256 KiB.
    pub max_body_bytes: usize,
    /// Webhook requests per second per client (burst twice that); `None` = unlimited. Default: 50.
    pub webhook_rate: Option<u32>,
    /// Admin mutations per second per client (burst twice that); `None` = unlimited. Default: 20.
    pub mutation_rate: Option<u32>,
    /// Largest bulk action. Default: 1,000 ids.
    pub max_bulk: usize,
    /// Proxies whose `X-Forwarded-For` names the client for rate limits and M-Pesa's source-address
    /// check. Default: none (the socket peer is the client).
    pub trusted_proxies: limits::TrustedProxies,
}

impl ServerConfig {
    /// Defaults with this token secret.
    pub fn new(jwt_secret: impl AsRef<[u8]>) -> Self {
        ServerConfig {
            jwt: JwtKey::new(jwt_secret),
            max_body_bytes: 256 * 1024,
            webhook_rate: Some(50),
            mutation_rate: Some(20),
            max_bulk: 1000,
            trusted_proxies: limits::TrustedProxies::none(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub service: Arc<PayoutService>,
    /// The token key.
    pub jwt: JwtKey,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Rate limiter for webhooks.
    pub webhook_limiter: Arc<limits::RateLimiter>,
    /// Rate limiter for admin mutations.
    pub mutation_limiter: Arc<limits::RateLimiter>,
}

impl AppState {
    /// State for `service` with `config`.
    pub fn new(service: Arc<PayoutService>, config: ServerConfig) -> Self {
        AppState {
            service,
            jwt: config.jwt.clone(),
            webhook_limiter: Arc::new(limits::RateLimiter::new(config.webhook_rate)),
            mutation_limiter: Arc::new(limits::RateLimiter::new(config.mutation_rate)),
            metrics: Arc::new(metrics::Metrics::default()),
            config: Arc::new(config),
        }
    }
}

/// The whole app: API, webhooks, dashboard, OpenAPI, health and metrics.
pub fn router(state: AppState) -> Router {
    let mutations = Router::new()
        .route("/api/admin/payouts", post(api::create_payout))
        .route("/api/admin/payouts/bulk", post(api::bulk))
        .route("/api/admin/payouts/{id}", axum::routing::patch(api::patch_payout))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::limit_mutations));
    let webhooks = Router::new()
        .route("/api/webhooks/stripe-payouts", post(webhooks::stripe))
        .route("/api/webhooks/paypal-payouts", post(webhooks::paypal))
        .route("/api/webhooks/mpesa-b2c", post(webhooks::mpesa))
        .route("/api/webhooks/mpesa-b2c/status", post(webhooks::mpesa_status))
        .route("/api/webhooks/mpesa-b2c/timeout", post(webhooks::mpesa_timeout))
        .route("/api/webhooks/mpesa-b2c/{token}", post(webhooks::mpesa_with_token))
        .route(
            "/api/webhooks/mpesa-b2c/{token}/{kind}",
            post(webhooks::mpesa_with_token_and_kind),
        )
        .route("/api/webhooks/payouts", post(webhooks::generic))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::limit_webhooks));
    Router::new()
        .route("/api/admin/payouts", get(api::list_payouts))
        .route("/api/admin/payouts/export", get(api::export_csv))
        .route("/api/admin/payouts/{id}", get(api::get_payout))
        .route("/api/admin/payouts/{id}/items", get(api::get_items))
        .route("/api/admin/payouts/{id}/audit", get(api::get_audit))
        .route("/api/doctor/payouts", get(api::doctor_payouts))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/docs", get(openapi::docs))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::render))
        .merge(mutations)
        .merge(webhooks)
        .merge(dashboard::routes(state.clone()))
        // After every route is in: it applies to the routes present when it is called.
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// The crate README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
