//! Domain records: payouts, their items, attempts, audit entries, providers, recipients, actors.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};
use crate::status::PayoutStatus;

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
        }
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
}

impl ItemKind {
    /// The kind's name as stored and serialized: `CONSULTATION`, `CARRY_OVER`, `DEDUCTION`,
    /// `ADJUSTMENT`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemKind::Consultation => "CONSULTATION",
            ItemKind::CarryOver => "CARRY_OVER",
            ItemKind::Deduction => "DEDUCTION",
            ItemKind::Adjustment => "ADJUSTMENT",
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
}

impl PayoutAttempt {
    /// The idempotency key of attempt `attempt_no` of `payout_id`.
    pub fn key_for(payout_id: &PayoutId, attempt_no: u32) -> String {
        format!("{payout_id}-{attempt_no}")
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

/// Who is acting. Every mutating call takes one; doctors can read only their own payouts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Actor {
    /// An administrator.
    Admin {
        /// The admin's user id.
        id: String,
    },
    /// A doctor, who may read only their own payouts.
    Doctor {
        /// The doctor's id.
        doctor_id: DoctorId,
    },
    /// A job of the host (the monthly calculation, the reconciliation loop).
    System {
        /// The job's name.
        name: String,
    },
}

impl Actor {
    /// An admin.
    pub fn admin(id: impl Into<String>) -> Self {
        Actor::Admin { id: id.into() }
    }
    /// A doctor.
    pub fn doctor(id: impl Into<DoctorId>) -> Self {
        Actor::Doctor { doctor_id: id.into() }
    }
    /// A system job.
    pub fn system(name: impl Into<String>) -> Self {
        Actor::System { name: name.into() }
    }
    /// How the actor is written in the audit trail.
    pub fn label(&self) -> String {
        match self {
            Actor::Admin { id } => format!("admin:{id}"),
            Actor::Doctor { doctor_id } => format!("doctor:{doctor_id}"),
            Actor::System { name } => format!("system:{name}"),
        }
    }
    /// True for admins and system jobs.
    pub fn is_privileged(&self) -> bool {
        matches!(self, Actor::Admin { .. } | Actor::System { .. })
    }
}

/// A completed consultation, as the host's data knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consultation {
    /// The appointment's id.
    pub appointment_id: String,
    /// The doctor who held it.
    pub doctor_id: DoctorId,
    /// When it was completed.
    pub completed_at: DateTime<Utc>,
}

/// Bank account details for a transfer. Account numbers are masked in `Debug`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BankAccount {
    /// The account holder's name.
    pub account_name: String,
    /// The account number (or IBAN).
    pub account_number: String,
    /// The bank's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    /// Bank code / routing number / BIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    /// Branch code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_code: Option<String>,
    /// Country (ISO 3166 alpha-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// Masks all but the last four characters: `****6789`.
pub fn mask(value: &str) -> String {
    let n = value.chars().count();
    if n <= 4 {
        return "*".repeat(n);
    }
    let tail: String = value.chars().skip(n - 4).collect();
    format!("{}{tail}", "*".repeat(n - 4))
}

impl fmt::Debug for BankAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankAccount")
            .field("account_name", &self.account_name)
            .field("account_number", &mask(&self.account_number))
            .field("bank_name", &self.bank_name)
            .field("bank_code", &self.bank_code)
            .finish_non_exhaustive()
    }
}

/// A doctor's payout profile: who they are and where each provider pays them.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// Display name.
    pub name: String,
    /// Email.
    pub email: String,
    /// Stripe Connect account (`acct_...`).
    #[serde(default)]
    pub stripe_account_id: Option<String>,
    /// PayPal payout email.
    #[serde(default)]
    pub paypal_payout_email: Option<String>,
    /// M-Pesa phone number (`2547XXXXXXXX`).
    #[serde(default)]
    pub mpesa_phone_number: Option<String>,
    /// Bank details.
    #[serde(default)]
    pub bank_details: Option<BankAccount>,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipient")
            .field("doctor_id", &self.doctor_id)
            .field("name", &self.name)
            .field("stripe_account_id", &self.stripe_account_id)
            .field("paypal_payout_email", &self.paypal_payout_email.as_deref().map(mask))
            .field("mpesa_phone_number", &self.mpesa_phone_number.as_deref().map(mask))
            .field("bank_details", &self.bank_details)
            .finish_non_exhaustive()
    }
}

/// Where one provider pays a doctor.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PayoutDestination {
    /// A Stripe connected account.
    StripeAccount {
        /// `acct_...`
        account_id: String,
    },
    /// A PayPal email.
    PaypalEmail {
        /// The receiver's email.
        email: String,
    },
    /// An M-Pesa phone.
    MpesaPhone {
        /// `2547XXXXXXXX`
        phone: String,
    },
    /// A bank account.
    Bank(BankAccount),
}

impl PayoutDestination {
    /// A masked one-line description for logs and attempt summaries.
    pub fn masked(&self) -> String {
        match self {
            PayoutDestination::StripeAccount { account_id } => format!("stripe {account_id}"),
            PayoutDestination::PaypalEmail { email } => format!("paypal {}", mask(email)),
            PayoutDestination::MpesaPhone { phone } => format!("mpesa {}", mask(phone)),
            PayoutDestination::Bank(b) => format!("bank {}", mask(&b.account_number)),
        }
    }
}

impl fmt::Debug for PayoutDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Recipient {
    /// Where `provider` pays this doctor, if the profile has it set up.
    pub fn destination(&self, provider: Provider) -> Option<PayoutDestination> {
        let non_empty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        match provider {
            Provider::StripeConnect => {
                non_empty(&self.stripe_account_id).map(|account_id| PayoutDestination::StripeAccount { account_id })
            }
            Provider::PaypalPayouts => {
                non_empty(&self.paypal_payout_email).map(|email| PayoutDestination::PaypalEmail { email })
            }
            Provider::MpesaB2c => {
                non_empty(&self.mpesa_phone_number).map(|phone| PayoutDestination::MpesaPhone { phone })
            }
            Provider::BankTransfer => self
                .bank_details
                .clone()
                .filter(|b| !b.account_number.trim().is_empty())
                .map(PayoutDestination::Bank),
        }
    }
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

    #[test]
    fn debug_masks_account_numbers_and_phones() {
        let r = Recipient {
            doctor_id: "d1".into(),
            name: "Dr A".into(),
            email: "a@example.com".into(),
            mpesa_phone_number: Some("254712345678".into()),
            bank_details: Some(BankAccount {
                account_name: "A".into(),
                account_number: "0123456789".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("0123456789"), "{dbg}");
        assert!(!dbg.contains("254712345678"), "{dbg}");
        assert!(dbg.contains("6789"));
        assert_eq!(r.destination(Provider::StripeConnect), None);
        assert!(r.destination(Provider::MpesaB2c).is_some());
    }
}
