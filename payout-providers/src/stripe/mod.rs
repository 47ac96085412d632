//! Stripe Connect: pays a doctor's connected account with a transfer (`POST /v1/transfers`).
//!
//! # Configuration
//! | variable | builder | default |
//! |---|---|---|
//! | `STRIPE_SECRET_KEY` (required) | [`StripeConfigBuilder::secret_key`] | — |
//! | `STRIPE_WEBHOOK_SECRET` | [`StripeConfigBuilder::webhook_secret`] | none: webhooks are refused |
//! | `STRIPE_API_BASE` | [`StripeConfigBuilder::api_base`] | `https://api.stripe.com` |
//! | `STRIPE_API_VERSION` | [`StripeConfigBuilder::api_version`] | none (the account's default) |
//! | `STRIPE_TIMEOUT_SECS` | [`StripeConfigBuilder::timeout`] | 30 s (connect: 10 s) |
//! | — | [`StripeConfigBuilder::retry`] | [`RetryPolicy::default`] |
//! | — | [`StripeConfigBuilder::webhook_tolerance`] | 300 s, both ways |
//! | — | [`StripeConfigBuilder::clock`] | the system clock |
//!
//! # Sending
//! The attempt's key goes in the `Idempotency-Key` header, in `metadata[idempotency_key]` and as
//! the `transfer_group`; `metadata[payout_id]`, `metadata[attempt_no]` and `metadata[doctor_id]` are
//! set too. The amount is sent in integer minor units with the lowercase currency (`50000`, `kes`;
//! JPY has no x100). A transfer puts the money in the connected account's balance at once, so an
//! accepted transfer is reported `Paid` (and `Reversed` once reversed); `payout.*` events describe
//! the account's own bank payouts afterwards.
//!
//! Failures: connect errors, 429, 5xx and 409 (`idempotency_key_in_use`, concurrent conflicts) are
//! retried with the same key and end `Retryable`; timeouts and resets are `Ambiguous`; other 4xx
//! (`invalid_request_error`, `balance_insufficient`, ...) are `Final`. An `idempotency_error` (same
//! key, different parameters) is `Final` only after a lookup by transfer group shows that the key's
//! first request moved no money; if it did, that transfer is the answer.
//!
//! # Lookup
//! With a reference, `GET /v1/transfers/{id}` (a 404 for an id Stripe gave us is an error, never
//! `NotFound`: it means the wrong account or mode, and re-sending could pay twice). Without one,
//! `GET /v1/transfers?transfer_group={key}`: no transfer means the request never arrived, and
//! `NotFound` lets the engine re-send with the same key.
//!
//! # Webhooks
//! See [`SIGNATURE_HEADER`] and the table on the translation: `transfer.created` -> `Pending`,
//! `transfer.reversed` -> `Reversed`, `payout.paid` -> `Paid`, `payout.failed` and
//! `payout.canceled` -> `Failed`; the event id is Stripe's `evt_...`.

mod client;
mod webhook;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::clock::{Clock, SystemClock};
use payout_core::domain::Provider;
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::{ProviderError, ProviderErrorKind, WebhookError};

pub use webhook::{SIGNATURE_HEADER, signature_header};

use crate::common::http::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT};
use crate::common::{ConfigError, RetryPolicy, Secret, base_url, seconds, var};
use client::{StripeClient, StripeError};
use wire::TransferRequest;

/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// How far a webhook's signed timestamp may be from now, either way.
pub const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// Settings for [`StripeProvider`]. `Debug` shows no secret.
#[derive(Clone)]
pub struct StripeConfig {
    secret_key: Secret,
    webhook_secret: Option<Secret>,
    api_base: String,
    api_version: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    webhook_tolerance: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("api_version", &self.api_version)
            .field("webhooks", &self.webhook_secret.is_some())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("webhook_tolerance", &self.webhook_tolerance)
            .finish_non_exhaustive()
    }
}

impl StripeConfig {
    /// A builder with every default.
    pub fn builder() -> StripeConfigBuilder {
        StripeConfigBuilder::default()
    }

