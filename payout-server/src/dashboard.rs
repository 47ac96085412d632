//! `/dashboard/admin/payouts`: the server-rendered admin dashboard (no JavaScript build step).
//!
//! It can be nested under a prefix in a host app: [`DashboardConfig`] says where it and the API are
//! mounted, and every link, form action, redirect and the cookie's `Path` are built from that.
//!
//! Sign in by pasting an admin token (kept in an `HttpOnly`, `SameSite=Strict` cookie, so a cross-site form
//! cannot act with it; a request whose `Origin` is another host is refused too). The list has the API's
//! filters, per-row Approve / Trigger (with a provider picker) / Cancel, bulk actions over checked rows and a
//! CSV export link; the detail view shows items, attempts and the audit trail.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use payout_core::domain::{Actor, PayoutId, Provider, ResolutionOutcome, ResolutionState};
use payout_core::service::ResolveRequest;
use payout_core::status::PayoutStatus;
use payout_core::store::Page;

use crate::AppState;
use crate::api::{ListQuery, form_pairs};
use crate::auth::{AuthError, TOKEN_COOKIE, User};
use crate::error::ApiError;

/// The list page, relative to where the dashboard router is mounted.
const BASE: &str = "/dashboard/admin/payouts";

/// Where a host mounts the dashboard router and the API router, so the dashboard's pages point at
/// the right places: `Router::nest` strips the prefix before the handlers see the request, so the
/// dashboard cannot learn it from the request.
///
/// The default is both at the root (`/dashboard/admin/payouts`, `/api/admin/payouts/export`).
///
/// ```
/// use payout_server::DashboardConfig;
/// // `host.nest("/payouts", dashboard_router(state, config))`, the API nested there too:
/// let config = DashboardConfig::mounted_at("/payouts");
/// assert_eq!(config.list_path(), "/payouts/dashboard/admin/payouts");
/// assert_eq!(config.cookie_path(), "/payouts");
/// // The API nested elsewhere:
/// let config = DashboardConfig::mounted_at("/payouts").with_api_at("/v1");
/// assert_eq!(config.export_path(), "/v1/api/admin/payouts/export");
/// assert_eq!(config.cookie_path(), "/");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardConfig {
    mount: String,
    api_mount: String,
}

impl DashboardConfig {
    /// The dashboard and the API both nested under `prefix` (`""` or `"/"`: at the root).
    pub fn mounted_at(prefix: &str) -> Self {
        let mount = normalise(prefix);
        DashboardConfig {
            api_mount: mount.clone(),
            mount,
        }
    }

    /// The API nested under `prefix` instead (the CSV export link points there, and the sign-in
    /// cookie is sent to both).
    pub fn with_api_at(mut self, prefix: &str) -> Self {
        self.api_mount = normalise(prefix);
        self
    }

    /// The public path of the list page.
    pub fn list_path(&self) -> String {
        format!("{}{BASE}", self.mount)
    }

    /// The public path of the CSV export.
    pub fn export_path(&self) -> String {
        format!("{}/api/admin/payouts/export", self.api_mount)
    }

    /// The sign-in cookie's `Path`: the longest path both the dashboard and the API (which reads the
    /// cookie for the export link) are under.
    pub fn cookie_path(&self) -> String {
        let dashboard = format!("{}/dashboard", self.mount);
        let api = format!("{}/api", self.api_mount);
        let common: Vec<&str> = dashboard
            .split('/')
            .zip(api.split('/'))
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect();
        let path = common.join("/");
        if path.is_empty() { "/".to_string() } else { path }
    }

    fn check(&self) {
        for prefix in [&self.mount, &self.api_mount] {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
            assert!(
                prefix.chars().all(allowed),
                "dashboard mount prefix {prefix:?}: only unreserved URL characters and '/' are allowed"
            );
        }
    }
}

