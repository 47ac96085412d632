//! Operator actions and approval safety (issue 14, items 6, 7 and 10), end to end over the
//! in-memory store: re-sends go to the committed destination, a trigger after the doctor's details
//! changed is refused until re-approved, the approval policy (four eyes, a second approval above a
//! per-currency amount, approver not triggerer) holds on every path, bulk ones per item, and
//! `resolve` settles an unknown outcome with evidence, asking the provider first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use http::HeaderMap;
use payout_core::clock::{Clock, ManualClock, SequentialIds};
use payout_core::domain::{
    Actor, AttemptOutcome, AuditEntry, DoctorId, Payout, PayoutDestination, PayoutId, Provider, Recipient,
    ResolutionOutcome, ResolutionState,
};
use payout_core::error::{Error, ProviderError, ProviderErrorKind, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::service::{
    ManualPayout, PayoutService, ReconcilePolicy, ResolveRequest, ServicePolicy, SettlementWatch,
};
use payout_core::source::RecipientDirectory;
use payout_core::status::PayoutStatus;
use payout_core::store::{PayoutChange, PayoutStore};

mod common;
use common::recipient;

/// A directory whose profiles an admin may edit while payouts are in flight.
#[derive(Default)]
struct EditableDirectory(Mutex<HashMap<DoctorId, Recipient>>);

impl EditableDirectory {
    fn set(&self, r: Recipient) {
        self.0.lock().unwrap().insert(r.doctor_id.clone(), r);
    }
    fn set_phone(&self, doctor: &str, phone: &str) {
        let mut all = self.0.lock().unwrap();
        let r = all.get_mut(&DoctorId::new(doctor)).unwrap();
        r.mpesa_phone_number = Some(phone.into());
    }
}

#[async_trait]
impl RecipientDirectory for EditableDirectory {
    async fn recipient(&self, doctor_id: &DoctorId) -> payout_core::Result<Option<Recipient>> {
        Ok(self.0.lock().unwrap().get(doctor_id).cloned())
    }
}

/// An M-Pesa double that records every send with the destination it was sent to, answers every
/// send ambiguously (the outcome stays unknown) and every lookup as told.
///
/// When told to ([`Double::resolve_failed_during_resends`]), every send after the first (a re-send by
/// reconciliation) has an operator resolve the payout `FAILED` while that send is in flight, and
/// records what the engine answered.
struct Double {
    sends: Mutex<Vec<(String, PayoutDestination)>>,
    lookup: Mutex<Result<ProviderStatus, ProviderError>>,
    resolver: std::sync::OnceLock<std::sync::Weak<PayoutService>>,
    resolved_during_resends: Mutex<Vec<Result<PayoutStatus, String>>>,
}

impl Double {
    fn new() -> Self {
        Double {
            sends: Mutex::new(Vec::new()),
            lookup: Mutex::new(Ok(ProviderStatus::Accepted)),
            resolver: std::sync::OnceLock::new(),
            resolved_during_resends: Mutex::new(Vec::new()),
        }
    }
    fn resolve_failed_during_resends(&self, service: &Arc<PayoutService>) {
        assert!(self.resolver.set(Arc::downgrade(service)).is_ok(), "told once");
    }
    fn answer_lookups(&self, answer: Result<ProviderStatus, ProviderError>) {
        *self.lookup.lock().unwrap() = answer;
    }
    fn sends(&self) -> Vec<(String, PayoutDestination)> {
        self.sends.lock().unwrap().clone()
    }
}

#[async_trait]
impl PayoutProvider for Double {
    fn provider(&self) -> Provider {
        Provider::MpesaB2c
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            lookup: true,
            ..Default::default()
        }
    }
    async fn send(&self, i: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        let resend = {
            let mut sends = self.sends.lock().unwrap();
            sends.push((i.idempotency_key.clone(), i.destination.clone()));
            sends.len() > 1
        };
        if let Some(service) = self
            .resolver
            .get()
            .and_then(std::sync::Weak::upgrade)
            .filter(|_| resend)
        {
            let request = ResolveRequest {
                outcome: ResolutionOutcome::Failed,
                provider_reference: None,
                note: "no debit on the statement".into(),
            };
            let answer = service.resolve(&admin("ops-1"), &i.payout_id, request).await;
            let answer = answer.map(|p| p.status).map_err(|e| e.to_string());
            self.resolved_during_resends.lock().unwrap().push(answer);
        }
        Err(ProviderError::new(
            Provider::MpesaB2c,
            ProviderErrorKind::Ambiguous,
            "connection reset",
        ))
    }
    async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Ok(Vec::new())
    }
    async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        self.lookup.lock().unwrap().clone()
    }
}

