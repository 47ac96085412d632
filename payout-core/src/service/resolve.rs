//! A way out of `PROCESSING` with evidence: an operator settles an attempt whose outcome is unknown
//! (no reference to look it up by, a provider whose lookup never answers more than "accepted").
//!
//! The provider is asked first, and a claim it contradicts is refused. With four eyes on, the
//! resolution is stored as pending on the payout (it survives a restart) until a second admin
//! confirms it, when the provider is asked again; without, it applies at once. Each step is audited
//! with the evidence. A confirmed `FAILED` marks the attempt failed, which is what lets `retry`
//! start a new attempt with a new key.

use super::PayoutService;
use crate::domain::{
    Actor, AttemptOutcome, Payout, PayoutAttempt, PayoutId, Resolution, ResolutionOutcome, ResolutionState,
};
use crate::error::{Error, Result};
use crate::provider::{AttemptLookup, ProviderStatus};
use crate::status::{PayoutEvent, PayoutStatus, Transition, transition};
use crate::store::{AttemptUpdate, PayoutChange, PayoutStoreExt};

/// An operator's claim about a `PROCESSING` payout, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// `PAID` or `FAILED`.
    pub outcome: ResolutionOutcome,
    /// The provider's reference the operator has (a transaction id, a bank reference), if any.
    pub provider_reference: Option<String>,
    /// What the evidence is (required).
    pub note: String,
}

/// What the provider says about a claim.
enum Verdict {
    /// It confirms it, or cannot tell (still "accepted", or it could not be asked): the evidence decides.
    Allows(String),
    /// It says otherwise.
    Contradicts(String),
}

