//! Holds end to end over the in-memory store (issue 17, item 4): a held payout is never sent, by a
//! single trigger, a retry, a bulk trigger or a run, and says why; a doctor's hold covers the
//! doctor's payouts, those created later included; release needs a second admin when four eyes is
//! on; every hold and release is audited.

mod common;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{Actor, DoctorId, HoldScope, Payout, PayoutId, Provider, RunAction};
use payout_core::error::Error;
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{CalculationPolicy, ManualPayout, PayoutService, ServicePolicy};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::{Page, PayoutFilter, PayoutStore};

use common::rail::Rail;
use common::{consultation, month, recipient};

fn one() -> Actor {
    Actor::admin("one")
}

fn two() -> Actor {
    Actor::admin("two")
}

struct Setup {
    service: PayoutService,
    store: Arc<MemoryStore>,
    mpesa: Arc<Rail>,
}

/// Doctors `dr-1` and `dr-2`, two January consultations each, an M-Pesa rail.
fn setup(four_eyes: bool) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let mpesa = Arc::new(Rail::new(Provider::MpesaB2c));
    let consultations = ["dr-1", "dr-2"]
        .iter()
        .flat_map(|d| (0..2).map(move |k| consultation(&format!("apt-{d}-{k}"), d, 2025, 1, 10)))
        .collect();
    let mut doctors = vec![recipient("dr-1"), recipient("dr-2")];
    for d in &mut doctors {
        d.preferred_provider = Some(Provider::MpesaB2c);
    }
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(doctors)))
        .provider(mpesa.clone())
        .clock(Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2025, 2, 3, 8, 0, 0).unwrap(),
        )))
        .ids(Arc::new(SequentialIds::default()))
        .policy(ServicePolicy {
            four_eyes,
            ..Default::default()
        })
        .build()
        .unwrap();
    Setup { service, store, mpesa }
}

impl Setup {
    /// Calculates January and approves both payouts: `po_000001` (dr-1) and `po_000002` (dr-2).
    async fn approved(&self) -> (PayoutId, PayoutId) {
        let report = self
            .service
            .calculate_period(&one(), Some(month(2025, 1)), &CalculationPolicy::default())
            .await
            .unwrap();
        for id in &report.created {
            self.service.approve(&one(), id).await.unwrap();
        }
        (report.created[0].clone(), report.created[1].clone())
    }

    async fn get(&self, id: &PayoutId) -> Payout {
        self.store.get(id).await.unwrap()
    }

