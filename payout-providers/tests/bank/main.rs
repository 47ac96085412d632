//! Bank adapter against a local wiremock server speaking the documented contract, and the bank
//! files (CSV, pain.001.001.03, NACHA) checked field by field.

#[path = "../support/mod.rs"]
mod support;

mod files;
mod stored;

use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use http::HeaderMap;
use payout_core::domain::{BankAccount, PayoutDestination, Provider};
use payout_core::money::{Currency, Money};
use payout_core::provider::{PayoutInstruction, PayoutProvider, ProviderStatus};
use payout_core::testkit::{fixtures, provider::check_provider};
use payout_core::{ProviderErrorKind, WebhookError};
use payout_providers::RetryPolicy;
use payout_providers::bank::{
    AccountType, BankConfig, BankProvider, BankTransferLine, FileError, NachaSettings, Pain001Settings, SecCode, csv,
    end_to_end_id, nacha, pain001,
};
use serde_json::json;
use support::{lookup, mount, mount_first, mount_times, on, posts};
use wiremock::matchers::{body_json, header, query_param};
use wiremock::{MockServer, ResponseTemplate};

const KEY: &str = "bank_live_key_0123456789";

fn instruction() -> PayoutInstruction {
    fixtures::instruction(Provider::BankTransfer)
}

fn config(base: &str) -> BankConfig {
    BankConfig::builder()
        .api_url(base)
        .api_key(KEY)
        .retry(RetryPolicy::immediate(3))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn provider(server: &MockServer) -> BankProvider {
    BankProvider::new(config(&server.uri())).unwrap()
}

fn transfer(id: &str, status: &str) -> serde_json::Value {
    json!({"id": id, "status": status, "reference": "po_testkit-1", "failure_reason": null})
}

fn answer(status: u16, body: serde_json::Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

// ---------- send ----------

#[tokio::test]
async fn send_posts_the_contract_body_with_key_and_bearer() {
    let server = MockServer::start().await;
    let create = on("POST", Some("/transfers"))
        .and(header("Idempotency-Key", "po_testkit-1"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_json(json!({
            "reference": "po_testkit-1",
            "payout_id": "po_testkit",
            "amount": "500.00",
            "currency": "KES",
            "description": "Consultations 2025-01-01..2025-01-31",
            "beneficiary": {"name": "Dr. Testkit", "account_number": "0123456789", "bank_code": "01",
                            "bank_name": "Test Bank", "country": "KE"}
        })));
    mount_times(&server, create, answer(201, transfer("bt_1", "PENDING")), 1).await;
    let r = provider(&server).send(&instruction()).await.unwrap();
    assert_eq!(r.reference.as_deref(), Some("bt_1"));
    assert_eq!(r.status, ProviderStatus::Accepted);
}

#[tokio::test]
async fn completed_at_once_is_paid() {
    let server = MockServer::start().await;
    mount(&server, on("POST", None), answer(200, transfer("bt_2", "COMPLETED"))).await;
    support::assert_sent(&provider(&server), &instruction(), ProviderStatus::Paid).await;
}

#[tokio::test]
async fn unpayable_instructions_fail_final_before_any_call() {
    let server = MockServer::start().await;
    let mut negative = instruction();
    negative.amount = Money::parse("-1", Currency::KES).unwrap();
    let mut not_bank = instruction();
    not_bank.destination = PayoutDestination::MpesaPhone {
        phone: "254700000000".into(),
    };
    support::assert_unpayable(&server, &provider(&server), &[negative, not_bank]).await;
}

#[tokio::test]
async fn validation_4xx_is_final_with_the_banks_code() {
    let server = MockServer::start().await;
    let refusal = json!({"error": {"code": "invalid_account", "message": "account does not exist"}});
    mount_times(&server, on("POST", None), answer(422, refusal), 1).await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
    assert_eq!(e.code.as_deref(), Some("invalid_account"));
}

#[tokio::test]
async fn unauthorized_is_final_and_never_echoes_the_key() {
    let server = MockServer::start().await;
    let refusal = json!({"error": {"code": "unauthorized", "message": format!("bad key {KEY}")}});
    mount(&server, on("POST", None), answer(401, refusal)).await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Final).await;
    assert!(!e.to_string().contains(KEY), "{e}");
}

/// 429, 5xx and 409 `idempotency_key_in_use`: retried, and every try carries the same key and body.
#[tokio::test]
async fn rate_limits_server_errors_and_key_in_use_are_retried_with_the_same_key() {
    for first in [
        ResponseTemplate::new(429),
        ResponseTemplate::new(502).set_body_string("bad gateway"),
        answer(409, json!({"error": {"code": "idempotency_key_in_use"}})),
    ] {
        let server = MockServer::start().await;
        mount_first(&server, on("POST", None), first).await;
        mount(&server, on("POST", None), answer(201, transfer("bt_r", "PENDING"))).await;
        let r = provider(&server).send(&instruction()).await.unwrap();
        assert_eq!(r.reference.as_deref(), Some("bt_r"));
        let sent = posts(&server).await;
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0].headers.get("idempotency-key"),
            sent[1].headers.get("idempotency-key")
        );
        assert_eq!(sent[0].body, sent[1].body);
    }
}

