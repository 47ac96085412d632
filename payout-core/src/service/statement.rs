//! Statements for doctors: one payout line by line with its totals, and a year's totals for a tax
//! return. The figures are worked out here, from the store's reads (a payout, its items, its
//! attempts; a doctor's payouts through the list's doctor filter), never in a handler; the server
//! only renders them (HTML, CSV, JSON).
//!
//! Which payouts a year counts: the `PAID` payouts whose payment was confirmed in that year (UTC),
//! `processed_at`, the day the money reached the doctor. A payout whose money came back
//! (`RETURNED`, `REVERSED`) is income of no year: it is left out of gross, deductions and net,
//! and listed apart (`returned`) under the year it was paid in, so the doctor sees why a payment
//! they remember is not counted. A summary reflects the payouts as they are when it is asked
//! for: a payout paid in one year and returned in the next leaves the first year's summary.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;

use super::PayoutService;
use crate::csv::{push_cell, push_field};
use crate::domain::{Actor, DoctorId, ItemKind, Payout, PayoutDestination, PayoutId, PayoutItem, Period, Provider};
use crate::error::{Error, Result};
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{Page, PayoutFilter};

/// What a statement line is: an item's kind, with a late consultation (one completed before the
/// payout's period, found by the look-back) told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum LineKind {
    /// A consultation of the payout's period.
    Consultation,
    /// A consultation completed before the period and paid late.
    LateConsultation,
    /// Earnings carried over from an earlier period.
    CarryOver,
    /// A deduction (negative).
    Deduction,
    /// A manual correction, or a manual payout's amount.
    Adjustment,
    /// A paid consultation taken back (negative).
    Clawback,
}

impl LineKind {
    /// The uppercase name (`CONSULTATION`, `LATE_CONSULTATION`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            LineKind::Consultation => "CONSULTATION",
            LineKind::LateConsultation => "LATE_CONSULTATION",
            LineKind::CarryOver => "CARRY_OVER",
            LineKind::Deduction => "DEDUCTION",
            LineKind::Adjustment => "ADJUSTMENT",
            LineKind::Clawback => "CLAWBACK",
        }
    }

    /// The line kind of `item` on a payout for `period`.
    pub fn of(item: &PayoutItem, period: Period) -> LineKind {
        match item.kind {
            ItemKind::Consultation if item.occurred_at.date_naive() < period.start => LineKind::LateConsultation,
            ItemKind::Consultation => LineKind::Consultation,
            ItemKind::CarryOver => LineKind::CarryOver,
            ItemKind::Deduction => LineKind::Deduction,
            ItemKind::Clawback => LineKind::Clawback,
            ItemKind::Adjustment => LineKind::Adjustment,
        }
    }
}

/// One line of a statement: one item of the payout, in the payout's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLine {
    /// What it is.
    pub kind: LineKind,
    /// What it refers to (an appointment id, a period, a deduction's name).
    pub reference: String,
    /// When the thing it pays for happened.
    pub occurred_at: DateTime<Utc>,
    /// The item's description.
    pub description: String,
    /// Its amount (negative for deductions and clawbacks).
    pub amount: Money,
}

/// One deduction's total: its name (the item's reference, `platform_fee`) and what it took, as a
/// positive amount.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeductionTotal {
    /// The deduction's name.
    pub name: String,
    /// What it took (positive).
    pub amount: Money,
}

/// A statement's totals. `gross - deducted = net`, and `net` is the sum of every line: the payout's
/// amount.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementTotals {
    /// Consultations of the period.
    pub consultations: u64,
    /// What they earned.
    pub consultation_earnings: Money,
    /// Consultations of earlier periods, paid late.
    pub late_consultations: u64,
    /// What they earned.
    pub late_earnings: Money,
    /// Earnings carried over from earlier periods.
    pub carried_over: Money,
    /// Clawbacks (zero or negative).
    pub clawbacks: Money,
    /// Adjustments (a manual payout's amount).
    pub adjustments: Money,
    /// Every line but the deductions.
    pub gross: Money,
    /// Each deduction's total, in the order the lines first name them.
    pub deductions: Vec<DeductionTotal>,
    /// The deductions together (positive).
    pub deducted: Money,
    /// What is paid: the sum of every line.
    pub net: Money,
}

