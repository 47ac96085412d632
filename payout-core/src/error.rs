//! The library's error type.

use crate::domain::{DoctorId, HoldScope, PayoutId, Provider, RunId};
use crate::money::MoneyError;
use crate::status::{PayoutEvent, PayoutStatus};

/// How a provider failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// Nothing happened at the provider and it is safe to try again with the same key
    /// (429, 5xx, connection refused before anything was sent).
    Retryable,
    /// The provider refused this instruction (validated 4xx, rejection): the attempt failed.
    Final,
    /// The request may have reached the provider (timeout, reset): the outcome is unknown and
    /// must be resolved by a lookup or a re-send with the same key, never by marking it failed.
    Ambiguous,
}

impl std::fmt::Display for ProviderErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProviderErrorKind::Retryable => "retryable",
            ProviderErrorKind::Final => "final",
            ProviderErrorKind::Ambiguous => "ambiguous",
        })
    }
}

/// A classified failure from a provider adapter. Messages never carry credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} {kind} error{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
pub struct ProviderError {
    /// The provider.
    pub provider: Provider,
    /// How to handle it.
    pub kind: ProviderErrorKind,
    /// The provider's error code, if it gave one.
    pub code: Option<String>,
    /// What happened.
    pub message: String,
}

impl ProviderError {
    /// A new classified error.
    pub fn new(provider: Provider, kind: ProviderErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            provider,
            kind,
            code: None,
            message: message.into(),
        }
    }
    /// Adds the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The code of a `Final` error for an instruction the provider refused only because another
    /// item of its batch was invalid (PayPal rejects a whole create call for one bad item): nothing
    /// was paid, and the bulk trigger sends it again, as a new attempt in a new batch of its own.
    pub const REJECTED_WITH_BATCH: &'static str = "REJECTED_WITH_BATCH";

    /// True for [`REJECTED_WITH_BATCH`](Self::REJECTED_WITH_BATCH).
    pub fn rejected_with_batch(&self) -> bool {
        self.kind == ProviderErrorKind::Final && self.code.as_deref() == Some(Self::REJECTED_WITH_BATCH)
    }
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A header the provider always sends is missing.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// The signature does not match the raw body (or the secret is wrong).
    #[error("signature does not match")]
    BadSignature,
    /// The signed timestamp is outside the tolerance.
    #[error("timestamp outside the tolerance")]
    Expired,
    /// The request is not from an allowed source.
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The body is authentic but not a payload we understand.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// Verification needs something we could not get (e.g. a certificate).
    #[error("verification unavailable: {0}")]
    Unavailable(String),
    /// Authentic by its signature, but the provider's own answer about the object disagrees with
    /// what the body claims (PayPal signs only a CRC32 of the body, so a body can be forged from a
    /// captured delivery): refused, and nothing is changed.
    #[error("contradicted by the provider: {0}")]
    Contradicted(String),
}

/// What kind of failure a [`StoreError`] is, for a caller deciding what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The database could not be used just now: unreachable, connection lost, no connection free
    /// within the pool's time limit, shutting down or starting up. Nothing was written (or a
    /// transaction rolled back); try again later.
    Unavailable,
    /// The database refused the write for a rule it enforces that the store has no more precise
    /// error for (a constraint, a serialization failure between concurrent transactions). Nothing
    /// was written; read again and decide again.
    Conflict,
    /// Stored data that this version cannot read (an unknown status, a bad currency), or a store
    /// invariant that does not hold. Retrying does not help; a person should look.
    Corrupt,
    /// Anything else: a bad configuration, a failed migration, a driver error.
    Other,
}

impl StoreErrorKind {
    /// True for the kinds a caller may simply try again: [`Unavailable`](Self::Unavailable) and
    /// [`Conflict`](Self::Conflict).
    pub fn is_retryable(self) -> bool {
        matches!(self, StoreErrorKind::Unavailable | StoreErrorKind::Conflict)
    }
}

impl std::fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Conflict => "conflict",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Other => "other",
        })
    }
}

