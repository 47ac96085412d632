//! Payouts sent by bank file: finance downloads a file of bank transfers (CSV, pain.001, NACHA:
//! the formats live in `payout-providers`), uploads it to the bank by hand, and records the bank's
//! confirmation.
//!
//! Making a file is a trigger like any other: each payout's attempt (provider `BANK_TRANSFER`, a
//! fresh idempotency key, the destination in full, the file's id as batch id and provider
//! reference) is committed with `APPROVED -> PROCESSING` and its `TRIGGER` audit entry ("sent by
//! bank file …") before the file leaves the engine, and the approval policy applies per payout.
//! The file is then only ever rendered from those stored attempts: a second download of the same
//! file has the same members, keys, amounts and destinations, never a new grouping.
//!
//! No bank API knows a file, so reconciliation never looks up or re-sends an attempt sent by file
//! (it flags one unconfirmed for longer than `attention_after`), and only the file's settlement
//! ([`PayoutService::settle_bank_file`], in [`settle`]) or an operator's resolution settles it.

mod run;
mod settle;

pub use settle::{ReturnedItem, Settlement, SettlementReport};

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::PayoutService;
use super::lifecycle::Route;
use super::webhook::sent_instruction;
use crate::domain::{Actor, BankFileId, DoctorHold, DoctorId, Payout, PayoutAttempt, PayoutId, Provider, Recipient};
use crate::error::{BankFileError, Error, Result, StoreError, StoreErrorKind};
use crate::money::Money;
use crate::provider::PayoutInstruction;
use crate::status::PayoutStatus;
use crate::store::{FollowUp, PayoutChange, PayoutFilter, PayoutStoreExt};

/// How many payouts a bank file reads, plans and marks per store call.
const CHUNK: usize = 1000;

/// Which payouts of a selection are bank payouts, to be sent by the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankPayouts {
    /// Every `APPROVED` payout of the selection whose doctor has bank details in the directory;
    /// the others are left out (and said so in [`BankFile::left_out`]). What an admin's filter
    /// means when nothing else says how each payout is paid.
    WithBankDetails,
    /// Exactly these payouts (a run plan's share for `BANK_TRANSFER`): each must be an `APPROVED`
    /// payout of the selection, or the request is refused (`InvalidInput`, nothing changed); one
    /// whose doctor has no bank details is left out with that reason.
    Assigned(Vec<PayoutId>),
    /// Every `APPROVED` payout of the selection whose doctor's method is `BANK_TRANSFER`, as a
    /// run chooses it ([`choose_provider`](super::choose_provider) with no provider given: the
    /// doctor's preferred method, else the only one with details). A payout whose method is
    /// another provider is not a bank payout (not selected, not reported); one whose doctor has
    /// bank details but no method the run can choose is left out with the reason.
    ByMethod,
}

/// What to put in a new bank file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankFileRequest {
    /// The selection (the admin list's filters). Its status, when given, must be `APPROVED`: only
    /// approved payouts are sent.
    pub selection: PayoutFilter,
    /// Which of the selected payouts are bank payouts.
    pub payouts: BankPayouts,
}

/// A payout that was selected for a file but is not in it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    /// The payout (still as it was: nothing was changed).
    pub payout_id: PayoutId,
    /// Why it is not in the file.
    pub reason: String,
}

/// A bank file's members as stored: what the file pays, and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct BankFile {
    /// Its id (every member's batch id and provider reference).
    pub id: BankFileId,
    /// When it was made (its members' attempts were recorded then).
    pub created_at: DateTime<Utc>,
    /// One instruction per transfer, ordered by idempotency key: the attempt's key, the payout's
    /// amount, the bank account committed with the attempt; name and email from the directory.
    pub members: Vec<PayoutInstruction>,
    /// Selected payouts not in the file (only when it was made; empty when read again).
    pub left_out: Vec<LeftOut>,
}

