//! PayPal webhooks: offline verification with the certificate, and the verify API.

use super::*;
use crate::contract::{assert_valid, schema_validator};

fn event(event_type: &str, status: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "WH-0G2756385H040842W-5Y612302CV158622M", "create_time": "2024-07-06T22:48:52.000Z",
        "resource_type": "payouts_item", "event_version": "1.0", "event_type": event_type,
        "summary": "A payout item has changed", "resource": item("8AELMXH8UB2P8", "po_testkit-1", status),
        "links": [{"href": "https://api.sandbox.paypal.com/v1/notifications/webhooks-events/WH-0G2756385H040842W", "rel": "self", "method": "GET"}]
    }))
    .unwrap()
}

fn sign(key: &RsaPrivateKey, transmission_id: &str, time: &str, webhook_id: &str, body: &[u8]) -> String {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(body);
    let message = format!("{transmission_id}|{time}|{webhook_id}|{crc}");
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone()).sign(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
}

fn headers_for(body: &[u8], key: &RsaPrivateKey, webhook_id: &str, cert_url: &str) -> HeaderMap {
    let (id, time) = ("b2384410-f8d2-11e8-a1a6-c1e1ba4b5cd4", "2024-07-06T22:48:53Z");
    let mut h = HeaderMap::new();
    h.insert(TRANSMISSION_ID, HeaderValue::from_static(id));
    h.insert(TRANSMISSION_TIME, HeaderValue::from_static(time));
    h.insert(
        TRANSMISSION_SIG,
        HeaderValue::from_str(&sign(key, id, time, webhook_id, body)).unwrap(),
    );
    h.insert(CERT_URL, HeaderValue::from_str(cert_url).unwrap());
    h.insert(AUTH_ALGO, HeaderValue::from_static("SHA256withRSA"));
    h
}

fn signed(body: &[u8]) -> HeaderMap {
    headers_for(body, support::certs::test_key(), WEBHOOK_ID, CERT)
}

fn offline_with(fetcher: Arc<TestFetcher>) -> PaypalProvider {
    PaypalProvider::new(builder("http://127.0.0.1:9").cert_fetcher(fetcher).build().unwrap()).unwrap()
}

/// An adapter verifying offline with `fetcher`'s certificates, whose PayPal answers
/// `GET /v1/payments/payouts-item/8AELMXH8UB2P8` with `answer`: the confirmation an event of ours
/// needs before it may move a payout. The server is returned to be kept alive (and inspected).
async fn answering(answer: ResponseTemplate, fetcher: Arc<TestFetcher>) -> (MockServer, PaypalProvider) {
    let server = MockServer::start().await;
    mount(&server, token_route(), token("A21AA-token-1", 32400)).await;
    mount(
        &server,
        on("GET", Some("/v1/payments/payouts-item/8AELMXH8UB2P8")),
        answer,
    )
    .await;
    let p = PaypalProvider::new(builder(&server.uri()).cert_fetcher(fetcher).build().unwrap()).unwrap();
    (server, p)
}

/// [`answering`] with the item sent as `key`, in `status`.
async fn confirming_as(key: &str, status: &str) -> (MockServer, PaypalProvider) {
    let found = ResponseTemplate::new(200).set_body_json(item("8AELMXH8UB2P8", key, status));
    answering(found, TestFetcher::with(CERT, paypal_cert())).await
}

/// [`confirming_as`] our `po_testkit-1`.
async fn confirming(status: &str) -> (MockServer, PaypalProvider) {
    confirming_as("po_testkit-1", status).await
}

/// The item reads `GET /v1/payments/payouts-item/...` a server received.
async fn item_reads(server: &MockServer) -> usize {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .filter(|r| r.url.path().starts_with("/v1/payments/payouts-item/"))
        .count()
}

#[tokio::test]
async fn a_valid_item_event_translates_with_all_references() {
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    let (server, p) = confirming("SUCCESS").await;
    let events = p.verify_webhook(&signed(&body), &body).await.unwrap();
    assert_eq!(item_reads(&server).await, 1, "confirmed with PayPal first");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.event_id, "WH-0G2756385H040842W-5Y612302CV158622M");
    assert_eq!(e.kind, ProviderEventKind::Paid);
    assert_eq!(e.provider_type, "PAYMENT.PAYOUTS-ITEM.SUCCEEDED");
    assert_eq!(
        e.references,
        vec![
            EventReference::ProviderReference("8AELMXH8UB2P8".into()),
            EventReference::IdempotencyKey("po_testkit-1".into()),
            EventReference::ProviderReference(BATCH.into()),
        ]
    );
    assert_eq!(e.occurred_at.map(|t| t.timestamp()), Some(1_720_306_132));
}

