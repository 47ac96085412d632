//! Two live instances, one killed (issue 19, item 2; RELIABILITY.md, "Two instances, one killed").
//!
//! Two `demo_server` processes (the code of `payouts serve`), A and B, run on one fresh Postgres schema,
//! each reconciling every second, their bank adapters pointed at a bank API double served by this test,
//! each with an API key of its own, so the double knows which instance made each request. 1,000 doctors
//! each have one completed January 2025 consultation; their 1,000 payouts are calculated and approved, then
//! the same bulk trigger of all 1,000 is sent to both instances at once: for each payout one of them
//! commits the trigger, the other is refused.
//!
//! The double implements the bank contract of `payout_providers::bank` (as in `tests/crash_recovery.rs`):
//! transfers recorded by `Idempotency-Key`, a repeated key answered with the first transfer (409 while its
//! first request is running), a new transfer answers `PENDING`, a lookup answers `COMPLETED`, so each payout
//! is settled by reconciliation. Every lookup is recorded with the instance that made it and the lease token
//! its payout's check holds in `payout_checks` when the lookup arrives (the double reads it): a claim takes
//! a new token, and the follow-up written under it ends the claim, so two lookups of one attempt with the
//! same token were made under one claim, in one pass. Lookups take 50 ms at the double, which also records
//! any lookup of an attempt arriving while another of the same attempt is being answered.
//!
//! From A's 50th transfer on, the double holds A's requests: of its sends, every other one is lost before
//! the bank sees it and the others move money but are never answered; its lookups are never answered. Once
//! A has two sends of each kind and one lookup held, so that it dies with sends in flight and with
//! reconciliation claims under lease, A is SIGKILLed. When its database sessions are gone, its held claims
//! must still be leased (the token its lookup read, a lease end in the future); A is restarted with the same
//! environment, and the test waits (bounded) until all
//! 1,000 payouts are PAID and every event of the outbox is delivered, then stops both and checks:
//! - money moved exactly once per payout, with the attempt's key `{id}-1` and the right amount; every send
//!   lost before the bank saw it was re-sent with its key;
//! - each payout has one attempt (Succeeded, `{id}-1`), one `TRIGGER` (by the admin of the instance that
//!   answered it triggered: B's answer names exactly its own) and one `PROVIDER_PAID`, no `PROVIDER_FAILED`;
//! - each attempt was looked up at most once per pass: no two of its lookups under one lease token, none
//!   overlapping;
//! - no lease is left held after its expiry: each check A held at its death was looked up again, by another
//!   process, after its lease ended; at the end every check is the settlement watch's (due in a day), none
//!   due, none leased; the outbox has no pending (claimed or not) and no dead-lettered event.
//!
//! Needs `PAYOUTS_TEST_POSTGRES_URL` (prints `skipped: ...` and passes without it); builds the
//! `demo_server` example with the test's own features and profile. The checks can be shown to work with a
//! planted bug: `PAYOUTS_TWO_INSTANCES_PLANT=unleased-claims` makes every claimed check of a PROCESSING
//! payout due again at once from the restart on (a task of the test rewrites `payout_checks` every 5 ms), as
//! an engine whose claims took no lease would leave them; the test must fail.

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
use chrono::{DateTime, Utc};
use demo_process::*;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::domain::{AttemptOutcome, PayoutAttempt, PayoutId};
use payouts::status::PayoutStatus;
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};

const PAYOUTS: usize = 1000;
/// What one consultation pays by default (`CalculationPolicy::default`): 500 KES.
const AMOUNT: &str = "500.00";
const CURRENCY: &str = "KES";

/// Seconds between reconciliation passes, on both instances.
const RECONCILE_SECS: u64 = 1;
/// The reconciliation and outbox leases: far longer than a pass takes (well under a second here), short
/// enough that the killed instance's claims run out within the test.
const LEASE_SECS: u64 = 10;
/// A's requests are held from its this-many-th new transfer on.
const HOLD_A_FROM: usize = 50;
/// A is killed once it has this many sends of each kind held (lost before the bank, unanswered).
const HELD_OF_EACH_KIND: usize = 2;
/// How long the double takes to answer a lookup.
const LOOKUP_TIME: Duration = Duration::from_millis(50);

