//! Service-level concurrency (RELIABILITY.md: "two admins approve / trigger at once", "two app instances
//! claim the same work", "duplicate webhook").
//!
//! 1. Eight tasks of a multi-threaded runtime race `approve`, `trigger` and PAID webhooks (each delivered
//!    twice, by every task that sees a provider reference) over the same 200 payouts, on a SQLite file and
//!    on Postgres. Afterwards every payout is PAID, the provider was sent each payout exactly once with the
//!    key `{id}-1`, each transition is audited exactly once, and every loser got `Conflict`,
//!    `InvalidTransition` or a duplicate-event outcome, never another error.
//! 2. Two OS processes (this binary again, running the ignored `bulk_trigger_worker`) run `bulk_trigger`
//!    over the same 200 APPROVED payouts in one Postgres schema. Their provider records every send in a
//!    table with no unique constraint, so a double send would show: each payout is sent exactly once in
//!    total and has exactly one TRIGGER audit entry, written by the process that won it.
//!
//! The Postgres tests need `PAYOUTS_TEST_POSTGRES_URL`; without it they print `skipped: ...` and pass. Each
//! works in a new schema, dropped at the end, also when the test fails.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use http::{HeaderMap, HeaderValue};
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::domain::{Actor, AttemptOutcome, Consultation, PayoutId, Provider, Recipient};
use payouts::error::{Error, ProviderError, ProviderErrorKind, WebhookError};
use payouts::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payouts::service::EventOutcome;
use payouts::simulated::{SIMULATION_TOKEN_HEADER, SimulatedProvider};
use payouts::source::{StaticConsultations, StaticDirectory};
use payouts::status::{PayoutEvent, PayoutStatus};
use payouts::store::{Page, PayoutFilter};
use payouts::store_sqlx::{PgStore, SqliteStore};
use payouts::{PayoutService, PayoutStore};
use sqlx::postgres::PgPool;
use tokio::sync::Barrier;

use common::{calculate, january};

const PAYOUTS: usize = 200;
const TASKS: usize = 8;
const PROVIDER: Provider = Provider::MpesaB2c;
/// The seed of the racing tasks' shuffles (task `t` shuffles within blocks with `SEED + 1 + t`).
const SEED: u64 = 0x5eed_0003;
/// The racing tasks go through the payouts in blocks of this many, in one shared (shuffled) block order, so
/// at any time they all fight over the same few payouts, each in its own order within the block.
const BLOCK: usize = TASKS;

const POSTGRES_URL_VAR: &str = "PAYOUTS_TEST_POSTGRES_URL";
/// Set by the parent for its worker processes: the schema they work in.
const WORKER_SCHEMA_VAR: &str = "PAYOUTS_WORKER_SCHEMA";
/// Set by the parent for its worker processes: the worker's name (also its admin id).
const WORKER_NAME_VAR: &str = "PAYOUTS_WORKER_NAME";
const WORKER_TEST: &str = "bulk_trigger_worker";
/// Starts every line of the worker protocol (libtest may print on the same line before it).
const MARK: &str = "@@payouts-worker@@";
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const WORKER_RUN_TIMEOUT: Duration = Duration::from_secs(120);

const WEBHOOK_TOKEN: &str = "concurrency-test-shared-webhook-token";

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

fn doctor(i: usize) -> String {
    format!("dr-{i:03}")
}

/// One completed consultation in January 2025 for each of 200 doctors.
fn consultations() -> StaticConsultations {
    let base = Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap();
    StaticConsultations::new(
        (0..PAYOUTS)
            .map(|i| Consultation {
                appointment_id: format!("apt-{i:03}"),
                doctor_id: doctor(i).into(),
                completed_at: base + chrono::Duration::minutes(i as i64),
            })
            .collect(),
    )
}

fn directory() -> StaticDirectory {
    StaticDirectory::new((0..PAYOUTS).map(|i| Recipient {
        doctor_id: doctor(i).into(),
        name: format!("Dr. {i:03}"),
        email: format!("dr{i:03}@example.com"),
        mpesa_phone_number: Some(format!("2547{i:08}")),
        ..Default::default()
    }))
}

