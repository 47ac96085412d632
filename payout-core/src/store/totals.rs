//! Summary totals of the stored payouts: how many and how much per status, provider and currency
//! ([`PayoutStore::totals`](super::PayoutStore::totals)), and what was paid per month
//! ([`PayoutStore::paid_by_month`](super::PayoutStore::paid_by_month)).
//!
//! Amounts are never converted: every figure is in one currency. The SQL stores keep these figures
//! in tallies updated by triggers in the same transaction as every change, so reading them costs a
//! few hundred tally rows, however many payouts there are.

use chrono::{Datelike, Months, NaiveDate};

use crate::domain::{Payout, Provider};
use crate::error::{Error, Result};
use crate::money::{Currency, Money, MoneyError};
use crate::status::PayoutStatus;

/// Which payouts [`PayoutStore::totals`](super::PayoutStore::totals) counts. The default counts every
/// payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TotalsFilter {
    /// Only payouts with this provider.
    pub provider: Option<Provider>,
    /// Only payouts in this currency.
    pub currency: Option<Currency>,
}

impl TotalsFilter {
    /// True when `p` is counted.
    pub fn matches(&self, p: &Payout) -> bool {
        self.provider.is_none_or(|v| p.provider == Some(v)) && self.currency.is_none_or(|c| p.currency() == c)
    }
}

/// How many payouts have one status, provider and currency, and how much they add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTally {
    /// Their status.
    pub status: PayoutStatus,
    /// Their provider (`None`: none chosen yet).
    pub provider: Option<Provider>,
    /// Their currency.
    pub currency: Currency,
    /// How many there are (never 0: empty buckets are left out).
    pub count: u64,
    /// The sum of their `amount_due`.
    pub amount: Money,
}

/// What was paid in one month, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthTotal {
    /// The month: its first day. The month the payouts were **created** in (UTC), which for a
    /// calculated payout is when its period was calculated, not when the provider paid it.
    pub month: NaiveDate,
    /// The currency.
    pub currency: Currency,
    /// How many `PAID` payouts.
    pub count: u64,
    /// What they add up to.
    pub amount: Money,
}

/// The first day of `day`'s month.
pub fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// `total + amount_minor`, refusing (never wrapping) a sum that does not fit in 64-bit minor units,
/// as the SQL stores' tallies refuse it.
pub(crate) fn add_minor(total: i64, amount_minor: i64) -> Result<i64> {
    total
        .checked_add(amount_minor)
        .ok_or(Error::Money(MoneyError::Overflow))
}

/// Sorts tallies the way every store answers them: by status ([`PayoutStatus::ALL`]'s order), then
/// provider (none first), then currency code.
pub fn sort_tallies(tallies: &mut [StatusTally]) {
    tallies.sort_by(|a, b| (a.status, a.provider, a.currency.code()).cmp(&(b.status, b.provider, b.currency.code())));
}

/// The months of a chart: `months` of them, ending with `last`'s month, oldest first (at least one).
pub fn month_range(last: NaiveDate, months: u32) -> Vec<NaiveDate> {
    let last = first_of_month(last);
    let months = months.max(1);
    (0..months)
        .rev()
        .filter_map(|back| last.checked_sub_months(Months::new(back)))
        .collect()
}

/// `rows` (as [`PayoutStore::paid_by_month`](super::PayoutStore::paid_by_month) answers them) laid
/// over `months`: for each currency that has a row in them, one [`MonthTotal`] per month, zero where
/// nothing was paid; by currency code, then month. Rows outside `months` are left out.
pub fn fill_months(months: &[NaiveDate], rows: &[MonthTotal]) -> Vec<MonthTotal> {
    let mut currencies: Vec<Currency> = rows
        .iter()
        .filter(|r| months.contains(&r.month))
        .map(|r| r.currency)
        .collect();
    currencies.sort_by(|a, b| a.code().cmp(b.code()));
    currencies.dedup();
    let mut out = Vec::with_capacity(currencies.len() * months.len());
    for currency in currencies {
        for &month in months {
            let found = rows.iter().find(|r| r.month == month && r.currency == currency);
            out.push(found.cloned().unwrap_or(MonthTotal {
                month,
                currency,
                count: 0,
                amount: Money::zero(currency),
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_month_range_ends_with_the_given_month() {
        assert_eq!(
            month_range(day(2025, 2, 17), 3),
            vec![day(2024, 12, 1), day(2025, 1, 1), day(2025, 2, 1)]
        );
        assert_eq!(month_range(day(2025, 2, 17), 0), vec![day(2025, 2, 1)]);
    }

    #[test]
    fn filled_months_have_zeros_where_nothing_was_paid() {
        let months = month_range(day(2025, 3, 1), 3);
        let paid = |m, currency, minor| MonthTotal {
            month: day(2025, m, 1),
            currency,
            count: 1,
            amount: Money::from_minor_units(minor, currency),
        };
        let rows = vec![
            paid(3, Currency::USD, 700),
            paid(1, Currency::KES, 100),
            // Before the range: left out.
            paid(2, Currency::JPY, 5),
        ];
        let rows = {
            let mut r = rows;
            r[2].month = day(2024, 12, 1);
            r
        };
        let filled = fill_months(&months, &rows);
        let seen: Vec<(&str, u32, u64, String)> = filled
            .iter()
            .map(|t| (t.currency.code(), t.month.month(), t.count, t.amount.to_string()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("KES", 1, 1, "1.00 KES".to_string()),
                ("KES", 2, 0, "0.00 KES".to_string()),
                ("KES", 3, 0, "0.00 KES".to_string()),
                ("USD", 1, 0, "0.00 USD".to_string()),
                ("USD", 2, 0, "0.00 USD".to_string()),
                ("USD", 3, 1, "7.00 USD".to_string()),
            ]
        );
    }
}
