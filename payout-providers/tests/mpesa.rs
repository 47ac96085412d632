//! M-Pesa B2C adapter against a local wiremock server replaying Daraja's payloads (PROVIDERS.md §3).

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use payout_core::clock::ManualClock;
use payout_core::domain::{PayoutDestination, Provider};
use payout_core::funds::{BalanceAnswer, BalanceSource, FundsState};
use payout_core::money::{Currency, Money};
use payout_core::provider::{EventReference, PayoutInstruction, PayoutProvider, ProviderEventKind, ProviderStatus};
use payout_core::testkit::fixtures;
use payout_core::testkit::provider::{Deliveries, check_events, check_provider};
use payout_core::{ProviderErrorKind, WebhookError};
use payout_providers::RetryPolicy;
use payout_providers::mpesa::{
    BALANCE_RESULT_KIND, BALANCE_TIMEOUT_KIND, CALLBACK_KIND_HEADER, CALLBACK_TOKEN_HEADER, CLIENT_IP_HEADER,
    MpesaConfig, MpesaConfigBuilder, MpesaProvider, SIGNATURE_HEADER,
};
use serde_json::json;
use support::{lookup, mount, mount_first, mount_times, on, refusal, requests};
use wiremock::matchers::{body_json, body_partial_json, header, query_param};
use wiremock::{MockServer, Request, ResponseTemplate};

const CONSUMER_KEY: &str = "ck_daraja_test";
const CONSUMER_SECRET: &str = "cs_daraja_secret";
const CREDENTIAL: &str = "Q1JFREVOVElBTA==";
const TOKEN: &str = "path-token-7f3a";
const WHSEC: &str = "mpesa-hmac-secret";

fn builder(base: &str) -> MpesaConfigBuilder {
    MpesaConfig::builder()
        .consumer_key(CONSUMER_KEY)
        .consumer_secret(CONSUMER_SECRET)
        .shortcode("600996")
        .initiator_name("testapi")
        .security_credential(CREDENTIAL)
        .result_url("https://payouts.example/webhooks/mpesa/path-token-7f3a/result")
        .timeout_url("https://payouts.example/webhooks/mpesa/path-token-7f3a/timeout")
        .callback_token(TOKEN)
        .webhook_secret(WHSEC)
        .api_base(base)
        .retry(RetryPolicy::immediate(3))
        .timeout(Duration::from_millis(500))
}

fn provider(server: &MockServer) -> MpesaProvider {
    MpesaProvider::new(builder(&server.uri()).build().unwrap()).unwrap()
}

fn instruction() -> PayoutInstruction {
    fixtures::instruction(Provider::MpesaB2c)
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CONSUMER_KEY}:{CONSUMER_SECRET}"))
    )
}

fn token_body(token: &str, expires_in: serde_json::Value) -> serde_json::Value {
    json!({"access_token": token, "expires_in": expires_in})
}

async fn mount_token(server: &MockServer, expires_in: serde_json::Value, times: u64) {
    let token = on("GET", Some("/oauth/v1/generate"))
        .and(query_param("grant_type", "client_credentials"))
        .and(header("authorization", basic().as_str()));
    mount_times(server, token, answer(200, token_body("tok-1", expires_in)), times).await;
}

fn ack(key: &str) -> serde_json::Value {
    json!({"ConversationID": "AG_20240706_2010325b025970fbc403", "OriginatorConversationID": key,
           "ResponseCode": "0", "ResponseDescription": "Accept the service request successfully."})
}

fn gateway_error(code: &str, message: &str) -> serde_json::Value {
    json!({"requestId": "11728-2929992-1", "errorCode": code, "errorMessage": message})
}

fn invalid_token() -> serde_json::Value {
    gateway_error("400.003.01", "Invalid Access Token")
}

fn answer(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

/// A server that hands out one long-lived token.
async fn with_token() -> MockServer {
    let server = MockServer::start().await;
    mount_token(&server, json!("3599"), 1).await;
    server
}

async fn payments(server: &MockServer) -> Vec<Request> {
    requests(server, |r| r.url.path().ends_with("paymentrequest")).await
}

// ---------- send ----------

#[tokio::test]
async fn send_posts_the_b2c_request_with_our_key_and_whole_shillings() {
    let server = with_token().await;
    let payment = on("POST", Some("/mpesa/b2c/v3/paymentrequest"))
        .and(header("authorization", "Bearer tok-1"))
        .and(body_json(json!({
            "OriginatorConversationID": "po_testkit-1",
            "InitiatorName": "testapi",
            "SecurityCredential": CREDENTIAL,
            "CommandID": "BusinessPayment",
            "Amount": "500",
            "PartyA": "600996",
            "PartyB": "254708374149",
            "Remarks": "Consultations 2025-01-01..2025-01-31",
            "QueueTimeOutURL": "https://payouts.example/webhooks/mpesa/path-token-7f3a/timeout",
            "ResultURL": "https://payouts.example/webhooks/mpesa/path-token-7f3a/result",
            "Occassion": "po_testkit"
        })));
    mount_times(&server, payment, answer(200, ack("po_testkit-1")), 1).await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(r.status, ProviderStatus::Accepted, "an ack is not a payment");
    assert_eq!(r.reference.as_deref(), Some("AG_20240706_2010325b025970fbc403"));
    assert!(
        !r.note.contains("254708374149"),
        "the phone is masked in notes: {}",
        r.note
    );
}

/// A token is fetched once and reused (`expires_in` as a number or a string) until 60 s before it
/// expires: a 30 s token is inside that margin and fetched again for every call.
#[tokio::test]
async fn the_token_is_cached_until_shortly_before_it_expires() {
    for (expires_in, sends, fetches) in [(json!(3599), 3, 1), (json!("30"), 2, 2)] {
        let server = MockServer::start().await;
        mount_token(&server, expires_in, fetches).await;
        mount_times(&server, on("POST", None), answer(200, ack("k")), sends).await;
        let p = provider(&server);
        for n in 1..=sends {
            let mut i = instruction();
            i.idempotency_key = format!("po_testkit-{n}");
            p.send(&i).await.unwrap();
        }
    }
}

/// A 401, or a 400 with Daraja's invalid-token code: the token is fetched again once and the same
/// request (the same `OriginatorConversationID`) sent with it.
#[tokio::test]
async fn a_refused_token_is_refreshed_once() {
    for (status, refused) in [
        (401, invalid_token()),
        (400, invalid_token()),
        // Daraja's other invalid-token code arrives as HTTP 404.
        (404, gateway_error("404.001.03", "Invalid Access Token")),
    ] {
        let server = MockServer::start().await;
        let token = || on("GET", Some("/oauth/v1/generate"));
        mount_first(&server, token(), answer(200, token_body("tok-old", json!("3599")))).await;
        mount(&server, token(), answer(200, token_body("tok-new", json!("3599")))).await;
        let with = |t: &str| on("POST", None).and(header("authorization", format!("Bearer {t}").as_str()));
        mount_times(&server, with("tok-old"), answer(status, refused), 1).await;
        mount_times(&server, with("tok-new"), answer(200, ack("po_testkit-1")), 1).await;
        let r = provider(&server).send(&instruction()).await.unwrap();
        assert_eq!(r.status, ProviderStatus::Accepted);
        let sent = payments(&server).await;
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0].body, sent[1].body,
            "the same request, the same OriginatorConversationID"
        );
    }
}

