//! `payouts export`: payouts as CSV, ISO 20022 pain.001 or NACHA, through the bank file writers.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use tokio::io::AsyncWriteExt;

use crate::domain::{Actor, Provider};
use crate::providers::bank::{AccountType, BankTransferLine, NachaSettings, Pain001Settings, SecCode, nacha, pain001};
use crate::service::PayoutService;
use crate::status::PayoutStatus;
use crate::store::{Page, PayoutFilter};

use super::{CliError, DatabaseArgs};

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The original system's CSV (`id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status`).
    Csv,
    /// ISO 20022 `pain.001.001.03` credit transfers (bank payouts; needs --debtor-name and --debtor-account).
    Pain001,
    /// NACHA (US ACH) credits, USD only (bank payouts; needs the --nacha-* settings).
    Nacha,
}

/// `payouts export`: writes the payouts matching the filters; changes none of them. CSV lists every
/// matching payout; pain.001 and NACHA pay the matching payouts (default: APPROVED) to their
/// doctors' bank details, each referenced by its latest attempt's idempotency key, or by its id
/// when it has none. A payout that cannot go in the file (no bank details, a name too long for the
/// format, ...) refuses the whole file, naming the payout.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The format
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Where to write [default: standard output]
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only payouts in this status (PENDING, APPROVED, PROCESSING, PAID, FAILED, ...) [default: all
    /// for CSV, APPROVED for bank files]
    #[arg(long, value_name = "STATUS")]
    pub status: Option<PayoutStatus>,
    /// Only payouts of this provider (STRIPE_CONNECT, PAYPAL, MPESA_B2C, BANK_TRANSFER)
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<Provider>,
    /// pain.001: the paying party's name (PmtInf/Dbtr/Nm and the initiating party)
    #[arg(long, env = "PAYOUTS_DEBTOR_NAME")]
    pub debtor_name: Option<String>,
    /// pain.001: the paying account, an IBAN or another account id
    #[arg(long, env = "PAYOUTS_DEBTOR_ACCOUNT")]
    pub debtor_account: Option<String>,
    /// pain.001: the paying bank's BIC
    #[arg(long, env = "PAYOUTS_DEBTOR_BIC")]
    pub debtor_bic: Option<String>,
    /// pain.001: the message id, unique per file [default: PAYOUTS- and the UTC time]
    #[arg(long)]
    pub message_id: Option<String>,
    /// pain.001 and NACHA: the requested execution (effective entry) date [default: today, UTC]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub execution_date: Option<NaiveDate>,
    /// NACHA: immediate destination, the receiving bank's 9-digit routing number
    #[arg(long, env = "PAYOUTS_NACHA_DESTINATION")]
    pub nacha_destination: Option<String>,
    /// NACHA: the immediate destination's name
    #[arg(long, env = "PAYOUTS_NACHA_DESTINATION_NAME")]
    pub nacha_destination_name: Option<String>,
    /// NACHA: immediate origin, 9-digit routing number or the 10-character id agreed with the bank
    #[arg(long, env = "PAYOUTS_NACHA_ORIGIN")]
    pub nacha_origin: Option<String>,
    /// NACHA: the immediate origin's name
    #[arg(long, env = "PAYOUTS_NACHA_ORIGIN_NAME")]
    pub nacha_origin_name: Option<String>,
    /// NACHA: company name (16 characters)
    #[arg(long, env = "PAYOUTS_NACHA_COMPANY_NAME")]
    pub nacha_company_name: Option<String>,
    /// NACHA: company identification (10 characters, often 1 + EIN)
    #[arg(long, env = "PAYOUTS_NACHA_COMPANY_ID")]
    pub nacha_company_id: Option<String>,
    /// NACHA: the originating bank's 8-digit routing prefix
    #[arg(long, env = "PAYOUTS_NACHA_ORIGINATING_DFI")]
    pub nacha_originating_dfi: Option<String>,
    /// NACHA: the entry description the receivers see (10 characters)
    #[arg(long, default_value = "PAYOUTS")]
    pub nacha_entry_description: String,
    /// NACHA: the file id modifier (A-Z, 0-9), distinguishing files made on one day
    #[arg(long, default_value_t = 'A')]
    pub nacha_file_id_modifier: char,
    /// NACHA: CCD (business accounts) instead of PPD (consumer accounts)
    #[arg(long)]
    pub nacha_ccd: bool,
    /// NACHA: the receivers' accounts are savings accounts (default: checking)
    #[arg(long)]
    pub nacha_savings: bool,
    /// NACHA: one addenda record per entry carrying the full reference
    #[arg(long)]
    pub nacha_addenda: bool,
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// Writes a bank file of the lines, or says why not.
type BankFileWriter = dyn Fn(&[BankTransferLine]) -> Result<String, String>;

/// Runs `payouts export`.
pub(crate) async fn run(args: ExportArgs) -> Result<(), CliError> {
    // Settings first: a missing one changes nothing and opens nothing.
    let now = Utc::now();
    let date = args.execution_date.unwrap_or(now.date_naive());
    let write_bank: Box<BankFileWriter> = match args.format {
        ExportFormat::Csv => Box::new(|_| Ok(String::new())),
        ExportFormat::Pain001 => {
            let settings = Pain001Settings {
                message_id: args
                    .message_id
                    .clone()
                    .unwrap_or_else(|| format!("PAYOUTS-{}", now.format("%Y%m%dT%H%M%S"))),
                created_at: now,
                execution_date: date,
                initiating_party: required(&args.debtor_name, "--debtor-name")?,
                debtor_name: required(&args.debtor_name, "--debtor-name")?,
                debtor_account: required(&args.debtor_account, "--debtor-account")?,
                debtor_agent_bic: args.debtor_bic.clone(),
            };
            Box::new(move |lines| pain001(lines, &settings).map_err(|e| e.to_string()))
        }
        ExportFormat::Nacha => {
            let settings = NachaSettings {
                immediate_destination: required(&args.nacha_destination, "--nacha-destination")?,
                immediate_destination_name: required(&args.nacha_destination_name, "--nacha-destination-name")?,
                immediate_origin: required(&args.nacha_origin, "--nacha-origin")?,
                immediate_origin_name: required(&args.nacha_origin_name, "--nacha-origin-name")?,
                company_name: required(&args.nacha_company_name, "--nacha-company-name")?,
                company_id: required(&args.nacha_company_id, "--nacha-company-id")?,
                entry_description: args.nacha_entry_description.clone(),
                originating_dfi: required(&args.nacha_originating_dfi, "--nacha-originating-dfi")?,
                effective_date: date,
                created_at: now,
                file_id_modifier: args.nacha_file_id_modifier,
                sec_code: if args.nacha_ccd { SecCode::Ccd } else { SecCode::Ppd },
                account_type: if args.nacha_savings {
                    AccountType::Savings
                } else {
                    AccountType::Checking
                },
                addenda: args.nacha_addenda,
            };
            Box::new(move |lines| nacha(lines, &settings).map_err(|e| e.to_string()))
        }
    };
    let wired = args.db.open(false).await?;
    let service = PayoutService::builder()
        .store(wired.store)
        .consultations(wired.consultations)
        .directory(wired.directory.clone())
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?;
    let mut filter = PayoutFilter {
        status: args.status,
        provider: args.provider,
        ..PayoutFilter::default()
    };
    let admin = Actor::admin("payouts-cli");
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &args.output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let written = if args.format == ExportFormat::Csv {
        service
            .export_csv(&admin, &filter, &mut out)
            .await
            .map_err(|e| CliError::failure(format!("export failed: {e}")))?
    } else {
        filter.status = filter.status.or(Some(PayoutStatus::Approved));
        let lines = bank_lines(&service, wired.directory.as_ref(), &filter).await?;
        let file = write_bank(&lines).map_err(|e| CliError::failure(format!("the file was refused: {e}")))?;
        out.write_all(file.as_bytes())
            .await
            .map_err(|e| CliError::failure(format!("writing the file: {e}")))?;
        lines.len() as u64
    };
    out.flush()
        .await
        .map_err(|e| CliError::failure(format!("writing the file: {e}")))?;
    eprintln!("{written} payouts exported");
    Ok(())
}

fn required(value: &Option<String>, flag: &str) -> Result<String, CliError> {
    value
        .clone()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| CliError::usage(format!("this format needs {flag}")))
}

