//! PayPal Payouts v1 wire format (`payments_payouts_batch_v1.json`): the create request, batch and
//! item responses, errors and webhook events, with conversions to and from the core types. Amounts
//! become decimal strings here and only here.

use payout_core::domain::PayoutDestination;
use payout_core::provider::{PayoutInstruction, ProviderStatus};
use serde::{Deserialize, Serialize};

use crate::common::Unpayable;

/// The most items one create call may carry.
pub const MAX_BATCH_ITEMS: usize = 15_000;
/// `sender_item_id`'s limit.
const MAX_SENDER_ITEM_ID: usize = 63;

/// `POST /v1/payments/payouts` (schema `create_payout_request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct CreatePayoutRequest {
    pub sender_batch_header: SenderBatchHeader,
    pub items: Vec<PayoutItem>,
}

/// Schema `sender_batch_header`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SenderBatchHeader {
    pub sender_batch_id: String,
    pub recipient_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_message: Option<String>,
}

/// Schema `payout_item`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct PayoutItem {
    pub recipient_type: &'static str,
    pub amount: Amount,
    pub receiver: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    pub sender_item_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

/// Schema `currency`: the value is a decimal string (an integer string for zero-decimal currencies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Amount {
    pub currency: String,
    pub value: String,
}

impl TryFrom<&PayoutInstruction> for PayoutItem {
    type Error = Unpayable;

    fn try_from(i: &PayoutInstruction) -> Result<Self, Self::Error> {
        let PayoutDestination::PaypalEmail { email } = &i.destination else {
            return Err(Unpayable::destination("PayPal pays an email address", i));
        };
        let email = email.trim();
        if email.is_empty() || email.len() > 127 || !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(Unpayable(format!(
                "{} is not a usable PayPal email",
                i.destination.masked()
            )));
        }
        if i.amount.is_zero() || i.amount.is_negative() {
            return Err(Unpayable(format!("amount {} must be positive", i.amount)));
        }
        if i.idempotency_key.is_empty() || i.idempotency_key.len() > MAX_SENDER_ITEM_ID {
            return Err(Unpayable(format!(
                "the idempotency key must be 1..={MAX_SENDER_ITEM_ID} characters to be a sender_item_id"
            )));
        }
        // The spec's `^.*$` patterns do not match line breaks.
        let note: String = i.description.replace(['\r', '\n'], " ").chars().take(1000).collect();
        Ok(PayoutItem {
            recipient_type: "EMAIL",
            amount: Amount {
                currency: i.amount.currency().code().to_string(),
                value: i.amount.amount_str(),
            },
            receiver: email.to_string(),
            note,
            sender_item_id: i.idempotency_key.clone(),
            purpose: None,
        })
    }
}

/// `POST /v1/payments/payouts` 201 (schema `payout`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CreatedBatch {
    pub batch_header: BatchHeader,
}

/// Schema `payout_batch_header` / `payout_header`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BatchHeader {
    pub payout_batch_id: String,
    pub batch_status: Option<String>,
}

/// `GET /v1/payments/payouts/{id}` (schema `payout_batch`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Batch {
    pub batch_header: BatchHeader,
    #[serde(default)]
    pub items: Vec<ItemDetail>,
    pub total_pages: Option<u32>,
}

