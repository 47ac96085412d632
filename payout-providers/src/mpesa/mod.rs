//! Safaricom M-Pesa Daraja B2C: pays a doctor's M-Pesa phone in whole Kenyan shillings.
//!
//! # Configuration
//! | variable | builder | default |
//! |---|---|---|
//! | `MPESA_B2C_CONSUMER_KEY` or `MPESA_CONSUMER_KEY` (required) | [`MpesaConfigBuilder::consumer_key`] | — |
//! | `MPESA_B2C_CONSUMER_SECRET` or `MPESA_CONSUMER_SECRET` (required) | [`MpesaConfigBuilder::consumer_secret`] | — |
//! | `MPESA_SHORTCODE` (required) | [`MpesaConfigBuilder::shortcode`] | — |
//! | `MPESA_INITIATOR_NAME` (required) | [`MpesaConfigBuilder::initiator_name`] | — |
//! | `MPESA_B2C_SECURITY_CREDENTIAL`, or `MPESA_INITIATOR_PASSWORD` + `MPESA_CERT_PATH` (required) | [`MpesaConfigBuilder::security_credential`], [`MpesaConfigBuilder::initiator_password`] | — |
//! | `MPESA_RESULT_URL` (required) | [`MpesaConfigBuilder::result_url`] | — |
//! | `MPESA_TIMEOUT_URL` (required) | [`MpesaConfigBuilder::timeout_url`] | — |
//! | `MPESA_STATUS_RESULT_URL` | [`MpesaConfigBuilder::status_result_url`] | `MPESA_RESULT_URL` with its path's last `/result` made `/status` (or `/status` added) |
//! | `MPESA_BALANCE_RESULT_URL` | [`MpesaConfigBuilder::balance_result_url`] | `MPESA_RESULT_URL` with its path's last `/result` made `/balance/result` (or `/balance/result` added) |
//! | `MPESA_BALANCE_TIMEOUT_URL` | [`MpesaConfigBuilder::balance_timeout_url`] | the balance result URL with its last `/result` made `/timeout` |
//! | `MPESA_BALANCE_ACCOUNT` | [`MpesaConfigBuilder::balance_account`] | `Utility Account` (the account B2C pays from) |
//! | `MPESA_BALANCE_MAX_AGE_SECS` | [`MpesaConfigBuilder::balance_max_age`] | 300 s |
//! | `MPESA_BALANCE_WAIT_SECS` | [`MpesaConfigBuilder::balance_wait`] | 120 s |
//! | `MPESA_CALLBACK_TOKEN` | [`MpesaConfigBuilder::callback_token`] | none |
//! | `MPESA_WEBHOOK_SECRET` | [`MpesaConfigBuilder::webhook_secret`] | none |
//! | `MPESA_CALLBACK_IPS` (comma-separated) | [`MpesaConfigBuilder::allowed_ips`] | any source |
//! | `MPESA_COMMAND_ID` | [`MpesaConfigBuilder::command_id`] | `BusinessPayment` |
//! | `MPESA_API_BASE` | [`MpesaConfigBuilder::api_base`] | `https://sandbox.safaricom.co.ke` |
//! | `MPESA_TIMEOUT_SECS` | [`MpesaConfigBuilder::timeout`] | 30 s (connect: 10 s) |
//! | `MPESA_RATE_LIMIT` (requests per second, `0` for none) | [`MpesaConfigBuilder::rate_limit`] | [`DEFAULT_RATE_LIMIT`]: 5/s |
//! | — | [`MpesaConfigBuilder::retry`] | [`RetryPolicy::default`](crate::RetryPolicy::default) |
//!
//! With a password and a certificate the credential is computed once, when the config is built
//! ([`security_credential`]). The live base is `https://api.safaricom.co.ke`.
//!
//! # Sending
//! An OAuth token (`GET /oauth/v1/generate`) is cached until 60 s before it expires and refreshed
//! once when Daraja refuses it (401, `400.003.01`, or `404.001.03` as HTTP 404). `POST /mpesa/b2c/v3/paymentrequest` carries the
//! attempt's key as `OriginatorConversationID` and the amount as whole shillings (`"500"`). A
//! non-KES currency, a fractional amount or one outside KES 10..=250,000, or a phone that is not
//! `2547XXXXXXXX`/`2541XXXXXXXX` (`+254...` and `07...` are normalised) is a `Final` error before any
//! call. The ack is not a payment: `send` returns `Accepted` with the `ConversationID` as reference,
//! and the result arrives at the ResultURL. A duplicate `OriginatorConversationID` (`500.002.1001`)
//! means the request was received before: `Accepted`, never a second movement.
//!
//! Failures: connect errors, 429, 5xx and `500.003.02`/`500.003.03`/`500.003.1001` are retried with the
//! same key and end `Retryable`; timeouts and resets are `Ambiguous`; the documented refusals
//! (`400.002.02`, `400.002.05`, `404.001.04`, and an invalid token still refused after one refresh:
//! `400.003.01`, `404.001.03`) and other 4xx are `Final`. A non-zero `ResponseCode` in the ack is not a
//! documented refusal (some mean "cached, will be sent"): `Ambiguous`, so the payout stays
//! PROCESSING until a Transaction Status query answers.
//!
//! # Lookup
//! `POST /mpesa/transactionstatus/v1/query` with `OriginalConversationID` = the key (and the
//! reference as `TransactionID` when it is not a `AG_...` ConversationID) **[unverified field set]**.
//! An attempt whose acknowledgement was lost (no ConversationID) is queried by its
//! `OriginatorConversationID` alone. Daraja answers asynchronously, so `lookup` sends the query and
//! returns `ProviderStatus::Undetermined` (it cannot tell); the result arrives at
//! `MPESA_STATUS_RESULT_URL`, its own path: `Completed` pays the payout, `Failed`/`Declined`/
//! `Cancelled` fails it, anything else leaves it unknown.
//!
//! # Results
//! Result code 0 pays; only a result code that says nothing was paid (1 insufficient balance, 2/3/4/8
//! limits, 11, 21, 2001, 2006, 2028, 2040 unregistered receiver, 8006) fails the payout. A catch-all
//! (17 "internal failure", 26 "system busy"), 15 (duplicate), an unlisted code, and any result of
//! `ResultType` 1 leave it PROCESSING until a Transaction Status query confirms it. Callbacks are
//! matched by `ConversationID`, `OriginatorConversationID` or `TransactionID`.
//!
//! # Callbacks
//! Daraja does not sign callbacks. `verify_webhook` checks, before reading the body, every
//! configured guard and refuses everything when neither a token nor a secret is configured:
//! - the secret path token: the host routes `.../{MPESA_CALLBACK_TOKEN}/...` and passes the path
//!   segment in [`CALLBACK_TOKEN_HEADER`] (constant-time compare);
//! - [`SIGNATURE_HEADER`]: hex HMAC-SHA256 of the raw body keyed by `MPESA_WEBHOOK_SECRET`;
//! - the IP allowlist: [`CLIENT_IP_HEADER`] as the host saw it, else the last `x-forwarded-for` entry.
//!
//! The host also says which URL was hit in [`CALLBACK_KIND_HEADER`] (`result`, `timeout`, `status`,
//! and for the balance [`BALANCE_RESULT_KIND`] and [`BALANCE_TIMEOUT_KIND`]).
//! There is no timestamp to bound, so replays are stopped by event-id deduplication only.
//!
//! # Balance
//! The adapter is also a [`BalanceSource`](payout_core::funds::BalanceSource) for the funds check.
//! B2C pays out of the shortcode's **Utility Account** (a B2C result's `DebitPartyAffectedAccountBalance` names it), so that is the
//! balance read (`MPESA_BALANCE_ACCOUNT` names another). Daraja answers the Account Balance query
//! (`POST /mpesa/accountbalance/v1/query`, `CommandID` `AccountBalance`, `IdentifierType` `4`, the
//! shortcode as `PartyA`) only by a callback to `MPESA_BALANCE_RESULT_URL`, so `balance`:
//! - answers `Known` with the last balance that arrived while it is at most
//!   `MPESA_BALANCE_MAX_AGE_SECS` old (`as_of` is when its callback arrived);
//! - otherwise answers `Pending` while a query sent less than `MPESA_BALANCE_WAIT_SECS` ago is
//!   unanswered, and `Unknown` (with the reason) for as long after Daraja refused one (a
//!   non-zero `ResultCode`) or timed it out (at `MPESA_BALANCE_TIMEOUT_URL`);
//! - otherwise sends a query and answers `Pending`.
//!
//! The balance result (kind [`BALANCE_RESULT_KIND`]) is authenticated like every other callback,
//! then read from `Result.ResultParameters.ResultParameter` `AccountBalance`:
//! `Working Account|KES|481000.00|481000.00|0.00|0.00&Utility Account|KES|...`, each account
//! `name|currency|current|available|reserved|uncleared` **[field order from third-party
//! integrations]**; the smaller of the account's current and available balance counts, so a
//! wrong guess about the order can only make the check stricter. It yields no payout events.
//!
//! The answer is kept in the adapter, shared by its clones. **With several instances, the balance
//! lives where the callback lands**: the instance that asked shows `Pending` until a callback
//! reaches it, and an instance that receives one takes it, whoever asked. Register the adapter
//! with both `PayoutServiceBuilder::provider` and `PayoutServiceBuilder::balance_source` (the same
//! `Arc`, or clones), so that the callbacks the engine hands it and the checks it answers share
//! one book.