struct Harness {
    service: Arc<PayoutService>,
    store: Arc<MemoryStore>,
    directory: Arc<EditableDirectory>,
    double: Arc<Double>,
    clock: Arc<ManualClock>,
}

fn harness(policy: ServicePolicy) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let directory = Arc::new(EditableDirectory::default());
    for d in ["dr-a", "dr-b"] {
        directory.set(recipient(d));
    }
    let double = Arc::new(Double::new());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    Harness {
        service: Arc::new(build(&store, &directory, &double, &clock, policy)),
        store,
        directory,
        double,
        clock,
    }
}

fn build(
    store: &Arc<MemoryStore>,
    directory: &Arc<EditableDirectory>,
    double: &Arc<Double>,
    clock: &Arc<ManualClock>,
    policy: ServicePolicy,
) -> PayoutService {
    PayoutService::builder()
        .store(store.clone())
        .directory(directory.clone())
        .provider(double.clone())
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .policy(policy)
        .build()
        .unwrap()
}

fn admin(id: &str) -> Actor {
    Actor::admin(id)
}

fn money(text: &str, code: &str) -> Money {
    Money::parse(text, Currency::from_code(code).unwrap()).unwrap()
}

fn no_four_eyes() -> ServicePolicy {
    ServicePolicy {
        four_eyes: false,
        ..Default::default()
    }
}

impl Harness {
    /// A manual payout of `amount` to `doctor`, created by `admin:creator`.
    async fn created(&self, doctor: &str, amount: Money) -> Payout {
        let manual = ManualPayout {
            doctor_id: doctor.into(),
            amount,
            period: None,
            notes: None,
        };
        self.service.create_manual(&admin("creator"), manual).await.unwrap()
    }

    async fn approved(&self, doctor: &str) -> Payout {
        let p = self.created(doctor, money("1000", "KES")).await;
        self.service.approve(&admin("approver"), &p.id).await.unwrap()
    }

    /// Approved as before migration `20261205000300_operator` wrote it: `APPROVED` with an approver
    /// and no approval (no details fingerprint), through the store as an upgraded database holds it.
    async fn approved_before_fingerprints(&self, doctor: &str) -> Payout {
        let p = self.created(doctor, money("1000", "KES")).await;
        let at = self.clock.now();
        let mut change = PayoutChange::of(&p, at);
        change.new_status = Some(PayoutStatus::Approved);
        change.patch.approved_by = Some("admin:approver".into());
        change.audit.push(AuditEntry {
            payout_id: p.id.clone(),
            actor: "admin:approver".into(),
            at,
            action: "APPROVE".into(),
            from: Some(PayoutStatus::Pending),
            to: Some(PayoutStatus::Approved),
            detail: "approved before approvals recorded a details fingerprint".into(),
        });
        let p = self.store.apply(change).await.unwrap();
        assert_eq!((p.status, &p.approval), (PayoutStatus::Approved, &None));
        p
    }

    /// Approved and triggered: `PROCESSING`, its outcome unknown (the double answers ambiguously).
    async fn in_flight(&self, doctor: &str) -> Payout {
        let p = self.approved(doctor).await;
        let p = self
            .service
            .trigger(&admin("trigger"), &p.id, Provider::MpesaB2c)
            .await
            .unwrap();
        assert_eq!(p.status, PayoutStatus::Processing);
        p
    }

    async fn actions(&self, id: &PayoutId) -> Vec<String> {
        let trail = self.store.audit_trail(id).await.unwrap();
        trail.into_iter().map(|a| a.action).collect()
    }

    async fn resolve(&self, by: &str, id: &PayoutId, outcome: ResolutionOutcome) -> payout_core::Result<Payout> {
        let request = ResolveRequest {
            outcome,
            provider_reference: Some("MPESA-QX12".into()),
            note: "M-Pesa statement line 14".into(),
        };
        self.service.resolve(&admin(by), id, request).await
    }
}

fn phone(d: &PayoutDestination) -> String {
    match d {
        PayoutDestination::MpesaPhone { phone } => phone.clone(),
        other => panic!("an M-Pesa destination, not {other:?}"),
    }
}

// ------------------------------------------------------------------- item 7: committed destinations

