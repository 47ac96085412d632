//! The demo's development login: a form on the dashboard that signs in as one of a few admin ids,
//! or as a doctor by id (to see the doctor's own pages), by minting a short-lived token with the
//! public development secret ([`DEV_SECRET`]), so trying the demo needs no token pasted.
//!
//! It exists only where the demo runs with that secret, which the demo allows only on loopback and
//! with every provider simulated ([`check_development_secret`]): [`DevLogin::for_demo`] refuses
//! it wherever the secret is refused, and offers nothing when `NEXTAUTH_SECRET` is set. A host never
//! gets it from the library routers; the demo's app adds it ([`app_with_dev_login`](super::app_with_dev_login)).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use maud::html;
use payout_core::Result;
use payout_core::domain::Provider;

use super::{DEV_SECRET, check_development_secret};
use crate::api::form_pairs;
use crate::auth::{Claims, JwtKey, Role};
use crate::dashboard::components::error;
use crate::dashboard::layout::bare;
use crate::dashboard::signin::{cross_site, same_origin, sign_in_to, sign_in_with};
use crate::dashboard::{DashboardConfig, Paths};

/// The admin ids the development login offers: two, so four eyes (a second admin confirms) can be
/// tried too.
pub const DEV_ADMINS: [&str; 2] = ["dev-admin-1", "dev-admin-2"];

/// How long a development login's token lasts.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(30 * 60);

/// The label of the sign-in page's link to it.
pub const LINK_LABEL: &str = "Development login (demo only)";

/// The development login, where the demo may offer it. `Debug` never shows its key.
#[derive(Clone)]
pub struct DevLogin {
    key: JwtKey,
}

impl std::fmt::Debug for DevLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevLogin")
            .field("admins", &DEV_ADMINS)
            .field("ttl", &DEV_TOKEN_TTL)
            .finish_non_exhaustive()
    }
}

impl DevLogin {
    /// The development login of a demo with token secret `secret` listening on `addr` with
    /// `real_providers` configured: `Some` when the secret is the public [`DEV_SECRET`] (its tokens
    /// are what the demo's authenticator accepts), `None` for a secret of the host's own; an error
    /// wherever [`check_development_secret`] refuses the development secret (beyond loopback, or
    /// with a real provider).
    pub fn for_demo(secret: &str, addr: SocketAddr, real_providers: &[Provider]) -> Result<Option<DevLogin>> {
        check_development_secret(secret, addr, real_providers)?;
        Ok((secret == DEV_SECRET).then(|| DevLogin {
            key: JwtKey::new(DEV_SECRET),
        }))
    }

    /// A token for admin `id`, valid for [`DEV_TOKEN_TTL`].
    fn token(&self, id: &str) -> String {
        self.sign(id, Role::Admin, None)
    }

    /// A token for doctor `id`, valid for [`DEV_TOKEN_TTL`].
    fn doctor_token(&self, id: &str) -> String {
        self.sign(&format!("dev-user-{id}"), Role::Doctor, Some(id))
    }

    fn sign(&self, sub: &str, role: Role, doctor_id: Option<&str>) -> String {
        let ttl = i64::try_from(DEV_TOKEN_TTL.as_secs()).unwrap_or(i64::MAX);
        self.key.sign(&Claims {
            sub: sub.to_string(),
            role,
            doctor_id: doctor_id.map(String::from),
            exp: chrono::Utc::now().timestamp().saturating_add(ttl),
        })
    }
}

/// True for a doctor id the development login signs in as: 1 to 64 letters, digits, `-`, `_` or
/// `.` (the ids the demo's sample data and the tests use).
fn is_dev_doctor_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Its path, under the dashboard of `config`.
pub fn path(config: &DashboardConfig) -> String {
    config.dashboard_path("/dev-login")
}

#[derive(Clone)]
struct Login {
    dev: DevLogin,
    paths: Arc<Paths>,
    action: String,
}

/// `GET` (the form) and `POST` (sign in) at [`path`], for the dashboard of `config`.
pub fn routes<S: Clone + Send + Sync + 'static>(dev: DevLogin, config: &DashboardConfig) -> Router<S> {
    let login = Login {
        dev,
        paths: Arc::new(Paths::new(config)),
        action: path(config),
    };
    Router::new()
        .route("/dashboard/dev-login", get(form).post(sign_in))
        .with_state(login)
}

