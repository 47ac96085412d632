//! Domain records: payouts, their items, attempts, audit entries, providers, recipients, actors.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::status::PayoutStatus;

mod approval;
mod bank_file;
mod hold;
mod people;

pub use approval::{Approval, Resolution, ResolutionOutcome, ResolutionState, details_fingerprint};
pub use bank_file::{BankFileId, end_to_end_id};
pub use hold::{DoctorHold, Hold, HoldScope, MAX_HOLD_REASON, check_hold_reason};
pub use people::{Actor, BankAccount, Consultation, PayoutDestination, Recipient, Reversal, mask};
pub use run::{
    CurrencyTotal, FundsOverride, MAX_OVERRIDE_REASON, MAX_RUN_LABEL, NewRun, Run, RunAction, RunEvent, RunKind,
    RunResult, RunSummary, RunTally, Subtotal, check_override_reason, order_totals,
};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

/// `Serialize` as the value's `Display` text and `Deserialize` through its `FromStr`: for the named
/// values the API and the database write as one string (`"PAID"`, `"MPESA_B2C"`, `"KES"`).
macro_rules! serde_as_text {
    ($name:ty) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_text;

string_id!(
    /// A payout's id.
    PayoutId
);
string_id!(
    /// A doctor's id in the host application.
    DoctorId
);
string_id!(
    /// A payout run's id.
    RunId
);

// After `string_id!`, which it uses.
mod run;

/// A payment provider, named as the original system named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Provider {
    /// Stripe Connect transfer to a connected account (`acct_...`).
    StripeConnect,
    /// PayPal Payouts to an email address.
    PaypalPayouts,
    /// Safaricom M-Pesa B2C to a phone number.
    MpesaB2c,
    /// Bank transfer (bank API or a file for finance).
    BankTransfer,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 4] = [
        Provider::StripeConnect,
        Provider::PaypalPayouts,
        Provider::MpesaB2c,
        Provider::BankTransfer,
    ];

    /// The uppercase name (`STRIPE_CONNECT`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::StripeConnect => "STRIPE_CONNECT",
            Provider::PaypalPayouts => "PAYPAL_PAYOUTS",
            Provider::MpesaB2c => "MPESA_B2C",
            Provider::BankTransfer => "BANK_TRANSFER",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown provider name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?} (expected STRIPE_CONNECT, PAYPAL_PAYOUTS, MPESA_B2C or BANK_TRANSFER)")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "STRIPE_CONNECT" => Provider::StripeConnect,
            "PAYPAL_PAYOUTS" => Provider::PaypalPayouts,
            "MPESA_B2C" => Provider::MpesaB2c,
            "BANK_TRANSFER" => Provider::BankTransfer,
            _ => return Err(UnknownProvider(s.to_string())),
        })
    }
}

serde_as_text!(Provider);

/// A pay period: both dates inclusive, read as UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
}

/// A period whose end is before its start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("period end {end} is before its start {start}")]
pub struct InvalidPeriod {
    /// The start given.
    pub start: NaiveDate,
    /// The end given.
    pub end: NaiveDate,
}

impl Period {
    /// A period from `start` to `end`, both inclusive.
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self, InvalidPeriod> {
        if end < start {
            return Err(InvalidPeriod { start, end });
        }
        Ok(Period { start, end })
    }

    /// The calendar month before the one `now` falls in (the calculation's default).
    pub fn previous_month(now: DateTime<Utc>) -> Self {
        let first_this = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or(NaiveDate::MIN);
        let end = first_this.pred_opt().unwrap_or(NaiveDate::MIN);
        let start = NaiveDate::from_ymd_opt(end.year(), end.month(), 1).unwrap_or(NaiveDate::MIN);
        Period { start, end }
    }

    /// The first instant of the period.
    pub fn starts_at(&self) -> DateTime<Utc> {
        Utc.from_utc_datetime(&self.start.and_hms_opt(0, 0, 0).unwrap_or_default())
    }

    /// The first instant after the period (exclusive end).
    pub fn ends_before(&self) -> DateTime<Utc> {
        self.starts_at() + Duration::days((self.end - self.start).num_days() + 1)
    }

    /// True when `at` falls within the period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.starts_at() && at < self.ends_before()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// How a payout came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutOrigin {
    /// The period calculation: at most one non-cancelled per doctor and period.
    Calculated,
    /// Created by an admin; its approver may not be its creator when four eyes are on.
    Manual,
}

