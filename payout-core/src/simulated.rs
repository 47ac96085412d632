//! The simulated provider: the original system's "safe simulation when credentials are unavailable".
//!
//! It moves no money. Every reference it hands out starts with `sim_`, its capabilities say
//! `simulated: true`, and the engine writes `SIMULATED: no money moved` into the payout's notes and audit
//! trail, so a simulated payout is never mistaken for a real payment. Like a real provider it is
//! idempotent: a re-send with the same key returns the first answer and records no second movement.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::Deserialize;

use crate::domain::Provider;
use crate::error::{ProviderError, WebhookError};
use crate::provider::{
    AttemptLookup, Capabilities, EventReference, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderEventKind,
    ProviderStatus, SendReceipt,
};

/// The note the engine and this provider attach to everything simulated.
pub const SIMULATED_NOTE: &str = "SIMULATED: no money moved";

/// The header a simulated webhook must carry, holding the provider's token.
pub const SIMULATION_TOKEN_HEADER: &str = "x-simulation-token";

/// How simulated sends end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimulatedSettlement {
    /// Paid at once (the demo default).
    #[default]
    Immediate,
    /// Accepted; the payout stays PROCESSING until a simulated webhook or a lookup settles it.
    Deferred,
}

/// One simulated movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedMovement {
    /// The idempotency key it was sent with.
    pub idempotency_key: String,
    /// The reference handed out (`sim_...`).
    pub reference: String,
    /// The amount, as text.
    pub amount: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A provider that pretends to pay, clearly labelled as such.
pub struct SimulatedProvider {
    provider: Provider,
    settlement: SimulatedSettlement,
    webhook_token: String,
    movements: Mutex<HashMap<String, SimulatedMovement>>,
}

impl std::fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProvider")
            .field("provider", &self.provider)
            .field("settlement", &self.settlement)
            .finish_non_exhaustive()
    }
}

impl SimulatedProvider {
    /// A simulated stand-in for `provider` that settles immediately, with a random webhook token.
    pub fn new(provider: Provider) -> Self {
        SimulatedProvider {
            provider,
            settlement: SimulatedSettlement::Immediate,
            webhook_token: uuid::Uuid::new_v4().simple().to_string(),
            movements: Mutex::new(HashMap::new()),
        }
    }

    /// Sets how sends settle.
    pub fn with_settlement(mut self, settlement: SimulatedSettlement) -> Self {
        self.settlement = settlement;
        self
    }

    /// Sets the token simulated webhooks must carry in [`SIMULATION_TOKEN_HEADER`].
    pub fn with_webhook_token(mut self, token: impl Into<String>) -> Self {
        self.webhook_token = token.into();
        self
    }

    /// Every distinct movement so far (one per idempotency key).
    pub fn movements(&self) -> Vec<SimulatedMovement> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SimulatedMovement>> {
        self.movements.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn status(&self) -> ProviderStatus {
        match self.settlement {
            SimulatedSettlement::Immediate => ProviderStatus::Paid,
            SimulatedSettlement::Deferred => ProviderStatus::Accepted,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SimulatedWebhook {
    event_id: String,
    reference: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

#[async_trait]
impl PayoutProvider for SimulatedProvider {
    fn provider(&self) -> Provider {
        self.provider
    }

    fn capabilities(&self) -> Capabilities {
        // One instruction per call, looked up and settled by webhook like a real provider.
        Capabilities {
            simulated: true,
            ..Capabilities::default()
        }
    }

    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let mut movements = self.lock();
        let movement = movements
            .entry(instruction.idempotency_key.clone())
            .or_insert_with(|| SimulatedMovement {
                idempotency_key: instruction.idempotency_key.clone(),
                reference: format!("sim_{}", uuid::Uuid::new_v4().simple()),
                amount: instruction.amount.to_string(),
                at: Utc::now(),
            });
        Ok(SendReceipt {
            reference: Some(movement.reference.clone()),
            status: self.status(),
            note: format!("{SIMULATED_NOTE} ({} via simulated {})", movement.amount, self.provider),
        })
    }

    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        let token = headers
            .get(SIMULATION_TOKEN_HEADER)
            .ok_or_else(|| WebhookError::MissingHeader(SIMULATION_TOKEN_HEADER.into()))?;
        if !constant_time_eq(token.as_bytes(), self.webhook_token.as_bytes()) {
            return Err(WebhookError::BadSignature);
        }
        let hook: SimulatedWebhook =
            serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let reason = hook.reason.unwrap_or_else(|| SIMULATED_NOTE.to_string());
        let kind = match hook.status.as_str() {
            "PAID" => ProviderEventKind::Paid,
            "FAILED" => ProviderEventKind::Failed { reason },
            "RETURNED" => ProviderEventKind::Returned { reason },
            "REVERSED" => ProviderEventKind::Reversed { reason },
            "PENDING" => ProviderEventKind::Pending,
            other => return Err(WebhookError::Malformed(format!("unknown status {other:?}"))),
        };
        Ok(vec![ProviderEvent {
            event_id: hook.event_id,
            references: vec![EventReference::ProviderReference(hook.reference)],
            kind,
            occurred_at: None,
            provider_type: format!("simulated.{}", hook.status.to_ascii_lowercase()),
        }])
    }

    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        Ok(if self.lock().contains_key(&attempt.idempotency_key) {
            self.status()
        } else {
            ProviderStatus::NotFound
        })
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
