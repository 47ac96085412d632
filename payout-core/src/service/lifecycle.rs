//! Approve, cancel, trigger and retry one payout, and the simple bulk forms of approve and cancel.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use tracing::Instrument;

use super::PayoutService;
use crate::domain::{
    Actor, Approval, AttemptOutcome, DoctorHold, Payout, PayoutAttempt, PayoutId, Provider, Recipient,
};
use crate::error::{Error, ProviderError, ProviderErrorKind, Result};
use crate::provider::{PayoutInstruction, PayoutProvider, SendReceipt};
use crate::simulated::SIMULATED_NOTE;
use crate::status::{PayoutEvent, PayoutStatus, Transition, transition};
use crate::store::{PayoutChange, PayoutStoreExt};
use crate::telemetry;

/// The result of one payout in a bulk action: a partial failure never aborts the others.
#[derive(Debug)]
pub struct BulkOutcome {
    /// The payout.
    pub id: PayoutId,
    /// What happened to it.
    pub result: Result<Payout>,
}

/// What cancelling a payout does with its consultations (the consultation ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelConsultations {
    /// They are free again: a later calculation (its look-back, or a re-run of their period) may
    /// pay them. The default, and what cancelling always did.
    #[default]
    Release,
    /// They stay held by the cancelled payout, so no calculation ever pays them.
    Void,
}

impl CancelConsultations {
    /// `release` or `void`, as the API and the audit trail say it.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelConsultations::Release => "release",
            CancelConsultations::Void => "void",
        }
    }
}

/// An attempt recorded and ready to send.
pub(super) struct Prepared {
    pub payout: Payout,
    pub instruction: PayoutInstruction,
    pub adapter: Arc<dyn PayoutProvider>,
}

