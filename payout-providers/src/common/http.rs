//! The HTTP client every adapter uses and how its failures are classified.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::budget::{RateLimit, RequestBudget, endpoint_of, retry_after};
use super::retry::{Classified, retry};
use super::{ClientOptions, ConfigError, RetryPolicy, Secret};

/// One provider's API as an adapter calls it: the HTTP client, the base URL and the retry policy,
/// all from the config's [`ClientOptions`].
pub(crate) struct Api {
    pub provider: Provider,
    pub http: reqwest::Client,
    pub base: String,
    pub retry: RetryPolicy,
    /// Shared with every adapter of the same provider, base and `account` in the process.
    pub budget: Arc<RequestBudget>,
}

impl Api {
    /// The API of `provider` as `options` say, with the request budget `default` unless they set one;
    /// `account` names the credential the budget is kept for (only a digest of it is kept).
    pub fn new(
        provider: Provider,
        options: &ClientOptions,
        default: RateLimit,
        account: &Secret,
    ) -> Result<Self, ConfigError> {
        let digest = Sha256::digest(account.expose().as_bytes());
        let account: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let key = format!("{provider}|{}|{account}", options.base());
        Ok(Api {
            provider,
            http: options.http_client()?,
            base: options.base().to_string(),
            retry: options.retry(),
            budget: RequestBudget::shared(key, options.rate_limit().unwrap_or(default)),
        })
    }

    /// A request to `path` under the base URL.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Sends the request `build` makes and `read`s the answer, sending it again while the failure is
    /// retryable (see [`exchange_with_retries`]).
    #[allow(dead_code)] // Stripe and the bank; PayPal and M-Pesa send through their token cache
    pub async fn call<T, E>(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        read: impl Fn(RawResponse) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<ExchangeError> + Classified + std::fmt::Display,
    {
        exchange_with_retries(&self.retry, what, || execute(self, build()), read).await
    }
}

/// Runs `exchange` and `read`s its answer; while the failure (of either) is retryable, runs both
/// again, up to `policy`. Every try sends the same request; a failed exchange is an
/// [`ExchangeError::Transport`].
pub(crate) async fn exchange_with_retries<T, E, X, XFut>(
    policy: &RetryPolicy,
    what: &str,
    exchange: X,
    read: impl Fn(RawResponse) -> Result<T, E>,
) -> Result<T, E>
where
    X: Fn() -> XFut,
    XFut: Future<Output = Result<RawResponse, ProviderError>>,
    E: From<ExchangeError> + Classified + std::fmt::Display,
{
    let (exchange, read) = (&exchange, &read);
    retry(policy, what, move |_| async move {
        let raw = exchange().await.map_err(ExchangeError::Transport)?;
        read(raw)
    })
    .await
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

    /// The body as JSON; a body that is not is [`ExchangeError::Unreadable`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ExchangeError> {
        serde_json::from_slice(&self.body).map_err(|e| ExchangeError::Unreadable {
            status: self.status,
            reason: e.to_string(),
        })
    }
}

/// A call that brought back no answer an adapter can use. Every adapter's error enum wraps it
/// beside the provider's own error shapes.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// No usable HTTP exchange (or no access token); classified where it happened.
    #[error("{}", .0.message)]
    Transport(ProviderError),
    /// An answer whose body cannot be read: after a 2xx the provider may have acted on the request.
    #[error("HTTP {status} with an unreadable body: {reason}")]
    Unreadable { status: StatusCode, reason: String },
}

impl Classified for ExchangeError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            ExchangeError::Transport(e) => e.kind,
            ExchangeError::Unreadable { .. } => ProviderErrorKind::Ambiguous,
        }
    }
}

impl ExchangeError {
    /// The public error: a transport error as it was classified, an unreadable answer `Ambiguous`.
    pub fn into_provider_error(self, provider: Provider) -> ProviderError {
        match self {
            ExchangeError::Transport(e) => e,
            unreadable => classified_error(provider, &unreadable, None),
        }
    }
}

/// The public error for an adapter's own failure: its kind, its message, and the provider's code
/// when it gave one.
pub(crate) fn classified_error(
    provider: Provider,
    e: &(impl Classified + std::fmt::Display),
    code: Option<String>,
) -> ProviderError {
    with_code(ProviderError::new(provider, e.kind(), e.to_string()), code)
}

/// `e` with the provider's code, when it gave one.
pub(crate) fn with_code(e: ProviderError, code: Option<String>) -> ProviderError {
    match code {
        Some(c) => e.with_code(c),
        None => e,
    }
}

/// Sends a request within the API's request budget and reads the whole response. Transport failures
/// come back classified: nothing sent (connect error) is retryable, anything after that is
/// ambiguous. A 429 slows the budget down (and pauses it for `Retry-After`); other answers restore it.
///
/// Every call runs in a `provider_call` span (`provider`, `endpoint`) inside the engine's span for
/// the payout, and its time on the wire (the budget's wait left out) is recorded in the
/// [`PROVIDER_CALL_SECONDS`](payout_core::telemetry::PROVIDER_CALL_SECONDS) histogram by provider,
/// endpoint and status (`2xx`, `4xx`, `429`, `5xx`, `transport_error`).
pub(crate) async fn execute(api: &Api, request: reqwest::RequestBuilder) -> Result<RawResponse, ProviderError> {
    let provider = api.provider;
    let (client, request) = request.build_split();
    let request = request.map_err(|e| transport_error(provider, &e))?;
    let endpoint = endpoint_of(request.method(), request.url().path());
    let span = tracing::debug_span!("provider_call", %provider, endpoint = %endpoint);
    exchange(api, client, request, endpoint).instrument(span).await
}

async fn exchange(
    api: &Api,
    client: reqwest::Client,
    request: reqwest::Request,
    endpoint: String,
) -> Result<RawResponse, ProviderError> {
    let provider = api.provider;
    let ticket = api.budget.acquire(&endpoint).await;
    let started = Instant::now();
    let response = client.execute(request).await;
    let elapsed = started.elapsed();
    let class = match &response {
        Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => "429",
        Ok(r) if r.status().is_success() => "2xx",
        Ok(r) if r.status().is_client_error() => "4xx",
        Ok(r) if r.status().is_server_error() => "5xx",
        Ok(_) => "other",
        Err(_) => "transport_error",
    };
    metrics::histogram!(
        payout_core::telemetry::PROVIDER_CALL_SECONDS,
        "provider" => provider.as_str(),
        "endpoint" => endpoint.clone(),
        "status" => class,
    )
    .record(elapsed.as_secs_f64());
    tracing::debug!(
        status = class,
        elapsed_ms = elapsed.as_millis() as u64,
        "provider call answered"
    );
    let response = response.map_err(|e| transport_error(provider, &e))?;
    let status = response.status();
    let headers = response.headers().clone();
    api.budget.answered(
        &endpoint,
        ticket,
        status == StatusCode::TOO_MANY_REQUESTS,
        retry_after(&headers),
    );
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