/// `"payouts/"` → `"/payouts"`, `"/"` → `""`.
fn normalise(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() || trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

/// The public paths of the dashboard's pages, worked out once from its [`DashboardConfig`].
#[derive(Debug)]
struct Paths {
    /// The list page; payout pages are under it.
    base: String,
    login: String,
    logout: String,
    export: String,
    /// The API's list, for the attention queue's hint.
    api_list: String,
    cookie: String,
}

/// What the dashboard's handlers share: the app's state and where they are mounted.
#[derive(Clone)]
struct Dashboard {
    app: AppState,
    paths: Arc<Paths>,
}

/// The dashboard's routes, with `config`'s public paths (see [`crate::dashboard_router`]).
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState, config: DashboardConfig) -> Router<S> {
    config.check();
    let paths = Paths {
        base: config.list_path(),
        login: format!("{}/dashboard/login", config.mount),
        logout: format!("{}/dashboard/logout", config.mount),
        export: config.export_path(),
        api_list: format!("{}/api/admin/payouts", config.api_mount),
        cookie: config.cookie_path(),
    };
    Router::new()
        .route(BASE, get(list))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/admin/payouts/bulk", post(bulk))
        .route("/dashboard/admin/payouts/{id}", get(detail))
        .route("/dashboard/admin/payouts/{id}/action", post(action))
        .with_state(Dashboard {
            app: state,
            paths: Arc::new(paths),
        })
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What every dashboard page is sent with: no scripts at all, inline styles only, forms post to this origin
/// only, never framed (clickjacking), never cached, no referrer to other sites
/// (ids in URLs; `no-referrer` would make the browser send `Origin: null` on our own posts) and no MIME sniffing.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A page for a signed-in user (with the Sign out button).
fn page(paths: &Paths, title: &str, body: &str) -> Response {
    document(paths, title, body, true)
}

fn document(paths: &Paths, title: &str, body: &str, signed_in: bool) -> Response {
    let sign_out = if signed_in {
        format!(
            "<form method=\"post\" action=\"{}\"><button id=\"sign-out\">Sign out</button></form>",
            paths.logout
        )
    } else {
        String::new()
    };
    let base = &paths.base;
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} \u{2014} Doctor payouts</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
         <body><header><h1><a href=\"{base}\">Doctor payouts</a></h1>{sign_out}</header><main>{body}</main></body></html>",
        esc(title)
    );
    (
        [
            (CONTENT_SECURITY_POLICY, CSP),
            (X_FRAME_OPTIONS, "DENY"),
            (CACHE_CONTROL, "no-store"),
            (REFERRER_POLICY, "same-origin"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(html),
    )
        .into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 2rem 2rem;color:#222}\
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #ddd;margin-bottom:1rem}\
h1{font-size:1.5rem}h1 a{color:inherit;text-decoration:none}h2{font-size:1.25rem}\
h3{font-size:1.05rem;margin:1.5rem 0 .25rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;\
text-align:left;font-size:.9rem;vertical-align:middle}th{background:#f6f6f6}td.amount{text-align:right;\
font-variant-numeric:tabular-nums;white-space:nowrap}td.id,code{font-family:ui-monospace,monospace;font-size:.8rem}\
.status{font-weight:600}.flash{padding:.5rem 1rem;background:#eef6ee;border:1px solid #9c9}\
.error{background:#fbeaea;border-color:#d99}fieldset{border:1px solid #ccc;margin:.5rem 0}.sim{color:#a40}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.5rem;margin:.5rem 0}dt{font-weight:600;color:#555}\
dd{margin:0}td.id,.nowrap,#audit td:first-child{white-space:nowrap}td.ref{overflow-wrap:anywhere}\
textarea{width:100%;max-width:48rem;font-family:ui-monospace,monospace}";

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

fn flash_redirect(ok: bool, msg: &str, back: &str) -> Response {
    let sep = if back.contains('?') { '&' } else { '?' };
    redirect(&format!(
        "{back}{sep}{}={}",
        if ok { "msg" } else { "err" },
        url_encode(msg)
    ))
}

fn login_page(paths: &Paths, message: Option<&str>) -> Response {
    let note = message
        .map(|m| format!("<p class=\"flash error\">{}</p>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "{note}<h2>Sign in</h2><p>Paste an admin token (<code>cargo run --example mint_token -- --role admin</code>).</p>\
         <form method=\"post\" action=\"{login}\"><textarea name=\"token\" id=\"token\" rows=\"4\" cols=\"80\" required></textarea>\
         <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>",
        login = paths.login
    );
    (StatusCode::OK, document(paths, "Sign in", &body, false)).into_response()
}

/// The signed-in admin, or the page to show instead.
async fn admin_or_login(d: &Dashboard, headers: &HeaderMap) -> Result<User, Response> {
    let (state, paths) = (&d.app, &*d.paths);
    let mut parts = axum::http::Request::new(()).into_parts().0;
    parts.headers = headers.clone();
    match <User as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, state).await {
        Ok(u) if u.is_admin() => Ok(u),
        Ok(_) => Err((
            StatusCode::FORBIDDEN,
            page(paths, "Forbidden", "<p class=\"flash error\">Admins only.</p>"),
        )
            .into_response()),
        Err(ApiError::Unauthorized(AuthError::Missing)) => Err(login_page(paths, None)),
        Err(e) => Err(login_page(paths, Some(&e.message()))),
    }
}

/// Refuses a form post whose `Origin` names another host (defence in depth beside `SameSite=Strict`).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.split("://").nth(1).is_some_and(|o| o == host)
}

fn cross_site(paths: &Paths) -> Response {
    (
        StatusCode::FORBIDDEN,
        page(
            paths,
            "Forbidden",
            "<p class=\"flash error\">Cross-site request refused.</p>",
        ),
    )
        .into_response()
}

async fn login(State(d): State<Dashboard>, headers: HeaderMap, body: Bytes) -> Response {
    let (state, paths) = (&d.app, &*d.paths);
    if !same_origin(&headers) {
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
    // Asked as the API would be asked: the state's authenticator, with the token as a bearer token.
    let mut parts = axum::http::Request::new(()).into_parts().0;
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        parts.headers.insert(AUTHORIZATION, value);
    }
    match state.authenticator.authenticate(&parts).await {
        Ok(Actor::Admin { .. }) => (
            StatusCode::SEE_OTHER,
            [
                (LOCATION, paths.base.clone()),
                (
                    SET_COOKIE,
                    format!(
                        "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path={}",
                        paths.cookie
                    ),
                ),
            ],
        )
            .into_response(),
        Ok(_) => login_page(paths, Some("that token is not an admin's")),
        Err(e) => login_page(paths, Some(&e.to_string())),
    }
}

async fn logout(State(d): State<Dashboard>, headers: HeaderMap) -> Response {
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

fn provider_select(name: &str, id: &str) -> String {
    let mut s = format!("<select name=\"{name}\" id=\"{id}\">");
    for p in Provider::ALL {
        let _ = write!(s, "<option value=\"{p}\">{p}</option>");
    }
    s.push_str("</select>");
    s
}

fn flash(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in query {
        match k.as_str() {
            "msg" => {
                let _ = write!(out, "<p class=\"flash\" id=\"flash\">{}</p>", esc(v));
            }
            "err" => {
                let _ = write!(out, "<p class=\"flash error\" id=\"flash\">{}</p>", esc(v));
            }
            _ => {}
        }
    }
    out
}

/// The `<option>`s of a list filter: "any", then every value, `current` selected.
fn filter_options(values: impl IntoIterator<Item = &'static str>, current: Option<String>) -> String {
    let mut out = String::from("<option value=\"\">any</option>");
    for v in values {
        let sel = if current.as_deref() == Some(v) { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{v}</option>");
    }
    out
}

async fn list(State(d): State<Dashboard>, headers: HeaderMap, RawQuery(raw): RawQuery) -> Result<Response, Response> {
    let user = admin_or_login(&d, &headers).await?;
    let (state, paths) = (&d.app, &*d.paths);
    let base = &paths.base;
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let mut body = flash(&pairs);
    let (filter, skip) = match ListQuery::from_pairs(&pairs).and_then(|q| Ok((q.filter()?, q.skip.unwrap_or(0)))) {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(body, "<p class=\"flash error\">{}</p>", esc(&e.message()));
            Default::default()
        }
    };
    let result = state.service.list(&user.actor(), &filter, &Page::new(100, skip)).await;
    let page_rows = result.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            page(paths, "Error", &esc(&e.to_string())),
        )
            .into_response()
    })?;
    body.push_str(&attention_section(state, &user, paths).await);
    // Filters.
    let keep = |k: &str| esc(&get(k).unwrap_or_default());
    let status_opts = filter_options(PayoutStatus::ALL.map(|s| s.as_str()), get("status"));
    let provider_opts = filter_options(Provider::ALL.map(|p| p.as_str()), get("provider"));
    let _ = write!(
        body,
        "<form method=\"get\" action=\"{base}\" id=\"filters\"><fieldset><legend>Filters</legend>\
         Status <select name=\"status\" id=\"f-status\">{status_opts}</select> \
         Doctor <input name=\"doctor\" value=\"{}\" size=\"12\"> Provider <select name=\"provider\">{provider_opts}</select> \
         Created from <input type=\"date\" name=\"startDate\" value=\"{}\"> to <input type=\"date\" name=\"endDate\" value=\"{}\"> \
         <button type=\"submit\">Filter</button></fieldset></form>",
        keep("doctor"),
        keep("startDate"),
        keep("endDate"),
    );
    let export_query: Vec<String> = ["status", "doctor", "provider", "startDate", "endDate"]
        .iter()
        .filter_map(|k| get(k).map(|v| format!("{k}={}", url_encode(&v))))
        .collect();
    let _ = write!(
        body,
        "<p>{} payouts. <a id=\"export\" href=\"{}?{}\">Export CSV</a></p>",
        page_rows.total,
        paths.export,
        esc(&export_query.join("&"))
    );
    // Bulk form wraps the table; row actions are separate small forms referenced with `form=`.
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{base}/bulk\" id=\"bulk\"><fieldset><legend>Bulk action on checked rows</legend>\
         <select name=\"action\" id=\"bulk-action\"><option value=\"approve\">Approve</option><option value=\"trigger\">Trigger</option>\
         <option value=\"cancel\">Cancel</option></select> with {} <button type=\"submit\" id=\"bulk-submit\">Apply</button></fieldset>\
         <table id=\"payouts\"><thead><tr><th></th><th>Payout</th><th>Doctor</th><th>Period</th><th>Amount</th><th>Status</th>\
         <th>Provider</th><th>Reference</th><th>Actions</th></tr></thead><tbody>",
        provider_select("provider", "bulk-provider")
    );
    let mut row_forms = String::new();
    for p in &page_rows.payouts {
        let id = esc(p.id.as_str());
        let mut actions = String::new();
        if p.status == PayoutStatus::Pending {
            let _ = write!(
                actions,
                "<button form=\"f-approve-{id}\" id=\"approve-{id}\">Approve</button> "
            );
            let _ = write!(
                row_forms,
                "<form method=\"post\" action=\"{base}/{id}/action\" id=\"f-approve-{id}\"><input type=\"hidden\" name=\"action\" value=\"approve\"></form>"
            );
        }
        if p.status == PayoutStatus::Approved {
            let _ = write!(
                actions,
                "<select name=\"provider\" form=\"f-trigger-{id}\" id=\"provider-{id}\">{}</select> <button form=\"f-trigger-{id}\" id=\"trigger-{id}\">Trigger</button> ",
                Provider::ALL
                    .iter()
                    .map(|v| format!("<option value=\"{v}\">{v}</option>"))
                    .collect::<String>()
            );
            let _ = write!(
                row_forms,
                "<form method=\"post\" action=\"{base}/{id}/action\" id=\"f-trigger-{id}\"><input type=\"hidden\" name=\"action\" value=\"trigger\"></form>"
            );
        }
        if matches!(p.status, PayoutStatus::Pending | PayoutStatus::Approved) {
            let _ = write!(
                actions,
                "<button form=\"f-cancel-{id}\" id=\"cancel-{id}\">Cancel</button>"
            );
            let _ = write!(
                row_forms,
                "<form method=\"post\" action=\"{base}/{id}/action\" id=\"f-cancel-{id}\"><input type=\"hidden\" name=\"action\" value=\"cancel\"></form>"
            );
        }
        let _ = write!(
            body,
            "<tr id=\"row-{id}\"><td><input type=\"checkbox\" name=\"ids\" value=\"{id}\" id=\"check-{id}\"></td>\
             <td class=\"id\"><a href=\"{base}/{id}\">{id}</a></td><td>{doctor}</td><td class=\"nowrap\">{period}</td><td class=\"amount\">{amount}</td>\
             <td class=\"status\" id=\"status-{id}\">{status}</td><td>{provider}</td><td class=\"ref\">{reference}</td><td class=\"nowrap\">{actions}</td></tr>",
            doctor = esc(p.doctor_id.as_str()),
            period = esc(&p.period().to_string()),
            amount = esc(&p.amount_due.to_string()),
            status = p.status,
            provider = p.provider.map(|v| v.to_string()).unwrap_or_default(),
            reference = esc(p.provider_reference.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table></form>");
    body.push_str(&row_forms);
    if page_rows.total > skip + 100 {
        let mut next = export_query.clone();
        next.push(format!("skip={}", skip + 100));
        let _ = write!(
            body,
            "<p><a id=\"next\" href=\"{base}?{}\">Next page</a></p>",
            esc(&next.join("&"))
        );
    }
    Ok(page(paths, "Payouts", &body))
}

async fn detail(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let user = admin_or_login(&d, &headers).await?;
    let (state, paths) = (&d.app, &*d.paths);
    let base = &paths.base;
    let actor = user.actor();
    let id = PayoutId::new(id);
    let s = &state.service;
    let (p, items, attempts, audit) = match (
        s.get(&actor, &id).await,
        s.items(&actor, &id).await,
        s.attempts(&actor, &id).await,
        s.audit_trail(&actor, &id).await,
    ) {
        (Ok(p), Ok(i), Ok(a), Ok(t)) => (p, i, a, t),
        _ => {
            return Err((
                StatusCode::NOT_FOUND,
                page(paths, "Not found", "<p class=\"flash error\">No such payout.</p>"),
            )
                .into_response());
        }
    };
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let mut body = flash(&pairs);
    let sim = if p
        .notes
        .as_deref()
        .is_some_and(|n| n.contains(payout_core::simulated::SIMULATED_NOTE))
    {
        " <span class=\"sim\">(simulated: no money moved)</span>"
    } else {
        ""
    };
    let _ = write!(
        body,
        "<p><a href=\"{base}\" id=\"back\">\u{2190} All payouts</a></p><h2>Payout {}</h2><dl><dt>Doctor</dt><dd>{}</dd><dt>Period</dt><dd>{}</dd><dt>Amount</dt><dd>{}</dd>\
         <dt>Status</dt><dd class=\"status\" id=\"status\">{}</dd><dt>Provider</dt><dd>{}{sim}</dd><dt>Reference</dt><dd>{}</dd>\
         <dt>Notes</dt><dd>{}</dd><dt>Created by</dt><dd>{}</dd><dt>Approved by</dt><dd id=\"approvers\">{}</dd></dl>",
        esc(p.id.as_str()),
        esc(p.doctor_id.as_str()),
        esc(&p.period().to_string()),
        esc(&p.amount_due.to_string()),
        p.status,
        p.provider.map(|v| v.to_string()).unwrap_or_default(),
        esc(p.provider_reference.as_deref().unwrap_or("")),
        esc(p.notes.as_deref().unwrap_or("")),
        esc(&p.created_by),
        esc(&p
            .approval
            .as_ref()
            .map(|a| a.approvers.join(", "))
            .or_else(|| p.approved_by.clone())
            .unwrap_or_default()),
    );
    body.push_str(&operator_section(s, &p, base).await);
    body.push_str(
        "<h3>Items</h3><table id=\"items\"><tr><th>Kind</th><th>Reference</th><th>Amount</th><th>Description</th></tr>",
    );
    for i in &items {
        let _ = write!(
            body,
            "<tr><td>{:?}</td><td>{}</td><td class=\"amount\">{}</td><td>{}</td></tr>",
            i.kind,
            esc(&i.reference),
            esc(&i.amount.to_string()),
            esc(&i.description)
        );
    }
    body.push_str("</table><h3>Attempts</h3><table><tr><th>#</th><th>Provider</th><th>Idempotency key</th><th>Outcome</th><th>Reference</th></tr>");
    for a in &attempts {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            a.attempt_no,
            a.provider,
            esc(&a.idempotency_key),
            a.outcome.as_str(),
            esc(a.provider_reference.as_deref().unwrap_or(""))
        );
    }
    body.push_str("</table><h3>Audit trail</h3><table id=\"audit\"><tr><th>When</th><th>Who</th><th>Action</th><th>From</th><th>To</th><th>Detail</th></tr>");
    for e in &audit {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.at.format("%Y-%m-%d %H:%M:%S"),
            esc(&e.actor),
            esc(&e.action),
            e.from.map(|s| s.to_string()).unwrap_or_default(),
            e.to.map(|s| s.to_string()).unwrap_or_default(),
            esc(&e.detail)
        );
    }
    body.push_str("</table>");
    Ok(page(paths, "Payout", &body))
}

/// What an admin must know before acting on the payout, with the forms to act: the doctor's payout
/// details changed since approval (re-approve), a second approval awaited, an unknown outcome to
/// resolve, a resolution waiting for a second admin.
async fn operator_section(
    s: &payout_core::service::PayoutService,
    p: &payout_core::domain::Payout,
    base: &str,
) -> String {
    let id = esc(p.id.as_str());
    let form = |action: &str, label: &str, extra: &str| {
        format!(
            "<form method=\"post\" action=\"{base}/{id}/action\" class=\"inline\"><input type=\"hidden\" name=\"action\" value=\"{action}\">{extra}<button id=\"{action}\">{label}</button></form>"
        )
    };
    let mut out = String::new();
    if p.status == PayoutStatus::Approved && s.approval_predates_details_check(p) {
        let _ = write!(
            out,
            "<p class=\"flash error\" id=\"details-changed\">This payout was approved before approvals recorded the doctor's payout details: it will not be triggered until an admin re-approves it for the current details.</p>{}",
            form("reapprove", "Re-approve for the current details", "")
        );
    } else if p.status == PayoutStatus::Approved {
        match s.details_changed_since_approval(p).await {
            Ok(true) => {
                let _ = write!(
                    out,
                    "<p class=\"flash error\" id=\"details-changed\">The doctor's payout details changed since this payout was approved: it will not be triggered until an admin re-approves it for the new details.</p>{}",
                    form("reapprove", "Re-approve for the new details", "")
                );
            }
            Ok(false) => {}
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"flash error\">Could not compare the payout details with the approved ones: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
        if s.awaits_second_approval(p) {
            let _ = write!(
                out,
                "<p class=\"flash\" id=\"second-approval\">Above the policy's amount: a second admin must approve it before it is triggered.</p>{}",
                form("approve", "Approve (second approval)", "")
            );
        }
    }
    if let Some(r) = &p.resolution {
        let state = match &r.state {
            ResolutionState::Pending => "waits for a second admin".to_string(),
            ResolutionState::Confirmed { by, .. } => format!("confirmed by {by}"),
            ResolutionState::Rejected { by, .. } => format!("rejected by {by}"),
        };
        let _ = write!(
            out,
            "<p class=\"flash\" id=\"resolution\">Resolution of attempt {}: {} asked by {} ({}); reference {}; note: {}; provider: {}</p>",
            r.attempt_no,
            r.outcome.as_str(),
            esc(&r.requested_by),
            esc(&state),
            esc(r.provider_reference.as_deref().unwrap_or("(none)")),
            esc(&r.note),
            esc(&r.provider_answer)
        );
    }
    if p.status == PayoutStatus::Processing {
        if p.resolution.as_ref().is_some_and(|r| r.is_pending()) {
            out.push_str(&form("confirm_resolution", "Confirm resolution", ""));
            out.push_str(&form("reject_resolution", "Reject resolution", ""));
        } else {
            out.push_str(&form(
                "resolve",
                "Resolve with evidence",
                "<select name=\"outcome\" id=\"resolve-outcome\"><option value=\"PAID\">PAID</option><option value=\"FAILED\">FAILED</option></select> \
                 <input name=\"provider_reference\" id=\"resolve-reference\" placeholder=\"provider reference\"> \
                 <input name=\"note\" id=\"resolve-note\" placeholder=\"evidence (required)\" required> ",
            ));
        }
    }
    if out.is_empty() {
        out
    } else {
        format!("<section id=\"operator\"><h3>Needs an admin</h3>{out}</section>")
    }
}

async fn action(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (user, pairs) = admin_form(&d, &headers, &body).await?;
    let (state, base) = (&d.app, d.paths.base.as_str());
    let actor = user.actor();
    let id = PayoutId::new(id);
    let s = &state.service;
    let form = form_action(&pairs).map_err(|why| flash_redirect(false, why, base))?;
    // The operator's actions go back to the payout, whose page says what still needs doing (a
    // re-approval, a confirmation); the others to the list, as always.
    let back = match form {
        FormAction::Approve | FormAction::Cancel | FormAction::Trigger(_) => base.to_string(),
        _ => format!("{base}/{}", url_encode(id.as_str())),
    };
    let result = match form {
        FormAction::Approve => s.approve(&actor, &id).await.map(|p| format!("{} approved", p.id)),
        FormAction::Cancel => s
            .cancel(&actor, &id, Some("cancelled from the dashboard"))
            .await
            .map(|p| format!("{} cancelled", p.id)),
        FormAction::Trigger(provider) => s
            .trigger(&actor, &id, provider)
            .await
            .map(|p| format!("{} triggered with {provider}: {}", p.id, p.status)),
        FormAction::Reapprove => s.reapprove(&actor, &id).await.map(|p| format!("{} re-approved", p.id)),
        FormAction::Resolve(request) => s
            .resolve(&actor, &id, request)
            .await
            .map(|p| format!("{} resolution recorded: {}", p.id, p.status)),
        FormAction::ConfirmResolution => s
            .confirm_resolution(&actor, &id)
            .await
            .map(|p| format!("{} resolution confirmed: {}", p.id, p.status)),
        FormAction::RejectResolution => s
            .reject_resolution(&actor, &id, Some("rejected from the dashboard"))
            .await
            .map(|p| format!("{} resolution rejected", p.id)),
    };
    Ok(match result {
        Ok(msg) => flash_redirect(true, &msg, &back),
        Err(e) => flash_redirect(false, &e.to_string(), &back),
    })
}

async fn bulk(State(d): State<Dashboard>, headers: HeaderMap, body: Bytes) -> Result<Response, Response> {
    let (user, pairs) = admin_form(&d, &headers, &body).await?;
    let (state, base) = (&d.app, d.paths.base.as_str());
    let ids: Vec<PayoutId> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| PayoutId::new(v.as_str()))
        .collect();
    if ids.is_empty() {
        return Err(flash_redirect(false, "check at least one payout", base));
    }
    if ids.len() > state.config.max_bulk {
        let msg = format!(
            "at most {} payouts at once, {} checked",
            state.config.max_bulk,
            ids.len()
        );
        return Err(flash_redirect(false, &msg, base));
    }
    let actor = user.actor();
    let s = &state.service;
    let outcomes = match form_action(&pairs).map_err(|why| flash_redirect(false, why, base))? {
        FormAction::Approve => s.bulk_approve(&actor, &ids).await,
        FormAction::Reapprove => s.bulk_reapprove(&actor, &ids).await,
        FormAction::Cancel => s.bulk_cancel(&actor, &ids, Some("cancelled from the dashboard")).await,
        FormAction::Trigger(provider) => s.bulk_trigger(&actor, &ids, provider).await,
        FormAction::Resolve(_) | FormAction::ConfirmResolution | FormAction::RejectResolution => {
            return Err(flash_redirect(false, "resolutions are made one payout at a time", base));
        }
    };
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.id)))
        .collect();
    let msg = if failed.is_empty() {
        format!("{ok} done")
    } else {
        format!("{ok} done; {} failed: {}", failed.len(), failed.join("; "))
    };
    Ok(flash_redirect(failed.is_empty(), &msg, base))
}

