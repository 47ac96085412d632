//! PayPal Payouts adapter against a local wiremock server replaying PayPal's payloads
//! (PROVIDERS.md §2), with request bodies checked against PayPal's published OpenAPI schemas.

#[path = "../support/mod.rs"]
mod support;

mod contract;
mod lookup;
mod webhooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::DateTime;
use http::{HeaderMap, HeaderValue};
use payout_core::clock::ManualClock;
use payout_core::domain::{PayoutDestination, PayoutId, Provider};
use payout_core::money::{Currency, Money};
use payout_core::provider::{EventReference, PayoutInstruction, PayoutProvider, ProviderEventKind, ProviderStatus};
use payout_core::testkit::fixtures;
use payout_core::testkit::provider::{Deliveries, check_events, check_provider};
use payout_core::{ProviderError, ProviderErrorKind, WebhookError};
use payout_providers::RetryPolicy;
use payout_providers::paypal::{
    AUTH_ALGO, CERT_URL, CertFetcher, PaypalConfig, PaypalConfigBuilder, PaypalProvider, TRANSMISSION_ID,
    TRANSMISSION_SIG, TRANSMISSION_TIME, WebhookVerification,
};
use rsa::RsaPrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::json;
use support::{lookup, mount, mount_first, mount_times, on, refusal, requests};
use wiremock::matchers::{body_partial_json, body_string, header, query_param};
use wiremock::{MockBuilder, MockServer, Request, ResponseTemplate};

const CLIENT_ID: &str = "AcLientIdSandbox0001";
const CLIENT_SECRET: &str = "EcLientSecretSandbox0002";
const WEBHOOK_ID: &str = "1JE4291016473214C";
const NOW: i64 = 1_700_000_000;
const CERT: &str = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77";
const BATCH: &str = "5UXD2E8A7EBQJ";

/// Serves certificates made in the test, counting fetches.
#[derive(Default)]
struct TestFetcher {
    certs: Mutex<HashMap<String, String>>,
    fetches: AtomicUsize,
}

impl TestFetcher {
    fn with(url: &str, pem: String) -> Arc<Self> {
        let f = TestFetcher::default();
        f.certs.lock().unwrap().insert(url.to_string(), pem);
        Arc::new(f)
    }
}

#[async_trait]
impl CertFetcher for TestFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.certs
            .lock()
            .unwrap()
            .get(url)
            .map(|p| p.clone().into_bytes())
            .ok_or_else(|| "HTTP 404".to_string())
    }
}

fn paypal_cert() -> String {
    support::certs::self_signed_pem(
        support::certs::test_key(),
        "messageverificationcerts.sandbox.paypal.com",
        NOW - 3600,
        NOW + 86_400 * 365,
    )
}

fn builder(base: &str) -> PaypalConfigBuilder {
    PaypalConfig::builder()
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .webhook_id(WEBHOOK_ID)
        .api_base(base)
        .retry(RetryPolicy::immediate(3))
        .timeout(Duration::from_millis(500))
        .clock(Arc::new(ManualClock::new(DateTime::from_timestamp(NOW, 0).unwrap())))
        .cert_fetcher(TestFetcher::with(CERT, paypal_cert()))
}

fn provider(server: &MockServer) -> PaypalProvider {
    PaypalProvider::new(builder(&server.uri()).build().unwrap()).unwrap()
}

fn instruction() -> PayoutInstruction {
    fixtures::instruction(Provider::PaypalPayouts)
}

fn instruction_for(n: u32, email: &str, amount: &str, currency: Currency) -> PayoutInstruction {
    let mut i = instruction();
    i.payout_id = PayoutId::new(format!("po_{n}"));
    i.idempotency_key = format!("po_{n}-1");
    i.destination = PayoutDestination::PaypalEmail {
        email: email.to_string(),
    };
    i.amount = Money::parse(amount, currency).unwrap();
    i
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    )
}

fn token(access: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "scope": "https://uri.paypal.com/services/payments/payouts", "access_token": access,
        "token_type": "Bearer", "app_id": "APP-80W284485P519543T", "expires_in": expires_in, "nonce": "2024-07-06T22:48:52Z"
    }))
}

