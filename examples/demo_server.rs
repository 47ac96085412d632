//! Run with: `cargo run --example demo_server`
//!
//! The original payout system, running: the seed's API paths with bearer-token auth, provider webhooks,
//! the admin dashboard at <http://127.0.0.1:3000/dashboard/admin/payouts>, OpenAPI at `/api/openapi.json`,
//! `/healthz` and `/metrics`. Configuration (all optional): `PAYOUTS_ADDR` (127.0.0.1:3000), `DATABASE_URL`
//! (a SQLite file `payouts-demo.db` here; or `postgres://…`), `NEXTAUTH_SECRET`, provider credentials
//! (`STRIPE_SECRET_KEY`, `PAYPAL_CLIENT_ID`, `MPESA_CONSUMER_KEY`, `BANK_API_URL`, … — a provider without
//! them is simulated), `PAYOUTS_SIMULATION_TOKEN`, `PAYOUTS_RECONCILE_SECS`, `PAYOUTS_SAMPLE_DATA`, `PAYOUTS_FOUR_EYES`.
//! Tokens for curl: `cargo run --example mint_token -- --role admin`.

use payout_server::demo::{self, DemoConfig};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_target(false).init();
    if let Err(e) = run().await {
        eprintln!("demo_server: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = DemoConfig::from_env()?;
    let running = demo::build(&config).await?;
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
    demo::serve(&config, running).await?;
    Ok(())
}
