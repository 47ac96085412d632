//! `payouts calc`: the monthly calculation job of the original system (`scripts/calc_payouts.ts`).

use std::sync::Arc;

use chrono::NaiveDate;
use futures::StreamExt;
use futures::stream::BoxStream;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::calculation::{CalculationPolicy, DEFAULT_LOOKBACK_DAYS};
use crate::domain::{Actor, Consultation, Period, Reversal};
use crate::money::{Currency, Money};
use crate::service::PayoutService;
use crate::source::ConsultationSource;
use crate::store_sqlx::{ConsultationTable, Reversals};

use super::{CliError, DatabaseArgs};

/// `payouts calc`: reads `COMPLETED` rows of the host's `appointments` table, creates one PENDING
/// payout per doctor, and prints a summary. Re-running a period creates nothing new.
///
/// Clawbacks: when the table records consultations taken back, `PAYOUTS_REVERSED_STATUSES` (e.g.
/// `REFUNDED,VOIDED`) and `PAYOUTS_REVERSED_AT_COLUMN` (e.g. `refunded_at`) say how; unset, none.
#[derive(Debug, Clone, clap::Args)]
pub struct CalcArgs {
    /// First day of the period [default: the first day of the previous month]
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = date)]
    pub start: Option<NaiveDate>,
    /// Last day of the period [default: the last day of the previous month]
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = date)]
    pub end: Option<NaiveDate>,
    /// Pay per completed consultation, in KES
    #[arg(long, value_name = "KES", default_value = "500", value_parser = rate)]
    pub rate: Money,
    /// Also pay completed consultations of this many days before the period that no payout holds
    /// (marked completed after their month was calculated)
    #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_LOOKBACK_DAYS)]
    pub lookback: u32,
    /// Calculate on a snapshot of the database and report, writing nothing (SQLite only)
    #[arg(long)]
    pub dry_run: bool,
    /// The database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("{s:?} is not a date like 2025-01-31"))
}

fn rate(s: &str) -> Result<Money, String> {
    Money::parse(s, Currency::KES).map_err(|e| e.to_string())
}

/// Counts consultations as they stream past, on the progress bar.
struct Counting {
    inner: Arc<dyn ConsultationSource>,
    progress: ProgressBar,
}

#[async_trait::async_trait]
impl ConsultationSource for Counting {
    fn completed(&self, period: Period) -> BoxStream<'static, crate::Result<Consultation>> {
        let progress = self.progress.clone();
        Box::pin(self.inner.completed(period).inspect(move |_| progress.inc(1)))
    }

    fn reversed(&self, window: Period) -> BoxStream<'static, crate::Result<Reversal>> {
        self.inner.reversed(window)
    }
}

