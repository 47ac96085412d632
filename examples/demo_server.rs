//! Run with: `cargo run --example demo_server`
//!
//! The original payout system, running: the seed's API paths with bearer-token auth, provider webhooks,
//! the admin dashboard at <http://127.0.0.1:3000/dashboard/admin/payouts>, OpenAPI at `/api/openapi.json`,
//! and `/healthz`. Configuration (all optional): `PAYOUTS_ADDR` (127.0.0.1:3000), `DATABASE_URL`
//! (a SQLite file `payouts-demo.db` here; or `postgres://…`), `NEXTAUTH_SECRET`, provider credentials
//! (`STRIPE_SECRET_KEY`, `PAYPAL_CLIENT_ID`, `MPESA_CONSUMER_KEY`, `BANK_API_URL`, … — a provider without
//! them is simulated), `PAYOUTS_SIMULATION_TOKEN`, `PAYOUTS_RECONCILE_SECS`, `PAYOUTS_RECONCILE_LEASE_SECS`,
//! `PAYOUTS_SAMPLE_DATA`, `PAYOUTS_FOUR_EYES`,
//! `RUST_LOG` (info), `PAYOUTS_LOG_FORMAT=json`, `PAYOUTS_METRICS_ADDR` (Prometheus `/metrics` on an address of its
//! own; unset: none) and `PAYOUTS_SHUTDOWN_GRACE_SECS` (30: SIGTERM or Ctrl-C stops new work and waits that long
//! for the work under way, then exits 0).
//! Tokens for curl: `cargo run --example mint_token -- --role admin`. The same code as `payouts serve`
//! (`payouts::cli`).

fn main() -> std::process::ExitCode {
    payouts::cli::demo_server_main()
}
