//! `Stripe-Signature` verification on the raw body, and translation of verified events.

use chrono::{DateTime, Utc};
use payout_core::WebhookError;
use payout_core::domain::PayoutAttempt;
use payout_core::provider::{EventReference, ProviderEvent, ProviderEventKind};
use serde::Deserialize;

use super::wire::Reversal;
use crate::common::{Secret, hmac_sha256_hex, hmac_sha256_verify};

/// The header Stripe signs webhooks in.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Checks `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` against the raw body.
///
/// Only `v1` counts (`v0` and unknown schemes are ignored, so there is no downgrade); any one
/// matching `v1` is enough (several appear while a rolled secret is live); comparison is constant
/// time; the timestamp must be within `tolerance_secs` of `now` on either side.
pub(crate) fn verify_signature(
    secrets: &[&Secret],
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance_secs: i64,
) -> Result<(), WebhookError> {
    let mut timestamp: Option<&str> = None;
    let mut v1: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" if timestamp.is_none() => timestamp = Some(v),
            "v1" => v1.push(v),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return Err(WebhookError::BadSignature);
    };
    let t_secs: i64 = t.parse().map_err(|_| WebhookError::BadSignature)?;
    if v1.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let signed = [t.as_bytes(), b".", body];
    let matched = secrets.iter().any(|s| {
        v1.iter()
            .any(|sig| hmac_sha256_verify(s.expose().as_bytes(), &signed, sig))
    });
    if !matched {
        return Err(WebhookError::BadSignature);
    }
    // `abs_diff`: a signed `t` near i64::MIN or MAX must not overflow (found by the stripe_webhook fuzz target).
    if now.timestamp().abs_diff(t_secs) > tolerance_secs.unsigned_abs() {
        return Err(WebhookError::Expired);
    }
    Ok(())
}

/// A `Stripe-Signature` header value for `body` signed with `secret` at `timestamp`, as Stripe
/// would send it. For tests of a host's webhook endpoint.
///
/// ```
/// use payout_providers::Secret;
/// use payout_providers::stripe::signature_header;
/// let h = signature_header(&Secret::new("whsec_test"), 1_700_000_000, b"{}");
/// assert!(h.starts_with("t=1700000000,v1="));
/// ```
pub fn signature_header(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    format!(
        "t={t},v1={}",
        hmac_sha256_hex(secret.expose().as_bytes(), &[t.as_bytes(), b".", body])
    )
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: Option<i64>,
    /// Whether the event happened in live mode (`false`: test mode).
    livemode: Option<bool>,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(Debug, Default, Deserialize)]
struct EventObject {
    id: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, serde_json::Value>,
    amount: Option<i64>,
    amount_reversed: Option<i64>,
    #[serde(default)]
    reversed: bool,
    currency: Option<String>,
}

/// Translates a verified event. Types we do not act on yield no events.
///
/// | Stripe event | kind |
/// |---|---|
/// | `transfer.created` | `Paid`: a created transfer has put the money in the connected account's balance (what a lookup says too) |
/// | `transfer.reversed`, `reversed` or `amount_reversed` ≥ `amount` | `Reversed` |
/// | `transfer.reversed`, `amount_reversed` < `amount` | `PartiallyReversed` with the amount reversed so far |
/// | `payout.paid`, `payout.failed`, `payout.canceled`, `payout.updated` (Connect) | no references: not ours |
///
/// References, tried in order: the transfer's id (`tr_...`) and our idempotency key from
/// `metadata.idempotency_key`, both only when the object carries a key of our form. An event with
/// no key of ours (another system's transfer) names nothing of ours, and the service acknowledges it
/// without a change. A Connect `payout.*` event is about the connected account paying its own
/// balance out to its bank (`po_...`): it says nothing about our transfer, which reached that
/// balance when it was created, so it never names anything of ours, whatever its metadata holds.
///
/// `livemode` is the mode of our secret key (`None` when the key does not say): an event of the
/// other mode (a test-mode event at a live endpoint, or the reverse) names nothing of ours either,
/// so it is acknowledged and changes nothing.
pub(crate) fn translate(body: &[u8], livemode: Option<bool>) -> Result<Vec<ProviderEvent>, WebhookError> {
    let event: Event = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let other_mode = matches!((livemode, event.livemode), (Some(ours), Some(its)) if ours != its);
    let object = &event.data.object;
    let (kind, about_transfer) = match event.kind.as_str() {
        "transfer.created" => (ProviderEventKind::Paid, true),
        "transfer.reversed" => (reversal_kind(object), true),
        "payout.paid" | "payout.failed" | "payout.canceled" | "payout.updated" => (
            ProviderEventKind::Unknown {
                reason: "a connected account's own payout to its bank".to_string(),
            },
            false,
        ),
        _ => return Ok(Vec::new()),
    };
    // Every transfer we create carries our key in its metadata; an object without one (another
    // system's transfer, a connected account's own `po_...` payout) names nothing of ours. A
    // `po_...` id is never one `send` returned, so only the key can tie a payout event to us.
    let mut references = Vec::new();
    let key = match object.metadata.get("idempotency_key") {
        Some(serde_json::Value::String(key)) if PayoutAttempt::is_key_form(key) => Some(key.clone()),
        _ => None,
    };
    if let Some(key) = key.filter(|_| !other_mode && about_transfer) {
        if let Some(id) = object.id.as_deref().filter(|s| s.starts_with("tr_")) {
            references.push(EventReference::ProviderReference(id.to_string()));
        }
        references.push(EventReference::IdempotencyKey(key));
    }
    Ok(vec![ProviderEvent {
        event_id: event.id,
        references,
        kind,
        occurred_at: event.created.and_then(|t| DateTime::from_timestamp(t, 0)),
        provider_type: event.kind,
    }])
}

