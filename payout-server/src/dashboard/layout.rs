//! The frame every dashboard page shares: the document, its security headers, the navigation, who
//! is signed in and the Sign out button.
//!
//! A page is a [`Section`] of the navigation (or none, for the sign-in and error pages) and a body
//! of [`Markup`]; [`page`] wraps it. Adding a section (the runs list, say) is one variant of
//! [`Section`] with its label and path: the navigation lists [`Section::ALL`].

use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Paths;

/// What every dashboard page is sent with: no scripts at all, inline styles only, forms post to this origin
/// only, never framed (clickjacking), never cached, no referrer to other sites
/// (ids in URLs; `no-referrer` would make the browser send `Origin: null` on our own posts) and no MIME sniffing.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A part of the dashboard with its own entry in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// The payouts list (with the summary and the chart) and each payout's page.
    Payouts,
    /// The attention queue.
    Attention,
    /// The runs list and each run's page.
    Runs,
}

impl Section {
    /// The navigation, in order.
    pub(crate) const ALL: [Section; 3] = [Section::Payouts, Section::Attention, Section::Runs];

    fn label(self) -> &'static str {
        match self {
            Section::Payouts => "Payouts",
            Section::Attention => "Attention",
            Section::Runs => "Runs",
        }
    }

    fn path(self, paths: &Paths) -> &str {
        match self {
            Section::Payouts => &paths.base,
            Section::Attention => &paths.attention,
            Section::Runs => &paths.runs,
        }
    }

    /// The element id of its navigation link (`nav-payouts`, ...).
    fn id(self) -> &'static str {
        match self {
            Section::Payouts => "nav-payouts",
            Section::Attention => "nav-attention",
            Section::Runs => "nav-runs",
        }
    }
}

/// Who the page is for: the signed-in admin's label, and whether the dashboard's own cookie signed
/// them in (then Sign out is offered; a host's session is ended by the host).
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub(crate) label: String,
    pub(crate) by_cookie: bool,
}

/// A page of `section` for `viewer`, with `body` in its `<main>`.
pub(crate) fn page(paths: &Paths, viewer: &Viewer, section: Section, title: &str, body: Markup) -> Response {
    let header = html! {
        nav aria-label="Dashboard" {
            ul {
                @for s in Section::ALL {
                    li {
                        @if s == section {
                            a id=(s.id()) href=(s.path(paths)) aria-current="page" { (s.label()) }
                        } @else {
                            a id=(s.id()) href=(s.path(paths)) { (s.label()) }
                        }
                    }
                }
            }
        }
        div.who {
            span id="signed-in-as" { (viewer.label) }
            @if viewer.by_cookie {
                form method="post" action=(paths.logout) { button id="sign-out" { "Sign out" } }
            }
        }
    };
    document(paths, title, header, body)
}

/// A page of the signed-in doctor's own (no admin navigation: one link, to their payouts), with
/// `body` in its `<main>`.
pub(crate) fn doctor_page(paths: &Paths, viewer: &Viewer, title: &str, body: Markup) -> Response {
    let header = html! {
        nav aria-label="Doctor" {
            ul { li { a id="nav-my-payouts" href=(paths.doctor) { "My payouts" } } }
        }
        div.who {
            span id="signed-in-as" { (viewer.label) }
            @if viewer.by_cookie {
                form method="post" action=(paths.logout) { button id="sign-out" { "Sign out" } }
            }
        }
    };
    document_home(&paths.doctor, title, header, body)
}

/// A page outside the navigation (sign-in, errors), with `status`.
pub(crate) fn bare(paths: &Paths, status: StatusCode, title: &str, body: Markup) -> Response {
    (status, document(paths, title, html! {}, body)).into_response()
}

/// The whole document, sent with the headers every page has ([`CSP`] and the rest).
pub(crate) fn document(paths: &Paths, title: &str, header: Markup, body: Markup) -> Response {
    document_home(&paths.base, title, header, body)
}

