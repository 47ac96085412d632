//! Holds: a payout, or every payout of a doctor, kept back from being sent until an admin
//! releases it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DoctorId;
use crate::error::{Error, Result};

/// The longest reason a hold may give, in characters.
pub const MAX_HOLD_REASON: usize = 500;

/// Why a payout is held: it was held itself, or its doctor was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldScope {
    /// The payout itself was put on hold.
    Payout,
    /// Its doctor was put on hold ([`DoctorHold`]); releasing the doctor releases it.
    Doctor,
}

impl HoldScope {
    /// `PAYOUT` or `DOCTOR`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HoldScope::Payout => "PAYOUT",
            HoldScope::Doctor => "DOCTOR",
        }
    }
}

impl fmt::Display for HoldScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HoldScope::Payout => "payout hold",
            HoldScope::Doctor => "doctor hold",
        })
    }
}

/// A hold on a payout, kept on it once released (like a settled resolution), so the payout shows
/// who held it back and who let it go; every step is in the audit trail too (`HOLD`, `RELEASE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// The payout's own hold, or its doctor's.
    pub scope: HoldScope,
    /// Why, in the admin's words.
    pub reason: String,
    /// Who put it on hold (`admin:<id>`).
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
    /// Who released it, once released.
    #[serde(default)]
    pub released_by: Option<String>,
    /// When it was released; `None` while the hold is on.
    #[serde(default)]
    pub released_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// A new hold, on.
    pub fn placed(scope: HoldScope, reason: &str, placed_by: String, placed_at: DateTime<Utc>) -> Self {
        Hold {
            scope,
            reason: reason.trim().to_string(),
            placed_by,
            placed_at,
            released_by: None,
            released_at: None,
        }
    }

    /// True while the hold is on (not released).
    pub fn is_active(&self) -> bool {
        self.released_at.is_none()
    }

    /// The same hold, released by `by` at `at`.
    pub fn released(&self, by: String, at: DateTime<Utc>) -> Self {
        Hold {
            released_by: Some(by),
            released_at: Some(at),
            ..self.clone()
        }
    }
}

/// A doctor on hold: none of the doctor's payouts is sent, including ones created after the hold,
/// until an admin releases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DoctorHold {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// Why, in the admin's words.
    pub reason: String,
    /// Who put the doctor on hold (`admin:<id>`).
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
}

/// Refuses, with [`Error::InvalidInput`], a hold reason that is empty (after trimming) or longer
/// than [`MAX_HOLD_REASON`] characters: a hold says why, briefly.
pub fn check_hold_reason(reason: &str) -> Result<()> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::InvalidInput("a hold needs a reason".into()));
    }
    if reason.chars().count() > MAX_HOLD_REASON {
        return Err(Error::InvalidInput(format!(
            "a hold's reason may be at most {MAX_HOLD_REASON} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_hold_is_kept_and_no_longer_active() {
        let at = DateTime::<Utc>::from_timestamp(1_735_689_600, 0).unwrap();
        let hold = Hold::placed(HoldScope::Payout, "  bank details in doubt ", "admin:a".into(), at);
        assert!(hold.is_active());
        assert_eq!(hold.reason, "bank details in doubt");
        let released = hold.released("admin:b".into(), at);
        assert!(!released.is_active());
        assert_eq!(released.reason, hold.reason);
        let json = serde_json::to_value(&released).unwrap();
        assert_eq!(json["scope"], "PAYOUT");
        assert_eq!(json["releasedBy"], "admin:b");
        assert_eq!(serde_json::from_value::<Hold>(json).unwrap(), released);
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert!(check_hold_reason("   ").is_err());
        assert!(check_hold_reason(&"x".repeat(MAX_HOLD_REASON + 1)).is_err());
        assert!(check_hold_reason(&"x".repeat(MAX_HOLD_REASON)).is_ok());
    }
}
