//! What a calculation or a manual payout writes: new payouts, carried-over balances, and what a
//! calculation chunk did.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::change::belongs;
use crate::domain::{AuditEntry, DoctorId, ItemKind, Payout, PayoutId, PayoutItem, Period, RunId};
use crate::error::{Error, Result};
use crate::money::Money;
use crate::status::PayoutStatus;

/// A payout to insert, with its items and its `CREATE` audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPayout {
    /// The payout as it starts (status `PENDING`, version 1). `amount_due` must equal the sum of `items`.
    pub payout: Payout,
    /// Its items, in order.
    pub items: Vec<PayoutItem>,
    /// Carried-over balances (by their source period) this payout pays out; marked consumed with it.
    /// Each must be open (see [`PayoutStore::open_carry_overs`](super::PayoutStore::open_carry_overs)):
    /// never consumed, or consumed by a payout that was cancelled since.
    pub consumes_carry_overs: Vec<Period>,
    /// The `CREATE` audit entry.
    pub audit: AuditEntry,
}

impl NewPayout {
    /// Refuses, with [`Error::InvalidInput`], a payout whose `amount_due` is not the sum of its items
    /// (or whose items are in another currency) or is not positive, whose audit entry names another
    /// payout, or that
    /// does not start as every payout starts: `PENDING`, with no approver, approval, resolution or
    /// hold (an approval or a hold is only ever written by a change, audited, so no store can
    /// create a payout pre-approved or pre-held). Every store calls it before it writes.
    pub fn validate(&self) -> Result<()> {
        let p = &self.payout;
        if p.status != PayoutStatus::Pending {
            return Err(Error::InvalidInput(format!(
                "payout {}: a new payout starts PENDING, not {}",
                p.id, p.status
            )));
        }
        let carried = [
            ("an approver", p.approved_by.is_some()),
            ("an approval", p.approval.is_some()),
            ("a resolution", p.resolution.is_some()),
            ("a hold", p.hold.is_some()),
        ];
        if let Some((what, _)) = carried.iter().find(|(_, set)| *set) {
            return Err(Error::InvalidInput(format!(
                "payout {}: a new payout may not carry {what}; approvals, resolutions and holds are \
                 written by the changes that make them, audited",
                p.id
            )));
        }
        let sum = Money::sum(p.currency(), self.items.iter().map(|i| &i.amount))
            .map_err(|e| Error::InvalidInput(format!("payout {}: items do not add up: {e}", p.id)))?;
        if sum != p.amount_due {
            return Err(Error::InvalidInput(format!(
                "payout {}: amount due {} is not the sum of its items {sum}",
                p.id, p.amount_due
            )));
        }
        if p.amount_due.is_negative() || p.amount_due.is_zero() {
            return Err(Error::InvalidInput(format!(
                "payout {}: amount due {} is not positive; nothing is paid (a calculation carries a \
                 negative remainder forward)",
                p.id, p.amount_due
            )));
        }
        belongs(&p.id, &self.audit.payout_id, "audit entry")
    }
}

/// Earnings kept for a later period: below the minimum payout, or a negative remainder (clawbacks
/// larger than what the doctor earned) carried forward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarryOver {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The period the earnings are from (one carry-over per doctor and period).
    pub period: Period,
    /// The gross earnings carried (deductions apply when they are paid): the sum of `items`, or of
    /// this period's consultations for a carry-over recorded without its items. Negative when
    /// clawbacks took more than the doctor earned.
    pub amount: Money,
    /// The consultation and clawback items it accounts for: they join the consultation ledger
    /// when it is recorded, exactly as a payout's items do, so a carried consultation is never
    /// paid again as a late one and a carried clawback is never taken twice. The carry-over holds
    /// them for good (paying the carry-over out pays them). Written with the carry-over;
    /// [`PayoutStore::open_carry_overs`](super::PayoutStore::open_carry_overs) returns carry-overs
    /// without them (read the ledger with
    /// [`held_consultations`](super::PayoutStore::held_consultations)).
    #[serde(default)]
    pub items: Vec<PayoutItem>,
    /// Why, for the record.
    pub note: String,
    /// Recorded.
    pub created_at: DateTime<Utc>,
    /// The payout that consumed it (paid it out), once one did.
    ///
    /// A carry-over consumed by a payout that is later `CANCELLED` is open again, so its earnings are
    /// never lost: [`PayoutStore::open_carry_overs`](super::PayoutStore::open_carry_overs) returns it
    /// (with `consumed_by: None`, like every carry-over it returns) and a later payout may consume
    /// it, which re-points `consumed_by` to that payout. Until then the store keeps the cancelled
    /// payout's id.
    pub consumed_by: Option<PayoutId>,
}