/// `GET /v1/payments/payouts-item/{id}` and a batch's items (schema `payout_item_detail` /
/// `payout_batch_items`); also a webhook event's `resource`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ItemDetail {
    pub payout_item_id: Option<String>,
    pub transaction_status: Option<String>,
    pub payout_batch_id: Option<String>,
    pub payout_item: Option<ItemSummary>,
    pub errors: Option<ItemErrors>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ItemSummary {
    pub sender_item_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ItemErrors {
    pub name: Option<String>,
    pub message: Option<String>,
}

impl ItemDetail {
    /// Our idempotency key, echoed as `payout_item.sender_item_id`.
    pub fn sender_item_id(&self) -> Option<&str> {
        self.payout_item.as_ref()?.sender_item_id.as_deref()
    }

    fn reason(&self, fallback: &str) -> String {
        match self.errors.as_ref() {
            Some(ItemErrors {
                name: Some(n),
                message: Some(m),
            }) => format!("{n}: {m}"),
            Some(ItemErrors {
                name: Some(n),
                message: None,
            }) => n.clone(),
            Some(ItemErrors {
                name: None,
                message: Some(m),
            }) => m.clone(),
            _ => fallback.to_string(),
        }
    }

    /// Where the item stands. `UNCLAIMED` (the receiver has no account yet) and `ONHOLD` are still in
    /// flight; an unknown status is an error, never a guess.
    pub fn status(&self) -> Result<ProviderStatus, String> {
        let status = self.transaction_status.as_deref().unwrap_or("").to_ascii_uppercase();
        Ok(match status.as_str() {
            "SUCCESS" => ProviderStatus::Paid,
            "PENDING" | "UNCLAIMED" | "ONHOLD" | "NEW" => ProviderStatus::Accepted,
            "FAILED" | "BLOCKED" | "DENIED" | "CANCELED" => {
                ProviderStatus::Failed(self.reason(&format!("PayPal item {status}")))
            }
            "RETURNED" => ProviderStatus::Returned(self.reason("returned to the sender (unclaimed for 30 days)")),
            "REFUNDED" => ProviderStatus::Returned(self.reason("refunded to the sender")),
            "REVERSED" => ProviderStatus::Reversed(self.reason("reversed")),
            other => return Err(format!("PayPal item has an unknown transaction_status {other:?}")),
        })
    }
}

/// Schema `error`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ApiError {
    pub name: Option<String>,
    pub message: Option<String>,
    pub debug_id: Option<String>,
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorDetail {
    pub field: Option<String>,
    pub issue: Option<String>,
    pub description: Option<String>,
}

/// A detail's `field` as dotted names: a JSON pointer (`/sender_batch_header/sender_batch_id`, the
/// spec's convention) and the dotted form (`sender_batch_header.sender_batch_id`) read alike,
/// lowercase, with `[i]` written `.i`.
fn field_path(field: &str) -> String {
    field
        .trim()
        .trim_start_matches('/')
        .replace(['/', '['], ".")
        .replace(']', "")
        .to_ascii_lowercase()
}

/// The details after `HTTP {status} ` in an error message:
/// `{name}: {message} [{field}: {issue}]... (debug_id {id})`, each part only when PayPal gave it.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name.as_deref().unwrap_or("error"))?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        for d in &self.details {
            write!(
                f,
                " [{}: {}]",
                d.field.as_deref().unwrap_or("-"),
                d.issue.as_deref().unwrap_or("-")
            )?;
        }
        if let Some(id) = &self.debug_id {
            write!(f, " (debug_id {id})")?;
        }
        Ok(())
    }
}

impl ApiError {
    /// The "duplicate `sender_batch_id`" rejection, in every shape it has been documented or seen
    /// in **[shape unverified]**: a detail whose `field` names the sender batch id (`SENDER_BATCH_ID`,
    /// `sender_batch_header.sender_batch_id`, or the JSON pointer
    /// `/sender_batch_header/sender_batch_id`) with an issue saying it exists (or none), or a detail
    /// whose issue is "Duplicate batch request"; with or without a link to the original batch.
    pub fn is_duplicate_batch(&self) -> bool {
        self.details.iter().any(|d| {
            let issue = d.issue.as_deref().unwrap_or("").to_ascii_lowercase();
            let names_the_id = d.field.as_deref().is_some_and(|f| {
                let path = field_path(f);
                path == "sender_batch_id" || path == "sender_batch_header.sender_batch_id"
            });
            let says_duplicate = ["already", "duplicate", "exist"].iter().any(|w| issue.contains(w));
            (names_the_id && (issue.is_empty() || says_duplicate)) || issue.contains("duplicate batch")
        })
    }

