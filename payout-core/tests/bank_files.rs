//! Payouts sent by bank file (issue 17, item 3), over the in-memory store: making a file marks its
//! payouts PROCESSING with the file's id as reference, audited, each attempt stored before the file
//! leaves the engine; reading it again gives the same members; the bank's confirmation settles it
//! (all paid, or returned items); bad input changes nothing; reconciliation never looks a file's
//! attempt up nor sends it again through a bank API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use http::HeaderMap;
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{
    Actor, AttemptOutcome, BankAccount, BankFileId, DoctorId, PayoutDestination, PayoutId, Provider, Recipient,
    end_to_end_id,
};
use payout_core::error::{BankFileError, Error, ProviderError, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::service::{
    BankFile, BankFileRequest, BankPayouts, ManualPayout, PayoutService, ReturnedItem, ServicePolicy, Settlement,
};
use payout_core::source::RecipientDirectory;
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter, PayoutStore};

/// A directory an admin may edit while payouts are in flight.
#[derive(Default)]
struct Directory(Mutex<HashMap<DoctorId, Recipient>>);

impl Directory {
    fn set(&self, r: Recipient) {
        self.0.lock().unwrap().insert(r.doctor_id.clone(), r);
    }
}

#[async_trait]
impl RecipientDirectory for Directory {
    async fn recipient(&self, doctor_id: &DoctorId) -> payout_core::Result<Option<Recipient>> {
        Ok(self.0.lock().unwrap().get(doctor_id).cloned())
    }
}

/// A bank API adapter that counts what it is asked and would pay whatever it is sent: were a
/// file's attempt looked up (it answers "never received") and re-sent, it would be paid twice.
#[derive(Default)]
struct BankApi {
    sends: AtomicUsize,
    lookups: AtomicUsize,
}

