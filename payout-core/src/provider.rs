//! The [`PayoutProvider`] trait: what a payment rail must do for the engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::HeaderMap;

use crate::domain::{DoctorId, PayoutDestination, PayoutId, Provider};
use crate::error::{ProviderError, WebhookError};
use crate::money::Money;

/// One instruction to pay one payout: what the provider needs, and the attempt's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutInstruction {
    /// The payout.
    pub payout_id: PayoutId,
    /// The attempt number (1, 2, ...).
    pub attempt_no: u32,
    /// The attempt's idempotency key: the same on every re-send of this attempt.
    pub idempotency_key: String,
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The doctor's name (for bank files and PayPal notes).
    pub recipient_name: String,
    /// The doctor's email.
    pub recipient_email: String,
    /// Where to pay.
    pub destination: PayoutDestination,
    /// How much.
    pub amount: Money,
    /// A short description (`Consultations 2025-01-01..2025-01-31`).
    pub description: String,
    /// The provider batch the attempt belongs to ([`PayoutAttempt::batch_id`](crate::domain::PayoutAttempt::batch_id)),
    /// stored with it before the call. A batching adapter sends the instructions of one batch id
    /// together, under that id (PayPal's `sender_batch_id`), and the engine only ever hands it a
    /// batch's members all together; `None` for a provider that does not batch.
    pub batch_id: Option<String>,
}

/// A provider's answer about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderStatus {
    /// Accepted; the final result comes later (by webhook or lookup).
    Accepted,
    /// Paid.
    Paid,
    /// Failed, with the provider's reason.
    Failed(String),
    /// Paid, then returned (unclaimed, bank return).
    Returned(String),
    /// Paid, then reversed.
    Reversed(String),
    /// Paid, then part of it reversed (a Stripe transfer reversed for less than its amount): the
    /// payout stays PAID, and the reversal is audited and listed for a person.
    PartiallyReversed {
        /// How much has been reversed so far, in all.
        reversed: Money,
        /// The provider's account of it.
        reason: String,
    },
    /// The provider has no record of this attempt: it never arrived, so re-sending with the same
    /// key is safe.
    NotFound,
    /// A lookup cannot tell where the attempt stands (the provider answers status queries only by
    /// callback, or the attempt has no reference to look it up by). Not an error and not a status:
    /// the outcome stays unknown, and a person or a webhook settles it.
    Undetermined(String),
}

/// What `send` learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The provider's reference (`tr_...`, a batch item id, a conversation id).
    pub reference: Option<String>,
    /// Where the attempt stands.
    pub status: ProviderStatus,
    /// A one-line summary of the provider's answer for the payout's notes (no secrets).
    pub note: String,
}

/// How to find an earlier attempt at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptLookup {
    /// The payout.
    pub payout_id: PayoutId,
    /// The attempt number.
    pub attempt_no: u32,
    /// The attempt's idempotency key.
    pub idempotency_key: String,
    /// The provider's reference, if the send returned one.
    pub provider_reference: Option<String>,
    /// What was sent (some providers can only be asked by re-sending the same request).
    pub instruction: Option<PayoutInstruction>,
}

impl AttemptLookup {
    /// The lookup of the attempt `instruction` sent, to which the provider answered with
    /// `provider_reference` (if it gave one).
    pub fn of_sent(instruction: &PayoutInstruction, provider_reference: Option<String>) -> Self {
        AttemptLookup {
            payout_id: instruction.payout_id.clone(),
            attempt_no: instruction.attempt_no,
            idempotency_key: instruction.idempotency_key.clone(),
            provider_reference,
            instruction: Some(instruction.clone()),
        }
    }
}

/// What a provider event says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderEventKind {
    /// Still in flight.
    Pending,
    /// Paid.
    Paid,
    /// Failed.
    Failed {
        /// The provider's reason.
        reason: String,
    },
    /// The outcome is unknown (e.g. an M-Pesa queue timeout): reconcile, never fail.
    Unknown {
        /// Why.
        reason: String,
    },
    /// Money came back after it was paid.
    Returned {
        /// Why.
        reason: String,
    },
    /// The payment was reversed after it was paid.
    Reversed {
        /// Why.
        reason: String,
    },
    /// Part of the payment was reversed after it was paid: the payout stays PAID (arriving while it
    /// is PROCESSING, it is PAID: the money was paid before part of it came back), and the reversal
    /// is audited and listed for a person.
    PartiallyReversed {
        /// How much has been reversed so far, in all.
        reversed: Money,
        /// Why.
        reason: String,
    },
}

/// The attention-queue reason for a payout of `paid` of which `reversed` has come back so far. A
/// webhook and a lookup that see the same reversal give the same reason, so the settlement watch
/// records a reversal a webhook already recorded (or the reverse) only once.
pub fn partial_reversal_reason(reversed: &Money, paid: &Money) -> String {
    format!("partially reversed: {reversed} of {paid} came back; the payout stays PAID")
}

