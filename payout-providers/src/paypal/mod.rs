//! PayPal Payouts v1: pays doctors' PayPal emails, many in one batch call.
//!
//! # Configuration
//! | variable | builder | default |
//! |---|---|---|
//! | `PAYPAL_CLIENT_ID` (required) | [`PaypalConfigBuilder::client_id`] | — |
//! | `PAYPAL_CLIENT_SECRET` (required) | [`PaypalConfigBuilder::client_secret`] | — |
//! | `PAYPAL_WEBHOOK_ID` | [`PaypalConfigBuilder::webhook_id`] | none: webhooks are refused |
//! | `PAYPAL_WEBHOOK_VERIFICATION` (`offline` or `api`) | [`PaypalConfigBuilder::verification`] | `offline` |
//! | `PAYPAL_API_BASE` | [`PaypalConfigBuilder::api_base`] | `https://api-m.sandbox.paypal.com` |
//! | `PAYPAL_EMAIL_SUBJECT` | [`PaypalConfigBuilder::email_subject`] | `You have a payout` |
//! | `PAYPAL_TIMEOUT_SECS` | [`PaypalConfigBuilder::timeout`] | 30 s (connect: 10 s) |
//! | `PAYPAL_RATE_LIMIT` (requests per second, `0` for none) | [`PaypalConfigBuilder::rate_limit`] | [`DEFAULT_RATE_LIMIT`]: 20/s |
//! | — | [`PaypalConfigBuilder::purpose`] | none (e.g. `SERVICES`) |
//! | — | [`PaypalConfigBuilder::cert_fetcher`] | HTTPS GET ([`HttpCertFetcher`]) |
//! | — | [`PaypalConfigBuilder::retry`], [`PaypalConfigBuilder::clock`] | [`RetryPolicy::default`](crate::RetryPolicy::default), the system clock |
//!
//! The live base is `https://api-m.paypal.com`.
//!
//! # Sending
//! An OAuth token (`POST /v1/oauth2/token`) is cached until 60 s before it expires and refreshed once
//! on a 401. `POST /v1/payments/payouts` carries one item per payout: `sender_item_id` is the
//! attempt's key, `amount.value` the exact decimal string (`"12.50"`, `"1500"` for JPY). PayPal
//! deduplicates by `sender_batch_id` only (once in 30 days), never by `sender_item_id`, so the
//! engine names every batch and stores its id with each member's attempt before the call
//! ([`PayoutInstruction::batch_id`]); the adapter sends each batch id's instructions in one create
//! call under exactly that `sender_batch_id` (also sent as `PayPal-Request-Id`), and a named batch
//! over 15,000 items is refused rather than split. Instructions that name no batch (a library
//! caller's) use the key itself for one, and `payouts-` + the first 40 hex digits of the SHA-256 of
//! the sorted keys for several.
//!
//! [`send_batch`](PayoutProvider::send_batch) takes up to 15,000 items per batch;
//! after the create call it reads the batch (`GET /v1/payments/payouts/{id}`, paged) and maps each
//! item back by `sender_item_id`: its `payout_item_id` becomes the reference and its
//! `transaction_status` the status (`SUCCESS` → `Paid`, `PENDING`/`UNCLAIMED`/`ONHOLD` → `Accepted`,
//! `FAILED`/`BLOCKED` → `Failed`, `RETURNED`/`REFUNDED` → `Returned`, `REVERSED` → `Reversed`). Items
//! not listed yet are `Accepted` with the batch id as reference. An instruction PayPal cannot take
//! (not an email destination, a non-positive amount, a key over 63 characters) fails `Final` alone,
//! before any call.
//!
//! A duplicate `sender_batch_id` means the batch was sent before: recognised in every shape it is
//! documented or seen in (a detail whose `field` is `SENDER_BATCH_ID`, the JSON pointer
//! `/sender_batch_header/sender_batch_id` or the dotted path, or whose issue is "Duplicate batch
//! request"), the original batch is found through the error's link (anywhere in it) and read as
//! above, and nothing fails; without a link the items are `Accepted` without a reference. A create
//! call with an unknown outcome (timeout, reset) is re-sent once with the same `sender_batch_id` to
//! resolve it — safe because PayPal deduplicates it.
//!
//! A `VALIDATION_ERROR` whose details all name items (`items[2].receiver`, `/items/2/receiver`)
//! means PayPal refused the whole batch for them, and nothing was paid: those items fail `Final`
//! with PayPal's issue, the others `Final` with the code
//! [`ProviderError::REJECTED_WITH_BATCH`](payout_core::ProviderError::REJECTED_WITH_BATCH), which
//! the engine's bulk trigger sends again as new attempts in a new batch.
//!
//! Failures: connect errors, 409, 429 and 5xx are retried with the same ids and end `Retryable`;
//! timeouts that the re-send could not resolve are `Ambiguous`; other 4xx are `Final`.
//!
//! # Lookup
//! `GET /v1/payments/payouts-item/{reference}`; when the reference is a batch id (404 as an item),
//! the batch is read and the item found by `sender_item_id`. PayPal cannot be searched by
//! `sender_batch_id`, so an attempt without a reference cannot be looked up: that is
//! `ProviderStatus::Undetermined`, never `NotFound`. Reconciliation then re-sends the attempt's
//! whole stored batch, exactly as first sent: PayPal answers a batch it has with the duplicate
//! error, which leads to the original batch and every member's reference, and creates one it never
//! received.
//!
//! # Webhooks
//! Offline (default): the message `transmission_id|transmission_time|webhook_id|crc32(raw body)` is
//! checked against `PAYPAL-TRANSMISSION-SIG` (RSA PKCS#1 v1.5 SHA-256) with the certificate at
//! `PAYPAL-CERT-URL`, which must pass [`check_cert_url`]; the certificate's common name must end in
//! `.paypal.com` and it must be valid now; certificates are cached by URL. With `api`, PayPal's
//! `POST /v1/notifications/verify-webhook-signature` decides. PayPal redelivers for 3 days, so there
//! is no freshness window: replays are stopped by event-id deduplication. See the translation
//! table on the webhook module's `translate`: item events only (`DENIED` included), the event id
//! is PayPal's `WH-...`. The signature covers only a CRC32 of the body, so before an event of ours
//! can move a payout its item is read with `GET /v1/payments/payouts-item/{id}`: a body whose status
//! or `sender_item_id` disagrees with PayPal's answer is refused (`WebhookError::Contradicted`,
//! answered 422 and counted in `/metrics` as `contradicted`), and one PayPal cannot be asked about
//! now is refused for redelivery.