#[tokio::test]
async fn a_token_refused_twice_is_final() {
    let server = MockServer::start().await;
    mount_token(&server, json!("3599"), 2).await;
    mount_times(&server, on("POST", None), answer(401, invalid_token()), 2).await;
    support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
}

#[tokio::test]
async fn amounts_m_pesa_cannot_take_fail_final_before_any_call() {
    let server = MockServer::start().await;
    let mut cases: Vec<PayoutInstruction> = [
        ("500.50", Currency::KES),
        ("9", Currency::KES),
        ("250001", Currency::KES),
    ]
    .into_iter()
    .chain([("500", Currency::USD)])
    .map(|(amount, currency)| {
        let mut i = instruction();
        i.amount = Money::parse(amount, currency).unwrap();
        i
    })
    .collect();
    let mut bad_phone = instruction();
    bad_phone.destination = PayoutDestination::MpesaPhone {
        phone: "255712345678".into(),
    };
    cases.push(bad_phone);
    // No token either: nothing reaches the server.
    support::assert_unpayable(&server, &provider(&server), &cases).await;
}

#[tokio::test]
async fn the_limits_themselves_are_payable() {
    let server = with_token().await;
    mount(&server, on("POST", None), answer(200, ack("k"))).await;
    let p = provider(&server);
    for (amount, sent) in [("10", "10"), ("250000.00", "250000")] {
        let mut i = instruction();
        i.amount = Money::parse(amount, Currency::KES).unwrap();
        p.send(&i).await.unwrap();
        let last = payments(&server).await.pop().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&last.body).unwrap();
        assert_eq!(body["Amount"], sent);
    }
}

#[tokio::test]
async fn a_duplicate_originator_conversation_id_is_already_sent_not_failed() {
    let server = with_token().await;
    let duplicate = gateway_error("500.002.1001", "Duplicate OriginatorConversationID.");
    mount_times(&server, on("POST", None), answer(500, duplicate), 1).await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(r.status, ProviderStatus::Accepted);
    assert!(r.note.contains("sent before"), "{}", r.note);
}

#[tokio::test]
async fn a_retry_that_meets_its_own_first_try_is_already_sent() {
    let server = with_token().await;
    mount_first(&server, on("POST", None), ResponseTemplate::new(503)).await;
    let duplicate = gateway_error("500.002.1001", "Duplicate");
    mount(&server, on("POST", None), answer(500, duplicate)).await;
    support::assert_sent(&provider(&server), &instruction(), ProviderStatus::Accepted).await;
}

#[tokio::test]
async fn an_invalid_payload_is_final() {
    let server = with_token().await;
    let invalid = gateway_error("400.002.05", "Invalid Request Payload");
    mount_times(&server, on("POST", None), answer(400, invalid), 1).await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
    assert_eq!(e.code.as_deref(), Some("400.002.05"));
}

/// Issue 15 item 4: Safaricom documents no list of non-zero `ResponseCode`s, and some mean "cached,
/// will be sent": the outcome is unknown (the payout stays PROCESSING for a status query), never a
/// failure that would let a retry pay again.
#[tokio::test]
async fn a_non_zero_response_code_is_an_unknown_outcome() {
    for (code, description) in [
        (json!("100000000"), "Request cached, waiting for resending"),
        (json!("1"), "Rejected"),
        (json!(2), "Throttled"),
    ] {
        let server = with_token().await;
        let unconfirmed = json!({"ConversationID": "", "OriginatorConversationID": "po_testkit-1",
                                 "ResponseCode": code, "ResponseDescription": description});
        mount(&server, on("POST", None), answer(200, unconfirmed)).await;
        let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Ambiguous).await;
        assert!(e.message.contains(description), "{code}: {e}");
        assert_eq!(
            payments(&server).await.len(),
            1,
            "{code}: sent once, never again with the key"
        );
    }
}

/// The documented refusals of a payment request are final: nothing was queued.
#[tokio::test]
async fn documented_refusals_are_final() {
    for code in ["400.002.02", "400.002.05", "404.001.04"] {
        let server = with_token().await;
        mount(
            &server,
            on("POST", None),
            answer(400, gateway_error(code, "Bad Request")),
        )
        .await;
        let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
        assert_eq!(e.code.as_deref(), Some(code));
    }
}

/// Spike arrest, 429 and 503: retried, and every try carries the same `OriginatorConversationID`.
#[tokio::test]
async fn spike_arrest_rate_limits_and_server_errors_are_retried_with_the_same_key() {
    for first in [
        answer(500, gateway_error("500.003.02", "Spike arrest violation")),
        ResponseTemplate::new(429),
        ResponseTemplate::new(503),
    ] {
        let server = with_token().await;
        mount_first(&server, on("POST", None), first).await;
        mount(&server, on("POST", None), answer(200, ack("po_testkit-1"))).await;
        provider(&server).send(&instruction()).await.unwrap();
        let sent = payments(&server).await;
        assert_eq!(sent.len(), 2);
        let ids: Vec<String> = sent
            .iter()
            .map(|r| {
                serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["OriginatorConversationID"].to_string()
            })
            .collect();
        assert_eq!(ids[0], ids[1], "every try carries the same OriginatorConversationID");
    }
}

