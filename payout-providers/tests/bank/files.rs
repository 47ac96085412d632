//! The bank files (CSV, pain.001.001.03, NACHA) checked field by field.

use super::*;

fn line(id: &str, name: &str, amount: &str, currency: Currency, account: BankAccount) -> BankTransferLine {
    let mut i = fixtures::instruction(Provider::BankTransfer);
    i.payout_id = id.into();
    i.idempotency_key = format!("{id}-1");
    i.doctor_id = format!("dr-{id}").into();
    i.recipient_name = name.to_string();
    i.amount = Money::parse(amount, currency).unwrap();
    i.destination = PayoutDestination::Bank(account);
    BankTransferLine::from_instruction(&i).unwrap()
}

fn account(name: &str, number: &str, code: Option<&str>) -> BankAccount {
    BankAccount {
        account_name: name.to_string(),
        account_number: number.to_string(),
        bank_code: code.map(String::from),
        ..Default::default()
    }
}

#[test]
fn csv_has_the_original_columns_and_neutralizes_formulas() {
    let lines = vec![
        line(
            "po_1",
            "Dr. A",
            "1500.50",
            Currency::KES,
            account("Dr. A", "0123", Some("01")),
        ),
        line(
            "po_2",
            "=HYPERLINK(\"x\")",
            "20",
            Currency::KES,
            account("", "9999", None),
        ),
    ];
    let out = csv(&lines).unwrap();
    let rows: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(
        rows[0],
        "id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status"
    );
    assert!(
        rows[1].starts_with("po_1,dr-po_1,Dr. A,doctor@example.com,1500.50,KES,"),
        "{}",
        rows[1]
    );
    assert!(rows[1].contains(r#""{""accountName"":""Dr. A"",""accountNumber"":""0123"",""bankCode"":""01""}""#));
    assert!(rows[1].ends_with(",PROCESSING"));
    assert!(
        rows[2].starts_with("po_2,dr-po_2,\"'=HYPERLINK(\"\"x\"\")\","),
        "{}",
        rows[2]
    );
    assert_eq!(rows.len(), 4, "two records, a header and the final CRLF");
    assert_eq!(csv(&[]), Err(FileError::Empty));
}

fn pain_settings() -> Pain001Settings {
    Pain001Settings {
        message_id: "MSG-2025-02-01".into(),
        created_at: Utc.with_ymd_and_hms(2025, 2, 1, 9, 30, 0).unwrap(),
        execution_date: NaiveDate::from_ymd_opt(2025, 2, 3).unwrap(),
        initiating_party: "Clinic & Co <Platform>".into(),
        debtor_name: "Clinic & Co".into(),
        debtor_account: "DE89 3704 0044 0532 0130 00".into(),
        debtor_agent_bic: Some("COBADEFFXXX".into()),
    }
}

/// Parses XML back into (path, text) pairs and the `Ccy` of each `InstdAmt`, checking it is well formed.
fn parse_xml(xml: &str) -> (Vec<(String, String)>, Vec<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut currencies = Vec::new();
    let mut current = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_string();
                if name == "InstdAmt" {
                    let ccy = e.try_get_attribute("Ccy").unwrap().expect("Ccy attribute");
                    currencies.push(
                        ccy.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .into_owned(),
                    );
                }
                stack.push(name);
                current.clear();
            }
            Event::Text(t) => current.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content().into_owned();
                current.push_str(quick_xml::escape::resolve_predefined_entity(&name).expect("predefined entity"));
            }
            Event::End(_) => {
                let p = stack.join("/");
                if !current.trim().is_empty() {
                    texts.push((p, std::mem::take(&mut current)));
                }
                current.clear();
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "every element closed");
    (texts, currencies)
}

fn all<'a>(texts: &'a [(String, String)], suffix: &str) -> Vec<&'a str> {
    texts
        .iter()
        .filter(|(p, _)| p.ends_with(suffix))
        .map(|(_, t)| t.as_str())
        .collect()
}

