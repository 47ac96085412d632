//! End to end over real HTTP: the demo wiring on a SQLite file (sample doctors and consultations seeded into
//! host tables, last month calculated), served on a free port, walked through the seed's curl workflow.

mod common;

use common::{SECRET, SIM_TOKEN as SIM, admin, doctor, serve};
use payout_server::demo::{self, DemoConfig};
use serde_json::{Value, json};

struct Server {
    base: String,
    http: reqwest::Client,
    admin: String,
    _dir: tempfile::TempDir,
}

/// The demo on a SQLite file in `dir`, with sample data and without background reconciliation.
fn demo_config(dir: &tempfile::TempDir) -> DemoConfig {
    DemoConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("demo.db").display()),
        jwt_secret: SECRET.into(),
        simulation_token: SIM.into(),
        sample_data: true,
        reconcile_every: 0,
        reconcile_lease: None,
        four_eyes: true,
        approver_may_not_trigger: false,
        second_approval_above: Vec::new(),
        reversals: None,
        trusted_proxies: Default::default(),
        metrics_addr: None,
        shutdown_grace: demo::DEFAULT_SHUTDOWN_GRACE,
        events: Default::default(),
        platform_name: payout_server::DEFAULT_PLATFORM_NAME.into(),
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let running = demo::build(&demo_config(&dir)).await.unwrap();
    Server {
        base: serve(demo::app(running.state)).await,
        http: reqwest::Client::new(),
        admin: admin("admin-1"),
        _dir: dir,
    }
}

impl Server {
    /// A GET without a token (health, the OpenAPI document).
    async fn public(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// A request with the bearer token and, when given, a JSON body; the status and the JSON answer.
    async fn send(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn the_seed_curl_workflow_over_http() {
    let s = start().await;
    let a = s.admin.clone();
    // Review PENDING payouts: the demo seeded five doctors and calculated last month.
    let (status, pending) = s.get("/api/admin/payouts?status=PENDING", &a).await;
    assert_eq!(status, 200);
    assert_eq!(pending["pagination"]["total"], 5);
    let rows = pending["data"].as_array().unwrap();
    let wanjiru = rows.iter().find(|p| p["doctorId"] == "dr-wanjiru").unwrap();
    // Dr. Wanjiru has 4 completed sample consultations at 500 KES.
    assert_eq!(wanjiru["amountDue"], "2000.00");
    let id = wanjiru["id"].as_str().unwrap().to_string();
    let (_, items) = s.get(&format!("/api/admin/payouts/{id}/items"), &a).await;
    assert_eq!(items["data"].as_array().unwrap().len(), 4);

    // Approve, trigger with M-Pesa (simulated: no credentials), webhook -> PAID.
    let (status, body) = s
        .send(
            reqwest::Method::PATCH,
            &format!("/api/admin/payouts/{id}"),
            &a,
            Some(json!({"action": "approve"})),
        )
        .await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("APPROVED")));
    let (status, body) = s
        .send(
            reqwest::Method::PATCH,
            &format!("/api/admin/payouts/{id}"),
            &a,
            Some(json!({"action": "trigger", "provider": "MPESA_B2C"})),
        )
        .await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("PROCESSING")));
    let reference = body["data"]["providerReference"].as_str().unwrap().to_string();
    let hook = json!({"eventId": "sim-evt-1", "reference": reference, "status": "PAID"});
    let res = s
        .http
        .post(format!("{}/api/webhooks/mpesa-b2c", s.base))
        .header("x-simulation-token", SIM)
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (_, detail) = s.get(&format!("/api/admin/payouts/{id}"), &a).await;
    assert_eq!(detail["data"]["status"], "PAID");
    assert!(detail["data"]["notes"].as_str().unwrap().contains("PAID") || detail["data"]["processedAt"].is_string());

    // Bulk approve the rest, then export CSV filtered by status.
    let others: Vec<String> = rows
        .iter()
        .filter(|p| p["id"] != id.as_str())
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let (status, bulk) = s
        .send(
            reqwest::Method::POST,
            "/api/admin/payouts/bulk",
            &a,
            Some(json!({"payoutIds": others, "action": "approve"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bulk["summary"]["succeeded"], 4);
    let csv = s
        .http
        .get(format!("{}/api/admin/payouts/export?status=APPROVED", s.base))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(
        lines[0],
        "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status"
    );
    assert_eq!(lines.len(), 5);
    let bank_line = lines.iter().find(|l| l.contains("dr-kipchoge")).unwrap();
    assert!(
        bank_line.contains("1100223344") && bank_line.ends_with(",APPROVED"),
        "{bank_line}"
    );

    // Filters.
    let (_, by_doctor) = s.get("/api/admin/payouts?doctor=dr-otieno", &a).await;
    assert_eq!(by_doctor["pagination"]["total"], 1);
    let (_, by_provider) = s.get("/api/admin/payouts?provider=MPESA_B2C", &a).await;
    assert_eq!(by_provider["pagination"]["total"], 1);
    let (_, paged) = s.get("/api/admin/payouts?limit=2&skip=4", &a).await;
    assert_eq!(paged["data"].as_array().unwrap().len(), 1);

    // The doctor's own history, and nobody else's.
    let doc = doctor("dr-wanjiru");
    let (status, own) = s.get("/api/doctor/payouts?limit=10", &doc).await;
    assert_eq!(status, 200);
    assert_eq!(own["pagination"]["total"], 1);
    assert_eq!(own["data"][0]["status"], "PAID");
    let (status, _) = s.get(&format!("/api/admin/payouts/{id}"), &doc).await;
    assert_eq!(status, 403);

    // Health and OpenAPI (the demo's metrics have an address of their own: tests/graceful_shutdown.rs).
    assert_eq!(s.public("/healthz").await.status().as_u16(), 200);
    let doc: Value = s.public("/api/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/api/admin/payouts/bulk"].is_object());
}

#[tokio::test]
async fn restarting_on_the_same_database_does_not_recalculate_or_reseed() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(&dir);
    let first = demo::build(&config).await.unwrap();
    let admin = payout_core::domain::Actor::admin("a");
    let page = payout_core::store::Page::default();
    let total = first
        .service
        .list(&admin, &Default::default(), &page)
        .await
        .unwrap()
        .total;
    drop(first);
    let second = demo::build(&config).await.unwrap();
    assert_eq!(
        second
            .service
            .list(&admin, &Default::default(), &page)
            .await
            .unwrap()
            .total,
        total
    );
    assert_eq!(total, 5);
    assert_eq!(
        second.simulated.len(),
        4,
        "no credentials in the test environment: every provider simulated"
    );
}