#[async_trait]
impl PayoutProvider for BankApi {
    fn provider(&self) -> Provider {
        Provider::BankTransfer
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn send(&self, i: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        self.sends.fetch_add(1, Ordering::SeqCst);
        Ok(SendReceipt {
            reference: Some(format!("bt_{}", i.idempotency_key)),
            status: ProviderStatus::Paid,
            note: "paid".into(),
        })
    }
    async fn verify_webhook(&self, _: &HeaderMap, _: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        Err(WebhookError::Unavailable("none".into()))
    }
    async fn lookup(&self, _: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(ProviderStatus::NotFound)
    }
}

fn bank(doctor: &str, account: &str) -> Recipient {
    Recipient {
        doctor_id: doctor.into(),
        name: format!("Dr. {doctor}"),
        email: format!("{doctor}@example.com"),
        bank_details: Some(BankAccount {
            account_name: format!("Dr. {doctor}"),
            account_number: account.into(),
            bank_code: Some("021000021".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Harness {
    service: PayoutService,
    store: Arc<MemoryStore>,
    directory: Arc<Directory>,
    api: Arc<BankApi>,
    clock: Arc<ManualClock>,
}

fn harness(policy: ServicePolicy) -> Harness {
    let store = Arc::new(MemoryStore::new());
    let directory = Arc::new(Directory::default());
    directory.set(bank("dr-a", "1111111111"));
    directory.set(bank("dr-b", "2222222222"));
    directory.set(Recipient {
        doctor_id: "dr-m".into(),
        name: "Dr. M".into(),
        mpesa_phone_number: Some("254712345678".into()),
        ..Default::default()
    });
    let api = Arc::new(BankApi::default());
    let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap()));
    let service = PayoutService::builder()
        .store(store.clone())
        .directory(directory.clone())
        .provider(api.clone())
        .clock(clock.clone())
        .ids(Arc::new(SequentialIds::default()))
        .policy(policy)
        .build()
        .unwrap();
    Harness {
        service,
        store,
        directory,
        api,
        clock,
    }
}

fn admin(id: &str) -> Actor {
    Actor::admin(id)
}

fn usd(cents: i64) -> Money {
    Money::from_minor_units(cents, Currency::USD)
}

fn all_bank() -> BankFileRequest {
    BankFileRequest {
        selection: PayoutFilter::default(),
        payouts: BankPayouts::WithBankDetails,
    }
}

fn ok(_: &BankFile) -> Result<(), String> {
    Ok(())
}

impl Harness {
    /// A manual payout of `cents` for `doctor`, approved (by another admin than its creator).
    async fn approved(&self, doctor: &str, cents: i64) -> PayoutId {
        let p = self.pending(doctor, cents).await;
        self.service.approve(&admin("approver"), &p).await.unwrap();
        p
    }

    async fn pending(&self, doctor: &str, cents: i64) -> PayoutId {
        let manual = ManualPayout {
            doctor_id: doctor.into(),
            amount: usd(cents),
            period: None,
            notes: None,
        };
        self.service.create_manual(&admin("creator"), manual).await.unwrap().id
    }

    /// Every payout with its attempts and audit trail, to show that nothing changed.
    async fn dump(&self) -> Vec<String> {
        let page = self
            .store
            .list(&PayoutFilter::default(), &Page::new(1000, 0))
            .await
            .unwrap();
        let mut out = Vec::new();
        for p in page.payouts {
            let attempts = self.store.attempts(&p.id).await.unwrap();
            let audit = self.store.audit_trail(&p.id).await.unwrap();
            out.push(format!("{p:?} {attempts:?} {audit:?}"));
        }
        out
    }

    async fn status(&self, id: &PayoutId) -> PayoutStatus {
        self.store.get(id).await.unwrap().status
    }
}

#[tokio::test]
async fn a_file_marks_its_payouts_sent_with_their_attempts_stored_first() {
    let h = harness(ServicePolicy::default());
    let a = h.approved("dr-a", 150_000).await;
    let b = h.approved("dr-b", 2_550).await;
    let m = h.approved("dr-m", 9_900).await;
    let pending = h.pending("dr-a", 100).await;

    // What `check` is shown is exactly what is committed: nothing is stored before it answers.
    let seen = Mutex::new(None);
    let file = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), |planned: &BankFile| {
            *seen.lock().unwrap() = Some(planned.members.clone());
            Ok(())
        })
        .await
        .unwrap();
    assert!(BankFileId::is_form(file.id.as_str()), "{}", file.id);
    assert_eq!(seen.lock().unwrap().clone().unwrap(), file.members);
    let members: Vec<&PayoutId> = file.members.iter().map(|i| &i.payout_id).collect();
    let mut expected = vec![&a, &b];
    expected.sort_by_key(|id| format!("{id}-1"));
    assert_eq!(members, expected, "ordered by idempotency key");
    assert_eq!(file.left_out.len(), 1);
    assert_eq!(file.left_out[0].payout_id, m);
    assert!(
        file.left_out[0].reason.contains("no bank details"),
        "{:?}",
        file.left_out
    );
    let totals = file.totals().unwrap();
    assert_eq!((totals.count, totals.sums.clone()), (2, vec![usd(152_550)]));

    for id in [&a, &b] {
        let payout = h.store.get(id).await.unwrap();
        assert_eq!(payout.status, PayoutStatus::Processing);
        assert_eq!(payout.provider, Some(Provider::BankTransfer));
        assert_eq!(payout.provider_reference.as_deref(), Some(file.id.as_str()));
        let attempts = h.store.attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        let attempt = &attempts[0];
        assert_eq!(attempt.idempotency_key, format!("{id}-1"));
        assert_eq!(attempt.batch_id.as_deref(), Some(file.id.as_str()));
        assert_eq!(attempt.provider_reference.as_deref(), Some(file.id.as_str()));
        assert_eq!(attempt.outcome, AttemptOutcome::Pending);
        assert_eq!(attempt.bank_file(), Some(file.id.clone()));
        assert!(matches!(attempt.destination, Some(PayoutDestination::Bank(_))));
        let trigger = h.store.audit_trail(id).await.unwrap().pop().unwrap();
        assert_eq!(trigger.action, "TRIGGER");
        assert_eq!(trigger.actor, "admin:finance");
        assert_eq!(
            (trigger.from, trigger.to),
            (Some(PayoutStatus::Approved), Some(PayoutStatus::Processing))
        );
        assert!(
            trigger.detail.contains(&format!("sent by bank file {}", file.id)),
            "{}",
            trigger.detail
        );
    }
    assert_eq!(h.status(&m).await, PayoutStatus::Approved, "left out, unchanged");
    assert_eq!(
        h.status(&pending).await,
        PayoutStatus::Pending,
        "not approved: not selected"
    );
    assert_eq!(h.api.sends.load(Ordering::SeqCst), 0, "a file calls no bank API");

    // Nothing is left to send: a second file is refused, and changes nothing.
    let before = h.dump().await;
    let again = h.service.send_by_file(&admin("finance"), &all_bank(), ok).await;
    assert!(
        matches!(again, Err(Error::BankFile(BankFileError::Empty(_)))),
        "{again:?}"
    );
    assert_eq!(h.dump().await, before);
}

#[tokio::test]
async fn reading_a_file_again_gives_the_same_members_whatever_changed_since() {
    let h = harness(ServicePolicy::default());
    h.approved("dr-a", 150_000).await;
    h.approved("dr-b", 2_550).await;
    let file = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), ok)
        .await
        .unwrap();
    let again = h.service.bank_file(&admin("other"), &file.id).await.unwrap();
    assert_eq!(again.members, file.members);
    assert_eq!(again.created_at, file.created_at);
    assert!(again.left_out.is_empty());