    /// Reads the variables in the [module table](self) from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = &lookup as &dyn Fn(&str) -> Option<String>;
        let mut b = StripeConfig::builder();
        if let Some(k) = var(lookup, "STRIPE_SECRET_KEY") {
            b = b.secret_key(k);
        }
        if let Some(s) = var(lookup, "STRIPE_WEBHOOK_SECRET") {
            b = b.webhook_secret(s);
        }
        if let Some(base) = var(lookup, "STRIPE_API_BASE") {
            b = b.api_base(base);
        }
        if let Some(v) = var(lookup, "STRIPE_API_VERSION") {
            b = b.api_version(v);
        }
        if let Some(t) = var(lookup, "STRIPE_TIMEOUT_SECS") {
            b = b.timeout(seconds("STRIPE_TIMEOUT_SECS", &t)?);
        }
        b.build()
    }

    /// The API base URL.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }
}

/// Builds a [`StripeConfig`].
#[derive(Default)]
pub struct StripeConfigBuilder {
    secret_key: Option<Secret>,
    webhook_secret: Option<Secret>,
    api_base: Option<String>,
    api_version: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    webhook_tolerance: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for StripeConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfigBuilder")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl StripeConfigBuilder {
    /// The secret key (`sk_...` or a restricted `rk_...`). Required (`STRIPE_SECRET_KEY`).
    pub fn secret_key(mut self, key: impl Into<Secret>) -> Self {
        self.secret_key = Some(key.into());
        self
    }
    /// The webhook endpoint's signing secret (`whsec_...`).
    pub fn webhook_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.webhook_secret = Some(secret.into());
        self
    }
    /// The API base URL (a local test double in tests).
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = Some(base.into());
        self
    }
    /// A `Stripe-Version` to pin.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }
    /// The time limit for one HTTP exchange.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// The time limit for connecting.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }
    /// How retryable failures are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
    /// How far a webhook's timestamp may be from now, either way.
    pub fn webhook_tolerance(mut self, tolerance: Duration) -> Self {
        self.webhook_tolerance = Some(tolerance);
        self
    }
    /// The clock webhook timestamps are checked against.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<StripeConfig, ConfigError> {
        let secret_key = self.secret_key.ok_or(ConfigError::Missing("STRIPE_SECRET_KEY"))?;
        if secret_key.expose().trim().is_empty() {
            return Err(ConfigError::Missing("STRIPE_SECRET_KEY"));
        }
        let api_base = base_url("STRIPE_API_BASE", self.api_base.as_deref().unwrap_or(DEFAULT_API_BASE))?;
        Ok(StripeConfig {
            secret_key,
            webhook_secret: self.webhook_secret.filter(|s| !s.expose().is_empty()),
            api_base,
            api_version: self.api_version,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            connect_timeout: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            retry: self.retry.unwrap_or_default(),
            webhook_tolerance: self.webhook_tolerance.unwrap_or(DEFAULT_WEBHOOK_TOLERANCE),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        })
    }
}

/// The Stripe Connect adapter.
pub struct StripeProvider {
    config: StripeConfig,
    client: StripeClient,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// An adapter with its own HTTP client.
    pub fn new(config: StripeConfig) -> Result<Self, ConfigError> {
        let client = StripeClient {
            http: crate::common::http::client(config.timeout, config.connect_timeout)?,
            base: config.api_base.clone(),
            secret_key: config.secret_key.clone(),
            api_version: config.api_version.clone(),
            retry: config.retry,
        };
        Ok(StripeProvider { config, client })
    }

    fn receipt(transfer: &wire::Transfer, replayed: bool) -> SendReceipt {
        let mut note = transfer.summary();
        if replayed {
            note.push_str(" (idempotent replay)");
        }
        SendReceipt {
            reference: Some(transfer.id.clone()),
            status: transfer.status(),
            note,
        }
    }

