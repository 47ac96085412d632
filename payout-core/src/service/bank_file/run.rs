//! A run's bank file: the run's `APPROVED` members whose doctor's method is `BANK_TRANSFER`, sent
//! by file, each result stored on the run and the action a run event; the file read again and
//! settled through its run (a file of another run is not found there).

use std::collections::HashSet;

use futures::TryStreamExt;

use super::{BankFile, BankFileRequest, BankPayouts, Settlement, SettlementReport};
use crate::domain::{Actor, BankFileId, PayoutId, Provider, RunAction, RunEvent, RunId, RunResult};
use crate::error::{BankFileError, Result};
use crate::service::PayoutService;
use crate::status::PayoutStatus;
use crate::store::PayoutFilter;

impl PayoutService {
    /// Sends run `run`'s bank payouts by file (admins only): its `APPROVED` members whose doctor's
    /// method is `BANK_TRANSFER` ([`BankPayouts::ByMethod`]), as
    /// [`send_by_file`](Self::send_by_file) does for any selection (held members, and members the
    /// approval policy refuses, are left out unchanged). Each member sent is stored on the run as a
    /// `TRIGGER` result with provider `BANK_TRANSFER` ("sent by bank file …"), each left out as a
    /// failed one with the reason, and the action as a `BANK_FILE` run event. `RunNotFound` for an
    /// unknown run.
    pub async fn send_run_by_file<C>(&self, actor: &Actor, run: &RunId, check: C) -> Result<BankFile>
    where
        C: Fn(&BankFile) -> std::result::Result<(), String> + Send + Sync,
    {
        self.require_privileged(actor, "send runs by bank file")?;
        self.store.run(run).await?;
        let request = BankFileRequest {
            selection: PayoutFilter {
                run: Some(run.clone()),
                ..Default::default()
            },
            payouts: BankPayouts::ByMethod,
        };
        let file = self.send_by_file(actor, &request, check).await?;
        let at = self.clock.now();
        let result = |payout_id: &PayoutId, ok: bool, status_after: Option<PayoutStatus>, message: String| RunResult {
            payout_id: payout_id.clone(),
            action: RunAction::Trigger,
            provider: Some(Provider::BankTransfer),
            ok,
            status_after,
            message: Some(message),
            at,
            by: actor.label(),
        };
        let mut results: Vec<RunResult> = file
            .members
            .iter()
            .map(|m| {
                result(
                    &m.payout_id,
                    true,
                    Some(PayoutStatus::Processing),
                    format!("sent by bank file {}", file.id),
                )
            })
            .collect();
        results.extend(file.left_out.iter().map(|l| {
            result(
                &l.payout_id,
                false,
                None,
                format!("not in bank file {}: {}", file.id, l.reason),
            )
        }));
        // The payouts are marked: a failure to record the run's view of it is logged, not undone.
        if let Err(e) = self.store.record_run_results(run, &results).await {
            tracing::error!(%run, bank_file = %file.id, error = %e, "the run's bank file results were not recorded");
        }
        let event = RunEvent {
            run_id: run.clone(),
            at,
            actor: actor.label(),
            action: RunEvent::BANK_FILE.to_string(),
            details: Some(format!(
                "bank file {}: {} payouts sent, {} left out",
                file.id,
                file.members.len(),
                file.left_out.len()
            )),
        };
        if let Err(e) = self.store.record_run_event(event).await {
            tracing::error!(%run, bank_file = %file.id, error = %e, "the run's bank file event was not recorded");
        }
        Ok(file)
    }

    /// Bank file `file` of run `run`, read again ([`bank_file`](Self::bank_file)); a file with a
    /// member that is not the run's is [`BankFileError::NotFound`] here.
    pub async fn run_bank_file(&self, actor: &Actor, run: &RunId, file: &BankFileId) -> Result<BankFile> {
        let read = self.bank_file(actor, file).await?;
        self.check_file_of_run(run, file, read.members.iter().map(|m| &m.payout_id))
            .await?;
        Ok(read)
    }

    /// Records the bank's confirmation of bank file `file` of run `run`
    /// ([`settle_bank_file`](Self::settle_bank_file)), as a `BANK_FILE_SETTLED` run event; a file
    /// with a member that is not the run's is [`BankFileError::NotFound`] here, nothing changed.
    pub async fn settle_run_bank_file(
        &self,
        actor: &Actor,
        run: &RunId,
        file: &BankFileId,
        settlement: &Settlement,
    ) -> Result<SettlementReport> {
        self.require_privileged(actor, "settle bank files")?;
        let members = self.file_attempts(file).await?;
        self.check_file_of_run(run, file, members.iter().map(|m| &m.payout_id))
            .await?;
        let report = self.settle_bank_file(actor, file, settlement).await?;
        let event = RunEvent {
            run_id: run.clone(),
            at: self.clock.now(),
            actor: actor.label(),
            action: RunEvent::BANK_FILE_SETTLED.to_string(),
            details: Some(format!(
                "bank file {file}: {} paid, {} failed, {} returned, {} not recorded",
                report.paid.len(),
                report.failed.len(),
                report.returned.len(),
                report.not_recorded.len()
            )),
        };
        if let Err(e) = self.store.record_run_event(event).await {
            tracing::error!(%run, bank_file = %file, error = %e, "the run's settlement event was not recorded");
        }
        Ok(report)
    }

    /// Refuses file `file` unless every one of its `members` is a member of run `run`
    /// (`RunNotFound` for an unknown run).
    async fn check_file_of_run(
        &self,
        run: &RunId,
        file: &BankFileId,
        mut members: impl Iterator<Item = &PayoutId>,
    ) -> Result<()> {
        self.store.run(run).await?;
        let filter = PayoutFilter {
            run: Some(run.clone()),
            ..Default::default()
        };
        let of_run: HashSet<PayoutId> = self.store.stream(filter).map_ok(|p| p.id).try_collect().await?;
        if members.all(|m| of_run.contains(m)) {
            Ok(())
        } else {
            Err(BankFileError::NotFound(format!("{file} of run {run}")).into())
        }
    }
}
