//! Callback authentication (Daraja signs nothing) and translation of B2C results.

use std::net::IpAddr;

use http::HeaderMap;
use payout_core::WebhookError;
use payout_core::provider::{EventReference, ProviderEvent, ProviderEventKind};
use payout_core::simulated::constant_time_eq;

use super::wire::{Callback, CallbackResult, result_meaning};
use crate::common::{Secret, hmac_sha256_verify};

/// The header the host fills with the secret token from the callback URL's path
/// (e.g. `/webhooks/mpesa/{token}/result` → `x-payouts-callback-token: {token}`).
pub const CALLBACK_TOKEN_HEADER: &str = "x-payouts-callback-token";
/// Hex HMAC-SHA256 of the raw body keyed by `MPESA_WEBHOOK_SECRET`, added by a signing proxy.
pub const SIGNATURE_HEADER: &str = "x-mpesa-signature";
/// The client IP as the host saw it on the socket (preferred over `x-forwarded-for`).
pub const CLIENT_IP_HEADER: &str = "x-payouts-client-ip";
/// Which callback URL was hit: `result` (default), `timeout` (the QueueTimeOutURL), `status`
/// (the transaction status query's ResultURL), [`BALANCE_RESULT_KIND`] or [`BALANCE_TIMEOUT_KIND`]
/// (the account balance query's). Set by the host from its route.
pub const CALLBACK_KIND_HEADER: &str = "x-payouts-callback-kind";

/// [`CALLBACK_KIND_HEADER`] for an Account Balance result (the balance query's ResultURL).
pub const BALANCE_RESULT_KIND: &str = "balance";
/// [`CALLBACK_KIND_HEADER`] for an Account Balance queue timeout (the balance query's QueueTimeOutURL).
pub const BALANCE_TIMEOUT_KIND: &str = "balance-timeout";

/// The callback kind the host set, lowercase.
pub(crate) fn kind(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CALLBACK_KIND_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
}

/// How callbacks are authenticated; every configured check must pass.
#[derive(Clone, Default)]
pub(crate) struct CallbackAuth {
    pub token: Option<Secret>,
    pub hmac_secret: Option<Secret>,
    pub allowed_ips: Vec<IpAddr>,
}

impl CallbackAuth {
    pub fn configured(&self) -> bool {
        self.token.is_some() || self.hmac_secret.is_some()
    }

    /// Checks the request before anything in the body is read.
    pub fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        if !self.configured() {
            return Err(WebhookError::Unavailable(
                "no M-Pesa callback authentication configured (MPESA_CALLBACK_TOKEN or MPESA_WEBHOOK_SECRET)".into(),
            ));
        }
        if !self.allowed_ips.is_empty() {
            let ip = client_ip(headers).ok_or_else(|| {
                WebhookError::Unauthorized(format!("no client IP in {CLIENT_IP_HEADER} or x-forwarded-for"))
            })?;
            if !self.allowed_ips.contains(&ip) {
                return Err(WebhookError::Unauthorized(format!(
                    "{ip} is not an allowed M-Pesa callback source"
                )));
            }
        }
        if let Some(token) = &self.token {
            let given = headers
                .get(CALLBACK_TOKEN_HEADER)
                .ok_or_else(|| WebhookError::MissingHeader(CALLBACK_TOKEN_HEADER.into()))?;
            if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
                return Err(WebhookError::BadSignature);
            }
        }
        if let Some(secret) = &self.hmac_secret {
            let sig = headers
                .get(SIGNATURE_HEADER)
                .ok_or_else(|| WebhookError::MissingHeader(SIGNATURE_HEADER.into()))?
                .to_str()
                .map_err(|_| WebhookError::BadSignature)?;
            if !hmac_sha256_verify(secret.expose().as_bytes(), &[body], sig) {
                return Err(WebhookError::BadSignature);
            }
        }
        Ok(())
    }
}

/// The caller's IP: [`CLIENT_IP_HEADER`] if the host set it, else the last `x-forwarded-for` entry
/// (the one the host's own proxy appended; earlier entries are whatever the client claimed).
fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    if let Some(v) = headers.get(CLIENT_IP_HEADER) {
        return v.to_str().ok()?.trim().parse().ok();
    }
    let xff = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    xff.rsplit(',').map(str::trim).find(|s| !s.is_empty())?.parse().ok()
}

