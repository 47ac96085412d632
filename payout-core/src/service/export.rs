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
use crate::source::RecipientDirectory;
use crate::status::PayoutStatus;
use crate::store::PayoutFilter;

/// How many rows are looked up and written together: the SQL stores' read size, so while one
/// chunk is written exactly one query reads the next.
const EXPORT_CHUNK: usize = 1000;

/// How many doctors' export cells one export keeps at most (a few MB).
const RECIPIENT_CACHE: usize = 20_000;

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

/// The export's cells of one doctor, encoded once.
struct ExportRecipient {
    name: String,
    email: String,
    /// The bank details as JSON, or empty.
    bank_details: String,
}

/// The doctors an export has looked up, so each is asked for (and its bank details encoded) once
/// per export instead of once per chunk. Bounded: past [`RECIPIENT_CACHE`] doctors it starts over,
/// so memory never grows with the export, only up to that many profiles.
#[derive(Default)]
struct ExportRecipients {
    known: HashMap<DoctorId, Option<ExportRecipient>>,
}

impl ExportRecipients {
    /// Looks up the doctors of `payouts` not known yet, in one directory call.
    async fn look_up(&mut self, directory: &dyn RecipientDirectory, payouts: &[Payout]) -> Result<()> {
        let mut ids: Vec<DoctorId> = payouts
            .iter()
            .filter(|p| !self.known.contains_key(&p.doctor_id))
            .map(|p| p.doctor_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        ids.dedup();
        if self.known.len() + ids.len() > RECIPIENT_CACHE {
            self.known.clear();
            // The chunk's other doctors were just forgotten: ask for them all again.
            ids = payouts.iter().map(|p| p.doctor_id.clone()).collect();
            ids.sort();
            ids.dedup();
        }
        let mut found: HashMap<DoctorId, Recipient> = directory
            .recipients(&ids)
            .await?
            .into_iter()
            .map(|r| (r.doctor_id.clone(), r))
            .collect();
        for id in ids {
            let cells = match found.remove(&id) {
                Some(r) => Some(ExportRecipient {
                    bank_details: match &r.bank_details {
                        Some(b) => serde_json::to_string(b).map_err(|e| Error::Store(e.to_string()))?,
                        None => String::new(),
                    },
                    name: r.name,
                    email: r.email,
                }),
                None => None,
            };
            self.known.insert(id, cells);
        }
        Ok(())
    }

    fn get(&self, doctor: &DoctorId) -> Option<&ExportRecipient> {
        self.known.get(doctor).and_then(Option::as_ref)
    }
}

impl PayoutService {
    /// Streams the payouts matching `filter` as CSV with the original system's columns
    /// (`id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status`) into `out`,
    /// neutralizing spreadsheet formulas. Rows are read, looked up and written in small chunks (the
    /// next chunk is read while one is written; each doctor is looked up once, up to a bound); the
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
        let mut recipients = ExportRecipients::default();
        let mut stream = self.store.stream(filter.clone()).chunks(EXPORT_CHUNK);
        let mut next = stream.next().await;
        while let Some(chunk) = next {
            let payouts = chunk.into_iter().collect::<Result<Vec<Payout>>>()?;
            // The store reads the next chunk while this one is looked up and written.
            let write = async {
                recipients.look_up(self.directory.as_ref(), &payouts).await?;
                for p in &payouts {
                    let r = recipients.get(&p.doctor_id);
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
                            r.map(|r| r.bank_details.as_str()).unwrap_or(""),
                            p.status.as_str(),
                        ],
                    );
                    rows += 1;
                }
                out.write_all(buf.as_bytes()).await?;
                buf.clear();
                Ok::<_, Error>(())
            };
            let (following, written) = futures::join!(stream.next(), write);
            written?;
            next = following;
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
