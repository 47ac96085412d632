//! Crash recovery for real (RELIABILITY.md, "Crash recovery"; fault matrix: "crash before the pre-call
//! commit", "crash after the pre-call commit, before the response is stored", "provider 429 / 5xx").
//!
//! The demo server runs as a child process on a fresh Postgres schema, with the bank adapter pointed at a
//! bank API double served by this test (`BANK_API_URL`). 1,000 doctors each have one completed January 2025
//! consultation; their 1,000 payouts are calculated and approved, then one bulk trigger sends all of them.
//!
//! The double implements the bank contract of `payout_providers::bank`: every `POST /transfers` is recorded
//! by `Idempotency-Key`, a repeated key answers the first transfer (409 while the first request is still
//! running), a new transfer answers `PENDING` and every lookup answers `COMPLETED`, so reconciliation
//! settles it. Each new transfer takes 5-20 ms; every 25th answers 502 *after* moving the money, so the
//! adapter's retry with the same key must get the same transfer back. Every request is 10 ms on its way in.
//! At the first transfer from the 100th on that is made while a send for a new key is on its way in, the
//! link to the bank goes down: that transfer is made but its answer never leaves, and every request arriving
//! after it (sends and lookups) is lost before the bank sees it, the one on its way in included. Once a send
//! has been lost that way, the server is SIGKILLed mid-bulk; when its database sessions are gone (a COMMIT it
//! sent before dying still lands), the schema holds, deterministically:
//! - APPROVED payouts the bulk never reached (the test triggers them again after the restart);
//! - PROCESSING payouts whose send reached the bank but whose answer was never stored (found by lookup);
//! - PROCESSING payouts whose send never reached the bank (lookup says not found: re-sent, same key);
//! - PROCESSING payouts the bank accepted (settled by lookup), maybe some already PAID.
//!
//! The link comes back, the server restarts with the same environment and reconciles every second. The
//! test waits (bounded) until all 1,000 are PAID, then checks that the bank moved money exactly once per
//! payout, with the attempt's key `{id}-1` and the right amount, and that every payout has one attempt and
//! exactly one TRIGGER and one PROVIDER_PAID audit entry.
//!
//! Needs `PAYOUTS_TEST_POSTGRES_URL` (prints `skipped: ...` and passes without it); builds the
//! `demo_server` example with the test's own features and profile (`cargo test --test crash_recovery` does
//! not build examples). The checker can be shown to work with a planted bug:
//! `PAYOUTS_CRASH_RECOVERY_PLANT=non-idempotent-bank` (a repeated key moves money again) or
//! `PAYOUTS_CRASH_RECOVERY_PLANT=no-reconcile-after-restart` (the restarted server never reconciles); either
//! must make the test fail.

mod common;
mod demo_process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use demo_process::*;
use futures::StreamExt;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::PayoutStore;
use payouts::domain::{AttemptOutcome, PayoutAttempt, PayoutId};
use payouts::status::PayoutStatus;
use serde_json::{Value, json};

const PAYOUTS: usize = 1000;
/// The bank's link goes down at the first transfer from this one on that is made while a send for a new
/// key is still on its way in: that transfer's answer is lost, and requests arriving later never do.
const CUT_AT_TRANSFER: usize = 100;
/// How long every request to the bank is on its way in before the bank sees it.
const TRANSIT: Duration = Duration::from_millis(10);
/// Every new transfer numbered `n` with `n % FLAKY_EVERY == FLAKY_AT` answers 502 after moving the money.
const FLAKY_EVERY: usize = 25;
const FLAKY_AT: usize = 3;
/// What one consultation pays by default (`CalculationPolicy::default`): 500 KES.
const AMOUNT: &str = "500.00";
const CURRENCY: &str = "KES";

const PLANT_VAR: &str = "PAYOUTS_CRASH_RECOVERY_PLANT";
const BANK_API_KEY: &str = "test";

/// From the bulk trigger to a cut link with at least one send lost in transit.
const CUT_TIMEOUT: Duration = Duration::from_secs(30);
/// From the restart to every payout PAID.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// A bug planted on purpose, to show the checks catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    None,
    /// The bank moves money again for a repeated idempotency key.
    NonIdempotentBank,
    /// The restarted server runs no reconciliation (`PAYOUTS_RECONCILE_SECS=0`).
    NoReconcileAfterRestart,
}