fn service(store: Arc<dyn PayoutStore>, provider: Arc<dyn PayoutProvider>) -> PayoutService {
    PayoutService::builder()
        .store(store)
        .consultations(Arc::new(consultations()))
        .directory(Arc::new(directory()))
        .provider(provider)
        .build()
        .expect("a service")
}

/// Calculates January: 200 PENDING payouts, their ids sorted.
async fn seed(service: &PayoutService) -> Vec<PayoutId> {
    calculate(service, january(), PAYOUTS).await
}

fn key(id: &PayoutId) -> String {
    format!("{id}-1")
}

fn accepted(idempotency_key: &str) -> SendReceipt {
    SendReceipt {
        reference: Some(format!("ref-{idempotency_key}")),
        status: ProviderStatus::Accepted,
        note: "accepted by the test provider".into(),
    }
}

/// SplitMix64: a tiny seeded generator, so every run shuffles the same way.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A Fisher-Yates shuffle of `items` driven by `seed`.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut rng = SplitMix64(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The order task `task` visits `ids` in: the blocks in the order every task shares, each block shuffled
/// the task's own way. Every task's order is a seeded permutation of all the ids.
fn task_order(ids: &[PayoutId], task: usize) -> Vec<PayoutId> {
    let blocks: Vec<&[PayoutId]> = ids.chunks(BLOCK).collect();
    shuffled(&blocks, SEED)
        .into_iter()
        .flat_map(|block| shuffled(block, SEED + 1 + task as u64))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Providers
// ---------------------------------------------------------------------------------------------------------

/// Counts every `send` by idempotency key and accepts it with reference `ref-{key}`. Its webhooks use the
/// simulated provider's format and check: the shared token in `x-simulation-token`, compared in constant
/// time, before the JSON body is read.
struct CountingProvider {
    sends: Mutex<BTreeMap<String, usize>>,
    webhooks: SimulatedProvider,
}

impl CountingProvider {
    fn new() -> Self {
        CountingProvider {
            sends: Mutex::default(),
            webhooks: SimulatedProvider::new(PROVIDER).with_webhook_token(WEBHOOK_TOKEN),
        }
    }

    fn sends(&self) -> BTreeMap<String, usize> {
        self.sends.lock().unwrap().clone()
    }
}

#[async_trait]
impl PayoutProvider for CountingProvider {
    fn provider(&self) -> Provider {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        *self
            .sends
            .lock()
            .unwrap()
            .entry(instruction.idempotency_key.clone())
            .or_default() += 1;
        Ok(accepted(&instruction.idempotency_key))
    }

    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        self.webhooks.verify_webhook(headers, body).await
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        Ok(if self.sends.lock().unwrap().contains_key(&attempt.idempotency_key) {
            ProviderStatus::Accepted
        } else {
            ProviderStatus::NotFound
        })
    }
}

/// Records every `send` as a row of `provider_sends` (no unique constraint: a double send is a second
/// row) in the schema its pool works in, and accepts it with reference `ref-{key}`. Takes no webhooks.
struct RecordingProvider {
    pool: PgPool,
    worker: String,
}

const CREATE_SENDS_TABLE: &str = "CREATE TABLE provider_sends (\
     idempotency_key TEXT NOT NULL, worker TEXT NOT NULL, sent_at TIMESTAMPTZ NOT NULL DEFAULT now())";

