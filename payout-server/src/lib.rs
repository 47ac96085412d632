//! # payout-server
//!
//! The HTTP face of `payouts`: the original system's API paths (`/api/admin/payouts`, `/api/doctor/payouts`,
//! `/api/webhooks/*`), real auth instead of the `x-admin-id` placeholder (an [`Authenticator`] turns a request
//! into an actor: the built-in [`BearerJwt`], or the host's own over its sessions), rate limits, an
//! OpenAPI document and a server-rendered admin dashboard, as three routers a host mounts in its own axum
//! app: [`api_router`], [`webhook_router`] and [`dashboard_router`]. None has a fallback, a health or a
//! metrics route (the application adds those), so they merge or nest beside the host's routes;
//! `examples/embed_axum.rs` mounts them under `/payouts`, and `examples/demo_server.rs` runs them
//! stand-alone with the demo's `app` (feature `demo`).
//!
//! ```no_run
//! # async fn run(service: std::sync::Arc<payout_core::PayoutService>) -> std::io::Result<()> {
//! use payout_server::{AppState, DashboardConfig, ServerConfig, api_router, dashboard_router, webhook_router};
//! let state = AppState::new(service, ServerConfig::new("a long random NEXTAUTH_SECRET"));
//! let payouts = api_router(state.clone())
//!     .merge(webhook_router(state.clone()))
//!     .merge(dashboard_router(state, DashboardConfig::mounted_at("/payouts")));
//! let app = axum::Router::new()
//!     .nest("/payouts", payouts)
//!     .fallback(|| async { "the host's own 404" });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api;
pub mod auth;
#[cfg(feature = "bank-files")]
pub mod bank_files;
pub mod dashboard;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
mod demo_providers;
pub mod doctor;
pub mod error;
pub mod events;
pub mod limits;
pub mod observe;
pub mod openapi;
pub mod runs;
pub mod statement_html;
pub mod webhooks;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use payout_core::PayoutService;

pub use auth::{Authenticator, BearerJwt, Claims, JwtKey, Role};
pub use dashboard::DashboardConfig;
pub use error::ApiError;

/// Server settings, with their defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who a request acts as. [`ServerConfig::new`]: [`BearerJwt::hs256`] with its secret; a host
    /// with its own login sets its own ([`ServerConfig::with_authenticator`]).
    pub authenticator: Arc<dyn Authenticator>,
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
    /// Who pays in the bank files ([`bank_files`]): the pain.001 debtor and the NACHA originator.
    /// Default: none configured (CSV files only); the demo reads them from the environment
    /// ([`BankFileConfig::from_env`](payout_providers::bank::BankFileConfig::from_env)).
    #[cfg(feature = "bank-files")]
    pub bank_files: payout_providers::bank::BankFileConfig,
    /// The platform's name, printed at the top of every statement. Default: [`DEFAULT_PLATFORM_NAME`]
    /// (a host sets its own).
    pub platform_name: String,
}

/// The name statements carry when the host names no platform ([`ServerConfig::platform_name`]).
pub const DEFAULT_PLATFORM_NAME: &str = "Doctor payouts";

impl ServerConfig {
    /// Defaults, with HS256 bearer tokens signed with this secret ([`BearerJwt::hs256`]).
    pub fn new(jwt_secret: impl AsRef<[u8]>) -> Self {
        Self::with_authenticator(BearerJwt::hs256(jwt_secret))
    }