#[tokio::test]
async fn timeout_is_ambiguous() {
    let server = with_token().await;
    let slow = answer(200, ack("k")).set_delay(Duration::from_secs(3));
    mount_times(&server, on("POST", None), slow, 1).await;
    support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Ambiguous).await;
}

#[tokio::test]
async fn a_token_endpoint_timeout_is_retryable_since_nothing_was_sent() {
    let server = MockServer::start().await;
    let slow = answer(200, token_body("t", json!(3599))).set_delay(Duration::from_secs(3));
    mount(&server, on("GET", None), slow).await;
    let p = MpesaProvider::new(builder(&server.uri()).retry(RetryPolicy::no_retries()).build().unwrap()).unwrap();
    support::assert_send_fails(&p, &instruction(), ProviderErrorKind::Retryable).await;
    assert!(payments(&server).await.is_empty());
}

#[tokio::test]
async fn bad_consumer_credentials_are_final() {
    let server = MockServer::start().await;
    mount(
        &server,
        on("GET", None),
        answer(400, gateway_error("400.008.02", "Invalid grant type")),
    )
    .await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
    assert!(!e.to_string().contains(CONSUMER_SECRET));
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let p = MpesaProvider::new(builder(&support::refused_base()).build().unwrap()).unwrap();
    support::assert_send_fails(&p, &instruction(), ProviderErrorKind::Retryable).await;
}

// ---------- lookup ----------

#[tokio::test]
async fn lookup_queries_the_transaction_status_and_cannot_tell() {
    let server = with_token().await;
    let query = on("POST", Some("/mpesa/transactionstatus/v1/query")).and(body_partial_json(json!({
        "Initiator": "testapi", "CommandID": "TransactionStatusQuery", "OriginalConversationID": "po_testkit-1",
        "PartyA": "600996", "IdentifierType": "4",
        "ResultURL": "https://payouts.example/webhooks/mpesa/path-token-7f3a/status"
    })));
    mount_times(&server, query, answer(200, ack("q-1")), 1).await;
    let mut attempt = lookup(&instruction(), Some("AG_20240706_2010325b025970fbc403"));
    attempt.instruction = None;
    let status = provider(&server).lookup(&attempt).await.unwrap();
    assert!(
        matches!(&status, ProviderStatus::Undetermined(why) if why.contains("callback")),
        "the answer comes later, asynchronously: {status:?}"
    );
}

/// Issue 15 item 4: an attempt whose acknowledgement was lost has no ConversationID; it is queried
/// by its `OriginatorConversationID` alone, and the answer goes to the status path, never to the
/// payment ResultURL.
#[tokio::test]
async fn an_attempt_whose_ack_was_lost_is_queried_by_its_originator_conversation_id() {
    let server = with_token().await;
    let query = on("POST", Some("/mpesa/transactionstatus/v1/query"));
    mount_times(&server, query, answer(200, ack("q-2")), 1).await;
    let status = provider(&server).lookup(&lookup(&instruction(), None)).await.unwrap();
    assert!(matches!(status, ProviderStatus::Undetermined(_)), "{status:?}");
    let sent = requests(&server, |r| r.url.path().ends_with("/query")).await;
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["OriginalConversationID"], "po_testkit-1");
    assert!(body.get("TransactionID").is_none(), "{body}");
    assert_eq!(
        body["ResultURL"],
        "https://payouts.example/webhooks/mpesa/path-token-7f3a/status"
    );
}

#[test]
fn status_results_have_their_own_path_by_default() {
    for (result, status) in [
        ("https://payouts.example/r", "https://payouts.example/r/status"),
        (
            "https://h.example/api/webhooks/mpesa-b2c/tok",
            "https://h.example/api/webhooks/mpesa-b2c/tok/status",
        ),
        (
            "https://h.example/api/webhooks/mpesa-b2c/tok/result",
            "https://h.example/api/webhooks/mpesa-b2c/tok/status",
        ),
        (
            "https://h.example/api/webhooks/mpesa-b2c?x=1",
            "https://h.example/api/webhooks/mpesa-b2c/status?x=1",
        ),
    ] {
        let c = MpesaConfig::from_vars(vars(&[("MPESA_RESULT_URL", result)])).unwrap();
        assert!(format!("{c:?}").contains("result_url_set"));
        let p = MpesaProvider::new(c).unwrap();
        assert_eq!(p.status_result_url(), status, "{result}");
    }
    let own = MpesaConfig::from_vars(vars(&[("MPESA_STATUS_RESULT_URL", "https://other.example/s")])).unwrap();
    assert_eq!(
        MpesaProvider::new(own).unwrap().status_result_url(),
        "https://other.example/s"
    );
}

#[tokio::test]
async fn passes_the_provider_conformance_check() {
    let server = with_token().await;
    let payments = on("POST", Some("/mpesa/b2c/v3/paymentrequest"));
    mount(&server, payments, answer(200, ack("po_testkit-1"))).await;
    mount(
        &server,
        on("POST", Some("/mpesa/transactionstatus/v1/query")),
        answer(200, ack("q")),
    )
    .await;
    check_provider(&provider(&server), instruction()).await;
}

// ---------- config ----------

#[test]
fn config_debug_shows_no_secret() {
    let c = builder("https://sandbox.safaricom.co.ke").build().unwrap();
    let p = MpesaProvider::new(c.clone()).unwrap();
    support::assert_debug_hides(&c, &p, &[CONSUMER_KEY, CONSUMER_SECRET, CREDENTIAL, TOKEN, WHSEC]);
}

fn vars(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut all: Vec<(String, String)> = [
        ("MPESA_CONSUMER_KEY", CONSUMER_KEY),
        ("MPESA_CONSUMER_SECRET", CONSUMER_SECRET),
        ("MPESA_SHORTCODE", "600996"),
        ("MPESA_INITIATOR_NAME", "testapi"),
        ("MPESA_B2C_SECURITY_CREDENTIAL", CREDENTIAL),
        ("MPESA_RESULT_URL", "https://payouts.example/r"),
        ("MPESA_TIMEOUT_URL", "https://payouts.example/t"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        all.retain(|(name, _)| name != k);
        if !v.is_empty() {
            all.push((k.to_string(), v.to_string()));
        }
    }
    move |k| all.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone())
}

