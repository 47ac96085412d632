//! A stored bank file (what `PayoutService::send_by_file` marked) written in each format, with its
//! totals read back and checked: a file whose stated totals disagree with its members is refused.

use payout_core::domain::BankFileId;
use payout_core::service::BankFile;
use payout_providers::bank::{BankFileConfig, BankFileFormat, NachaOrigin, Pain001Origin, stated_totals};

use super::*;

fn member(id: &str, amount: &str, currency: Currency, account: BankAccount) -> PayoutInstruction {
    let mut i = fixtures::instruction(Provider::BankTransfer);
    i.payout_id = id.into();
    i.idempotency_key = format!("{id}-1");
    i.doctor_id = format!("dr-{id}").into();
    i.recipient_name = format!("Dr. {id}");
    i.amount = Money::parse(amount, currency).unwrap();
    i.destination = PayoutDestination::Bank(account);
    i
}

fn account(number: &str, code: &str) -> BankAccount {
    BankAccount {
        account_name: "Holder".into(),
        account_number: number.into(),
        bank_code: Some(code.into()),
        ..Default::default()
    }
}

fn file(members: Vec<PayoutInstruction>) -> BankFile {
    BankFile {
        id: BankFileId::derive("file-1"),
        created_at: Utc.with_ymd_and_hms(2025, 2, 1, 9, 30, 15).unwrap(),
        members,
        left_out: Vec::new(),
    }
}

fn usd_file() -> BankFile {
    file(vec![
        member("po_1", "1500.50", Currency::USD, account("123456789", "021000021")),
        member("po_2", "20", Currency::USD, account("987-654", "011000015")),
        member("po_3", "0.01", Currency::USD, account("55", "122000247")),
    ])
}

pub fn configured() -> BankFileConfig {
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

#[test]
fn each_format_states_what_was_marked_and_names_the_file() {
    let config = configured();
    let f = usd_file();
    let marked = f.totals().unwrap();
    assert_eq!(marked.count, 3);
    for format in BankFileFormat::ALL {
        let text = config.write(format, &f).unwrap();
        assert_eq!(stated_totals(format, &text).unwrap(), marked, "{format}");
        // Written again: the same text (the file as first made).
        assert_eq!(config.write(format, &f).unwrap(), text, "{format}");
        match format {
            BankFileFormat::Pain001 => {
                assert!(text.contains(&format!("<MsgId>{}</MsgId>", f.id)), "{text}");
                assert!(text.contains("<CreDtTm>2025-02-01T09:30:15</CreDtTm>"));
                assert!(text.contains("<ReqdExctnDt>2025-02-02</ReqdExctnDt>"));
                assert!(text.contains(&format!("<EndToEndId>{}</EndToEndId>", end_to_end_id("po_1-1"))));
            }
            BankFileFormat::Nacha => {
                assert!(text.lines().all(|l| l.len() == 94));
                // The effective entry date, a day after the file was made.
                let batch = text.lines().nth(1).unwrap();
                assert_eq!(&batch[69..75], "250202", "{batch}");
            }
            BankFileFormat::Csv => assert_eq!(text.lines().count(), 4),
        }
    }
}

#[test]
fn pain001_checks_totals_per_currency() {
    let f = file(vec![
        member("po_1", "1500.50", Currency::KES, account("0123456789", "01")),
        member(
            "po_2",
            "20",
            Currency::EUR,
            account("DE89370400440532013000", "DEUTDEFF"),
        ),
        member("po_3", "3", Currency::KES, account("0123456780", "01")),
    ]);
    let config = configured();
    let text = config.write(BankFileFormat::Pain001, &f).unwrap();
    let stated = stated_totals(BankFileFormat::Pain001, &text).unwrap();
    assert_eq!(stated.count, 3);
    assert_eq!(
        stated.sums,
        vec![
            Money::parse("20.00", Currency::EUR).unwrap(),
            Money::parse("1503.50", Currency::KES).unwrap()
        ]
    );
    // CSV carries any currency; NACHA only USD, and says so before anything is marked.
    config.write(BankFileFormat::Csv, &f).unwrap();
    let e = config.write(BankFileFormat::Nacha, &f).unwrap_err();
    assert!(e.to_string().contains("USD only"), "{e}");
}

#[test]
fn a_file_whose_stated_totals_disagree_is_refused() {
    let config = configured();
    let f = usd_file();
    // Each format's text with one transfer's amount changed, or its control record: read back,
    // the totals are not what was marked.
    let csv = config
        .write(BankFileFormat::Csv, &f)
        .unwrap()
        .replace("1500.50", "1500.51");
    let xml = config
        .write(BankFileFormat::Pain001, &f)
        .unwrap()
        .replace(">1500.50</InstdAmt>", ">1500.51</InstdAmt>");
    let ach = config.write(BankFileFormat::Nacha, &f).unwrap();
    let entry = ach.lines().find(|l| l.starts_with('6')).unwrap();
    let tampered_entry = format!("{}0000150051{}", &entry[..29], &entry[39..]);
    let ach_entry = ach.replace(entry, &tampered_entry);
    let marked = f.totals().unwrap();
    assert_ne!(stated_totals(BankFileFormat::Csv, &csv).unwrap(), marked);
    for (format, text) in [(BankFileFormat::Pain001, &xml), (BankFileFormat::Nacha, &ach_entry)] {
        // The file's own control records no longer add up.
        let e = stated_totals(format, text).unwrap_err();
        assert!(matches!(e, FileError::TotalsDisagree { .. }), "{format}: {e}");
    }
    // A member the writer dropped: the file states fewer transfers than were marked.
    let mut fewer = usd_file();
    let dropped = fewer.members.pop().unwrap();
    let text = config.write(BankFileFormat::Csv, &fewer).unwrap();
    let mut all = fewer.clone();
    all.members.push(dropped);
    assert_ne!(
        stated_totals(BankFileFormat::Csv, &text).unwrap(),
        all.totals().unwrap()
    );
}

#[test]
fn formats_are_named_and_unconfigured_ones_refused() {
    for format in BankFileFormat::ALL {
        assert_eq!(format.as_str().parse::<BankFileFormat>().unwrap(), format);
    }
    assert!("xml".parse::<BankFileFormat>().is_err());
    let csv_only = BankFileConfig::default();
    let f = usd_file();
    csv_only.write(BankFileFormat::Csv, &f).unwrap();
    for format in [BankFileFormat::Pain001, BankFileFormat::Nacha] {
        let e = csv_only.write(format, &f).unwrap_err();
        assert!(matches!(e, FileError::NotConfigured(_)), "{e}");
    }
}
