//! The bulk trigger: many payouts sent with bounded concurrency, or in batch calls for a provider
//! that batches, through one three-stage [`pipeline`](super::pipeline).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::PayoutService;
use super::lifecycle::{Batch, BulkOutcome, Prepared, moves_to};
use super::pipeline::{self, Stages};
use crate::domain::{Actor, DoctorHold, DoctorId, Payout, PayoutAttempt, PayoutId, Provider, Recipient};
use crate::error::{Error, ProviderError, ProviderErrorKind, Result};
use crate::provider::{PayoutInstruction, PayoutProvider, SendReceipt};
use crate::status::{PayoutEvent, PayoutStatus};
use crate::store::PayoutStoreExt;
use crate::telemetry;

impl PayoutService {
    /// Triggers each payout with `provider`; one result per id, in order. Sends run with bounded
    /// concurrency (`PerformanceConfig::trigger_concurrency`); a provider that batches (PayPal) gets the
    /// prepared attempts in batch calls of up to 1,000 (or its maximum size, if smaller).
    ///
    /// Attempts are prepared (read, checked and committed with their idempotency keys) a chunk at a
    /// time, ahead of the sends: every send still happens after its attempt is committed, and a crash
    /// leaves at most a chunk or two committed but not sent, `PROCESSING` with an unknown outcome,
    /// which [`reconcile`](Self::reconcile) settles (the provider never saw the key; it is sent again
    /// with it). Answers are recorded as they come, together.
    ///
    /// A batch the provider rejected as a whole because of one invalid item
    /// ([`ProviderError::REJECTED_WITH_BATCH`] for the others) fails the invalid item alone: the
    /// others' attempts failed with nothing paid, so each is retried at once, as a new attempt in a
    /// new batch with its own stored id (at most three times).
    ///
    /// A payout on hold (its own hold, or its doctor's) is refused with [`Error::OnHold`], before
    /// anything is committed for it.
    ///
    /// Once [`begin_shutdown`](Self::begin_shutdown) is called, no further attempt is prepared: the
    /// payouts not reached yet are refused with [`Error::ShuttingDown`] (untouched, still
    /// `APPROVED`), while those already committed are sent and their answers recorded.
    ///
    /// Runs in a `bulk_trigger` span (`provider`, `payouts`); each send in a `provider_send` span.
    #[tracing::instrument(name = "bulk_trigger", skip_all, fields(%provider, payouts = ids.len()))]
    pub async fn bulk_trigger(&self, actor: &Actor, ids: &[PayoutId], provider: Provider) -> Vec<BulkOutcome> {
        let mut outcomes = self.bulk_trigger_round(actor, ids, provider).await;
        for _ in 0..REBATCH_ROUNDS {
            if self.is_shutting_down() {
                break;
            }
            let rejected: Vec<(usize, String)> = outcomes
                .iter()
                .enumerate()
                .filter_map(|(n, o)| {
                    let payout = o.result.as_ref().ok()?;
                    let why = payout.notes.as_deref()?;
                    (payout.status == PayoutStatus::Failed && why.contains(ProviderError::REJECTED_WITH_BATCH))
                        .then(|| (n, why.to_string()))
                })
                .collect();
            if rejected.is_empty() {
                break;
            }
            let mut again = Vec::with_capacity(rejected.len());
            for (n, why) in rejected {
                match self.reopen_for_a_new_batch(actor, &outcomes[n].id, &why).await {
                    Ok(()) => again.push(n),
                    Err(e) => outcomes[n].result = Err(e),
                }
            }
            let ids: Vec<PayoutId> = again.iter().map(|n| outcomes[*n].id.clone()).collect();
            let resent = self.bulk_trigger_round(actor, &ids, provider).await;
            for (n, outcome) in again.into_iter().zip(resent) {
                outcomes[n] = outcome;
            }
        }
        let refused = outcomes.iter().filter(|o| o.result.is_err()).count();
        let stopped = outcomes
            .iter()
            .filter(|o| matches!(o.result, Err(Error::ShuttingDown)))
            .count();
        tracing::info!(
            triggered = outcomes.len() - refused,
            refused,
            stopped_by_shutdown = stopped,
            "bulk trigger done"
        );
        outcomes
    }

    /// `FAILED -> APPROVED` for a payout whose batch was rejected because of another item, audited;
    /// the bulk trigger then sends it as a new attempt in a new batch.
    async fn reopen_for_a_new_batch(&self, actor: &Actor, id: &PayoutId, why: &str) -> Result<()> {
        let (payout, attempts) = self.store.payout_and_attempts(id).await?;
        let to = moves_to(&payout, PayoutEvent::Retry)?;
        let last = attempts.iter().map(|a| a.attempt_no).max().unwrap_or(0);
        let detail = format!(
            "attempt {last} was rejected with its batch because of another item, nothing paid ({why}); \
             sent again as a new attempt in a new batch"
        );
        self.store
            .apply(self.reopen(actor, &payout, to, detail))
            .await
            .map(|_| ())
    }