/// A 5xx on every try ends `Retryable` after three; a timeout is `Ambiguous` and not retried.
#[tokio::test]
async fn persistent_5xx_ends_retryable_and_a_timeout_ambiguous() {
    let slow = answer(201, transfer("bt_slow", "PENDING")).set_delay(Duration::from_secs(3));
    for (response, tries, kind) in [
        (ResponseTemplate::new(500), 3, ProviderErrorKind::Retryable),
        (slow, 1, ProviderErrorKind::Ambiguous),
    ] {
        let server = MockServer::start().await;
        mount_times(&server, on("POST", None), response, tries).await;
        support::assert_send_fails(&provider(&server), &instruction(), kind).await;
    }
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let p = BankProvider::new(config(&support::refused_base())).unwrap();
    support::assert_send_fails(&p, &instruction(), ProviderErrorKind::Retryable).await;
}

#[tokio::test]
async fn unknown_status_is_ambiguous_never_guessed() {
    let server = MockServer::start().await;
    mount(&server, on("POST", None), answer(201, transfer("bt_3", "SETTLING"))).await;
    let e = support::assert_send_fails(&provider(&server), &instruction(), ProviderErrorKind::Ambiguous).await;
    assert_eq!(e.code.as_deref(), Some("unknown_status"));
}

#[tokio::test]
async fn duplicate_key_returns_the_first_transfer() {
    let server = MockServer::start().await;
    let keyed = on("POST", None).and(header("Idempotency-Key", "po_testkit-1"));
    mount_times(&server, keyed, answer(200, transfer("bt_once", "PENDING")), 2).await;
    let p = provider(&server);
    let a = p.send(&instruction()).await.unwrap();
    let b = p.send(&instruction()).await.unwrap();
    assert_eq!(a.reference, b.reference);
}

// ---------- lookup ----------

#[tokio::test]
async fn lookup_by_id_maps_every_status() {
    let server = MockServer::start().await;
    let i = instruction();
    let cases = [
        ("bt_a", "COMPLETED", ProviderStatus::Paid),
        ("bt_b", "FAILED", ProviderStatus::Failed("account closed".into())),
        ("bt_c", "RETURNED", ProviderStatus::Returned("account closed".into())),
        ("bt_d", "PROCESSING", ProviderStatus::Accepted),
    ];
    for (id, status, _) in &cases {
        let body = json!({"id": id, "status": status, "reference": "po_testkit-1", "failure_reason": "account closed"});
        mount(&server, on("GET", Some(&format!("/transfers/{id}"))), answer(200, body)).await;
    }
    let p = provider(&server);
    for (id, _, expected) in cases {
        assert_eq!(p.lookup(&lookup(&i, Some(id))).await.unwrap(), expected, "{id}");
    }
}

