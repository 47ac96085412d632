//! The bank's REST API over HTTP.

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::wire::{ErrorEnvelope, Transfer, TransferList, TransferRequest};
use crate::common::http::{self, Api, ExchangeError, RawResponse, classified_error};
use crate::common::retry::Classified;
use crate::common::{Secret, redact};

const PROVIDER: Provider = Provider::BankTransfer;

/// What went wrong talking to the bank, before it is classified for the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum BankError {
    /// No answer we can use; see [`ExchangeError`].
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The bank answered with an error status.
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        status: StatusCode,
        code: Option<String>,
        message: String,
    },
}

impl Classified for BankError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            BankError::Exchange(e) => e.kind(),
            BankError::Api { status, code, .. } => {
                if code.as_deref() == Some("idempotency_key_in_use") || *status == StatusCode::CONFLICT {
                    ProviderErrorKind::Retryable
                } else {
                    http::status_kind(*status)
                }
            }
        }
    }
}

impl From<BankError> for ProviderError {
    fn from(e: BankError) -> Self {
        match e {
            BankError::Exchange(inner) => inner.into_provider_error(PROVIDER),
            BankError::Api { ref code, .. } => classified_error(PROVIDER, &e, code.clone()),
        }
    }
}

pub(crate) struct BankClient {
    pub api: Api,
    pub api_key: Secret,
}

impl BankClient {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.api.request(method, path).bearer_auth(self.api_key.expose())
    }

    /// `POST /transfers` with the attempt's key; retried with the same key when retryable.
    pub async fn create_transfer(&self, body: &TransferRequest, key: &str) -> Result<Transfer, BankError> {
        let request = || {
            self.request(reqwest::Method::POST, "/transfers")
                .header("Idempotency-Key", key)
                .json(body)
        };
        self.api
            .call("bank create transfer", request, |raw| self.decode(raw))
            .await
    }

    /// `GET /transfers/{id}`; `None` on 404.
    pub async fn get_transfer(&self, id: &str) -> Result<Option<Transfer>, BankError> {
        let Some(segment) = path_segment(id) else {
            return Err(BankError::Api {
                status: StatusCode::BAD_REQUEST,
                code: None,
                message: format!("{id:?} is not a transfer id"),
            });
        };
        let path = format!("/transfers/{segment}");
        let request = || self.request(reqwest::Method::GET, &path);
        self.api
            .call("bank get transfer", request, |raw| {
                if raw.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                self.decode(raw).map(Some)
            })
            .await
    }

    /// `GET /transfers?reference={key}`.
    pub async fn find_by_reference(&self, key: &str) -> Result<Vec<Transfer>, BankError> {
        let request = || {
            self.request(reqwest::Method::GET, "/transfers")
                .query(&[("reference", key)])
        };
        self.api
            .call("bank find transfer", request, |raw| {
                self.decode::<TransferList>(raw).map(|l| l.data)
            })
            .await
    }

    fn decode<T: DeserializeOwned>(&self, raw: RawResponse) -> Result<T, BankError> {
        if raw.status.is_success() {
            return Ok(raw.json()?);
        }
        let error = serde_json::from_slice::<ErrorEnvelope>(&raw.body)
            .map(|e| e.error)
            .unwrap_or_default();
        let message = error.message.unwrap_or_else(|| raw.text_excerpt());
        Err(BankError::Api {
            status: raw.status,
            code: error.code,
            message: redact(&message, &[&self.api_key]),
        })
    }
}

/// Percent-encodes everything but unreserved characters, so an id cannot change the path; `None`
/// for ids that would be read as a dot segment.
fn path_segment(id: &str) -> Option<String> {
    if id.is_empty() || id.bytes().all(|b| b == b'.') {
        return None;
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(super::path_segment("bt_1").as_deref(), Some("bt_1"));
        assert_eq!(super::path_segment("../x y").as_deref(), Some("..%2Fx%20y"));
        assert_eq!(super::path_segment(".."), None);
        assert_eq!(super::path_segment(""), None);
    }
}
