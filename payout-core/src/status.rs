//! The payout state machine, in one place.
//!
//! ```text
//! PENDING --approve--> APPROVED --trigger--> PROCESSING --paid--> PAID --returned--> RETURNED
//!    |                    |   ^                  |                  \--reversed--> REVERSED
//!    |                    |   |                  \--failed--> FAILED
//!    \--cancel--> CANCELLED <-/   \------retry (new attempt)------/
//! ```
//!
//! Every change of status goes through [`transition`]. Statuses only move forward: a late or duplicated
//! provider event is a [`Transition::NoOp`], never a move backwards; a paid payout changes only through an
//! explicit money-back event (returned or reversed): a late failure answer after PAID is a `NoOp` here.

use std::fmt;
use std::str::FromStr;

/// Where a payout is in its life. Round-trips through its uppercase name (`"PENDING"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PayoutStatus {
    /// Calculated or created; awaits an admin's approval.
    Pending,
    /// Approved; may be triggered with a provider.
    Approved,
    /// Sent (or being sent) to a provider; the outcome is not known yet.
    Processing,
    /// The provider confirmed the money reached the doctor.
    Paid,
    /// The provider confirmed the payment failed; may be retried as a new attempt.
    Failed,
    /// Withdrawn before any money moved.
    Cancelled,
    /// Paid, then the money came back (e.g. unclaimed, bank return).
    Returned,
    /// Paid, then the platform reversed it.
    Reversed,
}

impl PayoutStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [PayoutStatus; 8] = [
        PayoutStatus::Pending,
        PayoutStatus::Approved,
        PayoutStatus::Processing,
        PayoutStatus::Paid,
        PayoutStatus::Failed,
        PayoutStatus::Cancelled,
        PayoutStatus::Returned,
        PayoutStatus::Reversed,
    ];

    /// The uppercase name used by the API and the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            PayoutStatus::Pending => "PENDING",
            PayoutStatus::Approved => "APPROVED",
            PayoutStatus::Processing => "PROCESSING",
            PayoutStatus::Paid => "PAID",
            PayoutStatus::Failed => "FAILED",
            PayoutStatus::Cancelled => "CANCELLED",
            PayoutStatus::Returned => "RETURNED",
            PayoutStatus::Reversed => "REVERSED",
        }
    }

    /// True when nothing but a correcting event can change it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            PayoutStatus::Paid | PayoutStatus::Cancelled | PayoutStatus::Returned | PayoutStatus::Reversed
        )
    }
}

impl fmt::Display for PayoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown payout status {0:?} (expected one of PENDING, APPROVED, PROCESSING, PAID, FAILED, CANCELLED, RETURNED, REVERSED)"
)]
pub struct UnknownStatus(pub String);

impl FromStr for PayoutStatus {
    type Err = UnknownStatus;
    /// Case-insensitive. `READY`, the name the original admin workflow used for payouts awaiting
    /// review, reads as `PENDING`; `CANCELED` as `CANCELLED`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "PENDING" | "READY" => PayoutStatus::Pending,
            "APPROVED" => PayoutStatus::Approved,
            "PROCESSING" => PayoutStatus::Processing,
            "PAID" => PayoutStatus::Paid,
            "FAILED" => PayoutStatus::Failed,
            "CANCELLED" | "CANCELED" => PayoutStatus::Cancelled,
            "RETURNED" => PayoutStatus::Returned,
            "REVERSED" => PayoutStatus::Reversed,
            _ => return Err(UnknownStatus(s.to_string())),
        })
    }
}

crate::domain::serde_as_text!(PayoutStatus);

/// Something that happens to a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayoutEvent {
    /// An admin approves it.
    Approve,
    /// An admin withdraws it before any money moved.
    Cancel,
    /// An admin sends it to a provider (a new attempt is recorded with it).
    Trigger,
    /// An admin retries after a *confirmed* failure: back to APPROVED, ready for a new attempt.
    Retry,
    /// The provider reports the attempt is still in flight.
    ProviderPending,
    /// The provider confirms the money was paid.
    ProviderPaid,
    /// The provider confirms the payment failed.
    ProviderFailed,
    /// The money came back after it was paid (unclaimed, bank return). A failure reported after
    /// success is not this: it is [`ProviderFailed`](PayoutEvent::ProviderFailed), which leaves a
    /// PAID payout as it is.
    ProviderReturned,
    /// The payment was reversed after it was paid.
    ProviderReversed,
}

