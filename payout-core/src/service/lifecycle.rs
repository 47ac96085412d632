//! Approve, cancel, trigger, retry, their bulk forms, and recording what a provider answered.

use std::sync::Arc;

use futures::StreamExt;

use super::PayoutService;
use crate::domain::{Actor, AttemptOutcome, Payout, PayoutAttempt, PayoutId, PayoutOrigin, Provider};
use crate::error::{Error, ProviderError, ProviderErrorKind, Result};
use crate::provider::{PayoutInstruction, PayoutProvider, ProviderStatus, SendReceipt};
use crate::simulated::SIMULATED_NOTE;
use crate::status::{PayoutEvent, PayoutStatus, Transition, transition};
use crate::store::{AttemptUpdate, PayoutChange};

/// The result of one payout in a bulk action: a partial failure never aborts the others.
#[derive(Debug)]
pub struct BulkOutcome {
    /// The payout.
    pub id: PayoutId,
    /// What happened to it.
    pub result: Result<Payout>,
}

/// An attempt recorded and ready to send.
pub(super) struct Prepared {
    pub payout: Payout,
    pub instruction: PayoutInstruction,
    pub adapter: Arc<dyn PayoutProvider>,
}

impl PayoutService {
    /// `PENDING -> APPROVED`. With four eyes on, a manual payout's creator may not approve it. When two
    /// admins approve at once exactly one wins; the other gets `Conflict`.
    pub async fn approve(&self, actor: &Actor, id: &PayoutId) -> Result<Payout> {
        self.require_privileged(actor, "approve payouts")?;
        let payout = self.store.get(id).await?;
        let Transition::To(to) = transition(payout.status, PayoutEvent::Approve)? else {
            return Err(Error::InvalidTransition {
                from: payout.status,
                event: PayoutEvent::Approve,
            });
        };
        if self.config.four_eyes && payout.origin == PayoutOrigin::Manual && payout.created_by == actor.label() {
            return Err(Error::Forbidden(
                "four eyes: the creator of a manual payout may not approve it".into(),
            ));
        }
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.new_status = Some(to);
        change.patch.approved_by = Some(actor.label());
        change
            .audit
            .push(self.audit(&payout, &actor.label(), "APPROVE", Some(to), "approved".into()));
        self.store.apply(change).await
    }

    /// `PENDING | APPROVED -> CANCELLED`: withdrawn before any money moved.
    pub async fn cancel(&self, actor: &Actor, id: &PayoutId, reason: Option<&str>) -> Result<Payout> {
        self.require_privileged(actor, "cancel payouts")?;
        let payout = self.store.get(id).await?;
        let Transition::To(to) = transition(payout.status, PayoutEvent::Cancel)? else {
            return Err(Error::InvalidTransition {
                from: payout.status,
                event: PayoutEvent::Cancel,
            });
        };
        let reason = reason.unwrap_or("cancelled").to_string();
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.new_status = Some(to);
        change.patch.notes = Some(reason.clone());
        change
            .audit
            .push(self.audit(&payout, &actor.label(), "CANCEL", Some(to), reason));
        self.store.apply(change).await
    }

    /// `APPROVED -> PROCESSING`, then sends the payout with `provider`.
    ///
    /// The attempt and its idempotency key are committed *before* the provider is called. A confirmed
    /// rejection makes the payout `FAILED`; a timeout or any answer that may hide a sent payment leaves
    /// it `PROCESSING` with an unknown outcome for [`reconcile`](Self::reconcile) or a webhook to settle.
    /// Nothing changes when the payout is not `APPROVED` or the doctor has no details for `provider`.
    pub async fn trigger(&self, actor: &Actor, id: &PayoutId, provider: Provider) -> Result<Payout> {
        let prepared = self.prepare_trigger(actor, id, provider).await?;
        let result = self.send_timed(&prepared).await;
        self.record_prepared_send(&prepared, result).await
    }

