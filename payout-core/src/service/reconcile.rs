//! Reconciliation: claims due checks under a lease, asks the provider about each at the lookup
//! concurrency, applies what it learns, and reschedules the rest with a growing back-off, so every
//! PROCESSING payout is looked at within a bounded time however large the backlog, and several
//! instances never look up the same attempt in one pass. PAID payouts are watched the same way, at
//! a low rate, for money that comes back without a webhook.

use chrono::{DateTime, Duration, Utc};
use std::collections::{HashMap, VecDeque};

use futures::StreamExt;
use futures::future::{BoxFuture, Either};
use futures::stream::FuturesUnordered;
use tracing::Instrument;

use super::PayoutService;
use super::lifecycle::Prepared;
use crate::domain::{AttemptOutcome, Payout, PayoutAttempt, PayoutId, Provider};
use crate::error::{Error, Result, StoreError, StoreErrorKind};
use crate::provider::{AttemptLookup, ProviderStatus, SendReceipt, partial_reversal_reason};
use crate::status::PayoutStatus;
use crate::store::{
    AttemptUpdate, AttentionPage, CheckClaim, CheckDone, ClaimedCheck, FollowUp, PayoutChange, PayoutStoreExt,
};
use crate::telemetry;

/// When reconciliation looks at a payout again, and how long it watches a paid one: rules a
/// finance team decides (part of [`ServicePolicy`](super::ServicePolicy)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// The wait before the first re-check of a payout a lookup found still in flight; each further
    /// re-check waits twice as long as the one before, up to `recheck_at_most`. Default: 5 minutes.
    pub recheck_after: Duration,
    /// The longest wait between two checks of a PROCESSING payout, so that each is looked at
    /// within this time (plus one pass) however long it has been in flight. Default: 6 hours.
    pub recheck_at_most: Duration,
    /// How long a claimed check belongs to the instance that claimed it; one that has not finished
    /// it by then (it crashed) leaves it to the next claim. Default: 10 minutes.
    pub lease: Duration,
    /// How long PAID payouts are re-checked for returns and reversals, per provider.
    pub settlement_watch: SettlementWatch,
}

impl Default for ReconcilePolicy {
    fn default() -> Self {
        ReconcilePolicy {
            recheck_after: Duration::minutes(5),
            recheck_at_most: Duration::hours(6),
            lease: Duration::minutes(10),
            settlement_watch: SettlementWatch::default(),
        }
    }
}

impl ReconcilePolicy {
    /// The wait before the next check of a payout found unchanged `checks` times in a row:
    /// `recheck_after`, doubled per check, at most `recheck_at_most`.
    pub fn backoff(&self, checks: u32) -> Duration {
        let factor = 1i32.checked_shl(checks.min(30)).unwrap_or(i32::MAX);
        self.recheck_after
            .checked_mul(factor)
            .map_or(self.recheck_at_most, |d| d.min(self.recheck_at_most))
    }
}

/// How long after it was paid a payout is still re-checked for money coming back, per provider,
/// and how often (returns and reversals are found even when their webhook is lost or the rail has
/// none). Zero: not watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementWatch {
    /// Stripe Connect. Default: 7 days.
    pub stripe: Duration,
    /// PayPal Payouts (unclaimed payouts come back after 30 days). Default: 30 days.
    pub paypal: Duration,
    /// Bank transfer (returns arrive days later). Default: 10 days.
    pub bank: Duration,
    /// M-Pesa B2C. Default: zero (its lookup cannot tell, see the adapter).
    pub mpesa: Duration,
    /// The wait between two checks of a watched payout. Default: 1 day.
    pub every: Duration,
}

impl Default for SettlementWatch {
    fn default() -> Self {
        SettlementWatch {
            stripe: Duration::days(7),
            paypal: Duration::days(30),
            bank: Duration::days(10),
            mpesa: Duration::zero(),
            every: Duration::days(1),
        }
    }
}

impl SettlementWatch {
    /// How long a payout paid through `provider` is watched.
    pub fn window(&self, provider: Provider) -> Duration {
        match provider {
            Provider::StripeConnect => self.stripe,
            Provider::PaypalPayouts => self.paypal,
            Provider::BankTransfer => self.bank,
            Provider::MpesaB2c => self.mpesa,
        }
    }

