//! Helpers shared by the facade's integration tests.
#![allow(dead_code)]

use payouts::PayoutService;
use payouts::domain::{Actor, PayoutId, Period};
use payouts::service::CalculationPolicy;

/// January 2025, the period the tests calculate.
pub fn january() -> Period {
    payout_core::testkit::fixtures::month(2025, 1)
}

/// Calculates `period` at the default rate and returns the ids of the payouts it created, sorted,
/// after checking there are `expected` of them (one per doctor).
pub async fn calculate(service: &PayoutService, period: Period, expected: usize) -> Vec<PayoutId> {
    let report = service
        .calculate_period(&Actor::admin("calculator"), Some(period), &CalculationPolicy::default())
        .await
        .expect("calculating the period");
    assert_eq!(report.created.len(), expected, "one payout per doctor: {report:?}");
    let mut ids = report.created;
    ids.sort();
    ids
}
