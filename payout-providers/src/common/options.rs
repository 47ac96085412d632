//! What every adapter's configuration shares: how it reaches the provider's API ([`ClientOptions`])
//! and the builder half that sets those options ([`ConfigBuilder`]), written once for all adapters.
//! Modelled on object_store, whose store builders carry one `ClientOptions` and one `RetryConfig`.

use std::sync::Arc;
use std::time::Duration;

use payout_core::clock::{Clock, SystemClock};

use super::budget::RateLimit;
use super::{ConfigError, RetryPolicy, base_url, seconds, var};

/// Default time limit for one HTTP exchange.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time limit for establishing a connection.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How an adapter talks to its provider's API: the base URL, the time limits, how retryable failures
/// are retried, and the clock that webhook timestamps and certificates are checked against.
///
/// | setting | setter | default |
/// |---|---|---|
/// | API base URL | [`with_api_base`](Self::with_api_base) | the adapter's own (see its module docs); `{PROVIDER}_API_BASE` (`BANK_API_URL` for the bank) |
/// | one HTTP exchange | [`with_timeout`](Self::with_timeout) | 30 s; `{PROVIDER}_TIMEOUT_SECS` |
/// | connecting | [`with_connect_timeout`](Self::with_connect_timeout) | 10 s |
/// | retries | [`with_retry`](Self::with_retry) | [`RetryPolicy::default`]: 3 tries, 250 ms doubling to 4 s |
/// | request rate | [`with_rate_limit`](Self::with_rate_limit) | the provider's documented limits (see each adapter); `{PROVIDER}_RATE_LIMIT` (requests per second, `0` for none) |
/// | clock | [`with_clock`](Self::with_clock) | the system clock |
///
/// Every config builder takes these options whole ([`ConfigBuilder::client_options`]) or one at a
/// time ([`ConfigBuilder::timeout`], ...).
///
/// ```
/// use std::time::Duration;
/// use payout_providers::{ClientOptions, RetryPolicy};
///
/// let options = ClientOptions::new()
///     .with_api_base("http://127.0.0.1:8080")
///     .with_timeout(Duration::from_secs(5))
///     .with_retry(RetryPolicy::no_retries());
/// assert_eq!(options.timeout(), Duration::from_secs(5));
/// assert_eq!(options.connect_timeout(), Duration::from_secs(10));
/// assert_eq!(options.api_base(), Some("http://127.0.0.1:8080"));
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    api_base: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    rate_limit: Option<RateLimit>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            api_base: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            rate_limit: None,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// Every default.
    pub fn new() -> Self {
        ClientOptions::default()
    }

    /// The API base URL (a local test double in tests); `http` or `https`, a trailing `/` is dropped.
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = Some(base.into());
        self
    }
    /// The time limit for one HTTP exchange.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// The time limit for connecting.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// How retryable failures are retried.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// The clock webhook timestamps (Stripe) and certificates (PayPal) are checked against.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// How fast the adapter may call the provider, replacing the provider's default budget.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The API base URL, if one was set (a built config always has one).
    pub fn api_base(&self) -> Option<&str> {
        self.api_base.as_deref()
    }
    /// The time limit for one HTTP exchange.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    /// The time limit for connecting.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// How retryable failures are retried.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }
    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    /// The request budget set, if one was (otherwise the adapter uses its provider's default).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
    }

    /// Reads the adapter's base URL and timeout variables through `lookup`; unset ones change nothing.
    pub(crate) fn read_vars(
        mut self,
        vars: &ClientVars,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if let Some(base) = var(lookup, vars.api_base) {
            self = self.with_api_base(base);
        }
        if let Some(t) = var(lookup, vars.timeout_secs) {
            self = self.with_timeout(seconds(vars.timeout_secs, &t)?);
        }
        if let Some(r) = var(lookup, vars.rate_limit) {
            let n = r.parse::<u32>().map_err(|_| ConfigError::Invalid {
                name: vars.rate_limit,
                reason: "expected whole requests per second (0 for no limit)".into(),
            })?;
            self = self.with_rate_limit(RateLimit::per_second(n));
        }
        Ok(self)
    }

    /// Checks the base URL, falling back to the adapter's default; errors name `vars.api_base`.
    pub(crate) fn resolve(mut self, vars: &ClientVars) -> Result<Self, ConfigError> {
        let base = self
            .api_base
            .as_deref()
            .or(vars.default_api_base)
            .ok_or(ConfigError::Missing(vars.api_base))?;
        self.api_base = Some(base_url(vars.api_base, base)?);
        Ok(self)
    }

    /// The base URL of a resolved config (empty if it was never resolved, which `build` prevents).
    pub(crate) fn base(&self) -> &str {
        self.api_base.as_deref().unwrap_or_default()
    }

    /// A rustls client with these time limits. Redirects are not followed: a provider API that
    /// redirects a payment request is a misconfiguration, not something to chase.
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, ConfigError> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("payouts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Http(e.without_url().to_string()))
    }
}

