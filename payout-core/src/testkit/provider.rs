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
/// - if it batches, `send_batch` of a batch of two (`instruction` and a companion for another
///   payout, both naming one batch id) answers each, in order, and sending the same batch again
///   answers each with the same reference as before (the same batch, not a second one);
/// - `verify_webhook` with no headers refuses (with an `Err`, without panicking) an empty body, a
///   garbage body and a plausible but unsigned JSON event.
///
/// What a provider's webhooks must do is checked by [`check_events`].
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

    if caps.batch {
        check_batch(provider, &instruction).await;
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

/// `send_batch` of `instruction` and a companion for another payout, under one batch id, twice.
async fn check_batch(provider: &dyn PayoutProvider, instruction: &PayoutInstruction) {
    let name = provider.provider();
    let batch_id = format!("{}-conformance", instruction.idempotency_key);
    let mut first = instruction.clone();
    first.batch_id = Some(batch_id.clone());
    let mut companion = first.clone();
    companion.payout_id = crate::domain::PayoutId::new(format!("{}b", instruction.payout_id));
    companion.idempotency_key = crate::domain::PayoutAttempt::key_for(&companion.payout_id, instruction.attempt_no);
    let batch = &[first, companion];
    let answers = |round: &'static str| async move {
        let answers = provider
            .send_batch(batch)
            .await
            .unwrap_or_else(|e| panic!("{name}: send_batch of a batch of two failed ({round}): {e}"));
        assert_eq!(
            answers.len(),
            2,
            "{name}: send_batch must answer each instruction of a batch of two, in order ({round}), answered {answers:?}"
        );
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|e| panic!("{name}: send_batch failed an instruction of a valid batch ({round}): {e}"))
                    .reference
            })
            .collect::<Vec<_>>()
    };
    let sent = answers("sent").await;
    let again = answers("sent again").await;
    assert_eq!(
        again, sent,
        "{name}: sending the same batch again must be the same batch (each instruction the same reference)"
    );
}

/// Webhook deliveries signed as the provider signs them, for [`check_events`]. Each is the headers
/// and the raw body.
#[derive(Debug, Clone, Copy)]
pub struct Deliveries<'a> {
    /// About something this engine never sent (a Stripe Connect account's own `po_...` payout, a
    /// PayPal item another system sent); `None` for a provider that only calls back about requests
    /// we made (M-Pesa's result URLs are given per request).
    pub foreign: Option<(&'a HeaderMap, &'a [u8])>,
    /// About an attempt of ours.
    pub ours: (&'a HeaderMap, &'a [u8]),
    /// A partial reversal of an attempt of ours that paid `paid`, where the provider has them
    /// (Stripe's `transfer.reversed` for less than the transfer).
    pub partial_reversal: Option<((&'a HeaderMap, &'a [u8]), crate::money::Money)>,
}

