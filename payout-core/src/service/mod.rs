//! The engine.

/// The engine.
pub struct PayoutService {}
/// Policy.
#[derive(Debug, Default)]
pub struct CalculationPolicy {}
/// Deduction.
pub struct Deduction {}
