//! # payout-providers
//!
//! [`PayoutProvider`](payout_core::PayoutProvider) adapters for `payout-core`: Stripe Connect, PayPal
//! Payouts, M-Pesa B2C and bank transfer, each behind its own cargo feature.
//!
//! ```no_run
//! # #[cfg(feature = "stripe")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use payout_core::PayoutProvider;
//! use payout_providers::stripe::{StripeConfig, StripeProvider};
//!
//! // STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and/or STRIPE_CONNECT_WEBHOOK_SECRET, optionally STRIPE_API_BASE.
//! let stripe: Arc<dyn PayoutProvider> = Arc::new(StripeProvider::new(StripeConfig::from_env()?)?);
//! assert!(stripe.capabilities().lookup);
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//! | feature | adapter | sends with | webhooks |
//! |---|---|---|---|
//! | `stripe` | [`stripe::StripeProvider`] | `POST /v1/transfers` to a connected account | `Stripe-Signature` v1 HMAC |
//! | `paypal` | [`paypal::PaypalProvider`] | `POST /v1/payments/payouts` (batches of up to 15,000) | offline RSA-SHA256 or the verify API |
//! | `mpesa` | [`mpesa::MpesaProvider`] | Daraja B2C `paymentrequest` (whole KES) | path token and/or `x-mpesa-signature` HMAC |
//! | `bank` | [`bank::BankProvider`] | a documented JSON REST contract; CSV, pain.001 and NACHA files | none |
//!
//! No feature is on by default. Every adapter uses `reqwest` with rustls on `ring`: there is no
//! OpenSSL in the tree.
//!
//! ## What every adapter does the same way
//! - **Idempotency.** The attempt's `idempotency_key` goes to the provider on every try (Stripe
//!   `Idempotency-Key`, PayPal `sender_batch_id`/`PayPal-Request-Id`/`sender_item_id`, M-Pesa
//!   `OriginatorConversationID`, bank `Idempotency-Key`), so a re-send moves money at most once.
//! - **Classification.** A connect error before anything was sent, 429 and 5xx are
//!   [`Retryable`](payout_core::ProviderErrorKind::Retryable) and are retried here with exponential
//!   backoff and jitter ([`RetryPolicy`]) with the same key; a timeout or a reset after sending is
//!   [`Ambiguous`](payout_core::ProviderErrorKind::Ambiguous); other 4xx and rejections are
//!   [`Final`](payout_core::ProviderErrorKind::Final).
//! - **Amounts** are converted only at the edge, from [`Money`](payout_core::money::Money): an amount
//!   the provider cannot take exactly is a `Final` error before any HTTP call.
//! - **Secrets** are held in [`Secret`], whose `Debug` prints `[REDACTED]`; config `Debug` output
//!   lists only non-secret fields; secrets never go into errors or logs.
//! - **Balances** for the funds check: the Stripe and M-Pesa adapters are also
//!   [`BalanceSource`](payout_core::funds::BalanceSource)s (Stripe `GET /v1/balance`; M-Pesa's Account
//!   Balance query, answered by callback); PayPal and the bank offer none.
//! - **Config** comes from a builder or `from_env()`; a missing credential is a [`ConfigError`]
//!   naming the variable. What every adapter shares (base URL, time limits, retries, clock) is one
//!   [`ClientOptions`], set whole or one setting at a time on any adapter's [`ConfigBuilder`].
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use payout_core;

#[cfg(any(feature = "stripe", feature = "paypal", feature = "mpesa", feature = "bank"))]
mod common;

#[cfg(any(feature = "stripe", feature = "paypal", feature = "mpesa", feature = "bank"))]
pub use common::{ClientOptions, ConfigBuilder, ConfigError, RateLimit, RetryPolicy, Secret};

#[cfg(feature = "bank")]
pub mod bank;
#[cfg(feature = "mpesa")]
pub mod mpesa;
#[cfg(feature = "paypal")]
pub mod paypal;
#[cfg(feature = "stripe")]
pub mod stripe;

/// The crate README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
