//! The Runs section: the runs list (paged, each with its counts and amounts by status), a run's
//! page, the form that creates a run from the payouts list's filters, and the run's actions.
//!
//! A run's page stays fast however large the run: it reads the run's tallies (one store call),
//! one page of its results, its events, one page each of its payouts and its held and failed
//! payouts (each [`PayoutService::run_payouts`](payout_core::PayoutService::run_payouts) is two
//! store calls: the run, then the page), the first page of its payouts that need attention (one
//! call, `run_attention`: the attention queue's part that is the run's), and the doctors' names of
//! the payouts shown in one directory call: 10 store calls (`run` 4 times, `list` 3 times,
//! `run_attention`, `run_results`, `run_events`; 11 when the results default to their last page),
//! whatever the run's size. It never reads all of a run's members; the funds check, which must
//! plan every approved member (a page of 200 and a directory call at a time), is made only when
//! asked for (`?funds=1`).
//!
//! The funds override is asked for and confirmed here too: the funds section shows the run's
//! override (who asked, when and why; who confirmed, when), offers to request one when the check
//! shows a shortfall, and to confirm a requested one to any admin but the one who requested it.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use payout_core::domain::{DoctorId, FundsOverride, MAX_OVERRIDE_REASON, Payout, Provider, RunId, RunSummary};
use payout_core::funds::{FundsReport, FundsState};
use payout_core::service::RunReport;
use payout_core::status::PayoutStatus;
use payout_core::store::{AttentionPage, Page, PayoutFilter};

use super::attention::flagged_table;
use super::components::{back_to, doctor, error, error_message, flash, flash_redirect, hold_note, money, with_query};
use super::layout::{Section, page as layout_page};
use super::paging::{DEFAULT_PAGE_SIZE, Paging, pager, pager_named};
use super::payouts::{names_of, payout_hold_form, resolution_forms, retry_form};
use super::signin::{SignedIn, admin_form};
use super::{Dashboard, Paths};
use crate::api::{ListQuery, form_pairs};

/// How many of a run's held, failed and flagged payouts its page lists (each section says how
/// many there are in all).
const SECTION_SHOWN: u32 = 25;

/// The run page's query names of its results' paging (its payouts' are `limit` and `skip`).
const RESULT_PAGING: (&str, &str) = ("rlimit", "rskip");

/// The paging of a query's `names` (checked by the API's rules), or the message saying why not.
fn paging_of(pairs: &[(String, String)], names: (&str, &str)) -> (Paging, Option<String>) {
    let renamed: Vec<(String, String)> = pairs
        .iter()
        .filter_map(|(k, v)| {
            if k == names.0 {
                Some(("limit".to_string(), v.clone()))
            } else if k == names.1 {
                Some(("skip".to_string(), v.clone()))
            } else {
                None
            }
        })
        .collect();
    match ListQuery::from_pairs(&renamed) {
        Ok(q) => (Paging::new(q.limit, q.skip), None),
        Err(e) => (Paging::new(None, None), Some(e.message())),
    }
}

/// The query that shows `paging` again under `names` (defaults left out).
fn paging_query(paging: Paging, names: (&str, &str)) -> Vec<(String, String)> {
    let mut q = Vec::new();
    if paging.limit != DEFAULT_PAGE_SIZE {
        q.push((names.0.to_string(), paging.limit.to_string()));
    }
    if paging.skip > 0 {
        q.push((names.1.to_string(), paging.skip.to_string()));
    }
    q
}

/// `GET /dashboard/admin/runs`: the runs, newest first, paged.
pub(crate) async fn list(
    State(d): State<Dashboard>,
    user: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let (paging, bad_paging) = paging_of(&pairs, ("limit", "skip"));
    let runs = d
        .app
        .service
        .runs(&user.actor, &paging.page())
        .await
        .map_err(|e| layout_page(paths, &user.viewer, Section::Runs, "Error", error(&error_message(e))))?;
    let body = html! {
        (flash(&pairs))
        @if let Some(m) = &bad_paging { (error(m)) }
        h2 { "Runs (" span id="runs-total" { (runs.total) } ")" }
        p { "A run is created from the payouts list: filter it, then " a href=(paths.base) { "Create run" } " below the list." }
        @if runs.runs.is_empty() {
            p { "No run yet." }
        } @else {
            table id="runs" {
                thead { tr {
                    th { "Run" } th { "Kind" } th { "Period" } th { "Created" } th.amount { "Payouts" }
                    th { "By status" } th.amount { "Failed" } th.amount { "Processing" }
                } }
                tbody {
                    @for r in &runs.runs { (run_row(paths, r)) }
                }
            }
        }
        (pager(&paths.runs, &[], paging, runs.runs.len(), runs.total, "runs"))
    };
    Ok(layout_page(paths, &user.viewer, Section::Runs, "Runs", body))
}

