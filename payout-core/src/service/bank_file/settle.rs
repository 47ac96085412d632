//! Recording the bank's confirmation of a file: all paid, or returned items.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{CHUNK, corrupt};
use crate::domain::{Actor, AttemptOutcome, BankFileId, Payout, PayoutAttempt, PayoutId, end_to_end_id};
use crate::error::{BankFileError, Error, Result};
use crate::service::PayoutService;
use crate::status::{PayoutEvent, PayoutStatus, Transition, transition};
use crate::store::{AttemptUpdate, FollowUp, PayoutChange, PayoutStoreExt};

/// The bank's confirmation of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Every transfer of the file was paid.
    AllPaid,
    /// These transfers came back; every other was paid.
    Returned {
        /// The returned transfers (at least one).
        items: Vec<ReturnedItem>,
    },
}

/// A transfer the bank returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnedItem {
    /// Which: the payout's id, the attempt's idempotency key, or the end-to-end id the file gave it
    /// ([`end_to_end_id`]), as the bank reports it.
    pub reference: String,
    /// The bank's reason (required).
    pub reason: String,
}

/// What recording a settlement did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettlementReport {
    /// Moved `PROCESSING -> PAID`.
    pub paid: Vec<PayoutId>,
    /// Returned before payment was confirmed: `PROCESSING -> FAILED` (retry may send them again).
    pub failed: Vec<PayoutId>,
    /// Returned after an earlier settlement recorded them paid: `PAID -> RETURNED`.
    pub returned: Vec<PayoutId>,
    /// Members the settlement left as they were (settled before).
    pub unchanged: Vec<PayoutId>,
    /// Changed concurrently while this settlement was recorded, so not recorded (a second
    /// settlement records them): each with the error.
    pub not_recorded: Vec<(PayoutId, String)>,
}

/// What a settlement does to one member of a file: a pure decision from what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemberOutcome {
    /// Unconfirmed, and not returned: paid.
    Paid,
    /// Unconfirmed and returned: the payment failed (nothing reached the doctor).
    Failed(String),
    /// Recorded paid by an earlier settlement, now returned: the money came back.
    Returned(String),
    /// Settled before (or moved on since, by a retry or a resolution), and not named: as it is.
    AsItIs,
    /// Named as returned, but it cannot be recorded (settled otherwise, or moved on): refuses the
    /// whole settlement.
    Refused(String),
}

/// Decides what a settlement does to `member`, an attempt sent in file `file`, whose payout is
/// `payout` with latest attempt number `latest`; `returned` is the bank's reason when the
/// settlement names it as returned.
///
/// A return before the payment was confirmed is a failure: the money never reached the doctor,
/// and the attempt's confirmed failure is what lets `retry` send the payout again. A return after
/// an earlier settlement recorded the member paid is money coming back (`RETURNED`, flagged for a
/// person). Anything else named as returned (a payout failed, returned or re-sent since) refuses
/// the settlement.
fn settle_member(
    file: &BankFileId,
    member: &PayoutAttempt,
    payout: &Payout,
    latest: u32,
    returned: Option<&str>,
) -> MemberOutcome {
    let current = member.attempt_no == latest;
    let unsettled = !matches!(
        member.outcome,
        AttemptOutcome::Succeeded | AttemptOutcome::Failed { .. }
    );
    match (payout.status, current, unsettled, returned) {
        (PayoutStatus::Processing, true, true, None) => MemberOutcome::Paid,
        (PayoutStatus::Processing, true, true, Some(reason)) => MemberOutcome::Failed(reason.to_string()),
        (PayoutStatus::Paid, true, false, Some(reason)) if member.outcome == AttemptOutcome::Succeeded => {
            MemberOutcome::Returned(reason.to_string())
        }
        (_, _, _, None) => MemberOutcome::AsItIs,
        (status, current, _, Some(_)) => MemberOutcome::Refused(if current {
            format!(
                "payout {} is {status} (attempt {} {}): its return cannot be recorded by file {file}",
                payout.id,
                member.attempt_no,
                member.outcome.as_str()
            )
        } else {
            format!(
                "payout {} was sent again since file {file} (attempt {latest}): a return of attempt {} cannot be \
                 recorded; a person decides",
                payout.id, member.attempt_no
            )
        }),
    }
}