/// A store failure: its [kind](StoreErrorKind), a message, and the cause it came from.
///
/// `Display` is `store error (<kind>): <message>`; the message and the cause's own `Display` never
/// carry credentials (a store that wraps a driver error redacts connection strings before it
/// builds one of these, see `payout-store-sqlx`).
#[derive(Debug, thiserror::Error)]
#[error("store error ({kind}): {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failure of `kind`, described by `message` (no credentials in it).
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same failure, caused by `source`.
    pub fn with_source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such payout (or not one the actor may see).
    #[error("payout {0} not found")]
    NotFound(PayoutId),
    /// A provider event refers to an attempt we do not know (yet).
    #[error("no payout attempt matches {provider} reference {reference:?}")]
    UnknownReference {
        /// The provider.
        provider: Provider,
        /// The reference the event carried.
        reference: String,
    },
    /// This provider event was already recorded; nothing was changed.
    #[error("{provider} event {event_id} was already processed")]
    DuplicateEvent {
        /// The provider.
        provider: Provider,
        /// The provider's event id.
        event_id: String,
    },
    /// The action is not allowed in the payout's status.
    #[error("cannot {event} a payout that is {from}")]
    InvalidTransition {
        /// The status it is in.
        from: PayoutStatus,
        /// What was attempted.
        event: PayoutEvent,
    },
    /// Someone else changed the payout first (a lost race); reload and decide again.
    #[error("payout {0} was changed concurrently")]
    Conflict(PayoutId),
    /// No such run.
    #[error("run {0} not found")]
    RunNotFound(RunId),
    /// The run is not as the caller read it (its funds override changed since), or a run with its
    /// id exists already; nothing was changed.
    #[error("run {0} was changed concurrently, or its id is taken")]
    RunConflict(RunId),
    /// The run's funds check shows a shortfall and the run has no confirmed funds override: it is
    /// not triggered (nothing was sent or changed). A second admin may confirm an override
    /// ([`PayoutService::confirm_funds_override`](crate::PayoutService::confirm_funds_override)).
    #[error(
        "run {run_id} is not triggered: the funds check shows a shortfall ({shortfalls}); nothing was sent. \
         Add funds, or have an admin request a funds override and a second admin confirm it"
    )]
    FundsShortfall {
        /// The run.
        run_id: RunId,
        /// Each shortfall, for a person: provider, currency, needed, available and short by.
        shortfalls: String,
    },
    /// The payout is on hold (its own hold, or its doctor's): it is not sent until an admin
    /// releases the hold. Nothing was changed.
    #[error("payout {payout_id} is on hold ({scope}): {reason}")]
    OnHold {
        /// The payout.
        payout_id: PayoutId,
        /// Its own hold, or its doctor's.
        scope: HoldScope,
        /// The hold's reason.
        reason: String,
    },
    /// The doctor is on hold already; nothing was changed.
    #[error("doctor {0} is already on hold")]
    DoctorAlreadyHeld(DoctorId),
    /// The doctor is not on hold: there is nothing to release.
    #[error("doctor {0} is not on hold")]
    DoctorNotHeld(DoctorId),
    /// The request is invalid; nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The actor may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The doctor's plan does not include this feature (a premium feature of
    /// [`FeatureAccess`](crate::premium::FeatureAccess), named as its field is: `earnings_export`).
    #[error("{what} needs a premium plan (the {feature} feature)")]
    PremiumRequired {
        /// What was asked for, for people (`CSV statements`).
        what: &'static str,
        /// The feature's name (`earnings_export`).
        feature: &'static str,
    },
    /// The doctor has no payout details for the chosen provider.
    #[error("doctor {doctor_id} has no {provider} payout details")]
    MissingRecipient {
        /// The doctor.
        doctor_id: String,
        /// The provider chosen.
        provider: Provider,
    },
    /// The doctor's payout details changed since the payout was approved: it may not be sent until
    /// an admin re-approves it (nothing was changed).
    #[error("payout {payout_id}: the doctor's payout details changed since approval; re-approve it before triggering")]
    DetailsChanged {
        /// The payout.
        payout_id: PayoutId,
    },
    /// The payout was approved before approvals recorded the doctor's payout details (before
    /// migration `20261205000300_operator`), so nothing says which details were approved: it may not
    /// be sent until an admin re-approves it for the current ones (nothing was changed). Answered
    /// like [`DetailsChanged`](Error::DetailsChanged): the way out is the same.
    #[error(
        "payout {payout_id}: its approval predates the payout-details check (it records no details \
         fingerprint), so nothing says which details were approved; re-approve it before triggering"
    )]
    ApprovalPredatesDetailsCheck {
        /// The payout.
        payout_id: PayoutId,
    },
    /// The approval policy asks for an approval the payout does not have yet (a second approval).
    #[error("approval required: {0}")]
    ApprovalRequired(String),
    /// An operator's resolution was refused: the provider contradicts it, or the payout is not in a
    /// state it settles (nothing was changed).
    #[error("resolution refused: {0}")]
    ResolutionRefused(String),
    /// The engine is shutting down ([`PayoutService::begin_shutdown`](crate::PayoutService::begin_shutdown)):
    /// no new provider send is started. Nothing was changed; try again once it is back.
    #[error("shutting down: no new payout is sent; nothing was changed, try again later")]
    ShuttingDown,
    /// No adapter is configured for the provider.
    #[error("provider {0} is not configured")]
    ProviderNotConfigured(Provider),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The webhook was refused; nothing was changed.
    #[error("webhook refused: {0}")]
    Webhook(#[from] WebhookError),
    /// A money error.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// The operation is not supported by this implementation.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The store failed; nothing was written. [`StoreError::kind`] says whether to retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A host data source (consultations, directory, subscriptions) failed.
    #[error("source error: {0}")]
    Source(String),
    /// Writing an export failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A bank file was refused: unknown, already settled, nothing to put in it, or it cannot be
    /// written. Nothing was changed.
    #[error(transparent)]
    BankFile(#[from] BankFileError),
}

/// Why a bank file request was refused ([`Error::BankFile`]); nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BankFileError {
    /// No attempt was sent in a file of this id.
    #[error("no bank file {0}")]
    NotFound(String),
    /// The selection holds no payout to send by file.
    #[error("no payout to send by bank file: {0}")]
    Empty(String),
    /// The file cannot be written as asked (a line or a setting the format refuses, totals that
    /// disagree); checked before any payout is marked.
    #[error("the bank file cannot be written: {0}")]
    Unwritable(String),
    /// The file's format needs settings that are not configured.
    #[error("bank files of this format are not configured: {0}")]
    NotConfigured(String),
    /// A settlement names an item that is not in the file.
    #[error("bank file {file_id} has no item {item:?}")]
    UnknownItem {
        /// The file.
        file_id: String,
        /// The reference given.
        item: String,
    },
    /// The settlement was recorded already, or an item it names was settled otherwise since.
    #[error("bank file {file_id}: {detail}")]
    Settled {
        /// The file.
        file_id: String,
        /// What stands in the way.
        detail: String,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::status::RefusedTransition> for Error {
    fn from(e: crate::status::RefusedTransition) -> Self {
        Error::InvalidTransition {
            from: e.from,
            event: e.event,
        }
    }
}

impl From<crate::domain::InvalidPeriod> for Error {
    fn from(e: crate::domain::InvalidPeriod) -> Self {
        Error::InvalidInput(e.to_string())
    }
}