mod batch;
mod client;
mod webhook;
mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::domain::Provider;
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::{ProviderError, ProviderErrorKind, WebhookError};

pub use webhook::{
    AUTH_ALGO, CERT_HOSTS, CERT_PATH_PREFIX, CERT_URL, CertFetcher, HttpCertFetcher, TRANSMISSION_ID, TRANSMISSION_SIG,
    TRANSMISSION_TIME, check_cert_url,
};
pub use wire::MAX_BATCH_ITEMS;

use crate::common::http::Api;
use crate::common::options::ClientVars;
use crate::common::token::{DEFAULT_EXPIRY_MARGIN, TokenCache};
use crate::common::{ClientOptions, ConfigBuilder, ConfigError, Secret, var};
use client::PaypalClient;
use webhook::{OfflineVerifier, Transmission};
use wire::PayoutItem;

/// PayPal's sandbox.
pub const SANDBOX_API_BASE: &str = "https://api-m.sandbox.paypal.com";
/// PayPal's live API.
pub const LIVE_API_BASE: &str = "https://api-m.paypal.com";

/// PayPal's default request budget: 20 requests per second. PayPal publishes no number, only that it
/// answers 429 `RATE_LIMIT_REACHED` beyond its limit; set `PAYPAL_RATE_LIMIT` to what your account
/// is given.
pub const DEFAULT_RATE_LIMIT: crate::RateLimit = crate::RateLimit::per_second_const(20);

const CLIENT_VARS: ClientVars = ClientVars {
    api_base: "PAYPAL_API_BASE",
    timeout_secs: "PAYPAL_TIMEOUT_SECS",
    rate_limit: "PAYPAL_RATE_LIMIT",
    default_api_base: Some(SANDBOX_API_BASE),
};

/// How webhooks are verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookVerification {
    /// With PayPal's certificate, locally (one certificate download per URL).
    #[default]
    Offline,
    /// By PayPal's verify-webhook-signature API (one call per webhook).
    Api,
}

/// Settings for [`PaypalProvider`]. `Debug` shows no secret.
#[derive(Clone)]
pub struct PaypalConfig {
    client: ClientOptions,
    client_id: Secret,
    client_secret: Secret,
    webhook_id: Option<String>,
    verification: WebhookVerification,
    cert_fetcher: Option<Arc<dyn CertFetcher>>,
    email_subject: Option<String>,
    email_message: Option<String>,
    purpose: Option<String>,
}

