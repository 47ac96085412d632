//! Stripe Connect: pays a doctor's connected account with a transfer (`POST /v1/transfers`).
//!
//! # Configuration
//! | variable | builder | default |
//! |---|---|---|
//! | `STRIPE_SECRET_KEY` (required) | [`StripeConfigBuilder::secret_key`] | — |
//! | `STRIPE_WEBHOOK_SECRET` | [`StripeConfigBuilder::webhook_secret`] | none |
//! | `STRIPE_CONNECT_WEBHOOK_SECRET` | [`StripeConfigBuilder::connect_webhook_secret`] | none (with neither secret, webhooks are refused) |
//! | `STRIPE_API_BASE` | [`StripeConfigBuilder::api_base`] | `https://api.stripe.com` |
//! | `STRIPE_API_VERSION` | [`StripeConfigBuilder::api_version`] | none (the account's default) |
//! | `STRIPE_TIMEOUT_SECS` | [`StripeConfigBuilder::timeout`] | 30 s (connect: 10 s) |
//! | `STRIPE_RATE_LIMIT` (requests per second, `0` for none) | [`StripeConfigBuilder::rate_limit`] | [`default_rate_limit`]: 100/s live, 25/s test, 25/s per endpoint |
//! | — | [`StripeConfigBuilder::retry`] | [`RetryPolicy::default`](crate::RetryPolicy::default) |
//! | — | [`StripeConfigBuilder::webhook_tolerance`] | 300 s, both ways |
//! | — | [`StripeConfigBuilder::clock`] | the system clock |
//!
//! # Sending
//! The attempt's key goes in the `Idempotency-Key` header, in `metadata[idempotency_key]` and as
//! the `transfer_group`; `metadata[payout_id]`, `metadata[attempt_no]` and `metadata[doctor_id]` are
//! set too. The amount is sent in integer minor units with the lowercase currency (`50000`, `kes`;
//! JPY has no x100). A transfer puts the money in the connected account's balance at once, so an
//! accepted transfer is reported `Paid` (`Reversed` once reversed in full, `PartiallyReversed` with
//! the amount while `amount_reversed` is less than `amount`); `payout.*` events describe the
//! account's own bank payouts afterwards and never settle ours.
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
//! # Balance
//! The adapter is also a [`BalanceSource`] for the funds check: `GET /v1/balance` with the secret
//! key, that is the platform account's balance, which transfers are paid from. Only `available`
//! counts (`pending` funds cannot be transferred yet); each amount is read in minor units by its
//! currency's ISO 4217 exponent, like transfer amounts (`666670` `usd` is USD 6,666.70; `5000`
//! `jpy` is JPY 5,000), and `as_of` is the adapter clock's time of the answer. The call goes
//! through the same client, request budget and retries as a send, and its failures are
//! classified the same way. Register the adapter with both `PayoutServiceBuilder::provider` and
//! `PayoutServiceBuilder::balance_source`.
//!
//! # Webhooks
//! See [`SIGNATURE_HEADER`] and the table on the translation: `transfer.created` -> `Paid` (what a
//! lookup of the transfer says), `transfer.reversed` -> `Reversed` when `amount_reversed` reaches
//! `amount` and `PartiallyReversed` before that; `payout.*` events name nothing of ours (a
//! connected account paying out its own balance); the event id is Stripe's `evt_...`.
//!
//! Stripe gives an account endpoint and a Connect endpoint each its own signing secret; a delivery
//! signed with either configured secret is authentic (both endpoints may point at the same route).
//! An event whose `livemode` is not the mode of `STRIPE_SECRET_KEY` (`sk_live_`/`rk_live_` or
//! `sk_test_`/`rk_test_`) names nothing of ours, and so does one about an object without our key in
//! its metadata (a connected account's own `po_...` payout): the engine acknowledges them and
//! changes nothing.

mod client;
mod webhook;
mod wire;