impl PayoutService {
    /// Records the bank's confirmation of file `id` (admins only).
    ///
    /// # Behavior
    /// [`Settlement::AllPaid`]: every member still unconfirmed moves `PROCESSING -> PAID` (its
    /// attempt `SUCCEEDED`). [`Settlement::Returned`]: each item named (by payout id, idempotency
    /// key or end-to-end id) moves `PROCESSING -> FAILED` when it was unconfirmed (a return before
    /// payment was confirmed is a failure: nothing reached the doctor, and `retry` may send it
    /// again), or `PAID -> RETURNED` when an earlier settlement recorded it paid; every other
    /// unconfirmed member is paid. Each change is audited (`PROVIDER_PAID`, `PROVIDER_FAILED`,
    /// `PROVIDER_RETURNED`, naming the file and the actor). A paid member is not put on the
    /// settlement watch: no lookup can see a file's transfer, so money that comes back is recorded
    /// by a later settlement naming it.
    ///
    /// Refused, nothing changed: an unknown file ([`BankFileError::NotFound`]); an item that names
    /// no member ([`BankFileError::UnknownItem`]), one named twice, a missing reason or an empty
    /// list (`InvalidInput`); an item whose return cannot be recorded, its payout failed, returned
    /// or sent again since ([`BankFileError::Settled`]).
    ///
    /// Settling is idempotent by refusal: a settlement that would change nothing, every member
    /// confirmed already (the same settlement sent twice), is [`BankFileError::Settled`]. A member
    /// changed concurrently while a settlement is recorded is reported in
    /// [`SettlementReport::not_recorded`]; settling again records it.
    pub async fn settle_bank_file(
        &self,
        actor: &Actor,
        id: &BankFileId,
        settlement: &Settlement,
    ) -> Result<SettlementReport> {
        self.require_privileged(actor, "settle bank files")?;
        let attempts = self.file_attempts(id).await?;
        let returned = returned_by_member(id, &attempts, settlement)?;
        let ids: Vec<PayoutId> = attempts.iter().map(|a| a.payout_id.clone()).collect();
        let mut decided = Vec::with_capacity(attempts.len());
        for (chunk_ids, chunk) in ids.chunks(CHUNK).zip(attempts.chunks(CHUNK)) {
            let found: HashMap<PayoutId, (Payout, Vec<PayoutAttempt>)> = self
                .store
                .read_with_attempts(chunk_ids)
                .await?
                .into_iter()
                .map(|(p, a)| (p.id.clone(), (p, a)))
                .collect();
            for member in chunk {
                let (payout, all) = found
                    .get(&member.payout_id)
                    .ok_or_else(|| corrupt(id, member, "its payout"))?;
                let latest = all.iter().map(|a| a.attempt_no).max().unwrap_or(0);
                let reason = returned.get(member.idempotency_key.as_str()).map(String::as_str);
                let outcome = settle_member(id, member, payout, latest, reason);
                decided.push((payout.clone(), member, outcome));
            }
        }
        let refused: Vec<&str> = decided
            .iter()
            .filter_map(|(_, _, o)| match o {
                MemberOutcome::Refused(why) => Some(why.as_str()),
                _ => None,
            })
            .collect();
        if !refused.is_empty() {
            return Err(BankFileError::Settled {
                file_id: id.to_string(),
                detail: format!("nothing recorded: {}", refused.join("; ")),
            }
            .into());
        }
        if decided.iter().all(|(_, _, o)| *o == MemberOutcome::AsItIs) {
            return Err(BankFileError::Settled {
                file_id: id.to_string(),
                detail: "its settlement is recorded already: every member is confirmed".into(),
            }
            .into());
        }

        let now = self.clock.now();
        let mut report = SettlementReport::default();
        let mut changes = Vec::new();
        let mut moved = Vec::new();
        for (payout, member, outcome) in decided {
            match self.settlement_change(actor, id, &payout, member, &outcome, now)? {
                Some(change) => {
                    changes.push(change);
                    moved.push((payout.id, outcome));
                }
                None => report.unchanged.push(payout.id),
            }
        }
        let mut moved = moved.into_iter();
        let mut changes = changes.into_iter().peekable();
        while changes.peek().is_some() {
            let chunk: Vec<PayoutChange> = changes.by_ref().take(CHUNK).collect();
            for applied in self.store.apply_many(chunk).await {
                let Some((payout_id, outcome)) = moved.next() else {
                    break;
                };
                match (applied, outcome) {
                    (Ok(_), MemberOutcome::Paid) => report.paid.push(payout_id),
                    (Ok(_), MemberOutcome::Failed(_)) => report.failed.push(payout_id),
                    (Ok(_), _) => report.returned.push(payout_id),
                    (Err(e), _) => report.not_recorded.push((payout_id, e.to_string())),
                }
            }
        }
        tracing::info!(
            bank_file = %id,
            paid = report.paid.len(),
            failed = report.failed.len(),
            returned = report.returned.len(),
            not_recorded = report.not_recorded.len(),
            "bank file settlement recorded"
        );
        Ok(report)
    }