impl StatementTotals {
    /// The totals of `lines`, all in `currency` (a line in another currency is an error).
    pub fn of(currency: Currency, lines: &[StatementLine]) -> Result<Self> {
        let zero = Money::zero(currency);
        let mut t = StatementTotals {
            consultations: 0,
            consultation_earnings: zero,
            late_consultations: 0,
            late_earnings: zero,
            carried_over: zero,
            clawbacks: zero,
            adjustments: zero,
            gross: zero,
            deductions: Vec::new(),
            deducted: zero,
            net: zero,
        };
        for line in lines {
            let a = &line.amount;
            t.net = t.net.checked_add(a)?;
            match line.kind {
                LineKind::Deduction => {
                    let taken = a.negate();
                    t.deducted = t.deducted.checked_add(&taken)?;
                    match t.deductions.iter_mut().find(|d| d.name == line.reference) {
                        Some(d) => d.amount = d.amount.checked_add(&taken)?,
                        None => t.deductions.push(DeductionTotal {
                            name: line.reference.clone(),
                            amount: taken,
                        }),
                    }
                    continue;
                }
                LineKind::Consultation => {
                    t.consultations += 1;
                    t.consultation_earnings = t.consultation_earnings.checked_add(a)?;
                }
                LineKind::LateConsultation => {
                    t.late_consultations += 1;
                    t.late_earnings = t.late_earnings.checked_add(a)?;
                }
                LineKind::CarryOver => t.carried_over = t.carried_over.checked_add(a)?,
                LineKind::Clawback => t.clawbacks = t.clawbacks.checked_add(a)?,
                LineKind::Adjustment => t.adjustments = t.adjustments.checked_add(a)?,
            }
            t.gross = t.gross.checked_add(a)?;
        }
        Ok(t)
    }
}

/// How a payout was (or will be) paid, masked for printing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentMethod {
    /// The provider.
    pub provider: Provider,
    /// Where it pays, masked (`M-Pesa 2547*****678`, `Bank ****6789`).
    pub masked: String,
}

/// `destination` as a statement prints it: enough for the doctor to recognise it, never the whole
/// number. An M-Pesa phone keeps its first four and last three digits (`2547*****678`), a bank
/// account and a Stripe account their last four, a PayPal email its first letter and its domain.
pub fn mask_destination(destination: &PayoutDestination) -> String {
    fn middle(value: &str, head: usize, tail: usize) -> String {
        let chars: Vec<char> = value.chars().collect();
        if chars.len() <= head + tail {
            return "*".repeat(chars.len());
        }
        let (start, rest) = chars.split_at(head);
        let (hidden, end) = rest.split_at(rest.len() - tail);
        format!(
            "{}{}{}",
            start.iter().collect::<String>(),
            "*".repeat(hidden.len()),
            end.iter().collect::<String>()
        )
    }
    match destination {
        PayoutDestination::MpesaPhone { phone } => format!("M-Pesa {}", middle(phone.trim(), 4, 3)),
        PayoutDestination::Bank(b) => {
            let account = crate::domain::mask(b.account_number.trim());
            let tail = account.trim_start_matches('*');
            match b.bank_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                Some(bank) => format!("{bank} ****{tail}"),
                None => format!("Bank account ****{tail}"),
            }
        }
        PayoutDestination::StripeAccount { account_id } => {
            let masked = crate::domain::mask(account_id.trim());
            format!("Stripe account ****{}", masked.trim_start_matches('*'))
        }
        PayoutDestination::PaypalEmail { email } => {
            let email = email.trim();
            match email.split_once('@') {
                Some((user, domain)) => {
                    let first: String = user.chars().take(1).collect();
                    format!("PayPal {first}***@{domain}")
                }
                None => format!("PayPal {}", crate::domain::mask(email)),
            }
        }
    }
}

