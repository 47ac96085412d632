//! The real provider adapters, configured from their environment variables.

use std::sync::Arc;

use payout_core::PayoutProvider;
use payout_core::domain::Provider;
use payout_providers::{ConfigError, bank, mpesa, paypal, stripe};

/// The adapter for `provider` from the environment, or why it cannot be built (a missing variable).
pub fn from_env(provider: Provider) -> Result<Arc<dyn PayoutProvider>, String> {
    match provider {
        Provider::StripeConnect => adapter(stripe::StripeConfig::from_env, stripe::StripeProvider::new),
        Provider::PaypalPayouts => adapter(paypal::PaypalConfig::from_env, paypal::PaypalProvider::new),
        Provider::MpesaB2c => adapter(mpesa::MpesaConfig::from_env, mpesa::MpesaProvider::new),
        Provider::BankTransfer => adapter(bank::BankConfig::from_env, bank::BankProvider::new),
        other => Err(format!("no adapter for {other}")),
    }
}

/// Reads one adapter's config and builds the adapter; either failure is said as text.
fn adapter<C, P: PayoutProvider + 'static>(
    config: impl FnOnce() -> Result<C, ConfigError>,
    new: impl FnOnce(C) -> Result<P, ConfigError>,
) -> Result<Arc<dyn PayoutProvider>, String> {
    let adapter = config().and_then(new).map_err(|e| e.to_string())?;
    Ok(Arc::new(adapter))
}
