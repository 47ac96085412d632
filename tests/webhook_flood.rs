//! Webhook flood (issue 19 item 4; RELIABILITY.md, "Webhook flood", and guarantee 29).
//!
//! The demo server runs as a child process on a fresh Postgres schema, so what is measured is the
//! real TCP listener with the server's real limits (the 256 KiB body limit, the per-address webhook
//! rate limit of 50/s with bursts of 100, verification on the raw bytes before anything is parsed).
//! Its M-Pesa adapter is real (`MPESA_WEBHOOK_SECRET`: results are authenticated by an HMAC of the
//! raw body) and so is its Stripe adapter (`STRIPE_WEBHOOK_SECRET`); PayPal and the bank are the
//! demo's simulated providers (their routes refuse anything without the simulation token).
//!
//! Setup, through the engine: 1,000 doctors with an M-Pesa number and one completed January 2025
//! consultation each; the 1,000 payouts are calculated, approved and triggered (in this process,
//! with the real M-Pesa adapter pointed at a Daraja double served by this test, which acknowledges
//! each B2C request with a `ConversationID`), so each is PROCESSING with one ACCEPTED attempt whose
//! key and ConversationID are known.
//!
//! Then, at the same time:
//! - a flood client on `127.0.0.2` sends unauthenticated junk to every webhook route as fast as it
//!   can, from [`FLOOD_WORKERS`] requests in flight, for `PAYOUTS_FLOOD_SECS` seconds (default 30;
//!   longer if the authentic deliveries take longer): results and Stripe events that name the real
//!   payouts (some that would pay them, some that would fail them) under bad, missing or
//!   wrong-secret signatures, M-Pesa callbacks on guessed secret-token routes, balance results,
//!   simulated-provider deliveries with a wrong token, random bytes, empty and unparsable bodies,
//!   deeply nested JSON, wrong content types and 1 MiB bodies. Every JSON junk body carries the
//!   marker [`MARKER`]. The flood has a runtime of its own, its threads at the lowest CPU priority
//!   (`nice` 19; `PAYOUTS_FLOOD_NICE=0` for normal priority): on one machine it stands in for an
//!   attacker on another, whose CPU is not taken from the server's;
//! - an authentic sender on `127.0.0.1` delivers one signed M-Pesa result (ResultCode 0) per payout,
//!   at a steady [`AUTHENTIC_PER_SEC`] a second (under the server's per-address limit, as a
//!   provider that honours it), each on its own task, and records which were accepted (2xx, the
//!   event applied) on their first delivery and how long each took.
//!
//! After the flood the refused ones are delivered again (bounded). Then:
//! - at least 99% were accepted on first delivery, and all of them after redelivery;
//! - every payout is PAID, with its attempt SUCCEEDED, exactly one `webhook_events` row (the
//!   authentic event's id), exactly one new audit entry (`PROVIDER_PAID` by the M-Pesa provider),
//!   and the same number of new outbox events as every other payout;
//! - the database holds no trace of the junk: no row of any table contains [`MARKER`], the new
//!   `webhook_events` rows are exactly the 1,000 authentic event ids, and every table the webhooks
//!   do not write is byte-for-byte what it was before the flood.
//!
//! Figures are printed (`--nocapture`): junk requests a second sustained (and by answer), the
//! server's CPU time meanwhile, authentic deliveries accepted on first delivery, and their latency
//! (p50, p99, max).
//!
//! Needs `PAYOUTS_TEST_POSTGRES_URL` (prints `skipped: ...` and passes without it); builds the
//! `demo_server` example with the test's own features and profile. That the checks can fail:
//! `PAYOUTS_FLOOD_PLANT=same-address` sends the flood from the authentic sender's address, which
//! the per-address limit then throttles with the junk, so far fewer than 99% are accepted on first
//! delivery and the test fails.

mod common;
#[path = "common/daraja_double.rs"]
mod daraja_double;
mod demo_process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use chrono::Utc;
use daraja_double::{Daraja, hmac_hex};
use demo_process::*;
use futures::{StreamExt, TryStreamExt};
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::PayoutService;
use payouts::domain::{Actor, AttemptOutcome, PayoutId, Provider};
use payouts::providers::mpesa::{MpesaConfig, MpesaProvider};
use payouts::status::PayoutStatus;
use payouts::store_sqlx::{ConsultationTable, PgStore, RecipientTable, SqlConsultationSource, SqlRecipientDirectory};
use serde_json::{Value, json};
use sqlx::postgres::PgPool;

use crate::common::{calculate, january};