    // The doctor's account changes and the file is settled: the file is still the file as sent.
    h.directory.set(bank("dr-a", "9999999999"));
    h.clock.advance(Duration::days(2));
    h.service
        .settle_bank_file(&admin("finance"), &file.id, &Settlement::AllPaid)
        .await
        .unwrap();
    let later = h.service.bank_file(&admin("finance"), &file.id).await.unwrap();
    assert_eq!(later.members, file.members);
    assert_eq!(later.created_at, file.created_at);

    let unknown = BankFileId::derive("never made");
    let e = h.service.bank_file(&admin("finance"), &unknown).await.unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::NotFound(_))), "{e}");
    let e = h.service.bank_file(&Actor::doctor("dr-a"), &file.id).await.unwrap_err();
    assert!(matches!(e, Error::Forbidden(_)), "{e}");
}

#[tokio::test]
async fn a_file_the_writer_refuses_marks_nothing() {
    let h = harness(ServicePolicy::default());
    h.approved("dr-a", 150_000).await;
    h.approved("dr-b", 2_550).await;
    let before = h.dump().await;
    let e = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), |_: &BankFile| {
            Err("NACHA carries USD only".to_string())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::BankFile(BankFileError::Unwritable(why)) if why.contains("USD only")),
        "{e}"
    );
    assert_eq!(h.dump().await, before);

    // Other bad requests change nothing either.
    let not_approved = BankFileRequest {
        selection: PayoutFilter {
            status: Some(PayoutStatus::Pending),
            ..Default::default()
        },
        payouts: BankPayouts::WithBankDetails,
    };
    let e = h
        .service
        .send_by_file(&admin("finance"), &not_approved, ok)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e}");
    let stranger = BankFileRequest {
        selection: PayoutFilter::default(),
        payouts: BankPayouts::Assigned(vec!["po_nope".into()]),
    };
    let e = h
        .service
        .send_by_file(&admin("finance"), &stranger, ok)
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::InvalidInput(m) if m.contains("po_nope")), "{e}");
    let e = h
        .service
        .send_by_file(&Actor::doctor("dr-a"), &all_bank(), ok)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Forbidden(_)), "{e}");
    h.service.begin_shutdown();
    let e = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), ok)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ShuttingDown), "{e}");
    assert_eq!(h.dump().await, before);
}