    /// The change `outcome` makes to `payout` (member `member` of file `file`), or `None` when it
    /// leaves it as it is.
    fn settlement_change(
        &self,
        actor: &Actor,
        file: &BankFileId,
        payout: &Payout,
        member: &PayoutAttempt,
        outcome: &MemberOutcome,
        now: DateTime<Utc>,
    ) -> Result<Option<PayoutChange>> {
        let (event, attempt_outcome, note) = match outcome {
            MemberOutcome::AsItIs | MemberOutcome::Refused(_) => return Ok(None),
            MemberOutcome::Paid => (
                PayoutEvent::ProviderPaid,
                Some(AttemptOutcome::Succeeded),
                format!("paid: the bank confirmed bank file {file}"),
            ),
            MemberOutcome::Failed(reason) => {
                let why = format!("returned by the bank before payment was confirmed (bank file {file}): {reason}");
                (
                    PayoutEvent::ProviderFailed,
                    Some(AttemptOutcome::Failed { reason: why.clone() }),
                    why,
                )
            }
            MemberOutcome::Returned(reason) => (
                PayoutEvent::ProviderReturned,
                None,
                format!("returned by the bank after it was paid (bank file {file}): {reason}"),
            ),
        };
        let Transition::To(to) = transition(payout.status, event)? else {
            return Ok(None);
        };
        let mut change = PayoutChange::of(payout, now);
        change.new_status = Some(to);
        change.attempt_update = attempt_outcome.map(|outcome| AttemptUpdate {
            attempt_no: member.attempt_no,
            outcome,
            provider_reference: None,
            error: None,
        });
        if to != PayoutStatus::Returned {
            change.patch.processed_at = Some(now);
            // Not watched: no lookup can see a file's transfer (a return comes by a settlement).
            change.follow_up = Some(FollowUp::none());
        }
        change.patch.notes = Some(note.clone());
        change.audit.push(self.audit(
            payout,
            &actor.label(),
            event.as_str(),
            Some(to),
            format!("{note}; recorded by {}", actor.label()),
        ));
        Ok(Some(change))
    }
}

