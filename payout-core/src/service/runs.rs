//! Runs: a calculation's payouts, or an admin's selection, handled as one piece of work. Approve
//! its pending payouts, send its approved ones each with its doctor's method (or a provider an
//! admin names) through the bulk trigger, retry its confirmed failures; every per-payout outcome
//! is kept on the run ([`RunResult`]) and every action is a run event. A run is read a page of
//! members at a time, however large.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use futures::StreamExt;
use serde::Serialize;

use super::PayoutService;
use super::holds::check_not_held;
use crate::domain::{
    Actor, DoctorHold, DoctorId, NewRun, Payout, PayoutId, Provider, Recipient, RunAction, RunEvent, RunId, RunKind,
    RunResult, RunSummary,
};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{AttentionPage, Cursor, Page, PayoutFilter, PayoutPage, RunPage, RunResultPage};

/// How many members a run action reads, plans and records per store call: the largest page, so a
/// batching provider gets batches of that size.
const RUN_PAGE: u32 = Page::MAX_LIMIT;

/// Why a run has no method to send a payout with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoMethod {
    /// The recipient directory does not know the doctor.
    UnknownDoctor,
    /// The method asked for (the provider given, or the doctor's preferred one) has no payout
    /// details in the doctor's profile.
    NoDetailsFor(Provider),
    /// The doctor's profile has payout details for no method.
    NoDetails,
    /// The profile has details for several methods and names none as preferred.
    NoPreference(Vec<Provider>),
    /// The method chosen has no adapter configured in this service.
    NotConfigured(Provider),
}

impl fmt::Display for NoMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoMethod::UnknownDoctor => f.write_str("the doctor is not in the recipient directory"),
            NoMethod::NoDetailsFor(p) => write!(f, "the doctor has no {p} payout details"),
            NoMethod::NoDetails => f.write_str("the doctor has no payout details"),
            NoMethod::NoPreference(ps) => {
                let names: Vec<&str> = ps.iter().map(Provider::as_str).collect();
                write!(
                    f,
                    "the doctor has details for {} and no preferred method; set one, or name a provider",
                    names.join(", ")
                )
            }
            NoMethod::NotConfigured(p) => write!(f, "no adapter is configured for {p}, the doctor's method"),
        }
    }
}

impl Serialize for NoMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The method a run sends a payout with: `given` (an admin named a provider for the whole run),
/// else the doctor's preferred method, else the only method the doctor has details for. The
/// chosen method must have details in the doctor's profile (`recipient`).
pub fn choose_provider(given: Option<Provider>, recipient: Option<&Recipient>) -> Result<Provider, NoMethod> {
    let Some(recipient) = recipient else {
        return Err(NoMethod::UnknownDoctor);
    };
    if let Some(p) = given.or(recipient.preferred_provider) {
        return match recipient.destination(p) {
            Some(_) => Ok(p),
            None => Err(NoMethod::NoDetailsFor(p)),
        };
    }
    match recipient.methods().as_slice() {
        [] => Err(NoMethod::NoDetails),
        [only] => Ok(*only),
        several => Err(NoMethod::NoPreference(several.to_vec())),
    }
}

/// What a run's trigger needs from one provider in one currency: the funds check compares it with
/// the provider's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsNeed {
    /// The provider.
    pub provider: Provider,
    /// The currency.
    pub currency: Currency,
    /// How many payouts it would send.
    pub count: u64,
    /// Their sum, exact.
    pub amount: Money,
}

/// An approved member a trigger would not send, for want of a method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unplanned {
    /// The payout.
    pub payout_id: PayoutId,
    /// Its doctor.
    pub doctor_id: DoctorId,
    /// Its amount.
    pub amount: Money,
    /// Why it has no method.
    pub reason: NoMethod,
}

