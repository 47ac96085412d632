//! Statements as printable HTML pages: a payout's statement and a doctor's year. Written with
//! [`maud`] (every value escaped), styled for the screen and for paper (`@media print`), with no
//! script at all and a policy that allows none.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use payout_core::money::Money;
use payout_core::service::{LineKind, Statement, YearPayout, YearSummary};

use crate::dashboard::components::money;

/// No scripts, inline styles only, no forms, never framed.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'; \
                   base-uri 'none'";

/// The style sheet: a plain document on screen, black on white with no navigation on paper.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem;margin:0}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}.platform{font-size:1rem;color:#555;margin:0}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1.5rem;margin:1rem 0}dt{font-weight:600;color:#555}dd{margin:0}\
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;\
text-align:left;font-size:.9rem}th{background:#f6f6f6}.amount{text-align:right;font-variant-numeric:tabular-nums;\
white-space:nowrap}tr.total td{font-weight:700;border-top:2px solid #222}.late{color:#8a4b00;font-size:.8rem}\
.note{color:#555;font-size:.85rem}code{font-family:ui-monospace,monospace;font-size:.85rem}\
@media print{body{margin:0;max-width:none;color:#000}th{background:none}a{color:#000;text-decoration:none}\
tr{break-inside:avoid}@page{margin:15mm}}";

fn document(title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                meta name="viewport" content="width=device-width, initial-scale=1";
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
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

/// How a statement names a line's kind.
pub(crate) fn kind_label(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Consultation => "Consultation",
        LineKind::LateConsultation => "Late consultation",
        LineKind::CarryOver => "Carried over",
        LineKind::Deduction => "Deduction",
        LineKind::Adjustment => "Adjustment",
        LineKind::Clawback => "Clawback",
        _ => "Other",
    }
}

/// A payout's statement: the platform, the doctor, the period, each earning line and each
/// deduction, the totals, the payment method (masked) and the provider's reference.
pub fn statement_page(platform: &str, s: &Statement) -> Response {
    let p = &s.payout;
    let t = &s.totals;
    let earnings = s.lines.iter().filter(|l| l.kind != LineKind::Deduction);
    let deductions = s.lines.iter().filter(|l| l.kind == LineKind::Deduction);
    let period = format!("{} to {}", p.period_start, p.period_end);
    let body = html! {
        header {
            p.platform id="platform" { (platform) }
            h1 { "Payout statement" }
        }
        dl id="statement-facts" {
            dt { "Doctor" } dd id="doctor" {
                @if let Some(name) = &s.doctor_name { (name) " " }
                code { (p.doctor_id.as_str()) }
            }
            dt { "Payout" } dd { code id="payout-id" { (p.id.as_str()) } }
            dt { "Period" } dd id="period" { (period) }
            dt { "Status" } dd id="status" { (p.status.as_str()) }
            @if let Some(at) = p.processed_at.filter(|_| p.status == payout_core::status::PayoutStatus::Paid) {
                dt { "Paid on" } dd id="paid-on" { (at.format("%Y-%m-%d")) }
            }
            dt { "Payment method" } dd id="method" {
                @match &s.method {
                    Some(m) => { (m.masked) " (" (m.provider.as_str()) ")" }
                    None => { "Not chosen yet" }
                }
            }
            dt { "Provider reference" } dd id="provider-reference" {
                @match &p.provider_reference {
                    Some(r) => { code { (r) } }
                    None => { "None yet" }
                }
            }
            dt { "Amount" } dd id="amount" { (money(&p.amount_due)) }
        }
        h2 { "Earnings" }
        table id="earnings" {
            thead { tr { th { "Date" } th { "Kind" } th { "What" } th { "Reference" } th.amount { "Amount" } } }
            tbody {
                @for l in earnings {
                    tr {
                        td { (l.occurred_at.format("%Y-%m-%d")) }
                        td { (kind_label(l.kind)) }
                        td { (l.description)
                            @if l.kind == LineKind::LateConsultation { " " span.late { "(completed before the period)" } } }
                        td { code { (l.reference) } }
                        td.amount { (money(&l.amount)) }
                    }
                }
            }
        }
        h2 { "Deductions" }
        table id="deductions" {
            thead { tr { th { "Deduction" } th { "How" } th.amount { "Amount" } } }
            tbody {
                @for l in deductions {
                    tr { td { (l.reference) } td { (l.description) } td.amount { (money(&l.amount)) } }
                }
                @if t.deductions.is_empty() { tr { td colspan="3" { "No deductions." } } }
            }
        }
        h2 { "Totals" }
        table id="totals" {
            tbody {
                (row("total-consultations", &format!("Consultations ({})", t.consultations), &t.consultation_earnings))
                @if t.late_consultations > 0 {
                    (row("total-late", &format!("Late consultations ({})", t.late_consultations), &t.late_earnings))
                }
                @if !t.carried_over.is_zero() { (row("total-carried", "Carried over", &t.carried_over)) }
                @if !t.clawbacks.is_zero() { (row("total-clawbacks", "Clawbacks", &t.clawbacks)) }
                @if !t.adjustments.is_zero() { (row("total-adjustments", "Adjustments", &t.adjustments)) }
                (row("total-gross", "Gross earnings", &t.gross))
                @for d in &t.deductions {
                    (row(&format!("total-deduction-{}", d.name), &format!("Less {}", d.name), &d.amount.negate()))
                }
                tr.total id="total-net" { td { "Net paid" } td.amount { (money(&t.net)) } }
            }
        }
        p.note { "Amounts in " (p.amount_due.currency().code()) ", exact. Statement of " (platform) "." }
    };
    document(&format!("Payout statement {} \u{2014} {platform}", p.id), body)
}

fn row(id: &str, label: &str, amount: &Money) -> Markup {
    html! { tr id=(id) { td { (label) } td.amount { (money(amount)) } } }
}

fn payout_rows(id: &str, payouts: &[YearPayout]) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th { "Payout" } th { "Period" } th { "Paid on" } th { "Status" } th.amount { "Amount" } } }
            tbody {
                @for p in payouts {
                    tr {
                        td { code { (p.id.as_str()) } }
                        td { (p.period_start) " to " (p.period_end) }
                        td { (p.paid_at.format("%Y-%m-%d")) }
                        td { (p.status.as_str()) }
                        td.amount { (money(&p.amount)) }
                    }
                }
            }
        }
    }
}

