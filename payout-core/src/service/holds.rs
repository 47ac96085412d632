//! Holds: an admin keeps a payout, or every payout of a doctor, from being sent until an admin
//! releases it (a second admin when four eyes is on). Every hold and release of a payout is one
//! audited change (`HOLD`, `RELEASE`); no trigger, retry or run sends a held payout.

use super::PayoutService;
use crate::domain::{Actor, DoctorHold, DoctorId, Hold, HoldScope, Payout, PayoutId, check_hold_reason};
use crate::error::{Error, Result};
use crate::status::PayoutStatus;
use crate::store::{Cursor, DoctorHoldPage, Page, PayoutChange, PayoutFilter};

/// How many of a doctor's payouts a doctor hold reads per store call.
const DOCTOR_PAGE: u32 = 200;

/// How many times a hold or release of one payout is tried when another change of the payout
/// came first (each time on the payout read again).
const TRIES: usize = 3;

/// The statuses a doctor's hold puts payouts on hold in: the ones that could still be sent.
const SENDABLE: [PayoutStatus; 3] = [PayoutStatus::Pending, PayoutStatus::Approved, PayoutStatus::Failed];

/// What a doctor's hold, or its release, did.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorHoldReport {
    /// The doctor's hold (placed, or released).
    pub hold: DoctorHold,
    /// The doctor's payouts held (or released) with it, each by an audited change.
    pub payouts: Vec<PayoutId>,
}

/// Refuses to send a held payout: its own hold, or its doctor's (`doctor`, when the doctor is on
/// hold), with [`Error::OnHold`] naming the reason. The one check every path that sends a payout
/// (trigger, retry, bulk trigger, runs) makes before it commits an attempt.
pub fn check_not_held(payout: &Payout, doctor: Option<&DoctorHold>) -> Result<()> {
    if let Some(hold) = payout.active_hold() {
        return Err(Error::OnHold {
            payout_id: payout.id.clone(),
            scope: hold.scope,
            reason: hold.reason.clone(),
        });
    }
    if let Some(d) = doctor {
        return Err(Error::OnHold {
            payout_id: payout.id.clone(),
            scope: HoldScope::Doctor,
            reason: format!("doctor {} is on hold: {}", d.doctor_id, d.reason),
        });
    }
    Ok(())
}

impl PayoutService {
    pub(super) fn require_admin(&self, actor: &Actor, what: &str) -> Result<()> {
        match actor {
            Actor::Admin { .. } => Ok(()),
            _ => Err(Error::Forbidden(format!("only an admin may {what}"))),
        }
    }

    /// Four eyes: the admin who placed a hold may not release it.
    fn may_release(&self, actor: &Actor, placed_by: &str) -> Result<()> {
        if self.policy.four_eyes && placed_by == actor.label() {
            return Err(Error::Forbidden(
                "four eyes: a hold is released by another admin than the one who placed it".into(),
            ));
        }
        Ok(())
    }

    /// The doctor's hold, if the doctor is on hold.
    pub(super) async fn doctor_hold_of(&self, doctor: &DoctorId) -> Result<Option<DoctorHold>> {
        Ok(self.store.doctor_holds(std::slice::from_ref(doctor)).await?.pop())
    }

    /// Puts a payout on hold (admins only): it is not sent, by any path, until released. Audited
    /// as `HOLD` with the reason.
    ///
    /// Refused, changing nothing: an empty or overlong reason (`InvalidInput`), a payout already on
    /// hold, or one that can no longer be held back (`PAID`, `CANCELLED`, `RETURNED`,
    /// `REVERSED`). A `PROCESSING` payout may be held: its attempt goes on (reconciliation and
    /// webhooks still settle it), but it is not retried while held.
    pub async fn hold(&self, actor: &Actor, id: &PayoutId, reason: &str) -> Result<Payout> {
        self.require_admin(actor, "put payouts on hold")?;
        check_hold_reason(reason)?;
        let payout = self.store.get(id).await?;
        if payout.status.is_terminal() {
            return Err(Error::InvalidInput(format!(
                "payout {id} is {}: only a payout that may still be sent can be held",
                payout.status
            )));
        }
        if let Some(h) = payout.active_hold() {
            return Err(Error::InvalidInput(format!(
                "payout {id} is already on hold ({}): {}",
                h.scope, h.reason
            )));
        }
        let hold = Hold::placed(HoldScope::Payout, reason, actor.label(), self.clock.now());
        let detail = format!("on hold: {}", hold.reason);
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.patch.hold = Some(hold);
        change
            .audit
            .push(self.audit(&payout, &actor.label(), "HOLD", None, detail));
        self.store.apply(change).await
    }

