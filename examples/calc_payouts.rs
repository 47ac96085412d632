//! Run with: `cargo run --example calc_payouts -- --start 2025-01-01 --end 2025-01-31 --rate 500`
//!
//! The monthly calculation job of the original system (`scripts/calc_payouts.ts`), same flags and defaults:
//! `--start` first day of the previous month, `--end` its last day, `--rate` 500 KES per completed
//! consultation; and `--lookback` 90 days: completed consultations of the 90 days before the period
//! that no payout holds (marked completed after their month was calculated) are paid with it, as
//! late items. Reads `COMPLETED` rows of the host's `appointments` table in `DATABASE_URL` (default: the
//! demo server's SQLite file `payouts-demo.db`), creates one PENDING payout per doctor, shows progress on a
//! terminal and a summary at the end. Re-running a period creates nothing new. Exits with code 1 and a clear
//! message when the database is unreachable or the period has no completed consultations.
//!
//! Clawbacks: when the table records consultations taken back, `PAYOUTS_REVERSED_STATUSES` (e.g.
//! `REFUNDED,VOIDED`) and `PAYOUTS_REVERSED_AT_COLUMN` (e.g. `refunded_at`) say how; each paid consultation
//! with one of those statuses and its time in the period or the look-back is clawed back, once. Unset: none.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use futures::StreamExt;
use futures::stream::BoxStream;
use payouts::PayoutStore;
use payouts::domain::{Actor, Consultation, Period, Reversal};
use payouts::money::{Currency, Money};
use payouts::service::{CalculationPolicy, PayoutService, PerformanceConfig};
use payouts::source::{ConsultationSource, RecipientDirectory};
use payouts::store_sqlx::{
    ConsultationTable, PgStore, RecipientTable, Reversals, SqlConsultationSource, SqlRecipientDirectory, SqliteStore,
};

struct Args {
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
    rate: Money,
    lookback_days: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        start: None,
        end: None,
        rate: Money::from_minor_units(50_000, Currency::KES),
        lookback_days: payouts::calculation::DEFAULT_LOOKBACK_DAYS,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // Both `--start 2025-01-01` and `--start=2025-01-01`, as the original accepted.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--start" => args.start = Some(date(&value()?)?),
            "--end" => args.end = Some(date(&value()?)?),
            "--rate" => {
                args.rate = Money::parse(&value()?, Currency::KES).map_err(|e| format!("--rate: {e}"))?;
            }
            "--lookback" => {
                let days = value()?;
                args.lookback_days = days
                    .parse()
                    .map_err(|_| format!("--lookback: {days:?} is not a number of days"))?;
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("{s:?} is not a date like 2025-01-31"))
}

/// Counts consultations as they stream past, for the progress line.
struct Counting {
    inner: Arc<dyn ConsultationSource>,
    seen: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl ConsultationSource for Counting {
    fn completed(&self, period: Period) -> BoxStream<'static, payouts::Result<Consultation>> {
        let seen = self.seen.clone();
        let show = std::io::stderr().is_terminal();
        Box::pin(self.inner.completed(period).inspect(move |_| {
            let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
            if show && n % 500 == 0 {
                eprint!("\r  {n} consultations read…");
                let _ = std::io::stderr().flush();
            }
        }))
    }

    fn reversed(&self, window: Period) -> BoxStream<'static, payouts::Result<Reversal>> {
        self.inner.reversed(window)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(why) => {
            eprintln!(
                "{why}\nusage: calc_payouts [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--rate KES] [--lookback DAYS]"
            );
            std::process::exit(if why.is_empty() { 0 } else { 2 });
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("calc_payouts: {e}");
        std::process::exit(1);
    }
}

/// The service's store, and the host's consultations and doctors read through the store's pool.
type Wiring = (
    Arc<dyn PayoutStore>,
    Arc<dyn ConsultationSource>,
    Arc<dyn RecipientDirectory>,
);