async fn mount_token(server: &MockServer, expires_in: u64, times: u64) {
    let mock = token_route()
        .and(header("authorization", basic().as_str()))
        .and(body_string("grant_type=client_credentials"));
    mount_times(server, mock, token("A21AA-token-1", expires_in), times).await;
}

fn created(batch: &str, sender_batch_id: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "batch_header": {"payout_batch_id": batch, "batch_status": "PENDING",
                         "sender_batch_header": {"sender_batch_id": sender_batch_id, "email_subject": "You have a payout"}},
        "links": [{"href": format!("https://api-m.sandbox.paypal.com/v1/payments/payouts/{batch}"), "rel": "self", "method": "GET", "encType": "application/json"}]
    }))
}

fn item(item_id: &str, key: &str, status: &str) -> serde_json::Value {
    let mut v = json!({
        "payout_item_id": item_id, "transaction_id": "4L335721CC2929411", "activity_id": "0E158638XS0329101",
        "transaction_status": status, "payout_item_fee": {"currency": "USD", "value": "0.25"},
        "payout_batch_id": BATCH,
        "payout_item": {"recipient_type": "EMAIL", "amount": {"value": "9.87", "currency": "USD"}, "note": "Thanks",
                        "receiver": "doctor@example.com", "sender_item_id": key, "recipient_wallet": "PAYPAL"},
        "time_processed": "2024-07-06T22:48:52Z",
        "links": [{"href": format!("https://api-m.sandbox.paypal.com/v1/payments/payouts-item/{item_id}"), "rel": "item", "method": "GET"}]
    });
    if status == "FAILED" {
        v["errors"] = json!({"name": "RECEIVER_UNREGISTERED", "message": "Receiver is unregistered"});
    }
    v
}

fn batch(status: &str, items: Vec<serde_json::Value>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "total_items": items.len(), "total_pages": 1,
        "batch_header": {"payout_batch_id": BATCH, "batch_status": status,
                         "sender_batch_header": {"sender_batch_id": "x"},
                         "amount": {"currency": "USD", "value": "9.87"}, "fees": {"currency": "USD", "value": "0.25"}},
        "items": items,
        "links": []
    }))
}

async fn mount_batch(server: &MockServer, response: ResponseTemplate) {
    let mock = on("GET", Some(&format!("/v1/payments/payouts/{BATCH}")))
        .and(query_param("page", "1"))
        .and(query_param("page_size", "1000"));
    mount(server, mock, response).await;
}

async fn creates(server: &MockServer) -> Vec<Request> {
    requests(server, |r| {
        r.method == http::Method::POST && r.url.path() == "/v1/payments/payouts"
    })
    .await
}

/// A server that hands out one long-lived token.
async fn with_token() -> MockServer {
    let server = MockServer::start().await;
    mount_token(&server, 32400, 1).await;
    server
}

/// `POST /v1/payments/payouts`.
fn create() -> MockBuilder {
    on("POST", Some("/v1/payments/payouts"))
}

fn token_route() -> MockBuilder {
    on("POST", Some("/v1/oauth2/token"))
}

fn json_body(r: &Request) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

// ---------- send ----------

#[tokio::test]
async fn send_creates_a_batch_of_one_with_our_ids_and_maps_the_item_back() {
    let server = with_token().await;
    let mock = create()
        .and(header("authorization", "Bearer A21AA-token-1"))
        .and(header("PayPal-Request-Id", "po_testkit-1"))
        .and(body_partial_json(json!({
            "sender_batch_header": {"sender_batch_id": "po_testkit-1", "recipient_type": "EMAIL"},
            "items": [{"recipient_type": "EMAIL", "amount": {"currency": "KES", "value": "500.00"},
                       "receiver": "doctor@example.com", "sender_item_id": "po_testkit-1"}]
        })));
    mount_times(&server, mock, created(BATCH, "po_testkit-1"), 1).await;
    mount_batch(
        &server,
        batch("SUCCESS", vec![item("8AELMXH8UB2P8", "po_testkit-1", "SUCCESS")]),
    )
    .await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(r.reference.as_deref(), Some("8AELMXH8UB2P8"));
    assert_eq!(r.status, ProviderStatus::Paid);
    let body = json_body(&creates(&server).await[0]);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert!(
        body["items"][0]["amount"]["value"].is_string(),
        "amounts are strings, never numbers"
    );
}

