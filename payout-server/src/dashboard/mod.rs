//! `/dashboard/admin/payouts`: the server-rendered admin dashboard (no script, no build step).
//!
//! It can be nested under a prefix in a host app: [`DashboardConfig`] says where it and the API are
//! mounted, and every link, form action, redirect and the cookie's `Path` are built from that.
//!
//! Pages, each under one shared layout (navigation, who is signed in, sign out):
//! - **Payouts** (`/dashboard/admin/payouts`): the summary header (totals by status in count and
//!   amount per currency, and the attention count), the paid-per-month chart (inline SVG), the
//!   list with the API's filters, doctors' names beside their ids, paging (previous / next and page
//!   size, filters kept), per-row Approve / Trigger / Cancel / Retry, bulk actions and the CSV
//!   export link. A payout's page shows its items, attempts, audit trail and what needs an admin.
//! - **Attention** (`/dashboard/admin/attention`): the attention queue with its actions (resolve
//!   with evidence, confirm or reject a resolution, hold or release) and the failed payouts to
//!   retry, paged, and the doctors on hold with their Release forms.
//! - **Runs** (`/dashboard/admin/runs`): the runs, paged, each with its counts and amounts by
//!   status; a run's page shows its totals by status, provider and currency, its actions (Approve
//!   all, Trigger, Retry failed), the funds check on request, its results and events, and its
//!   payouts (all, held, failed, processing), each list paged or capped. A run is created from the
//!   payouts list's filters.
//!
//! A payout on hold shows its hold's reason wherever it is listed; its page has Hold / Release and
//! the doctor's Hold / Release forms.
//!
//! Doctors have pages of their own, under `/dashboard/doctor/payouts`: their history (paged), each
//! payout's lines and totals with links to its statement, the year's summaries and, with a premium
//! plan, their earnings analytics. A doctor signs in the same way (the host's authenticator, a
//! pasted doctor token, the demo's development login) and only ever sees their own payouts: the
//! doctor is the authenticated one, never an id from the request.
//!
//! Who is signed in is asked of the state's [`Authenticator`](crate::Authenticator) with the whole
//! request head (headers and extensions), so a host's own session works here as in the API. Without
//! one, an admin signs in by pasting a token (kept in an `HttpOnly`, `SameSite=Strict` cookie, so a
//! cross-site form cannot act with it; a post whose `Origin` is another host is refused too), or
//! through the links [`DashboardConfig::with_sign_in_link`] adds (the demo's development login).
//!
//! HTML is written with [`maud`]: templates are checked at compile time and every value is escaped
//! unless marked otherwise, so no page is built from hand-escaped strings.

mod attention;
pub(crate) mod chart;
pub(crate) mod components;
mod doctor;
mod holds;
pub(crate) mod layout;
pub(crate) mod paging;
mod payouts;
mod runs;
pub(crate) mod signin;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

/// The list page, relative to where the dashboard router is mounted.
const BASE: &str = "/dashboard/admin/payouts";
/// The attention queue's page, relative to where the dashboard router is mounted.
const ATTENTION: &str = "/dashboard/admin/attention";
/// The runs list, relative to where the dashboard router is mounted; a run's page is under it.
const RUNS: &str = "/dashboard/admin/runs";
/// Where a doctor's hold forms post, relative to where the dashboard router is mounted.
const DOCTORS: &str = "/dashboard/admin/doctors";
/// The signed-in doctor's own payouts, relative to where the dashboard router is mounted; a payout's
/// page is under it.
const DOCTOR: &str = "/dashboard/doctor/payouts";

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
/// assert_eq!(config.attention_path(), "/payouts/dashboard/admin/attention");
/// assert_eq!(config.cookie_path(), "/payouts");
/// // The API nested elsewhere:
/// let config = DashboardConfig::mounted_at("/payouts").with_api_at("/v1");
/// assert_eq!(config.export_path(), "/v1/api/admin/payouts/export");
/// assert_eq!(config.cookie_path(), "/");
/// // The host's own sign-in page, offered on the dashboard's:
/// let config = DashboardConfig::default().with_sign_in_link("Sign in with the clinic account", "/login");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardConfig {
    mount: String,
    api_mount: String,
    sign_in_links: Vec<(String, String)>,
}

impl DashboardConfig {
    /// The dashboard and the API both nested under `prefix` (`""` or `"/"`: at the root).
    pub fn mounted_at(prefix: &str) -> Self {
        let mount = normalise(prefix);
        DashboardConfig {
            api_mount: mount.clone(),
            mount,
            sign_in_links: Vec::new(),
        }
    }

    /// The API nested under `prefix` instead (the CSV export link points there, and the sign-in
    /// cookie is sent to both).
    pub fn with_api_at(mut self, prefix: &str) -> Self {
        self.api_mount = normalise(prefix);
        self
    }

    /// Offers another way to sign in on the sign-in page: a link labelled `label` to `href` (the
    /// host's own sign-in page, whose session its [`Authenticator`](crate::Authenticator) accepts;
    /// the demo's development login). Links are shown in the order added, above the paste-a-token
    /// form. `href` is used as given (escaped): a path on the host, or a full URL.
    pub fn with_sign_in_link(mut self, label: &str, href: &str) -> Self {
        self.sign_in_links.push((label.to_string(), href.to_string()));
        self
    }

