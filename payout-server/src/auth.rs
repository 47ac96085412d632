//! Who is asking: an [`Authenticator`] turns a request into the engine's [`Actor`] (an admin, or a
//! doctor with their doctor id), and the [`User`], [`Admin`] and [`Doctor`] extractors ask the one in
//! [`AppState`].
//!
//! The built-in [`BearerJwt`] reads `Authorization: Bearer <JWT>` (or the dashboard's cookie) and
//! verifies it with `jsonwebtoken`: HS256 with a shared secret, RS256 or ES256 with the issuer's public
//! key; exactly one algorithm per key (no `none`, no algorithm confusion); `exp` required, `nbf`
//! honoured, `iss` and `aud` checked when configured, all within a small leeway (30 s by default).
//! Claims: `sub`, `role` (`admin` | `doctor`), `doctorId` (doctors), `exp` (and `nbf`, `iss`, `aud`).
//!
//! A host with its own login implements [`Authenticator`] over its session instead (see the README).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use payout_core::domain::Actor;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;

/// The cookie the dashboard keeps the token in.
pub const TOKEN_COOKIE: &str = "payouts_token";

/// The leeway [`BearerJwt`] allows on `exp` and `nbf` by default, for clocks a little apart.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Turns a request into the [`Actor`] it acts as.
///
/// # Behavior
///
/// Called once per request that needs a user, with the request's head (method, URI, headers,
/// extensions; never the body). Answer [`AuthError::Missing`] when the request carries no credentials
/// at all (the dashboard then shows its sign-in page), another [`AuthError`] when it carries bad ones
/// (401). The roles are the actor's: [`Actor::Admin`] may use the admin API and the dashboard,
/// [`Actor::Doctor`] the doctor API for their own payouts; any other actor is refused (403).
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Who `request` acts as.
    async fn authenticate(&self, request: &Parts) -> Result<Actor, AuthError>;
}

impl std::fmt::Debug for dyn Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Authenticator")
    }
}

/// A user's role, as the token's `role` claim says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An administrator.
    Admin,
    /// A doctor.
    Doctor,
}

/// The token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The role.
    pub role: Role,
    /// The doctor id (doctors only; a doctor's token without one acts as doctor `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

impl Claims {
    /// The actor these claims name.
    pub fn actor(&self) -> Actor {
        match (self.role, &self.doctor_id) {
            (Role::Doctor, Some(d)) => Actor::doctor(d.as_str()),
            (Role::Doctor, None) => Actor::doctor(self.sub.as_str()),
            (Role::Admin, _) => Actor::admin(self.sub.as_str()),
        }
    }
}

/// Why a request's credentials were refused. Messages never repeat the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials.
    #[error("missing bearer token")]
    Missing,
    /// Not a well-formed token, or signed with another algorithm than the key's.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("invalid token signature")]
    BadSignature,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// The token is not valid yet (`nbf`).
    #[error("token not valid yet")]
    NotYetValid,
    /// The token's `iss` is not the configured issuer.
    #[error("token from another issuer")]
    WrongIssuer,
    /// The token's `aud` does not name the configured audience.
    #[error("token for another audience")]
    WrongAudience,
    /// Credentials the host's authenticator refused (an unknown or ended session, say).
    #[error("invalid credentials")]
    Invalid,
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            _ => AuthError::Malformed,
        }
    }
}

/// Why a [`BearerJwt`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} public key (PEM expected): {source}")]
pub struct KeyError {
    what: &'static str,
    #[source]
    source: jsonwebtoken::errors::Error,
}

/// The built-in [`Authenticator`]: a JWT in `Authorization: Bearer …` or in the dashboard's cookie,
/// verified with `jsonwebtoken` for one algorithm and key. `Debug` never shows the key.
#[derive(Clone)]
pub struct BearerJwt {
    key: Arc<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for BearerJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerJwt")
            .field("algorithms", &self.validation.algorithms)
            .field("leeway", &self.validation.leeway)
            .field("iss", &self.validation.iss)
            .field("aud", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

impl BearerJwt {
    fn with_key(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = DEFAULT_LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        BearerJwt {
            key: Arc::new(key),
            validation,
        }
    }

    /// HS256 tokens signed with a shared `secret` (a NextAuth host's `NEXTAUTH_SECRET`, say, for the
    /// tokens it mints for us).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::with_key(DecodingKey::from_secret(secret.as_ref()), Algorithm::HS256)
    }

    /// RS256 tokens, verified with the issuer's RSA public key (PEM, PKCS#1 or SPKI).
    pub fn rs256_pem(public_key: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_rsa_pem(public_key).map_err(|source| KeyError { what: "RSA", source })?;
        Ok(Self::with_key(key, Algorithm::RS256))
    }

    /// ES256 tokens, verified with the issuer's P-256 public key (PEM, SPKI).
    pub fn es256_pem(public_key: &[u8]) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ec_pem(public_key).map_err(|source| KeyError { what: "EC", source })?;
        Ok(Self::with_key(key, Algorithm::ES256))
    }

