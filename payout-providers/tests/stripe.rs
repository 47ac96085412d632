//! Stripe adapter against a local wiremock server replaying Stripe's payloads (PROVIDERS.md §1).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue};
use payout_core::clock::ManualClock;
use payout_core::domain::{PayoutDestination, Provider};
use payout_core::money::{Currency, Money};
use payout_core::provider::{
    AttemptLookup, EventReference, PayoutInstruction, PayoutProvider, ProviderEventKind, ProviderStatus,
};
use payout_core::testkit::{fixtures, provider::check_provider};
use payout_core::{ProviderErrorKind, WebhookError};
use payout_providers::stripe::{StripeConfig, StripeProvider, signature_header};
use payout_providers::{RetryPolicy, Secret};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk_test_51Secret";
const WHSEC: &str = "whsec_test_secret";
const NOW: i64 = 1_700_000_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW, 0).unwrap()
}

fn config(base: &str) -> StripeConfig {
    StripeConfig::builder()
        .secret_key(KEY)
        .webhook_secret(WHSEC)
        .api_base(base)
        .retry(RetryPolicy::immediate(3))
        .timeout(Duration::from_millis(500))
        .clock(Arc::new(ManualClock::new(now())))
        .build()
        .unwrap()
}

fn provider(server: &MockServer) -> StripeProvider {
    StripeProvider::new(config(&server.uri())).unwrap()
}

fn instruction() -> PayoutInstruction {
    fixtures::instruction(Provider::StripeConnect)
}

fn transfer(id: &str, key: &str, reversed: bool) -> serde_json::Value {
    json!({
        "id": id, "object": "transfer", "amount": 50000, "amount_reversed": if reversed { 50000 } else { 0 },
        "balance_transaction": "txn_1", "created": 1678043844, "currency": "kes",
        "destination": "acct_1TestkitDoctor", "destination_payment": "py_1", "livemode": false,
        "metadata": {"idempotency_key": key, "payout_id": "po_testkit"}, "reversed": reversed,
        "transfer_group": key
    })
}

fn stripe_error(kind: &str, code: Option<&str>, message: &str) -> serde_json::Value {
    json!({"error": {"type": kind, "code": code, "message": message, "doc_url": "https://stripe.com/docs/error-codes"}})
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form(req: &Request) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
    std::str::from_utf8(&req.body)
        .unwrap()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn field(form: &[(String, String)], key: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

async fn posts(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method == http::Method::POST)
        .collect()
}

// ---------- send ----------

#[tokio::test]
async fn send_posts_a_transfer_with_key_metadata_and_minor_units() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/transfers"))
        .and(header("Idempotency-Key", "po_testkit-1"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_1", "po_testkit-1", false)))
        .expect(1)
        .mount(&server)
        .await;
    let receipt = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(receipt.reference.as_deref(), Some("tr_1"));
    assert_eq!(receipt.status, ProviderStatus::Paid);
    assert!(receipt.note.contains("tr_1"), "{}", receipt.note);

    let sent = posts(&server).await;
    let f = form(&sent[0]);
    assert_eq!(field(&f, "amount").as_deref(), Some("50000"));
    assert_eq!(field(&f, "currency").as_deref(), Some("kes"));
    assert_eq!(field(&f, "destination").as_deref(), Some("acct_1TestkitDoctor"));
    assert_eq!(field(&f, "metadata[idempotency_key]").as_deref(), Some("po_testkit-1"));
    assert_eq!(field(&f, "metadata[payout_id]").as_deref(), Some("po_testkit"));
    assert_eq!(field(&f, "transfer_group").as_deref(), Some("po_testkit-1"));
    assert_eq!(
        sent[0].headers.get("content-type").unwrap().to_str().unwrap(),
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn zero_decimal_currencies_are_not_multiplied() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/transfers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_jpy", "po_testkit-1", false)))
        .mount(&server)
        .await;
    let mut i = instruction();
    i.amount = Money::parse("1500", Currency::JPY).unwrap();
    provider(&server).send(&i).await.unwrap();
    let f = form(&posts(&server).await[0]);
    assert_eq!(field(&f, "amount").as_deref(), Some("1500"));
    assert_eq!(field(&f, "currency").as_deref(), Some("jpy"));
}

#[tokio::test]
async fn unpayable_instructions_fail_final_before_any_call() {
    let server = MockServer::start().await;
    let p = provider(&server);
    let mut zero = instruction();
    zero.amount = Money::zero(Currency::KES);
    let mut wrong_destination = instruction();
    wrong_destination.destination = PayoutDestination::PaypalEmail {
        email: "a@example.com".into(),
    };
    for i in [zero, wrong_destination] {
        let e = p.send(&i).await.unwrap_err();
        assert_eq!(e.kind, ProviderErrorKind::Final, "{e}");
    }
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "no HTTP call for an unpayable instruction"
    );
}

#[tokio::test]
async fn invalid_request_4xx_is_final_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(stripe_error(
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "Invalid integer: abc",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Final);
    assert_eq!(e.code.as_deref(), Some("parameter_invalid_integer"));
}

#[tokio::test]
async fn insufficient_balance_is_final() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(stripe_error(
            "invalid_request_error",
            Some("balance_insufficient"),
            "You have insufficient funds in your Stripe account.",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Final);
    assert_eq!(e.code.as_deref(), Some("balance_insufficient"));
}

#[tokio::test]
async fn unauthorized_is_final_and_never_echoes_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(stripe_error(
            "invalid_request_error",
            None,
            &format!("Invalid API Key provided: {KEY}"),
        )))
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Final);
    assert!(!e.to_string().contains(KEY), "{e}");
    assert!(!format!("{e:?}").contains(KEY));
}

