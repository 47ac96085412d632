//! A payment rail double for run and hold tests: pays every instruction at once, except the
//! payouts it is told to refuse (a confirmed rejection) or leave unanswered (an unknown outcome),
//! and records every call with the keys it carried.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::domain::Provider;
use payout_core::error::{ProviderError, ProviderErrorKind, WebhookError};
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};

/// One provider's rail.
pub struct Rail {
    provider: Provider,
    batch: bool,
    /// Payout ids whose sends are refused (each refused once, then paid).
    refuse: Mutex<HashSet<String>>,
    /// Payout ids whose sends get no answer (an unknown outcome).
    silent: Mutex<HashSet<String>>,
    /// Every call: the idempotency keys it carried.
    calls: Mutex<Vec<Vec<String>>>,
}

impl Rail {
    /// A rail for `provider`, sending one instruction per call.
    pub fn new(provider: Provider) -> Self {
        Rail {
            provider,
            batch: false,
            refuse: Mutex::new(HashSet::new()),
            silent: Mutex::new(HashSet::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// A rail that takes up to 1,000 instructions per call (as PayPal does).
    pub fn batching(provider: Provider) -> Self {
        Rail {
            batch: true,
            ..Rail::new(provider)
        }
    }

    /// Refuses the next send of `payout_id`.
    pub fn refuse(&self, payout_id: &str) {
        self.refuse.lock().unwrap().insert(payout_id.to_string());
    }

    /// Never answers a send of `payout_id`.
    pub fn leave_unanswered(&self, payout_id: &str) {
        self.silent.lock().unwrap().insert(payout_id.to_string());
    }

    /// Every call so far, each with its keys.
    pub fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }

    /// Every key sent so far, in order.
    pub fn keys(&self) -> Vec<String> {
        self.calls().concat()
    }

    fn answer(&self, i: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let id = i.payout_id.to_string();
        if self.refuse.lock().unwrap().remove(&id) {
            return Err(ProviderError::new(
                self.provider,
                ProviderErrorKind::Final,
                "the account is closed",
            ));
        }
        if self.silent.lock().unwrap().contains(&id) {
            return Err(ProviderError::new(
                self.provider,
                ProviderErrorKind::Ambiguous,
                "no answer",
            ));
        }
        Ok(SendReceipt {
            reference: Some(format!("ref-{}", i.idempotency_key)),
            status: ProviderStatus::Paid,
            note: "paid".into(),
        })
    }
}

#[async_trait]
impl PayoutProvider for Rail {
    fn provider(&self) -> Provider {
        self.provider
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            batch: self.batch,
            max_batch_size: if self.batch { 1000 } else { 1 },
            lookup: false,
            webhooks: false,
            simulated: false,
        }
    }

    async fn send(&self, i: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        self.calls.lock().unwrap().push(vec![i.idempotency_key.clone()]);
        self.answer(i)
    }

    async fn send_batch(
        &self,
        instructions: &[PayoutInstruction],
    ) -> Result<Vec<Result<SendReceipt, ProviderError>>, ProviderError> {
        self.calls
            .lock()
            .unwrap()
            .push(instructions.iter().map(|i| i.idempotency_key.clone()).collect());
        Ok(instructions.iter().map(|i| self.answer(i)).collect())
    }

    async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Err(WebhookError::Unavailable("the test rail sends no webhooks".into()))
    }

    async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        Ok(ProviderStatus::Undetermined("the test rail has no lookup".into()))
    }
}
