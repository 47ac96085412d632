//! The server's JSON request bodies through serde_json, as the API reads them: `CreatePayout` (then its
//! amount and currency as `create_payout` reads them), `PatchPayout`, `BulkRequest`, and the query
//! structs `ListQuery` and `HistoryQuery` (which the server fills from a JSON object of strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use payout_core::money::{Currency, Money, decimal_serde};
use payout_server::api::{BulkRequest, CreatePayout, HistoryQuery, ListQuery, PatchPayout};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = serde_json::from_slice::<CreatePayout>(data) {
        let currency = match body.currency.as_deref() {
            Some(c) => Currency::from_code(c).ok(),
            None => Some(Currency::KES),
        };
        let text = match &body.amount {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if let (Some(currency), Some(text)) = (currency, text)
            && let Ok(amount) = decimal_serde::deserialize(Value::String(text))
            && let Ok(m) = Money::new(amount, currency)
        {
            assert_eq!(m.amount().scale(), currency.exponent());
        }
    }
    let _ = serde_json::from_slice::<PatchPayout>(data);
    if let Ok(b) = serde_json::from_slice::<BulkRequest>(data) {
        let _ = b.payout_ids().len();
    }
    let _ = serde_json::from_slice::<ListQuery>(data);
    let _ = serde_json::from_slice::<HistoryQuery>(data);
});