#[test]
fn from_vars_defaults_to_the_sandbox_and_names_what_is_missing() {
    let c = MpesaConfig::from_vars(vars(&[])).unwrap();
    assert_eq!(c.api_base(), "https://sandbox.safaricom.co.ke");
    let missing = |name: &str| MpesaConfig::from_vars(vars(&[(name, "")])).unwrap_err().to_string();
    assert!(missing("MPESA_CONSUMER_KEY").contains("MPESA_B2C_CONSUMER_KEY"));
    assert!(missing("MPESA_SHORTCODE").contains("MPESA_SHORTCODE"));
    assert!(missing("MPESA_RESULT_URL").contains("MPESA_RESULT_URL"));
    assert!(missing("MPESA_B2C_SECURITY_CREDENTIAL").contains("MPESA_INITIATOR_PASSWORD"));
    let e = MpesaConfig::from_vars(vars(&[
        ("MPESA_B2C_SECURITY_CREDENTIAL", ""),
        ("MPESA_INITIATOR_PASSWORD", "pw"),
    ]))
    .unwrap_err();
    assert!(e.to_string().contains("MPESA_CERT_PATH"), "{e}");
    let e = MpesaConfig::from_vars(vars(&[("MPESA_CALLBACK_IPS", "1.2.3.4, nope")])).unwrap_err();
    assert!(e.to_string().contains("MPESA_CALLBACK_IPS"));
}