    async fn bulk_trigger_round(&self, actor: &Actor, ids: &[PayoutId], provider: Provider) -> Vec<BulkOutcome> {
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
        let concurrency = self.performance.trigger_concurrency.max(1);
        let caps = adapter.capabilities();
        let adapter = &adapter;
        let done = if caps.batch && caps.max_batch_size > 1 {
            // A batch of up to PREPARE_CHUNK at a time: its attempts prepared (one read and one
            // write), its batch call (two in flight), its answers recorded (one `apply_many`). A
            // batch goes out as soon as its attempts are committed, while the next one is prepared.
            let size = caps.max_batch_size.min(PREPARE_CHUNK);
            pipeline::run(
                numbered_chunks(ids, size),
                |(first, ids)| async move { vec![self.prepare_chunk(actor, &ids, first, provider, adapter).await] },
                |items| async move {
                    let (ready, refused) = split_prepared(items);
                    let answers = self.send_batch_timed(adapter, &ready).await;
                    (ready, answers, refused)
                },
                |batches| async move {
                    let mut done = Vec::new();
                    for (ready, answers, refused) in batches {
                        done.extend(refused);
                        if !ready.is_empty() {
                            done.extend(self.record_batch_answers(ready, answers, concurrency).await);
                        }
                    }
                    done
                },
                Stages {
                    queued: 1,
                    send_at_once: 2,
                    record_at_once: 1,
                },
            )
            .await
        } else {
            // A chunk of `concurrency` at a time prepared (one read and one write), a chunk ahead
            // of the sends; sends at the trigger concurrency; all answers that are in recorded in
            // one `apply_many`.
            pipeline::run(
                numbered_chunks(ids, concurrency),
                |(first, ids)| async move { self.prepare_chunk(actor, &ids, first, provider, adapter).await },
                |(i, prepared)| async move {
                    match prepared {
                        Ok(p) => {
                            let answer = self.send_timed(&p).await;
                            Ok((i, p, answer))
                        }
                        Err(e) => Err((i, Err(e))),
                    }
                },
                |sent| async move {
                    let mut done = Vec::with_capacity(sent.len());
                    let mut ready = Vec::with_capacity(sent.len());
                    let mut answers = Vec::with_capacity(sent.len());
                    for item in sent {
                        match item {
                            Ok((i, p, answer)) => {
                                ready.push((i, p));
                                answers.push(answer);
                            }
                            Err(refused) => done.push(refused),
                        }
                    }
                    if !ready.is_empty() {
                        done.extend(self.record_batch_answers(ready, answers, concurrency).await);
                    }
                    done
                },
                Stages {
                    queued: concurrency,
                    send_at_once: concurrency,
                    record_at_once: concurrency,
                },
            )
            .await
        };
        in_input_order(ids, done)
    }

