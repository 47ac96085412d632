//! Payout runs: a month's payouts (or an admin's selection of payouts) handled as one piece of
//! work, with totals kept as the payouts move, the outcome of every action per payout, and a
//! run-level audit trail.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PayoutId, Period, Provider, RunId};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;

/// The longest label a run may have, in characters.
pub const MAX_RUN_LABEL: usize = 200;

/// How a run came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunKind {
    /// A period calculation: its members are the payouts it created.
    Calculation,
    /// An admin's selection of payouts (a filter).
    Selection,
}

impl RunKind {
    /// `CALCULATION` or `SELECTION`, as stored and serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunKind::Calculation => "CALCULATION",
            RunKind::Selection => "SELECTION",
        }
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "CALCULATION" => Ok(RunKind::Calculation),
            "SELECTION" => Ok(RunKind::Selection),
            other => Err(Error::InvalidInput(format!(
                "unknown run kind {other:?} (expected CALCULATION or SELECTION)"
            ))),
        }
    }
}

/// An admin's override of a failed funds check, and the second admin's confirmation of it.
/// Stored on the run ([`PayoutStore::set_funds_override`](crate::store::PayoutStore::set_funds_override));
/// each step is a run event too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsOverride {
    /// Who asked to trigger despite the shortfall.
    pub requested_by: String,
    /// When.
    pub requested_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// The second admin who confirmed it, once confirmed.
    #[serde(default)]
    pub confirmed_by: Option<String>,
    /// When it was confirmed.
    #[serde(default)]
    pub confirmed_at: Option<DateTime<Utc>>,
}

impl FundsOverride {
    /// True once a second admin has confirmed it: only then does it let a run with a funds
    /// shortfall be triggered.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed_by.is_some() && self.confirmed_at.is_some()
    }
}

/// The longest reason a funds override may give, in characters.
pub const MAX_OVERRIDE_REASON: usize = 500;

/// Refuses, with [`Error::InvalidInput`], an empty reason for a funds override, or one longer than
/// [`MAX_OVERRIDE_REASON`] characters.
pub fn check_override_reason(reason: &str) -> Result<()> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::InvalidInput("a funds override needs a reason".into()));
    }
    if reason.chars().count() > MAX_OVERRIDE_REASON {
        return Err(Error::InvalidInput(format!(
            "a funds override's reason may be at most {MAX_OVERRIDE_REASON} characters"
        )));
    }
    Ok(())
}

/// A run: payouts handled together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Id.
    pub id: RunId,
    /// A calculation's, or an admin's selection.
    pub kind: RunKind,
    /// What it is, for people (`Calculation 2025-01-01..2025-01-31`).
    pub label: String,
    /// The period calculated (calculation runs).
    pub period: Option<Period>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// A funds-check override, if one was asked for.
    #[serde(default)]
    pub funds_override: Option<FundsOverride>,
}

/// A run to create: a [`Run`] as every run starts, with no funds override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Id.
    pub id: RunId,
    /// A calculation's, or an admin's selection.
    pub kind: RunKind,
    /// What it is, for people: not empty, at most [`MAX_RUN_LABEL`] characters.
    pub label: String,
    /// The period calculated (calculation runs).
    pub period: Option<Period>,
    /// Who makes it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl NewRun {
    /// Refuses, with [`Error::InvalidInput`], a run with an empty id or an empty or overlong
    /// label. Every store calls it before it writes.
    pub fn validate(&self) -> Result<()> {
        if self.id.as_str().trim().is_empty() {
            return Err(Error::InvalidInput("a run needs an id".into()));
        }
        let label = self.label.trim();
        if label.is_empty() {
            return Err(Error::InvalidInput("a run needs a label".into()));
        }
        if label.chars().count() > MAX_RUN_LABEL {
            return Err(Error::InvalidInput(format!(
                "a run's label may be at most {MAX_RUN_LABEL} characters"
            )));
        }
        Ok(())
    }

    /// The run as stored when it is created.
    pub fn into_run(self) -> Run {
        Run {
            id: self.id,
            kind: self.kind,
            label: self.label,
            period: self.period,
            created_by: self.created_by,
            created_at: self.created_at,
            funds_override: None,
        }
    }
}

