//! Retries with exponential backoff and jitter, for retryable failures only.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use payout_core::{ProviderError, ProviderErrorKind};

/// How an adapter retries a call that failed in a [`Retryable`](ProviderErrorKind::Retryable) way
/// (429, 5xx, connection refused). Every try sends the same idempotency key; `Final` and `Ambiguous`
/// failures are never retried here (an ambiguous one is resolved by a lookup or by the engine).
///
/// The wait before retry `n` (1-based) is a random duration between half and all of
/// `min(max_delay, base_delay * 2^(n-1))`.
///
/// ```
/// use std::time::Duration;
/// use payout_providers::RetryPolicy;
/// let p = RetryPolicy::default();
/// assert_eq!(p.max_tries, 3);
/// assert!(p.delay_before_retry(1) <= Duration::from_millis(250));
/// assert!(p.delay_before_retry(10) <= Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1). Default 3.
    pub max_tries: u32,
    /// The backoff's first step. Default 250 ms.
    pub base_delay: Duration,
    /// The longest wait between tries. Default 4 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_tries: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// One try, no retries.
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_tries: 1,
            ..RetryPolicy::default()
        }
    }

    /// `max_tries` tries with tiny waits: for tests.
    pub fn immediate(max_tries: u32) -> Self {
        RetryPolicy {
            max_tries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    /// The wait before retry `retry_no` (1 for the first retry), jittered.
    pub fn delay_before_retry(&self, retry_no: u32) -> Duration {
        let exp = retry_no.saturating_sub(1).min(20);
        let full = self.base_delay.saturating_mul(1u32 << exp).min(self.max_delay);
        let half = full / 2;
        let spread = u64::try_from((full - half).as_micros()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 { 0 } else { random_u64() % (spread + 1) };
        half + Duration::from_micros(jitter)
    }
}

/// A failure that knows how it should be handled.
pub(crate) trait Classified {
    fn kind(&self) -> ProviderErrorKind;
}

impl Classified for ProviderError {
    fn kind(&self) -> ProviderErrorKind {
        self.kind
    }
}

/// Runs `op` (given the 1-based try number) until it succeeds, fails in a way that is not
/// retryable, or `policy.max_tries` is reached; the last error is returned as it was.
pub(crate) async fn retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, mut op: F) -> Result<T, E>
where
    E: Classified + std::fmt::Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let tries = policy.max_tries.max(1);
    let mut n = 1;
    loop {
        match op(n).await {
            Err(e) if e.kind() == ProviderErrorKind::Retryable && n < tries => {
                let wait = policy.delay_before_retry(n);
                tracing::warn!(try_no = n, ?wait, error = %e, "{what}: retryable failure, retrying with the same key");
                tokio::time::sleep(wait).await;
                n += 1;
            }
            other => return other,
        }
    }
}

/// A random number for jitter (not for anything secret): std's randomly keyed hasher.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use payout_core::domain::Provider;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(kind: ProviderErrorKind) -> ProviderError {
        ProviderError::new(Provider::StripeConnect, kind, "x")
    }

    #[tokio::test]
    async fn retries_only_retryable_and_stops_at_max() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = retry(&RetryPolicy::immediate(3), "t", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(err(ProviderErrorKind::Retryable)) }
        })
        .await;
        assert_eq!(r.unwrap_err().kind, ProviderErrorKind::Retryable);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        for kind in [ProviderErrorKind::Final, ProviderErrorKind::Ambiguous] {
            let calls = AtomicU32::new(0);
            let r: Result<(), _> = retry(&RetryPolicy::immediate(3), "t", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Err(err(kind)) }
            })
            .await;
            assert_eq!(r.unwrap_err().kind, kind);
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn succeeds_after_a_retry() {
        let r = retry(&RetryPolicy::immediate(3), "t", |n| async move {
            if n < 2 {
                Err(err(ProviderErrorKind::Retryable))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            max_tries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = p.delay_before_retry(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay_before_retry(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(p.delay_before_retry(30) <= Duration::from_secs(1));
        }
    }
}
