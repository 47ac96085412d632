//! `/dashboard/doctor/payouts`: the signed-in doctor's own pages. Their history (paged), each
//! payout's lines and totals with links to its statement (HTML; CSV with a plan that has
//! `earnings_export`), the year's summaries, and with a plan that has `advanced_analytics` the
//! earnings analytics `GET /api/doctor/payouts` gives. Read-only: a doctor acts on nothing here.
//!
//! Every read goes through the engine as the signed-in doctor ([`SignedInDoctor`]), so another
//! doctor's payout is "not found" here as in the API.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Datelike;
use maud::{Markup, html};
use payout_core::domain::{Actor, PayoutId};
use payout_core::money::Currency;
use payout_core::premium::FeatureAccess;

use super::Dashboard;
use super::components::{error, error_message, money};
use super::layout::doctor_page;
use super::paging::{Paging, pager};
use super::signin::SignedInDoctor;
use crate::api::{HistoryQuery, form_pairs};
use crate::statement_html::kind_label;

/// The doctor's plan, as the engine says; the free set when it cannot say (the page still shows
/// the payouts, and says the analytics could not be read).
async fn features(d: &Dashboard, actor: &Actor) -> Result<FeatureAccess, String> {
    let Actor::Doctor { doctor_id } = actor else {
        return Ok(FeatureAccess::default());
    };
    d.app
        .service
        .feature_access(doctor_id.as_str())
        .await
        .map_err(error_message)
}

/// The premium earnings analytics (KES, as the API's), or a note saying they need a premium plan.
async fn analytics(d: &Dashboard, actor: &Actor, features: &Result<FeatureAccess, String>) -> Markup {
    let plan = match features {
        Ok(f) => f,
        Err(e) => return error(e),
    };
    if !plan.advanced_analytics {
        return html! {
            section id="analytics" {
                h2 { "Earnings analytics" }
                p id="analytics-premium" { "Earnings analytics come with a premium plan." }
            }
        };
    }
    let a = match d.app.service.earnings_analytics(actor, Currency::KES).await {
        Ok(a) => a,
        Err(e) => return error(&error_message(e)),
    };
    html! {
        section id="analytics" {
            h2 { "Earnings analytics (" (a.currency.code()) ")" }
            dl {
                dt { "Paid so far" } dd id="analytics-paid" { (money(&a.total_paid)) }
                dt { "Upcoming" } dd id="analytics-upcoming" { (money(&a.total_upcoming)) }
                dt { "Consultations paid" } dd id="analytics-consultations" { (a.consultations_paid) }
                dt { "Average per consultation" } dd id="analytics-average" {
                    @match &a.average_per_consultation { Some(m) => { (money(m)) } None => { "\u{2014}" } }
                }
            }
            h3 { "Payouts by status" }
            table id="analytics-status" {
                thead { tr { th { "Status" } th.amount { "Payouts" } } }
                tbody {
                    @for (status, count) in &a.payouts_by_status {
                        tr { td.status { (status) } td.amount { (count) } }
                    }
                }
            }
            h3 { "Paid per month" }
            table id="analytics-months" {
                thead { tr { th { "Month (period start)" } th.amount { "Paid" } } }
                tbody {
                    @for (month, paid) in &a.paid_by_month {
                        tr { td { (month) } td.amount { (money(paid)) } }
                    }
                }
            }
        }
    }
}

/// `GET /dashboard/doctor/payouts`: the signed-in doctor's history, paged (`limit`, `skip`), the
/// year's summaries and the analytics.
pub(crate) async fn list(
    State(d): State<Dashboard>,
    user: SignedInDoctor,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let paging_pairs = pairs
        .iter()
        .filter(|(k, _)| k == "limit" || k == "skip")
        .map(|(k, v)| (k.as_str(), v.as_str()));
    let (paging, problem) = match HistoryQuery::from_pairs(paging_pairs) {
        Ok(q) => (Paging::new(q.limit, q.skip), None),
        Err(e) => (Paging::new(None, None), Some(e.message())),
    };
    let actor = &user.actor;
    let history = d
        .app
        .service
        .doctor_history(actor, &paging.page())
        .await
        .map_err(error_message);
    let features = features(&d, actor).await;
    let analytics = analytics(&d, actor, &features).await;
    let this_year = d.app.service.now().year();
    let body = html! {
        @if let Some(p) = &problem { (error(p)) }
        h2 { "My payouts" }
        @match &history {
            Err(e) => { (error(e)) }
            Ok(page) => {
                table id="my-payouts" {
                    thead { tr {
                        th { "Period" } th { "Status" } th.amount { "Amount" } th { "Method" }
                        th { "Paid on" } th { "Reference" } th { "" }
                    } }
                    tbody {
                        @for p in &page.payouts {
                            tr id=(format!("row-{}", p.id.as_str())) {
                                td.nowrap { (p.period_start) " to " (p.period_end) }
                                td.status { (p.status.as_str())
                                    @if p.active_hold().is_some() { " " span.hold { "(on hold)" } } }
                                td.amount { (money(&p.amount_due)) }
                                td { @if let Some(provider) = p.provider { (provider.as_str()) } }
                                td.nowrap { @if let Some(at) = p.processed_at.filter(|_| p.status == payout_core::status::PayoutStatus::Paid) { (at.format("%Y-%m-%d")) } }
                                td.ref { @if let Some(r) = &p.provider_reference { code { (r) } } }
                                td.nowrap {
                                    a id=(format!("open-{}", p.id.as_str())) href=(paths.doctor_payout(p.id.as_str())) { "Details" }
                                    " \u{b7} "
                                    a id=(format!("statement-{}", p.id.as_str())) href=(paths.doctor_statement(p.id.as_str(), false)) { "Statement" }
                                }
                            }
                        }
                    }
                }
                @if page.payouts.is_empty() { p id="no-payouts" { "No payouts yet." } }
                (pager(&paths.doctor, &[], paging, page.payouts.len(), page.total, "history"))
            }
        }
        section id="years" {
            h2 { "Earnings summaries for your tax return" }
            ul {
                @for year in [this_year, this_year - 1] {
                    li { a id=(format!("year-{year}")) href=(paths.doctor_year(year)) { "Summary of " (year) } }
                }
            }
        }
        (analytics)
    };
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, doctor_page(paths, &user.viewer, "My payouts", body)).into_response())
}

