//! Exact money: a [`Decimal`] amount in an ISO 4217 [`Currency`] that knows its exponent.
//!
//! There is no floating point anywhere here. An amount with more decimals than its currency allows is
//! refused ([`MoneyError::TooPrecise`]), never rounded; rounding happens only where a caller asks for it
//! explicitly ([`Money::percentage`]).

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// ISO 4217 codes with their exponents (minor-unit digits). Active codes; funds codes left out.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWL", 2),
];

/// An ISO 4217 currency: its three-letter code and its exponent (how many minor-unit digits it has).
///
/// ```
/// use payout_core::money::Currency;
/// assert_eq!(Currency::KES.exponent(), 2);
/// assert_eq!("jpy".parse::<Currency>().unwrap().exponent(), 0);
/// assert!("XYZ".parse::<Currency>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    /// Kenyan shilling, the default currency.
    pub const KES: Currency = Currency {
        code: *b"KES",
        exponent: 2,
    };
    /// US dollar.
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };
    /// Euro.
    pub const EUR: Currency = Currency {
        code: *b"EUR",
        exponent: 2,
    };
    /// Pound sterling.
    pub const GBP: Currency = Currency {
        code: *b"GBP",
        exponent: 2,
    };
    /// Japanese yen (no minor unit).
    pub const JPY: Currency = Currency {
        code: *b"JPY",
        exponent: 0,
    };

    /// Looks a code up (case-insensitive).
    pub fn from_code(code: &str) -> Result<Self, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(c, e)| {
                let b = c.as_bytes();
                Currency {
                    code: [b[0], b[1], b[2]],
                    exponent: *e,
                }
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
    }

    /// The uppercase three-letter code, e.g. `"KES"`.
    pub fn code(&self) -> &str {
        // The table holds ASCII only.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// How many decimal places the currency has (KES 2, JPY 0, KWD 3).
    pub fn exponent(&self) -> u32 {
        u32::from(self.exponent)
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::KES
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
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
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// `self - other`; both must be in the same currency.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_sub(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// `self * n`, e.g. a rate times a number of consultations.
    pub fn checked_mul(&self, n: i64) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(Decimal::from(n)).ok_or(MoneyError::Overflow)?;
        let mut amount = amount;
        amount.rescale(self.currency.exponent());
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// The negated amount (a deduction).
    pub fn negate(&self) -> Money {
        Money {
            amount: -self.amount,
            currency: self.currency,
        }
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
        Ok(Money {
            amount,
            currency: self.currency,
        })
    }

    /// Sums amounts in `currency`; any other currency is an error.
    pub fn sum<'a>(currency: Currency, items: impl IntoIterator<Item = &'a Money>) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
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

/// Parses decimal text exactly: plain notation only (`"12.50"`, `"-3"`), no exponent, no separators.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let t = text.trim();
    let valid = !t.is_empty()
        && t.len() <= 40
        && t.strip_prefix('-')
            .unwrap_or(t)
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && t.chars().filter(|c| *c == '.').count() <= 1
        && t.chars().any(|c| c.is_ascii_digit());
    if !valid {
        return Err(MoneyError::Invalid(text.to_string()));
    }
    Decimal::from_str_exact(t).map_err(|_| MoneyError::Invalid(text.to_string()))
}

/// Serde helpers for amounts: serialized as exact decimal strings; on input both strings (`"500.00"`)
/// and JSON numbers (`500`, `500.5`) are accepted.
///
/// A JSON number reaches serde either as an integer (exact) or, with a fraction, as the parser's
/// binary value; that value is turned back into the shortest decimal text that reads back to it,
/// which is the text the client wrote for any number of up to 15 significant digits. Longer
/// fractional numbers are refused: send those as strings.
pub mod decimal_serde {
    use super::*;

    /// Writes the decimal as a string.
    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    /// Reads a string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }

    struct DecimalVisitor;

    impl serde::de::Visitor<'_> for DecimalVisitor {
        type Value = Decimal;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal amount as a string or a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Decimal, E> {
            parse_decimal(v).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Decimal, E> {
            Ok(Decimal::from(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Decimal, E> {
            // Shortest round-trip text of the parsed literal; never arithmetic on the binary value.
            let text = format!("{v}");
            let significant = text.chars().filter(|c| c.is_ascii_digit()).collect::<String>();
            if !v.is_finite() || significant.trim_start_matches('0').len() > 15 || text.contains('e') {
                return Err(E::custom(format!(
                    "the number {text} cannot be read exactly; send the amount as a decimal string"
                )));
            }
            parse_decimal(&text).map_err(E::custom)
        }
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
    fn exponents_come_from_iso_4217() {
        assert_eq!(Currency::from_code("KES").unwrap().exponent(), 2);
        assert_eq!(Currency::from_code("usd").unwrap().exponent(), 2);
        assert_eq!(Currency::from_code("EUR").unwrap().exponent(), 2);
        assert_eq!(Currency::from_code("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::from_code("KWD").unwrap().exponent(), 3);
        assert!(matches!(
            Currency::from_code("ABC"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert_eq!(Currency::default(), Currency::KES);
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
