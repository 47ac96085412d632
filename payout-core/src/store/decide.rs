//! Which payouts and carry-overs of a calculation chunk a store writes, and which it skips and why:
//! decided once, here, for every store, from the few facts the store looks up first
//! ([`StoredFacts`]). A store gathers the facts for the batch's [`keys`](PeriodBatch::keys), calls
//! [`PeriodBatch::decide`] (or [`NewPayout::check_against`] for a manual payout) and writes what it
//! is told.

use std::collections::HashSet;

use super::records::references_of;
use super::{CarryOver, NewPayout, PeriodBatch, SkipReason};
use crate::domain::{DoctorId, ItemKind, PayoutId, PayoutOrigin, Period};
use crate::error::{Error, Result};

/// A doctor and a period: what a calculated payout or a carry-over is unique by.
pub type Slot = (DoctorId, Period);

/// What a store must look up before it decides a batch or a manual payout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchKeys {
    /// The slots of the payouts and the carry-overs to write: do they hold a live calculated payout,
    /// a carry-over?
    pub slots: Vec<Slot>,
    /// The carry-overs the payouts want to consume: do they exist, are they open?
    pub wanted_carry_overs: Vec<Slot>,
    /// The payouts' ids: are they taken?
    pub payout_ids: Vec<PayoutId>,
    /// The consultations of the payouts' and the carry-overs' items (the consultation ledger): does
    /// a live item or a carry-over hold them?
    pub consultations: Vec<String>,
    /// The references of the payouts' and the carry-overs' clawback items: is the consultation
    /// clawed back already?
    pub clawbacks: Vec<String>,
}

/// What a store holds about a batch's [`BatchKeys`] (each set needs to cover only those keys). On
/// a database, rows that decide a consumption are read locked, so what was seen still holds when
/// the transaction writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFacts {
    /// Slots that hold a calculated payout that is not cancelled.
    pub live_calculated: HashSet<Slot>,
    /// Slots that hold a carry-over, open or consumed.
    pub carry_overs: HashSet<Slot>,
    /// Slots whose carry-over is open: never consumed, or consumed by a payout cancelled since.
    pub open_carry_overs: HashSet<Slot>,
    /// Payout ids that are taken.
    pub payout_ids: HashSet<PayoutId>,
    /// Consultations a live payout item or a carry-over holds (see
    /// [`PayoutStore::held_consultations`](super::PayoutStore::held_consultations)).
    pub held_consultations: HashSet<String>,
    /// Consultations a live `CLAWBACK` item (of a payout or a carry-over) has already taken back.
    pub held_clawbacks: HashSet<String>,
}

/// What to write of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchDecision {
    /// Payouts to create, in the batch's order.
    pub create: Vec<NewPayout>,
    /// Carry-overs to record, in the batch's order.
    pub carry: Vec<CarryOver>,
    /// Doctors skipped, and why, in the batch's order (payouts first).
    pub skipped: Vec<(DoctorId, SkipReason)>,
}

impl PeriodBatch {
    /// What a store must look up to [`decide`](Self::decide) this batch.
    pub fn keys(&self) -> BatchKeys {
        BatchKeys {
            slots: self
                .payouts
                .iter()
                .map(slot_of)
                .chain(self.carry_overs.iter().map(|c| (c.doctor_id.clone(), c.period)))
                .collect(),
            wanted_carry_overs: self.payouts.iter().flat_map(wanted).collect(),
            payout_ids: self.payouts.iter().map(|new| new.payout.id.clone()).collect(),
            consultations: self
                .ledger_items()
                .filter(|(kind, _)| *kind == ItemKind::Consultation)
                .map(|(_, r)| r.to_string())
                .collect(),
            clawbacks: self
                .ledger_items()
                .filter(|(kind, _)| *kind == ItemKind::Clawback)
                .map(|(_, r)| r.to_string())
                .collect(),
        }
    }