    /// After a *confirmed* failure: `FAILED -> APPROVED`, then triggers a new attempt (new key) with
    /// `provider`, or the provider of the failed attempt.
    pub async fn retry(&self, actor: &Actor, id: &PayoutId, provider: Option<Provider>) -> Result<Payout> {
        self.require_privileged(actor, "retry payouts")?;
        let payout = self.store.get(id).await?;
        let Transition::To(to) = transition(payout.status, PayoutEvent::Retry)? else {
            return Err(Error::InvalidTransition {
                from: payout.status,
                event: PayoutEvent::Retry,
            });
        };
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
        let mut change = PayoutChange::of(&payout, self.clock.now());
        change.new_status = Some(to);
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "RETRY",
            Some(to),
            format!(
                "retry after confirmed failure of attempt {}",
                last.map(|a| a.attempt_no).unwrap_or(0)
            ),
        ));
        self.store.apply(change).await?;
        self.trigger(actor, id, provider).await
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

    /// Cancels each payout; one result per id, in order.
    pub async fn bulk_cancel(&self, actor: &Actor, ids: &[PayoutId], reason: Option<&str>) -> Vec<BulkOutcome> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(BulkOutcome {
                id: id.clone(),
                result: self.cancel(actor, id, reason).await,
            });
        }
        out
    }

    /// Triggers each payout with `provider`; one result per id, in order. Sends run with bounded
    /// concurrency (`ServiceConfig::trigger_concurrency`); a provider that batches (PayPal) gets the
    /// prepared attempts in batch calls of its maximum size.
    pub async fn bulk_trigger(&self, actor: &Actor, ids: &[PayoutId], provider: Provider) -> Vec<BulkOutcome> {
        let concurrency = self.config.trigger_concurrency.max(1);
        let batching = self
            .provider(provider)
            .map(|a| a.capabilities())
            .ok()
            .filter(|c| c.batch && c.max_batch_size > 1);
        let Some(caps) = batching else {
            // Unordered, so one slow send (an adapter in retry backoff) never holds back the next ones; the
            // results are put back in input order afterwards.
            let mut done: Vec<(usize, BulkOutcome)> = futures::stream::iter(ids.iter().cloned().enumerate())
                .map(|(i, id)| async move {
                    let result = self.trigger(actor, &id, provider).await;
                    (i, BulkOutcome { id, result })
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            done.sort_unstable_by_key(|(i, _)| *i);
            return done.into_iter().map(|(_, o)| o).collect();
        };

        // Batching provider: persist every attempt first, then send in batch calls.
        let mut prepared: Vec<(usize, PayoutId, Result<Prepared>)> =
            futures::stream::iter(ids.iter().cloned().enumerate())
                .map(|(i, id)| async move {
                    let p = self.prepare_trigger(actor, &id, provider).await;
                    (i, id, p)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        prepared.sort_unstable_by_key(|(i, _, _)| *i);
        let prepared: Vec<(PayoutId, Result<Prepared>)> = prepared.into_iter().map(|(_, id, p)| (id, p)).collect();
        let mut results: Vec<Option<Result<Payout>>> = prepared.iter().map(|_| None).collect();
        let mut ready: Vec<(usize, Prepared)> = Vec::new();
        for (i, (_, p)) in prepared.into_iter().enumerate() {
            match p {
                Ok(p) => ready.push((i, p)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let mut ready = ready.into_iter().peekable();
        while ready.peek().is_some() {
            // Owned, so the recording futures below borrow nothing but `self` (they must stay `Send` for
            // any lifetime, e.g. inside an axum handler).
            let chunk: Vec<(usize, Prepared)> = ready.by_ref().take(caps.max_batch_size).collect();
            let Some((_, first)) = chunk.first() else { continue };
            let adapter = first.adapter.clone();
            let instructions: Vec<PayoutInstruction> = chunk.iter().map(|(_, p)| p.instruction.clone()).collect();
            let answer = match tokio::time::timeout(self.config.send_timeout, adapter.send_batch(&instructions)).await {
                Ok(a) => a,
                Err(_) => Err(ProviderError::new(
                    provider,
                    ProviderErrorKind::Ambiguous,
                    "batch call timed out",
                )),
            };
            let per_item: Vec<std::result::Result<SendReceipt, ProviderError>> = match answer {
                Ok(v) if v.len() == chunk.len() => v,
                Ok(v) => {
                    let e = ProviderError::new(
                        provider,
                        ProviderErrorKind::Ambiguous,
                        format!("batch answered {} results for {} items", v.len(), chunk.len()),
                    );
                    chunk.iter().map(|_| Err(e.clone())).collect()
                }
                Err(e) => chunk.iter().map(|_| Err(e.clone())).collect(),
            };
            // Recorded with the same bounded concurrency as the sends: one at a time, the store's round
            // trips would cost more than the batch call saved.
            let recorded: Vec<(usize, Result<Payout>)> = futures::stream::iter(chunk.into_iter().zip(per_item))
                .map(|((i, p), r)| async move { (i, self.record_prepared_send(&p, r).await) })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            for (i, r) in recorded {
                results[i] = Some(r);
            }
        }
        ids.iter()
            .cloned()
            .zip(results)
            .map(|(id, r)| BulkOutcome {
                result: r.unwrap_or_else(|| Err(Error::Store("bulk trigger lost a result".into()))),
                id,
            })
            .collect()
    }

    /// Checks everything, then commits `APPROVED -> PROCESSING` with a new attempt and its key.
    pub(super) async fn prepare_trigger(&self, actor: &Actor, id: &PayoutId, provider: Provider) -> Result<Prepared> {
        self.require_privileged(actor, "trigger payouts")?;
        // Two independent reads, side by side: each is a store round trip on the trigger's critical path.
        let (payout, attempts) = futures::join!(self.store.get(id), self.store.attempts(id));
        let payout = payout?;
        let Transition::To(to) = transition(payout.status, PayoutEvent::Trigger)? else {
            return Err(Error::InvalidTransition {
                from: payout.status,
                event: PayoutEvent::Trigger,
            });
        };
        let adapter = self.provider(provider)?.clone();
        let recipient = self.directory.recipient(&payout.doctor_id).await?;
        let destination = recipient
            .as_ref()
            .and_then(|r| r.destination(provider))
            .ok_or_else(|| Error::MissingRecipient {
                doctor_id: payout.doctor_id.to_string(),
                provider,
            })?;
        let recipient = recipient.unwrap_or_default();
        let attempt_no = attempts?.iter().map(|a| a.attempt_no).max().unwrap_or(0) + 1;
        let key = PayoutAttempt::key_for(id, attempt_no);
        let simulated = adapter.capabilities().simulated;
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
        };
        let now = self.clock.now();
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
        let mut change = PayoutChange::of(&payout, now);
        change.new_status = Some(to);
        change.patch.provider = Some(provider);
        change.new_attempt = Some(PayoutAttempt {
            payout_id: id.clone(),
            attempt_no,
            provider,
            idempotency_key: key.clone(),
            request_summary: summary.clone(),
            outcome: AttemptOutcome::Pending,
            provider_reference: None,
            error: None,
            created_at: now,
            updated_at: now,
        });
        change.audit.push(self.audit(
            &payout,
            &actor.label(),
            "TRIGGER",
            Some(to),
            format!("attempt {attempt_no} via {provider}, idempotency key {key}: {summary}"),
        ));
        let payout = self.store.apply(change).await?;
        Ok(Prepared {
            payout,
            instruction,
            adapter,
        })
    }

    /// Calls the provider with the service's time limit; running out of time is an unknown outcome.
    pub(super) async fn send_timed(&self, p: &Prepared) -> std::result::Result<SendReceipt, ProviderError> {
        match tokio::time::timeout(self.config.send_timeout, p.adapter.send(&p.instruction)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::new(
                p.adapter.provider(),
                ProviderErrorKind::Ambiguous,
                format!("no answer within {:?}", self.config.send_timeout),
            )),
        }
    }

    /// Records what the provider answered for an attempt, retrying on a concurrent change (a webhook
    /// may have landed first): the attempt's outcome is stored and the payout moves forward only.
    pub(super) async fn record_send(
        &self,
        sent: &Payout,
        attempt_no: u32,
        result: std::result::Result<SendReceipt, ProviderError>,
        adapter: &Arc<dyn PayoutProvider>,
    ) -> Result<Payout> {
        self.record_answer(sent, attempt_no, result, adapter, false).await
    }

    /// [`record_send`](Self::record_send) for an attempt [`prepare_trigger`](Self::prepare_trigger) just
    /// committed. `p.payout` is the payout as that commit left it, so while its version is unchanged the
    /// attempt is still `PENDING` and the latest: the first try skips reading the attempts, and the
    /// conditional update (any change of the payout or its attempts bumps the version) falls back to
    /// the full read on a conflict.
    async fn record_prepared_send(
        &self,
        p: &Prepared,
        result: std::result::Result<SendReceipt, ProviderError>,
    ) -> Result<Payout> {
        self.record_answer(&p.payout, p.instruction.attempt_no, result, &p.adapter, true)
            .await
    }

    async fn record_answer(
        &self,
        sent: &Payout,
        attempt_no: u32,
        result: std::result::Result<SendReceipt, ProviderError>,
        adapter: &Arc<dyn PayoutProvider>,
        fresh: bool,
    ) -> Result<Payout> {
        let simulated = adapter.capabilities().simulated;
        let (event, outcome, reference, note, error) = match &result {
            Ok(r) => {
                let (event, outcome) = match &r.status {
                    ProviderStatus::Accepted => (None, AttemptOutcome::Accepted),
                    ProviderStatus::Paid => (Some(PayoutEvent::ProviderPaid), AttemptOutcome::Succeeded),
                    ProviderStatus::Failed(reason) => (
                        Some(PayoutEvent::ProviderFailed),
                        AttemptOutcome::Failed { reason: reason.clone() },
                    ),
                    ProviderStatus::Returned(_) => (Some(PayoutEvent::ProviderReturned), AttemptOutcome::Succeeded),
                    ProviderStatus::Reversed(_) => (Some(PayoutEvent::ProviderReversed), AttemptOutcome::Succeeded),
                    ProviderStatus::NotFound => (
                        None,
                        AttemptOutcome::Unknown {
                            reason: "provider answered the send with no record".into(),
                        },
                    ),
                };
                (event, outcome, r.reference.clone(), r.note.clone(), None)
            }
            Err(e) => match e.kind {
                ProviderErrorKind::Final => (
                    Some(PayoutEvent::ProviderFailed),
                    AttemptOutcome::Failed { reason: e.to_string() },
                    None,
                    format!("rejected by {}: {e}", e.provider),
                    Some(e.to_string()),
                ),
                _ => (
                    None,
                    AttemptOutcome::Unknown { reason: e.to_string() },
                    None,
                    format!("outcome unknown ({e}); PROCESSING until a webhook or reconciliation settles it"),
                    Some(e.to_string()),
                ),
            },
        };
        let note = if simulated && !note.contains(SIMULATED_NOTE) {
            format!("{SIMULATED_NOTE}; {note}")
        } else {
            note
        };
        let actor = format!("provider:{}", adapter.provider());
        let mut payout = sent.clone();
        for try_no in 0..8 {
            // A webhook (which may find the attempt by our key) can settle the attempt before the send's own
            // answer is stored. A settled outcome is never downgraded by a weaker answer arriving late: only a
            // provider reference the attempt still lacks is kept from it.
            let (is_latest, current) = if fresh && try_no == 0 {
                // Pending and the latest as long as the payout is unchanged, which the update checks.
                (true, None)
            } else {
                let attempts = self.store.attempts(&sent.id).await?;
                // An answer about an older attempt (a retry started meanwhile) is recorded on that attempt only:
                // it never moves the payout, whose status belongs to the latest attempt.
                let latest = attempts.iter().map(|a| a.attempt_no).max().unwrap_or(attempt_no);
                (
                    attempt_no >= latest,
                    attempts.into_iter().find(|a| a.attempt_no == attempt_no),
                )
            };
            let settled = current
                .as_ref()
                .is_some_and(|a| matches!(a.outcome, AttemptOutcome::Succeeded | AttemptOutcome::Failed { .. }));
            let weaker = matches!(
                outcome,
                AttemptOutcome::Pending | AttemptOutcome::Accepted | AttemptOutcome::Unknown { .. }
            );
            let mut change = PayoutChange::of(&payout, self.clock.now());
            if let (Some(current), true) = (&current, settled && weaker) {
                let Some(reference) = reference.clone().filter(|_| current.provider_reference.is_none()) else {
                    return Ok(payout);
                };
                change.attempt_update = Some(AttemptUpdate {
                    attempt_no,
                    outcome: current.outcome.clone(),
                    provider_reference: Some(reference.clone()),
                    error: None,
                });
                if payout.provider_reference.is_none() {
                    change.patch.provider_reference = Some(reference);
                }
                change.audit.push(self.audit(
                    &payout,
                    &actor,
                    "ATTEMPT_REFERENCE",
                    None,
                    format!("attempt {attempt_no}: late answer after settlement: {note}"),
                ));
            } else {
                change.attempt_update = Some(AttemptUpdate {
                    attempt_no,
                    outcome: outcome.clone(),
                    provider_reference: reference.clone(),
                    error: error.clone(),
                });
                if is_latest {
                    if reference.is_some() {
                        change.patch.provider_reference = reference.clone();
                    }
                    change.patch.notes = Some(note.clone());
                }
                let to = match event.map(|e| transition(payout.status, e)) {
                    Some(Ok(Transition::To(to))) if is_latest => Some(to),
                    _ => None,
                };
                change.new_status = to;
                if matches!(to, Some(PayoutStatus::Paid | PayoutStatus::Failed)) {
                    change.patch.processed_at = Some(self.clock.now());
                }
                let action = match (event, to) {
                    (Some(e), Some(_)) => e.as_str().to_string(),
                    _ => format!("ATTEMPT_{}", outcome.as_str()),
                };
                change
                    .audit
                    .push(self.audit(&payout, &actor, &action, to, format!("attempt {attempt_no}: {note}")));
            }
            match self.store.apply(change).await {
                Err(Error::Conflict(_)) => payout = self.store.get(&sent.id).await?,
                other => return other,
            }
        }
        Err(Error::Conflict(sent.id.clone()))
    }
}