#[tokio::test]
async fn lookup_404_of_a_known_id_is_an_error() {
    let server = MockServer::start().await;
    mount(&server, on("GET", None), ResponseTemplate::new(404)).await;
    assert!(
        provider(&server)
            .lookup(&lookup(&instruction(), Some("bt_x")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn lookup_without_id_searches_by_reference() {
    let server = MockServer::start().await;
    let by_reference = on("GET", Some("/transfers")).and(query_param("reference", "po_testkit-1"));
    mount_first(&server, by_reference, answer(200, json!({"data": []}))).await;
    let found = json!({"data": [transfer("bt_f", "COMPLETED")]});
    mount(&server, on("GET", Some("/transfers")), answer(200, found)).await;
    let p = provider(&server);
    let unsent = lookup(&instruction(), None);
    assert_eq!(p.lookup(&unsent).await.unwrap(), ProviderStatus::NotFound);
    assert_eq!(p.lookup(&unsent).await.unwrap(), ProviderStatus::Paid);
}

#[tokio::test]
async fn webhooks_are_not_supported() {
    let server = MockServer::start().await;
    let p = provider(&server);
    assert!(!p.capabilities().webhooks);
    assert!(matches!(
        p.verify_webhook(&HeaderMap::new(), b"{}").await,
        Err(WebhookError::Unavailable(_))
    ));
}

#[tokio::test]
async fn passes_the_provider_conformance_check() {
    let server = MockServer::start().await;
    mount(
        &server,
        on("POST", Some("/transfers")),
        answer(201, transfer("bt_conf", "PENDING")),
    )
    .await;
    let by_id = on("GET", Some("/transfers/bt_conf"));
    mount(&server, by_id, answer(200, transfer("bt_conf", "PROCESSING"))).await;
    check_provider(&provider(&server), instruction()).await;
}

#[test]
fn config_debug_shows_no_secret() {
    let c = config("https://bank.example/api");
    assert!(format!("{c:?}").contains("bank.example"));
    let p = BankProvider::new(c.clone()).unwrap();
    support::assert_debug_hides(&c, &p, &[KEY]);
}

// ---------- the engine over the adapter ----------

/// Issue 15 item 5: a bank transfer COMPLETED at once makes the payout PAID; when the bank later
/// reports it RETURNED, the post-settlement watch finds it by lookup (the bank sends no webhooks),
/// moves the payout to RETURNED and lists it for a person.
#[tokio::test]
async fn a_return_after_a_completed_transfer_is_found_by_the_settlement_watch() {
    use payout_core::PayoutService;
    use payout_core::clock::ManualClock;
    use payout_core::domain::{Actor, PayoutId, Recipient};
    use payout_core::memory::MemoryStore;
    use payout_core::source::StaticDirectory;
    use payout_core::status::PayoutStatus;
    use payout_core::store::{Page, PayoutStore};
    use std::sync::Arc;

    let server = MockServer::start().await;
    let key = "po_bank-1";
    let completed = json!({"id": "bt_9", "status": "COMPLETED", "reference": key, "failure_reason": null});
    mount_times(&server, on("POST", Some("/transfers")), answer(201, completed), 1).await;
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    let recipient = Recipient {
        doctor_id: "dr-1".into(),
        name: "Dr. One".into(),
        email: "one@example.com".into(),
        stripe_account_id: None,
        paypal_payout_email: None,
        mpesa_phone_number: None,
        bank_details: Some(BankAccount {
            account_name: "Dr. One".into(),
            account_number: "0123456789".into(),
            bank_code: Some("01".into()),
            ..Default::default()
        }),
        preferred_provider: None,
    };
    let service = PayoutService::builder()
        .store(store.clone())
        .directory(Arc::new(StaticDirectory::new([recipient])))
        .provider(Arc::new(provider(&server)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let id = PayoutId::new("po_bank");
    store
        .create_payout(fixtures::new_payout(
            "po_bank",
            "dr-1",
            fixtures::month(2025, 1),
            &["1500.00"],
        ))
        .await
        .unwrap();
    let admin = Actor::admin("admin-1");
    service.approve(&Actor::admin("admin-2"), &id).await.unwrap();
    let paid = service.trigger(&admin, &id, Provider::BankTransfer).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);

    let returned = json!({"id": "bt_9", "status": "RETURNED", "reference": key, "failure_reason": "account closed"});
    mount(&server, on("GET", Some("/transfers/bt_9")), answer(200, returned)).await;
    clock.advance(chrono::Duration::days(1));
    let report = service.reconcile(chrono::Duration::zero()).await.unwrap();
    assert_eq!(report.settled, vec![(id.clone(), PayoutStatus::Returned)], "{report:?}");
    assert_eq!(store.get(&id).await.unwrap().status, PayoutStatus::Returned);
    let queue = store.attention(&Page::default()).await.unwrap();
    assert!(
        queue.flagged.iter().any(|f| f.payout.id == id),
        "money that came back is listed for a person: {queue:?}"
    );
}