#[tokio::test]
async fn assigned_payouts_and_the_approval_policy_decide_each_member() {
    let h = harness(ServicePolicy {
        approver_may_not_trigger: true,
        ..ServicePolicy::default()
    });
    let a = h.approved("dr-a", 100).await;
    let b = h.approved("dr-b", 200).await;
    let m = h.approved("dr-m", 300).await;
    let a2 = h.approved("dr-a", 400).await;

    // The doctor's details changed since `b` was approved: it is left out, unchanged.
    h.directory.set(bank("dr-b", "2222222229"));
    let request = BankFileRequest {
        selection: PayoutFilter::default(),
        payouts: BankPayouts::Assigned(vec![a.clone(), b.clone(), m.clone()]),
    };
    // The approver may not send what they approved.
    let e = h
        .service
        .send_by_file(&admin("approver"), &request, ok)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::Empty(_))), "{e}");

    let file = h.service.send_by_file(&admin("finance"), &request, ok).await.unwrap();
    let members: Vec<&PayoutId> = file.members.iter().map(|i| &i.payout_id).collect();
    assert_eq!(members, vec![&a], "only what was assigned and may be sent");
    let left: HashMap<&PayoutId, &str> = file
        .left_out
        .iter()
        .map(|l| (&l.payout_id, l.reason.as_str()))
        .collect();
    assert!(left[&b].contains("details changed"), "{left:?}");
    assert!(left[&m].contains("no bank details"), "{left:?}");
    assert_eq!(h.status(&b).await, PayoutStatus::Approved);
    assert_eq!(h.status(&a2).await, PayoutStatus::Approved, "not assigned");
}

#[tokio::test]
async fn all_paid_settles_every_member_once() {
    let h = harness(ServicePolicy::default());
    let a = h.approved("dr-a", 150_000).await;
    let b = h.approved("dr-b", 2_550).await;
    let file = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), ok)
        .await
        .unwrap();
    h.clock.advance(Duration::days(1));
    let report = h
        .service
        .settle_bank_file(&admin("finance"), &file.id, &Settlement::AllPaid)
        .await
        .unwrap();
    let mut paid = report.paid.clone();
    paid.sort();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(paid, both);
    assert!(report.failed.is_empty() && report.returned.is_empty() && report.not_recorded.is_empty());
    for id in [&a, &b] {
        let p = h.store.get(id).await.unwrap();
        assert_eq!(p.status, PayoutStatus::Paid);
        assert_eq!(p.processed_at, Some(h.clock_now()));
        assert_eq!(
            h.store.attempts(id).await.unwrap()[0].outcome,
            AttemptOutcome::Succeeded
        );
        let last = h.store.audit_trail(id).await.unwrap().pop().unwrap();
        assert_eq!(last.action, "PROVIDER_PAID");
        assert_eq!(
            (last.from, last.to),
            (Some(PayoutStatus::Processing), Some(PayoutStatus::Paid))
        );
        assert!(
            last.detail.contains(file.id.as_str()) && last.detail.contains("admin:finance"),
            "{}",
            last.detail
        );
        // Not watched: no lookup can see a file's transfer.
        assert_eq!(h.store.check_state(id).await.unwrap().next_check_at, None);
    }

    // The same settlement again is refused, and changes nothing.
    let before = h.dump().await;
    let e = h
        .service
        .settle_bank_file(&admin("finance"), &file.id, &Settlement::AllPaid)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::Settled { .. })), "{e}");
    assert_eq!(h.dump().await, before);
}

impl Harness {
    fn clock_now(&self) -> chrono::DateTime<Utc> {
        use payout_core::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn returned_items_fail_before_confirmation_and_come_back_after_it() {
    let h = harness(ServicePolicy::default());
    let a = h.approved("dr-a", 150_000).await;
    let b = h.approved("dr-b", 2_550).await;
    let c = h.approved("dr-a", 700).await;
    let file = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), ok)
        .await
        .unwrap();