impl std::fmt::Debug for PaypalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaypalConfig")
            .field("client", &self.client)
            .field("webhooks", &self.webhook_id.is_some())
            .field("verification", &self.verification)
            .field("email_subject", &self.email_subject)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl PaypalConfig {
    /// A builder with every default.
    pub fn builder() -> PaypalConfigBuilder {
        PaypalConfigBuilder::default()
    }

    /// Reads the variables in the [module table](self) from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = &lookup as &dyn Fn(&str) -> Option<String>;
        let mut b = PaypalConfig::builder().vars(
            lookup,
            &[
                ("PAYPAL_CLIENT_ID", |b, v| b.client_id(v)),
                ("PAYPAL_CLIENT_SECRET", |b, v| b.client_secret(v)),
                ("PAYPAL_WEBHOOK_ID", |b, v| b.webhook_id(v)),
                ("PAYPAL_EMAIL_SUBJECT", |b, v| b.email_subject(v)),
            ],
        );
        if let Some(v) = var(lookup, "PAYPAL_WEBHOOK_VERIFICATION") {
            b = b.verification(match v.to_ascii_lowercase().as_str() {
                "offline" => WebhookVerification::Offline,
                "api" => WebhookVerification::Api,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "PAYPAL_WEBHOOK_VERIFICATION",
                        reason: "expected offline or api".into(),
                    });
                }
            });
        }
        b.client_vars(&CLIENT_VARS, lookup)?.build()
    }

    /// The API base URL.
    pub fn api_base(&self) -> &str {
        self.client.base()
    }
}

/// Builds a [`PaypalConfig`]: the shared setters of [`ConfigBuilder`] (`api_base`, `timeout`,
/// `connect_timeout`, `retry`, `clock`) and PayPal's own below.
pub type PaypalConfigBuilder = ConfigBuilder<PaypalSettings>;

/// PayPal's own settings in a [`PaypalConfigBuilder`], set through its methods.
#[derive(Default)]
pub struct PaypalSettings {
    client_id: Option<Secret>,
    client_secret: Option<Secret>,
    webhook_id: Option<String>,
    verification: WebhookVerification,
    email_subject: Option<String>,
    email_message: Option<String>,
    purpose: Option<String>,
    cert_fetcher: Option<Arc<dyn CertFetcher>>,
}

