//! Bank files over HTTP (feature `bank-files`): each format streamed with its headers and totals,
//! the payouts marked sent by the file, a second download identical, the bank's confirmation
//! recorded, and every refusal leaving the payouts as they were.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{SECRET, SIM_TOKEN, admin, doctor};
use payout_core::PayoutService;
use payout_core::domain::{Actor, BankAccount, BankFileId, PayoutId, Provider, Recipient, end_to_end_id};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::ManualPayout;
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::source::StaticDirectory;
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter, PayoutStore};
use payout_providers::bank::{
    AccountType, BankFileConfig, BankFileFormat, NachaOrigin, Pain001Origin, SecCode, stated_totals,
};
use payout_server::{AppState, ServerConfig, router};
use serde_json::{Value, json};
use tower::ServiceExt;

fn configured() -> BankFileConfig {
    BankFileConfig {
        pain001: Some(Pain001Origin {
            initiating_party: "Clinic Co".into(),
            debtor_name: "Clinic Co".into(),
            debtor_account: "DE89370400440532013000".into(),
            debtor_agent_bic: Some("DEUTDEFF".into()),
        }),
        nacha: Some(NachaOrigin {
            immediate_destination: "021000021".into(),
            immediate_destination_name: "JPMORGAN CHASE".into(),
            immediate_origin: "1234567890".into(),
            immediate_origin_name: "Clinic Co".into(),
            company_name: "Clinic Co".into(),
            company_id: "1234567890".into(),
            entry_description: "PAYOUTS".into(),
            originating_dfi: "02100002".into(),
            sec_code: SecCode::Ppd,
            account_type: AccountType::Checking,
            addenda: true,
        }),
        execution_days: 1,
    }
}