mod balance;
mod client;
mod credential;
mod webhook;
mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::domain::Provider;
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::{ProviderError, WebhookError};

pub use credential::security_credential;
pub use webhook::{
    BALANCE_RESULT_KIND, BALANCE_TIMEOUT_KIND, CALLBACK_KIND_HEADER, CALLBACK_TOKEN_HEADER, CLIENT_IP_HEADER,
    SIGNATURE_HEADER,
};
pub use wire::{MAX_AMOUNT_KES, MIN_AMOUNT_KES};

use crate::common::http::Api;
use crate::common::options::ClientVars;
use crate::common::token::{DEFAULT_EXPIRY_MARGIN, TokenCache};
use crate::common::{ClientOptions, ConfigBuilder, ConfigError, Secret, base_url, seconds, var};
use balance::{BalanceBook, BalancePolicy};
use client::{MpesaClient, Submitted};
use webhook::CallbackAuth;
use wire::{Payment, PaymentRequest, StatusQuery};

/// Daraja's sandbox.
pub const SANDBOX_API_BASE: &str = "https://sandbox.safaricom.co.ke";
/// Daraja's live API.
pub const LIVE_API_BASE: &str = "https://api.safaricom.co.ke";

/// The account whose balance the funds check reads by default: B2C pays out of it.
pub const DEFAULT_BALANCE_ACCOUNT: &str = "Utility Account";
/// A balance older than this is asked for again, by default.
pub const DEFAULT_BALANCE_MAX_AGE: Duration = Duration::from_secs(300);
/// How long an unanswered balance query is awaited (and a refused one reported) by default.
pub const DEFAULT_BALANCE_WAIT: Duration = Duration::from_secs(120);