impl PayoutEvent {
    /// Every event.
    pub const ALL: [PayoutEvent; 9] = [
        PayoutEvent::Approve,
        PayoutEvent::Cancel,
        PayoutEvent::Trigger,
        PayoutEvent::Retry,
        PayoutEvent::ProviderPending,
        PayoutEvent::ProviderPaid,
        PayoutEvent::ProviderFailed,
        PayoutEvent::ProviderReturned,
        PayoutEvent::ProviderReversed,
    ];

    /// A short uppercase name for the audit trail (`"APPROVE"`, `"PROVIDER_PAID"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            PayoutEvent::Approve => "APPROVE",
            PayoutEvent::Cancel => "CANCEL",
            PayoutEvent::Trigger => "TRIGGER",
            PayoutEvent::Retry => "RETRY",
            PayoutEvent::ProviderPending => "PROVIDER_PENDING",
            PayoutEvent::ProviderPaid => "PROVIDER_PAID",
            PayoutEvent::ProviderFailed => "PROVIDER_FAILED",
            PayoutEvent::ProviderReturned => "PROVIDER_RETURNED",
            PayoutEvent::ProviderReversed => "PROVIDER_REVERSED",
        }
    }

    /// True for events that come from a provider (webhook or status lookup) rather than a person.
    pub fn is_provider_event(&self) -> bool {
        matches!(
            self,
            PayoutEvent::ProviderPending
                | PayoutEvent::ProviderPaid
                | PayoutEvent::ProviderFailed
                | PayoutEvent::ProviderReturned
                | PayoutEvent::ProviderReversed
        )
    }
}

impl fmt::Display for PayoutEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event does to a payout in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status.
    To(PayoutStatus),
    /// Nothing to do: a duplicate, or a stale provider event that would move the payout backwards.
    NoOp,
}

/// The event is not allowed in this status (e.g. triggering a PENDING payout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not allowed while the payout is {from}")]
pub struct RefusedTransition {
    /// The status the payout is in.
    pub from: PayoutStatus,
    /// The event that was refused.
    pub event: PayoutEvent,
}

