//! The `payouts` command-line tool: `payouts --help`. Install with
//! `cargo install --path . --features cli`.

fn main() -> std::process::ExitCode {
    payouts::cli::main()
}