fn plant() -> Plant {
    match std::env::var(PLANT_VAR).as_deref() {
        Err(_) | Ok("") => Plant::None,
        Ok("non-idempotent-bank") => Plant::NonIdempotentBank,
        Ok("no-reconcile-after-restart") => Plant::NoReconcileAfterRestart,
        Ok(other) => panic!("{PLANT_VAR}={other:?}: use non-idempotent-bank or no-reconcile-after-restart"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The bank API double
// ---------------------------------------------------------------------------------------------------------

/// One money movement.
#[derive(Debug, Clone)]
struct Transfer {
    id: String,
    key: String,
    payout_id: String,
    amount: String,
    currency: String,
}

impl Transfer {
    fn json(&self, status: &str) -> Value {
        json!({"id": self.id, "status": status, "reference": self.key, "failure_reason": null})
    }
}

#[derive(Debug, Default)]
struct Ledger {
    /// Every movement, in order.
    transfers: Vec<Transfer>,
    /// Idempotency key -> its movements (indexes into `transfers`); more than one only if not idempotent.
    by_key: HashMap<String, Vec<usize>>,
    /// Until when the first request of a key is still running (a repeat gets 409 meanwhile).
    busy_until: HashMap<String, Instant>,
    /// POSTs that reached the bank, per key (first sends, adapter retries and re-sends).
    posts: HashMap<String, usize>,
    /// Keys answered 502 after their money moved.
    failed_after_moving: Vec<String>,
    /// Repeated keys answered with the first transfer.
    replayed: usize,
    /// Repeated keys answered 409 `idempotency_key_in_use`.
    in_use: usize,
    /// Sends for keys the bank has not seen, on their way in (for [`TRANSIT`]).
    in_transit: HashSet<String>,
    /// The transfer at which the link went down.
    cut_at: Option<usize>,
    /// The link is down: requests arriving now are lost before the bank sees them.
    link_down: bool,
    /// Keys of POSTs lost in transit while the link was down.
    lost_posts: Vec<String>,
    /// Lookups lost in transit while the link was down.
    lost_lookups: usize,
}

/// What the double does with one POST, decided under the lock.
enum Plan {
    Lose,
    InUse,
    Replay(Value),
    New {
        transfer: Value,
        latency: Duration,
        answer_lost: bool,
        fail_after_moving: bool,
    },
}

struct BankDouble {
    ledger: Mutex<Ledger>,
    idempotent: bool,
}

impl BankDouble {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {BANK_API_KEY}"))
}

/// `POST /transfers`.
async fn create_transfer(State(bank): State<Arc<BankDouble>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return api_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key");
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "missing_idempotency_key",
            "Idempotency-Key is required",
        );
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_json", "the body is not JSON");
    };
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_string();
    if text("reference") != key || text("payout_id").is_empty() || body["beneficiary"]["account_number"].is_null() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "reference must repeat the key",
        );
    }

    // On the way in.
    {
        let mut l = bank.ledger();
        if !l.by_key.contains_key(&key) {
            l.in_transit.insert(key.clone());
        }
    }
    tokio::time::sleep(TRANSIT).await;

    let plan = {
        let mut l = bank.ledger();
        l.in_transit.remove(&key);
        if l.link_down {
            l.lost_posts.push(key.clone());
            Plan::Lose
        } else {
            *l.posts.entry(key.clone()).or_default() += 1;
            let first = l.by_key.get(&key).and_then(|v| v.first()).copied();
            match first {
                Some(_) if bank.idempotent && l.busy_until.get(&key).is_some_and(|t| Instant::now() < *t) => {
                    l.in_use += 1;
                    Plan::InUse
                }
                Some(i) if bank.idempotent => {
                    l.replayed += 1;
                    Plan::Replay(l.transfers[i].json("PENDING"))
                }
                _ => {
                    let n = l.transfers.len() + 1;
                    let latency = Duration::from_millis(5 + (n as u64 * 7) % 16);
                    let transfer = Transfer {
                        id: format!("bt_{n:05}"),
                        key: key.clone(),
                        payout_id: text("payout_id"),
                        amount: text("amount"),
                        currency: text("currency"),
                    };
                    let json = transfer.json("PENDING");
                    l.transfers.push(transfer);
                    l.by_key.entry(key.clone()).or_default().push(n - 1);
                    l.busy_until.insert(key.clone(), Instant::now() + latency);
                    // Cut only while another new send is on its way in: it will be lost before the bank sees it.
                    let answer_lost = l.cut_at.is_none() && n >= CUT_AT_TRANSFER && !l.in_transit.is_empty();
                    if answer_lost {
                        l.cut_at = Some(n);
                        l.link_down = true;
                    }
                    let fail_after_moving = !answer_lost && n % FLAKY_EVERY == FLAKY_AT;
                    if fail_after_moving {
                        l.failed_after_moving.push(key.clone());
                    }
                    Plan::New {
                        transfer: json,
                        latency,
                        answer_lost,
                        fail_after_moving,
                    }
                }
            }
        }
    };
    match plan {
        Plan::Lose => std::future::pending().await,
        Plan::InUse => api_error(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "the first request with this key is still running",
        ),
        Plan::Replay(t) => (StatusCode::OK, axum::Json(t)).into_response(),
        Plan::New {
            transfer,
            latency,
            answer_lost,
            fail_after_moving,
        } => {
            tokio::time::sleep(latency).await;
            if answer_lost {
                // The money moved; the answer never leaves the bank.
                return std::future::pending().await;
            }
            if fail_after_moving {
                return api_error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_timeout",
                    "the core banking system answered late (the transfer was made)",
                );
            }
            (StatusCode::CREATED, axum::Json(transfer)).into_response()
        }
    }
}

