//! Pieces the dashboard's pages are built from: money as people read it, a status, a doctor with
//! their name, flash messages, the forms a payout's actions post, and the summary header.
//! Each returns [`Markup`] (escaped by [`maud`]) or plain text for a template to escape.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use payout_core::domain::{DoctorId, Provider};
use payout_core::money::Money;
use payout_core::status::PayoutStatus;
use payout_core::store::StatusTally;

use super::Paths;
use crate::api::form_pairs;

/// `s` percent-encoded for a URL's path segment or query value (unreserved characters kept).
pub(crate) fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Everything but the unreserved characters of RFC 3986.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A query string of `pairs`, each percent-encoded (`a=1&b=x%20y`); empty for none.
pub(crate) fn query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `path` with `pairs` as its query (`path` alone when there are none).
pub(crate) fn with_query(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query(pairs))
    }
}

/// An amount as people read it: thousands grouped, the currency's decimals, the code after it
/// (`1,234,567.50 KES`, `-12.00 USD`, `15,000 JPY`). Exact: the decimal text of the amount, never
/// a float.
pub(crate) fn money(m: &Money) -> String {
    format!("{} {}", amount_text(m), m.currency().code())
}

/// The number of [`money`] without its currency code (`1,234,567.50`), where the code is said
/// once nearby (a chart's axis).
pub(crate) fn amount_text(m: &Money) -> String {
    let text = m.amount().to_string();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A doctor: their name from the directory, with the id under it; the id alone when the directory
/// does not know them.
pub(crate) fn doctor(id: &DoctorId, names: &HashMap<DoctorId, String>) -> Markup {
    html! {
        @match names.get(id) {
            Some(name) => { span.doctor-name { (name) } span.doctor-id { (id.as_str()) } }
            None => { span.doctor-id { (id.as_str()) } }
        }
    }
}

/// The flash messages a redirect carries (`msg`, `err` in the query).
pub(crate) fn flash(query: &[(String, String)]) -> Markup {
    html! {
        @for (k, v) in query {
            @if k == "msg" { p.flash id="flash" { (v) } }
            @else if k == "err" { p.flash.error id="flash" { (v) } }
        }
    }
}

/// A `303 See Other` to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_string())]).into_response()
}

/// A redirect to `back` carrying `msg` (`ok`) or `err` for its page's [`flash`].
pub(crate) fn flash_redirect(ok: bool, msg: &str, back: &str) -> Response {
    let sep = if back.contains('?') { '&' } else { '?' };
    redirect(&format!(
        "{back}{sep}{}={}",
        if ok { "msg" } else { "err" },
        url_encode(msg)
    ))
}

/// What a person is told about an engine error: its message, except that a store, source or I/O
/// failure says only that nothing was changed (its detail goes to the log, not to the page).
pub(crate) fn error_message(e: payout_core::Error) -> String {
    use payout_core::Error;
    if matches!(e, Error::Store(_) | Error::Source(_) | Error::Io(_)) {
        tracing::warn!(error = %e, "dashboard: the engine could not answer");
    }
    crate::ApiError::from(e).message()
}

/// A payout's active hold, said where the payout is shown: its scope and reason (escaped); nothing
/// when it is not on hold.
pub(crate) fn hold_note(p: &payout_core::domain::Payout) -> Markup {
    html! {
        @if let Some(h) = p.active_hold() {
            span.hold id=(format!("hold-{}", p.id.as_str())) title=(format!("placed by {}", h.placed_by)) {
                "On hold (" (h.scope.as_str()) "): " (h.reason)
            }
        }
    }
}

/// An error message shown in a page.
pub(crate) fn error(message: &str) -> Markup {
    html! { p.flash.error { (message) } }
}

/// A `<select>` of every provider, `selected` chosen.
pub(crate) fn provider_select(name: &str, id: &str, form: Option<&str>, selected: Option<Provider>) -> Markup {
    html! {
        select name=(name) id=(id) form=[form] aria-label="Provider" {
            @for p in Provider::ALL {
                option value=(p.as_str()) selected[selected == Some(p)] { (p.as_str()) }
            }
        }
    }
}

/// A form posting `action` for payout `id` (with `fields` before its button, labelled `label`,
/// id'd `button_id`) to the payout's action route; the answer redirects to `back`.
pub(crate) fn action_form(
    paths: &Paths,
    id: &str,
    action: &str,
    fields: Markup,
    label: &str,
    button_id: &str,
    back: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(paths.payout_action(id)) {
            input type="hidden" name="action" value=(action);
            input type="hidden" name="back" value=(back);
            (fields)
            button id=(button_id) { (label) }
        }
    }
}