/// The returned members of file `id` (by idempotency key) with the bank's reasons, from
/// `settlement`; refuses an empty list, a missing reason, an item naming no member, and a member
/// named twice.
fn returned_by_member<'a>(
    id: &BankFileId,
    members: &'a [PayoutAttempt],
    settlement: &Settlement,
) -> Result<HashMap<&'a str, String>> {
    let Settlement::Returned { items } = settlement else {
        return Ok(HashMap::new());
    };
    if items.is_empty() {
        return Err(Error::InvalidInput(
            "a settlement with returned items names at least one (all paid is the other settlement)".into(),
        ));
    }
    let mut by_reference: HashMap<String, &'a str> = HashMap::new();
    for m in members {
        let key = m.idempotency_key.as_str();
        by_reference.insert(m.payout_id.to_string(), key);
        by_reference.insert(end_to_end_id(key), key);
        by_reference.insert(key.to_string(), key);
    }
    let mut out: HashMap<&'a str, String> = HashMap::new();
    for item in items {
        let reference = item.reference.trim();
        let reason = item.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Error::InvalidInput(format!(
                "returned item {reference:?}: give the bank's reason (1 to 500 characters)"
            )));
        }
        let key = by_reference.get(reference).ok_or_else(|| BankFileError::UnknownItem {
            file_id: id.to_string(),
            item: reference.chars().take(128).collect(),
        })?;
        if out.insert(key, reason.to_string()).is_some() {
            return Err(Error::InvalidInput(format!(
                "returned item {reference:?} names a transfer another item names too"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Provider;
    use crate::money::{Currency, Money};

    fn member(outcome: AttemptOutcome, attempt_no: u32) -> PayoutAttempt {
        PayoutAttempt {
            payout_id: "po_1".into(),
            attempt_no,
            provider: Provider::BankTransfer,
            idempotency_key: format!("po_1-{attempt_no}"),
            request_summary: String::new(),
            outcome,
            provider_reference: None,
            error: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            destination: None,
            batch_id: None,
        }
    }

    fn payout(status: PayoutStatus) -> Payout {
        let at = Utc::now();
        Payout {
            id: "po_1".into(),
            doctor_id: "dr-1".into(),
            period_start: at.date_naive(),
            period_end: at.date_naive(),
            amount_due: Money::from_minor_units(50_000, Currency::USD),
            status,
            provider: Some(Provider::BankTransfer),
            provider_reference: None,
            notes: None,
            origin: crate::domain::PayoutOrigin::Manual,
            created_by: "admin:b".into(),
            approved_by: None,
            processed_at: None,
            created_at: at,
            updated_at: at,
            version: 1,
            approval: None,
            resolution: None,
            hold: None,
        }
    }

    #[test]
    fn each_member_is_settled_as_the_state_machine_allows() {
        use AttemptOutcome::{Failed, Pending, Succeeded};
        use MemberOutcome as O;
        use PayoutStatus as S;
        let file = BankFileId::derive("f");
        let failed = || Failed { reason: "x".into() };
        // (payout status, member outcome, the payout's latest attempt, returned?, expected)
        type Case = (S, AttemptOutcome, u32, Option<&'static str>, fn(&O) -> bool);
        let cases: Vec<Case> = vec![
            (S::Processing, Pending, 1, None, |o| *o == O::Paid),
            (S::Processing, Pending, 1, Some("R03"), |o| {
                *o == O::Failed("R03".into())
            }),
            (S::Paid, Succeeded, 1, Some("R03"), |o| *o == O::Returned("R03".into())),
            (S::Paid, Succeeded, 1, None, |o| *o == O::AsItIs),
            (S::Failed, failed(), 1, None, |o| *o == O::AsItIs),
            (S::Failed, failed(), 1, Some("R03"), |o| matches!(o, O::Refused(_))),
            (S::Returned, Succeeded, 1, Some("R03"), |o| matches!(o, O::Refused(_))),
            // Re-sent since (attempt 2 is the payout's latest): never settled by the old file.
            (S::Processing, Pending, 2, None, |o| *o == O::AsItIs),
            (S::Processing, Pending, 2, Some("R03"), |o| matches!(o, O::Refused(_))),
            (S::Paid, Succeeded, 2, Some("R03"), |o| matches!(o, O::Refused(_))),
        ];
        for (status, outcome, latest, returned, expected) in cases {
            let got = settle_member(&file, &member(outcome.clone(), 1), &payout(status), latest, returned);
            assert!(
                expected(&got),
                "{status} {outcome:?} latest {latest} {returned:?}: {got:?}"
            );
        }
    }
}