/// What [`trigger_run`](PayoutService::trigger_run) would send now: each `APPROVED` member that is
/// not on hold, by the provider it would go with, summed per provider and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPlan {
    /// The run.
    pub run_id: RunId,
    /// The provider asked for, if one was (else each doctor's method).
    pub provider: Option<Provider>,
    /// How many members are `APPROVED`.
    pub approved: u64,
    /// What would be sent, per provider and currency, ordered by provider then currency code.
    pub needs: Vec<FundsNeed>,
    /// How many approved members are on hold (their own hold or their doctor's): not sent.
    pub held: u64,
    /// The approved members with no method: not sent.
    pub unplanned: Vec<Unplanned>,
}

impl RunPlan {
    /// How many payouts would be sent.
    pub fn planned(&self) -> u64 {
        self.needs.iter().map(|n| n.count).sum()
    }

    /// The need for `provider` in `currency`, if there is one.
    pub fn need(&self, provider: Provider, currency: Currency) -> Option<&FundsNeed> {
        self.needs
            .iter()
            .find(|n| n.provider == provider && n.currency == currency)
    }

    /// The needs as the funds check takes them
    /// ([`check_funds`](PayoutService::check_funds)): one amount per provider and currency.
    pub fn funds_needs(&self) -> Vec<(Provider, Money)> {
        self.needs.iter().map(|n| (n.provider, n.amount)).collect()
    }
}

/// What an action on a run did; each payout's outcome is in the run's results
/// ([`run_results`](PayoutService::run_results)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The run.
    pub run_id: RunId,
    /// The action.
    pub action: RunAction,
    /// Members in the status the action takes (`PENDING`, `APPROVED` or `FAILED`) when reached.
    pub considered: u64,
    /// Done as asked (approved; sent, whatever the outcome is not known yet; retried and sent).
    pub ok: u64,
    /// Not done, or refused by the provider (`held` and `without_method` among them).
    pub failed: u64,
    /// Of the failed, on hold.
    pub held: u64,
    /// Of the failed, with no method to send with.
    pub without_method: u64,
    /// True when the action stopped early because the service is shutting down: the members not
    /// reached are as they were.
    pub stopped_by_shutdown: bool,
}

impl RunReport {
    fn new(run_id: &RunId, action: RunAction) -> Self {
        RunReport {
            run_id: run_id.clone(),
            action,
            considered: 0,
            ok: 0,
            failed: 0,
            held: 0,
            without_method: 0,
            stopped_by_shutdown: false,
        }
    }

    fn count(&mut self, result: &RunResult, outcome: Outcome) {
        self.considered += 1;
        if result.ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        match outcome {
            Outcome::Held => self.held += 1,
            Outcome::NoMethod => self.without_method += 1,
            Outcome::Other => {}
        }
    }

    /// The run event's details.
    fn summary(&self) -> String {
        let stopped = if self.stopped_by_shutdown {
            "; stopped by shutdown"
        } else {
            ""
        };
        format!(
            "{} considered: {} ok, {} failed ({} on hold, {} without a method){stopped}",
            self.considered, self.ok, self.failed, self.held, self.without_method
        )
    }
}

/// How one member's outcome counts in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Held,
    NoMethod,
    Other,
}

/// Where a run's trigger sends one approved member.
enum Route {
    Send(Provider),
    Held(Error),
    NoMethod(NoMethod),
}

impl PayoutService {
    /// Creates a run of the payouts matching `filter` (admins only), read as a stream (only their
    /// ids are held), and records its `CREATE` event. A selection matching no payout is refused
    /// (`InvalidInput`), as is an empty or overlong label.
    pub async fn create_run(&self, actor: &Actor, label: &str, filter: PayoutFilter) -> Result<RunSummary> {
        self.require_privileged(actor, "create runs")?;
        let run = NewRun {
            id: self.ids.run_id(),
            kind: RunKind::Selection,
            label: label.trim().to_string(),
            period: None,
            created_by: actor.label(),
            created_at: self.clock.now(),
        };
        run.validate()?;
        let mut ids = Vec::new();
        let mut matching = self.store.stream(filter);
        while let Some(p) = matching.next().await {
            ids.push(p?.id);
        }
        if ids.is_empty() {
            return Err(Error::InvalidInput(
                "no payout matches the selection: a run needs at least one".into(),
            ));
        }
        self.store.create_run(run, &ids).await
    }

