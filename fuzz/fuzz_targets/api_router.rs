//! The library routers (`payout_server::router`) with the JSON 404/405 answers the demo's app adds
//! (`payout_server::demo::app`, behind the `demo` feature this crate does without), through
//! `tower::ServiceExt::oneshot`, over a fresh in-memory service with simulated providers and January
//! calculated, for every input.
//!
//! The world is the router tests' (`payout-server/tests/common`), so the fuzzer starts where they do.
//!
//! Input: the first line is `METHOD /path?query`, then header lines, an empty line and the body (see
//! `payouts_fuzz::message`). Before parsing, `{id0}`, `{id1}`, `{id2}` become real payout ids,
//! `{admin}` and `{doctor}` valid tokens and `{sim}` the simulated providers' webhook token.
//!
//! Properties: no panic; no 5xx (nothing here can be unavailable); every 4xx under `/api/` is a JSON
//! error `{"error":{"code","message"}}`.
#![no_main]

use axum::body::Body;
use http::Request;
use libfuzzer_sys::fuzz_target;
use payout_core::store::{Page, PayoutFilter};
use payout_server::{Role, ServerConfig, router};
use payouts_fuzz::{block_on, message};
use tower::ServiceExt;

/// The router tests' world: three doctors (`dr-c` premium), their January consultations, simulated
/// providers and the token helpers, shared so the fuzzer explores the state the tests check.
#[path = "../../payout-server/tests/common/mod.rs"]
mod common;

use common::{SECRET, SIM_TOKEN, calculated_state, token};

fn replace(bytes: &[u8], subs: &[(String, String)]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let mut s = s.to_string();
            for (k, v) in subs {
                s = s.replace(k.as_str(), v);
            }
            s.into_bytes()
        }
        Err(_) => bytes.to_vec(),
    }
}

fuzz_target!(|data: &[u8]| {
    block_on(async {
        let config = ServerConfig {
            webhook_rate: None,
            mutation_rate: None,
            ..ServerConfig::new(SECRET)
        };
        let state = calculated_state(config).await;
        let ids: Vec<String> = state
            .service
            .store()
            .list(&PayoutFilter::default(), &Page::new(10, 0))
            .await
            .expect("listed")
            .payouts
            .into_iter()
            .map(|p| p.id.to_string())
            .collect();
        let mut subs: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("{{id{i}}}"), id.clone()))
            .collect();
        subs.push(("{admin}".into(), token(Role::Admin, "fuzz-user", None)));
        subs.push(("{doctor}".into(), token(Role::Doctor, "fuzz-user", Some("dr-c"))));
        subs.push(("{sim}".into(), SIM_TOKEN.into()));
        let data = replace(data, &subs);
        let Some(m) = message(&data) else { return };
        let Some((method, uri)) = m.first.split_once(' ') else {
            return;
        };
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in &m.headers {
            req = req.header(*k, *v);
        }
        let Ok(req) = req.body(Body::from(m.body.to_vec())) else {
            return;
        };
        let is_head = req.method() == http::Method::HEAD;
        let path = req.uri().path().to_string();
        let app = router(state)
            .method_not_allowed_fallback(payout_server::api::method_not_allowed)
            .fallback(payout_server::api::not_found);
        let res = app.oneshot(req).await.expect("infallible");
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(res.into_body(), 64 << 20).await.expect("the body");
        assert!(
            !status.is_server_error(),
            "{status} for {method} {uri}: {}",
            String::from_utf8_lossy(&body)
        );
        if path.starts_with("/api/") && status.is_client_error() && !is_head {
            assert!(
                content_type.starts_with("application/json"),
                "{status} for {method} {uri} is {content_type:?}: {}",
                String::from_utf8_lossy(&body)
            );
            let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
            assert!(v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
            assert!(v["error"]["message"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
        }
    });
});
