//! CSV export and the premium earnings analytics.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::PayoutService;
use crate::csv::{EXPORT_HEADER, push_field, push_record};
use crate::domain::{Actor, DoctorId, Recipient};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::source::RecipientDirectory;
use crate::status::PayoutStatus;
use crate::store::{ExportRow, PayoutFilter, PayoutStoreExt};

/// How many rows are looked up and written together (the SQL stores hand over as many at a time);
/// while one chunk is written, the store reads the next.
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

/// The export's cells of one doctor, encoded once (neutralized and quoted as [`push_record`] does)
/// with the commas around them, ready to be copied into each of the doctor's rows.
struct ExportRecipient {
    /// `,doctor_name,doctor_email,`.
    name_email: String,
    /// `,bankDetails,`: the bank details as JSON, or empty.
    bank_details: String,
}

/// The cells of a doctor the directory does not know: all empty.
const UNKNOWN_RECIPIENT: (&str, &str) = (",,,", ",,");

impl ExportRecipient {
    fn encode(r: &Recipient) -> Result<Self> {
        let bank_details = match &r.bank_details {
            Some(b) => {
                serde_json::to_string(b).map_err(|e| Error::Source(format!("bank details of {}: {e}", r.doctor_id)))?
            }
            None => String::new(),
        };
        let mut name_email = String::with_capacity(r.name.len() + r.email.len() + 3);
        name_email.push(',');
        push_field(&mut name_email, &r.name);
        name_email.push(',');
        push_field(&mut name_email, &r.email);
        name_email.push(',');
        let mut encoded = String::with_capacity(bank_details.len() + 4);
        encoded.push(',');
        push_field(&mut encoded, &bank_details);
        encoded.push(',');
        Ok(ExportRecipient {
            name_email,
            bank_details: encoded,
        })
    }
}

/// The doctors an export has looked up, so each is asked for (and its cells encoded) once per
/// export instead of once per chunk. Bounded: past [`RECIPIENT_CACHE`] doctors it starts over, so
/// memory never grows with the export, only up to that many profiles.
#[derive(Default)]
struct ExportRecipients {
    /// Where each known doctor's cells are in `cells`.
    known: HashMap<DoctorId, usize>,
    /// The cells of each known doctor; `None` for one the directory does not know.
    cells: Vec<Option<ExportRecipient>>,
}

