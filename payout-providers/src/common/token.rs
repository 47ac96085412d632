//! An OAuth access-token cache: one token shared by all calls, fetched once, kept until shortly
//! before it expires, and refreshed once when the provider answers 401.

use std::future::Future;
use std::time::{Duration, Instant};

use payout_core::{ProviderError, ProviderErrorKind};
use serde::de::DeserializeOwned;

use super::Secret;
use super::http::{self, RawResponse, with_code};

/// Tokens are dropped this long before the provider says they expire.
pub(crate) const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(60);

struct Cached {
    token: Secret,
    valid_until: Instant,
    generation: u64,
}

/// A fresh token and how long the provider says it lives.
pub(crate) struct Fetched {
    pub token: Secret,
    pub expires_in: Duration,
}

pub(crate) struct TokenCache {
    state: tokio::sync::Mutex<(Option<Cached>, u64)>,
    margin: Duration,
}

impl TokenCache {
    pub(crate) fn new(margin: Duration) -> Self {
        TokenCache {
            state: tokio::sync::Mutex::new((None, 0)),
            margin,
        }
    }

    /// The cached token, or a new one from `fetch`. The lock is held while fetching, so concurrent
    /// callers wait for one fetch instead of each asking the provider.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<(Secret, u64), ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, ProviderError>>,
    {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.0 {
            if Instant::now() < c.valid_until {
                return Ok((c.token.clone(), c.generation));
            }
        }
        let fetched = fetch().await?;
        state.1 += 1;
        let generation = state.1;
        let lifetime = fetched.expires_in.saturating_sub(self.margin);
        state.0 = if lifetime.is_zero() {
            None
        } else {
            Some(Cached {
                token: fetched.token.clone(),
                valid_until: Instant::now() + lifetime,
                generation,
            })
        };
        Ok((fetched.token, generation))
    }

    /// Forgets the token of `generation` (after a 401); a newer one fetched meanwhile is kept.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.0.as_ref().is_some_and(|c| c.generation == generation) {
            state.0 = None;
        }
    }

    /// Runs `call` with a token; when the answer says the token was refused (a 401, or whatever
    /// `refused` recognises) the token is refreshed once and `call` runs again.
    pub(crate) async fn authorized<F, Fut, C, CFut>(
        &self,
        fetch: F,
        call: C,
        refused: impl Fn(&RawResponse) -> bool,
    ) -> Result<RawResponse, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Fetched, ProviderError>>,
        C: Fn(Secret) -> CFut,
        CFut: Future<Output = Result<RawResponse, ProviderError>>,
    {
        let (token, generation) = self.get(&fetch).await.map_err(nothing_sent)?;
        let first = call(token).await?;
        if first.status != reqwest::StatusCode::UNAUTHORIZED && !refused(&first) {
            return Ok(first);
        }
        tracing::info!("access token refused; fetching a new one and trying once more");
        self.invalidate(generation).await;
        let (token, _) = self.get(&fetch).await.map_err(nothing_sent)?;
        call(token).await
    }
}

/// Asks the provider's OAuth endpoint for a token with `request`. A refusal is classified by its
/// status, with the message and code `refused` makes of it (naming the settings to check); an answer
/// that is not a token is `Retryable`.
pub(crate) async fn request_token<T: DeserializeOwned>(
    api: &http::Api,
    request: reqwest::RequestBuilder,
    refused: impl FnOnce(&RawResponse) -> (String, Option<String>),
) -> Result<T, ProviderError> {
    let provider = api.provider;
    let raw = http::execute(api, request).await?;
    if !raw.status.is_success() {
        let (message, code) = refused(&raw);
        return Err(with_code(
            ProviderError::new(provider, http::status_kind(raw.status), message),
            code,
        ));
    }
    serde_json::from_slice(&raw.body).map_err(|e| {
        ProviderError::new(
            provider,
            ProviderErrorKind::Retryable,
            format!("unreadable token response: {e}"),
        )
    })
}

/// A failure to get a token means the payment request itself was never sent.
fn nothing_sent(mut e: ProviderError) -> ProviderError {
    if e.kind == ProviderErrorKind::Ambiguous {
        e.kind = ProviderErrorKind::Retryable;
    }
    e.message = format!("getting an access token: {}", e.message);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn caches_until_shortly_before_expiry() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched {
                token: Secret::new(format!("t{n}")),
                expires_in: Duration::from_secs(3600),
            })
        };
        let (a, g1) = cache.get(fetch).await.unwrap();
        let (b, _) = cache.get(fetch).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        cache.invalidate(g1).await;
        let (c, _) = cache.get(fetch).await.unwrap();
        assert_ne!(a, c);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn short_lived_tokens_are_not_cached() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let fetches = AtomicU32::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            Ok(Fetched {
                token: Secret::new("t"),
                expires_in: Duration::from_secs(30),
            })
        };
        cache.get(fetch).await.unwrap();
        cache.get(fetch).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }
}
