//! Reconciliation's follow-up of a payout, kept beside it: when it is looked at next
//! (`next_check_at`), under whose lease, and whether a person should look at it (the attention
//! queue). None of it is part of the payout's version: scheduling a check never makes a concurrent
//! webhook's change conflict.
//!
//! A change writes a [`FollowUp`] in the same step as the status change that calls for it
//! ([`PayoutChange::follow_up_written`] says which); reconciliation claims due checks under a
//! lease ([`PayoutStore::claim_checks`](super::PayoutStore::claim_checks)) and reschedules what
//! it looked at ([`PayoutStore::finish_checks`](super::PayoutStore::finish_checks)).

use chrono::{DateTime, Utc};

use super::PayoutChange;
use crate::domain::{Payout, PayoutAttempt, PayoutId};
use crate::status::PayoutStatus;

/// A payout's follow-up as a change writes it: the whole of it, replacing what was there.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FollowUp {
    /// When reconciliation looks at the payout next; `None`: never (until a change schedules it).
    pub next_check_at: Option<DateTime<Utc>>,
    /// Why a person should look at the payout; `None` clears the flag.
    pub attention: Option<String>,
}

impl FollowUp {
    /// Not scheduled, not flagged.
    pub fn none() -> Self {
        FollowUp::default()
    }

    /// Due at `at`, not flagged.
    pub fn check_at(at: DateTime<Utc>) -> Self {
        FollowUp {
            next_check_at: Some(at),
            attention: None,
        }
    }

    /// The same, flagged for a person with `reason`.
    pub fn flagged(mut self, reason: impl Into<String>) -> Self {
        self.attention = Some(reason.into());
        self
    }
}

impl PayoutChange {
    /// The follow-up a store writes with this change, if any: the change's own
    /// [`follow_up`](PayoutChange::follow_up) when it carries one, otherwise the one its status change
    /// calls for:
    ///
    /// - entering `PROCESSING`: due at once (`next_check_at = at`), any flag cleared, so every
    ///   payout sent to a provider is reconciled;
    /// - `PAID`, `FAILED`: not scheduled, flag cleared;
    /// - `RETURNED`, `REVERSED`: not scheduled, flagged: the money came back and a person decides
    ///   what happens to it;
    /// - any other status, or none: nothing written (the payout's follow-up stays as it is).
    ///
    /// Writing a follow-up resets its count of checks and ends any lease on it.
    pub fn follow_up_written(&self) -> Option<FollowUp> {
        if let Some(f) = &self.follow_up {
            return Some(f.clone());
        }
        match self.new_status? {
            PayoutStatus::Processing => Some(FollowUp::check_at(self.at)),
            PayoutStatus::Paid | PayoutStatus::Failed => Some(FollowUp::none()),
            s @ (PayoutStatus::Returned | PayoutStatus::Reversed) => {
                Some(FollowUp::none().flagged(format!("{s}: the money came back after it was paid")))
            }
            _ => None,
        }
    }
}

/// Which checks to claim ([`PayoutStore::claim_checks`](super::PayoutStore::claim_checks)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckClaim {
    /// Claim checks due at or before this time (`next_check_at <= due_by`).
    pub due_by: DateTime<Utc>,
    /// At most this many.
    pub limit: u32,
    /// The lease: a claimed check is due again at this time, so another instance takes it over if
    /// this one never finishes it.
    pub lease_until: DateTime<Utc>,
}

/// One check claimed under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedCheck {
    /// The payout as stored.
    pub payout: Payout,
    /// Its latest attempt (the highest `attempt_no`) as stored, read in the same step as the
    /// payout; `None` when it has none.
    pub latest_attempt: Option<PayoutAttempt>,
    /// The lease's token: [`finish_checks`](super::PayoutStore::finish_checks) writes only while
    /// nothing else has written the follow-up since (no other claim, no change).
    pub lease: i64,
    /// How many checks were finished since a change last wrote the follow-up (for back-off).
    pub checks: u32,
    /// The attention flag, if set.
    pub attention: Option<String>,
}

/// What a finished check writes ([`PayoutStore::finish_checks`](super::PayoutStore::finish_checks)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDone {
    /// The payout.
    pub payout_id: PayoutId,
    /// The lease the check was claimed under.
    pub lease: i64,
    /// The follow-up now.
    pub follow_up: FollowUp,
    /// When (becomes `attention_since` of a newly set flag).
    pub at: DateTime<Utc>,
}

/// A payout flagged for a person.
#[derive(Debug, Clone, PartialEq)]
pub struct Flagged {
    /// The payout as stored.
    pub payout: Payout,
    /// Why.
    pub reason: String,
    /// Flagged since.
    pub since: DateTime<Utc>,
}

/// A page of the attention queue, oldest flag first, with the total flagged.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionPage {
    /// The rows.
    pub flagged: Vec<Flagged>,
    /// How many payouts are flagged in all.
    pub total: u64,
}

/// A payout's follow-up as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckState {
    /// When it is looked at next.
    pub next_check_at: Option<DateTime<Utc>>,
    /// Checks finished since a change last wrote the follow-up.
    pub checks: u32,
    /// The attention flag.
    pub attention: Option<String>,
}
