//! The Stripe adapter's `verify_webhook` (Stripe-Signature parsing, HMAC check, tolerance, event
//! translation) with arbitrary headers and body. Input: see `payouts_fuzz::message`; the first byte
//! picks the mode:
//!
//! - `0`: the headers as given (forgeries: nothing may verify without the secret);
//! - `1`: the body signed with the right secret now (the translation of arbitrary bodies): never a
//!   signature or timestamp refusal;
//! - `2`: signed with the right secret at the timestamp in a `t:` header line: refused as expired
//!   exactly when it is more than 300 s away from now, either way.
#![no_main]

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use payout_core::WebhookError;
use payout_core::clock::ManualClock;
use payout_core::provider::PayoutProvider;
use payout_providers::Secret;
use payout_providers::stripe::{SIGNATURE_HEADER, StripeConfig, StripeProvider, signature_header};
use payouts_fuzz::{block_on, header_map, message, mode};

const NOW: i64 = 1_700_000_000;
const SECRET: &str = "whsec_fuzz";

fn provider() -> &'static StripeProvider {
    static P: OnceLock<StripeProvider> = OnceLock::new();
    P.get_or_init(|| {
        let now = DateTime::<Utc>::from_timestamp(NOW, 0).expect("a time");
        let config = StripeConfig::builder()
            .secret_key("sk_test_fuzz")
            .webhook_secret(SECRET)
            .api_base("http://127.0.0.1:9")
            .clock(Arc::new(ManualClock::new(now)))
            .build()
            .expect("a Stripe config");
        StripeProvider::new(config).expect("a Stripe provider")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(m) = message(data) else { return };
    let mut headers = header_map(&m.headers);
    let secret = Secret::new(SECRET);
    let signed_at = match mode(data, 3) {
        0 => None,
        1 => Some(NOW),
        _ => Some(
            m.headers
                .iter()
                .find(|(k, _)| *k == "t")
                .and_then(|(_, v)| v.trim().parse::<i64>().ok())
                .unwrap_or(NOW),
        ),
    };
    if let Some(t) = signed_at {
        let value = signature_header(&secret, t, m.body);
        headers.insert(SIGNATURE_HEADER, value.parse().expect("a header value"));
    }
    let result = block_on(provider().verify_webhook(&headers, m.body));
    if let Some(t) = signed_at {
        let expired = (i128::from(NOW) - i128::from(t)).abs() > 300;
        match &result {
            Err(WebhookError::Expired) => assert!(expired, "t={t} refused as expired"),
            Err(WebhookError::BadSignature | WebhookError::MissingHeader(_)) => {
                panic!("a correctly signed body was refused: {result:?}")
            }
            _ => assert!(!expired, "t={t} accepted outside the tolerance: {result:?}"),
        }
    }
    if let Ok(events) = &result {
        for e in events {
            assert!(!e.provider_type.is_empty());
        }
    }
});
