//! Provider webhooks: the raw headers and bytes go to the provider adapter untouched, which verifies
//! them before anything is parsed; the engine then applies each event once.

use axum::Json;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use payout_core::domain::Provider;

use crate::AppState;
use crate::api::ApiPath;
use crate::error::ApiError;
use crate::wire::{ErrorBody, WebhookBody, WebhookEvent, WebhookReceipt};

/// The header the M-Pesa route passes its secret path token in (see `payout-providers`' M-Pesa docs).
pub const CALLBACK_TOKEN_HEADER: &str = "x-payouts-callback-token";

/// The raw body, untouched; a body over the limit is answered with the JSON 413 like every other error.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(e.body_text())
            }
        })
    }
}

async fn handle(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Json<WebhookBody>, ApiError> {
    let report = state
        .service
        .handle_webhook(provider, headers, body)
        .await
        .map_err(|e| {
            tracing::warn!(%provider, error = %e, "webhook refused");
            ApiError::from(e)
        })?;
    let events: Vec<WebhookEvent> = report.events.into_iter().map(WebhookEvent::from).collect();
    Ok(Json(WebhookBody {
        data: WebhookReceipt { received: true, events },
    }))
}

/// What every webhook route answers, for the OpenAPI document (one list for all of them).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "never built: only its OpenAPI responses are used")]
enum WebhookResponses {
    /// Verified; what happened to each event
    #[response(status = 200)]
    Answered(WebhookBody),
    /// Malformed
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// The signature does not verify
    #[response(status = 401)]
    Unauthentic(ErrorBody),
    /// The body is larger than the server takes
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The provider contradicts the event (`webhook_contradicted_by_provider`)
    #[response(status = 422)]
    Contradicted(ErrorBody),
    /// Too many requests from this client
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    RateLimited(ErrorBody),
    /// The provider could not be asked to confirm
    #[response(status = 503)]
    Unconfirmed(ErrorBody),
}

/// `POST /api/webhooks/stripe-payouts`
#[utoipa::path(
    post, path = "/api/webhooks/stripe-payouts", tag = "webhooks", summary = "Stripe webhook",
    request_body(content = Object, content_type = "application/json",
        description = "The provider's event, verified over the exact bytes received"),
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=… over the raw body")),
    responses(WebhookResponses)
)]
pub async fn stripe(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookBody>, ApiError> {
    handle(&state, Provider::StripeConnect, &headers, &body).await
}

/// `POST /api/webhooks/paypal-payouts`
#[utoipa::path(
    post, path = "/api/webhooks/paypal-payouts", tag = "webhooks", summary = "PayPal webhook",
    request_body(content = Object, content_type = "application/json",
        description = "The provider's event, verified over the exact bytes received"),
    params(("PAYPAL-TRANSMISSION-ID" = String, Header), ("PAYPAL-TRANSMISSION-SIG" = String, Header), ("PAYPAL-CERT-URL" = String, Header), ("PAYPAL-AUTH-ALGO" = String, Header), ("PAYPAL-TRANSMISSION-TIME" = String, Header)),
    responses(WebhookResponses)
)]
pub async fn paypal(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookBody>, ApiError> {
    handle(&state, Provider::PaypalPayouts, &headers, &body).await
}

/// Headers only this server may set: the M-Pesa adapter trusts them, so a client's copies are dropped.
const HOST_SET_HEADERS: [&str; 3] = [CALLBACK_TOKEN_HEADER, "x-payouts-client-ip", "x-payouts-callback-kind"];

fn strip_host_headers(headers: &mut HeaderMap) {
    for h in HOST_SET_HEADERS {
        headers.remove(h);
    }
}

async fn mpesa_callback(
    state: &AppState,
    token: Option<String>,
    kind: &str,
    req: Request,
) -> Result<Json<WebhookBody>, ApiError> {
    let (parts, body) = req.into_parts();
    // Behind a trusted proxy the sender is the forwarded client, not the proxy; in-process calls
    // (no `ConnectInfo`) have no address to check.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|_| crate::limits::client_ip(&state.config.trusted_proxies, &parts));
    let body = axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let mut headers = parts.headers;
    strip_host_headers(&mut headers);
    if let Some(token) = token {
        let value = HeaderValue::from_str(&token).map_err(|_| ApiError::BadRequest("invalid callback token".into()))?;
        headers.insert(CALLBACK_TOKEN_HEADER, value);
    }
    if let Some(ip) = peer {
        if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
            headers.insert("x-payouts-client-ip", v);
        }
    }
    // The adapter's callback kinds (`payout_providers::mpesa::CALLBACK_KIND_HEADER`), the balance
    // query's included (`BALANCE_RESULT_KIND`, `BALANCE_TIMEOUT_KIND`).
    headers.insert(
        "x-payouts-callback-kind",
        HeaderValue::from_static(match kind {
            "timeout" => "timeout",
            "status" => "status",
            "balance" => "balance",
            "balance-timeout" => "balance-timeout",
            _ => "result",
        }),
    );
    handle(state, Provider::MpesaB2c, &headers, &body).await
}

