//! The dashboard in a real headless Chromium driven through chromedriver: sign in through the
//! demo's development login, the summary header and the chart, paging with a filter kept, approve
//! and trigger, the audit trail, the attention queue's resolve confirmed by a second admin, and a
//! run made from the list's filters, approved and triggered from its page; and a doctor signed in
//! through the same development login reading their own payouts, a payout's lines and its printable
//! statement.
//! Screenshots of the main pages are written to `<target dir>/artefacts/dashboard/*.png` (test
//! artefacts, never committed).
//!
//! Runs when `PAYOUTS_TEST_CHROMEDRIVER` names a chromedriver (Debian: `chromium` and `chromium-driver`,
//! `/usr/bin/chromedriver`, with the browser at `/usr/bin/chromium`); otherwise it says it skipped.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use payout_core::domain::{Actor, PayoutId, Provider};
use payout_core::money::{Currency, Money};
use payout_core::service::ManualPayout;
use payout_core::status::PayoutStatus;
use payout_core::store::{FollowUp, PayoutChange};
use payout_server::ServerConfig;
use payout_server::demo::{self, DEV_SECRET, DevLogin};
use serde_json::json;

const CHROMEDRIVER_VAR: &str = "PAYOUTS_TEST_CHROMEDRIVER";
const CHROMIUM: &str = "/usr/bin/chromium";
const TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A chromedriver child in its own process group: the whole group (chromedriver and the browsers it
/// started) is killed when this is dropped, also when the test panics.
struct Driver {
    child: Child,
}

impl Driver {
    fn start(path: &str, port: u16) -> Driver {
        use std::os::unix::process::CommandExt;
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
        Driver { child }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is the child's pid (`process_group(0)`).
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` until it yields a value, for at most [`TIMEOUT`].
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the element with this id has exactly this text (the page may be reloading meanwhile).
async fn wait_for_text(client: &Client, id: &str, expected: &str) {
    poll(&format!("#{id} to read {expected:?}"), || async {
        let el = client.find(Locator::Id(id)).await.ok()?;
        let text = el.text().await.ok()?;
        (text.trim() == expected).then_some(())
    })
    .await
}

/// Waits for the element, for at most [`TIMEOUT`].
async fn wait_for(client: &Client, locator: Locator<'_>, what: &str) -> Element {
    let found = client.wait().at_most(TIMEOUT).for_element(locator).await;
    found.unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

async fn click(client: &Client, locator: Locator<'_>) {
    client.find(locator).await.unwrap().click().await.unwrap();
}

async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for el in client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(el.text().await.unwrap().trim().to_string());
    }
    out
}

fn target_dir() -> PathBuf {
    // `<target>/tmp` for integration tests, so its parent is the target dir wherever it is.
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Saves a screenshot of the page as `<target dir>/artefacts/dashboard/{name}.png`.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = target_dir().join("artefacts").join("dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.png"));
    std::fs::write(&file, png).unwrap();
    println!("screenshot: {}", file.display());
}

/// Signs in through the development login as `admin`, from wherever the browser is.
async fn dev_sign_in(client: &Client, base: &str, admin: &str) {
    client.goto(&format!("{base}/dashboard/admin/payouts")).await.unwrap();
    wait_for(client, Locator::Id("sign-in-links"), "the sign-in page's links").await;
    click(client, Locator::LinkText("Development login (demo only)")).await;
    let select = wait_for(client, Locator::Id("dev-admin"), "the development login's form").await;
    select.select_by_value(admin).await.unwrap();
    click(client, Locator::Id("dev-sign-in")).await;
    wait_for(client, Locator::Id("payouts"), "the payouts table after signing in").await;
    wait_for_text(client, "signed-in-as", &format!("admin:{admin}")).await;
}

/// chromedriver on a free port and a headless Chromium session with a fresh profile, 1400x1400. Keep
/// the driver and the profile until the session is closed.
async fn browser(chromedriver: &str) -> (Driver, tempfile::TempDir, Client) {
    let port = free_port();
    let driver = Driver::start(chromedriver, port);
    let webdriver = format!("http://127.0.0.1:{port}");
    poll("chromedriver to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    // Both of rustls's crypto providers are compiled in (fantoccini's hyper-rustls brings aws-lc-rs, reqwest
    // ring), so rustls cannot pick one by itself: choose ring for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = ClientBuilder::rustls()
        .expect("a rustls connector")
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .expect("a chromedriver session");
    client.set_window_size(1400, 1400).await.unwrap();
    (driver, profile, client)
}

/// A simulated provider's webhook saying the payout with `reference` is now `status`.
async fn webhook(service: &payout_core::PayoutService, provider: Provider, reference: &str, event: &str, status: &str) {
    let body = json!({"eventId": event, "reference": reference, "status": status});
    let mut headers = http::HeaderMap::new();
    headers.insert("x-simulation-token", SIM_TOKEN.parse().unwrap());
    service
        .handle_webhook(provider, &headers, body.to_string().as_bytes())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_works_the_dashboard_in_a_real_browser() {
    let Some(chromedriver) = std::env::var(CHROMEDRIVER_VAR).ok().filter(|v| !v.is_empty()) else {
        println!("skipped: {CHROMEDRIVER_VAR} not set");
        return;
    };

    // The demo's app with its development login (the development secret, on loopback), on a free
    // port, over the three calculated payouts and 30 manual ones (two pages of 25).
    let state = calculated_state(ServerConfig::new(DEV_SECRET)).await;
    let service = state.service.clone();
    for i in 0..30 {
        service
            .create_manual(
                &Actor::admin("admin-9"),
                ManualPayout {
                    doctor_id: ["dr-a", "dr-b", "dr-c"][i % 3].into(),
                    amount: Money::parse(&format!("{}.25", 10 + i), Currency::KES).unwrap(),
                    period: None,
                    notes: Some(format!("bonus {i}")),
                },
            )
            .await
            .unwrap();
    }
    let dev = DevLogin::for_demo(DEV_SECRET, "127.0.0.1:0".parse().unwrap(), &[])
        .unwrap()
        .expect("the development login on loopback");
    let base = serve(demo::app_with_dev_login(state, Some(dev))).await;

    // chromedriver on another free port, and a browser session with a fresh profile.
    let (_driver, _profile, client) = browser(&chromedriver).await;

    // Sign in without pasting a token: the sign-in page links to the development login.
    client.goto(&format!("{base}/dashboard/admin/payouts")).await.unwrap();
    wait_for(&client, Locator::Id("token"), "the sign-in page").await;
    screenshot(&client, "sign-in").await;
    dev_sign_in(&client, &base, "dev-admin-1").await;
    // The cookie is there but out of reach of scripts.
    let cookie = client.get_named_cookie("payouts_token").await.unwrap();
    assert_eq!(cookie.http_only(), Some(true));
    let seen_by_js = client.execute("return document.cookie", vec![]).await.unwrap();
    assert!(
        !seen_by_js.as_str().unwrap_or("").contains("payouts_token"),
        "{seen_by_js}"
    );

    // The summary header.
    wait_for_text(&client, "count-PENDING", "33").await;
    wait_for_text(&client, "attention-count", "0").await;
    assert!(!texts(&client, "#summary .sum").await.is_empty());
    assert!(
        !texts(&client, ".doctor-name").await.is_empty(),
        "doctors' names beside their ids"
    );

    // Paging: 25 a page, then the next page, then back; a filter stays across pages.
    wait_for_text(&client, "list-range", "Rows 1\u{2013}33 of 33").await;
    client
        .find(Locator::Id("list-size"))
        .await
        .unwrap()
        .select_by_value("25")
        .await
        .unwrap();
    click(&client, Locator::Id("list-size-apply")).await;
    wait_for_text(&client, "list-range", "Rows 1\u{2013}25 of 33").await;
    click(&client, Locator::Id("list-next")).await;
    wait_for_text(&client, "list-range", "Rows 26\u{2013}33 of 33").await;
    assert_eq!(
        client.find_all(Locator::Css("#payouts tbody tr")).await.unwrap().len(),
        8
    );
    click(&client, Locator::Id("list-prev")).await;
    wait_for_text(&client, "list-range", "Rows 1\u{2013}25 of 33").await;
    let status = wait_for(&client, Locator::Id("f-status"), "the status filter").await;
    status.select_by_value("PENDING").await.unwrap();
    click(&client, Locator::Css("#filters button[type=submit]")).await;
    wait_for_text(&client, "list-range", "Rows 1\u{2013}25 of 33").await;
    let next = client.find(Locator::Id("list-next")).await.unwrap();
    let href = next.attr("href").await.unwrap().unwrap_or_default();
    assert!(
        href.contains("status=PENDING") && href.contains("limit=25") && href.contains("skip=25"),
        "{href}"
    );
    // A bigger page: everything on one.
    client
        .find(Locator::Id("list-size"))
        .await
        .unwrap()
        .select_by_value("50")
        .await
        .unwrap();
    click(&client, Locator::Id("list-size-apply")).await;
    wait_for_text(&client, "list-range", "Rows 1\u{2013}33 of 33").await;
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().contains("status=PENDING"), "the filter is kept: {url}");

    // Approve and trigger dr-a's calculated payout through its row.
    let calculated = service
        .list(
            &Actor::admin("check"),
            &payout_core::store::PayoutFilter {
                doctor_id: Some("dr-a".into()),
                ..Default::default()
            },
            &payout_core::store::Page::new(100, 0),
        )
        .await
        .unwrap();
    let id = calculated
        .payouts
        .iter()
        .find(|p| p.origin == payout_core::domain::PayoutOrigin::Calculated)
        .unwrap()
        .id
        .to_string();
    click(&client, Locator::Id(&format!("approve-{id}"))).await;
    wait_for_text(&client, "flash", &format!("{id} approved")).await;
    // The answer comes back to the same page: the filter (PENDING) hides the approved payout now.
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().contains("status=PENDING"), "{url}");
    client
        .goto(&format!("{base}/dashboard/admin/payouts?status=APPROVED"))
        .await
        .unwrap();
    let select = wait_for(&client, Locator::Id(&format!("provider-{id}")), "the provider picker").await;
    select.select_by_value("MPESA_B2C").await.unwrap();
    click(&client, Locator::Id(&format!("trigger-{id}"))).await;
    wait_for(&client, Locator::Id("flash"), "the trigger's answer").await;
    let flash = client.find(Locator::Id("flash")).await.unwrap().text().await.unwrap();
    assert!(flash.contains("triggered with MPESA_B2C"), "{flash}");
    let stored = service
        .get(&Actor::admin("check"), &PayoutId::new(id.as_str()))
        .await
        .unwrap();
    assert_eq!(stored.status, PayoutStatus::Processing);
    assert_eq!(stored.approved_by.as_deref(), Some("admin:dev-admin-1"));

    // Paid (the provider's webhook): the summary and the chart show it.
    webhook(
        &service,
        Provider::MpesaB2c,
        stored.provider_reference.as_deref().unwrap(),
        "evt_1",
        "PAID",
    )
    .await;
    client.goto(&format!("{base}/dashboard/admin/payouts")).await.unwrap();
    wait_for_text(&client, "count-PAID", "1").await;
    wait_for_text(&client, "amount-PAID-KES", "500.00 KES").await;
    wait_for(&client, Locator::Css("#chart-KES svg"), "the chart").await;
    let labels = texts(&client, "#chart-KES text.chart-value").await;
    assert_eq!(labels, ["500.00"], "the exact amount on the month's bar");
    click(&client, Locator::Css("#chart-KES summary")).await;
    let figures = texts(&client, "#chart-KES-data td.amount").await;
    assert!(figures.iter().any(|t| t == "500.00 KES"), "{figures:?}");
    screenshot(&client, "payouts").await;

    // The payout's page, through its row's link.
    click(&client, Locator::Css(&format!("#row-{id} a[href$='/{id}']"))).await;
    wait_for(&client, Locator::Id("audit"), "the payout's page").await;
    wait_for_text(&client, "status", "PAID").await;
    let actions = texts(&client, "#audit tr td:nth-child(3)").await;
    let approve = actions.iter().position(|a| a == "APPROVE").expect("APPROVE audited");
    let trigger = actions.iter().position(|a| a == "TRIGGER").expect("TRIGGER audited");
    assert!(approve < trigger, "{actions:?}");
    let who = texts(&client, "#audit tr td:nth-child(2)").await;
    assert_eq!(who[approve], "admin:dev-admin-1");
    screenshot(&client, "payout").await;

    // The attention queue: dr-b's payout waits in PROCESSING with no answer, flagged.
    let stuck = service
        .list(
            &Actor::admin("check"),
            &payout_core::store::PayoutFilter {
                doctor_id: Some("dr-b".into()),
                ..Default::default()
            },
            &payout_core::store::Page::new(100, 0),
        )
        .await
        .unwrap()
        .payouts
        .into_iter()
        .find(|p| p.origin == payout_core::domain::PayoutOrigin::Calculated)
        .unwrap();
    let stuck_id = stuck.id.to_string();
    service.approve(&Actor::admin("admin-2"), &stuck.id).await.unwrap();
    service
        .trigger(&Actor::admin("admin-2"), &stuck.id, Provider::BankTransfer)
        .await
        .unwrap();
    let store = service.store().clone();
    let p = store.get(&stuck.id).await.unwrap();
    let mut flag = PayoutChange::of(&p, chrono::Utc::now());
    flag.follow_up =
        Some(FollowUp::check_at(chrono::Utc::now() + chrono::Duration::hours(1)).flagged("no answer from the bank"));
    store.apply(flag).await.unwrap();
    click(&client, Locator::Id("nav-attention")).await;
    wait_for_text(&client, "attention-total", "1").await;
    wait_for_text(&client, "attention-count", "1").await;
    client
        .find(Locator::Id(&format!("resolve-note-{stuck_id}")))
        .await
        .unwrap()
        .send_keys("bank statement line 42")
        .await
        .unwrap();
    client
        .find(Locator::Id(&format!("resolve-reference-{stuck_id}")))
        .await
        .unwrap()
        .send_keys("BANK-REF-42")
        .await
        .unwrap();
    screenshot(&client, "attention").await;
    click(&client, Locator::Id(&format!("resolve-{stuck_id}"))).await;
    wait_for(
        &client,
        Locator::Id(&format!("pending-{stuck_id}")),
        "the pending resolution",
    )
    .await;
    let flash = client.find(Locator::Id("flash")).await.unwrap().text().await.unwrap();
    assert!(flash.contains("resolution recorded"), "{flash}");

    // Four eyes: another admin confirms it.
    click(&client, Locator::Id("sign-out")).await;
    wait_for(&client, Locator::Id("token"), "the sign-in page after signing out").await;
    dev_sign_in(&client, &base, "dev-admin-2").await;
    click(&client, Locator::Id("nav-attention")).await;
    click(&client, Locator::Id(&format!("confirm_resolution-{stuck_id}"))).await;
    wait_for_text(&client, "attention-total", "0").await;
    let flash = client.find(Locator::Id("flash")).await.unwrap().text().await.unwrap();
    assert!(flash.contains("resolution confirmed"), "{flash}");
    let settled = service.get(&Actor::admin("check"), &stuck.id).await.unwrap();
    assert_eq!(settled.status, PayoutStatus::Paid);

    // A run of dr-c's pending payouts (1 calculated, 10 manual), made from the list's filters;
    // approved and triggered with Stripe from its page.
    client
        .goto(&format!("{base}/dashboard/admin/payouts?doctor=dr-c&status=PENDING"))
        .await
        .unwrap();
    wait_for_text(&client, "list-range", "Rows 1\u{2013}11 of 11").await;
    client
        .find(Locator::Id("run-label"))
        .await
        .unwrap()
        .send_keys("Dr C <January>")
        .await
        .unwrap();
    click(&client, Locator::Id("create-run-submit")).await;
    wait_for_text(&client, "run-label", "Dr C <January>").await;
    wait_for_text(&client, "flash", "run created with 11 payouts").await;
    wait_for_text(&client, "run-count", "11").await;
    click(&client, Locator::Id("run-approve")).await;
    wait_for_text(
        &client,
        "flash",
        "APPROVE: 11 considered, 11 ok, 0 failed (0 on hold, 0 without a method)",
    )
    .await;
    client
        .find(Locator::Id("run-trigger-provider"))
        .await
        .unwrap()
        .select_by_value("STRIPE_CONNECT")
        .await
        .unwrap();
    click(&client, Locator::Id("run-trigger")).await;
    wait_for_text(
        &client,
        "flash",
        "TRIGGER: 11 considered, 11 ok, 0 failed (0 on hold, 0 without a method)",
    )
    .await;
    wait_for(&client, Locator::Id("by-status-PROCESSING"), "the PROCESSING total").await;
    wait_for_text(&client, "attention-total", "0").await;
    wait_for_text(&client, "results-total", "22").await;
    let events = texts(&client, "#events-list td:nth-child(3)").await;
    assert_eq!(events, ["CREATE", "APPROVE", "TRIGGER"]);
    // Reconciliation flags one of the run's payouts: the run's page lists it under Needs attention,
    // linked to its page.
    let flagged = service
        .list(
            &Actor::admin("check"),
            &payout_core::store::PayoutFilter {
                doctor_id: Some("dr-c".into()),
                status: Some(PayoutStatus::Processing),
                ..Default::default()
            },
            &payout_core::store::Page::new(1, 0),
        )
        .await
        .unwrap()
        .payouts
        .remove(0);
    let mut flag = PayoutChange::of(&flagged, chrono::Utc::now());
    flag.follow_up =
        Some(FollowUp::check_at(chrono::Utc::now() + chrono::Duration::hours(1)).flagged("no answer from Stripe"));
    store.apply(flag).await.unwrap();
    client.refresh().await.unwrap();
    wait_for_text(&client, "attention-total", "1").await;
    let why = texts(&client, "#attention-list tbody tr td:nth-child(5)").await;
    assert!(why[0].contains("no answer from Stripe"), "{why:?}");
    screenshot(&client, "run").await;
    click(&client, Locator::Css("#attention-list tbody tr td:first-child a")).await;
    wait_for(&client, Locator::Id("audit"), "the flagged payout's page").await;
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().ends_with(flagged.id.as_str()), "{url}");
    click(&client, Locator::Id("nav-runs")).await;
    wait_for_text(&client, "runs-total", "2").await;
    let labels = texts(&client, "#runs tbody tr td:first-child a").await;
    assert_eq!(labels[0], "Dr C <January>", "the newest first: {labels:?}");
    screenshot(&client, "runs").await;

    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_reads_their_own_payouts_and_statement_in_a_real_browser() {
    let Some(chromedriver) = std::env::var(CHROMEDRIVER_VAR).ok().filter(|v| !v.is_empty()) else {
        println!("skipped: {CHROMEDRIVER_VAR} not set");
        return;
    };
    // The three calculated payouts; dr-c's (premium) paid by M-Pesa.
    let state = calculated_state(ServerConfig::new(DEV_SECRET)).await;
    let service = state.service.clone();
    let admin = Actor::admin("admin-1");
    let mut ids = std::collections::HashMap::new();
    let all = service
        .list(
            &admin,
            &payout_core::store::PayoutFilter::default(),
            &payout_core::store::Page::new(10, 0),
        )
        .await
        .unwrap();
    for p in all.payouts {
        ids.insert(p.doctor_id.to_string(), p.id.to_string());
    }
    let c = PayoutId::new(ids["dr-c"].as_str());
    service.approve(&admin, &c).await.unwrap();
    let sent = service.trigger(&admin, &c, Provider::MpesaB2c).await.unwrap();
    let reference = sent.provider_reference.unwrap();
    webhook(&service, Provider::MpesaB2c, &reference, "evt-c", "PAID").await;
    let dev = DevLogin::for_demo(DEV_SECRET, "127.0.0.1:0".parse().unwrap(), &[])
        .unwrap()
        .expect("the development login on loopback");
    let base = serve(demo::app_with_dev_login(state, Some(dev))).await;
    let (_driver, _profile, client) = browser(&chromedriver).await;

    // Signed in as a doctor through the development login, from the doctor's page.
    client.goto(&format!("{base}/dashboard/doctor/payouts")).await.unwrap();
    wait_for(&client, Locator::Id("sign-in-links"), "the sign-in page's links").await;
    click(&client, Locator::LinkText("Development login (demo only)")).await;
    let field = wait_for(&client, Locator::Id("dev-doctor"), "the doctor id field").await;
    field.send_keys("dr-c").await.unwrap();
    click(&client, Locator::Id("dev-doctor-sign-in")).await;
    wait_for(&client, Locator::Id("my-payouts"), "the doctor's payouts").await;
    wait_for_text(&client, "signed-in-as", "doctor:dr-c").await;
    wait_for_text(&client, "history-range", "Rows 1\u{2013}1 of 1").await;
    let rows = client.find_all(Locator::Css("#my-payouts tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attr("id").await.unwrap(), Some(format!("row-{c}")));
    wait_for_text(&client, "analytics-paid", "1,500.00 KES").await;
    wait_for_text(&client, "analytics-consultations", "3").await;
    screenshot(&client, "doctor-payouts").await;

    // The payout's page: its lines, the masked method, the statement links.
    click(&client, Locator::Id(&format!("open-{c}"))).await;
    wait_for(&client, Locator::Id("lines"), "the payout's lines").await;
    wait_for_text(&client, "method", "M-Pesa 2547*****678 (MPESA_B2C)").await;
    wait_for_text(&client, "provider-reference", &reference).await;
    assert_eq!(
        client.find_all(Locator::Css("#lines tbody tr")).await.unwrap().len(),
        3,
        "three consultations"
    );
    assert!(
        client.find(Locator::Id("statement-csv")).await.is_ok(),
        "premium: CSV offered"
    );
    screenshot(&client, "doctor-payout").await;

    // The printable statement, signed in by the same cookie.
    click(&client, Locator::Id("statement-html")).await;
    wait_for(&client, Locator::Id("total-net"), "the statement's totals").await;
    wait_for_text(&client, "platform", payout_server::DEFAULT_PLATFORM_NAME).await;
    wait_for_text(&client, "period", "2025-01-01 to 2025-01-31").await;
    assert_eq!(
        client
            .find(Locator::Id("total-net"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Net paid 1,500.00 KES"
    );
    screenshot(&client, "statement").await;

    // Another doctor's payout is not there for dr-c.
    client
        .goto(&format!("{base}/dashboard/doctor/payouts/{}", ids["dr-a"]))
        .await
        .unwrap();
    wait_for(&client, Locator::Css("p.flash.error"), "the not-found page").await;
    assert_eq!(texts(&client, "p.flash.error").await, ["No such payout."]);
    assert!(client.find(Locator::Id("lines")).await.is_err());
    client.close().await.unwrap();
}
