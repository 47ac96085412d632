//! Provider batches (issue 15 item 3): a batching provider deduplicates by batch id only (PayPal's
//! `sender_batch_id`), so an attempt is only ever re-sent inside the very batch it was first sent in.
//! These tests drive the engine against a double with PayPal's semantics and count the money moved.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use http::HeaderMap;
use payout_core::clock::{Clock, ManualClock, SequentialIds};
use payout_core::domain::{Actor, AttemptOutcome, Consultation, PayoutDestination, PayoutId, Provider};
use payout_core::error::{ProviderError, ProviderErrorKind, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::service::{CalculationPolicy, PayoutService};
use payout_core::status::PayoutStatus;
use payout_core::store::{AttemptUpdate, PayoutChange, PayoutStore};

use common::{consultation, month, recipient};

/// What the double does with the next create call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Creates the batch and answers.
    Answer,
    /// Creates the batch, then the answer is lost (a timeout after PayPal committed it).
    LoseTheAnswer,
    /// The request never arrives (a crash before the call, a connection reset before PayPal).
    NeverArrives,
}

/// PayPal Payouts as far as money is concerned: one create call per batch id; a batch id it has
/// seen is answered with that batch and moves nothing; a new one pays each of its items; one item
/// whose email contains `invalid` makes it refuse the whole call.
struct BatchRail {
    next: Mutex<Vec<Next>>,
    /// Created batches: id -> keys.
    batches: Mutex<HashMap<String, Vec<String>>>,
    /// Every create call: (batch id, keys), in order.
    calls: Mutex<Vec<(String, Vec<String>)>>,
    /// Keys paid, once per payment.
    paid: Mutex<Vec<String>>,
}

impl BatchRail {
    fn new(plan: &[Next]) -> Arc<Self> {
        Arc::new(BatchRail {
            next: Mutex::new(plan.iter().rev().copied().collect()),
            batches: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            paid: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(String, Vec<String>)> {
        self.calls.lock().unwrap().clone()
    }

    fn paid(&self) -> Vec<String> {
        self.paid.lock().unwrap().clone()
    }
}

fn accepted(key: &str, how: &str) -> std::result::Result<SendReceipt, ProviderError> {
    Ok(SendReceipt {
        reference: Some(format!("item-{key}")),
        status: ProviderStatus::Accepted,
        note: how.to_string(),
    })
}

#[async_trait]
impl PayoutProvider for BatchRail {
    fn provider(&self) -> Provider {
        Provider::PaypalPayouts
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            batch: true,
            max_batch_size: 1000,
            ..Capabilities::default()
        }
    }

    async fn send(&self, i: &PayoutInstruction) -> std::result::Result<SendReceipt, ProviderError> {
        let mut answers = self.send_batch(std::slice::from_ref(i)).await?;
        answers.pop().unwrap()
    }

    async fn send_batch(
        &self,
        instructions: &[PayoutInstruction],
    ) -> std::result::Result<Vec<std::result::Result<SendReceipt, ProviderError>>, ProviderError> {
        let ids: HashSet<Option<&str>> = instructions.iter().map(|i| i.batch_id.as_deref()).collect();
        assert_eq!(ids.len(), 1, "one call carries one batch: {ids:?}");
        let batch_id = instructions[0]
            .batch_id
            .clone()
            .expect("a batching provider's attempts name their batch");
        let mut keys: Vec<String> = instructions.iter().map(|i| i.idempotency_key.clone()).collect();
        keys.sort();
        self.calls.lock().unwrap().push((batch_id.clone(), keys.clone()));
        let next = self.next.lock().unwrap().pop().unwrap_or(Next::Answer);
        if next == Next::NeverArrives {
            return Err(ProviderError::new(
                Provider::PaypalPayouts,
                ProviderErrorKind::Ambiguous,
                "connection reset",
            ));
        }
        if let Some(first) = self.batches.lock().unwrap().get(&batch_id) {
            // A duplicate `sender_batch_id`: the original batch answers, nothing moves.
            assert_eq!(first, &keys, "batch {batch_id} re-sent with other items");
            return Ok(instructions
                .iter()
                .map(|i| accepted(&i.idempotency_key, "duplicate"))
                .collect());
        }
        let invalid: Vec<usize> = instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(&i.destination, PayoutDestination::PaypalEmail { email } if email.contains("invalid")))
            .map(|(n, _)| n)
            .collect();
        if !invalid.is_empty() {
            let refused = ProviderError::new(Provider::PaypalPayouts, ProviderErrorKind::Final, "VALIDATION_ERROR");
            return Ok((0..instructions.len())
                .map(|n| {
                    Err(if invalid.contains(&n) {
                        refused.clone().with_code("VALIDATION_ERROR")
                    } else {
                        refused.clone().with_code(ProviderError::REJECTED_WITH_BATCH)
                    })
                })
                .collect());
        }
        self.batches.lock().unwrap().insert(batch_id, keys.clone());
        self.paid.lock().unwrap().extend(keys);
        if next == Next::LoseTheAnswer {
            return Err(ProviderError::new(
                Provider::PaypalPayouts,
                ProviderErrorKind::Ambiguous,
                "timed out",
            ));
        }
        Ok(instructions
            .iter()
            .map(|i| accepted(&i.idempotency_key, "created"))
            .collect())
    }

    async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> std::result::Result<Vec<ProviderEvent>, WebhookError> {
        Ok(Vec::new())
    }

    async fn lookup(&self, a: &AttemptLookup) -> std::result::Result<ProviderStatus, ProviderError> {
        // PayPal cannot be searched by `sender_batch_id`: without a reference a lookup cannot tell.
        Ok(match &a.provider_reference {
            Some(_) => ProviderStatus::Accepted,
            None => ProviderStatus::Undetermined("no reference".into()),
        })
    }
}

struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    service: PayoutService,
    ids: Vec<PayoutId>,
}