/// The environment variables an adapter's [`ClientOptions`] are read from (and errors are named
/// after), and the base URL it uses when none is set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientVars {
    /// The base URL's variable, e.g. `STRIPE_API_BASE`.
    pub api_base: &'static str,
    /// The timeout's variable (whole seconds), e.g. `STRIPE_TIMEOUT_SECS`.
    pub timeout_secs: &'static str,
    /// The request budget's variable (requests per second), e.g. `STRIPE_RATE_LIMIT`.
    pub rate_limit: &'static str,
    /// The base URL when none is set; `None` makes it required.
    pub default_api_base: Option<&'static str>,
}

/// A variable's name and the builder setter its value goes to.
pub(crate) type VarSetter<B> = (&'static str, fn(B, String) -> B);

/// Builds an adapter's config: the shared [`ClientOptions`], set by the methods here, plus the
/// adapter's own settings `S`, set by the methods each adapter adds (for example
/// [`StripeConfigBuilder`](crate::stripe::StripeConfigBuilder), which is
/// `ConfigBuilder<StripeSettings>`). `Debug` shows the client options only, never a credential.
#[derive(Default)]
pub struct ConfigBuilder<S> {
    pub(crate) client: ClientOptions,
    pub(crate) settings: S,
}

impl<S> std::fmt::Debug for ConfigBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigBuilder")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<S> ConfigBuilder<S> {
    /// All of the shared options at once, replacing any set before.
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.client = options;
        self
    }
    /// The API base URL (a local test double in tests); see [`ClientOptions::with_api_base`].
    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.client = self.client.with_api_base(base);
        self
    }
    /// The time limit for one HTTP exchange (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_timeout(timeout);
        self
    }
    /// The time limit for connecting (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.with_connect_timeout(timeout);
        self
    }
    /// How retryable failures are retried (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.client = self.client.with_retry(policy);
        self
    }
    /// The clock webhook timestamps and certificates are checked against (default the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.client = self.client.with_clock(clock);
        self
    }
    /// How fast the adapter may call the provider (default: the provider's documented limits, see
    /// the adapter's module docs); see [`RateLimit`].
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.client = self.client.with_rate_limit(limit);
        self
    }

    /// Applies each `(variable, setter)` in order whose variable is set (trimmed, not empty).
    pub(crate) fn vars(mut self, lookup: &dyn Fn(&str) -> Option<String>, setters: &[VarSetter<Self>]) -> Self {
        for (name, set) in setters {
            if let Some(v) = var(lookup, name) {
                self = set(self, v);
            }
        }
        self
    }

    /// Reads the adapter's base URL and timeout variables (see [`ClientVars`]).
    pub(crate) fn client_vars(
        mut self,
        vars: &ClientVars,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        self.client = self.client.read_vars(vars, lookup)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: ClientVars = ClientVars {
        api_base: "X_API_BASE",
        timeout_secs: "X_TIMEOUT_SECS",
        rate_limit: "X_RATE_LIMIT",
        default_api_base: Some("https://api.example"),
    };

    #[test]
    fn defaults_are_written_down() {
        let o = ClientOptions::default();
        assert_eq!(o.api_base(), None);
        assert_eq!(o.timeout(), Duration::from_secs(30));
        assert_eq!(o.connect_timeout(), Duration::from_secs(10));
        assert_eq!(o.retry(), RetryPolicy::default());
        let resolved = o.resolve(&VARS).unwrap();
        assert_eq!(resolved.base(), "https://api.example");
    }

    #[test]
    fn variables_are_read_and_errors_name_them() {
        let o = ClientOptions::new()
            .read_vars(&VARS, &|k| match k {
                "X_API_BASE" => Some("http://127.0.0.1:9/".into()),
                "X_TIMEOUT_SECS" => Some(" 5 ".into()),
                "X_RATE_LIMIT" => Some("40".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(o.timeout(), Duration::from_secs(5));
        assert_eq!(o.rate_limit(), Some(RateLimit::per_second(40)));
        let none = ClientOptions::new()
            .read_vars(&VARS, &|k| (k == "X_RATE_LIMIT").then(|| "0".into()))
            .unwrap();
        assert_eq!(none.rate_limit(), Some(RateLimit::unlimited()));
        let e = ClientOptions::new()
            .read_vars(&VARS, &|k| (k == "X_RATE_LIMIT").then(|| "fast".into()))
            .unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                name: "X_RATE_LIMIT",
                ..
            }
        ));
        assert_eq!(o.resolve(&VARS).unwrap().base(), "http://127.0.0.1:9");
        let e = ClientOptions::new()
            .read_vars(&VARS, &|k| (k == "X_TIMEOUT_SECS").then(|| "soon".into()))
            .unwrap_err();
        assert!(matches!(
            e,
            ConfigError::Invalid {
                name: "X_TIMEOUT_SECS",
                ..
            }
        ));
        let required = ClientVars {
            default_api_base: None,
            ..VARS
        };
        assert_eq!(
            ClientOptions::new().resolve(&required).unwrap_err(),
            ConfigError::Missing("X_API_BASE")
        );
        let bad = ClientOptions::new()
            .with_api_base("ftp://x")
            .resolve(&VARS)
            .unwrap_err();
        assert!(matches!(bad, ConfigError::Invalid { name: "X_API_BASE", .. }));
    }
}