    /// The public path of the list page.
    pub fn list_path(&self) -> String {
        format!("{}{BASE}", self.mount)
    }

    /// The public path of the attention queue's page.
    pub fn attention_path(&self) -> String {
        format!("{}{ATTENTION}", self.mount)
    }

    /// The public path of the runs list (a run's page is under it).
    pub fn runs_path(&self) -> String {
        format!("{}{RUNS}", self.mount)
    }

    /// The public path of the signed-in doctor's own payouts (a payout's page is under it).
    pub fn doctor_path(&self) -> String {
        format!("{}{DOCTOR}", self.mount)
    }

    /// The public path of the CSV export.
    pub fn export_path(&self) -> String {
        format!("{}/api/admin/payouts/export", self.api_mount)
    }

    /// The public path under which the dashboard's own routes (`/dashboard/...`) are, for routes a
    /// host or the demo adds beside them (the development login).
    pub fn dashboard_path(&self, rest: &str) -> String {
        format!("{}/dashboard{rest}", self.mount)
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
pub(crate) struct Paths {
    /// The list page; payout pages are under it.
    pub(crate) base: String,
    /// The attention queue's page.
    pub(crate) attention: String,
    /// The runs list; run pages are under it.
    pub(crate) runs: String,
    /// Where doctors' hold forms post (`{doctors}/{id}/hold`).
    pub(crate) doctors: String,
    pub(crate) login: String,
    pub(crate) logout: String,
    pub(crate) export: String,
    /// The signed-in doctor's own payouts; the doctor's payout pages are under it.
    pub(crate) doctor: String,
    /// Where the API is mounted (`""` at the root).
    pub(crate) api: String,
    pub(crate) cookie: String,
    /// Other ways to sign in: (label, href).
    pub(crate) sign_in_links: Vec<(String, String)>,
}

impl Paths {
    pub(crate) fn new(config: &DashboardConfig) -> Self {
        config.check();
        Paths {
            base: config.list_path(),
            attention: config.attention_path(),
            runs: config.runs_path(),
            doctors: format!("{}{DOCTORS}", config.mount),
            doctor: config.doctor_path(),
            login: config.dashboard_path("/login"),
            logout: config.dashboard_path("/logout"),
            export: config.export_path(),
            api: config.api_mount.clone(),
            cookie: config.cookie_path(),
            sign_in_links: config.sign_in_links.clone(),
        }
    }

    /// The page of payout `id` (escaped by the template that writes it; ids are percent-encoded).
    pub(crate) fn payout(&self, id: &str) -> String {
        format!("{}/{}", self.base, components::url_encode(id))
    }

    /// The page of run `id`.
    pub(crate) fn run(&self, id: &str) -> String {
        format!("{}/{}", self.runs, components::url_encode(id))
    }

    /// Where run `id`'s forms post.
    pub(crate) fn run_action(&self, id: &str) -> String {
        format!("{}/action", self.run(id))
    }

    /// Where doctor `id`'s hold forms post.
    pub(crate) fn doctor_hold(&self, id: &str) -> String {
        format!("{}/{}/hold", self.doctors, components::url_encode(id))
    }

    /// The signed-in doctor's page of their payout `id`.
    pub(crate) fn doctor_payout(&self, id: &str) -> String {
        format!("{}/{}", self.doctor, components::url_encode(id))
    }

    /// The API's statement of the signed-in doctor's payout `id` (`csv`: the CSV form).
    pub(crate) fn doctor_statement(&self, id: &str, csv: bool) -> String {
        let path = format!(
            "{}/api/doctor/payouts/{}/statement",
            self.api,
            components::url_encode(id)
        );
        if csv { format!("{path}?format=csv") } else { path }
    }

    /// The API's printable summary of the signed-in doctor's `year`.
    pub(crate) fn doctor_year(&self, year: i32) -> String {
        format!("{}/api/doctor/statements/{year}?format=html", self.api)
    }

    /// Where payout `id`'s forms post.
    pub(crate) fn payout_action(&self, id: &str) -> String {
        format!("{}/action", self.payout(id))
    }
}

/// What the dashboard's handlers share: the app's state and where they are mounted.
#[derive(Clone)]
pub(crate) struct Dashboard {
    pub(crate) app: AppState,
    pub(crate) paths: Arc<Paths>,
}

/// The dashboard's routes, with `config`'s public paths (see [`crate::dashboard_router`]).
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState, config: DashboardConfig) -> Router<S> {
    Router::new()
        .route(BASE, get(payouts::list))
        .route(ATTENTION, get(attention::page))
        .route("/dashboard/login", post(signin::login))
        .route("/dashboard/logout", post(signin::logout))
        .route("/dashboard/admin/payouts/bulk", post(payouts::bulk))
        .route("/dashboard/admin/payouts/{id}", get(payouts::detail))
        .route("/dashboard/admin/payouts/{id}/action", post(payouts::action))
        .route(RUNS, get(runs::list).post(runs::create))
        .route("/dashboard/admin/runs/{id}", get(runs::page))
        .route("/dashboard/admin/runs/{id}/action", post(runs::action))
        .route("/dashboard/admin/doctors/{id}/hold", post(holds::doctor))
        .route(DOCTOR, get(doctor::list))
        .route("/dashboard/doctor/payouts/{id}", get(doctor::detail))
        .with_state(Dashboard {
            app: state,
            paths: Arc::new(Paths::new(&config)),
        })
}