const BANK_KEY_A: &str = "bank-key-of-instance-a";
const BANK_KEY_B: &str = "bank-key-of-instance-b";
const ADMIN_A: &str = "admin-a";
const ADMIN_B: &str = "admin-b";

/// From the bulk triggers to A held with sends in flight and a lookup.
const HOLD_TIMEOUT: Duration = Duration::from_secs(60);
/// B's bulk trigger, answered.
const BULK_TIMEOUT: Duration = Duration::from_secs(120);
/// From the restart to every payout PAID.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// From every payout PAID to every event delivered.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

const PLANT_VAR: &str = "PAYOUTS_TWO_INSTANCES_PLANT";

/// A bug planted on purpose, to show the checks catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    None,
    /// From the restart on, every claimed check of a PROCESSING payout is made due again at once.
    UnleasedClaims,
}

fn plant() -> Plant {
    match std::env::var(PLANT_VAR).as_deref() {
        Err(_) | Ok("") => Plant::None,
        Ok("unleased-claims") => Plant::UnleasedClaims,
        Ok(other) => panic!("{PLANT_VAR}={other:?}: use unleased-claims"),
    }
}

/// [`Plant::UnleasedClaims`]: makes every check of a PROCESSING payout scheduled within a minute (leased
/// by a claim, or backing off) due again, every 5 ms, until the task is aborted.
fn unlease_claims(pool: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let _ = sqlx::query(
                "UPDATE payout_checks c SET next_check_at = now() - interval '1 hour' FROM payouts p \
                 WHERE p.id = c.payout_id AND p.status = 'PROCESSING' AND c.next_check_at > now() \
                   AND c.next_check_at < now() + interval '1 minute'",
            )
            .execute(&pool)
            .await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

// ---------------------------------------------------------------------------------------------------------
// The bank API double
// ---------------------------------------------------------------------------------------------------------

/// Which process made a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Instance {
    /// A, until it is killed.
    A,
    /// A restarted with the same environment.
    ARestarted,
    B,
}

/// One money movement.
#[derive(Debug, Clone)]
struct Transfer {
    id: String,
    key: String,
    payout_id: String,
    amount: String,
    currency: String,
    by: Instance,
}

impl Transfer {
    fn json(&self, status: &str) -> Value {
        json!({"id": self.id, "status": status, "reference": self.key, "failure_reason": null})
    }
}

/// What the bank did with a `POST /transfers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostOutcome {
    /// A new transfer: money moved.
    Moved,
    /// A repeated key answered with the first transfer.
    Replayed,
    /// A repeated key answered 409 while its first request was running.
    InUse,
    /// Lost before the bank saw it (held A only).
    Lost,
}

#[derive(Debug, Clone)]
struct Post {
    key: String,
    by: Instance,
    outcome: PostOutcome,
    /// The answer was never sent (held A only).
    unanswered: bool,
    /// The key had been looked up before: a re-send by reconciliation.
    after_lookup: bool,
}

#[derive(Debug, Clone)]
struct Lookup {
    key: String,
    by: Instance,
    /// The payout's check's lease token when the lookup arrived.
    token: Option<i64>,
    at: DateTime<Utc>,
    /// Never answered (held A only).
    held: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    transfers: Vec<Transfer>,
    /// Idempotency key -> its movements (indexes into `transfers`).
    by_key: HashMap<String, Vec<usize>>,
    /// Until when the first request of a key is still running (a repeat gets 409 meanwhile).
    busy_until: HashMap<String, Instant>,
    posts: Vec<Post>,
    lookups: Vec<Lookup>,
    looked_up: HashSet<String>,
    /// Lookups being answered, per key.
    lookups_in_flight: HashMap<String, usize>,
    /// Lookups that arrived while another of the same key was being answered.
    overlapping: Vec<(String, Instance)>,
    /// Lease tokens the double could not read.
    token_errors: Vec<String>,
    /// Keys of lookups answered "no such transfer".
    not_found: Vec<String>,
    /// New transfers made for A (first run).
    a_moved: usize,
    /// A's requests are held.
    holding_a: bool,
    /// Sends of A held so far (odd: lost, even: moved and unanswered).
    a_held_posts: usize,
    /// A was killed: requests with its key come from the restarted process.
    a_restarted: bool,
}