async fn retried_then_ok(first: ResponseTemplate) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/transfers"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/transfers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_retry", "po_testkit-1", false)))
        .mount(&server)
        .await;
    let receipt = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(receipt.reference.as_deref(), Some("tr_retry"));
    let sent = posts(&server).await;
    assert_eq!(sent.len(), 2);
    let keys: Vec<_> = sent
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap().clone())
        .collect();
    assert_eq!(keys[0], keys[1], "every try carries the same Idempotency-Key");
    assert_eq!(keys[0], "po_testkit-1");
    assert_eq!(form(&sent[0]), form(&sent[1]), "every try sends the same parameters");
}

#[tokio::test]
async fn rate_limited_429_is_retried_with_the_same_key() {
    retried_then_ok(ResponseTemplate::new(429).set_body_json(stripe_error(
        "invalid_request_error",
        Some("rate_limit"),
        "Too many requests",
    )))
    .await;
}

#[tokio::test]
async fn server_error_5xx_is_retried_with_the_same_key() {
    retried_then_ok(ResponseTemplate::new(500).set_body_json(stripe_error("api_error", None, "Something went wrong")))
        .await;
}

#[tokio::test]
async fn idempotency_key_in_use_409_is_retried_with_the_same_key() {
    retried_then_ok(ResponseTemplate::new(409).set_body_json(stripe_error(
        "idempotency_error",
        Some("idempotency_key_in_use"),
        "There is currently another in-progress request using this Idempotent Key",
    )))
    .await;
}

#[tokio::test]
async fn persistent_503_ends_retryable_after_max_tries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable"))
        .expect(3)
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
}

#[tokio::test]
async fn idempotency_error_is_final_when_the_key_moved_no_money() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(stripe_error(
            "idempotency_error",
            None,
            "Keys for idempotent requests can only be used with the same parameters they were first used with.",
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers"))
        .and(query_param("transfer_group", "po_testkit-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [], "has_more": false})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Final);
    assert_eq!(e.code.as_deref(), Some("idempotency_error"));
}

#[tokio::test]
async fn idempotency_error_returns_the_keys_transfer_when_one_exists() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(stripe_error("idempotency_error", None, "mismatch")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": [transfer("tr_first", "po_testkit-1", false)], "has_more": false}),
        ))
        .mount(&server)
        .await;
    let receipt = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(receipt.reference.as_deref(), Some("tr_first"));
    assert_eq!(receipt.status, ProviderStatus::Paid);
}

#[tokio::test]
async fn duplicate_key_replay_returns_the_same_transfer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_1", "po_testkit-1", false)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Idempotent-Replayed", "true")
                .set_body_json(transfer("tr_1", "po_testkit-1", false)),
        )
        .mount(&server)
        .await;
    let p = provider(&server);
    let first = p.send(&instruction()).await.unwrap();
    let second = p.send(&instruction()).await.unwrap();
    assert_eq!(first.reference, second.reference);
    assert!(second.note.contains("replay"), "{}", second.note);
    let sent = posts(&server).await;
    assert_eq!(
        sent[0].headers.get("idempotency-key"),
        sent[1].headers.get("idempotency-key")
    );
}

#[tokio::test]
async fn timeout_is_ambiguous_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(transfer("tr_slow", "po_testkit-1", false))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Ambiguous, "{e}");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let p = StripeProvider::new(config(&format!("http://{addr}"))).unwrap();
    let e = p.send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable, "{e}");
}

#[tokio::test]
async fn unreadable_success_body_is_ambiguous() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).send(&instruction()).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Ambiguous);
}

// ---------- lookup ----------

fn lookup(reference: Option<&str>) -> AttemptLookup {
    let i = instruction();
    AttemptLookup {
        payout_id: i.payout_id.clone(),
        attempt_no: 1,
        idempotency_key: i.idempotency_key.clone(),
        provider_reference: reference.map(String::from),
        instruction: Some(i),
    }
}