#[async_trait]
impl PayoutProvider for RecordingProvider {
    fn provider(&self) -> Provider {
        PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            webhooks: false,
            ..Capabilities::default()
        }
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        sqlx::query("INSERT INTO provider_sends (idempotency_key, worker) VALUES ($1, $2)")
            .bind(&instruction.idempotency_key)
            .bind(&self.worker)
            .execute(&self.pool)
            .await
            .map_err(|e| ProviderError::new(PROVIDER, ProviderErrorKind::Ambiguous, e.to_string()))?;
        Ok(accepted(&instruction.idempotency_key))
    }

    async fn verify_webhook(&self, _headers: &HeaderMap, _body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Err(WebhookError::Unavailable(
            "the recording test provider takes no webhooks".into(),
        ))
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM provider_sends WHERE idempotency_key = $1")
            .bind(&attempt.idempotency_key)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| ProviderError::new(PROVIDER, ProviderErrorKind::Retryable, e.to_string()))?;
        Ok(if n > 0 {
            ProviderStatus::Accepted
        } else {
            ProviderStatus::NotFound
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Postgres schemas
// ---------------------------------------------------------------------------------------------------------

fn postgres_url() -> Option<String> {
    PgTestSchema::url_from_env(POSTGRES_URL_VAR)
}

/// A new schema of the test database, with the store's tables.
async fn migrated_schema(url: &str) -> PgTestSchema {
    let schema = PgTestSchema::create(url, "payouts_concurrency").await;
    schema.migrated_pool(1).await.close().await;
    schema
}

// ---------------------------------------------------------------------------------------------------------
// 1. Tasks racing approve, trigger and webhooks through the service
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    Approve,
    Trigger,
    Webhook,
}

/// What one call did.
#[derive(Debug)]
enum Outcome {
    /// It made the change.
    Won,
    /// It lost in an allowed way (named).
    Lost(&'static str),
    /// Anything else: a failure of the test.
    Unexpected(String),
}

/// The allowed ways to lose: a concurrent change of the same payout, an action the payout's (newer) status
/// no longer allows, or an event already recorded.
fn lost(op: Op, id: &PayoutId, e: &Error) -> Outcome {
    match (op, e) {
        (_, Error::Conflict(c)) if c == id => Outcome::Lost("Conflict"),
        (
            Op::Approve,
            Error::InvalidTransition {
                event: PayoutEvent::Approve,
                ..
            },
        ) => Outcome::Lost("InvalidTransition"),
        // This task approved the payout (or saw it approved) before, so it is never PENDING here.
        (Op::Trigger, Error::InvalidTransition { from, event })
            if *event == PayoutEvent::Trigger && *from != PayoutStatus::Pending =>
        {
            Outcome::Lost("InvalidTransition")
        }
        (Op::Webhook, Error::DuplicateEvent { .. }) => Outcome::Lost("DuplicateEvent"),
        _ => Outcome::Unexpected(format!("{op:?} {id}: {e:?}")),
    }
}

fn paid_webhook(id: &PayoutId, reference: &str, token: &str) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(SIMULATION_TOKEN_HEADER, HeaderValue::from_str(token).unwrap());
    let body = serde_json::json!({ "eventId": format!("evt-paid-{id}"), "reference": reference, "status": "PAID" });
    (headers, serde_json::to_vec(&body).unwrap())
}

/// One racing task: in its own seeded order, for each payout: approve, trigger, and, when the payout has a
/// provider reference, deliver its PAID event twice (the other tasks deliver the same event id too).
async fn race_task(
    service: Arc<PayoutService>,
    ids: Vec<PayoutId>,
    task: usize,
    barrier: Arc<Barrier>,
) -> Vec<(Op, PayoutId, Outcome)> {
    let admin = Actor::admin(format!("racer-{task}"));
    let order = task_order(&ids, task);
    let mut out = Vec::with_capacity(order.len() * 4);
    barrier.wait().await;
    for id in order {
        let approved = match service.approve(&admin, &id).await {
            Ok(p) if p.status == PayoutStatus::Approved => Outcome::Won,
            Ok(p) => Outcome::Unexpected(format!("approve {id} answered {:?}", p.status)),
            Err(e) => lost(Op::Approve, &id, &e),
        };
        out.push((Op::Approve, id.clone(), approved));

        let (triggered, reference) = match service.trigger(&admin, &id, PROVIDER).await {
            Ok(p) if p.status == PayoutStatus::Processing && p.provider_reference.is_some() => {
                (Outcome::Won, p.provider_reference)
            }
            Ok(p) => (
                Outcome::Unexpected(format!(
                    "trigger {id} answered {:?}, {:?}",
                    p.status, p.provider_reference
                )),
                None,
            ),
            // The winner may not have stored the provider's answer yet; then it delivers the event itself.
            Err(e) => (
                lost(Op::Trigger, &id, &e),
                service.get(&admin, &id).await.expect("get").provider_reference,
            ),
        };
        out.push((Op::Trigger, id.clone(), triggered));

        let Some(reference) = reference else { continue };
        for _ in 0..2 {
            let (headers, body) = paid_webhook(&id, &reference, WEBHOOK_TOKEN);
            let outcome = match service.handle_webhook(PROVIDER, &headers, &body).await {
                Ok(report) => match report.events.as_slice() {
                    [EventOutcome::Applied { payout_id, to, .. }] if payout_id == &id && *to == PayoutStatus::Paid => {
                        Outcome::Won
                    }
                    [EventOutcome::Duplicate { .. }] => Outcome::Lost("Duplicate"),
                    other => Outcome::Unexpected(format!("webhook for {id}: {other:?}")),
                },
                Err(e) => lost(Op::Webhook, &id, &e),
            };
            out.push((Op::Webhook, id.clone(), outcome));
        }
    }
    out
}

async fn racing_service_pays_each_payout_once(store: Arc<dyn PayoutStore>) {
    let provider = Arc::new(CountingProvider::new());
    let service = Arc::new(service(Arc::clone(&store), provider.clone()));
    let ids = seed(&service).await;

    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| tokio::spawn(race_task(Arc::clone(&service), ids.clone(), task, Arc::clone(&barrier))))
        .collect();
    let mut wins: HashMap<(Op, PayoutId), usize> = HashMap::new();
    let mut losses: BTreeMap<(Op, &'static str), usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for task in tasks {
        for (op, id, outcome) in task.await.expect("a racing task panicked") {
            match outcome {
                Outcome::Won => *wins.entry((op, id)).or_default() += 1,
                Outcome::Lost(how) => *losses.entry((op, how)).or_default() += 1,
                Outcome::Unexpected(what) => unexpected.push(what),
            }
        }
    }
    println!("losing outcomes: {losses:?}");
    assert!(
        unexpected.is_empty(),
        "{} calls failed in a way other than Conflict / InvalidTransition / duplicate event, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    for id in &ids {
        for op in [Op::Approve, Op::Trigger, Op::Webhook] {
            assert_eq!(wins.get(&(op, id.clone())), Some(&1), "{id}: exactly one {op:?} wins");
        }
    }
    let lost_of = |op: Op| {
        losses
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert_eq!(lost_of(Op::Approve), PAYOUTS * (TASKS - 1), "every other approval lost");
    assert_eq!(lost_of(Op::Trigger), PAYOUTS * (TASKS - 1), "every other trigger lost");
    // Every winner of a trigger delivered its event twice: the second at least is a duplicate.
    assert!(
        lost_of(Op::Webhook) >= PAYOUTS,
        "duplicate deliveries are no-ops: {losses:?}"
    );

    // The provider saw one send per payout, with the attempt's key.
    let sends = provider.sends();
    let expected: BTreeSet<String> = ids.iter().map(key).collect();
    assert_eq!(
        sends.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "exactly one distinct idempotency key per payout, `{{id}}-1`"
    );
    let repeated: Vec<_> = sends.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");

    let expected_transitions: Vec<(String, Option<PayoutStatus>, Option<PayoutStatus>)> = vec![
        ("CREATE".into(), None, Some(PayoutStatus::Pending)),
        (
            "APPROVE".into(),
            Some(PayoutStatus::Pending),
            Some(PayoutStatus::Approved),
        ),
        (
            "TRIGGER".into(),
            Some(PayoutStatus::Approved),
            Some(PayoutStatus::Processing),
        ),
        (
            "PROVIDER_PAID".into(),
            Some(PayoutStatus::Processing),
            Some(PayoutStatus::Paid),
        ),
    ];
    for id in &ids {
        let payout = store.get(id).await.expect("get");
        assert_eq!(payout.status, PayoutStatus::Paid, "{id}");
        assert_eq!(payout.provider_reference, Some(format!("ref-{}", key(id))), "{id}");

        let attempts = store.attempts(id).await.expect("attempts");
        assert_eq!(attempts.len(), 1, "{id}: one attempt: {attempts:?}");
        assert_eq!(attempts[0].idempotency_key, key(id));
        assert_eq!(attempts[0].outcome, AttemptOutcome::Succeeded, "{id}");

        let trail = store.audit_trail(id).await.expect("audit trail");
        let count = |action: &str| trail.iter().filter(|e| e.action == action).count();
        for action in ["APPROVE", "TRIGGER", "PROVIDER_PAID"] {
            assert_eq!(count(action), 1, "{id}: exactly one {action} audit entry: {trail:#?}");
        }
        let status_changes: Vec<_> = trail
            .iter()
            .filter(|e| e.to.is_some())
            .map(|e| (e.action.clone(), e.from, e.to))
            .collect();
        assert_eq!(
            status_changes, expected_transitions,
            "{id}: each transition audited once"
        );
    }

    // A forged delivery (wrong token) is refused and changes nothing.
    let id = &ids[0];
    let before = store.audit_trail(id).await.expect("audit trail").len();
    let (headers, body) = paid_webhook(id, &format!("ref-{}", key(id)), "not-the-token");
    let forged = service.handle_webhook(PROVIDER, &headers, &body).await;
    assert!(
        matches!(forged, Err(Error::Webhook(WebhookError::BadSignature))),
        "{forged:?}"
    );
    assert_eq!(store.audit_trail(id).await.expect("audit trail").len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_racing_service_pays_each_payout_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("payouts.db").display());
    let store = SqliteStore::connect(&url).await.expect("a SQLite file store");
    racing_service_pays_each_payout_once(Arc::new(store.clone())).await;
    store.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_service_pays_each_payout_once() {
    let Some(url) = postgres_url() else { return };
    migrated_schema(&url)
        .await
        .run(|schema| async move {
            let pool = schema.pool(TASKS as u32 + 2).await;
            racing_service_pays_each_payout_once(Arc::new(PgStore::new(pool.clone()))).await;
            pool.close().await;
        })
        .await;
}

// ---------------------------------------------------------------------------------------------------------
// 2. Two processes racing bulk_trigger on one Postgres schema
// ---------------------------------------------------------------------------------------------------------

/// Kills (and reaps) the worker processes still running when it is dropped, e.g. when the test fails.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Sends each line `stream` prints as `(worker, Some(line))`, then `(worker, None)` when it closes.
fn forward(worker: usize, stream: impl Read + Send + 'static, tx: mpsc::Sender<(usize, Option<String>)>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send((worker, Some(String::from_utf8_lossy(&line).into_owned())))
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send((worker, None));
    });
}

