//! Who is signed in to the dashboard, and signing in and out.
//!
//! Every page asks the state's [`Authenticator`](crate::Authenticator) with the request's whole
//! head ([`SignedIn`]), exactly as the API does: a host whose authenticator reads its own session
//! (a cookie, a header, an extension its middleware set) signs its admins in here with nothing
//! more. Without credentials the page is the sign-in page: the links
//! [`DashboardConfig::with_sign_in_link`](super::DashboardConfig::with_sign_in_link) adds, and a
//! form to paste a token, which the authenticator checks as a bearer token and which is then kept
//! in an `HttpOnly`, `SameSite=Strict` cookie.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use payout_core::domain::Actor;

use super::components::{error, flash_redirect};
use super::layout::{Viewer, bare};
use super::{Dashboard, Paths};
use crate::api::form_pairs;
use crate::auth::{AuthError, TOKEN_COOKIE};

/// The signed-in admin of a dashboard request. Extracting it asks the state's authenticator; the
/// rejection is the page to show instead: the sign-in page (no or bad credentials) or a 403 page
/// (credentials of someone who is not an admin).
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    /// The admin.
    pub(crate) actor: Actor,
    /// How the layout names them.
    pub(crate) viewer: Viewer,
}

impl FromRequestParts<Dashboard> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, d: &Dashboard) -> Result<Self, Response> {
        let paths = &*d.paths;
        let by_cookie = has_token_cookie(&parts.headers);
        match d.app.authenticator.authenticate(parts).await {
            Ok(actor @ Actor::Admin { .. }) => Ok(SignedIn {
                viewer: Viewer {
                    label: actor.label(),
                    by_cookie,
                },
                actor,
            }),
            Ok(_) => Err(forbidden(paths, "Admins only.", by_cookie)),
            Err(AuthError::Missing) => Err(login_page(paths, None)),
            Err(e) => Err(login_page(paths, Some(&e.to_string()))),
        }
    }
}

/// The signed-in doctor of a page of the doctor's own (`/dashboard/doctor/...`). Extracting it
/// asks the state's authenticator, as [`SignedIn`] does; the rejection is the sign-in page (no or
/// bad credentials) or a 403 page (an admin, who has the admin pages). The doctor is always the
/// authenticated one: these pages show nobody else's payouts.
#[derive(Debug, Clone)]
pub(crate) struct SignedInDoctor {
    /// The doctor.
    pub(crate) actor: Actor,
    /// How the layout names them.
    pub(crate) viewer: Viewer,
}

impl FromRequestParts<Dashboard> for SignedInDoctor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, d: &Dashboard) -> Result<Self, Response> {
        let paths = &*d.paths;
        let by_cookie = has_token_cookie(&parts.headers);
        match d.app.authenticator.authenticate(parts).await {
            Ok(actor @ Actor::Doctor { .. }) => Ok(SignedInDoctor {
                viewer: Viewer {
                    label: actor.label(),
                    by_cookie,
                },
                actor,
            }),
            Ok(_) => Err(forbidden(
                paths,
                "These pages show a doctor their own payouts; admins use the admin pages.",
                by_cookie,
            )),
            Err(AuthError::Missing) => Err(login_page(paths, None)),
            Err(e) => Err(login_page(paths, Some(&e.to_string()))),
        }
    }
}

/// True when the request carries the dashboard's own token cookie.
fn has_token_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim().starts_with(&format!("{TOKEN_COOKIE}=")))
}

/// A 403 page saying `why` (with Sign out when the dashboard's cookie signed them in).
pub(crate) fn forbidden(paths: &Paths, why: &str, by_cookie: bool) -> Response {
    bare(
        paths,
        StatusCode::FORBIDDEN,
        "Forbidden",
        html! {
            (error(why))
            @if by_cookie {
                form method="post" action=(paths.logout) { button id="sign-out" { "Sign out" } }
            }
        },
    )
}

