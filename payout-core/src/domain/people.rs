//! Who acts on payouts and whom they pay: actors, the host's consultations, and each doctor's
//! payout details (masked wherever they could be printed).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DoctorId, Provider};

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

/// A consultation the host took back after it was completed (refunded to the patient, or voided):
/// if it was paid, the next calculation claws its pay back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reversal {
    /// The appointment's id.
    pub appointment_id: String,
    /// The doctor who held it.
    pub doctor_id: DoctorId,
    /// When it was refunded or voided.
    pub reversed_at: DateTime<Utc>,
    /// Why (`refunded`, `voided`, the host's words), for the clawback item's description.
    pub reason: String,
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
    /// The method the doctor chose to be paid by, if any: a run sends each payout with it unless
    /// an admin names a provider. Not part of the payout details an approval vouches for (it moves
    /// no money to another place: each method's details are).
    #[serde(default)]
    pub preferred_provider: Option<Provider>,
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
            .field("preferred_provider", &self.preferred_provider)
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
    /// The providers this profile has payout details for, in [`Provider::ALL`] order.
    pub fn methods(&self) -> Vec<Provider> {
        Provider::ALL
            .into_iter()
            .filter(|p| self.destination(*p).is_some())
            .collect()
    }

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
