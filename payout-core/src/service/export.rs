//! CSV export and the premium earnings analytics.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::PayoutService;
use crate::csv::{EXPORT_HEADER, push_record};
use crate::domain::{Actor, DoctorId, Payout, Recipient};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::PayoutFilter;

/// How many rows are looked up and written together.
const EXPORT_CHUNK: usize = 256;

/// A doctor's earnings at a glance (a premium feature).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EarningsAnalytics {
    /// The currency of the figures (payouts in other currencies are left out).
    pub currency: Currency,
    /// Paid so far.
    pub total_paid: Money,
    /// Approved or pending, not yet paid.
    pub total_upcoming: Money,
    /// How many payouts are in each status.
    pub payouts_by_status: BTreeMap<String, u64>,
    /// Paid per month (`YYYY-MM` of the period start).
    pub paid_by_month: BTreeMap<String, Money>,
    /// Consultations paid for.
    pub consultations_paid: u64,
    /// Average paid per consultation, when any were paid.
    pub average_per_consultation: Option<Money>,
}

impl PayoutService {
    /// Streams the payouts matching `filter` as CSV with the original system's columns
    /// (`id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status`) into `out`,
    /// neutralizing spreadsheet formulas. Rows are read, looked up and written in small chunks; the
    /// whole export is never held in memory. Returns the number of rows written. Admins only.
    pub async fn export_csv<W: AsyncWrite + Unpin + Send>(
        &self,
        actor: &Actor,
        filter: &PayoutFilter,
        out: &mut W,
    ) -> Result<u64> {
        self.require_privileged(actor, "export payouts")?;
        let mut buf = String::with_capacity(64 * 1024);
        push_record(&mut buf, EXPORT_HEADER);
        let mut rows = 0u64;
        let mut stream = self.store.stream(filter.clone()).chunks(EXPORT_CHUNK);
        while let Some(chunk) = stream.next().await {
            let payouts = chunk.into_iter().collect::<Result<Vec<Payout>>>()?;
            let mut ids: Vec<DoctorId> = payouts.iter().map(|p| p.doctor_id.clone()).collect();
            ids.sort();
            ids.dedup();
            let recipients: HashMap<DoctorId, Recipient> = self
                .directory
                .recipients(&ids)
                .await?
                .into_iter()
                .map(|r| (r.doctor_id.clone(), r))
                .collect();
            for p in &payouts {
                let r = recipients.get(&p.doctor_id);
                let bank = match r.and_then(|r| r.bank_details.as_ref()) {
                    Some(b) => serde_json::to_string(b).map_err(|e| Error::Store(e.to_string()))?,
                    None => String::new(),
                };
                let amount = p.amount_due.amount_str();
                push_record(
                    &mut buf,
                    [
                        p.id.as_str(),
                        p.doctor_id.as_str(),
                        r.map(|r| r.name.as_str()).unwrap_or(""),
                        r.map(|r| r.email.as_str()).unwrap_or(""),
                        amount.as_str(),
                        p.amount_due.currency().code(),
                        bank.as_str(),
                        p.status.as_str(),
                    ],
                );
                rows += 1;
            }
            out.write_all(buf.as_bytes()).await?;
            buf.clear();
        }
        out.write_all(buf.as_bytes()).await?;
        out.flush().await?;
        Ok(rows)
    }

    /// The authenticated doctor's earnings analytics; needs a plan with `advanced_analytics`
    /// (`Forbidden` otherwise). The doctor comes from the actor; the user id checked for premium is the
    /// doctor id.
    pub async fn earnings_analytics(&self, actor: &Actor, currency: Currency) -> Result<EarningsAnalytics> {
        let Actor::Doctor { doctor_id } = actor else {
            return Err(Error::Forbidden("earnings analytics are a doctor's own view".into()));
        };
        if !self.feature_access(doctor_id.as_str()).await?.advanced_analytics {
            return Err(Error::Forbidden("earnings analytics need a premium plan".into()));
        }
        let mut a = EarningsAnalytics {
            currency,
            total_paid: Money::zero(currency),
            total_upcoming: Money::zero(currency),
            payouts_by_status: BTreeMap::new(),
            paid_by_month: BTreeMap::new(),
            consultations_paid: 0,
            average_per_consultation: None,
        };
        let filter = PayoutFilter {
            doctor_id: Some(doctor_id.clone()),
            ..Default::default()
        };
        let mut stream = self.store.stream(filter);
        while let Some(p) = stream.next().await {
            let p = p?;
            *a.payouts_by_status.entry(p.status.to_string()).or_default() += 1;
            if p.currency() != currency {
                continue;
            }
            match p.status {
                PayoutStatus::Paid => {
                    a.total_paid = a.total_paid.checked_add(&p.amount_due)?;
                    let month = p.period_start.format("%Y-%m").to_string();
                    let slot = a.paid_by_month.entry(month).or_insert_with(|| Money::zero(currency));
                    *slot = slot.checked_add(&p.amount_due)?;
                    let items = self.store.items(&p.id).await?;
                    a.consultations_paid += items
                        .iter()
                        .filter(|i| i.kind == crate::domain::ItemKind::Consultation)
                        .count() as u64;
                }
                PayoutStatus::Pending | PayoutStatus::Approved | PayoutStatus::Processing => {
                    a.total_upcoming = a.total_upcoming.checked_add(&p.amount_due)?;
                }
                _ => {}
            }
        }
        if a.consultations_paid > 0 {
            let avg = (a.total_paid.amount() / rust_decimal::Decimal::from(a.consultations_paid))
                .round_dp_with_strategy(currency.exponent(), rust_decimal::RoundingStrategy::MidpointNearestEven);
            a.average_per_consultation = Some(Money::new(avg, currency)?);
        }
        Ok(a)
    }
}