/// `POST /api/webhooks/mpesa-b2c`: a result callback authenticated by `x-mpesa-signature`.
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c", tag = "webhooks", summary = "M-Pesa result (signed)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("x-mpesa-signature" = String, Header, description = "HMAC of the raw body")),
    responses(WebhookResponses)
)]
pub async fn mpesa(State(state): State<AppState>, req: Request) -> Result<Json<WebhookBody>, ApiError> {
    mpesa_callback(&state, None, "result", req).await
}

/// `POST /api/webhooks/mpesa-b2c/status`: the status query's ResultURL beside the signed result URL
/// (the adapter's default `MPESA_STATUS_RESULT_URL` for `.../mpesa-b2c`).
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/status", tag = "webhooks", summary = "M-Pesa status-query result (signed)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("x-mpesa-signature" = String, Header, description = "HMAC of the raw body")),
    responses(WebhookResponses)
)]
pub async fn mpesa_status(State(state): State<AppState>, req: Request) -> Result<Json<WebhookBody>, ApiError> {
    mpesa_callback(&state, None, "status", req).await
}

/// `POST /api/webhooks/mpesa-b2c/timeout`: the QueueTimeOutURL beside the signed result URL.
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/timeout", tag = "webhooks", summary = "M-Pesa queue timeout (signed)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("x-mpesa-signature" = String, Header, description = "HMAC of the raw body")),
    responses(WebhookResponses)
)]
pub async fn mpesa_timeout(State(state): State<AppState>, req: Request) -> Result<Json<WebhookBody>, ApiError> {
    mpesa_callback(&state, None, "timeout", req).await
}

/// `POST /api/webhooks/mpesa-b2c/{token}`: the ResultURL with an unguessable per-deployment token.
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/{token}", tag = "webhooks", summary = "M-Pesa result (token route)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("token" = String, Path, description = "The deployment's secret callback token")),
    responses(WebhookResponses)
)]
pub async fn mpesa_with_token(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    req: Request,
) -> Result<Json<WebhookBody>, ApiError> {
    mpesa_callback(&state, Some(token), "result", req).await
}

/// `POST /api/webhooks/mpesa-b2c/{token}/{kind}`: the QueueTimeOutURL (`timeout`) and the status query's
/// ResultURL (`status`).
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/{token}/{kind}", tag = "webhooks", summary = "M-Pesa timeout or status result (token route)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("token" = String, Path, description = "The deployment's secret callback token"), ("kind" = String, Path, description = "result, timeout or status")),
    responses(WebhookResponses)
)]
pub async fn mpesa_with_token_and_kind(
    State(state): State<AppState>,
    ApiPath((token, kind)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Json<WebhookBody>, ApiError> {
    if kind != "timeout" && kind != "status" && kind != "result" {
        return Err(ApiError::BadRequest(
            "unknown M-Pesa callback kind: use result, timeout or status".into(),
        ));
    }
    mpesa_callback(&state, Some(token), &kind, req).await
}

/// `POST /api/webhooks/mpesa-b2c/balance/result`: the Account Balance query's ResultURL beside the
/// signed result URL (the adapter's default `MPESA_BALANCE_RESULT_URL` for `.../mpesa-b2c`). The
/// balance is kept by the M-Pesa adapter for the funds check; the answer names no payout.
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/balance/result", tag = "webhooks", summary = "M-Pesa account balance result (signed)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's Account Balance result, checked by signature or secret path token and source address"),
    params(("x-mpesa-signature" = String, Header, description = "HMAC of the raw body")),
    responses(WebhookResponses)
)]
pub async fn mpesa_balance_result(State(state): State<AppState>, req: Request) -> Result<Json<WebhookBody>, ApiError> {
    mpesa_callback(&state, None, "balance", req).await
}

