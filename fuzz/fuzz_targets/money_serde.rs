//! The decimal serde visitor (`payout_core::money::decimal_serde`) and `Money`'s `Deserialize`, through
//! serde_json, on arbitrary JSON.
//!
//! Properties: an accepted `Money` serializes and reads back to itself; an amount accepted from a JSON
//! number with a fraction is the text the client wrote (it reads back to the same `f64`), never the
//! binary value's arithmetic expansion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payout_core::money::{Money, decimal_serde};
use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Deserialize)]
struct Amount {
    #[serde(with = "decimal_serde")]
    amount: Decimal,
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = serde_json::from_slice::<Money>(data) {
        let json = serde_json::to_string(&m).expect("Money serializes");
        let back: Money = serde_json::from_str(&json).expect("serialized Money reads back");
        assert_eq!(back, m, "{json}");
    }
    if let Ok(a) = serde_json::from_slice::<Amount>(data) {
        let d = a.amount;
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data)
            && let Some(n) = v.get("amount").and_then(|n| n.as_number())
        {
            if n.is_f64() {
                let f = n.as_f64().expect("an f64");
                let reread: f64 = d.to_string().parse().expect("decimal text is a float");
                assert_eq!(reread, f, "amount {d} from the number {n}");
            } else {
                assert_eq!(d.to_string(), n.to_string(), "an integer is taken as written");
            }
        }
    }
    // The bare visitor on any JSON value.
    let mut de = serde_json::Deserializer::from_slice(data);
    let _ = decimal_serde::deserialize(&mut de);
});
