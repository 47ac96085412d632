//! Run with: `cargo run --example embed_axum`, then open
//! <http://127.0.0.1:3000/payouts/dashboard/admin/payouts> and paste the admin token it prints.
//!
//! `payouts` inside a host's own axum app: the host keeps its fallback, its `/healthz` and its
//! `/metrics`, and mounts the payouts API, the providers' webhooks and the admin dashboard under
//! `/payouts`. The library routers carry no fallback, health or metrics route, so nothing collides;
//! the dashboard is told where it and the API are mounted, so its links, forms, redirects and its
//! cookie's `Path` all stay under `/payouts`.
//!
//! The engine here runs on the in-memory store with simulated providers (no money moves); a host
//! passes its own store, consultations, directory and providers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Duration, Utc};
use payout_server::{AppState, DashboardConfig, ServerConfig, api_router, dashboard_router, webhook_router};
use payouts::memory::MemoryStore;
use payouts::prelude::*;
use payouts::simulated::{SimulatedProvider, SimulatedSettlement};
use payouts::source::{StaticConsultations, StaticDirectory};

/// The host's own state: here just a request counter for its own `/metrics`.
#[derive(Clone, Default)]
struct Host {
    requests: Arc<AtomicU64>,
}

/// The host's app with `payouts` mounted under `/payouts`.
fn app(payouts: AppState) -> Router {
    let mounted = DashboardConfig::mounted_at("/payouts");
    // Each payouts router carries its own state, so it nests into a router of the host's state.
    let payout_routes = api_router(payouts.clone())
        .merge(webhook_router(payouts.clone()))
        .merge(dashboard_router(payouts, mounted));
    let host = Host::default();
    Router::new()
        .route("/", get(|| async { "the host's home page" }))
        .route("/healthz", get(|| async { Json(serde_json::json!({"host": "ok"})) }))
        .route("/metrics", get(host_metrics))
        .nest("/payouts", payout_routes)
        .fallback(|| async { (StatusCode::NOT_FOUND, "the host's own 404") })
        .layer(middleware::from_fn_with_state(host.clone(), count_requests))
        .with_state(host)
}

async fn host_metrics(State(host): State<Host>) -> String {
    format!(
        "# TYPE host_requests_total counter\nhost_requests_total {}\n",
        host.requests.load(Ordering::Relaxed)
    )
}

async fn count_requests(State(host): State<Host>, request: Request, next: Next) -> Response {
    host.requests.fetch_add(1, Ordering::Relaxed);
    next.run(request).await.into_response()
}

/// The token simulated webhooks carry (`x-simulation-token`).
const SIMULATION_TOKEN: &str = "embed-example-simulation-token";