    /// The follow-up of a payout paid through `provider` at `paid_at`, as of `now`: its next
    /// check while the window is open, none after.
    pub fn follow_up(&self, provider: Option<Provider>, paid_at: DateTime<Utc>, now: DateTime<Utc>) -> FollowUp {
        let Some(provider) = provider else {
            return FollowUp::none();
        };
        let next = now + self.every;
        if next <= paid_at + self.window(provider) {
            FollowUp::check_at(next)
        } else {
            FollowUp::none()
        }
    }
}

/// What a reconciliation pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconcileReport {
    /// Payouts looked at (claimed checks).
    pub examined: usize,
    /// Payouts whose status the provider's answer settled (or moved after PAID).
    pub settled: Vec<(PayoutId, PayoutStatus)>,
    /// Attempts the provider had no record of, re-sent with the same idempotency key.
    pub resent: Vec<PayoutId>,
    /// Still in flight at the provider: checked again after a back-off.
    pub pending: Vec<PayoutId>,
    /// PAID payouts re-checked within their settlement watch.
    pub watched: Vec<PayoutId>,
    /// Lookups that failed (checked again after a back-off).
    pub errors: Vec<(PayoutId, String)>,
    /// Flagged for a person by this pass (also listed by
    /// [`PayoutService::attention`](super::PayoutService::attention)): PROCESSING for longer than
    /// `ServicePolicy::attention_after`, an outcome a lookup cannot tell, a late failure after PAID.
    pub needs_attention: Vec<PayoutId>,
}

/// What looking at one claimed check came to.
enum Checked {
    Settled(PayoutStatus),
    Resent(Option<PayoutStatus>),
    Pending,
    Watched,
    Idle,
}

/// One check looked at: its payout, what came of it, and the reason it flagged it, if any.
type Looked = (PayoutId, std::result::Result<Checked, String>, Option<String>);

/// What a pass's work in flight comes back with.
enum Step {
    /// A check looked at, with the follow-up it still has to write, if any.
    Looked(Looked, Option<CheckDone>),
    /// A batch of follow-ups written (or each an error).
    Finished(Vec<Looked>),
}

/// Whether a store call that failed with `e` may work later (the database was away, or a conflict).
fn retryable(e: &Error) -> bool {
    matches!(e, Error::Store(s) if s.kind().is_retryable())
}

/// A pass's bookkeeping: lookups in flight, follow-ups not written yet, checks done.
struct Pass {
    lookups: usize,
    /// How many follow-ups one store call writes.
    batch: usize,
    unwritten: Vec<(Looked, CheckDone)>,
    results: Vec<Looked>,
}

impl Pass {
    /// Takes in what came back; returns a full batch of follow-ups to write, if there is one.
    fn absorb(&mut self, step: Step) -> Option<Vec<(Looked, CheckDone)>> {
        match step {
            Step::Looked(looked, done) => {
                self.lookups -= 1;
                match done {
                    Some(done) => self.unwritten.push((looked, done)),
                    None => self.results.push(looked),
                }
            }
            Step::Finished(looked) => self.results.extend(looked),
        }
        (self.unwritten.len() >= self.batch).then(|| std::mem::take(&mut self.unwritten))
    }
}

impl PayoutService {
    /// The attention queue (admins): payouts a person should look at, oldest flag first, each with
    /// its reason: PROCESSING for longer than `attention_after`, an outcome a lookup cannot tell,
    /// money that came back (RETURNED, REVERSED), a failure reported after PAID. A change that
    /// settles the payout takes it off the queue in the same step.
    pub async fn attention(&self, actor: &crate::domain::Actor, page: &crate::store::Page) -> Result<AttentionPage> {
        self.require_privileged(actor, "list the payouts that need attention")?;
        self.store.attention(page).await
    }

