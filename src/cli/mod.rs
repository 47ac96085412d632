//! The `payouts` command-line tool (feature `cli`): `cargo install --path . --features cli`.
//!
//! | command | what it does |
//! |---|---|
//! | `payouts calc` | the monthly calculation job (the original `scripts/calc_payouts.ts`, same flags and defaults) |
//! | `payouts migrate` | creates or upgrades the store's tables |
//! | `payouts reconcile` | one reconciliation pass over payouts in flight |
//! | `payouts export` | payouts as CSV, ISO 20022 pain.001 or NACHA |
//! | `payouts serve` | the demo server: API, webhooks, dashboard |
//!
//! Every command reads the database from `--database-url` or `DATABASE_URL` (default: the demo's
//! SQLite file `payouts-demo.db`). Exit codes: [`EXIT_OK`] (0), [`EXIT_FAILURE`] (1: the work failed,
//! e.g. the database is unreachable or the period has no completed consultations), [`EXIT_USAGE`]
//! (2: bad flags or settings; nothing was done).
//!
//! The examples `calc_payouts` and `demo_server` are this code too ([`calc_payouts_main`],
//! [`demo_server_main`]).

mod calc;
mod export;
mod serve;
mod wiring;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use calc::CalcArgs;
pub use export::{ExportArgs, ExportFormat};
pub use serve::ServeArgs;
pub use wiring::DatabaseArgs;

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: the work failed (database unreachable, no completed consultations, a refused file, ...).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad flags or settings; nothing was done.
pub const EXIT_USAGE: u8 = 2;

const EXIT_CODES: &str = "Exit codes: 0 done; 1 the work failed (database unreachable, no completed \
consultations, a file refused, ...); 2 bad flags or settings, nothing done.";

/// Pays doctors for completed consultations: calculation, migrations, reconciliation, exports and
/// the demo server.
#[derive(Debug, Parser)]
#[command(name = "payouts", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Calculates a period's payouts from the completed consultations (one PENDING payout per doctor).
    #[command(after_help = EXIT_CODES)]
    Calc(CalcArgs),
    /// Creates or upgrades the store's tables (Postgres: in their own schema, `payouts` by default).
    #[command(after_help = EXIT_CODES)]
    Migrate(MigrateArgs),
    /// Runs one reconciliation pass: asks the providers about payouts in flight and settles them.
    #[command(after_help = EXIT_CODES)]
    Reconcile(ReconcileArgs),
    /// Writes payouts as CSV (the original columns), ISO 20022 pain.001 or NACHA.
    #[command(after_help = EXIT_CODES)]
    Export(Box<ExportArgs>),
    /// Runs the demo server: API, provider webhooks, admin dashboard, reconciliation and the monthly job.
    #[command(after_help = EXIT_CODES)]
    Serve(ServeArgs),
}

/// `payouts migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// `payouts reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Look at payouts whose check has been due for at least this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub older_than: u32,
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// A failure with its exit code and the message for stderr.
#[derive(Debug)]
pub struct CliError {
    /// [`EXIT_FAILURE`] or [`EXIT_USAGE`].
    pub code: u8,
    /// What went wrong, for a person.
    pub message: String,
}

impl CliError {
    /// The work failed: [`EXIT_FAILURE`].
    pub fn failure(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// Bad flags or settings: [`EXIT_USAGE`].
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

/// Runs `command` and says how it ended.
pub async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Calc(args) => calc::run(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Reconcile(args) => reconcile(args).await,
        Command::Export(args) => export::run(*args).await,
        Command::Serve(args) => serve::run(args).await,
    }
}

/// Parses a `payouts` command line (`args[0]` is the program's name) and runs nothing: what
/// [`main`] does before [`run`], with the error returned instead of printed. Reads the
/// environment variables the flags fall back to (`DATABASE_URL`, ...); `--help` and `--version`
/// come back as errors of their kind (`clap::error::ErrorKind::DisplayHelp`, `DisplayVersion`).
/// For tests and the `cli_args` fuzz target.
pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// The `payouts` binary: parses the command line, runs it, prints a failure to stderr and returns
/// the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    block_on("payouts", run(cli.command))
}

