//! Dashboard tests with `oneshot`: sign-in, the cookie, row and bulk actions, the `Origin` check and escaping.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::*;
use payout_core::PayoutService;
use payout_core::domain::{Actor, PayoutId};
use payout_core::money::{Currency, Money};
use payout_core::service::ManualPayout;
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter};
use payout_server::{AppState, Claims, JwtKey, Role, ServerConfig, router};
use tower::ServiceExt;

const BASE: &str = "/dashboard/admin/payouts";
const ATTENTION: &str = "/dashboard/admin/attention";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn location(&self) -> &str {
        self.header("location").expect("a Location header")
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn cookie(token: &str) -> String {
    format!("payouts_token={token}")
}

fn page(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = token {
        b = b.header("cookie", cookie(t));
    }
    b.body(Body::empty()).unwrap()
}

/// A form post as a browser on `http://localhost` sends it.
fn form(uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
    let mut b = Request::post(uri)
        .header("host", "localhost")
        .header("origin", "http://localhost")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(t) = token {
        b = b.header("cookie", cookie(t));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

async fn setup() -> (axum::Router, Arc<PayoutService>) {
    let state: AppState = calculated_state(ServerConfig::new(SECRET)).await;
    let service = state.service.clone();
    (router(state), service)
}

/// The calculated payouts' ids by doctor (`dr-a`, `dr-b`, `dr-c`).
async fn ids(service: &PayoutService) -> Vec<String> {
    let page = service
        .list(&Actor::admin("t"), &PayoutFilter::default(), &Page::new(100, 0))
        .await
        .unwrap();
    let mut rows: Vec<_> = page
        .payouts
        .iter()
        .map(|p| (p.doctor_id.as_str().to_string(), p.id.as_str().to_string()))
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, id)| id).collect()
}

/// A simulated provider's webhook saying the payout with `reference` is now `status`.
async fn webhook(service: &PayoutService, reference: &str, event: &str, status: &str, reason: &str) {
    let body = serde_json::json!({"eventId": event, "reference": reference, "status": status, "reason": reason});
    let mut headers = http::HeaderMap::new();
    headers.insert("x-simulation-token", SIM_TOKEN.parse().unwrap());
    service
        .handle_webhook(
            payout_core::domain::Provider::StripeConnect,
            &headers,
            body.to_string().as_bytes(),
        )
        .await
        .unwrap();
}

async fn status_of(service: &PayoutService, id: &str) -> PayoutStatus {
    service
        .get(&Actor::admin("t"), &PayoutId::new(id))
        .await
        .unwrap()
        .status
}

/// The text of the element with this id (first match, tags inside left as they are).
fn text_of<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open_end = start + html[start..].find('>')? + 1;
    let close = open_end + html[open_end..].find("</")?;
    Some(&html[open_end..close])
}

fn assert_sign_in_form(r: &Reply) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("id=\"token\""), "{}", r.body);
    assert!(r.body.contains("id=\"sign-in\""), "{}", r.body);
    assert!(r.body.contains("action=\"/dashboard/login\""), "{}", r.body);
    assert!(
        !r.body.contains("id=\"payouts\""),
        "no table before sign-in: {}",
        r.body
    );
    assert!(!r.body.contains("id=\"sign-out\""), "no Sign out before sign-in");
}