impl PaypalConfigBuilder {
    /// The REST app's client id.
    pub fn client_id(mut self, v: impl Into<Secret>) -> Self {
        self.settings.client_id = Some(v.into());
        self
    }
    /// The REST app's secret.
    pub fn client_secret(mut self, v: impl Into<Secret>) -> Self {
        self.settings.client_secret = Some(v.into());
        self
    }
    /// The webhook's id (part of every signed message).
    pub fn webhook_id(mut self, v: impl Into<String>) -> Self {
        self.settings.webhook_id = Some(v.into());
        self
    }
    /// Offline (default) or API verification.
    pub fn verification(mut self, v: WebhookVerification) -> Self {
        self.settings.verification = v;
        self
    }
    /// The subject of PayPal's email to the doctor.
    pub fn email_subject(mut self, v: impl Into<String>) -> Self {
        self.settings.email_subject = Some(v.into());
        self
    }
    /// The body of PayPal's email to the doctor.
    pub fn email_message(mut self, v: impl Into<String>) -> Self {
        self.settings.email_message = Some(v.into());
        self
    }
    /// The items' `purpose` (`SERVICES`, ...), for accounts that must state one.
    pub fn purpose(mut self, v: impl Into<String>) -> Self {
        self.settings.purpose = Some(v.into());
        self
    }
    /// Where certificates come from (tests serve their own).
    pub fn cert_fetcher(mut self, f: Arc<dyn CertFetcher>) -> Self {
        self.settings.cert_fetcher = Some(f);
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<PaypalConfig, ConfigError> {
        let own = self.settings;
        let secret = |v: Option<Secret>, name: &'static str| {
            v.filter(|s| !s.expose().trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let text = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let client_id = secret(own.client_id, "PAYPAL_CLIENT_ID")?;
        let client_secret = secret(own.client_secret, "PAYPAL_CLIENT_SECRET")?;
        Ok(PaypalConfig {
            client: self.client.resolve(&CLIENT_VARS)?,
            client_id,
            client_secret,
            webhook_id: text(own.webhook_id),
            verification: own.verification,
            cert_fetcher: own.cert_fetcher,
            email_subject: Some(text(own.email_subject).unwrap_or_else(|| "You have a payout".to_string())),
            email_message: text(own.email_message),
            purpose: text(own.purpose),
        })
    }
}

/// The PayPal Payouts adapter.
pub struct PaypalProvider {
    config: PaypalConfig,
    client: PaypalClient,
    offline: OfflineVerifier,
}

crate::common::debug_shows_config_only!(PaypalProvider);

fn paypal_error(kind: ProviderErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::new(Provider::PaypalPayouts, kind, message)
}

impl PaypalProvider {
    /// An adapter with its own HTTP client, token cache and certificate cache.
    pub fn new(config: PaypalConfig) -> Result<Self, ConfigError> {
        let api = Api::new(
            Provider::PaypalPayouts,
            &config.client,
            DEFAULT_RATE_LIMIT,
            &config.client_id,
        )?;
        let fetcher = config
            .cert_fetcher
            .clone()
            .unwrap_or_else(|| Arc::new(HttpCertFetcher::new(api.http.clone())) as Arc<_>);
        let client = PaypalClient {
            api,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            tokens: TokenCache::new(DEFAULT_EXPIRY_MARGIN),
        };
        Ok(PaypalProvider {
            offline: OfflineVerifier::new(fetcher),
            config,
            client,
        })
    }
}

#[async_trait]
impl PayoutProvider for PaypalProvider {
    fn provider(&self) -> Provider {
        Provider::PaypalPayouts
    }

    fn capabilities(&self) -> Capabilities {
        crate::common::capabilities(MAX_BATCH_ITEMS, self.config.webhook_id.is_some())
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let mut results = self.send_batch(std::slice::from_ref(instruction)).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(paypal_error(ProviderErrorKind::Ambiguous, "no result for the item")))
    }

    async fn send_batch(
        &self,
        instructions: &[PayoutInstruction],
    ) -> Result<Vec<Result<SendReceipt, ProviderError>>, ProviderError> {
        let mut results: Vec<Option<Result<SendReceipt, ProviderError>>> = vec![None; instructions.len()];
        // One item per distinct key: the same attempt twice in one call is sent once.
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut to_send: Vec<(usize, PayoutItem)> = Vec::new();
        for (n, instruction) in instructions.iter().enumerate() {
            if first_of_key.contains_key(instruction.idempotency_key.as_str()) {
                continue;
            }
            match PayoutItem::try_from(instruction) {
                Ok(mut item) => {
                    item.purpose = self.config.purpose.clone();
                    first_of_key.insert(instruction.idempotency_key.as_str(), n);
                    to_send.push((n, item));
                }
                Err(e) => results[n] = Some(Err(e.into_error(Provider::PaypalPayouts))),
            }
        }
        // One create call per batch id, with exactly its instructions: PayPal deduplicates by
        // `sender_batch_id` only, so an item must never go out under another one.
        let mut batches: Vec<(Option<&str>, Vec<(usize, PayoutItem)>)> = Vec::new();
        for (n, item) in to_send {
            let id = instructions[n].batch_id.as_deref();
            match batches.iter_mut().find(|(b, _)| *b == id) {
                Some((_, members)) => members.push((n, item)),
                None => batches.push((id, vec![(n, item)])),
            }
        }
        for (batch_id, members) in batches {
            let chunks: Vec<&[(usize, PayoutItem)]> = match batch_id {
                // A named batch is sent whole or not at all: split, its second part would be a
                // duplicate of the first.
                Some(id) if members.len() > MAX_BATCH_ITEMS => {
                    let e = paypal_error(
                        ProviderErrorKind::Final,
                        format!(
                            "batch {id} has {} items; PayPal takes at most {MAX_BATCH_ITEMS} in one batch",
                            members.len()
                        ),
                    );
                    for (n, _) in &members {
                        results[*n] = Some(Err(e.clone()));
                    }
                    continue;
                }
                Some(_) => vec![members.as_slice()],
                None => members.chunks(MAX_BATCH_ITEMS).collect(),
            };
            for chunk in chunks {
                let keys: Vec<&str> = chunk.iter().map(|(_, i)| i.sender_item_id.as_str()).collect();
                let sender_batch_id = batch_id.map_or_else(|| Self::sender_batch_id(&keys), str::to_string);
                let items = chunk.iter().map(|(_, item)| item.clone()).collect();
                let answers = self.send_chunk(sender_batch_id, items).await;
                for ((n, _), answer) in chunk.iter().zip(answers) {
                    results[*n] = Some(answer);
                }
            }
        }
        Ok(instructions
            .iter()
            .enumerate()
            .map(|(n, instruction)| {
                let own = results[n].clone();
                let shared = || {
                    first_of_key
                        .get(instruction.idempotency_key.as_str())
                        .and_then(|i| results[*i].clone())
                };
                own.or_else(shared)
                    .unwrap_or_else(|| Err(paypal_error(ProviderErrorKind::Ambiguous, "no result for the item")))
            })
            .collect())
    }

    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        let Some(webhook_id) = &self.config.webhook_id else {
            return Err(WebhookError::Unavailable("PAYPAL_WEBHOOK_ID is not configured".into()));
        };
        let transmission = Transmission::from_headers(headers)?;
        match self.config.verification {
            WebhookVerification::Offline => {
                self.offline
                    .verify(&transmission, webhook_id, body, self.config.client.clock().now())
                    .await?;
            }
            WebhookVerification::Api => {
                check_cert_url(&transmission.cert_url)?;
                let request = webhook::verify_request_body(&transmission, webhook_id, body)?;
                let raw = self
                    .client
                    .verify_webhook_signature(request)
                    .await
                    .map_err(|e| WebhookError::Unavailable(format!("PayPal verification API: {}", e.message)))?;
                if !raw.status.is_success() {
                    return Err(WebhookError::Unavailable(format!(
                        "PayPal verification API: HTTP {}",
                        raw.status
                    )));
                }
                let answer: wire::VerifyResponse = serde_json::from_slice(&raw.body)
                    .map_err(|e| WebhookError::Unavailable(format!("PayPal verification API: {e}")))?;
                if answer.verification_status != "SUCCESS" {
                    return Err(WebhookError::BadSignature);
                }
            }
        }
        // PayPal signs only a CRC32 of the body, so what an event of ours claims is confirmed with
        // PayPal before it can move a payout: a body that disagrees is refused.
        let mut events = Vec::new();
        for (event, item_id) in webhook::translate(body)? {
            if event.names_ours() {
                let Some(item_id) = item_id else {
                    return Err(WebhookError::Malformed(format!(
                        "{} names no payout_item_id to confirm it by",
                        event.provider_type
                    )));
                };
                let confirmed = self.client.item(&item_id).await.map_err(|e| {
                    WebhookError::Unavailable(format!("PayPal could not be asked about item {item_id}: {e}"))
                })?;
                let Some(confirmed) = confirmed else {
                    return Err(WebhookError::Contradicted(format!("PayPal has no item {item_id}")));
                };
                webhook::agrees(&event, &confirmed).map_err(WebhookError::Contradicted)?;
            }
            events.push(event);
        }
        Ok(events)
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        let Some(reference) = attempt.provider_reference.as_deref().filter(|r| !r.is_empty()) else {
            return Ok(ProviderStatus::Undetermined(format!(
                "attempt {} has no PayPal reference and PayPal cannot be searched by sender_batch_id; it settles by \
                 webhook, or a person re-sends it with the same key",
                attempt.idempotency_key
            )));
        };
        let unknown = |why: String| paypal_error(ProviderErrorKind::Ambiguous, why).with_code("unknown_status");
        if let Some(item) = self.client.item(reference).await? {
            return item.status().map_err(unknown);
        }
        let key = attempt.idempotency_key.as_str();
        match self.client.batch_items(reference, &[key]).await? {
            Some((status, items)) => match items.get(key) {
                Some(item) => item.status().map_err(unknown),
                None => match status.unwrap_or_default().to_ascii_uppercase().as_str() {
                    "DENIED" => Ok(ProviderStatus::Failed(format!("PayPal denied batch {reference}"))),
                    "PENDING" | "PROCESSING" | "NEW" => Ok(ProviderStatus::Accepted),
                    other => Err(unknown(format!("PayPal batch {reference} ({other}) has no item {key}"))),
                },
            },
            None => Err(paypal_error(
                ProviderErrorKind::Final,
                format!("PayPal has neither an item nor a batch {reference} (attempt {key})"),
            )
            .with_code("RESOURCE_NOT_FOUND")),
        }
    }
}
