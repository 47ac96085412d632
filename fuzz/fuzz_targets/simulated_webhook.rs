//! The simulated provider's `verify_webhook` (`x-simulation-token`, the simulated event JSON) with
//! arbitrary headers and body. Mode `0`: the headers as given (nothing verifies without the token);
//! mode `1`: the right token (the parse of arbitrary bodies): never a token refusal.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use payout_core::WebhookError;
use payout_core::domain::Provider;
use payout_core::provider::PayoutProvider;
use payout_core::simulated::{SIMULATION_TOKEN_HEADER, SimulatedProvider};
use payouts_fuzz::{block_on, header_map, message, mode};

const TOKEN: &str = "sim-fuzz-token";

fn provider() -> &'static SimulatedProvider {
    static P: OnceLock<SimulatedProvider> = OnceLock::new();
    P.get_or_init(|| SimulatedProvider::new(Provider::MpesaB2c).with_webhook_token(TOKEN))
}

fuzz_target!(|data: &[u8]| {
    let Some(m) = message(data) else { return };
    let mut headers = header_map(&m.headers);
    let with_token = mode(data, 2) == 1;
    if with_token {
        headers.insert(SIMULATION_TOKEN_HEADER, TOKEN.parse().expect("a header value"));
    }
    let result = block_on(provider().verify_webhook(&headers, m.body));
    let token_ok = headers
        .get(SIMULATION_TOKEN_HEADER)
        .is_some_and(|v| v.as_bytes() == TOKEN.as_bytes());
    match &result {
        Ok(events) => {
            assert!(token_ok, "accepted without the token");
            assert_eq!(events.len(), 1);
        }
        Err(WebhookError::Malformed(_)) => assert!(token_ok, "parsed before the token was checked"),
        Err(e) => assert!(!with_token, "the right token was refused: {e:?}"),
    }
});