#[tokio::test]
async fn lookup_by_reference_reports_paid_or_reversed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers/tr_paid"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_paid", "po_testkit-1", false)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers/tr_rev"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_rev", "po_testkit-1", true)))
        .mount(&server)
        .await;
    let p = provider(&server);
    assert_eq!(p.lookup(&lookup(Some("tr_paid"))).await.unwrap(), ProviderStatus::Paid);
    assert!(matches!(
        p.lookup(&lookup(Some("tr_rev"))).await.unwrap(),
        ProviderStatus::Reversed(_)
    ));
}

#[tokio::test]
async fn lookup_of_a_known_reference_that_404s_is_an_error_not_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers/tr_gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(stripe_error(
            "invalid_request_error",
            Some("resource_missing"),
            "No such transfer: 'tr_gone'",
        )))
        .mount(&server)
        .await;
    let e = provider(&server).lookup(&lookup(Some("tr_gone"))).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some("resource_missing"));
}

#[tokio::test]
async fn lookup_without_reference_searches_the_transfer_group() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers"))
        .and(query_param("transfer_group", "po_testkit-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [], "has_more": false})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "list", "data": [transfer("tr_found", "po_testkit-1", false)], "has_more": false}),
        ))
        .mount(&server)
        .await;
    let p = provider(&server);
    assert_eq!(
        p.lookup(&lookup(None)).await.unwrap(),
        ProviderStatus::NotFound,
        "nothing in the group: never arrived"
    );
    assert_eq!(p.lookup(&lookup(None)).await.unwrap(), ProviderStatus::Paid);
}

#[tokio::test]
async fn lookup_5xx_is_retried_then_reported_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502))
        .expect(3)
        .mount(&server)
        .await;
    let e = provider(&server).lookup(&lookup(Some("tr_1"))).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
}

// ---------- conformance ----------

#[tokio::test]
async fn passes_the_provider_conformance_check() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/transfers"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_conf", "po_testkit-1", false)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/transfers/tr_conf"))
        .respond_with(ResponseTemplate::new(200).set_body_json(transfer("tr_conf", "po_testkit-1", false)))
        .mount(&server)
        .await;
    let p = provider(&server);
    assert!(p.capabilities().webhooks && p.capabilities().lookup && !p.capabilities().batch);
    check_provider(&p, instruction()).await;
}

// ---------- config ----------

#[test]
fn config_debug_shows_no_secret() {
    let c = config("https://api.stripe.com");
    let shown = format!("{c:?}");
    assert!(!shown.contains(KEY) && !shown.contains(WHSEC), "{shown}");
    assert!(shown.contains("api.stripe.com") && shown.ends_with(".. }"), "{shown}");
    let p = StripeProvider::new(c).unwrap();
    let shown = format!("{p:?}");
    assert!(!shown.contains(KEY) && !shown.contains(WHSEC), "{shown}");
}

#[test]
fn from_vars_defaults_to_the_live_api() {
    let c = StripeConfig::from_vars(|k| (k == "STRIPE_SECRET_KEY").then(|| KEY.to_string())).unwrap();
    assert_eq!(c.api_base(), "https://api.stripe.com");
    let p = StripeProvider::new(c).unwrap();
    assert!(!p.capabilities().webhooks, "no webhook secret, no webhooks");
}

// ---------- webhooks ----------

fn event(kind: &str, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "evt_1", "object": "event", "api_version": "2024-06-20", "created": NOW - 5,
        "livemode": false, "type": kind, "data": {"object": object}
    }))
    .unwrap()
}

fn headers(sig: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Stripe-Signature", HeaderValue::from_str(sig).unwrap());
    h
}

fn signed(body: &[u8], at: i64) -> HeaderMap {
    headers(&signature_header(&Secret::new(WHSEC), at, body))
}

fn offline() -> StripeProvider {
    StripeProvider::new(config("http://127.0.0.1:9")).unwrap()
}

#[tokio::test]
async fn webhook_transfer_reversed_is_reversed_with_both_references() {
    let body = event("transfer.reversed", transfer("tr_1", "po_testkit-1", true));
    let events = offline().verify_webhook(&signed(&body, NOW), &body).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.event_id, "evt_1");
    assert_eq!(e.provider_type, "transfer.reversed");
    assert!(matches!(e.kind, ProviderEventKind::Reversed { .. }));
    assert_eq!(
        e.references,
        vec![
            EventReference::ProviderReference("tr_1".into()),
            EventReference::IdempotencyKey("po_testkit-1".into())
        ]
    );
    assert_eq!(e.occurred_at, DateTime::from_timestamp(NOW - 5, 0));
}

