//! Stripe over HTTP: create a transfer, read one, find one by its transfer group, read the balance.

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::wire::{ApiError, Balance, ErrorEnvelope, List, Transfer};
use crate::common::http::{self, Api, ExchangeError, RawResponse, classified_error};
use crate::common::retry::Classified;
use crate::common::{Secret, redact};

const PROVIDER: Provider = Provider::StripeConnect;

/// What went wrong talking to Stripe, before it is classified for the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum StripeError {
    /// No answer we can use; see [`ExchangeError`].
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// Stripe answered with an error object.
    #[error("HTTP {status}{error}")]
    Api { status: StatusCode, error: ApiError },
}

impl StripeError {
    /// The error object's `type`.
    pub fn api_type(&self) -> Option<&str> {
        match self {
            StripeError::Api { error, .. } => error.kind.as_deref(),
            StripeError::Exchange(_) => None,
        }
    }
}

impl Classified for StripeError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            StripeError::Exchange(e) => e.kind(),
            StripeError::Api { status, error } => {
                // A key still executing: nothing new happened, retry with the same key later.
                if error.code.as_deref() == Some("idempotency_key_in_use") {
                    ProviderErrorKind::Retryable
                } else if error.kind.as_deref() == Some("idempotency_error") {
                    // Same key, different parameters: this request was refused (see `send` for the
                    // lookup that makes sure the key's first request moved nothing).
                    ProviderErrorKind::Final
                } else if *status == StatusCode::CONFLICT {
                    // Concurrent conflicts store nothing at Stripe: safe to retry with the same key.
                    ProviderErrorKind::Retryable
                } else {
                    http::status_kind(*status)
                }
            }
        }
    }
}

impl From<StripeError> for ProviderError {
    fn from(e: StripeError) -> Self {
        match e {
            StripeError::Exchange(inner) => inner.into_provider_error(PROVIDER),
            StripeError::Api { ref error, .. } => {
                let code = error.code.clone().or_else(|| error.kind.clone());
                classified_error(PROVIDER, &e, code)
            }
        }
    }
}

pub(crate) struct StripeClient {
    pub api: Api,
    pub secret_key: Secret,
    pub api_version: Option<String>,
}

impl StripeClient {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.api.request(method, path).bearer_auth(self.secret_key.expose());
        if let Some(v) = &self.api_version {
            r = r.header("Stripe-Version", v);
        }
        r
    }

    /// `POST /v1/transfers` with the attempt's key; retried (same key) on retryable failures.
    /// Returns the transfer and whether Stripe replayed an earlier answer.
    pub async fn create_transfer(
        &self,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<(Transfer, bool), StripeError> {
        let request = || {
            self.request(reqwest::Method::POST, "/v1/transfers")
                .header("Idempotency-Key", idempotency_key)
                .form(form)
        };
        self.api
            .call("stripe create transfer", request, |raw| {
                let replayed = raw
                    .headers
                    .get("idempotent-replayed")
                    .is_some_and(|v| v.as_bytes() == b"true");
                self.decode::<Transfer>(raw).map(|t| (t, replayed))
            })
            .await
    }

    /// `GET /v1/transfers/{id}`; `None` on 404.
    pub async fn get_transfer(&self, id: &str) -> Result<Option<Transfer>, StripeError> {
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(StripeError::Api {
                status: StatusCode::BAD_REQUEST,
                error: ApiError {
                    message: Some(format!("{id:?} is not a Stripe transfer id")),
                    ..Default::default()
                },
            });
        }
        let path = format!("/v1/transfers/{id}");
        let request = || self.request(reqwest::Method::GET, &path);
        self.api
            .call("stripe get transfer", request, |raw| {
                if raw.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                self.decode::<Transfer>(raw).map(Some)
            })
            .await
    }

    /// `GET /v1/transfers?transfer_group=...`: the transfers of one attempt (we set the group to its key).
    pub async fn transfers_in_group(&self, group: &str) -> Result<Vec<Transfer>, StripeError> {
        let request = || {
            self.request(reqwest::Method::GET, "/v1/transfers")
                .query(&[("transfer_group", group), ("limit", "10")])
        };
        self.api
            .call("stripe list transfers", request, |raw| {
                self.decode::<List<Transfer>>(raw).map(|l| l.data)
            })
            .await
    }

    /// `GET /v1/balance`: the platform account's own balance (no `Stripe-Account` header), which
    /// transfers to connected accounts are paid from.
    pub async fn get_balance(&self) -> Result<Balance, StripeError> {
        let request = || self.request(reqwest::Method::GET, "/v1/balance");
        self.api
            .call("stripe get balance", request, |raw| self.decode::<Balance>(raw))
            .await
    }

    fn decode<T: DeserializeOwned>(&self, raw: RawResponse) -> Result<T, StripeError> {
        if raw.status.is_success() {
            return Ok(raw.json()?);
        }
        let mut error = serde_json::from_slice::<ErrorEnvelope>(&raw.body)
            .map(|e| e.error)
            .unwrap_or_default();
        error.message = error.message.map(|m| redact(&m, &[&self.secret_key]));
        if error.message.is_none() && error.kind.is_none() {
            error.message = Some(redact(&raw.text_excerpt(), &[&self.secret_key]));
        }
        Err(StripeError::Api {
            status: raw.status,
            error,
        })
    }
}
