//! The approval policy: what an approval vouches for (the doctor's payout details, by fingerprint),
//! a second approval above the policy's amounts, re-approval after the details changed, and who
//! may trigger what they approved. Every path that approves or triggers, one payout or in bulk,
//! goes through these checks, so the bulk paths obey the policy per item.

use super::PayoutService;
use crate::domain::{Actor, Approval, Payout, PayoutId, PayoutOrigin, Recipient, details_fingerprint};
use crate::error::{Error, Result};
use crate::status::{PayoutEvent, PayoutStatus};
use crate::store::PayoutChange;

/// The first characters of a fingerprint, enough to tell two apart in the audit trail.
pub(super) fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

impl PayoutService {
    /// True when the policy asks for a second approval of `payout`: its amount is above the
    /// threshold for its currency, or its currency has none while some currency has one.
    pub fn needs_second_approval(&self, payout: &Payout) -> bool {
        let thresholds = &self.policy.second_approval_above;
        if thresholds.is_empty() {
            return false;
        }
        match thresholds.iter().find(|t| t.currency() == payout.currency()) {
            Some(limit) => payout.amount_due.amount() > limit.amount(),
            None => true,
        }
    }

    /// Who approved `payout`, in order; an approval recorded before approvals were fingerprinted
    /// counts its `approved_by`.
    pub(super) fn approvers(payout: &Payout) -> Vec<String> {
        match &payout.approval {
            Some(a) => a.approvers.clone(),
            None => payout.approved_by.iter().cloned().collect(),
        }
    }

    /// True when `payout` is approved once and the policy asks for a second approval.
    pub fn awaits_second_approval(&self, payout: &Payout) -> bool {
        payout.status == PayoutStatus::Approved
            && self.needs_second_approval(payout)
            && Self::approvers(payout).len() < 2
    }

    /// True when the doctor's payout details differ from the ones `payout` was approved with.
    pub async fn details_changed_since_approval(&self, payout: &Payout) -> Result<bool> {
        let Some(approval) = &payout.approval else {
            return Ok(false);
        };
        Ok(self.current_fingerprint(payout).await? != approval.details_fingerprint)
    }

    /// True when `payout` is approved but its approval records no details fingerprint: it was
    /// approved before approvals recorded the doctor's payout details (migration
    /// `20261205000300_operator`). It is not sent until re-approved
    /// ([`Error::ApprovalPredatesDetailsCheck`]).
    pub fn approval_predates_details_check(&self, payout: &Payout) -> bool {
        payout.status == PayoutStatus::Approved && payout.approval.is_none()
    }

    /// Refuses to pay details nobody approved: the approval's fingerprint must be `fingerprint`, the
    /// doctor's details now ([`Error::DetailsChanged`]), and an approval without one (it predates the
    /// check) is never taken to vouch for them ([`Error::ApprovalPredatesDetailsCheck`]).
    fn check_approved_details(&self, payout: &Payout, fingerprint: &str) -> Result<()> {
        match &payout.approval {
            Some(approval) if approval.details_fingerprint == fingerprint => Ok(()),
            Some(_) => Err(Error::DetailsChanged {
                payout_id: payout.id.clone(),
            }),
            None => Err(Error::ApprovalPredatesDetailsCheck {
                payout_id: payout.id.clone(),
            }),
        }
    }

    /// The fingerprint of the payout's doctor's details as the directory has them now.
    pub(super) async fn current_fingerprint(&self, payout: &Payout) -> Result<String> {
        let recipient = self.directory.recipient(&payout.doctor_id).await?;
        Ok(details_fingerprint(recipient.as_ref()))
    }

    /// Four eyes: the creator of a manual payout may not approve it.
    pub(super) fn may_approve(&self, actor: &Actor, payout: &Payout) -> Result<()> {
        if self.policy.four_eyes && payout.origin == PayoutOrigin::Manual && payout.created_by == actor.label() {
            return Err(Error::Forbidden(
                "four eyes: the creator of a manual payout may not approve it".into(),
            ));
        }
        Ok(())
    }

