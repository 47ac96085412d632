//! The bank's REST API over HTTP.

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::wire::{ErrorEnvelope, Transfer, TransferList, TransferRequest};
use crate::common::http::{self, RawResponse};
use crate::common::retry::{Classified, retry};
use crate::common::{RetryPolicy, Secret, redact};

const PROVIDER: Provider = Provider::BankTransfer;

/// What went wrong talking to the bank, before it is classified for the engine.
#[derive(Debug, Clone)]
pub(crate) enum BankError {
    /// No usable HTTP exchange; classified by the transport layer.
    Transport(ProviderError),
    /// The bank answered with an error status.
    Api {
        status: StatusCode,
        code: Option<String>,
        message: String,
    },
    /// A 2xx we cannot read: the bank may have acted.
    Unreadable { status: StatusCode, reason: String },
}

impl Classified for BankError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            BankError::Transport(e) => e.kind,
            BankError::Unreadable { .. } => ProviderErrorKind::Ambiguous,
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

impl std::fmt::Display for BankError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BankError::Transport(e) => f.write_str(&e.message),
            BankError::Unreadable { status, reason } => write!(f, "HTTP {status} with an unreadable body: {reason}"),
            BankError::Api { status, code, message } => match code {
                Some(c) => write!(f, "HTTP {status} {c}: {message}"),
                None => write!(f, "HTTP {status}: {message}"),
            },
        }
    }
}

impl From<BankError> for ProviderError {
    fn from(e: BankError) -> Self {
        let kind = e.kind();
        match e {
            BankError::Transport(inner) => inner,
            BankError::Api { code: Some(ref c), .. } => ProviderError::new(PROVIDER, kind, e.to_string()).with_code(c),
            other => ProviderError::new(PROVIDER, kind, other.to_string()),
        }
    }
}

pub(crate) struct BankClient {
    pub http: reqwest::Client,
    pub base: String,
    pub api_key: Secret,
    pub retry: RetryPolicy,
}

impl BankClient {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.api_key.expose())
    }

    /// `POST /transfers` with the attempt's key; retried with the same key when retryable.
    pub async fn create_transfer(&self, body: &TransferRequest, key: &str) -> Result<Transfer, BankError> {
        retry(&self.retry, "bank create transfer", |_| async move {
            let raw = http::execute(
                PROVIDER,
                self.request(reqwest::Method::POST, "/transfers")
                    .header("Idempotency-Key", key)
                    .json(body),
            )
            .await
            .map_err(BankError::Transport)?;
            self.decode(raw)
        })
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
        retry(&self.retry, "bank get transfer", |_| {
            let path = path.clone();
            async move {
                let raw = http::execute(PROVIDER, self.request(reqwest::Method::GET, &path))
                    .await
                    .map_err(BankError::Transport)?;
                if raw.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                self.decode(raw).map(Some)
            }
        })
        .await
    }

    /// `GET /transfers?reference={key}`.
    pub async fn find_by_reference(&self, key: &str) -> Result<Vec<Transfer>, BankError> {
        retry(&self.retry, "bank find transfer", |_| async move {
            let raw = http::execute(
                PROVIDER,
                self.request(reqwest::Method::GET, "/transfers")
                    .query(&[("reference", key)]),
            )
            .await
            .map_err(BankError::Transport)?;
            self.decode::<TransferList>(raw).map(|l| l.data)
        })
        .await
    }

    fn decode<T: DeserializeOwned>(&self, raw: RawResponse) -> Result<T, BankError> {
        if raw.status.is_success() {
            return serde_json::from_slice(&raw.body).map_err(|e| BankError::Unreadable {
                status: raw.status,
                reason: e.to_string(),
            });
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