    // `a` named by the end-to-end id the file gave it, `b` by its payout id.
    let returned = Settlement::Returned {
        items: vec![
            ReturnedItem {
                reference: end_to_end_id(&format!("{a}-1")),
                reason: "R03 no account".into(),
            },
            ReturnedItem {
                reference: b.to_string(),
                reason: "R02 account closed".into(),
            },
        ],
    };
    let report = h
        .service
        .settle_bank_file(&admin("finance"), &file.id, &returned)
        .await
        .unwrap();
    let mut failed = report.failed.clone();
    failed.sort();
    let mut ab = vec![a.clone(), b.clone()];
    ab.sort();
    assert_eq!(failed, ab);
    assert_eq!(report.paid, vec![c.clone()]);
    let attempt = h.store.attempts(&a).await.unwrap().pop().unwrap();
    assert!(
        matches!(&attempt.outcome, AttemptOutcome::Failed { reason } if reason.contains("R03 no account") && reason.contains(file.id.as_str())),
        "{:?}",
        attempt.outcome
    );
    let last = h.store.audit_trail(&a).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.to),
        ("PROVIDER_FAILED", Some(PayoutStatus::Failed))
    );
    assert_eq!(h.status(&c).await, PayoutStatus::Paid);

    // A confirmed failure: retry sends it again, as a new attempt with a new key.
    let retried = h.service.retry(&admin("finance"), &a, None).await.unwrap();
    assert_eq!(retried.status, PayoutStatus::Paid);
    assert_eq!(h.api.sends.load(Ordering::SeqCst), 1);
    assert_eq!(h.store.attempts(&a).await.unwrap().len(), 2);

    // Settled items named again: refused whole, nothing changed (`a` was sent again since, `b`
    // is FAILED already).
    let before = h.dump().await;
    for items in [vec![a.to_string()], vec![b.to_string()]] {
        let again = Settlement::Returned {
            items: items
                .into_iter()
                .map(|reference| ReturnedItem {
                    reference,
                    reason: "R03".into(),
                })
                .collect(),
        };
        let e = h
            .service
            .settle_bank_file(&admin("finance"), &file.id, &again)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BankFile(BankFileError::Settled { .. })), "{e}");
    }
    assert_eq!(h.dump().await, before);

    // `c`, paid by the first settlement, comes back later: PAID -> RETURNED, on the attention queue.
    let late = Settlement::Returned {
        items: vec![ReturnedItem {
            reference: format!("{c}-1"),
            reason: "R06 returned at the originator's request".into(),
        }],
    };
    let report = h
        .service
        .settle_bank_file(&admin("finance"), &file.id, &late)
        .await
        .unwrap();
    assert_eq!(report.returned, vec![c.clone()]);
    assert_eq!(h.status(&c).await, PayoutStatus::Returned);
    let last = h.store.audit_trail(&c).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.from, last.to),
        (
            "PROVIDER_RETURNED",
            Some(PayoutStatus::Paid),
            Some(PayoutStatus::Returned)
        )
    );
    let queue = h.service.attention(&admin("finance"), &Page::default()).await.unwrap();
    assert!(queue.flagged.iter().any(|f| f.payout.id == c), "{queue:?}");
}