/// The `calc_payouts` example: `payouts calc` under the original script's name.
pub fn calc_payouts_main() -> ExitCode {
    /// The monthly calculation job (the original `scripts/calc_payouts.ts`).
    #[derive(Parser)]
    #[command(name = "calc_payouts", after_help = EXIT_CODES)]
    struct CalcPayouts {
        #[command(flatten)]
        args: CalcArgs,
    }
    block_on("calc_payouts", calc::run(CalcPayouts::parse().args))
}

/// The `demo_server` example: `payouts serve`.
pub fn demo_server_main() -> ExitCode {
    /// The payouts demo server.
    #[derive(Parser)]
    #[command(name = "demo_server", after_help = EXIT_CODES)]
    struct DemoServer {
        #[command(flatten)]
        args: ServeArgs,
    }
    block_on("demo_server", serve::run(DemoServer::parse().args))
}

fn block_on(name: &str, work: impl Future<Output = Result<(), CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("{name}: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

async fn migrate(args: MigrateArgs) -> Result<(), CliError> {
    let opened = args.db.open_store(true).await?;
    println!("{}", opened.describe());
    Ok(())
}

async fn reconcile(args: ReconcileArgs) -> Result<(), CliError> {
    let config = payout_server::demo::DemoConfig::from_env().map_err(|e| CliError::usage(e.to_string()))?;
    let wired = args.db.open(false).await?;
    let providers = payout_server::demo::providers_from_env(&config.simulation_token);
    let mut builder = crate::service::PayoutService::builder()
        .store(wired.store)
        .consultations(wired.consultations)
        .directory(wired.directory)
        .policy(config.policy())
        .performance(wired.performance);
    for setup in providers {
        if setup.adapter.capabilities().simulated {
            println!(
                "{}: SIMULATED (no credentials in the environment)",
                setup.adapter.provider()
            );
        }
        builder = setup.register(builder);
    }
    let service = builder.build().map_err(|e| CliError::usage(e.to_string()))?;
    let report = service
        .reconcile(chrono::Duration::seconds(i64::from(args.older_than)))
        .await
        .map_err(|e| CliError::failure(format!("reconciliation failed: {e}")))?;
    println!("examined:         {}", report.examined);
    println!("settled:          {}", report.settled.len());
    for (id, status) in &report.settled {
        println!("  {id} -> {status}");
    }
    println!("re-sent:          {}", report.resent.len());
    println!("still in flight:  {}", report.pending.len());
    println!("watched (PAID):   {}", report.watched.len());
    println!("lookups failed:   {}", report.errors.len());
    for (id, error) in &report.errors {
        println!("  {id}: {error}");
    }
    println!("needs attention:  {}", report.needs_attention.len());
    for id in &report.needs_attention {
        println!("  {id}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};

    #[test]
    fn parse_args_reads_flags_and_refuses_bad_ones_without_running_anything() {
        let cli = parse_args(["payouts", "calc", "--start", "2025-01-01", "--rate", "750", "--dry-run"]).unwrap();
        let args = match cli.command {
            Command::Calc(args) => args,
            other => panic!("calc parsed as {other:?}"),
        };
        assert_eq!(args.start, chrono::NaiveDate::from_ymd_opt(2025, 1, 1));
        assert_eq!(args.rate, Money::parse("750", Currency::KES).unwrap());
        assert!(args.dry_run);
        let bad = parse_args(["payouts", "calc", "--start", "2025-02-30"]).unwrap_err();
        assert_eq!(bad.kind(), clap::error::ErrorKind::ValueValidation);
        let help = parse_args(["payouts", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(parse_args(["payouts"]).is_err(), "a command is required");
    }
}
