//! Provider adapters for `payout-core`: Stripe Connect, PayPal Payouts, M-Pesa B2C and bank transfer,
//! each behind its own cargo feature.
#![warn(missing_docs)]

pub use payout_core;