#[tokio::test]
async fn a_settlement_with_bad_items_changes_nothing() {
    let h = harness(ServicePolicy::default());
    let a = h.approved("dr-a", 150_000).await;
    h.approved("dr-b", 2_550).await;
    let other = h.approved("dr-a", 10).await;
    let file = h
        .service
        .send_by_file(
            &admin("finance"),
            &BankFileRequest {
                selection: PayoutFilter {
                    doctor_id: Some("dr-b".into()),
                    ..Default::default()
                },
                payouts: BankPayouts::WithBankDetails,
            },
            ok,
        )
        .await
        .unwrap();
    h.service
        .send_by_file(&admin("finance"), &all_bank(), ok)
        .await
        .unwrap();
    let before = h.dump().await;
    let item = |reference: &str, reason: &str| ReturnedItem {
        reference: reference.into(),
        reason: reason.into(),
    };
    let b_id = file.members[0].payout_id.to_string();
    type Expected = fn(&Error) -> bool;
    let cases: Vec<(Settlement, Expected)> = vec![
        // A member of another file.
        (
            Settlement::Returned {
                items: vec![item(a.as_str(), "R03")],
            },
            |e| matches!(e, Error::BankFile(BankFileError::UnknownItem { .. })),
        ),
        (
            Settlement::Returned {
                items: vec![item(other.as_str(), "R03")],
            },
            |e| matches!(e, Error::BankFile(BankFileError::UnknownItem { .. })),
        ),
        (
            Settlement::Returned {
                items: vec![item("nope", "R03")],
            },
            |e| matches!(e, Error::BankFile(BankFileError::UnknownItem { .. })),
        ),
        (Settlement::Returned { items: vec![] }, |e| {
            matches!(e, Error::InvalidInput(_))
        }),
        (
            Settlement::Returned {
                items: vec![item(&b_id, "  ")],
            },
            |e| matches!(e, Error::InvalidInput(_)),
        ),
        (
            Settlement::Returned {
                items: vec![item(&b_id, "R03"), item(&format!("{b_id}-1"), "R03")],
            },
            |e| matches!(e, Error::InvalidInput(_)),
        ),
    ];
    for (settlement, expected) in cases {
        let e = h
            .service
            .settle_bank_file(&admin("finance"), &file.id, &settlement)
            .await
            .unwrap_err();
        assert!(expected(&e), "{settlement:?}: {e}");
    }
    let e = h
        .service
        .settle_bank_file(&admin("finance"), &BankFileId::derive("never"), &Settlement::AllPaid)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::NotFound(_))), "{e}");
    let e = h
        .service
        .settle_bank_file(&Actor::doctor("dr-b"), &file.id, &Settlement::AllPaid)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Forbidden(_)), "{e}");
    assert_eq!(h.dump().await, before);
}

#[tokio::test]
async fn reconciliation_never_looks_up_or_resends_a_file_and_flags_it_when_overdue() {
    let h = harness(ServicePolicy::default());
    let a = h.approved("dr-a", 150_000).await;
    let file = h
        .service
        .send_by_file(&admin("finance"), &all_bank(), ok)
        .await
        .unwrap();

    // Not due before `attention_after` (72 h by default), and then not looked up but flagged.
    h.clock.advance(Duration::hours(1));
    let report = h.service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.examined, 0, "{report:?}");
    h.clock.advance(Duration::hours(72));
    let report = h.service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(report.examined, 1, "{report:?}");
    assert_eq!(report.needs_attention, vec![a.clone()]);
    assert!(report.resent.is_empty() && report.settled.is_empty(), "{report:?}");
    assert_eq!(
        h.api.lookups.load(Ordering::SeqCst),
        0,
        "a file's attempt is never looked up"
    );
    assert_eq!(h.api.sends.load(Ordering::SeqCst), 0, "nor sent through the bank API");
    assert_eq!(h.status(&a).await, PayoutStatus::Processing);
    let queue = h.service.attention(&admin("finance"), &Page::default()).await.unwrap();
    assert!(queue.flagged[0].reason.contains(file.id.as_str()), "{queue:?}");
    h.clock.advance(Duration::days(3));
    h.service.reconcile(Duration::zero()).await.unwrap();
    assert_eq!(
        h.api.lookups.load(Ordering::SeqCst) + h.api.sends.load(Ordering::SeqCst),
        0
    );

    // Settling takes it off the queue.
    h.service
        .settle_bank_file(&admin("finance"), &file.id, &Settlement::AllPaid)
        .await
        .unwrap();
    let queue = h.service.attention(&admin("finance"), &Page::default()).await.unwrap();
    assert_eq!(queue.total, 0, "{queue:?}");
}