#[tokio::test]
async fn a_resend_goes_to_the_destination_the_attempt_was_sent_to() {
    let h = harness(ServicePolicy::default());
    let p = h.in_flight("dr-a").await;
    let attempts = h.store.attempts(&p.id).await.unwrap();
    assert_eq!(
        attempts[0].destination.as_ref().map(phone).as_deref(),
        Some("254712345678"),
        "the attempt stores its destination before the call"
    );
    let debug = format!("{:?}", attempts[0]);
    assert!(
        !debug.contains("254712345678"),
        "the destination is masked in Debug: {debug}"
    );
    let json = serde_json::to_string(&attempts[0]).unwrap();
    assert!(!json.contains("254712345678"), "never serialized: {json}");

    // The doctor changes their phone; the provider never received the attempt.
    h.directory.set_phone("dr-a", "254799999999");
    h.double.answer_lookups(Ok(ProviderStatus::NotFound));
    h.clock.advance(Duration::hours(1));
    let report = h.service.reconcile(Duration::minutes(5)).await.unwrap();
    assert_eq!(report.resent, vec![p.id.clone()]);

    let sends = h.double.sends();
    assert_eq!(sends.len(), 2, "sent, then re-sent");
    assert_eq!(sends[0].0, sends[1].0, "the same idempotency key");
    assert_eq!(sends[1].1, sends[0].1, "the re-send goes where the attempt was sent");
    assert_eq!(phone(&sends[1].1), "254712345678");
}

#[tokio::test]
async fn a_trigger_after_the_details_changed_is_refused_until_reapproved() {
    let h = harness(ServicePolicy::default());
    let p = h.approved("dr-a").await;
    let fingerprint = p.approval.as_ref().unwrap().details_fingerprint.clone();
    assert_eq!(fingerprint.len(), 64, "a SHA-256 fingerprint in hex");

    // A change of a display name is not a change of payout details.
    let mut renamed = recipient("dr-a");
    renamed.name = "Dr. A. Renamed".into();
    h.directory.set(renamed);
    assert!(!h.service.details_changed_since_approval(&p).await.unwrap());

    h.directory.set_phone("dr-a", "254799999999");
    assert!(h.service.details_changed_since_approval(&p).await.unwrap());
    let refused = h.service.trigger(&admin("trigger"), &p.id, Provider::MpesaB2c).await;
    assert!(
        matches!(&refused, Err(Error::DetailsChanged { payout_id }) if payout_id == &p.id),
        "{refused:?}"
    );
    assert_eq!(
        h.store.get(&p.id).await.unwrap(),
        p,
        "a refused trigger changes nothing"
    );
    assert!(h.store.attempts(&p.id).await.unwrap().is_empty());
    assert!(h.double.sends().is_empty(), "nothing was sent");

    // The creator of a manual payout may not re-approve it either (four eyes).
    assert!(matches!(
        h.service.reapprove(&admin("creator"), &p.id).await,
        Err(Error::Forbidden(_))
    ));
    let re = h.service.reapprove(&admin("approver-2"), &p.id).await.unwrap();
    assert_eq!(re.status, PayoutStatus::Approved);
    assert_eq!(re.approved_by.as_deref(), Some("admin:approver-2"));
    assert_ne!(re.approval.as_ref().unwrap().details_fingerprint, fingerprint);
    let trail = h.store.audit_trail(&p.id).await.unwrap();
    let reapproval = trail.iter().find(|a| a.action == "REAPPROVE").expect("audited");
    assert!(reapproval.detail.contains(&fingerprint[..12]), "{}", reapproval.detail);
    assert!(
        matches!(
            h.service.reapprove(&admin("approver-2"), &p.id).await,
            Err(Error::InvalidInput(_))
        ),
        "nothing to re-approve once the details are the approved ones"
    );

    h.service
        .trigger(&admin("trigger"), &p.id, Provider::MpesaB2c)
        .await
        .unwrap();
    assert_eq!(
        phone(&h.double.sends()[0].1),
        "254799999999",
        "sent to the re-approved details"
    );
}

#[tokio::test]
async fn bulk_trigger_refuses_changed_details_per_item() {
    let h = harness(ServicePolicy::default());
    let a = h.approved("dr-a").await;
    let b = h.approved("dr-b").await;
    h.directory.set_phone("dr-b", "254700000001");
    let out = h
        .service
        .bulk_trigger(&admin("trigger"), &[a.id.clone(), b.id.clone()], Provider::MpesaB2c)
        .await;
    assert_eq!(out[0].result.as_ref().unwrap().status, PayoutStatus::Processing);
    assert!(
        matches!(out[1].result, Err(Error::DetailsChanged { .. })),
        "{:?}",
        out[1].result
    );
    assert_eq!(h.store.get(&b.id).await.unwrap().status, PayoutStatus::Approved);
    assert_eq!(h.double.sends().len(), 1);
}