use std::time::Duration;

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::domain::Provider;
use payout_core::funds::{BalanceAnswer, BalanceSource};
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::{ProviderError, ProviderErrorKind, WebhookError};

pub use webhook::{SIGNATURE_HEADER, signature_header};

use crate::common::http::Api;
use crate::common::options::ClientVars;
use crate::common::{ClientOptions, ConfigBuilder, ConfigError, Secret};
use client::{StripeClient, StripeError};
use wire::TransferRequest;

/// Stripe's API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// How far a webhook's signed timestamp may be from now, either way.
pub const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// Stripe's documented limits (docs.stripe.com/rate-limits): 100 requests per second per account in
/// live mode, 25 in test mode (sandboxes), and by default 25 per second to any one endpoint. The key's
/// mode picks the first (test mode when the key does not say); `STRIPE_RATE_LIMIT` replaces it.
pub fn default_rate_limit(livemode: Option<bool>) -> crate::RateLimit {
    let overall = if livemode == Some(true) { 100 } else { 25 };
    crate::RateLimit::per_second(overall).with_per_endpoint(25)
}

const CLIENT_VARS: ClientVars = ClientVars {
    api_base: "STRIPE_API_BASE",
    timeout_secs: "STRIPE_TIMEOUT_SECS",
    rate_limit: "STRIPE_RATE_LIMIT",
    default_api_base: Some(DEFAULT_API_BASE),
};

/// Settings for [`StripeProvider`]. `Debug` shows no secret.
#[derive(Clone)]
pub struct StripeConfig {
    client: ClientOptions,
    secret_key: Secret,
    webhook_secret: Option<Secret>,
    connect_webhook_secret: Option<Secret>,
    api_version: Option<String>,
    webhook_tolerance: Duration,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("client", &self.client)
            .field("api_version", &self.api_version)
            .field("webhooks", &self.webhook_secret.is_some())
            .field("connect_webhooks", &self.connect_webhook_secret.is_some())
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
        StripeConfig::builder()
            .vars(
                lookup,
                &[
                    ("STRIPE_SECRET_KEY", |b, v| b.secret_key(v)),
                    ("STRIPE_WEBHOOK_SECRET", |b, v| b.webhook_secret(v)),
                    ("STRIPE_CONNECT_WEBHOOK_SECRET", |b, v| b.connect_webhook_secret(v)),
                    ("STRIPE_API_VERSION", |b, v| b.api_version(v)),
                ],
            )
            .client_vars(&CLIENT_VARS, lookup)?
            .build()
    }

    /// The API base URL.
    pub fn api_base(&self) -> &str {
        self.client.base()
    }

    /// The webhook signing secrets configured: the account endpoint's, then the Connect one's.
    fn webhook_secrets(&self) -> Vec<&Secret> {
        self.webhook_secret.iter().chain(&self.connect_webhook_secret).collect()
    }

    /// The mode of the secret key: `Some(true)` live, `Some(false)` test, `None` when its prefix
    /// does not say.
    fn livemode(&self) -> Option<bool> {
        let key = self.secret_key.expose();
        if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
            Some(true)
        } else if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
            Some(false)
        } else {
            None
        }
    }
}

/// Builds a [`StripeConfig`]: the shared setters of [`ConfigBuilder`] (`api_base`, `timeout`,
/// `connect_timeout`, `retry`, `clock`) and Stripe's own below.
pub type StripeConfigBuilder = ConfigBuilder<StripeSettings>;

/// Stripe's own settings in a [`StripeConfigBuilder`], set through its methods.
#[derive(Default)]
pub struct StripeSettings {
    secret_key: Option<Secret>,
    webhook_secret: Option<Secret>,
    connect_webhook_secret: Option<Secret>,
    api_version: Option<String>,
    webhook_tolerance: Option<Duration>,
}