/// The state machine: what `event` does to a payout in status `from`.
///
/// Human actions on the wrong status are refused (an error the caller sees). Provider events never
/// fail: one that would move a payout backwards, or repeat what is already known, is a
/// [`Transition::NoOp`], because providers deliver late and twice.
pub fn transition(from: PayoutStatus, event: PayoutEvent) -> Result<Transition, RefusedTransition> {
    use PayoutEvent as E;
    use PayoutStatus as S;
    use Transition::{NoOp, To};
    let refused = Err(RefusedTransition { from, event });
    match (from, event) {
        (S::Pending, E::Approve) => Ok(To(S::Approved)),
        (S::Pending | S::Approved, E::Cancel) => Ok(To(S::Cancelled)),
        (S::Approved, E::Trigger) => Ok(To(S::Processing)),
        (S::Failed, E::Retry) => Ok(To(S::Approved)),
        (_, E::Approve | E::Cancel | E::Trigger | E::Retry) => refused,

        (S::Processing, E::ProviderPaid) => Ok(To(S::Paid)),
        (S::Processing, E::ProviderFailed) => Ok(To(S::Failed)),
        // Only an explicit money-back event moves a paid payout. A failure reported after success
        // says nothing about money coming back: the service records it on the attempt and flags
        // the payout for a person, and its status stays.
        (S::Paid, E::ProviderReturned) => Ok(To(S::Returned)),
        (S::Paid, E::ProviderReversed) => Ok(To(S::Reversed)),
        // Money returned or reversed while we still thought it in flight: it was paid, then came back.
        (S::Processing, E::ProviderReturned) => Ok(To(S::Returned)),
        (S::Processing, E::ProviderReversed) => Ok(To(S::Reversed)),
        // Everything else from a provider is a duplicate or stale: never backwards.
        (_, E::ProviderPending | E::ProviderPaid | E::ProviderFailed | E::ProviderReturned | E::ProviderReversed) => {
            Ok(NoOp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PayoutStatus as S;
    use Transition::{NoOp, To};

    /// Every (status, event) pair, written out: a row per status, a column per event in
    /// [`PayoutEvent::ALL`] order. A cell is the status the event moves the payout to, `-` where the
    /// event is refused and `.` where it changes nothing. 8 x 9 = 72 pairs.
    const TABLE: &str = "
        from       | approve  cancel    trigger    retry    | pending paid   failed   returned reversed
        PENDING    | APPROVED CANCELLED -          -        | .       .      .        .        .
        APPROVED   | -        CANCELLED PROCESSING -        | .       .      .        .        .
        PROCESSING | -        -         -          -        | .       PAID   FAILED   RETURNED REVERSED
        PAID       | -        -         -          -        | .       .      .        RETURNED REVERSED
        FAILED     | -        -         -          APPROVED | .       .      .        .        .
        CANCELLED  | -        -         -          -        | .       .      .        .        .
        RETURNED   | -        -         -          -        | .       .      .        .        .
        REVERSED   | -        -         -          -        | .       .      .        .        .
    ";

    /// [`TABLE`]'s rows: a status and its cells, `None` where the event is refused.
    fn table() -> Vec<(S, Vec<Option<Transition>>)> {
        let rows = TABLE.lines().map(str::trim).filter(|l| !l.is_empty()).skip(1);
        rows.map(|row| {
            let mut cells = row.split_whitespace().filter(|c| *c != "|");
            let from = cells.next().and_then(|c| c.parse().ok()).expect("a status");
            let cells = cells.map(|cell| match cell {
                "-" => None,
                "." => Some(NoOp),
                to => Some(To(to.parse().expect("a status"))),
            });
            (from, cells.collect())
        })
        .collect()
    }

    #[test]
    fn table_covers_every_pair() {
        let table = table();
        let statuses: Vec<S> = table.iter().map(|(s, _)| *s).collect();
        assert_eq!(statuses, PayoutStatus::ALL, "a row per status, in order");
        for (from, cells) in &table {
            assert_eq!(cells.len(), PayoutEvent::ALL.len(), "{from}: a cell per event");
        }
    }

    #[test]
    fn every_pair_behaves_as_the_table_says() {
        for (from, cells) in table() {
            for (event, expected) in PayoutEvent::ALL.into_iter().zip(cells) {
                let got = transition(from, event);
                match expected {
                    Some(t) => assert_eq!(got, Ok(t), "{from} + {event}"),
                    None => assert_eq!(got, Err(RefusedTransition { from, event }), "{from} + {event}"),
                }
            }
        }
    }

    /// Lifecycle rank: a provider event may only move a payout to a later stage.
    fn rank(s: S) -> u8 {
        match s {
            S::Pending => 0,
            S::Approved => 1,
            S::Processing => 2,
            S::Paid | S::Failed | S::Cancelled => 3,
            S::Returned | S::Reversed => 4,
        }
    }

    #[test]
    fn provider_events_only_move_forward() {
        for from in PayoutStatus::ALL {
            for event in PayoutEvent::ALL.into_iter().filter(|e| e.is_provider_event()) {
                if let Ok(To(to)) = transition(from, event) {
                    assert!(rank(to) > rank(from), "{from} -> {to} via {event} goes backwards");
                }
            }
        }
    }

    #[test]
    fn terminal_statuses_only_change_by_correction() {
        for from in PayoutStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for event in PayoutEvent::ALL {
                if let Ok(To(to)) = transition(from, event) {
                    assert_eq!(from, S::Paid);
                    assert!(matches!(to, S::Returned | S::Reversed));
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for s in PayoutStatus::ALL {
            assert_eq!(s.to_string().parse::<PayoutStatus>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<PayoutStatus>(&json).unwrap(), s);
        }
        assert_eq!("ready".parse::<PayoutStatus>().unwrap(), S::Pending);
        assert!("DONE".parse::<PayoutStatus>().is_err());
    }
}