impl Ledger {
    fn held(&self, outcome: impl Fn(&Post) -> bool) -> usize {
        self.posts.iter().filter(|p| p.unanswered && outcome(p)).count()
    }
}

struct BankDouble {
    ledger: Mutex<Ledger>,
    /// Reads the lease tokens of `payout_checks`.
    pool: PgPool,
}

impl BankDouble {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance the request's API key names.
    fn instance(&self, headers: &HeaderMap) -> Option<Instance> {
        let key = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
        match key {
            BANK_KEY_A if self.ledger().a_restarted => Some(Instance::ARestarted),
            BANK_KEY_A => Some(Instance::A),
            BANK_KEY_B => Some(Instance::B),
            _ => None,
        }
    }
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn unauthorized() -> Response {
    api_error(StatusCode::UNAUTHORIZED, "unauthorized", "bad API key")
}

/// What the double does with one POST, decided under the lock.
enum Plan {
    Lose,
    InUse,
    Replay(Value, bool),
    New(Value, Duration, bool),
}

/// `POST /transfers`.
async fn create_transfer(State(bank): State<Arc<BankDouble>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(by) = bank.instance(&headers) else {
        return unauthorized();
    };
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
    let plan = {
        let mut l = bank.ledger();
        let held = by == Instance::A && l.holding_a;
        let after_lookup = l.looked_up.contains(&key);
        let mut post = Post {
            key: key.clone(),
            by,
            outcome: PostOutcome::Lost,
            unanswered: held,
            after_lookup,
        };
        let lose = held && {
            l.a_held_posts += 1;
            l.a_held_posts % 2 == 1
        };
        let first = l.by_key.get(&key).and_then(|v| v.first()).copied();
        let plan = match first {
            _ if lose => Plan::Lose,
            Some(_) if l.busy_until.get(&key).is_some_and(|t| Instant::now() < *t) => {
                post.outcome = PostOutcome::InUse;
                Plan::InUse
            }
            Some(i) => {
                post.outcome = PostOutcome::Replayed;
                Plan::Replay(l.transfers[i].json("PENDING"), held)
            }
            None => {
                let n = l.transfers.len() + 1;
                let latency = Duration::from_millis(5 + (n as u64 * 7) % 16);
                let transfer = Transfer {
                    id: format!("bt_{n:05}"),
                    key: key.clone(),
                    payout_id: text("payout_id"),
                    amount: text("amount"),
                    currency: text("currency"),
                    by,
                };
                let json = transfer.json("PENDING");
                l.transfers.push(transfer);
                l.by_key.entry(key.clone()).or_default().push(n - 1);
                l.busy_until.insert(key.clone(), Instant::now() + latency);
                if by == Instance::A {
                    l.a_moved += 1;
                    if l.a_moved >= HOLD_A_FROM {
                        l.holding_a = true;
                    }
                }
                post.outcome = PostOutcome::Moved;
                Plan::New(json, latency, held)
            }
        };
        l.posts.push(post);
        plan
    };
    match plan {
        Plan::Lose => std::future::pending().await,
        Plan::InUse => api_error(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "the first request with this key is still running",
        ),
        Plan::Replay(_, true) => std::future::pending().await,
        Plan::Replay(t, false) => (StatusCode::OK, axum::Json(t)).into_response(),
        Plan::New(t, latency, held) => {
            tokio::time::sleep(latency).await;
            if held {
                // The money moved; the answer never leaves the bank.
                return std::future::pending().await;
            }
            (StatusCode::CREATED, axum::Json(t)).into_response()
        }
    }
}

/// Counts a lookup of `key` out of `lookups_in_flight` when its answer is done (or dropped).
struct InFlight {
    bank: Arc<BankDouble>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.bank.ledger().lookups_in_flight.get_mut(&self.key) {
            *n -= 1;
        }
    }
}