/// Wires a store and the host's tables (`table`, and the default doctor profiles) over its pool, for
/// either database. The two constructors are passed in rather than called here because the pool bound
/// they need is sealed inside `payout-store-sqlx`: this function cannot name it, its callers' concrete
/// pools satisfy it.
fn wire<P: Clone, C, D>(
    store: impl PayoutStore + 'static,
    pool: P,
    table: ConsultationTable,
    source: fn(P, ConsultationTable) -> payouts::Result<C>,
    directory: fn(P, RecipientTable) -> payouts::Result<D>,
) -> Result<Wiring, String>
where
    C: ConsultationSource + 'static,
    D: RecipientDirectory + 'static,
{
    let source = source(pool.clone(), table).map_err(|e| e.to_string())?;
    let directory = directory(pool, RecipientTable::default()).map_err(|e| e.to_string())?;
    Ok((Arc::new(store), Arc::new(source), Arc::new(directory)))
}

async fn run(args: Args) -> Result<(), String> {
    // Read before the database is opened, so a bad setting changes nothing.
    let table = ConsultationTable {
        reversals: Reversals::from_env().map_err(|e| e.to_string())?,
        ..ConsultationTable::default()
    };
    table.validate().map_err(|e| e.to_string())?;
    let reversals = table.reversals.clone();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://payouts-demo.db?mode=rw".into());
    let unreachable = |e: payouts::Error| format!("cannot open the database ({e}); check DATABASE_URL");
    let mut performance = PerformanceConfig::default();
    let (store, source, directory) = if url.starts_with("postgres") {
        // Postgres runs transactions side by side: two calculation chunks are written at once.
        performance.calculation_writes_in_flight = PgStore::WRITES_IN_FLIGHT;
        let store = PgStore::connect(&url).await.map_err(unreachable)?;
        let pool = store.pool().clone();
        wire(
            store,
            pool,
            table,
            SqlConsultationSource::new,
            SqlRecipientDirectory::new,
        )?
    } else {
        let store = SqliteStore::connect(&url).await.map_err(unreachable)?;
        let pool = store.pool().clone();
        wire(
            store,
            pool,
            table,
            SqlConsultationSource::new,
            SqlRecipientDirectory::new,
        )?
    };
    let seen = Arc::new(AtomicU64::new(0));
    let service = PayoutService::builder()
        .store(store)
        .consultations(Arc::new(Counting {
            inner: source,
            seen: seen.clone(),
        }))
        .directory(directory)
        .performance(performance)
        .build()
        .map_err(|e| e.to_string())?;
    let default = Period::previous_month(service.now());
    let period =
        Period::new(args.start.unwrap_or(default.start), args.end.unwrap_or(default.end)).map_err(|e| e.to_string())?;
    println!(
        "calculating {period} at {} per completed consultation, looking back {} days",
        args.rate, args.lookback_days
    );
    if let Some(r) = &reversals {
        println!(
            "clawing back paid consultations with status {} (reversal time in {})",
            r.statuses.join(", "),
            r.reversed_at
        );
    }
    let policy = CalculationPolicy {
        lookback_days: args.lookback_days,
        ..CalculationPolicy::with_rate(args.rate)
    };
    let report = service
        .calculate_period(&Actor::system("calc_payouts"), Some(period), &policy)
        .await
        .map_err(|e| match e {
            payouts::Error::Source(m) => format!("cannot read completed consultations: {m}"),
            other => other.to_string(),
        })?;
    if std::io::stderr().is_terminal() {
        eprintln!("\r  {} consultations read.   ", seen.load(Ordering::Relaxed));
    }
    if report.consultations == 0 {
        return Err(format!(
            "no appointments with status COMPLETED between {} and {}",
            period.start, period.end
        ));
    }
    println!("consultations:  {}", report.consultations);
    println!("doctors:        {}", report.doctors);
    println!(
        "payouts created: {} ({} in all)",
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