    /// The transfer made with `key`, found through its transfer group.
    async fn transfer_for_key(&self, key: &str) -> Result<Option<wire::Transfer>, StripeError> {
        let found = self.client.transfers_in_group(key).await?;
        Ok(found
            .into_iter()
            .find(|t| t.metadata.get("idempotency_key").map(String::as_str) == Some(key)))
    }
}

#[async_trait]
impl PayoutProvider for StripeProvider {
    fn provider(&self) -> Provider {
        Provider::StripeConnect
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            batch: false,
            max_batch_size: 1,
            lookup: true,
            webhooks: self.config.webhook_secret.is_some(),
            simulated: false,
        }
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let request = TransferRequest::try_from(instruction)
            .map_err(|e| ProviderError::new(Provider::StripeConnect, ProviderErrorKind::Final, e.0))?;
        match self
            .client
            .create_transfer(&request.to_form(), &instruction.idempotency_key)
            .await
        {
            Ok((transfer, replayed)) => Ok(Self::receipt(&transfer, replayed)),
            Err(e) if e.api_type() == Some("idempotency_error") => {
                // The key was first used with other parameters. Refuse only if that first request
                // moved no money; otherwise its transfer is this attempt's answer.
                match self.transfer_for_key(&instruction.idempotency_key).await {
                    Ok(Some(t)) => Ok(Self::receipt(&t, true)),
                    Ok(None) => Err(e.into()),
                    Err(lookup) => {
                        let mut err: ProviderError = lookup.into();
                        err.kind = ProviderErrorKind::Ambiguous;
                        err.message = format!(
                            "idempotency_error, and the key's transfer could not be looked up: {}",
                            err.message
                        );
                        Err(err)
                    }
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        let Some(secret) = &self.config.webhook_secret else {
            return Err(WebhookError::Unavailable(
                "STRIPE_WEBHOOK_SECRET is not configured".into(),
            ));
        };
        let header = headers
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| WebhookError::MissingHeader("Stripe-Signature".into()))?
            .to_str()
            .map_err(|_| WebhookError::BadSignature)?;
        let tolerance = i64::try_from(self.config.webhook_tolerance.as_secs()).unwrap_or(i64::MAX);
        webhook::verify_signature(&[secret], header, body, self.config.clock.now(), tolerance)?;
        webhook::translate(body)
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        match attempt.provider_reference.as_deref().filter(|r| !r.is_empty()) {
            Some(reference) => match self.client.get_transfer(reference).await? {
                Some(t) => Ok(t.status()),
                None => Err(ProviderError::new(
                    Provider::StripeConnect,
                    ProviderErrorKind::Final,
                    format!(
                        "Stripe has no transfer {reference}, which it returned for attempt {}: check that \
                         STRIPE_SECRET_KEY is for the same account and mode",
                        attempt.idempotency_key
                    ),
                )
                .with_code("resource_missing")),
            },
            None => Ok(match self.transfer_for_key(&attempt.idempotency_key).await? {
                Some(t) => t.status(),
                None => ProviderStatus::NotFound,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vars_names_the_missing_variable() {
        let err = StripeConfig::from_vars(|_| None).unwrap_err();
        assert_eq!(err, ConfigError::Missing("STRIPE_SECRET_KEY"));
        assert!(err.to_string().contains("STRIPE_SECRET_KEY"));
    }

    #[test]
    fn from_vars_reads_every_variable() {
        let c = StripeConfig::from_vars(|k| match k {
            "STRIPE_SECRET_KEY" => Some("sk_test_123".into()),
            "STRIPE_WEBHOOK_SECRET" => Some("whsec_abc".into()),
            "STRIPE_API_BASE" => Some("http://127.0.0.1:9/".into()),
            "STRIPE_TIMEOUT_SECS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.api_base(), "http://127.0.0.1:9");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert!(c.webhook_secret.is_some());
        let bad = StripeConfig::from_vars(|k| {
            (k == "STRIPE_SECRET_KEY")
                .then(|| "x".into())
                .or_else(|| (k == "STRIPE_API_BASE").then(|| "not a url".into()))
        });
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                name: "STRIPE_API_BASE",
                ..
            })
        ));
    }
}
