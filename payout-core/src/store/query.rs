//! How payouts are asked for: the admin list's filters and paging, and the export's rows.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{DoctorId, Payout, PayoutId, Provider, RunId};
use crate::money::Money;
use crate::status::PayoutStatus;

/// Filters of the admin list (the original system's `status`, `doctor`, `provider`, `startDate`, `endDate`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutFilter {
    /// Only this status.
    pub status: Option<PayoutStatus>,
    /// Only this doctor.
    pub doctor_id: Option<DoctorId>,
    /// Only this provider.
    pub provider: Option<Provider>,
    /// Created on or after this day (UTC).
    pub created_from: Option<NaiveDate>,
    /// Created on or before this day (UTC).
    pub created_to: Option<NaiveDate>,
    /// Only the members of this run.
    pub run: Option<RunId>,
    /// Only payouts whose own hold is on (`true`), or only the others (`false`): see
    /// [`Payout::active_hold`]. A doctor's hold ([`DoctorHold`](crate::domain::DoctorHold)) counts
    /// here through the holds it put on the doctor's payouts.
    pub held: Option<bool>,
}

impl PayoutFilter {
    /// True when `p` passes the filter's conditions on the payout itself: all but
    /// [`run`](Self::run), which is a store's membership record (a store checks it besides).
    pub fn matches(&self, p: &Payout) -> bool {
        self.held.is_none_or(|held| p.active_hold().is_some() == held)
            && self.status.is_none_or(|s| p.status == s)
            && self.doctor_id.as_ref().is_none_or(|d| &p.doctor_id == d)
            && self.provider.is_none_or(|v| p.provider == Some(v))
            && self.created_from.is_none_or(|d| p.created_at.date_naive() >= d)
            && self.created_to.is_none_or(|d| p.created_at.date_naive() <= d)
    }
}

/// A position in the list order (newest first: `created_at` desc, then `id` desc) for keyset paging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `created_at` of the last row seen.
    pub created_at: DateTime<Utc>,
    /// `id` of the last row seen.
    pub id: PayoutId,
}

impl Cursor {
    /// The cursor after `p`.
    pub fn after(p: &Payout) -> Self {
        Cursor {
            created_at: p.created_at,
            id: p.id.clone(),
        }
    }
}

/// Which page: `limit`/`skip` as the original system pages, or keyset paging after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many rows.
    pub limit: u32,
    /// Skip this many rows first (ignored when `after` is set).
    pub skip: u64,
    /// Start after this row.
    pub after: Option<Cursor>,
}

impl Page {
    /// The largest page size.
    pub const MAX_LIMIT: u32 = 1000;

    /// `limit`/`skip` paging.
    pub fn new(limit: u32, skip: u64) -> Self {
        Page {
            limit,
            skip,
            after: None,
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 50,
            skip: 0,
            after: None,
        }
    }
}

/// One page of payouts, with the total matching the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutPage {
    /// The rows, newest first.
    pub payouts: Vec<Payout>,
    /// How many payouts match the filter in all.
    pub total: u64,
    /// Where the next page starts (keyset), if there may be one.
    pub next: Option<Cursor>,
}

/// What the CSV export writes of a payout (see
/// [`BulkPayoutStore::export_rows`](super::BulkPayoutStore::export_rows)); the doctor's name, email
/// and bank details come from the recipient directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    /// The payout's id.
    pub id: PayoutId,
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The payout's `amount_due`.
    pub amount_due: Money,
    /// Its status.
    pub status: PayoutStatus,
}

impl From<Payout> for ExportRow {
    fn from(p: Payout) -> Self {
        ExportRow {
            id: p.id,
            doctor_id: p.doctor_id,
            amount_due: p.amount_due,
            status: p.status,
        }
    }
}
