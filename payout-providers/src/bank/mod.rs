//! Bank transfer: a small JSON REST contract for a bank (or a bank-integration service) at
//! `BANK_API_URL`, plus [files] that finance uploads to a bank by hand: the original system's
//! CSV, ISO 20022 `pain.001.001.03` XML and NACHA.
//!
//! # Configuration
//! | variable | builder | default |
//! |---|---|---|
//! | `BANK_API_URL` (required) | [`BankConfigBuilder::api_url`] | — |
//! | `BANK_API_KEY` (required) | [`BankConfigBuilder::api_key`] | — |
//! | `BANK_TIMEOUT_SECS` | [`BankConfigBuilder::timeout`] | 30 s (connect: 10 s) |
//! | `BANK_RATE_LIMIT` (requests per second, `0` for none) | [`BankConfigBuilder::rate_limit`] | [`DEFAULT_RATE_LIMIT`]: 10/s |
//! | — | [`BankConfigBuilder::retry`] | [`RetryPolicy::default`](crate::RetryPolicy::default) |
//!
//! # The contract
//! Every request carries `Authorization: Bearer {BANK_API_KEY}`; bodies are JSON.
//!
//! **Create** — `POST {BANK_API_URL}/transfers` with `Idempotency-Key: {attempt key}`:
//! ```json
//! {"reference": "po_123-1", "payout_id": "po_123", "amount": "1500.00", "currency": "KES",
//!  "description": "Consultations 2025-01-01..2025-01-31",
//!  "beneficiary": {"name": "Dr. A", "account_number": "0123456789", "bank_code": "01",
//!                  "branch_code": "001", "bank_name": "Test Bank", "country": "KE"}}
//! ```
//! `amount` is exact decimal text at the currency's exponent (never a float); `reference` repeats the
//! idempotency key so it appears on statements. The answer (200, 201 or 202) is a transfer:
//! ```json
//! {"id": "bt_1", "status": "PENDING", "reference": "po_123-1", "failure_reason": null}
//! ```
//! with `status` one of `PENDING`, `PROCESSING` (→ `Accepted`), `COMPLETED` (→ `Paid`), `FAILED` or
//! `REJECTED` (→ `Failed`), `RETURNED` (→ `Returned`). Any other status is an error, never a guess.
//!
//! The bank must be idempotent on the key: a repeated `Idempotency-Key` returns the first answer
//! and moves no money; a key whose first request is still running answers 409
//! `{"error": {"code": "idempotency_key_in_use"}}`.
//!
//! **Read** — `GET {BANK_API_URL}/transfers/{id}` returns a transfer (404 if unknown), and
//! `GET {BANK_API_URL}/transfers?reference={key}` returns `{"data": [transfer, ...]}` (empty when the
//! key never arrived).
//!
//! **Errors** — `{"error": {"code": "...", "message": "..."}}`. 409, 429 and 5xx are retried with the
//! same key (`Retryable`); other 4xx are `Final`; a timeout or reset is `Ambiguous`.
//!
//! # Lookup
//! With a reference, `GET /transfers/{id}` (a 404 for an id the bank gave us is an error, not
//! `NotFound`); without one, `GET /transfers?reference={key}`, where an empty list is `NotFound`.
//!
//! # Webhooks
//! The contract has none: [`capabilities`](PayoutProvider::capabilities) says `webhooks: false`,
//! `verify_webhook` refuses everything, and reconciliation settles bank payouts by lookup.

mod client;
pub mod files;
mod wire;

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::domain::Provider;
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::{ProviderError, ProviderErrorKind, WebhookError};

pub use files::{
    AccountType, BankFileConfig, BankFileFormat, BankTransferLine, FileError, NachaOrigin, NachaSettings,
    Pain001Origin, Pain001Settings, SecCode, UnknownFormat, csv, end_to_end_id, nacha, pain001, stated_totals,
};

use crate::common::http::Api;
use crate::common::options::ClientVars;
use crate::common::{ClientOptions, ConfigBuilder, ConfigError, Secret};
use client::BankClient;
use wire::TransferRequest;

/// The bank's base URL has no default: `BANK_API_URL` is required.
/// The bank contract's default request budget: 10 requests per second (a bank's integration API
/// publishes its own; set `BANK_RATE_LIMIT`).
pub const DEFAULT_RATE_LIMIT: crate::RateLimit = crate::RateLimit::per_second_const(10);

const CLIENT_VARS: ClientVars = ClientVars {
    api_base: "BANK_API_URL",
    timeout_secs: "BANK_TIMEOUT_SECS",
    rate_limit: "BANK_RATE_LIMIT",
    default_api_base: None,
};

/// Settings for [`BankProvider`]. `Debug` shows no secret.
#[derive(Clone)]
pub struct BankConfig {
    client: ClientOptions,
    api_key: Secret,
}