/// The M-Pesa adapter trusts the callback token, client IP and callback kind the host sets; a client's own
/// copies of those headers must never reach it.
#[tokio::test]
async fn mpesa_callbacks_need_the_path_token_and_client_set_trust_headers_are_dropped() {
    use payout_providers::mpesa::{MpesaConfig, MpesaProvider};
    use std::sync::Arc;

    let config = MpesaConfig::builder()
        .consumer_key("key")
        .consumer_secret("secret")
        .shortcode("600000")
        .initiator_name("api-op")
        .security_credential("credential")
        .result_url("https://payouts.example/api/webhooks/mpesa-b2c/path-token-123")
        .timeout_url("https://payouts.example/api/webhooks/mpesa-b2c/path-token-123/timeout")
        .callback_token("path-token-123")
        .allowed_ips(["196.201.214.200".parse().unwrap()])
        .build()
        .unwrap();
    let service = Arc::new(
        payout_core::PayoutService::builder()
            .store(Arc::new(payout_core::memory::MemoryStore::new()))
            .directory(Arc::new(payout_core::source::StaticDirectory::default()))
            .provider(Arc::new(MpesaProvider::new(config).unwrap()))
            .build()
            .unwrap(),
    );
    let app = payout_server::router(payout_server::AppState::new(
        service,
        payout_server::ServerConfig::new(SECRET),
    ));
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let body = json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok",
        "OriginatorConversationID": "po-1-1", "ConversationID": "AG_1", "TransactionID": "X"}});
    let trusted_ip = ("x-payouts-client-ip", "196.201.214.200");
    let cases = [
        (
            "forged trust headers on the bare route: the token header is dropped, so the callback is refused",
            "/api/webhooks/mpesa-b2c",
            vec![("x-payouts-callback-token", "path-token-123"), trusted_ip],
        ),
        (
            "the right path token, but the socket peer (127.0.0.1) is not on the allowlist, whatever the client claims",
            "/api/webhooks/mpesa-b2c/path-token-123",
            vec![trusted_ip],
        ),
        ("a wrong path token", "/api/webhooks/mpesa-b2c/guess", vec![]),
    ];
    for (what, path, headers) in cases {
        let mut req = http.post(format!("{base}{path}")).json(&body);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401, "{what}: {}", res.text().await.unwrap());
    }
}

