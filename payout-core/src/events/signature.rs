//! The signature of outbound event webhooks: Stripe's scheme, under our own header.
//!
//! The sender puts `Payouts-Signature: t=<unix seconds>,v1=<hex>` on each request, where `<hex>`
//! is HMAC-SHA256, keyed with the shared secret, of `"<t>.<raw body>"`. A receiver:
//!
//! 1. reads the **raw** body (before any JSON parsing);
//! 2. takes `t` and every `v1` from the header (more than one `v1` while a secret is rotated);
//! 3. computes HMAC-SHA256(secret, `t` + `.` + body) and compares it to each `v1` in constant time;
//! 4. refuses a `t` more than the tolerance (300 s is Stripe's) away from its own clock, either way,
//!    so a captured request cannot be replayed later;
//! 5. deduplicates by the event's `id`: a delivery may come more than once.
//!
//! [`verify`] does 2-4; a receiver written in Rust calls it, others follow the steps above.
//!
//! ```
//! use payout_core::events::signature::{sign, verify};
//! let body = br#"{"id":"evt_1"}"#;
//! let header = sign(b"whsec_test", 1_700_000_000, body);
//! assert!(verify(b"whsec_test", &header, body, 1_700_000_100, 300).is_ok());
//! assert!(verify(b"whsec_test", &header, body, 1_700_000_400, 300).is_err()); // too old
//! assert!(verify(b"another", &header, body, 1_700_000_000, 300).is_err());
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header the signature travels in.
pub const HEADER: &str = "Payouts-Signature";

/// Why a signature was refused. Says nothing about the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No `t=` or no `v1=` in the header.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("signature timestamp outside the tolerance")]
    Expired,
    /// No `v1` matches the body.
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `timestamp` (unix seconds): `t=<timestamp>,v1=<hex>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks `header` against the raw `body`: a `v1` matches (compared in constant time) and `t` is
/// within `tolerance_secs` of `now` (unix seconds), either way.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => tags.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(SignatureError::Malformed);
    };
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now.abs_diff(timestamp) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Expired);
    }
    let expected = mac(secret, timestamp, body);
    if tags.iter().any(|tag| expected.clone().verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutated_body_or_header_is_refused() {
        let header = sign(b"s", 100, b"{}");
        assert_eq!(verify(b"s", &header, b"{}", 100, 300), Ok(()));
        assert_eq!(verify(b"s", &header, b"{ }", 100, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"s", &header, b"{}", 401, 300), Err(SignatureError::Expired));
        assert_eq!(verify(b"s", &header, b"{}", -201, 300), Err(SignatureError::Expired));
        assert_eq!(verify(b"s", "v1=00", b"{}", 100, 300), Err(SignatureError::Malformed));
        assert_eq!(verify(b"s", "t=100", b"{}", 100, 300), Err(SignatureError::Malformed));
        let moved = header.replace("t=100", "t=101");
        assert_eq!(verify(b"s", &moved, b"{}", 100, 300), Err(SignatureError::Mismatch));
        // A rotated secret: either v1 may match.
        let both = format!("{header},v1={}", &sign(b"new", 100, b"{}")[9..]);
        assert_eq!(verify(b"new", &both, b"{}", 100, 300), Ok(()));
    }

    #[test]
    fn the_tag_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: python3 hmac.new(b"key", b"1.body", sha256).
        assert_eq!(
            sign(b"key", 1, b"body"),
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }
}