    /// The ledger entries (kind, reference) of the batch's payouts and carry-overs.
    fn ledger_items(&self) -> impl Iterator<Item = (ItemKind, &str)> + '_ {
        self.payouts
            .iter()
            .map(|p| p.items.as_slice())
            .chain(self.carry_overs.iter().map(|c| c.items.as_slice()))
            .flat_map(|items| items.iter())
            .filter(|i| LEDGER_KINDS.contains(&i.kind))
            .map(|i| (i.kind, i.reference.as_str()))
    }

    /// Decides the batch, in order, payouts first:
    /// - a payout whose slot holds a live calculated payout (stored, or created earlier in the
    ///   batch) is skipped as `AlreadyCalculated`; one whose slot holds a carry-over, as
    ///   `AlreadyCarriedOver`; one with a consultation that a live item or a carry-over holds, or a
    ///   clawback of a consultation already clawed back (stored, earlier in the batch, or twice in
    ///   the payout itself), as `ConsultationHeld`; one that wants a
    ///   carry-over that is missing, not open, or wanted earlier in the batch or twice by it, as
    ///   `CarryOverTaken`;
    /// - a payout that is not skipped but whose id is taken (stored, or earlier in the batch)
    ///   refuses the whole batch with [`Error::Conflict`], so re-running a batch with the same ids
    ///   is a clean no-op, not an error;
    /// - a carry-over whose slot holds a live calculated payout (stored or created by the batch) is
    ///   skipped as `AlreadyCalculated`; one whose slot holds a carry-over (stored or earlier in the
    ///   batch), as `AlreadyCarriedOver`; one whose items the ledger holds (stored, or by a payout or
    ///   carry-over written earlier in the batch), as `ConsultationHeld`.
    pub fn decide(self, facts: &StoredFacts) -> Result<BatchDecision> {
        let mut decision = BatchDecision::default();
        let mut live_in_batch: HashSet<Slot> = HashSet::new();
        let mut consumed_in_batch: HashSet<Slot> = HashSet::new();
        let mut ids_in_batch: HashSet<PayoutId> = HashSet::new();
        let mut held_in_batch = InBatch::default();
        let mut created = Vec::with_capacity(self.payouts.len());
        for new in &self.payouts {
            created.push(false);
            let slot = slot_of(new);
            let skip = if facts.live_calculated.contains(&slot) || live_in_batch.contains(&slot) {
                Some(SkipReason::AlreadyCalculated)
            } else if facts.carry_overs.contains(&slot) {
                Some(SkipReason::AlreadyCarriedOver)
            } else if holds_a_held_entry(&new.items, facts, &held_in_batch) {
                Some(SkipReason::ConsultationHeld)
            } else {
                let mut asked = HashSet::new();
                let taken = wanted(new).any(|want| {
                    !facts.open_carry_overs.contains(&want) || consumed_in_batch.contains(&want) || !asked.insert(want)
                });
                taken.then_some(SkipReason::CarryOverTaken)
            };
            if let Some(reason) = skip {
                decision.skipped.push((new.payout.doctor_id.clone(), reason));
                continue;
            }
            let id = &new.payout.id;
            if facts.payout_ids.contains(id) || !ids_in_batch.insert(id.clone()) {
                return Err(Error::Conflict(id.clone()));
            }
            if new.payout.origin == PayoutOrigin::Calculated {
                live_in_batch.insert(slot);
            }
            consumed_in_batch.extend(wanted(new));
            held_in_batch.add(&new.items);
            if let Some(last) = created.last_mut() {
                *last = true;
            }
        }
        decision.create = self
            .payouts
            .into_iter()
            .zip(created)
            .filter_map(|(new, created)| created.then_some(new))
            .collect();
        let mut carried_in_batch: HashSet<Slot> = HashSet::new();
        for c in self.carry_overs {
            let slot = (c.doctor_id.clone(), c.period);
            if facts.live_calculated.contains(&slot) || live_in_batch.contains(&slot) {
                decision.skipped.push((c.doctor_id, SkipReason::AlreadyCalculated));
            } else if facts.carry_overs.contains(&slot) || carried_in_batch.contains(&slot) {
                decision.skipped.push((c.doctor_id, SkipReason::AlreadyCarriedOver));
            } else if holds_a_held_entry(&c.items, facts, &held_in_batch) {
                decision.skipped.push((c.doctor_id, SkipReason::ConsultationHeld));
            } else {
                carried_in_batch.insert(slot);
                held_in_batch.add(&c.items);
                decision.carry.push(c);
            }
        }
        Ok(decision)
    }
}

impl NewPayout {
    /// What a store must look up to [`check`](Self::check_against) this payout before creating it
    /// alone.
    pub fn keys(&self) -> BatchKeys {
        BatchKeys {
            slots: vec![slot_of(self)],
            wanted_carry_overs: wanted(self).collect(),
            payout_ids: vec![self.payout.id.clone()],
            consultations: references_of(&self.items, ItemKind::Consultation)
                .map(str::to_string)
                .collect(),
            clawbacks: references_of(&self.items, ItemKind::Clawback)
                .map(str::to_string)
                .collect(),
        }
    }