/// Issue 15 item 4: with only the HMAC guard (the bare `/api/webhooks/mpesa-b2c` route), the status
/// query's results have their own route beside it, the adapter's default `MPESA_STATUS_RESULT_URL`,
/// and are read as status results (the payment named by the result's parameters), never as a
/// payment result or a path token "status".
#[tokio::test]
async fn mpesa_status_results_have_their_own_route_beside_the_signed_one() {
    use hmac::Mac;
    use payout_providers::mpesa::{MpesaConfig, MpesaProvider};
    use std::sync::Arc;

    let config = MpesaConfig::builder()
        .consumer_key("key")
        .consumer_secret("secret")
        .shortcode("600000")
        .initiator_name("api-op")
        .security_credential("credential")
        .result_url("https://payouts.example/api/webhooks/mpesa-b2c")
        .timeout_url("https://payouts.example/api/webhooks/mpesa-b2c/timeout")
        .webhook_secret("hmac-secret")
        .build()
        .unwrap();
    let provider = MpesaProvider::new(config).unwrap();
    assert_eq!(
        provider.status_result_url(),
        "https://payouts.example/api/webhooks/mpesa-b2c/status"
    );
    let service = Arc::new(
        payout_core::PayoutService::builder()
            .store(Arc::new(payout_core::memory::MemoryStore::new()))
            .directory(Arc::new(payout_core::source::StaticDirectory::default()))
            .provider(Arc::new(provider))
            .build()
            .unwrap(),
    );
    let app = payout_server::router(payout_server::AppState::new(
        service,
        payout_server::ServerConfig::new(SECRET),
    ));
    let base = serve(app).await;
    let body = serde_json::to_vec(&json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok",
        "OriginatorConversationID": "query-own-id", "ConversationID": "AG_query",
        "ResultParameters": {"ResultParameter": [
            {"Key": "TransactionStatus", "Value": "Completed"},
            {"Key": "Conversation ID", "Value": "AG_the_payment"}]}}}))
    .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hmac-secret").unwrap();
    mac.update(&body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let res = reqwest::Client::new()
        .post(format!("{base}/api/webhooks/mpesa-b2c/status"))
        .header("x-mpesa-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    // Authentic, and about a payment we have no attempt for yet: refused for redelivery, and named
    // by the parameters (a status result), not by the query's own ConversationID.
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("AG_the_payment"), "{text}");
}

