//! Approve, cancel, trigger, retry, their bulk forms, and recording what a provider answered.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};

use super::PayoutService;
use crate::domain::{
    Actor, AttemptOutcome, DoctorId, Payout, PayoutAttempt, PayoutId, PayoutOrigin, Provider, Recipient,
};
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
    /// prepared attempts in batch calls of up to 1,000 (or its maximum size, if smaller).
    ///
    /// Attempts are prepared (read, checked and committed with their idempotency keys) a chunk at a
    /// time, ahead of the sends: every send still happens after its attempt is committed, and a crash
    /// leaves at most a chunk or two committed but not sent, `PROCESSING` with an unknown outcome,
    /// which [`reconcile`](Self::reconcile) settles (the provider never saw the key; it is sent again
    /// with it). Answers are recorded as they come, together.
    pub async fn bulk_trigger(&self, actor: &Actor, ids: &[PayoutId], provider: Provider) -> Vec<BulkOutcome> {
        let concurrency = self.config.trigger_concurrency.max(1);
        let batching = self.provider(provider).ok().and_then(|adapter| {
            let caps = adapter.capabilities();
            (caps.batch && caps.max_batch_size > 1).then(|| (adapter.clone(), caps))
        });
        let Some((adapter, caps)) = batching else {
            let Ok(adapter) = self.provider(provider).cloned() else {
                // No such provider: each payout gets the refusal (after its own checks) from `trigger`.
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(BulkOutcome {
                        id: id.clone(),
                        result: self.trigger(actor, id, provider).await,
                    });
                }
                return out;
            };
            // Three stages, run side by side so none waits for another's turn to be polled:
            // 1. attempts are prepared a chunk at a time (one read and one write per chunk), a chunk
            //    ahead of the sends;
            // 2. sends run at the trigger concurrency, unordered, so one slow send (an adapter in retry
            //    backoff) never holds back the next ones;
            // 3. answers are recorded as they come, all that are in at once in one `apply_all`.
            // The results are put back in input order afterwards.
            let chunk = concurrency;
            let adapter = &adapter;
            let chunks = numbered_chunks(ids, chunk);
            let (mut to_send, prepared) = futures::channel::mpsc::channel::<(usize, Result<Prepared>)>(chunk);
            let (mut to_record, answered) = futures::channel::mpsc::channel(chunk);
            let mut done: Vec<(usize, Result<Payout>)> = Vec::with_capacity(ids.len());
            let prepare = async move {
                for (first, ids) in chunks {
                    for item in self.prepare_chunk(actor, &ids, first, provider, adapter).await {
                        // The receiver lives until every item is through.
                        let _ = to_send.send(item).await;
                    }
                }
            };
            let send = async move {
                let mut sent = prepared
                    .map(|(i, prepared)| async move {
                        match prepared {
                            Ok(p) => {
                                let answer = self.send_timed(&p).await;
                                Ok((i, p, answer))
                            }
                            Err(e) => Err((i, e)),
                        }
                    })
                    .buffer_unordered(concurrency);
                while let Some(item) = sent.next().await {
                    let _ = to_record.send(item).await;
                }
            };
            let record = async {
                let mut batches = answered.ready_chunks(chunk);
                while let Some(batch) = batches.next().await {
                    let mut sent = Vec::with_capacity(batch.len());
                    let mut answers = Vec::with_capacity(batch.len());
                    for item in batch {
                        match item {
                            Ok((i, p, answer)) => {
                                sent.push((i, p));
                                answers.push(answer);
                            }
                            Err((i, e)) => done.push((i, Err(e))),
                        }
                    }
                    if !sent.is_empty() {
                        done.extend(self.record_batch_answers(sent, answers, concurrency).await);
                    }
                }
            };
            futures::join!(prepare, send, record);
            return in_input_order(ids, done);
        };

        // Batching provider: the same three stages side by side, a batch of up to PREPARE_CHUNK at a
        // time: its attempts prepared (one read and one write), its batch call (two in flight), its
        // answers recorded (one `apply_all`). A batch goes out as soon as its attempts are committed,
        // while the next one is prepared.
        let batch = caps.max_batch_size.min(PREPARE_CHUNK);
        let adapter = &adapter;
        let chunks = numbered_chunks(ids, batch);
        type Sent = (
            Vec<(usize, Error)>,
            Vec<(usize, Prepared)>,
            Vec<std::result::Result<SendReceipt, ProviderError>>,
        );
        let (mut to_send, prepared) = futures::channel::mpsc::channel::<Vec<(usize, Result<Prepared>)>>(1);
        let (mut to_record, answered) = futures::channel::mpsc::channel::<Sent>(1);
        let mut done: Vec<(usize, Result<Payout>)> = Vec::with_capacity(ids.len());
        let prepare = async move {
            for (first, ids) in chunks {
                let items = self.prepare_chunk(actor, &ids, first, provider, adapter).await;
                // The receiver lives until every batch is through.
                let _ = to_send.send(items).await;
            }
        };
        let send = async move {
            let mut sent = prepared
                .map(|items| async move {
                    let mut refused = Vec::new();
                    let mut ready = Vec::with_capacity(items.len());
                    for (i, p) in items {
                        match p {
                            Ok(p) => ready.push((i, p)),
                            Err(e) => refused.push((i, e)),
                        }
                    }
                    let answers = self.send_batch_timed(adapter, &ready).await;
                    (refused, ready, answers)
                })
                .buffer_unordered(2);
            while let Some(item) = sent.next().await {
                let _ = to_record.send(item).await;
            }
        };
        let record = async {
            let mut answered = answered;
            while let Some((refused, ready, answers)) = answered.next().await {
                done.extend(refused.into_iter().map(|(i, e)| (i, Err(e))));
                if !ready.is_empty() {
                    done.extend(self.record_batch_answers(ready, answers, concurrency).await);
                }
            }
        };
        futures::join!(prepare, send, record);
        in_input_order(ids, done)
    }

    /// One batch call with the service's time limit, one answer per item (an empty batch makes no
    /// call). Running out of time, or an answer of the wrong length, is an unknown outcome for every
    /// item.
    async fn send_batch_timed(
        &self,
        adapter: &Arc<dyn PayoutProvider>,
        ready: &[(usize, Prepared)],
    ) -> Vec<std::result::Result<SendReceipt, ProviderError>> {
        if ready.is_empty() {
            return Vec::new();
        }
        let provider = adapter.provider();
        let instructions: Vec<PayoutInstruction> = ready.iter().map(|(_, p)| p.instruction.clone()).collect();
        let answer = match tokio::time::timeout(self.config.send_timeout, adapter.send_batch(&instructions)).await {
            Ok(a) => a,
            Err(_) => Err(ProviderError::new(
                provider,
                ProviderErrorKind::Ambiguous,
                "batch call timed out",
            )),
        };
        match answer {
            Ok(v) if v.len() == ready.len() => v,
            Ok(v) => {
                let e = ProviderError::new(
                    provider,
                    ProviderErrorKind::Ambiguous,
                    format!("batch answered {} results for {} items", v.len(), ready.len()),
                );
                ready.iter().map(|_| Err(e.clone())).collect()
            }
            Err(e) => ready.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Checks everything, then commits `APPROVED -> PROCESSING` with a new attempt and its key.
    pub(super) async fn prepare_trigger(&self, actor: &Actor, id: &PayoutId, provider: Provider) -> Result<Prepared> {
        self.require_privileged(actor, "trigger payouts")?;
        let (payout, attempts) = self.payout_and_attempts(id).await?;
        trigger_target(&payout)?;
        let adapter = self.provider(provider)?.clone();
        let recipient = self.directory.recipient(&payout.doctor_id).await?;
        let (change, instruction) = self.plan_trigger(actor, &payout, &attempts, recipient, &adapter)?;
        let payout = self.store.apply(change).await?;
        Ok(Prepared {
            payout,
            instruction,
            adapter,
        })
    }

    /// A payout and its attempts, in one store read where the store can (the attempts at least as new
    /// as the payout); `NotFound` for an unknown payout.
    pub(super) async fn payout_and_attempts(&self, id: &PayoutId) -> Result<(Payout, Vec<PayoutAttempt>)> {
        self.store
            .payouts_with_attempts(std::slice::from_ref(id))
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(id.clone()))
    }

    /// [`prepare_trigger`](Self::prepare_trigger) for a chunk of payouts, `ids`, which start at
    /// position `first` of a bulk action: one read of the payouts with their attempts, one directory
    /// call and one [`apply_all`](crate::store::PayoutStore::apply_all). Returns each payout's
    /// position with its prepared attempt, or the error `prepare_trigger` would give it.
    async fn prepare_chunk(
        &self,
        actor: &Actor,
        ids: &[PayoutId],
        first: usize,
        provider: Provider,
        adapter: &Arc<dyn PayoutProvider>,
    ) -> Vec<(usize, Result<Prepared>)> {
        let mut out = Vec::with_capacity(ids.len());
        // Refused, or a read that failed for the whole chunk: one payout at a time, so that each
        // gets its own answer (a refusal costs no read).
        let read = match self.require_privileged(actor, "trigger payouts") {
            Ok(()) => self.store.payouts_with_attempts(ids).await.ok(),
            Err(_) => None,
        };
        let Some(read) = read else {
            for (k, id) in ids.iter().enumerate() {
                out.push((first + k, self.prepare_trigger(actor, id, provider).await));
            }
            return out;
        };
        let found: HashMap<PayoutId, (Payout, Vec<PayoutAttempt>)> =
            read.into_iter().map(|(p, a)| (p.id.clone(), (p, a))).collect();
        let mut doctors: Vec<DoctorId> = found.values().map(|(p, _)| p.doctor_id.clone()).collect();
        doctors.sort_unstable();
        doctors.dedup();
        let recipients: HashMap<DoctorId, Recipient> = match self.directory.recipients(&doctors).await {
            Ok(found) => found.into_iter().map(|r| (r.doctor_id.clone(), r)).collect(),
            Err(_) => {
                for (k, id) in ids.iter().enumerate() {
                    out.push((first + k, self.prepare_trigger(actor, id, provider).await));
                }
                return out;
            }
        };
        let mut changes = Vec::with_capacity(ids.len());
        let mut planned = Vec::with_capacity(ids.len());
        for (k, id) in ids.iter().enumerate() {
            let Some((payout, attempts)) = found.get(id) else {
                out.push((first + k, Err(Error::NotFound(id.clone()))));
                continue;
            };
            let recipient = recipients.get(&payout.doctor_id).cloned();
            match self.plan_trigger(actor, payout, attempts, recipient, adapter) {
                Ok((change, instruction)) => {
                    changes.push(change);
                    planned.push((first + k, instruction));
                }
                Err(e) => out.push((first + k, Err(e))),
            }
        }
        // A repeated id was planned twice from one read: its second change is refused as a conflict.
        for ((i, instruction), applied) in planned.into_iter().zip(self.store.apply_all(changes).await) {
            out.push((
                i,
                applied.map(|payout| Prepared {
                    payout,
                    instruction,
                    adapter: adapter.clone(),
                }),
            ));
        }
        out
    }

    /// The change that triggers `payout` (as read, with its `attempts`) through `adapter`, and the
    /// instruction to send once it is committed; refuses a payout that is not `APPROVED` or whose
    /// doctor has no destination for the provider.
    fn plan_trigger(
        &self,
        actor: &Actor,
        payout: &Payout,
        attempts: &[PayoutAttempt],
        recipient: Option<Recipient>,
        adapter: &Arc<dyn PayoutProvider>,
    ) -> Result<(PayoutChange, PayoutInstruction)> {
        let to = trigger_target(payout)?;
        let provider = adapter.provider();
        let id = &payout.id;
        let destination = recipient
            .as_ref()
            .and_then(|r| r.destination(provider))
            .ok_or_else(|| Error::MissingRecipient {
                doctor_id: payout.doctor_id.to_string(),
                provider,
            })?;
        let recipient = recipient.unwrap_or_default();
        let attempt_no = attempts.iter().map(|a| a.attempt_no).max().unwrap_or(0) + 1;
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
        let mut change = PayoutChange::of(payout, now);
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
            payout,
            &actor.label(),
            "TRIGGER",
            Some(to),
            format!("attempt {attempt_no} via {provider}, idempotency key {key}: {summary}"),
        ));
        Ok((change, instruction))
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

    /// [`record_prepared_send`](Self::record_prepared_send) for a batch call's answers: the first
    /// try of every answer in one [`apply_all`](crate::store::PayoutStore::apply_all); an answer whose
    /// payout changed meanwhile (a webhook landed first) is then recorded alone, as `record_send`
    /// does, at the trigger concurrency.
    async fn record_batch_answers(
        &self,
        chunk: Vec<(usize, Prepared)>,
        per_item: Vec<std::result::Result<SendReceipt, ProviderError>>,
        concurrency: usize,
    ) -> Vec<(usize, Result<Payout>)> {
        let changes: Vec<PayoutChange> = chunk
            .iter()
            .zip(&per_item)
            .map(|((_, p), r)| {
                let answer = Answer::of(&p.adapter, r);
                self.answer_change(&p.payout, p.instruction.attempt_no, &answer, true)
            })
            .collect();
        let applied = self.store.apply_all(changes).await;
        let mut done = Vec::with_capacity(chunk.len());
        let mut again = Vec::new();
        for (((i, p), r), applied) in chunk.into_iter().zip(per_item).zip(applied) {
            match applied {
                Err(Error::Conflict(_)) => again.push((i, p, r)),
                other => done.push((i, other)),
            }
        }
        let retried: Vec<(usize, Result<Payout>)> = futures::stream::iter(again)
            .map(|(i, p, r)| async move {
                (
                    i,
                    self.record_answer(&p.payout, p.instruction.attempt_no, r, &p.adapter, false)
                        .await,
                )
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        done.extend(retried);
        done
    }

    async fn record_answer(
        &self,
        sent: &Payout,
        attempt_no: u32,
        result: std::result::Result<SendReceipt, ProviderError>,
        adapter: &Arc<dyn PayoutProvider>,
        fresh: bool,
    ) -> Result<Payout> {
        let answer = Answer::of(adapter, &result);
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
                answer.outcome,
                AttemptOutcome::Pending | AttemptOutcome::Accepted | AttemptOutcome::Unknown { .. }
            );
            let change = if let (Some(current), true) = (&current, settled && weaker) {
                let Some(reference) = answer
                    .reference
                    .clone()
                    .filter(|_| current.provider_reference.is_none())
                else {
                    return Ok(payout);
                };
                let mut change = PayoutChange::of(&payout, self.clock.now());
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
                    &answer.actor,
                    "ATTEMPT_REFERENCE",
                    None,
                    format!("attempt {attempt_no}: late answer after settlement: {}", answer.note),
                ));
                change
            } else {
                self.answer_change(&payout, attempt_no, &answer, is_latest)
            };
            match self.store.apply(change).await {
                Err(Error::Conflict(_)) => payout = self.store.get(&sent.id).await?,
                other => return other,
            }
        }
        Err(Error::Conflict(sent.id.clone()))
    }

    /// The change that records `answer` on attempt `attempt_no` of `payout` (as read), the attempt
    /// not settled yet: its outcome, and, when it is the latest attempt, the payout's reference, notes
    /// and any status the answer moves it to.
    fn answer_change(&self, payout: &Payout, attempt_no: u32, answer: &Answer, is_latest: bool) -> PayoutChange {
        let mut change = PayoutChange::of(payout, self.clock.now());
        change.attempt_update = Some(AttemptUpdate {
            attempt_no,
            outcome: answer.outcome.clone(),
            provider_reference: answer.reference.clone(),
            error: answer.error.clone(),
        });
        if is_latest {
            if answer.reference.is_some() {
                change.patch.provider_reference = answer.reference.clone();
            }
            change.patch.notes = Some(answer.note.clone());
        }
        let to = match answer.event.map(|e| transition(payout.status, e)) {
            Some(Ok(Transition::To(to))) if is_latest => Some(to),
            _ => None,
        };
        change.new_status = to;
        if matches!(to, Some(PayoutStatus::Paid | PayoutStatus::Failed)) {
            change.patch.processed_at = Some(self.clock.now());
        }
        let action = match (answer.event, to) {
            (Some(e), Some(_)) => e.as_str().to_string(),
            _ => format!("ATTEMPT_{}", answer.outcome.as_str()),
        };
        change.audit.push(self.audit(
            payout,
            &answer.actor,
            &action,
            to,
            format!("attempt {attempt_no}: {}", answer.note),
        ));
        change
    }
}

