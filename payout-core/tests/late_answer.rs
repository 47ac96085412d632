//! Answers that arrive late: a webhook that settles an attempt before the send's own answer is stored,
//! and a slow lookup about an attempt that an admin has retried meanwhile. The late answer must not
//! downgrade the attempt's outcome, overwrite the notes, add a transition, or move the payout while a
//! newer attempt is in flight.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use http::HeaderMap;
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{Actor, AttemptOutcome, PayoutAttempt, PayoutId, Provider};
use payout_core::error::{ProviderError, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::provider::{
    AttemptLookup, Capabilities, EventReference, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderEventKind,
    ProviderStatus, SendReceipt,
};
use payout_core::service::{CalculationPolicy, PayoutService};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::PayoutStore;
use tokio::sync::{Mutex, Notify, oneshot};

mod common;
use common::{consultation, month, recipient};

/// Holds an answer back until the test fires the matching sender; an empty gate lets it through.
type Gate = Mutex<Option<oneshot::Receiver<()>>>;

fn gate() -> (oneshot::Sender<()>, Gate) {
    let (release, held) = oneshot::channel();
    (release, Mutex::new(Some(held)))
}

async fn pass(gate: &Gate) {
    let held = gate.lock().await.take();
    if let Some(held) = held {
        let _ = held.await;
    }
}

/// An M-Pesa stand-in whose answers the test holds back: `send` waits at `send_gate`; a lookup of
/// attempt 1 says it started, waits at `lookup_gate` and then answers "failed". Webhooks carry the
/// test token and a JSON body naming our idempotency key.
#[derive(Default)]
struct Gated {
    send_gate: Gate,
    lookup_gate: Gate,
    lookup_started: Notify,
}

#[async_trait]
impl PayoutProvider for Gated {
    fn provider(&self) -> Provider {
        Provider::MpesaB2c
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn send(&self, i: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        pass(&self.send_gate).await;
        Ok(SendReceipt {
            reference: Some(format!("AG_{}", i.idempotency_key)),
            status: ProviderStatus::Accepted,
            note: "accepted".into(),
        })
    }
    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        if headers.get("x-test-token").map(|v| v.as_bytes()) != Some(b"t0k3n") {
            return Err(WebhookError::BadSignature);
        }
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let kind = match v["status"].as_str() {
            Some("PAID") => ProviderEventKind::Paid,
            _ => ProviderEventKind::Failed {
                reason: "insufficient balance".into(),
            },
        };
        Ok(vec![ProviderEvent {
            event_id: v["id"].as_str().unwrap_or_default().into(),
            references: vec![EventReference::IdempotencyKey(
                v["key"].as_str().unwrap_or_default().into(),
            )],
            kind,
            occurred_at: None,
            provider_type: "test".into(),
        }])
    }
    async fn lookup(&self, a: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        if a.attempt_no == 1 {
            self.lookup_started.notify_one();
            pass(&self.lookup_gate).await;
            return Ok(ProviderStatus::Failed("declined".into()));
        }
        Ok(ProviderStatus::Accepted)
    }
}

/// dr-a's January payout, calculated and approved, to be paid through the gated provider.
struct World {
    service: Arc<PayoutService>,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    id: PayoutId,
}

async fn approved_payout(provider: Arc<Gated>) -> World {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(vec![consultation(
            "a1", "dr-a", 2025, 1, 5,
        )])))
        .directory(Arc::new(StaticDirectory::new([recipient("dr-a")])))
        .provider(provider)
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .build()
        .unwrap();
    let admin = Actor::admin("a");
    let report = service
        .calculate_period(&admin, Some(month(2025, 1)), &CalculationPolicy::default())
        .await
        .unwrap();
    let id = report.created[0].clone();
    service.approve(&admin, &id).await.unwrap();
    World {
        service: Arc::new(service),
        store,
        clock,
        id,
    }
}

/// The provider's webhook about attempt `attempt_no`, authentic.
async fn webhook(w: &World, event_id: &str, attempt_no: u32, status: &str) {
    let mut headers = HeaderMap::new();
    headers.insert("x-test-token", "t0k3n".parse().unwrap());
    let key = PayoutAttempt::key_for(&w.id, attempt_no);
    let body = serde_json::json!({"id": event_id, "key": key, "status": status}).to_string();
    w.service
        .handle_webhook(Provider::MpesaB2c, &headers, body.as_bytes())
        .await
        .unwrap();
}