/// One row of the runs list, from the run's tallies alone. They are by status, so the row says how
/// many are failed and processing (outcome awaited, where attention flags come from); how many are
/// on hold is on the run's page (a count per run would be a store call per row).
fn run_row(paths: &Paths, r: &RunSummary) -> Markup {
    let id = r.run.id.as_str();
    let statuses = r.by_status();
    html! {
        tr id=(format!("run-{id}")) {
            td { a href=(paths.run(id)) { (r.run.label) } span.doctor-id { (id) } }
            td { (r.run.kind.as_str()) }
            td.nowrap { (r.run.period.as_ref().map(|p| p.to_string()).unwrap_or_default()) }
            td.nowrap { (r.run.created_at.format("%Y-%m-%d %H:%M UTC").to_string()) br; (r.run.created_by) }
            td.amount id=(format!("run-count-{id}")) { (r.count()) }
            td {
                @match &statuses {
                    Ok(statuses) => {
                        @for (status, sub) in statuses {
                            span.nowrap id=(format!("run-{id}-{}", status.as_str())) {
                                (status.as_str()) " " (sub.count) ": "
                                (sub.amounts.iter().map(money).collect::<Vec<_>>().join(", "))
                            }
                            br;
                        }
                    }
                    Err(e) => { (error(&format!("The totals could not be added up: {e}"))) }
                }
            }
            td.amount id=(format!("run-failed-{id}")) { (r.count_of(PayoutStatus::Failed)) }
            td.amount id=(format!("run-processing-{id}")) { (r.count_of(PayoutStatus::Processing)) }
        }
    }
}

/// `POST /dashboard/admin/runs`: a run of the payouts the list's filters (`status`, `doctor`,
/// `provider`, `startDate`, `endDate`, the API's names) select, labelled `label`; the answer is
/// the new run's page, or the list with why not.
pub(crate) async fn create(
    State(d): State<Dashboard>,
    user: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let pairs = admin_form(&d, &user, &headers, &body)?;
    let paths = &*d.paths;
    let filters: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, v)| k != "label" && k != "limit" && k != "skip" && !v.is_empty())
        .cloned()
        .collect();
    let back = with_query(&paths.base, &filters);
    let filter = ListQuery::from_pairs(&filters)
        .and_then(|q| q.filter())
        .map_err(|e| flash_redirect(false, &e.message(), &back))?;
    let label = pairs
        .iter()
        .find(|(k, _)| k == "label")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    Ok(match d.app.service.create_run(&user.actor, label, filter).await {
        Ok(run) => flash_redirect(
            true,
            &format!("run created with {} payouts", run.count()),
            &paths.run(run.run.id.as_str()),
        ),
        Err(e) => flash_redirect(false, &error_message(e), &back),
    })
}

/// A page of a run's payouts matching `filter`, or the error to show in its place.
async fn members(
    d: &Dashboard,
    user: &SignedIn,
    id: &RunId,
    filter: PayoutFilter,
    page: Page,
) -> Result<payout_core::store::PayoutPage, String> {
    d.app
        .service
        .run_payouts(&user.actor, id, filter, &page)
        .await
        .map_err(error_message)
}