/// Translates an authenticated callback.
///
/// | callback | kind |
/// |---|---|
/// | result, `ResultCode` 0 (number or string) | `Paid` |
/// | result, `ResultCode` 15 (duplicate detected) | `Unknown`: the first request may have paid; reconcile |
/// | result, any other code | `Failed` with the code's meaning and `ResultDesc` |
/// | queue timeout ([`CALLBACK_KIND_HEADER`] `timeout`, or a body without a `ResultCode`) | `Unknown`, never `Failed` |
/// | status query result ([`CALLBACK_KIND_HEADER`] `status`) **[unverified shape]** | `Paid` for `TransactionStatus` `Completed`, otherwise `Unknown` |
///
/// Event ids: `mpesa:{ConversationID}:{ResultCode}` for results, `mpesa:{ConversationID}:timeout`
/// for timeouts and `mpesa:status:{ConversationID}:{ResultCode}` for status results (the
/// OriginatorConversationID stands in when there is no ConversationID). References: the
/// ConversationID (`ProviderReference`, what `send` returned) and the OriginatorConversationID
/// (`IdempotencyKey`, our key).
pub(crate) fn translate(headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
    let kind_header = kind(headers);
    let callback: Callback = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let r = callback.result;
    let conversation = r.conversation_id.clone().filter(|s| !s.is_empty());
    let originator = r.originator_conversation_id.clone().filter(|s| !s.is_empty());
    let Some(id_part) = conversation.clone().or_else(|| originator.clone()) else {
        return Err(WebhookError::Malformed(
            "a callback without ConversationID or OriginatorConversationID".into(),
        ));
    };
    let desc = r.result_desc.clone().unwrap_or_default();

    let (event_id, kind, provider_type, references) = match (kind_header.as_deref(), r.result_code.as_deref()) {
        (Some("status"), code) => {
            let code = code.unwrap_or("?");
            let (kind, refs) = status_result(&r, code, &desc);
            (
                format!("mpesa:status:{id_part}:{code}"),
                kind,
                "TransactionStatusResult".to_string(),
                refs,
            )
        }
        (Some("timeout"), _) | (_, None) => (
            format!("mpesa:{id_part}:timeout"),
            ProviderEventKind::Unknown {
                reason: format!("M-Pesa queue timeout, outcome unknown until reconciled {desc}")
                    .trim()
                    .to_string(),
            },
            "B2C.QueueTimeout".to_string(),
            references(conversation, originator, r.transaction_id.clone()),
        ),
        (_, Some(code)) => {
            let (meaning, nothing_paid) = result_meaning(code);
            let settled = r.result_type.as_deref().is_none_or(|t| t == "0");
            let kind = match code {
                "0" if settled => ProviderEventKind::Paid,
                _ if settled && nothing_paid => ProviderEventKind::Failed {
                    reason: format!("M-Pesa result {code} ({meaning}): {desc}"),
                },
                // A catch-all, a duplicate, a code we do not know, or a result of ResultType 1:
                // money may have moved. A Transaction Status query settles it, never a new try.
                _ => ProviderEventKind::Unknown {
                    reason: format!(
                        "M-Pesa result {code} ({meaning}, ResultType {}): {desc}; outcome unknown until a \
                         Transaction Status query confirms it",
                        r.result_type.as_deref().unwrap_or("-")
                    ),
                },
            };
            (
                format!("mpesa:{id_part}:{code}"),
                kind,
                format!("B2C.Result.{code}"),
                references(conversation, originator, r.transaction_id.clone()),
            )
        }
    };
    Ok(vec![ProviderEvent {
        event_id,
        references,
        kind,
        occurred_at: None,
        provider_type,
    }])
}

/// What a callback names the payment by: its `ConversationID` (the reference `send` returns), our
/// `OriginatorConversationID` (not always echoed), and M-Pesa's `TransactionID` (the receipt).
fn references(
    conversation: Option<String>,
    originator: Option<String>,
    transaction: Option<String>,
) -> Vec<EventReference> {
    let mut refs = Vec::new();
    if let Some(c) = conversation {
        refs.push(EventReference::ProviderReference(c));
    }
    if let Some(o) = originator {
        refs.push(EventReference::IdempotencyKey(o));
    }
    if let Some(t) = transaction.filter(|t| !t.is_empty()) {
        refs.push(EventReference::ProviderReference(t));
    }
    refs
}

/// A transaction status query's result: its own ids are the query's, so the payment is named by
/// the result parameters (`Originator Conversation ID`, `Conversation ID`).
///
/// A successful query (`ResultCode` 0) whose `TransactionStatus` is `Completed` confirms the
/// payment; `Failed`, `Declined` or `Cancelled` confirms that it failed; anything else (a query
/// that itself failed, a status still pending) leaves the outcome unknown.
fn status_result(r: &CallbackResult, code: &str, desc: &str) -> (ProviderEventKind, Vec<EventReference>) {
    let refs = references(
        r.parameter("ConversationID"),
        r.parameter("OriginatorConversationID"),
        r.parameter("ReceiptNo"),
    );
    let status = r.parameter("TransactionStatus").unwrap_or_default();
    let confirmed = code == "0";
    let kind = match status.to_ascii_lowercase().as_str() {
        "completed" if confirmed => ProviderEventKind::Paid,
        "failed" | "declined" | "cancelled" | "canceled" if confirmed => ProviderEventKind::Failed {
            reason: format!("M-Pesa Transaction Status query confirms the payment {status}: {desc}")
                .trim()
                .to_string(),
        },
        _ => ProviderEventKind::Unknown {
            reason: format!("M-Pesa status query {code}: {status} {desc}")
                .trim()
                .to_string(),
        },
    };
    (kind, refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn client_ip_prefers_the_hosts_header_then_the_last_forwarded_entry() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1, 196.201.214.200"));
        assert_eq!(client_ip(&h), "196.201.214.200".parse().ok());
        h.insert(CLIENT_IP_HEADER, HeaderValue::from_static("10.0.0.1"));
        assert_eq!(client_ip(&h), "10.0.0.1".parse().ok());
    }
}