    /// One reconciliation pass: claims every check due `older_than` ago or earlier (a PROCESSING
    /// payout is first due when it entered PROCESSING, so `older_than` leaves a fresh send time to
    /// answer), `PerformanceConfig::reconcile_claim` at a time under a lease, and looks each up at
    /// `PerformanceConfig::lookup_concurrency`:
    ///
    /// - PROCESSING: asks the provider about the latest attempt and applies its answer; an attempt
    ///   the provider never received is re-sent with the *same* idempotency key; one still in
    ///   flight is checked again after a back-off ([`ReconcilePolicy::backoff`]). An outcome a
    ///   lookup cannot tell, or a payout PROCESSING for longer than `attention_after`, is flagged
    ///   for a person.
    /// - PAID, within its settlement watch: asks again, so a return or reversal is found without
    ///   a webhook; a late failure answer is recorded on the attempt and flagged, never a status.
    ///
    /// Each claim reads the payouts with their latest attempts, and the checks' follow-ups are
    /// written `reconcile_claim` at a time ([`PayoutStore::finish_checks`](crate::PayoutStore::finish_checks)),
    /// so a lookup costs the store no call of its own; a change of status goes through the audited
    /// `apply` as always. Checks rescheduled by this pass are not due again within it, so a pass
    /// ends; instances running passes at once share the due checks out, each to one of them.
    ///
    /// When the store goes away mid-pass, the checks already claimed are still looked at, and the
    /// follow-ups that cannot be written are kept in memory and written first by the next pass (under
    /// the same leases, so nothing is written for a check another claim or a change has taken since):
    /// after a database restart the checks are due again at once, not when their leases run out.
    /// Only a claim whose commit landed while its answer was lost waits for its lease.
    pub async fn reconcile(&self, older_than: Duration) -> Result<ReconcileReport> {
        self.write_owed_checks().await?;
        let now = self.clock.now();
        let claim = CheckClaim {
            due_by: now - older_than,
            limit: self.performance.reconcile_claim.max(1),
            lease_until: now + self.policy.reconcile.lease,
        };
        let concurrency = self.performance.lookup_concurrency.max(1);
        // Claims are taken as the lookups need them, so the lookups in flight stay at the
        // concurrency across claims; a claim that fails ends the pass (its leases run out, and so
        // do those of checks whose follow-ups were not written yet). Follow-ups are written a
        // claim's worth at a time, while the lookups go on.
        // Batches re-sent by this pass: one re-send answers every member, so the others' checks in
        // the same pass do not send it again.
        let resent_batches: ResentBatches = std::sync::Mutex::new(std::collections::HashSet::new());
        let resent_batches = &resent_batches;
        let mut work: FuturesUnordered<BoxFuture<'_, Step>> = FuturesUnordered::new();
        let mut pass = Pass {
            lookups: 0,
            batch: claim.limit as usize,
            unwritten: Vec::new(),
            results: Vec::new(),
        };
        let mut claimed: VecDeque<ClaimedCheck> = VecDeque::new();
        let mut exhausted = false;
        // A claim that failed: the pass claims no more, finishes what it claimed, and fails.
        let mut claim_failed = None;
        loop {
            while pass.lookups < concurrency {
                if claimed.is_empty() && !exhausted {
                    // The work in flight goes on while the claim waits: a lookup may hold the
                    // pool's last connection in a transaction.
                    let mut claiming = std::pin::pin!(self.store.claim_checks(&claim));
                    let batch = loop {
                        if work.is_empty() {
                            break claiming.await;
                        }
                        match futures::future::select(claiming.as_mut(), work.next()).await {
                            Either::Left((batch, _)) => break batch,
                            Either::Right((step, _)) => {
                                if let Some(full) = step.and_then(|s| pass.absorb(s)) {
                                    work.push(Box::pin(self.finish(full)));
                                }
                            }
                        }
                    };
                    match batch {
                        Ok(batch) => {
                            exhausted = batch.is_empty();
                            claimed.extend(batch);
                        }
                        Err(e) => {
                            exhausted = true;
                            claim_failed = Some(e);
                        }
                    }
                }
                let Some(c) = claimed.pop_front() else { break };
                pass.lookups += 1;
                work.push(Box::pin(async move {
                    let (looked, done) = self.check_one(c, resent_batches).await;
                    Step::Looked(looked, done)
                }));
            }
            if pass.lookups == 0 && claimed.is_empty() && exhausted && !pass.unwritten.is_empty() {
                work.push(Box::pin(self.finish(std::mem::take(&mut pass.unwritten))));
            }
            match work.next().await {
                Some(step) => {
                    if let Some(full) = pass.absorb(step) {
                        work.push(Box::pin(self.finish(full)));
                    }
                }
                None => break,
            }
        }
        if let Some(e) = claim_failed {
            return Err(e);
        }
        let mut report = ReconcileReport::default();
        for (id, checked, flagged) in pass.results {
            report.examined += 1;
            let result = match checked {
                Ok(Checked::Settled(to)) => {
                    report.settled.push((id.clone(), to));
                    "settled"
                }
                Ok(Checked::Resent(settled)) => {
                    report.resent.push(id.clone());
                    if let Some(to) = settled {
                        report.settled.push((id.clone(), to));
                    }
                    "resent"
                }
                Ok(Checked::Pending) => {
                    report.pending.push(id.clone());
                    "pending"
                }
                Ok(Checked::Watched) => {
                    report.watched.push(id.clone());
                    "watched"
                }
                Ok(Checked::Idle) => "idle",
                Err(e) => {
                    report.errors.push((id.clone(), e));
                    "error"
                }
            };
            telemetry::record_check(result);
            if flagged.is_some() {
                report.needs_attention.push(id);
            }
        }
        for list in [
            &mut report.resent,
            &mut report.pending,
            &mut report.watched,
            &mut report.needs_attention,
        ] {
            list.sort();
        }
        report.settled.sort();
        report.errors.sort();
        Ok(report)
    }