#[tokio::test]
async fn the_security_credential_is_computed_from_the_certificate() {
    let key = support::certs::test_key();
    let now = support::certs::unix_now();
    let pem = support::certs::self_signed_pem(key, "apicrypt.safaricom.co.ke", now - 3600, now + 3600);
    let dir = std::env::temp_dir().join(format!("payouts-mpesa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("SandboxCertificate.cer");
    std::fs::write(&cert_path, &pem).unwrap();

    let server = with_token().await;
    mount(&server, on("POST", None), answer(200, ack("k"))).await;
    let cert_path_text = cert_path.to_string_lossy().into_owned();
    let base = server.uri();
    let c = MpesaConfig::from_vars(vars(&[
        ("MPESA_B2C_SECURITY_CREDENTIAL", ""),
        ("MPESA_INITIATOR_PASSWORD", "Safaricom999!*!"),
        ("MPESA_CERT_PATH", &cert_path_text),
        ("MPESA_API_BASE", &base),
    ]))
    .unwrap();
    assert!(!format!("{c:?}").contains("Safaricom999"));
    MpesaProvider::new(c).unwrap().send(&instruction()).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&payments(&server).await[0].body).unwrap();
    let encrypted = base64::engine::general_purpose::STANDARD
        .decode(body["SecurityCredential"].as_str().unwrap())
        .unwrap();
    let plain = key.decrypt(rsa::Pkcs1v15Encrypt, &encrypted).unwrap();
    assert_eq!(plain, b"Safaricom999!*!");

    let der = x509_der(&pem);
    let from_der = payout_providers::mpesa::security_credential(&"pw".into(), &der).unwrap();
    let plain = key
        .decrypt(
            rsa::Pkcs1v15Encrypt,
            &base64::engine::general_purpose::STANDARD
                .decode(from_der.expose())
                .unwrap(),
        )
        .unwrap();
    assert_eq!(plain, b"pw");
    assert!(payout_providers::mpesa::security_credential(&"pw".into(), b"not a certificate").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

fn x509_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

// ---------- callbacks ----------

fn result_body(code: serde_json::Value, desc: &str) -> Vec<u8> {
    let mut result = json!({
        "ResultType": 0, "ResultCode": code, "ResultDesc": desc,
        "OriginatorConversationID": "po_testkit-1", "ConversationID": "AG_20240706_2010325b025970fbc403",
        "TransactionID": "SG632NMUAB",
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit"}}
    });
    if code == json!(0) || code == json!("0") {
        result["ResultParameters"] = json!({"ResultParameter": [
            {"Key": "TransactionAmount", "Value": 10}, {"Key": "TransactionReceipt", "Value": "SG632NMUAB"},
            {"Key": "ReceiverPartyPublicName", "Value": "254705912645 - NAME"},
            {"Key": "TransactionCompletedDateTime", "Value": "06.07.2024 22:48:52"},
            {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"}]});
    }
    serde_json::to_vec(&json!({"Result": result})).unwrap()
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

fn signed(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CALLBACK_TOKEN_HEADER, HeaderValue::from_static(TOKEN));
    h.insert(SIGNATURE_HEADER, HeaderValue::from_str(&hmac_hex(WHSEC, body)).unwrap());
    h
}

fn offline() -> MpesaProvider {
    MpesaProvider::new(builder("http://127.0.0.1:9").build().unwrap()).unwrap()
}

/// M-Pesa calls back only to the result URL given with each of our requests, so no authentic
/// callback is about something we never sent: the check has no foreign delivery, and a result for
/// an attempt not recorded yet names it (to be refused for redelivery).
#[tokio::test]
async fn passes_the_events_check() {
    let early = result_body(json!(0), "The service request is processed successfully.");
    let h = signed(&early);
    let deliveries = Deliveries {
        foreign: None,
        ours: (&h, &early),
        partial_reversal: None,
    };
    check_events(&offline(), deliveries).await;
}

#[tokio::test]
async fn a_success_result_is_paid_with_every_reference() {
    for code in [json!(0), json!("0")] {
        let body = result_body(code, "The service request is processed successfully.");
        let events = offline().verify_webhook(&signed(&body), &body).await.unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, ProviderEventKind::Paid);
        assert_eq!(e.event_id, "mpesa:AG_20240706_2010325b025970fbc403:0");
        assert_eq!(
            e.references,
            vec![
                EventReference::ProviderReference("AG_20240706_2010325b025970fbc403".into()),
                EventReference::IdempotencyKey("po_testkit-1".into()),
                EventReference::ProviderReference("SG632NMUAB".into()),
            ]
        );
    }
}

#[tokio::test]
async fn failure_results_carry_the_codes_meaning() {
    let p = offline();
    for (code, meaning) in [
        (json!(1), "insufficient balance"),
        (json!("2001"), "invalid initiator information"),
    ] {
        let body = result_body(code.clone(), "The initiator information is invalid.");
        let events = p.verify_webhook(&signed(&body), &body).await.unwrap();
        match &events[0].kind {
            ProviderEventKind::Failed { reason } => assert!(reason.contains(meaning), "{reason}"),
            other => panic!("{code}: expected Failed, got {other:?}"),
        }
    }
    // Issue 15 item 4: a catch-all, a duplicate, a code we do not know, or a result of ResultType 1
    // may have moved money: unknown until a status query confirms it, never FAILED.
    for code in [json!(15), json!(17), json!("26"), json!(9999)] {
        let body = result_body(code.clone(), "The service request failed");
        assert!(
            matches!(
                p.verify_webhook(&signed(&body), &body).await.unwrap()[0].kind,
                ProviderEventKind::Unknown { .. }
            ),
            "{code}"
        );
    }
    let mut type_1: serde_json::Value = serde_json::from_slice(&result_body(json!(2001), "x")).unwrap();
    type_1["Result"]["ResultType"] = json!(1);
    let body = serde_json::to_vec(&type_1).unwrap();
    assert!(matches!(
        p.verify_webhook(&signed(&body), &body).await.unwrap()[0].kind,
        ProviderEventKind::Unknown { .. }
    ));
}

/// A callback that does not echo our `OriginatorConversationID` is still matched by its
/// `ConversationID` or its `TransactionID`.
#[tokio::test]
async fn callbacks_name_the_payment_by_conversation_originator_or_transaction_id() {
    let mut result: serde_json::Value = serde_json::from_slice(&result_body(json!(0), "ok")).unwrap();
    result["Result"]
        .as_object_mut()
        .unwrap()
        .remove("OriginatorConversationID");
    let body = serde_json::to_vec(&result).unwrap();
    let e = &offline().verify_webhook(&signed(&body), &body).await.unwrap()[0];
    assert_eq!(
        e.references,
        vec![
            EventReference::ProviderReference("AG_20240706_2010325b025970fbc403".into()),
            EventReference::ProviderReference("SG632NMUAB".into()),
        ]
    );
}

#[tokio::test]
async fn a_queue_timeout_is_unknown_never_failed() {
    let p = offline();
    let body = result_body(json!(1), "Request timed out in queue");
    let mut h = signed(&body);
    h.insert(CALLBACK_KIND_HEADER, HeaderValue::from_static("timeout"));
    let e = &p.verify_webhook(&h, &body).await.unwrap()[0];
    assert!(matches!(e.kind, ProviderEventKind::Unknown { .. }), "{:?}", e.kind);
    assert_eq!(e.event_id, "mpesa:AG_20240706_2010325b025970fbc403:timeout");
    // A timeout shape without a ResultCode, on the result URL, is also unknown.
    let body = serde_json::to_vec(&json!({"Result": {"OriginatorConversationID": "po_testkit-1",
        "ConversationID": "AG_1", "ResultDesc": "timeout"}}))
    .unwrap();
    assert!(matches!(
        p.verify_webhook(&signed(&body), &body).await.unwrap()[0].kind,
        ProviderEventKind::Unknown { .. }
    ));
}

#[tokio::test]
async fn a_status_query_result_names_the_payment_by_its_parameters() {
    let body = serde_json::to_vec(&json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok",
        "OriginatorConversationID": "query-own-id", "ConversationID": "AG_query", "TransactionID": "SG632NMUAB",
        "ResultParameters": {"ResultParameter": [
            {"Key": "ReceiptNo", "Value": "SG632NMUAB"}, {"Key": "TransactionStatus", "Value": "Completed"},
            {"Key": "Conversation ID", "Value": "AG_20240706_2010325b025970fbc403"},
            {"Key": "Originator Conversation ID", "Value": "po_testkit-1"}]}}}))
    .unwrap();
    let mut h = signed(&body);
    h.insert(CALLBACK_KIND_HEADER, HeaderValue::from_static("status"));
    let e = &offline().verify_webhook(&h, &body).await.unwrap()[0];
    assert_eq!(e.kind, ProviderEventKind::Paid);
    assert!(
        e.references
            .contains(&EventReference::IdempotencyKey("po_testkit-1".into()))
    );
    assert!(
        !e.references
            .contains(&EventReference::IdempotencyKey("query-own-id".into()))
    );
}

/// A status query's result: `Completed` pays, `Failed` (confirmed by the query) fails, a pending
/// status or a query that itself failed leaves the outcome unknown.
#[tokio::test]
async fn a_confirmed_failed_status_query_fails_and_anything_unclear_stays_unknown() {
    let status_body = |code: serde_json::Value, status: &str| {
        serde_json::to_vec(
            &json!({"Result": {"ResultType": 0, "ResultCode": code, "ResultDesc": "done",
            "OriginatorConversationID": "query-own-id", "ConversationID": "AG_query",
            "ResultParameters": {"ResultParameter": [
                {"Key": "TransactionStatus", "Value": status},
                {"Key": "Originator Conversation ID", "Value": "po_testkit-1"}]}}}),
        )
        .unwrap()
    };
    for (code, status, paid, failed) in [
        (json!(0), "Completed", true, false),
        (json!(0), "Failed", false, true),
        (json!(0), "Declined", false, true),
        (json!(0), "Pending", false, false),
        (json!(2001), "Failed", false, false),
    ] {
        let body = status_body(code.clone(), status);
        let mut h = signed(&body);
        h.insert(CALLBACK_KIND_HEADER, HeaderValue::from_static("status"));
        let kind = offline().verify_webhook(&h, &body).await.unwrap()[0].kind.clone();
        assert_eq!(kind == ProviderEventKind::Paid, paid, "{code} {status}: {kind:?}");
        assert_eq!(
            matches!(kind, ProviderEventKind::Failed { .. }),
            failed,
            "{code} {status}: {kind:?}"
        );
    }
}

#[tokio::test]
async fn callbacks_with_a_wrong_or_missing_token_are_refused() {
    let p = offline();
    let body = result_body(json!(0), "ok");
    let mut h = signed(&body);
    h.insert(CALLBACK_TOKEN_HEADER, HeaderValue::from_static("guess"));
    assert_eq!(refusal(&p, &h, &body).await, WebhookError::BadSignature);
    h.remove(CALLBACK_TOKEN_HEADER);
    assert!(matches!(refusal(&p, &h, &body).await, WebhookError::MissingHeader(_)));
}

#[tokio::test]
async fn callbacks_with_a_wrong_secret_or_tampered_body_are_refused() {
    let p = offline();
    let body = result_body(json!(0), "ok");
    let mut h = signed(&body);
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&hmac_hex("other-secret", &body)).unwrap(),
    );
    assert_eq!(refusal(&p, &h, &body).await, WebhookError::BadSignature);
    let h = signed(&body);
    let tampered = result_body(json!(0), "ok!");
    assert_eq!(refusal(&p, &h, &tampered).await, WebhookError::BadSignature);
    let mut h = signed(&body);
    h.remove(SIGNATURE_HEADER);
    assert!(matches!(refusal(&p, &h, &body).await, WebhookError::MissingHeader(_)));
}

#[tokio::test]
async fn the_ip_allowlist_reads_the_hosts_header_or_the_last_forwarded_entry() {
    let c = builder("http://127.0.0.1:9")
        .allowed_ips(["196.201.214.200".parse().unwrap()])
        .build()
        .unwrap();
    let p = MpesaProvider::new(c).unwrap();
    let body = result_body(json!(0), "ok");
    let mut h = signed(&body);
    assert!(matches!(refusal(&p, &h, &body).await, WebhookError::Unauthorized(_)));
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("196.201.214.200, 203.0.113.9"),
    );
    assert!(
        matches!(refusal(&p, &h, &body).await, WebhookError::Unauthorized(_)),
        "a spoofed first hop is not trusted"
    );
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("203.0.113.9, 196.201.214.200"),
    );
    assert!(p.verify_webhook(&h, &body).await.is_ok());
    h.insert(CLIENT_IP_HEADER, HeaderValue::from_static("203.0.113.9"));
    assert!(matches!(refusal(&p, &h, &body).await, WebhookError::Unauthorized(_)));
}

