//! The HTTP client every adapter uses and how its failures are classified.

use std::time::Duration;

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::ConfigError;

/// Default time limit for one HTTP exchange.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit for establishing a connection.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls client with the given limits. Redirects are not followed: a provider API that
/// redirects a payment request is a misconfiguration, not something to chase.
pub(crate) fn client(timeout: Duration, connect_timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("payouts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::Http(e.without_url().to_string()))
}

/// A response read whole.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    #[allow(dead_code)] // read by some adapters only
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as text, for messages (lossy, cut short).
    pub fn text_excerpt(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        t.chars().take(300).collect()
    }
}

/// Sends a request and reads the whole response. Transport failures come back classified:
/// nothing sent (connect error) is retryable, anything after that is ambiguous.
pub(crate) async fn execute(
    provider: Provider,
    request: reqwest::RequestBuilder,
) -> Result<RawResponse, ProviderError> {
    let response = request.send().await.map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let headers = response.headers().clone();
    match response.bytes().await {
        Ok(body) => Ok(RawResponse {
            status,
            headers,
            body: body.to_vec(),
        }),
        // The provider answered, but we lost the body: a success may have moved money.
        Err(e) => {
            let kind = if status.is_success() {
                ProviderErrorKind::Ambiguous
            } else {
                status_kind(status)
            };
            Err(ProviderError::new(
                provider,
                kind,
                format!("HTTP {status}, body unreadable: {}", describe(&e)),
            ))
        }
    }
}

/// How a transport failure is handled: a connect failure means nothing reached the provider;
/// a timeout or reset may have come after the provider got the request.
pub(crate) fn transport_error(provider: Provider, e: &reqwest::Error) -> ProviderError {
    let (kind, what) = if e.is_builder() {
        (ProviderErrorKind::Final, "the request could not be built")
    } else if e.is_connect() {
        (ProviderErrorKind::Retryable, "could not connect (nothing was sent)")
    } else if e.is_timeout() {
        (
            ProviderErrorKind::Ambiguous,
            "timed out after the request may have been sent",
        )
    } else {
        (
            ProviderErrorKind::Ambiguous,
            "connection failed after the request may have been sent",
        )
    };
    ProviderError::new(provider, kind, format!("{what}: {}", describe(e)))
}

/// How an HTTP error status is handled when the provider says nothing more specific:
/// 408, 429 and 5xx are retryable, other statuses final.
pub(crate) fn status_kind(status: StatusCode) -> ProviderErrorKind {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        ProviderErrorKind::Retryable
    } else {
        ProviderErrorKind::Final
    }
}

/// The error and its causes, without the URL (which could carry something private).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let head = if e.is_timeout() {
        "operation timed out".to_string()
    } else if e.is_connect() {
        "connect error".to_string()
    } else {
        "transport error".to_string()
    };
    if parts.is_empty() {
        head
    } else {
        format!("{head} ({})", parts.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(status_kind(StatusCode::TOO_MANY_REQUESTS), ProviderErrorKind::Retryable);
        assert_eq!(
            status_kind(StatusCode::SERVICE_UNAVAILABLE),
            ProviderErrorKind::Retryable
        );
        assert_eq!(
            status_kind(StatusCode::INTERNAL_SERVER_ERROR),
            ProviderErrorKind::Retryable
        );
        assert_eq!(status_kind(StatusCode::BAD_REQUEST), ProviderErrorKind::Final);
        assert_eq!(status_kind(StatusCode::PAYMENT_REQUIRED), ProviderErrorKind::Final);
        assert_eq!(status_kind(StatusCode::NOT_FOUND), ProviderErrorKind::Final);
    }
}