    /// [`check`](Self::check) with the payout it is about and the reason it flagged it, if any,
    /// and the follow-up it still has to write.
    async fn check_one(&self, c: ClaimedCheck, resent: &ResentBatches) -> (Looked, Option<CheckDone>) {
        let id = c.payout.id.clone();
        let mut flagged = None;
        let (checked, done) = self.check(c, &mut flagged, resent).await;
        ((id, checked.map_err(|e| e.to_string()), flagged), done)
    }

    /// Writes a batch of follow-ups in one store call; when it fails, each of its checks is
    /// an error, and the follow-ups are owed: the next pass writes them first.
    async fn finish(&self, batch: Vec<(Looked, CheckDone)>) -> Step {
        let (looked, done): (Vec<Looked>, Vec<CheckDone>) = batch.into_iter().unzip();
        // `false` for a check: a change or another claim came since; theirs is the newer follow-up.
        match self.store.finish_checks(&done).await {
            Ok(_) => Step::Finished(looked),
            Err(e) => {
                if retryable(&e) {
                    self.owe_checks(done);
                }
                Step::Finished(
                    looked
                        .into_iter()
                        .map(|(id, _, flagged)| (id, Err(e.to_string()), flagged))
                        .collect(),
                )
            }
        }
    }

    /// Keeps follow-ups that could not be written, for the next pass.
    fn owe_checks(&self, done: Vec<CheckDone>) {
        self.owed_checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(done);
    }