impl BankDouble {
    /// Records a lookup of attempt `key` by `by` with its check's lease token, then answers it after
    /// [`LOOKUP_TIME`] from the ledger, or never (held A).
    async fn look_up<T>(self: &Arc<Self>, by: Instance, key: &str, answer: impl FnOnce(&Ledger) -> T) -> T {
        let at = Utc::now();
        let held = {
            let mut l = self.ledger();
            let held = by == Instance::A && l.holding_a;
            if !held {
                let n = l.lookups_in_flight.entry(key.to_string()).or_default();
                *n += 1;
                if *n > 1 {
                    l.overlapping.push((key.to_string(), by));
                }
            }
            held
        };
        let _in_flight = (!held).then(|| InFlight {
            bank: Arc::clone(self),
            key: key.to_string(),
        });
        let payout_id = key.rsplit_once('-').map_or(key, |(id, _)| id);
        let token = sqlx::query_as::<_, (i64,)>("SELECT lease FROM payout_checks WHERE payout_id = $1")
            .bind(payout_id)
            .fetch_optional(&self.pool)
            .await;
        {
            let mut l = self.ledger();
            let token = match token {
                Ok(Some((t,))) => Some(t),
                Ok(None) => {
                    l.token_errors.push(format!("{key}: no check"));
                    None
                }
                Err(e) => {
                    l.token_errors.push(format!("{key}: {e}"));
                    None
                }
            };
            l.looked_up.insert(key.to_string());
            l.lookups.push(Lookup {
                key: key.to_string(),
                by,
                token,
                at,
                held,
            });
        }
        if held {
            return std::future::pending().await;
        }
        tokio::time::sleep(LOOKUP_TIME).await;
        let mut l = self.ledger();
        if !l.by_key.contains_key(key) {
            l.not_found.push(key.to_string());
        }
        answer(&l)
    }
}