/// A batch of 2,500 items is read back over three pages of 1,000 (PayPal's largest), each page once;
/// after the first page says how many there are, the rest are asked for side by side. Every item
/// is mapped back, whichever page lists it.
#[tokio::test]
async fn a_batch_of_many_pages_reads_each_page_once_and_maps_every_item() {
    const N: u32 = 2_500;
    let server = with_token().await;
    mount_times(&server, create(), created(BATCH, "b"), 1).await;
    // PayPal's order: the items newest first, so item n is on page (N - n) / 1000 + 1.
    let listed: Vec<serde_json::Value> = (1..=N)
        .rev()
        .map(|n| item(&format!("ITEM{n}"), &format!("po_{n}-1"), "SUCCESS"))
        .collect();
    for (page, items) in listed.chunks(1000).enumerate() {
        let mut body = json!({
            "total_items": N, "total_pages": 3,
            "batch_header": {"payout_batch_id": BATCH, "batch_status": "SUCCESS",
                             "sender_batch_header": {"sender_batch_id": "b"}},
            "items": items,
            "links": []
        });
        body["page"] = json!(page + 1);
        let mock = on("GET", Some(&format!("/v1/payments/payouts/{BATCH}")))
            .and(query_param("page", (page + 1).to_string().as_str()))
            .and(query_param("page_size", "1000"));
        mount_times(&server, mock, ResponseTemplate::new(200).set_body_json(body), 1).await;
    }
    let batch_in: Vec<PayoutInstruction> = (1..=N)
        .map(|n| instruction_for(n, &format!("dr{n}@example.com"), "10.00", Currency::USD))
        .collect();
    let out = provider(&server).send_batch(&batch_in).await.unwrap();
    assert_eq!(out.len(), N as usize);
    for (n, r) in (1..=N).zip(&out) {
        let r = r.as_ref().unwrap_or_else(|e| panic!("item {n}: {e}"));
        assert_eq!(r.reference.as_deref(), Some(format!("ITEM{n}").as_str()), "item {n}");
        assert_eq!(r.status, ProviderStatus::Paid);
    }
    let pages = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method == http::Method::GET)
        .count();
    assert_eq!(pages, 3, "each page is read once");
}

#[tokio::test]
async fn a_batch_with_mixed_item_results_maps_each_back_by_sender_item_id() {
    let server = with_token().await;
    mount(&server, create(), created(BATCH, "b")).await;
    // PayPal lists items in its own order.
    mount_batch(
        &server,
        batch(
            "PROCESSING",
            vec![
                item("ITEM3", "po_3-1", "UNCLAIMED"),
                item("ITEM1", "po_1-1", "SUCCESS"),
                item("ITEM2", "po_2-1", "FAILED"),
            ],
        ),
    )
    .await;
    let mut not_paypal = instruction_for(9, "x@example.com", "5", Currency::USD);
    not_paypal.destination = PayoutDestination::MpesaPhone {
        phone: "254708374149".into(),
    };
    let batch_in = vec![
        instruction_for(1, "a@example.com", "10.00", Currency::USD),
        not_paypal,
        instruction_for(2, "b@example.com", "20.50", Currency::USD),
        instruction_for(3, "c@example.com", "1500", Currency::JPY),
    ];
    let p = provider(&server);
    assert!(p.capabilities().batch);
    assert_eq!(p.capabilities().max_batch_size, 15_000);
    let out = p.send_batch(&batch_in).await.unwrap();
    assert_eq!(out.len(), 4, "one result per instruction, in order");
    let r1 = out[0].as_ref().unwrap();
    assert_eq!(
        (r1.reference.as_deref(), &r1.status),
        (Some("ITEM1"), &ProviderStatus::Paid)
    );
    assert_eq!(
        out[1].as_ref().unwrap_err().kind,
        ProviderErrorKind::Final,
        "refused alone, before the call"
    );
    let r2 = out[2].as_ref().unwrap();
    assert_eq!(r2.reference.as_deref(), Some("ITEM2"));
    assert!(matches!(&r2.status, ProviderStatus::Failed(reason) if reason.contains("RECEIVER_UNREGISTERED")));
    let r3 = out[3].as_ref().unwrap();
    assert_eq!(
        (r3.reference.as_deref(), &r3.status),
        (Some("ITEM3"), &ProviderStatus::Accepted)
    );

    let sent = creates(&server).await;
    assert_eq!(sent.len(), 1, "one call for the whole batch");
    let body = json_body(&sent[0]);
    let keys: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sender_item_id"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["po_1-1", "po_2-1", "po_3-1"]);
    assert_eq!(body["items"][2]["amount"], json!({"currency": "JPY", "value": "1500"}));
    let sender_batch_id = body["sender_batch_header"]["sender_batch_id"].as_str().unwrap();
    assert!(sender_batch_id.starts_with("payouts-") && sender_batch_id.len() == "payouts-".len() + 40);
    assert_eq!(sent[0].headers.get("paypal-request-id").unwrap(), sender_batch_id);
}

