//! `JwtKey::verify` on arbitrary tokens (the `Authorization: Bearer` header and the dashboard cookie),
//! and sign/verify round trips of arbitrary claims.
//!
//! Input: the first line is the token to verify; the rest, if it is JSON claims, is signed and must
//! verify back to itself (or be refused as expired, exactly when it is).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use payout_server::auth::AuthError;
use payout_server::{Claims, JwtKey};

const NOW: i64 = 1_700_000_000;

fn key() -> &'static JwtKey {
    static K: OnceLock<JwtKey> = OnceLock::new();
    K.get_or_init(|| JwtKey::new("fuzz-nextauth-secret"))
}

fuzz_target!(|data: &[u8]| {
    let (token, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    if let Ok(token) = std::str::from_utf8(token)
        && let Ok(claims) = key().verify(token, NOW)
    {
        assert!(claims.exp > NOW, "an expired token verified");
    }
    if let Ok(claims) = serde_json::from_slice::<Claims>(rest) {
        let token = key().sign(&claims);
        match key().verify(&token, NOW) {
            Ok(back) => {
                assert_eq!(back, claims);
                assert!(claims.exp > NOW);
            }
            Err(AuthError::Expired) => assert!(claims.exp <= NOW),
            Err(e) => panic!("a token we signed was refused: {e:?} for {claims:?}"),
        }
    }
});