/// A file's control totals: how many transfers, and how much per currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankFileTotals {
    /// The number of transfers.
    pub count: usize,
    /// The exact sum per currency, ordered by currency code (amounts are never converted).
    pub sums: Vec<Money>,
}

impl BankFileTotals {
    /// The totals of `amounts`; `Money` overflow is an error, never a rounded total.
    pub fn of<'a>(amounts: impl IntoIterator<Item = &'a Money>) -> Result<Self> {
        let mut sums: Vec<Money> = Vec::new();
        let mut count = 0;
        for amount in amounts {
            count += 1;
            match sums.iter_mut().find(|s| s.currency() == amount.currency()) {
                Some(sum) => *sum = sum.checked_add(amount)?,
                None => sums.push(*amount),
            }
        }
        sums.sort_by(|a, b| a.currency().code().cmp(b.currency().code()));
        Ok(BankFileTotals { count, sums })
    }
}

impl BankFile {
    /// Its control totals, from its members.
    pub fn totals(&self) -> Result<BankFileTotals> {
        BankFileTotals::of(self.members.iter().map(|m| &m.amount))
    }
}

impl PayoutService {
    /// Sends payouts by bank file: every bank payout of `request`'s selection that may be sent is
    /// marked as sent in a new file and returned as its members, for the caller to write out.
    ///
    /// # Behavior
    /// For each `APPROVED` payout the request names as a bank payout ([`BankPayouts`]), the checks
    /// of a trigger apply (not on hold, by itself or by its doctor; the approval policy: details
    /// unchanged since approval, a second approval where needed, approver not triggerer) and the
    /// doctor must have bank details; one
    /// that fails is left out with the reason ([`BankFile::left_out`]), unchanged. Before anything is
    /// written, `check` is given the planned file (the caller writes it in its format, settings and
    /// all): its refusal refuses the request ([`BankFileError::Unwritable`], nothing changed), as
    /// does a selection with nothing to send ([`BankFileError::Empty`]).
    ///
    /// Then each member is committed on its own, in chunks, exactly as a trigger commits: its
    /// attempt (provider `BANK_TRANSFER`, idempotency key `{payout}-{n}`, the bank account in full,
    /// batch id and provider reference the file's id, outcome `PENDING`), `APPROVED -> PROCESSING`
    /// and a `TRIGGER` audit entry "sent by bank file …", in one atomic change; reconciliation first
    /// looks at it after `attention_after`. A payout changed concurrently is left out (unchanged);
    /// the file returned holds exactly the members committed, ordered by key, as
    /// [`bank_file`](Self::bank_file) reads them again. A crash part way leaves the members
    /// committed so far, found by the file's id (the audit trail and each payout's reference name
    /// it). Refused with [`Error::ShuttingDown`] once shutting down.
    pub async fn send_by_file<C>(&self, actor: &Actor, request: &BankFileRequest, check: C) -> Result<BankFile>
    where
        C: Fn(&BankFile) -> std::result::Result<(), String> + Send + Sync,
    {
        self.require_privileged(actor, "send payouts by bank file")?;
        self.refuse_when_shutting_down()?;
        let mut filter = request.selection.clone();
        match filter.status {
            None | Some(PayoutStatus::Approved) => filter.status = Some(PayoutStatus::Approved),
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "a bank file sends APPROVED payouts; the selection asks for {other} ones"
                )));
            }
        }
        let selected: Vec<PayoutId> = self.store.stream(filter).map_ok(|p| p.id).try_collect().await?;
        let ids = match &request.payouts {
            BankPayouts::WithBankDetails | BankPayouts::ByMethod => selected,
            BankPayouts::Assigned(assigned) => {
                let selected: HashSet<&PayoutId> = selected.iter().collect();
                let mut seen = HashSet::new();
                for id in assigned {
                    if !seen.insert(id) {
                        return Err(Error::InvalidInput(format!("payout {id} is assigned twice")));
                    }
                    if !selected.contains(id) {
                        return Err(Error::InvalidInput(format!(
                            "payout {id} is not an APPROVED payout of the selection"
                        )));
                    }
                }
                assigned.clone()
            }
        };
        let file_id = BankFileId::derive(self.ids.payout_id().as_str());
        let now = self.clock.now();
        let first_check = FollowUp::check_at(now + self.policy.attention_after);
        let mut planned: Vec<(PayoutChange, PayoutInstruction)> = Vec::with_capacity(ids.len());
        let mut left_out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let (found, recipients) = self.read_for_file(chunk).await?;
            let mut doctors: Vec<DoctorId> = recipients.keys().cloned().collect();
            doctors.sort_unstable();
            let doctor_holds: HashMap<DoctorId, DoctorHold> = self
                .store
                .doctor_holds(&doctors)
                .await?
                .into_iter()
                .map(|h| (h.doctor_id.clone(), h))
                .collect();
            for id in chunk {
                let leave = |reason: String| LeftOut {
                    payout_id: id.clone(),
                    reason,
                };
                let Some((payout, attempts)) = found.get(id) else {
                    left_out.push(leave("it no longer exists".into()));
                    continue;
                };
                let recipient = recipients.get(&payout.doctor_id).cloned();
                let has_bank = recipient
                    .as_ref()
                    .and_then(|r| r.destination(Provider::BankTransfer))
                    .is_some();
                if request.payouts == BankPayouts::ByMethod {
                    match super::choose_provider(None, recipient.as_ref()) {
                        Ok(Provider::BankTransfer) => {}
                        // Paid by another method: not a bank payout.
                        Ok(_) => continue,
                        Err(why) if has_bank => {
                            left_out.push(leave(format!("no method to pay it by: {why}")));
                            continue;
                        }
                        Err(_) => continue,
                    }
                }
                if !has_bank {
                    left_out.push(leave(format!("doctor {} has no bank details", payout.doctor_id)));
                    continue;
                }
                let route = Route {
                    provider: Provider::BankTransfer,
                    simulated: false,
                    batch_id: Some(file_id.to_string()),
                    bank_file: Some(file_id.clone()),
                };
                let doctor_hold = doctor_holds.get(&payout.doctor_id);
                match self.plan_attempt(actor, payout, attempts, recipient, doctor_hold, route, now) {
                    Ok((mut change, instruction)) => {
                        change.follow_up = Some(first_check.clone());
                        planned.push((change, instruction));
                    }
                    Err(e) => left_out.push(leave(e.to_string())),
                }
            }
        }
        if planned.is_empty() {
            return Err(BankFileError::Empty(match left_out.first() {
                None => "the selection holds no APPROVED bank payout".into(),
                Some(first) => format!(
                    "none of the {} selected payouts can be sent (payout {}: {})",
                    left_out.len(),
                    first.payout_id,
                    first.reason
                ),
            })
            .into());
        }
        planned.sort_by(|a, b| a.1.idempotency_key.cmp(&b.1.idempotency_key));
        let plan = BankFile {
            id: file_id.clone(),
            created_at: now,
            members: planned.iter().map(|(_, i)| i.clone()).collect(),
            left_out: Vec::new(),
        };
        check(&plan).map_err(BankFileError::Unwritable)?;
        drop(plan);

        let mut members = Vec::with_capacity(planned.len());
        let mut first_error = None;
        let mut planned = planned.into_iter().peekable();
        while planned.peek().is_some() {
            let (changes, instructions): (Vec<_>, Vec<_>) = planned.by_ref().take(CHUNK).unzip();
            for (instruction, applied) in instructions.into_iter().zip(self.store.apply_many(changes).await) {
                match applied {
                    Ok(_) => members.push(instruction),
                    Err(e) => {
                        left_out.push(LeftOut {
                            payout_id: instruction.payout_id,
                            reason: format!("not marked: {e}"),
                        });
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if members.is_empty() {
            return Err(match first_error {
                Some(Error::Conflict(_)) | None => BankFileError::Empty(
                    "every selected payout changed while the file was made; nothing was marked".into(),
                )
                .into(),
                Some(e) => e,
            });
        }
        tracing::info!(
            bank_file = %file_id,
            members = members.len(),
            left_out = left_out.len(),
            "payouts marked as sent by bank file"
        );
        Ok(BankFile {
            id: file_id,
            created_at: now,
            members,
            left_out,
        })
    }

    /// A bank file as it was made, read again from its stored attempts (admins only): the same
    /// members, keys, amounts and bank accounts, in the same order, whatever happened to the
    /// payouts since. [`BankFileError::NotFound`] when no attempt was sent in it.
    pub async fn bank_file(&self, actor: &Actor, id: &BankFileId) -> Result<BankFile> {
        self.require_privileged(actor, "read bank files")?;
        let attempts = self.file_attempts(id).await?;
        let ids: Vec<PayoutId> = attempts.iter().map(|a| a.payout_id.clone()).collect();
        let mut members = Vec::with_capacity(attempts.len());
        for (chunk_ids, chunk) in ids.chunks(CHUNK).zip(attempts.chunks(CHUNK)) {
            let (found, recipients) = self.read_for_file(chunk_ids).await?;
            for attempt in chunk {
                let (payout, _) = found
                    .get(&attempt.payout_id)
                    .ok_or_else(|| corrupt(id, attempt, "its payout"))?;
                if attempt.destination.is_none() {
                    return Err(corrupt(id, attempt, "a stored destination"));
                }
                members.push(sent_instruction(payout, attempt, recipients.get(&payout.doctor_id))?);
            }
        }
        let created_at = attempts
            .iter()
            .map(|a| a.created_at)
            .min()
            .unwrap_or_else(|| self.clock.now());
        Ok(BankFile {
            id: id.clone(),
            created_at,
            members,
            left_out: Vec::new(),
        })
    }

    /// The attempts sent in file `id`, ordered by key; [`BankFileError::NotFound`] when none.
    pub(super) async fn file_attempts(&self, id: &BankFileId) -> Result<Vec<PayoutAttempt>> {
        let mut attempts = self.store.batch_attempts(Provider::BankTransfer, id.as_str()).await?;
        if attempts.is_empty() {
            return Err(BankFileError::NotFound(id.to_string()).into());
        }
        attempts.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
        Ok(attempts)
    }

    /// The payouts of `ids` with their attempts, and their doctors' profiles: one read and one
    /// directory call.
    pub(super) async fn read_for_file(
        &self,
        ids: &[PayoutId],
    ) -> Result<(
        HashMap<PayoutId, (Payout, Vec<PayoutAttempt>)>,
        HashMap<DoctorId, Recipient>,
    )> {
        let found: HashMap<PayoutId, (Payout, Vec<PayoutAttempt>)> = self
            .store
            .read_with_attempts(ids)
            .await?
            .into_iter()
            .map(|(p, a)| (p.id.clone(), (p, a)))
            .collect();
        let mut doctors: Vec<DoctorId> = found.values().map(|(p, _)| p.doctor_id.clone()).collect();
        doctors.sort_unstable();
        doctors.dedup();
        let recipients = self
            .directory
            .recipients(&doctors)
            .await?
            .into_iter()
            .map(|r| (r.doctor_id.clone(), r))
            .collect();
        Ok((found, recipients))
    }
}

/// A member of file `id` whose stored records are incomplete.
pub(super) fn corrupt(id: &BankFileId, attempt: &PayoutAttempt, missing: &str) -> Error {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("attempt {} of bank file {id} has no {missing}", attempt.idempotency_key),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn totals_are_exact_per_currency() {
        let usd = |m| Money::from_minor_units(m, Currency::USD);
        let kes = |m| Money::from_minor_units(m, Currency::KES);
        let t = BankFileTotals::of(&[usd(10), kes(5), usd(1)]).unwrap();
        assert_eq!(t.count, 3);
        assert_eq!(t.sums, vec![kes(5), usd(11)]);
    }
}