/// An item event whose `sender_item_id` is `sender_item_id`.
fn item_event_sent_as(sender_item_id: &str) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS")).unwrap();
    event["resource"]["payout_item"]["sender_item_id"] = json!(sender_item_id);
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test]
async fn an_item_another_system_sent_names_nothing_of_ours() {
    // Not ours: acknowledged without asking PayPal (the offline adapter's API is unreachable).
    let p = offline_with(TestFetcher::with(CERT, paypal_cert()));
    for other in ["INV-2024-001", "payroll_7", "po_testkit-01"] {
        let body = item_event_sent_as(other);
        let events = p.verify_webhook(&signed(&body), &body).await.unwrap();
        assert_eq!(events.len(), 1, "{other}");
        assert_eq!(
            events[0].references,
            vec![],
            "{other}: its PayPal ids are not ours either"
        );
        assert!(!events[0].names_ours());
    }
}

#[tokio::test]
async fn passes_the_events_check() {
    let foreign = item_event_sent_as("INV-2024-001");
    let early = item_event_sent_as("po_testkit-9");
    let (_server, p) = confirming_as("po_testkit-9", "SUCCESS").await;
    let (h_foreign, h_early) = (signed(&foreign), signed(&early));
    let deliveries = Deliveries {
        foreign: Some((&h_foreign, &foreign)),
        ours: (&h_early, &early),
        partial_reversal: None,
    };
    check_events(&p, deliveries).await;
}

#[tokio::test]
async fn item_event_types_map_to_kinds_and_batch_events_to_nothing() {
    let cases = [
        ("PAYMENT.PAYOUTS-ITEM.FAILED", "FAILED", "failed"),
        ("PAYMENT.PAYOUTS-ITEM.DENIED", "DENIED", "failed"),
        ("PAYMENT.PAYOUTS-ITEM.BLOCKED", "BLOCKED", "failed"),
        ("PAYMENT.PAYOUTS-ITEM.CANCELED", "CANCELED", "failed"),
        ("PAYMENT.PAYOUTS-ITEM.HELD", "ONHOLD", "pending"),
        ("PAYMENT.PAYOUTS-ITEM.UNCLAIMED", "UNCLAIMED", "pending"),
        ("PAYMENT.PAYOUTS-ITEM.RETURNED", "RETURNED", "returned"),
        ("PAYMENT.PAYOUTS-ITEM.REFUNDED", "REFUNDED", "returned"),
    ];
    for (event_type, status, expected) in cases {
        let body = event(event_type, status);
        let (_server, p) = confirming(status).await;
        let kind = p.verify_webhook(&signed(&body), &body).await.unwrap().remove(0).kind;
        let got = match kind {
            ProviderEventKind::Failed { .. } => "failed",
            ProviderEventKind::Pending => "pending",
            ProviderEventKind::Returned { .. } => "returned",
            other => panic!("{event_type}: {other:?}"),
        };
        assert_eq!(got, expected, "{event_type}");
    }
    let p = offline_with(TestFetcher::with(CERT, paypal_cert()));
    let body = serde_json::to_vec(&json!({"id": "WH-2", "event_type": "PAYMENT.PAYOUTSBATCH.SUCCESS",
        "resource": {"batch_header": {"payout_batch_id": BATCH}}}))
    .unwrap();
    assert!(p.verify_webhook(&signed(&body), &body).await.unwrap().is_empty());
}

