//! # payout-core
//!
//! The engine of `payouts`: exact [`money`], the payout state machine ([`status`]), the
//! [`PayoutProvider`] and [`PayoutStore`] traits, the [`PayoutService`] that drives a payout from
//! calculation to `PAID`, an [in-memory store](memory::MemoryStore), a clearly labelled
//! [simulated provider](simulated::SimulatedProvider) and, behind the `testkit` feature, the
//! conformance suites every store and provider implementation must pass.
//!
//! ```
//! use std::sync::Arc;
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use payout_core::prelude::*;
//! use payout_core::source::{StaticConsultations, StaticDirectory};
//!
//! # tokio_test_block_on(async {
//! let consultations = StaticConsultations::new(vec![Consultation {
//!     appointment_id: "apt-1".into(),
//!     doctor_id: "dr-1".into(),
//!     completed_at: Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap(),
//! }]);
//! let directory = StaticDirectory::new([Recipient {
//!     doctor_id: "dr-1".into(),
//!     name: "Dr. Achieng".into(),
//!     email: "achieng@example.com".into(),
//!     mpesa_phone_number: Some("254712345678".into()),
//!     ..Default::default()
//! }]);
//! let service = PayoutService::builder()
//!     .store(Arc::new(MemoryStore::new()))
//!     .consultations(Arc::new(consultations))
//!     .directory(Arc::new(directory))
//!     .provider(Arc::new(SimulatedProvider::new(Provider::MpesaB2c)))
//!     .build()?;
//!
//! let admin = Actor::admin("admin-1");
//! let period = Period::new(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2025, 1, 31).unwrap())?;
//! let report = service.calculate_period(&admin, Some(period), &CalculationPolicy::default()).await?;
//! let id = &report.created[0];
//! service.approve(&admin, id).await?;
//! let payout = service.trigger(&admin, id, Provider::MpesaB2c).await?;
//! assert_eq!(payout.status, PayoutStatus::Paid);
//! assert_eq!(payout.amount_due.to_string(), "500.00 KES");
//! # Ok::<(), payout_core::Error>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! ## Features
//! | feature | what it adds |
//! |---|---|
//! | `testkit` | `testkit::store` and `testkit::provider`: conformance suites for implementations |
//! | `mock` | `mockall` mocks: `MockPayoutProvider`, `MockPayoutStore`, `MockConsultationSource`, ... |
#![warn(missing_docs)]
// docs.rs (`--cfg docsrs`, nightly) labels each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod calculation;
pub mod clock;
pub mod csv;
pub mod domain;
pub mod error;
pub mod events;
pub mod funds;
pub mod memory;
pub mod money;
pub mod premium;
pub mod provider;
pub mod service;
pub mod simulated;
pub mod source;
pub mod status;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, ProviderError, ProviderErrorKind, Result, StoreError, StoreErrorKind, WebhookError};
pub use funds::{BalanceAnswer, BalanceSource, FundsReport, funds_check};
pub use provider::PayoutProvider;
pub use service::PayoutService;
pub use store::{BulkPayoutStore, PayoutStore, PayoutStoreExt};

/// The names most hosts need, in one import.
pub mod prelude {
    pub use crate::calculation::{CalculationPolicy, Deduction};
    pub use crate::clock::{Clock, IdGenerator, ManualClock, SystemClock};
    pub use crate::domain::{
        Actor, AuditEntry, BankAccount, Consultation, DoctorId, ItemKind, Payout, PayoutAttempt, PayoutId, PayoutItem,
        PayoutOrigin, Period, Provider, Recipient, Reversal,
    };
    pub use crate::error::{Error, ProviderError, ProviderErrorKind, Result};
    pub use crate::memory::MemoryStore;
    pub use crate::money::{Currency, Money};
    pub use crate::provider::PayoutProvider;
    pub use crate::service::PayoutService;
    pub use crate::simulated::SimulatedProvider;
    pub use crate::source::{ConsultationSource, RecipientDirectory};
    pub use crate::status::PayoutStatus;
    pub use crate::store::{Page, PayoutFilter, PayoutStore, PayoutStoreExt};
}

/// The crate README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