/// How an event names the attempt it is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventReference {
    /// The provider's reference returned by `send` (`tr_...`, a PayPal item id, an M-Pesa ConversationID).
    ProviderReference(String),
    /// Our idempotency key echoed back (Stripe metadata, PayPal `sender_item_id`, M-Pesa
    /// `OriginatorConversationID`).
    IdempotencyKey(String),
}

impl EventReference {
    /// The reference text.
    pub fn as_str(&self) -> &str {
        match self {
            EventReference::ProviderReference(s) | EventReference::IdempotencyKey(s) => s,
        }
    }

    /// True when it could name an attempt of ours: a provider reference (adapters give only those of
    /// the forms `send` returns), or an idempotency key of our form
    /// ([`PayoutAttempt::is_key_form`](crate::domain::PayoutAttempt::is_key_form)).
    pub fn could_be_ours(&self) -> bool {
        match self {
            EventReference::ProviderReference(s) => !s.is_empty(),
            EventReference::IdempotencyKey(k) => crate::domain::PayoutAttempt::is_key_form(k),
        }
    }
}

/// A verified, translated provider event.
///
/// An adapter puts in `references` only what could name an attempt of ours: our idempotency key
/// where the provider echoes it, and the provider's references of the forms `send` returns. An
/// authentic event about something this engine never sent (a Stripe Connect account's own bank
/// payout, a PayPal payout another system made) therefore names nothing of ours
/// ([`ProviderEvent::names_ours`] is false): the service acknowledges it and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The provider's event id (the deduplication key).
    pub event_id: String,
    /// Which attempt it is about. The service tries our idempotency keys first (a key names exactly one
    /// attempt), then the provider references, each kind in the order given.
    pub references: Vec<EventReference>,
    /// What happened.
    pub kind: ProviderEventKind,
    /// When the provider says it happened.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The provider's own event type (`transfer.reversed`, `PAYMENT.PAYOUTS-ITEM.SUCCEEDED`, ...).
    pub provider_type: String,
}

impl ProviderEvent {
    /// True when one of its references could name an attempt of ours
    /// ([`EventReference::could_be_ours`]).
    pub fn names_ours(&self) -> bool {
        self.references.iter().any(EventReference::could_be_ours)
    }
}

/// What a provider can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `send_batch` is supported.
    pub batch: bool,
    /// The most instructions one batch call may carry.
    pub max_batch_size: usize,
    /// `lookup` is supported.
    pub lookup: bool,
    /// `verify_webhook` is supported.
    pub webhooks: bool,
    /// This adapter moves no real money (the simulated provider).
    pub simulated: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            batch: false,
            max_batch_size: 1,
            lookup: true,
            webhooks: true,
            simulated: false,
        }
    }
}

/// A payment rail: Stripe Connect, PayPal Payouts, M-Pesa B2C, a bank, or the simulated provider.
///
/// Object safe; the engine holds providers as `Arc<dyn PayoutProvider>`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PayoutProvider: Send + Sync {
    /// Which provider this is.
    fn provider(&self) -> Provider;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Sends one instruction.
    ///
    /// # Behavior
    /// Must pass `instruction.idempotency_key` to the provider so that a re-send of the same attempt
    /// moves money at most once. Failures are classified: [`ProviderErrorKind::Retryable`] (nothing
    /// happened), [`ProviderErrorKind::Final`] (rejected) or [`ProviderErrorKind::Ambiguous`] (maybe
    /// sent). Amounts are converted to the provider's unit here, and an amount the provider cannot
    /// take exactly is a `Final` error before any call.
    ///
    /// [`ProviderErrorKind::Retryable`]: crate::error::ProviderErrorKind::Retryable
    /// [`ProviderErrorKind::Final`]: crate::error::ProviderErrorKind::Final
    /// [`ProviderErrorKind::Ambiguous`]: crate::error::ProviderErrorKind::Ambiguous
    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError>;

    /// Sends many instructions in one call where the provider batches (PayPal). Returns one result
    /// per instruction, in order.
    ///
    /// # Behavior
    /// The default sends them one by one with [`PayoutProvider::send`]. An `Err` for the whole call
    /// means no per-item answer is known; the caller treats every item by the error's kind.
    async fn send_batch(
        &self,
        instructions: &[PayoutInstruction],
    ) -> Result<Vec<Result<SendReceipt, ProviderError>>, ProviderError> {
        let mut out = Vec::with_capacity(instructions.len());
        for i in instructions {
            out.push(self.send(i).await);
        }
        Ok(out)
    }

    /// Verifies a webhook on its raw bytes and translates it into events.
    ///
    /// # Behavior
    /// Nothing may be parsed or trusted before the signature checks out. A forged, mutated or expired
    /// request is a [`WebhookError`]; an authentic event we do not care about yields no events.
    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError>;

    /// Asks the provider where an earlier attempt stands (reconciliation).
    ///
    /// # Behavior
    /// Read-only. Returns [`ProviderStatus::NotFound`] only when the provider is sure it never
    /// received the attempt, and [`ProviderStatus::Undetermined`] when it can never tell by a
    /// lookup (asking again will not help; reconciliation flags the payout for a person).
    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError>;
}