impl std::fmt::Debug for BankConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankConfig")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl BankConfig {
    /// A builder with every default.
    pub fn builder() -> BankConfigBuilder {
        BankConfigBuilder::default()
    }

    /// Reads the variables in the [module table](self) from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = &lookup as &dyn Fn(&str) -> Option<String>;
        BankConfig::builder()
            .vars(lookup, &[("BANK_API_KEY", |b, v| b.api_key(v))])
            .client_vars(&CLIENT_VARS, lookup)?
            .build()
    }

    /// The API base URL.
    pub fn api_url(&self) -> &str {
        self.client.base()
    }
}

/// Builds a [`BankConfig`]: the shared setters of [`ConfigBuilder`] (`timeout`, `connect_timeout`,
/// `retry`; `api_base` is [`api_url`](BankConfigBuilder::api_url)) and the bank's own below.
pub type BankConfigBuilder = ConfigBuilder<BankSettings>;

/// The bank's own settings in a [`BankConfigBuilder`], set through its methods.
#[derive(Default)]
pub struct BankSettings {
    api_key: Option<Secret>,
}

impl BankConfigBuilder {
    /// The API's base URL (`BANK_API_URL`, required); `/transfers` is appended. The same as
    /// [`api_base`](ConfigBuilder::api_base).
    pub fn api_url(self, url: impl Into<String>) -> Self {
        self.api_base(url)
    }
    /// The bearer key (`BANK_API_KEY`).
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.settings.api_key = Some(key.into());
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<BankConfig, ConfigError> {
        let client = self.client.resolve(&CLIENT_VARS)?;
        let api_key = self
            .settings
            .api_key
            .filter(|k| !k.expose().trim().is_empty())
            .ok_or(ConfigError::Missing("BANK_API_KEY"))?;
        Ok(BankConfig { client, api_key })
    }
}

/// The bank API adapter.
pub struct BankProvider {
    client: BankClient,
    config: BankConfig,
}

crate::common::debug_shows_config_only!(BankProvider);

impl BankProvider {
    /// An adapter with its own HTTP client.
    pub fn new(config: BankConfig) -> Result<Self, ConfigError> {
        let client = BankClient {
            api: Api::new(
                Provider::BankTransfer,
                &config.client,
                DEFAULT_RATE_LIMIT,
                &config.api_key,
            )?,
            api_key: config.api_key.clone(),
        };
        Ok(BankProvider { config, client })
    }
}

fn unknown_status(reason: String) -> ProviderError {
    ProviderError::new(Provider::BankTransfer, ProviderErrorKind::Ambiguous, reason).with_code("unknown_status")
}

#[async_trait]
impl PayoutProvider for BankProvider {
    fn provider(&self) -> Provider {
        Provider::BankTransfer
    }

    fn capabilities(&self) -> Capabilities {
        crate::common::capabilities(1, false)
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let body = TransferRequest::try_from(instruction).map_err(|e| e.into_error(Provider::BankTransfer))?;
        let transfer = self.client.create_transfer(&body, &instruction.idempotency_key).await?;
        let status = transfer.status().map_err(unknown_status)?;
        Ok(SendReceipt {
            note: format!(
                "bank transfer {} of {} {}: {}",
                transfer.id, body.amount, body.currency, transfer.status
            ),
            reference: Some(transfer.id),
            status,
        })
    }

    async fn verify_webhook(&self, _headers: &HeaderMap, _body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Err(WebhookError::Unavailable(
            "the bank contract has no webhooks; bank payouts settle by lookup".into(),
        ))
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        match attempt.provider_reference.as_deref().filter(|r| !r.is_empty()) {
            Some(reference) => match self.client.get_transfer(reference).await? {
                Some(t) => t.status().map_err(unknown_status),
                None => Err(ProviderError::new(
                    Provider::BankTransfer,
                    ProviderErrorKind::Final,
                    format!(
                        "the bank has no transfer {reference}, which it returned for {}",
                        attempt.idempotency_key
                    ),
                )
                .with_code("not_found")),
            },
            None => {
                let found = self.client.find_by_reference(&attempt.idempotency_key).await?;
                match found
                    .iter()
                    .find(|t| t.reference.as_deref() == Some(attempt.idempotency_key.as_str()))
                {
                    Some(t) => t.status().map_err(unknown_status),
                    None if found.is_empty() => Ok(ProviderStatus::NotFound),
                    None => Err(unknown_status(format!(
                        "the bank listed transfers for reference {} that do not carry it",
                        attempt.idempotency_key
                    ))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_settings_are_named() {
        assert_eq!(
            BankConfig::from_vars(|_| None).unwrap_err(),
            ConfigError::Missing("BANK_API_URL")
        );
        let only_url = BankConfig::from_vars(|k| (k == "BANK_API_URL").then(|| "https://bank.example".into()));
        assert_eq!(only_url.unwrap_err(), ConfigError::Missing("BANK_API_KEY"));
    }
}
