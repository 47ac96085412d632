//! What operators see of the HTTP edge: request ids, a `tracing` span per request, and a latency
//! histogram through the `metrics` facade (the host or the demo installs the exporter).
//!
//! [`layers`] puts them on a router: `x-request-id` is kept when the client sent one and made up (a
//! UUID) when not, and returned on the answer; every request runs in a `request` span with its
//! method, matched route (never the raw path, which may carry a secret callback token) and request
//! id, so the engine's spans and logs nest under it; and [`REQUEST_SECONDS`] records how long each
//! answer took by method, route and status.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Histogram (seconds): HTTP requests by `method`, `route` (the matched route template, or
/// `unmatched`) and `status`.
pub const REQUEST_SECONDS: &str = "payouts_http_request_duration_seconds";

/// The request id header, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// Registers the description of [`REQUEST_SECONDS`] with the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP requests by method, matched route and status."
    );
}

/// `router` with request ids, a span per request and the latency histogram. Apply it after every
/// route is in (it wraps the routes present when it is called).
pub fn layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    // Added innermost first: the id is set before the span is made, and copied to the answer.
    router
        .layer(middleware::from_fn(track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

fn route_of<B>(req: &http::Request<B>) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched")
}

fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = route_of(req),
        request_id = id,
    )
}

/// Middleware: records every answer's latency by method, matched route and status.
pub async fn track(req: Request, next: Next) -> Response {
    let route = route_of(&req).to_string();
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    metrics::histogram!(
        REQUEST_SECONDS,
        "method" => method,
        "route" => route,
        "status" => res.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    res
}
