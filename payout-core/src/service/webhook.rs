//! Provider webhooks, and the instruction reconciliation rebuilds to look an attempt up.

use http::HeaderMap;

use super::PayoutService;
use crate::domain::{AttemptOutcome, Payout, PayoutAttempt, PayoutId, Provider};
use crate::error::{Error, Result};
use crate::provider::{EventReference, PayoutInstruction, ProviderEvent, ProviderEventKind, partial_reversal_reason};
use crate::status::{PayoutEvent, PayoutStatus, Transition, transition};
use crate::store::{AttemptUpdate, PayoutChange, PayoutStoreExt, WebhookEventRecord};

/// What happened to one verified provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventOutcome {
    /// It moved a payout.
    Applied {
        /// The event id.
        event_id: String,
        /// The payout.
        payout_id: PayoutId,
        /// Status before.
        from: PayoutStatus,
        /// Status after.
        to: PayoutStatus,
    },
    /// It was recorded but changed no status (stale, out of order, an older attempt, or unknown outcome).
    Ignored {
        /// The event id.
        event_id: String,
        /// The payout.
        payout_id: PayoutId,
        /// Why.
        reason: String,
    },
    /// It changed no status but flagged the payout for a person, audited (a partial reversal of a
    /// PAID payout).
    Flagged {
        /// The event id.
        event_id: String,
        /// The payout.
        payout_id: PayoutId,
        /// The reason it is listed in the attention queue under.
        reason: String,
    },
    /// It was already processed.
    Duplicate {
        /// The event id.
        event_id: String,
    },
    /// It is authentic but names nothing of ours (no idempotency key of our form, no provider
    /// reference of a form we are given): acknowledged, and nothing changed or stored.
    NotOurs {
        /// The event id.
        event_id: String,
        /// The provider's event type.
        event_type: String,
    },
}

/// What a webhook delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookReport {
    /// One outcome per event, in order.
    pub events: Vec<EventOutcome>,
}

fn event_for(kind: &ProviderEventKind) -> Option<(PayoutEvent, AttemptOutcome)> {
    Some(match kind {
        ProviderEventKind::Pending => (PayoutEvent::ProviderPending, AttemptOutcome::Accepted),
        ProviderEventKind::Paid => (PayoutEvent::ProviderPaid, AttemptOutcome::Succeeded),
        ProviderEventKind::Failed { reason } => (
            PayoutEvent::ProviderFailed,
            AttemptOutcome::Failed { reason: reason.clone() },
        ),
        ProviderEventKind::Returned { .. } => (PayoutEvent::ProviderReturned, AttemptOutcome::Succeeded),
        ProviderEventKind::Reversed { .. } => (PayoutEvent::ProviderReversed, AttemptOutcome::Succeeded),
        // Paid before part of it came back: PAID, with the reversal flagged.
        ProviderEventKind::PartiallyReversed { .. } => (PayoutEvent::ProviderPaid, AttemptOutcome::Succeeded),
        ProviderEventKind::Unknown { .. } => return None,
    })
}

/// What an event records on attempt `attempt_no`: the outcome it reports (none when the outcome is
/// unknown), with no reference or error of its own.
fn attempt_update(attempt_no: u32, mapped: Option<&(PayoutEvent, AttemptOutcome)>) -> Option<AttemptUpdate> {
    mapped.map(|(_, outcome)| AttemptUpdate {
        attempt_no,
        outcome: outcome.clone(),
        provider_reference: None,
        error: None,
    })
}

fn reason_of(kind: &ProviderEventKind) -> String {
    match kind {
        ProviderEventKind::Pending => "pending at the provider".into(),
        ProviderEventKind::Paid => "paid".into(),
        ProviderEventKind::Failed { reason }
        | ProviderEventKind::Returned { reason }
        | ProviderEventKind::Reversed { reason }
        | ProviderEventKind::PartiallyReversed { reason, .. }
        | ProviderEventKind::Unknown { reason } => reason.clone(),
    }
}