    /// One batch call with the service's time limit, one answer per item (an empty batch makes no
    /// call). Running out of time, or an answer of the wrong length, is an unknown outcome for every
    /// item.
    pub(super) async fn send_batch_timed(
        &self,
        adapter: &Arc<dyn PayoutProvider>,
        ready: &[(usize, Prepared)],
    ) -> Vec<std::result::Result<SendReceipt, ProviderError>> {
        if ready.is_empty() {
            return Vec::new();
        }
        let provider = adapter.provider();
        let instructions: Vec<PayoutInstruction> = ready.iter().map(|(_, p)| p.instruction.clone()).collect();
        let span = tracing::info_span!(
            "provider_send_batch",
            %provider,
            batch_id = instructions[0].batch_id.as_deref().unwrap_or_default(),
            items = instructions.len(),
        );
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.policy.send_timeout, adapter.send_batch(&instructions))
            .instrument(span.clone())
            .await
        {
            Ok(a) => a,
            Err(_) => Err(ProviderError::new(
                provider,
                ProviderErrorKind::Ambiguous,
                "batch call timed out",
            )),
        };
        telemetry::record_send_time(provider, started.elapsed());
        let answers = self.batch_answers(provider, ready, answer);
        for (i, (_, p)) in answers.iter().zip(ready) {
            let _in_span = tracing::info_span!(
                parent: &span,
                "provider_send",
                payout_id = %p.instruction.payout_id,
                attempt_key = %p.instruction.idempotency_key,
                %provider,
            )
            .entered();
            telemetry::record_send(provider, i);
        }
        answers
    }

    /// One answer per item of a batch call's `answer`.
    fn batch_answers(
        &self,
        provider: Provider,
        ready: &[(usize, Prepared)],
        answer: std::result::Result<Vec<std::result::Result<SendReceipt, ProviderError>>, ProviderError>,
    ) -> Vec<std::result::Result<SendReceipt, ProviderError>> {
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

    /// [`prepare_trigger`](Self::prepare_trigger) for a chunk of payouts, `ids`, which start at
    /// position `first` of a bulk action: one read of the payouts with their attempts, one directory
    /// call and one [`apply_many`](crate::store::PayoutStoreExt::apply_many). Returns each payout's
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
        // Shutting down: nothing more is prepared, so nothing more is sent.
        if self.is_shutting_down() {
            out.extend((0..ids.len()).map(|k| (first + k, Err(Error::ShuttingDown))));
            return out;
        }
        // Refused, or a read that failed for the whole chunk: one payout at a time, so that each
        // gets its own answer (a refusal costs no read).
        let read = match self.require_privileged(actor, "trigger payouts") {
            Ok(()) => self.store.read_with_attempts(ids).await.ok(),
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
        let looked_up = match self.directory.recipients(&doctors).await {
            Ok(found) => self.store.doctor_holds(&doctors).await.map(|holds| (found, holds)),
            Err(e) => Err(e),
        };
        let (recipients, doctor_holds): (HashMap<DoctorId, Recipient>, HashMap<DoctorId, DoctorHold>) = match looked_up
        {
            Ok((found, holds)) => (
                found.into_iter().map(|r| (r.doctor_id.clone(), r)).collect(),
                holds.into_iter().map(|h| (h.doctor_id.clone(), h)).collect(),
            ),
            Err(_) => {
                for (k, id) in ids.iter().enumerate() {
                    out.push((first + k, self.prepare_trigger(actor, id, provider).await));
                }
                return out;
            }
        };
        let mut changes = Vec::with_capacity(ids.len());
        let mut planned = Vec::with_capacity(ids.len());
        // A batching provider's chunk is one batch, named before its attempts are committed and
        // stored with each of them: its members are exactly the attempts committed here.
        let batch_id = adapter
            .capabilities()
            .batch
            .then(|| format!("batch-{}", self.ids.payout_id()));
        let batch = batch_id.as_deref().map_or(Batch::Alone, Batch::Named);
        for (k, id) in ids.iter().enumerate() {
            let Some((payout, attempts)) = found.get(id) else {
                out.push((first + k, Err(Error::NotFound(id.clone()))));
                continue;
            };
            let recipient = recipients.get(&payout.doctor_id).cloned();
            let doctor_hold = doctor_holds.get(&payout.doctor_id);
            match self.plan_trigger(actor, payout, attempts, recipient, doctor_hold, adapter, batch) {
                Ok((change, instruction)) => {
                    changes.push(change);
                    planned.push((first + k, instruction));
                }
                Err(e) => out.push((first + k, Err(e))),
            }
        }
        // A repeated id was planned twice from one read: its second change is refused as a conflict.
        for ((i, instruction), applied) in planned.into_iter().zip(self.store.apply_many(changes).await) {
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
}

/// How many times a bulk trigger sends the rest of a batch rejected for one invalid item again,
/// each time without the items found invalid.
pub(crate) const REBATCH_ROUNDS: usize = 3;

/// The most payouts a batching bulk trigger reads, plans and records per store call, and sends per
/// batch call: small enough that a batch goes out while the next is prepared, large enough that
/// the store and the provider see few calls.
const PREPARE_CHUNK: usize = 1000;

/// A payout's result, by its position in the bulk call.
type Numbered = (usize, Result<Payout>);

/// The prepared attempts of a chunk, and the refused ones with their error.
fn split_prepared(items: Vec<(usize, Result<Prepared>)>) -> (Vec<(usize, Prepared)>, Vec<Numbered>) {
    let mut ready = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (i, p) in items {
        match p {
            Ok(p) => ready.push((i, p)),
            Err(e) => refused.push((i, Err(e))),
        }
    }
    (ready, refused)
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
fn in_input_order(ids: &[PayoutId], mut done: Vec<Numbered>) -> Vec<BulkOutcome> {
    done.sort_unstable_by_key(|(i, _)| *i);
    debug_assert_eq!(done.len(), ids.len(), "one result per payout");
    ids.iter()
        .zip(done)
        .map(|(id, (_, result))| BulkOutcome { id: id.clone(), result })
        .collect()
}
