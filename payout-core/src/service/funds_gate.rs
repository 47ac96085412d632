//! The funds gate of a run (issue 17, item 2): before a run is triggered, what its plan needs per
//! provider and currency is compared with each provider's balance. A shortfall blocks the trigger
//! unless the run carries a funds override asked for by one admin and confirmed by a second one
//! (each step a run event, written with the override). Pending and unknown balances are shown and
//! never block.

use serde::Serialize;

use super::PayoutService;
use crate::domain::{Actor, FundsOverride, Provider, Run, RunId, check_override_reason};
use crate::error::{Error, Result};
use crate::funds::{FundsReport, FundsState};

/// A run's funds check: what a trigger would send now, compared with the providers' balances,
/// and whether the trigger is blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunFunds {
    /// The run.
    pub run_id: RunId,
    /// The provider asked for, if one was (else each doctor's method).
    pub provider: Option<Provider>,
    /// How many members are `APPROVED`.
    pub approved: u64,
    /// How many of them a trigger would send.
    pub planned: u64,
    /// How many of them are on hold (not sent).
    pub held: u64,
    /// How many of them have no method to send with (not sent).
    pub unplanned: u64,
    /// The comparison, one line per provider and currency.
    pub report: FundsReport,
    /// The run's funds override, if one was asked for.
    pub funds_override: Option<FundsOverride>,
    /// True when the trigger is refused: a shortfall and no confirmed override
    /// ([`funds_blocked`]).
    pub blocked: bool,
}

/// Whether a funds check blocks a trigger: it shows a shortfall ([`FundsReport::blocks`]) and the
/// run has no override confirmed by a second admin.
pub fn funds_blocked(report: &FundsReport, funds_override: Option<&FundsOverride>) -> bool {
    report.blocks() && !funds_override.is_some_and(FundsOverride::is_confirmed)
}