/// The most payouts a batching bulk trigger reads, plans and records per store call, and sends per
/// batch call: small enough that a batch goes out while the next is prepared, large enough that
/// the store and the provider see few calls.
const PREPARE_CHUNK: usize = 1000;

/// Where a trigger takes `payout`: `PROCESSING` from `APPROVED`, refused from anywhere else.
fn trigger_target(payout: &Payout) -> Result<PayoutStatus> {
    match transition(payout.status, PayoutEvent::Trigger)? {
        Transition::To(to) => Ok(to),
        _ => Err(Error::InvalidTransition {
            from: payout.status,
            event: PayoutEvent::Trigger,
        }),
    }
}

/// What a provider answered about one attempt, in the terms the store records.
struct Answer {
    /// The payout event it means, if it settles anything.
    event: Option<PayoutEvent>,
    outcome: AttemptOutcome,
    reference: Option<String>,
    /// For the payout's notes and the audit entry.
    note: String,
    error: Option<String>,
    /// Who the audit entry names: `provider:<name>`.
    actor: String,
}

impl Answer {
    fn of(adapter: &Arc<dyn PayoutProvider>, result: &std::result::Result<SendReceipt, ProviderError>) -> Answer {
        let simulated = adapter.capabilities().simulated;
        let (event, outcome, reference, note, error) = match result {
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
        Answer {
            event,
            outcome,
            reference,
            note,
            error,
            actor: format!("provider:{}", adapter.provider()),
        }
    }
}

/// `ids` in owned chunks of `size`, each with the position of its first id (owned, so the bulk
/// trigger's futures stay `Send` for any lifetime, inside an axum handler too).
fn numbered_chunks(ids: &[PayoutId], size: usize) -> Vec<(usize, Vec<PayoutId>)> {
    ids.chunks(size)
        .enumerate()
        .map(|(c, chunk)| (c * size, chunk.to_vec()))
        .collect()
}

/// One outcome per id, in the order of `ids`, from results numbered by position in any order.
fn in_input_order(ids: &[PayoutId], mut done: Vec<(usize, Result<Payout>)>) -> Vec<BulkOutcome> {
    done.sort_unstable_by_key(|(i, _)| *i);
    debug_assert_eq!(done.len(), ids.len(), "one result per payout");
    ids.iter()
        .zip(done)
        .map(|(id, (_, result))| BulkOutcome { id: id.clone(), result })
        .collect()
}
