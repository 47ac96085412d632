//! Daraja over HTTP: the OAuth token, the B2C payment request and the transaction status query.

use std::time::Duration;

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use serde::Serialize;

use super::wire::{Ack, DUPLICATE_ORIGINATOR, GatewayError, INVALID_TOKEN, PaymentRequest, StatusQuery, TokenResponse};
use crate::common::http::{self, RawResponse};
use crate::common::retry::{Classified, retry};
use crate::common::token::{Fetched, TokenCache};
use crate::common::{RetryPolicy, Secret, redact};

const PROVIDER: Provider = Provider::MpesaB2c;

/// What went wrong talking to Daraja, before it is classified for the engine.
#[derive(Debug, Clone)]
pub(crate) enum MpesaError {
    /// No usable HTTP exchange (or no token); already classified.
    Transport(ProviderError),
    /// A gateway error `{requestId, errorCode, errorMessage}`.
    Gateway { status: StatusCode, error: GatewayError },
    /// The ack came back with a non-zero `ResponseCode`: the request was not accepted.
    Rejected { code: String, description: String },
    /// A 2xx we cannot read: Daraja may have queued the payment.
    Unreadable { status: StatusCode, reason: String },
}

impl Classified for MpesaError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            MpesaError::Transport(e) => e.kind,
            MpesaError::Unreadable { .. } => ProviderErrorKind::Ambiguous,
            MpesaError::Rejected { .. } => ProviderErrorKind::Final,
            MpesaError::Gateway { status, error } => match error.error_code.as_deref() {
                // Spike arrest, quota, internal error: nothing was queued; same key again is safe.
                Some("500.003.02" | "500.003.03" | "500.003.1001") => ProviderErrorKind::Retryable,
                Some("400.002.05" | "404.001.04" | INVALID_TOKEN) => ProviderErrorKind::Final,
                _ => http::status_kind(*status),
            },
        }
    }
}

impl std::fmt::Display for MpesaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MpesaError::Transport(e) => f.write_str(&e.message),
            MpesaError::Unreadable { status, reason } => write!(f, "HTTP {status} with an unreadable body: {reason}"),
            MpesaError::Rejected { code, description } => write!(f, "request not accepted ({code}): {description}"),
            MpesaError::Gateway { status, error } => {
                write!(
                    f,
                    "HTTP {status} {}: {}",
                    error.error_code.as_deref().unwrap_or("-"),
                    error.error_message.as_deref().unwrap_or("")
                )?;
                if let Some(id) = &error.request_id {
                    write!(f, " (requestId {id})")?;
                }
                Ok(())
            }
        }
    }
}

impl From<MpesaError> for ProviderError {
    fn from(e: MpesaError) -> Self {
        let kind = e.kind();
        let code = match &e {
            MpesaError::Gateway { error, .. } => error.error_code.clone(),
            MpesaError::Rejected { code, .. } => Some(code.clone()),
            _ => None,
        };
        if let MpesaError::Transport(inner) = e {
            return inner;
        }
        let out = ProviderError::new(PROVIDER, kind, e.to_string());
        match code {
            Some(c) => out.with_code(c),
            None => out,
        }
    }
}

/// What a payment request came to.
#[derive(Debug, Clone)]
pub(crate) enum Submitted {
    /// Accepted now (`ResponseCode` 0): the result comes later to the ResultURL.
    Accepted(Ack),
    /// The gateway already has this `OriginatorConversationID` (`500.002.1001`): it was sent before.
    AlreadyReceived(GatewayError),
}

pub(crate) struct MpesaClient {
    pub http: reqwest::Client,
    pub base: String,
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    pub tokens: TokenCache,
    pub retry: RetryPolicy,
}

