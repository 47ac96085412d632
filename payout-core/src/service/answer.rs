//! Recording what a provider answered about an attempt: the attempt's outcome always, the payout's
//! status only forward and only for its latest attempt.

use std::sync::Arc;

use futures::StreamExt;

use super::PayoutService;
use super::lifecycle::Prepared;
use crate::domain::{AttemptOutcome, Payout};
use crate::error::{Error, ProviderError, ProviderErrorKind, Result};
use crate::money::Money;
use crate::provider::{PayoutProvider, ProviderStatus, SendReceipt, partial_reversal_reason};
use crate::simulated::SIMULATED_NOTE;
use crate::status::{PayoutEvent, PayoutStatus, Transition, transition};
use crate::store::{AttemptUpdate, PayoutChange, PayoutStoreExt};

impl PayoutService {
    /// [`record_answer`](Self::record_answer) for an attempt [`prepare_trigger`](Self::prepare_trigger) just
    /// committed. `p.payout` is the payout as that commit left it, so while its version is unchanged the
    /// attempt is still `PENDING` and the latest: the first try skips reading the attempts, and the
    /// conditional update (any change of the payout or its attempts bumps the version) falls back to
    /// the full read on a conflict.
    pub(super) async fn record_prepared_send(
        &self,
        p: &Prepared,
        result: std::result::Result<SendReceipt, ProviderError>,
    ) -> Result<Payout> {
        self.record_answer(&p.payout, p.instruction.attempt_no, result, &p.adapter, true)
            .await
    }

    /// [`record_prepared_send`](Self::record_prepared_send) for a batch call's answers: the first
    /// try of every answer in one [`apply_many`](crate::store::PayoutStoreExt::apply_many); an answer whose
    /// payout changed meanwhile (a webhook landed first) is then recorded alone, as `record_answer`
    /// does, at the trigger concurrency.
    pub(super) async fn record_batch_answers(
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
        let applied = self.store.apply_many(changes).await;
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

    /// Records what the provider answered for an attempt, retrying on a concurrent change (a webhook
    /// may have landed first): the attempt's outcome is stored and the payout moves forward only.
    /// `fresh`: the attempt was just committed as `sent`, so the first try skips reading it.
    pub(super) async fn record_answer(
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
        let now = self.clock.now();
        let watch = &self.policy.reconcile.settlement_watch;
        if to == Some(PayoutStatus::Paid) {
            change.follow_up = Some(watch.follow_up(payout.provider, now, now));
        }
        // A failure answer about a paid attempt moves nothing (only money back does): it is
        // recorded on the attempt and the payout is flagged for a person, still watched.
        let late_failure =
            is_latest && payout.status == PayoutStatus::Paid && answer.event == Some(PayoutEvent::ProviderFailed);
        if late_failure {
            let paid_at = payout.processed_at.unwrap_or(payout.updated_at);
            change.follow_up = Some(
                watch
                    .follow_up(payout.provider, paid_at, now)
                    .flagged(format!("a failure reported after PAID: {}", answer.note)),
            );
        }
        // Part of the paid attempt's money came back: the payout is (or stays) PAID, flagged with
        // the amount, and the reversal audited.
        let partial = answer
            .reversed
            .filter(|_| is_latest && (to == Some(PayoutStatus::Paid) || payout.status == PayoutStatus::Paid))
            .map(|reversed| partial_reversal_reason(&reversed, &payout.amount_due));
        if let Some(flag) = &partial {
            let paid_at = payout.processed_at.filter(|_| to.is_none()).unwrap_or(now);
            change.follow_up = Some(watch.follow_up(payout.provider, paid_at, now).flagged(flag.clone()));
        }
        let action = match (answer.event, to) {
            (Some(e), Some(_)) => e.as_str().to_string(),
            _ if late_failure => "LATE_FAILURE".to_string(),
            _ if partial.is_some() => "PARTIAL_REVERSAL".to_string(),
            _ => format!("ATTEMPT_{}", answer.outcome.as_str()),
        };
        change.audit.push(self.audit(
            payout,
            &answer.actor,
            &action,
            to,
            match (&partial, to) {
                (Some(flag), None) => format!("attempt {attempt_no}: {flag}: {}", answer.note),
                _ => format!("attempt {attempt_no}: {}", answer.note),
            },
        ));
        if let (Some(flag), Some(_)) = (&partial, to) {
            change.audit.push(self.audit(
                payout,
                &answer.actor,
                "PARTIAL_REVERSAL",
                None,
                format!("attempt {attempt_no}: {flag}"),
            ));
        }
        change
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
    /// How much of the paid attempt has been reversed, when part of it has.
    reversed: Option<Money>,
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
                    // Paid before part of it came back: PAID, with the reversal flagged.
                    ProviderStatus::PartiallyReversed { .. } => {
                        (Some(PayoutEvent::ProviderPaid), AttemptOutcome::Succeeded)
                    }
                    ProviderStatus::NotFound => (
                        None,
                        AttemptOutcome::Unknown {
                            reason: "provider answered the send with no record".into(),
                        },
                    ),
                    ProviderStatus::Undetermined(why) => (None, AttemptOutcome::Unknown { reason: why.clone() }),
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
        let reversed = match result {
            Ok(SendReceipt {
                status: ProviderStatus::PartiallyReversed { reversed, .. },
                ..
            }) => Some(*reversed),
            _ => None,
        };
        Answer {
            event,
            outcome,
            reference,
            note,
            error,
            actor: format!("provider:{}", adapter.provider()),
            reversed,
        }
    }
}