/// Checks a provider's webhooks as the engine relies on them; panics naming the provider unless:
/// - `foreign` verifies, and none of its events names anything of ours
///   ([`ProviderEvent::names_ours`](crate::provider::ProviderEvent::names_ours)), so the service
///   acknowledges them and changes nothing;
/// - `ours` verifies, and each of its events names something of ours, so the service refuses it for
///   redelivery while the attempt is not recorded;
/// - `ours` delivered again (providers deliver at least once) verifies to the same events with the
///   same event ids, so the service records each once and the duplicate changes nothing;
/// - `partial_reversal` verifies to a partial reversal naming ours, of a positive amount less than
///   what was paid, never a full reversal (the payout stays PAID).
pub async fn check_events(provider: &dyn PayoutProvider, deliveries: Deliveries<'_>) {
    let name = provider.provider();
    check_unmatched_events(provider, deliveries.foreign, deliveries.ours).await;
    let once = verified(provider, deliveries.ours, "an authentic event about an attempt of ours").await;
    let twice = verified(provider, deliveries.ours, "the same delivery again").await;
    assert_eq!(
        twice, once,
        "{name}: a duplicate delivery must verify to the same events with the same event ids"
    );
    if let Some((delivery, paid)) = deliveries.partial_reversal {
        for event in verified(provider, delivery, "a partial reversal").await {
            match &event.kind {
                crate::provider::ProviderEventKind::PartiallyReversed { reversed, .. } => {
                    assert!(
                        event.names_ours(),
                        "{name}: a partial reversal of ours must name it, names {:?}",
                        event.references
                    );
                    assert!(
                        !reversed.is_negative() && !reversed.is_zero() && reversed.amount() < paid.amount(),
                        "{name}: a partial reversal must be of a positive amount less than the {paid} paid, says {reversed}"
                    );
                }
                other => {
                    panic!("{name}: a partial reversal must be read as one (the payout stays PAID), read as {other:?}")
                }
            }
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
        /// Batches, but answers only the first instruction of a batch.
        short_batches: bool,
        sends: AtomicU32,
    }

    #[async_trait]
    impl PayoutProvider for Faulty {
        fn provider(&self) -> Provider {
            Provider::BankTransfer
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                batch: self.batch_of_one || self.short_batches,
                max_batch_size: if self.short_batches { 2 } else { 1 },
                ..Capabilities::default()
            }
        }
        async fn send_batch(
            &self,
            instructions: &[PayoutInstruction],
        ) -> Result<Vec<Result<SendReceipt, ProviderError>>, ProviderError> {
            let mut out = Vec::new();
            for i in instructions {
                out.push(self.send(i).await);
                if self.short_batches {
                    break;
                }
            }
            Ok(out)
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
    const PLANTED: [(Plant, &str); 6] = [
        (|f| f.fresh_reference_per_send = true, "same reference"),
        (
            |f| f.short_batches = true,
            "must answer each instruction of a batch of two",
        ),
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

    /// An adapter whose every delivery verifies to one event of ours: with a fresh event id each time
    /// (`fresh_ids`), and read as `kind`.
    struct Events {
        fresh_ids: bool,
        kind: crate::provider::ProviderEventKind,
        deliveries: AtomicU32,
    }

    #[async_trait]
    impl PayoutProvider for Events {
        fn provider(&self) -> Provider {
            Provider::StripeConnect
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        async fn send(&self, _: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
            unreachable!("the events check sends nothing")
        }
        async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
            let n = self.deliveries.fetch_add(1, Ordering::Relaxed);
            Ok(vec![ProviderEvent {
                event_id: if self.fresh_ids {
                    format!("evt_{n}")
                } else {
                    "evt_1".into()
                },
                references: vec![crate::provider::EventReference::IdempotencyKey("po_1-1".into())],
                kind: self.kind.clone(),
                occurred_at: None,
                provider_type: "transfer.reversed".into(),
            }])
        }
        async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
            Ok(ProviderStatus::NotFound)
        }
    }

    #[tokio::test]
    async fn the_events_check_catches_unstable_event_ids_and_misread_partial_reversals() {
        use crate::provider::ProviderEventKind;
        let h = HeaderMap::new();
        let paid = fixtures::kes("500.00");
        let deliveries = Deliveries {
            foreign: None,
            ours: (&h, b"ours"),
            partial_reversal: Some(((&h, b"partial"), paid)),
        };
        let partial = ProviderEventKind::PartiallyReversed {
            reversed: fixtures::kes("120.00"),
            reason: "reversed in part".into(),
        };
        let adapter = |fresh_ids: bool, kind: ProviderEventKind| Events {
            fresh_ids,
            kind,
            deliveries: AtomicU32::new(0),
        };
        check_events(&adapter(false, partial.clone()), deliveries).await;
        let failure = |adapter: Events| async move {
            let Err(panic) = AssertUnwindSafe(check_events(&adapter, deliveries))
                .catch_unwind()
                .await
            else {
                panic!("the check passed an adapter it should fail");
            };
            panic.downcast_ref::<String>().cloned().unwrap_or_default()
        };
        let unstable = failure(adapter(true, partial)).await;
        assert!(unstable.contains("duplicate delivery"), "{unstable}");
        let full = ProviderEventKind::Reversed {
            reason: "transfer reversed".into(),
        };
        let misread = failure(adapter(false, full)).await;
        assert!(misread.contains("must be read as one"), "{misread}");
        let too_much = ProviderEventKind::PartiallyReversed {
            reversed: paid,
            reason: "all of it".into(),
        };
        let all = failure(adapter(false, too_much)).await;
        assert!(all.contains("less than"), "{all}");
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