/// Issue 15 item 3: PayPal signs only a CRC32 of the body, so an authentic-looking event of ours is
/// confirmed with `GET /v1/payments/payouts-item/{id}` before it can move a payout; a body that
/// disagrees with PayPal's answer (another status, another `sender_item_id`, an item PayPal does
/// not have) is refused, and one PayPal cannot be asked about now is refused for redelivery.
#[tokio::test]
async fn an_event_that_paypal_contradicts_is_refused() {
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    for (paypal_says, key) in [
        ("FAILED", "po_testkit-1"),
        ("PENDING", "po_testkit-1"),
        ("SUCCESS", "po_other-1"),
    ] {
        let (_server, p) = confirming_as(key, paypal_says).await;
        assert!(
            matches!(refusal(&p, &signed(&body), &body).await, WebhookError::Contradicted(_)),
            "PayPal says {paypal_says} for {key}"
        );
    }
    let missing = ResponseTemplate::new(404).set_body_json(json!({"name": "RESOURCE_NOT_FOUND"}));
    let (_server, p) = answering(missing, TestFetcher::with(CERT, paypal_cert())).await;
    assert!(matches!(
        refusal(&p, &signed(&body), &body).await,
        WebhookError::Contradicted(_)
    ));
    // PayPal unreachable: not confirmed, so refused for redelivery, never applied unconfirmed.
    let p = offline_with(TestFetcher::with(CERT, paypal_cert()));
    assert!(matches!(
        refusal(&p, &signed(&body), &body).await,
        WebhookError::Unavailable(_)
    ));
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let body = event("PAYMENT.PAYOUTS-ITEM.FAILED", "FAILED");
    let h = signed(&body);
    let tampered = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    let p = offline_with(TestFetcher::with(CERT, paypal_cert()));
    assert_eq!(refusal(&p, &h, &tampered).await, WebhookError::BadSignature);
}

#[tokio::test]
async fn a_signature_by_another_key_or_for_another_webhook_is_refused() {
    let p = offline_with(TestFetcher::with(CERT, paypal_cert()));
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    let by_other = headers_for(&body, support::certs::other_key(), WEBHOOK_ID, CERT);
    assert_eq!(refusal(&p, &by_other, &body).await, WebhookError::BadSignature);
    let other_webhook = headers_for(&body, support::certs::test_key(), "8PT597110X687430LKGECATA", CERT);
    assert_eq!(refusal(&p, &other_webhook, &body).await, WebhookError::BadSignature);
    let mut garbage = signed(&body);
    garbage.insert(TRANSMISSION_SIG, HeaderValue::from_static("not base64!"));
    assert_eq!(refusal(&p, &garbage, &body).await, WebhookError::BadSignature);
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_is_refused() {
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    let key = support::certs::test_key();
    let cn = "messageverificationcerts.sandbox.paypal.com";
    let expired = support::certs::self_signed_pem(key, cn, NOW - 86_400 * 400, NOW - 86_400);
    let future = support::certs::self_signed_pem(key, cn, NOW + 86_400, NOW + 86_400 * 400);
    for pem in [expired, future] {
        let p = offline_with(TestFetcher::with(CERT, pem));
        assert_eq!(refusal(&p, &signed(&body), &body).await, WebhookError::Expired);
    }
}

#[tokio::test]
async fn a_certificate_that_is_not_paypals_is_refused() {
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    let impostor = support::certs::self_signed_pem(
        support::certs::test_key(),
        "paypal.com.evil.example",
        NOW - 60,
        NOW + 86_400,
    );
    let p = offline_with(TestFetcher::with(CERT, impostor));
    assert!(matches!(
        refusal(&p, &signed(&body), &body).await,
        WebhookError::Unauthorized(_)
    ));
}

#[tokio::test]
async fn certificate_urls_outside_paypal_are_never_fetched() {
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    for url in [
        "http://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://attacker.example/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/oauth2/token",
    ] {
        let fetcher = TestFetcher::with(url, paypal_cert());
        let p = offline_with(fetcher.clone());
        let h = headers_for(&body, support::certs::test_key(), WEBHOOK_ID, url);
        assert!(
            matches!(refusal(&p, &h, &body).await, WebhookError::Unauthorized(_)),
            "{url}"
        );
        assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 0, "{url} must not be fetched");
    }
}

