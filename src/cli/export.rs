//! `payouts export`: payouts as CSV, ISO 20022 pain.001 or NACHA, through the bank file writers.

use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use tokio::io::AsyncWriteExt;

use crate::domain::{Actor, BankFileId, Provider};
use crate::providers::bank::{AccountType, BankFileConfig, BankFileFormat, NachaOrigin, Pain001Origin, SecCode};
use crate::service::{BankFile, BankFileRequest, BankPayouts, PayoutService};
use crate::status::PayoutStatus;
use crate::store::PayoutFilter;

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

/// `payouts export`: CSV lists the payouts matching the filters and changes none of them.
/// pain.001 and NACHA send the matching `APPROVED` payouts whose doctors have bank details by bank
/// file, exactly as `GET /api/admin/bank-files?format=...` does: the whole file is written and its
/// totals checked first (a payout it cannot hold refuses the file, nothing changed), then each
/// payout is marked `PROCESSING`, sent by that file (its attempt, the file's id as reference, a
/// `TRIGGER` audit entry), so no trigger can pay it again; the file's id is printed, and
/// `--bank-file ID` writes that file again (nothing marked). Settle it with the API
/// (`POST /api/admin/bank-files/{file}/settle`) once the bank confirms.
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
    /// pain.001 and NACHA: the requested execution (effective entry) date, today or later
    /// [default: the next day, UTC]
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub execution_date: Option<NaiveDate>,
    /// pain.001 and NACHA: write the bank file of this id again, as it was made (nothing is marked)
    #[arg(long, value_name = "ID")]
    pub bank_file: Option<String>,
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

/// Runs `payouts export`.
pub(crate) async fn run(args: ExportArgs) -> Result<(), CliError> {
    // Settings first: a missing one changes nothing and opens nothing.
    let bank = match args.format {
        ExportFormat::Csv => {
            if args.bank_file.is_some() {
                return Err(CliError::usage("--bank-file needs --format pain001 or nacha"));
            }
            None
        }
        ExportFormat::Pain001 => Some((BankFileFormat::Pain001, bank_config(&args)?)),
        ExportFormat::Nacha => Some((BankFileFormat::Nacha, bank_config(&args)?)),
    };
    let file_id = args
        .bank_file
        .as_deref()
        .map(|id| BankFileId::parse(id).map_err(|e| CliError::usage(format!("--bank-file: {e}"))))
        .transpose()?;
    if let Some(status) = args
        .status
        .filter(|s| bank.is_some() && file_id.is_none() && *s != PayoutStatus::Approved)
    {
        return Err(CliError::usage(format!(
            "a bank file sends APPROVED payouts; --status {status} cannot be sent"
        )));
    }
    let wired = args.db.open(false).await?;
    let service = PayoutService::builder()
        .store(wired.store)
        .consultations(wired.consultations)
        .directory(wired.directory.clone())
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?;
    let filter = PayoutFilter {
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
    let Some((format, config)) = bank else {
        let written = service
            .export_csv(&admin, &filter, &mut out)
            .await
            .map_err(|e| CliError::failure(format!("export failed: {e}")))?;
        finish(&mut out).await?;
        eprintln!("{written} payouts exported");
        return Ok(());
    };
    let file = match &file_id {
        Some(id) => service
            .bank_file(&admin, id)
            .await
            .map_err(|e| CliError::failure(format!("reading bank file {id}: {e}")))?,
        None => {
            let request = BankFileRequest {
                selection: filter,
                payouts: BankPayouts::WithBankDetails,
            };
            // The whole file, written and its totals checked, before any payout is marked.
            let check = |planned: &BankFile| config.write(format, planned).map(drop).map_err(|e| e.to_string());
            service
                .send_by_file(&admin, &request, check)
                .await
                .map_err(|e| CliError::failure(format!("the file was refused: {e}")))?
        }
    };
    for left in &file.left_out {
        eprintln!("left out: payout {}: {}", left.payout_id, left.reason);
    }
    let again = format!("write it again with --bank-file {}", file.id);
    let text = config
        .write(format, &file)
        .map_err(|e| CliError::failure(format!("bank file {} could not be written ({e}); {again}", file.id)))?;
    out.write_all(text.as_bytes())
        .await
        .map_err(|e| CliError::failure(format!("writing bank file {}: {e}; {again}", file.id)))?;
    finish(&mut out).await?;
    let totals = file
        .totals()
        .map(|t| t.sums.iter().map(ToString::to_string).collect::<Vec<_>>().join(" + "))
        .unwrap_or_default();
    match file_id {
        Some(_) => eprintln!(
            "bank file {} written again: {} transfers, {totals}",
            file.id,
            file.members.len()
        ),
        None => eprintln!(
            "bank file {}: {} transfers, {totals}; its payouts are marked sent by this file",
            file.id,
            file.members.len()
        ),
    }
    Ok(())
}

async fn finish(out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send)) -> Result<(), CliError> {
    out.flush()
        .await
        .map_err(|e| CliError::failure(format!("writing the file: {e}")))
}

/// The payer's settings of the format asked for, from the flags (and their variables).
fn bank_config(args: &ExportArgs) -> Result<BankFileConfig, CliError> {
    let today = Utc::now().date_naive();
    let execution_days = match args.execution_date {
        None => 1,
        Some(date) if date < today => {
            return Err(CliError::usage(format!(
                "--execution-date {date} is in the past (today is {today}, UTC)"
            )));
        }
        Some(date) => u32::try_from((date - today).num_days())
            .map_err(|_| CliError::usage(format!("--execution-date {date} is too far ahead")))?,
    };
    let mut config = BankFileConfig {
        execution_days,
        ..BankFileConfig::default()
    };
    match args.format {
        ExportFormat::Csv => {}
        ExportFormat::Pain001 => {
            let debtor_name = required(&args.debtor_name, "--debtor-name")?;
            config.pain001 = Some(Pain001Origin {
                initiating_party: debtor_name.clone(),
                debtor_name,
                debtor_account: required(&args.debtor_account, "--debtor-account")?,
                debtor_agent_bic: args.debtor_bic.clone(),
            });
        }
        ExportFormat::Nacha => {
            config.nacha = Some(NachaOrigin {
                immediate_destination: required(&args.nacha_destination, "--nacha-destination")?,
                immediate_destination_name: required(&args.nacha_destination_name, "--nacha-destination-name")?,
                immediate_origin: required(&args.nacha_origin, "--nacha-origin")?,
                immediate_origin_name: required(&args.nacha_origin_name, "--nacha-origin-name")?,
                company_name: required(&args.nacha_company_name, "--nacha-company-name")?,
                company_id: required(&args.nacha_company_id, "--nacha-company-id")?,
                entry_description: args.nacha_entry_description.clone(),
                originating_dfi: required(&args.nacha_originating_dfi, "--nacha-originating-dfi")?,
                sec_code: if args.nacha_ccd { SecCode::Ccd } else { SecCode::Ppd },
                account_type: if args.nacha_savings {
                    AccountType::Savings
                } else {
                    AccountType::Checking
                },
                addenda: args.nacha_addenda,
            });
        }
    }
    Ok(config)
}

fn required(value: &Option<String>, flag: &str) -> Result<String, CliError> {
    value
        .clone()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| CliError::usage(format!("this format needs {flag}")))
}
