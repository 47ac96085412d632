//! The demo's development login (issue 17 item 5): offered on the dashboard's sign-in page only
//! where the demo runs with the public development secret, it signs in as one of its admins with
//! a short-lived token, and refuses anything else.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use payout_server::demo::{self, DEV_SECRET, DevLogin, dev_login};
use payout_server::{BearerJwt, ServerConfig};
use tower::ServiceExt;

const LIST: &str = "/dashboard/admin/payouts";
const DEV_LOGIN: &str = "/dashboard/dev-login";

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 10 << 20).await.unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn post(uri: &str, origin: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("host", "localhost")
        .header("origin", origin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(Body::empty()).unwrap()
}

async fn app_with_dev_login() -> axum::Router {
    let state = calculated_state(ServerConfig::new(DEV_SECRET)).await;
    let dev = DevLogin::for_demo(DEV_SECRET, "127.0.0.1:3000".parse().unwrap(), &[])
        .unwrap()
        .expect("offered with the development secret on loopback");
    demo::app_with_dev_login(state, Some(dev))
}

#[tokio::test]
async fn the_development_login_signs_in_as_a_listed_admin() {
    let app = app_with_dev_login().await;
    // The sign-in page links to it; its page offers the admins.
    let (status, _, body) = call(&app, get(LIST, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains(&format!("<a href=\"{DEV_LOGIN}\">{}</a>", dev_login::LINK_LABEL)),
        "{body}"
    );
    let (status, _, body) = call(&app, get(DEV_LOGIN, None)).await;
    assert_eq!(status, StatusCode::OK);
    for id in dev_login::DEV_ADMINS {
        assert!(
            body.contains(&format!("<option value=\"{id}\">{id}</option>")),
            "{body}"
        );
    }
    // Signing in: a cookie holding a token the demo's authenticator takes as that admin.
    let (status, headers, _) = call(&app, post(DEV_LOGIN, "http://localhost", "admin=dev-admin-2")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], LIST);
    let cookie = headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let token = pair.strip_prefix("payouts_token=").unwrap();
    let claims = BearerJwt::hs256(DEV_SECRET).verify(token).unwrap();
    assert_eq!(claims.sub, "dev-admin-2");
    let lifetime = claims.exp - chrono::Utc::now().timestamp();
    assert!(
        lifetime <= dev_login::DEV_TOKEN_TTL.as_secs() as i64,
        "short-lived: {lifetime}"
    );
    let (status, _, body) = call(&app, get(LIST, Some(&pair))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("<span id=\"signed-in-as\">admin:dev-admin-2</span>"),
        "{body}"
    );
    assert!(body.contains("id=\"payouts\""));
}

#[tokio::test]
async fn the_development_login_refuses_other_ids_and_other_sites() {
    let app = app_with_dev_login().await;
    for body in ["admin=root", "admin=", ""] {
        let (status, headers, page) = call(&app, post(DEV_LOGIN, "http://localhost", body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(headers.get("set-cookie").is_none(), "{body}");
        assert!(page.contains("choose one of the listed admins"), "{page}");
    }
    let (status, headers, _) = call(&app, post(DEV_LOGIN, "https://evil.example", "admin=dev-admin-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn without_the_development_secret_there_is_no_development_login() {
    // A secret of the host's own: not offered at all.
    assert!(
        DevLogin::for_demo("a-real-secret", "127.0.0.1:3000".parse().unwrap(), &[])
            .unwrap()
            .is_none()
    );
    // The demo's app without it: no route, no link.
    let state = calculated_state(ServerConfig::new(SECRET)).await;
    let app = demo::app(state);
    let (status, _, _) = call(&app, get(DEV_LOGIN, None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&app, post(DEV_LOGIN, "http://localhost", "admin=dev-admin-1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, body) = call(&app, get(LIST, None)).await;
    assert!(!body.contains(DEV_LOGIN), "{body}");
    assert!(!body.contains("sign-in-links"), "{body}");
}