/// `GET /dashboard/admin/runs/{id}`.
pub(crate) async fn page(
    State(d): State<Dashboard>,
    user: SignedIn,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let s = &d.app.service;
    let actor = &user.actor;
    let id = RunId::new(id);
    let summary = s.run_summary(actor, &id).await.map_err(|e| {
        let (status, message) = match e {
            payout_core::Error::RunNotFound(_) => (StatusCode::NOT_FOUND, "No such run.".to_string()),
            e => (StatusCode::INTERNAL_SERVER_ERROR, error_message(e)),
        };
        (
            status,
            layout_page(paths, &user.viewer, Section::Runs, "Run", error(&message)),
        )
            .into_response()
    })?;
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (paging, bad_paging) = paging_of(&pairs, ("limit", "skip"));
    let (result_paging, bad_result_paging) = paging_of(&pairs, RESULT_PAGING);
    let rid = id.as_str();
    let here_path = paths.run(rid);
    let mut here_query = paging_query(paging, ("limit", "skip"));
    here_query.extend(paging_query(result_paging, RESULT_PAGING));
    let here = with_query(&here_path, &here_query);

    let shown = Page::new(SECTION_SHOWN, 0);
    let all = members(&d, &user, &id, PayoutFilter::default(), paging.page()).await;
    let held = members(
        &d,
        &user,
        &id,
        PayoutFilter {
            held: Some(true),
            ..Default::default()
        },
        shown.clone(),
    )
    .await;
    let failed = members(
        &d,
        &user,
        &id,
        PayoutFilter {
            status: Some(PayoutStatus::Failed),
            ..Default::default()
        },
        shown.clone(),
    )
    .await;
    let flagged = s.run_attention(actor, &id, &shown).await.map_err(error_message);
    // Results oldest first: without a skip asked for, the latest page (a second call once the
    // number of results is known).
    let results = match s.run_results(actor, &id, &result_paging.page()).await {
        Ok(r) if field(RESULT_PAGING.1).is_none() && r.total > u64::from(result_paging.limit) => {
            let last = Paging {
                limit: result_paging.limit,
                skip: r.total - u64::from(result_paging.limit),
            };
            s.run_results(actor, &id, &last.page())
                .await
                .map(|r| (r, last))
                .map_err(error_message)
        }
        other => other.map(|r| (r, result_paging)).map_err(error_message),
    };
    let events = s.run_events(actor, &id).await.map_err(error_message);
    let mut shown_payouts: Vec<&Payout> = [&all, &held, &failed]
        .into_iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|p| p.payouts.iter())
        .collect();
    if let Ok(f) = &flagged {
        shown_payouts.extend(f.flagged.iter().map(|f| &f.payout));
    }
    let (names, names_note) = names_of(&d, &user, shown_payouts.into_iter()).await;
    let funds_provider = field("provider").and_then(|p| p.parse::<Provider>().ok());
    let funds = if field("funds").is_some() {
        Some(funds_check(&d, &user, &id, funds_provider).await)
    } else {
        None
    };
    // The override forms come back to the funds check they were asked from.
    let mut funds_query = here_query.clone();
    funds_query.push(("funds".into(), "1".into()));
    if let Some(p) = funds_provider {
        funds_query.push(("provider".into(), p.as_str().into()));
    }
    let funds_here = with_query(&here_path, &funds_query);

    let body = html! {
        (flash(&pairs))
        @if let Some(m) = &bad_paging { (error(m)) }
        @if let Some(m) = &bad_result_paging { (error(m)) }
        p { a href=(paths.runs) id="back" { "\u{2190} All runs" } }
        h2 { "Run " span id="run-label" { (summary.run.label) } }
        dl {
            dt { "Id" } dd.id { (rid) }
            dt { "Kind" } dd { (summary.run.kind.as_str()) }
            @if let Some(p) = &summary.run.period { dt { "Period" } dd { (p.to_string()) } }
            dt { "Created" } dd { (summary.run.created_at.format("%Y-%m-%d %H:%M UTC").to_string()) " by " (summary.run.created_by) }
            dt { "Payouts" } dd id="run-count" { (summary.count()) }
        }
        (totals(&summary))
        (actions(paths, &summary, &here))
        (funds_section(paths, &user, &summary, funds, &funds_here))
        (bank_files(paths, rid))
        section id="held" aria-labelledby="held-title" {
            (member_section(paths, "held", "On hold", &held, &names, &here))
        }
        section id="failed" aria-labelledby="failed-title" {
            (member_section(paths, "failed", "Failed", &failed, &names, &here))
        }
        section id="attention" aria-labelledby="attention-title" {
            (attention_section(paths, &flagged, &names, &here))
        }
        (names_note)
        section id="members" aria-labelledby="members-title" {
            @match &all {
                Ok(page) => {
                    h3 id="members-title" { "Payouts (" span id="members-total" { (page.total) } ")" }
                    (payout_table(paths, "members", &page.payouts, &names, &here))
                    (pager(&here_path, &paging_query(result_paging, RESULT_PAGING), paging, page.payouts.len(), page.total, "members"))
                }
                Err(e) => { h3 id="members-title" { "Payouts" } (error(e)) }
            }
        }
        section id="results" aria-labelledby="results-title" {
            @match &results {
                Ok((page, shown_paging)) => {
                    h3 id="results-title" { "Results (" span id="results-total" { (page.total) } ")" }
                    @if page.results.is_empty() { p { "No action has been taken on this run yet." } }
                    @else {
                        table id="results-list" {
                            thead { tr { th { "When" } th { "Payout" } th { "Action" } th { "Provider" } th { "Outcome" } th { "Status after" } th { "Message" } th { "By" } } }
                            tbody {
                                @for r in &page.results {
                                    tr {
                                        td.nowrap { (r.at.format("%Y-%m-%d %H:%M:%S").to_string()) }
                                        td.id { a href=(paths.payout(r.payout_id.as_str())) { (r.payout_id.as_str()) } }
                                        td { (r.action.as_str()) }
                                        td { (r.provider.map(|p| p.as_str()).unwrap_or("")) }
                                        td { @if r.ok { "ok" } @else { span.hold { "failed" } } }
                                        td { (r.status_after.map(|s| s.as_str()).unwrap_or("")) }
                                        td { (r.message.as_deref().unwrap_or("")) }
                                        td { (r.by) }
                                    }
                                }
                            }
                        }
                    }
                    (pager_named(&here_path, &paging_query(paging, ("limit", "skip")), *shown_paging, page.results.len(), page.total, "results", RESULT_PAGING))
                }
                Err(e) => { h3 id="results-title" { "Results" } (error(e)) }
            }
        }
        section id="events" aria-labelledby="events-title" {
            h3 id="events-title" { "Events" }
            @match &events {
                Ok(events) => {
                    table id="events-list" {
                        thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Details" } } }
                        tbody {
                            @for e in events {
                                tr {
                                    td.nowrap { (e.at.format("%Y-%m-%d %H:%M:%S").to_string()) }
                                    td { (e.actor) } td { (e.action) } td { (e.details.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
                Err(e) => { (error(e)) }
            }
        }
    };
    Ok(layout_page(paths, &user.viewer, Section::Runs, "Run", body))
}

/// The run's totals by status, provider and currency, each a count and amounts per currency.
fn totals(summary: &RunSummary) -> Markup {
    let subtotals = |rows: Vec<(String, String, payout_core::domain::Subtotal)>| {
        html! {
            @for (key, label, sub) in rows {
                tr id=(key) {
                    td { (label) }
                    td.amount { (sub.count) }
                    td.amount { (sub.amounts.iter().map(money).collect::<Vec<_>>().join(", ")) }
                }
            }
        }
    };
    let by_status = summary.by_status().map(|v| {
        v.into_iter()
            .map(|(s, sub)| (format!("by-status-{}", s.as_str()), s.as_str().to_string(), sub))
            .collect::<Vec<_>>()
    });
    let by_provider = summary.by_provider().map(|v| {
        v.into_iter()
            .map(|(p, sub)| {
                let name = p.map_or("none", |p| p.as_str());
                (format!("by-provider-{name}"), name.to_string(), sub)
            })
            .collect::<Vec<_>>()
    });
    let by_currency = summary.by_currency();
    html! {
        section id="totals" aria-labelledby="totals-title" {
            h3 id="totals-title" { "Totals" }
            @match (by_status, by_provider, by_currency) {
                (Ok(st), Ok(pr), Ok(cu)) => {
                    table id="totals-by-status" {
                        thead { tr { th { "Status" } th.amount { "Payouts" } th.amount { "Amount" } } }
                        tbody { (subtotals(st)) }
                    }
                    table id="totals-by-provider" {
                        thead { tr { th { "Provider" } th.amount { "Payouts" } th.amount { "Amount" } } }
                        tbody { (subtotals(pr)) }
                    }
                    table id="totals-by-currency" {
                        thead { tr { th { "Currency" } th.amount { "Payouts" } th.amount { "Amount" } } }
                        tbody {
                            @for c in &cu {
                                tr id=(format!("by-currency-{}", c.currency.code())) {
                                    td { (c.currency.code()) } td.amount { (c.count) } td.amount { (money(&c.amount)) }
                                }
                            }
                        }
                    }
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    (error(&format!("The totals could not be added up: {e}")))
                }
            }
        }
    }
}

/// The run's actions: Approve all (its pending payouts), Trigger (its approved ones, each with its
/// doctor's method or the provider chosen), Retry failed; each offered when the run has payouts it
/// would take.
fn actions(paths: &Paths, summary: &RunSummary, back: &str) -> Markup {
    let id = summary.run.id.as_str();
    let form = |action: &str, label: &str, fields: Markup| {
        html! {
            form.inline method="post" action=(paths.run_action(id)) {
                input type="hidden" name="action" value=(action);
                input type="hidden" name="back" value=(back);
                (fields)
                button id=(format!("run-{action}")) { (label) }
            }
            " "
        }
    };
    let pending = summary.count_of(PayoutStatus::Pending);
    let approved = summary.count_of(PayoutStatus::Approved);
    let failed = summary.count_of(PayoutStatus::Failed);
    html! {
        section id="run-actions" aria-labelledby="run-actions-title" {
            h3 id="run-actions-title" { "Actions" }
            p {
                (form("approve", &format!("Approve all ({pending} pending)"), html! {}))
                (form("trigger", &format!("Trigger ({approved} approved)"), html! {
                    select name="provider" id="run-trigger-provider" aria-label="Provider" {
                        option value="" { "each doctor's method" }
                        @for p in Provider::ALL { option value=(p.as_str()) { (p.as_str()) } }
                    }
                    " "
                }))
                (form("retry_failed", &format!("Retry failed ({failed})"), html! {}))
            }
        }
    }
}

/// The funds check of what a trigger would send now
/// ([`PayoutService::run_plan`](payout_core::PayoutService::run_plan) and
/// [`PayoutService::check_funds`](payout_core::PayoutService::check_funds)).
async fn funds_check(
    d: &Dashboard,
    user: &SignedIn,
    id: &RunId,
    provider: Option<Provider>,
) -> Result<(payout_core::service::RunPlan, FundsReport), String> {
    let s = &d.app.service;
    let plan = s.run_plan(&user.actor, id, provider).await.map_err(error_message)?;
    let report = s.check_funds(&plan.funds_needs()).await.map_err(error_message)?;
    Ok((plan, report))
}

/// The funds section: the form asking for the check, and its answer when asked (per provider and
/// currency: needed, available, state; a shortfall highlighted); the run's funds override, with
/// the form that requests one when the check shows a shortfall and the one that confirms a
/// requested one (offered to any admin but the one who requested it). The forms come `back` to
/// the check.
fn funds_section(
    paths: &Paths,
    user: &SignedIn,
    summary: &RunSummary,
    funds: Option<Result<(payout_core::service::RunPlan, FundsReport), String>>,
    back: &str,
) -> Markup {
    let id = summary.run.id.as_str();
    let funds_override = summary.run.funds_override.as_ref();
    let confirmed = funds_override.is_some_and(FundsOverride::is_confirmed);
    html! {
        section id="funds" aria-labelledby="funds-title" {
            h3 id="funds-title" { "Funds" }
            form method="get" action=(paths.run(id)) id="funds-form" {
                input type="hidden" name="funds" value="1";
                label { "Check the balances for a trigger with "
                    select name="provider" id="funds-provider" aria-label="Provider" {
                        option value="" { "each doctor's method" }
                        @for p in Provider::ALL { option value=(p.as_str()) { (p.as_str()) } }
                    }
                } " "
                button id="funds-check" { "Check funds" }
            }
            @match funds {
                None => {}
                Some(Err(e)) => { (error(&e)) }
                Some(Ok((plan, report))) => {
                    p id="funds-plan" {
                        (plan.planned()) " of " (plan.approved) " approved payouts would be sent; "
                        (plan.held) " on hold; " (plan.unplanned.len()) " without a method."
                    }
                    @if report.blocks() && confirmed {
                        p id="funds-overridden" { "Shortfall: a provider holds less than the run needs; the confirmed override below lets the trigger send anyway." }
                    } @else if report.blocks() {
                        p.flash.error id="funds-blocked" { "Shortfall: a provider holds less than the run needs. The trigger is refused unless a second admin confirms a funds override." }
                        @if funds_override.is_none() {
                            form method="post" action=(paths.run_action(id)) id="override-request-form" {
                                input type="hidden" name="action" value="request_override";
                                input type="hidden" name="back" value=(back);
                                label { "Trigger despite the shortfall, because "
                                    input name="reason" id="override-reason-input" required size="40" maxlength=(MAX_OVERRIDE_REASON);
                                } " "
                                button id="override-request" { "Request a funds override" }
                                " (another admin confirms it before it takes effect)"
                            }
                        }
                    }
                    table id="funds-list" {
                        thead { tr { th { "Provider" } th { "Currency" } th.amount { "Needed" } th.amount { "Available" } th { "State" } } }
                        tbody {
                            @for l in &report.lines {
                                tr.shortfall[l.is_shortfall()] id=(format!("funds-{}-{}", l.provider.as_str(), l.currency.code())) {
                                    td { (l.provider.as_str()) }
                                    td { (l.currency.code()) }
                                    td.amount { (money(&l.needed)) }
                                    td.amount { (l.available.as_ref().map(money).unwrap_or_else(|| "unknown".into())) }
                                    td { (funds_state(&l.state)) }
                                }
                            }
                        }
                    }
                    @if !plan.unplanned.is_empty() {
                        ul id="funds-unplanned" {
                            @for u in &plan.unplanned {
                                li { a href=(paths.payout(u.payout_id.as_str())) { (u.payout_id.as_str()) } " (" (money(&u.amount)) "): " (u.reason.to_string()) }
                            }
                        }
                    }
                }
            }
            @if let Some(o) = funds_override {
                (override_state(paths, user, id, o, back))
            }
        }
    }
}

/// The run's funds override: who asked, when and why, who confirmed it and when; while it waits,
/// the form that confirms it, or, to the admin who asked, why they cannot.
fn override_state(paths: &Paths, user: &SignedIn, id: &str, o: &FundsOverride, back: &str) -> Markup {
    let when = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    html! {
        div id="funds-override" {
            h4 { "Funds override" }
            @if o.is_confirmed() {
                p id="override-state" { "Confirmed: a shortfall no longer blocks this run's trigger." }
            } @else {
                p id="override-state" { "Requested, waiting for a second admin: until confirmed, a shortfall still blocks the trigger." }
            }
            dl {
                dt { "Requested by" } dd id="override-requested" { (o.requested_by) " at " (when(&o.requested_at)) }
                dt { "Why" } dd id="override-reason" { (o.reason) }
                @if let (Some(by), Some(at)) = (&o.confirmed_by, &o.confirmed_at) {
                    dt { "Confirmed by" } dd id="override-confirmed" { (by) " at " (when(at)) }
                }
            }
            @if !o.is_confirmed() {
                @if o.requested_by == user.actor.label() {
                    p id="override-own" { "You requested this override, so you cannot confirm it: another admin must." }
                } @else {
                    form method="post" action=(paths.run_action(id)) id="override-confirm-form" {
                        input type="hidden" name="action" value="confirm_override";
                        input type="hidden" name="back" value=(back);
                        button id="override-confirm" { "Confirm the override as the second admin" }
                    }
                }
            }
        }
    }
}

/// A funds line's state as people read it.
fn funds_state(state: &FundsState) -> String {
    match state {
        FundsState::Enough => "enough".into(),
        FundsState::Shortfall { short_by } => format!("short by {}", money(short_by)),
        FundsState::Pending { requested_at } => {
            format!(
                "balance asked at {}, not answered yet",
                requested_at.format("%H:%M UTC")
            )
        }
        FundsState::Unknown { why } => format!("unknown: {why}"),
    }
}

/// The run's bank file (feature `bank-files`): a form that makes it in a format through the API
/// (`GET /api/admin/runs/{id}/bank-file?format=`), which marks the run's approved bank payouts
/// sent and downloads the file. A form, not a link, so that nothing fetches it ahead of a click.
#[cfg(feature = "bank-files")]
fn bank_files(paths: &Paths, id: &str) -> Markup {
    let action = format!(
        "{}/api/admin/runs/{}/bank-file",
        paths.api,
        super::components::url_encode(id)
    );
    html! {
        section id="bank-files" aria-labelledby="bank-files-title" {
            h3 id="bank-files-title" { "Bank file" }
            form method="get" action=(action) id="bank-file-form" {
                label { "Send the approved payouts whose doctor's method is BANK_TRANSFER as a file: "
                    select name="format" id="bank-file-format" aria-label="Format" {
                        option value="csv" { "CSV" } option value="pain001" { "pain.001" } option value="nacha" { "NACHA" }
                    }
                } " "
                button id="bank-file-make" { "Make and download (marks them sent)" }
            }
            form method="post" action=(paths.run_action(id)) id="bank-file-settle" {
                input type="hidden" name="action" value="settle_bank_file";
                input type="hidden" name="back" value=(paths.run(id));
                fieldset {
                    legend { "The bank's confirmation of a file of this run" }
                    label { "File id " input name="file" id="settle-file" required size="30"; } " "
                    label { input type="radio" name="outcome" value="all_paid" checked; " all paid" } " "
                    label { input type="radio" name="outcome" value="returned"; " these returned:" }
                    br;
                    textarea name="returned" id="settle-returned" rows="3" aria-label="Returned items" placeholder="one a line: reference, then a colon and the bank's reason" {}
                    br;
                    button id="bank-file-settle-submit" { "Record the settlement" }
                }
            }
        }
    }
}

/// The settlement a settle form asks for: all paid, or the returned items, one a line
/// (`reference: reason`); or what to tell the admin instead.
#[cfg(feature = "bank-files")]
fn settlement_of(outcome: Option<&str>, returned: &str) -> Result<payout_core::service::Settlement, &'static str> {
    use payout_core::service::{ReturnedItem, Settlement};
    match outcome {
        Some("all_paid") => Ok(Settlement::AllPaid),
        Some("returned") => {
            let items: Vec<ReturnedItem> = returned
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (reference, reason) = l.split_once(':').unwrap_or((l, ""));
                    ReturnedItem {
                        reference: reference.trim().to_string(),
                        reason: reason.trim().to_string(),
                    }
                })
                .collect();
            if items.is_empty() {
                Err("name the returned items, one a line")
            } else {
                Ok(Settlement::Returned { items })
            }
        }
        _ => Err("choose all paid or returned"),
    }
}

/// `action=settle_bank_file`: records the bank's confirmation of one of the run's files.
#[cfg(feature = "bank-files")]
async fn settle(
    d: &Dashboard,
    user: &SignedIn,
    id: &RunId,
    field: impl Fn(&str) -> Option<String>,
    back: &str,
) -> Response {
    let file = match payout_core::domain::BankFileId::parse(field("file").unwrap_or_default().trim()) {
        Ok(f) => f,
        Err(e) => return flash_redirect(false, &error_message(e), back),
    };
    let settlement = match settlement_of(field("outcome").as_deref(), &field("returned").unwrap_or_default()) {
        Ok(s) => s,
        Err(why) => return flash_redirect(false, why, back),
    };
    match d
        .app
        .service
        .settle_run_bank_file(&user.actor, id, &file, &settlement)
        .await
    {
        Ok(r) => flash_redirect(
            r.not_recorded.is_empty(),
            &format!(
                "bank file {file}: {} paid, {} failed, {} returned, {} unchanged, {} not recorded",
                r.paid.len(),
                r.failed.len(),
                r.returned.len(),
                r.unchanged.len(),
                r.not_recorded.len()
            ),
            back,
        ),
        Err(e) => flash_redirect(false, &error_message(e), back),
    }
}

/// Without the `bank-files` feature there is no bank file to make.
#[cfg(not(feature = "bank-files"))]
fn bank_files(_: &Paths, _: &str) -> Markup {
    html! {}
}

/// One of the run's capped lists (held, failed): its first rows, and how many there are in all.
fn member_section(
    paths: &Paths,
    key: &str,
    title: &str,
    found: &Result<payout_core::store::PayoutPage, String>,
    names: &HashMap<DoctorId, String>,
    back: &str,
) -> Markup {
    html! {
        @match found {
            Ok(page) => {
                h3 id=(format!("{key}-title")) { (title) " (" span id=(format!("{key}-total")) { (page.total) } ")" }
                @if page.payouts.is_empty() { p { "None." } }
                @else {
                    (payout_table(paths, key, &page.payouts, names, back))
                    @if page.total > page.payouts.len() as u64 {
                        p { "The first " (page.payouts.len()) " are shown; all are in the run's payouts below." }
                    }
                }
            }
            Err(e) => { h3 id=(format!("{key}-title")) { (title) } (error(e)) }
        }
    }
}

/// The run's payouts that need attention (flagged by reconciliation, or their money came back):
/// the first, oldest flag first, each with why, since when and what can be done from here, and
/// how many there are; the attention queue has every flagged payout, of every run.
fn attention_section(
    paths: &Paths,
    found: &Result<AttentionPage, String>,
    names: &HashMap<DoctorId, String>,
    back: &str,
) -> Markup {
    let title = "Needs attention";
    html! {
        @match found {
            Ok(page) => {
                h3 id="attention-title" { (title) " (" span id="attention-total" { (page.total) } ")" }
                @if page.flagged.is_empty() && page.total == 0 { p { "None of its payouts needs a person." } }
                @else {
                    (flagged_table(paths, "attention", "attention-", &page.flagged, names, back))
                    @if page.total > page.flagged.len() as u64 {
                        p { "The first " (page.flagged.len()) ", oldest flag first, are shown; the attention queue has them all." }
                    }
                }
            }
            Err(e) => { h3 id="attention-title" { (title) } (error(e)) }
        }
        p { a href=(paths.attention) id="to-attention" { "The attention queue" } " (every flagged payout, of every run)" }
    }
}

/// A table of the run's payouts, `key` naming its rows' ids, with each payout's hold and the
/// action its status allows (hold or release, retry, resolve).
fn payout_table(paths: &Paths, key: &str, payouts: &[Payout], names: &HashMap<DoctorId, String>, back: &str) -> Markup {
    html! {
        table id=(format!("{key}-list")) {
            thead { tr {
                th { "Payout" } th { "Doctor" } th.amount { "Amount" } th { "Status" } th { "Provider" } th { "Action" }
            } }
            tbody {
                @for p in payouts {
                    @let id = p.id.as_str();
                    @let suffix = format!("-{key}-{id}");
                    tr id=(format!("{key}-{id}")) {
                        td.id { a href=(paths.payout(id)) { (id) } }
                        td { (doctor(&p.doctor_id, names)) }
                        td.amount { (money(&p.amount_due)) }
                        td.status { (p.status.as_str()) " " (hold_note(p)) }
                        td { (p.provider.map(|v| v.as_str()).unwrap_or("")) }
                        td {
                            @match p.status {
                                PayoutStatus::Failed => { (retry_form(paths, p, back, &suffix)) " " }
                                PayoutStatus::Processing => { (resolution_forms(paths, p, back, &suffix)) " " }
                                _ => {}
                            }
                            @if !p.status.is_terminal() { (payout_hold_form(paths, p, back, &suffix)) }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /dashboard/admin/runs/{id}/action`: `approve`, `trigger` (with an optional `provider`)
/// or `retry_failed`, the report's counts flashed on the run's page; `request_override` (with a
/// `reason`) and `confirm_override`, the funds override's two steps, flashed too.
pub(crate) async fn action(
    State(d): State<Dashboard>,
    user: SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let pairs = admin_form(&d, &user, &headers, &body)?;
    let paths = &*d.paths;
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let back = back_to(paths, field("back")).unwrap_or_else(|| paths.run(&id));
    let id = RunId::new(id);
    let s = &d.app.service;
    let actor = &user.actor;
    let result = match field("action") {
        Some("approve") => s.approve_run(actor, &id).await,
        Some("trigger") => {
            let provider = match field("provider").filter(|p| !p.is_empty()) {
                None => None,
                Some(p) => match p.parse::<Provider>() {
                    Ok(p) => Some(p),
                    Err(_) => return Err(flash_redirect(false, "choose a provider", &back)),
                },
            };
            s.trigger_run(actor, &id, provider).await
        }
        Some("retry_failed") => s.retry_failed_run(actor, &id).await,
        Some("request_override") => {
            let reason = field("reason").unwrap_or("");
            return Ok(match s.request_funds_override(actor, &id, reason).await {
                Ok(_) => flash_redirect(
                    true,
                    "funds override requested: another admin confirms it before the trigger goes ahead",
                    &back,
                ),
                Err(e) => flash_redirect(false, &error_message(e), &back),
            });
        }
        Some("confirm_override") => {
            return Ok(match s.confirm_funds_override(actor, &id).await {
                Ok(_) => flash_redirect(
                    true,
                    "funds override confirmed: a shortfall no longer blocks the trigger",
                    &back,
                ),
                Err(e) => flash_redirect(false, &error_message(e), &back),
            });
        }
        #[cfg(feature = "bank-files")]
        Some("settle_bank_file") => {
            let owned = |k: &str| field(k).map(str::to_string);
            return Ok(settle(&d, &user, &id, owned, &back).await);
        }
        _ => return Err(flash_redirect(false, "unknown action", &back)),
    };
    Ok(match result {
        Ok(report) => flash_redirect(report.failed == 0, &report_message(&report), &back),
        Err(e) => flash_redirect(false, &error_message(e), &back),
    })
}

/// What a run action's report says, for the flash.
fn report_message(r: &RunReport) -> String {
    let stopped = if r.stopped_by_shutdown {
        "; stopped early: the service is shutting down"
    } else {
        ""
    };
    format!(
        "{}: {} considered, {} ok, {} failed ({} on hold, {} without a method){stopped}",
        r.action.as_str(),
        r.considered,
        r.ok,
        r.failed,
        r.held,
        r.without_method
    )
}