/// Runs `payouts calc`.
pub(crate) async fn run(args: CalcArgs) -> Result<(), CliError> {
    // Read before the database is opened, so a bad setting changes nothing.
    let table = ConsultationTable {
        reversals: Reversals::from_env().map_err(|e| CliError::failure(e.to_string()))?,
        ..ConsultationTable::default()
    };
    table.validate().map_err(|e| CliError::failure(e.to_string()))?;
    let reversals = table.reversals.clone();
    // A dry run calculates on a copy, so it sees exactly what a real run would and changes nothing.
    let snapshot = if args.dry_run {
        Some(Snapshot::take(&args.db).await?)
    } else {
        None
    };
    let db = match &snapshot {
        Some(s) => DatabaseArgs {
            database_url: Some(s.url.clone()),
            schema: None,
        },
        None => args.db.clone(),
    };
    let wired = db.open_with(false, table).await?;
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} consultations read ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let service = PayoutService::builder()
        .store(wired.store)
        .consultations(Arc::new(Counting {
            inner: wired.consultations,
            progress: progress.clone(),
        }))
        .directory(wired.directory)
        .performance(wired.performance)
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?;
    let default = Period::previous_month(service.now());
    let period = Period::new(args.start.unwrap_or(default.start), args.end.unwrap_or(default.end))
        .map_err(|e| CliError::usage(e.to_string()))?;
    if args.dry_run {
        println!("dry run: calculating on a snapshot of the database; nothing is written");
    }
    println!(
        "calculating {period} at {} per completed consultation, looking back {} days",
        args.rate, args.lookback
    );
    if let Some(r) = &reversals {
        println!(
            "clawing back paid consultations with status {} (reversal time in {})",
            r.statuses.join(", "),
            r.reversed_at
        );
    }
    let policy = CalculationPolicy {
        lookback_days: args.lookback,
        ..CalculationPolicy::with_rate(args.rate)
    };
    let report = service
        .calculate_period(&Actor::system("calc_payouts"), Some(period), &policy)
        .await
        .map_err(|e| {
            CliError::failure(match e {
                crate::Error::Source(m) => format!("cannot read completed consultations: {m}"),
                other => other.to_string(),
            })
        });
    progress.finish_and_clear();
    drop(service);
    if let Some(s) = snapshot {
        s.remove().await;
    }
    let report = report?;
    if report.consultations == 0 {
        return Err(CliError::failure(format!(
            "no appointments with status COMPLETED between {} and {}",
            period.start, period.end
        )));
    }
    let would = if args.dry_run { " (would be)" } else { "" };
    println!("consultations:  {}", report.consultations);
    println!("doctors:        {}", report.doctors);
    println!(
        "payouts created{would}: {} ({} in all)",
        report.created.len(),
        report.total_created
    );
    println!("already calculated (skipped): {}", report.skipped.len());
    let already: u64 = report.already_paid.iter().map(|a| a.consultations).sum();
    println!("already paid (on a live payout, skipped): {already}");
    for a in report.already_paid.iter().take(10) {
        println!(
            "  {} consultations of {} held by {}",
            a.consultations, a.doctor_id, a.held_by
        );
    }
    if report.already_paid.len() > 10 {
        println!("  ... and {} more doctors", report.already_paid.len() - 10);
    }
    println!(
        "late consultations paid (completed after their period was calculated): {}",
        report.late
    );
    if report.clawbacks > 0 {
        println!(
            "clawbacks (paid consultations refunded or voided since): {}",
            report.clawbacks
        );
    }
    if !report.carried_over.is_empty() {
        println!(
            "carried over (below minimum, or clawbacks larger than earnings): {}",
            report.carried_over.len()
        );
    }
    Ok(())
}

/// A copy of a SQLite database in a temp dir (`VACUUM INTO`, read-only on the original), for a
/// dry run.
struct Snapshot {
    dir: std::path::PathBuf,
    url: String,
}

impl Snapshot {
    async fn take(db: &DatabaseArgs) -> Result<Self, CliError> {
        use sqlx::ConnectOptions;
        if !db.is_sqlite() {
            return Err(CliError::usage(
                "--dry-run needs a SQLite database (it calculates on a copy); Postgres has no cheap copy, \
                 run it against a restored dump instead",
            ));
        }
        let url = db.url(false);
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .map_err(|e| CliError::failure(format!("cannot open the database ({e}); check DATABASE_URL")))?
            .read_only(true);
        let mut conn = options
            .connect()
            .await
            .map_err(|e| CliError::failure(format!("cannot open the database ({e}); check DATABASE_URL")))?;
        let dir = std::env::temp_dir().join(format!(
            "payouts-dry-run-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| CliError::failure(format!("a temp dir for the snapshot: {e}")))?;
        let file = dir.join("snapshot.db");
        sqlx::query("VACUUM INTO ?1")
            .bind(file.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await
            .map_err(|e| CliError::failure(format!("cannot copy the database for the dry run: {e}")))?;
        let _ = sqlx::Connection::close(conn).await;
        Ok(Snapshot {
            url: format!("sqlite://{}?mode=rw", file.display()),
            dir,
        })
    }

    async fn remove(self) {
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}