    /// Writes the follow-ups owed by earlier passes (each only under its lease, as always); when the
    /// store still fails, they stay owed and the pass fails with its error.
    async fn write_owed_checks(&self) -> Result<()> {
        let owed = std::mem::take(
            &mut *self
                .owed_checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if owed.is_empty() {
            return Ok(());
        }
        match self.store.finish_checks(&owed).await {
            Ok(written) => {
                let written = written.into_iter().filter(|w| *w).count();
                tracing::info!(
                    owed = owed.len(),
                    written,
                    "reconciliation: follow-ups a failed pass could not write are written"
                );
                Ok(())
            }
            Err(e) if retryable(&e) => {
                self.owe_checks(owed);
                Err(e)
            }
            // Writing them again would fail the same way: their leases run out instead.
            Err(e) => {
                tracing::warn!(
                    owed = owed.len(),
                    error = %e,
                    "reconciliation: owed follow-ups dropped; their checks are due when their leases run out"
                );
                Ok(())
            }
        }
    }

    /// Looks at one claimed check and says what follows from it: a change when the answer moves
    /// the payout (which writes its own follow-up), otherwise the rescheduled check to write under
    /// the lease. `flagged` is set to the reason when this check flagged the payout.
    async fn check(
        &self,
        c: ClaimedCheck,
        flagged: &mut Option<String>,
        resent: &ResentBatches,
    ) -> (Result<Checked>, Option<CheckDone>) {
        let now = self.clock.now();
        let backoff = FollowUp::check_at(now + self.policy.reconcile.backoff(c.checks));
        let latest = c.latest_attempt.as_ref();
        let sent_by_file = latest.and_then(PayoutAttempt::bank_file);
        let (checked, follow_up) = match c.payout.status {
            // No bank API knows a file: never looked up, never re-sent (a re-send by API would
            // pay twice); only flagged when its confirmation is overdue.
            _ if sent_by_file.is_some() => self.check_sent_by_file(&c, sent_by_file.as_ref(), now, flagged),
            PayoutStatus::Processing => match self.check_processing(&c.payout, latest, resent).await {
                Ok((Checked::Pending, cannot_tell)) => {
                    let long = self.processing_too_long(&c.payout, latest, now);
                    let reason = cannot_tell.or(long);
                    (Ok(Checked::Pending), Some(with_flag(backoff, reason, &c, flagged)))
                }
                Ok((Checked::Resent(None), _)) => (Ok(Checked::Resent(None)), Some(keep_flag(backoff, &c))),
                Ok((settled, reason)) => {
                    if reason.is_some() {
                        *flagged = reason;
                    }
                    (Ok(settled), None)
                }
                Err(e) => (Err(e), Some(keep_flag(backoff, &c))),
            },
            PayoutStatus::Paid => {
                let watch = &self.policy.reconcile.settlement_watch;
                let paid_at = c.payout.processed_at.unwrap_or(c.payout.updated_at);
                let next = watch.follow_up(c.payout.provider, paid_at, now);
                if c.payout.provider.is_none_or(|p| now >= paid_at + watch.window(p)) {
                    (Ok(Checked::Idle), Some(keep_flag(next, &c)))
                } else {
                    match self.check_paid(&c.payout, latest, c.attention.as_deref()).await {
                        Ok((Checked::Watched, reason)) => {
                            (Ok(Checked::Watched), Some(with_flag(next, reason, &c, flagged)))
                        }
                        // A late failure or a partial reversal: recorded and flagged by its own change.
                        Ok((Checked::Settled(PayoutStatus::Paid), reason)) => {
                            *flagged = Some(reason.unwrap_or_else(|| "a failure reported after PAID".into()));
                            (Ok(Checked::Watched), None)
                        }
                        Ok((moved, _)) => (Ok(moved), None),
                        Err(e) => (Err(e), Some(keep_flag(next, &c))),
                    }
                }
            }
            // Scheduled, then moved by a change that wrote no follow-up: nothing to look at.
            _ => (Ok(Checked::Idle), Some(keep_flag(FollowUp::none(), &c))),
        };
        let done = follow_up.map(|follow_up| CheckDone {
            payout_id: c.payout.id.clone(),
            lease: c.lease,
            follow_up,
            at: now,
        });
        (checked, done)
    }

    /// A payout whose latest attempt went out in bank file `file`: a PROCESSING one is looked at
    /// again when it has been in flight for `attention_after`, and from then on flagged for a
    /// person (settle the file, or resolve it) at the back-off; any other is not scheduled again.
    fn check_sent_by_file(
        &self,
        c: &ClaimedCheck,
        file: Option<&crate::domain::BankFileId>,
        now: DateTime<Utc>,
        flagged: &mut Option<String>,
    ) -> (Result<Checked>, Option<FollowUp>) {
        if c.payout.status != PayoutStatus::Processing {
            return (Ok(Checked::Idle), Some(keep_flag(FollowUp::none(), c)));
        }
        let sent = c.latest_attempt.as_ref().map_or(c.payout.updated_at, |a| a.created_at);
        let due = sent + self.policy.attention_after;
        let follow_up = if now < due {
            keep_flag(FollowUp::check_at(due), c)
        } else {
            let reason = format!(
                "sent by bank file {} on {}, and the bank's confirmation is not recorded: settle the file, or \
                 resolve the payout with evidence",
                file.map(|f| f.to_string()).unwrap_or_default(),
                sent.format("%Y-%m-%d %H:%M UTC"),
            );
            let next = FollowUp::check_at(now + self.policy.reconcile.backoff(c.checks));
            with_flag(next, Some(reason), c, flagged)
        };
        (Ok(Checked::Pending), Some(follow_up))
    }

    /// The reason to flag a PROCESSING payout whose latest attempt went out longer than
    /// `attention_after` ago, if it did.
    fn processing_too_long(
        &self,
        payout: &Payout,
        latest: Option<&PayoutAttempt>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let sent = latest.map_or(payout.updated_at, |a| a.created_at);
        (now - sent > self.policy.attention_after).then(|| {
            format!(
                "PROCESSING since {} (longer than {} h): the provider has not settled it",
                sent.format("%Y-%m-%d %H:%M UTC"),
                self.policy.attention_after.num_hours()
            )
        })
    }

    /// Asks the provider about a PROCESSING payout's latest attempt and applies the answer. Returns
    /// `Pending` with the reason when a lookup cannot tell.
    async fn check_processing(
        &self,
        payout: &Payout,
        latest: Option<&PayoutAttempt>,
        resent: &ResentBatches,
    ) -> Result<(Checked, Option<String>)> {
        let (attempt, adapter, instruction, status) = self.look_up_latest(payout, latest).await?;
        // An attempt of a provider batch is re-sent only as that whole batch. Re-sending it is also
        // how an attempt without a reference is found: the provider answers a batch id it has
        // seen with the original batch, and moves money for one it has not.
        let in_batch = attempt.batch_id.is_some() && adapter.capabilities().batch;
        let resend_batch = in_batch
            && match &status {
                ProviderStatus::NotFound => true,
                ProviderStatus::Undetermined(_) => attempt.provider_reference.is_none(),
                _ => false,
            };
        if resend_batch {
            return self.resend_batch(payout, &attempt, &adapter, resent).await;
        }
        match status {
            ProviderStatus::NotFound => {
                // Never arrived: the same attempt, the same key, sent again. Written first, as the
                // first send's attempt is: the attempt is PENDING again from now, so a resolution
                // reads that a send may be in flight (`resolve.rs`), and one that committed before
                // this step makes it conflict, so nothing is sent.
                let mut resending = PayoutChange::of(payout, self.clock.now());
                resending.attempt_update = Some(AttemptUpdate {
                    attempt_no: attempt.attempt_no,
                    outcome: AttemptOutcome::Pending,
                    provider_reference: None,
                    error: None,
                });
                let payout = match self.store.apply(resending).await {
                    Ok(p) => p,
                    Err(Error::Conflict(_)) => return Ok((Checked::Pending, None)),
                    Err(e) => return Err(e),
                };
                let payout = &payout;
                let prepared = Prepared {
                    payout: payout.clone(),
                    instruction,
                    adapter: adapter.clone(),
                };
                let result = self.send_timed(&prepared).await;
                let after = self
                    .record_answer(payout, attempt.attempt_no, result, &adapter, false)
                    .await?;
                let settled = (after.status != PayoutStatus::Processing).then_some(after.status);
                Ok((Checked::Resent(settled), None))
            }
            ProviderStatus::Accepted => Ok((Checked::Pending, None)),
            ProviderStatus::Undetermined(why) => Ok((
                Checked::Pending,
                Some(format!("outcome unknown and a lookup cannot tell: {why}")),
            )),
            other => {
                let partial = partial_reason(&other, payout);
                let after = self.record_lookup(payout, &attempt, other, &adapter).await?;
                Ok((Checked::Settled(after.status), partial))
            }
        }
    }

    /// Re-sends the whole provider batch `attempt` was sent in, exactly: the same batch id, every
    /// member with its own key and committed destination, nothing else. The members still unsettled
    /// are written PENDING first (as a lone re-send is), and every member's answer is recorded.
    /// Refused, and flagged for a person, when one of its members failed: a provider that has the
    /// batch would answer it as a duplicate, but one that never received it (or deduplicates by
    /// item) would pay that member, whose failure was confirmed and whose payout may have been paid
    /// since by another attempt.
    async fn resend_batch(
        &self,
        payout: &Payout,
        attempt: &PayoutAttempt,
        adapter: &std::sync::Arc<dyn crate::provider::PayoutProvider>,
        resent: &ResentBatches,
    ) -> Result<(Checked, Option<String>)> {
        let batch_id = attempt
            .batch_id
            .clone()
            .unwrap_or_else(|| attempt.idempotency_key.clone());
        let mut members = self.store.batch_attempts(attempt.provider, &batch_id).await?;
        if !members.iter().any(|m| m.idempotency_key == attempt.idempotency_key) {
            members.push(attempt.clone());
        }
        if let Some(failed) = members
            .iter()
            .find(|m| matches!(m.outcome, AttemptOutcome::Failed { .. }))
        {
            return Ok((
                Checked::Pending,
                Some(format!(
                    "batch {batch_id} cannot be re-sent to settle attempt {}: its member {} failed, and a re-send \
                     could pay it; a person decides",
                    attempt.idempotency_key, failed.idempotency_key
                )),
            ));
        }
        if !resent.lock().map(|mut r| r.insert(batch_id.clone())).unwrap_or(true) {
            // Re-sent by this pass for another member: its answer was recorded for this one too.
            return Ok((Checked::Pending, None));
        }
        let ids: Vec<PayoutId> = members.iter().map(|m| m.payout_id.clone()).collect();
        let fresh: HashMap<PayoutId, (Payout, Vec<PayoutAttempt>)> = self
            .store
            .read_with_attempts(&ids)
            .await?
            .into_iter()
            .map(|(p, attempts)| (p.id.clone(), (p, attempts)))
            .collect();
        // The members as they are now, not as `batch_attempts` read them: an operator's FAILED
        // resolution (or a failure answer) may have committed since. Re-sending a batch the
        // provider never received, with a member that failed meanwhile, would pay that member after
        // its failure was confirmed (and a retry may pay it again); a person decides instead.
        for m in &members {
            let now_failed = fresh.get(&m.payout_id).is_some_and(|(_, attempts)| {
                attempts
                    .iter()
                    .any(|a| a.attempt_no == m.attempt_no && matches!(a.outcome, AttemptOutcome::Failed { .. }))
            });
            if now_failed {
                return Ok((
                    Checked::Pending,
                    Some(format!(
                        "batch {batch_id} cannot be re-sent to settle attempt {}: its member {} failed, and a \
                         re-send could pay it; a person decides",
                        attempt.idempotency_key, m.idempotency_key
                    )),
                ));
            }
        }
        let payouts: HashMap<PayoutId, Payout> = fresh.into_iter().map(|(id, (p, _))| (id, p)).collect();
        // The unsettled members, PENDING again from now (see the lone re-send below).
        let now = self.clock.now();
        let mut resending = Vec::new();
        let mut marked = Vec::new();
        for (n, m) in members.iter().enumerate() {
            let Some(p) = payouts.get(&m.payout_id) else { continue };
            let unsettled = !matches!(m.outcome, AttemptOutcome::Succeeded | AttemptOutcome::Failed { .. });
            if unsettled && p.status == PayoutStatus::Processing {
                let mut change = PayoutChange::of(p, now);
                change.attempt_update = Some(AttemptUpdate {
                    attempt_no: m.attempt_no,
                    outcome: AttemptOutcome::Pending,
                    provider_reference: None,
                    error: None,
                });
                resending.push(change);
                marked.push(n);
            }
        }
        let mut current: Vec<Option<Payout>> = members.iter().map(|m| payouts.get(&m.payout_id).cloned()).collect();
        for (n, applied) in marked.into_iter().zip(self.store.apply_many(resending).await) {
            match applied {
                Ok(p) => current[n] = Some(p),
                // A member moved meanwhile (an answer, an operator's resolution): nothing is sent
                // now, as the batch would go out with a member in a state this pass did not read.
                // The claimed payout is looked at again later, from what it is then.
                Err(Error::Conflict(_)) => return Ok((Checked::Pending, None)),
                Err(e) => return Err(e),
            }
        }
        let mut ready = Vec::with_capacity(members.len());
        for (n, (m, p)) in members.iter().zip(current).enumerate() {
            let Some(p) = p else { continue };
            let instruction = self.rebuild_instruction(&p, m).await?;
            ready.push((
                n,
                Prepared {
                    payout: p,
                    instruction,
                    adapter: adapter.clone(),
                },
            ));
        }
        tracing::info!(
            batch = %batch_id,
            members = ready.len(),
            attempt = %attempt.idempotency_key,
            "re-sending a provider batch exactly as first sent"
        );
        let answers = self.send_batch_timed(adapter, &ready).await;
        let concurrency = self.performance.lookup_concurrency.max(1);
        let recorded = self.record_batch_answers(ready, answers, concurrency).await;
        let mine = members
            .iter()
            .position(|m| m.idempotency_key == attempt.idempotency_key);
        let after = recorded
            .into_iter()
            .find(|(n, _)| Some(*n) == mine)
            .map(|(_, r)| r)
            .unwrap_or_else(|| Err(Error::Conflict(payout.id.clone())))?;
        let settled = (after.status != PayoutStatus::Processing).then_some(after.status);
        Ok((Checked::Resent(settled), None))
    }

    /// Asks the provider about a PAID payout's latest attempt: money back moves it; a failure or a
    /// partial reversal is recorded and flags it (`Settled(PAID)`); a provider with no record of a
    /// paid attempt flags it (never a re-send). `flag` is the payout's flag as claimed: a partial
    /// reversal it already names (recorded by a webhook or an earlier pass) is not recorded again.
    async fn check_paid(
        &self,
        payout: &Payout,
        latest: Option<&PayoutAttempt>,
        flag: Option<&str>,
    ) -> Result<(Checked, Option<String>)> {
        let (attempt, adapter, _, status) = self.look_up_latest(payout, latest).await?;
        let partial = partial_reason(&status, payout);
        match status {
            ProviderStatus::PartiallyReversed { .. } if partial.as_deref() == flag => Ok((Checked::Watched, None)),
            ProviderStatus::PartiallyReversed { .. } => {
                let after = self.record_lookup(payout, &attempt, status, &adapter).await?;
                Ok((Checked::Settled(after.status), partial))
            }
            ProviderStatus::Paid | ProviderStatus::Accepted | ProviderStatus::Undetermined(_) => {
                Ok((Checked::Watched, None))
            }
            ProviderStatus::NotFound => Ok((
                Checked::Watched,
                Some(format!(
                    "{} has no record of attempt {} of this PAID payout",
                    attempt.provider, attempt.attempt_no
                )),
            )),
            // A failure already recorded on the attempt: flagged then, nothing new to record.
            ProviderStatus::Failed(_) if matches!(attempt.outcome, AttemptOutcome::Failed { .. }) => {
                Ok((Checked::Watched, None))
            }
            other => {
                let after = self.record_lookup(payout, &attempt, other, &adapter).await?;
                Ok((Checked::Settled(after.status), None))
            }
        }
    }

    /// The latest attempt of `payout` (as claimed with it), its adapter and instruction, and what a
    /// lookup answers.
    async fn look_up_latest(
        &self,
        payout: &Payout,
        latest: Option<&PayoutAttempt>,
    ) -> Result<(
        PayoutAttempt,
        std::sync::Arc<dyn crate::provider::PayoutProvider>,
        crate::provider::PayoutInstruction,
        ProviderStatus,
    )> {
        let Some(attempt) = latest.cloned() else {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!("{} payout {} has no attempt", payout.status, payout.id),
            )
            .into());
        };
        let adapter = self.provider(attempt.provider)?.clone();
        let instruction = self.rebuild_instruction(payout, &attempt).await?;
        let lookup = AttemptLookup {
            payout_id: payout.id.clone(),
            attempt_no: attempt.attempt_no,
            idempotency_key: attempt.idempotency_key.clone(),
            provider_reference: attempt.provider_reference.clone(),
            instruction: Some(instruction.clone()),
        };
        let span = tracing::info_span!(
            "provider_lookup",
            payout_id = %payout.id,
            attempt_key = %attempt.idempotency_key,
            provider = %attempt.provider,
        );
        let status = adapter.lookup(&lookup).instrument(span).await?;
        Ok((attempt, adapter, instruction, status))
    }

    /// Records a lookup's settling answer as the attempt's answer.
    async fn record_lookup(
        &self,
        payout: &Payout,
        attempt: &PayoutAttempt,
        status: ProviderStatus,
        adapter: &std::sync::Arc<dyn crate::provider::PayoutProvider>,
    ) -> Result<Payout> {
        let receipt = SendReceipt {
            reference: attempt.provider_reference.clone(),
            note: format!("reconciled by status lookup: {status:?}"),
            status,
        };
        self.record_answer(payout, attempt.attempt_no, Ok(receipt), adapter, false)
            .await
    }
}

/// The attention reason for `status` when it is a partial reversal of `payout`.
fn partial_reason(status: &ProviderStatus, payout: &Payout) -> Option<String> {
    match status {
        ProviderStatus::PartiallyReversed { reversed, .. } => {
            Some(partial_reversal_reason(reversed, &payout.amount_due))
        }
        _ => None,
    }
}

/// The provider batches a reconciliation pass has re-sent.
type ResentBatches = std::sync::Mutex<std::collections::HashSet<String>>;

/// `follow_up` with the claimed check's flag kept.
fn keep_flag(mut follow_up: FollowUp, c: &ClaimedCheck) -> FollowUp {
    follow_up.attention = c.attention.clone();
    follow_up
}

/// `follow_up` flagged with `reason` (noted in `flagged`), or with the claimed check's flag kept.
fn with_flag(follow_up: FollowUp, reason: Option<String>, c: &ClaimedCheck, flagged: &mut Option<String>) -> FollowUp {
    match reason {
        Some(reason) => {
            *flagged = Some(reason.clone());
            follow_up.flagged(reason)
        }
        None => keep_flag(follow_up, c),
    }
}
