//! Run with: `cargo run --example demo_server`
//!
//! The original payout system, running: the seed's API paths with bearer-token auth, provider webhooks,
//! the admin dashboard at <http://127.0.0.1:3000/dashboard/admin/payouts>, OpenAPI at `/api/openapi.json`,
//! `/healthz` and `/metrics`. Configuration (all optional): `PAYOUTS_ADDR` (127.0.0.1:3000), `DATABASE_URL`
//! (a SQLite file `payouts-demo.db` here; or `postgres://…`), `NEXTAUTH_SECRET`, provider credentials
//! (`STRIPE_SECRET_KEY`, `PAYPAL_CLIENT_ID`, `MPESA_CONSUMER_KEY`, `BANK_API_URL`, … — a provider without
//! them is simulated), `PAYOUTS_SIMULATION_TOKEN`, `PAYOUTS_RECONCILE_SECS`, `PAYOUTS_SAMPLE_DATA`, `PAYOUTS_FOUR_EYES`.
//! Tokens for curl: `cargo run --example mint_token -- --role admin`. The same code as `payouts serve`
//! (`payouts::cli`).

fn main() -> std::process::ExitCode {
    payouts::cli::demo_server_main()
}
