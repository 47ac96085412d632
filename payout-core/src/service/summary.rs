//! What the admin dashboard summarises: totals by status, provider and currency, paid totals per
//! month, and doctors' names beside their ids. Admins only.

use std::collections::HashMap;

use super::PayoutService;
use crate::domain::{Actor, DoctorId};
use crate::error::{Error, Result};
use crate::money::Currency;
use crate::store::{MonthTotal, StatusTally, TotalsFilter, fill_months, month_range};

/// The most months [`PayoutService::paid_by_month`] reads at once (ten years).
pub const MAX_CHART_MONTHS: u32 = 120;

impl PayoutService {
    /// How many payouts there are and how much they add up to, per status, provider and currency
    /// (admins only); see [`PayoutStore::totals`](crate::PayoutStore::totals). Kept by the store as it
    /// writes, so this costs the same however many payouts there are.
    pub async fn totals(&self, actor: &Actor, filter: &TotalsFilter) -> Result<Vec<StatusTally>> {
        self.require_privileged(actor, "read the payout totals")?;
        self.store.totals(filter).await
    }

    /// What was paid in each of the last `months` months, the current one (by the service's clock)
    /// included, per currency, oldest month first (admins only). Each currency paid in the range
    /// has every month, zero where nothing was paid; ordered by currency code, then month. The
    /// month is the month a payout was created in (see
    /// [`PayoutStore::paid_by_month`](crate::PayoutStore::paid_by_month)). `months` must be 1 to
    /// [`MAX_CHART_MONTHS`].
    pub async fn paid_by_month(
        &self,
        actor: &Actor,
        currency: Option<Currency>,
        months: u32,
    ) -> Result<Vec<MonthTotal>> {
        self.require_privileged(actor, "read the paid totals")?;
        if months == 0 || months > MAX_CHART_MONTHS {
            return Err(Error::InvalidInput(format!(
                "months must be 1 to {MAX_CHART_MONTHS}, not {months}"
            )));
        }
        let range = month_range(self.clock.now().date_naive(), months);
        let from = range.first().copied().unwrap_or_else(|| self.clock.now().date_naive());
        let rows = self.store.paid_by_month(currency, from).await?;
        Ok(fill_months(&range, &rows))
    }

    /// The names of these doctors as the recipient directory has them, for showing beside their
    /// ids (admins only). One [`RecipientDirectory::recipients`](crate::source::RecipientDirectory::recipients)
    /// call for all of them (each id asked once); a doctor the directory does not know is left out.
    pub async fn doctor_names(&self, actor: &Actor, ids: &[DoctorId]) -> Result<HashMap<DoctorId, String>> {
        self.require_privileged(actor, "read doctors' names")?;
        let mut unique: Vec<DoctorId> = ids.to_vec();
        unique.sort();
        unique.dedup();
        if unique.is_empty() {
            return Ok(HashMap::new());
        }
        let recipients = self.directory.recipients(&unique).await?;
        Ok(recipients.into_iter().map(|r| (r.doctor_id, r.name)).collect())
    }
}