#[tokio::test]
async fn the_same_attempts_make_the_same_sender_batch_id_in_any_order() {
    let server = with_token().await;
    mount(&server, on("POST", None), created(BATCH, "b")).await;
    mount_batch(&server, batch("PENDING", vec![])).await;
    let a = instruction_for(1, "a@example.com", "1", Currency::USD);
    let b = instruction_for(2, "b@example.com", "1", Currency::USD);
    let p = provider(&server);
    let first = p.send_batch(&[a.clone(), b.clone()]).await.unwrap();
    p.send_batch(&[b, a]).await.unwrap();
    let sent = creates(&server).await;
    assert_eq!(
        json_body(&sent[0])["sender_batch_header"]["sender_batch_id"],
        json_body(&sent[1])["sender_batch_header"]["sender_batch_id"]
    );
    let r = first[0].as_ref().unwrap();
    assert_eq!(
        (r.reference.as_deref(), &r.status),
        (Some(BATCH), &ProviderStatus::Accepted),
        "not listed yet"
    );
}

#[tokio::test]
async fn a_key_twice_in_one_call_is_sent_once() {
    let server = with_token().await;
    mount(&server, on("POST", None), created(BATCH, "po_1-1")).await;
    mount_batch(&server, batch("SUCCESS", vec![item("ITEM1", "po_1-1", "SUCCESS")])).await;
    let a = instruction_for(1, "a@example.com", "1", Currency::USD);
    let out = provider(&server).send_batch(&[a.clone(), a]).await.unwrap();
    assert_eq!(out[0], out[1]);
    assert_eq!(
        json_body(&creates(&server).await[0])["items"].as_array().unwrap().len(),
        1
    );
}

fn duplicate_error(with_link: bool) -> ResponseTemplate {
    let mut detail = json!({"field": "SENDER_BATCH_ID", "issue": "Batch with given sender_batch_id already exists"});
    if with_link {
        detail["link"] = json!([{"href": format!("https://api-m.sandbox.paypal.com/v1/payments/payouts/{BATCH}"), "rel": "self", "method": "GET"}]);
    }
    ResponseTemplate::new(400).set_body_json(json!({
        "name": "USER_BUSINESS_ERROR", "message": "User business error.", "debug_id": "f0f5a3f1cbd3a",
        "information_link": "https://developer.paypal.com/docs/api/payments.payouts-batch/#errors", "details": [detail]
    }))
}

#[tokio::test]
async fn a_duplicate_sender_batch_id_is_already_sent_and_looked_up_through_its_link() {
    let server = with_token().await;
    mount_times(&server, on("POST", None), duplicate_error(true), 1).await;
    mount_batch(
        &server,
        batch("SUCCESS", vec![item("8AELMXH8UB2P8", "po_testkit-1", "SUCCESS")]),
    )
    .await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(r.status, ProviderStatus::Paid);
    assert_eq!(r.reference.as_deref(), Some("8AELMXH8UB2P8"));
    assert!(r.note.contains("already sent"), "{}", r.note);
}

