//! One create call per batch, and each item's result mapped back by `sender_item_id`.

use std::collections::HashMap;

use payout_core::ProviderError;
use payout_core::ProviderErrorKind;
use payout_core::provider::{ProviderStatus, SendReceipt};
use sha2::{Digest, Sha256};

use super::PaypalProvider;
use super::client::{Created, PaypalError};
use super::wire::{CreatePayoutRequest, ItemDetail, PayoutItem, SenderBatchHeader};
use crate::common::retry::Classified;

impl PaypalProvider {
    /// The `sender_batch_id` (and `PayPal-Request-Id`) of instructions that name no batch: the key
    /// itself for one, a digest of the sorted keys for several.
    pub(super) fn sender_batch_id(keys: &[&str]) -> String {
        if let [only] = keys {
            return (*only).to_string();
        }
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        let digest = Sha256::digest(sorted.join("\n").as_bytes());
        let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
        format!("payouts-{hex}")
    }

    /// Creates the batch; an unknown outcome is resolved by sending the same batch once more.
    pub(super) async fn create(&self, request: &CreatePayoutRequest) -> Result<Created, PaypalError> {
        match self.client.create_batch(request).await {
            Err(e) if e.kind() == ProviderErrorKind::Ambiguous => {
                tracing::warn!(
                    sender_batch_id = %request.sender_batch_header.sender_batch_id,
                    error = %e,
                    "PayPal create outcome unknown; re-sending the same sender_batch_id to resolve it"
                );
                self.client.create_batch(request).await
            }
            other => other,
        }
    }

    /// Sends one chunk (at most [`MAX_BATCH_ITEMS`] items) and maps each item back by key.
    pub(super) async fn send_chunk(
        &self,
        sender_batch_id: String,
        items: Vec<PayoutItem>,
    ) -> Vec<Result<SendReceipt, ProviderError>> {
        let keys: Vec<String> = items.iter().map(|i| i.sender_item_id.clone()).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let request = CreatePayoutRequest {
            sender_batch_header: SenderBatchHeader {
                sender_batch_id: sender_batch_id.clone(),
                recipient_type: "EMAIL",
                email_subject: self.config.email_subject.clone(),
                email_message: self.config.email_message.clone(),
            },
            items,
        };
        let (batch_id, batch_status, how) = match self.create(&request).await {
            Err(PaypalError::Api { status, error }) if status.as_u16() == 400 => {
                // One invalid item makes PayPal refuse the whole batch: nothing was paid. The
                // invalid items fail; the others fail as rejected with the batch, so the engine
                // sends them again in a batch of their own.
                let e: ProviderError = PaypalError::Api {
                    status,
                    error: error.clone(),
                }
                .into();
                let Some(invalid) = error.invalid_items().filter(|v| v.iter().all(|(i, _)| *i < keys.len())) else {
                    return keys.iter().map(|_| Err(e.clone())).collect();
                };
                return (0..keys.len())
                    .map(|i| {
                        let issues: Vec<&str> =
                            invalid.iter().filter(|(n, _)| *n == i).map(|(_, s)| s.as_str()).collect();
                        let mut refused = e.clone();
                        if issues.is_empty() {
                            refused.code = Some(ProviderError::REJECTED_WITH_BATCH.to_string());
                            refused.message = format!(
                                "PayPal refused batch {sender_batch_id} because of {} other item(s); nothing was paid: {}",
                                invalid.len(),
                                e.message
                            );
                        } else {
                            refused.message = format!("PayPal refused this item: {}", issues.join("; "));
                        }
                        Err(refused)
                    })
                    .collect();
            }
            Err(e) => {
                let e: ProviderError = e.into();
                return keys.iter().map(|_| Err(e.clone())).collect();
            }
            Ok(Created::Batch {
                payout_batch_id,
                batch_status,
            }) => (Some(payout_batch_id), batch_status, "created"),
            Ok(Created::Duplicate { payout_batch_id }) => {
                (payout_batch_id, None, "already sent (duplicate sender_batch_id)")
            }
        };
        let Some(batch_id) = batch_id else {
            let note = format!(
                "PayPal already has sender_batch_id {sender_batch_id} (sent before, not sent again); its batch id was not given"
            );
            return keys
                .iter()
                .map(|_| {
                    Ok(SendReceipt {
                        reference: None,
                        status: ProviderStatus::Accepted,
                        note: note.clone(),
                    })
                })
                .collect();
        };
        let (listed_status, listed) = match self.client.batch_items(&batch_id, &key_refs).await {
            Ok(Some((status, items))) => (status, items),
            Ok(None) => (None, HashMap::new()),
            Err(e) => {
                tracing::warn!(%batch_id, error = %e, "PayPal batch created but its items could not be read yet");
                (None, HashMap::new())
            }
        };
        let batch_status = listed_status.or(batch_status).unwrap_or_default();
        keys.iter()
            .map(|key| {
                Ok(match listed.get(key) {
                    Some(item) => item_receipt(item, &batch_id, how),
                    None if batch_status.eq_ignore_ascii_case("DENIED") => SendReceipt {
                        reference: Some(batch_id.clone()),
                        status: ProviderStatus::Failed(format!("PayPal denied batch {batch_id}")),
                        note: format!("PayPal batch {batch_id} {how}: DENIED"),
                    },
                    None => SendReceipt {
                        reference: Some(batch_id.clone()),
                        status: ProviderStatus::Accepted,
                        note: format!("PayPal batch {batch_id} {how} ({batch_status}); item not listed yet"),
                    },
                })
            })
            .collect()
    }
}

fn item_receipt(item: &ItemDetail, batch_id: &str, how: &str) -> SendReceipt {
    let reference = item
        .payout_item_id
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| batch_id.to_string());
    let raw = item.transaction_status.clone().unwrap_or_default();
    let (status, extra) = match item.status() {
        Ok(s) => (s, String::new()),
        Err(why) => (ProviderStatus::Accepted, format!("; {why}")),
    };
    SendReceipt {
        note: format!("PayPal item {reference} in batch {batch_id} {how}: {raw}{extra}"),
        reference: Some(reference),
        status,
    }
}