/// `n` doctors' approved January payouts, paid through `rail`; doctor `invalid`'s PayPal email is
/// one PayPal refuses.
async fn approved(n: usize, rail: Arc<BatchRail>, invalid: Option<usize>) -> World {
    let doctors: Vec<String> = (0..n).map(|i| format!("dr-{i:03}")).collect();
    let consultations: Vec<Consultation> = doctors
        .iter()
        .map(|d| consultation(&format!("c-{d}"), d, 2025, 1, 10))
        .collect();
    let recipients = doctors.iter().enumerate().map(|(i, d)| {
        let mut r = recipient(d);
        if Some(i) == invalid {
            r.paypal_payout_email = Some(format!("invalid-{d}@paypal.example.com"));
        }
        r
    });
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(payout_core::source::StaticConsultations::new(consultations)))
        .directory(Arc::new(payout_core::source::StaticDirectory::new(
            recipients.collect::<Vec<_>>(),
        )))
        .provider(rail)
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .build()
        .unwrap();
    let report = service
        .calculate_period(
            &Actor::admin("admin-1"),
            Some(month(2025, 1)),
            &CalculationPolicy::default(),
        )
        .await
        .unwrap();
    let ids = report.created.clone();
    for id in &ids {
        service.approve(&Actor::admin("admin-2"), id).await.unwrap();
    }
    World {
        store,
        clock,
        service,
        ids,
    }
}

impl World {
    async fn bulk_trigger(&self) {
        let out = self
            .service
            .bulk_trigger(&Actor::admin("admin-1"), &self.ids, Provider::PaypalPayouts)
            .await;
        assert!(out.iter().all(|o| o.result.is_ok()), "{out:?}");
    }

    async fn status(&self, id: &PayoutId) -> PayoutStatus {
        self.store.get(id).await.unwrap().status
    }

    async fn reconcile(&self) -> payout_core::service::ReconcileReport {
        self.clock.advance(Duration::hours(1));
        self.service.reconcile(Duration::minutes(30)).await.unwrap()
    }
}

/// Every key's attempt, with its stored batch id.
async fn batches_of(w: &World) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    for id in &w.ids {
        for a in w.store.attempts(id).await.unwrap() {
            out.insert(a.idempotency_key, a.batch_id);
        }
    }
    out
}

/// The batch id is stored with every member's attempt before the create call, and the call carries
/// exactly the stored members.
#[tokio::test]
async fn a_batch_and_its_members_are_stored_before_the_create_call() {
    let rail = BatchRail::new(&[Next::Answer]);
    let w = approved(5, rail.clone(), None).await;
    w.bulk_trigger().await;
    let calls = rail.calls();
    assert_eq!(calls.len(), 1);
    let (batch_id, keys) = &calls[0];
    let stored = w.store.batch_attempts(Provider::PaypalPayouts, batch_id).await.unwrap();
    let members: Vec<String> = stored.iter().map(|a| a.idempotency_key.clone()).collect();
    assert_eq!(&members, keys, "the call carried exactly the stored members");
    assert!(
        batches_of(&w)
            .await
            .values()
            .all(|b| b.as_deref() == Some(batch_id.as_str()))
    );
}