impl PayoutService {
    /// Settles a `PROCESSING` payout whose latest attempt has an unknown outcome as `PAID` or
    /// `FAILED`, on the operator's evidence.
    ///
    /// # Behavior
    /// Refused ([`Error::ResolutionRefused`], nothing changed) unless the payout is `PROCESSING`, its
    /// latest attempt's outcome is not settled, and no resolution waits for confirmation; refused
    /// too when the provider, asked first, contradicts the claim (it reports the attempt paid,
    /// failed, returned or reversed otherwise than claimed, or never received when `PAID` is
    /// claimed), and `FAILED` is refused while a send of the attempt may still be in flight. With
    /// four eyes on the resolution is stored as pending (`RESOLVE_REQUESTED`) and
    /// the payout stays `PROCESSING` until another admin confirms it
    /// ([`confirm_resolution`](Self::confirm_resolution)); without, it is applied at once.
    pub async fn resolve(&self, actor: &Actor, id: &PayoutId, request: ResolveRequest) -> Result<Payout> {
        self.require_privileged(actor, "resolve payouts")?;
        let note = request.note.trim().to_string();
        if note.is_empty() {
            return Err(Error::InvalidInput(
                "a resolution needs a note saying what the evidence is".into(),
            ));
        }
        let reference = request
            .provider_reference
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from);
        let (payout, attempts) = self.store.payout_and_attempts(id).await?;
        let attempt = unsettled_attempt(&payout, &attempts)?;
        if payout
            .resolution
            .as_ref()
            .is_some_and(|r| r.is_pending() && r.attempt_no == attempt.attempt_no)
        {
            return Err(Error::ResolutionRefused(
                "a resolution of this attempt already waits for a second admin: confirm or reject it".into(),
            ));
        }
        if request.outcome == ResolutionOutcome::Failed {
            self.refuse_while_a_send_may_be_in_flight(attempt)?;
        }
        let provider_answer = match self.ask_provider(&payout, attempt, request.outcome).await? {
            Verdict::Allows(answer) => answer,
            Verdict::Contradicts(answer) => return Err(contradiction(request.outcome, &answer)),
        };
        let resolution = Resolution {
            attempt_no: attempt.attempt_no,
            outcome: request.outcome,
            provider_reference: reference,
            note,
            provider_answer,
            requested_by: actor.label(),
            requested_at: self.clock.now(),
            state: ResolutionState::Pending,
        };
        if !self.policy.four_eyes {
            return self.settle(actor, &payout, attempt, resolution).await;
        }
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "RESOLVE_REQUESTED",
            None,
            format!("{}; waits for a second admin", evidence(&resolution)),
        ));
        change.patch.resolution = Some(resolution);
        self.store.apply(change).await
    }

    /// Confirms the pending resolution of a `PROCESSING` payout (four eyes): another admin than the
    /// one who asked for it. The provider is asked again; a contradiction now refuses it (it stays
    /// pending, to be rejected). A `FAILED` one is refused too when the attempt was written at or
    /// after it was asked for (reconciliation re-sent it, or an answer about it arrived): its
    /// evidence predates that. Applied, it moves the payout to the claimed outcome, records the
    /// attempt's outcome and the evidence (`RESOLVE_CONFIRMED`).
    pub async fn confirm_resolution(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        self.require_privileged(actor, "confirm resolutions")?;
        let (payout, attempts) = self.store.payout_and_attempts(id).await?;
        let attempt = unsettled_attempt(&payout, &attempts)?;
        let resolution = pending_resolution(&payout, attempt)?;
        if resolution.requested_by == actor.label() {
            return Err(Error::Forbidden(
                "four eyes: a resolution is confirmed by another admin than the one who asked for it".into(),
            ));
        }
        if resolution.outcome == ResolutionOutcome::Failed {
            refuse_if_written_since_asked(attempt, resolution)?;
        }
        let mut resolution = resolution.clone();
        match self.ask_provider(&payout, attempt, resolution.outcome).await? {
            Verdict::Allows(answer) => resolution.provider_answer = answer,
            Verdict::Contradicts(answer) => return Err(contradiction(resolution.outcome, &answer)),
        }
        self.settle(actor, &payout, attempt, resolution).await
    }

    /// Turns down the pending resolution of a payout (`RESOLVE_REJECTED`, with `reason`); the
    /// payout stays `PROCESSING`, and a new resolution may be asked for.
    pub async fn reject_resolution(&self, actor: &Actor, id: &PayoutId, reason: Option<&str>) -> Result<Payout> {
        self.require_privileged(actor, "reject resolutions")?;
        let (payout, attempts) = self.store.payout_and_attempts(id).await?;
        let attempt = unsettled_attempt(&payout, &attempts)?;
        let mut resolution = pending_resolution(&payout, attempt)?.clone();
        let now = self.clock.now();
        resolution.state = ResolutionState::Rejected {
            by: actor.label(),
            at: now,
        };
        let mut change = PayoutChange::of(&payout, now);
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "RESOLVE_REJECTED",
            None,
            format!(
                "rejected the resolution asked by {}: {}",
                resolution.requested_by,
                reason.map(str::trim).filter(|r| !r.is_empty()).unwrap_or("no reason given")
            ),
        ));
        change.patch.resolution = Some(resolution);
        self.store.apply(change).await
    }

    /// Applies `resolution` of `attempt`: the payout to the claimed outcome, the attempt's outcome,
    /// the reference if none was known, the resolution confirmed by `actor`, all audited at once;
    /// a `PAID` payout is put on its provider's settlement watch, as when a webhook pays it.
    async fn settle(
        &self,
        actor: &Actor,
        payout: &Payout,
        attempt: &PayoutAttempt,
        mut resolution: Resolution,
    ) -> Result<Payout> {
        let (event, outcome) = match resolution.outcome {
            ResolutionOutcome::Paid => (PayoutEvent::ProviderPaid, AttemptOutcome::Succeeded),
            ResolutionOutcome::Failed => (
                PayoutEvent::ProviderFailed,
                AttemptOutcome::Failed {
                    reason: format!("resolved by an operator: {}", resolution.note),
                },
            ),
        };
        if resolution.outcome == ResolutionOutcome::Failed {
            self.refuse_while_a_send_may_be_in_flight(attempt)?;
        }
        let Transition::To(to) = transition(payout.status, event)? else {
            return Err(Error::ResolutionRefused(format!(
                "a payout that is {} is not settled by a resolution",
                payout.status
            )));
        };
        let now = self.clock.now();
        resolution.state = ResolutionState::Confirmed {
            by: actor.label(),
            at: now,
        };
        let reference = resolution
            .provider_reference
            .clone()
            .filter(|_| attempt.provider_reference.is_none());
        let mut change = PayoutChange::of(payout, now);
        change.new_status = Some(to);
        change.attempt_update = Some(AttemptUpdate {
            attempt_no: attempt.attempt_no,
            outcome,
            provider_reference: reference.clone(),
            error: None,
        });
        if payout.provider_reference.is_none() {
            change.patch.provider_reference = reference;
        }
        change.patch.processed_at = Some(now);
        if to == PayoutStatus::Paid {
            // Paid now, as far as the engine knows: watched for money coming back like a payout a
            // webhook or a lookup found paid.
            let watch = &self.policy.reconcile.settlement_watch;
            change.follow_up = Some(watch.follow_up(payout.provider, now, now));
        }
        change.patch.notes = Some(format!("resolved {} by an operator: {}", to, resolution.note));
        let confirmed = if resolution.requested_by == actor.label() {
            String::new()
        } else {
            format!("; confirmed by {}", actor.label())
        };
        change.audit.push(self.audit(
            payout,
            &actor.label(),
            "RESOLVE_CONFIRMED",
            Some(to),
            format!("{}{confirmed}", evidence(&resolution)),
        ));
        change.patch.resolution = Some(resolution);
        self.store.apply(change).await
    }

    /// Refuses a `FAILED` resolution while a send of `attempt` may still be in flight: its outcome
    /// is `PENDING` (written before every send, and before every re-send by reconciliation) and the
    /// engine's send timeout has not run out since. Confirmed `FAILED` lets `retry` send a new key;
    /// were the in-flight send to land after that, the payout would be paid twice. A send that
    /// never answered (a crash after its attempt was written) leaves the attempt `PENDING`: once
    /// the timeout has run out since, nothing of ours can still be sending it.
    fn refuse_while_a_send_may_be_in_flight(&self, attempt: &PayoutAttempt) -> Result<()> {
        if !matches!(attempt.outcome, AttemptOutcome::Pending) {
            return Ok(());
        }
        let Ok(timeout) = chrono::Duration::from_std(self.policy.send_timeout) else {
            return Ok(());
        };
        let until = attempt.updated_at + timeout;
        if self.clock.now() < until {
            return Err(Error::ResolutionRefused(format!(
                "attempt {} may still be on its way to the provider (sent at {}); FAILED can be resolved \
                 from {} on, when no send of it can still be in flight",
                attempt.attempt_no,
                attempt.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
                until.format("%Y-%m-%d %H:%M:%S UTC"),
            )));
        }
        Ok(())
    }

    /// Asks the provider about `attempt` and weighs its answer against `claim`. An answer that
    /// cannot confirm or deny (still accepted, the lookup failed or is not supported, no adapter)
    /// leaves the decision to the evidence, and says so in the audit.
    async fn ask_provider(
        &self,
        payout: &Payout,
        attempt: &PayoutAttempt,
        claim: ResolutionOutcome,
    ) -> Result<Verdict> {
        if let Some(file) = attempt.bank_file() {
            return Ok(Verdict::Allows(format!(
                "sent by bank file {file}, which no lookup can see: the evidence decides"
            )));
        }
        let adapter = match self.provider(attempt.provider) {
            Ok(a) => a.clone(),
            Err(e) => return Ok(Verdict::Allows(format!("the provider could not be asked: {e}"))),
        };
        let instruction = self.rebuild_instruction(payout, attempt).await?;
        let lookup = AttemptLookup {
            payout_id: payout.id.clone(),
            attempt_no: attempt.attempt_no,
            idempotency_key: attempt.idempotency_key.clone(),
            provider_reference: attempt.provider_reference.clone(),
            instruction: Some(instruction),
        };
        let status = match adapter.lookup(&lookup).await {
            Ok(status) => status,
            Err(e) => return Ok(Verdict::Allows(format!("the provider could not be asked: {e}"))),
        };
        use ResolutionOutcome::{Failed, Paid};
        Ok(match (&status, claim) {
            (ProviderStatus::Accepted, _) => {
                Verdict::Allows("the provider still reports the attempt accepted, not settled".into())
            }
            (ProviderStatus::Undetermined(why), _) => {
                Verdict::Allows(format!("the provider cannot tell by a lookup: {why}"))
            }
            (ProviderStatus::Paid, Paid) => Verdict::Allows("the provider reports it paid".into()),
            (ProviderStatus::PartiallyReversed { reason, .. }, Paid) => Verdict::Allows(format!(
                "the provider reports it paid, and part of it reversed since ({reason}); reconciliation records it"
            )),
            (ProviderStatus::PartiallyReversed { reason, .. }, Failed) => Verdict::Contradicts(format!(
                "the provider reports it paid, and part of it reversed since ({reason})"
            )),
            (ProviderStatus::Failed(reason), Failed) => {
                Verdict::Allows(format!("the provider reports it failed: {reason}"))
            }
            (ProviderStatus::NotFound, Failed) => Verdict::Allows("the provider never received the attempt".into()),
            (ProviderStatus::Paid, Failed) => Verdict::Contradicts("the provider reports it paid".into()),
            (ProviderStatus::Failed(reason), Paid) => {
                Verdict::Contradicts(format!("the provider reports it failed: {reason}"))
            }
            (ProviderStatus::NotFound, Paid) => {
                Verdict::Contradicts("the provider has no record of the attempt".into())
            }
            (ProviderStatus::Returned(reason) | ProviderStatus::Reversed(reason), _) => Verdict::Contradicts(format!(
                "the provider reports the money paid and come back ({reason}); reconciliation applies it"
            )),
        })
    }
}