/// Doctors with US bank accounts (routing numbers that pass the ABA check), and one without.
fn directory() -> StaticDirectory {
    let with_bank = |d: &str, account: &str, routing: &str| Recipient {
        doctor_id: d.into(),
        name: format!("Dr. {d}"),
        email: format!("{d}@example.com"),
        bank_details: Some(BankAccount {
            account_name: format!("Dr. {d}"),
            account_number: account.into(),
            bank_code: Some(routing.into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    StaticDirectory::new([
        with_bank("dr-a", "123456789", "021000021"),
        with_bank("dr-b", "987-654", "011000015"),
        with_bank("dr-c", "55", "122000247"),
        Recipient {
            doctor_id: "dr-m".into(),
            name: "Dr. m".into(),
            mpesa_phone_number: Some("254712345678".into()),
            ..Default::default()
        },
    ])
}

struct Setup {
    app: axum::Router,
    service: Arc<PayoutService>,
    store: Arc<MemoryStore>,
    ids: Vec<PayoutId>,
}

/// Four approved manual payouts (`amounts` in `currency` for dr-a, dr-b, dr-c, and one for dr-m,
/// who has no bank account), served with `config`.
async fn setup(config: BankFileConfig, currency: Currency, amounts: [&str; 3]) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let mut b = PayoutService::builder()
        .store(store.clone())
        .directory(Arc::new(directory()));
    for p in Provider::ALL {
        b = b.provider(Arc::new(
            SimulatedProvider::new(p)
                .with_settlement(SimulatedSettlement::Deferred)
                .with_webhook_token(SIM_TOKEN),
        ));
    }
    let service = Arc::new(b.build().unwrap());
    let mut ids = Vec::new();
    for (doctor, amount) in [
        ("dr-a", amounts[0]),
        ("dr-b", amounts[1]),
        ("dr-c", amounts[2]),
        ("dr-m", "1"),
    ] {
        let manual = ManualPayout {
            doctor_id: doctor.into(),
            amount: Money::parse(amount, currency).unwrap(),
            period: None,
            notes: None,
        };
        let p = service.create_manual(&Actor::admin("creator"), manual).await.unwrap();
        service.approve(&Actor::admin("approver"), &p.id).await.unwrap();
        ids.push(p.id);
    }
    let server = ServerConfig {
        mutation_rate: None,
        bank_files: config,
        ..ServerConfig::new(SECRET)
    };
    Setup {
        app: router(AppState::new(service.clone(), server)),
        service,
        store,
        ids,
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

async fn get(app: &axum::Router, uri: &str, token: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    send(app, req).await
}

async fn post(app: &axum::Router, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, _, bytes) = send(app, req).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

impl Setup {
    async fn statuses(&self) -> Vec<PayoutStatus> {
        let mut out = Vec::new();
        for id in &self.ids {
            out.push(self.store.get(id).await.unwrap().status);
        }
        out
    }

    /// Every payout with its attempts and audit trail.
    async fn dump(&self) -> String {
        let page = self
            .store
            .list(&PayoutFilter::default(), &Page::new(100, 0))
            .await
            .unwrap();
        let mut out = String::new();
        for p in page.payouts {
            let attempts = self.store.attempts(&p.id).await.unwrap();
            let audit = self.store.audit_trail(&p.id).await.unwrap();
            out.push_str(&format!("{p:?} {attempts:?} {audit:?}\n"));
        }
        out
    }
}

#[tokio::test]
async fn each_format_is_streamed_with_its_headers_and_totals_and_marks_its_payouts() {
    for (format, currency, content_type, extension) in [
        (BankFileFormat::Csv, Currency::KES, "text/csv", "csv"),
        (BankFileFormat::Pain001, Currency::EUR, "application/xml", "xml"),
        (BankFileFormat::Nacha, Currency::USD, "text/plain", "ach"),
    ] {
        let s = setup(configured(), currency, ["1500.50", "20", "0.01"]).await;
        let token = admin("finance");
        let (status, headers, body) = get(&s.app, &format!("/api/admin/bank-files?format={format}"), &token).await;
        assert_eq!(status, StatusCode::OK, "{format}: {}", String::from_utf8_lossy(&body));
        let id = header(&headers, "x-bank-file-id").to_string();
        assert!(BankFileId::is_form(&id), "{id}");
        assert!(
            header(&headers, "content-type").starts_with(content_type),
            "{headers:?}"
        );
        assert_eq!(
            header(&headers, "content-disposition"),
            format!("attachment; filename=\"{id}.{extension}\"")
        );
        assert_eq!(header(&headers, "x-bank-file-transfers"), "3");
        assert_eq!(
            header(&headers, "x-bank-file-left-out"),
            "1",
            "dr-m has no bank account"
        );
        let total = Money::parse("1520.51", currency).unwrap();
        assert_eq!(header(&headers, "x-bank-file-total"), total.to_string());

        // What the file states is what was marked.
        let text = String::from_utf8(body.clone()).unwrap();
        let stated = stated_totals(format, &text).unwrap();
        assert_eq!((stated.count, stated.sums.clone()), (3, vec![total]), "{format}");
        if format == BankFileFormat::Pain001 {
            assert!(text.contains(&format!("<MsgId>{id}</MsgId>")));
        }
        assert_eq!(
            s.statuses().await,
            vec![
                PayoutStatus::Processing,
                PayoutStatus::Processing,
                PayoutStatus::Processing,
                PayoutStatus::Approved
            ]
        );
        let p = s.store.get(&s.ids[0]).await.unwrap();
        assert_eq!(p.provider_reference.as_deref(), Some(id.as_str()));
        let audit = s.store.audit_trail(&s.ids[0]).await.unwrap();
        assert!(
            audit
                .last()
                .unwrap()
                .detail
                .contains(&format!("sent by bank file {id}"))
        );

        // A second download of the file: the same bytes, nothing marked.
        let before = s.dump().await;
        let (status, again_headers, again) =
            get(&s.app, &format!("/api/admin/bank-files/{id}?format={format}"), &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again, body, "{format}: the file as first made");
        assert_eq!(header(&again_headers, "x-bank-file-id"), id);
        assert_eq!(s.dump().await, before);

        // Nothing left to send.
        let (status, _, body) = get(&s.app, &format!("/api/admin/bank-files?format={format}"), &token).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code(&body), "nothing_to_send");
        assert_eq!(s.dump().await, before);
    }
}

#[tokio::test]
async fn a_file_that_cannot_be_written_or_is_not_configured_marks_nothing() {
    // KES payouts as NACHA (USD only), and pain.001/NACHA without their settings.
    let s = setup(configured(), Currency::KES, ["1500.50", "20", "0.01"]).await;
    let token = admin("finance");
    let before = s.dump().await;
    let (status, _, body) = get(&s.app, "/api/admin/bank-files?format=nacha", &token).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(code(&body), "bank_file_unwritable");
    assert!(String::from_utf8_lossy(&body).contains("USD only"));
    assert_eq!(s.dump().await, before);

    let csv_only = setup(BankFileConfig::default(), Currency::USD, ["1", "2", "3"]).await;
    let before = csv_only.dump().await;
    for format in ["pain001", "nacha"] {
        let (status, _, body) = get(&csv_only.app, &format!("/api/admin/bank-files?format={format}"), &token).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(code(&body), "bank_file_not_configured");
        assert!(
            String::from_utf8_lossy(&body).contains("PAYOUTS_"),
            "names the settings"
        );
    }
    // Bad requests and credentials.
    for (uri, token, expected, expected_code) in [
        (
            "/api/admin/bank-files",
            admin("finance"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/admin/bank-files?format=xml",
            admin("finance"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/admin/bank-files?format=csv&status=PENDING",
            admin("finance"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/admin/bank-files?format=csv&limit=5",
            admin("finance"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "/api/admin/bank-files?format=csv",
            doctor("dr-a"),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/api/admin/bank-files?format=csv",
            "garbage".into(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "/api/admin/bank-files/nope?format=csv",
            admin("finance"),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            &format!("/api/admin/bank-files/{}?format=csv", BankFileId::derive("never")),
            admin("finance"),
            StatusCode::NOT_FOUND,
            "bank_file_not_found",
        ),
    ] {
        let (status, _, body) = get(&csv_only.app, uri, &token).await;
        assert_eq!((status, code(&body).as_str()), (expected, expected_code), "{uri}");
    }
    assert_eq!(csv_only.dump().await, before);
}

#[tokio::test]
async fn the_banks_confirmation_is_recorded_once() {
    let s = setup(configured(), Currency::USD, ["1500.50", "20", "0.01"]).await;
    let token = admin("finance");
    let (status, headers, _) = get(&s.app, "/api/admin/bank-files?format=csv&doctor=dr-a", &token).await;
    assert_eq!(status, StatusCode::OK);
    let first = header(&headers, "x-bank-file-id").to_string();
    let (status, headers, _) = get(&s.app, "/api/admin/bank-files?format=pain001", &token).await;
    assert_eq!(status, StatusCode::OK);
    let second = header(&headers, "x-bank-file-id").to_string();
    assert_eq!(header(&headers, "x-bank-file-transfers"), "2");
    let settle = |file: &str| format!("/api/admin/bank-files/{file}/settle");

    // Refused, nothing changed: an item of another file, a bad body, an unknown file.
    let before = s.dump().await;
    let (a, b, c) = (&s.ids[0], &s.ids[1], &s.ids[2]);
    for (file, body, expected, expected_code) in [
        (
            second.clone(),
            json!({"action": "returned", "items": [{"reference": a.to_string(), "reason": "R03"}]}),
            StatusCode::BAD_REQUEST,
            "unknown_item",
        ),
        (
            second.clone(),
            json!({"action": "returned", "items": []}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            second.clone(),
            json!({"action": "paid"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            second.clone(),
            json!({"action": "all_paid", "status": "PAID"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            BankFileId::derive("never").to_string(),
            json!({"action": "all_paid"}),
            StatusCode::NOT_FOUND,
            "bank_file_not_found",
        ),
    ] {
        let (status, answer) = post(&s.app, &settle(&file), &token, body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap_or_default()),
            (expected, expected_code),
            "{body}"
        );
    }
    let (status, _) = post(&s.app, &settle(&second), &doctor("dr-b"), json!({"action": "all_paid"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(s.dump().await, before);

    // The second file: `b` returned (named by its end-to-end id), `c` paid.
    let returned = json!({"action": "returned", "items": [
        {"reference": end_to_end_id(&format!("{b}-1")), "reason": "R03 no account"}
    ]});
    let (status, answer) = post(&s.app, &settle(&second), &token, returned.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["fileId"], second);
    assert_eq!(answer["data"]["paid"], json!([c.to_string()]));
    assert_eq!(answer["data"]["failed"], json!([b.to_string()]));
    // The same settlement again: refused, nothing changed.
    let after = s.dump().await;
    let (status, answer) = post(&s.app, &settle(&second), &token, returned).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::CONFLICT, &json!("bank_file_settled"))
    );
    assert_eq!(s.dump().await, after);

    // The first file: all paid.
    let (status, answer) = post(&s.app, &settle(&first), &token, json!({"action": "all_paid"})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["paid"], json!([a.to_string()]));
    assert_eq!(
        s.statuses().await,
        vec![
            PayoutStatus::Paid,
            PayoutStatus::Failed,
            PayoutStatus::Paid,
            PayoutStatus::Approved
        ]
    );
}

#[tokio::test]
async fn a_runs_bank_file_is_made_read_and_settled_through_the_run() {
    let s = setup(configured(), Currency::USD, ["1500.50", "20", "0.01"]).await;
    let token = admin("finance");
    let run = s
        .service
        .create_run(&Actor::admin("finance"), "February", PayoutFilter::default())
        .await
        .unwrap()
        .run
        .id;
    // dr-a, dr-b and dr-c are paid by bank (their only method); dr-m by M-Pesa: not in the file.
    let (status, headers, body) = get(&s.app, &format!("/api/admin/runs/{run}/bank-file?format=nacha"), &token).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let id = header(&headers, "x-bank-file-id").to_string();
    assert_eq!(header(&headers, "x-bank-file-transfers"), "3");
    assert_eq!(header(&headers, "x-bank-file-left-out"), "0");
    assert_eq!(header(&headers, "x-bank-file-total"), "1520.51 USD");
    let (status, _, again) = get(
        &s.app,
        &format!("/api/admin/runs/{run}/bank-file/{id}?format=nacha"),
        &token,
    )
    .await;
    assert_eq!((status, &again), (StatusCode::OK, &body));

    let other = s
        .service
        .create_run(
            &Actor::admin("finance"),
            "other",
            PayoutFilter {
                doctor_id: Some("dr-m".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .run
        .id;
    let before = s.dump().await;
    let (status, _, body) = get(
        &s.app,
        &format!("/api/admin/runs/{other}/bank-file/{id}?format=csv"),
        &token,
    )
    .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::NOT_FOUND, "bank_file_not_found")
    );
    let (status, answer) = post(
        &s.app,
        &format!("/api/admin/runs/{other}/bank-file/{id}/settle"),
        &token,
        json!({"action": "all_paid"}),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("bank_file_not_found"))
    );
    let (status, _, body) = get(&s.app, "/api/admin/runs/run-nope/bank-file?format=csv", &token).await;
    assert_eq!((status, code(&body).as_str()), (StatusCode::NOT_FOUND, "run_not_found"));
    // The other run's only member is paid by M-Pesa: nothing to send by bank.
    let (status, _, body) = get(&s.app, &format!("/api/admin/runs/{other}/bank-file?format=csv"), &token).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_send")
    );
    assert_eq!(s.dump().await, before);

    let (status, answer) = post(
        &s.app,
        &format!("/api/admin/runs/{run}/bank-file/{id}/settle"),
        &token,
        json!({"action": "all_paid"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["paid"].as_array().unwrap().len(), 3);
    let events = s.service.run_events(&Actor::admin("finance"), &run).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"BANK_FILE") && actions.contains(&"BANK_FILE_SETTLED"),
        "{actions:?}"
    );
}
