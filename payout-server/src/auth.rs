//! `Authorization: Bearer <JWT>` auth: HS256 tokens signed with `NEXTAUTH_SECRET`, claims `sub`, `role`
//! (`admin` | `doctor`), `doctorId` (doctors), `exp`.
//!
//! Only HS256 is accepted (the header's `alg` must say so: no `none`, no algorithm confusion); the
//! signature is checked in constant time before the claims are read; an expired token is refused.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use payout_core::domain::Actor;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::AppState;
use crate::error::ApiError;

/// The cookie the dashboard keeps the token in.
pub const TOKEN_COOKIE: &str = "payouts_token";

/// The signing key. `Debug` never shows it.
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

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        }
    }

    /// Signs `claims` as an HS256 JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<Claims, AuthError> {
        let mut parts = token.trim().split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(AuthError::Malformed);
        };
        let header: Header = decode_json(h)?;
        if header.alg != "HS256" {
            return Err(AuthError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| AuthError::Malformed)?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| AuthError::BadSignature)?;
        let claims: Claims = decode_json(p)?;
        if claims.exp <= now_unix {
            return Err(AuthError::Expired);
        }
        Ok(claims)
    }
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// A user's role.
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
    /// The doctor id (doctors only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doctor_id: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token.
    #[error("missing bearer token")]
    Missing,
    /// Not a well-formed HS256 JWT.
    #[error("malformed token")]
    Malformed,
    /// The signature does not match.
    #[error("invalid token signature")]
    BadSignature,
    /// The token has expired.
    #[error("token expired")]
    Expired,
}

fn token_from(parts: &Parts) -> Option<String> {
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

/// Any authenticated user.
#[derive(Debug, Clone)]
pub struct User(pub Claims);

impl User {
    /// The library actor for this user.
    pub fn actor(&self) -> Actor {
        match (self.0.role, &self.0.doctor_id) {
            (Role::Doctor, Some(d)) => Actor::doctor(d.as_str()),
            (Role::Doctor, None) => Actor::doctor(self.0.sub.as_str()),
            (Role::Admin, _) => Actor::admin(self.0.sub.as_str()),
        }
    }

    /// The authenticated user if they have `role` (401 without a valid token, 403 for another role).
    async fn with_role(parts: &mut Parts, state: &AppState, role: Role) -> Result<Self, ApiError> {
        let user = User::from_request_parts(parts, state).await?;
        if user.0.role != role {
            let name = match role {
                Role::Admin => "admin",
                Role::Doctor => "doctor",
            };
            return Err(ApiError::Forbidden(format!("{name} role required")));
        }
        Ok(user)
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = token_from(parts).ok_or(ApiError::Unauthorized(AuthError::Missing))?;
        let claims = state
            .jwt
            .verify(&token, state.service.now().timestamp())
            .map_err(ApiError::Unauthorized)?;
        Ok(User(claims))
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

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            role: Role::Admin,
            doctor_id: None,
            exp,
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let key = JwtKey::new("secret");
        let t = key.sign(&claims(1000));
        assert_eq!(key.verify(&t, 999).unwrap(), claims(1000));
        assert_eq!(key.verify(&t, 1000), Err(AuthError::Expired));
        assert_eq!(JwtKey::new("other").verify(&t, 0), Err(AuthError::BadSignature));
        let mut tampered: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"u1","role":"admin","exp":99999999999}"#);
        tampered[1] = &forged;
        assert_eq!(key.verify(&tampered.join("."), 0), Err(AuthError::BadSignature));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), tampered[1]);
        assert_eq!(key.verify(&none, 0), Err(AuthError::Malformed));
        assert_eq!(key.verify("garbage", 0), Err(AuthError::Malformed));
        assert!(!format!("{key:?}").contains("secret"));
    }
}
