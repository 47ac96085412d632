//! `Money::parse`, `parse_decimal` and `Currency::from_code` on arbitrary text.
//!
//! Properties: an accepted amount is held at its currency's scale, prints back to text that parses to
//! the same amount, and round-trips through minor units when they fit; an accepted currency code
//! names itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payout_core::money::{Currency, Money, parse_decimal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = parse_decimal(text) {
        let again = parse_decimal(&d.to_string()).expect("a parsed decimal prints as parsable text");
        assert_eq!(again, d, "{text:?}");
    }
    let kwd = Currency::from_code("KWD").expect("KWD");
    for currency in [Currency::KES, Currency::JPY, Currency::USD, kwd] {
        let Ok(m) = Money::parse(text, currency) else { continue };
        assert_eq!(m.currency(), currency);
        assert_eq!(m.amount().scale(), currency.exponent(), "{text:?} in {currency}");
        let back = Money::parse(&m.amount_str(), currency).expect("an amount prints as parsable text");
        assert_eq!(back, m, "{text:?} in {currency}");
        assert_eq!(m.is_negative(), m.amount().is_sign_negative() && !m.amount().is_zero());
        if let Ok(units) = m.to_minor_units() {
            assert_eq!(Money::from_minor_units(units, currency), m, "{text:?} in {currency}");
        }
    }
    if let Ok(c) = Currency::from_code(text) {
        assert_eq!(c.code().len(), 3);
        assert!(c.code().bytes().all(|b| b.is_ascii_uppercase()));
        assert_eq!(Currency::from_code(c.code()), Ok(c));
    }
});
