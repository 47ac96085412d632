//! The calculation's look-back through the service: consultations completed after their month was
//! calculated are paid late, once; paid consultations reversed since are clawed back, once, and a
//! clawback larger than what the doctor earns carries the remainder forward.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use payout_core::calculation::CalculationPolicy;
use payout_core::clock::{ManualClock, SequentialIds};
use payout_core::domain::{Actor, AuditEntry, Consultation, ItemKind, Payout, PayoutId, Reversal};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{CalculationReport, PayoutService};
use payout_core::source::{StaticConsultations, StaticDirectory};
use payout_core::status::PayoutStatus;
use payout_core::store::{Holder, PayoutChange, PayoutStore};

mod common;
use common::{consultation, month, recipient};

fn kes(units: i64) -> Money {
    Money::from_minor_units(units * 100, Currency::KES)
}

fn admin() -> Actor {
    Actor::admin("admin-1")
}

/// The store and the payout ids every run shares; each run reads the host's data as it is then.
struct Host {
    store: Arc<MemoryStore>,
    ids: Arc<SequentialIds>,
}

impl Host {
    fn new() -> Self {
        Host {
            store: Arc::new(MemoryStore::new()),
            ids: Arc::new(SequentialIds::default()),
        }
    }

    /// Calculates `month` of 2025 as of its next month's 2nd, with the host's `consultations` and
    /// `reversals` as they are then.
    async fn run(
        &self,
        m: u32,
        policy: &CalculationPolicy,
        consultations: Vec<Consultation>,
        reversals: Vec<Reversal>,
    ) -> CalculationReport {
        let store: Arc<dyn PayoutStore> = self.store.clone();
        let service = PayoutService::builder()
            .store(store)
            .consultations(Arc::new(
                StaticConsultations::new(consultations).with_reversals(reversals),
            ))
            .directory(Arc::new(StaticDirectory::new(["dr-a", "dr-b", "dr-c"].map(recipient))))
            .clock(Arc::new(ManualClock::new(
                Utc.with_ymd_and_hms(2025, m + 1, 2, 8, 0, 0).unwrap(),
            )))
            .ids(self.ids.clone())
            .build()
            .unwrap();
        service
            .calculate_period(&admin(), Some(month(2025, m)), policy)
            .await
            .unwrap()
    }

    async fn payout_of(&self, report: &CalculationReport, doctor: &str) -> Payout {
        for id in &report.created {
            let p = self.store.get(id).await.unwrap();
            if p.doctor_id.as_str() == doctor {
                return p;
            }
        }
        panic!("no payout of {doctor} in {report:?}");
    }

    /// (kind, reference, amount) of each of `id`'s items.
    async fn items(&self, id: &PayoutId) -> Vec<(ItemKind, String, Money)> {
        self.store
            .items(id)
            .await
            .unwrap()
            .into_iter()
            .map(|i| (i.kind, i.reference, i.amount))
            .collect()
    }

    /// Moves `payout` to PAID (approved, sent, settled) as the provider's answer would.
    async fn settle(&self, payout: &Payout) {
        let mut p = payout.clone();
        for to in [PayoutStatus::Approved, PayoutStatus::Processing, PayoutStatus::Paid] {
            let at = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
            let mut change = PayoutChange::of(&p, at);
            change.new_status = Some(to);
            change.audit.push(AuditEntry {
                payout_id: p.id.clone(),
                actor: "system:test".into(),
                at,
                action: to.as_str().into(),
                from: Some(p.status),
                to: Some(to),
                detail: String::new(),
            });
            p = self.store.apply(change).await.unwrap();
        }
    }
}

fn reversal(id: &str, doctor: &str, at: DateTime<Utc>) -> Reversal {
    Reversal {
        appointment_id: id.into(),
        doctor_id: doctor.into(),
        reversed_at: at,
        reason: "refunded".into(),
    }
}

