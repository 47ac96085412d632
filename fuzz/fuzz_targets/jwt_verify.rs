//! `BearerJwt::verify` (jsonwebtoken, HS256) on arbitrary tokens (the `Authorization: Bearer` header and
//! the dashboard cookie), and sign/verify round trips of arbitrary claims.
//!
//! Input: the first line is the token to verify; the rest, if it is JSON claims, is signed and must
//! verify back to itself (or be refused as expired, exactly when it is: the verifier runs on the
//! system clock with no leeway).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use payout_server::auth::AuthError;
use payout_server::{BearerJwt, Claims, JwtKey};

const SECRET: &str = "fuzz-nextauth-secret";

fn key() -> &'static JwtKey {
    static K: OnceLock<JwtKey> = OnceLock::new();
    K.get_or_init(|| JwtKey::new(SECRET))
}

fn verifier() -> &'static BearerJwt {
    static V: OnceLock<BearerJwt> = OnceLock::new();
    V.get_or_init(|| BearerJwt::hs256(SECRET).with_leeway(0))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fuzz_target!(|data: &[u8]| {
    let (token, rest) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[data.len()..]),
    };
    if let Ok(token) = std::str::from_utf8(token) {
        let before = now();
        if let Ok(claims) = verifier().verify(token) {
            assert!(claims.exp >= before, "an expired token verified");
        }
    }
    if let Ok(claims) = serde_json::from_slice::<Claims>(rest) {
        let token = key().sign(&claims);
        let before = now();
        match verifier().verify(&token) {
            Ok(back) => {
                assert_eq!(back, claims);
                assert!(claims.exp >= before);
            }
            Err(AuthError::Expired) => assert!(claims.exp <= now()),
            Err(e) => panic!("a token we signed was refused: {e:?} for {claims:?}"),
        }
    }
});