/// How many of a run's payouts are in one status, with one provider and one currency, and their
/// sum: one bucket of the run's totals, kept by the store as the payouts move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTally {
    /// The status.
    pub status: PayoutStatus,
    /// The provider chosen (none before a payout is triggered).
    pub provider: Option<Provider>,
    /// The currency.
    pub currency: Currency,
    /// How many payouts.
    pub count: u64,
    /// Their `amount_due`, summed.
    pub amount: Money,
}

/// A run with its totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run.
    pub run: Run,
    /// Its non-empty buckets, ordered by status (lifecycle order), provider, then currency.
    pub totals: Vec<RunTally>,
}

/// A count of payouts and their sum, one amount per currency (amounts are never converted),
/// ordered by currency code.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subtotal {
    /// How many payouts.
    pub count: u64,
    /// Their sum per currency.
    pub amounts: Vec<Money>,
}

impl Subtotal {
    fn add(&mut self, tally: &RunTally) -> Result<()> {
        self.count += tally.count;
        match self.amounts.iter_mut().find(|m| m.currency() == tally.currency) {
            Some(sum) => *sum = sum.checked_add(&tally.amount)?,
            None => {
                self.amounts.push(tally.amount);
                self.amounts
                    .sort_by(|a, b| a.currency().code().cmp(b.currency().code()));
            }
        }
        Ok(())
    }
}

/// How many of a run's payouts are in one currency, and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyTotal {
    /// The currency.
    pub currency: Currency,
    /// How many payouts.
    pub count: u64,
    /// Their sum.
    pub amount: Money,
}

impl RunSummary {
    /// How many payouts the run has.
    pub fn count(&self) -> u64 {
        self.totals.iter().map(|t| t.count).sum()
    }

    /// How many of them are in `status`.
    pub fn count_of(&self, status: PayoutStatus) -> u64 {
        self.totals.iter().filter(|t| t.status == status).map(|t| t.count).sum()
    }

    /// The totals by status, in lifecycle order (statuses with no payout left out).
    pub fn by_status(&self) -> Result<Vec<(PayoutStatus, Subtotal)>> {
        self.grouped(|t| t.status)
    }

    /// The totals by provider (`None`: not triggered yet), providers in their order.
    pub fn by_provider(&self) -> Result<Vec<(Option<Provider>, Subtotal)>> {
        self.grouped(|t| t.provider)
    }

    /// The totals by currency, ordered by code.
    pub fn by_currency(&self) -> Result<Vec<CurrencyTotal>> {
        let mut out: Vec<CurrencyTotal> = Vec::new();
        for t in &self.totals {
            match out.iter_mut().find(|c| c.currency == t.currency) {
                Some(c) => {
                    c.count += t.count;
                    c.amount = c.amount.checked_add(&t.amount)?;
                }
                None => out.push(CurrencyTotal {
                    currency: t.currency,
                    count: t.count,
                    amount: t.amount,
                }),
            }
        }
        out.sort_by(|a, b| a.currency.code().cmp(b.currency.code()));
        Ok(out)
    }

    fn grouped<K: Ord>(&self, key: impl Fn(&RunTally) -> K) -> Result<Vec<(K, Subtotal)>> {
        let mut groups: BTreeMap<K, Subtotal> = BTreeMap::new();
        for t in &self.totals {
            groups.entry(key(t)).or_default().add(t)?;
        }
        Ok(groups.into_iter().collect())
    }
}