/// A payout approved before migration `20261205000300_operator` has no approval fingerprint:
/// nothing says which details were approved. Its trigger (one payout or in bulk) and a second
/// approval are refused until an admin re-approves it for the current details; then it is sent to
/// them.
#[tokio::test]
async fn an_approval_that_predates_the_details_check_is_reapproved_before_it_is_paid() {
    let h = harness(ServicePolicy::default());
    let legacy = h.approved_before_fingerprints("dr-a").await;
    let other = h.approved("dr-b").await;

    let refused = h
        .service
        .trigger(&admin("trigger"), &legacy.id, Provider::MpesaB2c)
        .await;
    assert!(
        matches!(&refused, Err(Error::ApprovalPredatesDetailsCheck { payout_id }) if payout_id == &legacy.id),
        "{refused:?}"
    );
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("predates") && message.contains("re-approve"),
        "says why and what to do: {message}"
    );
    assert_eq!(h.store.get(&legacy.id).await.unwrap(), legacy, "nothing changed");
    let out = h
        .service
        .bulk_trigger(
            &admin("trigger"),
            &[legacy.id.clone(), other.id.clone()],
            Provider::MpesaB2c,
        )
        .await;
    assert!(
        matches!(out[0].result, Err(Error::ApprovalPredatesDetailsCheck { .. })),
        "bulk refuses it per item: {:?}",
        out[0].result
    );
    assert_eq!(out[1].result.as_ref().unwrap().status, PayoutStatus::Processing);
    assert_eq!(h.store.get(&legacy.id).await.unwrap(), legacy, "nothing changed");
    assert!(h.store.attempts(&legacy.id).await.unwrap().is_empty());
    assert_eq!(h.double.sends().len(), 1, "only the fingerprinted payout was sent");

    // A second approval does not complete an approval that vouched for no details.
    let strict = harness(ServicePolicy {
        second_approval_above: vec![money("500", "KES")],
        ..Default::default()
    });
    let large = strict.approved_before_fingerprints("dr-a").await;
    assert!(strict.service.awaits_second_approval(&large));
    let second = strict.service.approve(&admin("second"), &large.id).await;
    assert!(
        matches!(second, Err(Error::ApprovalPredatesDetailsCheck { .. })),
        "{second:?}"
    );
    assert_eq!(strict.store.get(&large.id).await.unwrap(), large, "nothing changed");

    // Re-approved for the current details, it is paid to them.
    h.directory.set_phone("dr-a", "254799999999");
    assert!(h.service.approval_predates_details_check(&legacy));
    let re = h.service.reapprove(&admin("approver-2"), &legacy.id).await.unwrap();
    assert!(!h.service.approval_predates_details_check(&re));
    let trail = h.store.audit_trail(&legacy.id).await.unwrap();
    let reapproval = trail.iter().find(|a| a.action == "REAPPROVE").expect("audited");
    assert!(reapproval.detail.contains("(not recorded) ->"), "{}", reapproval.detail);
    let sent = h
        .service
        .trigger(&admin("trigger"), &legacy.id, Provider::MpesaB2c)
        .await
        .unwrap();
    assert_eq!(sent.status, PayoutStatus::Processing);
    assert_eq!(
        phone(&h.double.sends()[1].1),
        "254799999999",
        "sent to the re-approved details"
    );
}

// ------------------------------------------------------------------------ item 10: approval policy

#[tokio::test]
async fn the_approver_may_not_trigger_when_the_policy_says_so() {
    let h = harness(ServicePolicy {
        approver_may_not_trigger: true,
        ..Default::default()
    });
    let p = h.approved("dr-a").await;
    let refused = h.service.trigger(&admin("approver"), &p.id, Provider::MpesaB2c).await;
    assert!(matches!(refused, Err(Error::Forbidden(_))), "{refused:?}");
    let out = h
        .service
        .bulk_trigger(&admin("approver"), std::slice::from_ref(&p.id), Provider::MpesaB2c)
        .await;
    assert!(
        matches!(out[0].result, Err(Error::Forbidden(_))),
        "bulk obeys it per item"
    );
    assert!(h.double.sends().is_empty());
    h.service
        .trigger(&admin("someone-else"), &p.id, Provider::MpesaB2c)
        .await
        .unwrap();

    // Calculated payouts too: the rule is about approvers, not creators.
    let off = harness(ServicePolicy::default());
    let q = off.approved("dr-a").await;
    off.service
        .trigger(&admin("approver"), &q.id, Provider::MpesaB2c)
        .await
        .expect("off by default");
}

