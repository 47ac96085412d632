//! Exact money: a [`Decimal`] amount in an ISO 4217 [`Currency`] that knows its exponent.
//!
//! There is no floating point anywhere here. An amount with more decimals than its currency allows is
//! refused ([`MoneyError::TooPrecise`]), never rounded; rounding happens only where a caller asks for it
//! explicitly ([`Money::percentage`]).

mod currency;
mod decimal;

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use currency::Currency;
pub use decimal::{decimal_serde, parse_decimal};

/// An error building or combining [`Money`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The currency code is not an ISO 4217 code this library knows.
    #[error("unknown currency code {0:?} (expected an ISO 4217 code such as KES, USD, EUR, JPY)")]
    UnknownCurrency(String),
    /// The text is not a decimal number.
    #[error("{0:?} is not a decimal amount")]
    Invalid(String),
    /// The amount has more decimal places than the currency has minor units.
    #[error("{amount} has more decimal places than {currency} allows ({exponent})")]
    TooPrecise {
        /// The amount as given.
        amount: String,
        /// Its currency.
        currency: Currency,
        /// How many decimal places the currency allows.
        exponent: u32,
    },
    /// Two amounts in different currencies were combined.
    #[error("cannot combine {0} and {1} amounts")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit.
    #[error("amount overflow")]
    Overflow,
}

/// An exact amount of money in one currency, always held at the currency's scale
/// (`500` KES is held as `500.00`).
///
/// ```
/// use payout_core::money::{Currency, Money};
/// let fee = Money::parse("500", Currency::KES).unwrap();
/// assert_eq!(fee.to_string(), "500.00 KES");
/// assert_eq!(fee.to_minor_units().unwrap(), 50_000);
/// assert!(Money::parse("10.005", Currency::KES).is_err()); // never rounded silently
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Builds an amount, refusing more decimal places than `currency` has. Trailing zeros are fine
    /// (`100.00` JPY is 100 JPY); `0.001` KES is not.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let normalized = amount.normalize();
        if normalized.scale() > currency.exponent() {
            return Err(MoneyError::TooPrecise {
                amount: amount.to_string(),
                currency,
                exponent: currency.exponent(),
            });
        }
        let mut amount = normalized;
        amount.rescale(currency.exponent());
        if amount.scale() != currency.exponent() {
            // `rescale` never fails: an amount with too many integer digits to be held at the currency's
            // scale (over 28 digits in all) keeps a smaller scale instead. Refuse it.
            return Err(MoneyError::Overflow);
        }
        Ok(Money { amount, currency })
    }

    /// Parses a decimal string such as `"1500.50"`.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let amount = parse_decimal(text)?;
        Money::new(amount, currency)
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        let mut amount = Decimal::ZERO;
        amount.rescale(currency.exponent());
        Money { amount, currency }
    }

    /// An amount from integer minor units (cents; whole yen for JPY).
    pub fn from_minor_units(units: i64, currency: Currency) -> Self {
        Money {
            amount: Decimal::new(units, currency.exponent()),
            currency,
        }
    }

    /// The amount in integer minor units (`12.34` USD is `1234`; `500` JPY is `500`).
    pub fn to_minor_units(&self) -> Result<i64, MoneyError> {
        let mut m = self.amount.mantissa();
        // `amount` is always held at the currency's scale, so the mantissa is the minor-unit count.
        let scale = self.amount.scale();
        let exp = self.currency.exponent();
        if scale < exp {
            for _ in scale..exp {
                m = m.checked_mul(10).ok_or(MoneyError::Overflow)?;
            }
        }
        i64::try_from(m).map_err(|_| MoneyError::Overflow)
    }

    /// The decimal amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// True when the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// True when the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    /// The amount as exact decimal text at the currency's scale, e.g. `"500.00"`.
    pub fn amount_str(&self) -> String {
        self.amount.to_string()
    }

    /// `self + other`; both must be in the same currency.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_add(other.amount).ok_or(MoneyError::Overflow)?;
        self.at_scale(amount)
    }

    /// `self - other`; both must be in the same currency.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_sub(other.amount).ok_or(MoneyError::Overflow)?;
        self.at_scale(amount)
    }

    /// `self * n`, e.g. a rate times a number of consultations.
    pub fn checked_mul(&self, n: i64) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(Decimal::from(n)).ok_or(MoneyError::Overflow)?;
        let mut amount = amount;
        amount.rescale(self.currency.exponent());
        self.at_scale(amount)
    }

    /// The negated amount (a deduction).
    pub fn negate(&self) -> Money {
        self.with_amount(-self.amount)
    }

    /// `percent`% of this amount, rounded *explicitly* to the currency's minor unit with `rounding`
    /// (used for deductions such as a platform fee or withholding tax).
    pub fn percentage(&self, percent: Decimal, rounding: RoundingStrategy) -> Result<Money, MoneyError> {
        let raw = self
            .amount
            .checked_mul(percent)
            .and_then(|v| v.checked_div(Decimal::ONE_HUNDRED))
            .ok_or(MoneyError::Overflow)?;
        let mut amount = raw.round_dp_with_strategy(self.currency.exponent(), rounding);
        amount.rescale(self.currency.exponent());
        Ok(self.with_amount(amount))
    }

    /// Sums amounts in `currency`; any other currency is an error.
    pub fn sum<'a>(currency: Currency, items: impl IntoIterator<Item = &'a Money>) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// The result of arithmetic on amounts at the currency's scale. `Decimal` keeps a result whose
    /// digits do not all fit by dropping decimal places (rounding), never by failing: a result that
    /// is no longer at the currency's scale was rounded, and is refused as an overflow.
    fn at_scale(&self, amount: Decimal) -> Result<Money, MoneyError> {
        if amount.scale() != self.currency.exponent() {
            return Err(MoneyError::Overflow);
        }
        Ok(self.with_amount(amount))
    }

    /// `amount` in this amount's currency; the caller keeps it at the currency's scale.
    fn with_amount(&self, amount: Decimal) -> Money {
        Money {
            amount,
            currency: self.currency,
        }
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }
}