/// Sorts `totals` as [`RunSummary::totals`] are ordered and drops empty buckets: what every
/// store returns.
pub fn order_totals(mut totals: Vec<RunTally>) -> Vec<RunTally> {
    totals.retain(|t| t.count != 0);
    totals.sort_by(|a, b| (a.status, a.provider, a.currency.code()).cmp(&(b.status, b.provider, b.currency.code())));
    totals
}

/// What an action on a run did to its payouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunAction {
    /// The run's `PENDING` payouts were approved.
    Approve,
    /// Its `APPROVED` payouts were sent.
    Trigger,
    /// Its `FAILED` payouts were retried.
    RetryFailed,
}

impl RunAction {
    /// `APPROVE`, `TRIGGER` or `RETRY_FAILED`, as stored and serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunAction::Approve => "APPROVE",
            RunAction::Trigger => "TRIGGER",
            RunAction::RetryFailed => "RETRY_FAILED",
        }
    }
}

impl fmt::Display for RunAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunAction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "APPROVE" => Ok(RunAction::Approve),
            "TRIGGER" => Ok(RunAction::Trigger),
            "RETRY_FAILED" => Ok(RunAction::RetryFailed),
            other => Err(Error::InvalidInput(format!(
                "unknown run action {other:?} (expected APPROVE, TRIGGER or RETRY_FAILED)"
            ))),
        }
    }
}

/// What one action on a run did to one of its payouts. Stored on the run, append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// The payout.
    pub payout_id: PayoutId,
    /// The action.
    pub action: RunAction,
    /// The provider it was sent (or meant to be sent) with.
    pub provider: Option<Provider>,
    /// True when the action did what it was asked: approved, or sent (a send whose outcome is
    /// not known yet is sent); false when it was refused, held, or the provider refused it.
    pub ok: bool,
    /// The payout's status afterwards, when known.
    pub status_after: Option<PayoutStatus>,
    /// Why it was refused, or what the provider said.
    pub message: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`admin:<id>`).
    pub by: String,
}

/// One line of a run's own audit trail: who did what to the run as a whole. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    /// The run.
    pub run_id: RunId,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`admin:<id>`, `system:<job>`).
    pub actor: String,
    /// What: [`RunEvent::CREATE`], [`RunEvent::APPROVE`], ...
    pub action: String,
    /// Details (counts, the provider asked for, a reason).
    pub details: Option<String>,
}

impl RunEvent {
    /// The run was created (recorded by the store with the run).
    pub const CREATE: &'static str = "CREATE";
    /// Its pending payouts were approved.
    pub const APPROVE: &'static str = "APPROVE";
    /// Its approved payouts were sent.
    pub const TRIGGER: &'static str = "TRIGGER";
    /// Its failed payouts were retried.
    pub const RETRY_FAILED: &'static str = "RETRY_FAILED";
    /// Its bank payouts were sent by bank file (`PayoutService::send_run_by_file`).
    pub const BANK_FILE: &'static str = "BANK_FILE";
    /// The bank's confirmation of one of its bank files was recorded.
    pub const BANK_FILE_SETTLED: &'static str = "BANK_FILE_SETTLED";
    /// An admin asked to trigger despite a funds shortfall (recorded by the store with the override).
    pub const FUNDS_OVERRIDE_REQUESTED: &'static str = "FUNDS_OVERRIDE_REQUESTED";
    /// A second admin confirmed the override (recorded by the store with the override).
    pub const FUNDS_OVERRIDE_CONFIRMED: &'static str = "FUNDS_OVERRIDE_CONFIRMED";

    /// The event a store records with `run` when it is created.
    pub fn created(run: &Run) -> Self {
        RunEvent {
            run_id: run.id.clone(),
            at: run.created_at,
            actor: run.created_by.clone(),
            action: Self::CREATE.to_string(),
            details: Some(format!("{} run {:?}", run.kind, run.label)),
        }
    }

