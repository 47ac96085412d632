//! Conformance suites for implementations of the core traits.