#[tokio::test]
async fn without_any_callback_authentication_everything_is_refused() {
    let c = MpesaConfig::from_vars(vars(&[])).unwrap();
    let p = MpesaProvider::new(c).unwrap();
    assert!(!p.capabilities().webhooks);
    let body = result_body(json!(0), "ok");
    assert!(matches!(
        refusal(&p, &signed(&body), &body).await,
        WebhookError::Unavailable(_)
    ));
}

#[tokio::test]
async fn only_the_token_or_only_the_hmac_is_enough_when_only_one_is_configured() {
    let only_token = MpesaProvider::new(
        MpesaConfig::from_vars(vars(&[
            ("MPESA_CALLBACK_TOKEN", TOKEN),
            ("MPESA_API_BASE", "http://127.0.0.1:9"),
        ]))
        .unwrap(),
    )
    .unwrap();
    let body = result_body(json!(0), "ok");
    let mut h = HeaderMap::new();
    h.insert(CALLBACK_TOKEN_HEADER, HeaderValue::from_static(TOKEN));
    assert!(only_token.verify_webhook(&h, &body).await.is_ok());

    let only_hmac =
        MpesaProvider::new(MpesaConfig::from_vars(vars(&[("MPESA_WEBHOOK_SECRET", WHSEC)])).unwrap()).unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&hmac_hex(WHSEC, &body)).unwrap(),
    );
    assert!(only_hmac.verify_webhook(&h, &body).await.is_ok());
}

#[tokio::test]
async fn an_authentic_but_unreadable_callback_is_malformed() {
    let body = b"{\"not\":\"a result\"}".to_vec();
    assert!(matches!(
        refusal(&offline(), &signed(&body), &body).await,
        WebhookError::Malformed(_)
    ));
}

// ---------- balance (funds check) ----------

const NOW: i64 = 1_720_000_000;

fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(NOW + secs, 0).unwrap()
}

/// An adapter on `server` whose clock the test moves.
fn clocked(server: &MockServer) -> (MpesaProvider, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at(0)));
    let c = builder(&server.uri())
        .clock(clock.clone())
        .balance_max_age(Duration::from_secs(300))
        .balance_wait(Duration::from_secs(120))
        .build()
        .unwrap();
    (MpesaProvider::new(c).unwrap(), clock)
}

fn balance_ack() -> serde_json::Value {
    json!({"OriginatorConversationID": "515f-4ccb-b4a5-2b9a8b5d0c1e1017", "ConversationID": "AG_20240706_00004e48cf7e3533f581",
           "ResponseCode": "0", "ResponseDescription": "Accept the service request successfully."})
}

fn balance_query() -> wiremock::MockBuilder {
    on("POST", Some("/mpesa/accountbalance/v1/query"))
}

const ACCOUNTS: &str = "Working Account|KES|700000.00|700000.00|0.00|0.00&Float Account|KES|0.00|0.00|0.00|0.00\
    &Utility Account|KES|481000.50|481000.50|0.00|0.00&Charges Paid Account|KES|-1540.00|-1540.00|0.00|0.00\
    &Organization Settlement Account|KES|0.00|0.00|0.00|0.00";

fn balance_result(code: serde_json::Value, accounts: Option<&str>) -> Vec<u8> {
    let mut result = json!({
        "ResultType": 0, "ResultCode": code, "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "515f-4ccb-b4a5-2b9a8b5d0c1e1017", "ConversationID": "AG_20240706_00004e48cf7e3533f581",
        "TransactionID": "SG60000000",
        "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://internalsandbox.safaricom.co.ke/mpesa/abresults/v1/submit"}}
    });
    if let Some(a) = accounts {
        result["ResultParameters"] = json!({"ResultParameter": [
            {"Key": "AccountBalance", "Value": a}, {"Key": "BOCompletedTime", "Value": 20240706224852_i64}]});
    }
    serde_json::to_vec(&json!({"Result": result})).unwrap()
}

/// Signed and token-bearing, as the host passes a callback of `kind` on.
fn callback_headers(body: &[u8], kind: &'static str) -> HeaderMap {
    let mut h = signed(body);
    h.insert(CALLBACK_KIND_HEADER, HeaderValue::from_static(kind));
    h
}

fn kes(s: &str) -> Money {
    Money::parse(s, Currency::KES).unwrap()
}