#[tokio::test]
async fn a_second_approval_is_needed_above_the_amount_of_the_payouts_currency() {
    let h = harness(ServicePolicy {
        second_approval_above: vec![money("5000", "KES"), money("100", "USD")],
        ..Default::default()
    });
    let small = h.created("dr-a", money("5000", "KES")).await;
    let large = h.created("dr-b", money("5000.01", "KES")).await;
    let other = h.created("dr-a", money("1", "EUR")).await;
    assert!(!h.service.needs_second_approval(&small), "at the amount: one approval");
    assert!(h.service.needs_second_approval(&large), "above it");
    assert!(
        h.service.needs_second_approval(&other),
        "a currency without an amount: always two"
    );

    let out = h
        .service
        .bulk_approve(&admin("first"), &[small.id.clone(), large.id.clone()])
        .await;
    assert!(out.iter().all(|o| o.result.is_ok()));
    let refused = h
        .service
        .trigger(&admin("trigger"), &large.id, Provider::MpesaB2c)
        .await;
    assert!(matches!(refused, Err(Error::ApprovalRequired(_))), "{refused:?}");
    assert!(h.service.awaits_second_approval(&h.store.get(&large.id).await.unwrap()));
    assert!(
        matches!(
            h.service.approve(&admin("first"), &large.id).await,
            Err(Error::Forbidden(_))
        ),
        "not by the first approver again"
    );
    assert!(
        matches!(
            h.service.approve(&admin("creator"), &large.id).await,
            Err(Error::Forbidden(_))
        ),
        "nor, with four eyes, by the creator"
    );
    let second = h.service.approve(&admin("second"), &large.id).await.unwrap();
    assert_eq!(
        second.approval.as_ref().unwrap().approvers,
        ["admin:first", "admin:second"]
    );
    assert!(h.actions(&large.id).await.contains(&"SECOND_APPROVE".to_string()));
    assert!(
        matches!(
            h.service.approve(&admin("third"), &large.id).await,
            Err(Error::InvalidTransition { .. })
        ),
        "two approvals are all there is"
    );
    let out = h
        .service
        .bulk_trigger(
            &admin("trigger"),
            &[small.id.clone(), large.id.clone()],
            Provider::MpesaB2c,
        )
        .await;
    assert!(out.iter().all(|o| o.result.is_ok()), "{out:?}");
}

#[test]
fn second_approval_amounts_parse_per_currency() {
    let parsed = ServicePolicy::parse_second_approval_above(" USD:5000.00, KES:500000 ").unwrap();
    assert_eq!(parsed, vec![money("5000", "USD"), money("500000", "KES")]);
    assert!(ServicePolicy::parse_second_approval_above("").unwrap().is_empty());
    for bad in ["USD", "USD:abc", "XXQ:5", "USD:-1", "USD:1,USD:2", "JPY:1.5"] {
        assert!(
            matches!(
                ServicePolicy::parse_second_approval_above(bad),
                Err(Error::InvalidInput(_) | Error::Money(_))
            ),
            "{bad}"
        );
    }
}

// ---------------------------------------------------------------------- item 6: a way out with evidence

#[tokio::test]
async fn resolve_refuses_a_claim_the_provider_contradicts() {
    let h = harness(no_four_eyes());
    let p = h.in_flight("dr-a").await;
    let before = h.store.get(&p.id).await.unwrap();
    for (answer, claim) in [
        (ProviderStatus::Paid, ResolutionOutcome::Failed),
        (
            ProviderStatus::Failed("insufficient float".into()),
            ResolutionOutcome::Paid,
        ),
        (ProviderStatus::NotFound, ResolutionOutcome::Paid),
        (ProviderStatus::Returned("unclaimed".into()), ResolutionOutcome::Paid),
    ] {
        h.double.answer_lookups(Ok(answer.clone()));
        let refused = h.resolve("ops", &p.id, claim).await;
        assert!(
            matches!(refused, Err(Error::ResolutionRefused(_))),
            "{answer:?} vs {claim:?}: {refused:?}"
        );
        assert_eq!(
            h.store.get(&p.id).await.unwrap(),
            before,
            "a refused resolution changes nothing"
        );
    }
    let missing_note = h
        .service
        .resolve(
            &admin("ops"),
            &p.id,
            ResolveRequest {
                outcome: ResolutionOutcome::Failed,
                provider_reference: None,
                note: "  ".into(),
            },
        )
        .await;
    assert!(matches!(missing_note, Err(Error::InvalidInput(_))));

    // What the provider confirms is applied.
    h.double.answer_lookups(Ok(ProviderStatus::NotFound));
    let failed = h.resolve("ops", &p.id, ResolutionOutcome::Failed).await.unwrap();
    assert_eq!(failed.status, PayoutStatus::Failed);
}