    /// A run with its totals by status, provider and currency (admins only).
    pub async fn run_summary(&self, actor: &Actor, id: &RunId) -> Result<RunSummary> {
        self.require_privileged(actor, "read runs")?;
        self.store.run(id).await
    }

    /// The runs, newest first, each with its totals (admins only).
    pub async fn runs(&self, actor: &Actor, page: &Page) -> Result<RunPage> {
        self.require_privileged(actor, "read runs")?;
        self.store.runs(&super::clamp(page)).await
    }

    /// A run's per-payout results, oldest first (admins only).
    pub async fn run_results(&self, actor: &Actor, id: &RunId, page: &Page) -> Result<RunResultPage> {
        self.require_privileged(actor, "read runs")?;
        self.store.run_results(id, &super::clamp(page)).await
    }

    /// A run's payouts on the attention queue (admins only): its members flagged for a person
    /// (by reconciliation, or because their money came back), oldest flag first, each with its
    /// reason and since when, and how many there are. An unknown run is [`Error::RunNotFound`].
    pub async fn run_attention(&self, actor: &Actor, id: &RunId, page: &Page) -> Result<AttentionPage> {
        self.require_privileged(actor, "read runs")?;
        self.store.run_attention(id, &super::clamp(page)).await
    }

    /// A run's events, oldest first (admins only).
    pub async fn run_events(&self, actor: &Actor, id: &RunId) -> Result<Vec<RunEvent>> {
        self.require_privileged(actor, "read runs")?;
        self.store.run_events(id).await
    }

    /// A page of a run's payouts matching `filter` (its `run` is set to this run), newest first
    /// (admins only): e.g. its held ones (`held: Some(true)`), its failed ones
    /// (`status: Some(FAILED)`). An unknown run is [`Error::RunNotFound`].
    pub async fn run_payouts(
        &self,
        actor: &Actor,
        id: &RunId,
        filter: PayoutFilter,
        page: &Page,
    ) -> Result<PayoutPage> {
        self.require_privileged(actor, "read runs")?;
        self.store.run(id).await?;
        let filter = PayoutFilter {
            run: Some(id.clone()),
            ..filter
        };
        self.store.list(&filter, &super::clamp(page)).await
    }