/// The create call went through but its answer was lost: nothing has a reference, and PayPal cannot
/// be searched by batch id. Reconciliation re-sends exactly that batch (same id, same members),
/// PayPal answers it as the duplicate it is, every attempt learns its reference, and each doctor
/// was paid once. Re-sending one attempt alone, under another batch id, would have paid it twice.
#[tokio::test]
async fn a_lost_answer_is_reconciled_by_resending_exactly_that_batch() {
    let rail = BatchRail::new(&[Next::LoseTheAnswer]);
    let w = approved(5, rail.clone(), None).await;
    w.bulk_trigger().await;
    for id in &w.ids {
        assert_eq!(w.status(id).await, PayoutStatus::Processing);
    }
    let report = w.reconcile().await;
    assert_eq!(
        report.resent.len(),
        1,
        "one re-send of the batch settles every member: {report:?}"
    );
    let calls = rail.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0], calls[1], "the same batch id with the same members");
    let mut paid = rail.paid();
    paid.sort();
    paid.dedup();
    assert_eq!(rail.paid().len(), 5, "each doctor paid once");
    assert_eq!(paid.len(), 5);
    for id in &w.ids {
        let attempts = w.store.attempts(id).await.unwrap();
        assert!(attempts[0].provider_reference.is_some(), "{attempts:?}");
    }
    // Now every attempt has a reference: looked up, never sent again.
    w.clock.advance(Duration::hours(2));
    w.reconcile().await;
    assert_eq!(rail.calls().len(), 2);
}

/// The batch never reached PayPal (the request was lost, or the process crashed after committing
/// the attempts): the same re-send creates it, once, and pays each member once.
#[tokio::test]
async fn a_batch_that_never_arrived_is_created_by_the_same_resend() {
    let rail = BatchRail::new(&[Next::NeverArrives]);
    let w = approved(3, rail.clone(), None).await;
    w.bulk_trigger().await;
    assert!(rail.paid().is_empty());
    w.reconcile().await;
    let calls = rail.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0], calls[1]);
    assert_eq!(rail.paid().len(), 3);
}

/// One invalid receiver makes PayPal refuse the whole batch. That payout fails alone; the others'
/// attempts failed with nothing paid, so each is sent again at once as a new attempt (a new key) in
/// a new batch with its own stored id, and paid once.
#[tokio::test]
async fn one_invalid_item_fails_alone_and_the_rest_go_in_a_new_batch() {
    let rail = BatchRail::new(&[]);
    let w = approved(4, rail.clone(), Some(2)).await;
    let out = w
        .service
        .bulk_trigger(&Actor::admin("admin-1"), &w.ids, Provider::PaypalPayouts)
        .await;
    let calls = rail.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].1.len(), 4);
    assert_eq!(calls[1].1.len(), 3);
    assert_ne!(calls[0].0, calls[1].0, "the rest go under a new batch id");
    assert!(
        calls[1].1.iter().all(|k| k.ends_with("-2")),
        "new attempts, new keys: {:?}",
        calls[1].1
    );
    for (n, (id, o)) in w.ids.iter().zip(&out).enumerate() {
        let payout = o.result.as_ref().unwrap();
        let expected = if n == 2 {
            PayoutStatus::Failed
        } else {
            PayoutStatus::Processing
        };
        assert_eq!(payout.status, expected, "{id}");
        let attempts = w.store.attempts(id).await.unwrap();
        if n != 2 {
            assert!(matches!(attempts[0].outcome, AttemptOutcome::Failed { .. }));
            assert_eq!(attempts[1].batch_id.as_deref(), Some(calls[1].0.as_str()));
            let trail = w.store.audit_trail(id).await.unwrap();
            assert!(
                trail
                    .iter()
                    .any(|e| e.action == "RETRY" && e.detail.contains("new batch")),
                "{trail:?}"
            );
        }
    }
    assert_eq!(rail.paid().len(), 3, "the three valid ones, once each");
}

/// A batch is not re-sent once one of its members has failed: if the provider never received it,
/// sent again it would pay that member, whose payout may have been paid by another attempt since.
/// The payout is flagged for a person instead.
#[tokio::test]
async fn a_batch_with_a_failed_member_is_not_resent_but_flagged() {
    let rail = BatchRail::new(&[Next::NeverArrives]);
    let w = approved(3, rail.clone(), None).await;
    w.bulk_trigger().await;
    // A person confirmed the first member failed (as a confirmed resolution records it).
    let first = &w.ids[0];
    let payout = w.store.get(first).await.unwrap();
    let mut change = PayoutChange::of(&payout, w.clock.now());
    change.attempt_update = Some(AttemptUpdate {
        attempt_no: 1,
        outcome: AttemptOutcome::Failed {
            reason: "confirmed by a person".into(),
        },
        provider_reference: None,
        error: None,
    });
    change.new_status = Some(PayoutStatus::Failed);
    w.store.apply(change).await.unwrap();
    let report = w.reconcile().await;
    assert_eq!(rail.calls().len(), 1, "never re-sent: {:?}", rail.calls());
    assert!(rail.paid().is_empty());
    assert_eq!(report.needs_attention.len(), 2, "{report:?}");
}
