//! `payouts serve`: the demo server (`payout_server::demo`).

use std::net::SocketAddr;

use payout_server::demo::{self, DemoConfig};

use super::CliError;

/// `payouts serve`: the seed's API paths with bearer-token auth, provider webhooks, the admin
/// dashboard at /dashboard/admin/payouts, OpenAPI at /api/openapi.json and /healthz, with
/// background reconciliation and the monthly calculation; Prometheus metrics on
/// `PAYOUTS_METRICS_ADDR`; SIGTERM or Ctrl-C stops it gracefully. Everything else is configured by the
/// environment as for the demo server (`NEXTAUTH_SECRET`, provider credentials such as
/// `STRIPE_SECRET_KEY` — a provider without them is simulated —, `PAYOUTS_SIMULATION_TOKEN`,
/// `PAYOUTS_RECONCILE_SECS`, `PAYOUTS_RECONCILE_LEASE_SECS`, `PAYOUTS_SAMPLE_DATA`, `PAYOUTS_FOUR_EYES`,
/// `RUST_LOG`, `PAYOUTS_LOG_FORMAT`,
/// `PAYOUTS_METRICS_ADDR`, `PAYOUTS_SHUTDOWN_GRACE_SECS`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where to listen [default: 127.0.0.1:3000]
    #[arg(long, env = "PAYOUTS_ADDR", value_name = "HOST:PORT")]
    pub addr: Option<SocketAddr>,
    /// The database: `sqlite://FILE?mode=rwc` or `postgres://...` [default: the SQLite file
    /// payouts-demo.db, created on first start]
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Runs `payouts serve` until SIGTERM or Ctrl-C (a graceful shutdown: `demo::serve`).
pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    demo::init_logging().map_err(|e| CliError::usage(e.to_string()))?;
    let mut config = DemoConfig::from_env().map_err(|e| CliError::usage(e.to_string()))?;
    if let Some(addr) = args.addr {
        config.addr = addr;
    }
    if let Some(url) = args.database_url {
        config.database_url = url;
    }
    let running = demo::build(&config)
        .await
        .map_err(|e| CliError::failure(e.to_string()))?;
    if !running.simulated.is_empty() {
        let names: Vec<String> = running.simulated.iter().map(|p| p.to_string()).collect();
        println!("SIMULATED providers (no money moves): {}", names.join(", "));
        println!(
            "simulated webhooks take the header x-simulation-token: {}",
            config.simulation_token
        );
    }
    println!(
        "payouts demo on http://{} (dashboard: /dashboard/admin/payouts)",
        config.addr
    );
    demo::serve(&config, running)
        .await
        .map_err(|e| CliError::failure(e.to_string()))
}