/// The shortfalls of `report`, for a person: `STRIPE_CONNECT USD: needs 100.00, holds 40.00, short
/// by 60.00`, separated by `; `.
pub fn shortfall_text(report: &FundsReport) -> String {
    report
        .shortfalls()
        .map(|l| {
            let short = match &l.state {
                FundsState::Shortfall { short_by } => short_by.amount_str(),
                _ => String::new(),
            };
            let holds = l.available.map_or_else(|| "unknown".to_string(), |a| a.amount_str());
            format!(
                "{} {}: needs {}, holds {}, short by {}",
                l.provider,
                l.currency,
                l.needed.amount_str(),
                holds,
                short
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl PayoutService {
    /// The run's funds check with `provider` (or each doctor's method), admins only: its plan
    /// ([`run_plan`](Self::run_plan)) compared with the balances
    /// ([`check_funds`](Self::check_funds)), with the run's override and whether a trigger is
    /// blocked.
    pub async fn run_funds(&self, actor: &Actor, id: &RunId, provider: Option<Provider>) -> Result<RunFunds> {
        self.require_privileged(actor, "check a run's funds")?;
        let plan = self.run_plan(actor, id, provider).await?;
        let report = self.check_funds(&plan.funds_needs()).await?;
        let funds_override = self.store.run(id).await?.run.funds_override;
        Ok(RunFunds {
            run_id: id.clone(),
            provider,
            approved: plan.approved,
            planned: plan.planned(),
            held: plan.held,
            unplanned: plan.unplanned.len() as u64,
            blocked: funds_blocked(&report, funds_override.as_ref()),
            report,
            funds_override,
        })
    }

    /// Refuses a trigger whose funds check blocks ([`Error::FundsShortfall`]), writing nothing.
    pub(super) async fn funds_gate(&self, actor: &Actor, id: &RunId, provider: Option<Provider>) -> Result<()> {
        let funds = self.run_funds(actor, id, provider).await?;
        if funds.blocked {
            let shortfalls = shortfall_text(&funds.report);
            tracing::warn!(run = %id, %shortfalls, "run trigger refused: funds shortfall");
            return Err(Error::FundsShortfall {
                run_id: id.clone(),
                shortfalls,
            });
        }
        Ok(())
    }

    /// Asks to trigger the run despite a funds shortfall (admins only), with a reason (not empty,
    /// at most [`MAX_OVERRIDE_REASON`](crate::domain::MAX_OVERRIDE_REASON) characters). It takes
    /// effect once a second admin confirms it ([`confirm_funds_override`](Self::confirm_funds_override)).
    /// Recorded on the run with a `FUNDS_OVERRIDE_REQUESTED` run event in the same step.
    ///
    /// Refused, changing nothing: a run that has an override already, requested or confirmed
    /// (`InvalidInput`); another admin's request written first ([`Error::RunConflict`]).
    pub async fn request_funds_override(&self, actor: &Actor, id: &RunId, reason: &str) -> Result<Run> {
        self.require_admin(actor, "request a funds override")?;
        check_override_reason(reason)?;
        let run = self.store.run(id).await?.run;
        if let Some(o) = &run.funds_override {
            let state = if o.is_confirmed() { "confirmed" } else { "requested" };
            return Err(Error::InvalidInput(format!(
                "run {id} has a funds override already ({state}, asked by {}: {})",
                o.requested_by, o.reason
            )));
        }
        let new = FundsOverride {
            requested_by: actor.label(),
            requested_at: self.clock.now(),
            reason: reason.trim().to_string(),
            confirmed_by: None,
            confirmed_at: None,
        };
        self.store.set_funds_override(id, None, new).await
    }

    /// Confirms the run's requested funds override (admins only), always by a second admin: the
    /// admin who requested it is refused ([`Error::Forbidden`]), whatever the four-eyes policy.
    /// From then on a shortfall no longer blocks the run's trigger. Recorded on the run with a
    /// `FUNDS_OVERRIDE_CONFIRMED` run event in the same step.
    ///
    /// Refused, changing nothing: no override requested, or one confirmed already
    /// (`InvalidInput`); another change of the override written first ([`Error::RunConflict`]).
    pub async fn confirm_funds_override(&self, actor: &Actor, id: &RunId) -> Result<Run> {
        self.require_admin(actor, "confirm a funds override")?;
        let run = self.store.run(id).await?.run;
        let Some(requested) = run.funds_override else {
            return Err(Error::InvalidInput(format!(
                "run {id} has no funds override to confirm: an admin requests one first"
            )));
        };
        if requested.is_confirmed() {
            return Err(Error::InvalidInput(format!(
                "run {id}'s funds override is confirmed already (by {})",
                requested.confirmed_by.as_deref().unwrap_or_default()
            )));
        }
        if requested.requested_by == actor.label() {
            return Err(Error::Forbidden(
                "a funds override is confirmed by a second admin, not the one who requested it".into(),
            ));
        }
        let confirmed = FundsOverride {
            confirmed_by: Some(actor.label()),
            confirmed_at: Some(self.clock.now()),
            ..requested.clone()
        };
        self.store.set_funds_override(id, Some(requested), confirmed).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::funds::FundsLine;
    use crate::money::{Currency, Money};

    fn line(state: FundsState) -> FundsLine {
        FundsLine {
            provider: Provider::StripeConnect,
            currency: Currency::USD,
            needed: Money::from_minor_units(10_000, Currency::USD),
            available: Some(Money::from_minor_units(4_000, Currency::USD)),
            as_of: None,
            state,
        }
    }

    fn requested() -> FundsOverride {
        FundsOverride {
            requested_by: "admin:a".into(),
            requested_at: Utc.timestamp_opt(0, 0).unwrap(),
            reason: "top-up arrives today".into(),
            confirmed_by: None,
            confirmed_at: None,
        }
    }

    #[test]
    fn a_shortfall_blocks_unless_a_confirmed_override_says_otherwise() {
        let short = FundsReport {
            lines: vec![line(FundsState::Shortfall {
                short_by: Money::from_minor_units(6_000, Currency::USD),
            })],
        };
        assert!(funds_blocked(&short, None));
        assert!(
            funds_blocked(&short, Some(&requested())),
            "a request alone is not enough"
        );
        let confirmed = FundsOverride {
            confirmed_by: Some("admin:b".into()),
            confirmed_at: Some(Utc.timestamp_opt(1, 0).unwrap()),
            ..requested()
        };
        assert!(!funds_blocked(&short, Some(&confirmed)));
        let unknown = FundsReport {
            lines: vec![line(FundsState::Unknown {
                why: "no source".into(),
            })],
        };
        assert!(!funds_blocked(&unknown, None));
        assert!(!funds_blocked(&FundsReport::default(), None));
        assert_eq!(
            shortfall_text(&short),
            "STRIPE_CONNECT USD: needs 100.00, holds 40.00, short by 60.00"
        );
    }
}