/// `GET /dashboard/doctor/payouts/{id}`: one of the doctor's payouts, line by line with its totals
/// and links to its statement; another doctor's is not found.
pub(crate) async fn detail(
    State(d): State<Dashboard>,
    user: SignedInDoctor,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let actor = &user.actor;
    let statement = match d.app.service.statement(actor, &PayoutId::new(id.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            let (status, message) = match e {
                payout_core::Error::NotFound(_) => (StatusCode::NOT_FOUND, "No such payout.".to_string()),
                e => (StatusCode::SERVICE_UNAVAILABLE, error_message(e)),
            };
            let body = html! { (error(&message)) p { a href=(paths.doctor) { "Back to my payouts" } } };
            return Err((status, doctor_page(paths, &user.viewer, "Not found", body)).into_response());
        }
    };
    let export = features(&d, actor).await.is_ok_and(|f| f.earnings_export);
    let p = &statement.payout;
    let t = &statement.totals;
    let pid = p.id.as_str();
    let body = html! {
        p { a href=(paths.doctor) { "\u{2190} My payouts" } }
        h2 { "Payout " code { (pid) } }
        dl id="facts" {
            dt { "Period" } dd id="period" { (p.period_start) " to " (p.period_end) }
            dt { "Status" } dd.status id="status" { (p.status.as_str())
                @if p.active_hold().is_some() { " " span.hold { "(on hold)" } } }
            dt { "Amount" } dd id="amount" { (money(&p.amount_due)) }
            dt { "Payment method" } dd id="method" {
                @match &statement.method {
                    Some(m) => { (m.masked) " (" (m.provider.as_str()) ")" }
                    None => { "Not chosen yet" }
                }
            }
            dt { "Provider reference" } dd id="provider-reference" {
                @match &p.provider_reference { Some(r) => { code { (r) } } None => { "None yet" } }
            }
        }
        p id="statement-links" {
            a id="statement-html" href=(paths.doctor_statement(pid, false)) { "Printable statement" }
            " \u{b7} "
            @if export {
                a id="statement-csv" href=(paths.doctor_statement(pid, true)) { "Statement as CSV" }
            } @else {
                span id="statement-csv-premium" { "CSV statements come with a premium plan." }
            }
        }
        h3 { "Lines" }
        table id="lines" {
            thead { tr { th { "Date" } th { "Kind" } th { "What" } th { "Reference" } th.amount { "Amount" } } }
            tbody {
                @for l in &statement.lines {
                    tr {
                        td.nowrap { (l.occurred_at.format("%Y-%m-%d")) }
                        td { (kind_label(l.kind)) }
                        td { (l.description) }
                        td.ref { code { (l.reference) } }
                        td.amount { (money(&l.amount)) }
                    }
                }
            }
        }
        h3 { "Totals" }
        table id="line-totals" {
            tbody {
                tr { td { "Consultations (" (t.consultations) ")" } td.amount { (money(&t.consultation_earnings)) } }
                @if t.late_consultations > 0 {
                    tr { td { "Late consultations (" (t.late_consultations) ")" } td.amount { (money(&t.late_earnings)) } }
                }
                @if !t.carried_over.is_zero() { tr { td { "Carried over" } td.amount { (money(&t.carried_over)) } } }
                @if !t.clawbacks.is_zero() { tr { td { "Clawbacks" } td.amount { (money(&t.clawbacks)) } } }
                @if !t.adjustments.is_zero() { tr { td { "Adjustments" } td.amount { (money(&t.adjustments)) } } }
                tr id="gross" { td { "Gross earnings" } td.amount { (money(&t.gross)) } }
                @for d in &t.deductions {
                    tr { td { "Less " (d.name) } td.amount { (money(&d.amount.negate())) } }
                }
                tr id="net" { td { strong { "Net" } } td.amount { strong { (money(&t.net)) } } }
            }
        }
    };
    Ok(doctor_page(paths, &user.viewer, &format!("Payout {pid}"), body))
}