#[tokio::test]
async fn a_runs_bank_file_holds_its_bank_payouts_by_method_and_skips_held_ones() {
    let h = harness(ServicePolicy::default());
    // dr-a prefers the bank; dr-b has bank details and a Stripe account, and no preference; dr-m
    // has M-Pesa only (its method is M-Pesa: not a bank payout).
    let mut a = bank("dr-a", "1111111111");
    a.preferred_provider = Some(Provider::BankTransfer);
    h.directory.set(a);
    let mut b = bank("dr-b", "2222222222");
    b.stripe_account_id = Some("acct_b".into());
    h.directory.set(b);
    let pa = h.approved("dr-a", 100).await;
    let pa2 = h.approved("dr-a", 200).await;
    let pb = h.approved("dr-b", 300).await;
    let pm = h.approved("dr-m", 400).await;
    let admin = admin("finance");
    let run = h
        .service
        .create_run(&admin, "February", PayoutFilter::default())
        .await
        .unwrap()
        .run
        .id;
    // Created after the run: not a member, not in its file.
    let outside = h.approved("dr-a", 500).await;
    h.service.hold(&admin, &pa2, "address check").await.unwrap();

    let file = h.service.send_run_by_file(&admin, &run, ok).await.unwrap();
    let members: Vec<&PayoutId> = file.members.iter().map(|m| &m.payout_id).collect();
    assert!(members.contains(&&pa), "{members:?}");
    assert!(!members.contains(&&pm) && !members.contains(&&pb) && !members.contains(&&pa2));
    assert!(!members.contains(&&outside));
    assert_eq!(h.status(&outside).await, PayoutStatus::Approved);
    let left: HashMap<&PayoutId, &str> = file
        .left_out
        .iter()
        .map(|l| (&l.payout_id, l.reason.as_str()))
        .collect();
    assert!(left[&pa2].contains("on hold"), "{left:?}");
    assert!(left[&pb].contains("no method"), "{left:?}");
    assert!(
        !left.contains_key(&pm),
        "another method's payout is not a bank payout: {left:?}"
    );
    assert_eq!(h.status(&pa2).await, PayoutStatus::Approved);
    assert_eq!(h.status(&pm).await, PayoutStatus::Approved);

    // Stored on the run: a result per payout, and the action.
    let results = h.service.run_results(&admin, &run, &Page::default()).await.unwrap();
    let sent = results.results.iter().find(|r| r.payout_id == pa).unwrap();
    assert!(sent.ok && sent.provider == Some(Provider::BankTransfer), "{sent:?}");
    assert!(sent.message.as_deref().unwrap().contains(file.id.as_str()));
    let held = results.results.iter().find(|r| r.payout_id == pa2).unwrap();
    assert!(!held.ok, "{held:?}");
    let events = h.service.run_events(&admin, &run).await.unwrap();
    assert!(events.iter().any(|e| e.action == "BANK_FILE"), "{events:?}");

    // Read again and settled through the run; another run does not have the file.
    let again = h.service.run_bank_file(&admin, &run, &file.id).await.unwrap();
    assert_eq!(again.members, file.members);
    let other = h
        .service
        .create_run(
            &admin,
            "other",
            PayoutFilter {
                doctor_id: Some("dr-m".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .run
        .id;
    let e = h.service.run_bank_file(&admin, &other, &file.id).await.unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::NotFound(_))), "{e}");
    let before = h.dump().await;
    let e = h
        .service
        .settle_run_bank_file(&admin, &other, &file.id, &Settlement::AllPaid)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BankFile(BankFileError::NotFound(_))), "{e}");
    assert_eq!(h.dump().await, before);
    let e = h
        .service
        .send_run_by_file(&admin, &"run-nope".into(), ok)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::RunNotFound(_)), "{e}");

    let report = h
        .service
        .settle_run_bank_file(&admin, &run, &file.id, &Settlement::AllPaid)
        .await
        .unwrap();
    assert_eq!(report.paid, vec![pa.clone()]);
    assert_eq!(h.status(&pa).await, PayoutStatus::Paid);
    let events = h.service.run_events(&admin, &run).await.unwrap();
    assert!(events.iter().any(|e| e.action == "BANK_FILE_SETTLED"), "{events:?}");
}
