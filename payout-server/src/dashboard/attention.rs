//! The Attention section: the payouts a person should look at (the attention queue, oldest flag
//! first, paged) with the actions that settle them, and the failed payouts to retry.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use payout_core::domain::{DoctorId, Payout};
use payout_core::status::PayoutStatus;
use payout_core::store::{Flagged, Page, PayoutFilter};

use super::components::{doctor, error, error_message, flash, hold_note, money, with_query};
use super::holds::held_doctors;
use super::layout::{Section, page as layout_page};
use super::paging::{DEFAULT_PAGE_SIZE, Paging, pager};
use super::payouts::{names_of, payout_hold_form, resolution_forms, retry_form, summary_header};
use super::signin::SignedIn;
use super::{Dashboard, Paths};
use crate::api::{ListQuery, form_pairs};

/// How many failed payouts the page lists (the list page has them all, `?status=FAILED`).
const FAILED_SHOWN: u32 = 50;

/// `GET /dashboard/admin/attention`.
pub(crate) async fn page(
    State(d): State<Dashboard>,
    user: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let s = &d.app.service;
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    // Only the paging of the query counts here; it is checked by the API's rules.
    let paging_pairs: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k == "limit" || k == "skip")
        .cloned()
        .collect();
    let (paging, bad_paging) = match ListQuery::from_pairs(&paging_pairs) {
        Ok(q) => (Paging::new(q.limit, q.skip), None),
        Err(e) => (Paging::new(None, None), Some(e.message())),
    };
    let failed_filter = PayoutFilter {
        status: Some(PayoutStatus::Failed),
        ..Default::default()
    };
    let (queue, failed) = match (
        s.attention(&user.actor, &paging.page()).await,
        s.list(&user.actor, &failed_filter, &Page::new(FAILED_SHOWN, 0)).await,
    ) {
        (Ok(q), Ok(f)) => (q, f),
        (Err(e), _) | (_, Err(e)) => {
            let body = error(&error_message(e));
            return Err(layout_page(paths, &user.viewer, Section::Attention, "Error", body).into_response());
        }
    };
    let (names, names_note) = names_of(
        &d,
        &user,
        queue.flagged.iter().map(|f| &f.payout).chain(failed.payouts.iter()),
    )
    .await;
    let mut here_query = Vec::new();
    if paging.limit != DEFAULT_PAGE_SIZE {
        here_query.push(("limit".to_string(), paging.limit.to_string()));
    }
    if paging.skip > 0 {
        here_query.push(("skip".to_string(), paging.skip.to_string()));
    }
    let here = with_query(&paths.attention, &here_query);
    let header = summary_header(&d, &user).await;
    let held = held_doctors(&d, &user, &here).await;
    let body = html! {
        (flash(&pairs))
        @if let Some(m) = &bad_paging { (error(m)) }
        (header)
        (names_note)
        section id="attention" aria-labelledby="attention-title" {
            h2 id="attention-title" { "Needs attention (" span id="attention-total" { (queue.total) } ")" }
            @if queue.flagged.is_empty() && queue.total == 0 {
                p { "Nothing needs a person." }
            } @else {
                (flagged_table(paths, "attention", "", &queue.flagged, &names, &here))
                (pager(&paths.attention, &[], paging, queue.flagged.len(), queue.total, "attention"))
            }
        }
        section id="failed" aria-labelledby="failed-title" {
            h2 id="failed-title" { "Failed: retry with a new attempt (" span id="failed-total" { (failed.total) } ")" }
            @if failed.payouts.is_empty() {
                p { "No payout has a confirmed failure." }
            } @else {
                (failed_table(paths, &failed.payouts, &names, &here))
                @if failed.total > u64::from(FAILED_SHOWN) {
                    p { a id="all-failed" href=(with_query(&paths.base, &[("status".into(), "FAILED".into())])) {
                        "All " (failed.total) " failed payouts"
                    } }
                }
            }
        }
        (held)
    };
    Ok(layout_page(paths, &user.viewer, Section::Attention, "Attention", body))
}

/// A table of flagged payouts, each with why, since when and what can be done from here: `key`
/// names the table (`{key}-list`) and its rows (`{key}-{id}`); `form_key` goes into the ids of
/// each row's forms, so that a page listing a payout in several tables keeps its ids unique.
pub(super) fn flagged_table(
    paths: &Paths,
    key: &str,
    form_key: &str,
    flagged: &[Flagged],
    names: &std::collections::HashMap<DoctorId, String>,
    back: &str,
) -> Markup {
    html! {
        table id=(format!("{key}-list")) {
            thead { tr {
                th { "Payout" } th { "Doctor" } th.amount { "Amount" } th { "Status" } th { "Why" }
                th { "Since" } th { "Action" }
            } }
            tbody {
                @for f in flagged {
                    @let p = &f.payout;
                    @let id = p.id.as_str();
                    tr id=(format!("{key}-{id}")) {
                        td.id { a href=(paths.payout(id)) { (id) } }
                        td { (doctor(&p.doctor_id, names)) }
                        td.amount { (money(&p.amount_due)) }
                        td.status id=(format!("{key}-status-{id}")) { (p.status.as_str()) }
                        td { (f.reason) (pending_resolution(p)) " " (hold_note(p)) }
                        td.nowrap { (f.since.format("%Y-%m-%d %H:%M UTC").to_string()) }
                        td { (actions(paths, p, back, &format!("-{form_key}{id}"))) }
                    }
                }
            }
        }
    }
}

/// A resolution waiting for a second admin, said beside the flag's reason.
fn pending_resolution(p: &Payout) -> Markup {
    html! {
        @if let Some(r) = p.resolution.as_ref().filter(|r| r.is_pending()) {
            br;
            span id=(format!("pending-{}", p.id.as_str())) {
                "Resolution " (r.outcome.as_str()) " asked by " (r.requested_by) ": " (r.note)
            }
        }
    }
}

/// What can be done from the queue: settle a PROCESSING payout (resolve with evidence, or confirm
/// or reject a pending resolution), retry a failed one; the others are looked at on their page.
fn actions(paths: &Paths, p: &Payout, back: &str, suffix: &str) -> Markup {
    html! {
        @match p.status {
            PayoutStatus::Processing => { (resolution_forms(paths, p, back, suffix)) }
            PayoutStatus::Failed => { (retry_form(paths, p, back, suffix)) }
            _ => { a href=(paths.payout(p.id.as_str())) { "Look at it" } }
        }
        @if !p.status.is_terminal() { " " (payout_hold_form(paths, p, back, suffix)) }
    }
}

fn failed_table(
    paths: &Paths,
    payouts: &[Payout],
    names: &std::collections::HashMap<DoctorId, String>,
    back: &str,
) -> Markup {
    html! {
        table id="failed-list" {
            thead { tr { th { "Payout" } th { "Doctor" } th.amount { "Amount" } th { "Provider" } th { "Retry" } } }
            tbody {
                @for p in payouts {
                    @let id = p.id.as_str();
                    tr id=(format!("failed-{id}")) {
                        td.id { a href=(paths.payout(id)) { (id) } }
                        td { (doctor(&p.doctor_id, names)) }
                        td.amount { (money(&p.amount_due)) }
                        td { (p.provider.map(|v| v.as_str()).unwrap_or("")) }
                        td { (retry_form(paths, p, back, &format!("-{id}"))) " " (hold_note(p)) " " (payout_hold_form(paths, p, back, &format!("-failed-{id}"))) }
                    }
                }
            }
        }
    }
}