/// Daraja's default request budget: 5 requests per second. Safaricom publishes no number, only that
/// a spike arrest answers `500.003.02` beyond it; set `MPESA_RATE_LIMIT` to what your app is given.
pub const DEFAULT_RATE_LIMIT: crate::RateLimit = crate::RateLimit::per_second_const(5);

const CLIENT_VARS: ClientVars = ClientVars {
    api_base: "MPESA_API_BASE",
    timeout_secs: "MPESA_TIMEOUT_SECS",
    rate_limit: "MPESA_RATE_LIMIT",
    default_api_base: Some(SANDBOX_API_BASE),
};

/// Settings for [`MpesaProvider`]. `Debug` shows no secret.
#[derive(Clone)]
pub struct MpesaConfig {
    client: ClientOptions,
    consumer_key: Secret,
    consumer_secret: Secret,
    shortcode: String,
    initiator_name: String,
    security_credential: Secret,
    command_id: String,
    result_url: String,
    timeout_url: String,
    status_result_url: String,
    balance_result_url: String,
    balance_timeout_url: String,
    balance: BalancePolicy,
    auth: CallbackAuth,
}

impl std::fmt::Debug for MpesaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpesaConfig")
            .field("client", &self.client)
            .field("shortcode", &self.shortcode)
            .field("initiator_name", &self.initiator_name)
            .field("command_id", &self.command_id)
            .field("result_url_set", &!self.result_url.is_empty())
            .field("balance", &self.balance)
            .field("callback_token", &self.auth.token.is_some())
            .field("webhook_secret", &self.auth.hmac_secret.is_some())
            .field("allowed_ips", &self.auth.allowed_ips)
            .finish_non_exhaustive()
    }
}