/// One payout's statement: its lines, totals, the doctor's name and the payment method, masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// The payout.
    #[serde(skip)]
    pub payout: Payout,
    /// The doctor's name, when the directory knows the doctor.
    pub doctor_name: Option<String>,
    /// Every item, in the payout's order.
    pub lines: Vec<StatementLine>,
    /// The totals.
    pub totals: StatementTotals,
    /// How it was paid: the provider and where the latest attempt sent it; for a payout not sent
    /// yet, the doctor's preferred method from the directory.
    pub method: Option<PaymentMethod>,
}

/// The columns of a statement's CSV, one row per line: the amounts add up to the payout's amount.
pub const STATEMENT_CSV_HEADER: [&str; 10] = [
    "payoutId",
    "periodStart",
    "periodEnd",
    "status",
    "kind",
    "reference",
    "occurredAt",
    "description",
    "amount",
    "currency",
];

impl Statement {
    /// The statement as CSV ([`STATEMENT_CSV_HEADER`], one row per line, CRLF line ends). Text
    /// cells are neutralized against spreadsheet formulas; amounts are written as the numbers they
    /// are (`-150.00`): they are this library's own decimal text, never input, so a leading minus is
    /// a sign, not a formula.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for (i, h) in STATEMENT_CSV_HEADER.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_cell(&mut out, h);
        }
        out.push_str("\r\n");
        let p = &self.payout;
        for line in &self.lines {
            let cells = [
                p.id.as_str().to_string(),
                p.period_start.to_string(),
                p.period_end.to_string(),
                p.status.as_str().to_string(),
                line.kind.as_str().to_string(),
                line.reference.clone(),
                line.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                line.description.clone(),
            ];
            for cell in &cells {
                push_field(&mut out, cell);
                out.push(',');
            }
            push_cell(&mut out, &line.amount.amount_str());
            out.push(',');
            push_cell(&mut out, line.amount.currency().code());
            out.push_str("\r\n");
        }
        out
    }
}

/// One payout counted (or listed) by a [`YearSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct YearPayout {
    /// The payout.
    pub id: PayoutId,
    /// Its status now.
    pub status: PayoutStatus,
    /// First day of its period.
    pub period_start: NaiveDate,
    /// Last day of its period.
    pub period_end: NaiveDate,
    /// When its payment was confirmed.
    pub paid_at: DateTime<Utc>,
    /// Its amount.
    pub amount: Money,
}

/// A year's totals in one currency (amounts are never converted).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct YearTotals {
    /// The currency.
    pub currency: Currency,
    /// `PAID` payouts counted.
    pub payouts: u64,
    /// Consultations they paid for (late ones included).
    pub consultations: u64,
    /// Gross earnings: every item but the deductions (clawbacks taken off, carry-overs added).
    pub gross: Money,
    /// Each deduction's total over the year, by name.
    pub deductions: Vec<DeductionTotal>,
    /// The deductions together (positive).
    pub deducted: Money,
    /// What was paid: `gross - deducted`.
    pub net_paid: Money,
    /// Payouts paid in the year whose money came back since (`RETURNED`, `REVERSED`): not counted.
    pub returned: u64,
    /// Their amounts together.
    pub returned_amount: Money,
}

impl YearTotals {
    fn new(currency: Currency) -> Self {
        let zero = Money::zero(currency);
        YearTotals {
            currency,
            payouts: 0,
            consultations: 0,
            gross: zero,
            deductions: Vec::new(),
            deducted: zero,
            net_paid: zero,
            returned: 0,
            returned_amount: zero,
        }
    }

    /// Adds one paid payout's statement totals.
    fn add_paid(&mut self, t: &StatementTotals) -> Result<()> {
        self.payouts += 1;
        self.consultations += t.consultations + t.late_consultations;
        self.gross = self.gross.checked_add(&t.gross)?;
        self.deducted = self.deducted.checked_add(&t.deducted)?;
        self.net_paid = self.net_paid.checked_add(&t.net)?;
        for d in &t.deductions {
            match self.deductions.iter_mut().find(|y| y.name == d.name) {
                Some(y) => y.amount = y.amount.checked_add(&d.amount)?,
                None => self.deductions.push(d.clone()),
            }
        }
        Ok(())
    }
}