impl MpesaClient {
    /// `GET /oauth/v1/generate?grant_type=client_credentials` with Basic auth.
    async fn fetch_token(&self) -> Result<Fetched, ProviderError> {
        let raw = http::execute(
            PROVIDER,
            self.http
                .get(format!("{}/oauth/v1/generate", self.base))
                .query(&[("grant_type", "client_credentials")])
                .basic_auth(self.consumer_key.expose(), Some(self.consumer_secret.expose())),
        )
        .await?;
        if !raw.status.is_success() {
            let error = gateway_error(&raw).unwrap_or_default();
            let e = ProviderError::new(
                PROVIDER,
                http::status_kind(raw.status),
                format!(
                    "token request refused: HTTP {} {} (check MPESA_B2C_CONSUMER_KEY/SECRET)",
                    raw.status,
                    error.error_code.as_deref().unwrap_or("")
                ),
            );
            return Err(match error.error_code {
                Some(c) => e.with_code(c),
                None => e,
            });
        }
        let t: TokenResponse = serde_json::from_slice(&raw.body).map_err(|e| {
            ProviderError::new(
                PROVIDER,
                ProviderErrorKind::Retryable,
                format!("unreadable token response: {e}"),
            )
        })?;
        let secs = t
            .expires_in
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(3599);
        Ok(Fetched {
            token: Secret::new(t.access_token),
            expires_in: Duration::from_secs(secs),
        })
    }

    /// POSTs JSON with a bearer token, refreshing the token once if Daraja refuses it.
    async fn post_json<T: Serialize>(&self, path: &str, body: &T) -> Result<RawResponse, ProviderError> {
        let url = format!("{}{path}", self.base);
        self.tokens
            .authorized(
                || self.fetch_token(),
                |token| {
                    let request = self.http.post(&url).bearer_auth(token.expose()).json(body);
                    http::execute(PROVIDER, request)
                },
                |raw| gateway_error(raw).and_then(|e| e.error_code).as_deref() == Some(INVALID_TOKEN),
            )
            .await
    }

    /// `POST /mpesa/b2c/v3/paymentrequest`; retried with the same `OriginatorConversationID`.
    pub async fn pay(&self, request: &PaymentRequest) -> Result<Submitted, MpesaError> {
        retry(&self.retry, "mpesa b2c payment", |_| async move {
            let raw = self
                .post_json("/mpesa/b2c/v3/paymentrequest", request)
                .await
                .map_err(MpesaError::Transport)?;
            if let Some(error) = gateway_error(&raw) {
                if error.error_code.as_deref() == Some(DUPLICATE_ORIGINATOR) {
                    return Ok(Submitted::AlreadyReceived(error));
                }
            }
            self.ack(raw).map(Submitted::Accepted)
        })
        .await
    }

    /// `POST /mpesa/transactionstatus/v1/query`: the answer arrives later at the ResultURL.
    pub async fn query_status(&self, query: &StatusQuery) -> Result<Ack, MpesaError> {
        retry(&self.retry, "mpesa transaction status", |_| async move {
            let raw = self
                .post_json("/mpesa/transactionstatus/v1/query", query)
                .await
                .map_err(MpesaError::Transport)?;
            self.ack(raw)
        })
        .await
    }

    fn ack(&self, raw: RawResponse) -> Result<Ack, MpesaError> {
        if !raw.status.is_success() {
            let mut error = gateway_error(&raw).unwrap_or_default();
            if error.error_message.is_none() {
                error.error_message = Some(raw.text_excerpt());
            }
            error.error_message = error.error_message.map(|m| redact(&m, &[&self.consumer_secret]));
            return Err(MpesaError::Gateway {
                status: raw.status,
                error,
            });
        }
        let ack: Ack = serde_json::from_slice(&raw.body).map_err(|e| MpesaError::Unreadable {
            status: raw.status,
            reason: e.to_string(),
        })?;
        match ack.response_code.as_deref() {
            Some("0") => Ok(ack),
            Some(code) => Err(MpesaError::Rejected {
                code: code.to_string(),
                description: ack.response_description.clone().unwrap_or_default(),
            }),
            None => Err(MpesaError::Unreadable {
                status: raw.status,
                reason: "the ack has no ResponseCode".into(),
            }),
        }
    }
}

/// The gateway error in a response, if it is one.
fn gateway_error(raw: &RawResponse) -> Option<GatewayError> {
    serde_json::from_slice::<GatewayError>(&raw.body)
        .ok()
        .filter(|e| e.error_code.is_some())
}