impl MpesaConfig {
    /// A builder with every default.
    pub fn builder() -> MpesaConfigBuilder {
        MpesaConfigBuilder::default()
    }

    /// Reads the variables in the [module table](self) from the environment (and the certificate
    /// file at `MPESA_CERT_PATH`, if the credential is to be computed).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = &lookup as &dyn Fn(&str) -> Option<String>;
        let first = |names: &[&str]| names.iter().find_map(|n| var(lookup, n));
        let mut b = MpesaConfig::builder();
        if let Some(v) = first(&["MPESA_B2C_CONSUMER_KEY", "MPESA_CONSUMER_KEY"]) {
            b = b.consumer_key(v);
        }
        if let Some(v) = first(&["MPESA_B2C_CONSUMER_SECRET", "MPESA_CONSUMER_SECRET"]) {
            b = b.consumer_secret(v);
        }
        b = b.vars(
            lookup,
            &[
                ("MPESA_SHORTCODE", |b, v| b.shortcode(v)),
                ("MPESA_INITIATOR_NAME", |b, v| b.initiator_name(v)),
                ("MPESA_B2C_SECURITY_CREDENTIAL", |b, v| b.security_credential(v)),
                ("MPESA_RESULT_URL", |b, v| b.result_url(v)),
                ("MPESA_TIMEOUT_URL", |b, v| b.timeout_url(v)),
                ("MPESA_STATUS_RESULT_URL", |b, v| b.status_result_url(v)),
                ("MPESA_BALANCE_RESULT_URL", |b, v| b.balance_result_url(v)),
                ("MPESA_BALANCE_TIMEOUT_URL", |b, v| b.balance_timeout_url(v)),
                ("MPESA_BALANCE_ACCOUNT", |b, v| b.balance_account(v)),
                ("MPESA_CALLBACK_TOKEN", |b, v| b.callback_token(v)),
                ("MPESA_WEBHOOK_SECRET", |b, v| b.webhook_secret(v)),
                ("MPESA_COMMAND_ID", |b, v| b.command_id(v)),
            ],
        );
        if var(lookup, "MPESA_B2C_SECURITY_CREDENTIAL").is_none() {
            if let Some(password) = var(lookup, "MPESA_INITIATOR_PASSWORD") {
                let path = var(lookup, "MPESA_CERT_PATH").ok_or(ConfigError::Missing("MPESA_CERT_PATH"))?;
                let cert = std::fs::read(&path).map_err(|e| ConfigError::Invalid {
                    name: "MPESA_CERT_PATH",
                    reason: format!("cannot read {path}: {e}"),
                })?;
                b = b.initiator_password(password, &cert)?;
            }
        }
        if let Some(v) = var(lookup, "MPESA_BALANCE_MAX_AGE_SECS") {
            b = b.balance_max_age(seconds("MPESA_BALANCE_MAX_AGE_SECS", &v)?);
        }
        if let Some(v) = var(lookup, "MPESA_BALANCE_WAIT_SECS") {
            b = b.balance_wait(seconds("MPESA_BALANCE_WAIT_SECS", &v)?);
        }
        if let Some(v) = var(lookup, "MPESA_CALLBACK_IPS") {
            let ips = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<IpAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError::Invalid {
                    name: "MPESA_CALLBACK_IPS",
                    reason: e.to_string(),
                })?;
            b = b.allowed_ips(ips);
        }
        b.client_vars(&CLIENT_VARS, lookup)?.build()
    }

    /// The API base URL.
    pub fn api_base(&self) -> &str {
        self.client.base()
    }
}

