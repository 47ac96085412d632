//! The dashboard in a real headless Chromium driven through chromedriver: sign in, approve, trigger, audit.
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
use payout_core::status::PayoutStatus;
use payout_server::{ServerConfig, router};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_approves_and_triggers_a_payout_in_a_real_browser() {
    let Some(chromedriver) = std::env::var(CHROMEDRIVER_VAR).ok().filter(|v| !v.is_empty()) else {
        println!("skipped: {CHROMEDRIVER_VAR} not set");
        return;
    };

    // The app on a free port.
    let state = calculated_state(ServerConfig::new(SECRET)).await;
    let service = state.service.clone();
    let base = serve(router(state)).await;

    // chromedriver on another free port, and a browser session with a fresh profile.
    let port = free_port();
    let _driver = Driver::start(&chromedriver, port);
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
    client.set_window_size(1400, 1200).await.unwrap();

    // Sign in by pasting an admin token.
    client.goto(&format!("{base}/dashboard/admin/payouts")).await.unwrap();
    let token = admin("browser-admin");
    wait_for(&client, Locator::Id("token"), "the sign-in form")
        .await
        .send_keys(&token)
        .await
        .unwrap();
    click(&client, Locator::Id("sign-in")).await;
    wait_for(&client, Locator::Id("payouts"), "the payouts table after signing in").await;
    // The cookie is there but out of reach of scripts.
    let cookie = client.get_named_cookie("payouts_token").await.unwrap();
    assert_eq!(cookie.value(), token);
    assert_eq!(cookie.http_only(), Some(true));
    let seen_by_js = client.execute("return document.cookie", vec![]).await.unwrap();
    assert!(
        !seen_by_js.as_str().unwrap_or("").contains("payouts_token"),
        "{seen_by_js}"
    );

    // A PENDING row.
    let mut pending = None;
    for cell in client.find_all(Locator::Css("td.status")).await.unwrap() {
        if cell.text().await.unwrap().trim() == "PENDING" {
            pending = cell.attr("id").await.unwrap();
            break;
        }
    }
    let id = pending
        .expect("a PENDING row")
        .strip_prefix("status-")
        .unwrap()
        .to_string();
    assert!(client.find(Locator::Id(&format!("row-{id}"))).await.is_ok());

    // Approve.
    click(&client, Locator::Id(&format!("approve-{id}"))).await;
    wait_for_text(&client, &format!("status-{id}"), "APPROVED").await;
    wait_for_text(&client, "flash", &format!("{id} approved")).await;

    // Pick a provider and trigger.
    let select = wait_for(&client, Locator::Id(&format!("provider-{id}")), "the provider picker").await;
    select.select_by_value("MPESA_B2C").await.unwrap();
    assert_eq!(select.prop("value").await.unwrap().as_deref(), Some("MPESA_B2C"));
    click(&client, Locator::Id(&format!("trigger-{id}"))).await;
    // The simulated providers settle later (Deferred): the payout waits in PROCESSING.
    wait_for_text(&client, &format!("status-{id}"), "PROCESSING").await;
    let flash = client.find(Locator::Id("flash")).await.unwrap().text().await.unwrap();
    assert!(flash.contains("triggered with MPESA_B2C"), "{flash}");
    let stored = service
        .get(&Actor::admin("check"), &PayoutId::new(id.as_str()))
        .await
        .unwrap();
    assert_eq!(stored.status, PayoutStatus::Processing);
    assert_eq!(stored.provider, Some(Provider::MpesaB2c));
    assert_eq!(stored.approved_by.as_deref(), Some("admin:browser-admin"));
    std::fs::write(
        target_dir().join("dashboard-list.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // The detail page, through the row's link.
    click(&client, Locator::Css(&format!("#row-{id} a[href$='/{id}']"))).await;
    wait_for(&client, Locator::Id("audit"), "the detail page").await;
    wait_for_text(&client, "status", "PROCESSING").await;
    let actions = texts(&client, "#audit tr td:nth-child(3)").await;
    for expected in ["APPROVE", "TRIGGER"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
    let approve = actions.iter().position(|a| a == "APPROVE").unwrap();
    let trigger = actions.iter().position(|a| a == "TRIGGER").unwrap();
    assert!(approve < trigger, "{actions:?}");
    let who = texts(&client, "#audit tr td:nth-child(2)").await;
    assert_eq!(who[approve], "admin:browser-admin");
    assert!(!texts(&client, "#items tr td").await.is_empty(), "the items are listed");

    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let shot = target_dir().join("dashboard.png");
    std::fs::write(&shot, png).unwrap();
    println!("screenshot: {}", shot.display());

    client.close().await.unwrap();
}