/// Issue 17 item 2: the M-Pesa Account Balance result has its own routes (token and signed), which
/// are the adapter's default balance URLs; an authenticated result is kept by the adapter for the
/// funds check (no payout event), an unauthenticated one changes nothing.
#[tokio::test]
async fn mpesa_balance_results_have_their_own_routes_and_reach_the_funds_check() {
    use hmac::Mac;
    use payout_core::domain::Provider;
    use payout_core::funds::BalanceAnswer;
    use payout_core::money::{Currency, Money};
    use payout_providers::mpesa::{MpesaConfig, MpesaProvider};
    use std::sync::Arc;

    let mpesa = |result_url: &str, token: Option<&str>, secret: Option<&str>| {
        let mut b = MpesaConfig::builder()
            .consumer_key("key")
            .consumer_secret("secret")
            .shortcode("600000")
            .initiator_name("api-op")
            .security_credential("credential")
            .result_url(result_url)
            .timeout_url(format!("{result_url}/timeout"))
            // Nothing listens here: the check below must come from the callback alone.
            .api_base("http://127.0.0.1:9");
        if let Some(t) = token {
            b = b.callback_token(t);
        }
        if let Some(s) = secret {
            b = b.webhook_secret(s);
        }
        Arc::new(MpesaProvider::new(b.build().unwrap()).unwrap())
    };
    let serve_with = |adapter: Arc<MpesaProvider>| async move {
        let service = Arc::new(
            payout_core::PayoutService::builder()
                .store(Arc::new(payout_core::memory::MemoryStore::new()))
                .directory(Arc::new(payout_core::source::StaticDirectory::default()))
                .provider(adapter.clone())
                .balance_source(adapter)
                .build()
                .unwrap(),
        );
        let app = payout_server::router(payout_server::AppState::new(
            service.clone(),
            payout_server::ServerConfig::new(SECRET),
        ));
        (service, serve(app).await)
    };
    let body = serde_json::to_vec(&json!({"Result": {"ResultType": 0, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "16917-22577599-3", "ConversationID": "AG_20240706_balance",
        "TransactionID": "SG60000000",
        "ResultParameters": {"ResultParameter": [
            {"Key": "AccountBalance", "Value": "Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|481000.00|481000.00|0.00|0.00"},
            {"Key": "BOCompletedTime", "Value": 20240706224852_i64}]}}}))
    .unwrap();
    let utility = Money::parse("481000", Currency::KES).unwrap();
    let http = reqwest::Client::new();
    let known = |b: &std::collections::HashMap<Provider, BalanceAnswer>| match &b[&Provider::MpesaB2c] {
        BalanceAnswer::Known { available, .. } => Some(available.clone()),
        _ => None,
    };

    // The token route.
    let adapter = mpesa(
        "https://payouts.example/api/webhooks/mpesa-b2c/path-token-123",
        Some("path-token-123"),
        None,
    );
    assert_eq!(
        (adapter.balance_result_url(), adapter.balance_timeout_url()),
        (
            "https://payouts.example/api/webhooks/mpesa-b2c/path-token-123/balance/result",
            "https://payouts.example/api/webhooks/mpesa-b2c/path-token-123/balance/timeout"
        )
    );
    let (service, base) = serve_with(adapter).await;
    let post = |path: &str| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.clone())
    };
    for (path, status) in [
        ("/api/webhooks/mpesa-b2c/guess/balance/result", 401),
        ("/api/webhooks/mpesa-b2c/balance/result", 401),
        ("/api/webhooks/mpesa-b2c/path-token-123/balance/other", 400),
        ("/api/webhooks/mpesa-b2c/path-token-123/balance", 400),
    ] {
        let res = post(path).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}: {}", res.text().await.unwrap());
    }
    let before = service.balances(&[Provider::MpesaB2c]).await;
    assert_eq!(known(&before), None, "refused callbacks change nothing: {before:?}");
    let res = post("/api/webhooks/mpesa-b2c/path-token-123/balance/result")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer, json!({"data": {"received": true, "events": []}}));
    assert_eq!(
        known(&service.balances(&[Provider::MpesaB2c]).await),
        Some(vec![utility])
    );

    // The signed route beside the bare result URL.
    let adapter = mpesa(
        "https://payouts.example/api/webhooks/mpesa-b2c",
        None,
        Some("hmac-secret"),
    );
    assert_eq!(
        adapter.balance_result_url(),
        "https://payouts.example/api/webhooks/mpesa-b2c/balance/result"
    );
    let (service, base) = serve_with(adapter).await;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hmac-secret").unwrap();
    mac.update(&body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let res = http
        .post(format!("{base}/api/webhooks/mpesa-b2c/balance/result"))
        .header("x-mpesa-signature", signature)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    assert_eq!(
        known(&service.balances(&[Provider::MpesaB2c]).await),
        Some(vec![utility])
    );
}

/// `PAYOUTS_FOUR_EYES` and the other approval settings reach the engine the demo builds.
#[tokio::test]
async fn the_demo_passes_the_approval_policy_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_config(&dir);
    config.four_eyes = false;
    config.approver_may_not_trigger = true;
    config.second_approval_above =
        payout_core::service::ServicePolicy::parse_second_approval_above("KES:100000").unwrap();
    let running = demo::build(&config).await.unwrap();
    let policy = running.service.policy();
    assert!(!policy.four_eyes, "PAYOUTS_FOUR_EYES=0 turns four eyes off");
    assert!(policy.approver_may_not_trigger);
    assert_eq!(policy.second_approval_above, config.second_approval_above);
    assert_eq!(config.policy(), *policy);
}