/// Issue 15 item 3: the duplicate-batch error in the shapes it is documented or seen in: the
/// field `SENDER_BATCH_ID`, the spec's JSON pointer, the dotted path, or only the issue "Duplicate
/// batch request"; with a link it leads to the original batch, without one it is sent, not failed.
#[tokio::test]
async fn the_duplicate_batch_error_is_recognised_in_every_documented_shape() {
    let shapes = [
        json!({"field": "SENDER_BATCH_ID", "issue": "Duplicate batch request"}),
        json!({"field": "/sender_batch_header/sender_batch_id", "location": "body", "issue": "Batch with given sender_batch_id already exists"}),
        json!({"field": "sender_batch_header.sender_batch_id", "issue": "already exists"}),
        json!({"issue": "Duplicate batch request"}),
    ];
    for shape in shapes {
        for with_link in [true, false] {
            let server = with_token().await;
            let mut body = json!({"name": "USER_BUSINESS_ERROR", "message": "User business error.",
                "debug_id": "f0f5a3f1cbd3a", "details": [shape.clone()]});
            if with_link {
                body["links"] = json!([{"href": format!("https://api-m.sandbox.paypal.com/v1/payments/payouts/{BATCH}"), "rel": "self", "method": "GET"}]);
            }
            mount_times(&server, create(), ResponseTemplate::new(400).set_body_json(body), 1).await;
            mount_batch(
                &server,
                batch("SUCCESS", vec![item("8AELMXH8UB2P8", "po_testkit-1", "SUCCESS")]),
            )
            .await;
            let r = provider(&server)
                .send(&instruction())
                .await
                .unwrap_or_else(|e| panic!("{shape}: {e}"));
            if with_link {
                assert_eq!(r.status, ProviderStatus::Paid, "{shape}");
                assert_eq!(r.reference.as_deref(), Some("8AELMXH8UB2P8"), "{shape}");
            } else {
                assert_eq!((r.status, r.reference), (ProviderStatus::Accepted, None), "{shape}");
            }
        }
    }
}

/// Issue 15 item 3: the engine names each batch; the adapter sends every batch id's instructions
/// in one create call under exactly that `sender_batch_id` (and `PayPal-Request-Id`), never an item
/// under another one, and refuses (before any call) a named batch larger than PayPal takes.
#[tokio::test]
async fn each_named_batch_is_one_create_call_under_its_own_id() {
    let server = with_token().await;
    mount(&server, create(), created(BATCH, "b")).await;
    mount_batch(&server, batch("PENDING", vec![])).await;
    let named = |n: u32, batch: &str| {
        let mut i = instruction_for(n, &format!("d{n}@example.com"), "10.00", Currency::USD);
        i.batch_id = Some(batch.to_string());
        i
    };
    let sent = vec![named(1, "batch-a"), named(2, "batch-b"), named(3, "batch-a")];
    let results = provider(&server).send_batch(&sent).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut calls: Vec<(String, String, Vec<String>)> = creates(&server)
        .await
        .iter()
        .map(|r| {
            let body = json_body(r);
            let keys = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["sender_item_id"].as_str().unwrap().to_string())
                .collect();
            let header = r
                .headers
                .get("PayPal-Request-Id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            (
                body["sender_batch_header"]["sender_batch_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                header,
                keys,
            )
        })
        .collect();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            (
                "batch-a".into(),
                "batch-a".into(),
                vec!["po_1-1".into(), "po_3-1".into()]
            ),
            ("batch-b".into(), "batch-b".into(), vec!["po_2-1".into()]),
        ]
    );
}

/// Issue 15 item 3: PayPal rejects a whole create call for one invalid item (`VALIDATION_ERROR`
/// naming `items[i]`, as a path or a JSON pointer): that item fails with PayPal's issue, the others
/// fail as rejected with their batch (nothing was paid), for the engine to send again in a new batch.
#[tokio::test]
async fn one_invalid_item_fails_alone_and_the_rest_are_rejected_with_the_batch() {
    for field in ["items[1].receiver", "/items/1/receiver"] {
        let server = with_token().await;
        let refusal = json!({"name": "VALIDATION_ERROR", "message": "Invalid request - see details",
            "debug_id": "5b4d5b4d", "details": [{"field": field, "location": "body", "issue": "Receiver is invalid or does not match with type"}]});
        mount_times(&server, create(), ResponseTemplate::new(400).set_body_json(refusal), 1).await;
        let sent: Vec<PayoutInstruction> = (1..=3)
            .map(|n| {
                let mut i = instruction_for(n, &format!("d{n}@example.com"), "10.00", Currency::USD);
                i.batch_id = Some("batch-v".into());
                i
            })
            .collect();
        let results = provider(&server).send_batch(&sent).await.unwrap();
        let errors: Vec<ProviderError> = results.into_iter().map(|r| r.unwrap_err()).collect();
        assert!(errors.iter().all(|e| e.kind == ProviderErrorKind::Final), "{errors:?}");
        assert!(
            !errors[1].rejected_with_batch(),
            "{field}: the invalid item fails on its own"
        );
        assert!(errors[1].message.contains("Receiver is invalid"), "{}", errors[1]);
        for n in [0, 2] {
            assert!(errors[n].rejected_with_batch(), "{field}: item {n}: {}", errors[n]);
        }
    }
}