/// [`document`] whose title links to `home`.
fn document_home(home: &str, title: &str, header: Markup, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " \u{2014} Doctor payouts" }
                meta name="viewport" content="width=device-width, initial-scale=1";
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { a href=(home) { "Doctor payouts" } }
                    (header)
                }
                main { (body) }
            }
        }
    };
    (
        [
            (CONTENT_SECURITY_POLICY, CSP),
            (X_FRAME_OPTIONS, "DENY"),
            (CACHE_CONTROL, "no-store"),
            (REFERRER_POLICY, "same-origin"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(markup.into_string()),
    )
        .into_response()
}

/// The style sheet, inline (the CSP allows inline styles only). A constant of this crate: no input
/// reaches it.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 2rem 2rem;color:#222}\
header{display:flex;gap:2rem;align-items:center;border-bottom:1px solid #ddd;margin-bottom:1rem}\
header h1{margin-right:auto}\
h1{font-size:1.5rem}h1 a{color:inherit;text-decoration:none}h2{font-size:1.25rem}\
h3{font-size:1.05rem;margin:1.5rem 0 .25rem}\
nav ul{display:flex;gap:1.25rem;list-style:none;margin:0;padding:0}nav a{text-decoration:none;color:#245}\
nav a[aria-current]{font-weight:700;border-bottom:2px solid #245}\
.who{display:flex;gap:.75rem;align-items:center;color:#555;font-size:.9rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;\
text-align:left;font-size:.9rem;vertical-align:middle}th{background:#f6f6f6}td.amount,th.amount{text-align:right;\
font-variant-numeric:tabular-nums;white-space:nowrap}td.id,code,.doctor-id{font-family:ui-monospace,monospace;font-size:.8rem}\
.doctor-id{color:#666;display:block}\
.status{font-weight:600}.flash{padding:.5rem 1rem;background:#eef6ee;border:1px solid #9c9}\
.error{background:#fbeaea;border-color:#d99}fieldset{border:1px solid #ccc;margin:.5rem 0}.sim{color:#a40}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.5rem;margin:.5rem 0}dt{font-weight:600;color:#555}\
dd{margin:0}td.id,.nowrap,#audit td:first-child{white-space:nowrap}td.ref{overflow-wrap:anywhere}\
textarea{width:100%;max-width:48rem;font-family:ui-monospace,monospace}label[for=token]{display:block}\
#summary{display:flex;flex-wrap:wrap;gap:.75rem;margin:.5rem 0 1rem;padding:0;list-style:none}\
#summary li{border:1px solid #ddd;border-radius:.4rem;padding:.5rem .75rem;min-width:9rem}\
#summary a{color:inherit;text-decoration:none}#summary .label{font-weight:600;color:#555;font-size:.8rem}\
#summary .count{font-size:1.4rem;font-weight:700;display:block}\
#summary .sum{display:block;font-variant-numeric:tabular-nums;font-size:.85rem}\
#summary li.attention{border-color:#d99;background:#fdf4f4}\
.pager{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;margin:.5rem 0}\
figure.chart{margin:1rem 0}figure.chart svg{width:100%;max-width:60rem;height:auto}\
figure.chart table{max-width:40rem}.chart-bar{fill:#4a7bb7}.chart-axis{stroke:#333}.chart-grid{stroke:#ddd}\
.chart-text{font:11px system-ui,sans-serif;fill:#222}.chart-value{font:10px system-ui,sans-serif;fill:#222}\
form.inline{display:inline}td form{margin:.15rem 0}\
.hold{color:#8a4b00;font-weight:600}tr.shortfall td{background:#fbeaea;font-weight:600}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DashboardConfig;

    #[tokio::test]
    async fn the_navigation_marks_the_current_section_and_escapes_the_viewer() {
        let paths = Paths::new(&DashboardConfig::mounted_at("/p"));
        let viewer = Viewer {
            label: "admin:<b>".into(),
            by_cookie: false,
        };
        let response = page(&paths, &viewer, Section::Attention, "T", html! { p { "x" } });
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains(r#"<a id="nav-attention" href="/p/dashboard/admin/attention" aria-current="page">"#),
            "{body}"
        );
        assert!(
            body.contains(r#"<a id="nav-payouts" href="/p/dashboard/admin/payouts">"#),
            "{body}"
        );
        assert!(body.contains("admin:&lt;b&gt;"), "{body}");
        assert!(!body.contains("sign-out"), "a host's session has no Sign out here");
    }
}