const PAYOUTS: usize = 1000;
/// How long the flood lasts at least, in seconds (`PAYOUTS_FLOOD_SECS`, default 30).
const FLOOD_SECS_VAR: &str = "PAYOUTS_FLOOD_SECS";
const DEFAULT_FLOOD_SECS: u64 = 30;
/// The authentic sender's pace: under the server's per-address webhook limit (50/s), as a provider
/// that honours `Retry-After` keeps to it. 1,000 events take 25 s.
const AUTHENTIC_PER_SEC: u64 = 40;
/// Junk requests in flight at once.
const FLOOD_WORKERS: usize = 48;
/// Of which this many open a new connection for every request.
const FLOOD_WORKERS_WITHOUT_KEEPALIVE: usize = 4;
/// How long a client waits for an answer (an authentic delivery not answered by then counts as
/// refused, as a provider's delivery timeout would).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Redeliveries of a refused event after the flood, a second apart (or as `Retry-After` says).
const REDELIVERIES: usize = 10;
/// Every JSON junk body carries it; no row may.
const MARKER: &str = "flood-junk";
const HUGE_BODY: usize = 1 << 20;

const MPESA_WEBHOOK_SECRET: &str = "flood-test-mpesa-hmac-secret-7c1e9a4f";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_flood_test_2b8d6f0a4c1e3579";
const WRONG_SECRET: &str = "not-the-secret";

const FLOOD_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const AUTHENTIC_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

const PLANT_VAR: &str = "PAYOUTS_FLOOD_PLANT";
/// `0` runs the flood at normal CPU priority (see [`lowest_priority`]).
const NICE_VAR: &str = "PAYOUTS_FLOOD_NICE";

/// Every webhook route the server has (`payout_server::webhook_router`), with sample path parameters.
const ROUTES: [&str; 14] = [
    "/api/webhooks/stripe-payouts",
    "/api/webhooks/paypal-payouts",
    "/api/webhooks/mpesa-b2c",
    "/api/webhooks/mpesa-b2c/status",
    "/api/webhooks/mpesa-b2c/timeout",
    "/api/webhooks/mpesa-b2c/balance/result",
    "/api/webhooks/mpesa-b2c/balance/timeout",
    "/api/webhooks/mpesa-b2c/guessed-token",
    "/api/webhooks/mpesa-b2c/guessed-token/timeout",
    "/api/webhooks/mpesa-b2c/guessed-token/status",
    "/api/webhooks/mpesa-b2c/guessed-token/result",
    "/api/webhooks/mpesa-b2c/guessed-token/balance/result",
    "/api/webhooks/mpesa-b2c/guessed-token/balance/timeout",
    "/api/webhooks/payouts",
];

fn flood_secs() -> u64 {
    match std::env::var(FLOOD_SECS_VAR).as_deref() {
        Err(_) | Ok("") => DEFAULT_FLOOD_SECS,
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{FLOOD_SECS_VAR}={v:?}: whole seconds")),
    }
}