impl PayoutService {
    /// `PENDING -> APPROVED`, recording the fingerprint of the doctor's payout details the approval
    /// vouches for. With four eyes on, a manual payout's creator may not approve it. When two admins
    /// approve at once exactly one wins; the other gets `Conflict`.
    ///
    /// An `APPROVED` payout that the policy asks a second approval for
    /// ([`ServicePolicy::second_approval_above`](super::ServicePolicy::second_approval_above)) is
    /// approved a second time by another admin; its status stays `APPROVED`.
    pub async fn approve(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        self.require_privileged(actor, "approve payouts")?;
        let payout = self.store.get(id).await?;
        if self.awaits_second_approval(&payout) {
            return self.second_approve(actor, payout).await;
        }
        let to = moves_to(&payout, PayoutEvent::Approve)?;
        self.may_approve(actor, &payout)?;
        let fingerprint = self.current_fingerprint(&payout).await?;
        let second = if self.needs_second_approval(&payout) {
            "; a second approval is required"
        } else {
            ""
        };
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.new_status = Some(to);
        change.patch.approved_by = Some(actor.label());
        change.patch.approval = Some(Approval {
            details_fingerprint: fingerprint.clone(),
            approvers: vec![actor.label()],
        });
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "APPROVE",
            Some(to),
            format!(
                "approved; payout details {}{second}",
                super::approval::short(&fingerprint)
            ),
        ));
        self.store.apply(change).await
    }

    /// `PENDING | APPROVED -> CANCELLED`: withdrawn before any money moved. Its consultations are
    /// released for a later calculation ([`cancel_with`](Self::cancel_with) says otherwise).
    pub async fn cancel(&self, actor: &Actor, id: &PayoutId, reason: Option<&str>) -> Result<Payout> {
        self.cancel_with(actor, id, reason, CancelConsultations::Release).await
    }

    /// `PENDING | APPROVED -> CANCELLED`, releasing or voiding the payout's consultations in the
    /// same atomic step; the `CANCEL` audit entry records which.
    pub async fn cancel_with(
        &self,
        actor: &Actor,
        id: &PayoutId,
        reason: Option<&str>,
        consultations: CancelConsultations,
    ) -> Result<Payout> {
        self.require_privileged(actor, "cancel payouts")?;
        let payout = self.store.get(id).await?;
        let to = moves_to(&payout, PayoutEvent::Cancel)?;
        let reason = reason.unwrap_or("cancelled").to_string();
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.new_status = Some(to);
        change.patch.notes = Some(reason.clone());
        change.release_consultations = consultations == CancelConsultations::Release;
        let detail = match consultations {
            CancelConsultations::Release => format!("{reason}; consultations released"),
            CancelConsultations::Void => format!("{reason}; consultations voided"),
        };
        change
            .audit
            .push(self.audit(&payout, &actor.label(), "CANCEL", Some(to), detail));
        self.store.apply(change).await
    }

    /// `APPROVED -> PROCESSING`, then sends the payout with `provider`.
    ///
    /// The attempt and its idempotency key are committed *before* the provider is called. A confirmed
    /// rejection makes the payout `FAILED`; a timeout or any answer that may hide a sent payment leaves
    /// it `PROCESSING` with an unknown outcome for [`reconcile`](Self::reconcile) or a webhook to settle.
    /// Nothing changes when the payout is not `APPROVED`, is on hold (its own hold or its
    /// doctor's: [`Error::OnHold`]), or the doctor has no details for `provider`.
    ///
    /// Runs in a `trigger` span naming the payout, the provider and, once it is committed, the
    /// attempt's key. Refused with [`Error::ShuttingDown`] once
    /// [`begin_shutdown`](Self::begin_shutdown) was called.
    #[tracing::instrument(name = "trigger", skip_all, fields(payout_id = %id, %provider, attempt_key = tracing::field::Empty))]
    pub async fn trigger(&self, actor: &Actor, id: &PayoutId, provider: Provider) -> Result<Payout> {
        let prepared = self.prepare_trigger(actor, id, provider).await?;
        tracing::Span::current().record(
            "attempt_key",
            tracing::field::display(&prepared.instruction.idempotency_key),
        );
        tracing::info!(
            attempt_no = prepared.instruction.attempt_no,
            "attempt recorded; sending"
        );
        let result = self.send_timed(&prepared).await;
        let recorded = self.record_prepared_send(&prepared, result).await;
        match &recorded {
            Ok(payout) => tracing::info!(status = %payout.status, "triggered"),
            Err(e) => tracing::warn!(error = %e, "the provider's answer was not recorded"),
        }
        recorded
    }

    /// After a *confirmed* failure: `FAILED -> APPROVED`, then triggers a new attempt (new key) with
    /// `provider`, or the provider of the failed attempt. A payout on hold is refused
    /// ([`Error::OnHold`]) and stays `FAILED`.
    pub async fn retry(&self, actor: &Actor, id: &PayoutId, provider: Option<Provider>) -> Result<Payout> {
        self.require_privileged(actor, "retry payouts")?;
        self.refuse_when_shutting_down()?;
        let payout = self.store.get(id).await?;
        let to = moves_to(&payout, PayoutEvent::Retry)?;
        super::holds::check_not_held(&payout, self.doctor_hold_of(&payout.doctor_id).await?.as_ref())?;
        let attempts = self.store.attempts(id).await?;
        let last = attempts.last();
        if !matches!(last.map(|a| &a.outcome), Some(AttemptOutcome::Failed { .. })) {
            return Err(Error::InvalidInput(
                "a retry needs a confirmed failure of the last attempt".into(),
            ));
        }
        let provider = provider
            .or(payout.provider)
            .or(last.map(|a| a.provider))
            .ok_or_else(|| Error::InvalidInput("no provider to retry with".into()))?;
        let detail = format!(
            "retry after confirmed failure of attempt {}",
            last.map(|a| a.attempt_no).unwrap_or(0)
        );
        self.store.apply(self.reopen(actor, &payout, to, detail)).await?;
        self.trigger(actor, id, provider).await
    }

    /// The audited `FAILED -> APPROVED` change (`to`, as [`moves_to`] gave it) that a retry starts with.
    pub(super) fn reopen(&self, actor: &Actor, payout: &Payout, to: PayoutStatus, detail: String) -> PayoutChange {
        let mut change = PayoutChange::of(payout, self.clock.now());
        change.new_status = Some(to);
        change
            .audit
            .push(self.audit(payout, &actor.label(), "RETRY", Some(to), detail));
        change
    }

    /// Approves each payout; one result per id, in order.
    pub async fn bulk_approve(&self, actor: &Actor, ids: &[PayoutId]) -> Vec<BulkOutcome> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(BulkOutcome {
                id: id.clone(),
                result: self.approve(actor, id).await,
            });
        }
        out
    }

    /// Cancels each payout, releasing its consultations; one result per id, in order.
    pub async fn bulk_cancel(&self, actor: &Actor, ids: &[PayoutId], reason: Option<&str>) -> Vec<BulkOutcome> {
        self.bulk_cancel_with(actor, ids, reason, CancelConsultations::Release)
            .await
    }

    /// Cancels each payout as [`cancel_with`](Self::cancel_with); one result per id, in order.
    pub async fn bulk_cancel_with(
        &self,
        actor: &Actor,
        ids: &[PayoutId],
        reason: Option<&str>,
        consultations: CancelConsultations,
    ) -> Vec<BulkOutcome> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(BulkOutcome {
                id: id.clone(),
                result: self.cancel_with(actor, id, reason, consultations).await,
            });
        }
        out
    }

    /// Checks everything, then commits `APPROVED -> PROCESSING` with a new attempt and its key.
    pub(super) async fn prepare_trigger(&self, actor: &Actor, id: &PayoutId, provider: Provider) -> Result<Prepared> {
        self.require_privileged(actor, "trigger payouts")?;
        self.refuse_when_shutting_down()?;
        let (payout, attempts) = self.store.payout_and_attempts(id).await?;
        moves_to(&payout, PayoutEvent::Trigger)?;
        let doctor_hold = self.doctor_hold_of(&payout.doctor_id).await?;
        let adapter = self.provider(provider)?.clone();
        let recipient = self.directory.recipient(&payout.doctor_id).await?;
        let (change, instruction) = self.plan_trigger(
            actor,
            &payout,
            &attempts,
            recipient,
            doctor_hold.as_ref(),
            &adapter,
            Batch::Alone,
        )?;
        let payout = self.store.apply(change).await?;
        Ok(Prepared {
            payout,
            instruction,
            adapter,
        })
    }

    /// The change that triggers `payout` (as read, with its `attempts`) through `adapter`, and the
    /// instruction to send once it is committed; refuses a payout that is not `APPROVED`, that is
    /// on hold (its own hold, or `doctor_hold`, its doctor's), that the
    /// approval policy does not let `actor` trigger (details changed since approval or an approval
    /// that recorded none, a missing second approval, the triggerer approved it), or whose doctor has
    /// no destination for the provider.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_trigger(
        &self,
        actor: &Actor,
        payout: &Payout,
        attempts: &[PayoutAttempt],
        recipient: Option<Recipient>,
        doctor_hold: Option<&DoctorHold>,
        adapter: &Arc<dyn PayoutProvider>,
        batch: Batch<'_>,
    ) -> Result<(PayoutChange, PayoutInstruction)> {
        let caps = adapter.capabilities();
        let key = PayoutAttempt::key_for(&payout.id, next_attempt_no(attempts));
        // A batching provider's attempt belongs to a batch from the start: its own (named by its
        // key) when sent alone, or the bulk trigger's chunk.
        let batch_id = match batch {
            _ if !caps.batch => None,
            Batch::Alone => Some(key),
            Batch::Named(id) => Some(id.to_string()),
        };
        let route = Route {
            provider: adapter.provider(),
            simulated: caps.simulated,
            batch_id,
            bank_file: None,
        };
        self.plan_attempt(actor, payout, attempts, recipient, doctor_hold, route, self.clock.now())
    }

    /// The change that moves `payout` (as read, with its `attempts`) `APPROVED -> PROCESSING` with a
    /// new attempt going out by `route`, audited (`TRIGGER`), and the instruction the attempt
    /// carries, written at `now`; refused as [`plan_trigger`](Self::plan_trigger) says. One rule for every way a
    /// payout is sent: a provider call, a bulk batch, a bank file.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_attempt(
        &self,
        actor: &Actor,
        payout: &Payout,
        attempts: &[PayoutAttempt],
        recipient: Option<Recipient>,
        doctor_hold: Option<&DoctorHold>,
        route: Route,
        now: DateTime<Utc>,
    ) -> Result<(PayoutChange, PayoutInstruction)> {
        let to = moves_to(payout, PayoutEvent::Trigger)?;
        super::holds::check_not_held(payout, doctor_hold)?;
        self.check_trigger_policy(actor, payout, recipient.as_ref())?;
        let Route {
            provider,
            simulated,
            batch_id,
            bank_file,
        } = route;
        let id = &payout.id;
        let destination = recipient
            .as_ref()
            .and_then(|r| r.destination(provider))
            .ok_or_else(|| Error::MissingRecipient {
                doctor_id: payout.doctor_id.to_string(),
                provider,
            })?;
        let recipient = recipient.unwrap_or_default();
        let attempt_no = next_attempt_no(attempts);
        let key = PayoutAttempt::key_for(id, attempt_no);
        let instruction = PayoutInstruction {
            payout_id: id.clone(),
            attempt_no,
            idempotency_key: key.clone(),
            doctor_id: payout.doctor_id.clone(),
            recipient_name: recipient.name.clone(),
            recipient_email: recipient.email.clone(),
            destination,
            amount: payout.amount_due,
            description: format!("Consultations {}", payout.period()),
            batch_id: batch_id.clone(),
        };
        let summary = format!(
            "{} to {}{}",
            payout.amount_due,
            instruction.destination.masked(),
            if simulated {
                format!(" [{SIMULATED_NOTE}]")
            } else {
                String::new()
            }
        );
        let mut change = PayoutChange::of(payout, now);
        change.new_status = Some(to);
        change.patch.provider = Some(provider);
        // A file's id is its members' reference from the start: it is what the bank is given.
        let reference = bank_file.as_ref().map(|f| f.to_string());
        if reference.is_some() {
            change.patch.provider_reference = reference.clone();
        }
        change.new_attempt = Some(PayoutAttempt {
            payout_id: id.clone(),
            attempt_no,
            provider,
            idempotency_key: key.clone(),
            request_summary: summary.clone(),
            outcome: AttemptOutcome::Pending,
            provider_reference: reference,
            error: None,
            created_at: now,
            updated_at: now,
            destination: Some(instruction.destination.clone()),
            batch_id: batch_id.clone(),
        });
        let detail = match &bank_file {
            Some(file) => format!("attempt {attempt_no} sent by bank file {file}, idempotency key {key}: {summary}"),
            None => {
                let in_batch = batch_id.map(|b| format!(" in batch {b}")).unwrap_or_default();
                format!("attempt {attempt_no} via {provider}, idempotency key {key}{in_batch}: {summary}")
            }
        };
        change
            .audit
            .push(self.audit(payout, &actor.label(), "TRIGGER", Some(to), detail));
        Ok((change, instruction))
    }

    /// Calls the provider with the service's time limit; running out of time is an unknown outcome.
    /// Runs in a `provider_send` span naming the payout, the attempt's key and the provider (the
    /// adapter's own logs carry them), and is counted and timed ([`telemetry`](crate::telemetry)).
    pub(super) async fn send_timed(&self, p: &Prepared) -> std::result::Result<SendReceipt, ProviderError> {
        let provider = p.adapter.provider();
        let span = tracing::info_span!(
            "provider_send",
            payout_id = %p.instruction.payout_id,
            attempt_key = %p.instruction.idempotency_key,
            %provider,
        );
        async {
            let started = Instant::now();
            let result = match tokio::time::timeout(self.policy.send_timeout, p.adapter.send(&p.instruction)).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::new(
                    provider,
                    ProviderErrorKind::Ambiguous,
                    format!("no answer within {:?}", self.policy.send_timeout),
                )),
            };
            telemetry::record_send_time(provider, started.elapsed());
            telemetry::record_send(provider, &result);
            result
        }
        .instrument(span)
        .await
    }
}