#[tokio::test]
async fn with_four_eyes_a_resolution_waits_for_a_second_admin_then_a_failure_allows_a_retry() {
    let h = harness(ServicePolicy::default());
    let p = h.in_flight("dr-a").await;
    // M-Pesa's lookup never says more than "accepted": the evidence decides. The evidence is read
    // after the send (a confirmation is refused for an attempt written at or after its request).
    h.double.answer_lookups(Ok(ProviderStatus::Accepted));
    h.clock.advance(Duration::minutes(30));
    let asked = h.resolve("ops-1", &p.id, ResolutionOutcome::Failed).await.unwrap();
    assert_eq!(asked.status, PayoutStatus::Processing, "not applied yet");
    let pending = asked.resolution.clone().unwrap();
    assert_eq!(pending.state, ResolutionState::Pending);
    assert_eq!(pending.requested_by, "admin:ops-1");
    assert!(
        matches!(
            h.resolve("ops-2", &p.id, ResolutionOutcome::Paid).await,
            Err(Error::ResolutionRefused(_))
        ),
        "one pending resolution at a time"
    );
    assert!(
        h.service.retry(&admin("ops-1"), &p.id, None).await.is_err(),
        "no retry before the failure is confirmed"
    );
    assert!(matches!(
        h.service.confirm_resolution(&admin("ops-1"), &p.id).await,
        Err(Error::Forbidden(_))
    ));

    // It survives a restart: a new engine over the same store confirms it.
    let restarted = build(&h.store, &h.directory, &h.double, &h.clock, ServicePolicy::default());
    let confirmed = restarted.confirm_resolution(&admin("ops-2"), &p.id).await.unwrap();
    assert_eq!(confirmed.status, PayoutStatus::Failed);
    assert!(matches!(
        confirmed.resolution.as_ref().unwrap().state,
        ResolutionState::Confirmed { ref by, .. } if by == "admin:ops-2"
    ));
    let attempts = h.store.attempts(&p.id).await.unwrap();
    assert!(matches!(&attempts[0].outcome, AttemptOutcome::Failed { reason } if reason.contains("M-Pesa statement")));
    assert_eq!(attempts[0].provider_reference.as_deref(), Some("MPESA-QX12"));
    let trail = h.store.audit_trail(&p.id).await.unwrap();
    let confirm = trail.iter().find(|a| a.action == "RESOLVE_CONFIRMED").expect("audited");
    assert_eq!(
        (confirm.from, confirm.to),
        (Some(PayoutStatus::Processing), Some(PayoutStatus::Failed))
    );
    for evidence in [
        "MPESA-QX12",
        "M-Pesa statement line 14",
        "admin:ops-1",
        "admin:ops-2",
        "accepted",
    ] {
        assert!(confirm.detail.contains(evidence), "{evidence} in {}", confirm.detail);
    }
    assert!(h.actions(&p.id).await.contains(&"RESOLVE_REQUESTED".to_string()));

    // Only now: a retry, a new attempt with a new key.
    let retried = h.service.retry(&admin("ops-1"), &p.id, None).await.unwrap();
    assert_eq!(retried.status, PayoutStatus::Processing);
    let sends = h.double.sends();
    assert_eq!(sends.len(), 2);
    assert_ne!(sends[0].0, sends[1].0, "a new idempotency key");
}

