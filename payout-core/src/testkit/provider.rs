//! The [`PayoutProvider`] conformance check.
//!
//! Provider adapters call [`check_provider`] in their tests against their local mock server (one that
//! answers a payout request as the provider would, the same answer for the same idempotency key, and
//! a status request if the adapter reports `lookup`). It never needs a live sandbox.
//!
//! ```
//! use payout_core::domain::Provider;
//! use payout_core::simulated::SimulatedProvider;
//! use payout_core::testkit::{fixtures, provider::check_provider};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mpesa = SimulatedProvider::new(Provider::MpesaB2c);
//! check_provider(&mpesa, fixtures::instruction(Provider::MpesaB2c)).await;
//! # });
//! ```

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use http::HeaderMap;

use crate::provider::{AttemptLookup, PayoutInstruction, PayoutProvider, ProviderStatus};

/// Checks what every [`PayoutProvider`] must do, sending `instruction` (twice, with the same
/// idempotency key); panics with a message naming the provider on the first failure.
///
/// It asserts that:
/// - `provider()` and `capabilities()` are stable across calls;
/// - the capabilities are consistent: a batching provider takes more than one instruction per
///   batch, a non-batching one at least one;
/// - `send` succeeds, and sending the same instruction again returns the same provider reference
///   (the re-send is recognised as the same attempt, not a second movement);
/// - if the provider reports `lookup`, looking that attempt up succeeds and is not `NotFound`;
/// - `verify_webhook` with no headers refuses (with an `Err`, without panicking) an empty body, a
///   garbage body and a plausible but unsigned JSON event.
pub async fn check_provider(provider: &dyn PayoutProvider, instruction: PayoutInstruction) {
    let name = provider.provider();
    assert_eq!(provider.provider(), name, "provider() must be stable");

    let caps = provider.capabilities();
    assert_eq!(provider.capabilities(), caps, "{name}: capabilities() must be stable");
    if caps.batch {
        assert!(
            caps.max_batch_size > 1,
            "{name}: a batching provider must take more than one instruction per batch, says {}",
            caps.max_batch_size
        );
    } else {
        assert!(
            caps.max_batch_size >= 1,
            "{name}: max_batch_size must be at least 1, says {}",
            caps.max_batch_size
        );
    }

    let first = provider
        .send(&instruction)
        .await
        .unwrap_or_else(|e| panic!("{name}: send of {} failed: {e}", instruction.idempotency_key));
    let second = provider
        .send(&instruction)
        .await
        .unwrap_or_else(|e| panic!("{name}: re-send of {} failed: {e}", instruction.idempotency_key));
    assert_eq!(
        second.reference, first.reference,
        "{name}: a re-send with the same idempotency key must be the same attempt (same reference)"
    );

    if caps.lookup {
        let lookup = AttemptLookup::of_sent(&instruction, first.reference.clone());
        let status = provider
            .lookup(&lookup)
            .await
            .unwrap_or_else(|e| panic!("{name}: lookup of a sent attempt failed: {e}"));
        assert_ne!(
            status,
            ProviderStatus::NotFound,
            "{name}: lookup must find an attempt that was sent"
        );
    }

    let bodies: [(&str, &[u8]); 3] = [
        ("an empty body", b""),
        ("a garbage body", b"\x00\xff{not a webhook"),
        (
            "an unsigned JSON event",
            br#"{"id":"evt_forged","type":"payout.paid","eventId":"evt_forged","reference":"ref","status":"PAID"}"#,
        ),
    ];
    for (what, body) in bodies {
        let verified = AssertUnwindSafe(provider.verify_webhook(&HeaderMap::new(), body))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| panic!("{name}: verify_webhook panicked on {what} with no headers"));
        if let Ok(events) = verified {
            panic!("{name}: verify_webhook must refuse {what} with no headers, accepted it as {events:?}");
        }
    }
}

