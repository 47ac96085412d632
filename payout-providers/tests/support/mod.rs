//! Helpers shared by the adapter tests: mounting wiremock answers, reading what the adapter sent,
//! the checks every adapter passes the same way, and (for M-Pesa and PayPal) certificates made in
//! the test.
#![allow(dead_code)]

#[cfg(any(feature = "paypal", feature = "mpesa"))]
pub mod certs;

use std::fmt::Debug;

use payout_core::provider::{AttemptLookup, PayoutInstruction, PayoutProvider, ProviderStatus};
use payout_core::{ProviderError, ProviderErrorKind, WebhookError};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, ResponseTemplate};

/// A mock for `verb` requests, on `route` only when it is given.
pub fn on(verb: &str, route: Option<&str>) -> MockBuilder {
    let mock = Mock::given(method(verb));
    match route {
        Some(r) => mock.and(path(r)),
        None => mock,
    }
}

/// Answers every request `mock` matches with `response`.
pub async fn mount(server: &MockServer, mock: MockBuilder, response: ResponseTemplate) {
    mock.respond_with(response).mount(server).await;
}

/// Answers with `response` and checks, when the server is dropped, that exactly `times` requests came.
pub async fn mount_times(server: &MockServer, mock: MockBuilder, response: ResponseTemplate, times: u64) {
    mock.respond_with(response).expect(times).mount(server).await;
}

/// Answers the first request `mock` matches with `response`, ahead of any other mock.
pub async fn mount_first(server: &MockServer, mock: MockBuilder, response: ResponseTemplate) {
    mock.respond_with(response)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
}

/// The requests the server got that `keep` selects, in order.
pub async fn requests(server: &MockServer, keep: impl Fn(&Request) -> bool) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(keep)
        .collect()
}

/// The POST requests the server got, in order.
pub async fn posts(server: &MockServer) -> Vec<Request> {
    requests(server, |r| r.method == http::Method::POST).await
}

/// Checks that nothing reached the server.
pub async fn assert_untouched(server: &MockServer) {
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "no HTTP call was expected"
    );
}

/// A base URL where nothing listens: connecting is refused.
pub fn refused_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Sends `instruction`, checks that it fails with `kind`, and returns the error.
pub async fn assert_send_fails(
    provider: &dyn PayoutProvider,
    instruction: &PayoutInstruction,
    kind: ProviderErrorKind,
) -> ProviderError {
    let e = provider.send(instruction).await.unwrap_err();
    assert_eq!(e.kind, kind, "{e}");
    e
}

/// Sends `instruction` and checks the status it is reported in.
pub async fn assert_sent(provider: &dyn PayoutProvider, instruction: &PayoutInstruction, status: ProviderStatus) {
    assert_eq!(provider.send(instruction).await.unwrap().status, status);
}

/// Each instruction fails `Final` before any HTTP call.
pub async fn assert_unpayable(server: &MockServer, provider: &dyn PayoutProvider, instructions: &[PayoutInstruction]) {
    for i in instructions {
        assert_send_fails(provider, i, ProviderErrorKind::Final).await;
    }
    assert_untouched(server).await;
}

/// Why the adapter refuses a webhook with these headers and body.
pub async fn refusal(provider: &dyn PayoutProvider, headers: &http::HeaderMap, body: &[u8]) -> WebhookError {
    provider.verify_webhook(headers, body).await.unwrap_err()
}

/// The lookup of `instruction`'s first attempt, with or without the provider's reference.
pub fn lookup(instruction: &PayoutInstruction, reference: Option<&str>) -> AttemptLookup {
    AttemptLookup {
        payout_id: instruction.payout_id.clone(),
        attempt_no: 1,
        idempotency_key: instruction.idempotency_key.clone(),
        provider_reference: reference.map(String::from),
        instruction: Some(instruction.clone()),
    }
}

/// A config's and its adapter's `Debug`: an allow-list (`.. }` at the end) holding none of `secrets`.
pub fn assert_debug_hides(config: &impl Debug, provider: &impl Debug, secrets: &[&str]) {
    let shown = format!("{config:?}");
    assert!(shown.ends_with(".. }"), "{shown}");
    for shown in [shown, format!("{provider:?}")] {
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