    /// Checks a payout created alone (a manual one): a taken id, a second live calculated payout
    /// for its slot, or a consultation item a live item holds (or that it has twice), is a
    /// [`Conflict`](Error::Conflict); a carry-over it wants that does not
    /// exist is [`InvalidInput`](Error::InvalidInput); one that is not open, or wanted twice, is a
    /// `Conflict`.
    pub fn check_against(&self, facts: &StoredFacts) -> Result<()> {
        let p = &self.payout;
        if facts.payout_ids.contains(&p.id)
            || (p.origin == PayoutOrigin::Calculated && facts.live_calculated.contains(&slot_of(self)))
            || holds_a_held_entry(&self.items, facts, &InBatch::default())
        {
            return Err(Error::Conflict(p.id.clone()));
        }
        let mut asked = HashSet::new();
        for want in wanted(self) {
            if !facts.carry_overs.contains(&want) {
                return Err(Error::InvalidInput(format!(
                    "payout {}: doctor {} has no carry-over for {}",
                    p.id, p.doctor_id, want.1
                )));
            }
            if !facts.open_carry_overs.contains(&want) || !asked.insert(want) {
                return Err(Error::Conflict(p.id.clone()));
            }
        }
        Ok(())
    }
}

/// The item kinds the ledger holds, one live entry per reference each.
const LEDGER_KINDS: [ItemKind; 2] = [ItemKind::Consultation, ItemKind::Clawback];

/// Ledger entries written earlier in the batch.
#[derive(Default)]
struct InBatch {
    consultations: HashSet<String>,
    clawbacks: HashSet<String>,
}

impl InBatch {
    fn add(&mut self, items: &[crate::domain::PayoutItem]) {
        self.consultations
            .extend(references_of(items, ItemKind::Consultation).map(str::to_string));
        self.clawbacks
            .extend(references_of(items, ItemKind::Clawback).map(str::to_string));
    }
}

/// True when one of `items`' consultations is held, or one of its clawbacks is taken already
/// (stored, or earlier in the batch), or either appears twice among `items`.
fn holds_a_held_entry(items: &[crate::domain::PayoutItem], facts: &StoredFacts, in_batch: &InBatch) -> bool {
    let mut own = HashSet::new();
    let consultation = |c: &str| facts.held_consultations.contains(c) || in_batch.consultations.contains(c);
    let clawback = |c: &str| facts.held_clawbacks.contains(c) || in_batch.clawbacks.contains(c);
    references_of(items, ItemKind::Consultation).any(|c| consultation(c) || !own.insert((ItemKind::Consultation, c)))
        || references_of(items, ItemKind::Clawback).any(|c| clawback(c) || !own.insert((ItemKind::Clawback, c)))
}

fn slot_of(new: &NewPayout) -> Slot {
    (new.payout.doctor_id.clone(), new.payout.period())
}

