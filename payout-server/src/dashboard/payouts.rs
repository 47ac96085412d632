//! The Payouts section: the list (summary header, chart, filters, paging, row and bulk actions),
//! a payout's page, and the actions their forms post.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use payout_core::domain::{DoctorId, Payout, PayoutId, Provider, ResolutionOutcome, ResolutionState};
use payout_core::service::ResolveRequest;
use payout_core::status::PayoutStatus;
use payout_core::store::TotalsFilter;

use super::chart::paid_per_month;
use super::components::{
    back_to, by_status, doctor, error, error_message, flash, flash_redirect, hold_note, money, provider_select, query,
    summary, with_query,
};
use super::layout::{Section, page};
use super::paging::{Paging, pager};
use super::signin::{SignedIn, admin_form};
use super::{Dashboard, Paths};
use crate::api::{ListQuery, form_pairs};

/// How many months the chart shows.
pub(crate) const CHART_MONTHS: u32 = 12;

/// The list's filters, as the query names them (the API's names), kept across pages.
const FILTERS: [&str; 5] = ["status", "doctor", "provider", "startDate", "endDate"];

/// The summary header of `user`'s pages: totals by status (count and amount per currency) and the
/// attention count, read from the store's tallies; an error is shown in its place.
pub(crate) async fn summary_header(d: &Dashboard, user: &SignedIn) -> Markup {
    let s = &d.app.service;
    let totals = s.totals(&user.actor, &TotalsFilter::default()).await;
    let attention = s.attention(&user.actor, &payout_core::store::Page::new(1, 0)).await;
    match (totals, attention) {
        (Ok(totals), Ok(attention)) => match by_status(&totals) {
            Ok(statuses) => summary(&d.paths, &statuses, attention.total),
            Err(e) => error(&format!("The totals could not be added up: {e}")),
        },
        (Err(e), _) | (_, Err(e)) => error(&format!("The totals could not be read: {}", error_message(e))),
    }
}

/// The names of the doctors of `payouts`, in one directory call; none (and a note) if it fails.
pub(crate) async fn names_of<'a>(
    d: &Dashboard,
    user: &SignedIn,
    payouts: impl Iterator<Item = &'a Payout>,
) -> (HashMap<DoctorId, String>, Markup) {
    let ids: Vec<DoctorId> = payouts.map(|p| p.doctor_id.clone()).collect();
    match d.app.service.doctor_names(&user.actor, &ids).await {
        Ok(names) => (names, html! {}),
        Err(e) => (
            HashMap::new(),
            error(&format!("Doctors' names are not shown: {}", error_message(e))),
        ),
    }
}

