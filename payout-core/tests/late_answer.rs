//! A webhook that settles an attempt before the send's own answer is stored: the late, weaker answer must
//! not downgrade the attempt's outcome, overwrite the notes, or add a transition.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use http::HeaderMap;
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{Actor, AttemptOutcome, Consultation, Period, Provider, Recipient};
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
use tokio::sync::{Mutex, oneshot};

/// Holds each send until the test releases it; webhooks name our idempotency key.
struct Gated {
    release: Mutex<Option<oneshot::Receiver<()>>>,
    answer: ProviderStatus,
}

#[async_trait]
impl PayoutProvider for Gated {
    fn provider(&self) -> Provider {
        Provider::MpesaB2c
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn send(&self, _: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let gate = self.release.lock().await.take();
        if let Some(gate) = gate {
            let _ = gate.await;
        }
        Ok(SendReceipt {
            reference: Some("AG_late".into()),
            status: self.answer.clone(),
            note: "accepted late".into(),
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
    async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        Ok(ProviderStatus::Accepted)
    }
}

async fn race(
    webhook_status: &str,
) -> (
    PayoutStatus,
    AttemptOutcome,
    Vec<String>,
    Option<String>,
    Option<String>,
) {
    let (tx, rx) = oneshot::channel();
    let provider = Arc::new(Gated {
        release: Mutex::new(Some(rx)),
        answer: ProviderStatus::Accepted,
    });
    let store = Arc::new(MemoryStore::new());
    let jan = Period::new(
        chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
    )
    .unwrap();
    let service = Arc::new(
        PayoutService::builder()
            .store(store.clone())
            .consultations(Arc::new(StaticConsultations::new(vec![Consultation {
                appointment_id: "a1".into(),
                doctor_id: "dr-a".into(),
                completed_at: Utc.with_ymd_and_hms(2025, 1, 5, 9, 0, 0).unwrap(),
            }])))
            .directory(Arc::new(StaticDirectory::new([Recipient {
                doctor_id: "dr-a".into(),
                name: "A".into(),
                email: "a@example.com".into(),
                mpesa_phone_number: Some("254712345678".into()),
                ..Default::default()
            }])))
            .provider(provider)
            .clock(Arc::new(ManualClock::new(
                Utc.with_ymd_and_hms(2025, 2, 2, 0, 0, 0).unwrap(),
            )))
            .ids(Arc::new(SequentialIds::default()))
            .build()
            .unwrap(),
    );
    let admin = Actor::admin("a");
    let id = service
        .calculate_period(&admin, Some(jan), &CalculationPolicy::default())
        .await
        .unwrap()
        .created[0]
        .clone();
    service.approve(&admin, &id).await.unwrap();
    let s = service.clone();
    let tid = id.clone();
    let trigger = tokio::spawn(async move { s.trigger(&Actor::admin("a"), &tid, Provider::MpesaB2c).await });
    // Wait (bounded) until the attempt is committed and the send is in flight.
    for _ in 0..1000 {
        if !store.attempts(&id).await.unwrap().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("x-test-token", "t0k3n".parse().unwrap());
    let body = serde_json::json!({"id": "evt-1", "key": format!("{id}-1"), "status": webhook_status}).to_string();
    service
        .handle_webhook(Provider::MpesaB2c, &headers, body.as_bytes())
        .await
        .unwrap();
    tx.send(()).unwrap();
    trigger.await.unwrap().unwrap();
    let p = store.get(&id).await.unwrap();
    let attempt = store.attempts(&id).await.unwrap().remove(0);
    let actions = store
        .audit_trail(&id)
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
        Some("AG_late"),
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