fn page(login: &Login, status: StatusCode, message: Option<&str>) -> Response {
    bare(
        &login.paths,
        status,
        "Development login",
        html! {
            @if let Some(m) = message { (error(m)) }
            h2 { "Development login" }
            p { "The demo runs with the public development secret, on loopback, with simulated providers only: \
                 pick an admin to sign in as for " (DEV_TOKEN_TTL.as_secs() / 60) " minutes." }
            form method="post" action=(login.action) id="dev-login" {
                label for="dev-admin" { "Admin " }
                select name="admin" id="dev-admin" {
                    @for id in DEV_ADMINS { option value=(id) { (id) } }
                }
                " "
                button type="submit" id="dev-sign-in" { "Sign in" }
            }
            p { "Or sign in as a doctor, to see the pages a doctor sees of their own payouts:" }
            form method="post" action=(login.action) id="dev-doctor-login" {
                label for="dev-doctor" { "Doctor id " }
                input type="text" name="doctor" id="dev-doctor" required maxlength="64";
                " "
                button type="submit" id="dev-doctor-sign-in" { "Sign in as this doctor" }
            }
        },
    )
}

async fn form(State(login): State<Login>) -> Response {
    page(&login, StatusCode::OK, None)
}

async fn sign_in(State(login): State<Login>, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&headers) {
        return cross_site(&login.paths);
    }
    let pairs = form_pairs(std::str::from_utf8(&body).unwrap_or("")).unwrap_or_default();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    if let Some(doctor) = field("doctor") {
        return match Some(doctor).filter(|id| is_dev_doctor_id(id)) {
            Some(id) => sign_in_to(&login.paths, &login.dev.doctor_token(id), &login.paths.doctor),
            None => page(
                &login,
                StatusCode::BAD_REQUEST,
                Some("a doctor id is 1 to 64 letters, digits, '-', '_' or '.'"),
            ),
        };
    }
    match field("admin").filter(|id| DEV_ADMINS.contains(id)) {
        Some(id) => sign_in_with(&login.paths, &login.dev.token(id)),
        None => page(&login, StatusCode::BAD_REQUEST, Some("choose one of the listed admins")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_offered_only_where_the_development_secret_is_allowed() {
        let local: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let everyone: SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert!(DevLogin::for_demo(DEV_SECRET, local, &[]).unwrap().is_some());
        assert!(DevLogin::for_demo(DEV_SECRET, everyone, &[]).is_err());
        assert!(DevLogin::for_demo(DEV_SECRET, local, &[Provider::StripeConnect]).is_err());
        // A secret of the host's own: no development login, anywhere.
        assert!(DevLogin::for_demo("a-real-secret", local, &[]).unwrap().is_none());
        assert!(
            DevLogin::for_demo("a-real-secret", everyone, &[Provider::BankTransfer])
                .unwrap()
                .is_none()
        );
        let dev = DevLogin::for_demo(DEV_SECRET, local, &[]).unwrap().unwrap();
        assert!(!format!("{dev:?}").contains(DEV_SECRET));
        // Its tokens are the demo authenticator's admins, for a short while.
        let claims = crate::BearerJwt::hs256(DEV_SECRET)
            .verify(&dev.token("dev-admin-2"))
            .unwrap();
        assert_eq!(claims.actor(), payout_core::domain::Actor::admin("dev-admin-2"));
        let doctor = crate::BearerJwt::hs256(DEV_SECRET)
            .verify(&dev.doctor_token("dr-a"))
            .unwrap();
        assert_eq!(doctor.actor(), payout_core::domain::Actor::doctor("dr-a"));
        assert!(is_dev_doctor_id("dr-a.1_x") && !is_dev_doctor_id("") && !is_dev_doctor_id("a b"));
        assert!(!is_dev_doctor_id(&"d".repeat(65)));
        let ttl = claims.exp - chrono::Utc::now().timestamp();
        assert!((0..=30 * 60).contains(&ttl), "{ttl}");
    }
}