/// `GET /dashboard/admin/payouts`.
pub(crate) async fn list(
    State(d): State<Dashboard>,
    user: SignedIn,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let s = &d.app.service;
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let kept: Vec<(String, String)> = FILTERS
        .iter()
        .filter_map(|k| get(k).map(|v| (k.to_string(), v)))
        .collect();
    let (filter, paging, bad_filter) =
        match ListQuery::from_pairs(&pairs).and_then(|q| Ok((q.filter()?, Paging::new(q.limit, q.skip)))) {
            Ok((f, p)) => (f, p, None),
            Err(e) => (Default::default(), Paging::new(None, None), Some(e.message())),
        };
    let rows = s
        .list(&user.actor, &filter, &paging.page())
        .await
        .map_err(|e| page(paths, &user.viewer, Section::Payouts, "Error", error(&error_message(e))).into_response())?;
    let (names, names_note) = names_of(&d, &user, rows.payouts.iter()).await;
    let chart = match s.paid_by_month(&user.actor, None, CHART_MONTHS).await {
        Ok(series) => paid_per_month(&series, CHART_MONTHS),
        Err(e) => error(&format!("The chart could not be read: {}", error_message(e))),
    };
    // Where each row's and the bulk form's answer leads: this very page (filters and paging).
    let mut here_query = kept.clone();
    if paging.limit != super::paging::DEFAULT_PAGE_SIZE {
        here_query.push(("limit".into(), paging.limit.to_string()));
    }
    if paging.skip > 0 {
        here_query.push(("skip".into(), paging.skip.to_string()));
    }
    let here = with_query(&paths.base, &here_query);
    let keep = |k: &str| get(k).unwrap_or_default();
    let header = summary_header(&d, &user).await;
    let body = html! {
        (flash(&pairs))
        @if let Some(m) = &bad_filter { (error(m)) }
        (header)
        (chart)
        h2 { "Payouts" }
        form method="get" action=(paths.base) id="filters" {
            fieldset {
                legend { "Filters" }
                label { "Status " select name="status" id="f-status" {
                    option value="" { "any" }
                    @for st in PayoutStatus::ALL { option value=(st.as_str()) selected[get("status").as_deref() == Some(st.as_str())] { (st.as_str()) } }
                } } " "
                label { "Doctor " input name="doctor" value=(keep("doctor")) size="12"; } " "
                label { "Provider " select name="provider" {
                    option value="" { "any" }
                    @for p in Provider::ALL { option value=(p.as_str()) selected[get("provider").as_deref() == Some(p.as_str())] { (p.as_str()) } }
                } } " "
                label { "Created from " input type="date" name="startDate" value=(keep("startDate")); }
                label { " to " input type="date" name="endDate" value=(keep("endDate")); } " "
                @if paging.limit != super::paging::DEFAULT_PAGE_SIZE {
                    input type="hidden" name="limit" value=(paging.limit);
                }
                button type="submit" { "Filter" }
            }
        }
        p {
            span id="list-total" { (rows.total) " payouts." } " "
            a id="export" href=(if kept.is_empty() { paths.export.clone() } else { format!("{}?{}", paths.export, query(&kept)) }) { "Export CSV" }
        }
        (names_note)
        // The bulk form wraps the table; row actions are small forms of their own, named with `form=`.
        form method="post" action=(format!("{}/bulk", paths.base)) id="bulk" {
            input type="hidden" name="back" value=(here);
            fieldset {
                legend { "Bulk action on checked rows" }
                select name="action" id="bulk-action" aria-label="Bulk action" {
                    option value="approve" { "Approve" }
                    option value="trigger" { "Trigger" }
                    option value="cancel" { "Cancel" }
                }
                " with " (provider_select("provider", "bulk-provider", None, None)) " "
                button type="submit" id="bulk-submit" { "Apply" }
            }
            table id="payouts" {
                thead { tr {
                    th {} th { "Payout" } th { "Doctor" } th { "Period" }
                    th.amount { "Amount" } th { "Status" } th { "Hold" } th { "Provider" } th { "Reference" } th { "Actions" }
                } }
                tbody {
                    @for p in &rows.payouts { (row(paths, p, &names)) }
                }
            }
        }
        @for p in &rows.payouts { (row_forms(paths, p, &here)) }
        (pager(&paths.base, &kept, paging, rows.payouts.len(), rows.total, "list"))
        form method="post" action=(paths.runs) id="create-run" {
            fieldset {
                legend { "Create a run of the " (rows.total) " payouts these filters select" }
                @for (k, v) in &kept { input type="hidden" name=(k) value=(v); }
                label { "Label " input name="label" id="run-label" required maxlength="200"; } " "
                button type="submit" id="create-run-submit" { "Create run" }
            }
        }
    };
    Ok(page(paths, &user.viewer, Section::Payouts, "Payouts", body))
}

/// One row of the list.
fn row(paths: &Paths, p: &Payout, names: &HashMap<DoctorId, String>) -> Markup {
    let id = p.id.as_str();
    html! {
        tr id=(format!("row-{id}")) {
            td { input type="checkbox" name="ids" value=(id) id=(format!("check-{id}")) aria-label=(format!("Check {id}")); }
            td.id { a href=(paths.payout(id)) { (id) } }
            td.doctor id=(format!("doctor-{id}")) { (doctor(&p.doctor_id, names)) }
            td.nowrap { (p.period().to_string()) }
            td.amount { (money(&p.amount_due)) }
            td.status id=(format!("status-{id}")) { (p.status.as_str()) }
            td { (hold_note(p)) }
            td { (p.provider.map(|v| v.as_str()).unwrap_or("")) }
            td.ref { (p.provider_reference.as_deref().unwrap_or("")) }
            td.nowrap {
                @if p.status == PayoutStatus::Pending {
                    button form=(format!("f-approve-{id}")) id=(format!("approve-{id}")) { "Approve" } " "
                }
                @if p.status == PayoutStatus::Approved {
                    (provider_select("provider", &format!("provider-{id}"), Some(&format!("f-trigger-{id}")), None)) " "
                    button form=(format!("f-trigger-{id}")) id=(format!("trigger-{id}")) { "Trigger" } " "
                }
                @if p.status == PayoutStatus::Failed {
                    (provider_select("provider", &format!("retry-provider-{id}"), Some(&format!("f-retry-{id}")), p.provider)) " "
                    button form=(format!("f-retry-{id}")) id=(format!("retry-{id}")) { "Retry" } " "
                }
                @if matches!(p.status, PayoutStatus::Pending | PayoutStatus::Approved) {
                    button form=(format!("f-cancel-{id}")) id=(format!("cancel-{id}")) { "Cancel" }
                }
            }
        }
    }
}

