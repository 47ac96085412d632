//! The real provider adapters, configured from their environment variables.

use std::sync::Arc;

use payout_core::PayoutProvider;
use payout_core::domain::Provider;
use payout_providers::{bank, mpesa, paypal, stripe};

/// The adapter for `provider` from the environment, or why it cannot be built (a missing variable).
pub fn from_env(provider: Provider) -> Result<Arc<dyn PayoutProvider>, String> {
    let adapter: Arc<dyn PayoutProvider> = match provider {
        Provider::StripeConnect => Arc::new(
            stripe::StripeProvider::new(stripe::StripeConfig::from_env().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?,
        ),
        Provider::PaypalPayouts => Arc::new(
            paypal::PaypalProvider::new(paypal::PaypalConfig::from_env().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?,
        ),
        Provider::MpesaB2c => Arc::new(
            mpesa::MpesaProvider::new(mpesa::MpesaConfig::from_env().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?,
        ),
        Provider::BankTransfer => Arc::new(
            bank::BankProvider::new(bank::BankConfig::from_env().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("no adapter for {other}")),
    };
    Ok(adapter)
}