    /// The event a store records with a funds override written on `run`: requested, or
    /// confirmed once it names its confirmer.
    pub fn funds_override(run: &RunId, o: &FundsOverride) -> Self {
        match (&o.confirmed_by, o.confirmed_at) {
            (Some(by), Some(at)) => RunEvent {
                run_id: run.clone(),
                at,
                actor: by.clone(),
                action: Self::FUNDS_OVERRIDE_CONFIRMED.to_string(),
                details: Some(format!("override asked by {}: {}", o.requested_by, o.reason)),
            },
            _ => RunEvent {
                run_id: run.clone(),
                at: o.requested_at,
                actor: o.requested_by.clone(),
                action: Self::FUNDS_OVERRIDE_REQUESTED.to_string(),
                details: Some(o.reason.clone()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(status: PayoutStatus, provider: Option<Provider>, minor: i64, currency: Currency, n: u64) -> RunTally {
        RunTally {
            status,
            provider,
            currency,
            count: n,
            amount: Money::from_minor_units(minor, currency),
        }
    }

    fn summary(totals: Vec<RunTally>) -> RunSummary {
        RunSummary {
            run: NewRun {
                id: "run_1".into(),
                kind: RunKind::Selection,
                label: "January".into(),
                period: None,
                created_by: "admin:a".into(),
                created_at: DateTime::<Utc>::from_timestamp(1_735_689_600, 0).unwrap(),
            }
            .into_run(),
            totals: order_totals(totals),
        }
    }

    #[test]
    fn totals_group_by_status_provider_and_currency_without_mixing_currencies() {
        let s = summary(vec![
            tally(PayoutStatus::Paid, Some(Provider::MpesaB2c), 100_000, Currency::KES, 2),
            tally(PayoutStatus::Pending, None, 50_000, Currency::KES, 1),
            tally(
                PayoutStatus::Paid,
                Some(Provider::StripeConnect),
                2_500,
                Currency::USD,
                1,
            ),
            tally(PayoutStatus::Failed, Some(Provider::MpesaB2c), 0, Currency::KES, 0),
        ]);
        assert_eq!(s.totals.len(), 3, "empty buckets are dropped");
        assert_eq!(s.totals[0].status, PayoutStatus::Pending, "lifecycle order");
        assert_eq!(s.count(), 4);
        assert_eq!(s.count_of(PayoutStatus::Paid), 3);
        let by_status = s.by_status().unwrap();
        assert_eq!(by_status[1].0, PayoutStatus::Paid);
        assert_eq!(
            by_status[1].1.amounts,
            vec![
                Money::from_minor_units(100_000, Currency::KES),
                Money::from_minor_units(2_500, Currency::USD)
            ]
        );
        let by_provider = s.by_provider().unwrap();
        assert_eq!(by_provider[0].0, None);
        assert_eq!(by_provider.len(), 3);
        let by_currency = s.by_currency().unwrap();
        assert_eq!(by_currency[0].currency, Currency::KES);
        assert_eq!(by_currency[0].count, 3);
        assert_eq!(by_currency[0].amount, Money::from_minor_units(150_000, Currency::KES));
    }

    #[test]
    fn labels_are_required_and_bounded() {
        let mut run = NewRun {
            id: "run_1".into(),
            kind: RunKind::Selection,
            label: " ".into(),
            period: None,
            created_by: "admin:a".into(),
            created_at: DateTime::<Utc>::from_timestamp(0, 0).unwrap(),
        };
        assert!(run.validate().is_err());
        run.label = "x".repeat(MAX_RUN_LABEL + 1);
        assert!(run.validate().is_err());
        run.label = "January".into();
        assert!(run.validate().is_ok());
    }

    #[test]
    fn names_round_trip() {
        for kind in [RunKind::Calculation, RunKind::Selection] {
            assert_eq!(kind.as_str().parse::<RunKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for action in [RunAction::Approve, RunAction::Trigger, RunAction::RetryFailed] {
            assert_eq!(action.as_str().parse::<RunAction>().unwrap(), action);
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
    }
}