#[tokio::test]
async fn a_duplicate_without_a_link_is_accepted_never_failed() {
    let server = with_token().await;
    mount(&server, on("POST", None), duplicate_error(false)).await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(r.status, ProviderStatus::Accepted);
    assert_eq!(r.reference, None);
}

/// 5xx and 429: retried, and every try carries the same `PayPal-Request-Id`, `sender_batch_id` and items.
#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_with_the_same_ids() {
    for first in [
        json!({"name": "INTERNAL_SERVER_ERROR", "message": "An internal server error has occurred.",
               "debug_id": "90957fca61718"}),
        json!({"name": "RATE_LIMIT_REACHED", "message": "Too many requests", "debug_id": "x"}),
    ] {
        let status = if first["name"] == "RATE_LIMIT_REACHED" {
            429
        } else {
            500
        };
        let server = with_token().await;
        mount_first(&server, create(), ResponseTemplate::new(status).set_body_json(first)).await;
        mount(&server, create(), created(BATCH, "k")).await;
        mount_batch(
            &server,
            batch("SUCCESS", vec![item("ITEM1", "po_testkit-1", "SUCCESS")]),
        )
        .await;
        support::assert_sent(&provider(&server), &instruction(), ProviderStatus::Paid).await;
        let sent = creates(&server).await;
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0].headers.get("paypal-request-id"),
            sent[1].headers.get("paypal-request-id")
        );
        assert_eq!(
            sent[0].body, sent[1].body,
            "the same sender_batch_id and items on every try"
        );
    }
}

#[tokio::test]
async fn a_validation_error_is_final_with_paypals_name() {
    let server = with_token().await;
    mount_times(&server, on("POST", None), ResponseTemplate::new(400).set_body_json(json!({"name": "VALIDATION_ERROR",
            "message": "Invalid request - see details", "debug_id": "5b4d5b4d",
            "details": [{"field": "items[0].receiver", "location": "body", "issue": "Receiver is invalid or does not match with type"}]})), 1).await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
    assert_eq!(e.code.as_deref(), Some("VALIDATION_ERROR"));
    assert!(e.message.contains("items[0].receiver"), "{e}");
}

#[tokio::test]
async fn insufficient_funds_is_final() {
    let server = with_token().await;
    mount(
        &server,
        on("POST", None),
        ResponseTemplate::new(422).set_body_json(json!({"name": "INSUFFICIENT_FUNDS",
            "message": "Sender does not have sufficient funds.", "debug_id": "abc"})),
    )
    .await;
    let out = provider(&server)
        .send_batch(&[
            instruction_for(1, "a@example.com", "1", Currency::USD),
            instruction_for(2, "b@example.com", "1", Currency::USD),
        ])
        .await
        .unwrap();
    assert!(
        out.iter()
            .all(|r| r.as_ref().unwrap_err().kind == ProviderErrorKind::Final)
    );
}

#[tokio::test]
async fn a_401_refreshes_the_token_once() {
    let server = MockServer::start().await;
    mount_first(&server, token_route(), token("A21AA-old", 32400)).await;
    mount(&server, token_route(), token("A21AA-new", 32400)).await;
    let mock = create().and(header("authorization", "Bearer A21AA-old"));
    mount_times(
        &server,
        mock,
        ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token",
            "error_description": "Access Token not found in cache"})),
        1,
    )
    .await;
    let mock = create().and(header("authorization", "Bearer A21AA-new"));
    mount_times(&server, mock, created(BATCH, "po_testkit-1"), 1).await;
    let mock = on("GET", None).and(header("authorization", "Bearer A21AA-new"));
    mount(
        &server,
        mock,
        batch("SUCCESS", vec![item("ITEM1", "po_testkit-1", "SUCCESS")]),
    )
    .await;
    support::assert_sent(&provider(&server), &instruction(), ProviderStatus::Paid).await;
}