/// What a `transfer.reversed` event says: all of the transfer back, or part of it so far.
fn reversal_kind(object: &EventObject) -> ProviderEventKind {
    let currency = object.currency.as_deref().unwrap_or("");
    let amount_reversed = object.amount_reversed.unwrap_or(0);
    let id = object.id.as_deref().unwrap_or("?");
    // Without `amount`, only `reversed` can say it was all of it.
    let amount = object.amount.unwrap_or(i64::MAX);
    match Reversal::of(amount, amount_reversed, object.reversed, currency) {
        Ok(Reversal::Full) => ProviderEventKind::Reversed {
            reason: format!("transfer {id} reversed ({amount_reversed} {currency} reversed)"),
        },
        Ok(Reversal::Partial(reversed)) => ProviderEventKind::PartiallyReversed {
            reason: format!("transfer {id} was reversed in part ({reversed} reversed)"),
            reversed,
        },
        Ok(Reversal::None) => ProviderEventKind::Unknown {
            reason: format!("transfer {id}: transfer.reversed without an amount reversed"),
        },
        Err(why) => ProviderEventKind::Unknown {
            reason: format!("transfer {id}: {why}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn header_parsing_ignores_v0_and_junk() {
        let s = Secret::new("whsec_a");
        let good = signature_header(&s, 1_700_000_000, b"x");
        let sig = good.split_once("v1=").unwrap().1;
        let header = format!("t=1700000000,v0={sig},junk,v1=00,v1={sig}");
        assert!(verify_signature(&[&s], &header, b"x", now(), 300).is_ok());
        let v0_only = format!("t=1700000000,v0={sig}");
        assert_eq!(
            verify_signature(&[&s], &v0_only, b"x", now(), 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(&[&s], "", b"x", now(), 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(&[&s], "t=abc,v1=00", b"x", now(), 300),
            Err(WebhookError::BadSignature)
        );
    }

    /// Found by the `stripe_webhook` fuzz target: a signed timestamp at the ends of i64 overflowed the
    /// tolerance arithmetic (a panic with overflow checks on) instead of being refused as expired.
    #[test]
    fn extreme_signed_timestamps_are_expired_not_a_panic() {
        let s = Secret::new("whsec_a");
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
            let header = signature_header(&s, t, b"x");
            assert_eq!(
                verify_signature(&[&s], &header, b"x", now(), 300),
                Err(WebhookError::Expired),
                "t={t}"
            );
        }
        let edge = signature_header(&s, 1_700_000_000 - 300, b"x");
        assert!(verify_signature(&[&s], &edge, b"x", now(), 300).is_ok());
        let past = signature_header(&s, 1_700_000_000 - 301, b"x");
        assert_eq!(
            verify_signature(&[&s], &past, b"x", now(), 300),
            Err(WebhookError::Expired)
        );
    }

    #[test]
    fn unknown_types_yield_nothing() {
        let body = br#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"id":"ch_1"}}}"#;
        assert!(translate(body, None).unwrap().is_empty());
        assert!(matches!(translate(b"{", None), Err(WebhookError::Malformed(_))));
    }
}
