//! What an approval vouched for, and an operator's settlement of an unknown outcome: the two
//! records the approval policy and the `resolve` action keep on a payout.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Recipient;

/// The fingerprint of a doctor's payout details: SHA-256, in hex, over a canonical encoding of every
/// destination the profile holds (Stripe account, PayPal email, M-Pesa phone, bank details).
///
/// The encoding is versioned and length-prefixed, field by field in a fixed order, each value
/// trimmed and an empty value written as absent (as [`Recipient::destination`] reads them), so
/// the same details always give the same fingerprint and no two different ones collide by
/// concatenation. Names and emails used only for display are left out: changing them moves no
/// money. A missing profile has a fingerprint too (of no details).
pub fn details_fingerprint(recipient: Option<&Recipient>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"payout-details/v1");
    let bank = recipient.and_then(|r| r.bank_details.as_ref());
    let fields: [(&str, Option<&str>); 9] = [
        (
            "stripe_account_id",
            recipient.and_then(|r| r.stripe_account_id.as_deref()),
        ),
        (
            "paypal_payout_email",
            recipient.and_then(|r| r.paypal_payout_email.as_deref()),
        ),
        (
            "mpesa_phone_number",
            recipient.and_then(|r| r.mpesa_phone_number.as_deref()),
        ),
        ("bank.account_name", bank.map(|b| b.account_name.as_str())),
        ("bank.account_number", bank.map(|b| b.account_number.as_str())),
        ("bank.bank_name", bank.and_then(|b| b.bank_name.as_deref())),
        ("bank.bank_code", bank.and_then(|b| b.bank_code.as_deref())),
        ("bank.branch_code", bank.and_then(|b| b.branch_code.as_deref())),
        ("bank.country", bank.and_then(|b| b.country.as_deref())),
    ];
    for (name, value) in fields {
        put(&mut hasher, name);
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => {
                hasher.update([1u8]);
                put(&mut hasher, v);
            }
            None => hasher.update([0u8]),
        }
    }
    hex::encode(hasher.finalize())
}

/// Length-prefixed bytes: 8 bytes of length, big-endian, then the bytes.
fn put(hasher: &mut Sha256, text: &str) {
    hasher.update((text.len() as u64).to_be_bytes());
    hasher.update(text.as_bytes());
}

/// What an approval vouched for: the doctor's payout details as they were, and who approved.
///
/// Written whole by every approval, so a re-approval after the details changed replaces it (its
/// second approver too: a second approval is about the details the first one saw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// [`details_fingerprint`] of the doctor's details when approved.
    pub details_fingerprint: String,
    /// The approvers, in order: the first, then a second where the policy asks for one.
    pub approvers: Vec<String>,
}

/// The outcome an operator claims for an attempt whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResolutionOutcome {
    /// The money reached the doctor.
    Paid,
    /// The payment did not happen: a retry with a new key may follow.
    Failed,
}

impl ResolutionOutcome {
    /// `PAID` or `FAILED`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResolutionOutcome::Paid => "PAID",
            ResolutionOutcome::Failed => "FAILED",
        }
    }
}

/// Where an operator's resolution stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResolutionState {
    /// Asked for; waits for a second admin to confirm (four eyes).
    Pending,
    /// Confirmed and applied: the payout moved to the claimed outcome.
    Confirmed {
        /// Who confirmed (the requester, when four eyes is off).
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Turned down by a second admin, or overtaken (the provider settled the payout first).
    Rejected {
        /// Who turned it down.
        by: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// An operator's settlement of a `PROCESSING` payout whose attempt has an unknown outcome, with the
/// evidence. Stored on the payout (it survives a restart); only the latest is kept there, every
/// step of every one is in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    /// The attempt it settles (the payout's latest when asked).
    pub attempt_no: u32,
    /// The outcome claimed.
    pub outcome: ResolutionOutcome,
    /// The provider's reference the operator has as evidence (a transaction id, a bank reference).
    pub provider_reference: Option<String>,
    /// The operator's note: what the evidence is.
    pub note: String,
    /// What the provider answered when it was asked before the resolution was recorded.
    pub provider_answer: String,
    /// Who asked for it.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ResolutionState,
}

impl Resolution {
    /// True while it waits for a second admin.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, ResolutionState::Pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BankAccount;

    fn recipient() -> Recipient {
        Recipient {
            doctor_id: "dr-1".into(),
            name: "Dr One".into(),
            email: "one@example.com".into(),
            mpesa_phone_number: Some("254712345678".into()),
            bank_details: Some(BankAccount {
                account_name: "One".into(),
                account_number: "0123456789".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_fingerprint_follows_the_details_and_only_them() {
        let r = recipient();
        let fp = details_fingerprint(Some(&r));
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, details_fingerprint(Some(&r.clone())), "deterministic");

        let mut renamed = r.clone();
        renamed.name = "Dr Renamed".into();
        renamed.mpesa_phone_number = Some(" 254712345678 ".into());
        assert_eq!(
            fp,
            details_fingerprint(Some(&renamed)),
            "display fields and spacing do not count"
        );

        let mut moved = r.clone();
        moved.mpesa_phone_number = Some("254700000000".into());
        assert_ne!(fp, details_fingerprint(Some(&moved)));
        let mut moved = r.clone();
        if let Some(b) = moved.bank_details.as_mut() {
            b.account_number = "9999999999".into();
        }
        assert_ne!(fp, details_fingerprint(Some(&moved)));

        // Length prefixes: moving characters from one field to the next changes the fingerprint.
        let a = Recipient {
            stripe_account_id: Some("acct_1a".into()),
            paypal_payout_email: Some("b@x".into()),
            ..Default::default()
        };
        let b = Recipient {
            stripe_account_id: Some("acct_1".into()),
            paypal_payout_email: Some("ab@x".into()),
            ..Default::default()
        };
        assert_ne!(details_fingerprint(Some(&a)), details_fingerprint(Some(&b)));
        let empty = Recipient {
            stripe_account_id: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(details_fingerprint(Some(&empty)), details_fingerprint(None));
    }

    #[test]
    fn resolutions_round_trip_through_json() {
        let at = chrono::TimeZone::timestamp_opt(&Utc, 1_735_689_600, 0).unwrap();
        for state in [
            ResolutionState::Pending,
            ResolutionState::Confirmed {
                by: "admin:b".into(),
                at,
            },
            ResolutionState::Rejected {
                by: "admin:c".into(),
                at,
            },
        ] {
            let r = Resolution {
                attempt_no: 2,
                outcome: ResolutionOutcome::Failed,
                provider_reference: Some("bank-ref-1".into()),
                note: "bank statement shows no debit".into(),
                provider_answer: "accepted".into(),
                requested_by: "admin:a".into(),
                requested_at: at,
                state,
            };
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Resolution>(&json).unwrap(), r, "{json}");
        }
    }
}