    async fn actions(&self, id: &PayoutId) -> Vec<String> {
        self.store
            .audit_trail(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

fn on_hold(e: &Error, scope: HoldScope, reason: &str) -> bool {
    matches!(e, Error::OnHold { scope: s, reason: r, .. } if *s == scope && r.contains(reason))
}

#[tokio::test]
async fn a_held_payout_is_sent_by_no_path_until_a_second_admin_releases_it() {
    let s = setup(true);
    let (held, other) = s.approved().await;
    let before = s.get(&held).await;
    let after = s.service.hold(&one(), &held, "  IBAN in doubt ").await.unwrap();
    let hold = after.active_hold().expect("on hold").clone();
    assert_eq!(
        (hold.scope, hold.reason.as_str(), hold.placed_by.as_str()),
        (HoldScope::Payout, "IBAN in doubt", "admin:one")
    );
    assert_eq!(after.status, PayoutStatus::Approved, "a hold changes no status");
    assert_eq!(after.version, before.version + 1);

    let e = s.service.trigger(&one(), &held, Provider::MpesaB2c).await.unwrap_err();
    assert!(on_hold(&e, HoldScope::Payout, "IBAN in doubt"), "{e}");
    assert!(
        e.to_string().contains("IBAN in doubt"),
        "the error names the reason: {e}"
    );
    let bulk = s
        .service
        .bulk_trigger(&one(), &[held.clone(), other.clone()], Provider::MpesaB2c)
        .await;
    assert!(matches!(&bulk[0].result, Err(e) if on_hold(e, HoldScope::Payout, "IBAN")));
    assert_eq!(
        bulk[1].result.as_ref().unwrap().status,
        PayoutStatus::Paid,
        "the other one is sent"
    );
    let run = s
        .service
        .create_run(
            &one(),
            "held",
            PayoutFilter {
                status: Some(PayoutStatus::Approved),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = s.service.trigger_run(&one(), &run.run.id, None).await.unwrap();
    assert_eq!((report.considered, report.held, report.ok), (1, 1, 0));
    let results = s
        .service
        .run_results(&one(), &run.run.id, &Page::default())
        .await
        .unwrap()
        .results;
    assert_eq!(results[0].action, RunAction::Trigger);
    assert!(results[0].message.as_deref().unwrap().contains("IBAN in doubt"));
    assert!(
        !s.mpesa.keys().iter().any(|k| k.starts_with(held.as_str())),
        "nothing of the held payout reached the provider"
    );
    assert_eq!(s.get(&held).await.status, PayoutStatus::Approved);

    // Held payouts are listed as such.
    let listed = s
        .store
        .list(
            &PayoutFilter {
                held: Some(true),
                ..Default::default()
            },
            &Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        listed.payouts.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![held.clone()]
    );

    // Four eyes: not by the admin who placed it.
    assert!(matches!(
        s.service.release(&one(), &held).await,
        Err(Error::Forbidden(m)) if m.contains("four eyes")
    ));
    let released = s.service.release(&two(), &held).await.unwrap();
    assert_eq!(released.active_hold(), None);
    let kept = released.hold.as_ref().expect("the released hold is kept");
    assert_eq!(kept.released_by.as_deref(), Some("admin:two"));
    assert!(matches!(
        s.service.release(&two(), &held).await,
        Err(Error::InvalidInput(m)) if m.contains("not on hold")
    ));
    let actions = s.actions(&held).await;
    assert_eq!(actions[actions.len() - 2..], ["HOLD", "RELEASE"]);
    assert_eq!(
        s.service
            .trigger(&one(), &held, Provider::MpesaB2c)
            .await
            .unwrap()
            .status,
        PayoutStatus::Paid,
        "sent once released"
    );
}

#[tokio::test]
async fn a_failed_payout_on_hold_is_not_retried() {
    let s = setup(true);
    let (id, _) = s.approved().await;
    s.mpesa.refuse(id.as_str());
    assert_eq!(
        s.service.trigger(&one(), &id, Provider::MpesaB2c).await.unwrap().status,
        PayoutStatus::Failed
    );
    s.service.hold(&one(), &id, "the doctor asked to wait").await.unwrap();
    let e = s.service.retry(&one(), &id, None).await.unwrap_err();
    assert!(on_hold(&e, HoldScope::Payout, "asked to wait"), "{e}");
    assert_eq!(s.get(&id).await.status, PayoutStatus::Failed, "not reopened");
    let run = s
        .service
        .create_run(
            &one(),
            "failed",
            PayoutFilter {
                status: Some(PayoutStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = s.service.retry_failed_run(&one(), &run.run.id).await.unwrap();
    assert_eq!((report.considered, report.held), (1, 1));
    assert_eq!(s.get(&id).await.status, PayoutStatus::Failed);
}

#[tokio::test]
async fn a_doctors_hold_covers_the_doctors_payouts_created_later_too() {
    let s = setup(true);
    let (first, other) = s.approved().await;
    let doctor = DoctorId::new("dr-1");
    let report = s.service.hold_doctor(&one(), &doctor, "identity check").await.unwrap();
    assert_eq!(report.payouts, vec![first.clone()]);
    assert_eq!(report.hold.placed_by, "admin:one");
    let hold = s
        .get(&first)
        .await
        .active_hold()
        .cloned()
        .expect("held with its doctor");
    assert_eq!(hold.scope, HoldScope::Doctor);
    assert!(s.get(&other).await.active_hold().is_none(), "another doctor's payout");
    assert!(matches!(
        s.service.hold_doctor(&two(), &doctor, "again").await,
        Err(Error::DoctorAlreadyHeld(_))
    ));

    // A payout created after the hold carries no hold of its own, and is still not sent.
    let later = s
        .service
        .create_manual(
            &two(),
            ManualPayout {
                doctor_id: doctor.clone(),
                amount: Money::parse("700", Currency::KES).unwrap(),
                period: None,
                notes: None,
            },
        )
        .await
        .unwrap();
    s.service.approve(&one(), &later.id).await.unwrap();
    assert!(s.get(&later.id).await.active_hold().is_none());
    let e = s
        .service
        .trigger(&one(), &later.id, Provider::MpesaB2c)
        .await
        .unwrap_err();
    assert!(on_hold(&e, HoldScope::Doctor, "identity check"), "{e}");
    let bulk = s
        .service
        .bulk_trigger(&one(), &[later.id.clone(), first.clone()], Provider::MpesaB2c)
        .await;
    assert!(
        bulk.iter()
            .all(|o| matches!(&o.result, Err(e) if on_hold(e, HoldScope::Doctor, "identity")))
    );
    assert!(s.mpesa.keys().is_empty(), "nothing of the doctor's was sent");

    // The doctor's payouts are released with the doctor, not one by one.
    assert!(matches!(
        s.service.release(&two(), &first).await,
        Err(Error::InvalidInput(m)) if m.contains("release the doctor's hold")
    ));
    assert!(matches!(
        s.service.release_doctor(&one(), &doctor).await,
        Err(Error::Forbidden(_))
    ));
    let released = s.service.release_doctor(&two(), &doctor).await.unwrap();
    assert_eq!(released.payouts, vec![first.clone()]);
    assert!(s.get(&first).await.active_hold().is_none());
    assert_eq!(s.actions(&first).await.last().map(String::as_str), Some("RELEASE"));
    assert!(matches!(
        s.service.release_doctor(&two(), &doctor).await,
        Err(Error::DoctorNotHeld(_))
    ));
    for id in [&first, &later.id] {
        assert_eq!(
            s.service.trigger(&one(), id, Provider::MpesaB2c).await.unwrap().status,
            PayoutStatus::Paid
        );
    }
}

#[tokio::test]
async fn only_admins_hold_with_a_reason_and_what_can_no_longer_be_sent_is_not_held() {
    let s = setup(false);
    let (id, paid) = s.approved().await;
    s.service.trigger(&one(), &paid, Provider::MpesaB2c).await.unwrap();
    for actor in [Actor::system("cron"), Actor::doctor("dr-1")] {
        assert!(matches!(
            s.service.hold(&actor, &id, "reason").await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            s.service.hold_doctor(&actor, &DoctorId::new("dr-1"), "reason").await,
            Err(Error::Forbidden(_))
        ));
    }
    for bad in ["", "   ", &"x".repeat(501)] {
        assert!(matches!(
            s.service.hold(&one(), &id, bad).await,
            Err(Error::InvalidInput(_))
        ));
    }
    assert!(matches!(
        s.service.hold(&one(), &paid, "too late").await,
        Err(Error::InvalidInput(m)) if m.contains("PAID")
    ));
    s.service.hold(&one(), &id, "first").await.unwrap();
    assert!(matches!(
        s.service.hold(&two(), &id, "second").await,
        Err(Error::InvalidInput(m)) if m.contains("already on hold")
    ));
    // Four eyes off: the admin who placed a hold may release it.
    s.service.release(&one(), &id).await.unwrap();
    assert_eq!(s.service.doctor_holds(&one(), &Page::default()).await.unwrap().total, 0);
}
