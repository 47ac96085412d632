//! The statement, run and events endpoints through the whole `payout_server::router` (with the
//! demo app's JSON 404/405 fallbacks), like `api_router`, over a fresh in-memory service for each
//! input: January calculated for the router tests' three doctors, one run made of its payouts, and
//! the store's outbox served at `/api/admin/events`.
//!
//! Input: as `api_router` (`METHOD /path?query`, header lines, an empty line, the body). Before
//! parsing, `{id0}`..`{id2}` become real payout ids, `{run}` the run's id, `{admin}` and
//! `{doctor}` valid tokens (the doctor is `dr-c`). The seeds aim at `/api/doctor/payouts/{id}`
//! (and its `statement?format=`), `/api/doctor/statements/{year}`,
//! `/api/admin/payouts/{id}/statement`, `/api/admin/doctors/{id}/statements/{year}`, every
//! `/api/admin/runs…` endpoint (bank files included) and `/api/admin/events?after=&limit=`.
//!
//! Properties: no panic; no 5xx; every 4xx under `/api/` is a JSON error
//! `{"error":{"code","message"}}`; a 200 from the events API is a page of events whose `seq` are
//! increasing, after `after`, at most `limit` of them.
#![no_main]

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use libfuzzer_sys::fuzz_target;
use payout_core::domain::Actor;
use payout_core::events::EventCursor;
use payout_core::memory::MemoryStore;
use payout_core::service::CalculationPolicy;
use payout_core::store::{Page, PayoutFilter};
use payout_server::{AppState, Role, ServerConfig, router};
use payouts_fuzz::{block_on, message};
use tower::ServiceExt;

/// The router tests' world (see `api_router`).
#[path = "../../payout-server/tests/common/mod.rs"]
mod common;

use common::{SECRET, jan, service_over, token};

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

/// A query parameter, as far as it is a plain number.
fn query_number(query: &str, name: &str) -> Option<u64> {
    query_value(query, name).and_then(|v| v.parse().ok())
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fuzz_target!(|data: &[u8]| {
    block_on(async {
        let config = ServerConfig {
            webhook_rate: None,
            mutation_rate: None,
            ..ServerConfig::new(SECRET)
        };
        let mem = MemoryStore::new();
        let service = service_over(Arc::new(mem.clone()));
        service
            .calculate_period(&Actor::system("test"), Some(jan()), &CalculationPolicy::default())
            .await
            .expect("January calculated");
        let run = service
            .create_run(&Actor::admin("fuzz-admin"), "fuzz", PayoutFilter::default())
            .await
            .expect("a run");
        let ids: Vec<String> = service
            .store()
            .list(&PayoutFilter::default(), &Page::new(10, 0))
            .await
            .expect("listed")
            .payouts
            .into_iter()
            .map(|p| p.id.to_string())
            .collect();
        let state = AppState::new(service, config).with_events(Arc::new(mem));
        let mut subs: Vec<(String, String)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (format!("{{id{i}}}"), id.clone()))
            .collect();
        subs.push(("{run}".into(), run.run.id.to_string()));
        subs.push(("{admin}".into(), token(Role::Admin, "fuzz-user", None)));
        subs.push(("{doctor}".into(), token(Role::Doctor, "fuzz-user", Some("dr-c"))));
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
        let is_get = req.method() == http::Method::GET;
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
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
        if is_get && path == "/api/admin/events" && status == http::StatusCode::OK {
            let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON page");
            let seqs: Vec<u64> = v["events"]
                .as_array()
                .expect("events is a list")
                .iter()
                .map(|e| e["seq"].as_u64().expect("a seq"))
                .collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?} for {uri}");
            // The memory store's cursor is `{seq}-{seq}`: a page after it starts behind that seq.
            let cursors: Vec<EventCursor> = v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    e["cursor"]
                        .as_str()
                        .expect("a cursor")
                        .parse()
                        .expect("a cursor that parses")
                })
                .collect();
            assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?} for {uri}");
            if let Some(after) = query_value(&query, "after").and_then(|a| a.parse::<EventCursor>().ok()) {
                assert!(cursors.iter().all(|c| *c > after), "{cursors:?} for {uri}");
            }
            if let Some(limit) = query_number(&query, "limit") {
                assert!(seqs.len() as u64 <= limit, "{seqs:?} for {uri}");
            }
        }
    });
});