/// Builds an [`MpesaConfig`]: the shared setters of [`ConfigBuilder`] (`api_base`, `timeout`,
/// `connect_timeout`, `retry`) and M-Pesa's own below.
pub type MpesaConfigBuilder = ConfigBuilder<MpesaSettings>;

/// M-Pesa's own settings in an [`MpesaConfigBuilder`], set through its methods.
#[derive(Default)]
pub struct MpesaSettings {
    consumer_key: Option<Secret>,
    consumer_secret: Option<Secret>,
    shortcode: Option<String>,
    initiator_name: Option<String>,
    security_credential: Option<Secret>,
    command_id: Option<String>,
    result_url: Option<String>,
    timeout_url: Option<String>,
    status_result_url: Option<String>,
    balance_result_url: Option<String>,
    balance_timeout_url: Option<String>,
    balance_account: Option<String>,
    balance_max_age: Option<Duration>,
    balance_wait: Option<Duration>,
    auth: CallbackAuth,
}

impl MpesaConfigBuilder {
    /// The Daraja app's consumer key.
    pub fn consumer_key(mut self, v: impl Into<Secret>) -> Self {
        self.settings.consumer_key = Some(v.into());
        self
    }
    /// The Daraja app's consumer secret.
    pub fn consumer_secret(mut self, v: impl Into<Secret>) -> Self {
        self.settings.consumer_secret = Some(v.into());
        self
    }
    /// The paying shortcode (`PartyA`).
    pub fn shortcode(mut self, v: impl Into<String>) -> Self {
        self.settings.shortcode = Some(v.into());
        self
    }
    /// The API operator's username (`InitiatorName`).
    pub fn initiator_name(mut self, v: impl Into<String>) -> Self {
        self.settings.initiator_name = Some(v.into());
        self
    }
    /// A ready `SecurityCredential` (from Safaricom's portal).
    pub fn security_credential(mut self, v: impl Into<Secret>) -> Self {
        self.settings.security_credential = Some(v.into());
        self
    }
    /// Computes the `SecurityCredential` from the initiator password and Safaricom's certificate
    /// (PEM or DER); see [`security_credential`].
    pub fn initiator_password(mut self, password: impl Into<Secret>, cert: &[u8]) -> Result<Self, ConfigError> {
        self.settings.security_credential = Some(security_credential(&password.into(), cert)?);
        Ok(self)
    }
    /// `BusinessPayment` (default), `SalaryPayment` or `PromotionPayment`.
    pub fn command_id(mut self, v: impl Into<String>) -> Self {
        self.settings.command_id = Some(v.into());
        self
    }
    /// Where Daraja posts results (`ResultURL`).
    pub fn result_url(mut self, v: impl Into<String>) -> Self {
        self.settings.result_url = Some(v.into());
        self
    }
    /// Where Daraja posts queue timeouts (`QueueTimeOutURL`).
    pub fn timeout_url(mut self, v: impl Into<String>) -> Self {
        self.settings.timeout_url = Some(v.into());
        self
    }
    /// Where transaction status results go (default: beside the result URL, at `.../status`).
    pub fn status_result_url(mut self, v: impl Into<String>) -> Self {
        self.settings.status_result_url = Some(v.into());
        self
    }
    /// Where Account Balance results go (default: beside the result URL, at `.../balance/result`).
    pub fn balance_result_url(mut self, v: impl Into<String>) -> Self {
        self.settings.balance_result_url = Some(v.into());
        self
    }
    /// Where Account Balance queue timeouts go (default: beside the balance result URL, at
    /// `.../balance/timeout`).
    pub fn balance_timeout_url(mut self, v: impl Into<String>) -> Self {
        self.settings.balance_timeout_url = Some(v.into());
        self
    }
    /// The account of the balance result the funds check reads (default
    /// [`DEFAULT_BALANCE_ACCOUNT`], the one B2C pays from).
    pub fn balance_account(mut self, v: impl Into<String>) -> Self {
        self.settings.balance_account = Some(v.into());
        self
    }
    /// A balance older than this is asked for again (default [`DEFAULT_BALANCE_MAX_AGE`]).
    pub fn balance_max_age(mut self, v: Duration) -> Self {
        self.settings.balance_max_age = Some(v);
        self
    }
    /// How long an unanswered balance query is awaited before another is sent, and how long a
    /// refused one is reported before the balance is asked for again (default
    /// [`DEFAULT_BALANCE_WAIT`]).
    pub fn balance_wait(mut self, v: Duration) -> Self {
        self.settings.balance_wait = Some(v);
        self
    }
    /// The secret token in the callback URLs' path, passed by the host in [`CALLBACK_TOKEN_HEADER`].
    pub fn callback_token(mut self, v: impl Into<Secret>) -> Self {
        self.settings.auth.token = Some(v.into());
        self
    }
    /// The key of the [`SIGNATURE_HEADER`] HMAC.
    pub fn webhook_secret(mut self, v: impl Into<Secret>) -> Self {
        self.settings.auth.hmac_secret = Some(v.into());
        self
    }
    /// Only these source IPs may post callbacks.
    pub fn allowed_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.settings.auth.allowed_ips = ips.into_iter().collect();
        self
    }

    /// Checks and builds.
    pub fn build(self) -> Result<MpesaConfig, ConfigError> {
        fn secret(v: Option<Secret>, name: &'static str) -> Result<Secret, ConfigError> {
            v.filter(|s| !s.expose().trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        }
        fn text(v: Option<String>, name: &'static str) -> Result<String, ConfigError> {
            v.map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .ok_or(ConfigError::Missing(name))
        }
        let own = self.settings;
        let result_url = base_url("MPESA_RESULT_URL", &text(own.result_url, "MPESA_RESULT_URL")?)?;
        let timeout_url = base_url("MPESA_TIMEOUT_URL", &text(own.timeout_url, "MPESA_TIMEOUT_URL")?)?;
        let status_result_url = match own.status_result_url {
            Some(u) => base_url("MPESA_STATUS_RESULT_URL", &u)?,
            None => url_beside(&result_url, "status")?,
        };
        let balance_result_url = match own.balance_result_url {
            Some(u) => base_url("MPESA_BALANCE_RESULT_URL", &u)?,
            None => url_beside(&result_url, "balance/result")?,
        };
        let balance_timeout_url = match own.balance_timeout_url {
            Some(u) => base_url("MPESA_BALANCE_TIMEOUT_URL", &u)?,
            None => url_beside(&balance_result_url, "timeout")?,
        };
        let balance = BalancePolicy {
            account: own
                .balance_account
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| DEFAULT_BALANCE_ACCOUNT.to_string()),
            max_age: own.balance_max_age.unwrap_or(DEFAULT_BALANCE_MAX_AGE),
            wait: own.balance_wait.unwrap_or(DEFAULT_BALANCE_WAIT),
        };
        let mut auth = own.auth;
        auth.token = auth.token.filter(|t| !t.expose().is_empty());
        auth.hmac_secret = auth.hmac_secret.filter(|t| !t.expose().is_empty());
        Ok(MpesaConfig {
            consumer_key: secret(own.consumer_key, "MPESA_B2C_CONSUMER_KEY (or MPESA_CONSUMER_KEY)")?,
            consumer_secret: secret(
                own.consumer_secret,
                "MPESA_B2C_CONSUMER_SECRET (or MPESA_CONSUMER_SECRET)",
            )?,
            shortcode: text(own.shortcode, "MPESA_SHORTCODE")?,
            initiator_name: text(own.initiator_name, "MPESA_INITIATOR_NAME")?,
            security_credential: secret(
                own.security_credential,
                "MPESA_B2C_SECURITY_CREDENTIAL (or MPESA_INITIATOR_PASSWORD and MPESA_CERT_PATH)",
            )?,
            command_id: own.command_id.unwrap_or_else(|| "BusinessPayment".to_string()),
            result_url,
            timeout_url,
            status_result_url,
            balance_result_url,
            balance_timeout_url,
            balance,
            auth,
            client: self.client.resolve(&CLIENT_VARS)?,
        })
    }
}