#[test]
fn pain001_is_well_formed_with_right_counts_and_sums() {
    let lines = vec![
        line(
            "po_1",
            "Dr. A & B",
            "1500.50",
            Currency::EUR,
            account("Dr. <A>", "DE89370400440532013000", Some("COBADEFF")),
        ),
        line(
            "po_2",
            "Dr. C",
            "20",
            Currency::EUR,
            account("", "12345678", Some("01")),
        ),
        line(
            "po_3",
            "Dr. D",
            "0.49",
            Currency::EUR,
            account("Dr. D", "12345679", None),
        ),
        line(
            "po_4",
            "Dr. E",
            "1000",
            Currency::KES,
            account("Dr. E", "0011223344", Some("68")),
        ),
    ];
    let xml = pain001(&lines, &pain_settings()).unwrap();
    assert!(xml.contains("xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.001.001.03\""));
    let (texts, currencies) = parse_xml(&xml);
    assert_eq!(all(&texts, "GrpHdr/NbOfTxs"), vec!["4"]);
    assert_eq!(all(&texts, "GrpHdr/CtrlSum"), vec!["2520.99"]);
    assert_eq!(all(&texts, "GrpHdr/MsgId"), vec!["MSG-2025-02-01"]);
    assert_eq!(all(&texts, "GrpHdr/CreDtTm"), vec!["2025-02-01T09:30:00"]);
    assert_eq!(
        all(&texts, "InitgPty/Nm"),
        vec!["Clinic & Co <Platform>"],
        "escaped and read back"
    );
    assert_eq!(
        all(&texts, "PmtInf/NbOfTxs"),
        vec!["3", "1"],
        "one PmtInf per currency, EUR then KES"
    );
    assert_eq!(all(&texts, "PmtInf/CtrlSum"), vec!["1520.99", "1000.00"]);
    assert_eq!(all(&texts, "PmtInf/PmtMtd"), vec!["TRF", "TRF"]);
    assert_eq!(all(&texts, "PmtInf/ReqdExctnDt"), vec!["2025-02-03", "2025-02-03"]);
    assert_eq!(all(&texts, "DbtrAcct/Id/IBAN"), vec!["DE89370400440532013000"; 2]);
    assert_eq!(all(&texts, "DbtrAgt/FinInstnId/BIC"), vec!["COBADEFFXXX"; 2]);
    assert_eq!(currencies, vec!["EUR", "EUR", "EUR", "KES"]);
    assert_eq!(all(&texts, "Amt/InstdAmt"), vec!["1500.50", "20.00", "0.49", "1000.00"]);
    let sum: rust_decimal_macros_free::Sum = all(&texts, "Amt/InstdAmt").into_iter().collect();
    assert_eq!(sum.0, 252099, "the transactions add up to the control sum (in cents)");
    assert_eq!(
        all(&texts, "PmtId/EndToEndId"),
        vec!["po_1-1", "po_2-1", "po_3-1", "po_4-1"]
    );
    assert_eq!(all(&texts, "Cdtr/Nm"), vec!["Dr. <A>", "Dr. C", "Dr. D", "Dr. E"]);
    assert_eq!(all(&texts, "CdtrAcct/Id/IBAN"), vec!["DE89370400440532013000"]);
    assert_eq!(
        all(&texts, "CdtrAcct/Id/Othr/Id"),
        vec!["12345678", "12345679", "0011223344"]
    );
    assert_eq!(all(&texts, "CdtrAgt/FinInstnId/BIC"), vec!["COBADEFF"]);
    assert_eq!(all(&texts, "CdtrAgt/FinInstnId/Othr/Id"), vec!["01", "68"]);
    assert!(all(&texts, "RmtInf/Ustrd")[0].starts_with("po_1-1 Consultations"));
}

/// Sums decimal strings into integer cents without floats.
mod rust_decimal_macros_free {
    pub struct Sum(pub i64);
    impl<'a> FromIterator<&'a str> for Sum {
        fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
            Sum(iter
                .into_iter()
                .map(|s| {
                    let (w, f) = s.split_once('.').unwrap_or((s, "00"));
                    w.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
                })
                .sum())
        }
    }
}