#[tokio::test]
async fn a_pending_resolution_can_be_rejected_and_a_paid_one_applies_at_once_without_four_eyes() {
    let h = harness(ServicePolicy::default());
    let p = h.in_flight("dr-a").await;
    h.resolve("ops-1", &p.id, ResolutionOutcome::Paid).await.unwrap();
    let rejected = h
        .service
        .reject_resolution(&admin("ops-2"), &p.id, Some("the statement is another payout's"))
        .await
        .unwrap();
    assert_eq!(rejected.status, PayoutStatus::Processing);
    assert!(matches!(
        rejected.resolution.unwrap().state,
        ResolutionState::Rejected { .. }
    ));
    assert!(matches!(
        h.service.confirm_resolution(&admin("ops-2"), &p.id).await,
        Err(Error::ResolutionRefused(_))
    ));

    let h = harness(no_four_eyes());
    let p = h.in_flight("dr-a").await;
    // A provider that cannot be asked (no reference to look up by): the evidence decides, and
    // the audit says the provider could not confirm it.
    h.double.answer_lookups(Err(ProviderError::new(
        Provider::MpesaB2c,
        ProviderErrorKind::Final,
        "lookup needs a reference",
    )));
    let paid = h.resolve("ops", &p.id, ResolutionOutcome::Paid).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);
    assert_eq!(paid.provider_reference.as_deref(), Some("MPESA-QX12"));
    assert!(paid.processed_at.is_some());
    let trail = h.store.audit_trail(&p.id).await.unwrap();
    let last = trail.last().unwrap();
    assert_eq!(last.action, "RESOLVE_CONFIRMED");
    assert!(last.detail.contains("could not be asked"), "{}", last.detail);
    assert!(
        matches!(
            h.resolve("ops", &p.id, ResolutionOutcome::Paid).await,
            Err(Error::ResolutionRefused(_))
        ),
        "a settled payout is not resolved again"
    );
    assert!(
        h.service.retry(&admin("ops"), &p.id, None).await.is_err(),
        "no retry after PAID"
    );
}

/// The race between an operator and reconciliation: reconciliation re-sends an attempt the
/// provider has no record of, and while that re-send is in flight an operator resolves the payout
/// `FAILED`, which would let `retry` send a new key and pay twice if the re-send lands. The
/// re-send is written first (the attempt is `PENDING` again), so the resolution is refused until
/// no send of the attempt can still be in flight; afterwards it is allowed.
#[tokio::test]
async fn a_failed_resolution_is_refused_while_a_resend_may_be_in_flight() {
    let h = harness(no_four_eyes());
    h.double.resolve_failed_during_resends(&h.service);
    h.double.answer_lookups(Ok(ProviderStatus::NotFound));
    let p = h.in_flight("dr-a").await;

    h.clock.advance(Duration::minutes(10));
    h.service.reconcile(Duration::minutes(5)).await.unwrap();
    let sends = h.double.sends();
    assert_eq!(sends.len(), 2, "sent, then re-sent by reconciliation");
    assert_eq!(sends[0].0, sends[1].0, "the re-send carries the same key");
    let answers = h.double.resolved_during_resends.lock().unwrap().clone();
    assert!(
        matches!(&answers[..], [Err(e)] if e.contains("may still be on its way")),
        "refused during the re-send: {answers:?}"
    );
    assert_eq!(h.store.get(&p.id).await.unwrap().status, PayoutStatus::Processing);
    assert!(
        !h.actions(&p.id).await.contains(&"RESOLVE_CONFIRMED".to_string()),
        "nothing resolved"
    );

    // The re-send has answered (ambiguously): nothing of ours is sending the attempt any more.
    let resolved = h.resolve("ops-1", &p.id, ResolutionOutcome::Failed).await.unwrap();
    assert_eq!(resolved.status, PayoutStatus::Failed);
    let retried = h.service.retry(&admin("ops-1"), &p.id, None).await.unwrap();
    assert_eq!(retried.status, PayoutStatus::Processing);
    let attempts = h.store.attempts(&p.id).await.unwrap();
    assert_eq!(attempts.len(), 2, "a new attempt only after the confirmed failure");
}

/// With four eyes, a `FAILED` resolution is refused already when asked for while a re-send of the
/// attempt may be in flight, not only when confirmed: were it recorded, the re-send could answer
/// before the confirmation and leave the attempt no longer `PENDING`.
#[tokio::test]
async fn with_four_eyes_a_failed_resolution_is_not_asked_for_while_a_resend_may_be_in_flight() {
    let h = harness(ServicePolicy::default());
    h.double.resolve_failed_during_resends(&h.service);
    h.double.answer_lookups(Ok(ProviderStatus::NotFound));
    let p = h.in_flight("dr-a").await;

    h.clock.advance(Duration::minutes(10));
    h.service.reconcile(Duration::minutes(5)).await.unwrap();
    assert_eq!(h.double.sends().len(), 2, "sent, then re-sent by reconciliation");
    let answers = h.double.resolved_during_resends.lock().unwrap().clone();
    assert!(
        matches!(&answers[..], [Err(e)] if e.contains("may still be on its way")),
        "refused during the re-send: {answers:?}"
    );
    let after = h.store.get(&p.id).await.unwrap();
    assert_eq!((after.status, after.resolution), (PayoutStatus::Processing, None));
    assert!(!h.actions(&p.id).await.contains(&"RESOLVE_REQUESTED".to_string()));
}