/// How a planned attempt goes out ([`PayoutService::plan_attempt`]).
pub(super) struct Route {
    /// Through which provider.
    pub provider: Provider,
    /// The provider moves no money (said in the attempt's summary and the audit).
    pub simulated: bool,
    /// The batch it is stored in, if any.
    pub batch_id: Option<String>,
    /// The bank file it is sent in, if it goes by file (then `batch_id` is the file's id too).
    pub bank_file: Option<crate::domain::BankFileId>,
}

/// The number of the next attempt after `attempts`.
fn next_attempt_no(attempts: &[PayoutAttempt]) -> u32 {
    attempts.iter().map(|a| a.attempt_no).max().unwrap_or(0) + 1
}

/// Which provider batch a planned attempt joins (for a provider that batches).
#[derive(Debug, Clone, Copy)]
pub(super) enum Batch<'a> {
    /// Its own, named by its idempotency key (a single trigger).
    Alone,
    /// The bulk trigger's batch of that id.
    Named(&'a str),
}

/// Where an admin's `event` takes `payout`; refused (`InvalidTransition`) unless it moves it.
pub(super) fn moves_to(payout: &Payout, event: PayoutEvent) -> Result<PayoutStatus> {
    match transition(payout.status, event)? {
        Transition::To(to) => Ok(to),
        _ => Err(Error::InvalidTransition {
            from: payout.status,
            event,
        }),
    }
}
