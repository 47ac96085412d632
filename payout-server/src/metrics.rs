//! Prometheus metrics: request counts and latencies by route and status, and payouts by status.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter};

use crate::AppState;

/// (method, route, status).
type RequestKey = (String, String, u16);

/// Request counters: count and total seconds per key; webhook events by provider and result.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, (u64, f64)>>,
    webhook_events: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let slot = m.entry((method.to_string(), route.to_string(), status)).or_default();
        slot.0 += 1;
        slot.1 += seconds;
    }

    /// Counts one verified webhook event of `provider` by what the engine did with it
    /// (`applied`, `ignored`, `duplicate`, `not_ours`).
    pub fn record_webhook_event(&self, provider: &'static str, result: &'static str) {
        let mut m = self.webhook_events.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((provider, result)).or_default() += 1;
    }
}

/// Middleware: counts every request by method, matched route and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let res = next.run(req).await;
    state
        .metrics
        .record(&method, &route, res.status().as_u16(), started.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`
pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    out.push_str("# HELP payouts_http_requests_total HTTP requests by method, route and status.\n");
    out.push_str("# TYPE payouts_http_requests_total counter\n");
    let snapshot = state.metrics.requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for ((method, route, status), (count, _)) in &snapshot {
        let _ = writeln!(
            out,
            "payouts_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
        );
    }
    out.push_str("# HELP payouts_http_request_seconds_sum Time spent answering, by method, route and status.\n");
    out.push_str("# TYPE payouts_http_request_seconds_sum counter\n");
    for ((method, route, status), (_, secs)) in &snapshot {
        let _ = writeln!(
            out,
            "payouts_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {secs:.6}"
        );
    }
    out.push_str(
        "# HELP payouts_webhook_events_total Verified webhook events by provider and result \
         (not_ours: authentic, about nothing this engine sent; acknowledged, nothing changed).\n\
         # TYPE payouts_webhook_events_total counter\n",
    );
    let events = state
        .metrics
        .webhook_events
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((provider, result), count) in &events {
        let _ = writeln!(
            out,
            "payouts_webhook_events_total{{provider=\"{provider}\",result=\"{result}\"}} {count}"
        );
    }
    out.push_str("# HELP payouts_payouts Payouts by status.\n# TYPE payouts_payouts gauge\n");
    for status in PayoutStatus::ALL {
        let filter = PayoutFilter {
            status: Some(status),
            ..Default::default()
        };
        if let Ok(page) = state.service.store().list(&filter, &Page::new(1, 0)).await {
            let _ = writeln!(out, "payouts_payouts{{status=\"{status}\"}} {}", page.total);
        }
    }
    out.push_str(
        "# HELP payouts_attention Payouts a person should look at (GET /api/admin/payouts?attention=true).\n\
         # TYPE payouts_attention gauge\n",
    );
    if let Ok(queue) = state.service.store().attention(&Page::new(0, 0)).await {
        let _ = writeln!(out, "payouts_attention {}", queue.total);
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
