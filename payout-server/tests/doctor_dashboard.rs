//! The doctor's own dashboard pages (`/dashboard/doctor/payouts`) through the router: signed in by
//! cookie (a pasted doctor token) or a host's session, only the doctor's own payouts, paged, a
//! payout's lines with its statement links (CSV only with `earnings_export`), the analytics for a
//! premium plan, and nobody else's payout.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use payout_core::domain::Actor;
use payout_core::money::{Currency, Money};
use payout_core::service::{ManualPayout, PayoutService};
use payout_core::store::{Page, PayoutFilter};
use payout_server::{ServerConfig, router};
use tower::ServiceExt;

const DOCTOR_PAGE: &str = "/dashboard/doctor/payouts";

struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    body: String,
}

async fn call(app: &axum::Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let header = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (status, location, set_cookie) = (res.status(), header("location"), header("set-cookie"));
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    Reply {
        status,
        location,
        set_cookie,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn page(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = token {
        b = b.header("cookie", format!("payouts_token={t}"));
    }
    b.body(Body::empty()).unwrap()
}

async fn setup() -> (axum::Router, Arc<PayoutService>) {
    let state = calculated_state(ServerConfig::new(SECRET)).await;
    let service = state.service.clone();
    (router(state), service)
}

async fn id_of(service: &PayoutService, doctor: &str) -> String {
    let filter = PayoutFilter {
        doctor_id: Some(doctor.into()),
        ..Default::default()
    };
    let page = service
        .list(&Actor::admin("t"), &filter, &Page::new(10, 0))
        .await
        .unwrap();
    page.payouts.last().unwrap().id.to_string()
}

#[tokio::test]
async fn a_doctor_token_signs_in_to_the_doctors_own_page() {
    let (app, _) = setup().await;
    let token = doctor("dr-a");
    let r = call(
        &app,
        Request::post("/dashboard/login")
            .header("host", "localhost")
            .header("origin", "http://localhost")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some(DOCTOR_PAGE));
    let cookie = r.set_cookie.unwrap();
    assert!(cookie.starts_with(&format!("payouts_token={token};")) && cookie.contains("HttpOnly"));
    // Without credentials: the sign-in page; an admin gets no doctor page.
    let r = call(&app, page(DOCTOR_PAGE, None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains(r#"id="token""#) && !r.body.contains("my-payouts"),
        "{}",
        r.body
    );
    let r = call(&app, page(DOCTOR_PAGE, Some(&admin("admin-1")))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("my-payouts"));
}

#[tokio::test]
async fn the_page_lists_only_the_doctors_own_payouts_paged_with_statement_links() {
    let (app, service) = setup().await;
    let own = id_of(&service, "dr-a").await;
    let other = id_of(&service, "dr-b").await;
    service
        .create_manual(
            &Actor::admin("admin-1"),
            ManualPayout {
                doctor_id: "dr-a".into(),
                amount: Money::parse("1234.5", Currency::KES).unwrap(),
                period: None,
                notes: Some("internal note".into()),
            },
        )
        .await
        .unwrap();
    let token = doctor("dr-a");
    let r = call(&app, page(DOCTOR_PAGE, Some(&token))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(r#"id="my-payouts""#));
    assert!(r.body.contains(&format!(r#"id="row-{own}""#)), "{}", r.body);
    assert!(!r.body.contains(&other), "another doctor's payout is never listed");
    assert!(r.body.contains("1,234.50 KES") && r.body.contains("500.00 KES"));
    assert!(!r.body.contains("internal note") && !r.body.contains("admin-1"));
    assert!(
        r.body
            .contains(&format!(r#"href="/api/doctor/payouts/{own}/statement""#))
    );
    assert!(r.body.contains(&format!(r#"href="/dashboard/doctor/payouts/{own}""#)));
    assert!(r.body.contains(r#"id="signed-in-as">doctor:dr-a<"#));
    assert!(r.body.contains(r#"id="analytics-premium""#), "dr-a has no premium plan");
    assert!(r.body.contains("Rows 1\u{2013}2 of 2"));
    // Paged: one a page.
    let r = call(&app, page(&format!("{DOCTOR_PAGE}?limit=1"), Some(&token))).await;
    assert!(r.body.contains("Rows 1\u{2013}1 of 2"), "{}", r.body);
    assert!(
        r.body
            .contains(r#"id="history-next" href="/dashboard/doctor/payouts?limit=1&amp;skip=1""#),
        "{}",
        r.body
    );
    let r = call(&app, page(&format!("{DOCTOR_PAGE}?limit=0"), Some(&token))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("invalid paging"), "{}", r.body);

    // A premium doctor gets the analytics.
    let r = call(&app, page(DOCTOR_PAGE, Some(&doctor("dr-c")))).await;
    assert!(
        r.body.contains(r#"<dd id="analytics-upcoming">1,500.00 KES</dd>"#),
        "{}",
        r.body
    );
    assert!(!r.body.contains("analytics-premium"));
}

#[tokio::test]
async fn a_payouts_page_shows_its_lines_and_nobody_elses_payout() {
    let (app, service) = setup().await;
    let a = id_of(&service, "dr-a").await;
    let c = id_of(&service, "dr-c").await;
    let r = call(&app, page(&format!("{DOCTOR_PAGE}/{a}"), Some(&doctor("dr-a")))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(r#"id="lines""#) && r.body.contains("apt-dr-a-0"));
    assert!(
        r.body.contains(
            r#"<tr id="net"><td><strong>Net</strong></td><td class="amount"><strong>500.00 KES</strong></td></tr>"#
        ),
        "{}",
        r.body
    );
    assert!(r.body.contains(&format!(
        r#"id="statement-html" href="/api/doctor/payouts/{a}/statement""#
    )));
    assert!(
        r.body.contains(r#"id="statement-csv-premium""#),
        "no CSV without earnings_export"
    );
    // Another doctor's payout does not exist for dr-a.
    let r = call(&app, page(&format!("{DOCTOR_PAGE}/{c}"), Some(&doctor("dr-a")))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("No such payout.") && !r.body.contains("apt-dr-c"));
    // dr-c, premium, gets the CSV link.
    let r = call(&app, page(&format!("{DOCTOR_PAGE}/{c}"), Some(&doctor("dr-c")))).await;
    assert!(
        r.body.contains(&format!(
            r#"id="statement-csv" href="/api/doctor/payouts/{c}/statement?format=csv""#
        )),
        "{}",
        r.body
    );
}