    /// Releases a payout's hold (admins only; with four eyes on, not the admin who placed it).
    /// The released hold stays on the payout, marked released; audited as `RELEASE`.
    ///
    /// Refused, changing nothing: a payout not on hold, or one held with its doctor while the
    /// doctor is still on hold (release the doctor: [`release_doctor`](Self::release_doctor)).
    pub async fn release(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        self.require_admin(actor, "release holds")?;
        let payout = self.store.get(id).await?;
        let Some(hold) = payout.active_hold() else {
            return Err(Error::InvalidInput(format!("payout {id} is not on hold")));
        };
        if hold.scope == HoldScope::Doctor && self.doctor_hold_of(&payout.doctor_id).await?.is_some() {
            return Err(Error::InvalidInput(format!(
                "payout {id} is held with its doctor {}: release the doctor's hold",
                payout.doctor_id
            )));
        }
        self.may_release(actor, &hold.placed_by)?;
        let change = self.release_change(actor, &payout, hold);
        self.store.apply(change).await
    }

    fn release_change(&self, actor: &Actor, payout: &Payout, hold: &Hold) -> PayoutChange {
        let now = self.clock.now();
        let detail = format!(
            "released the {} placed by {} at {}: {}",
            hold.scope,
            hold.placed_by,
            hold.placed_at.to_rfc3339(),
            hold.reason
        );
        let mut change = PayoutChange::of(payout, now);
        change.patch.hold = Some(hold.released(actor.label(), now));
        change
            .audit
            .push(self.audit(payout, &actor.label(), "RELEASE", None, detail));
        change
    }

    /// Puts a doctor on hold (admins only): none of the doctor's payouts is sent until released,
    /// including payouts created later. Each of the doctor's payouts that could still be sent
    /// (`PENDING`, `APPROVED`, `FAILED`) and has no hold of its own gets a doctor-scoped hold, by
    /// an audited `HOLD` change, so it shows the reason wherever it is listed.
    ///
    /// Refused, changing nothing: an empty or overlong reason, a doctor already on hold
    /// ([`Error::DoctorAlreadyHeld`]). The doctor's hold is recorded first, so that from then on no
    /// payout of the doctor is sent, whether or not its own hold is written yet.
    pub async fn hold_doctor(&self, actor: &Actor, doctor: &DoctorId, reason: &str) -> Result<DoctorHoldReport> {
        self.require_admin(actor, "put doctors on hold")?;
        check_hold_reason(reason)?;
        let hold = DoctorHold {
            doctor_id: doctor.clone(),
            reason: reason.trim().to_string(),
            placed_by: actor.label(),
            placed_at: self.clock.now(),
        };
        self.store.place_doctor_hold(hold.clone()).await?;
        let payouts = self
            .each_payout_of(doctor, |p| {
                if !SENDABLE.contains(&p.status) || p.active_hold().is_some() {
                    return None;
                }
                let mut change = PayoutChange::of(p, self.clock.now());
                change.patch.hold = Some(Hold::placed(
                    HoldScope::Doctor,
                    &hold.reason,
                    actor.label(),
                    self.clock.now(),
                ));
                change.audit.push(self.audit(
                    p,
                    &actor.label(),
                    "HOLD",
                    None,
                    format!("doctor {doctor} on hold: {}", hold.reason),
                ));
                Some(change)
            })
            .await?;
        Ok(DoctorHoldReport { hold, payouts })
    }