/// What a worker process printed, and what it says it won and lost.
struct WorkerRun {
    name: String,
    log: Vec<String>,
    won: Vec<PayoutId>,
    lost: usize,
    /// How many of the losses were a `Conflict` (a head-on race) rather than `InvalidTransition`.
    conflicts: usize,
}

/// The worker protocol's payload on `line`, if it carries one.
fn protocol(line: &str) -> Option<&str> {
    line.find(MARK).map(|at| line[at + MARK.len()..].trim())
}

/// Runs two worker processes in `schema`: waits until both are ready, lets both go at once, waits for
/// both to finish (all bounded by timeouts; the workers are killed if anything fails).
fn run_workers(schema: &str) -> Vec<WorkerRun> {
    const N: usize = 2;
    let exe = std::env::current_exe().expect("the test binary");
    let mut workers = Workers(Vec::new());
    let mut stdins = Vec::new();
    let (tx, rx) = mpsc::channel();
    for w in 0..N {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                WORKER_TEST,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(WORKER_SCHEMA_VAR, schema)
            .env(WORKER_NAME_VAR, format!("worker-{w}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a worker process");
        stdins.push(child.stdin.take().expect("the worker's stdin"));
        forward(w, child.stdout.take().expect("the worker's stdout"), tx.clone());
        forward(w, child.stderr.take().expect("the worker's stderr"), tx.clone());
        workers.0.push(child);
    }
    drop(tx);

    let mut logs: Vec<Vec<String>> = vec![Vec::new(); N];
    let mut ready = [false; N];
    let mut open = [2usize; N];
    let next = |deadline: Instant, logs: &mut Vec<Vec<String>>, waiting_for: &str| {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok((w, Some(line))) => {
                logs[w].push(line.clone());
                Some((w, Some(line)))
            }
            Ok((w, None)) => Some((w, None)),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out waiting for {waiting_for}; output: {logs:#?}"),
        }
    };

    let deadline = Instant::now() + WORKER_READY_TIMEOUT;
    while !ready.iter().all(|r| *r) {
        match next(deadline, &mut logs, "both workers to be ready") {
            Some((w, Some(line))) => ready[w] |= protocol(&line) == Some("ready"),
            Some((w, None)) => {
                open[w] -= 1;
                assert!(ready[w], "worker-{w} stopped before it was ready; output: {logs:#?}");
            }
            None => panic!("the workers' output closed early: {logs:#?}"),
        }
    }
    // Both have read the payouts and hold a connection pool: let them go at once.
    for (w, stdin) in stdins.iter_mut().enumerate() {
        writeln!(stdin, "GO")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("telling worker-{w} to go: {e}"));
    }
    drop(stdins);

    let deadline = Instant::now() + WORKER_RUN_TIMEOUT;
    while open.iter().any(|n| *n > 0) {
        match next(deadline, &mut logs, "both workers to finish") {
            Some((w, None)) => open[w] -= 1,
            Some(_) => {}
            None => break,
        }
    }
    // Both closed their output, so both have exited (or are about to).
    let mut runs = Vec::new();
    for (w, child) in workers.0.iter_mut().enumerate() {
        let status = child.wait().expect("waiting for a worker");
        let log = std::mem::take(&mut logs[w]);
        assert!(status.success(), "worker-{w} failed ({status}); output: {log:#?}");
        let mut run = WorkerRun {
            name: format!("worker-{w}"),
            won: Vec::new(),
            lost: 0,
            conflicts: 0,
            log,
        };
        for line in &run.log {
            match protocol(line).and_then(|p| p.split_once(' ')) {
                Some(("won", id)) => run.won.push(PayoutId::new(id)),
                Some(("lost", n)) => run.lost = n.parse().expect("a count"),
                Some(("conflicts", n)) => run.conflicts = n.parse().expect("a count"),
                _ => {}
            }
        }
        runs.push(run);
    }
    runs
}