#[tokio::test]
async fn short_lived_tokens_are_fetched_again_for_every_call() {
    let server = MockServer::start().await;
    mount_token(&server, 30, 4).await;
    mount(&server, create(), created(BATCH, "k")).await;
    mount_batch(&server, batch("PENDING", vec![])).await;
    let p = provider(&server);
    // A 30 s token is inside the 60 s margin: each send (create + read) asks for a fresh one.
    p.send(&instruction()).await.unwrap();
    p.send(&instruction()).await.unwrap();
}

#[tokio::test]
async fn bad_client_credentials_are_final() {
    let server = MockServer::start().await;
    mount(
        &server,
        token_route(),
        ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client",
            "error_description": "Client Authentication failed"})),
    )
    .await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
    assert!(!e.to_string().contains(CLIENT_SECRET));
    assert!(creates(&server).await.is_empty());
}

#[tokio::test]
async fn an_unknown_outcome_is_resolved_by_re_sending_the_same_batch() {
    let server = with_token().await;
    mount_first(
        &server,
        create(),
        created(BATCH, "po_testkit-1").set_delay(Duration::from_secs(3)),
    )
    .await;
    mount(&server, create(), duplicate_error(true)).await;
    mount_batch(
        &server,
        batch("SUCCESS", vec![item("ITEM1", "po_testkit-1", "SUCCESS")]),
    )
    .await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(
        (r.reference.as_deref(), r.status),
        (Some("ITEM1"), ProviderStatus::Paid)
    );
    let sent = creates(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, sent[1].body);
}

#[tokio::test]
async fn a_timeout_that_persists_is_ambiguous() {
    let server = with_token().await;
    mount_times(
        &server,
        create(),
        created(BATCH, "k").set_delay(Duration::from_secs(3)),
        2,
    )
    .await;
    support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Ambiguous).await;
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let p = PaypalProvider::new(builder(&support::refused_base()).build().unwrap()).unwrap();
    support::assert_send_fails(&p, &instruction(), ProviderErrorKind::Retryable).await;
}

#[tokio::test]
async fn a_created_batch_whose_items_cannot_be_read_is_accepted() {
    let server = with_token().await;
    mount(&server, on("POST", None), created(BATCH, "k")).await;
    mount(&server, on("GET", None), ResponseTemplate::new(503)).await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(
        (r.reference.as_deref(), r.status),
        (Some(BATCH), ProviderStatus::Accepted),
        "created: never an error"
    );
}

// ---------- config ----------

#[test]
fn config_debug_shows_no_secret() {
    let c = builder("https://api-m.sandbox.paypal.com").build().unwrap();
    let p = PaypalProvider::new(c.clone()).unwrap();
    support::assert_debug_hides(&c, &p, &[CLIENT_ID, CLIENT_SECRET]);
}

#[test]
fn from_vars_defaults_to_the_sandbox_and_names_what_is_missing() {
    let vars = |extra: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            extra
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
                .or_else(|| match k {
                    "PAYPAL_CLIENT_ID" => Some(CLIENT_ID.to_string()),
                    "PAYPAL_CLIENT_SECRET" => Some(CLIENT_SECRET.to_string()),
                    _ => None,
                })
        }
    };
    let c = PaypalConfig::from_vars(vars(&[])).unwrap();
    assert_eq!(c.api_base(), "https://api-m.sandbox.paypal.com");
    let e = PaypalConfig::from_vars(vars(&[("PAYPAL_CLIENT_SECRET", "")])).unwrap_err();
    assert!(e.to_string().contains("PAYPAL_CLIENT_SECRET"));
    let e = PaypalConfig::from_vars(vars(&[("PAYPAL_WEBHOOK_VERIFICATION", "maybe")])).unwrap_err();
    assert!(e.to_string().contains("PAYPAL_WEBHOOK_VERIFICATION"));
    assert!(
        PaypalConfig::from_vars(vars(&[
            ("PAYPAL_WEBHOOK_VERIFICATION", "api"),
            ("PAYPAL_WEBHOOK_ID", "W")
        ]))
        .is_ok()
    );
}