impl PartialOrd for Money {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.currency == other.currency).then(|| self.amount.cmp(&other.amount))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Money", 2)?;
        st.serialize_field("amount", &self.amount.to_string())?;
        st.serialize_field("currency", &self.currency)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(with = "decimal_serde")]
            amount: Decimal,
            #[serde(default)]
            currency: Currency,
        }
        let raw = Raw::deserialize(d)?;
        Money::new(raw.amount, raw.currency).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kes(s: &str) -> Money {
        Money::parse(s, Currency::KES).unwrap()
    }

    #[test]
    fn too_many_decimals_is_an_error_not_a_rounding() {
        assert!(matches!(
            Money::parse("10.001", Currency::KES),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            Money::parse("10.5", Currency::JPY),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert_eq!(Money::parse("10.000", Currency::KES).unwrap().amount_str(), "10.00");
        assert_eq!(Money::parse("100.00", Currency::JPY).unwrap().amount_str(), "100");
        assert_eq!(
            Money::parse("1.234", Currency::from_code("KWD").unwrap())
                .unwrap()
                .amount_str(),
            "1.234"
        );
    }

    /// Found by the `money_parse` fuzz target: Decimal::MAX was accepted in KES but held at scale 0.
    #[test]
    fn amounts_that_cannot_be_held_at_the_currency_scale_are_refused() {
        for text in ["79228162514264337593543950335", "1000000000000000000000000000"] {
            assert_eq!(Money::parse(text, Currency::KES), Err(MoneyError::Overflow), "{text}");
        }
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(
            Money::parse("79228162514264337593543951", kwd),
            Err(MoneyError::Overflow)
        );
        // The largest amounts that fit are still accepted, at the currency's scale.
        let m = Money::parse("792281625142643375935439503.35", Currency::JPY);
        assert!(matches!(m, Err(MoneyError::TooPrecise { .. })));
        for text in ["792281625142643375935439503", "792281625142643375935439503.35"] {
            assert_eq!(Money::parse(text, Currency::KES).unwrap().amount().scale(), 2, "{text}");
        }
        assert_eq!(
            Money::parse("79228162514264337593543950335", Currency::JPY)
                .unwrap()
                .amount_str(),
            "79228162514264337593543950335"
        );
    }

    /// `Decimal` rounds a sum whose digits do not all fit (`...503.35 + ...503.34` became `...006.7`):
    /// found by the funds check's tests. Such a result is an overflow, never a rounded amount.
    #[test]
    fn arithmetic_that_would_round_is_an_overflow() {
        let big = kes("792281625142643375935439503.35");
        let other = kes("792281625142643375935439503.34");
        assert_eq!(big.checked_add(&other), Err(MoneyError::Overflow));
        assert_eq!(big.checked_add(&big), Err(MoneyError::Overflow));
        assert_eq!(big.negate().checked_sub(&other), Err(MoneyError::Overflow));
        assert_eq!(big.checked_mul(2), Err(MoneyError::Overflow));
        // Results that fit stay exact at the currency's scale.
        assert_eq!(other.checked_add(&kes("0.01")).unwrap(), big);
        assert_eq!(
            Money::sum(Currency::KES, &[kes("792281625142643375935439500"), kes("3.35")]).unwrap(),
            big
        );
        assert_eq!(big.checked_sub(&other).unwrap(), kes("0.01"));
    }

    #[test]
    fn minor_units_round_trip() {
        let m = kes("1234.56");
        assert_eq!(m.to_minor_units().unwrap(), 123_456);
        assert_eq!(Money::from_minor_units(123_456, Currency::KES), m);
        let y = Money::parse("500", Currency::JPY).unwrap();
        assert_eq!(y.to_minor_units().unwrap(), 500);
        assert_eq!(Money::from_minor_units(500, Currency::JPY), y);
        assert_eq!(Money::from_minor_units(-5, Currency::USD).amount_str(), "-0.05");
    }

    #[test]
    fn rejects_non_decimal_text() {
        for bad in [
            "", "abc", "1e3", "1,000", "1.2.3", "--1", "NaN", "inf", "+-", ".", "0x10",
        ] {
            assert!(Money::parse(bad, Currency::KES).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn arithmetic_is_exact_and_currency_checked() {
        let total = Money::sum(Currency::KES, &[kes("0.10"), kes("0.20")]).unwrap();
        assert_eq!(total, kes("0.30"));
        assert_eq!(kes("500").checked_mul(3).unwrap(), kes("1500"));
        assert!(matches!(
            kes("1").checked_add(&Money::parse("1", Currency::USD).unwrap()),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(kes("10").checked_sub(&kes("12.5")).unwrap(), kes("-2.5"));
        assert!(kes("-1").is_negative());
    }

    #[test]
    fn percentage_rounds_explicitly() {
        let gross = kes("1234.55");
        // 10% = 123.455 -> half away from zero 123.46, half even 123.46 (5 after 5 -> even 6)
        assert_eq!(
            gross
                .percentage(Decimal::TEN, RoundingStrategy::MidpointAwayFromZero)
                .unwrap(),
            kes("123.46")
        );
        assert_eq!(
            gross.percentage(Decimal::TEN, RoundingStrategy::ToZero).unwrap(),
            kes("123.45")
        );
        let yen = Money::parse("999", Currency::JPY).unwrap();
        assert_eq!(
            yen.percentage(Decimal::new(5, 0), RoundingStrategy::MidpointAwayFromZero)
                .unwrap()
                .amount_str(),
            "50"
        );
    }

    #[test]
    fn serde_writes_strings_and_reads_strings_or_numbers() {
        let m = kes("500");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"500.00","currency":"KES"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        let n: Money = serde_json::from_str(r#"{"amount":500,"currency":"KES"}"#).unwrap();
        assert_eq!(n, m);
        let f: Money = serde_json::from_str(r#"{"amount":0.1,"currency":"USD"}"#).unwrap();
        assert_eq!(f.amount_str(), "0.10");
        let f: Money = serde_json::from_str(r#"{"amount":1234567.89,"currency":"USD"}"#).unwrap();
        assert_eq!(f.amount_str(), "1234567.89");
        let d: Money = serde_json::from_str(r#"{"amount":"7"}"#).unwrap();
        assert_eq!(d.currency(), Currency::KES);
        assert!(serde_json::from_str::<Money>(r#"{"amount":0.123,"currency":"KES"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1e5","currency":"KES"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":0.30000000000000004,"currency":"KES"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"XXX"}"#).is_err());
    }
}
