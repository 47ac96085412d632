//! Bank files on the SQL stores (a SQLite file and a Postgres schema): the members marked are read
//! back from the stored attempts as the same file, byte for byte, in every format; the settlement
//! is recorded once. Real clock and real timestamps: what the database keeps of the file's making
//! time is what the file says.
//!
//! The Postgres test needs `PAYOUTS_TEST_POSTGRES_URL`; without it it prints `skipped: ...` and
//! passes. It works in a new schema, dropped at the end, also when the test fails.

use std::sync::Arc;

use payout_store_sqlx::testkit::PgTestSchema;
use payouts::domain::{Actor, BankAccount, PayoutId, Provider, Recipient};
use payouts::error::{BankFileError, Error};
use payouts::money::{Currency, Money};
use payouts::providers::bank::{BankFileConfig, BankFileFormat, Pain001Origin};
use payouts::service::{BankFileRequest, BankPayouts, ManualPayout, ReturnedItem, Settlement};
use payouts::source::StaticDirectory;
use payouts::status::PayoutStatus;
use payouts::store::PayoutFilter;
use payouts::store_sqlx::{PgStore, SqliteStore};
use payouts::{PayoutService, PayoutStore};

fn directory() -> StaticDirectory {
    StaticDirectory::new(["dr-a", "dr-b", "dr-c"].map(|d| Recipient {
        doctor_id: d.into(),
        name: format!("Dr. {d}"),
        email: format!("{d}@example.com"),
        bank_details: Some(BankAccount {
            account_name: format!("Dr. {d}"),
            account_number: "DE89370400440532013000".into(),
            bank_code: Some("DEUTDEFF".into()),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

fn config() -> BankFileConfig {
    BankFileConfig {
        pain001: Some(Pain001Origin {
            initiating_party: "Clinic Co".into(),
            debtor_name: "Clinic Co".into(),
            debtor_account: "DE89370400440532013000".into(),
            debtor_agent_bic: None,
        }),
        ..BankFileConfig::default()
    }
}

async fn a_file_is_read_back_the_same_and_settled_once(store: Arc<dyn PayoutStore>) {
    let service = PayoutService::builder()
        .store(store.clone())
        .directory(Arc::new(directory()))
        .build()
        .unwrap();
    let mut ids: Vec<PayoutId> = Vec::new();
    for (doctor, amount) in [("dr-a", "1500.50"), ("dr-b", "20.00"), ("dr-c", "0.01")] {
        let manual = ManualPayout {
            doctor_id: doctor.into(),
            amount: Money::parse(amount, Currency::EUR).unwrap(),
            period: None,
            notes: None,
        };
        let p = service.create_manual(&Actor::admin("creator"), manual).await.unwrap();
        service.approve(&Actor::admin("approver"), &p.id).await.unwrap();
        ids.push(p.id);
    }
    let config = config();
    let request = BankFileRequest {
        selection: PayoutFilter::default(),
        payouts: BankPayouts::WithBankDetails,
    };
    let admin = Actor::admin("finance");
    let file = service
        .send_by_file(&admin, &request, |f| {
            config
                .write(BankFileFormat::Pain001, f)
                .map(drop)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
    assert_eq!(file.members.len(), 3);
    let again = service.bank_file(&admin, &file.id).await.unwrap();
    assert_eq!(again.members, file.members, "the stored attempts are the members");
    for format in [BankFileFormat::Csv, BankFileFormat::Pain001] {
        assert_eq!(
            config.write(format, &again).unwrap(),
            config.write(format, &file).unwrap(),
            "{format}: the file read back is the file as made"
        );
    }
    for id in &ids {
        let p = store.get(id).await.unwrap();
        assert_eq!(p.status, PayoutStatus::Processing);
        assert_eq!(p.provider_reference.as_deref(), Some(file.id.as_str()));
        let attempt = store.attempts(id).await.unwrap().pop().unwrap();
        assert_eq!(attempt.bank_file(), Some(file.id.clone()));
        assert_eq!(attempt.provider, Provider::BankTransfer);
    }

    let returned = Settlement::Returned {
        items: vec![ReturnedItem {
            reference: ids[1].to_string(),
            reason: "AC04 account closed".into(),
        }],
    };
    let report = service.settle_bank_file(&admin, &file.id, &returned).await.unwrap();
    assert_eq!(report.failed, vec![ids[1].clone()]);
    assert_eq!(report.paid.len(), 2);
    let statuses: Vec<PayoutStatus> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(store.get(id).await.unwrap().status);
        }
        v
    };
    assert_eq!(
        statuses,
        vec![PayoutStatus::Paid, PayoutStatus::Failed, PayoutStatus::Paid]
    );
    let e = service.settle_bank_file(&admin, &file.id, &returned).await.unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::Settled { .. })), "{e}");
}

#[tokio::test]
async fn sqlite_file_bank_file_round_trip() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("payouts.db").display());
    let store = SqliteStore::connect(&url).await.expect("a SQLite file store");
    a_file_is_read_back_the_same_and_settled_once(Arc::new(store.clone())).await;
    store.pool().close().await;
}

#[tokio::test]
async fn postgres_bank_file_round_trip() {
    let Some(url) = PgTestSchema::url_from_env("PAYOUTS_TEST_POSTGRES_URL") else {
        println!("skipped: PAYOUTS_TEST_POSTGRES_URL not set");
        return;
    };
    PgTestSchema::create(&url, "payouts_bank_files")
        .await
        .run(|schema| async move {
            let pool = schema.migrated_pool(4).await;
            a_file_is_read_back_the_same_and_settled_once(Arc::new(PgStore::new(pool.clone()))).await;
            pool.close().await;
        })
        .await;
}