#[tokio::test]
async fn webhook_event_types_map_to_kinds() {
    let p = offline();
    let payout = |status: &str| {
        json!({"id": "po_1", "object": "payout", "amount": 50000, "currency": "kes", "status": status,
               "failure_code": if status == "failed" { json!("account_closed") } else { json!(null) },
               "failure_message": if status == "failed" { json!("The bank account has been closed") } else { json!(null) },
               "metadata": {"idempotency_key": "po_testkit-1"}})
    };
    let cases: Vec<(Vec<u8>, ProviderEventKind)> = vec![
        (
            event("transfer.created", transfer("tr_1", "po_testkit-1", false)),
            ProviderEventKind::Pending,
        ),
        (event("payout.paid", payout("paid")), ProviderEventKind::Paid),
        (
            event("payout.failed", payout("failed")),
            ProviderEventKind::Failed {
                reason: "account_closed: The bank account has been closed".into(),
            },
        ),
        (
            event("payout.canceled", payout("canceled")),
            ProviderEventKind::Failed {
                reason: "payout canceled".into(),
            },
        ),
    ];
    for (body, kind) in cases {
        let events = p.verify_webhook(&signed(&body, NOW), &body).await.unwrap();
        assert_eq!(events[0].kind, kind);
        assert!(
            events[0]
                .references
                .contains(&EventReference::IdempotencyKey("po_testkit-1".into()))
        );
    }
    let body = event("transfer.updated", transfer("tr_1", "po_testkit-1", false));
    assert!(
        p.verify_webhook(&signed(&body, NOW), &body).await.unwrap().is_empty(),
        "ignored types yield nothing"
    );
}

#[tokio::test]
async fn webhook_with_the_wrong_secret_is_refused() {
    let body = event("payout.paid", json!({"id": "po_1"}));
    let h = headers(&signature_header(&Secret::new("whsec_other"), NOW, &body));
    assert_eq!(
        offline().verify_webhook(&h, &body).await.unwrap_err(),
        WebhookError::BadSignature
    );
}

#[tokio::test]
async fn webhook_with_a_tampered_body_is_refused() {
    let body = event("payout.paid", json!({"id": "po_1"}));
    let h = signed(&body, NOW);
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[pos] = b'2';
    assert_eq!(
        offline().verify_webhook(&h, &tampered).await.unwrap_err(),
        WebhookError::BadSignature
    );
}

#[tokio::test]
async fn webhook_outside_the_tolerance_is_expired_both_ways() {
    let p = offline();
    let body = event("payout.paid", json!({"id": "po_1"}));
    for at in [NOW - 301, NOW + 301] {
        assert_eq!(
            p.verify_webhook(&signed(&body, at), &body).await.unwrap_err(),
            WebhookError::Expired,
            "t={at}"
        );
    }
    for at in [NOW - 300, NOW + 300] {
        assert!(
            p.verify_webhook(&signed(&body, at), &body).await.is_ok(),
            "t={at} is inside the tolerance"
        );
    }
}

#[tokio::test]
async fn webhook_with_several_v1_signatures_passes_when_any_matches() {
    let body = event("payout.paid", json!({"id": "po_1"}));
    let good = signature_header(&Secret::new(WHSEC), NOW, &body);
    let good_sig = good.split_once("v1=").unwrap().1;
    let old = signature_header(&Secret::new("whsec_rolled_out"), NOW, &body);
    let old_sig = old.split_once("v1=").unwrap().1;
    let h = headers(&format!("t={NOW},v1={old_sig},v1={good_sig},v0={good_sig}"));
    assert_eq!(offline().verify_webhook(&h, &body).await.unwrap().len(), 1);
    // v0 alone never counts, however valid.
    let h = headers(&format!("t={NOW},v0={good_sig}"));
    assert_eq!(
        offline().verify_webhook(&h, &body).await.unwrap_err(),
        WebhookError::BadSignature
    );
}

#[tokio::test]
async fn webhook_without_a_signature_header_is_refused() {
    let body = event("payout.paid", json!({"id": "po_1"}));
    assert!(matches!(
        offline().verify_webhook(&HeaderMap::new(), &body).await.unwrap_err(),
        WebhookError::MissingHeader(_)
    ));
}

#[tokio::test]
async fn webhook_signed_but_not_json_is_malformed() {
    let body = b"not json".to_vec();
    assert!(matches!(
        offline().verify_webhook(&signed(&body, NOW), &body).await.unwrap_err(),
        WebhookError::Malformed(_)
    ));
}

#[tokio::test]
async fn webhook_without_a_configured_secret_is_unavailable() {
    let c = StripeConfig::builder().secret_key(KEY).build().unwrap();
    let body = event("payout.paid", json!({"id": "po_1"}));
    assert!(matches!(
        StripeProvider::new(c)
            .unwrap()
            .verify_webhook(&signed(&body, NOW), &body)
            .await
            .unwrap_err(),
        WebhookError::Unavailable(_)
    ));
}