#[tokio::test]
async fn certificates_are_cached_by_url() {
    let fetcher = TestFetcher::with(CERT, paypal_cert());
    let found = ResponseTemplate::new(200).set_body_json(item("8AELMXH8UB2P8", "po_testkit-1", "SUCCESS"));
    let (_server, p) = answering(found, fetcher.clone()).await;
    for status in ["SUCCESS", "FAILED", "RETURNED"] {
        let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", status);
        p.verify_webhook(&signed(&body), &body).await.unwrap();
    }
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn missing_headers_unsupported_algorithms_and_unfetchable_certs_are_refused() {
    let p = offline_with(TestFetcher::with(CERT, paypal_cert()));
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    for header in [
        TRANSMISSION_ID,
        TRANSMISSION_TIME,
        TRANSMISSION_SIG,
        CERT_URL,
        AUTH_ALGO,
    ] {
        let mut h = signed(&body);
        h.remove(header);
        assert!(
            matches!(refusal(&p, &h, &body).await, WebhookError::MissingHeader(_)),
            "{header}"
        );
    }
    let mut h = signed(&body);
    h.insert(AUTH_ALGO, HeaderValue::from_static("SHA1withRSA"));
    assert!(matches!(refusal(&p, &h, &body).await, WebhookError::Unauthorized(_)));
    let other_cert = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-unknown";
    let h = headers_for(&body, support::certs::test_key(), WEBHOOK_ID, other_cert);
    assert!(matches!(refusal(&p, &h, &body).await, WebhookError::Unavailable(_)));
}

#[tokio::test]
async fn without_a_webhook_id_webhooks_are_unavailable() {
    let c = PaypalConfig::builder()
        .client_id(CLIENT_ID)
        .client_secret(CLIENT_SECRET)
        .build()
        .unwrap();
    let p = PaypalProvider::new(c).unwrap();
    assert!(!p.capabilities().webhooks);
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    assert!(matches!(
        refusal(&p, &signed(&body), &body).await,
        WebhookError::Unavailable(_)
    ));
}

async fn api_verifier(server: &MockServer, answer: &str) -> PaypalProvider {
    mount_token(server, 32400, 1).await;
    let mock = on("POST", Some("/v1/notifications/verify-webhook-signature"))
        .and(header("authorization", "Bearer A21AA-token-1"));
    mount_times(
        server,
        mock,
        ResponseTemplate::new(200).set_body_json(json!({"verification_status": answer})),
        1,
    )
    .await;
    PaypalProvider::new(
        builder(&server.uri())
            .verification(WebhookVerification::Api)
            .build()
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_verification_api_decides_and_gets_the_raw_event_and_a_spec_valid_body() {
    let server = MockServer::start().await;
    let p = api_verifier(&server, "SUCCESS").await;
    // Unusual spacing and key order survive: the event is passed on byte for byte.
    let body = br#"{"id":"WH-9","event_type":"PAYMENT.PAYOUTS-ITEM.SUCCEEDED",  "resource":{"payout_item_id":"ITEM1","transaction_status":"SUCCESS","payout_item":{"sender_item_id":"po_testkit-1"}},"create_time":"2024-07-06T22:48:52Z"}"#;
    let h = signed(body);
    let by_id = on("GET", Some("/v1/payments/payouts-item/ITEM1"));
    mount(
        &server,
        by_id,
        ResponseTemplate::new(200).set_body_json(item("ITEM1", "po_testkit-1", "SUCCESS")),
    )
    .await;
    let events = p.verify_webhook(&h, body).await.unwrap();
    assert_eq!(events[0].kind, ProviderEventKind::Paid);
    let sent = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/v1/notifications/verify-webhook-signature")
        .unwrap();
    let text = String::from_utf8(sent.body.clone()).unwrap();
    assert!(
        text.contains(std::str::from_utf8(body).unwrap()),
        "raw event spliced in unchanged: {text}"
    );
    let sent: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sent["webhook_id"], WEBHOOK_ID);
    assert_eq!(sent["cert_url"], CERT);
    assert_eq!(sent["auth_algo"], "SHA256withRSA");
    assert_eq!(
        sent["transmission_sig"],
        h.get(TRANSMISSION_SIG).unwrap().to_str().unwrap()
    );
    assert_valid(
        &schema_validator("notifications_webhooks_v1.json", "verify_webhook_signature"),
        &sent,
    );
}

#[tokio::test]
async fn the_verification_api_saying_failure_is_a_bad_signature() {
    let server = MockServer::start().await;
    let p = api_verifier(&server, "FAILURE").await;
    let body = event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "SUCCESS");
    assert_eq!(refusal(&p, &signed(&body), &body).await, WebhookError::BadSignature);
}