/// A callback URL beside a ResultURL, by default: the URL with its path's last segment `result`
/// made `tail`, or `/{tail}` added to it, so that each kind of result arrives at a path of its own
/// (`https://h/api/webhooks/mpesa-b2c/tok` -> `https://h/api/webhooks/mpesa-b2c/tok/status`, or
/// `.../tok/balance/result`, whose timeout URL is then `.../tok/balance/timeout`).
fn url_beside(result_url: &str, tail: &str) -> Result<String, ConfigError> {
    let mut url = reqwest::Url::parse(result_url).map_err(|e| ConfigError::Invalid {
        name: "MPESA_RESULT_URL",
        reason: e.to_string(),
    })?;
    let path = url.path().trim_end_matches('/');
    let path = match path.strip_suffix("/result") {
        Some(head) => format!("{head}/{tail}"),
        None => format!("{path}/{tail}"),
    };
    url.set_path(&path);
    Ok(url.to_string())
}

/// The M-Pesa B2C adapter. Clones share the HTTP client, the token cache and the balance kept
/// for the funds check.
#[derive(Clone)]
pub struct MpesaProvider {
    config: MpesaConfig,
    client: Arc<MpesaClient>,
    balance: Arc<tokio::sync::Mutex<BalanceBook>>,
}

crate::common::debug_shows_config_only!(MpesaProvider);