/// Checks the engine's rule for authentic events that are not ours: `foreign` is a delivery signed
/// as the provider signs it, about something this engine never sent (a Stripe Connect account's own
/// `po_...` payout, a PayPal item another system sent); `early` is one about an attempt of ours.
/// Panics naming the provider unless:
/// - `verify_webhook` accepts `foreign`, and none of its events names anything of ours
///   ([`ProviderEvent::names_ours`](crate::provider::ProviderEvent::names_ours)), so the service
///   acknowledges them and changes nothing;
/// - `verify_webhook` accepts `early`, and each of its events names something of ours, so the
///   service refuses it for redelivery while the attempt is not recorded.
///
/// An adapter whose provider only ever calls back about requests we made (M-Pesa's result URLs
/// are given per request) passes `None` for `foreign`.
pub async fn check_unmatched_events(
    provider: &dyn PayoutProvider,
    foreign: Option<(&HeaderMap, &[u8])>,
    early: (&HeaderMap, &[u8]),
) {
    let name = provider.provider();
    if let Some(delivery) = foreign {
        for event in verified(provider, delivery, "an authentic event that is not ours").await {
            assert!(
                !event.names_ours(),
                "{name}: an event about something this engine never sent must name nothing of ours, names {:?}",
                event.references
            );
        }
    }
    for event in verified(provider, early, "an authentic event about an attempt of ours").await {
        assert!(
            event.names_ours(),
            "{name}: an event about an attempt of ours must name it, names {:?}",
            event.references
        );
    }
}

