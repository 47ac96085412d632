//! What every section shares: the report, peak memory, Postgres schemas, timing and percentiles.

use std::time::{Duration, Instant};

pub use payout_store_sqlx::testkit::PgTestSchema;

/// One line of the results table.
pub struct Row {
    pub section: &'static str,
    pub measurement: String,
    pub value: String,
    pub baseline: String,
    pub baseline_value: String,
    /// Measurement / baseline for times, measurement / baseline for rates; `None` for absolute figures.
    pub ratio: Option<f64>,
    pub target: String,
    pub met: bool,
}

/// All results of one run, printed at the end.
pub struct Report {
    pub scale: f64,
    rows: Vec<Row>,
}

impl Report {
    pub fn new(scale: f64) -> Self {
        Report {
            scale,
            rows: Vec::new(),
        }
    }

    /// `n` scaled, at least `min`.
    pub fn scaled(&self, n: usize, min: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(min)
    }

    /// A time against a baseline time; met when `time / baseline <= max_ratio`.
    pub fn time(
        &mut self,
        section: &'static str,
        measurement: impl Into<String>,
        time: Duration,
        baseline: impl Into<String>,
        baseline_time: Duration,
        max_ratio: f64,
    ) {
        let ratio = time.as_secs_f64() / baseline_time.as_secs_f64();
        self.push(Row {
            section,
            measurement: measurement.into(),
            value: secs(time),
            baseline: baseline.into(),
            baseline_value: secs(baseline_time),
            ratio: Some(ratio),
            target: format!("<= {max_ratio}x"),
            met: ratio <= max_ratio,
        });
    }

    /// A rate against a baseline rate; met when `rate / baseline >= min_ratio`.
    #[allow(clippy::too_many_arguments)]
    pub fn rate(
        &mut self,
        section: &'static str,
        measurement: impl Into<String>,
        rate: f64,
        unit: &str,
        baseline: impl Into<String>,
        baseline_rate: f64,
        min_ratio: f64,
    ) {
        let ratio = rate / baseline_rate;
        self.push(Row {
            section,
            measurement: measurement.into(),
            value: format!("{rate:.0} {unit}"),
            baseline: baseline.into(),
            baseline_value: format!("{baseline_rate:.0} {unit}"),
            ratio: Some(ratio),
            target: format!(">= {:.0}%", min_ratio * 100.0),
            met: ratio >= min_ratio,
        });
    }

    /// An absolute figure with its target.
    pub fn absolute(
        &mut self,
        section: &'static str,
        measurement: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) {
        self.push(Row {
            section,
            measurement: measurement.into(),
            value: value.into(),
            baseline: String::new(),
            baseline_value: String::new(),
            ratio: None,
            target: target.into(),
            met,
        });
    }

    fn push(&mut self, row: Row) {
        let ratio = row.ratio.map(|r| format!(" ratio {r:.3}")).unwrap_or_default();
        eprintln!(
            "[{}] {}: {}{}{} target {} -> {}",
            row.section,
            row.measurement,
            row.value,
            if row.baseline.is_empty() {
                String::new()
            } else {
                format!(" vs {} {}", row.baseline, row.baseline_value)
            },
            ratio,
            row.target,
            if row.met { "met" } else { "MISSED" }
        );
        self.rows.push(row);
    }

    /// The results as a Markdown table on stdout.
    pub fn print(&self) {
        println!();
        println!("scale {}", self.scale);
        println!();
        println!("| Section | Measurement | Value | Baseline | Baseline value | Ratio | Target | Met |");
        println!("|---|---|---:|---|---:|---:|---|---|");
        for r in &self.rows {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.section,
                r.measurement,
                r.value,
                r.baseline,
                r.baseline_value,
                r.ratio.map(|r| format!("{r:.3}")).unwrap_or_default(),
                r.target,
                if r.met { "yes" } else { "**no**" }
            );
        }
    }
}

/// Seconds with three decimals (`1.234 s`), or milliseconds below one second.
pub fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

/// Runs `f` and returns its output and how long it took.
pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

/// The `p`th percentile (0..=100) of `samples` (sorted in place), nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Starts a new peak-memory window: the kernel resets this process's `VmHWM` to its current RSS
/// (`/proc/self/clear_refs`, value 5).
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS (/proc/self/clear_refs)");
}

/// This process's peak resident set since the last [`reset_peak_rss`], in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// This process's current resident set, in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} missing from /proc/self/status"))
}

/// Peak memory of `f` above the RSS it started with, in KiB.
pub async fn peak_growth_kib<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    reset_peak_rss();
    let before = rss_kib();
    let out = f.await;
    (out, peak_rss_kib().saturating_sub(before))
}

/// Runs `command` (this benchmark re-run as a measured child) and returns the figures it printed
/// as `KEY value` lines on stdout; panics with the child's stderr if it failed.
pub fn child_figures(mut command: std::process::Command) -> ChildFigures {
    let out = command.output().expect("running the measured child");
    assert!(
        out.status.success(),
        "the measured child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ChildFigures(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a measured child printed.
pub struct ChildFigures(String);

impl ChildFigures {
    /// The value printed after `key`.
    pub fn get(&self, key: &str) -> u64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} missing from the child's output: {}", self.0))
    }
}

/// Prints the machine's facts once, before the results.
pub fn print_machine() {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    eprintln!("machine: {cpus} CPUs, {model}");
}

/// The benchmark database (`PAYOUTS_BENCH_POSTGRES_URL`, default the local `test` database).
pub fn pg_url() -> String {
    std::env::var("PAYOUTS_BENCH_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema `bench_{prefix}_{pid}` of the benchmark database (a leftover of that name, from a
/// run that died, is dropped first); `drop` removes it.
pub async fn bench_schema(prefix: &str) -> PgTestSchema {
    PgTestSchema::create_named(&pg_url(), &format!("bench_{prefix}_{}", std::process::id())).await
}

/// A handle on a benchmark schema another process created (and will drop).
pub fn existing_schema(name: &str) -> PgTestSchema {
    PgTestSchema::existing(&pg_url(), name)
}