impl PayoutOrigin {
    /// Uppercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PayoutOrigin::Calculated => "CALCULATED",
            PayoutOrigin::Manual => "MANUAL",
        }
    }
}

/// A payout to one doctor: for one period (calculated) or created by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    /// Id.
    pub id: PayoutId,
    /// Whom it pays.
    pub doctor_id: DoctorId,
    /// First day of the period it pays for.
    pub period_start: NaiveDate,
    /// Last day of that period.
    pub period_end: NaiveDate,
    /// What is owed: always the sum of the items.
    pub amount_due: Money,
    /// Where it is in its life.
    pub status: PayoutStatus,
    /// The provider chosen at trigger time.
    pub provider: Option<Provider>,
    /// The provider's reference for the latest attempt (`tr_...`, a batch id, a conversation id).
    pub provider_reference: Option<String>,
    /// Free-text notes: the provider's last answer, reasons.
    pub notes: Option<String>,
    /// How it came to be.
    pub origin: PayoutOrigin,
    /// Who created it (`system:...` for the monthly calculation).
    pub created_by: String,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// When the provider confirmed the outcome (paid or failed).
    pub processed_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Bumped by every change; conditional updates compare it.
    pub version: i64,
    /// What the approval vouched for (the doctor's details, the approvers); `None` until approved.
    #[serde(default)]
    pub approval: Option<Approval>,
    /// The latest operator resolution of an unknown outcome, if any.
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// The latest hold, if it was ever held: on until released, and kept once released (see
    /// [`Payout::active_hold`]).
    #[serde(default)]
    pub hold: Option<Hold>,
}

impl Payout {
    /// A new payout as every payout starts: `PENDING`, version 1, no provider, reference, notes,
    /// approver or outcome yet, created and last changed `at`.
    pub fn pending(
        id: PayoutId,
        doctor_id: DoctorId,
        period: Period,
        amount_due: Money,
        origin: PayoutOrigin,
        created_by: String,
        at: DateTime<Utc>,
    ) -> Self {
        Payout {
            id,
            doctor_id,
            period_start: period.start,
            period_end: period.end,
            amount_due,
            status: PayoutStatus::Pending,
            provider: None,
            provider_reference: None,
            notes: None,
            origin,
            created_by,
            approved_by: None,
            processed_at: None,
            created_at: at,
            updated_at: at,
            version: 1,
            approval: None,
            resolution: None,
            hold: None,
        }
    }

    /// The hold keeping it from being sent, if one is on (a released hold is kept on the payout
    /// but holds nothing).
    pub fn active_hold(&self) -> Option<&Hold> {
        self.hold.as_ref().filter(|h| h.is_active())
    }

    /// The period it pays for.
    pub fn period(&self) -> Period {
        Period {
            start: self.period_start,
            end: self.period_end,
        }
    }

    /// The currency it is paid in.
    pub fn currency(&self) -> Currency {
        self.amount_due.currency()
    }
}

/// What a payout item is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ItemKind {
    /// One completed consultation.
    Consultation,
    /// Earnings carried over from an earlier period that stayed under the minimum payout.
    CarryOver,
    /// A deduction (platform fee, withholding tax); its amount is negative.
    Deduction,
    /// A manual correction or a manual payout's amount.
    Adjustment,
    /// A paid consultation taken back because the host refunded or voided it afterwards; its
    /// reference is the consultation's, its amount the negation of what was paid for it.
    Clawback,
}

impl ItemKind {
    /// The kind's name as stored and serialized: `CONSULTATION`, `CARRY_OVER`, `DEDUCTION`,
    /// `ADJUSTMENT`, `CLAWBACK`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemKind::Consultation => "CONSULTATION",
            ItemKind::CarryOver => "CARRY_OVER",
            ItemKind::Deduction => "DEDUCTION",
            ItemKind::Adjustment => "ADJUSTMENT",
            ItemKind::Clawback => "CLAWBACK",
        }
    }
}

/// One line of a payout: a consultation, a carried-over balance, a deduction or an adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutItem {
    /// What it is.
    pub kind: ItemKind,
    /// What it refers to: an appointment id, a period, a deduction's name.
    pub reference: String,
    /// Its amount (negative for deductions).
    pub amount: Money,
    /// When the thing it pays for happened.
    pub occurred_at: DateTime<Utc>,
    /// A human description.
    pub description: String,
}

