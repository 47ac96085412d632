//! Decimal text at the edges: amounts are read exactly from plain decimal text, and from JSON numbers
//! only where the number's text can be recovered exactly.

use rust_decimal::Decimal;

use super::MoneyError;

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
    use std::fmt;

    use rust_decimal::Decimal;
    use serde::{Deserializer, Serializer};

    use super::parse_decimal;

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