/// The engine over the in-memory store: one doctor with three consultations last month, calculated.
async fn payouts_state(token_secret: &str) -> Result<AppState, Box<dyn std::error::Error>> {
    let last_month = Period::previous_month(Utc::now());
    let consultations = (0..3)
        .map(|n| Consultation {
            appointment_id: format!("apt-{n}"),
            doctor_id: "dr-wanjiru".into(),
            completed_at: last_month.starts_at() + Duration::days(n + 1),
        })
        .collect::<Vec<_>>();
    let doctor = Recipient {
        doctor_id: "dr-wanjiru".into(),
        name: "Dr. Wanjiru Kamau".into(),
        email: "wanjiru@clinic.example".into(),
        mpesa_phone_number: Some("254712345678".into()),
        ..Default::default()
    };
    let mut builder = PayoutService::builder()
        .store(Arc::new(MemoryStore::new()))
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new([doctor])));
    for provider in Provider::ALL {
        builder = builder.provider(Arc::new(
            SimulatedProvider::new(provider)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIMULATION_TOKEN),
        ));
    }
    let service = Arc::new(builder.build()?);
    service
        .calculate_period(
            &Actor::system("monthly-calculation"),
            Some(last_month),
            &CalculationPolicy::default(),
        )
        .await?;
    Ok(AppState::new(service, ServerConfig::new(token_secret)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("NEXTAUTH_SECRET").unwrap_or_else(|_| payout_server::demo::DEV_SECRET.to_string());
    let state = payouts_state(&secret).await?;
    let admin = payout_server::Claims {
        sub: "admin-1".into(),
        role: payout_server::Role::Admin,
        doctor_id: None,
        exp: Utc::now().timestamp() + 3600,
    };
    println!(
        "admin token (one hour): {}",
        payout_server::JwtKey::new(&secret).sign(&admin)
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://{}/payouts/dashboard/admin/payouts", listener.local_addr()?);
    // The peer address feeds the payouts rate limits.
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The host app driven with `oneshot`: `cargo test --example embed_axum`.
    use super::*;
    use axum::body::Body;
    use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
    use tower::ServiceExt;

    const SECRET: &str = "embed-example-test-secret";

    fn admin_token() -> String {
        payout_server::JwtKey::new(SECRET).sign(&payout_server::Claims {
            sub: "admin-1".into(),
            role: payout_server::Role::Admin,
            doctor_id: None,
            exp: Utc::now().timestamp() + 600,
        })
    }

    async fn call(app: &Router, request: Request) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn get(uri: &str) -> Request {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    /// Every `href="…"` and `action="…"` on a page.
    fn targets(html: &str) -> Vec<String> {
        let mut out = Vec::new();
        for attr in ["href=\"", "action=\""] {
            for (i, _) in html.match_indices(attr) {
                let rest = &html[i + attr.len()..];
                out.push(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        out
    }

    #[tokio::test]
    async fn the_host_keeps_its_fallback_health_and_metrics() {
        let app = app(payouts_state(SECRET).await.unwrap());
        for path in ["/nope", "/payouts/nope", "/payouts/api/nope"] {
            let (status, _, body) = call(&app, get(path)).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::NOT_FOUND, "the host's own 404"),
                "{path}"
            );
        }
        let (status, _, body) = call(&app, get("/healthz")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"{"host":"ok"}"#));
        // The payouts routers bring no health or metrics routes of their own.
        for path in ["/payouts/healthz", "/payouts/metrics"] {
            assert_eq!(call(&app, get(path)).await.0, StatusCode::NOT_FOUND, "{path}");
        }
        let (status, _, body) = call(&app, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        // Six requests before, and this one.
        assert!(
            body.contains("host_requests_total 7"),
            "the host counts every request: {body}"
        );
        // The original paths at the root are the host's, not ours.
        assert_eq!(call(&app, get("/api/admin/payouts")).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_api_and_webhooks_answer_under_the_prefix() {
        let state = payouts_state(SECRET).await.unwrap();
        let service = state.service.clone();
        let app = app(state);
        let bearer = format!("Bearer {}", admin_token());
        let list = || {
            Request::get("/payouts/api/admin/payouts")
                .header("authorization", &bearer)
                .body(Body::empty())
                .unwrap()
        };
        let (status, _, body) = call(&app, list()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = listed["data"][0]["id"]
            .as_str()
            .expect("the calculated payout")
            .to_string();
        assert_eq!(
            call(&app, get("/payouts/api/admin/payouts")).await.0,
            StatusCode::UNAUTHORIZED
        );

        // Approve and trigger through the mounted API; the simulated M-Pesa leaves it PROCESSING.
        for action in [
            serde_json::json!({"action": "approve"}),
            serde_json::json!({"action": "trigger", "provider": "MPESA_B2C"}),
        ] {
            let request = Request::patch(format!("/payouts/api/admin/payouts/{id}"))
                .header("authorization", &bearer)
                .header("content-type", "application/json")
                .body(Body::from(action.to_string()))
                .unwrap();
            let (status, _, body) = call(&app, request).await;
            assert_eq!(status, StatusCode::OK, "{action}: {body}");
        }
        let payout = service
            .get(&Actor::admin("admin-1"), &PayoutId::new(id.as_str()))
            .await
            .unwrap();
        let reference = payout.provider_reference.clone().expect("a provider reference");

        // The provider's webhook, at the mounted path, settles it.
        let hook = serde_json::json!({"eventId": "evt-1", "reference": reference, "status": "PAID"});
        let request = Request::post("/payouts/api/webhooks/payouts")
            .header(payouts::simulated::SIMULATION_TOKEN_HEADER, SIMULATION_TOKEN)
            .header("x-simulated-provider", "MPESA_B2C")
            .header("content-type", "application/json")
            .body(Body::from(hook.to_string()))
            .unwrap();
        let (status, _, body) = call(&app, request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let payout = service.get(&Actor::admin("admin-1"), &payout.id).await.unwrap();
        assert_eq!(payout.status.to_string(), "PAID");
    }

    #[tokio::test]
    async fn the_dashboard_links_redirects_and_cookie_stay_under_the_prefix() {
        let app = app(payouts_state(SECRET).await.unwrap());
        let token = admin_token();

        // Signed out: the sign-in form posts to the mounted login.
        let (status, _, page) = call(&app, get("/payouts/dashboard/admin/payouts")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            targets(&page).contains(&"/payouts/dashboard/login".to_string()),
            "{page}"
        );

        // Signing in redirects to the mounted list and scopes the cookie to the prefix.
        let login = Request::post("/payouts/dashboard/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap();
        let (status, headers, _) = call(&app, login).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/payouts/dashboard/admin/payouts");
        let cookie = headers[SET_COOKIE].to_str().unwrap().to_string();
        assert!(cookie.contains("; Path=/payouts"), "{cookie}");
        assert!(!cookie.contains("Path=/;"), "{cookie}");
        let cookie_pair = cookie.split(';').next().unwrap().to_string();

        // Signed in: every link and form on the list and on a payout's page is under /payouts.
        let signed_in = |uri: &str| {
            Request::get(uri)
                .header(COOKIE, &cookie_pair)
                .body(Body::empty())
                .unwrap()
        };
        let (status, _, list) = call(&app, signed_in("/payouts/dashboard/admin/payouts")).await;
        assert_eq!(status, StatusCode::OK);
        let links = targets(&list);
        assert!(
            links.iter().any(|l| l.starts_with("/payouts/api/admin/payouts/export")),
            "{links:?}"
        );
        assert!(links.contains(&"/payouts/dashboard/logout".to_string()), "{links:?}");
        let detail = links
            .iter()
            .find(|l| {
                l.strip_prefix("/payouts/dashboard/admin/payouts/")
                    .is_some_and(|id| !id.is_empty() && id != "bulk" && !id.contains('/'))
            })
            .expect("a link to the payout's page")
            .clone();
        let (status, _, detail_page) = call(&app, signed_in(&detail)).await;
        assert_eq!(status, StatusCode::OK, "{detail}");
        for link in links.iter().chain(targets(&detail_page).iter()) {
            assert!(link.starts_with("/payouts/"), "{link} escapes the prefix");
        }

        // The export link works with the cookie the dashboard set (the cookie's Path covers the API).
        let export = links
            .iter()
            .find(|l| l.contains("/api/admin/payouts/export"))
            .unwrap()
            .replace("&amp;", "&");
        let (status, _, csv) = call(&app, signed_in(&export)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(csv.contains("dr-wanjiru"), "{csv}");

        // Signing out clears the same cookie and goes back to the mounted list.
        let logout = Request::post("/payouts/dashboard/logout").body(Body::empty()).unwrap();
        let (status, headers, _) = call(&app, logout).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers[LOCATION], "/payouts/dashboard/admin/payouts");
        let cleared = headers[SET_COOKIE].to_str().unwrap();
        assert!(
            cleared.contains("Path=/payouts;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
    }
}
