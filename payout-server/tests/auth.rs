//! Pluggable auth (issue 16 item 3): the built-in `BearerJwt` over `jsonwebtoken` (HS256, RS256, ES256;
//! `exp`, `nbf`, `iss`, `aud`, leeway; no `none`, no algorithm confusion) and a host's own
//! `Authenticator` used by the routers.
//!
//! The keys in `tests/fixtures/` were generated for these tests only (see the README there).

mod common;

use std::collections::HashMap;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use payout_core::domain::Actor;
use payout_server::auth::AuthError;
use payout_server::{Authenticator, BearerJwt, ServerConfig, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_public.pem");
const RSA_OTHER_PUBLIC: &[u8] = include_bytes!("fixtures/rsa_other_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("fixtures/ec_public.pem");
const EC_OTHER_PUBLIC: &[u8] = include_bytes!("fixtures/ec_other_public.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An admin's claims valid for ten minutes, with `extra` claims merged in.
fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "admin-1", "role": "admin", "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn es256(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &key).unwrap()
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn rs256_and_es256_tokens_verify_with_the_issuers_key_only() {
    let rsa = BearerJwt::rs256_pem(RSA_PUBLIC).unwrap();
    let token = rs256(&claims(json!({})));
    let verified = rsa.verify(&token).unwrap();
    assert_eq!(
        (verified.sub.as_str(), verified.actor()),
        ("admin-1", Actor::admin("admin-1"))
    );
    let other = BearerJwt::rs256_pem(RSA_OTHER_PUBLIC).unwrap();
    assert_eq!(other.verify(&token), Err(AuthError::BadSignature));

    let ec = BearerJwt::es256_pem(EC_PUBLIC).unwrap();
    let token = es256(&claims(json!({"role": "doctor", "doctorId": "dr-a"})));
    assert_eq!(ec.verify(&token).unwrap().actor(), Actor::doctor("dr-a"));
    let other = BearerJwt::es256_pem(EC_OTHER_PUBLIC).unwrap();
    assert_eq!(other.verify(&token), Err(AuthError::BadSignature));

    // One algorithm per key: an ES256 token is no RS256 token, and the reverse.
    assert!(rsa.verify(&token).is_err());
    assert!(ec.verify(&rs256(&claims(json!({})))).is_err());
    // A key that is not PEM is refused when the verifier is built.
    assert!(BearerJwt::rs256_pem(b"not a key").is_err());
    assert!(BearerJwt::es256_pem(RSA_PUBLIC).is_err());
}

#[test]
fn algorithm_confusion_and_none_are_refused() {
    let rsa = BearerJwt::rs256_pem(RSA_PUBLIC).unwrap();
    // The classic confusion: an HS256 token whose HMAC key is the RSA public key, which the attacker has.
    let confused = hs256(RSA_PUBLIC, &claims(json!({})));
    assert_eq!(rsa.verify(&confused), Err(AuthError::Malformed));
    // `alg: none` with no signature, to every verifier.
    let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
    ] {
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
        assert!(rsa.verify(&none).is_err(), "{header}");
        assert!(BearerJwt::hs256(SECRET).verify(&none).is_err(), "{header}");
    }
    // An RS256 token shown to an HS256 verifier is refused too.
    assert!(BearerJwt::hs256(RSA_PUBLIC).verify(&rs256(&claims(json!({})))).is_err());
}

#[test]
fn exp_nbf_iss_and_aud_are_checked_within_the_leeway() {
    let rsa = BearerJwt::rs256_pem(RSA_PUBLIC).unwrap();
    let at = |extra: Value| rsa.verify(&rs256(&claims(extra)));
    // exp: required; beyond the 30 s leeway refused, within it accepted.
    assert_eq!(at(json!({"exp": now() - 120})), Err(AuthError::Expired));
    assert!(at(json!({"exp": now() - 5})).is_ok());
    let no_exp = json!({"sub": "admin-1", "role": "admin"});
    assert!(rsa.verify(&rs256(&no_exp)).is_err());
    // A claim of the wrong type is refused, never taken as absent.
    assert!(at(json!({"exp": "never"})).is_err());
    assert!(at(json!({"nbf": "99999999999"})).is_err());
    // nbf: honoured, with the same leeway.
    assert_eq!(at(json!({"nbf": now() + 300})), Err(AuthError::NotYetValid));
    assert!(at(json!({"nbf": now() + 5})).is_ok());
    let strict = BearerJwt::rs256_pem(RSA_PUBLIC).unwrap().with_leeway(0);
    assert_eq!(
        strict.verify(&rs256(&claims(json!({"nbf": now() + 5})))),
        Err(AuthError::NotYetValid)
    );

    // iss and aud: ignored unless configured; then required and matched.
    assert!(at(json!({"iss": "someone", "aud": "anyone"})).is_ok());
    let scoped = BearerJwt::rs256_pem(RSA_PUBLIC)
        .unwrap()
        .with_issuer("https://login.clinic.example")
        .with_audience("payouts");
    let scoped_at = |extra: Value| scoped.verify(&rs256(&claims(extra)));
    assert!(scoped_at(json!({"iss": "https://login.clinic.example", "aud": "payouts"})).is_ok());
    assert!(scoped_at(json!({"iss": "https://login.clinic.example", "aud": ["other", "payouts"]})).is_ok());
    assert_eq!(
        scoped_at(json!({"iss": "https://evil.example", "aud": "payouts"})),
        Err(AuthError::WrongIssuer)
    );
    assert_eq!(
        scoped_at(json!({"iss": "https://login.clinic.example", "aud": "billing"})),
        Err(AuthError::WrongAudience)
    );
    assert!(
        scoped_at(json!({"aud": "payouts"})).is_err(),
        "a missing iss is refused"
    );
    assert!(
        scoped_at(json!({"iss": "https://login.clinic.example"})).is_err(),
        "a missing aud is refused"
    );
    // Debug shows the settings, never the key.
    let debug = format!("{scoped:?}");
    assert!(
        debug.contains("RS256") && debug.contains("payouts") && !debug.contains("BEGIN"),
        "{debug}"
    );
}

async fn status(app: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str, header: Option<(&str, String)>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some((name, value)) = header {
        b = b.header(name, value);
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_routers_use_the_configured_key() {
    let verifier = BearerJwt::rs256_pem(RSA_PUBLIC).unwrap().with_audience("payouts");
    let app = router(calculated_state(ServerConfig::with_authenticator(verifier)).await);
    let bearer = |t: String| Some(("authorization", format!("Bearer {t}")));
    let ok = rs256(&claims(json!({"aud": "payouts"})));
    assert_eq!(
        status(&app, get("/api/admin/payouts", bearer(ok))).await.0,
        StatusCode::OK
    );
    let doctor = rs256(&claims(json!({"aud": "payouts", "role": "doctor", "doctorId": "dr-a"})));
    assert_eq!(
        status(&app, get("/api/doctor/payouts", bearer(doctor))).await.0,
        StatusCode::OK
    );
    for refused in [
        rs256(&claims(json!({"aud": "billing"}))),
        es256(&claims(json!({"aud": "payouts"}))),
        admin("admin-1"), // HS256 with the test secret: not this server's key any more
    ] {
        let (s, body) = status(&app, get("/api/admin/payouts", bearer(refused))).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    }
}

/// A host's own login: sessions it looked up itself, named by an `x-session` header.
struct HostSessions(HashMap<String, Actor>);

#[async_trait]
impl Authenticator for HostSessions {
    async fn authenticate(&self, request: &Parts) -> Result<Actor, AuthError> {
        let id = request.headers.get("x-session").ok_or(AuthError::Missing)?;
        let id = id.to_str().map_err(|_| AuthError::Invalid)?;
        self.0.get(id).cloned().ok_or(AuthError::Invalid)
    }
}

#[tokio::test]
async fn a_hosts_own_authenticator_is_used_by_the_api_and_the_dashboard() {
    let sessions = HostSessions(HashMap::from([
        ("s-admin".to_string(), Actor::admin("host-admin-7")),
        ("s-doctor".to_string(), Actor::doctor("dr-a")),
        ("s-job".to_string(), Actor::system("a host job")),
    ]));
    let state = calculated_state(ServerConfig::with_authenticator(sessions)).await;
    let app = router(state);
    let session = |s: &str| Some(("x-session", s.to_string()));

    let (s, body) = status(&app, get("/api/admin/payouts", session("s-admin"))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = status(&app, get("/api/doctor/payouts", session("s-doctor"))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.contains("dr-a") && !body.contains("dr-b"), "{body}");
    // Roles come from the host's actor.
    assert_eq!(
        status(&app, get("/api/admin/payouts", session("s-doctor"))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&app, get("/api/doctor/payouts", session("s-admin"))).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&app, get("/api/admin/payouts", session("s-job"))).await.0,
        StatusCode::FORBIDDEN
    );
    // No session, an unknown one, or our own bearer token (this host does not take them): 401.
    for header in [
        None,
        session("s-unknown"),
        Some(("authorization", format!("Bearer {}", admin("a1")))),
    ] {
        let (s, body) = status(&app, get("/api/admin/payouts", header)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    }

    // The dashboard signs the host's admin in through the same authenticator: no token to paste.
    let (s, page) = status(&app, get("/dashboard/admin/payouts", session("s-admin"))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("id=\"payouts\""), "{page}");
    let (s, page) = status(&app, get("/dashboard/admin/payouts", None)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("id=\"sign-in\"") && !page.contains("id=\"payouts\""),
        "{page}"
    );
    let (s, _) = status(&app, get("/dashboard/admin/payouts", session("s-doctor"))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
