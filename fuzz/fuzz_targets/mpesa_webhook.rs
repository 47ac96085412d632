//! The M-Pesa adapter's `verify_webhook` (callback token, `x-mpesa-signature` HMAC, client-IP
//! allowlist with `x-forwarded-for`, callback kinds, Daraja result/timeout/status translation) with
//! arbitrary headers and body. The first byte picks the mode:
//!
//! - `0`: a token-authenticated adapter, the headers as given (nothing verifies without the token);
//! - `1`: the same adapter with the right token set by the "host" (the translation of arbitrary
//!   bodies and `x-payouts-callback-kind` values): never an authentication refusal;
//! - `2`: an HMAC-authenticated adapter, the body signed with the right secret: never a refusal of
//!   the signature;
//! - `3`: the token adapter with an IP allowlist, the right token, and the input's IP headers.
#![no_main]

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use payout_core::WebhookError;
use payout_core::provider::PayoutProvider;
use payout_providers::mpesa::{CALLBACK_TOKEN_HEADER, MpesaConfig, MpesaProvider, SIGNATURE_HEADER};
use payouts_fuzz::{block_on, header_map, message, mode};

const TOKEN: &str = "path-token-fuzz";
const HMAC_SECRET: &str = "mpesa-webhook-secret-fuzz";

fn build(token: bool, hmac: bool, ips: bool) -> MpesaProvider {
    let mut b = MpesaConfig::builder()
        .consumer_key("key")
        .consumer_secret("secret")
        .shortcode("600000")
        .initiator_name("api-op")
        .security_credential("credential")
        .api_base("http://127.0.0.1:9")
        .result_url("https://payouts.example/api/webhooks/mpesa-b2c/t")
        .timeout_url("https://payouts.example/api/webhooks/mpesa-b2c/t/timeout");
    if token {
        b = b.callback_token(TOKEN);
    }
    if hmac {
        b = b.webhook_secret(HMAC_SECRET);
    }
    if ips {
        b = b.allowed_ips(["196.201.214.200".parse().expect("an IP")]);
    }
    MpesaProvider::new(b.build().expect("an M-Pesa config")).expect("an M-Pesa provider")
}

fn providers() -> &'static [MpesaProvider; 3] {
    static P: OnceLock<[MpesaProvider; 3]> = OnceLock::new();
    P.get_or_init(|| {
        [
            build(true, false, false),
            build(false, true, false),
            build(true, false, true),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(m) = message(data) else { return };
    let mut headers = header_map(&m.headers);
    let mode = mode(data, 4);
    let provider = match mode {
        0 | 1 => &providers()[0],
        2 => &providers()[1],
        _ => &providers()[2],
    };
    if mode != 0 && mode != 2 {
        headers.insert(CALLBACK_TOKEN_HEADER, TOKEN.parse().expect("a header value"));
    }
    if mode == 2 {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).expect("an HMAC key");
        mac.update(m.body);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        headers.insert(SIGNATURE_HEADER, hex.parse().expect("a header value"));
    }
    let result = block_on(provider.verify_webhook(&headers, m.body));
    if mode == 1 || mode == 2 {
        assert!(
            matches!(result, Ok(_) | Err(WebhookError::Malformed(_))),
            "an authenticated callback was refused: {result:?}"
        );
    }
    if mode == 0 {
        let token_ok = headers
            .get(CALLBACK_TOKEN_HEADER)
            .is_some_and(|v| v.as_bytes() == TOKEN.as_bytes());
        if !token_ok {
            assert!(
                !matches!(result, Ok(_) | Err(WebhookError::Malformed(_))),
                "read without the token: {result:?}"
            );
        }
    }
    if let Ok(events) = &result {
        // An event may name no payment (a status result without its parameters): the engine answers
        // it `unknown_reference` and changes nothing, which the hostile-input test checks end to end.
        for e in events {
            assert!(e.event_id.starts_with("mpesa:"), "{}", e.event_id);
        }
    }
});
