//! The real provider adapters, configured from their environment variables.

use std::sync::Arc;

use payout_core::PayoutProvider;
use payout_core::domain::Provider;
use payout_core::funds::BalanceSource;
use payout_providers::{ConfigError, bank, mpesa, paypal, stripe};

use crate::demo::ProviderSetup;

/// The adapter for `provider` from the environment, or why it cannot be built (a missing variable).
/// Stripe and M-Pesa adapters are built once and serve as the provider's balance source too.
pub fn from_env(provider: Provider) -> Result<ProviderSetup, String> {
    match provider {
        Provider::StripeConnect => with_balance(stripe::StripeConfig::from_env().and_then(stripe::StripeProvider::new)),
        Provider::PaypalPayouts => adapter(paypal::PaypalConfig::from_env, paypal::PaypalProvider::new),
        Provider::MpesaB2c => with_balance(mpesa::MpesaConfig::from_env().and_then(mpesa::MpesaProvider::new)),
        Provider::BankTransfer => adapter(bank::BankConfig::from_env, bank::BankProvider::new),
        other => Err(format!("no adapter for {other}")),
    }
}

/// Reads one adapter's config and builds the adapter; either failure is said as text.
fn adapter<C, P: PayoutProvider + 'static>(
    config: impl FnOnce() -> Result<C, ConfigError>,
    new: impl FnOnce(C) -> Result<P, ConfigError>,
) -> Result<ProviderSetup, String> {
    let adapter = config().and_then(new).map_err(|e| e.to_string())?;
    Ok(ProviderSetup::new(Arc::new(adapter)))
}

/// An adapter that is also its provider's balance source: one `Arc`, registered as both.
fn with_balance<P: PayoutProvider + BalanceSource + 'static>(
    built: Result<P, ConfigError>,
) -> Result<ProviderSetup, String> {
    let adapter = Arc::new(built.map_err(|e| e.to_string())?);
    Ok(ProviderSetup {
        adapter: adapter.clone(),
        balance: Some(adapter),
    })
}