impl BankDouble {
    /// Answers a lookup from the ledger, unless the link is down: then the request is lost (counted)
    /// and never answered.
    async fn look_up<T>(&self, answer: impl FnOnce(&Ledger) -> T) -> T {
        let answered = {
            let mut l = self.ledger();
            if l.link_down {
                l.lost_lookups += 1;
                None
            } else {
                Some(answer(&l))
            }
        };
        match answered {
            Some(a) => a,
            None => std::future::pending().await,
        }
    }
}

/// `GET /transfers/{id}`.
async fn get_transfer(
    State(bank): State<Arc<BankDouble>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !authorized(&headers) {
        return api_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key");
    }
    match bank
        .look_up(|l| l.transfers.iter().find(|t| t.id == id).map(|t| t.json("COMPLETED")))
        .await
    {
        Some(t) => (StatusCode::OK, axum::Json(t)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "not_found", "no such transfer"),
    }
}

/// `GET /transfers?reference={key}`.
async fn find_transfers(
    State(bank): State<Arc<BankDouble>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return api_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key");
    }
    let Some(reference) = q.get("reference") else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_request", "reference is required");
    };
    let data: Vec<_> = bank
        .look_up(|l| {
            l.transfers
                .iter()
                .filter(|t| &t.key == reference)
                .map(|t| t.json("COMPLETED"))
                .collect()
        })
        .await;
    (StatusCode::OK, axum::Json(json!({"data": data}))).into_response()
}

/// Serves the double on 127.0.0.1:0 in this runtime; returns its address.
async fn serve_bank(bank: Arc<BankDouble>) -> SocketAddr {
    let app = Router::new()
        .route("/transfers", post(create_transfer).get(find_transfers))
        .route("/transfers/{id}", get(get_transfer))
        .with_state(bank);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the bank double");
    let addr = listener.local_addr().expect("the bank double's address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the bank double stopped");
    });
    addr
}

/// How the payouts stood when the server died.
#[derive(Debug, Default)]
struct AtKill {
    approved: Vec<PayoutId>,
    /// PROCESSING; the bank has the attempt's key but the answer was never stored.
    reached_unanswered: Vec<PayoutId>,
    /// PROCESSING; the attempt's key never reached the bank.
    never_reached: Vec<(PayoutId, String)>,
    /// PROCESSING with the bank's transfer id stored (accepted, not settled yet).
    accepted: Vec<PayoutId>,
    paid: Vec<PayoutId>,
    other: Vec<(PayoutId, PayoutStatus)>,
}