    /// The second approval of an `APPROVED` payout above the policy's amount: by another admin
    /// than the first approver, for the details the first approval saw.
    pub(super) async fn second_approve(&self, actor: &Actor, payout: Payout) -> Result<Payout> {
        self.may_approve(actor, &payout)?;
        let mut approvers = Self::approvers(&payout);
        if approvers.contains(&actor.label()) {
            return Err(Error::Forbidden(
                "a second approval must come from another admin than the first".into(),
            ));
        }
        let fingerprint = self.current_fingerprint(&payout).await?;
        // Both approvals vouch for the same details: a first approval that recorded none is
        // re-approved first (then approved a second time), never completed by this one.
        self.check_approved_details(&payout, &fingerprint)?;
        approvers.push(actor.label());
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.patch.approval = Some(Approval {
            details_fingerprint: fingerprint.clone(),
            approvers,
        });
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "SECOND_APPROVE",
            None,
            format!(
                "second approval of {} (above the policy's amount); payout details {}",
                payout.amount_due,
                short(&fingerprint)
            ),
        ));
        self.store.apply(change).await
    }

    /// Approves an `APPROVED` payout again for the doctor's current payout details, after they
    /// changed since its approval (a trigger is refused with [`Error::DetailsChanged`] until then),
    /// or when its approval predates the details check and records none
    /// ([`Error::ApprovalPredatesDetailsCheck`]).
    ///
    /// The re-approval replaces the approval: its approver becomes the approver (the four-eyes rule
    /// applies as to any approval), and a payout that needs a second approval needs one again, for
    /// the new details. Audited as `REAPPROVE` with the old and new fingerprints. Refused when the
    /// details did not change (nothing to re-approve).
    pub async fn reapprove(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        self.require_privileged(actor, "re-approve payouts")?;
        let payout = self.store.get(id).await?;
        if payout.status != PayoutStatus::Approved {
            return Err(Error::InvalidTransition {
                from: payout.status,
                event: PayoutEvent::Approve,
            });
        }
        self.may_approve(actor, &payout)?;
        let fingerprint = self.current_fingerprint(&payout).await?;
        let before = payout.approval.as_ref().map(|a| a.details_fingerprint.clone());
        if before.as_deref() == Some(fingerprint.as_str()) {
            return Err(Error::InvalidInput(
                "the doctor's payout details did not change since approval: nothing to re-approve".into(),
            ));
        }
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.patch.approved_by = Some(actor.label());
        change.patch.approval = Some(Approval {
            details_fingerprint: fingerprint.clone(),
            approvers: vec![actor.label()],
        });
        let second = if self.needs_second_approval(&payout) {
            "; a second approval is required again"
        } else {
            ""
        };
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "REAPPROVE",
            None,
            format!(
                "re-approved for changed payout details: {} -> {}{second}",
                before.as_deref().map(short).unwrap_or("(not recorded)"),
                short(&fingerprint)
            ),
        ));
        self.store.apply(change).await
    }

    /// Re-approves each payout; one result per id, in order.
    pub async fn bulk_reapprove(&self, actor: &Actor, ids: &[PayoutId]) -> Vec<super::BulkOutcome> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(super::BulkOutcome {
                id: id.clone(),
                result: self.reapprove(actor, id).await,
            });
        }
        out
    }

    /// What the policy asks of a trigger of `payout` (as read) by `actor`, the doctor's details
    /// being `recipient` now: the details are the ones approved, a second approval is there where
    /// needed, and the triggerer approved nothing of it when the policy separates the two.
    pub(super) fn check_trigger_policy(
        &self,
        actor: &Actor,
        payout: &Payout,
        recipient: Option<&Recipient>,
    ) -> Result<()> {
        self.check_approved_details(payout, &details_fingerprint(recipient))?;
        let approvers = Self::approvers(payout);
        if self.needs_second_approval(payout) && approvers.len() < 2 {
            return Err(Error::ApprovalRequired(format!(
                "payout {} of {} needs a second approval by another admin before it is triggered",
                payout.id, payout.amount_due
            )));
        }
        if self.policy.approver_may_not_trigger && approvers.contains(&actor.label()) {
            return Err(Error::Forbidden(
                "the approver of a payout may not trigger it: another admin must".into(),
            ));
        }
        Ok(())
    }
}