/// The forms a row's buttons post (outside the bulk form: forms do not nest).
fn row_forms(paths: &Paths, p: &Payout, back: &str) -> Markup {
    let id = p.id.as_str();
    let actions: &[&str] = match p.status {
        PayoutStatus::Pending => &["approve", "cancel"],
        PayoutStatus::Approved => &["trigger", "cancel"],
        PayoutStatus::Failed => &["retry"],
        _ => &[],
    };
    html! {
        @for action in actions {
            form method="post" action=(paths.payout_action(id)) id=(format!("f-{action}-{id}")) {
                input type="hidden" name="action" value=(action);
                input type="hidden" name="back" value=(back);
            }
        }
    }
}

/// `GET /dashboard/admin/payouts/{id}`.
pub(crate) async fn detail(
    State(d): State<Dashboard>,
    user: SignedIn,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Response> {
    let paths = &*d.paths;
    let actor = &user.actor;
    let id = PayoutId::new(id);
    let s = &d.app.service;
    let (p, items, attempts, audit) = match (
        s.get(actor, &id).await,
        s.items(actor, &id).await,
        s.attempts(actor, &id).await,
        s.audit_trail(actor, &id).await,
    ) {
        (Ok(p), Ok(i), Ok(a), Ok(t)) => (p, i, a, t),
        _ => {
            let body = error("No such payout.");
            return Err((
                StatusCode::NOT_FOUND,
                page(paths, &user.viewer, Section::Payouts, "Not found", body),
            )
                .into_response());
        }
    };
    let pairs = form_pairs(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let (names, names_note) = names_of(&d, &user, std::iter::once(&p)).await;
    let simulated = p
        .notes
        .as_deref()
        .is_some_and(|n| n.contains(payout_core::simulated::SIMULATED_NOTE));
    let approvers = p
        .approval
        .as_ref()
        .map(|a| a.approvers.join(", "))
        .or_else(|| p.approved_by.clone())
        .unwrap_or_default();
    let back = paths.payout(p.id.as_str());
    let operator = operator_section(&d, &p, &back).await;
    let body = html! {
        (flash(&pairs))
        p { a href=(paths.base) id="back" { "\u{2190} All payouts" } }
        h2 { "Payout " (p.id.as_str()) }
        (names_note)
        dl {
            dt { "Doctor" } dd id="doctor" { (doctor(&p.doctor_id, &names)) }
            dt { "Period" } dd { (p.period().to_string()) }
            dt { "Amount" } dd id="amount" { (money(&p.amount_due)) }
            dt { "Status" } dd.status id="status" { (p.status.as_str()) }
            @if p.active_hold().is_some() { dt { "Hold" } dd id="hold" { (hold_note(&p)) } }
            dt { "Provider" } dd {
                (p.provider.map(|v| v.as_str()).unwrap_or(""))
                @if simulated { " " span.sim { "(simulated: no money moved)" } }
            }
            dt { "Reference" } dd { (p.provider_reference.as_deref().unwrap_or("")) }
            dt { "Notes" } dd { (p.notes.as_deref().unwrap_or("")) }
            dt { "Created by" } dd { (p.created_by) }
            dt { "Approved by" } dd id="approvers" { (approvers) }
        }
        (operator)
        (hold_forms(paths, &p, &back))
        h3 { "Items" }
        table id="items" {
            tr { th { "Kind" } th { "Reference" } th.amount { "Amount" } th { "Description" } }
            @for i in &items {
                tr { td { (format!("{:?}", i.kind)) } td { (i.reference) } td.amount { (money(&i.amount)) } td { (i.description) } }
            }
        }
        h3 { "Attempts" }
        table {
            tr { th { "#" } th { "Provider" } th { "Idempotency key" } th { "Outcome" } th { "Reference" } }
            @for a in &attempts {
                tr {
                    td { (a.attempt_no) } td { (a.provider.as_str()) } td { code { (a.idempotency_key) } }
                    td { (a.outcome.as_str()) } td { (a.provider_reference.as_deref().unwrap_or("")) }
                }
            }
        }
        h3 { "Audit trail" }
        table id="audit" {
            tr { th { "When" } th { "Who" } th { "Action" } th { "From" } th { "To" } th { "Detail" } }
            @for e in &audit {
                tr {
                    td { (e.at.format("%Y-%m-%d %H:%M:%S").to_string()) } td { (e.actor) } td { (e.action) }
                    td { (e.from.map(|s| s.as_str()).unwrap_or("")) } td { (e.to.map(|s| s.as_str()).unwrap_or("")) }
                    td { (e.detail) }
                }
            }
        }
    };
    Ok(page(paths, &user.viewer, Section::Payouts, "Payout", body))
}

/// What an admin must know before acting on the payout, with the forms to act: the doctor's payout
/// details changed since approval (re-approve), a second approval awaited, an unknown outcome to
/// resolve, a resolution waiting for a second admin, a confirmed failure to retry.
async fn operator_section(d: &Dashboard, p: &Payout, back: &str) -> Markup {
    let s = &d.app.service;
    let paths = &*d.paths;
    let id = p.id.as_str();
    let form = |action: &str, label: &str, fields: Markup| {
        super::components::action_form(paths, id, action, fields, label, action, back)
    };
    let details_changed = if p.status == PayoutStatus::Approved && !s.approval_predates_details_check(p) {
        s.details_changed_since_approval(p).await.map_err(error_message)
    } else {
        Ok(false)
    };
    let out = html! {
        @if p.status == PayoutStatus::Approved && s.approval_predates_details_check(p) {
            p.flash.error id="details-changed" { "This payout was approved before approvals recorded the doctor's payout details: it will not be triggered until an admin re-approves it for the current details." }
            (form("reapprove", "Re-approve for the current details", html! {}))
        } @else if p.status == PayoutStatus::Approved {
            @match &details_changed {
                Ok(true) => {
                    p.flash.error id="details-changed" { "The doctor's payout details changed since this payout was approved: it will not be triggered until an admin re-approves it for the new details." }
                    (form("reapprove", "Re-approve for the new details", html! {}))
                }
                Ok(false) => {}
                Err(e) => { (error(&format!("Could not compare the payout details with the approved ones: {e}"))) }
            }
            @if s.awaits_second_approval(p) {
                p.flash id="second-approval" { "Above the policy's amount: a second admin must approve it before it is triggered." }
                (form("approve", "Approve (second approval)", html! {}))
            }
        }
        @if let Some(r) = &p.resolution {
            p.flash id="resolution" {
                "Resolution of attempt " (r.attempt_no) ": " (r.outcome.as_str()) " asked by " (r.requested_by) " ("
                (match &r.state {
                    ResolutionState::Pending => "waits for a second admin".to_string(),
                    ResolutionState::Confirmed { by, .. } => format!("confirmed by {by}"),
                    ResolutionState::Rejected { by, .. } => format!("rejected by {by}"),
                })
                "); reference " (r.provider_reference.as_deref().unwrap_or("(none)"))
                "; note: " (r.note) "; provider: " (r.provider_answer)
            }
        }
        @if p.status == PayoutStatus::Processing {
            (resolution_forms(paths, p, back, ""))
        }
        @if p.status == PayoutStatus::Failed {
            (retry_form(paths, p, back, ""))
        }
    };
    let text = out.into_string();
    if text.is_empty() {
        html! {}
    } else {
        html! { section id="operator" { h3 { "Needs an admin" } (maud::PreEscaped(text)) } }
    }
}

/// The hold forms of a payout's page: Hold (with a reason) or Release the payout, and Hold (with a
/// reason) or Release its doctor. The doctor's Release is offered when the payout is held with its
/// doctor; a doctor already on hold is refused by the service, said in the flash.
fn hold_forms(paths: &Paths, p: &Payout, back: &str) -> Markup {
    let doctor_held = p
        .active_hold()
        .is_some_and(|h| h.scope == payout_core::domain::HoldScope::Doctor);
    html! {
        section id="holds" {
            h3 { "Hold" }
            @if p.active_hold().is_some() {
                @if !doctor_held { (payout_hold_form(paths, p, back, "")) }
            } @else if !p.status.is_terminal() {
                (payout_hold_form(paths, p, back, ""))
            }
            p {
                form.inline method="post" action=(paths.doctor_hold(p.doctor_id.as_str())) id="doctor-hold-form" {
                    input type="hidden" name="back" value=(back);
                    @if doctor_held {
                        input type="hidden" name="action" value="release";
                        button id="release-doctor" { "Release the doctor " (p.doctor_id.as_str()) }
                    } @else {
                        input type="hidden" name="action" value="hold";
                        input name="reason" id="doctor-hold-reason" placeholder="why (required)" aria-label="Why the doctor is held" required maxlength="500";
                        " "
                        button id="hold-doctor" { "Hold every payout of the doctor " (p.doctor_id.as_str()) }
                    }
                }
            }
        }
    }
}

/// Hold (with a reason) or Release one payout; `suffix` as in [`resolution_forms`].
pub(crate) fn payout_hold_form(paths: &Paths, p: &Payout, back: &str, suffix: &str) -> Markup {
    let id = p.id.as_str();
    if p.active_hold().is_some() {
        super::components::action_form(
            paths,
            id,
            "release",
            html! {},
            "Release",
            &format!("release{suffix}"),
            back,
        )
    } else {
        super::components::action_form(
            paths,
            id,
            "hold",
            html! {
                input name="reason" id=(format!("hold-reason{suffix}")) placeholder="why (required)" aria-label="Why it is held" required maxlength="500";
                " "
            },
            "Hold",
            &format!("hold{suffix}"),
            back,
        )
    }
}

/// The forms that settle a PROCESSING payout: Confirm / Reject a pending resolution, or Resolve
/// with evidence. `suffix` tells apart the ids of several payouts' forms on one page (`""` on a
/// payout's own page, `-{id}` in a list).
pub(crate) fn resolution_forms(paths: &Paths, p: &Payout, back: &str, suffix: &str) -> Markup {
    let id = p.id.as_str();
    let form = |action: &str, label: &str, fields: Markup| {
        super::components::action_form(paths, id, action, fields, label, &format!("{action}{suffix}"), back)
    };
    html! {
        @if p.resolution.as_ref().is_some_and(|r| r.is_pending()) {
            (form("confirm_resolution", "Confirm resolution", html! {}))
            " "
            (form("reject_resolution", "Reject resolution", html! {}))
        } @else {
            (form("resolve", "Resolve with evidence", html! {
                select name="outcome" id=(format!("resolve-outcome{suffix}")) aria-label="Outcome" {
                    option value="PAID" { "PAID" } option value="FAILED" { "FAILED" }
                } " "
                input name="provider_reference" id=(format!("resolve-reference{suffix}")) placeholder="provider reference" aria-label="Provider reference";
                " "
                input name="note" id=(format!("resolve-note{suffix}")) placeholder="evidence (required)" aria-label="Evidence" required;
                " "
            }))
        }
    }
}

/// The form that retries a FAILED payout, with the provider to use (its own by default).
pub(crate) fn retry_form(paths: &Paths, p: &Payout, back: &str, suffix: &str) -> Markup {
    super::components::action_form(
        paths,
        p.id.as_str(),
        "retry",
        html! { (provider_select("provider", &format!("retry-provider{suffix}"), None, p.provider)) " " },
        "Retry",
        &format!("retry{suffix}"),
        back,
    )
}

/// `POST /dashboard/admin/payouts/{id}/action`.
pub(crate) async fn action(
    State(d): State<Dashboard>,
    user: SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let pairs = admin_form(&d, &user, &headers, &body)?;
    let paths = &*d.paths;
    let actor = &user.actor;
    let id = PayoutId::new(id);
    let s = &d.app.service;
    let form = form_action(&pairs).map_err(|why| flash_redirect(false, why, &paths.base))?;
    // Back to the page the form was on when it says so; else the operator's actions go back to
    // the payout, whose page says what still needs doing, and the others to the list.
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let back = back_to(paths, field("back")).unwrap_or_else(|| match form {
        FormAction::Approve | FormAction::Cancel | FormAction::Trigger(_) => paths.base.clone(),
        _ => paths.payout(id.as_str()),
    });
    let result = match form {
        FormAction::Approve => s.approve(actor, &id).await.map(|p| format!("{} approved", p.id)),
        FormAction::Cancel => s
            .cancel(actor, &id, Some("cancelled from the dashboard"))
            .await
            .map(|p| format!("{} cancelled", p.id)),
        FormAction::Trigger(provider) => s
            .trigger(actor, &id, provider)
            .await
            .map(|p| format!("{} triggered with {provider}: {}", p.id, p.status)),
        FormAction::Retry(provider) => s
            .retry(actor, &id, provider)
            .await
            .map(|p| format!("{} retried: {}", p.id, p.status)),
        FormAction::Reapprove => s.reapprove(actor, &id).await.map(|p| format!("{} re-approved", p.id)),
        FormAction::Resolve(request) => s
            .resolve(actor, &id, request)
            .await
            .map(|p| format!("{} resolution recorded: {}", p.id, p.status)),
        FormAction::ConfirmResolution => s
            .confirm_resolution(actor, &id)
            .await
            .map(|p| format!("{} resolution confirmed: {}", p.id, p.status)),
        FormAction::RejectResolution => s
            .reject_resolution(actor, &id, Some("rejected from the dashboard"))
            .await
            .map(|p| format!("{} resolution rejected", p.id)),
        FormAction::Hold(reason) => s.hold(actor, &id, &reason).await.map(|p| format!("{} on hold", p.id)),
        FormAction::Release => s.release(actor, &id).await.map(|p| format!("{} released", p.id)),
    };
    Ok(match result {
        Ok(msg) => flash_redirect(true, &msg, &back),
        Err(e) => flash_redirect(false, &error_message(e), &back),
    })
}

/// `POST /dashboard/admin/payouts/bulk`.
pub(crate) async fn bulk(
    State(d): State<Dashboard>,
    user: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let pairs = admin_form(&d, &user, &headers, &body)?;
    let paths = &*d.paths;
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let back = back_to(paths, field("back")).unwrap_or_else(|| paths.base.clone());
    let ids: Vec<PayoutId> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| PayoutId::new(v.as_str()))
        .collect();
    if ids.is_empty() {
        return Err(flash_redirect(false, "check at least one payout", &back));
    }
    let max = d.app.config.max_bulk;
    if ids.len() > max {
        let msg = format!("at most {max} payouts at once, {} checked", ids.len());
        return Err(flash_redirect(false, &msg, &back));
    }
    let actor = &user.actor;
    let s = &d.app.service;
    let outcomes = match form_action(&pairs).map_err(|why| flash_redirect(false, why, &back))? {
        FormAction::Approve => s.bulk_approve(actor, &ids).await,
        FormAction::Reapprove => s.bulk_reapprove(actor, &ids).await,
        FormAction::Cancel => s.bulk_cancel(actor, &ids, Some("cancelled from the dashboard")).await,
        FormAction::Trigger(provider) => s.bulk_trigger(actor, &ids, provider).await,
        FormAction::Retry(_)
        | FormAction::Resolve(_)
        | FormAction::ConfirmResolution
        | FormAction::RejectResolution
        | FormAction::Hold(_)
        | FormAction::Release => {
            return Err(flash_redirect(
                false,
                "retries, resolutions and holds are made one payout at a time",
                &back,
            ));
        }
    };
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let failed: Vec<String> = outcomes
        .into_iter()
        .filter_map(|o| o.result.err().map(|e| format!("{}: {}", o.id, error_message(e))))
        .collect();
    let msg = if failed.is_empty() {
        format!("{ok} done")
    } else {
        format!("{ok} done; {} failed: {}", failed.len(), failed.join("; "))
    };
    Ok(flash_redirect(failed.is_empty(), &msg, &back))
}

/// What a row or bulk form asks for.
enum FormAction {
    Approve,
    Reapprove,
    Cancel,
    Trigger(Provider),
    /// With this provider, or the failed attempt's.
    Retry(Option<Provider>),
    Resolve(ResolveRequest),
    ConfirmResolution,
    RejectResolution,
    /// With this reason (checked by the service).
    Hold(String),
    Release,
}

/// The form's `action` (with its `provider` for a trigger or a retry), or what to tell the admin
/// instead.
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
                provider_reference: field("provider_reference")
                    .filter(|r| !r.trim().is_empty())
                    .map(String::from),
                note: field("note").unwrap_or_default().to_string(),
            }))
        }
        Some("cancel") => Ok(FormAction::Cancel),
        Some("hold") => Ok(FormAction::Hold(field("reason").unwrap_or_default().to_string())),
        Some("release") => Ok(FormAction::Release),
        Some("trigger") => field("provider")
            .and_then(|p| p.parse().ok())
            .map(FormAction::Trigger)
            .ok_or("choose a provider"),
        Some("retry") => match field("provider").filter(|p| !p.is_empty()) {
            None => Ok(FormAction::Retry(None)),
            Some(p) => p
                .parse()
                .map(|p| FormAction::Retry(Some(p)))
                .map_err(|_| "choose a provider"),
        },
        _ => Err("unknown action"),
    }
}