/// One chunk of a period calculation, written atomically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeriodBatch {
    /// Payouts to create.
    pub payouts: Vec<NewPayout>,
    /// Balances to carry over.
    pub carry_overs: Vec<CarryOver>,
    /// The run the created payouts join (a calculation's run), written with them in the same
    /// transaction; it must exist ([`RunNotFound`](crate::Error::RunNotFound) otherwise, writing
    /// nothing). Skipped payouts do not join it.
    pub run: Option<RunId>,
}

impl PeriodBatch {
    /// Validates every payout of the batch ([`NewPayout::validate`]).
    pub fn validate(&self) -> Result<()> {
        self.payouts.iter().try_for_each(NewPayout::validate)
    }
}

/// Why a doctor was skipped by a period calculation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum SkipReason {
    /// A non-cancelled calculated payout already exists for this doctor and period.
    AlreadyCalculated,
    /// This period's earnings were already carried over.
    AlreadyCarriedOver,
    /// A carried-over balance it wanted is missing, or was consumed by another payout that is not
    /// cancelled (or by an earlier payout of the same batch).
    CarryOverTaken,
    /// One of its consultations is already held by a live payout (stored, or created earlier in
    /// the same batch): the consultation ledger pays each consultation once. The calculation
    /// re-plans the doctor without it.
    ConsultationHeld,
}

/// What the consultation ledger says about a consultation: the live payout item, or the
/// carry-over, that holds it.
///
/// An item holds its consultation from its payout's creation until the payout is cancelled with
/// its consultations released ([`PayoutChange::release_consultations`](super::PayoutChange::release_consultations));
/// a payout cancelled with its consultations voided keeps holding them, so they are never paid. A
/// carry-over holds the consultations it carries for good.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldConsultation {
    /// The consultation (its appointment id, the item's reference).
    pub appointment_id: String,
    /// What holds it.
    pub held_by: Holder,
}

/// What holds a consultation (or a clawback) in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Holder {
    /// A live item of this payout.
    Payout(PayoutId),
    /// The doctor's carry-over of this period.
    CarryOver(Period),
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Payout(id) => write!(f, "payout {id}"),
            Holder::CarryOver(period) => write!(f, "the carry-over of {period}"),
        }
    }
}

/// A consultation that was paid and can be clawed back: see
/// [`PayoutStore::clawbacks_due`](super::PayoutStore::clawbacks_due).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClawbackDue {
    /// The consultation.
    pub appointment_id: String,
    /// What its item paid (positive); the clawback item is its negation.
    pub amount: Money,
}

/// The references of `items` of `kind`.
pub(crate) fn references_of(items: &[PayoutItem], kind: ItemKind) -> impl Iterator<Item = &str> + '_ {
    items
        .iter()
        .filter(move |i| i.kind == kind)
        .map(|i| i.reference.as_str())
}

/// What a [`PeriodBatch`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeriodBatchOutcome {
    /// Payouts created.
    pub created: Vec<PayoutId>,
    /// Carry-overs recorded (by doctor).
    pub carried_over: Vec<DoctorId>,
    /// Doctors skipped, and why.
    pub skipped: Vec<(DoctorId, SkipReason)>,
}