/// The query Daraja documents, to the balance callback URLs beside the result URL; the answer is
/// pending until the callback comes, and no second query goes out meanwhile.
#[tokio::test]
async fn balance_posts_an_account_balance_query_and_is_pending() {
    let server = with_token().await;
    let query = balance_query()
        .and(header("authorization", "Bearer tok-1"))
        .and(body_json(json!({
            "Initiator": "testapi",
            "SecurityCredential": CREDENTIAL,
            "CommandID": "AccountBalance",
            "PartyA": "600996",
            "IdentifierType": "4",
            "Remarks": "Funds check before payouts",
            "QueueTimeOutURL": "https://payouts.example/webhooks/mpesa/path-token-7f3a/balance/timeout",
            "ResultURL": "https://payouts.example/webhooks/mpesa/path-token-7f3a/balance/result"
        })));
    mount_times(&server, query, answer(200, balance_ack()), 1).await;
    let (p, clock) = clocked(&server);
    let pending = BalanceAnswer::Pending { requested_at: at(0) };
    assert_eq!(BalanceSource::balance(&p).await.unwrap(), pending);
    clock.advance(chrono::Duration::seconds(119));
    assert_eq!(
        BalanceSource::balance(&p).await.unwrap(),
        pending,
        "still awaited: not asked again"
    );
}

/// Pending, then the result callback makes it known (the Utility Account, exactly, as of the
/// callback's arrival) until it is older than the max age, when it is asked for again.
#[tokio::test]
async fn a_balance_result_makes_it_known_until_it_is_too_old() {
    let server = with_token().await;
    mount_times(&server, balance_query(), answer(200, balance_ack()), 2).await;
    let (p, clock) = clocked(&server);
    assert!(matches!(
        BalanceSource::balance(&p).await.unwrap(),
        BalanceAnswer::Pending { .. }
    ));

    clock.advance(chrono::Duration::seconds(4));
    let body = balance_result(json!(0), Some(ACCOUNTS));
    let events = p
        .verify_webhook(&callback_headers(&body, BALANCE_RESULT_KIND), &body)
        .await
        .unwrap();
    assert!(events.is_empty(), "a balance names no payout");
    let known = BalanceAnswer::Known {
        available: vec![kes("481000.50")],
        as_of: at(4),
    };
    assert_eq!(BalanceSource::balance(&p).await.unwrap(), known);
    clock.advance(chrono::Duration::seconds(300));
    assert_eq!(
        BalanceSource::balance(&p).await.unwrap(),
        known,
        "300 s old: still fresh"
    );
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(
        BalanceSource::balance(&p).await.unwrap(),
        BalanceAnswer::Pending { requested_at: at(305) },
        "too old: asked again, and pending meanwhile"
    );
}

/// A non-zero ResultCode: unknown with its meaning, for the wait; then asked again. The result
/// parameter may arrive as a string or a number; the code too.
#[tokio::test]
async fn a_refused_balance_query_is_unknown_with_the_reason_then_asked_again() {
    let server = with_token().await;
    mount_times(&server, balance_query(), answer(200, balance_ack()), 2).await;
    let (p, clock) = clocked(&server);
    BalanceSource::balance(&p).await.unwrap();
    let body = balance_result(json!("2001"), None);
    p.verify_webhook(&callback_headers(&body, BALANCE_RESULT_KIND), &body)
        .await
        .unwrap();
    let BalanceAnswer::Unknown { why } = BalanceSource::balance(&p).await.unwrap() else {
        panic!("a refused query is unknown")
    };
    assert!(why.contains("2001") && why.contains("invalid initiator"), "{why}");
    clock.advance(chrono::Duration::seconds(120));
    assert!(matches!(
        BalanceSource::balance(&p).await.unwrap(),
        BalanceAnswer::Pending { .. }
    ));
}

/// A queue timeout at the balance's own timeout URL ends the wait (never read as a payment's).
#[tokio::test]
async fn a_balance_queue_timeout_is_unknown_and_names_no_payout() {
    let server = with_token().await;
    mount_times(&server, balance_query(), answer(200, balance_ack()), 1).await;
    let (p, _clock) = clocked(&server);
    BalanceSource::balance(&p).await.unwrap();
    let body = serde_json::to_vec(
        &json!({"Result": {"ResultType": 1, "ResultCode": 1, "ResultDesc": "timeout",
        "ConversationID": "AG_20240706_00004e48cf7e3533f581"}}),
    )
    .unwrap();
    let events = p
        .verify_webhook(&callback_headers(&body, BALANCE_TIMEOUT_KIND), &body)
        .await
        .unwrap();
    assert!(events.is_empty());
    assert!(matches!(
        BalanceSource::balance(&p).await.unwrap(),
        BalanceAnswer::Unknown { why } if why.contains("timed out")
    ));
}

/// Unauthenticated balance callbacks are refused before the body is read and change nothing; an
/// authentic but unreadable one is malformed and changes nothing either.
#[tokio::test]
async fn unauthenticated_or_malformed_balance_callbacks_change_nothing() {
    let server = with_token().await;
    mount_times(&server, balance_query(), answer(200, balance_ack()), 1).await;
    let (p, _clock) = clocked(&server);
    let pending = BalanceSource::balance(&p).await.unwrap();
    let body = balance_result(json!(0), Some(ACCOUNTS));

    let mut wrong_token = callback_headers(&body, BALANCE_RESULT_KIND);
    wrong_token.insert(CALLBACK_TOKEN_HEADER, HeaderValue::from_static("guess"));
    assert_eq!(refusal(&p, &wrong_token, &body).await, WebhookError::BadSignature);
    let mut unsigned = callback_headers(&body, BALANCE_RESULT_KIND);
    unsigned.remove(SIGNATURE_HEADER);
    assert!(matches!(
        refusal(&p, &unsigned, &body).await,
        WebhookError::MissingHeader(_)
    ));
    let tampered = balance_result(json!(0), Some("Utility Account|KES|9999999.00|9999999.00|0.00|0.00"));
    assert_eq!(
        refusal(&p, &callback_headers(&body, BALANCE_RESULT_KIND), &tampered).await,
        WebhookError::BadSignature
    );
    for bad in [
        b"not json".to_vec(),
        br#"{"Result": {"ConversationID": "AG_1"}}"#.to_vec(),
        balance_result(json!(0), None),
    ] {
        let e = refusal(&p, &callback_headers(&bad, BALANCE_RESULT_KIND), &bad).await;
        assert!(matches!(e, WebhookError::Malformed(_)), "{e}");
    }
    assert_eq!(BalanceSource::balance(&p).await.unwrap(), pending, "still awaited");

    // A balance without the Utility Account says so.
    let other = balance_result(json!(0), Some("Working Account|KES|1.00|1.00|0.00|0.00"));
    let e = refusal(&p, &callback_headers(&other, BALANCE_RESULT_KIND), &other).await;
    assert!(matches!(e, WebhookError::Malformed(_)), "{e}");
    assert!(matches!(
        BalanceSource::balance(&p).await.unwrap(),
        BalanceAnswer::Unknown { why } if why.contains("Utility Account")
    ));
}