/// A doctor's year: per currency the gross, each deduction, the net paid and what came back, and
/// the payouts counted and listed.
pub fn year_page(platform: &str, y: &YearSummary) -> Response {
    let body = html! {
        header {
            p.platform id="platform" { (platform) }
            h1 { "Earnings summary " (y.year) }
        }
        dl {
            dt { "Doctor" } dd id="doctor" {
                @if let Some(name) = &y.doctor_name { (name) " " }
                code { (y.doctor_id.as_str()) }
            }
            dt { "Year" } dd id="year" { (y.year) " (payments confirmed 1 January to 31 December, UTC)" }
        }
        @if y.totals.is_empty() { p id="nothing" { "Nothing was paid in " (y.year) "." } }
        @for t in &y.totals {
            h2 { "In " (t.currency.code()) }
            table id=(format!("year-{}", t.currency.code())) {
                tbody {
                    tr { td { "Payouts paid" } td.amount { (t.payouts) } }
                    tr { td { "Consultations paid for" } td.amount { (t.consultations) } }
                    (row(&format!("gross-{}", t.currency.code()), "Gross earnings", &t.gross))
                    @for d in &t.deductions {
                        (row(&format!("deduction-{}-{}", t.currency.code(), d.name), &format!("Less {}", d.name), &d.amount.negate()))
                    }
                    (row(&format!("deducted-{}", t.currency.code()), "Deductions in all", &t.deducted))
                    tr.total id=(format!("net-{}", t.currency.code())) { td { "Net paid" } td.amount { (money(&t.net_paid)) } }
                    @if t.returned > 0 {
                        tr { td { "Returned or reversed (" (t.returned) ", not counted)" } td.amount { (money(&t.returned_amount)) } }
                    }
                }
            }
        }
        @if !y.paid.is_empty() { h2 { "Payouts counted" } (payout_rows("paid", &y.paid)) }
        @if !y.returned.is_empty() {
            h2 { "Paid, then returned or reversed (not counted)" }
            (payout_rows("returned", &y.returned))
        }
        p.note { "Counts the payouts paid (status PAID) whose payment was confirmed in " (y.year)
            ". A payout whose money came back (RETURNED, REVERSED) is not income and is listed apart. \
             Amounts are exact and never converted between currencies." }
    };
    document(&format!("Earnings summary {} \u{2014} {platform}", y.year), body)
}