/// The bank lines of every payout matching `filter`, oldest first.
async fn bank_lines(
    service: &PayoutService,
    directory: &dyn crate::source::RecipientDirectory,
    filter: &PayoutFilter,
) -> Result<Vec<BankTransferLine>, CliError> {
    let store: Arc<dyn crate::PayoutStore> = service.store().clone();
    let failed = |e: crate::Error| CliError::failure(format!("export failed: {e}"));
    let mut payouts = Vec::new();
    let mut page = Page {
        limit: 500,
        ..Page::default()
    };
    loop {
        let got = store.list(filter, &page).await.map_err(failed)?;
        payouts.extend(got.payouts);
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    payouts.reverse();
    let mut lines = Vec::with_capacity(payouts.len());
    for payout in &payouts {
        let recipient = directory
            .recipient(&payout.doctor_id)
            .await
            .map_err(failed)?
            .ok_or_else(|| CliError::failure(format!("payout {}: doctor {} not found", payout.id, payout.doctor_id)))?;
        let reference = store
            .attempts(&payout.id)
            .await
            .map_err(failed)?
            .last()
            .map_or_else(|| payout.id.to_string(), |a| a.idempotency_key.clone());
        lines.push(
            BankTransferLine::from_payout(payout, &recipient, reference)
                .map_err(|e| CliError::failure(format!("the file was refused: {e}")))?,
        );
    }
    Ok(lines)
}