/// Checks that the bank moved money exactly once per payout, with the first attempt's key and the right
/// amount, that the sends which never reached it were re-sent with their key, and that retries after a 502
/// got the same transfer. Returns a summary of the traffic and each payout's transfer id.
fn check_ledger(
    l: &Ledger,
    ids: &[PayoutId],
    never_reached: &[(PayoutId, String)],
) -> (String, HashMap<String, String>) {
    let mut by_payout: BTreeMap<&str, Vec<&Transfer>> = BTreeMap::new();
    for t in &l.transfers {
        by_payout.entry(t.payout_id.as_str()).or_default().push(t);
    }
    let twice: Vec<(&&str, Vec<(&str, &str)>)> = by_payout
        .iter()
        .filter(|(_, ts)| ts.len() != 1)
        .map(|(p, ts)| (p, ts.iter().map(|t| (t.id.as_str(), t.key.as_str())).collect()))
        .collect();
    assert!(
        twice.is_empty(),
        "{} payouts moved money more than once (payout, [(transfer, key)]): {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let keys_moved_twice: Vec<&String> = l.by_key.iter().filter(|(_, v)| v.len() > 1).map(|(k, _)| k).collect();
    assert!(
        keys_moved_twice.is_empty(),
        "keys that moved money twice: {keys_moved_twice:?}"
    );
    assert_eq!(l.transfers.len(), PAYOUTS, "one movement per payout");
    for id in ids {
        let Some([t]) = by_payout.get(id.as_str()).map(Vec::as_slice) else {
            panic!("{id}: no movement at the bank");
        };
        assert_eq!(
            t.key,
            PayoutAttempt::key_for(id, 1),
            "{id}: moved with the first attempt's key"
        );
        assert_eq!((t.amount.as_str(), t.currency.as_str()), (AMOUNT, CURRENCY), "{id}");
    }
    // The sends that never reached the bank were re-sent with their original key.
    for (id, key) in never_reached {
        assert!(l.posts.get(key).is_some_and(|n| *n >= 1), "{id}: {key} was re-sent");
    }
    // The bank answered 502 after moving money and the retry with the same key got the same transfer.
    let replayed_after_502 = l
        .failed_after_moving
        .iter()
        .filter(|k| l.posts.get(*k).is_some_and(|n| *n >= 2))
        .count();
    assert!(replayed_after_502 > 0, "some retries after a 502 reached the bank");
    let summary = format!(
        "bank POSTs {} ({} replayed by key, {replayed_after_502} of them after a 502, {} answered 409), {} sends \
         and {} lookups lost while the link was down",
        l.posts.values().sum::<usize>(),
        l.replayed,
        l.in_use,
        l.lost_posts.len(),
        l.lost_lookups,
    );
    let transfer_of = l
        .transfers
        .iter()
        .map(|t| (t.payout_id.clone(), t.id.clone()))
        .collect();
    (summary, transfer_of)
}

// ---------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_bulk_trigger_then_restart_pays_everyone_exactly_once() {
    let Some(url) = postgres_url() else { return };
    let plant = plant();
    if plant != Plant::None {
        println!("PLANTED BUG: {plant:?} (this run must fail)");
    }
    let building = Instant::now();
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    println!(
        "demo_server example ready in {:?}: {}",
        building.elapsed(),
        exe.display()
    );
    PgTestSchema::create(&url, "payouts_crash")
        .await
        .run(|schema| crash_and_recover(schema.url(), schema.name().to_string(), exe, plant))
        .await;
}