/// Every dashboard page forbids scripts and framing and is not cached.
fn assert_locked_down(r: &Reply) {
    let csp = r.header("content-security-policy").expect("a CSP");
    for directive in ["default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    // `no-referrer` would make browsers send `Origin: null` on the dashboard's own posts.
    assert_eq!(r.header("referrer-policy"), Some("same-origin"));
}

#[tokio::test]
async fn without_a_cookie_the_pages_show_the_sign_in_form() {
    let (app, service) = setup().await;
    let r = call(&app, page(BASE, None)).await;
    assert_sign_in_form(&r);
    assert_locked_down(&r);
    assert!(r.body.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // Nothing about the payouts leaks out.
    for id in ids(&service).await {
        assert!(!r.body.contains(&id));
    }
    assert!(!r.body.contains("dr-a"));
    // The detail page too.
    let id = &ids(&service).await[0];
    let r = call(&app, page(&format!("{BASE}/{id}"), None)).await;
    assert_sign_in_form(&r);
    assert!(!r.body.contains("id=\"audit\""));
    // A garbage or expired cookie is no sign-in either; the form says why.
    let r = call(&app, page(BASE, Some("not.a.jwt"))).await;
    assert_sign_in_form(&r);
    assert!(r.body.contains("flash error"), "{}", r.body);
    let expired = JwtKey::new(SECRET).sign(&Claims {
        sub: "a1".into(),
        role: Role::Admin,
        doctor_id: None,
        // Beyond the verifier's leeway.
        exp: chrono::Utc::now().timestamp() - 120,
    });
    let r = call(&app, page(BASE, Some(&expired))).await;
    assert_sign_in_form(&r);
    assert!(r.body.contains("token expired"), "{}", r.body);
    // A doctor's cookie gets no admin page.
    let r = call(&app, page(BASE, Some(&doctor("dr-a")))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Admins only."));
    assert!(!r.body.contains("id=\"payouts\""));
}

#[tokio::test]
async fn login_with_a_bad_token_shows_an_error_and_sets_no_cookie() {
    let (app, _) = setup().await;
    let forged = JwtKey::new("wrong-secret").sign(&Claims {
        sub: "x".into(),
        role: Role::Admin,
        doctor_id: None,
        exp: chrono::Utc::now().timestamp() + 60,
    });
    let cases = [
        ("not.a.jwt".to_string(), "malformed token"),
        (forged, "invalid token signature"),
        (String::new(), "malformed token"),
    ];
    for (token, message) in cases {
        let r = call(&app, form("/dashboard/login", None, &format!("token={token}"))).await;
        assert_sign_in_form(&r);
        assert!(r.header("set-cookie").is_none(), "no cookie for {token:?}");
        assert!(r.header("location").is_none());
        let flash = text_of(&r.body, "flash").map(str::to_string);
        let shown = r.body.contains(&format!("<p class=\"flash error\">{message}</p>"));
        assert!(shown, "{token:?} should show {message:?}: {flash:?} {}", r.body);
    }
}

#[tokio::test]
async fn admin_login_sets_a_strict_http_only_cookie_and_the_list_shows_the_payouts() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let r = call(&app, form("/dashboard/login", None, &format!("token={a}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), BASE);
    let set_cookie = r.header("set-cookie").expect("a cookie");
    let attrs: Vec<&str> = set_cookie.split(';').map(str::trim).collect();
    assert_eq!(attrs[0], format!("payouts_token={a}"));
    assert!(attrs.contains(&"HttpOnly"), "{set_cookie}");
    assert!(attrs.contains(&"SameSite=Strict"), "{set_cookie}");
    assert!(attrs.contains(&"Path=/"), "{set_cookie}");
    // Follow the redirect with the cookie the browser would now send.
    let r = call(
        &app,
        page(r.location(), Some(attrs[0].strip_prefix("payouts_token=").unwrap())),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("id=\"payouts\""));
    assert!(!r.body.contains("id=\"sign-in\""));
    assert!(r.body.contains("id=\"sign-out\""));
    assert_locked_down(&r);
    assert!(r.body.contains("3 payouts."), "{}", r.body);
    let ids = ids(&service).await;
    assert_eq!(ids.len(), 3);
    for (id, doctor) in ids.iter().zip(["dr-a", "dr-b", "dr-c"]) {
        assert!(r.body.contains(&format!("id=\"row-{id}\"")));
        // The whole id: v7 ids made in the same millisecond share their first 13 characters.
        assert!(r.body.contains(&format!("/{id}\">{id}</a>")), "{id}");
        assert_eq!(text_of(&r.body, &format!("status-{id}")), Some("PENDING"));
        assert!(r.body.contains(&format!("id=\"approve-{id}\"")));
        assert!(r.body.contains(&format!("id=\"cancel-{id}\"")));
        assert!(r.body.contains(&format!("id=\"check-{id}\"")));
        assert!(
            !r.body.contains(&format!("id=\"trigger-{id}\"")),
            "no trigger before approval"
        );
        // The doctor's name from the directory, with the id under it.
        assert_eq!(
            text_of(&r.body, &format!("doctor-{id}")),
            Some(format!("<span class=\"doctor-name\">Dr. {doctor}").as_str())
        );
        assert!(r.body.contains(&format!("<span class=\"doctor-id\">{doctor}</span>")));
    }
    for id in [
        "bulk",
        "bulk-action",
        "bulk-provider",
        "bulk-submit",
        "filters",
        "export",
    ] {
        assert!(r.body.contains(&format!("id=\"{id}\"")), "#{id}");
    }
    // dr-b: two consultations at the default rate.
    assert!(r.body.contains("<td class=\"amount\">1,000.00 KES</td>"), "{}", r.body);
    // The filters narrow the list.
    let r = call(&app, page(&format!("{BASE}?doctor=dr-b"), Some(&a))).await;
    assert!(r.body.contains("1 payouts."), "{}", r.body);
    assert!(r.body.contains(&format!("id=\"row-{}\"", ids[1])));
    assert!(!r.body.contains(&format!("id=\"row-{}\"", ids[0])));
    // Signing in or out from another site is refused.
    let mut req = form("/dashboard/login", None, &format!("token={a}"));
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("set-cookie").is_none());
    let mut req = form("/dashboard/logout", Some(&a), "");
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("set-cookie").is_none());
    // Signing out clears the cookie.
    let r = call(&app, form("/dashboard/logout", Some(&a), "")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let cleared = r.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("payouts_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn row_actions_approve_trigger_and_cancel() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let ids = ids(&service).await;
    let id = &ids[0];
    // Approve through the row's form.
    let r = call(&app, form(&format!("{BASE}/{id}/action"), Some(&a), "action=approve")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with(&format!("{BASE}?msg=")), "{}", r.location());
    assert_eq!(status_of(&service, id).await, PayoutStatus::Approved);
    // The page the redirect lands on says so and offers Trigger with a provider picker.
    let r = call(&app, page(r.location(), Some(&a))).await;
    assert_eq!(text_of(&r.body, "flash"), Some(format!("{id} approved").as_str()));
    assert_eq!(text_of(&r.body, &format!("status-{id}")), Some("APPROVED"));
    assert!(r.body.contains(&format!("id=\"provider-{id}\"")));
    assert!(r.body.contains(&format!("id=\"trigger-{id}\"")));
    assert!(!r.body.contains(&format!("id=\"approve-{id}\"")));
    // The API agrees.
    let api = call(
        &app,
        Request::get(format!("/api/admin/payouts/{id}"))
            .header("authorization", format!("Bearer {a}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["data"]["status"], "APPROVED");
    assert_eq!(json["data"]["approvedBy"], "admin:admin-1");
    // Trigger without a provider is refused; with one it goes to PROCESSING (deferred settlement).
    let r = call(&app, form(&format!("{BASE}/{id}/action"), Some(&a), "action=trigger")).await;
    assert!(r.location().contains("err=choose%20a%20provider"), "{}", r.location());
    assert_eq!(status_of(&service, id).await, PayoutStatus::Approved);
    let r = call(
        &app,
        form(
            &format!("{BASE}/{id}/action"),
            Some(&a),
            "action=trigger&provider=MPESA_B2C",
        ),
    )
    .await;
    assert!(r.location().contains("?msg="), "{}", r.location());
    assert_eq!(status_of(&service, id).await, PayoutStatus::Processing);
    let r = call(&app, page(r.location(), Some(&a))).await;
    assert_eq!(text_of(&r.body, &format!("status-{id}")), Some("PROCESSING"));
    assert!(!r.body.contains(&format!("id=\"cancel-{id}\"")));
    // A second approval is an error shown as a flash, not a crash.
    let r = call(&app, form(&format!("{BASE}/{id}/action"), Some(&a), "action=approve")).await;
    assert!(r.location().contains("?err="), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a))).await;
    assert!(r.body.contains("class=\"flash error\" id=\"flash\""), "{}", r.body);
    // Cancel another.
    let other = &ids[1];
    let r = call(&app, form(&format!("{BASE}/{other}/action"), Some(&a), "action=cancel")).await;
    assert!(r.location().contains("?msg="), "{}", r.location());
    assert_eq!(status_of(&service, other).await, PayoutStatus::Cancelled);
    // The detail page shows the audit trail.
    let r = call(&app, page(&format!("{BASE}/{id}"), Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(text_of(&r.body, "status"), Some("PROCESSING"));
    for action in ["CREATE", "APPROVE", "TRIGGER"] {
        assert!(r.body.contains(&format!("<td>{action}</td>")), "{action}: {}", r.body);
    }
    assert!(r.body.contains("id=\"items\""));
    // An unknown payout is a 404 page.
    let r = call(&app, page(&format!("{BASE}/no-such-payout"), Some(&a))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A doctor's cookie cannot act.
    let third = &ids[2];
    let r = call(
        &app,
        form(
            &format!("{BASE}/{third}/action"),
            Some(&doctor("dr-c")),
            "action=approve",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(status_of(&service, third).await, PayoutStatus::Pending);
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_changes_nothing() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let ids = ids(&service).await;
    let evil = |uri: &str, body: &str| {
        Request::post(uri)
            .header("host", "localhost")
            .header("origin", "https://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie(&a))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let r = call(&app, evil(&format!("{BASE}/{}/action", ids[0]), "action=approve")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Cross-site request refused."));
    let r = call(&app, evil(&format!("{BASE}/{}/action", ids[0]), "action=cancel")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let bulk = format!("action=approve&provider=STRIPE_CONNECT&ids={}&ids={}", ids[1], ids[2]);
    let r = call(&app, evil(&format!("{BASE}/bulk"), &bulk)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another port is another origin too, and so is an opaque one (`Origin: null`, e.g. a sandboxed frame).
    for origin in ["http://localhost:8080", "null"] {
        let mut req = form(&format!("{BASE}/{}/action", ids[0]), Some(&a), "action=approve");
        req.headers_mut().insert("origin", origin.parse().unwrap());
        assert_eq!(call(&app, req).await.status, StatusCode::FORBIDDEN, "{origin}");
    }
    for id in &ids {
        assert_eq!(status_of(&service, id).await, PayoutStatus::Pending);
        let audit = service
            .audit_trail(&Actor::admin("t"), &PayoutId::new(id.as_str()))
            .await
            .unwrap();
        assert_eq!(audit.len(), 1, "only CREATE: {audit:?}");
    }
    // The same post from the dashboard's own origin goes through.
    let r = call(
        &app,
        form(&format!("{BASE}/{}/action", ids[0]), Some(&a), "action=approve"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(status_of(&service, &ids[0]).await, PayoutStatus::Approved);
}

#[tokio::test]
async fn notes_flash_and_filters_are_html_escaped() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let manual = service
        .create_manual(
            &Actor::admin("admin-2"),
            ManualPayout {
                doctor_id: "dr-a".into(),
                amount: Money::parse("250.00", Currency::KES).unwrap(),
                period: None,
                notes: Some("<script>alert(1)</script> & \"quotes\"".into()),
            },
        )
        .await
        .unwrap();
    let id = manual.id.as_str();
    let r = call(&app, page(&format!("{BASE}/{id}"), Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains("<script"), "{}", r.body);
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;";
    // In the notes and in the item's description.
    assert_eq!(r.body.matches(escaped).count(), 2, "{}", r.body);
    assert!(r.body.contains(&format!("<dd>{escaped}</dd>")));
    // The list shows the row without the notes.
    let r = call(&app, page(BASE, Some(&a))).await;
    assert!(r.body.contains(&format!("id=\"row-{id}\"")));
    assert!(!r.body.contains("<script"));
    // A flash message or a filter value from the query string is escaped too.
    let r = call(
        &app,
        page(
            &format!("{BASE}?err=%3Cscript%3Ealert(2)%3C%2Fscript%3E&doctor=%22%3E%3Cscript%3Ealert(3)%3C%2Fscript%3E"),
            Some(&a),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains("<script"), "{}", r.body);
    assert_eq!(text_of(&r.body, "flash"), Some("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(
        r.body
            .contains("value=\"&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;\""),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn doctor_ids_are_html_escaped() {
    // A directory with a doctor whose id is markup (the id comes from another system).
    let evil = "<script>alert(4)</script>";
    let mut doctors = doctors();
    doctors[0].doctor_id = evil.into();
    let mut consultations = consultations();
    for c in consultations.iter_mut().filter(|c| c.doctor_id.as_str() == "dr-a") {
        c.doctor_id = evil.into();
    }
    let service = Arc::new(
        PayoutService::builder()
            .store(Arc::new(payout_core::memory::MemoryStore::new()))
            .consultations(Arc::new(payout_core::source::StaticConsultations::new(consultations)))
            .directory(Arc::new(payout_core::source::StaticDirectory::new(doctors)))
            .simulate_missing_providers(true)
            .build()
            .unwrap(),
    );
    service
        .calculate_period(&Actor::system("test"), Some(jan()), &Default::default())
        .await
        .unwrap();
    let app = router(AppState::new(service.clone(), ServerConfig::new(SECRET)));
    let a = admin("admin-1");
    let r = call(&app, page(BASE, Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains("<script"), "{}", r.body);
    assert!(
        r.body
            .contains("<span class=\"doctor-name\">Dr. dr-a</span><span class=\"doctor-id\">&lt;script&gt;alert(4)&lt;/script&gt;</span>"),
        "{}",
        r.body
    );
    let page_of = service
        .list(&Actor::admin("t"), &PayoutFilter::default(), &Page::new(10, 0))
        .await
        .unwrap();
    let p = page_of.payouts.iter().find(|p| p.doctor_id.as_str() == evil).unwrap();
    let r = call(&app, page(&format!("{BASE}/{}", p.id.as_str()), Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains("<script"), "{}", r.body);
    assert!(
        r.body
            .contains("<span class=\"doctor-id\">&lt;script&gt;alert(4)&lt;/script&gt;</span></dd>")
    );
}

#[tokio::test]
async fn bulk_approve_of_checked_rows_reports_each_failure() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let ids = ids(&service).await;
    // Approve two checked rows (the form also sends the bulk provider select).
    let body = format!("action=approve&provider=STRIPE_CONNECT&ids={}&ids={}", ids[0], ids[1]);
    let r = call(&app, form(&format!("{BASE}/bulk"), Some(&a), &body)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), format!("{BASE}?msg=2%20done"));
    assert_eq!(status_of(&service, &ids[0]).await, PayoutStatus::Approved);
    assert_eq!(status_of(&service, &ids[1]).await, PayoutStatus::Approved);
    assert_eq!(status_of(&service, &ids[2]).await, PayoutStatus::Pending);
    let r = call(&app, page(r.location(), Some(&a))).await;
    assert_eq!(text_of(&r.body, "flash"), Some("2 done"));
    // Again with one already approved, one pending and one unknown: each failure is named.
    let body = format!(
        "action=approve&provider=STRIPE_CONNECT&ids={}&ids={}&ids=nope",
        ids[0], ids[2]
    );
    let r = call(&app, form(&format!("{BASE}/bulk"), Some(&a), &body)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().starts_with(&format!("{BASE}?err=")), "{}", r.location());
    assert_eq!(status_of(&service, &ids[2]).await, PayoutStatus::Approved);
    let r = call(&app, page(r.location(), Some(&a))).await;
    let flash = text_of(&r.body, "flash").expect("a flash").to_string();
    assert!(flash.starts_with("1 done; 2 failed: "), "{flash}");
    assert!(flash.contains(&format!("{}: ", ids[0])), "{flash}");
    assert!(flash.contains("nope: "), "{flash}");
    assert!(!flash.contains(&format!("{}: ", ids[2])), "{flash}");
    assert!(r.body.contains("class=\"flash error\" id=\"flash\""));
    // Bulk trigger with the chosen provider.
    let body = format!("action=trigger&provider=BANK_TRANSFER&ids={}&ids={}", ids[0], ids[1]);
    let r = call(&app, form(&format!("{BASE}/bulk"), Some(&a), &body)).await;
    assert_eq!(r.location(), format!("{BASE}?msg=2%20done"));
    for id in &ids[..2] {
        let p = service
            .get(&Actor::admin("t"), &PayoutId::new(id.as_str()))
            .await
            .unwrap();
        assert_eq!(p.status, PayoutStatus::Processing);
        assert_eq!(p.provider.map(|p| p.to_string()).as_deref(), Some("BANK_TRANSFER"));
    }
    // Nothing checked.
    let r = call(
        &app,
        form(
            &format!("{BASE}/bulk"),
            Some(&a),
            "action=approve&provider=STRIPE_CONNECT",
        ),
    )
    .await;
    assert!(
        r.location().contains("err=check%20at%20least%20one%20payout"),
        "{}",
        r.location()
    );
}

#[tokio::test]
async fn a_bulk_action_over_the_limit_is_refused_and_says_why() {
    let mut config = ServerConfig::new(SECRET);
    config.max_bulk = 2;
    let state = calculated_state(config).await;
    let service = state.service.clone();
    let app = router(state);
    let ids = ids(&service).await;
    let body = format!("action=approve&ids={}&ids={}&ids={}", ids[0], ids[1], ids[2]);
    let r = call(&app, form(&format!("{BASE}/bulk"), Some(&admin("admin-1")), &body)).await;
    let r = call(&app, page(r.location(), Some(&admin("admin-1")))).await;
    assert_eq!(text_of(&r.body, "flash"), Some("at most 2 payouts at once, 3 checked"));
    for id in &ids {
        assert_eq!(status_of(&service, id).await, PayoutStatus::Pending);
    }
}

/// Issue 14 item 5, on its own page since issue 17: the summary header counts the attention queue
/// on every page, and the Attention page lists each flagged payout, its status and why; empty, it
/// says nothing needs a person.
#[tokio::test]
async fn the_attention_page_lists_flagged_payouts() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let r = call(&app, page(BASE, Some(&a))).await;
    assert_eq!(text_of(&r.body, "attention-count"), Some("0"), "{}", r.body);
    let r = call(&app, page(ATTENTION, Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_locked_down(&r);
    assert!(r.body.contains("Nothing needs a person."), "{}", r.body);
    assert!(
        r.body
            .contains(r#"id="nav-attention" href="/dashboard/admin/attention" aria-current="page""#)
    );

    let id = ids(&service).await.remove(0);
    let admin_actor = Actor::admin("admin-1");
    let payout_id = PayoutId::new(&id);
    service.approve(&Actor::admin("admin-2"), &payout_id).await.unwrap();
    let p = service
        .trigger(&admin_actor, &payout_id, payout_core::domain::Provider::StripeConnect)
        .await
        .unwrap();
    let reference = p.provider_reference.unwrap();
    for (event, status) in [("evt_p", "PAID"), ("evt_r", "RETURNED")] {
        webhook(&service, &reference, event, status, "<b>bank</b> return").await;
    }
    for uri in [BASE, ATTENTION] {
        let r = call(&app, page(uri, Some(&a))).await;
        assert_eq!(text_of(&r.body, "attention-count"), Some("1"), "{uri}: {}", r.body);
    }
    let r = call(&app, page(ATTENTION, Some(&a))).await;
    assert_eq!(text_of(&r.body, "attention-total"), Some("1"), "{}", r.body);
    let row = text_of(&r.body, &format!("attention-{id}")).expect("a row for the payout");
    assert!(row.contains(&format!("href=\"{BASE}/{id}\"")), "{row}");
    let section = &r.body[r.body.find("id=\"attention\"").unwrap()..r.body.find("id=\"failed\"").unwrap()];
    assert!(section.contains("RETURNED"), "{section}");
    assert!(section.contains("came back after it was paid"), "{section}");
    assert!(section.contains("Dr. dr-a"), "the doctor's name: {section}");
    // A doctor gets no attention page.
    let r = call(&app, page(ATTENTION, Some(&doctor("dr-a")))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains(&id));
}

/// Approves and triggers payout `id` with `provider` (the simulated providers settle later: it
/// waits in PROCESSING); returns the provider's reference.
async fn send(service: &PayoutService, id: &str, provider: payout_core::domain::Provider) -> String {
    let payout_id = PayoutId::new(id);
    service.approve(&Actor::admin("admin-2"), &payout_id).await.unwrap();
    let p = service
        .trigger(&Actor::admin("admin-1"), &payout_id, provider)
        .await
        .unwrap();
    p.provider_reference.expect("a provider reference")
}

/// Issue 17 item 5: the summary header (count and amount per status, the attention count) and the
/// chart of paid totals per month, drawn on the server as SVG with the exact amounts as text.
#[tokio::test]
async fn the_summary_and_the_chart_show_totals_and_exact_paid_amounts() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let ids = ids(&service).await;
    // dr-a's 500.00 is paid, dr-b's 1,000.00 approved, dr-c's 1,500.00 still pending.
    let reference = send(&service, &ids[0], payout_core::domain::Provider::StripeConnect).await;
    webhook(&service, &reference, "evt_paid", "PAID", "").await;
    service
        .approve(&Actor::admin("admin-2"), &PayoutId::new(&ids[1]))
        .await
        .unwrap();
    let r = call(&app, page(BASE, Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for (status, count, amount) in [
        ("PENDING", "1", "1,500.00 KES"),
        ("APPROVED", "1", "1,000.00 KES"),
        ("PAID", "1", "500.00 KES"),
    ] {
        assert_eq!(text_of(&r.body, &format!("count-{status}")), Some(count), "{status}");
        assert_eq!(
            text_of(&r.body, &format!("amount-{status}-KES")),
            Some(amount),
            "{status}"
        );
        // Each total leads to the list of that status.
        let card = text_of(&r.body, &format!("total-{status}")).unwrap();
        assert!(card.contains(&format!("href=\"{BASE}?status={status}\"")), "{card}");
    }
    assert!(
        !r.body.contains("count-CANCELLED"),
        "statuses without payouts are left out"
    );
    assert_eq!(text_of(&r.body, "attention-count"), Some("0"));
    // The chart: one per currency, an image with a title and a description, labelled axes, the
    // exact amount on its bar and in the table under it; no script anywhere.
    assert!(
        r.body.contains(r#"<figure class="chart" id="chart-KES">"#),
        "{}",
        r.body
    );
    assert!(r.body.contains(r#"role="img""#));
    assert!(
        r.body
            .contains(r#"<title id="chart-KES-title">Paid per month in KES</title>"#)
    );
    assert!(r.body.contains(r#"<desc id="chart-KES-desc">"#));
    assert!(
        r.body.contains("Paid (KES)") && r.body.contains("Month created"),
        "labelled axes"
    );
    assert!(
        r.body.contains(">500.00</text>"),
        "the exact amount on the bar: {}",
        r.body
    );
    let data = &r.body[r.body.find("id=\"chart-KES-data\"").unwrap()..];
    assert!(data.contains("<td class=\"amount\">500.00 KES</td>"), "{data}");
    assert!(!r.body.contains("<script"));
    // The same figures as the engine's.
    let totals = service
        .totals(&Actor::admin("t"), &payout_core::store::TotalsFilter::default())
        .await
        .unwrap();
    assert_eq!(totals.iter().map(|t| t.count).sum::<u64>(), 3);
    // The attention page has the header too.
    let r = call(&app, page(ATTENTION, Some(&a))).await;
    assert_eq!(text_of(&r.body, "count-PAID"), Some("1"));
}

/// A directory whose names are markup, counting its calls.
struct MarkupNames {
    inner: payout_core::source::StaticDirectory,
    batches: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl payout_core::source::RecipientDirectory for MarkupNames {
    async fn recipient(
        &self,
        doctor_id: &payout_core::domain::DoctorId,
    ) -> payout_core::Result<Option<payout_core::domain::Recipient>> {
        self.inner.recipient(doctor_id).await
    }

    async fn recipients(
        &self,
        doctor_ids: &[payout_core::domain::DoctorId],
    ) -> payout_core::Result<Vec<payout_core::domain::Recipient>> {
        self.batches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut out = Vec::new();
        for id in doctor_ids {
            out.extend(self.inner.recipient(id).await?);
        }
        Ok(out)
    }
}

#[tokio::test]
async fn names_come_from_one_directory_call_per_page_and_are_escaped() {
    let mut doctors = doctors();
    doctors[1].name = "<img src=x onerror=alert(5)> & Co".into();
    let directory = Arc::new(MarkupNames {
        inner: payout_core::source::StaticDirectory::new(doctors),
        batches: std::sync::atomic::AtomicUsize::new(0),
    });
    let service = PayoutService::builder()
        .store(Arc::new(payout_core::memory::MemoryStore::new()))
        .consultations(Arc::new(payout_core::source::StaticConsultations::new(consultations())))
        .directory(directory.clone())
        .simulate_missing_providers(true)
        .build()
        .unwrap();
    let service = Arc::new(service);
    service
        .calculate_period(&Actor::system("test"), Some(jan()), &Default::default())
        .await
        .unwrap();
    let app = router(AppState::new(service.clone(), ServerConfig::new(SECRET)));
    let before = directory.batches.load(std::sync::atomic::Ordering::SeqCst);
    let r = call(&app, page(BASE, Some(&admin("admin-1")))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        directory.batches.load(std::sync::atomic::Ordering::SeqCst),
        before + 1,
        "one directory call for the page's doctors"
    );
    assert!(!r.body.contains("<img"), "{}", r.body);
    assert!(
        r.body
            .contains("<span class=\"doctor-name\">&lt;img src=x onerror=alert(5)&gt; &amp; Co</span>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("<span class=\"doctor-name\">Dr. dr-a</span>"));
}

#[tokio::test]
async fn paging_keeps_the_filters_and_the_page_size() {
    let (app, service) = setup().await;
    let a = admin("admin-1");
    let r = call(&app, page(&format!("{BASE}?status=PENDING&limit=2"), Some(&a))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(text_of(&r.body, "list-range"), Some("Rows 1\u{2013}2 of 3"));
    assert_eq!(r.body.matches("<tr id=\"row-").count(), 2);
    assert!(!r.body.contains("id=\"list-prev\""));
    let next = format!("{BASE}?status=PENDING&limit=2&skip=2");
    assert!(
        r.body
            .contains(&format!("id=\"list-next\" href=\"{}\"", next.replace('&', "&amp;"))),
        "{}",
        r.body
    );
    // The filters form keeps the page size, the page-size form keeps the filters.
    assert!(r.body.contains(r#"<input type="hidden" name="limit" value="2">"#));
    assert!(
        r.body
            .contains(r#"<input type="hidden" name="status" value="PENDING">"#)
    );
    let first: Vec<String> = ids(&service)
        .await
        .into_iter()
        .filter(|id| r.body.contains(&format!("id=\"row-{id}\"")))
        .collect();
    assert_eq!(first.len(), 2);
    let r = call(&app, page(&next, Some(&a))).await;
    assert_eq!(text_of(&r.body, "list-range"), Some("Rows 3\u{2013}3 of 3"));
    assert_eq!(r.body.matches("<tr id=\"row-").count(), 1);
    assert!(!r.body.contains("id=\"list-next\""));
    assert!(
        r.body
            .contains(&format!("id=\"list-prev\" href=\"{BASE}?status=PENDING&amp;limit=2\"")),
        "{}",
        r.body
    );
    let last = ids(&service).await.into_iter().find(|id| !first.contains(id)).unwrap();
    assert!(
        r.body.contains(&format!("id=\"row-{last}\"")),
        "the third payout is on page 2"
    );
    // An action from page 2 comes back to page 2.
    let back = format!(
        "<input type=\"hidden\" name=\"back\" value=\"{}\">",
        next.replace('&', "&amp;")
    );
    assert!(r.body.contains(&back), "{}", r.body);
    let r = call(
        &app,
        form(
            &format!("{BASE}/{last}/action"),
            Some(&a),
            &format!("action=approve&back={}", next.replace('&', "%26")),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().starts_with(&format!("{next}&msg=")), "{}", r.location());
    // A bad page size is said, and the default page shown.
    for bad in ["limit=0", "limit=5000", "skip=-1"] {
        let r = call(&app, page(&format!("{BASE}?{bad}"), Some(&a))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.contains("class=\"flash error\""), "{bad}: {}", r.body);
        assert_eq!(text_of(&r.body, "list-range"), Some("Rows 1\u{2013}3 of 3"), "{bad}");
    }
}

#[tokio::test]
async fn a_back_link_to_another_site_is_not_followed() {
    let (app, service) = setup().await;
    let id = ids(&service).await.remove(0);
    for back in [
        "https://evil.example/x",
        "//evil.example/dashboard/admin/payouts",
        "/elsewhere",
    ] {
        let body = format!("action=cancel&back={}", back.replace(':', "%3A").replace('/', "%2F"));
        let r = call(
            &app,
            form(&format!("{BASE}/{id}/action"), Some(&admin("admin-1")), &body),
        )
        .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert!(
            r.location().starts_with(&format!("{BASE}?")),
            "{back}: {}",
            r.location()
        );
    }
}

/// The attention queue's actions: an unknown outcome resolved with evidence, confirmed by a second
/// admin (four eyes), and a confirmed failure retried with another provider, each from the
/// Attention page and back to it.
#[tokio::test]
async fn attention_actions_resolve_confirm_and_retry() {
    use payout_core::domain::Provider;
    use payout_core::store::{FollowUp, PayoutChange};
    let (app, service) = setup().await;
    let (a1, a2) = (admin("admin-1"), admin("admin-2"));
    let ids = ids(&service).await;
    let (unknown, failed) = (ids[0].clone(), ids[1].clone());
    // `unknown` waits in PROCESSING, flagged for a person.
    send(&service, &unknown, Provider::MpesaB2c).await;
    let store = service.store().clone();
    let p = store.get(&PayoutId::new(&unknown)).await.unwrap();
    let mut flag = PayoutChange::of(&p, chrono::Utc::now());
    flag.follow_up =
        Some(FollowUp::check_at(chrono::Utc::now() + chrono::Duration::hours(1)).flagged("no answer <i>yet</i>"));
    store.apply(flag).await.unwrap();
    // `failed` failed for sure.
    let reference = send(&service, &failed, Provider::StripeConnect).await;
    webhook(&service, &reference, "evt_f", "FAILED", "account closed").await;
    assert_eq!(status_of(&service, &failed).await, PayoutStatus::Failed);

    let r = call(&app, page(ATTENTION, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "attention-total"), Some("1"), "{}", r.body);
    let row = &r.body[r.body.find(&format!("id=\"attention-{unknown}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("no answer &lt;i&gt;yet&lt;/i&gt;"),
        "escaped reason: {row}"
    );
    assert!(row.contains(&format!("id=\"resolve-note-{unknown}\"")), "{row}");
    assert!(row.contains(&format!("action=\"{BASE}/{unknown}/action\"")), "{row}");
    assert!(row.contains(&format!("name=\"back\" value=\"{ATTENTION}\"")), "{row}");
    assert!(
        r.body.contains(&format!("id=\"failed-{failed}\"")),
        "the failed payout listed"
    );
    assert_eq!(text_of(&r.body, "failed-total"), Some("1"));
    assert!(r.body.contains(&format!("id=\"retry-{failed}\"")));
    assert!(
        r.body
            .contains("<option value=\"STRIPE_CONNECT\" selected>STRIPE_CONNECT</option>"),
        "the failed attempt's provider is the default"
    );

    // Resolve with evidence (markup in it), back to the queue.
    let body = format!(
        "action=resolve&outcome=PAID&provider_reference=tr_1&note=%3Cscript%3Estatement%3C%2Fscript%3E&back={}",
        ATTENTION.replace('/', "%2F")
    );
    let r = call(&app, form(&format!("{BASE}/{unknown}/action"), Some(&a1), &body)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?msg=")),
        "{}",
        r.location()
    );
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(
        text_of(&r.body, "flash").unwrap().contains("resolution recorded"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<script"), "{}", r.body);
    let pending = text_of(&r.body, &format!("pending-{unknown}")).expect("the pending resolution");
    assert!(
        pending.contains("PAID asked by admin:admin-1: &lt;script&gt;statement"),
        "{pending}"
    );
    assert!(r.body.contains(&format!("id=\"confirm_resolution-{unknown}\"")));
    assert!(!r.body.contains(&format!("id=\"resolve-note-{unknown}\"")));
    // The same admin may not confirm it; another may.
    let confirm = format!("action=confirm_resolution&back={}", ATTENTION.replace('/', "%2F"));
    let r = call(&app, form(&format!("{BASE}/{unknown}/action"), Some(&a1), &confirm)).await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?err=")),
        "{}",
        r.location()
    );
    assert_eq!(status_of(&service, &unknown).await, PayoutStatus::Processing);
    let r = call(&app, form(&format!("{BASE}/{unknown}/action"), Some(&a2), &confirm)).await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?msg=")),
        "{}",
        r.location()
    );
    assert_eq!(status_of(&service, &unknown).await, PayoutStatus::Paid);
    let r = call(&app, page(ATTENTION, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "attention-total"), Some("0"), "settled: off the queue");

    // Retry the failed one with another provider.
    let body = format!(
        "action=retry&provider=BANK_TRANSFER&back={}",
        ATTENTION.replace('/', "%2F")
    );
    let r = call(&app, form(&format!("{BASE}/{failed}/action"), Some(&a1), &body)).await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?msg=")),
        "{}",
        r.location()
    );
    let p = service.get(&Actor::admin("t"), &PayoutId::new(&failed)).await.unwrap();
    assert_eq!(p.status, PayoutStatus::Processing);
    assert_eq!(p.provider, Some(Provider::BankTransfer));
    let attempts = service
        .attempts(&Actor::admin("t"), &PayoutId::new(&failed))
        .await
        .unwrap();
    assert_eq!(attempts.len(), 2, "a new attempt");
    assert_ne!(
        attempts[0].idempotency_key, attempts[1].idempotency_key,
        "with a new key"
    );
    // Retrying what has not failed is refused and said.
    let r = call(&app, form(&format!("{BASE}/{failed}/action"), Some(&a1), &body)).await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?err=")),
        "{}",
        r.location()
    );
    let r = call(&app, page(ATTENTION, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "failed-total"), Some("0"));
    assert!(r.body.contains("No payout has a confirmed failure."));
}

/// A host whose authenticator reads its own session (here an extension its middleware sets from
/// its cookie) signs its admins in to the dashboard with no token pasted; without a session, the
/// sign-in page offers the host's sign-in link.
#[tokio::test]
async fn a_hosts_own_session_signs_admins_in() {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use payout_server::auth::AuthError;
    use payout_server::{Authenticator, DashboardConfig, dashboard_router};

    #[derive(Clone)]
    struct HostSession(String);

    struct HostSessions;

    #[async_trait::async_trait]
    impl Authenticator for HostSessions {
        async fn authenticate(&self, request: &http::request::Parts) -> Result<Actor, AuthError> {
            match request.extensions.get::<HostSession>() {
                Some(s) if s.0.starts_with("admin-") => Ok(Actor::admin(s.0.as_str())),
                Some(s) => Ok(Actor::doctor(s.0.as_str())),
                None => Err(AuthError::Missing),
            }
        }
    }

    async fn host_sessions(mut request: Request, next: Next) -> axum::response::Response {
        let session = request
            .headers()
            .get("cookie")
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').find_map(|kv| kv.trim().strip_prefix("host_session=")))
            .map(|s| HostSession(s.to_string()));
        if let Some(s) = session {
            request.extensions_mut().insert(s);
        }
        next.run(request).await
    }

    let state = calculated_state(ServerConfig::with_authenticator(HostSessions)).await;
    let service = state.service.clone();
    let config = DashboardConfig::mounted_at("/payouts").with_sign_in_link("Clinic <sign-in>", "/login");
    let app = axum::Router::new()
        .nest("/payouts", dashboard_router(state, config))
        .layer(middleware::from_fn(host_sessions));
    let with_session = |uri: &str, session: &str| {
        Request::get(uri)
            .header("cookie", format!("host_session={session}"))
            .body(Body::empty())
            .unwrap()
    };
    let list = "/payouts/dashboard/admin/payouts";
    let r = call(&app, with_session(list, "admin-7")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("id=\"payouts\""));
    assert_eq!(text_of(&r.body, "signed-in-as"), Some("admin:admin-7"));
    assert!(!r.body.contains("id=\"sign-out\""), "the host ends its own sessions");
    // Every link is under the host's prefix.
    assert!(
        r.body
            .contains(r#"id="nav-attention" href="/payouts/dashboard/admin/attention""#)
    );
    assert!(r.body.contains(r#"action="/payouts/dashboard/admin/payouts/bulk""#));
    // Its actions act as that admin.
    let id = ids(&service).await.remove(0);
    let mut req = form(&format!("{list}/{id}/action"), None, "action=approve");
    req.headers_mut()
        .insert("cookie", "host_session=admin-7".parse().unwrap());
    let r = call(&app, req).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let p = service.get(&Actor::admin("t"), &PayoutId::new(&id)).await.unwrap();
    assert_eq!(p.approved_by.as_deref(), Some("admin:admin-7"));
    // A doctor's session gets no admin page; no session gets the sign-in page with the host's link.
    let r = call(&app, with_session(list, "dr-a")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&app, page(list, None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body
            .contains(r#"<ul id="sign-in-links"><li><a href="/login">Clinic &lt;sign-in&gt;</a></li></ul>"#),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("id=\"token\""),
        "the paste-a-token form stays as a fallback"
    );
    assert!(r.body.contains("action=\"/payouts/dashboard/login\""));
}

const RUNS: &str = "/dashboard/admin/runs";

#[cfg(feature = "bank-files")]
fn form_post(uri: &str, token: &str, body: &str) -> Request<Body> {
    form(uri, Some(token), body)
}

/// Creates a run of every payout through the list's form, labelled `label`; returns its page's path.
async fn create_run(app: &axum::Router, token: &str, label: &str, filters: &str) -> String {
    let body = format!("label={}&{filters}", urlencoding(label));
    let r = call(app, form(RUNS, Some(token), &body)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location().starts_with(&format!("{RUNS}/")), "{}", r.location());
    assert!(r.location().contains("?msg="), "{}", r.location());
    r.location().split('?').next().unwrap().to_string()
}

fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Issue 17 item 5 for runs: the runs list and a run's page, with its exact totals, sections,
/// forms, doctors' names and escaped hold reasons and labels.
#[tokio::test]
async fn the_runs_list_and_a_run_page_show_exact_totals_sections_and_forms() {
    let (app, service) = setup().await;
    let (a1, a2) = (admin("admin-1"), admin("admin-2"));
    let ids = ids(&service).await;
    // The list page offers the form, carrying its filters.
    let r = call(&app, page(&format!("{BASE}?status=PENDING"), Some(&a1))).await;
    let create = &r.body[r.body.find("id=\"create-run\"").expect("the create-run form")..];
    assert!(
        create.contains(r#"<input type="hidden" name="status" value="PENDING">"#),
        "{create}"
    );
    // A filter matching nothing is refused, said on the list.
    let r = call(&app, form(RUNS, Some(&a1), "label=x&status=PAID")).await;
    assert!(
        r.location().starts_with(&format!("{BASE}?status=PAID&err=")),
        "{}",
        r.location()
    );
    // dr-b's payout held with a reason that is markup.
    service
        .hold(
            &Actor::admin("admin-2"),
            &PayoutId::new(&ids[1]),
            "<i>disputed</i> & co",
        )
        .await
        .unwrap();
    let run = create_run(&app, &a1, "<b>January</b>", "status=PENDING").await;
    let r = call(&app, page(&run, Some(&a1))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains("<b>January"), "the label is escaped");
    assert_eq!(text_of(&r.body, "run-label"), Some("&lt;b&gt;January&lt;/b&gt;"));
    assert_eq!(text_of(&r.body, "run-count"), Some("3"));
    assert_eq!(
        text_of(&r.body, "nav-runs").map(|_| r
            .body
            .contains(r#"id="nav-runs" href="/dashboard/admin/runs" aria-current="page""#)),
        Some(true)
    );
    // Totals by status, provider and currency: 500 + 1,000 + 1,500 KES, all pending, none sent.
    for key in ["by-status-PENDING", "by-provider-none", "by-currency-KES"] {
        let row = text_of(&r.body, key).map(|_| {
            let at = r.body.find(&format!("id=\"{key}\"")).unwrap();
            &r.body[at..at + r.body[at..].find("</tr>").unwrap()]
        });
        let row = row.unwrap_or_else(|| panic!("{key}: {}", r.body));
        assert!(row.contains(r#"<td class="amount">3</td>"#), "{key}: {row}");
        assert!(row.contains(r#"<td class="amount">3,000.00 KES</td>"#), "{key}: {row}");
    }
    // Sections and forms.
    for id in [
        "totals",
        "run-actions",
        "funds",
        "held",
        "failed",
        "attention",
        "to-attention",
        "members",
        "results",
        "events",
        "run-approve",
        "run-trigger",
        "run-retry_failed",
        "run-trigger-provider",
        "funds-check",
    ] {
        assert!(r.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(r.body.contains(&format!("action=\"{run}/action\"")));
    assert_eq!(text_of(&r.body, "members-total"), Some("3"));
    assert_eq!(text_of(&r.body, "held-total"), Some("1"));
    assert_eq!(text_of(&r.body, "failed-total"), Some("0"));
    assert_eq!(text_of(&r.body, "attention-total"), Some("0"));
    assert!(r.body.contains("None of its payouts needs a person."));
    // The held payout with its reason, escaped, wherever it is listed; names beside ids.
    let held = &r.body[r.body.find(&format!("id=\"held-{}\"", ids[1])).expect("the held row")..];
    let held = &held[..held.find("</tr>").unwrap()];
    assert!(
        held.contains("On hold (PAYOUT): &lt;i&gt;disputed&lt;/i&gt; &amp; co"),
        "{held}"
    );
    assert!(held.contains("Dr. dr-b"), "{held}");
    assert!(held.contains(&format!("id=\"release-held-{}\"", ids[1])), "{held}");
    assert!(!r.body.contains("<i>disputed"));
    let list = call(&app, page(BASE, Some(&a2))).await;
    let note = text_of(&list.body, &format!("hold-{}", ids[1])).unwrap();
    assert_eq!(note, "On hold (PAYOUT): &lt;i&gt;disputed&lt;/i&gt; &amp; co");
    // The runs list.
    let r = call(&app, page(RUNS, Some(&a2))).await;
    assert_eq!(r.status, StatusCode::OK);
    // The calculation made a run of its own; ours is the newest, listed first.
    assert_eq!(text_of(&r.body, "runs-total"), Some("2"));
    assert!(r.body.contains("<td>CALCULATION</td>") && r.body.contains("<td>SELECTION</td>"));
    let run_id = run.rsplit('/').next().unwrap();
    assert_eq!(text_of(&r.body, &format!("run-count-{run_id}")), Some("3"));
    assert_eq!(
        text_of(&r.body, &format!("run-{run_id}-PENDING")),
        Some("PENDING 3: 3,000.00 KES")
    );
    assert!(
        r.body
            .contains(&format!("href=\"{run}\">&lt;b&gt;January&lt;/b&gt;</a>")),
        "{}",
        r.body
    );
    #[cfg(feature = "bank-files")]
    {
        let run_page = call(&app, page(&run, Some(&a1))).await;
        let form = &run_page.body[run_page.body.find("id=\"bank-files\"").expect("the bank file form")..];
        assert!(
            form.contains(&format!(
                "action=\"/api/admin/runs/{}/bank-file\"",
                run.rsplit('/').next().unwrap()
            )),
            "{form}"
        );
        assert!(form.contains("<option value=\"pain001\">"), "{form}");
        assert!(form.contains("id=\"bank-file-settle\""), "{form}");
        // A settlement of a file that is not there, or with nothing returned, is refused and said.
        let settle = |body: &str| form_post(&format!("{run}/action"), &a1, body);
        let r = call(&app, settle("action=settle_bank_file&file=nope&outcome=all_paid")).await;
        assert!(r.location().starts_with(&format!("{run}?err=")), "{}", r.location());
        let r = call(
            &app,
            settle("action=settle_bank_file&file=nope&outcome=returned&returned="),
        )
        .await;
        assert!(r.location().starts_with(&format!("{run}?err=")), "{}", r.location());
    }
    // An unknown run is a 404 page; a doctor is refused.
    assert_eq!(
        call(&app, page(&format!("{RUNS}/no-such-run"), Some(&a1))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, page(&run, Some(&doctor("dr-a")))).await.status,
        StatusCode::FORBIDDEN
    );
}

/// The run's actions through its forms: Approve all, Trigger (each doctor's method, then a
/// provider), the funds check, Retry failed; the reports' counts are flashed and the results and
/// events listed.
#[tokio::test]
async fn run_actions_approve_trigger_and_retry_failed_through_the_forms() {
    let (app, service) = setup().await;
    let a1 = admin("admin-1");
    let ids = ids(&service).await;
    let run = create_run(&app, &a1, "Jan", "").await;
    let back = format!("back={}", urlencoding(&run));
    let act = |body: &str| form(&format!("{run}/action"), Some(&a1), body);

    let r = call(&app, act(&format!("action=approve&{back}"))).await;
    assert!(r.location().starts_with(&format!("{run}?msg=")), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert_eq!(
        text_of(&r.body, "flash"),
        Some("APPROVE: 3 considered, 3 ok, 0 failed (0 on hold, 0 without a method)")
    );
    for id in &ids {
        assert_eq!(status_of(&service, id).await, PayoutStatus::Approved);
    }
    // The funds check on request: what a trigger with Stripe would need.
    let r = call(&app, page(&format!("{run}?funds=1&provider=STRIPE_CONNECT"), Some(&a1))).await;
    assert!(
        text_of(&r.body, "funds-plan").unwrap().starts_with("3 of 3 approved"),
        "{}",
        r.body
    );
    let line = &r.body[r.body.find("id=\"funds-STRIPE_CONNECT-KES\"").expect("the funds line")..];
    assert!(line.contains("<td class=\"amount\">3,000.00 KES</td>"), "{line}");
    assert!(
        !call(&app, page(&run, Some(&a1))).await.body.contains("funds-list"),
        "only on request"
    );

    // The doctors have details for several methods and no preferred one: nothing is sent.
    let r = call(&app, act(&format!("action=trigger&provider=&{back}"))).await;
    assert!(r.location().starts_with(&format!("{run}?err=")), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(
        text_of(&r.body, "flash")
            .unwrap()
            .starts_with("TRIGGER: 3 considered, 0 ok, 3 failed (0 on hold, 3 without a method)"),
        "{}",
        r.body
    );
    assert_eq!(status_of(&service, &ids[0]).await, PayoutStatus::Approved);
    let r = call(&app, act(&format!("action=trigger&provider=NOPE&{back}"))).await;
    assert!(r.location().contains("err=choose%20a%20provider"), "{}", r.location());
    let r = call(&app, act(&format!("action=trigger&provider=STRIPE_CONNECT&{back}"))).await;
    assert!(r.location().starts_with(&format!("{run}?msg=")), "{}", r.location());
    for id in &ids {
        assert_eq!(status_of(&service, id).await, PayoutStatus::Processing);
    }
    // One fails for sure; Retry failed sends it again.
    let p = service.get(&Actor::admin("t"), &PayoutId::new(&ids[0])).await.unwrap();
    webhook(
        &service,
        p.provider_reference.as_deref().unwrap(),
        "evt_f",
        "FAILED",
        "closed",
    )
    .await;
    let r = call(&app, page(&run, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "failed-total"), Some("1"));
    assert!(text_of(&r.body, "by-status-PROCESSING").is_some(), "{}", r.body);
    assert_eq!(
        text_of(&r.body, "attention-total"),
        Some("0"),
        "a failure is not flagged"
    );
    assert!(r.body.contains(&format!("id=\"retry-failed-{}\"", ids[0])));
    assert!(r.body.contains("id=\"by-provider-STRIPE_CONNECT\""), "{}", r.body);
    let r = call(&app, act(&format!("action=retry_failed&{back}"))).await;
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert_eq!(
        text_of(&r.body, "flash"),
        Some("RETRY_FAILED: 1 considered, 1 ok, 0 failed (0 on hold, 0 without a method)")
    );
    assert_eq!(status_of(&service, &ids[0]).await, PayoutStatus::Processing);
    // 3 approvals, 3 refused and 3 sent triggers, 1 retry.
    assert_eq!(text_of(&r.body, "results-total"), Some("10"));
    let events = text_of(&r.body, "events-list")
        .map(|_| &r.body[r.body.find("id=\"events-list\"").unwrap()..])
        .unwrap();
    for action in ["CREATE", "APPROVE", "TRIGGER", "RETRY_FAILED"] {
        assert!(events.contains(&format!("<td>{action}</td>")), "{action}");
    }
    // The results page shows the latest ones by default, and pages back.
    let r = call(&app, page(&format!("{run}?rlimit=4"), Some(&a1))).await;
    assert_eq!(
        text_of(&r.body, "results-range"),
        Some("Rows 7\u{2013}10 of 10"),
        "{}",
        r.body
    );
    assert!(r.body.contains("id=\"results-prev\""));
}

/// Holds from the dashboard: a payout held and released (four eyes: not by the admin who held
/// it), a held payout not triggered, a doctor held and released from the payout page and the
/// Attention page; every refusal flashed.
#[tokio::test]
async fn hold_and_release_through_the_forms_with_four_eyes() {
    let (app, service) = setup().await;
    let (a1, a2) = (admin("admin-1"), admin("admin-2"));
    let ids = ids(&service).await;
    let id = &ids[0];
    let action = format!("{BASE}/{id}/action");
    let r = call(&app, page(&format!("{BASE}/{id}"), Some(&a1))).await;
    assert!(
        r.body.contains("id=\"hold\"") && r.body.contains("id=\"hold-reason\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("id=\"hold-doctor\""));
    // A reason is required.
    let r = call(&app, form(&action, Some(&a1), "action=hold&reason=")).await;
    assert!(r.location().contains("?err="), "{}", r.location());
    let r = call(
        &app,
        form(&action, Some(&a1), "action=hold&reason=%3Cb%3Ebank%3C%2Fb%3E%20check"),
    )
    .await;
    assert!(r.location().contains("?msg="), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert_eq!(text_of(&r.body, "flash"), Some(format!("{id} on hold").as_str()));
    let note = text_of(&r.body, &format!("hold-{id}")).unwrap();
    assert_eq!(note, "On hold (PAYOUT): &lt;b&gt;bank&lt;/b&gt; check");
    assert!(r.body.contains("id=\"release\""));
    // Held: approved, but not triggered.
    service
        .approve(&Actor::admin("admin-2"), &PayoutId::new(id))
        .await
        .unwrap();
    let r = call(&app, form(&action, Some(&a1), "action=trigger&provider=MPESA_B2C")).await;
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(text_of(&r.body, "flash").unwrap().contains("bank"), "{}", r.body);
    assert_eq!(status_of(&service, id).await, PayoutStatus::Approved);
    // Four eyes: the admin who held it may not release it; another may.
    let r = call(&app, form(&action, Some(&a1), "action=release")).await;
    assert!(r.location().contains("?err="), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(text_of(&r.body, "flash").unwrap().contains("four eyes"), "{}", r.body);
    assert!(
        service
            .get(&Actor::admin("t"), &PayoutId::new(id))
            .await
            .unwrap()
            .active_hold()
            .is_some()
    );
    let r = call(&app, form(&action, Some(&a2), "action=release")).await;
    assert!(r.location().contains("?msg="), "{}", r.location());
    assert!(
        service
            .get(&Actor::admin("t"), &PayoutId::new(id))
            .await
            .unwrap()
            .active_hold()
            .is_none()
    );

    // A doctor's hold from the payout page, back to it; listed on the Attention page.
    let dr_c = &ids[2];
    let back = format!("back={}", urlencoding(&format!("{BASE}/{dr_c}")));
    let r = call(
        &app,
        form(
            "/dashboard/admin/doctors/dr-c/hold",
            Some(&a1),
            &format!("action=hold&reason=audit%20%26%20%3Ci%3E&{back}"),
        ),
    )
    .await;
    assert!(
        r.location().starts_with(&format!("{BASE}/{dr_c}?msg=")),
        "{}",
        r.location()
    );
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert_eq!(text_of(&r.body, "flash"), Some("doctor dr-c on hold; 1 payouts held"));
    assert!(
        text_of(&r.body, &format!("hold-{dr_c}"))
            .unwrap()
            .contains("On hold (DOCTOR): audit &amp; &lt;i&gt;")
    );
    assert!(r.body.contains("id=\"release-doctor\""));
    let r = call(
        &app,
        form(
            "/dashboard/admin/doctors/dr-c/hold",
            Some(&a1),
            "action=hold&reason=again",
        ),
    )
    .await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?err=")),
        "already held: {}",
        r.location()
    );
    let r = call(&app, page(ATTENTION, Some(&a2))).await;
    assert_eq!(text_of(&r.body, "held-doctors-total"), Some("1"));
    let row = &r.body[r.body.find("id=\"held-doctor-dr-c\"").unwrap()..];
    assert!(
        row.contains("audit &amp; &lt;i&gt;") && row.contains("id=\"release-doctor-dr-c\""),
        "{row}"
    );
    let release = format!("action=release&back={}", urlencoding(ATTENTION));
    let r = call(&app, form("/dashboard/admin/doctors/dr-c/hold", Some(&a1), &release)).await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?err=")),
        "four eyes: {}",
        r.location()
    );
    let r = call(&app, form("/dashboard/admin/doctors/dr-c/hold", Some(&a2), &release)).await;
    assert!(
        r.location().starts_with(&format!("{ATTENTION}?msg=")),
        "{}",
        r.location()
    );
    let r = call(&app, page(r.location(), Some(&a2))).await;
    assert_eq!(
        text_of(&r.body, "flash"),
        Some("doctor dr-c released; 1 payouts released")
    );
    assert_eq!(text_of(&r.body, "held-doctors-total"), Some("0"));
    // A cross-site hold changes nothing.
    let r = call(
        &app,
        Request::post("/dashboard/admin/doctors/dr-a/hold")
            .header("host", "localhost")
            .header("origin", "http://evil.example")
            .header("cookie", cookie(&a1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("action=hold&reason=x"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// A store that records the name of every call it answers, over the in-memory store.
struct CountingStore {
    inner: payout_core::memory::MemoryStore,
    calls: std::sync::Mutex<Vec<&'static str>>,
}

impl CountingStore {
    fn note(&self, name: &'static str) {
        self.calls.lock().unwrap().push(name);
    }

    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

mod counting {
    use payout_core::Result;
    use payout_core::domain::*;
    use payout_core::money::Currency;
    use payout_core::provider::EventReference;
    use payout_core::store::*;

    use super::CountingStore;

    // `async_trait` sees the whole impl, so the macro writes it all.
    macro_rules! delegate {
        ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
            #[async_trait::async_trait]
            impl PayoutStore for CountingStore {
                $(
                    async fn $name(&self $(, $arg: $ty)*) -> $ret {
                        self.note(stringify!($name));
                        self.inner.$name($($arg),*).await
                    }
                )*

                fn stream(&self, filter: PayoutFilter) -> futures::stream::BoxStream<'static, Result<Payout>> {
                    self.note("stream");
                    self.inner.stream(filter)
                }

                fn bulk(&self) -> Option<std::sync::Arc<dyn BulkPayoutStore>> {
                    None
                }
            }
        };
    }

    delegate! {
            fn create_period(&self, batch: PeriodBatch) -> Result<PeriodBatchOutcome>;
            fn create_payout(&self, new: NewPayout) -> Result<Payout>;
            fn get(&self, id: &PayoutId) -> Result<Payout>;
            fn list(&self, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage>;
            fn items(&self, id: &PayoutId) -> Result<Vec<PayoutItem>>;
            fn apply(&self, change: PayoutChange) -> Result<Payout>;
            fn held_consultations(&self, appointment_ids: &[String]) -> Result<Vec<HeldConsultation>>;
            fn clawbacks_due(&self, appointment_ids: &[String]) -> Result<Vec<ClawbackDue>>;
            fn attempts(&self, id: &PayoutId) -> Result<Vec<PayoutAttempt>>;
            fn find_attempt(&self, provider: Provider, reference: &EventReference) -> Result<Option<PayoutAttempt>>;
            fn batch_attempts(&self, provider: Provider, batch_id: &str) -> Result<Vec<PayoutAttempt>>;
            fn webhook_event_seen(&self, provider: Provider, event_id: &str) -> Result<bool>;
            fn audit_trail(&self, id: &PayoutId) -> Result<Vec<AuditEntry>>;
            fn claim_checks(&self, claim: &CheckClaim) -> Result<Vec<ClaimedCheck>>;
            fn finish_checks(&self, done: &[CheckDone]) -> Result<Vec<bool>>;
            fn check_state(&self, id: &PayoutId) -> Result<CheckState>;
            fn attention(&self, page: &Page) -> Result<AttentionPage>;
            fn run_attention(&self, run: &RunId, page: &Page) -> Result<AttentionPage>;
            fn open_carry_overs(&self, before: chrono::NaiveDate) -> Result<Vec<CarryOver>>;
            fn create_run(&self, run: NewRun, payouts: &[PayoutId]) -> Result<RunSummary>;
            fn run(&self, id: &RunId) -> Result<RunSummary>;
            fn runs(&self, page: &Page) -> Result<RunPage>;
            fn record_run_results(&self, run: &RunId, results: &[RunResult]) -> Result<()>;
            fn run_results(&self, run: &RunId, page: &Page) -> Result<RunResultPage>;
            fn record_run_event(&self, event: RunEvent) -> Result<()>;
            fn run_events(&self, run: &RunId) -> Result<Vec<RunEvent>>;
            fn set_funds_override(&self, run: &RunId, expected: Option<FundsOverride>, new: FundsOverride) -> Result<Run>;
            fn doctor_holds(&self, ids: &[DoctorId]) -> Result<Vec<DoctorHold>>;
            fn all_doctor_holds(&self, page: &Page) -> Result<DoctorHoldPage>;
            fn place_doctor_hold(&self, hold: DoctorHold) -> Result<()>;
            fn release_doctor_hold(&self, doctor: &DoctorId) -> Result<DoctorHold>;
            fn totals(&self, filter: &TotalsFilter) -> Result<Vec<StatusTally>>;
            fn paid_by_month(&self, currency: Option<Currency>, from: chrono::NaiveDate) -> Result<Vec<MonthTotal>>;
    }
}

/// Issue 17 item 4 for the dashboard: a run's page reads a bounded set of store calls (the run's
/// tallies, one page of each list, its results and events), the same for a run of 3 payouts as
/// for one of 303, and never streams or scans the run's members; the funds check, which plans
/// every approved member, is made only when asked for.
#[tokio::test]
async fn a_run_page_makes_the_same_few_store_calls_whatever_the_runs_size() {
    let store = Arc::new(CountingStore {
        inner: payout_core::memory::MemoryStore::new(),
        calls: Default::default(),
    });
    let service = service_over(store.clone());
    service
        .calculate_period(
            &Actor::system("test"),
            Some(jan()),
            &payout_core::service::CalculationPolicy::default(),
        )
        .await
        .unwrap();
    let app = router(AppState::new(service.clone(), ServerConfig::new(SECRET)));
    let a = admin("admin-1");
    let small = create_run(&app, &a, "small", "").await;
    for i in 0..300 {
        service
            .create_manual(
                &Actor::admin("admin-9"),
                ManualPayout {
                    doctor_id: ["dr-a", "dr-b", "dr-c"][i % 3].into(),
                    amount: Money::parse("1.25", Currency::KES).unwrap(),
                    period: None,
                    notes: None,
                },
            )
            .await
            .unwrap();
    }
    let large = create_run(&app, &a, "large", "").await;
    let mut seen = Vec::new();
    for run in [&small, &large] {
        store.take();
        let r = call(&app, page(run, Some(&a))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let mut calls = store.take();
        calls.sort_unstable();
        seen.push(calls);
    }
    assert_eq!(
        text_of(&call(&app, page(&large, Some(&a))).await.body, "run-count"),
        Some("303")
    );
    assert_eq!(seen[0], seen[1], "the same calls for 3 and for 303 payouts");
    assert_eq!(
        seen[0],
        [
            "list",
            "list",
            "list",
            "run",
            "run",
            "run",
            "run",
            "run_attention",
            "run_events",
            "run_results"
        ],
        "the run's tallies (once per read), one page of each of its three lists and of its flagged payouts, its results and events"
    );
    // The funds check plans every approved member: only on request.
    store.take();
    call(&app, page(&format!("{large}?funds=1"), Some(&a))).await;
    assert!(store.take().contains(&"list"));
}

/// Issue 17 ("which payouts are held, failed or need attention") on the run's page: its payouts on
/// the attention queue, oldest flag first, each with why (escaped), since when, a link to it and
/// what can be done from here; a link to the whole queue; another run shows only its own.
#[tokio::test]
async fn a_run_page_lists_its_payouts_that_need_attention() {
    use payout_core::domain::Provider;
    use payout_core::store::{FollowUp, PayoutChange};
    let (app, service) = setup().await;
    let a1 = admin("admin-1");
    let ids = ids(&service).await;
    // dr-b's payout in a run of its own, dr-a's in another, all three in a third.
    let run = create_run(&app, &a1, "B", "doctor=dr-b").await;
    let other = create_run(&app, &a1, "A", "doctor=dr-a").await;
    let both = create_run(&app, &a1, "All", "").await;
    for id in &ids {
        send(&service, id, Provider::StripeConnect).await;
    }
    // dr-a's flagged by reconciliation two hours ago (in `other` and `both` only).
    let store = service.store().clone();
    let flag = |id: &str, reason: &str, hours: i64| {
        let store = store.clone();
        let (id, reason) = (PayoutId::new(id), reason.to_string());
        async move {
            let p = store.get(&id).await.unwrap();
            let at = chrono::Utc::now() - chrono::Duration::hours(hours);
            let mut change = PayoutChange::of(&p, at);
            change.follow_up =
                Some(FollowUp::check_at(chrono::Utc::now() + chrono::Duration::hours(1)).flagged(reason));
            store.apply(change).await.unwrap();
        }
    };
    flag(&ids[0], "no answer from Stripe", 2).await;
    // dr-b's flagged an hour ago with a reason that is markup; dr-c's is paid: not flagged.
    flag(&ids[1], "no answer <i>yet</i>", 1).await;
    let c = service.get(&Actor::admin("t"), &PayoutId::new(&ids[2])).await.unwrap();
    webhook(&service, c.provider_reference.as_deref().unwrap(), "evt_c", "PAID", "").await;

    let r = call(&app, page(&run, Some(&a1))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(text_of(&r.body, "run-count"), Some("1"), "dr-b's only");
    assert_eq!(text_of(&r.body, "attention-total"), Some("1"), "{}", r.body);
    let row = &r.body[r
        .body
        .find(&format!("id=\"attention-{}\"", ids[1]))
        .expect("dr-b's row")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("no answer &lt;i&gt;yet&lt;/i&gt;"),
        "escaped reason: {row}"
    );
    assert!(!r.body.contains("<i>yet"));
    assert!(
        row.contains(&format!("href=\"{BASE}/{}\"", ids[1])),
        "a link to it: {row}"
    );
    assert!(row.contains("Dr. dr-b"), "the doctor's name: {row}");
    assert!(row.contains(" UTC</td>"), "since when: {row}");
    assert!(row.contains("PROCESSING"), "{row}");
    assert!(
        row.contains(&format!("id=\"resolve-note-attention-{}\"", ids[1])),
        "resolve it from here: {row}"
    );
    assert!(row.contains(&format!("name=\"back\" value=\"{run}\"")), "{row}");
    assert!(
        !r.body.contains(&format!("id=\"attention-{}\"", ids[0])),
        "dr-a's is not in this run"
    );
    assert!(
        r.body
            .contains(&format!("<a href=\"{ATTENTION}\" id=\"to-attention\">")),
        "a link to the whole queue"
    );

    // The run of all three: dr-a's (older flag) first, then dr-b's; dr-c's paid is not listed.
    let r = call(&app, page(&both, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "attention-total"), Some("2"), "{}", r.body);
    let first = r
        .body
        .find(&format!("id=\"attention-{}\"", ids[0]))
        .expect("dr-a's row");
    let second = r
        .body
        .find(&format!("id=\"attention-{}\"", ids[1]))
        .expect("dr-b's row");
    assert!(first < second, "oldest flag first");
    assert!(!r.body.contains(&format!("id=\"attention-{}\"", ids[2])));
    let r = call(&app, page(&other, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "attention-total"), Some("1"));
    assert!(r.body.contains("no answer from Stripe"));
    // Settled, it leaves the run's list.
    let b = service.get(&Actor::admin("t"), &PayoutId::new(&ids[1])).await.unwrap();
    webhook(&service, b.provider_reference.as_deref().unwrap(), "evt_b", "PAID", "").await;
    let r = call(&app, page(&run, Some(&a1))).await;
    assert_eq!(text_of(&r.body, "attention-total"), Some("0"));
}

/// Stripe's balance as a test sets it.
struct StripeBalance(Money);

#[async_trait::async_trait]
impl payout_core::funds::BalanceSource for StripeBalance {
    fn provider(&self) -> payout_core::domain::Provider {
        payout_core::domain::Provider::StripeConnect
    }
    async fn balance(&self) -> Result<payout_core::funds::BalanceAnswer, payout_core::ProviderError> {
        Ok(payout_core::funds::BalanceAnswer::Known {
            available: vec![self.0],
            as_of: chrono::Utc::now(),
        })
    }
}

/// Issue 17's funds gate on the run's page: a shortfall offers a form to request an override with
/// a reason; the override's state (who asked, when, why; who confirmed, when) is shown; the admin
/// who asked is told plainly they cannot confirm it (and is refused if they try), another admin
/// confirms it, and the trigger then sends. Refusals are flashed; a cross-site post changes nothing.
#[tokio::test]
async fn a_shortfall_is_overridden_from_the_run_page_by_two_admins() {
    use payout_core::domain::Provider;
    use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
    use payout_core::source::{StaticConsultations, StaticDirectory};
    // The calculated payouts (3,000.00 KES) and Stripe holding 2,999.99 KES.
    let mut b = PayoutService::builder()
        .store(Arc::new(payout_core::memory::MemoryStore::new()))
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(Arc::new(StaticDirectory::new(doctors())))
        .balance_source(Arc::new(StripeBalance(Money::parse("2999.99", Currency::KES).unwrap())));
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM_TOKEN),
        ));
    }
    let service = Arc::new(b.build().unwrap());
    service
        .calculate_period(
            &Actor::system("test"),
            Some(jan()),
            &payout_core::service::CalculationPolicy::default(),
        )
        .await
        .unwrap();
    let app = router(AppState::new(service.clone(), ServerConfig::new(SECRET)));
    let (a1, a2) = (admin("admin-1"), admin("admin-2"));
    let run = create_run(&app, &a1, "Jan", "").await;
    let run_id = payout_core::domain::RunId::new(run.rsplit('/').next().unwrap());
    let action = format!("{run}/action");
    let checked = format!("{run}?funds=1&provider=STRIPE_CONNECT");
    let back = format!("back={}", urlencoding(&checked));
    let r = call(&app, form(&action, Some(&a1), &format!("action=approve&{back}"))).await;
    assert!(r.location().starts_with(&format!("{checked}&msg=")), "{}", r.location());
    let stored_override = || async {
        service
            .run_summary(&Actor::admin("t"), &run_id)
            .await
            .unwrap()
            .run
            .funds_override
    };

    // No check asked for: no override form; the check shows the shortfall and offers one.
    let r = call(&app, page(&run, Some(&a1))).await;
    assert!(!r.body.contains("override-request-form"), "only with the check");
    let r = call(&app, page(&checked, Some(&a1))).await;
    assert!(text_of(&r.body, "funds-blocked").is_some(), "{}", r.body);
    let request = &r.body[r.body.find("id=\"override-request-form\"").expect("the request form")..];
    let request = &request[..request.find("</form>").unwrap()];
    assert!(
        request.contains(r#"name="action" value="request_override""#),
        "{request}"
    );
    assert!(
        request.contains(r#"name="reason""#) && request.contains("required"),
        "{request}"
    );
    assert!(
        request.contains(r#"name="back" value="/dashboard/admin/runs/"#)
            && request.contains("funds=1&amp;provider=STRIPE_CONNECT"),
        "back to the check: {request}"
    );
    assert!(r.body.contains(&format!("action=\"{action}\"")));
    assert!(!r.body.contains("id=\"funds-override\""), "no override yet");
    // Trigger refused, said.
    let r = call(
        &app,
        form(
            &action,
            Some(&a1),
            &format!("action=trigger&provider=STRIPE_CONNECT&{back}"),
        ),
    )
    .await;
    assert!(r.location().starts_with(&format!("{checked}&err=")), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(
        text_of(&r.body, "flash").unwrap().contains("short by 0.01"),
        "{}",
        r.body
    );

    // A request needs a reason; a cross-site one is refused; neither writes anything.
    let r = call(
        &app,
        form(
            &action,
            Some(&a1),
            &format!("action=request_override&reason=%20&{back}"),
        ),
    )
    .await;
    assert!(r.location().contains("&err="), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert_eq!(
        text_of(&r.body, "flash"),
        Some("invalid input: a funds override needs a reason")
    );
    let mut evil = form(&action, Some(&a1), "action=request_override&reason=x");
    evil.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert_eq!(call(&app, evil).await.status, StatusCode::FORBIDDEN);
    assert_eq!(stored_override().await, None);

    // admin-1 requests it, with a reason that is markup.
    let body = format!(
        "action=request_override&reason={}&{back}",
        urlencoding("<b>top-up</b> lands at noon")
    );
    let r = call(&app, form(&action, Some(&a1), &body)).await;
    assert!(r.location().starts_with(&format!("{checked}&msg=")), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(
        text_of(&r.body, "flash")
            .unwrap()
            .starts_with("funds override requested")
    );
    assert!(
        text_of(&r.body, "override-state")
            .unwrap()
            .starts_with("Requested, waiting for a second admin")
    );
    assert!(
        text_of(&r.body, "override-requested")
            .unwrap()
            .starts_with("admin:admin-1 at "),
        "{}",
        r.body
    );
    assert_eq!(
        text_of(&r.body, "override-reason"),
        Some("&lt;b&gt;top-up&lt;/b&gt; lands at noon")
    );
    assert!(!r.body.contains("<b>top-up"));
    assert!(
        text_of(&r.body, "funds-blocked").is_some(),
        "a request alone does not unblock"
    );
    assert!(!r.body.contains("override-request-form"), "one override per run");
    // The requester is told plainly, and has no confirm button; forcing it is refused.
    assert_eq!(
        text_of(&r.body, "override-own"),
        Some("You requested this override, so you cannot confirm it: another admin must.")
    );
    assert!(!r.body.contains("override-confirm-form"));
    let r = call(
        &app,
        form(&action, Some(&a1), &format!("action=confirm_override&{back}")),
    )
    .await;
    assert!(r.location().contains("&err="), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(
        text_of(&r.body, "flash").unwrap().contains("second admin"),
        "{}",
        r.body
    );
    assert!(!stored_override().await.unwrap().is_confirmed());

    // admin-2 sees the confirm form, and confirms.
    let r = call(&app, page(&checked, Some(&a2))).await;
    assert!(text_of(&r.body, "override-own").is_none());
    let confirm = &r.body[r.body.find("id=\"override-confirm-form\"").expect("the confirm form")..];
    assert!(
        confirm.contains(r#"name="action" value="confirm_override""#),
        "{confirm}"
    );
    assert!(confirm.contains("id=\"override-confirm\""), "{confirm}");
    let r = call(
        &app,
        form(&action, Some(&a2), &format!("action=confirm_override&{back}")),
    )
    .await;
    assert!(r.location().starts_with(&format!("{checked}&msg=")), "{}", r.location());
    let r = call(&app, page(r.location(), Some(&a1))).await;
    assert!(
        text_of(&r.body, "flash")
            .unwrap()
            .starts_with("funds override confirmed")
    );
    assert!(text_of(&r.body, "override-state").unwrap().starts_with("Confirmed"));
    assert!(
        text_of(&r.body, "override-confirmed")
            .unwrap()
            .starts_with("admin:admin-2 at ")
    );
    assert!(text_of(&r.body, "funds-blocked").is_none());
    assert!(text_of(&r.body, "funds-overridden").is_some(), "{}", r.body);
    assert!(!r.body.contains("override-confirm-form") && !r.body.contains("override-own"));
    let r = call(
        &app,
        form(&action, Some(&a2), &format!("action=confirm_override&{back}")),
    )
    .await;
    assert!(r.location().contains("&err="), "confirmed once: {}", r.location());

    // The trigger now sends.
    let r = call(
        &app,
        form(
            &action,
            Some(&a1),
            &format!("action=trigger&provider=STRIPE_CONNECT&{back}"),
        ),
    )
    .await;
    assert!(r.location().starts_with(&format!("{checked}&msg=")), "{}", r.location());
    let r = call(&app, page(&run, Some(&a1))).await;
    let events = &r.body[r.body.find("id=\"events-list\"").unwrap()..];
    for action in ["FUNDS_OVERRIDE_REQUESTED", "FUNDS_OVERRIDE_CONFIRMED", "TRIGGER"] {
        assert!(events.contains(&format!("<td>{action}</td>")), "{action}");
    }
    assert!(text_of(&r.body, "by-status-PROCESSING").is_some());
}