#[tokio::test]
async fn a_consultation_completed_after_its_month_was_calculated_is_paid_late_once() {
    let host = Host::new();
    let policy = CalculationPolicy::default();
    let january = vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("a2", "dr-a", 2025, 1, 20),
    ];
    let jan = host.run(1, &policy, january.clone(), Vec::new()).await;
    assert_eq!(jan.created.len(), 1);

    // a-late happened on January 28 but was marked completed only after January was calculated.
    let mut host_data = january;
    host_data.push(consultation("a-late", "dr-a", 2025, 1, 28));
    host_data.push(consultation("a3", "dr-a", 2025, 2, 4));
    let feb = host.run(2, &policy, host_data.clone(), Vec::new()).await;
    assert_eq!(feb.late, 1, "{feb:?}");
    assert!(
        feb.already_paid.is_empty(),
        "held consultations of the look-back are expected: {feb:?}"
    );
    let paid = host.payout_of(&feb, "dr-a").await;
    assert_eq!(paid.amount_due, kes(1000));
    let items = host.store.items(&paid.id).await.unwrap();
    assert_eq!(items[0].reference, "a-late");
    assert_eq!(
        items[0].occurred_at,
        Utc.with_ymd_and_hms(2025, 1, 28, 10, 0, 0).unwrap(),
        "dated when it happened"
    );
    assert_eq!(
        items[0].description,
        "Late consultation a-late of 2025-01-28 at 500.00 KES"
    );
    let create = &host.store.audit_trail(&paid.id).await.unwrap()[0];
    assert!(
        create
            .detail
            .ends_with("late (completed before 2025-02-01, not paid before): a-late"),
        "{}",
        create.detail
    );

    // March's run reads the same look-back: nothing is paid twice.
    let march = host.run(3, &policy, host_data.clone(), Vec::new()).await;
    assert!(march.created.is_empty() && march.late == 0, "{march:?}");

    // Without a look-back, a late consultation is left for a run that has one.
    let other = Host::new();
    let no_lookback = CalculationPolicy {
        lookback_days: 0,
        ..Default::default()
    };
    other
        .run(
            1,
            &no_lookback,
            vec![consultation("b1", "dr-b", 2025, 1, 3)],
            Vec::new(),
        )
        .await;
    let late_b = vec![
        consultation("b1", "dr-b", 2025, 1, 3),
        consultation("b-late", "dr-b", 2025, 1, 30),
    ];
    let feb = other.run(2, &no_lookback, late_b.clone(), Vec::new()).await;
    assert!(feb.created.is_empty() && feb.late == 0, "{feb:?}");
    let feb = other.run(2, &policy, late_b, Vec::new()).await;
    assert_eq!(feb.late, 1, "a later run with a look-back pays it: {feb:?}");
}

#[tokio::test]
async fn carried_consultations_are_never_paid_again_as_late_ones() {
    let host = Host::new();
    let policy = CalculationPolicy {
        minimum_payout: Some(kes(1200)),
        ..Default::default()
    };
    let data = vec![
        consultation("c1", "dr-c", 2025, 1, 3),
        consultation("c2", "dr-c", 2025, 1, 4),
    ];
    let jan = host.run(1, &policy, data.clone(), Vec::new()).await;
    assert_eq!(jan.carried_over, vec!["dr-c".into()], "1000 is below the minimum");
    let held = host
        .store
        .held_consultations(&["c1".into(), "c2".into()])
        .await
        .unwrap();
    assert!(
        held.iter().all(|h| h.held_by == Holder::CarryOver(month(2025, 1))) && held.len() == 2,
        "{held:?}"
    );

    let mut data = data;
    data.push(consultation("c3", "dr-c", 2025, 2, 10));
    let feb = host.run(2, &policy, data, Vec::new()).await;
    assert_eq!(feb.late, 0, "{feb:?}");
    let paid = host.payout_of(&feb, "dr-c").await;
    assert_eq!(paid.amount_due, kes(1500), "the carried 1000 and c3, c1 and c2 once");
    let kinds: Vec<ItemKind> = host.items(&paid.id).await.into_iter().map(|i| i.0).collect();
    assert_eq!(kinds, [ItemKind::Consultation, ItemKind::CarryOver]);
}