#[test]
fn pain001_refuses_bad_input() {
    let s = pain_settings();
    assert_eq!(pain001(&[], &s), Err(FileError::Empty));
    let bad_iban = line(
        "po_1",
        "A",
        "1",
        Currency::EUR,
        account("A", "DE88370400440532013000", None),
    );
    assert!(matches!(pain001(&[bad_iban], &s), Err(FileError::Invalid { .. })));
    let ok = line("po_1", "A", "1", Currency::EUR, account("A", "1", None));
    let long_id = Pain001Settings {
        message_id: "X".repeat(36),
        ..s.clone()
    };
    assert!(matches!(
        pain001(std::slice::from_ref(&ok), &long_id),
        Err(FileError::Settings(_))
    ));
    let mut zero = ok.clone();
    zero.amount = Money::zero(Currency::EUR);
    assert!(matches!(pain001(&[zero], &s), Err(FileError::Invalid { .. })));
}

/// Issue 15 item 5: what identifies a party or an account is refused when it does not fit, never
/// cut, and BICs follow ISO 9362 (the XSD's pattern); at the limits the file is written whole.
#[test]
fn pain001_refuses_rather_than_cuts_and_checks_bics() {
    let s = pain_settings();
    let eur = |name: &str, acct: BankAccount| line("po_9", name, "10.00", Currency::EUR, acct);
    let refused = |l: BankTransferLine, needle: &str| match pain001(&[l], &s) {
        Err(FileError::Invalid { payout_id, reason }) => {
            assert_eq!(payout_id, "po_9");
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
    };
    let long_name = "N".repeat(141);
    refused(eur(&long_name, account(&long_name, "12345678", None)), "name");
    refused(eur("A", account("A", &"1".repeat(35), None)), "account id");
    refused(eur("A", account("A", "12345678", Some("DEUTDE0F"))), "not a BIC");
    refused(eur("A", account("A", "12345678", Some("DEUTDEFO500"))), "not a BIC");
    refused(eur("A", account("A", "12345678", Some(&"7".repeat(36)))), "bank code");
    let mut branch = account("A", "12345678", Some("01"));
    branch.branch_code = Some("B".repeat(36));
    refused(eur("A", branch), "branch code");

    // At the limits: written whole, nothing cut.
    let name = "M".repeat(140);
    let number = "9".repeat(34);
    let xml = pain001(&[eur(&name, account(&name, &number, Some("KCBLKENX")))], &s).unwrap();
    let (texts, _) = parse_xml(&xml);
    assert_eq!(all(&texts, "Cdtr/Nm"), vec![name.as_str()]);
    assert_eq!(all(&texts, "CdtrAcct/Id/Othr/Id"), vec![number.as_str()]);
    assert_eq!(all(&texts, "CdtrAgt/FinInstnId/BIC"), vec!["KCBLKENX"]);
    // A local clearing code is not a BIC and goes in `Othr/Id`.
    let xml = pain001(&[eur("A", account("A", "12345678", Some("01")))], &s).unwrap();
    let (texts, _) = parse_xml(&xml);
    assert_eq!(all(&texts, "CdtrAgt/FinInstnId/Othr/Id"), vec!["01"]);

    // The settings: refused, never cut or dropped.
    for bad in [
        Pain001Settings {
            debtor_name: "D".repeat(141),
            ..s.clone()
        },
        Pain001Settings {
            initiating_party: "I".repeat(141),
            ..s.clone()
        },
        Pain001Settings {
            debtor_account: "1".repeat(35),
            ..s.clone()
        },
        Pain001Settings {
            debtor_agent_bic: Some("COBADE1F".into()),
            ..s.clone()
        },
    ] {
        let ok = eur("A", account("A", "12345678", None));
        assert!(matches!(pain001(&[ok], &bad), Err(FileError::Settings(_))), "{bad:?}");
    }
}

#[test]
fn end_to_end_ids_are_kept_or_hashed_deterministically() {
    assert_eq!(end_to_end_id("po_1-1"), "po_1-1");
    let key = "0190f8a4-7d2c-7b1e-9a3f-4c5d6e7f8a9b-1";
    let id = end_to_end_id(key);
    assert_eq!(id.len(), 35);
    assert_eq!(id, end_to_end_id(key));
    assert_ne!(id, end_to_end_id("0190f8a4-7d2c-7b1e-9a3f-4c5d6e7f8a9b-2"));
}

fn nacha_settings() -> NachaSettings {
    NachaSettings {
        immediate_destination: "021000021".into(),
        immediate_destination_name: "JPMORGAN CHASE".into(),
        immediate_origin: "1234567890".into(),
        immediate_origin_name: "Clinic Co".into(),
        company_name: "Clinic Co".into(),
        company_id: "1234567890".into(),
        entry_description: "PAYOUTS".into(),
        originating_dfi: "02100002".into(),
        effective_date: NaiveDate::from_ymd_opt(2025, 2, 3).unwrap(),
        created_at: Utc.with_ymd_and_hms(2025, 2, 1, 9, 30, 0).unwrap(),
        file_id_modifier: 'A',
        sec_code: SecCode::Ppd,
        account_type: AccountType::Checking,
        addenda: true,
    }
}

fn usd_lines() -> Vec<BankTransferLine> {
    vec![
        line(
            "po_1",
            "Dr. Ann Lee",
            "1500.50",
            Currency::USD,
            account("Ann Lee", "123456789", Some("021000021")),
        ),
        line(
            "po_2",
            "Dr. Müller",
            "20",
            Currency::USD,
            account("", "987-654", Some("011000015")),
        ),
        line(
            "po_3",
            "Dr. Cole",
            "0.01",
            Currency::USD,
            account("Cole", "55", Some("122000247")),
        ),
    ]
}

#[test]
fn nacha_records_blocks_and_control_totals() {
    let file = nacha(&usd_lines(), &nacha_settings()).unwrap();
    let records: Vec<&str> = file.lines().collect();
    assert!(records.iter().all(|r| r.len() == 94), "every record is 94 characters");
    assert_eq!(records.len() % 10, 0, "blocked by 10");
    // 1 header + 1 batch header + 3 entries + 3 addenda + batch control + file control = 10.
    assert_eq!(records.len(), 10);
    let kinds: String = records.iter().map(|r| &r[..1]).collect();
    assert_eq!(kinds, "1567676789");

    let h = records[0];
    assert_eq!(&h[0..3], "101");
    assert_eq!(&h[3..13], " 021000021");
    assert_eq!(&h[13..23], "1234567890");
    assert_eq!(&h[23..29], "250201");
    assert_eq!(&h[29..33], "0930");
    assert_eq!(&h[33..40], "A094101");

    let b = records[1];
    assert_eq!(&b[1..4], "220");
    assert_eq!(&b[4..20], "CLINIC CO       ");
    assert_eq!(&b[50..53], "PPD");
    assert_eq!(&b[53..63], "PAYOUTS   ");
    assert_eq!(&b[69..75], "250203");
    assert_eq!(&b[79..87], "02100002");
    assert_eq!(&b[87..94], "0000001");

    let e = records[4];
    assert_eq!(&e[1..3], "22");
    assert_eq!(&e[3..11], "01100001");
    assert_eq!(&e[11..12], "5");
    assert_eq!(&e[12..29], "987-654          ");
    assert_eq!(&e[29..39], "0000002000");
    assert_eq!(&e[39..54], "DR-PO_2        ");
    assert_eq!(&e[54..76], "DR. MULLER            ");
    assert_eq!(&e[78..79], "1");
    assert_eq!(&e[79..94], "021000020000002");
    let a = records[5];
    assert_eq!(&a[0..3], "705");
    assert!(a[3..83].starts_with("PO_2-1 "));
    assert_eq!(&a[83..87], "0001");
    assert_eq!(&a[87..94], "0000002");

    // Entry hash: 02100002 + 01100001 + 12200024 = 15400027.
    let bc = records[8];
    assert_eq!(&bc[1..4], "220");
    assert_eq!(&bc[4..10], "000006", "entries plus addenda");
    assert_eq!(&bc[10..20], "0015400027");
    assert_eq!(&bc[20..32], "000000000000");
    assert_eq!(&bc[32..44], "000000152051", "1500.50 + 20.00 + 0.01 in cents");
    assert_eq!(&bc[44..54], "1234567890");
    assert_eq!(&bc[79..87], "02100002");

    let fc = records[9];
    assert_eq!(&fc[1..7], "000001", "batches");
    assert_eq!(&fc[7..13], "000001", "blocks");
    assert_eq!(&fc[13..21], "00000006");
    assert_eq!(&fc[21..31], "0015400027");
    assert_eq!(&fc[43..55], "000000152051");
}

#[test]
fn nacha_pads_with_nines_and_wraps_the_entry_hash() {
    // 12 entries without addenda: 12 + 4 = 16 records -> 2 blocks, 4 filler records.
    let mut lines = Vec::new();
    for n in 0..12 {
        lines.push(line(
            &format!("p{n}"),
            "Dr X",
            "1",
            Currency::USD,
            account("X", "1", Some("122000247")),
        ));
    }
    let s = NachaSettings {
        addenda: false,
        ..nacha_settings()
    };
    let file = nacha(&lines, &s).unwrap();
    let records: Vec<&str> = file.lines().collect();
    assert_eq!(records.len(), 20);
    assert!(records[16..].iter().all(|r| *r == "9".repeat(94)));
    let fc = records[15];
    assert_eq!(&fc[0..1], "9");
    assert_eq!(&fc[7..13], "000002", "two blocks");
    assert_eq!(&fc[13..21], "00000012");
    // 12 x 12200024 = 146400288.
    assert_eq!(&fc[21..31], "0146400288");

    // The hash keeps the last 10 digits: 900 x 99999999 (routing 999999999? not valid) -> use a valid
    // high prefix: 322271627 (prefix 32227162) x 400 = 12890864800 -> 2890864800.
    let mut many = Vec::new();
    for n in 0..400 {
        many.push(line(
            &format!("q{n}"),
            "Dr Y",
            "1",
            Currency::USD,
            account("Y", "1", Some("322271627")),
        ));
    }
    let file = nacha(&many, &s).unwrap();
    let fc = file
        .lines()
        .find(|r| r.starts_with('9') && !r.starts_with("99"))
        .unwrap();
    assert_eq!(&fc[21..31], "2890864800");
}

#[test]
fn nacha_refuses_what_it_cannot_carry() {
    let s = nacha_settings();
    let kes = line("po_k", "A", "1", Currency::KES, account("A", "1", Some("021000021")));
    assert!(matches!(nacha(&[kes], &s), Err(FileError::Invalid { .. })));
    let bad_routing = line("po_r", "A", "1", Currency::USD, account("A", "1", Some("021000022")));
    assert!(matches!(nacha(&[bad_routing], &s), Err(FileError::Invalid { .. })));
    let long_account = line(
        "po_l",
        "A",
        "1",
        Currency::USD,
        account("A", "123456789012345678", Some("021000021")),
    );
    assert!(matches!(nacha(&[long_account], &s), Err(FileError::Invalid { .. })));
    assert_eq!(nacha(&[], &s), Err(FileError::Empty));
    let bad = NachaSettings {
        originating_dfi: "123".into(),
        ..s
    };
    assert!(matches!(nacha(&usd_lines(), &bad), Err(FileError::Settings(_))));
}

#[test]
fn lines_come_from_payouts_and_recipients() {
    let payout = fixtures::payout("po_9", "dr-9", fixtures::month(2025, 1), fixtures::kes("750"));
    let recipient = payout_core::domain::Recipient {
        doctor_id: "dr-9".into(),
        name: "Dr. Nine".into(),
        email: "nine@example.com".into(),
        bank_details: Some(account("Dr. Nine", "555", Some("01"))),
        ..Default::default()
    };
    let l = BankTransferLine::from_payout(&payout, &recipient, "po_9-1").unwrap();
    assert_eq!(l.reference, "po_9-1");
    assert_eq!(l.amount, fixtures::kes("750"));
    let shown = format!("{l:?}");
    assert!(
        !shown.contains("\"555\""),
        "account numbers are masked in Debug: {shown}"
    );
    let none = payout_core::domain::Recipient {
        bank_details: None,
        ..recipient
    };
    assert!(BankTransferLine::from_payout(&payout, &none, "k").is_err());
}
