//! The `payouts` command line's parser, `payouts::cli::parse_args` (clap), on arbitrary argument
//! lists: the input is split into arguments at `\n` (after `payouts`), so seeds read as one
//! argument a line. Nothing is run.
//!
//! Properties: no panic (clap's debug assertions on the command's definition included, fuzz builds
//! have them on); an accepted command line, written back as `--flag=value` arguments from what
//! was parsed, parses again to the same thing (compared by `Debug`), so every value the parser
//! accepts prints as text it accepts back, and no value is read differently the second time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payouts::cli::{CalcArgs, Cli, Command, DatabaseArgs, ExportArgs, ExportFormat, parse_args};

fn db(out: &mut Vec<String>, db: &DatabaseArgs) {
    if let Some(url) = &db.database_url {
        out.push(format!("--database-url={url}"));
    }
    if let Some(schema) = &db.schema {
        out.push(format!("--schema={schema}"));
    }
}

fn calc(out: &mut Vec<String>, a: &CalcArgs) {
    out.push("calc".into());
    if let Some(d) = a.start {
        out.push(format!("--start={}", d.format("%Y-%m-%d")));
    }
    if let Some(d) = a.end {
        out.push(format!("--end={}", d.format("%Y-%m-%d")));
    }
    // `Money` prints as `<amount> <currency>`; the flag takes the amount in KES.
    let rate = a.rate.to_string();
    let (amount, currency) = rate.split_once(' ').expect("amount and currency");
    assert_eq!(currency, "KES", "--rate is in KES");
    out.push(format!("--rate={amount}"));
    out.push(format!("--lookback={}", a.lookback));
    if a.dry_run {
        out.push("--dry-run".into());
    }
    db(out, &a.db);
}

fn export(out: &mut Vec<String>, a: &ExportArgs) {
    out.push("export".into());
    let format = match a.format {
        ExportFormat::Csv => "csv",
        ExportFormat::Pain001 => "pain001",
        ExportFormat::Nacha => "nacha",
    };
    out.push(format!("--format={format}"));
    if let Some(o) = &a.output {
        out.push(format!("--output={}", o.to_str().expect("the input was UTF-8")));
    }
    if let Some(s) = &a.status {
        out.push(format!("--status={s}"));
    }
    if let Some(p) = &a.provider {
        out.push(format!("--provider={p}"));
    }
    let texts = [
        ("debtor-name", &a.debtor_name),
        ("debtor-account", &a.debtor_account),
        ("debtor-bic", &a.debtor_bic),
        ("bank-file", &a.bank_file),
        ("nacha-destination", &a.nacha_destination),
        ("nacha-destination-name", &a.nacha_destination_name),
        ("nacha-origin", &a.nacha_origin),
        ("nacha-origin-name", &a.nacha_origin_name),
        ("nacha-company-name", &a.nacha_company_name),
        ("nacha-company-id", &a.nacha_company_id),
        ("nacha-originating-dfi", &a.nacha_originating_dfi),
    ];
    for (flag, value) in texts {
        if let Some(v) = value {
            out.push(format!("--{flag}={v}"));
        }
    }
    if let Some(d) = a.execution_date {
        out.push(format!("--execution-date={d}"));
    }
    out.push(format!("--nacha-entry-description={}", a.nacha_entry_description));
    for (flag, on) in [
        ("nacha-ccd", a.nacha_ccd),
        ("nacha-savings", a.nacha_savings),
        ("nacha-addenda", a.nacha_addenda),
    ] {
        if on {
            out.push(format!("--{flag}"));
        }
    }
    db(out, &a.db);
}

/// The arguments that say what `cli` says.
fn render(cli: &Cli) -> Vec<String> {
    let mut out = vec!["payouts".to_string()];
    match &cli.command {
        Command::Calc(a) => calc(&mut out, a),
        Command::Migrate(a) => {
            out.push("migrate".into());
            db(&mut out, &a.db);
        }
        Command::Reconcile(a) => {
            out.push("reconcile".into());
            out.push(format!("--older-than={}", a.older_than));
            db(&mut out, &a.db);
        }
        Command::Export(a) => export(&mut out, a),
        Command::Serve(a) => {
            out.push("serve".into());
            if let Some(addr) = a.addr {
                out.push(format!("--addr={addr}"));
            }
            if let Some(url) = &a.database_url {
                out.push(format!("--database-url={url}"));
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let args = std::iter::once("payouts").chain(text.split('\n'));
    let Ok(cli) = parse_args(args) else { return };
    let again = render(&cli);
    match parse_args(&again) {
        Ok(reparsed) => assert_eq!(format!("{reparsed:?}"), format!("{cli:?}"), "{again:?} from {text:?}"),
        Err(e) => panic!("{again:?} (from {text:?}) is refused: {e}"),
    }
});