#[tokio::test]
async fn a_paid_consultation_reversed_since_is_clawed_back_once() {
    let host = Host::new();
    let policy = CalculationPolicy::default();
    let mut data = vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("a2", "dr-a", 2025, 1, 20),
        consultation("b1", "dr-b", 2025, 1, 21),
    ];
    let jan = host.run(1, &policy, data.clone(), Vec::new()).await;
    host.settle(&host.payout_of(&jan, "dr-a").await).await;
    // dr-b's January payout is not paid yet: its reversal is not clawed back (cancel it instead).
    let refunds = vec![
        reversal("a1", "dr-a", Utc.with_ymd_and_hms(2025, 2, 3, 9, 0, 0).unwrap()),
        reversal("b1", "dr-b", Utc.with_ymd_and_hms(2025, 2, 3, 9, 0, 0).unwrap()),
    ];
    data.extend([
        consultation("a3", "dr-a", 2025, 2, 5),
        consultation("a4", "dr-a", 2025, 2, 6),
        consultation("a5", "dr-a", 2025, 2, 7),
    ]);
    let feb = host.run(2, &policy, data.clone(), refunds.clone()).await;
    assert_eq!(feb.clawbacks, 1, "{feb:?}");
    let paid = host.payout_of(&feb, "dr-a").await;
    assert_eq!(paid.amount_due, kes(1000), "three at 500, less a1's 500");
    let items = host.items(&paid.id).await;
    assert_eq!(items[3], (ItemKind::Clawback, "a1".to_string(), kes(-500)));
    let create = &host.store.audit_trail(&paid.id).await.unwrap()[0];
    assert!(
        create.detail.ends_with("; clawed back 500.00 KES: a1"),
        "{}",
        create.detail
    );

    // The reversal is still in March's look-back: it is not taken twice.
    let march = host.run(3, &policy, data, refunds).await;
    assert_eq!(march.clawbacks, 0, "{march:?}");
    assert!(march.created.is_empty(), "{march:?}");
}

#[tokio::test]
async fn clawbacks_larger_than_the_earnings_carry_the_remainder_forward() {
    let host = Host::new();
    let policy = CalculationPolicy::default();
    let mut data = vec![
        consultation("a1", "dr-a", 2025, 1, 3),
        consultation("a2", "dr-a", 2025, 1, 20),
    ];
    let jan = host.run(1, &policy, data.clone(), Vec::new()).await;
    host.settle(&host.payout_of(&jan, "dr-a").await).await;

    // Both January consultations are refunded and dr-a completes one in February: 500 - 1000.
    let refunds = vec![
        reversal("a1", "dr-a", Utc.with_ymd_and_hms(2025, 2, 3, 9, 0, 0).unwrap()),
        reversal("a2", "dr-a", Utc.with_ymd_and_hms(2025, 2, 4, 9, 0, 0).unwrap()),
    ];
    data.push(consultation("a3", "dr-a", 2025, 2, 10));
    let feb = host.run(2, &policy, data.clone(), refunds.clone()).await;
    assert!(feb.created.is_empty(), "{feb:?}");
    assert_eq!(feb.carried_over, vec!["dr-a".into()]);
    assert_eq!(feb.clawbacks, 2);
    let open = host.store.open_carry_overs(month(2025, 3).start).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].amount, kes(-500), "the remainder is carried forward");
    assert_eq!(
        host.store.clawbacks_due(&["a1".into(), "a2".into()]).await.unwrap(),
        Vec::new(),
        "the carry-over recorded both clawbacks"
    );

    // March: three consultations (1500) settle the -500 carried.
    data.extend([
        consultation("a4", "dr-a", 2025, 3, 2),
        consultation("a5", "dr-a", 2025, 3, 3),
        consultation("a6", "dr-a", 2025, 3, 4),
    ]);
    let march = host.run(3, &policy, data, refunds).await;
    assert_eq!(march.clawbacks, 0, "{march:?}");
    assert_eq!(march.late, 0, "a3 is held by the carry-over: {march:?}");
    let paid = host.payout_of(&march, "dr-a").await;
    assert_eq!(paid.amount_due, kes(1000));
    let carried: Vec<_> = host
        .items(&paid.id)
        .await
        .into_iter()
        .filter(|i| i.0 == ItemKind::CarryOver)
        .collect();
    assert_eq!(
        carried,
        vec![(ItemKind::CarryOver, "2025-02-01..2025-02-28".to_string(), kes(-500))]
    );
}