impl ExportRecipients {
    /// Finds the cells of each of `payouts`' doctors (see [`get`](Self::get)), in order, into
    /// `found`; the doctors not known yet are looked up in one directory call.
    async fn look_up(
        &mut self,
        directory: &dyn RecipientDirectory,
        payouts: &[ExportRow],
        found: &mut Vec<usize>,
    ) -> Result<()> {
        const NOT_YET: usize = usize::MAX;
        found.clear();
        let mut ids = Vec::new();
        for p in payouts {
            match self.known.get(&p.doctor_id) {
                Some(&at) => found.push(at),
                None => {
                    found.push(NOT_YET);
                    ids.push(p.doctor_id.clone());
                }
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        ids.dedup();
        if self.known.len() + ids.len() > RECIPIENT_CACHE {
            self.known.clear();
            self.cells.clear();
            // The chunk's other doctors were just forgotten: ask for them all again.
            found.fill(NOT_YET);
            ids = payouts.iter().map(|p| p.doctor_id.clone()).collect();
            ids.sort();
            ids.dedup();
        }
        let mut recipients: HashMap<DoctorId, Recipient> = directory
            .recipients(&ids)
            .await?
            .into_iter()
            .map(|r| (r.doctor_id.clone(), r))
            .collect();
        for id in ids {
            let cells = recipients
                .remove(&id)
                .as_ref()
                .map(ExportRecipient::encode)
                .transpose()?;
            self.known.insert(id, self.cells.len());
            self.cells.push(cells);
        }
        for (at, p) in found.iter_mut().zip(payouts) {
            if *at == NOT_YET {
                *at = self.known.get(&p.doctor_id).copied().unwrap_or(NOT_YET);
            }
        }
        Ok(())
    }

    /// The cells [`look_up`](Self::look_up) found: `(name_email, bank_details)`.
    fn get(&self, at: usize) -> (&str, &str) {
        match self.cells.get(at) {
            Some(Some(r)) => (&r.name_email, &r.bank_details),
            _ => UNKNOWN_RECIPIENT,
        }
    }
}

/// Appends one export row: what [`push_record`] writes of its eight cells, with the doctor's cells
/// encoded beforehand (see [`ExportRecipient`]). `amount` is scratch space.
fn push_row(out: &mut String, amount: &mut String, p: &ExportRow, (name_email, bank_details): (&str, &str)) {
    amount.clear();
    push_amount(amount, &p.amount_due);
    push_field(out, p.id.as_str());
    out.push(',');
    push_field(out, p.doctor_id.as_str());
    out.push_str(name_email);
    push_field(out, amount);
    out.push(',');
    push_field(out, p.amount_due.currency().code());
    out.push_str(bank_details);
    push_field(out, p.status.as_str());
    out.push_str("\r\n");
}

/// Appends `m` exactly as [`Money::amount_str`] writes it (`-12.34`, `500` for JPY) without
/// allocating: an export writes one per row.
fn push_amount(out: &mut String, m: &Money) {
    use std::fmt::Write;
    let exponent = m.currency().exponent();
    let minor = m.to_minor_units().ok();
    let scale = 10u64.checked_pow(exponent);
    // The minor units are the amount's digits only when the amount is held at the currency's
    // scale (as every `Money` is); anything else, and a negative zero, is written the long way.
    let (Some(minor), Some(scale)) = (minor, scale) else {
        out.push_str(&m.amount_str());
        return;
    };
    if m.amount().scale() != exponent || m.amount().is_sign_negative() != (minor < 0) {
        out.push_str(&m.amount_str());
        return;
    }
    let units = minor.unsigned_abs();
    if minor < 0 {
        out.push('-');
    }
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{}", units / scale);
    if exponent > 0 {
        let _ = write!(out, ".{:0width$}", units % scale, width = exponent as usize);
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
        // One buffer for every row's amount, so no row allocates, and one for where each row's
        // doctor is in `recipients`.
        let mut amount = String::new();
        let mut found = Vec::with_capacity(EXPORT_CHUNK);
        let mut stream = self.store.export_stream(filter.clone()).chunks(EXPORT_CHUNK);
        let mut next = stream.next().await;
        while let Some(chunk) = next {
            let payouts = chunk.into_iter().collect::<Result<Vec<ExportRow>>>()?;
            // The store reads the next chunk while this one is looked up and written.
            let write = async {
                recipients
                    .look_up(self.directory.as_ref(), &payouts, &mut found)
                    .await?;
                for (p, &at) in payouts.iter().zip(&found) {
                    push_row(&mut buf, &mut amount, p, recipients.get(at));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BankAccount;

    #[test]
    fn rows_are_written_as_push_record_writes_their_cells() {
        let mut hostile = Recipient {
            doctor_id: "=dr".into(),
            name: "=HYPERLINK(\"http://x\",\"click\")".into(),
            email: "@attacker, \"quoted\"".into(),
            stripe_account_id: None,
            paypal_payout_email: None,
            mpesa_phone_number: None,
            bank_details: Some(BankAccount {
                account_name: "Dr. \"A\", Jr.\n".into(),
                account_number: "0123456789".into(),
                ..Default::default()
            }),
            preferred_provider: None,
        };
        let plain = Recipient {
            doctor_id: "dr-1".into(),
            name: "Dr. Amina Wanjiru".into(),
            email: "amina@clinic.example".into(),
            bank_details: None,
            ..hostile.clone()
        };
        let mut bank_formula = plain.clone();
        bank_formula.name = "-1".into();
        hostile.bank_details.as_mut().unwrap().bank_code = Some("+254".into());
        let rows = [
            (
                "po-1",
                "dr-1",
                Money::from_minor_units(50_000, Currency::KES),
                PayoutStatus::Paid,
            ),
            (
                "=po",
                "=dr",
                Money::from_minor_units(-5, Currency::KES),
                PayoutStatus::Pending,
            ),
            (
                "po,2",
                "+dr\r\n",
                Money::from_minor_units(700, Currency::JPY),
                PayoutStatus::Reversed,
            ),
        ];
        for (id, doctor, amount_due, status) in rows {
            for r in [None, Some(&plain), Some(&hostile), Some(&bank_formula)] {
                let p = ExportRow {
                    id: id.into(),
                    doctor_id: doctor.into(),
                    amount_due,
                    status,
                };
                let bank = r
                    .and_then(|r| r.bank_details.as_ref())
                    .map(|b| serde_json::to_string(b).unwrap())
                    .unwrap_or_default();
                let mut expected = String::new();
                push_record(
                    &mut expected,
                    [
                        id,
                        doctor,
                        r.map_or("", |r| r.name.as_str()),
                        r.map_or("", |r| r.email.as_str()),
                        amount_due.amount_str().as_str(),
                        amount_due.currency().code(),
                        bank.as_str(),
                        status.as_str(),
                    ],
                );
                let encoded = r.map(|r| ExportRecipient::encode(r).unwrap());
                let cells = encoded
                    .as_ref()
                    .map_or(UNKNOWN_RECIPIENT, |e| (e.name_email.as_str(), e.bank_details.as_str()));
                let (mut got, mut scratch) = (String::new(), String::new());
                push_row(&mut got, &mut scratch, &p, cells);
                assert_eq!(got, expected, "{p:?} with {r:?}");
            }
        }
    }

    /// A directory of doctors `dr-0`..`dr-{n-1}` that counts the doctors it is asked for.
    struct CountingDirectory {
        known: usize,
        asked: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl RecipientDirectory for CountingDirectory {
        async fn recipient(&self, doctor_id: &DoctorId) -> Result<Option<Recipient>> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let n: usize = doctor_id.as_str()["dr-".len()..].parse().unwrap();
            Ok((n < self.known).then(|| Recipient {
                doctor_id: doctor_id.clone(),
                name: format!("Dr. {n}"),
                email: format!("{n}@clinic.example"),
                stripe_account_id: None,
                paypal_payout_email: None,
                mpesa_phone_number: None,
                bank_details: None,
                preferred_provider: None,
            }))
        }
    }

    #[tokio::test]
    async fn the_recipient_cache_finds_every_doctor_and_stays_bounded() {
        let directory = CountingDirectory {
            known: 30_000,
            asked: Default::default(),
        };
        let mut recipients = ExportRecipients::default();
        let mut found = Vec::new();
        // Chunks of 1,000 rows over 32,000 doctors (the last 2,000 unknown), then the first
        // doctors again: past the bound the cache starts over.
        let doctors = (0..32_000).chain(0..3_000).chain([5, 31_999, 5]);
        let rows: Vec<ExportRow> = doctors
            .map(|n| ExportRow {
                id: format!("po-{n}").into(),
                doctor_id: format!("dr-{n}").into(),
                amount_due: Money::zero(Currency::KES),
                status: PayoutStatus::Pending,
            })
            .collect();
        for chunk in rows.chunks(EXPORT_CHUNK) {
            recipients.look_up(&directory, chunk, &mut found).await.unwrap();
            assert!(recipients.known.len() <= RECIPIENT_CACHE && recipients.cells.len() <= RECIPIENT_CACHE);
            assert_eq!(found.len(), chunk.len());
            for (p, &at) in chunk.iter().zip(&found) {
                let n: usize = p.doctor_id.as_str()["dr-".len()..].parse().unwrap();
                let cells = recipients.get(at);
                if n < directory.known {
                    assert_eq!(cells, (format!(",Dr. {n},{n}@clinic.example,").as_str(), ",,"));
                } else {
                    assert_eq!(cells, UNKNOWN_RECIPIENT, "dr-{n} is not in the directory");
                }
            }
        }
        // Each doctor once, then the first 3,000 again (forgotten when the cache started over);
        // the last two were still known.
        let asked = directory.asked.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(asked, 35_000, "doctors asked for");
    }

    #[test]
    fn amounts_are_written_as_amount_str_writes_them() {
        let currencies = ["KES", "JPY", "KWD"].map(|c| Currency::from_code(c).unwrap());
        let units = [
            0,
            1,
            -1,
            9,
            10,
            99,
            100,
            -100,
            12_345,
            -12_345,
            1_000_000,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        let mut checked = Vec::new();
        for currency in currencies {
            for u in units {
                checked.push(Money::from_minor_units(u, currency));
            }
            checked.push(Money::zero(currency).negate());
            checked.push(Money::parse("-0", currency).unwrap());
            checked.push(Money::parse("12", currency).unwrap());
        }
        checked.push(Money::parse("79228162514264337593543950", Currency::JPY).unwrap());
        let mut out = String::new();
        for m in checked {
            out.clear();
            push_amount(&mut out, &m);
            assert_eq!(out, m.amount_str(), "{m:?}");
        }
    }
}