/// The sign-in page, with `message` (why the last attempt failed) if any.
pub(crate) fn login_page(paths: &Paths, message: Option<&str>) -> Response {
    bare(
        paths,
        StatusCode::OK,
        "Sign in",
        html! {
            @if let Some(m) = message { (error(m)) }
            h2 { "Sign in" }
            @if !paths.sign_in_links.is_empty() {
                ul id="sign-in-links" {
                    @for (label, href) in &paths.sign_in_links { li { a href=(href) { (label) } } }
                }
                p { "Or paste a token:" }
            } @else {
                p { "Paste an admin or a doctor token (" code { "cargo run --example mint_token -- --role admin" } ")." }
            }
            form method="post" action=(paths.login) {
                label for="token" { "Token" }
                textarea name="token" id="token" rows="4" cols="80" required {}
                p { button type="submit" id="sign-in" { "Sign in" } }
            }
        },
    )
}

/// Refuses a form post whose `Origin` names another host (defence in depth beside `SameSite=Strict`).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.split("://").nth(1).is_some_and(|o| o == host)
}

/// The answer to a cross-site post.
pub(crate) fn cross_site(paths: &Paths) -> Response {
    bare(
        paths,
        StatusCode::FORBIDDEN,
        "Forbidden",
        error("Cross-site request refused."),
    )
}

/// The redirect that signs `token` in: the cookie, and the list page.
pub(crate) fn sign_in_with(paths: &Paths, token: &str) -> Response {
    sign_in_to(paths, token, &paths.base)
}

/// The redirect that signs `token` in: the cookie, and the page at `to`.
pub(crate) fn sign_in_to(paths: &Paths, token: &str, to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, to.to_string()),
            (
                SET_COOKIE,
                format!(
                    "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path={}",
                    paths.cookie
                ),
            ),
        ],
    )
        .into_response()
}

/// `POST /dashboard/login`: a pasted token, checked by the state's authenticator as the API would
/// check it (a bearer token, in this request's head), kept in the cookie if it is an admin's (then
/// the admin pages open) or a doctor's (then the doctor's own payouts open).
pub(crate) async fn login(State(d): State<Dashboard>, parts: Parts, body: Bytes) -> Response {
    let paths = &*d.paths;
    if !same_origin(&parts.headers) {
        return cross_site(paths);
    }
    let pairs = form_pairs(std::str::from_utf8(&body).unwrap_or("")).unwrap_or_default();
    let token = pairs
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    // The pasted token goes into a cookie: only the characters a JWT is made of.
    let cookie_safe = |c: char| c.is_ascii_alphanumeric() || "-_.~+/=".contains(c);
    if token.is_empty() || !token.chars().all(cookie_safe) {
        return login_page(paths, Some(&AuthError::Malformed.to_string()));
    }
    let mut asked = parts;
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(value) => {
            asked.headers.insert(AUTHORIZATION, value);
        }
        Err(_) => return login_page(paths, Some(&AuthError::Malformed.to_string())),
    }
    match d.app.authenticator.authenticate(&asked).await {
        Ok(Actor::Admin { .. }) => sign_in_with(paths, &token),
        Ok(Actor::Doctor { .. }) => sign_in_to(paths, &token, &paths.doctor),
        Ok(_) => login_page(paths, Some("that token is neither an admin's nor a doctor's")),
        Err(e) => login_page(paths, Some(&e.to_string())),
    }
}

/// `POST /dashboard/logout`: clears the cookie (a host's own session is the host's to end).
pub(crate) async fn logout(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
    let paths = &*d.paths;
    if !same_origin(&headers) {
        return cross_site(paths);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (LOCATION, paths.base.clone()),
            (
                SET_COOKIE,
                format!(
                    "{TOKEN_COOKIE}=; HttpOnly; SameSite=Strict; Path={}; Max-Age=0",
                    paths.cookie
                ),
            ),
        ],
    )
        .into_response()
}

/// The fields of a signed-in admin's form post, once it has passed the checks every dashboard
/// action needs (same origin, within the rate limit); else the answer to send instead.
// The error is the response itself, returned at once by the handler (`?`): boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn admin_form(
    d: &Dashboard,
    user: &SignedIn,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, Response> {
    let paths = &*d.paths;
    if !same_origin(headers) {
        return Err(cross_site(paths));
    }
    if !d
        .app
        .mutation_limiter
        .allow(&format!("dashboard:{}", user.actor.label()))
    {
        return Err(flash_redirect(false, "too many actions; slow down", &paths.base));
    }
    Ok(form_pairs(std::str::from_utf8(body).unwrap_or("")).unwrap_or_default())
}