/// Refuses to confirm a `FAILED` resolution of an attempt written at or after the resolution was
/// asked for: reconciliation re-sent it (writing it `PENDING`, then its answer) or an answer about
/// it arrived since. The evidence was read before, so it may no longer hold: the re-send may have
/// reached the provider and be paid, and a confirmed failure would let `retry` pay again with a
/// new key. The in-flight guard does not see this once the re-send has answered. A re-send that
/// starts after the confirmation read the attempt makes its write conflict with the
/// confirmation's, so one of the two is refused.
fn refuse_if_written_since_asked(attempt: &PayoutAttempt, resolution: &Resolution) -> Result<()> {
    if attempt.updated_at < resolution.requested_at {
        return Ok(());
    }
    Err(Error::ResolutionRefused(format!(
        "attempt {} was sent again or answered for at {}, after this resolution was asked for at {}: its \
         evidence predates that. Reject it, and ask again with evidence from after {}",
        attempt.attempt_no,
        attempt.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        resolution.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
        attempt.updated_at.format("%Y-%m-%d %H:%M:%S UTC"),
    )))
}

/// The latest attempt of a `PROCESSING` payout, whose outcome is not settled; else refused.
fn unsettled_attempt<'a>(payout: &Payout, attempts: &'a [PayoutAttempt]) -> Result<&'a PayoutAttempt> {
    if payout.status != PayoutStatus::Processing {
        return Err(Error::ResolutionRefused(format!(
            "only a PROCESSING payout is resolved; this one is {}",
            payout.status
        )));
    }
    let attempt = attempts
        .iter()
        .max_by_key(|a| a.attempt_no)
        .ok_or_else(|| Error::ResolutionRefused(format!("payout {} has no attempt", payout.id)))?;
    if matches!(
        attempt.outcome,
        AttemptOutcome::Succeeded | AttemptOutcome::Failed { .. }
    ) {
        return Err(Error::ResolutionRefused(format!(
            "attempt {} is already settled ({})",
            attempt.attempt_no,
            attempt.outcome.as_str()
        )));
    }
    Ok(attempt)
}

/// The resolution of `attempt` that waits for confirmation; else refused.
fn pending_resolution<'a>(payout: &'a Payout, attempt: &PayoutAttempt) -> Result<&'a Resolution> {
    payout
        .resolution
        .as_ref()
        .filter(|r| r.is_pending() && r.attempt_no == attempt.attempt_no)
        .ok_or_else(|| Error::ResolutionRefused("no resolution of this payout waits for confirmation".into()))
}

fn contradiction(claim: ResolutionOutcome, answer: &str) -> Error {
    Error::ResolutionRefused(format!("{} was claimed, but {answer}", claim.as_str()))
}

/// The evidence, as the audit trail records it.
fn evidence(r: &Resolution) -> String {
    format!(
        "attempt {} resolved {} by {}: reference {}, note {:?}; provider asked: {}",
        r.attempt_no,
        r.outcome.as_str(),
        r.requested_by,
        r.provider_reference.as_deref().unwrap_or("(none)"),
        r.note,
        r.provider_answer
    )
}