/// A doctor's year, for their tax return: what was paid in it, per currency (see the module's
/// docs for which payouts count).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct YearSummary {
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The doctor's name, when the directory knows the doctor.
    pub doctor_name: Option<String>,
    /// The calendar year (UTC).
    pub year: i32,
    /// The totals per currency, by currency code.
    pub totals: Vec<YearTotals>,
    /// The `PAID` payouts counted, in order of payment.
    pub paid: Vec<YearPayout>,
    /// The payouts paid in the year whose money came back, in order of payment: not counted.
    pub returned: Vec<YearPayout>,
}

/// The statement lines of a payout for `period` with these `items`, in order.
fn lines_of(items: Vec<PayoutItem>, period: Period) -> Vec<StatementLine> {
    items
        .into_iter()
        .map(|i| StatementLine {
            kind: LineKind::of(&i, period),
            reference: i.reference,
            occurred_at: i.occurred_at,
            description: i.description,
            amount: i.amount,
        })
        .collect()
}

/// The years a summary may be asked for.
pub const SUMMARY_YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

impl PayoutService {
    /// The statement of payout `id`: its lines and totals, the doctor's name and the payment
    /// method, masked. Doctors get only their own (another doctor's is `NotFound`, as if it did
    /// not exist); admins and system jobs any.
    ///
    /// Reads the payout, its items, its attempts (the method is where the latest attempt sent it)
    /// and the doctor's directory entry. The lines add up to the payout's amount (the store's
    /// invariant); a payout whose lines do not is refused with `InvalidInput` naming both figures,
    /// never printed with a total that is not its amount.
    pub async fn statement(&self, actor: &Actor, id: &PayoutId) -> Result<Statement> {
        let payout = self.visible(actor, id).await?;
        let items = self.store.items(id).await?;
        let attempts = self.store.attempts(id).await?;
        let recipient = self.directory.recipient(&payout.doctor_id).await?;
        let lines = lines_of(items, payout.period());
        let totals = StatementTotals::of(payout.currency(), &lines)?;
        if totals.net != payout.amount_due {
            return Err(Error::InvalidInput(format!(
                "payout {id}'s items add up to {}, not its amount {}",
                totals.net, payout.amount_due
            )));
        }
        let sent = attempts
            .iter()
            .rev()
            .find_map(|a| a.destination.as_ref().map(|d| (a.provider, mask_destination(d))));
        let from_directory = || {
            let r = recipient.as_ref()?;
            let provider = payout.provider.or(r.preferred_provider)?;
            r.destination(provider).map(|d| (provider, mask_destination(&d)))
        };
        let method = sent
            .or_else(from_directory)
            .map(|(provider, masked)| PaymentMethod { provider, masked });
        Ok(Statement {
            doctor_name: recipient.map(|r| r.name),
            payout,
            lines,
            totals,
            method,
        })
    }

    /// [`statement`](Self::statement) as CSV ([`Statement::to_csv`]). A doctor needs a plan with
    /// `earnings_export` ([`Error::PremiumRequired`] otherwise, checked before anything is read);
    /// admins and system jobs do not.
    pub async fn statement_csv(&self, actor: &Actor, id: &PayoutId) -> Result<String> {
        if let Actor::Doctor { doctor_id } = actor {
            if !self.feature_access(doctor_id.as_str()).await?.earnings_export {
                return Err(Error::PremiumRequired {
                    what: "CSV statements",
                    feature: "earnings_export",
                });
            }
        }
        Ok(self.statement(actor, id).await?.to_csv())
    }

