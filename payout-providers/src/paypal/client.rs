//! PayPal over HTTP: the OAuth token, creating a batch, reading batches and items, and the
//! verify-webhook-signature API.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use payout_core::domain::Provider;
use payout_core::{ProviderError, ProviderErrorKind};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::wire::{ApiError, Batch, CreatePayoutRequest, CreatedBatch, ItemDetail, TokenResponse, linked_batch_id};
use crate::common::http::{self, Api, ExchangeError, RawResponse, classified_error, exchange_with_retries};
use crate::common::retry::Classified;
use crate::common::token::{Fetched, TokenCache, request_token};
use crate::common::{Secret, redact};

const PROVIDER: Provider = Provider::PaypalPayouts;
/// How many pages of a batch [`PaypalClient::batch_items`] reads at once.
const PAGES_AT_ONCE: u32 = 4;

/// Largest page `GET /v1/payments/payouts/{id}` serves.
const PAGE_SIZE: u32 = 1000;

/// What went wrong talking to PayPal, before it is classified for the engine.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum PaypalError {
    /// No answer we can use; see [`ExchangeError`].
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// PayPal answered with an error object.
    #[error("HTTP {status} {error}")]
    Api { status: StatusCode, error: ApiError },
}

impl Classified for PaypalError {
    fn kind(&self) -> ProviderErrorKind {
        match self {
            PaypalError::Exchange(e) => e.kind(),
            // 409: a PayPal-Request-Id still being processed; nothing new happened.
            PaypalError::Api { status, .. } if *status == StatusCode::CONFLICT => ProviderErrorKind::Retryable,
            PaypalError::Api { status, .. } => http::status_kind(*status),
        }
    }
}

impl From<PaypalError> for ProviderError {
    fn from(e: PaypalError) -> Self {
        match e {
            PaypalError::Exchange(inner) => inner.into_provider_error(PROVIDER),
            PaypalError::Api { ref error, .. } => classified_error(PROVIDER, &e, error.name.clone()),
        }
    }
}

/// What creating a batch came to.
#[derive(Debug, Clone)]
pub(crate) enum Created {
    /// A new batch (or PayPal's replay of it for the same `PayPal-Request-Id`).
    Batch {
        payout_batch_id: String,
        batch_status: Option<String>,
    },
    /// PayPal already has this `sender_batch_id`: sent before. The original batch's id, if the error
    /// linked it.
    Duplicate { payout_batch_id: Option<String> },
}

pub(crate) struct PaypalClient {
    pub api: Api,
    pub client_id: Secret,
    pub client_secret: Secret,
    pub tokens: TokenCache,
}

impl PaypalClient {
    /// `POST /v1/oauth2/token` with Basic auth and `grant_type=client_credentials`.
    async fn fetch_token(&self) -> Result<Fetched, ProviderError> {
        let request = self
            .api
            .request(reqwest::Method::POST, "/v1/oauth2/token")
            .basic_auth(self.client_id.expose(), Some(self.client_secret.expose()))
            .form(&[("grant_type", "client_credentials")]);
        let t: TokenResponse = request_token(&self.api, request, |raw| {
            let check = "check PAYPAL_CLIENT_ID/PAYPAL_CLIENT_SECRET";
            (format!("token request refused: HTTP {} ({check})", raw.status), None)
        })
        .await?;
        Ok(Fetched {
            token: Secret::new(t.access_token),
            expires_in: Duration::from_secs(t.expires_in.unwrap_or(300)),
        })
    }

    /// Sends a request built by `build` with a bearer token, refreshing the token once on a 401.
    async fn authorized(&self, build: impl Fn(&str) -> reqwest::RequestBuilder) -> Result<RawResponse, ProviderError> {
        self.tokens
            .authorized(
                || self.fetch_token(),
                |token| http::execute(&self.api, build(token.expose())),
                |_| false,
            )
            .await
    }

    /// `POST /v1/payments/payouts` with `PayPal-Request-Id` = `sender_batch_id`; retried with the same
    /// ids when retryable. A duplicate `sender_batch_id` is [`Created::Duplicate`], not an error.
    pub async fn create_batch(&self, request: &CreatePayoutRequest) -> Result<Created, PaypalError> {
        let request_id = request.sender_batch_header.sender_batch_id.as_str();
        let url = format!("{}/v1/payments/payouts", self.api.base);
        let post = || {
            self.authorized(|token| {
                self.api
                    .http
                    .post(&url)
                    .bearer_auth(token)
                    .header("PayPal-Request-Id", request_id)
                    .json(request)
            })
        };
        exchange_with_retries(&self.api.retry, "paypal create payout batch", post, |raw| {
            if !raw.status.is_success() {
                let body: serde_json::Value = serde_json::from_slice(&raw.body).unwrap_or_default();
                let error: ApiError = serde_json::from_value(body.clone()).unwrap_or_default();
                if error.is_duplicate_batch() {
                    return Ok(Created::Duplicate {
                        payout_batch_id: linked_batch_id(&body),
                    });
                }
                return Err(self.api_error(raw));
            }
            let created: CreatedBatch = raw.json()?;
            Ok(Created::Batch {
                payout_batch_id: created.batch_header.payout_batch_id,
                batch_status: created.batch_header.batch_status,
            })
        })
        .await
    }