async fn two_processes_send_each_payout_once(schema: PgTestSchema) {
    let pool = schema.pool(4).await;
    sqlx::query(CREATE_SENDS_TABLE)
        .execute(&pool)
        .await
        .expect("creating provider_sends");
    let store: Arc<dyn PayoutStore> = Arc::new(PgStore::new(pool.clone()));
    let provider = Arc::new(RecordingProvider {
        pool: pool.clone(),
        worker: "parent".into(),
    });
    let service = service(Arc::clone(&store), provider);
    let ids = seed(&service).await;
    for outcome in service.bulk_approve(&Actor::admin("approver"), &ids).await {
        outcome.result.expect("approving");
    }

    let name = schema.name().to_string();
    let runs = match tokio::task::spawn_blocking(move || run_workers(&name)).await {
        Ok(runs) => runs,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };

    // Each worker tried all 200; between them each payout was won exactly once.
    let mut winner: BTreeMap<PayoutId, String> = BTreeMap::new();
    for run in &runs {
        println!(
            "{}: won {}, lost {} ({} by Conflict)",
            run.name,
            run.won.len(),
            run.lost,
            run.conflicts
        );
        assert_eq!(run.won.len() + run.lost, PAYOUTS, "{}: {:#?}", run.name, run.log);
        for id in &run.won {
            if let Some(other) = winner.insert(id.clone(), run.name.clone()) {
                panic!("{id} was triggered by both {other} and {}", run.name);
            }
        }
    }
    assert_eq!(
        winner.keys().cloned().collect::<Vec<_>>(),
        ids,
        "every payout triggered by one worker"
    );

    // The provider's durable record: one send per payout, with the attempt's key.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT idempotency_key, COUNT(*) FROM provider_sends GROUP BY idempotency_key")
            .fetch_all(&pool)
            .await
            .expect("reading provider_sends");
    let sends: BTreeMap<String, i64> = rows.into_iter().collect();
    let expected: BTreeMap<String, i64> = ids.iter().map(|id| (key(id), 1)).collect();
    assert_eq!(
        sends, expected,
        "each payout sent exactly once in total, with key `{{id}}-1`"
    );

    for id in &ids {
        let payout = store.get(id).await.expect("get");
        assert!(
            matches!(payout.status, PayoutStatus::Processing | PayoutStatus::Paid),
            "{id}: {:?}",
            payout.status
        );
        let attempts = store.attempts(id).await.expect("attempts");
        assert_eq!(attempts.len(), 1, "{id}: one attempt: {attempts:?}");
        assert_eq!(attempts[0].idempotency_key, key(id));
        let trail = store.audit_trail(id).await.expect("audit trail");
        let triggers: Vec<_> = trail.iter().filter(|e| e.action == "TRIGGER").collect();
        assert_eq!(triggers.len(), 1, "{id}: exactly one TRIGGER audit entry: {trail:#?}");
        assert_eq!(
            triggers[0].actor,
            format!("admin:{}", winner[id]),
            "{id}: by the worker that won it"
        );
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_processes_bulk_trigger_send_each_payout_once() {
    let Some(url) = postgres_url() else { return };
    migrated_schema(&url)
        .await
        .run(two_processes_send_each_payout_once)
        .await;
}

/// One of the two processes of `postgres_two_processes_bulk_trigger_send_each_payout_once`: reads the
/// APPROVED payouts of the schema it is given, says it is ready, waits for `GO` on stdin, runs
/// `bulk_trigger` over all of them and reports what it won.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a worker process: `postgres_two_processes_bulk_trigger_send_each_payout_once` runs it with PAYOUTS_WORKER_SCHEMA set"]
async fn bulk_trigger_worker() {
    let Ok(schema) = std::env::var(WORKER_SCHEMA_VAR) else {
        println!("skipped: {WORKER_SCHEMA_VAR} not set (this is a worker process of another test)");
        return;
    };
    let url = std::env::var(POSTGRES_URL_VAR).expect("the parent passes PAYOUTS_TEST_POSTGRES_URL on");
    let name = std::env::var(WORKER_NAME_VAR).expect("the parent names its workers");
    let pool = PgTestSchema::existing(&url, &schema).pool(8).await;
    let store = Arc::new(PgStore::new(pool.clone()));
    let provider = Arc::new(RecordingProvider {
        pool: pool.clone(),
        worker: name.clone(),
    });
    let service = service(store, provider);
    let admin = Actor::admin(name.clone());
    let filter = PayoutFilter {
        status: Some(PayoutStatus::Approved),
        ..Default::default()
    };
    let page = service
        .list(&admin, &filter, &Page::new(1000, 0))
        .await
        .expect("listing the approved payouts");
    let mut ids: Vec<PayoutId> = page.payouts.into_iter().map(|p| p.id).collect();
    ids.sort();
    assert_eq!(ids.len(), PAYOUTS, "{name}: the parent approved {PAYOUTS} payouts");

    println!("{MARK} ready");
    std::io::stdout().flush().expect("flushing stdout");
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reading stdin")
    .expect("reading stdin");
    assert_eq!(go.trim(), "GO", "{name}: the parent closed stdin without saying GO");

    let (mut lost, mut conflicts) = (0usize, 0usize);
    for outcome in service.bulk_trigger(&admin, &ids, PROVIDER).await {
        match outcome.result {
            Ok(p) => {
                assert_eq!(p.status, PayoutStatus::Processing, "{name}: {}", outcome.id);
                println!("{MARK} won {}", outcome.id);
            }
            Err(Error::Conflict(id)) if id == outcome.id => {
                lost += 1;
                conflicts += 1;
            }
            Err(Error::InvalidTransition {
                from: PayoutStatus::Processing,
                event: PayoutEvent::Trigger,
            }) => lost += 1,
            Err(e) => panic!(
                "{name}: triggering {} failed with {e:?}, not Conflict / InvalidTransition",
                outcome.id
            ),
        }
    }
    println!("{MARK} lost {lost}");
    println!("{MARK} conflicts {conflicts}");
    std::io::stdout().flush().expect("flushing stdout");
    pool.close().await;
}