/// With four eyes, a `FAILED` resolution whose attempt reconciliation re-sent after it was asked
/// for is not confirmed: the evidence predates the re-send, which may have reached the provider and
/// be paid. Once the re-send has answered (here ambiguously) nothing of ours is sending the
/// attempt, so the in-flight guard alone would let the confirmation through, `retry` would send a
/// new key, and both could be paid. The seeded simulation found it (seed 29251: the re-send was
/// accepted and paid, and the provider could not be asked at the confirmation).
#[tokio::test]
async fn a_failed_resolution_is_not_confirmed_after_a_resend_since_it_was_asked() {
    let h = harness(ServicePolicy::default());
    h.double.answer_lookups(Ok(ProviderStatus::NotFound));
    let p = h.in_flight("dr-a").await;
    h.clock.advance(Duration::hours(2));
    let asked = h.resolve("ops-1", &p.id, ResolutionOutcome::Failed).await.unwrap();
    assert_eq!(asked.status, PayoutStatus::Processing, "waits for a second admin");

    h.clock.advance(Duration::minutes(10));
    h.service.reconcile(Duration::minutes(5)).await.unwrap();
    assert_eq!(h.double.sends().len(), 2, "sent, then re-sent by reconciliation");
    h.double.answer_lookups(Err(ProviderError::new(
        Provider::MpesaB2c,
        ProviderErrorKind::Retryable,
        "lookup 502",
    )));
    h.clock.advance(Duration::minutes(10));

    let refused = h.service.confirm_resolution(&admin("ops-2"), &p.id).await;
    assert!(
        matches!(&refused, Err(Error::ResolutionRefused(m)) if m.contains("after this resolution was asked for")),
        "refused: {refused:?}"
    );
    assert_eq!(h.store.get(&p.id).await.unwrap().status, PayoutStatus::Processing);
    assert!(!h.actions(&p.id).await.contains(&"RESOLVE_CONFIRMED".to_string()));
    assert!(
        h.service.retry(&admin("ops-1"), &p.id, None).await.is_err(),
        "no new key"
    );
    assert_eq!(h.double.sends().len(), 2, "nothing more sent");

    // Rejected, it can be asked for again on evidence from after the re-send, and confirmed.
    h.service
        .reject_resolution(&admin("ops-2"), &p.id, Some("re-sent since"))
        .await
        .unwrap();
    h.double.answer_lookups(Ok(ProviderStatus::NotFound));
    h.clock.advance(Duration::minutes(10));
    h.resolve("ops-1", &p.id, ResolutionOutcome::Failed).await.unwrap();
    let failed = h.service.confirm_resolution(&admin("ops-2"), &p.id).await.unwrap();
    assert_eq!(failed.status, PayoutStatus::Failed);
}

/// A payout an operator resolves `PAID` is put on its provider's settlement watch, as a payout a
/// webhook or a lookup finds paid is: reconciliation re-checks it for money coming back. Both ways
/// to `PAID`: at once without four eyes, and confirmed by a second admin with them.
#[tokio::test]
async fn a_payout_resolved_paid_is_put_on_the_settlement_watch() {
    // The double is M-Pesa, whose watch is off by default (its lookup cannot tell): on here.
    let watched = |four_eyes: bool| ServicePolicy {
        four_eyes,
        reconcile: ReconcilePolicy {
            settlement_watch: SettlementWatch {
                mpesa: Duration::days(3),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };

    let h = harness(watched(false));
    let p = h.in_flight("dr-a").await;
    h.clock.advance(Duration::hours(2));
    let paid = h.resolve("ops-1", &p.id, ResolutionOutcome::Paid).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);
    let state = h.store.check_state(&p.id).await.unwrap();
    assert_eq!(
        state.next_check_at,
        Some(h.clock.now() + Duration::days(1)),
        "watched: re-checked a day after it was resolved paid"
    );

    let h = harness(watched(true));
    let p = h.in_flight("dr-a").await;
    h.clock.advance(Duration::hours(2));
    h.resolve("ops-1", &p.id, ResolutionOutcome::Paid).await.unwrap();
    h.clock.advance(Duration::minutes(30));
    let paid = h.service.confirm_resolution(&admin("ops-2"), &p.id).await.unwrap();
    assert_eq!(paid.status, PayoutStatus::Paid);
    let state = h.store.check_state(&p.id).await.unwrap();
    assert_eq!(
        state.next_check_at,
        Some(h.clock.now() + Duration::days(1)),
        "watched from the confirmation on"
    );
}