    /// Defaults, with `authenticator` saying who each request acts as.
    pub fn with_authenticator(authenticator: impl Authenticator) -> Self {
        ServerConfig {
            authenticator: Arc::new(authenticator),
            max_body_bytes: 256 * 1024,
            webhook_rate: Some(50),
            mutation_rate: Some(20),
            max_bulk: 1000,
            trusted_proxies: limits::TrustedProxies::none(),
            #[cfg(feature = "bank-files")]
            bank_files: payout_providers::bank::BankFileConfig::default(),
            platform_name: DEFAULT_PLATFORM_NAME.to_string(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub service: Arc<PayoutService>,
    /// Who a request acts as (the config's).
    pub authenticator: Arc<dyn Authenticator>,
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// Rate limiter for webhooks.
    pub webhook_limiter: Arc<limits::RateLimiter>,
    /// Rate limiter for admin mutations.
    pub mutation_limiter: Arc<limits::RateLimiter>,
    /// The store's event outbox, for `GET /api/admin/events` (`None`: those routes answer 501).
    pub events: Option<Arc<dyn payout_core::events::EventOutbox>>,
}

impl AppState {
    /// State for `service` with `config`.
    pub fn new(service: Arc<PayoutService>, config: ServerConfig) -> Self {
        AppState {
            service,
            authenticator: config.authenticator.clone(),
            webhook_limiter: Arc::new(limits::RateLimiter::new(config.webhook_rate)),
            mutation_limiter: Arc::new(limits::RateLimiter::new(config.mutation_rate)),
            config: Arc::new(config),
            events: None,
        }
    }

    /// The same state, serving `outbox`'s events at `GET /api/admin/events`.
    pub fn with_events(mut self, outbox: Arc<dyn payout_core::events::EventOutbox>) -> Self {
        self.events = Some(outbox);
        self
    }
}

/// The JSON API: `/api/admin/payouts…`, `/api/admin/runs…`, `/api/admin/doctors…` (holds),
/// `/api/doctor/payouts…` and `/api/doctor/statements/{year}` (a doctor's own payouts, statements
/// and year), `/api/admin/payouts/{id}/statement` and `/api/openapi.json` (with the
/// feature `bank-files`, `/api/admin/bank-files…` too), with the body limit and the admin
/// mutations' rate limit.
///
/// Like the other library routers it has no fallback, health or metrics route, so a host can
/// `merge` it or `nest` it under a prefix beside its own (see [`dashboard_router`] for a dashboard
/// nested under a prefix). It carries its own state, so it fits a host router of any state type `S`.
pub fn api_router<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    let mutations = Router::new()
        .route("/api/admin/payouts", post(api::create_payout))
        .route("/api/admin/payouts/bulk", post(api::bulk))
        .route("/api/admin/payouts/{id}", axum::routing::patch(api::patch_payout))
        .route("/api/admin/runs", post(runs::create_run))
        .route("/api/admin/runs/{id}/approve", post(runs::approve_run))
        .route("/api/admin/runs/{id}/trigger", post(runs::trigger_run))
        .route("/api/admin/runs/{id}/retry-failed", post(runs::retry_failed_run))
        .route("/api/admin/runs/{id}/funds-override", post(runs::funds_override))
        .route("/api/admin/doctors/{id}/hold", post(runs::doctor_hold));
    // Making a bank file marks its payouts sent: a mutation, rate-limited like the others.
    #[cfg(feature = "bank-files")]
    let mutations = mutations.merge(bank_files::mutations());
    let mutations = mutations.route_layer(middleware::from_fn_with_state(state.clone(), limits::limit_mutations));
    let reads = Router::new();
    #[cfg(feature = "bank-files")]
    let reads = reads.merge(bank_files::reads());
    reads
        .route("/api/admin/payouts", get(api::list_payouts))
        .route("/api/admin/payouts/export", get(api::export_csv))
        .route("/api/admin/payouts/{id}", get(api::get_payout))
        .route("/api/admin/payouts/{id}/items", get(api::get_items))
        .route("/api/admin/payouts/{id}/audit", get(api::get_audit))
        .route("/api/admin/runs", get(runs::list_runs))
        .route("/api/admin/runs/{id}", get(runs::get_run))
        .route("/api/admin/runs/{id}/payouts", get(runs::run_payouts))
        .route("/api/admin/runs/{id}/attention", get(runs::run_attention))
        .route("/api/admin/runs/{id}/results", get(runs::run_results))
        .route("/api/admin/runs/{id}/funds", get(runs::run_funds))
        .route("/api/admin/doctors/holds", get(runs::doctor_holds))
        .route("/api/admin/payouts/{id}/statement", get(doctor::admin_statement))
        .route("/api/admin/doctors/{id}/statements/{year}", get(doctor::admin_year))
        .route("/api/admin/events", get(events::list_events))
        .route("/api/admin/events/dead-letters", get(events::dead_letters))
        .route("/api/doctor/payouts", get(api::doctor_payouts))
        .route("/api/doctor/payouts/{id}", get(doctor::doctor_payout))
        .route("/api/doctor/payouts/{id}/statement", get(doctor::doctor_statement))
        .route("/api/doctor/statements/{year}", get(doctor::doctor_year))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/docs", get(openapi::docs))
        .merge(mutations)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// The providers' webhooks, `/api/webhooks/*` (the paths the providers are configured with), with
/// the body limit and the webhooks' rate limit. No fallback, health or metrics route.
pub fn webhook_router<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    Router::new()
        .route("/api/webhooks/stripe-payouts", post(webhooks::stripe))
        .route("/api/webhooks/paypal-payouts", post(webhooks::paypal))
        .route("/api/webhooks/mpesa-b2c", post(webhooks::mpesa))
        .route("/api/webhooks/mpesa-b2c/status", post(webhooks::mpesa_status))
        .route("/api/webhooks/mpesa-b2c/timeout", post(webhooks::mpesa_timeout))
        .route(
            "/api/webhooks/mpesa-b2c/balance/result",
            post(webhooks::mpesa_balance_result),
        )
        .route(
            "/api/webhooks/mpesa-b2c/balance/timeout",
            post(webhooks::mpesa_balance_timeout),
        )
        .route("/api/webhooks/mpesa-b2c/{token}", post(webhooks::mpesa_with_token))
        .route(
            "/api/webhooks/mpesa-b2c/{token}/{kind}",
            post(webhooks::mpesa_with_token_and_kind),
        )
        .route(
            "/api/webhooks/mpesa-b2c/{token}/balance/{kind}",
            post(webhooks::mpesa_balance_with_token),
        )
        .route("/api/webhooks/payouts", post(webhooks::generic))
        .route_layer(middleware::from_fn_with_state(state.clone(), limits::limit_webhooks))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

/// The admin dashboard, `/dashboard/admin/payouts` (and its sign-in and sign-out posts), with the
/// body limit. `config` says where the host mounts it and the API: every link, form action, redirect
/// and the sign-in cookie's `Path` are built from it, since [`Router::nest`] hides the prefix from
/// the handlers.
///
/// # Panics
///
/// If a prefix in `config` holds anything but unreserved URL characters and `/` (as [`Router::nest`]
/// panics on a bad path): a mistake in the host's code, found at start.
pub fn dashboard_router<S: Clone + Send + Sync + 'static>(state: AppState, config: DashboardConfig) -> Router<S> {
    let max_body = state.config.max_body_bytes;
    dashboard::routes(state, config).layer(DefaultBodyLimit::max(max_body))
}

/// The three library routers merged at the root, with the original system's paths; nothing else
/// (no fallback, health or metrics: the application adds those, as the demo's `app` does).
pub fn router(state: AppState) -> Router {
    api_router(state.clone())
        .merge(webhook_router(state.clone()))
        .merge(dashboard_router(state, DashboardConfig::default()))
}

/// The crate README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