    /// One page of `GET /v1/payments/payouts/{id}`; `None` on 404.
    pub async fn batch_page(&self, batch_id: &str, page: u32) -> Result<Option<Batch>, PaypalError> {
        if !valid_id(batch_id) {
            return Ok(None);
        }
        let url = format!("{}/v1/payments/payouts/{batch_id}", self.api.base);
        let page_text = page.to_string();
        self.get_json(
            &url,
            &[
                ("page", page_text.as_str()),
                ("page_size", "1000"),
                ("total_required", "true"),
            ],
        )
        .await
    }

    /// Every item of a batch whose `sender_item_id` is in `wanted` (all items when `wanted` is empty),
    /// by `sender_item_id`, and the batch's status. Pages through the batch until all are found. Once
    /// the first page tells how many there are (`total_pages`), the next ones are read
    /// [`PAGES_AT_ONCE`] at a time: a 15,000-item batch is 15 pages, and each is a round trip.
    pub async fn batch_items(
        &self,
        batch_id: &str,
        wanted: &[&str],
    ) -> Result<Option<(Option<String>, HashMap<String, ItemDetail>)>, PaypalError> {
        // A set, not `wanted.contains`: a batch of 15,000 keys would cost 10^8 comparisons.
        let wanted_set: HashSet<&str> = wanted.iter().copied().collect();
        let mut found = HashMap::new();
        let mut status = None;
        let mut total: Option<u32> = None;
        let mut page: u32 = 0;
        loop {
            // The next wave: one page until the total is known, then up to PAGES_AT_ONCE.
            let wave = match total {
                Some(t) => PAGES_AT_ONCE.min(t.saturating_sub(page)).max(1),
                None => 1,
            };
            let pages =
                futures::future::try_join_all((page + 1..=page + wave).map(|n| self.batch_page(batch_id, n))).await?;
            let mut last_count = PAGE_SIZE as usize;
            for batch in pages {
                let Some(batch) = batch else {
                    return Ok(None);
                };
                page += 1;
                status = status.or(batch.batch_header.batch_status.clone());
                total = total.or(batch.total_pages);
                last_count = batch.items.len();
                for item in batch.items {
                    if let Some(key) = item.sender_item_id().map(str::to_string) {
                        if wanted.is_empty() || wanted_set.contains(key.as_str()) {
                            found.insert(key, item);
                        }
                    }
                }
            }
            let done = (!wanted.is_empty() && wanted_set.iter().all(|k| found.contains_key(*k)))
                || last_count < PAGE_SIZE as usize
                || total.is_some_and(|t| page >= t)
                || page >= 1000;
            if done {
                return Ok(Some((status, found)));
            }
        }
    }

    /// `GET /v1/payments/payouts-item/{id}`; `None` on 404.
    pub async fn item(&self, item_id: &str) -> Result<Option<ItemDetail>, PaypalError> {
        if !valid_id(item_id) {
            return Ok(None);
        }
        let url = format!("{}/v1/payments/payouts-item/{item_id}", self.api.base);
        self.get_json(&url, &[]).await
    }

    /// `POST /v1/notifications/verify-webhook-signature` with a body assembled around the raw event.
    pub async fn verify_webhook_signature(&self, body: String) -> Result<RawResponse, ProviderError> {
        let url = format!("{}/v1/notifications/verify-webhook-signature", self.api.base);
        self.authorized(|token| {
            self.api
                .http
                .post(&url)
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        })
        .await
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str, query: &[(&str, &str)]) -> Result<Option<T>, PaypalError> {
        let get = || self.authorized(|token| self.api.http.get(url).bearer_auth(token).query(query));
        exchange_with_retries(&self.api.retry, "paypal read", get, |raw| {
            if raw.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !raw.status.is_success() {
                return Err(self.api_error(raw));
            }
            Ok(Some(raw.json()?))
        })
        .await
    }

    fn api_error(&self, raw: RawResponse) -> PaypalError {
        let mut error: ApiError = serde_json::from_slice(&raw.body).unwrap_or_default();
        if error.name.is_none() && error.message.is_none() {
            error.message = Some(raw.text_excerpt());
        }
        error.message = error.message.map(|m| redact(&m, &[&self.client_secret]));
        PaypalError::Api {
            status: raw.status,
            error,
        }
    }
}

/// A PayPal id is letters, digits, `-` and `_`; anything else is never sent as a path segment.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
