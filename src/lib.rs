//! # payouts
//!
//! Pays doctors of a telehealth platform for the consultations they completed.
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use payout_core as core;
pub use payout_core::*;
pub use payout_providers as providers;
pub use payout_store_sqlx as store_sqlx;

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;

/// The HTTP API, the event publishers (webhooks; NATS JetStream with the feature `nats`) and the
/// demo server's wiring.
#[cfg(any(feature = "cli", feature = "nats"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "cli", feature = "nats"))))]
pub use payout_server as server;

/// The README's Rust snippets, compiled as doctests (they need both database backends).
#[cfg(all(doctest, feature = "sqlite", feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
