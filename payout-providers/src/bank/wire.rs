//! The bank contract's JSON, and its conversions to and from the core types.

use payout_core::domain::PayoutDestination;
use payout_core::provider::{PayoutInstruction, ProviderStatus};
use serde::{Deserialize, Serialize};

use crate::common::Unpayable;

/// `POST {BANK_API_URL}/transfers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TransferRequest {
    pub reference: String,
    pub payout_id: String,
    /// Exact decimal text at the currency's exponent (`"1500.00"`, `"1500"` for JPY).
    pub amount: String,
    pub currency: String,
    pub description: String,
    pub beneficiary: Beneficiary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Beneficiary {
    pub name: String,
    pub account_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl TryFrom<&PayoutInstruction> for TransferRequest {
    type Error = Unpayable;

    fn try_from(i: &PayoutInstruction) -> Result<Self, Self::Error> {
        let PayoutDestination::Bank(account) = &i.destination else {
            return Err(Unpayable::destination("a bank transfer needs bank details", i));
        };
        if account.account_number.trim().is_empty() {
            return Err(Unpayable("the bank account number is empty".into()));
        }
        if account.account_name.trim().is_empty() && i.recipient_name.trim().is_empty() {
            return Err(Unpayable("the beneficiary has no name".into()));
        }
        if i.amount.is_negative() || i.amount.is_zero() {
            return Err(Unpayable(format!("amount {} must be positive", i.amount)));
        }
        let name = if account.account_name.trim().is_empty() {
            &i.recipient_name
        } else {
            &account.account_name
        };
        Ok(TransferRequest {
            reference: i.idempotency_key.clone(),
            payout_id: i.payout_id.to_string(),
            amount: i.amount.amount_str(),
            currency: i.amount.currency().code().to_string(),
            description: i.description.clone(),
            beneficiary: Beneficiary {
                name: name.trim().to_string(),
                account_number: account.account_number.trim().to_string(),
                bank_code: account.bank_code.clone(),
                branch_code: account.branch_code.clone(),
                bank_name: account.bank_name.clone(),
                country: account.country.clone(),
            },
        })
    }
}

/// A transfer as the bank reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Transfer {
    pub id: String,
    pub status: String,
    pub reference: Option<String>,
    pub failure_reason: Option<String>,
}

impl Transfer {
    /// Where the attempt stands; an unknown status is an error (the contract is ours, so a status
    /// we do not know means the bank and this adapter disagree: better loud than wrong).
    pub fn status(&self) -> Result<ProviderStatus, String> {
        let reason = || {
            self.failure_reason
                .clone()
                .unwrap_or_else(|| format!("bank reports {}", self.status))
        };
        Ok(match self.status.to_ascii_uppercase().as_str() {
            "PENDING" | "PROCESSING" => ProviderStatus::Accepted,
            "COMPLETED" => ProviderStatus::Paid,
            "FAILED" | "REJECTED" => ProviderStatus::Failed(reason()),
            "RETURNED" => ProviderStatus::Returned(reason()),
            other => return Err(format!("bank transfer {} has an unknown status {other:?}", self.id)),
        })
    }
}

/// `GET /transfers?reference=...`
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TransferList {
    pub data: Vec<Transfer>,
}

/// `{"error": {"code", "message"}}`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorEnvelope {
    pub error: ApiError,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ApiError {
    pub code: Option<String>,
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_instruction;
    use payout_core::domain::Provider;
    use payout_core::money::Currency;

    #[test]
    fn request_carries_decimal_amount_and_beneficiary() {
        let r = TransferRequest::try_from(&test_instruction(Provider::BankTransfer, "1500.5", Currency::KES)).unwrap();
        assert_eq!(r.amount, "1500.50");
        assert_eq!(r.currency, "KES");
        assert_eq!(r.reference, "po_testkit-1");
        assert_eq!(r.beneficiary.account_number, "0123456789");
    }

    #[test]
    fn statuses_map_and_unknown_ones_are_errors() {
        let t = |s: &str| Transfer {
            id: "bt_1".into(),
            status: s.into(),
            reference: None,
            failure_reason: None,
        };
        assert_eq!(t("COMPLETED").status(), Ok(ProviderStatus::Paid));
        assert_eq!(t("pending").status(), Ok(ProviderStatus::Accepted));
        assert!(matches!(t("FAILED").status(), Ok(ProviderStatus::Failed(_))));
        assert!(matches!(t("RETURNED").status(), Ok(ProviderStatus::Returned(_))));
        assert!(t("SETTLED?").status().is_err());
    }
}