async fn crash_and_recover(database_url: String, schema: String, exe: PathBuf, plant: Plant) {
    let started = Instant::now();

    // The database: migrated through the schema-scoped URL the server gets too, host tables, 1,000
    // payouts calculated and approved.
    let (store, pool, ids) = approved_payouts(&database_url, PAYOUTS).await;
    let seeded = started.elapsed();

    // The bank double and the server's environment.
    let bank = Arc::new(BankDouble {
        ledger: Mutex::default(),
        idempotent: plant != Plant::NonIdempotentBank,
    });
    let bank_addr = serve_bank(Arc::clone(&bank)).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The server's database sessions carry this name, so the test can wait until they are gone.
    let server_connections = format!("{schema}_server");
    let env = |reconcile_secs: &str| {
        vec![
            (
                "DATABASE_URL",
                format!("{database_url}&application_name={server_connections}"),
            ),
            ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
            ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
            ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
            ("PAYOUTS_RECONCILE_SECS", reconcile_secs.to_string()),
            ("BANK_API_URL", format!("http://{bank_addr}")),
            ("BANK_API_KEY", BANK_API_KEY.to_string()),
            // The double limits nothing; the bank's default budget (10/s) would stretch the run past
            // the point where the link is cut.
            ("BANK_RATE_LIMIT", "0".to_string()),
            ("NO_COLOR", "1".to_string()),
        ]
    };
    let logs = tempfile::tempdir().expect("a directory for the server logs");
    // No kept-alive connections: the server behind the port is killed and replaced.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");
    let token = admin_token();

    // Run 1: the bulk trigger of all 1,000, killed mid-way.
    let mut first = DemoServer::start(&exe, &env("1"), logs.path().join("first.log"));
    first.wait_healthy(&http, &base).await;
    let run_started = Instant::now();
    let bulk = tokio::spawn({
        let request = http
            .post(format!("{base}/api/admin/payouts/bulk"))
            .bearer_auth(&token)
            .json(&bulk_trigger_body(&ids));
        async move { request.send().await.map(|r| r.status()) }
    });
    let deadline = Instant::now() + CUT_TIMEOUT;
    loop {
        let (down, lost) = {
            let l = bank.ledger();
            let lost = l.lost_posts.iter().filter(|k| !l.by_key.contains_key(*k)).count();
            (l.link_down, lost)
        };
        if down && lost > 0 {
            break;
        }
        if bulk.is_finished() {
            panic!("the bulk trigger ended before the kill:\n{}", first.log_tail(40));
        }
        assert!(
            Instant::now() < deadline,
            "no send was lost in transit within {CUT_TIMEOUT:?} (link down: {down}); server log:\n{}",
            first.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = first.kill();
    let killed_after = run_started.elapsed();
    // What the server sent before it died (a COMMIT, say) is still run by its database sessions.
    let (open_sessions, sessions_closed_in) = sessions_gone(&pool, &server_connections).await;
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the server died of SIGKILL: {status}");
    }
    #[cfg(not(unix))]
    let _ = status;
    let bulk_answer = bulk.await.expect("the bulk request task");
    assert!(
        bulk_answer.is_err(),
        "the bulk trigger must not have been answered: {bulk_answer:?}"
    );

    // What the crash left behind.
    let payouts = all_payouts(&store).await;
    assert_eq!(payouts.len(), PAYOUTS);
    let processing: Vec<PayoutId> = payouts
        .iter()
        .filter(|p| p.status == PayoutStatus::Processing)
        .map(|p| p.id.clone())
        .collect();
    let attempts = attempts_of(&store, &processing).await;
    let mut at_kill = AtKill::default();
    let (movements_at_kill, posts_at_kill) = {
        let l = bank.ledger();
        for p in &payouts {
            match p.status {
                PayoutStatus::Approved => at_kill.approved.push(p.id.clone()),
                PayoutStatus::Paid => at_kill.paid.push(p.id.clone()),
                PayoutStatus::Processing => {
                    let a = &attempts[&p.id];
                    assert_eq!(a.len(), 1, "{}: one attempt so far: {a:?}", p.id);
                    let a = &a[0];
                    if a.provider_reference.is_some() {
                        at_kill.accepted.push(p.id.clone());
                    } else if l.by_key.contains_key(&a.idempotency_key) {
                        at_kill.reached_unanswered.push(p.id.clone());
                    } else {
                        at_kill.never_reached.push((p.id.clone(), a.idempotency_key.clone()));
                    }
                }
                other => at_kill.other.push((p.id.clone(), other)),
            }
        }
        (l.transfers.len(), l.posts.values().sum::<usize>())
    };
    println!(
        "killed {killed_after:?} into the bulk trigger ({open_sessions} of its database sessions still open, gone \
         {sessions_closed_in:?} later): bank movements {movements_at_kill} (POSTs {posts_at_kill}); \
         APPROVED {}, PROCESSING reached-unanswered {}, PROCESSING never-reached {}, PROCESSING accepted {}, PAID {}",
        at_kill.approved.len(),
        at_kill.reached_unanswered.len(),
        at_kill.never_reached.len(),
        at_kill.accepted.len(),
        at_kill.paid.len()
    );
    assert!(at_kill.other.is_empty(), "unexpected statuses: {:?}", at_kill.other);
    assert!(movements_at_kill < PAYOUTS, "the server died mid-way");
    assert!(!at_kill.approved.is_empty(), "some payouts were never triggered");
    assert!(
        !at_kill.reached_unanswered.is_empty(),
        "some sends reached the bank and their answers were lost"
    );
    assert!(!at_kill.never_reached.is_empty(), "some sends never reached the bank");

    // The link is back; run 2 with the same environment.
    bank.ledger().link_down = false;
    let reconcile = if plant == Plant::NoReconcileAfterRestart {
        "0"
    } else {
        "1"
    };
    let recovery_started = Instant::now();
    let mut second = DemoServer::start(&exe, &env(reconcile), logs.path().join("second.log"));
    second.wait_healthy(&http, &base).await;

    // The payouts the bulk never reached were never sent: trigger them again.
    let approved: Vec<PayoutId> = all_payouts(&store)
        .await
        .into_iter()
        .filter(|p| p.status == PayoutStatus::Approved)
        .map(|p| p.id)
        .collect();
    assert_eq!(approved.len(), at_kill.approved.len(), "nothing else triggers payouts");
    let answer: Value = http
        .post(format!("{base}/api/admin/payouts/bulk"))
        .bearer_auth(&token)
        .json(&bulk_trigger_body(&approved))
        .timeout(RECOVERY_TIMEOUT)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("the second bulk trigger")
        .json()
        .await
        .expect("the second bulk trigger's JSON");
    let failed: Vec<&Value> = answer["data"]
        .as_array()
        .expect("one result per id")
        .iter()
        .filter(|r| r["ok"] != true)
        .collect();
    assert!(failed.is_empty(), "the second bulk trigger failed for: {failed:#?}");
    let retriggered_in = recovery_started.elapsed();

    // Bounded wait until every payout is PAID.
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let counts = status_counts(&pool).await;
        if counts.get("PAID") == Some(&(PAYOUTS as i64)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every payout PAID {RECOVERY_TIMEOUT:?} after the restart: {counts:?}; server log:\n{}",
            second.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered_after = recovery_started.elapsed();
    drop(second);
    sessions_gone(&pool, &server_connections).await;

    // The bank moved money exactly once per payout, with the attempt's key and the right amount.
    let (bank_summary, transfer_of) = check_ledger(&bank.ledger(), &ids, &at_kill.never_reached);

    // One attempt with that key, succeeded; one TRIGGER and one PROVIDER_PAID each; nothing PROCESSING.
    let payouts = all_payouts(&store).await;
    assert!(payouts.iter().all(|p| p.status == PayoutStatus::Paid));
    let attempts = attempts_of(&store, &ids).await;
    let trails: HashMap<PayoutId, Vec<payouts::domain::AuditEntry>> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let store = &store;
            async move {
                let trail = store.audit_trail(&id).await.expect("reading an audit trail");
                (id, trail)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut without_reference = 0;
    for p in &payouts {
        let a = &attempts[&p.id];
        assert_eq!(a.len(), 1, "{}: exactly one attempt: {a:?}", p.id);
        assert_eq!(a[0].idempotency_key, PayoutAttempt::key_for(&p.id, 1));
        assert_eq!(a[0].outcome, AttemptOutcome::Succeeded, "{}", p.id);
        // A payout settled by a lookup by key (its send's answer was lost) has no transfer id stored.
        match &p.provider_reference {
            Some(reference) => assert_eq!(Some(reference), transfer_of.get(p.id.as_str()), "{}", p.id),
            None => without_reference += 1,
        }
        let trail = &trails[&p.id];
        let count = |action: &str| trail.iter().filter(|e| e.action == action).count();
        assert_eq!(count("TRIGGER"), 1, "{}: one TRIGGER: {trail:#?}", p.id);
        assert_eq!(count("PROVIDER_PAID"), 1, "{}: one PROVIDER_PAID: {trail:#?}", p.id);
        assert_eq!(count("PROVIDER_FAILED"), 0, "{}: {trail:#?}", p.id);
    }
    println!(
        "recovered in {recovered_after:?} (second bulk trigger done after {retriggered_in:?}): {PAYOUTS} PAID, \
         {PAYOUTS} movements; {bank_summary}; {without_reference} PAID payouts carry no bank transfer id; \
         seeding took {seeded:?}, all {:?}",
        started.elapsed()
    );
    pool.close().await;
}
