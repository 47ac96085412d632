//! What the store answers about runs and doctors' holds, a page at a time.

use crate::domain::{DoctorHold, RunResult, RunSummary};

/// A page of runs, newest first, with the number of runs in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// The runs, each with its totals.
    pub runs: Vec<RunSummary>,
    /// How many runs there are.
    pub total: u64,
}

/// A page of a run's per-payout results, oldest first, with the number of results in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResultPage {
    /// The results.
    pub results: Vec<RunResult>,
    /// How many results the run has.
    pub total: u64,
}

/// A page of the doctors on hold, oldest hold first, with the number of doctors on hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DoctorHoldPage {
    /// The holds.
    pub holds: Vec<DoctorHold>,
    /// How many doctors are on hold.
    pub total: u64,
}