/// A B2C result at the payment result URL is still a payment result (never a balance).
#[tokio::test]
async fn payment_results_are_not_read_as_balances() {
    let server = MockServer::start().await;
    let (p, _clock) = clocked(&server);
    let body = result_body(json!(0), "ok");
    let events = p.verify_webhook(&signed(&body), &body).await.unwrap();
    assert_eq!(events[0].kind, ProviderEventKind::Paid);
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// Checks that ask at the same time send one query; clones share what is kept.
#[tokio::test]
async fn concurrent_checks_send_one_query_and_clones_share_the_balance() {
    let server = with_token().await;
    mount_times(&server, balance_query(), answer(200, balance_ack()), 1).await;
    let (p, _clock) = clocked(&server);
    let clone = p.clone();
    let (a, b) = tokio::join!(BalanceSource::balance(&p), BalanceSource::balance(&clone));
    assert_eq!(a.unwrap(), b.unwrap());
    let body = balance_result(json!(0), Some(ACCOUNTS));
    clone
        .verify_webhook(&callback_headers(&body, BALANCE_RESULT_KIND), &body)
        .await
        .unwrap();
    assert!(matches!(
        BalanceSource::balance(&p).await.unwrap(),
        BalanceAnswer::Known { .. }
    ));
}

/// A query Daraja does not accept is an error classified as a payment's (the service shows it as
/// unknown), and is not remembered as awaited.
#[tokio::test]
async fn a_refused_query_request_is_a_classified_error() {
    let server = with_token().await;
    let refused = answer(400, gateway_error("400.002.05", "Invalid Request Payload"));
    mount_times(&server, balance_query(), refused, 2).await;
    let (p, _clock) = clocked(&server);
    for _ in 0..2 {
        let e = BalanceSource::balance(&p).await.unwrap_err();
        assert_eq!(e.kind, ProviderErrorKind::Final, "{e}");
        assert_eq!(e.code.as_deref(), Some("400.002.05"));
        assert!(!e.to_string().contains(CREDENTIAL));
    }
}

/// Through the engine: the same adapter is the provider (callbacks reach it through
/// `handle_webhook`) and the balance source; the check is pending, then known.
#[tokio::test]
async fn the_service_check_is_pending_then_known_after_the_callback() {
    let server = with_token().await;
    mount_times(&server, balance_query(), answer(200, balance_ack()), 1).await;
    let (p, _clock) = clocked(&server);
    let p = Arc::new(p);
    let service = payout_core::PayoutService::builder()
        .store(Arc::new(payout_core::memory::MemoryStore::new()))
        .directory(Arc::new(payout_core::source::StaticDirectory::new([])))
        .provider(p.clone())
        .balance_source(p)
        .build()
        .unwrap();
    let needs = [(Provider::MpesaB2c, kes("481000.51"))];
    let report = service.check_funds(&needs).await.unwrap();
    assert!(matches!(report.lines[0].state, FundsState::Pending { .. }));
    assert!(!report.blocks());

    let body = balance_result(json!(0), Some(ACCOUNTS));
    let delivered = service
        .handle_webhook(Provider::MpesaB2c, &callback_headers(&body, BALANCE_RESULT_KIND), &body)
        .await
        .unwrap();
    assert!(delivered.events.is_empty());
    let report = service.check_funds(&needs).await.unwrap();
    assert_eq!(report.lines[0].available, Some(kes("481000.50")));
    assert_eq!(report.lines[0].state, FundsState::Shortfall { short_by: kes("0.01") });
    assert!(report.blocks());
}

#[test]
fn balance_callbacks_have_their_own_paths_by_default() {
    for (result, balance, timeout) in [
        (
            "https://payouts.example/r",
            "https://payouts.example/r/balance/result",
            "https://payouts.example/r/balance/timeout",
        ),
        (
            "https://h.example/api/webhooks/mpesa-b2c/tok",
            "https://h.example/api/webhooks/mpesa-b2c/tok/balance/result",
            "https://h.example/api/webhooks/mpesa-b2c/tok/balance/timeout",
        ),
        (
            "https://h.example/api/webhooks/mpesa-b2c/tok/result",
            "https://h.example/api/webhooks/mpesa-b2c/tok/balance/result",
            "https://h.example/api/webhooks/mpesa-b2c/tok/balance/timeout",
        ),
    ] {
        let p = MpesaProvider::new(MpesaConfig::from_vars(vars(&[("MPESA_RESULT_URL", result)])).unwrap()).unwrap();
        assert_eq!(
            (p.balance_result_url(), p.balance_timeout_url()),
            (balance, timeout),
            "{result}"
        );
    }
    let own = MpesaConfig::from_vars(vars(&[
        ("MPESA_BALANCE_RESULT_URL", "https://other.example/b/result"),
        ("MPESA_BALANCE_ACCOUNT", "Working Account"),
        ("MPESA_BALANCE_MAX_AGE_SECS", "60"),
        ("MPESA_BALANCE_WAIT_SECS", "30"),
    ]))
    .unwrap();
    let shown = format!("{own:?}");
    assert!(
        shown.contains("Working Account") && shown.contains("60s") && shown.contains("30s"),
        "{shown}"
    );
    let p = MpesaProvider::new(own).unwrap();
    assert_eq!(
        (p.balance_result_url(), p.balance_timeout_url()),
        ("https://other.example/b/result", "https://other.example/b/timeout")
    );
    let bad = MpesaConfig::from_vars(vars(&[("MPESA_BALANCE_MAX_AGE_SECS", "five")])).unwrap_err();
    assert!(bad.to_string().contains("MPESA_BALANCE_MAX_AGE_SECS"), "{bad}");
}