/// `POST /api/webhooks/mpesa-b2c/balance/timeout`: the Account Balance query's QueueTimeOutURL beside
/// the signed result URL.
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/balance/timeout", tag = "webhooks", summary = "M-Pesa account balance queue timeout (signed)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("x-mpesa-signature" = String, Header, description = "HMAC of the raw body")),
    responses(WebhookResponses)
)]
pub async fn mpesa_balance_timeout(State(state): State<AppState>, req: Request) -> Result<Json<WebhookBody>, ApiError> {
    mpesa_callback(&state, None, "balance-timeout", req).await
}

/// `POST /api/webhooks/mpesa-b2c/{token}/balance/{kind}`: the Account Balance query's ResultURL
/// (`result`) and QueueTimeOutURL (`timeout`) with the deployment's secret token.
#[utoipa::path(
    post, path = "/api/webhooks/mpesa-b2c/{token}/balance/{kind}", tag = "webhooks", summary = "M-Pesa account balance result or timeout (token route)",
    request_body(content = Object, content_type = "application/json",
        description = "Daraja's callback, checked by signature or secret path token and source address"),
    params(("token" = String, Path, description = "The deployment's secret callback token"), ("kind" = String, Path, description = "result or timeout")),
    responses(WebhookResponses)
)]
pub async fn mpesa_balance_with_token(
    State(state): State<AppState>,
    ApiPath((token, kind)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Json<WebhookBody>, ApiError> {
    let kind = match kind.as_str() {
        "result" => "balance",
        "timeout" => "balance-timeout",
        _ => {
            return Err(ApiError::BadRequest(
                "unknown M-Pesa balance callback kind: use result or timeout".into(),
            ));
        }
    };
    mpesa_callback(&state, Some(token), kind, req).await
}

/// `POST /api/webhooks/payouts`: the generic endpoint of the original admin workflow; the provider is
/// recognised by its signature header.
#[utoipa::path(
    post, path = "/api/webhooks/payouts", tag = "webhooks", summary = "Any provider's webhook, recognised by its signature header",
    request_body(content = Object, content_type = "application/json",
        description = "The provider's event, verified over the exact bytes received"),
    params(("Stripe-Signature" = Option<String>, Header), ("PAYPAL-TRANSMISSION-ID" = Option<String>, Header), ("x-mpesa-signature" = Option<String>, Header, description = "One of the three names the provider")),
    responses(WebhookResponses)
)]
pub async fn generic(
    State(state): State<AppState>,
    mut headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WebhookBody>, ApiError> {
    strip_host_headers(&mut headers);
    let provider = if headers.contains_key("stripe-signature") {
        Provider::StripeConnect
    } else if headers.contains_key("paypal-transmission-id") {
        Provider::PaypalPayouts
    } else if headers.contains_key("x-mpesa-signature") {
        Provider::MpesaB2c
    } else if headers.contains_key(payout_core::simulated::SIMULATION_TOKEN_HEADER) {
        // Simulated deliveries name the provider they stand in for.
        headers
            .get("x-simulated-provider")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::BadRequest("x-simulated-provider must name the simulated provider".into()))?
    } else {
        return Err(ApiError::BadRequest(
            "unrecognised webhook: expected Stripe-Signature, PAYPAL-TRANSMISSION-ID or x-mpesa-signature".into(),
        ));
    };
    handle(&state, provider, &headers, &body).await
}