    /// What [`trigger_run`](Self::trigger_run) would send now, with `provider` (or each doctor's
    /// method): every `APPROVED` member not on hold, by provider, and the exact sums it needs per
    /// provider and currency; the members on hold and those with no method are counted apart
    /// ([`choose_provider`] decides the method; one directory call per page of members).
    pub async fn run_plan(&self, actor: &Actor, id: &RunId, provider: Option<Provider>) -> Result<RunPlan> {
        self.require_privileged(actor, "plan runs")?;
        self.store.run(id).await?;
        let mut plan = RunPlan {
            run_id: id.clone(),
            provider,
            approved: 0,
            needs: Vec::new(),
            held: 0,
            unplanned: Vec::new(),
        };
        let mut needs: BTreeMap<(Provider, String), FundsNeed> = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.members(id, PayoutStatus::Approved, after).await?;
            let routes = self.routes(&page.payouts, provider).await?;
            for (p, route) in page.payouts.iter().zip(routes) {
                plan.approved += 1;
                match route {
                    Route::Send(provider) => {
                        let key = (provider, p.currency().code().to_string());
                        let need = needs.entry(key).or_insert(FundsNeed {
                            provider,
                            currency: p.currency(),
                            count: 0,
                            amount: Money::zero(p.currency()),
                        });
                        need.count += 1;
                        need.amount = need.amount.checked_add(&p.amount_due)?;
                    }
                    Route::Held(_) => plan.held += 1,
                    Route::NoMethod(reason) => plan.unplanned.push(Unplanned {
                        payout_id: p.id.clone(),
                        doctor_id: p.doctor_id.clone(),
                        amount: p.amount_due,
                        reason,
                    }),
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        plan.needs = needs.into_values().collect();
        Ok(plan)
    }

    /// Approves the run's `PENDING` members (admins only), each as [`approve`](Self::approve) does
    /// (four eyes and the rest of the approval policy apply per payout), a page at a time, several
    /// at once. Each outcome is recorded on the run and the action is a run event (`APPROVE`).
    pub async fn approve_run(&self, actor: &Actor, id: &RunId) -> Result<RunReport> {
        self.require_privileged(actor, "approve runs")?;
        self.store.run(id).await?;
        let report = self
            .each_member(actor, id, PayoutStatus::Pending, RunAction::Approve, |p| async move {
                self.approve(actor, &p.id).await
            })
            .await?;
        self.record_action(actor, id, RunEvent::APPROVE, report.summary())
            .await?;
        Ok(report)
    }

    /// Sends the run's `APPROVED` members (admins only), each with `provider` if given, else with
    /// its doctor's method ([`choose_provider`]), through [`bulk_trigger`](Self::bulk_trigger) per
    /// provider and page of members, so a batching provider still gets batches. A member on hold,
    /// or with no method (none chosen, or no adapter for it), is not touched and gets a failed
    /// result saying why. Every outcome is recorded on the run, page by page, and the action is a
    /// run event (`TRIGGER`). Once the service is shutting down, no further page is started.
    ///
    /// First the run's funds check ([`run_funds`](Self::run_funds)): a shortfall without a funds
    /// override confirmed by a second admin is [`Error::FundsShortfall`], and nothing is sent or
    /// written. Pending and unknown balances do not block.
    pub async fn trigger_run(&self, actor: &Actor, id: &RunId, provider: Option<Provider>) -> Result<RunReport> {
        self.require_privileged(actor, "trigger runs")?;
        self.store.run(id).await?;
        self.funds_gate(actor, id, provider).await?;
        let mut report = RunReport::new(id, RunAction::Trigger);
        let mut after = None;
        loop {
            if self.is_shutting_down() {
                report.stopped_by_shutdown = true;
                break;
            }
            let page = self.members(id, PayoutStatus::Approved, after).await?;
            let routes = self.routes(&page.payouts, provider).await?;
            let mut results = Vec::with_capacity(page.payouts.len());
            let mut by_provider: BTreeMap<Provider, Vec<PayoutId>> = BTreeMap::new();
            for (p, route) in page.payouts.iter().zip(routes) {
                let (refusal, outcome) = match route {
                    Route::Send(provider) => {
                        by_provider.entry(provider).or_default().push(p.id.clone());
                        continue;
                    }
                    Route::Held(e) => (e, Outcome::Held),
                    Route::NoMethod(why) => (Error::InvalidInput(format!("not sent: {why}")), Outcome::NoMethod),
                };
                let result = self.run_result(actor, &p.id, RunAction::Trigger, None, &Err(refusal));
                report.count(&result, outcome);
                results.push(result);
            }
            for (provider, ids) in by_provider {
                for o in self.bulk_trigger(actor, &ids, provider).await {
                    let result = self.run_result(actor, &o.id, RunAction::Trigger, Some(provider), &o.result);
                    report.count(&result, outcome_of(&o.result));
                    results.push(result);
                }
            }
            self.store.record_run_results(id, &results).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let with = provider.map_or_else(|| "each doctor's method".to_string(), |p| p.to_string());
        self.record_action(
            actor,
            id,
            RunEvent::TRIGGER,
            format!("with {with}: {}", report.summary()),
        )
        .await?;
        Ok(report)
    }

    /// Retries the run's `FAILED` members (admins only), each as [`retry`](Self::retry) does: only
    /// after a confirmed failure of its last attempt, with that attempt's provider, never while on
    /// hold. Each outcome is recorded on the run and the action is a run event (`RETRY_FAILED`).
    pub async fn retry_failed_run(&self, actor: &Actor, id: &RunId) -> Result<RunReport> {
        self.require_privileged(actor, "retry runs")?;
        self.store.run(id).await?;
        let report = self
            .each_member(
                actor,
                id,
                PayoutStatus::Failed,
                RunAction::RetryFailed,
                |p| async move { self.retry(actor, &p.id, None).await },
            )
            .await?;
        self.record_action(actor, id, RunEvent::RETRY_FAILED, report.summary())
            .await?;
        Ok(report)
    }

    /// A page of the run's members in `status`, after `after`.
    async fn members(&self, run: &RunId, status: PayoutStatus, after: Option<Cursor>) -> Result<PayoutPage> {
        let filter = PayoutFilter {
            run: Some(run.clone()),
            status: Some(status),
            ..Default::default()
        };
        let page = Page {
            limit: RUN_PAGE,
            skip: 0,
            after,
        };
        self.store.list(&filter, &page).await
    }

    /// Runs `act` on each member in `status`, a page at a time, up to the trigger concurrency at
    /// once, recording each page's outcomes on the run.
    async fn each_member<'a, F, Fut>(
        &'a self,
        actor: &'a Actor,
        id: &RunId,
        status: PayoutStatus,
        action: RunAction,
        act: F,
    ) -> Result<RunReport>
    where
        F: Fn(Payout) -> Fut,
        Fut: std::future::Future<Output = Result<Payout>>,
    {
        let mut report = RunReport::new(id, action);
        let concurrency = self.performance.trigger_concurrency.max(1);
        let mut after = None;
        loop {
            if action != RunAction::Approve && self.is_shutting_down() {
                report.stopped_by_shutdown = true;
                break;
            }
            let page = self.members(id, status, after).await?;
            let next = page.next.clone();
            let done: Vec<(PayoutId, Option<Provider>, Result<Payout>)> = futures::stream::iter(page.payouts)
                .map(|p| {
                    let id = p.id.clone();
                    let provider = p.provider;
                    let run = act(p);
                    async move { (id, provider, run.await) }
                })
                .buffered(concurrency)
                .collect()
                .await;
            let mut results = Vec::with_capacity(done.len());
            for (payout, provider, outcome) in done {
                let provider = outcome.as_ref().ok().and_then(|p| p.provider).or(provider);
                let result = self.run_result(actor, &payout, action, provider, &outcome);
                report.count(&result, outcome_of(&outcome));
                results.push(result);
            }
            self.store.record_run_results(id, &results).await?;
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(report)
    }

    /// Where each of `payouts` (approved members) would be sent with `given`: one directory call
    /// and one read of the doctors' holds for them all.
    async fn routes(&self, payouts: &[Payout], given: Option<Provider>) -> Result<Vec<Route>> {
        let mut doctors: Vec<DoctorId> = payouts.iter().map(|p| p.doctor_id.clone()).collect();
        doctors.sort_unstable();
        doctors.dedup();
        if doctors.is_empty() {
            return Ok(Vec::new());
        }
        let recipients: HashMap<DoctorId, Recipient> = self
            .directory
            .recipients(&doctors)
            .await?
            .into_iter()
            .map(|r| (r.doctor_id.clone(), r))
            .collect();
        let holds: HashMap<DoctorId, DoctorHold> = self
            .store
            .doctor_holds(&doctors)
            .await?
            .into_iter()
            .map(|h| (h.doctor_id.clone(), h))
            .collect();
        Ok(payouts
            .iter()
            .map(|p| {
                if let Err(e) = check_not_held(p, holds.get(&p.doctor_id)) {
                    return Route::Held(e);
                }
                match choose_provider(given, recipients.get(&p.doctor_id)) {
                    Ok(provider) if self.providers.contains_key(&provider) => Route::Send(provider),
                    Ok(provider) => Route::NoMethod(NoMethod::NotConfigured(provider)),
                    Err(why) => Route::NoMethod(why),
                }
            })
            .collect())
    }

    /// The result of `action` on `payout`, as `outcome` says: done as asked unless it failed, or
    /// the payout ended `FAILED` (the provider refused it).
    fn run_result(
        &self,
        actor: &Actor,
        payout: &PayoutId,
        action: RunAction,
        provider: Option<Provider>,
        outcome: &Result<Payout>,
    ) -> RunResult {
        let (ok, status_after, message) = match outcome {
            Ok(p) if p.status == PayoutStatus::Failed => (false, Some(p.status), p.notes.clone()),
            Ok(p) => (true, Some(p.status), None),
            Err(e) => (false, None, Some(e.to_string())),
        };
        RunResult {
            payout_id: payout.clone(),
            action,
            provider,
            ok,
            status_after,
            message,
            at: self.clock.now(),
            by: actor.label(),
        }
    }

    async fn record_action(&self, actor: &Actor, id: &RunId, action: &str, details: String) -> Result<()> {
        self.store
            .record_run_event(RunEvent {
                run_id: id.clone(),
                at: self.clock.now(),
                actor: actor.label(),
                action: action.to_string(),
                details: Some(details),
            })
            .await
    }
}

fn outcome_of(outcome: &Result<Payout>) -> Outcome {
    match outcome {
        Err(Error::OnHold { .. }) => Outcome::Held,
        Err(Error::MissingRecipient { .. } | Error::ProviderNotConfigured(_)) => Outcome::NoMethod,
        _ => Outcome::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BankAccount;

    fn recipient(stripe: bool, mpesa: bool, preferred: Option<Provider>) -> Recipient {
        Recipient {
            doctor_id: "dr-1".into(),
            stripe_account_id: stripe.then(|| "acct_1".to_string()),
            mpesa_phone_number: mpesa.then(|| "254712345678".to_string()),
            bank_details: Some(BankAccount::default()), // no account number: no bank method
            preferred_provider: preferred,
            ..Default::default()
        }
    }

    #[test]
    fn the_method_is_the_given_one_then_the_preferred_one_then_the_only_one() {
        let both = recipient(true, true, None);
        assert_eq!(
            choose_provider(Some(Provider::MpesaB2c), Some(&both)),
            Ok(Provider::MpesaB2c)
        );
        assert_eq!(
            choose_provider(None, Some(&both)),
            Err(NoMethod::NoPreference(vec![
                Provider::StripeConnect,
                Provider::MpesaB2c
            ]))
        );
        let prefers = recipient(true, true, Some(Provider::StripeConnect));
        assert_eq!(choose_provider(None, Some(&prefers)), Ok(Provider::StripeConnect));
        assert_eq!(
            choose_provider(Some(Provider::MpesaB2c), Some(&prefers)),
            Ok(Provider::MpesaB2c),
            "a provider named for the run wins over the doctor's preference"
        );
        assert_eq!(
            choose_provider(None, Some(&recipient(false, true, None))),
            Ok(Provider::MpesaB2c),
            "the only method"
        );
        assert_eq!(
            choose_provider(None, Some(&recipient(false, true, Some(Provider::StripeConnect)))),
            Err(NoMethod::NoDetailsFor(Provider::StripeConnect)),
            "a preferred method without details is not replaced by another"
        );
        assert_eq!(
            choose_provider(Some(Provider::PaypalPayouts), Some(&both)),
            Err(NoMethod::NoDetailsFor(Provider::PaypalPayouts))
        );
        assert_eq!(
            choose_provider(None, Some(&recipient(false, false, None))),
            Err(NoMethod::NoDetails)
        );
        assert_eq!(choose_provider(None, None), Err(NoMethod::UnknownDoctor));
        assert!(
            NoMethod::NoPreference(vec![Provider::StripeConnect, Provider::MpesaB2c])
                .to_string()
                .contains("STRIPE_CONNECT, MPESA_B2C")
        );
    }
}
