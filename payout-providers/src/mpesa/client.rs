//! Daraja over HTTP: the OAuth token, the B2C payment request, the transaction status query and the
//! account balance query.

use std::time::Duration;

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use serde::Serialize;

use super::wire::{
    Ack, BalanceQuery, DUPLICATE_ORIGINATOR, GatewayError, PaymentRequest, StatusQuery, TokenResponse, is_invalid_token,
};
use crate::common::http::{self, Api, ExchangeError, RawResponse, classified_error, exchange_with_retries};
use crate::common::retry::Classified;
use crate::common::token::{Fetched, TokenCache, request_token};
use crate::common::{Secret, redact};

const PROVIDER: Provider = Provider::MpesaB2c;

/// What went wrong talking to Daraja, before it is classified for the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum MpesaError {
    /// No answer we can use; see [`ExchangeError`].
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// A gateway error `{requestId, errorCode, errorMessage}`.
    #[error("HTTP {status} {error}")]
    Gateway { status: StatusCode, error: GatewayError },
    /// The ack came back with a non-zero `ResponseCode`. Safaricom documents no list of them, and
    /// some do not mean "refused" (`100000000`, "request cached, waiting for resending"), so the
    /// outcome is unknown until a Transaction Status query answers.
    #[error("request answered with ResponseCode {code} ({description}): outcome unknown")]
    Unconfirmed { code: String, description: String },
}

impl Classified for MpesaError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            MpesaError::Exchange(e) => e.kind(),
            MpesaError::Unconfirmed { .. } => ProviderErrorKind::Ambiguous,
            MpesaError::Gateway { status, error } => match error.error_code.as_deref() {
                // Spike arrest, quota, internal error: nothing was queued; same key again is safe.
                Some("500.003.02" | "500.003.03" | "500.003.1001") => ProviderErrorKind::Retryable,
                // Refused before anything was queued: a bad request or payload, a bad
                // authentication header, a token still refused after one refresh.
                Some("400.002.02" | "400.002.05" | "404.001.04") => ProviderErrorKind::Final,
                code if is_invalid_token(code) => ProviderErrorKind::Final,
                _ => http::status_kind(*status),
            },
        }
    }
}

impl From<MpesaError> for ProviderError {
    fn from(e: MpesaError) -> Self {
        match e {
            MpesaError::Exchange(inner) => inner.into_provider_error(PROVIDER),
            MpesaError::Gateway { ref error, .. } => classified_error(PROVIDER, &e, error.error_code.clone()),
            MpesaError::Unconfirmed { ref code, .. } => classified_error(PROVIDER, &e, Some(code.clone())),
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
    pub api: Api,
    pub consumer_key: Secret,
    pub consumer_secret: Secret,
    pub tokens: TokenCache,
}

impl MpesaClient {
    /// `GET /oauth/v1/generate?grant_type=client_credentials` with Basic auth.
    async fn fetch_token(&self) -> Result<Fetched, ProviderError> {
        let request = self
            .api
            .request(reqwest::Method::GET, "/oauth/v1/generate")
            .query(&[("grant_type", "client_credentials")])
            .basic_auth(self.consumer_key.expose(), Some(self.consumer_secret.expose()));
        let t: TokenResponse = request_token(&self.api, request, |raw| {
            let code = gateway_error(raw).and_then(|e| e.error_code);
            let message = format!(
                "token request refused: HTTP {} {} (check MPESA_B2C_CONSUMER_KEY/SECRET)",
                raw.status,
                code.as_deref().unwrap_or("")
            );
            (message, code)
        })
        .await?;
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
        self.tokens
            .authorized(
                || self.fetch_token(),
                |token| {
                    let request = self
                        .api
                        .request(reqwest::Method::POST, path)
                        .bearer_auth(token.expose())
                        .json(body);
                    http::execute(&self.api, request)
                },
                |raw| is_invalid_token(gateway_error(raw).and_then(|e| e.error_code).as_deref()),
            )
            .await
    }

    /// `POST /mpesa/b2c/v3/paymentrequest`; retried with the same `OriginatorConversationID`.
    pub async fn pay(&self, request: &PaymentRequest) -> Result<Submitted, MpesaError> {
        let post = || self.post_json("/mpesa/b2c/v3/paymentrequest", request);
        exchange_with_retries(&self.api.retry, "mpesa b2c payment", post, |raw| {
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
        let post = || self.post_json("/mpesa/transactionstatus/v1/query", query);
        exchange_with_retries(&self.api.retry, "mpesa transaction status", post, |raw| self.ack(raw)).await
    }

    /// `POST /mpesa/accountbalance/v1/query`: the answer arrives later at the query's ResultURL.
    pub async fn query_balance(&self, query: &BalanceQuery) -> Result<Ack, MpesaError> {
        let post = || self.post_json("/mpesa/accountbalance/v1/query", query);
        exchange_with_retries(&self.api.retry, "mpesa account balance", post, |raw| self.ack(raw)).await
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
        let ack: Ack = raw.json()?;
        match ack.response_code.as_deref() {
            Some("0") => Ok(ack),
            Some(code) => Err(MpesaError::Unconfirmed {
                code: code.to_string(),
                description: ack.response_description.clone().unwrap_or_default(),
            }),
            None => Err(ExchangeError::Unreadable {
                status: raw.status,
                reason: "the ack has no ResponseCode".into(),
            }
            .into()),
        }
    }
}

/// The gateway error in a response, if it is one.
fn gateway_error(raw: &RawResponse) -> Option<GatewayError> {
    serde_json::from_slice::<GatewayError>(&raw.body)
        .ok()
        .filter(|e| e.error_code.is_some())
}