impl MpesaProvider {
    /// An adapter with its own HTTP client and token cache.
    pub fn new(config: MpesaConfig) -> Result<Self, ConfigError> {
        let client = Arc::new(MpesaClient {
            api: Api::new(
                Provider::MpesaB2c,
                &config.client,
                DEFAULT_RATE_LIMIT,
                &config.consumer_key,
            )?,
            consumer_key: config.consumer_key.clone(),
            consumer_secret: config.consumer_secret.clone(),
            tokens: TokenCache::new(DEFAULT_EXPIRY_MARGIN),
        });
        Ok(MpesaProvider {
            config,
            client,
            balance: Arc::default(),
        })
    }

    /// Where Transaction Status query results are sent (`MPESA_STATUS_RESULT_URL`, or its default
    /// beside the payment ResultURL).
    pub fn status_result_url(&self) -> &str {
        &self.config.status_result_url
    }

    /// Where Account Balance results are sent (`MPESA_BALANCE_RESULT_URL`, or its default beside the
    /// payment ResultURL).
    pub fn balance_result_url(&self) -> &str {
        &self.config.balance_result_url
    }

    /// Where Account Balance queue timeouts are sent (`MPESA_BALANCE_TIMEOUT_URL`, or its default).
    pub fn balance_timeout_url(&self) -> &str {
        &self.config.balance_timeout_url
    }
}