    /// Doctor `doctor`'s year `year` (UTC), for their tax return: gross earnings, deductions by
    /// name and net paid per currency over the `PAID` payouts whose payment was confirmed in the
    /// year, and the returned or reversed ones listed apart (see the module's docs). A doctor may
    /// ask for their own only (`Forbidden` otherwise); admins and system jobs for anyone. A year
    /// outside [`SUMMARY_YEARS`] is `InvalidInput`.
    ///
    /// Reads the doctor's payouts created up to the year's end through the list's doctor filter
    /// (the store's doctor index, keyset pages; a payout is never paid before it is created, but
    /// may be paid long after), then the items of those counted, one read each.
    pub async fn year_summary(&self, actor: &Actor, doctor: &DoctorId, year: i32) -> Result<YearSummary> {
        match actor {
            Actor::Doctor { doctor_id } if doctor_id != doctor => {
                return Err(Error::Forbidden("a doctor's summary is their own".into()));
            }
            _ => {}
        }
        if !SUMMARY_YEARS.contains(&year) {
            return Err(Error::InvalidInput(format!(
                "year must be {} to {}, not {year}",
                SUMMARY_YEARS.start(),
                SUMMARY_YEARS.end()
            )));
        }
        let in_year = |at: DateTime<Utc>| at.year() == year;
        let year_end =
            NaiveDate::from_ymd_opt(year, 12, 31).ok_or_else(|| Error::InvalidInput(format!("no such year {year}")))?;
        let filter = PayoutFilter {
            doctor_id: Some(doctor.clone()),
            created_to: Some(year_end),
            ..Default::default()
        };
        let mut paid = Vec::new();
        let mut returned = Vec::new();
        let mut page = Page::new(Page::MAX_LIMIT, 0);
        loop {
            let found = self.store.list(&filter, &page).await?;
            for p in found.payouts {
                let Some(at) = p.processed_at.filter(|at| in_year(*at)) else {
                    continue;
                };
                match p.status {
                    PayoutStatus::Paid => paid.push((at, p)),
                    PayoutStatus::Returned | PayoutStatus::Reversed => returned.push((at, p)),
                    _ => {}
                }
            }
            // Every store gives the next page's cursor after a full page.
            match found.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        paid.sort_by(|a, b| (a.0, a.1.id.as_str()).cmp(&(b.0, b.1.id.as_str())));
        returned.sort_by(|a, b| (a.0, a.1.id.as_str()).cmp(&(b.0, b.1.id.as_str())));
        let mut totals: BTreeMap<String, YearTotals> = BTreeMap::new();
        for (_, p) in &paid {
            let items = self.store.items(&p.id).await?;
            let t = StatementTotals::of(p.currency(), &lines_of(items, p.period()))?;
            totals
                .entry(p.currency().code().to_string())
                .or_insert_with(|| YearTotals::new(p.currency()))
                .add_paid(&t)?;
        }
        for (_, p) in &returned {
            let y = totals
                .entry(p.currency().code().to_string())
                .or_insert_with(|| YearTotals::new(p.currency()));
            y.returned += 1;
            y.returned_amount = y.returned_amount.checked_add(&p.amount_due)?;
        }
        let listed = |v: Vec<(DateTime<Utc>, Payout)>| {
            v.into_iter()
                .map(|(paid_at, p)| YearPayout {
                    id: p.id,
                    status: p.status,
                    period_start: p.period_start,
                    period_end: p.period_end,
                    paid_at,
                    amount: p.amount_due,
                })
                .collect::<Vec<_>>()
        };
        let doctor_name = self.directory.recipient(doctor).await?.map(|r| r.name);
        Ok(YearSummary {
            doctor_id: doctor.clone(),
            doctor_name,
            year,
            totals: totals.into_values().collect(),
            paid: listed(paid),
            returned: listed(returned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BankAccount;
    use chrono::TimeZone;

    fn line(kind: LineKind, reference: &str, minor: i64) -> StatementLine {
        StatementLine {
            kind,
            reference: reference.into(),
            occurred_at: Utc.with_ymd_and_hms(2025, 1, 5, 0, 0, 0).unwrap(),
            description: String::new(),
            amount: Money::from_minor_units(minor, Currency::KES),
        }
    }

    #[test]
    fn totals_split_gross_and_deductions_and_add_up_to_the_lines() {
        let lines = vec![
            line(LineKind::Consultation, "a1", 50_000),
            line(LineKind::Consultation, "a2", 50_000),
            line(LineKind::LateConsultation, "a0", 50_000),
            line(LineKind::CarryOver, "2024-12", 12_345),
            line(LineKind::Clawback, "a-9", -50_000),
            line(LineKind::Deduction, "platform_fee", -11_235),
            line(LineKind::Deduction, "withholding_tax", -5_617),
            line(LineKind::Deduction, "platform_fee", -1),
        ];
        let t = StatementTotals::of(Currency::KES, &lines).unwrap();
        let kes = |minor| Money::from_minor_units(minor, Currency::KES);
        assert_eq!((t.consultations, t.consultation_earnings), (2, kes(100_000)));
        assert_eq!((t.late_consultations, t.late_earnings), (1, kes(50_000)));
        assert_eq!(t.carried_over, kes(12_345));
        assert_eq!(t.clawbacks, kes(-50_000));
        assert_eq!(t.gross, kes(112_345));
        assert_eq!(
            t.deductions,
            vec![
                DeductionTotal {
                    name: "platform_fee".into(),
                    amount: kes(11_236)
                },
                DeductionTotal {
                    name: "withholding_tax".into(),
                    amount: kes(5_617)
                },
            ]
        );
        assert_eq!(t.deducted, kes(16_853));
        assert_eq!(t.net, kes(112_345 - 16_853));
        let sum = Money::sum(Currency::KES, lines.iter().map(|l| &l.amount)).unwrap();
        assert_eq!(t.net, sum);
        // A line in another currency is refused, never added.
        let mut usd = lines.clone();
        usd.push(StatementLine {
            amount: Money::from_minor_units(1, Currency::USD),
            ..line(LineKind::Adjustment, "x", 0)
        });
        assert!(StatementTotals::of(Currency::KES, &usd).is_err());
    }

    #[test]
    fn destinations_are_masked_for_printing() {
        let phone = PayoutDestination::MpesaPhone {
            phone: "254712345678".into(),
        };
        assert_eq!(mask_destination(&phone), "M-Pesa 2547*****678");
        let bank = PayoutDestination::Bank(BankAccount {
            account_name: "Dr A".into(),
            account_number: "0123456789".into(),
            bank_name: Some("KCB".into()),
            ..Default::default()
        });
        assert_eq!(mask_destination(&bank), "KCB ****6789");
        let email = PayoutDestination::PaypalEmail {
            email: "doctor@example.com".into(),
        };
        assert_eq!(mask_destination(&email), "PayPal d***@example.com");
        let stripe = PayoutDestination::StripeAccount {
            account_id: "acct_1Abc2345".into(),
        };
        assert_eq!(mask_destination(&stripe), "Stripe account ****2345");
        assert_eq!(
            mask_destination(&PayoutDestination::MpesaPhone { phone: "123".into() }),
            "M-Pesa ***"
        );
    }

    #[test]
    fn the_csv_keeps_amounts_numeric_and_neutralizes_text() {
        let payout = Payout::pending(
            PayoutId::new("po-1"),
            DoctorId::new("dr-a"),
            Period::new(
                NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
                NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
            )
            .unwrap(),
            Money::from_minor_units(40_000, Currency::KES),
            crate::domain::PayoutOrigin::Calculated,
            "system:test".into(),
            Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap(),
        );
        let mut hostile = line(LineKind::Consultation, "=cmd|' /C calc'!A0", 50_000);
        hostile.description = "a, \"quoted\" one".into();
        let lines = vec![hostile, line(LineKind::Deduction, "platform_fee", -10_000)];
        let statement = Statement {
            totals: StatementTotals::of(Currency::KES, &lines).unwrap(),
            payout,
            doctor_name: None,
            lines,
            method: None,
        };
        let csv = statement.to_csv();
        let rows: Vec<&str> = csv.trim_end().split("\r\n").collect();
        assert_eq!(rows[0], STATEMENT_CSV_HEADER.join(","));
        assert_eq!(
            rows[1],
            "po-1,2025-01-01,2025-01-31,PENDING,CONSULTATION,'=cmd|' /C calc'!A0,2025-01-05T00:00:00Z,\"a, \"\"quoted\"\" one\",500.00,KES"
        );
        assert_eq!(
            rows[2],
            "po-1,2025-01-01,2025-01-31,PENDING,DEDUCTION,platform_fee,2025-01-05T00:00:00Z,,-100.00,KES"
        );
    }
}