/// The slots of the carry-overs `new` consumes.
fn wanted(new: &NewPayout) -> impl Iterator<Item = Slot> + '_ {
    new.consumes_carry_overs
        .iter()
        .map(|period| (new.payout.doctor_id.clone(), *period))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::domain::{AuditEntry, ItemKind, Payout, PayoutItem};
    use crate::money::{Currency, Money};
    use crate::status::PayoutStatus;

    fn month(m: u32) -> Period {
        let start = NaiveDate::from_ymd_opt(2025, m, 1).unwrap();
        let end = start
            .checked_add_months(chrono::Months::new(1))
            .unwrap()
            .pred_opt()
            .unwrap();
        Period::new(start, end).unwrap()
    }

    fn new(id: &str, doctor: &str, origin: PayoutOrigin, consumes: &[Period]) -> NewPayout {
        let at = Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap();
        let amount = Money::from_minor_units(50_000, Currency::KES);
        let period = month(1);
        NewPayout {
            payout: Payout::pending(
                id.into(),
                doctor.into(),
                period,
                amount,
                origin,
                "system:test".into(),
                at,
            ),
            items: vec![PayoutItem {
                kind: ItemKind::Consultation,
                reference: format!("apt-{id}"),
                amount,
                occurred_at: at,
                description: String::new(),
            }],
            consumes_carry_overs: consumes.to_vec(),
            audit: AuditEntry {
                payout_id: id.into(),
                actor: "system:test".into(),
                at,
                action: "CREATE".into(),
                from: None,
                to: Some(PayoutStatus::Pending),
                detail: String::new(),
            },
        }
    }

    /// December 2024: a carried period, before the payouts' own January.
    fn december() -> Period {
        Period::new(
            NaiveDate::from_ymd_opt(2024, 12, 1).unwrap(),
            NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
        )
        .unwrap()
    }

    fn calculated(id: &str, doctor: &str) -> NewPayout {
        new(id, doctor, PayoutOrigin::Calculated, &[])
    }

    fn carry(doctor: &str, period: Period) -> CarryOver {
        CarryOver {
            doctor_id: doctor.into(),
            period,
            amount: Money::from_minor_units(10_000, Currency::KES),
            items: Vec::new(),
            note: String::new(),
            created_at: Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap(),
            consumed_by: None,
        }
    }

    fn slot(doctor: &str, period: Period) -> Slot {
        (doctor.into(), period)
    }

    fn ids(d: &BatchDecision) -> Vec<&str> {
        d.create.iter().map(|n| n.payout.id.as_str()).collect()
    }

    #[test]
    fn a_batch_is_taken_in_order_payouts_first() {
        let batch = PeriodBatch {
            payouts: vec![
                calculated("po_1", "dr-a"),
                calculated("po_2", "dr-a"),
                calculated("po_3", "dr-b"),
            ],
            carry_overs: vec![
                carry("dr-a", month(1)),
                carry("dr-c", month(1)),
                carry("dr-c", month(1)),
            ],
            run: None,
        };
        let facts = StoredFacts {
            carry_overs: [slot("dr-b", month(1))].into(),
            ..Default::default()
        };
        let d = batch.decide(&facts).unwrap();
        assert_eq!(ids(&d), ["po_1"]);
        assert_eq!(d.carry.len(), 1, "dr-c's first carry-over");
        assert_eq!(
            d.skipped,
            [
                ("dr-a".into(), SkipReason::AlreadyCalculated),
                ("dr-b".into(), SkipReason::AlreadyCarriedOver),
                ("dr-a".into(), SkipReason::AlreadyCalculated),
                ("dr-c".into(), SkipReason::AlreadyCarriedOver),
            ]
        );
    }

    #[test]
    fn a_taken_id_refuses_the_batch_only_when_its_payout_would_be_created() {
        let taken = StoredFacts {
            payout_ids: ["po_1".into()].into(),
            live_calculated: [slot("dr-a", month(1))].into(),
            ..Default::default()
        };
        let rerun = PeriodBatch {
            payouts: vec![calculated("po_1", "dr-a")],
            carry_overs: Vec::new(),
            run: None,
        };
        assert_eq!(
            rerun.clone().decide(&taken).unwrap().skipped.len(),
            1,
            "a re-run is a no-op"
        );
        let other_doctor = PeriodBatch {
            payouts: vec![calculated("po_1", "dr-b")],
            carry_overs: Vec::new(),
            run: None,
        };
        assert!(matches!(other_doctor.decide(&taken), Err(Error::Conflict(id)) if id.as_str() == "po_1"));
    }

    #[test]
    fn a_carry_over_is_consumed_once_and_only_while_open() {
        let dec = december();
        let facts = StoredFacts {
            carry_overs: [slot("dr-a", dec), slot("dr-b", dec)].into(),
            open_carry_overs: [slot("dr-a", dec)].into(),
            ..Default::default()
        };
        let batch = PeriodBatch {
            payouts: vec![
                new("po_1", "dr-a", PayoutOrigin::Manual, &[dec]),
                new("po_2", "dr-a", PayoutOrigin::Manual, &[dec]),
                new("po_3", "dr-b", PayoutOrigin::Manual, &[dec]),
                new("po_4", "dr-c", PayoutOrigin::Manual, &[dec, dec]),
            ],
            carry_overs: Vec::new(),
            run: None,
        };
        let d = batch.decide(&facts).unwrap();
        assert_eq!(ids(&d), ["po_1"]);
        assert!(
            d.skipped.iter().all(|(_, r)| *r == SkipReason::CarryOverTaken),
            "{:?}",
            d.skipped
        );
        assert_eq!(d.skipped.len(), 3);
    }

    #[test]
    fn a_payout_created_alone_is_checked_against_what_is_stored() {
        let dec = december();
        let none = StoredFacts::default();
        let live = StoredFacts {
            live_calculated: [slot("dr-a", month(1))].into(),
            ..Default::default()
        };
        assert!(calculated("po_1", "dr-a").check_against(&none).is_ok());
        assert!(matches!(
            calculated("po_1", "dr-a").check_against(&live),
            Err(Error::Conflict(_))
        ));
        assert!(
            new("po_1", "dr-a", PayoutOrigin::Manual, &[])
                .check_against(&live)
                .is_ok(),
            "manual payouts may share a slot"
        );
        let wants = new("po_1", "dr-a", PayoutOrigin::Manual, &[dec]);
        assert!(matches!(wants.check_against(&none), Err(Error::InvalidInput(m)) if m.contains("no carry-over")));
        let consumed = StoredFacts {
            carry_overs: [slot("dr-a", dec)].into(),
            ..Default::default()
        };
        assert!(matches!(wants.check_against(&consumed), Err(Error::Conflict(_))));
        let open = StoredFacts {
            carry_overs: [slot("dr-a", dec)].into(),
            open_carry_overs: [slot("dr-a", dec)].into(),
            ..Default::default()
        };
        assert!(wants.check_against(&open).is_ok());
        assert_eq!(wants.keys().wanted_carry_overs, [slot("dr-a", dec)]);
    }
}