/// The events `delivery` verifies to; panics unless it verifies to at least one.
async fn verified(
    provider: &dyn PayoutProvider,
    (headers, body): (&HeaderMap, &[u8]),
    what: &str,
) -> Vec<crate::provider::ProviderEvent> {
    let name = provider.provider();
    let events = provider
        .verify_webhook(headers, body)
        .await
        .unwrap_or_else(|e| panic!("{name}: {what} must verify, got {e}"));
    assert!(!events.is_empty(), "{name}: {what} must yield its event");
    events
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::Provider;
    use crate::error::{ProviderError, WebhookError};
    use crate::provider::{Capabilities, ProviderEvent, SendReceipt};
    use crate::simulated::{SimulatedProvider, SimulatedSettlement};
    use crate::testkit::fixtures;

    #[tokio::test]
    async fn the_simulated_provider_conforms() {
        for provider in Provider::ALL {
            for settlement in [SimulatedSettlement::Immediate, SimulatedSettlement::Deferred] {
                let sim = SimulatedProvider::new(provider).with_settlement(settlement);
                check_provider(&sim, fixtures::instruction(provider)).await;
                assert_eq!(sim.movements().len(), 1, "one movement for two sends of one attempt");
            }
        }
    }

    /// A provider with one planted bug at a time, to prove the check catches each.
    #[derive(Default)]
    struct Faulty {
        fresh_reference_per_send: bool,
        accepts_unsigned_webhooks: bool,
        panics_on_garbage: bool,
        forgets_attempts: bool,
        batch_of_one: bool,
        sends: AtomicU32,
    }

    #[async_trait]
    impl PayoutProvider for Faulty {
        fn provider(&self) -> Provider {
            Provider::BankTransfer
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                batch: self.batch_of_one,
                ..Capabilities::default()
            }
        }
        async fn send(&self, _: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
            let n = self.sends.fetch_add(1, Ordering::Relaxed);
            let reference = if self.fresh_reference_per_send {
                format!("ref-{n}")
            } else {
                "ref-0".to_string()
            };
            Ok(SendReceipt {
                reference: Some(reference),
                status: ProviderStatus::Accepted,
                note: String::new(),
            })
        }
        async fn verify_webhook(&self, _: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
            if self.panics_on_garbage && body.first() == Some(&0) {
                panic!("index out of bounds");
            }
            if self.accepts_unsigned_webhooks {
                return Ok(Vec::new());
            }
            Err(WebhookError::MissingHeader("x-signature".into()))
        }
        async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
            Ok(if self.forgets_attempts {
                ProviderStatus::NotFound
            } else {
                ProviderStatus::Accepted
            })
        }
    }

    async fn check(faulty: Faulty) {
        check_provider(&faulty, fixtures::instruction(Provider::BankTransfer)).await;
    }

    #[tokio::test]
    async fn a_correct_provider_passes() {
        check(Faulty::default()).await;
    }

    /// Sets one of [`Faulty`]'s bugs.
    type Plant = fn(&mut Faulty);

    /// Each planted bug, and what the check's failure must say.
    const PLANTED: [(Plant, &str); 5] = [
        (|f| f.fresh_reference_per_send = true, "same reference"),
        (|f| f.accepts_unsigned_webhooks = true, "must refuse an empty body"),
        (|f| f.panics_on_garbage = true, "panicked on a garbage body"),
        (|f| f.forgets_attempts = true, "lookup must find"),
        (|f| f.batch_of_one = true, "more than one instruction"),
    ];

    /// An adapter whose delivery `b"foreign"` verifies to one event with the first references, and
    /// any other to one with the second.
    struct Canned(
        Vec<crate::provider::EventReference>,
        Vec<crate::provider::EventReference>,
    );

    #[async_trait]
    impl PayoutProvider for Canned {
        fn provider(&self) -> Provider {
            Provider::StripeConnect
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn send(&self, _: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
            unreachable!("the unmatched-events check sends nothing")
        }
        async fn verify_webhook(&self, _: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
            let references = if body == b"foreign" { &self.0 } else { &self.1 };
            Ok(vec![ProviderEvent {
                event_id: "evt_1".into(),
                references: references.clone(),
                kind: crate::provider::ProviderEventKind::Paid,
                occurred_at: None,
                provider_type: "payout.paid".into(),
            }])
        }
        async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
            Ok(ProviderStatus::NotFound)
        }
    }

    #[tokio::test]
    async fn the_unmatched_events_check_catches_an_adapter_that_claims_or_drops_events() {
        use crate::provider::EventReference::{IdempotencyKey, ProviderReference};
        let h = HeaderMap::new();
        let foreign: Option<(&HeaderMap, &[u8])> = Some((&h, b"foreign"));
        let early: (&HeaderMap, &[u8]) = (&h, b"early");
        let key = || IdempotencyKey("po_1-1".into());
        // Nothing of ours in the foreign event, our key in the early one: passes.
        check_unmatched_events(&Canned(vec![], vec![key()]), foreign, early).await;
        check_unmatched_events(&Canned(vec![], vec![ProviderReference("tr_1".into())]), None, early).await;
        let failure = |adapter: Canned| async move {
            let Err(panic) = AssertUnwindSafe(check_unmatched_events(&adapter, foreign, early))
                .catch_unwind()
                .await
            else {
                panic!("the check passed an adapter it should fail");
            };
            panic.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        // A connected account's `po_...` given as a provider reference: claimed, so it would be
        // refused for redelivery forever.
        let claims = failure(Canned(vec![ProviderReference("po_1".into())], vec![key()])).await;
        assert!(claims.contains("must name nothing of ours"), "{claims}");
        // Our own event with only a key of another form: it would be acknowledged and lost.
        let drops = failure(Canned(vec![], vec![IdempotencyKey("INV-2024-001".into())])).await;
        assert!(drops.contains("must name it"), "{drops}");
    }

    #[tokio::test]
    async fn catches_each_planted_bug() {
        for (plant, expected) in PLANTED {
            let mut faulty = Faulty::default();
            plant(&mut faulty);
            let Err(panic) = AssertUnwindSafe(check(faulty)).catch_unwind().await else {
                panic!("the check passed a provider whose failure should say {expected:?}");
            };
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            assert!(
                message.contains(expected),
                "expected a failure saying {expected:?}, got {message:?}"
            );
        }
    }
}
