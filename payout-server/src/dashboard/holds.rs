//! Doctors' holds from the dashboard: the form that puts a doctor on hold (with a reason) or
//! releases them, and the list of the doctors on hold (shown on the Attention page).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};
use payout_core::domain::DoctorId;
use payout_core::store::Page;

use super::components::{back_to, error, error_message, flash_redirect};
use super::signin::{SignedIn, admin_form};
use super::{Dashboard, Paths};

/// How many held doctors the Attention page lists.
pub(crate) const HELD_DOCTORS_SHOWN: u32 = 50;

/// `POST /dashboard/admin/doctors/{id}/hold`: `action=hold` (with `reason`) or `action=release`;
/// the answer (how many payouts it held or released, or the refusal: four eyes, already held)
/// is flashed on the page in `back` (the attention page by default).
pub(crate) async fn doctor(
    State(d): State<Dashboard>,
    user: SignedIn,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let pairs = admin_form(&d, &user, &headers, &body)?;
    let paths = &*d.paths;
    let field = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let back = back_to(paths, field("back")).unwrap_or_else(|| paths.attention.clone());
    let doctor = DoctorId::new(id);
    let s = &d.app.service;
    let result = match field("action") {
        Some("hold") => s
            .hold_doctor(&user.actor, &doctor, field("reason").unwrap_or_default())
            .await
            .map(|r| format!("doctor {doctor} on hold; {} payouts held", r.payouts.len())),
        Some("release") => s
            .release_doctor(&user.actor, &doctor)
            .await
            .map(|r| format!("doctor {doctor} released; {} payouts released", r.payouts.len())),
        _ => return Err(flash_redirect(false, "unknown action", &back)),
    };
    Ok(match result {
        Ok(msg) => flash_redirect(true, &msg, &back),
        Err(e) => flash_redirect(false, &error_message(e), &back),
    })
}

/// The doctors on hold (the first [`HELD_DOCTORS_SHOWN`], oldest hold first), each with its reason
/// and a Release form leading back to `back`; an error is shown in its place.
pub(crate) async fn held_doctors(d: &Dashboard, user: &SignedIn, back: &str) -> Markup {
    let paths: &Paths = &d.paths;
    let holds = match d
        .app
        .service
        .doctor_holds(&user.actor, &Page::new(HELD_DOCTORS_SHOWN, 0))
        .await
    {
        Ok(h) => h,
        Err(e) => return error(&format!("The doctors on hold could not be read: {}", error_message(e))),
    };
    html! {
        section id="held-doctors" aria-labelledby="held-doctors-title" {
            h2 id="held-doctors-title" { "Doctors on hold (" span id="held-doctors-total" { (holds.total) } ")" }
            @if holds.holds.is_empty() {
                p { "No doctor is on hold." }
            } @else {
                table id="held-doctors-list" {
                    thead { tr { th { "Doctor" } th { "Why" } th { "Placed by" } th { "Since" } th { "Release" } } }
                    tbody {
                        @for h in &holds.holds {
                            @let id = h.doctor_id.as_str();
                            tr id=(format!("held-doctor-{id}")) {
                                td.id { (id) }
                                td.hold { (h.reason) }
                                td { (h.placed_by) }
                                td.nowrap { (h.placed_at.format("%Y-%m-%d %H:%M UTC").to_string()) }
                                td {
                                    form.inline method="post" action=(paths.doctor_hold(id)) {
                                        input type="hidden" name="action" value="release";
                                        input type="hidden" name="back" value=(back);
                                        button id=(format!("release-doctor-{id}")) { "Release" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if holds.total > u64::from(HELD_DOCTORS_SHOWN) {
                    p { "The " (HELD_DOCTORS_SHOWN) " oldest holds are shown." }
                }
            }
        }
    }
}