/// Where a form's answer should lead, if it names one of the dashboard's own pages: the list or
/// the attention queue or the runs list (with their query, less any old flash), or a payout's
/// or a run's page. Anything else
/// (another site, another path) is `None`, and the caller's default applies: never an open
/// redirect.
pub(crate) fn back_to(paths: &Paths, back: Option<&str>) -> Option<String> {
    let back = back?.trim();
    if back.len() > 2000 || back.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let (path, q) = back.split_once('?').unwrap_or((back, ""));
    let one_below = |base: &str| {
        path.strip_prefix(&format!("{base}/"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
    };
    let ours = path == paths.base
        || path == paths.attention
        || path == paths.runs
        || one_below(&paths.base)
        || one_below(&paths.runs);
    if !ours {
        return None;
    }
    let kept: Vec<(String, String)> = form_pairs(q)
        .ok()?
        .into_iter()
        .filter(|(k, _)| k != "msg" && k != "err")
        .collect();
    Some(with_query(path, &kept))
}

/// One status in the summary header: how many payouts, and their amounts per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusSummary {
    pub(crate) status: PayoutStatus,
    pub(crate) count: u64,
    /// One per currency, by currency code (amounts are never converted).
    pub(crate) amounts: Vec<Money>,
}

/// The store's tallies per status, provider and currency, added up per status and currency (in
/// [`PayoutStatus::ALL`]'s order). A sum that overflows is left as the tallies' error says.
pub(crate) fn by_status(tallies: &[StatusTally]) -> Result<Vec<StatusSummary>, payout_core::money::MoneyError> {
    let mut out: Vec<StatusSummary> = Vec::new();
    for status in PayoutStatus::ALL {
        let mut count = 0;
        let mut amounts: Vec<Money> = Vec::new();
        for t in tallies.iter().filter(|t| t.status == status) {
            count += t.count;
            match amounts.iter_mut().find(|m| m.currency() == t.currency) {
                Some(m) => *m = m.checked_add(&t.amount)?,
                None => amounts.push(t.amount),
            }
        }
        if count > 0 {
            amounts.sort_by(|a, b| a.currency().code().cmp(b.currency().code()));
            out.push(StatusSummary { status, count, amounts });
        }
    }
    Ok(out)
}

/// The summary header: per status its count and amounts (each a link to the list of that status),
/// then the attention count (a link to the queue).
pub(crate) fn summary(paths: &Paths, statuses: &[StatusSummary], attention: u64) -> Markup {
    html! {
        section aria-labelledby="summary-title" {
            h2 id="summary-title" { "Summary" }
            ul id="summary" {
                @for s in statuses {
                    li id=(format!("total-{}", s.status.as_str())) {
                        a href=(with_query(&paths.base, &[("status".into(), s.status.as_str().into())])) {
                            span.label { (s.status.as_str()) }
                            span.count id=(format!("count-{}", s.status.as_str())) { (s.count) }
                            @for m in &s.amounts {
                                span.sum id=(format!("amount-{}-{}", s.status.as_str(), m.currency().code())) { (money(m)) }
                            }
                        }
                    }
                }
                li.attention {
                    a href=(paths.attention) {
                        span.label { "Needs attention" }
                        span.count id="attention-count" { (attention) }
                    }
                }
            }
            @if statuses.is_empty() { p { "No payouts yet." } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DashboardConfig;
    use payout_core::money::Currency;

    #[test]
    fn money_is_grouped_exact_and_keeps_its_currency() {
        let m = |s: &str, c| money(&Money::parse(s, c).unwrap());
        assert_eq!(m("1234567.5", Currency::KES), "1,234,567.50 KES");
        assert_eq!(m("999.99", Currency::USD), "999.99 USD");
        assert_eq!(m("1000", Currency::USD), "1,000.00 USD");
        assert_eq!(m("-12", Currency::USD), "-12.00 USD");
        assert_eq!(m("-1234", Currency::USD), "-1,234.00 USD");
        assert_eq!(m("15000", Currency::JPY), "15,000 JPY");
        assert_eq!(m("0", Currency::KES), "0.00 KES");
        assert_eq!(
            m("92233720368547758.07", Currency::KES),
            "92,233,720,368,547,758.07 KES"
        );
    }

    #[test]
    fn back_leads_only_to_the_dashboards_own_pages() {
        let paths = Paths::new(&DashboardConfig::mounted_at("/p"));
        let back = |s: &str| back_to(&paths, Some(s));
        assert_eq!(
            back("/p/dashboard/admin/payouts?status=PAID&skip=50&msg=old"),
            Some("/p/dashboard/admin/payouts?status=PAID&skip=50".into())
        );
        assert_eq!(
            back("/p/dashboard/admin/attention?err=x"),
            Some("/p/dashboard/admin/attention".into())
        );
        assert_eq!(
            back("/p/dashboard/admin/payouts/po_1"),
            Some("/p/dashboard/admin/payouts/po_1".into())
        );
        for bad in [
            "https://evil.example/p/dashboard/admin/payouts",
            "//evil.example/p/dashboard/admin/payouts",
            "/p/dashboard/admin/payoutsX",
            "/p/dashboard/admin/payouts/a/b",
            "/p/dashboard/admin/payouts/",
            "/dashboard/admin/payouts",
            "/p/dashboard/admin/payouts\r\nSet-Cookie: x=1",
            "/p/dashboard/admin/payouts?\\",
        ] {
            assert_eq!(back(bad), None, "{bad}");
        }
        assert_eq!(back_to(&paths, None), None);
    }

    #[test]
    fn statuses_add_up_over_providers_per_currency() {
        let t = |status, provider, currency, count, minor| StatusTally {
            status,
            provider,
            currency,
            count,
            amount: Money::from_minor_units(minor, currency),
        };
        let tallies = vec![
            t(PayoutStatus::Pending, None, Currency::USD, 1, 100),
            t(PayoutStatus::Pending, None, Currency::KES, 2, 5000),
            t(PayoutStatus::Paid, Some(Provider::MpesaB2c), Currency::KES, 1, 250),
            t(PayoutStatus::Paid, Some(Provider::StripeConnect), Currency::KES, 3, 750),
        ];
        let got = by_status(&tallies).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].status, got[0].count), (PayoutStatus::Pending, 3));
        let amounts: Vec<String> = got[0].amounts.iter().map(money).collect();
        assert_eq!(amounts, ["50.00 KES", "1.00 USD"], "by currency code, never converted");
        assert_eq!((got[1].status, got[1].count), (PayoutStatus::Paid, 4));
        assert_eq!(money(&got[1].amounts[0]), "10.00 KES");
    }
}