    /// The items a `VALIDATION_ERROR` refuses, by their index in the request, each with PayPal's
    /// issue: `Some` only when every detail names an item (`items[2].receiver`, `/items/2/receiver`),
    /// so the rest of the batch was refused only because of them; nothing was paid.
    pub fn invalid_items(&self) -> Option<Vec<(usize, String)>> {
        if !self
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("VALIDATION_ERROR"))
            || self.details.is_empty()
        {
            return None;
        }
        self.details
            .iter()
            .map(|d| {
                let path = field_path(d.field.as_deref()?);
                let index = path.strip_prefix("items.")?.split('.').next()?.parse::<usize>().ok()?;
                let field = d.field.clone().unwrap_or_default();
                let issue = d.issue.clone().or_else(|| d.description.clone()).unwrap_or_default();
                Some((index, format!("{field}: {issue}")))
            })
            .collect()
    }
}

/// The original batch's id from a duplicate error: the last path segment of any link under
/// `/v1/payments/payouts/`, wherever the error carries it (`links`, `details[].link`, ...).
pub(crate) fn linked_batch_id(error_body: &serde_json::Value) -> Option<String> {
    fn walk(v: &serde_json::Value, out: &mut Option<String>) {
        if out.is_some() {
            return;
        }
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(href)) = map.get("href") {
                    if let Some((_, rest)) = href.split_once("/v1/payments/payouts/") {
                        let id: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                            .collect();
                        if !id.is_empty() {
                            *out = Some(id);
                            return;
                        }
                    }
                }
                map.values().for_each(|x| walk(x, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = None;
    walk(error_body, &mut out);
    out
}

/// `POST /v1/oauth2/token`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub expires_in: Option<u64>,
}

/// A webhook event (schema `event` of the webhooks spec).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Event {
    pub id: String,
    pub create_time: Option<String>,
    pub event_type: String,
    #[serde(default)]
    pub resource: serde_json::Value,
}

/// `POST /v1/notifications/verify-webhook-signature` answer.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VerifyResponse {
    pub verification_status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_instruction;
    use payout_core::domain::Provider;
    use payout_core::money::{Currency, Money};
    use serde_json::json;

    #[test]
    fn items_carry_decimal_strings_and_our_key() {
        let mut i = test_instruction(Provider::PaypalPayouts, "12.5", Currency::USD);
        let item = PayoutItem::try_from(&i).unwrap();
        assert_eq!(
            item.amount,
            Amount {
                currency: "USD".into(),
                value: "12.50".into()
            }
        );
        assert_eq!(item.sender_item_id, "po_testkit-1");
        i.amount = Money::parse("1500", Currency::JPY).unwrap();
        assert_eq!(PayoutItem::try_from(&i).unwrap().amount.value, "1500");
        i.amount = Money::zero(Currency::USD);
        assert!(PayoutItem::try_from(&i).is_err());
    }

    #[test]
    fn duplicate_errors_and_their_links_are_recognised() {
        let body = json!({"name": "USER_BUSINESS_ERROR", "message": "User business error.", "debug_id": "d",
            "details": [{"field": "SENDER_BATCH_ID", "issue": "Batch with given sender_batch_id already exists",
                         "link": [{"href": "https://api-m.sandbox.paypal.com/v1/payments/payouts/5UXD2E8A7EBQJ", "rel": "self", "method": "GET"}]}]});
        let e: ApiError = serde_json::from_value(body.clone()).unwrap();
        assert!(e.is_duplicate_batch());
        assert_eq!(linked_batch_id(&body).as_deref(), Some("5UXD2E8A7EBQJ"));
        let other: ApiError = serde_json::from_value(json!({"name": "VALIDATION_ERROR",
            "details": [{"field": "items[0].receiver", "issue": "Receiver is invalid"}]}))
        .unwrap();
        assert!(!other.is_duplicate_batch());
    }

    #[test]
    fn item_statuses_map() {
        let item = |s: &str| ItemDetail {
            transaction_status: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(item("SUCCESS").status(), Ok(ProviderStatus::Paid));
        assert_eq!(item("UNCLAIMED").status(), Ok(ProviderStatus::Accepted));
        assert!(matches!(item("FAILED").status(), Ok(ProviderStatus::Failed(_))));
        assert!(matches!(item("RETURNED").status(), Ok(ProviderStatus::Returned(_))));
        assert!(matches!(item("REVERSED").status(), Ok(ProviderStatus::Reversed(_))));
        assert!(item("MYSTERY").status().is_err());
    }
}
