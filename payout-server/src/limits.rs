//! Per-client token-bucket rate limits for webhooks and admin mutations.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// Clients remembered at most; the oldest-refilled buckets are dropped beyond it.
const MAX_CLIENTS: usize = 10_000;

/// A token bucket per client: `rate` tokens a second, bursts up to twice that.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<u32>,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `rate` requests a second per client; `None` allows everything.
    pub fn new(rate: Option<u32>) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client`; false when the client must wait.
    pub fn allow(&self, client: &str) -> bool {
        let Some(rate) = self.rate else { return true };
        let rate = f64::from(rate.max(1));
        let burst = rate * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) {
                buckets.remove(&oldest);
            }
        }
        let (tokens, last) = buckets.entry(client.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn client_key(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "local".to_string())
}

/// Middleware: the webhook limit.
pub async fn limit_webhooks(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.webhook_limiter.allow(&client_key(&req)) {
        return ApiError::RateLimited.into_response();
    }
    next.run(req).await
}

/// Middleware: the admin mutation limit.
pub async fn limit_mutations(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.mutation_limiter.allow(&client_key(&req)) {
        return ApiError::RateLimited.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses() {
        let l = RateLimiter::new(Some(5));
        let allowed = (0..20).filter(|_| l.allow("a")).count();
        assert_eq!(allowed, 10);
        assert!(l.allow("b"), "per client");
        assert!(RateLimiter::new(None).allow("x"));
    }
}
