//! Stripe's wire format: the transfer request (form-encoded), the transfer and error objects, and
//! the conversions to and from the core types. Amounts are converted here and only here.

use std::collections::BTreeMap;

use payout_core::domain::PayoutDestination;
use payout_core::money::{Currency, Money};
use payout_core::provider::{PayoutInstruction, ProviderStatus};
use serde::Deserialize;

use crate::common::Unpayable;

/// `POST /v1/transfers`, before form encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransferRequest {
    /// Integer minor units (no x100 for zero-decimal currencies).
    pub amount: i64,
    /// Lowercase ISO 4217.
    pub currency: String,
    /// `acct_...`
    pub destination: String,
    pub description: String,
    /// The attempt's idempotency key: lets reconciliation find the transfer without its id.
    pub transfer_group: String,
    pub metadata: BTreeMap<&'static str, String>,
}

impl TryFrom<&PayoutInstruction> for TransferRequest {
    type Error = Unpayable;

    fn try_from(i: &PayoutInstruction) -> Result<Self, Self::Error> {
        let PayoutDestination::StripeAccount { account_id } = &i.destination else {
            return Err(Unpayable::destination("Stripe pays a connected account", i));
        };
        let account_id = account_id.trim();
        if !account_id.starts_with("acct_") || account_id.len() <= "acct_".len() {
            return Err(Unpayable(format!(
                "{account_id:?} is not a Stripe connected account id (acct_...)"
            )));
        }
        let amount = i
            .amount
            .to_minor_units()
            .map_err(|e| Unpayable(format!("amount {} cannot be sent in minor units: {e}", i.amount)))?;
        if amount <= 0 {
            return Err(Unpayable(format!("amount {} must be positive", i.amount)));
        }
        if i.idempotency_key.is_empty() || i.idempotency_key.len() > 255 {
            return Err(Unpayable("the idempotency key must be 1..=255 characters".into()));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("payout_id", i.payout_id.to_string());
        metadata.insert("idempotency_key", i.idempotency_key.clone());
        metadata.insert("attempt_no", i.attempt_no.to_string());
        metadata.insert("doctor_id", i.doctor_id.to_string());
        Ok(TransferRequest {
            amount,
            currency: i.amount.currency().code().to_ascii_lowercase(),
            destination: account_id.to_string(),
            description: i.description.clone(),
            transfer_group: i.idempotency_key.clone(),
            metadata,
        })
    }
}

impl TransferRequest {
    /// The form fields, nested keys in bracket form (`metadata[payout_id]`).
    pub fn to_form(&self) -> Vec<(String, String)> {
        let mut form = vec![
            ("amount".to_string(), self.amount.to_string()),
            ("currency".to_string(), self.currency.clone()),
            ("destination".to_string(), self.destination.clone()),
            ("transfer_group".to_string(), self.transfer_group.clone()),
        ];
        if !self.description.is_empty() {
            form.push(("description".to_string(), self.description.clone()));
        }
        for (k, v) in &self.metadata {
            form.push((format!("metadata[{k}]"), v.clone()));
        }
        form
    }
}

/// A transfer object (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Transfer {
    pub id: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_reversed: i64,
    pub currency: String,
    pub destination: Option<String>,
    #[serde(default)]
    pub reversed: bool,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// How much of a transfer has been reversed. Stripe sets `reversed` only once the whole amount is
/// back; every reversal, partial ones included, raises `amount_reversed` (and fires
/// `transfer.reversed`), so the two are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reversal {
    /// None of it.
    None,
    /// Part of it, so far: the transfer still paid the rest.
    Partial(Money),
    /// All of it.
    Full,
}

impl Reversal {
    /// From a transfer's `amount`, `amount_reversed` (minor units), `reversed` and `currency`.
    pub fn of(amount: i64, amount_reversed: i64, reversed: bool, currency: &str) -> Result<Reversal, String> {
        if reversed || (amount_reversed > 0 && amount_reversed >= amount) {
            return Ok(Reversal::Full);
        }
        if amount_reversed <= 0 {
            return Ok(Reversal::None);
        }
        let currency = Currency::from_code(currency)
            .map_err(|e| format!("{amount_reversed} of {amount} reversed in an unknown currency: {e}"))?;
        Ok(Reversal::Partial(Money::from_minor_units(amount_reversed, currency)))
    }
}

impl Transfer {
    /// Where the attempt stands. A transfer moves the money into the connected account's balance
    /// when it is created, so an existing transfer is `Paid`; reversed in full it is `Reversed`,
    /// in part `PartiallyReversed` (what the `transfer.reversed` webhook says too).
    pub fn status(&self) -> ProviderStatus {
        match Reversal::of(self.amount, self.amount_reversed, self.reversed, &self.currency) {
            Ok(Reversal::None) => ProviderStatus::Paid,
            Ok(Reversal::Full) => ProviderStatus::Reversed(format!("transfer {} was reversed", self.id)),
            Ok(Reversal::Partial(reversed)) => ProviderStatus::PartiallyReversed {
                reversed,
                reason: format!("transfer {} was reversed in part ({reversed} reversed)", self.id),
            },
            Err(why) => ProviderStatus::Undetermined(format!("transfer {}: {why}", self.id)),
        }
    }