impl PayoutService {
    /// Verifies a provider webhook on its raw bytes, then applies each event idempotently: an event id
    /// already seen is a no-op, a stale or out-of-order event changes no status, and each applied event
    /// is recorded and audited in the same step as its effect.
    ///
    /// An authentic event that names nothing of ours ([`ProviderEvent::names_ours`]) is
    /// [`EventOutcome::NotOurs`]: acknowledged, logged, and nothing changes, so the provider stops
    /// delivering it. An authentic event that names our key, or a reference of a form we are given,
    /// whose attempt is not recorded (yet) is an [`Error::UnknownReference`], so the host answers
    /// non-2xx and the provider delivers it again later: never acknowledged and dropped.
    ///
    /// Each event is counted by its result, a refused delivery by why
    /// ([`telemetry::WEBHOOK_EVENTS`](crate::telemetry::WEBHOOK_EVENTS)).
    #[tracing::instrument(name = "webhook", skip_all, fields(%provider))]
    pub async fn handle_webhook(&self, provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<WebhookReport> {
        let result = self.verify_and_apply(provider, headers, body).await;
        crate::telemetry::record_webhook(provider, &result);
        result
    }

    async fn verify_and_apply(&self, provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<WebhookReport> {
        let adapter = self.provider(provider)?;
        let events = adapter.verify_webhook(headers, body).await?;
        let mut report = WebhookReport::default();
        for event in events {
            report.events.push(self.apply_provider_event(provider, &event).await?);
        }
        Ok(report)
    }

    async fn apply_provider_event(&self, provider: Provider, event: &ProviderEvent) -> Result<EventOutcome> {
        if !event.names_ours() {
            tracing::info!(
                %provider,
                event_id = %event.event_id,
                event_type = %event.provider_type,
                "authentic webhook event names nothing of ours: acknowledged, nothing changed"
            );
            return Ok(EventOutcome::NotOurs {
                event_id: event.event_id.clone(),
                event_type: event.provider_type.clone(),
            });
        }
        // No "seen already?" read first: the store refuses a recorded event atomically with the
        // change (`DuplicateEvent`, answered as `Duplicate` below), so a first delivery, the common
        // case, pays no extra round trip; a redelivery still finds its attempt and is refused there.
        //
        // Our own idempotency key names exactly one attempt, while a provider reference may name
        // several (a batch id) or an object we never stored (a Stripe Connect `po_...`), so keys
        // are tried first and the usual event needs one lookup.
        let keys_first = event
            .references
            .iter()
            .filter(|r| matches!(r, EventReference::IdempotencyKey(_)))
            .chain(
                event
                    .references
                    .iter()
                    .filter(|r| !matches!(r, EventReference::IdempotencyKey(_))),
            );
        let mut attempt = None;
        for r in keys_first {
            if let Some(a) = self.store.find_attempt(provider, r).await? {
                attempt = Some(a);
                break;
            }
        }
        let Some(attempt) = attempt else {
            return Err(Error::UnknownReference {
                provider,
                reference: event
                    .references
                    .first()
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
            });
        };
        let actor = format!("provider:{provider}");
        for _ in 0..8 {
            // The attempts are at least as new as the payout (never read before it, or side by side),
            // so an attempt started since the payout was read is seen as the latest, and the
            // conditional update refuses the change if anything moved meanwhile.
            let (payout, attempts) = self.store.payout_and_attempts(&attempt.payout_id).await?;
            let latest = attempts.iter().map(|a| a.attempt_no).max().unwrap_or(0);
            let mut change = PayoutChange::of(&payout, self.clock.now());
            change.webhook_event = Some(WebhookEventRecord {
                provider,
                event_id: event.event_id.clone(),
                payout_id: payout.id.clone(),
                event_type: event.provider_type.clone(),
                received_at: self.clock.now(),
            });
            let reason = reason_of(&event.kind);
            let mapped = event_for(&event.kind);
            // A failure reported for the paid current attempt moves nothing: recorded on the
            // attempt, and the payout flagged for a person.
            let late_failure = attempt.attempt_no == latest
                && payout.status == PayoutStatus::Paid
                && matches!(event.kind, ProviderEventKind::Failed { .. });
            // Part of the current attempt's money came back: flagged and audited with the amount,
            // and the payout PAID (moved there if it was still PROCESSING).
            let partial = match &event.kind {
                ProviderEventKind::PartiallyReversed { reversed, .. } if attempt.attempt_no == latest => {
                    Some(partial_reversal_reason(reversed, &payout.amount_due))
                }
                _ => None,
            };
            let partial_of_paid = partial.is_some() && payout.status == PayoutStatus::Paid;
            let outcome = if partial_of_paid {
                Err(partial.clone().unwrap_or_default())
            } else if late_failure {
                Err(format!(
                    "{} reports a failure after PAID: recorded on attempt {} and flagged for a person",
                    event.provider_type, attempt.attempt_no
                ))
            } else if attempt.attempt_no != latest {
                let warn = matches!(event.kind, ProviderEventKind::Paid);
                if warn {
                    tracing::warn!(payout = %payout.id, attempt = attempt.attempt_no, "provider reports an older attempt PAID");
                }
                Err(format!(
                    "event {} is about attempt {}, not the current attempt {latest}{}",
                    event.provider_type,
                    attempt.attempt_no,
                    if warn {
                        "; an older attempt reports PAID: check for a double payment"
                    } else {
                        ""
                    }
                ))
            } else {
                match mapped.as_ref().map(|(e, _)| transition(payout.status, *e)) {
                    Some(Ok(Transition::To(to))) => Ok(to),
                    Some(_) => Err(format!("{} ignored while {}", event.provider_type, payout.status)),
                    None => Err(format!("outcome unknown: {reason}; left for reconciliation")),
                }
            };
            // The watch of a payout already PAID, flagged with `why`.
            let flagged_watch = |why: String| {
                let watch = &self.policy.reconcile.settlement_watch;
                let paid_at = payout.processed_at.unwrap_or(payout.updated_at);
                watch.follow_up(payout.provider, paid_at, self.clock.now()).flagged(why)
            };
            let partial_audit = |flag: &str| {
                let detail = format!("webhook {} {}: {flag}: {reason}", event.event_id, event.provider_type);
                self.audit(&payout, &actor, "PARTIAL_REVERSAL", None, detail)
            };
            match &outcome {
                Ok(to) => {
                    change.new_status = Some(*to);
                    change.attempt_update = attempt_update(attempt.attempt_no, mapped.as_ref());
                    if matches!(to, PayoutStatus::Paid | PayoutStatus::Failed) {
                        change.patch.processed_at = Some(event.occurred_at.unwrap_or_else(|| self.clock.now()));
                    }
                    if *to == PayoutStatus::Paid {
                        let paid_at = event.occurred_at.unwrap_or_else(|| self.clock.now());
                        let watch = &self.policy.reconcile.settlement_watch;
                        change.follow_up = Some(watch.follow_up(payout.provider, paid_at, self.clock.now()));
                    }
                    change.patch.notes = Some(format!("{}: {reason}", event.provider_type));
                    let action = mapped.map(|(e, _)| e.as_str()).unwrap_or("PROVIDER_EVENT");
                    change.audit.push(self.audit(
                        &payout,
                        &actor,
                        action,
                        Some(*to),
                        format!("webhook {} {}: {reason}", event.event_id, event.provider_type),
                    ));
                    if let (Some(flag), Some(follow_up)) = (&partial, change.follow_up.take()) {
                        change.follow_up = Some(follow_up.flagged(flag.clone()));
                        change.audit.push(partial_audit(flag));
                    }
                }
                Err(flag) if partial_of_paid => {
                    change.follow_up = Some(flagged_watch(flag.clone()));
                    change.patch.notes = Some(format!("{}: {flag}", event.provider_type));
                    change.audit.push(partial_audit(flag));
                }
                Err(why) if late_failure => {
                    change.attempt_update = attempt_update(attempt.attempt_no, mapped.as_ref());
                    change.follow_up = Some(flagged_watch(format!("a failure reported after PAID: {reason}")));
                    change.audit.push(self.audit(
                        &payout,
                        &actor,
                        "LATE_FAILURE",
                        None,
                        format!("webhook {} {}: {why}: {reason}", event.event_id, event.provider_type),
                    ));
                }
                Err(why) => {
                    change.audit.push(self.audit(
                        &payout,
                        &actor,
                        "WEBHOOK_IGNORED",
                        None,
                        format!("webhook {} {}: {why}", event.event_id, event.provider_type),
                    ));
                }
            }
            match self.store.apply(change).await {
                Ok(_) => {
                    return Ok(match outcome {
                        Err(reason) if partial_of_paid => EventOutcome::Flagged {
                            event_id: event.event_id.clone(),
                            payout_id: payout.id,
                            reason,
                        },
                        Ok(to) => EventOutcome::Applied {
                            event_id: event.event_id.clone(),
                            payout_id: payout.id.clone(),
                            from: payout.status,
                            to,
                        },
                        Err(reason) => EventOutcome::Ignored {
                            event_id: event.event_id.clone(),
                            payout_id: payout.id,
                            reason,
                        },
                    });
                }
                Err(Error::DuplicateEvent { .. }) => {
                    return Ok(EventOutcome::Duplicate {
                        event_id: event.event_id.clone(),
                    });
                }
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(attempt.payout_id))
    }

    /// The instruction attempt `attempt` of `payout` was sent with, for a lookup or a re-send: the
    /// same key, amount and destination. The destination is the one committed with the attempt, never
    /// the directory's current one (details may have changed since it was sent); only an attempt
    /// recorded before destinations were stored falls back to the directory.
    pub(super) async fn rebuild_instruction(
        &self,
        payout: &Payout,
        attempt: &PayoutAttempt,
    ) -> Result<PayoutInstruction> {
        let recipient = self.directory.recipient(&payout.doctor_id).await?;
        sent_instruction(payout, attempt, recipient.as_ref())
    }
}

/// The instruction `attempt` of `payout` went out with, `recipient` being the doctor's profile
/// now: the attempt's key, the payout's amount and the destination committed with the attempt;
/// the profile gives the name and email, and the destination only for an attempt recorded before
/// destinations were stored.
pub(super) fn sent_instruction(
    payout: &Payout,
    attempt: &PayoutAttempt,
    recipient: Option<&crate::domain::Recipient>,
) -> Result<PayoutInstruction> {
    let destination = match &attempt.destination {
        Some(committed) => committed.clone(),
        None => recipient
            .and_then(|r| r.destination(attempt.provider))
            .ok_or_else(|| Error::MissingRecipient {
                doctor_id: payout.doctor_id.to_string(),
                provider: attempt.provider,
            })?,
    };
    Ok(PayoutInstruction {
        payout_id: payout.id.clone(),
        attempt_no: attempt.attempt_no,
        idempotency_key: attempt.idempotency_key.clone(),
        doctor_id: payout.doctor_id.clone(),
        recipient_name: recipient.map(|r| r.name.clone()).unwrap_or_default(),
        recipient_email: recipient.map(|r| r.email.clone()).unwrap_or_default(),
        destination,
        amount: payout.amount_due,
        description: format!("Consultations {}", payout.period()),
        batch_id: attempt.batch_id.clone(),
    })
}
