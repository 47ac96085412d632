//! Run with: `cargo run --example calc_payouts -- --start 2025-01-01 --end 2025-01-31 --rate 500`
//!
//! The monthly calculation job of the original system (`scripts/calc_payouts.ts`), same flags and
//! defaults; the same code as `payouts calc` (`payouts::cli`), kept under its old name. `--help`
//! lists the flags and exit codes.

fn main() -> std::process::ExitCode {
    payouts::cli::calc_payouts_main()
}