/// Triggers the payout, delivers a `webhook_status` webhook while the send's answer is held back,
/// then lets the answer through. Returns what was stored.
async fn race(
    webhook_status: &str,
) -> (
    PayoutStatus,
    AttemptOutcome,
    Vec<String>,
    Option<String>,
    Option<String>,
) {
    let (release_send, send_gate) = gate();
    let w = approved_payout(Arc::new(Gated {
        send_gate,
        ..Gated::default()
    }))
    .await;
    let (service, id) = (w.service.clone(), w.id.clone());
    let trigger = tokio::spawn(async move { service.trigger(&Actor::admin("a"), &id, Provider::MpesaB2c).await });
    // Wait (bounded) until the attempt is committed and the send is in flight.
    for _ in 0..1000 {
        if !w.store.attempts(&w.id).await.unwrap().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    webhook(&w, "evt-1", 1, webhook_status).await;
    release_send.send(()).unwrap();
    trigger.await.unwrap().unwrap();
    let p = w.store.get(&w.id).await.unwrap();
    let attempt = w.store.attempts(&w.id).await.unwrap().remove(0);
    let actions = w
        .store
        .audit_trail(&w.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    (p.status, attempt.outcome, actions, p.notes, attempt.provider_reference)
}

#[tokio::test]
async fn a_late_accepted_answer_does_not_undo_a_paid_webhook() {
    let (status, outcome, actions, notes, reference) = race("PAID").await;
    assert_eq!(status, PayoutStatus::Paid);
    assert_eq!(outcome, AttemptOutcome::Succeeded);
    assert_eq!(
        actions,
        ["CREATE", "APPROVE", "TRIGGER", "PROVIDER_PAID", "ATTEMPT_REFERENCE"]
    );
    assert!(notes.unwrap().starts_with("test:"), "the webhook's note stays");
    assert_eq!(
        reference.as_deref(),
        Some("AG_po_000001-1"),
        "the reference learned late is kept"
    );
}

#[tokio::test]
async fn a_late_accepted_answer_keeps_a_confirmed_failure_retryable() {
    let (status, outcome, actions, notes, _) = race("FAILED").await;
    assert_eq!(status, PayoutStatus::Failed);
    assert!(matches!(outcome, AttemptOutcome::Failed { .. }), "{outcome:?}");
    assert_eq!(
        actions.iter().filter(|a| a.starts_with("ATTEMPT_ACCEPTED")).count(),
        0,
        "{actions:?}"
    );
    assert!(notes.unwrap().contains("insufficient balance"));
}

/// Found by the simulation (regression seeds 639, 2397, 3549, 5200). A reconciliation pass looks
/// attempt 1 up; while the provider is slow to answer, attempt 1's failure webhook lands and an admin
/// retries, so attempt 2 (a new key) is in flight. The late answer about attempt 1 must not fail the
/// payout: that would leave it FAILED while attempt 2 pays, and the PAID event of attempt 2 is then
/// ignored ("ignored while FAILED") and reconciliation never looks at it again.
#[tokio::test]
async fn a_late_answer_about_an_older_attempt_never_fails_the_current_one() {
    let (release_lookup, lookup_gate) = gate();
    let provider = Arc::new(Gated {
        lookup_gate,
        ..Gated::default()
    });
    let w = approved_payout(provider.clone()).await;
    let (admin, id) = (Actor::admin("a"), &w.id);
    let p = w.service.trigger(&admin, id, Provider::MpesaB2c).await.unwrap();
    assert_eq!(p.status, PayoutStatus::Processing);
    w.clock.advance(Duration::hours(1));

    let (reconciled, ()) = futures::join!(w.service.reconcile(Duration::minutes(10)), async {
        provider.lookup_started.notified().await;
        webhook(&w, "evt_1", 1, "FAILED").await;
        let p = w.service.retry(&admin, id, None).await.unwrap();
        assert_eq!(p.status, PayoutStatus::Processing, "attempt 2 is in flight");
        release_lookup.send(()).unwrap();
    });
    reconciled.unwrap();

    let attempts = w.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].outcome, AttemptOutcome::Accepted);
    let p = w.store.get(id).await.unwrap();
    assert_eq!(
        p.status,
        PayoutStatus::Processing,
        "the late lookup answer about attempt 1 failed the payout while attempt 2 is in flight; trail: {:#?}",
        w.store
            .audit_trail(id)
            .await
            .unwrap()
            .iter()
            .map(|e| format!("{} {:?}->{:?} {}", e.action, e.from, e.to, e.detail))
            .collect::<Vec<_>>()
    );
}
