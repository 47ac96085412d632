//! The built-in outbound webhook sender: each event POSTed as JSON to the host's URL, signed
//! ([`payout_core::events::signature`]: `Payouts-Signature: t=<unix>,v1=<hex HMAC-SHA256>`).

use std::time::Duration;

use async_trait::async_trait;
use payout_core::events::signature::{self, HEADER};
use payout_core::events::{PayoutEvent, PayoutEventSink, SinkError};
use payout_core::{Error, Result};

/// The signing secret: never in `Debug`, logs or errors.
#[derive(Clone)]
struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

/// Where and how events are sent.
#[derive(Clone)]
pub struct WebhookSinkConfig {
    url: reqwest::Url,
    secret: Secret,
    /// How long a delivery may take before it counts as failed (`PAYOUTS_EVENTS_WEBHOOK_TIMEOUT_SECS`,
    /// default 10 s). Keep it below the relay's lease.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The host only: a URL may carry a token in its path or query.
        f.debug_struct("WebhookSinkConfig")
            .field("host", &self.url.host_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;

impl WebhookSinkConfig {
    /// Events to `url` (http or https), signed with `secret` (at least [`MIN_SECRET_BYTES`]).
    pub fn new(url: &str, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| Error::InvalidInput("the events webhook URL must be an http(s) URL".into()))?;
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::InvalidInput(format!(
                "the events webhook secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(WebhookSinkConfig {
            url,
            secret: Secret(secret),
            timeout: Duration::from_secs(10),
        })
    }

    /// From `PAYOUTS_EVENTS_WEBHOOK_URL`, `PAYOUTS_EVENTS_WEBHOOK_SECRET` (required with the URL)
    /// and `PAYOUTS_EVENTS_WEBHOOK_TIMEOUT_SECS` (default 10); `None` without a URL.
    pub fn from_env() -> Result<Option<Self>> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let Some(url) = var("PAYOUTS_EVENTS_WEBHOOK_URL") else {
            return Ok(None);
        };
        let secret = var("PAYOUTS_EVENTS_WEBHOOK_SECRET").ok_or_else(|| {
            Error::InvalidInput("PAYOUTS_EVENTS_WEBHOOK_URL is set without PAYOUTS_EVENTS_WEBHOOK_SECRET".into())
        })?;
        let mut config = WebhookSinkConfig::new(&url, secret)?;
        if let Some(t) = var("PAYOUTS_EVENTS_WEBHOOK_TIMEOUT_SECS") {
            config.timeout = Duration::from_secs(
                t.parse()
                    .map_err(|_| Error::InvalidInput("PAYOUTS_EVENTS_WEBHOOK_TIMEOUT_SECS must be seconds".into()))?,
            );
        }
        Ok(Some(config))
    }
}

/// POSTs each event, signed; a 2xx answer is a delivery, anything else (or no answer in time) is
/// retried by the relay, as Stripe retries its webhooks.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    client: reqwest::Client,
    config: WebhookSinkConfig,
}

impl WebhookSink {
    /// A sender with `config`.
    pub fn new(config: WebhookSinkConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::InvalidInput(format!("the events webhook client: {}", e.without_url())))?;
        Ok(WebhookSink { client, config })
    }
}

#[async_trait]
impl PayoutEventSink for WebhookSink {
    async fn deliver(&self, event: &PayoutEvent) -> std::result::Result<(), SinkError> {
        let body = serde_json::to_vec(event).map_err(|e| SinkError::Permanent {
            message: "the event could not be written as JSON".into(),
            source: Some(Box::new(e)),
        })?;
        let signature = signature::sign(&self.config.secret.0, chrono::Utc::now().timestamp(), &body);
        let answer = self
            .client
            .post(self.config.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER, signature)
            .header("Payouts-Event-Id", event.id.as_str())
            .header("Payouts-Event-Type", event.event_type.as_str())
            .body(body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(SinkError::retryable(format!(
                "HTTP {} from the receiver",
                r.status().as_u16()
            ))),
            Err(e) => Err(SinkError::Retryable {
                message: if e.is_timeout() {
                    "the receiver did not answer in time".into()
                } else {
                    "the receiver could not be reached".into()
                },
                source: Some(Box::new(e.without_url())),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_never_in_debug() {
        let config = WebhookSinkConfig::new("https://host.example/hooks?token=abc", "whsec_0123456789abcdef").unwrap();
        let shown = format!("{config:?} {:?}", WebhookSink::new(config.clone()).unwrap());
        assert!(!shown.contains("whsec_0123456789abcdef"), "{shown}");
        assert!(!shown.contains("token=abc"), "{shown}");
        assert!(shown.contains("host.example"), "{shown}");
        assert!(WebhookSinkConfig::new("https://h", "short").is_err());
        assert!(WebhookSinkConfig::new("ftp://h", "whsec_0123456789abcdef").is_err());
    }
}