    /// A one-line summary for the payout's notes.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "Stripe transfer {} of {} {} to {}",
            self.id,
            self.amount,
            self.currency,
            self.destination.as_deref().unwrap_or("?")
        );
        if self.amount_reversed > 0 {
            s.push_str(&format!(" ({} reversed)", self.amount_reversed));
        }
        s
    }
}

/// The balance object of `GET /v1/balance` (the fields we use): the account's funds per currency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Balance {
    /// What can be transferred or paid out now.
    pub available: Vec<BalanceAmount>,
}

/// One currency's amount in a [`Balance`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct BalanceAmount {
    /// Integer minor units (whole units for zero-decimal currencies); below zero when the account
    /// owes Stripe.
    pub amount: i64,
    /// Lowercase ISO 4217.
    pub currency: String,
}

impl Balance {
    /// The available amounts as exact money. A currency this library does not know is left out
    /// (with a warning): no payout can be in it, so no need can be compared with it.
    pub fn available(&self) -> Vec<Money> {
        self.available
            .iter()
            .filter_map(|a| match Currency::from_code(&a.currency) {
                Ok(currency) => Some(Money::from_minor_units(a.amount, currency)),
                Err(e) => {
                    tracing::warn!(currency = %a.currency, error = %e, "Stripe balance in an unknown currency left out");
                    None
                }
            })
            .collect()
    }
}

/// A list page.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct List<T> {
    pub data: Vec<T>,
}

/// `{"error": {...}}`
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ApiError,
}

/// Stripe's error object.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ApiError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    pub param: Option<String>,
}

/// The details after `HTTP {status}` in an error message: ` {type} ({decline_code}) param {param}: {message}`,
/// each part only when Stripe gave it.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(k) = &self.kind {
            write!(f, " {k}")?;
        }
        if let Some(c) = &self.decline_code {
            write!(f, " ({c})")?;
        }
        if let Some(p) = &self.param {
            write!(f, " param {p}")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_instruction;
    use payout_core::domain::Provider;
    use payout_core::money::Currency;

    fn instruction(amount: &str, currency: Currency) -> PayoutInstruction {
        let mut i = test_instruction(Provider::StripeConnect, amount, currency);
        i.destination = PayoutDestination::StripeAccount {
            account_id: "acct_123".into(),
        };
        i
    }

    #[test]
    fn amounts_are_minor_units_with_lowercase_currency() {
        let t = TransferRequest::try_from(&instruction("12.34", Currency::USD)).unwrap();
        assert_eq!((t.amount, t.currency.as_str()), (1234, "usd"));
        let t = TransferRequest::try_from(&instruction("500", Currency::JPY)).unwrap();
        assert_eq!((t.amount, t.currency.as_str()), (500, "jpy"));
        let t = TransferRequest::try_from(&instruction("500", Currency::KES)).unwrap();
        assert_eq!(t.amount, 50_000);
    }

    #[test]
    fn form_carries_key_and_metadata() {
        let t = TransferRequest::try_from(&instruction("1", Currency::USD)).unwrap();
        let form = t.to_form();
        let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
        assert_eq!(get("metadata[idempotency_key]"), Some("po_testkit-1"));
        assert_eq!(get("metadata[payout_id]"), Some("po_testkit"));
        assert_eq!(get("transfer_group"), Some("po_testkit-1"));
        assert_eq!(get("destination"), Some("acct_123"));
    }

    #[test]
    fn balances_are_read_in_minor_units_by_each_currencys_exponent() {
        let b: Balance = serde_json::from_value(serde_json::json!({
            "object": "balance",
            "available": [
                {"amount": 666670, "currency": "usd", "source_types": {"card": 666670}},
                {"amount": 5000, "currency": "jpy"},
                {"amount": -125, "currency": "eur"},
                {"amount": 1, "currency": "xyz"}
            ],
            "pending": [{"amount": 61414, "currency": "usd"}],
            "livemode": false
        }))
        .unwrap();
        assert_eq!(
            b.available(),
            vec![
                Money::parse("6666.70", Currency::USD).unwrap(),
                Money::parse("5000", Currency::JPY).unwrap(),
                Money::parse("-1.25", Currency::EUR).unwrap(),
            ]
        );
    }

    #[test]
    fn refuses_what_stripe_cannot_take() {
        assert!(TransferRequest::try_from(&instruction("0", Currency::USD)).is_err());
        assert!(TransferRequest::try_from(&instruction("-5", Currency::USD)).is_err());
        let mut i = instruction("5", Currency::USD);
        i.destination = PayoutDestination::MpesaPhone {
            phone: "254700000000".into(),
        };
        assert!(TransferRequest::try_from(&i).is_err());
        i.destination = PayoutDestination::StripeAccount {
            account_id: "cus_1".into(),
        };
        assert!(TransferRequest::try_from(&i).is_err());
    }
}
