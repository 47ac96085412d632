//! What every adapter shares: secrets, config errors, client options, retries, HTTP classification
//! and (for the OAuth providers) a token cache.

pub(crate) mod budget;
pub(crate) mod http;
pub(crate) mod options;
pub(crate) mod retry;
#[cfg(any(feature = "paypal", feature = "mpesa"))]
pub(crate) mod token;

use std::fmt;
use std::time::Duration;

use payout_core::domain::Provider;
use payout_core::provider::{Capabilities, PayoutInstruction};
use payout_core::{ProviderError, ProviderErrorKind};

pub use budget::RateLimit;
pub use options::{ClientOptions, ConfigBuilder};
pub use retry::RetryPolicy;

/// `impl Debug` for an adapter that shows its config (whose own `Debug` is an allow-list without
/// secrets) and nothing of its client (which holds the credentials).
macro_rules! debug_shows_config_only {
    ($adapter:ident) => {
        impl std::fmt::Debug for $adapter {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($adapter))
                    .field("config", &self.config)
                    .finish_non_exhaustive()
            }
        }
    };
}
#[allow(unused_imports)] // each adapter behind its own feature uses it
pub(crate) use debug_shows_config_only;

/// A credential. `Debug` prints `[REDACTED]`; there is no `Display`; the value is read only through
/// [`Secret::expose`], so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Box<str>);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().into_boxed_str())
    }

    /// The credential itself: call this only where it is handed to the provider.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

/// Why an adapter's configuration could not be built. Never carries a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing; names the environment variable that provides it.
    #[error("missing {0}: set the environment variable or the builder field")]
    Missing(&'static str),
    /// A setting is present but unusable.
    #[error("invalid {name}: {reason}")]
    Invalid {
        /// The environment variable (or builder field) at fault.
        name: &'static str,
        /// Why, without the value when it is a secret.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// What an adapter here can do: every one looks attempts up and moves real money; it sends batches
/// when it takes more than one instruction a call, and verifies webhooks when configured to.
pub(crate) fn capabilities(max_batch_size: usize, webhooks: bool) -> Capabilities {
    Capabilities {
        batch: max_batch_size > 1,
        max_batch_size,
        lookup: true,
        webhooks,
        simulated: false,
    }
}

/// Why an instruction cannot be sent to a provider: a `Final` error, before any call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unpayable(pub String);

impl Unpayable {
    /// The instruction pays a destination this provider cannot: "`{what}`, not {the masked destination}".
    pub fn destination(what: &str, i: &PayoutInstruction) -> Self {
        Unpayable(format!("{what}, not {}", i.destination.masked()))
    }

    /// The public error: `Final`, since nothing was sent and re-sending cannot help.
    pub fn into_error(self, provider: Provider) -> ProviderError {
        ProviderError::new(provider, ProviderErrorKind::Final, self.0)
    }
}

/// Reads a variable through `lookup`, trimmed; empty counts as unset.
pub(crate) fn var(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Parses a base URL: http or https, no trailing slash.
pub(crate) fn base_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let trimmed = value.trim().trim_end_matches('/');
    let ok = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
        && trimmed.len() > "https://".len()
        && !trimmed.contains(char::is_whitespace);
    if ok {
        Ok(trimmed.to_string())
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: "expected an http(s) URL".into(),
        })
    }
}

/// Parses a whole number of seconds, e.g. a timeout from the environment.
pub(crate) fn seconds(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| ConfigError::Invalid {
            name,
            reason: "expected a whole number of seconds".into(),
        })
}

/// Lowercase hex.
#[allow(dead_code)]
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex (either case); `None` when it is not hex.
#[allow(dead_code)]
pub(crate) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks(2)
        .map(|p| Some((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

/// Hex HMAC-SHA256 of `message` under `key`.
#[cfg(feature = "stripe")]
pub(crate) fn hmac_sha256_hex(key: &[u8], message: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length, so this cannot fail; an empty MAC would never verify anyway.
    match Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            for part in message {
                mac.update(part);
            }
            hex_encode(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Checks a hex HMAC-SHA256 in constant time.
#[cfg(any(feature = "stripe", feature = "mpesa"))]
pub(crate) fn hmac_sha256_verify(key: &[u8], message: &[&[u8]], hex_signature: &str) -> bool {
    use hmac::{Hmac, Mac};
    let Some(expected) = hex_decode(hex_signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return false;
    };
    for part in message {
        mac.update(part);
    }
    mac.verify_slice(&expected).is_ok()
}

/// Removes credential-looking words from provider text before it goes into an error or a note:
/// any of `secrets`, and words that look like API keys (`sk_...`, `rk_...`, `whsec_...`, bearer tokens).
pub(crate) fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        let v = s.expose();
        if v.len() >= 4 {
            out = out.replace(v, "[REDACTED]");
        }
    }
    let mut after_bearer = false;
    let words: Vec<String> = out
        .split(' ')
        .map(|w| {
            let bare = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            let keyish = after_bearer
                || ["sk_", "rk_", "whsec_", "A21AA"]
                    .iter()
                    .any(|p| bare.starts_with(p) && bare.len() > p.len() + 3);
            after_bearer = bare.eq_ignore_ascii_case("bearer");
            if keyish {
                "[REDACTED]".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    let mut joined = words.join(" ");
    if joined.chars().count() > 500 {
        joined = joined.chars().take(500).collect::<String>() + "...";
    }
    joined
}

/// For unit tests: the testkit's instruction for `provider`, paying `amount` in `currency`.
#[cfg(test)]
pub(crate) fn test_instruction(
    provider: Provider,
    amount: &str,
    currency: payout_core::money::Currency,
) -> PayoutInstruction {
    let mut i = payout_core::testkit::fixtures::instruction(provider);
    i.amount = payout_core::money::Money::parse(amount, currency).unwrap();
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("sk_live_abc");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(s.expose(), "sk_live_abc");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex_encode(&[0, 15, 255]), "000fff");
        assert_eq!(hex_decode("000FfF"), Some(vec![0, 15, 255]));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn redact_hides_keys() {
        let secret = Secret::new("topsecretvalue");
        let text = redact(
            "Invalid API Key provided: sk_test_1234567 and topsecretvalue.",
            &[&secret],
        );
        assert!(!text.contains("sk_test_1234567"));
        assert!(!text.contains("topsecretvalue"));
    }

    #[test]
    fn base_urls_are_checked() {
        assert_eq!(
            base_url("X", "https://api.stripe.com/").unwrap(),
            "https://api.stripe.com"
        );
        assert!(base_url("X", "ftp://x").is_err());
        assert!(base_url("X", "https://").is_err());
    }
}