    /// Takes a doctor off hold (admins only; with four eyes on, not the admin who placed the hold),
    /// releasing the doctor-scoped hold of each of the doctor's payouts by an audited `RELEASE`
    /// change (a payout's own hold stays). The doctor's payouts are released first and the
    /// doctor's hold removed last, so an interrupted release leaves the doctor held and can be run
    /// again. [`Error::DoctorNotHeld`] when the doctor is not on hold.
    pub async fn release_doctor(&self, actor: &Actor, doctor: &DoctorId) -> Result<DoctorHoldReport> {
        self.require_admin(actor, "release holds")?;
        let hold = self
            .doctor_hold_of(doctor)
            .await?
            .ok_or_else(|| Error::DoctorNotHeld(doctor.clone()))?;
        self.may_release(actor, &hold.placed_by)?;
        let payouts = self
            .each_payout_of(doctor, |p| {
                let held = p.active_hold().filter(|h| h.scope == HoldScope::Doctor)?;
                Some(self.release_change(actor, p, held))
            })
            .await?;
        let hold = self.store.release_doctor_hold(doctor).await?;
        Ok(DoctorHoldReport { hold, payouts })
    }

    /// The doctors on hold, oldest hold first (admins only).
    pub async fn doctor_holds(&self, actor: &Actor, page: &Page) -> Result<DoctorHoldPage> {
        self.require_privileged(actor, "list held doctors")?;
        self.store.all_doctor_holds(&super::clamp(page)).await
    }

    /// Applies the change `decide` makes of each of `doctor`'s payouts (`None`: leave it), a page at
    /// a time, each read again and decided again if another change came first; returns the payouts
    /// changed.
    async fn each_payout_of(
        &self,
        doctor: &DoctorId,
        decide: impl Fn(&Payout) -> Option<PayoutChange>,
    ) -> Result<Vec<PayoutId>> {
        let filter = PayoutFilter {
            doctor_id: Some(doctor.clone()),
            ..Default::default()
        };
        let mut changed = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = Page {
                limit: DOCTOR_PAGE,
                skip: 0,
                after,
            };
            let found = self.store.list(&filter, &page).await?;
            for payout in found.payouts {
                let mut payout = payout;
                for attempt in 1..=TRIES {
                    let Some(change) = decide(&payout) else {
                        break;
                    };
                    match self.store.apply(change).await {
                        Ok(p) => {
                            changed.push(p.id);
                            break;
                        }
                        Err(Error::Conflict(_)) if attempt < TRIES => payout = self.store.get(&payout.id).await?,
                        Err(e) => return Err(e),
                    }
                }
            }
            match found.next {
                Some(next) => after = Some(next),
                None => return Ok(changed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::domain::{PayoutOrigin, Period};
    use crate::money::{Currency, Money};

    fn payout() -> Payout {
        let at = Utc.timestamp_opt(1_735_689_600, 0).unwrap();
        let day = at.date_naive();
        Payout::pending(
            "po_1".into(),
            "dr-1".into(),
            Period { start: day, end: day },
            Money::from_minor_units(50_000, Currency::KES),
            PayoutOrigin::Manual,
            "admin:a".into(),
            at,
        )
    }

    #[test]
    fn a_payout_held_itself_or_by_its_doctor_is_refused_with_the_reason() {
        let mut p = payout();
        assert!(check_not_held(&p, None).is_ok());
        let at = p.created_at;
        p.hold = Some(Hold::placed(HoldScope::Payout, "IBAN in doubt", "admin:a".into(), at));
        let e = check_not_held(&p, None).unwrap_err();
        assert!(
            matches!(&e, Error::OnHold { scope: HoldScope::Payout, reason, .. } if reason == "IBAN in doubt"),
            "{e}"
        );
        assert!(e.to_string().contains("IBAN in doubt"), "{e}");
        p.hold = p.hold.map(|h| h.released("admin:b".into(), at));
        assert!(check_not_held(&p, None).is_ok(), "a released hold holds nothing");
        let doctor = DoctorHold {
            doctor_id: "dr-1".into(),
            reason: "identity check".into(),
            placed_by: "admin:a".into(),
            placed_at: at,
        };
        let e = check_not_held(&p, Some(&doctor)).unwrap_err();
        assert!(
            matches!(&e, Error::OnHold { scope: HoldScope::Doctor, reason, .. } if reason.contains("identity check")),
            "{e}"
        );
    }
}