fn same_address_plant() -> bool {
    match std::env::var(PLANT_VAR).as_deref() {
        Err(_) | Ok("") => false,
        Ok("same-address") => true,
        Ok(other) => panic!("{PLANT_VAR}={other:?}: use same-address"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The Daraja double (`common/daraja_double.rs`), signing, and the junk
// ---------------------------------------------------------------------------------------------------------

/// One PROCESSING payout's attempt, as the authentic sender and the junk name it.
#[derive(Debug, Clone)]
struct Target {
    payout_id: PayoutId,
    key: String,
    conversation: String,
}

impl Target {
    /// The authentic result: paid (ResultCode 0), naming the conversation and our key.
    fn result_body(&self, n: usize) -> Vec<u8> {
        daraja_double::paid_result(&self.key, &self.conversation, 500, n)
    }

    /// The event id the adapter gives the authentic result.
    fn event_id(&self) -> String {
        format!("mpesa:{}:0", self.conversation)
    }
}

/// A small deterministic generator for junk bytes (no `rand` here).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn hex(&mut self, n: usize) -> String {
        self.bytes(n / 2).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One junk request: where, which headers, what body.
struct Junk {
    route: String,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

/// The junk kinds, cycled through; `targets` are the real payouts, so some junk names them.
struct JunkMaker {
    targets: Arc<Vec<Target>>,
    huge: Bytes,
    nested: Bytes,
}

const JUNK_KINDS: u64 = 20;

impl JunkMaker {
    fn new(targets: Arc<Vec<Target>>) -> Self {
        let mut huge = format!("{{\"id\":\"evt_{MARKER}\",\"type\":\"transfer.created\",\"pad\":\"").into_bytes();
        huge.resize(HUGE_BODY - 2, b'x');
        huge.extend_from_slice(b"\"}");
        let nested = format!("{}\"{MARKER}\"{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes();
        JunkMaker {
            targets,
            huge: huge.into(),
            nested: nested.into(),
        }
    }

    fn make(&self, i: u64) -> Junk {
        let mut rng = SplitMix(i);
        let t = &self.targets[(rng.next() % self.targets.len() as u64) as usize];
        let now = Utc::now().timestamp();
        let json = |v: Value| Bytes::from(serde_json::to_vec(&v).expect("JSON"));
        let stripe_event = json(json!({
            "id": format!("evt_{MARKER}_{i}"), "object": "event", "type": "transfer.created",
            "created": now, "livemode": false,
            "data": {"object": {"id": format!("tr_{MARKER}_{i}"), "object": "transfer", "amount": 50000,
                "currency": "kes", "metadata": {"idempotency_key": t.key, "note": MARKER}}}}));
        let mpesa_result = |code: u32| {
            json(
                json!({"Result": {"ResultType": 0, "ResultCode": code, "ResultDesc": MARKER,
                "OriginatorConversationID": t.key, "ConversationID": t.conversation,
                "TransactionID": format!("{MARKER}-{i}")}}),
            )
        };
        let ct_json = ("content-type", "application/json".to_string());
        let route = |r: &str| r.to_string();
        let random_route = ROUTES[(rng.next() % ROUTES.len() as u64) as usize].to_string();
        match i % JUNK_KINDS {
            // Stripe events naming a real payout's key: wrong secret, no signature, random v1, stale t.
            0 => Junk {
                route: route(ROUTES[0]),
                headers: vec![
                    ct_json,
                    (
                        "stripe-signature",
                        format!(
                            "t={now},v1={}",
                            hmac_hex(WRONG_SECRET, &[now.to_string().as_bytes(), b".", &stripe_event])
                        ),
                    ),
                ],
                body: stripe_event,
            },
            1 => Junk {
                route: route(ROUTES[0]),
                headers: vec![ct_json],
                body: stripe_event,
            },
            2 => Junk {
                route: route(ROUTES[0]),
                headers: vec![ct_json, ("stripe-signature", format!("t={now},v1={}", rng.hex(64)))],
                body: stripe_event,
            },
            3 => Junk {
                route: route(ROUTES[0]),
                headers: vec![
                    ct_json,
                    ("stripe-signature", "t=-99999999999999999999,v1=zz,v0=,,,=".into()),
                ],
                body: stripe_event,
            },
            // M-Pesa results for a real payout: one that would pay it, one that would fail it.
            4 => Junk {
                route: route(ROUTES[2]),
                headers: vec![ct_json, ("x-mpesa-signature", rng.hex(64))],
                body: mpesa_result(0),
            },
            5 => {
                let body = mpesa_result(1);
                Junk {
                    route: route(ROUTES[2]),
                    headers: vec![ct_json, ("x-mpesa-signature", hmac_hex(WRONG_SECRET, &[&body]))],
                    body,
                }
            }
            // The same with no signature, on the status and timeout routes; trust headers forged.
            6 => Junk {
                route: route(ROUTES[3]),
                headers: vec![
                    ct_json,
                    ("x-payouts-callback-token", "guessed-token".into()),
                    ("x-payouts-client-ip", "196.201.214.200".into()),
                ],
                body: mpesa_result(0),
            },
            7 => Junk {
                route: route(ROUTES[4]),
                headers: vec![ct_json, ("x-mpesa-signature", "".into())],
                body: mpesa_result(0),
            },
            // A balance result that would tell the funds check a balance.
            8 => Junk {
                route: route(if i % 2 == 0 { ROUTES[5] } else { ROUTES[11] }),
                headers: vec![ct_json, ("x-mpesa-signature", rng.hex(64))],
                body: json(
                    json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": MARKER,
                    "OriginatorConversationID": format!("{MARKER}-{i}"), "ConversationID": format!("AG_{MARKER}"),
                    "ResultParameters": {"ResultParameter": [{"Key": "AccountBalance",
                        "Value": "Utility Account|KES|99999999.00|99999999.00|0.00|0.00"}]}}}),
                ),
            },
            // Guessed secret-token routes.
            9 => Junk {
                route: route(ROUTES[7 + (i / JUNK_KINDS % 6) as usize]),
                headers: vec![ct_json],
                body: mpesa_result(0),
            },
            // PayPal (simulated here): a transmission that names a real payout, made-up signature.
            10 => Junk {
                route: route(ROUTES[1]),
                headers: vec![
                    ct_json,
                    ("paypal-transmission-id", format!("{MARKER}-{i}")),
                    ("paypal-transmission-time", Utc::now().to_rfc3339()),
                    ("paypal-transmission-sig", rng.hex(128)),
                    (
                        "paypal-cert-url",
                        "https://api.paypal.com/v1/notifications/certs/CERT-junk".into(),
                    ),
                    ("paypal-auth-algo", "SHA256withRSA".into()),
                ],
                body: json(
                    json!({"id": format!("WH-{MARKER}-{i}"), "event_type": "PAYMENT.PAYOUTS-ITEM.SUCCEEDED",
                    "resource": {"payout_item_id": format!("{MARKER}{i}"), "transaction_status": "SUCCESS",
                        "payout_item": {"sender_item_id": t.key}}}),
                ),
            },
            // The generic route as a simulated provider with a wrong token, and with nothing it knows.
            11 => Junk {
                route: route(ROUTES[13]),
                headers: vec![
                    ct_json,
                    ("x-simulation-token", rng.hex(32)),
                    ("x-simulated-provider", "BANK_TRANSFER".into()),
                ],
                body: json(
                    json!({"eventId": format!("{MARKER}-{i}"), "payoutId": t.payout_id.to_string(),
                    "idempotencyKey": t.key, "status": "PAID"}),
                ),
            },
            12 => Junk {
                route: route(ROUTES[13]),
                headers: vec![ct_json],
                body: mpesa_result(0),
            },
            // Random bytes, empty bodies, unparsable JSON, deep nesting, wrong content types.
            13 => Junk {
                route: random_route,
                headers: vec![("content-type", "application/octet-stream".into())],
                body: rng.bytes(1 + (i % 4096) as usize).into(),
            },
            14 => Junk {
                route: random_route,
                headers: vec![
                    ct_json,
                    ("x-mpesa-signature", rng.hex(64)),
                    ("stripe-signature", format!("t={now},v1=00")),
                ],
                body: Bytes::new(),
            },
            15 => Junk {
                route: random_route,
                headers: vec![ct_json, ("x-mpesa-signature", rng.hex(64))],
                body: Bytes::from_static(b"{\"Result\": {\"ResultCode\": 0, \"flood-junk\""),
            },
            16 => Junk {
                route: random_route,
                headers: vec![ct_json, ("stripe-signature", format!("t={now},v1={}", rng.hex(64)))],
                body: self.nested.clone(),
            },
            17 => Junk {
                route: random_route,
                headers: vec![("content-type", "text/xml; charset=utf-8".into())],
                body: Bytes::from(format!("<Result><ResultCode>0</ResultCode><x>{MARKER}</x></Result>")),
            },
            18 => Junk {
                route: random_route,
                headers: vec![("content-type", "multipart/form-data; boundary=junk".into())],
                body: Bytes::from(format!(
                    "--junk\r\nContent-Disposition: form-data; name=\"{MARKER}\"\r\n\r\n{}\r\n--junk--\r\n",
                    rng.hex(64)
                )),
            },
            // Over the body limit.
            _ => Junk {
                route: random_route,
                headers: vec![ct_json, ("stripe-signature", format!("t={now},v1={}", rng.hex(64)))],
                body: self.huge.clone(),
            },
        }
    }
}

/// The flood's answers, by status (or `error` when the request got none).
#[derive(Default)]
struct FloodTally {
    by_answer: Mutex<BTreeMap<String, u64>>,
    sent: AtomicU64,
}

impl FloodTally {
    fn count(&self, answer: String) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        *self
            .by_answer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(answer)
            .or_default() += 1;
    }
}

fn client_from(addr: Ipv4Addr, keep_alive: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .local_address(IpAddr::V4(addr))
        .timeout(DELIVERY_TIMEOUT);
    if !keep_alive {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("an HTTP client")
}

/// Puts the calling thread at the lowest CPU priority (`nice` 19, Linux: per thread), so that the
/// flood's CPU comes out of what nothing else wants rather than out of the server's share, as an
/// attacker's on another machine would.
fn lowest_priority() {
    if std::env::var(NICE_VAR).is_ok_and(|v| v == "0") {
        return;
    }
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    let _ = std::process::Command::new("renice")
        .args(["-n", "19", "-p", &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Junk requests made before the flood starts, cycled through, so that the attacker spends its
/// time sending, not making junk.
const PREBUILT_JUNK: u64 = 200 * JUNK_KINDS;

/// Sends junk from `addr` until `stop`, from [`FLOOD_WORKERS`] requests in flight, on a runtime
/// and threads of its own (as an attacker on a machine of its own would): the authentic sender's
/// tasks never wait behind the flood's in one scheduler.
fn spawn_flood(
    base: String,
    addr: Ipv4Addr,
    junk: Arc<Vec<Junk>>,
    tally: Arc<FloodTally>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(lowest_priority)
            .enable_all()
            .build()
            .expect("the flood's runtime");
        runtime.block_on(async move {
            let next = Arc::new(AtomicU64::new(0));
            let pooled = client_from(addr, true);
            let workers = (0..FLOOD_WORKERS).map(|w| {
                let http = if w < FLOOD_WORKERS_WITHOUT_KEEPALIVE {
                    client_from(addr, false)
                } else {
                    pooled.clone()
                };
                let (base, junk, tally, stop, next) =
                    (base.clone(), junk.clone(), tally.clone(), stop.clone(), next.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let j = &junk[(next.fetch_add(1, Ordering::Relaxed) % junk.len() as u64) as usize];
                        let mut req = http.post(format!("{base}{}", j.route)).body(j.body.clone());
                        for (name, value) in &j.headers {
                            req = req.header(*name, value);
                        }
                        let answer = match req.send().await {
                            Ok(res) => {
                                let status = res.status().as_u16().to_string();
                                // Read the answer, so the connection can be used again.
                                let _ = res.bytes().await;
                                status
                            }
                            Err(_) => "error".to_string(),
                        };
                        tally.count(answer);
                    }
                })
            });
            for w in futures::future::join_all(workers).await {
                w.expect("a flood worker");
            }
        });
    })
}

// ---------------------------------------------------------------------------------------------------------
// Authentic deliveries
// ---------------------------------------------------------------------------------------------------------

/// What one delivery got.
#[derive(Debug, Clone)]
struct Delivery {
    /// 2xx with the event applied (or, on a redelivery, already applied).
    accepted: bool,
    /// The status, the event's result or the error, for the failure message.
    answer: String,
    latency: Duration,
    retry_after: Option<Duration>,
}

async fn deliver(http: &reqwest::Client, base: &str, target: &Target, n: usize) -> Delivery {
    let body = target.result_body(n);
    let signature = hmac_hex(MPESA_WEBHOOK_SECRET, &[&body]);
    let started = Instant::now();
    let sent = http
        .post(format!("{base}/api/webhooks/mpesa-b2c"))
        .header("content-type", "application/json")
        .header("x-mpesa-signature", signature)
        .body(body)
        .send()
        .await;
    let (accepted, answer, retry_after) = match sent {
        Ok(res) => {
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .map(Duration::from_secs);
            let text = res.text().await.unwrap_or_default();
            let result = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["data"]["events"][0]["result"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let applied = status.is_success() && (result == "applied" || result == "duplicate");
            (
                applied,
                format!("{} {result} {text:.200}", status.as_u16()),
                retry_after,
            )
        }
        Err(e) => (false, format!("error: {e}"), None),
    };
    Delivery {
        accepted,
        answer,
        latency: started.elapsed(),
        retry_after,
    }
}

/// The CPU time (user and system) process `pid` has used so far, from `/proc/{pid}/stat` (Linux,
/// in clock ticks of 1/100 s); `None` elsewhere.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------------------
// The database, before and after
// ---------------------------------------------------------------------------------------------------------

/// Tables the authentic webhooks write (or the relay updates): checked row by row instead.
const WRITTEN_BY_WEBHOOKS: [&str; 9] = [
    "payouts",
    "payout_run_members",
    "payout_run_tallies",
    "payout_attempts",
    "webhook_events",
    "audit_entries",
    "payout_outbox",
    "payout_checks",
    "payout_tallies",
];

async fn tables(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("listing the schema's tables")
}

/// Each table's row count and an MD5 of its rows (as text, sorted).
async fn fingerprints(pool: &PgPool) -> BTreeMap<String, (i64, String)> {
    let mut out = BTreeMap::new();
    for t in tables(pool).await {
        let sql =
            format!("SELECT COUNT(*), COALESCE(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM \"{t}\" x");
        let row: (i64, String) = sqlx::query_as(&sql)
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.insert(t, row);
    }
    out
}

async fn max_id(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sql)
        .fetch_one(pool)
        .await
        .expect(sql)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_flood_from_one_address_neither_stops_authentic_events_nor_leaves_a_trace() {
    let Some(url) = postgres_url() else { return };
    let exe = tokio::task::spawn_blocking(demo_server_exe)
        .await
        .expect("building the demo server");
    PgTestSchema::create(&url, "payouts_flood")
        .await
        .run(|schema| flood(schema.url(), exe))
        .await;
}

async fn flood(database_url: String, exe: PathBuf) {
    let plant = same_address_plant();
    if plant {
        println!("PLANTED: the flood comes from the authentic sender's address (this run must fail)");
    }
    let flood_for = Duration::from_secs(flood_secs());
    let daraja = Arc::new(Daraja::default());
    let daraja_addr = daraja_double::serve(daraja.clone()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", database_url.clone()),
        ("PAYOUTS_ADDR", format!("127.0.0.1:{port}")),
        ("NEXTAUTH_SECRET", JWT_SECRET.to_string()),
        ("PAYOUTS_SAMPLE_DATA", "0".to_string()),
        // Nothing but the webhooks settles a payout here.
        ("PAYOUTS_RECONCILE_SECS", "0".to_string()),
        ("NO_COLOR", "1".to_string()),
        ("MPESA_CONSUMER_KEY", "flood-key".to_string()),
        ("MPESA_CONSUMER_SECRET", "flood-secret".to_string()),
        ("MPESA_SHORTCODE", "600000".to_string()),
        ("MPESA_INITIATOR_NAME", "flood-initiator".to_string()),
        ("MPESA_B2C_SECURITY_CREDENTIAL", "flood-credential".to_string()),
        ("MPESA_RESULT_URL", format!("{base}/api/webhooks/mpesa-b2c")),
        ("MPESA_TIMEOUT_URL", format!("{base}/api/webhooks/mpesa-b2c/timeout")),
        ("MPESA_WEBHOOK_SECRET", MPESA_WEBHOOK_SECRET.to_string()),
        ("MPESA_API_BASE", format!("http://{daraja_addr}")),
        ("MPESA_RATE_LIMIT", "0".to_string()),
        // Stripe's junk is verified for real; nothing here calls Stripe.
        ("STRIPE_SECRET_KEY", "sk_test_flood".to_string()),
        ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET.to_string()),
        ("STRIPE_API_BASE", "http://127.0.0.1:9".to_string()),
    ];

    // Setup through the engine: calculated, approved and sent to M-Pesa, so every payout is PROCESSING.
    let setup_started = Instant::now();
    let store = PgStore::connect(&database_url)
        .await
        .expect("migrating the test schema");
    let pool = store.pool().clone();
    create_host_tables(&pool, PAYOUTS).await;
    sqlx::query("UPDATE doctor_profiles SET mpesa_phone_number = '2547' || lpad(substr(doctor_id, 4), 8, '0')")
        .execute(&pool)
        .await
        .expect("giving the doctors M-Pesa numbers");
    let vars: HashMap<&str, String> = env.iter().cloned().collect();
    let mpesa = MpesaConfig::from_vars(|k| vars.get(k).cloned())
        .and_then(MpesaProvider::new)
        .expect("the M-Pesa adapter");
    let service = PayoutService::builder()
        .store(Arc::new(store.clone()))
        .consultations(Arc::new(
            SqlConsultationSource::new(pool.clone(), ConsultationTable::default()).expect("a consultation source"),
        ))
        .directory(Arc::new(
            SqlRecipientDirectory::new(pool.clone(), RecipientTable::default()).expect("a recipient directory"),
        ))
        .provider(Arc::new(mpesa))
        .build()
        .expect("a service");
    let ids = calculate(&service, january(), PAYOUTS).await;
    let admin = Actor::admin("flood-approver");
    futures::stream::iter(&ids)
        .map(|id| service.approve(&admin, id))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("approving");
    for outcome in service.bulk_trigger(&admin, &ids, Provider::MpesaB2c).await {
        let payout = outcome
            .result
            .unwrap_or_else(|e| panic!("triggering {}: {e}", outcome.id));
        assert_eq!(payout.status, PayoutStatus::Processing, "{}", payout.id);
    }
    let attempts = attempts_of(&store, &ids).await;
    let targets: Vec<Target> = ids
        .iter()
        .map(|id| {
            let a = &attempts[id];
            assert_eq!(a.len(), 1, "{id}: one attempt");
            assert_eq!(a[0].outcome, AttemptOutcome::Accepted, "{id}");
            Target {
                payout_id: id.clone(),
                key: a[0].idempotency_key.clone(),
                conversation: a[0].provider_reference.clone().expect("the ConversationID"),
            }
        })
        .collect();
    assert_eq!(daraja.acknowledged(), PAYOUTS, "one B2C request per payout");
    let targets = Arc::new(targets);
    println!("setup: {PAYOUTS} payouts PROCESSING in {:?}", setup_started.elapsed());

    // The server.
    let logs = tempfile::tempdir().expect("a directory for the server log");
    let mut server = DemoServer::start(&exe, &env, logs.path().join("server.log"));
    let health = reqwest::Client::new();
    server.wait_healthy(&health, &base).await;
    let before = fingerprints(&pool).await;
    let audit_before = max_id(&pool, "SELECT MAX(id) FROM audit_entries").await;
    let outbox_before = max_id(&pool, "SELECT MAX(seq) FROM payout_outbox").await;
    assert_eq!(before["webhook_events"].0, 0, "no webhook event yet");

    // The flood, and the authentic deliveries at a steady pace beside it.
    let tally = Arc::new(FloodTally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let flood_addr = if plant { AUTHENTIC_ADDR } else { FLOOD_ADDR };
    let cpu_before = cpu_seconds(server.id());
    let flood_started = Instant::now();
    let maker = JunkMaker::new(targets.clone());
    let junk: Arc<Vec<Junk>> = Arc::new((0..PREBUILT_JUNK).map(|i| maker.make(i)).collect());
    let flood_thread = spawn_flood(base.clone(), flood_addr, junk, tally.clone(), stop.clone());
    // Let the flood get going (and use up its address's burst) before the first authentic event.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let authentic = client_from(AUTHENTIC_ADDR, true);
    let pace = Duration::from_secs(1) / AUTHENTIC_PER_SEC as u32;
    let first_started = Instant::now();
    let mut deliveries = Vec::with_capacity(PAYOUTS);
    for (n, target) in targets.iter().enumerate() {
        tokio::time::sleep_until((first_started + pace * n as u32).into()).await;
        let (http, base, target) = (authentic.clone(), base.clone(), target.clone());
        deliveries.push(tokio::spawn(async move { deliver(&http, &base, &target, n).await }));
    }
    let mut first = Vec::with_capacity(PAYOUTS);
    for d in deliveries {
        first.push(d.await.expect("a delivery task"));
    }
    let authentic_took = first_started.elapsed();
    let rest = flood_for.saturating_sub(flood_started.elapsed());
    tokio::time::sleep(rest).await;
    stop.store(true, Ordering::Relaxed);
    let flood_took = flood_started.elapsed();
    let server_cpu = cpu_seconds(server.id())
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    tokio::task::spawn_blocking(move || flood_thread.join())
        .await
        .expect("joining the flood")
        .expect("the flood");
    let junk_sent = tally.sent.load(Ordering::Relaxed);
    let by_answer = tally.by_answer.lock().unwrap().clone();

    // The figures.
    let accepted_first = first.iter().filter(|d| d.accepted).count();
    let mut latencies: Vec<Duration> = first.iter().map(|d| d.latency).collect();
    latencies.sort();
    let junk_per_sec = junk_sent as f64 / flood_took.as_secs_f64();
    println!(
        "flood: {junk_sent} junk requests from {flood_addr} in {flood_took:.1?} ({junk_per_sec:.0}/s sustained), \
         by answer: {by_answer:?}; the server used {} of CPU meanwhile",
        server_cpu.map_or("an unknown amount".to_string(), |s| format!("{s:.1} s"))
    );
    println!(
        "authentic: {accepted_first}/{PAYOUTS} accepted on first delivery from {AUTHENTIC_ADDR} over \
         {authentic_took:.1?} ({AUTHENTIC_PER_SEC}/s); latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0),
    );
    let refused: Vec<(usize, &Delivery)> = first.iter().enumerate().filter(|(_, d)| !d.accepted).collect();
    for (n, d) in refused.iter().take(5) {
        println!("refused on first delivery: #{n}: {}", d.answer);
    }
    assert!(
        junk_sent > 0 && by_answer.keys().any(|a| a != "error"),
        "the flood reached the server: {by_answer:?}"
    );

    // The server is still up and answering.
    server.wait_healthy(&health, &base).await;

    // Redelivery of the refused ones, after the flood.
    let mut redelivered = 0;
    for (n, _) in &refused {
        let target = &targets[*n];
        let mut last = None;
        for _ in 0..REDELIVERIES {
            let d = deliver(&authentic, &base, target, *n).await;
            if d.accepted {
                last = None;
                redelivered += 1;
                break;
            }
            let wait = d
                .retry_after
                .unwrap_or(Duration::from_secs(1))
                .max(Duration::from_millis(100));
            last = Some(d);
            tokio::time::sleep(wait).await;
        }
        assert!(
            last.is_none(),
            "event #{n} ({}) still refused after {REDELIVERIES} redeliveries: {:?}",
            target.event_id(),
            last
        );
    }
    println!("redelivered after the flood: {redelivered}");

    // Nothing may change while the database is read.
    server.kill();

    assert!(
        accepted_first * 100 >= PAYOUTS * 99,
        "only {accepted_first}/{PAYOUTS} authentic events accepted on first delivery during the flood"
    );

    // Every payout settled exactly once.
    let statuses = status_counts(&pool).await;
    assert_eq!(
        statuses,
        BTreeMap::from([("PAID".to_string(), PAYOUTS as i64)]),
        "every payout PAID"
    );
    let attempts = attempts_of(&store, &ids).await;
    for id in &ids {
        let a = &attempts[id];
        assert_eq!(a.len(), 1, "{id}: still one attempt");
        assert_eq!(a[0].outcome, AttemptOutcome::Succeeded, "{id}");
    }
    let events: Vec<(String, String, String)> =
        sqlx::query_as("SELECT provider, event_id, payout_id FROM webhook_events ORDER BY event_id")
            .fetch_all(&pool)
            .await
            .expect("reading webhook_events");
    let expected: HashSet<(String, String, String)> = targets
        .iter()
        .map(|t| ("MPESA_B2C".to_string(), t.event_id(), t.payout_id.to_string()))
        .collect();
    assert_eq!(events.len(), PAYOUTS, "one webhook event row per authentic event");
    assert_eq!(
        events.into_iter().collect::<HashSet<_>>(),
        expected,
        "the webhook events are exactly the authentic ones"
    );
    let audit: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT payout_id, actor, action, to_status FROM audit_entries WHERE id > $1 ORDER BY payout_id",
    )
    .bind(audit_before)
    .fetch_all(&pool)
    .await
    .expect("reading the new audit entries");
    assert_eq!(
        audit.len(),
        PAYOUTS,
        "one new audit entry per payout: {:?}",
        &audit[..audit.len().min(5)]
    );
    let audited: HashSet<&str> = audit.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(audited.len(), PAYOUTS, "each payout audited once");
    for (payout, actor, action, to) in &audit {
        assert_eq!(
            (actor.as_str(), action.as_str(), to.as_deref()),
            ("provider:MPESA_B2C", "PROVIDER_PAID", Some("PAID")),
            "{payout}"
        );
    }
    let outbox: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT payout_id, COUNT(*) FROM payout_outbox WHERE seq > $1 GROUP BY payout_id ORDER BY 1")
            .bind(outbox_before)
            .fetch_all(&pool)
            .await
            .expect("reading the new outbox events");
    let ours: HashSet<String> = ids.iter().map(ToString::to_string).collect();
    assert_eq!(
        outbox.len(),
        PAYOUTS,
        "new events for every payout and nothing else: {outbox:?}"
    );
    let per_payout = outbox[0].1;
    for (payout, n) in &outbox {
        assert!(payout.as_ref().is_some_and(|p| ours.contains(p)), "{payout:?}");
        assert_eq!(*n, per_payout, "{payout:?}: as many new events as every other payout");
    }

    // No trace of the junk.
    for t in tables(&pool).await {
        let sql = format!("SELECT COUNT(*) FROM \"{t}\" x WHERE x::text LIKE '%' || $1 || '%'");
        let (n,): (i64,) = sqlx::query_as(&sql)
            .bind(MARKER)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(n, 0, "{t}: {n} rows carry the junk's marker");
    }
    let after = fingerprints(&pool).await;
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same tables"
    );
    for (t, fingerprint) in &before {
        if WRITTEN_BY_WEBHOOKS.contains(&t.as_str()) {
            continue;
        }
        assert_eq!(&after[t], fingerprint, "{t} changed during the flood");
    }
    for t in ["payouts", "payout_attempts", "payout_run_members"] {
        assert_eq!(after[t].0, before[t].0, "{t}: no row added");
    }
    assert!(
        after["payout_checks"].0 <= PAYOUTS as i64,
        "payout_checks: at most one row per payout"
    );
    drop(store);
    pool.close().await;
}