    /// Requires `iss` to be `issuer`. Default: `iss` is not checked.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation.required_spec_claims.insert("iss".into());
        self
    }

    /// Requires `aud` to name `audience`. Default: `aud` is not checked.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self.validation.required_spec_claims.insert("aud".into());
        self
    }

    /// Seconds of clock difference allowed on `exp` and `nbf`. Default: [`DEFAULT_LEEWAY_SECS`].
    pub fn with_leeway(mut self, seconds: u64) -> Self {
        self.validation.leeway = seconds;
        self
    }

    /// Verifies `token` against the system clock and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation)?;
        Ok(data.claims)
    }
}

#[async_trait]
impl Authenticator for BearerJwt {
    async fn authenticate(&self, request: &Parts) -> Result<Actor, AuthError> {
        let token = token_from(request).ok_or(AuthError::Missing)?;
        Ok(self.verify(&token)?.actor())
    }
}

/// An HS256 signing key, for tests, examples and tools that mint tokens ([`BearerJwt::hs256`]
/// verifies them). `Debug` never shows it.
#[derive(Clone)]
pub struct JwtKey(Vec<u8>);

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey([REDACTED])")
    }
}

impl JwtKey {
    /// A key from the shared secret (`NEXTAUTH_SECRET`).
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        JwtKey(secret.as_ref().to_vec())
    }

    /// Signs `claims` as an HS256 JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        // HS256 signing of serialisable claims cannot fail.
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(&self.0),
        )
        .unwrap_or_default()
    }
}

/// The bearer token of a request: the `Authorization: Bearer` header, else the dashboard's cookie.
pub fn token_from(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_string());
        }
    }
    for cookies in parts.headers.get_all(http::header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else { continue };
        for c in cookies.split(';') {
            if let Some(v) = c.trim().strip_prefix(TOKEN_COOKIE).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Any authenticated user: the actor the state's [`Authenticator`] names.
#[derive(Debug, Clone)]
pub struct User(pub Actor);

impl User {
    /// The library actor for this user.
    pub fn actor(&self) -> Actor {
        self.0.clone()
    }

    /// True for an admin.
    pub fn is_admin(&self) -> bool {
        matches!(self.0, Actor::Admin { .. })
    }

    /// The authenticated user if they have `role` (401 without valid credentials, 403 for another role).
    async fn with_role(parts: &mut Parts, state: &AppState, role: Role) -> Result<Self, ApiError> {
        let user = User::from_request_parts(parts, state).await?;
        let (ok, name) = match role {
            Role::Admin => (user.is_admin(), "admin"),
            Role::Doctor => (matches!(user.0, Actor::Doctor { .. }), "doctor"),
        };
        if !ok {
            return Err(ApiError::Forbidden(format!("{name} role required")));
        }
        Ok(user)
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let actor = state
            .authenticator
            .authenticate(parts)
            .await
            .map_err(ApiError::Unauthorized)?;
        Ok(User(actor))
    }
}

/// An authenticated admin (403 for other roles).
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        User::with_role(parts, state, Role::Admin).await.map(Admin)
    }
}

/// An authenticated doctor (403 for other roles).
#[derive(Debug, Clone)]
pub struct Doctor(pub User);

impl FromRequestParts<AppState> for Doctor {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        User::with_role(parts, state, Role::Doctor).await.map(Doctor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            role: Role::Admin,
            doctor_id: None,
            exp,
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn hs256_round_trip_and_refusals() {
        let key = JwtKey::new("secret");
        let verifier = BearerJwt::hs256("secret");
        let good = claims(now() + 600);
        let t = key.sign(&good);
        assert_eq!(verifier.verify(&t).unwrap(), good);
        // Expired beyond the leeway; within it, still accepted.
        assert_eq!(
            verifier.verify(&key.sign(&claims(now() - 120))),
            Err(AuthError::Expired)
        );
        assert!(verifier.verify(&key.sign(&claims(now() - 5))).is_ok());
        assert_eq!(
            verifier.with_leeway(0).verify(&key.sign(&claims(now() - 5))),
            Err(AuthError::Expired)
        );
        assert_eq!(BearerJwt::hs256("other").verify(&t), Err(AuthError::BadSignature));
        let mut tampered: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"u1","role":"admin","exp":{}}}"#, now() + 9999));
        tampered[1] = &forged;
        assert_eq!(
            BearerJwt::hs256("secret").verify(&tampered.join(".")),
            Err(AuthError::BadSignature)
        );
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), tampered[1]);
        assert_eq!(BearerJwt::hs256("secret").verify(&none), Err(AuthError::Malformed));
        assert_eq!(BearerJwt::hs256("secret").verify("garbage"), Err(AuthError::Malformed));
        assert!(!format!("{key:?}").contains("secret"));
        assert!(!format!("{:?}", BearerJwt::hs256("secret")).contains("secret"));
    }

    #[test]
    fn a_claim_of_the_wrong_type_is_refused_not_skipped() {
        // CVE-2026-25537 (jsonwebtoken < 10.3): a string `nbf` was taken as absent.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"u1","role":"admin","nbf":"99999999999","exp":{}}}"#,
            now() + 600
        ));
        let input = format!("{header}.{payload}");
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(b"secret"), Algorithm::HS256)
            .unwrap();
        assert!(BearerJwt::hs256("secret").verify(&format!("{input}.{sig}")).is_err());
    }
}