/// How one attempt to send a payout ended, as far as we know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Recorded, with its idempotency key, before the provider was called; no answer stored yet.
    /// After a crash this means "maybe sent": re-send with the same key or look it up.
    Pending,
    /// The provider accepted the instruction; the final result comes later.
    Accepted,
    /// The provider confirmed the money was paid.
    Succeeded,
    /// The provider confirmed the payment failed.
    Failed {
        /// The provider's reason.
        reason: String,
    },
    /// The call may or may not have reached the provider (timeout, reset, retries exhausted).
    Unknown {
        /// What happened.
        reason: String,
    },
}

impl AttemptOutcome {
    /// The outcome's uppercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Pending => "PENDING",
            AttemptOutcome::Accepted => "ACCEPTED",
            AttemptOutcome::Succeeded => "SUCCEEDED",
            AttemptOutcome::Failed { .. } => "FAILED",
            AttemptOutcome::Unknown { .. } => "UNKNOWN",
        }
    }
}

/// One try at moving a payout's money, with the idempotency key every re-send of it reuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutAttempt {
    /// The payout.
    pub payout_id: PayoutId,
    /// 1 for the first attempt, 2 after a retry, ...
    pub attempt_no: u32,
    /// The provider used.
    pub provider: Provider,
    /// `{payout_id}-{attempt_no}`: deterministic, persisted before the call, sent on every re-send.
    pub idempotency_key: String,
    /// What was sent, without secrets (masked recipient, amount).
    pub request_summary: String,
    /// How it ended, as far as we know.
    pub outcome: AttemptOutcome,
    /// The provider's reference, once known.
    pub provider_reference: Option<String>,
    /// The last error seen.
    pub error: Option<String>,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Where it was sent, in full: stored with the attempt before the provider call, and used by
    /// every re-send of it. `Debug` masks it; it is never serialized (the API shows
    /// `request_summary`). `None` only for attempts recorded before destinations were stored.
    #[serde(skip)]
    pub destination: Option<PayoutDestination>,
    /// The provider batch the attempt was sent in (PayPal's `sender_batch_id`), stored with the
    /// attempt before the provider call. The batch's members are the attempts with the same id,
    /// and every re-send of the attempt re-sends that whole batch, never the attempt in another
    /// grouping. `None` for a provider that does not batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
}

impl PayoutAttempt {
    /// The idempotency key of attempt `attempt_no` of `payout_id`.
    pub fn key_for(payout_id: &PayoutId, attempt_no: u32) -> String {
        format!("{payout_id}-{attempt_no}")
    }

    /// True when `key` has the form of [`PayoutAttempt::key_for`]: a payout id, `-`, and an attempt
    /// number from 1 written without leading zeros. It says only that the key could be ours (whether
    /// an attempt holds it is the store's to say), so a provider event carrying a key of another
    /// form (another system's `sender_item_id`) can be told apart from one of ours.
    pub fn is_key_form(key: &str) -> bool {
        let Some((id, n)) = key.rsplit_once('-') else {
            return false;
        };
        !id.is_empty()
            && !id.chars().any(|c| c.is_whitespace() || c.is_control())
            && !n.starts_with('0')
            && n.parse::<u32>().is_ok_and(|n| n >= 1)
    }
}

/// One line of the append-only audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The payout.
    pub payout_id: PayoutId,
    /// Who: `admin:<id>`, `doctor:<id>`, `system:<job>`, `provider:<NAME>`.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What (`CREATE`, `APPROVE`, `TRIGGER`, `PROVIDER_PAID`, `ATTEMPT_OUTCOME`, ...).
    pub action: String,
    /// Status before.
    pub from: Option<PayoutStatus>,
    /// Status after.
    pub to: Option<PayoutStatus>,
    /// Why, and what the provider said.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_kind_names_are_their_serde_names() {
        for kind in [
            ItemKind::Consultation,
            ItemKind::CarryOver,
            ItemKind::Deduction,
            ItemKind::Adjustment,
            ItemKind::Clawback,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn previous_month_handles_year_boundary() {
        let now = Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0).unwrap();
        let p = Period::previous_month(now);
        assert_eq!(p.start, NaiveDate::from_ymd_opt(2024, 12, 1).unwrap());
        assert_eq!(p.end, NaiveDate::from_ymd_opt(2024, 12, 31).unwrap());
        let now = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        let p = Period::previous_month(now);
        assert_eq!(p.end, NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        assert!(p.contains(Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap()));
        assert!(!p.contains(Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()));
    }

    #[test]
    fn provider_names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert!("VENMO".parse::<Provider>().is_err());
    }
}