/// `GET /transfers/{id}`.
async fn get_transfer(
    State(bank): State<Arc<BankDouble>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let Some(by) = bank.instance(&headers) else {
        return unauthorized();
    };
    let key = bank
        .ledger()
        .transfers
        .iter()
        .find(|t| t.id == id)
        .map(|t| t.key.clone());
    let Some(key) = key else {
        return api_error(StatusCode::NOT_FOUND, "not_found", "no such transfer");
    };
    let found = bank
        .look_up(by, &key, |l| {
            l.transfers.iter().find(|t| t.id == id).map(|t| t.json("COMPLETED"))
        })
        .await;
    match found {
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
    let Some(by) = bank.instance(&headers) else {
        return unauthorized();
    };
    let Some(reference) = q.get("reference") else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_request", "reference is required");
    };
    let data: Vec<_> = bank
        .look_up(by, reference, |l| {
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

// ---------------------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------------------

/// Money moved exactly once per payout, with the first attempt's key and the right amount; every send
/// lost before the bank saw it was re-sent with its key. Returns who moved each payout's money.
fn check_money(l: &Ledger, ids: &[PayoutId]) -> HashMap<String, Instance> {
    let mut by_payout: BTreeMap<&str, Vec<&Transfer>> = BTreeMap::new();
    for t in &l.transfers {
        by_payout.entry(t.payout_id.as_str()).or_default().push(t);
    }
    let twice: Vec<_> = by_payout
        .iter()
        .filter(|(_, ts)| ts.len() != 1)
        .map(|(p, ts)| {
            (
                p,
                ts.iter()
                    .map(|t| (t.id.as_str(), t.key.as_str(), t.by))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert!(
        twice.is_empty(),
        "{} payouts moved money more than once (payout, [(transfer, key, instance)]): {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
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
    for lost in l.posts.iter().filter(|p| p.outcome == PostOutcome::Lost) {
        assert!(
            l.by_key.contains_key(&lost.key),
            "{}: lost before the bank saw it, and never re-sent",
            lost.key
        );
    }
    l.transfers.iter().map(|t| (t.payout_id.clone(), t.by)).collect()
}

/// Each attempt looked up at most once per pass: no two of its lookups under one lease token (one
/// claim), none while another of it was being answered; every lookup of a first attempt of ours.
fn check_lookups(l: &Ledger, ids: &[PayoutId]) {
    assert!(l.token_errors.is_empty(), "lease tokens not read: {:?}", l.token_errors);
    assert!(
        l.overlapping.is_empty(),
        "lookups of an attempt arrived while another of it was being answered: {:?}",
        l.overlapping
    );
    let keys: HashSet<String> = ids.iter().map(|id| PayoutAttempt::key_for(id, 1)).collect();
    let mut tokens: HashMap<&str, Vec<(i64, Instance)>> = HashMap::new();
    for lookup in &l.lookups {
        assert!(
            keys.contains(&lookup.key),
            "a lookup of {}, not an attempt of ours",
            lookup.key
        );
        let token = lookup.token.expect("every token read");
        tokens.entry(&lookup.key).or_default().push((token, lookup.by));
    }
    let mut twice_in_one_claim = Vec::new();
    for (key, mut seen) in tokens {
        seen.sort();
        for pair in seen.windows(2) {
            if pair[0].0 == pair[1].0 {
                twice_in_one_claim.push((key, pair[0], pair[1]));
            }
        }
    }
    assert!(
        twice_in_one_claim.is_empty(),
        "{} attempts looked up twice under one claim (key, (token, instance) twice): {:?}",
        twice_in_one_claim.len(),
        &twice_in_one_claim[..twice_in_one_claim.len().min(5)]
    );
}

// ---------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_one_killed_pay_everyone_exactly_once() {
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
    PgTestSchema::create(&url, "payouts_two")
        .await
        .run(|schema| two_instances(schema.url(), schema.name().to_string(), exe, plant))
        .await;
}

/// How many rows `sql` counts.
async fn count(pool: &PgPool, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.expect(sql);
    n
}

async fn two_instances(database_url: String, schema: String, exe: PathBuf, plant: Plant) {
    let started = Instant::now();
    let (store, pool, ids) = approved_payouts(&database_url, PAYOUTS).await;
    let seeded = started.elapsed();

    let bank = Arc::new(BankDouble {
        ledger: Mutex::default(),
        pool: PgPoolOptions::new()
            .max_connections(8)
            .connect(&database_url)
            .await
            .expect("the bank double's pool"),
    });
    let bank_addr = serve_bank(Arc::clone(&bank)).await;
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    // Each instance's database sessions carry its name, so the test can wait until they are gone.
    let (sessions_a, sessions_b) = (format!("{schema}_a"), format!("{schema}_b"));
    let env = |sessions: &str, port: u16, bank_key: &str| {
        vec![
            ("DATABASE_URL", format!("{database_url}&application_name={sessions}")),
            ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
            ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
            ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
            ("PAYOUTS_RECONCILE_SECS", RECONCILE_SECS.to_string()),
            ("PAYOUTS_RECONCILE_LEASE_SECS", LEASE_SECS.to_string()),
            ("PAYOUTS_EVENTS_LEASE_SECS", LEASE_SECS.to_string()),
            ("PAYOUTS_EVENTS_POLL_MS", "100".to_string()),
            ("BANK_API_URL", format!("http://{bank_addr}")),
            ("BANK_API_KEY", bank_key.to_string()),
            // The double limits nothing; the bank's default budget (10/s) would stretch the run.
            ("BANK_RATE_LIMIT", "0".to_string()),
            ("NO_COLOR", "1".to_string()),
        ]
    };
    let env_a = env(&sessions_a, port_a, BANK_KEY_A);
    let env_b = env(&sessions_b, port_b, BANK_KEY_B);
    let logs = tempfile::tempdir().expect("a directory for the server logs");
    // No kept-alive connections: A is killed and replaced behind its port.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client");

    let mut a = DemoServer::start(&exe, &env_a, logs.path().join("a.log"));
    let mut b = DemoServer::start(&exe, &env_b, logs.path().join("b.log"));
    a.wait_healthy(&http, &base_a).await;
    b.wait_healthy(&http, &base_b).await;

    // The same bulk trigger of all 1,000, to both at once.
    let bulk_started = Instant::now();
    let bulk = |base: &str, admin: &str| {
        let request = http
            .post(format!("{base}/api/admin/payouts/bulk"))
            .bearer_auth(admin_token_for(admin))
            .json(&bulk_trigger_body(&ids));
        tokio::spawn(async move {
            let r = request.send().await?.error_for_status()?;
            r.json::<Value>().await
        })
    };
    let (bulk_a, bulk_b) = (bulk(&base_a, ADMIN_A), bulk(&base_b, ADMIN_B));

    // A is held from its 50th transfer on; wait until it has sends of both kinds and a lookup held.
    let deadline = Instant::now() + HOLD_TIMEOUT;
    loop {
        let (lost, unanswered, lookups) = {
            let l = bank.ledger();
            let lookups = l.lookups.iter().filter(|x| x.held).count();
            (
                l.held(|p| p.outcome == PostOutcome::Lost),
                l.held(|p| p.outcome != PostOutcome::Lost),
                lookups,
            )
        };
        if lost >= HELD_OF_EACH_KIND && unanswered >= HELD_OF_EACH_KIND && lookups >= 1 {
            break;
        }
        assert!(
            !bulk_a.is_finished(),
            "A's bulk trigger ended before A was held:\n{}",
            a.log_tail(40)
        );
        assert!(
            Instant::now() < deadline,
            "A not held with sends and a lookup in flight within {HOLD_TIMEOUT:?} (lost {lost}, unanswered \
             {unanswered}, lookups {lookups}); A's log:\n{}",
            a.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let status = a.kill();
    let killed_after = bulk_started.elapsed();
    let (open_sessions, sessions_closed_in) = sessions_gone(&pool, &sessions_a).await;
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "A died of SIGKILL: {status}");
    }
    #[cfg(not(unix))]
    let _ = status;
    let answer_a = bulk_a.await.expect("A's bulk request task");
    assert!(
        answer_a.is_err(),
        "A's bulk trigger must not have been answered: {answer_a:?}"
    );

    // What A left: its held lookups' checks still under its claims' leases.
    let (held_lookups, moved_at_kill, a_moved, a_held_posts) = {
        let l = bank.ledger();
        let held: Vec<(String, i64, DateTime<Utc>)> = l
            .lookups
            .iter()
            .filter(|x| x.held)
            .map(|x| (x.key.clone(), x.token.expect("a token"), x.at))
            .collect();
        (held, l.transfers.len(), l.a_moved, l.held(|_| true))
    };
    // Key -> (A's lookup, its claim's lease end).
    let mut leased_at_death: HashMap<String, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    for (key, token, looked_at) in &held_lookups {
        let payout_id = key.rsplit_once('-').map_or(key.as_str(), |(id, _)| id);
        let (lease, until, status): (i64, Option<DateTime<Utc>>, String) = sqlx::query_as(
            "SELECT c.lease, c.next_check_at, p.status FROM payout_checks c JOIN payouts p ON p.id = c.payout_id \
             WHERE c.payout_id = $1",
        )
        .bind(payout_id)
        .fetch_one(&pool)
        .await
        .expect("reading a check");
        assert_eq!(status, "PROCESSING", "{key}: A died before it learned anything");
        // A changed nothing since: its claim holds, until its lease's end.
        assert_eq!(lease, *token, "{key}: still A's claim");
        let until = until.expect("a claimed check has its lease's end");
        assert!(until > Utc::now(), "{key}: A's claim leased at its death");
        leased_at_death.insert(key.clone(), (*looked_at, until));
    }
    let leased_checks = count(&pool, "SELECT COUNT(*) FROM payout_checks WHERE next_check_at > now()").await;
    let claimed_events = count(
        &pool,
        "SELECT COUNT(*) FROM payout_outbox WHERE delivery = 'PENDING' AND next_try_at > now()",
    )
    .await;
    let at_kill = status_counts(&pool).await;
    println!(
        "A killed {killed_after:?} into the bulk triggers ({open_sessions} of its database sessions still open, \
         gone {sessions_closed_in:?} later): bank movements {moved_at_kill} ({a_moved} for A), A's held sends \
         {a_held_posts}, A's held lookups {}; statuses {at_kill:?}; checks scheduled or leased in the future \
         {leased_checks}; outbox events pending with a future try (claimed or backing off) {claimed_events}",
        held_lookups.len()
    );
    assert!(moved_at_kill < PAYOUTS, "A died mid-way");

    // A restarted with the same environment.
    bank.ledger().a_restarted = true;
    let planted = (plant == Plant::UnleasedClaims).then(|| unlease_claims(pool.clone()));
    let restarted_at = Instant::now();
    let mut a = DemoServer::start(&exe, &env_a, logs.path().join("a-restarted.log"));
    a.wait_healthy(&http, &base_a).await;

    // B's bulk trigger: each payout triggered by B, or refused because A had.
    let answer_b = tokio::time::timeout(BULK_TIMEOUT, bulk_b)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "B's bulk trigger not answered within {BULK_TIMEOUT:?}:\n{}",
                b.log_tail(40)
            )
        })
        .expect("B's bulk request task")
        .expect("B's bulk trigger");
    let bulk_b_done = bulk_started.elapsed();
    let results = answer_b["data"].as_array().expect("one result per id");
    assert_eq!(results.len(), PAYOUTS);
    let mut triggered_by_b = HashSet::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for r in results {
        if r["ok"] == true {
            triggered_by_b.insert(r["id"].as_str().expect("an id").to_string());
        } else {
            let code = r["error"]["code"].as_str().unwrap_or_default().to_string();
            assert!(
                code == "conflict" || code == "invalid_transition",
                "B refused a payout for another reason than A's trigger: {r}"
            );
            *refused.entry(code).or_default() += 1;
        }
    }

    // Bounded wait until every payout is PAID.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let counts = status_counts(&pool).await;
        if counts.get("PAID") == Some(&(PAYOUTS as i64)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every payout PAID {SETTLE_TIMEOUT:?} after the restart: {counts:?}; A's log:\n{}\nB's log:\n{}",
            a.log_tail(20),
            b.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_paid_after_restart = restarted_at.elapsed();
    if let Some(task) = planted {
        task.abort();
    }
    let all_paid = bulk_started.elapsed();

    // Bounded wait until every event is delivered (A's claims too, once their leases ran out).
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let pending = count(
            &pool,
            "SELECT COUNT(*) FROM payout_outbox WHERE delivery <> 'DELIVERED'",
        )
        .await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events undelivered {DELIVERY_TIMEOUT:?} after every payout was PAID"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all_delivered = bulk_started.elapsed();
    drop(a);
    drop(b);
    sessions_gone(&pool, &sessions_a).await;
    sessions_gone(&pool, &sessions_b).await;

    // Money, lookups (the servers are gone: the double's ledger is final).
    let l = std::mem::take(&mut *bank.ledger());
    let moved_by = check_money(&l, &ids);
    check_lookups(&l, &ids);

    // No lease left held after its expiry: every check is the settlement watch's, due in a day (none
    // due, none under a claim); every event delivered, none pending or dead-lettered.
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM payout_checks").await, PAYOUTS as i64);
    let not_watch = count(
        &pool,
        "SELECT COUNT(*) FROM payout_checks WHERE next_check_at IS NULL OR next_check_at < now() + interval '12 hours'",
    )
    .await;
    assert_eq!(
        not_watch, 0,
        "checks due, leased or unscheduled after every payout was PAID"
    );
    let events = count(&pool, "SELECT COUNT(*) FROM payout_outbox").await;
    let undelivered = count(
        &pool,
        "SELECT COUNT(*) FROM payout_outbox WHERE delivery <> 'DELIVERED'",
    )
    .await;
    assert_eq!(undelivered, 0, "events pending or dead-lettered");

    // One attempt each (Succeeded, `{id}-1`); one TRIGGER, by the instance whose answer said so; one
    // PROVIDER_PAID; no PROVIDER_FAILED.
    let payouts = all_payouts(&store).await;
    assert!(payouts.iter().all(|p| p.status == PayoutStatus::Paid));
    let attempts = attempts_of(&store, &ids).await;
    let trails = audit_trails(&store, &ids).await;
    let mut triggers: BTreeMap<String, usize> = BTreeMap::new();
    for p in &payouts {
        let tried = &attempts[&p.id];
        assert_eq!(tried.len(), 1, "{}: exactly one attempt: {tried:?}", p.id);
        assert_eq!(tried[0].idempotency_key, PayoutAttempt::key_for(&p.id, 1));
        assert_eq!(tried[0].outcome, AttemptOutcome::Succeeded, "{}", p.id);
        let trail = &trails[&p.id];
        let entries = |action: &str| trail.iter().filter(|e| e.action == action).count();
        assert_eq!(entries("TRIGGER"), 1, "{}: one TRIGGER: {trail:#?}", p.id);
        assert_eq!(entries("PROVIDER_PAID"), 1, "{}: one PROVIDER_PAID: {trail:#?}", p.id);
        assert_eq!(entries("PROVIDER_FAILED"), 0, "{}: {trail:#?}", p.id);
        let trigger = trail.iter().find(|e| e.action == "TRIGGER").expect("the TRIGGER");
        *triggers.entry(trigger.actor.clone()).or_default() += 1;
        assert_eq!(
            trigger.actor == format!("admin:{ADMIN_B}"),
            triggered_by_b.contains(p.id.as_str()),
            "{}: B's answer says it triggered it exactly when its TRIGGER is B's ({})",
            p.id,
            trigger.actor
        );
    }
    assert_eq!(triggers.values().sum::<usize>(), PAYOUTS);

    // The figures.
    let mut moved: BTreeMap<Instance, usize> = BTreeMap::new();
    for by in moved_by.values() {
        *moved.entry(*by).or_default() += 1;
    }
    let mut posts: BTreeMap<Instance, usize> = BTreeMap::new();
    for p in &l.posts {
        *posts.entry(p.by).or_default() += 1;
    }
    // POSTs of a key POSTed before (whether that one reached the bank or not).
    let mut posted = HashSet::new();
    let repeats = l.posts.iter().filter(|p| !posted.insert(p.key.as_str())).count();
    let resent_by_reconciliation = l.posts.iter().filter(|p| p.after_lookup).count();
    let replayed = l.posts.iter().filter(|p| p.outcome == PostOutcome::Replayed).count();
    let in_use = l.posts.iter().filter(|p| p.outcome == PostOutcome::InUse).count();
    let mut lookups: BTreeMap<Instance, usize> = BTreeMap::new();
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for x in &l.lookups {
        *lookups.entry(x.by).or_default() += 1;
        *per_key.entry(&x.key).or_default() += 1;
    }
    let looked_up_more_than_once = per_key.values().filter(|n| **n > 1).count();
    // Of those, the ones neither found missing once (then re-sent) nor left by A's held lookup.
    let not_found: HashSet<&str> = l.not_found.iter().map(String::as_str).collect();
    let twice_otherwise = per_key
        .iter()
        .filter(|(k, n)| **n > 1 && !not_found.contains(*k) && !leased_at_death.contains_key(**k))
        .count();
    let most_lookups = per_key.values().max().copied().unwrap_or(0);
    // A's held claims, taken over: the first lookup of each after A's, against its lease's end (both
    // read from this host's clock; a takeover needs a pass that starts a pass interval after it).
    let mut taken_over_after = Vec::new();
    for (key, (looked_at, until)) in &leased_at_death {
        let next = l
            .lookups
            .iter()
            .filter(|x| &x.key == key && x.by != Instance::A && x.at > *looked_at)
            .map(|x| x.at)
            .min()
            .unwrap_or_else(|| panic!("{key}: A's claim at its death was never taken over"));
        assert!(
            next >= *until,
            "{key}: taken over at {next}, before A's lease ended at {until}"
        );
        taken_over_after.push(next - *until);
    }
    let earliest_takeover = taken_over_after.iter().min().map(|d| d.num_milliseconds());
    println!(
        "bulk triggers: B triggered {} and was refused {refused:?}; TRIGGER entries {triggers:?}; B answered after \
         {bulk_b_done:?}",
        triggered_by_b.len()
    );
    println!(
        "money moved by {moved:?} (1,000 movements, one per payout); POSTs {posts:?}: {} lost before the bank, \
         {repeats} of a key sent before ({replayed} answered with its first transfer, {in_use} with 409), \
         {resent_by_reconciliation} re-sends by reconciliation (of a key looked up before)",
        l.posts.iter().filter(|p| p.outcome == PostOutcome::Lost).count()
    );
    println!(
        "lookups {lookups:?} ({} in all, {} answered not found; {} attempts looked up, {looked_up_more_than_once} \
         more than once ({twice_otherwise} of them neither found missing nor A's), at most {most_lookups} times, \
         never twice under one claim); A's {} held claims taken over by lookups from {:?} ms after their leases ended",
        l.lookups.len(),
        l.not_found.len(),
        per_key.len(),
        leased_at_death.len(),
        earliest_takeover
    );
    println!(
        "all PAID {all_paid:?} after the bulk triggers ({all_paid_after_restart:?} after the restart), {events} events \
         all delivered after {all_delivered:?}; seeding took {seeded:?}, all {:?}",
        started.elapsed()
    );
    bank.pool.close().await;
    pool.close().await;
}