impl StripeConfigBuilder {
    /// The secret key (`sk_...` or a restricted `rk_...`). Required (`STRIPE_SECRET_KEY`).
    pub fn secret_key(mut self, key: impl Into<Secret>) -> Self {
        self.settings.secret_key = Some(key.into());
        self
    }
    /// The account webhook endpoint's signing secret (`whsec_...`).
    pub fn webhook_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.settings.webhook_secret = Some(secret.into());
        self
    }
    /// The Connect webhook endpoint's signing secret (`whsec_...`): Stripe signs events from
    /// connected accounts with it, not with the account endpoint's.
    pub fn connect_webhook_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.settings.connect_webhook_secret = Some(secret.into());
        self
    }
    /// A `Stripe-Version` to pin.
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.settings.api_version = Some(version.into());
        self
    }
    /// How far a webhook's timestamp may be from now, either way.
    pub fn webhook_tolerance(mut self, tolerance: Duration) -> Self {
        self.settings.webhook_tolerance = Some(tolerance);
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<StripeConfig, ConfigError> {
        let own = self.settings;
        let secret_key = own.secret_key.ok_or(ConfigError::Missing("STRIPE_SECRET_KEY"))?;
        if secret_key.expose().trim().is_empty() {
            return Err(ConfigError::Missing("STRIPE_SECRET_KEY"));
        }
        Ok(StripeConfig {
            client: self.client.resolve(&CLIENT_VARS)?,
            secret_key,
            webhook_secret: own.webhook_secret.filter(|s| !s.expose().is_empty()),
            connect_webhook_secret: own.connect_webhook_secret.filter(|s| !s.expose().is_empty()),
            api_version: own.api_version,
            webhook_tolerance: own.webhook_tolerance.unwrap_or(DEFAULT_WEBHOOK_TOLERANCE),
        })
    }
}

/// The Stripe Connect adapter.
pub struct StripeProvider {
    config: StripeConfig,
    client: StripeClient,
}

crate::common::debug_shows_config_only!(StripeProvider);

impl StripeProvider {
    /// An adapter with its own HTTP client.
    pub fn new(config: StripeConfig) -> Result<Self, ConfigError> {
        let client = StripeClient {
            api: Api::new(
                Provider::StripeConnect,
                &config.client,
                default_rate_limit(config.livemode()),
                &config.secret_key,
            )?,
            secret_key: config.secret_key.clone(),
            api_version: config.api_version.clone(),
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
        crate::common::capabilities(1, !self.config.webhook_secrets().is_empty())
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let request = TransferRequest::try_from(instruction).map_err(|e| e.into_error(Provider::StripeConnect))?;
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
        let secrets = self.config.webhook_secrets();
        if secrets.is_empty() {
            return Err(WebhookError::Unavailable(
                "neither STRIPE_WEBHOOK_SECRET nor STRIPE_CONNECT_WEBHOOK_SECRET is configured".into(),
            ));
        }
        let header = headers
            .get(SIGNATURE_HEADER)
            .ok_or_else(|| WebhookError::MissingHeader("Stripe-Signature".into()))?
            .to_str()
            .map_err(|_| WebhookError::BadSignature)?;
        let tolerance = i64::try_from(self.config.webhook_tolerance.as_secs()).unwrap_or(i64::MAX);
        webhook::verify_signature(&secrets, header, body, self.config.client.clock().now(), tolerance)?;
        webhook::translate(body, self.config.livemode())
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

#[async_trait]
impl BalanceSource for StripeProvider {
    fn provider(&self) -> Provider {
        Provider::StripeConnect
    }

    /// `GET /v1/balance`: the platform's `available` amounts, as of now.
    async fn balance(&self) -> Result<BalanceAnswer, ProviderError> {
        let balance = self.client.get_balance().await?;
        Ok(BalanceAnswer::Known {
            available: balance.available(),
            as_of: self.config.client.clock().now(),
        })
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
        assert_eq!(c.client.timeout(), Duration::from_secs(5));
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