/// The signed-in admin and the fields of a form post, once it has passed the checks every dashboard
/// action needs (same origin, within the rate limit); else the answer to send instead.
async fn admin_form(
    d: &Dashboard,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(User, Vec<(String, String)>), Response> {
    let user = admin_or_login(d, headers).await?;
    let (state, paths) = (&d.app, &*d.paths);
    if !same_origin(headers) {
        return Err(cross_site(paths));
    }
    if !state.mutation_limiter.allow(&format!("dashboard:{}", user.0.label())) {
        return Err(flash_redirect(false, "too many actions; slow down", &paths.base));
    }
    let pairs = form_pairs(std::str::from_utf8(body).unwrap_or("")).unwrap_or_default();
    Ok((user, pairs))
}

/// What a row or bulk form asks for.
enum FormAction {
    Approve,
    Reapprove,
    Cancel,
    Trigger(Provider),
    Resolve(ResolveRequest),
    ConfirmResolution,
    RejectResolution,
}

/// The form's `action` (with its `provider` for a trigger), or what to tell the admin instead.
fn form_action(pairs: &[(String, String)]) -> Result<FormAction, &'static str> {
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match field("action") {
        Some("approve") => Ok(FormAction::Approve),
        Some("reapprove") => Ok(FormAction::Reapprove),
        Some("confirm_resolution") => Ok(FormAction::ConfirmResolution),
        Some("reject_resolution") => Ok(FormAction::RejectResolution),
        Some("resolve") => {
            let outcome = match field("outcome") {
                Some("PAID") => ResolutionOutcome::Paid,
                Some("FAILED") => ResolutionOutcome::Failed,
                _ => return Err("choose the outcome: PAID or FAILED"),
            };
            Ok(FormAction::Resolve(ResolveRequest {
                outcome,
                provider_reference: field("provider_reference").map(String::from),
                note: field("note").unwrap_or_default().to_string(),
            }))
        }
        Some("cancel") => Ok(FormAction::Cancel),
        Some("trigger") => field("provider")
            .and_then(|p| p.parse().ok())
            .map(FormAction::Trigger)
            .ok_or("choose a provider"),
        _ => Err("unknown action"),
    }
}