#[async_trait]
impl PayoutProvider for MpesaProvider {
    fn provider(&self) -> Provider {
        Provider::MpesaB2c
    }

    fn capabilities(&self) -> Capabilities {
        crate::common::capabilities(1, self.config.auth.configured())
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let payment = Payment::try_from(instruction).map_err(|e| e.into_error(Provider::MpesaB2c))?;
        let c = &self.config;
        let request = PaymentRequest {
            originator_conversation_id: instruction.idempotency_key.clone(),
            initiator_name: c.initiator_name.clone(),
            security_credential: c.security_credential.expose().to_string(),
            command_id: c.command_id.clone(),
            amount: payment.amount_kes.to_string(),
            party_a: c.shortcode.clone(),
            party_b: payment.phone.clone(),
            remarks: payment.remarks,
            queue_time_out_url: c.timeout_url.clone(),
            result_url: c.result_url.clone(),
            occassion: payment.occasion,
        };
        let masked = payout_core::domain::mask(&payment.phone);
        match self.client.pay(&request).await? {
            Submitted::Accepted(ack) => {
                if ack
                    .originator_conversation_id
                    .as_deref()
                    .is_some_and(|o| o != instruction.idempotency_key)
                {
                    tracing::warn!(
                        key = %instruction.idempotency_key,
                        echoed = ?ack.originator_conversation_id,
                        "M-Pesa acknowledged a different OriginatorConversationID"
                    );
                }
                Ok(SendReceipt {
                    note: format!(
                        "M-Pesa B2C KES {} to {masked} accepted ({}): {}",
                        payment.amount_kes,
                        ack.conversation_id.as_deref().unwrap_or("no ConversationID"),
                        ack.response_description.as_deref().unwrap_or("")
                    ),
                    reference: ack.conversation_id.filter(|c| !c.is_empty()),
                    status: ProviderStatus::Accepted,
                })
            }
            Submitted::AlreadyReceived(e) => Ok(SendReceipt {
                reference: None,
                status: ProviderStatus::Accepted,
                note: format!(
                    "M-Pesa already has OriginatorConversationID {} ({}): sent before, not sent again",
                    instruction.idempotency_key,
                    e.error_code.as_deref().unwrap_or("duplicate")
                ),
            }),
        }
    }

    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        self.config.auth.check(headers, body)?;
        match webhook::kind(headers).as_deref() {
            Some(kind @ (BALANCE_RESULT_KIND | BALANCE_TIMEOUT_KIND)) => self.balance_callback(kind, body).await,
            _ => webhook::translate(headers, body),
        }
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        let c = &self.config;
        let query = StatusQuery {
            initiator: c.initiator_name.clone(),
            security_credential: c.security_credential.expose().to_string(),
            command_id: "TransactionStatusQuery",
            transaction_id: attempt
                .provider_reference
                .clone()
                .filter(|r| !r.is_empty() && !r.starts_with("AG_")),
            original_conversation_id: attempt.idempotency_key.clone(),
            party_a: c.shortcode.clone(),
            identifier_type: "4",
            result_url: c.status_result_url.clone(),
            queue_time_out_url: c.timeout_url.clone(),
            remarks: format!("Status of {}", attempt.idempotency_key)
                .chars()
                .take(100)
                .collect(),
            occasion: attempt.payout_id.as_str().chars().take(100).collect(),
        };
        self.client.query_status(&query).await?;
        // Daraja acknowledges the query and answers later, by callback: the lookup itself cannot
        // tell where the attempt stands (reconciliation flags it for a person until a callback or
        // a person settles it).
        Ok(ProviderStatus::Undetermined(
            "M-Pesa answers a transaction status query by callback (MPESA_STATUS_RESULT_URL), not in the lookup; \
             the query was sent"
                .into(),
        ))
    }
}
