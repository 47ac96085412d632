//! The OpenAPI document (`GET /api/openapi.json`) and its reference page (`GET /api/docs`): every route
//! of the library routers is in it, typed (statuses and providers as enums, paging as integers), and a
//! real OpenAPI validator accepts it.
//!
//! The validator runs when `PAYOUTS_TEST_OPENAPI_VALIDATOR` names the `openapi-spec-validator` command
//! (PyPI `openapi-spec-validator`; `.ci/run` installs it and sets the variable); otherwise that test says
//! it skipped.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use payout_core::domain::Provider;
use payout_core::status::PayoutStatus;
use payout_server::{ServerConfig, router};
use serde_json::Value;
use tower::ServiceExt;

const VALIDATOR_VAR: &str = "PAYOUTS_TEST_OPENAPI_VALIDATOR";

async fn app() -> axum::Router {
    router(calculated_state(ServerConfig::new(SECRET)).await)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 10 << 20).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

async fn document(app: &axum::Router) -> Value {
    let (status, _, body) = get(app, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

/// Every `.route("…")` path in the crate's sources outside the dashboard (whose HTML pages are not
/// part of the API): the routes the API and webhook routers (and a host following the demo) serve;
/// the bank file routes when the feature `bank-files` is on.
fn routes_in_sources() -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("dashboard.rs")
                // Served (and documented) only with the feature `bank-files`.
                && (cfg!(feature = "bank-files") || !path.ends_with("bank_files.rs"))
            {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split(".route(\"").skip(1) {
                    let route = piece.split('"').next().unwrap();
                    if !route.starts_with("/dashboard") {
                        out.push(route.to_string());
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out.dedup();
    out
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "schema {name} missing");
    s
}

/// `"integer"` or, for an optional value, `["integer", "null"]`.
fn is_type(schema: &Value, ty: &str) -> bool {
    schema["type"] == ty || schema["type"].as_array().is_some_and(|a| a.contains(&Value::from(ty)))
}

fn param<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("parameter {name} missing"))
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_answers() {
    let app = app().await;
    let doc = document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    let routes = routes_in_sources();
    assert!(routes.len() >= 18, "found only {routes:?}");
    for route in &routes {
        assert!(paths.contains_key(route), "{route} is routed but not in the document");
    }
    for (path, item) in paths {
        // `/healthz` and `/metrics` may be the host's to serve (the demo assembles them).
        if path == "/healthz" || path == "/metrics" {
            continue;
        }
        let uri = path
            .replace("{id}", "pay_x")
            .replace("{token}", "tok")
            .replace("{kind}", "result");
        for method in item.as_object().unwrap().keys() {
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let status = app.clone().oneshot(req).await.unwrap().status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but answered {status}"
            );
        }
    }
}

#[tokio::test]
async fn statuses_and_providers_are_enums_and_paging_is_integers() {
    let app = app().await;
    let doc = document(&app).await;
    let names = |s: &Value| -> Vec<String> {
        s["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(schema(&doc, "PayoutStatus")),
        PayoutStatus::ALL.map(|s| s.as_str().to_string())
    );
    assert_eq!(
        names(schema(&doc, "Provider")),
        Provider::ALL.map(|p| p.as_str().to_string())
    );
    let view = schema(&doc, "PayoutView");
    assert_eq!(
        view["properties"]["status"]["$ref"],
        "#/components/schemas/PayoutStatus"
    );
    assert!(
        view["properties"]["provider"]
            .to_string()
            .contains("#/components/schemas/Provider")
    );

    for (path, paged) in [
        ("/api/admin/payouts", true),
        ("/api/doctor/payouts", true),
        ("/api/admin/payouts/export", false),
    ] {
        let op = &doc["paths"][path]["get"];
        for name in ["limit", "skip"] {
            let p = param(op, name);
            assert!(is_type(&p["schema"], "integer"), "{path} {name}: {p}");
            assert_eq!(p["in"], "query");
        }
        assert_eq!(param(op, "limit")["schema"]["minimum"], 1, "{path}");
        assert_eq!(param(op, "limit")["schema"]["maximum"], 1000, "{path}");
        if paged {
            let ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap();
            let page = schema(&doc, ok.rsplit('/').next().unwrap());
            let pagination = schema(&doc, "Pagination");
            assert_eq!(
                page["properties"]["pagination"]["$ref"],
                "#/components/schemas/Pagination"
            );
            for field in ["total", "limit", "skip"] {
                assert!(is_type(&pagination["properties"][field], "integer"), "{field}");
            }
        }
        if path != "/api/doctor/payouts" {
            assert!(
                param(op, "status")["schema"]
                    .to_string()
                    .contains("#/components/schemas/PayoutStatus")
            );
            assert!(
                param(op, "provider")["schema"]
                    .to_string()
                    .contains("#/components/schemas/Provider")
            );
            assert_eq!(param(op, "startDate")["schema"]["format"], "date");
        }
    }

    // PATCH takes one of the actions, each with its own fields.
    let patch = &doc["paths"]["/api/admin/payouts/{id}"]["patch"];
    assert_eq!(
        patch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PatchPayout"
    );
    let text = schema(&doc, "PatchPayout").to_string();
    for action in [
        "approve",
        "reapprove",
        "trigger",
        "cancel",
        "retry",
        "resolve",
        "confirm_resolution",
        "reject_resolution",
    ] {
        assert!(
            text.contains(&format!("\"{action}\"")),
            "action {action} missing: {text}"
        );
    }
    let webhook = schema(&doc, "WebhookEvent").to_string();
    for result in ["applied", "ignored", "flagged", "duplicate", "not_ours"] {
        assert!(webhook.contains(&format!("\"{result}\"")), "result {result} missing");
    }
    let stripe = &doc["paths"]["/api/webhooks/stripe-payouts"]["post"];
    assert_eq!(param(stripe, "Stripe-Signature")["in"], "header");
    assert!(
        stripe["responses"]["422"].is_object(),
        "contradicted deliveries are documented"
    );
    assert!(
        stripe["responses"]["429"]["headers"]["Retry-After"].is_object(),
        "a webhook's 429 documents Retry-After"
    );
    assert_eq!(
        stripe["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/WebhookBody"
    );
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["bearerFormat"], "JWT");
    assert_eq!(
        doc["paths"]["/api/admin/payouts"]["get"]["security"][0]["bearer"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn the_reference_page_runs_only_its_pinned_script() {
    let app = app().await;
    let (status, headers, body) = get(&app, "/api/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, payout_server::openapi::DOCS_CSP);
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("\"/api/admin/payouts/{id}\""), "the document is embedded");
    // The one script the page loads is the one the policy allows, pinned by version and hash.
    let src = html.split("<script src=\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(src.contains("@scalar/api-reference@1."), "{src}");
    assert!(
        csp.contains(&format!("script-src {src};")),
        "{csp} does not allow {src}"
    );
    assert_eq!(html.matches("<script src=").count(), 1);
    assert!(
        html.contains("integrity=\"sha384-"),
        "the script is checked by its hash"
    );
}

#[tokio::test]
async fn the_document_passes_an_openapi_validator() {
    let Some(validator) = std::env::var(VALIDATOR_VAR).ok().filter(|v| !v.is_empty()) else {
        println!("skipped: {VALIDATOR_VAR} not set");
        return;
    };
    let app = app().await;
    let (status, _, body) = get(&app, "/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &body).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{validator}: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the validator refused the document:\n{report}");
    assert!(report.contains("OK"), "{report}");

    // The validator is real: it refuses a document with a dangling reference.
    let mut broken: Value = serde_json::from_slice(&body).unwrap();
    broken["components"]["schemas"]
        .as_object_mut()
        .unwrap()
        .remove("PayoutStatus");
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let out = std::process::Command::new(&validator).arg(&file).output().unwrap();
    assert!(!out.status.success(), "a dangling $ref was accepted");
}

#[cfg(feature = "bank-files")]
#[tokio::test]
async fn bank_file_routes_are_documented_with_their_formats_and_headers() {
    let app = app().await;
    let doc = document(&app).await;
    let make = &doc["paths"]["/api/admin/bank-files"]["get"];
    let ok = &make["responses"]["200"];
    for media in ["text/csv", "application/xml", "text/plain"] {
        assert!(ok["content"][media].is_object(), "{media} missing: {ok}");
    }
    for h in [
        "X-Bank-File-Id",
        "X-Bank-File-Transfers",
        "X-Bank-File-Total",
        "X-Bank-File-Left-Out",
    ] {
        assert!(ok["headers"][h].is_object(), "{h} missing: {ok}");
    }
    assert!(
        param(make, "format")["schema"]
            .to_string()
            .contains("#/components/schemas/FileFormat")
    );
    assert_eq!(
        schema(&doc, "FileFormat")["enum"],
        serde_json::json!(["csv", "pain001", "nacha"])
    );
    let settle = &doc["paths"]["/api/admin/bank-files/{file}/settle"]["post"];
    assert_eq!(
        settle["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SettleBankFile"
    );
    let actions = schema(&doc, "SettleBankFile").to_string();
    assert!(
        actions.contains("\"all_paid\"") && actions.contains("\"returned\""),
        "{actions}"
    );
    assert!(doc["paths"]["/api/admin/bank-files/{file}"]["get"].is_object());
}