/// The attention queue's section of the list page: the payouts a person should look at (oldest
/// flag first, the first 20) with why, and how many there are in all.
async fn attention_section(state: &AppState, user: &crate::auth::User, paths: &Paths) -> String {
    let base = &paths.base;
    const SHOWN: u32 = 20;
    let queue = match state.service.attention(&user.actor(), &Page::new(SHOWN, 0)).await {
        Ok(q) => q,
        Err(e) => {
            return format!(
                "<section id=\"attention\"><h2>Needs attention</h2><p class=\"flash error\">{}</p></section>",
                esc(&e.to_string())
            );
        }
    };
    let mut out = format!(
        "<section id=\"attention\"><h2>Needs attention (<span id=\"attention-count\">{}</span>)</h2>",
        queue.total
    );
    if queue.flagged.is_empty() {
        out.push_str("<p>Nothing needs a person.</p></section>");
        return out;
    }
    out.push_str(
        "<table id=\"attention-list\"><thead><tr><th>Payout</th><th>Doctor</th><th>Status</th><th>Why</th>\
         <th>Since</th></tr></thead><tbody>",
    );
    for f in &queue.flagged {
        let id = esc(f.payout.id.as_str());
        let _ = write!(
            out,
            "<tr id=\"attention-{id}\"><td class=\"id\"><a href=\"{base}/{id}\">{id}</a></td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"nowrap\">{}</td></tr>",
            esc(f.payout.doctor_id.as_str()),
            f.payout.status,
            esc(&f.reason),
            f.since.format("%Y-%m-%d %H:%M UTC"),
        );
    }
    out.push_str("</tbody></table>");
    if queue.total > u64::from(SHOWN) {
        let _ = write!(
            out,
            "<p>{} more: <code>GET {}?attention=true</code></p>",
            queue.total - u64::from(SHOWN),
            paths.api_list
        );
    }
    out.push_str("</section>");
    out
}
