//! What the engine tells operators: the names of the metrics it records through the
//! [`metrics`] facade, and the spans its work runs in.
//!
//! The engine depends on the facade only; a host installs the exporter it uses (the demo server
//! installs `metrics-exporter-prometheus`). Without a recorder installed every record is a no-op.
//!
//! | metric | kind | labels | what |
//! |---|---|---|---|
//! | [`SENDS`] | counter | `provider`, `outcome` | provider sends by their answer: `accepted`, `succeeded`, `failed`, `unknown` |
//! | [`SEND_SECONDS`] | histogram | `provider` | one send (or batch call) through the adapter, retries included |
//! | [`PROVIDER_CALL_SECONDS`] | histogram | `provider`, `endpoint`, `status` | one HTTP call of a `payout-providers` adapter (sends, lookups, tokens), by status class: `2xx`, `4xx`, `429`, `5xx`, `transport_error` |
//! | [`WEBHOOK_EVENTS`] | counter | `provider`, `result` | webhook events: `applied`, `ignored`, `flagged`, `duplicate`, `not_ours`; refused deliveries as `contradicted`, `unknown_reference`, `refused` |
//! | [`RECONCILE_CHECKS`] | counter | `result` | reconciliation checks: `settled`, `resent`, `pending`, `watched`, `idle`, `error` |
//! | [`RECONCILE_BACKLOG`] | gauge | | PROCESSING payouts, waiting for a webhook or reconciliation |
//! | [`ATTENTION`] | gauge | | payouts in the attention queue |
//! | [`PAYOUTS`] | gauge | `status` | payouts by status |
//!
//! The gauges are read from the store by [`PayoutService::publish_gauges`](crate::PayoutService::publish_gauges)
//! when the host asks (the demo server does after each reconciliation pass and on every scrape).
//!
//! Spans: `trigger` (`payout_id`, `provider`, `attempt_key`) around a single trigger,
//! `bulk_trigger` (`provider`, `payouts`) around a bulk one, and `provider_send` (`payout_id`,
//! `attempt_key`, `provider`) around every provider send, so an adapter's own logs carry all three.

use std::time::Duration;

use crate::domain::Provider;
use crate::error::{Error, ProviderError, ProviderErrorKind, WebhookError};
use crate::provider::{ProviderStatus, SendReceipt};
use crate::service::EventOutcome;

/// Counter: provider sends by `provider` and `outcome`.
pub const SENDS: &str = "payouts_sends_total";
/// Histogram (seconds): one provider send or batch call by `provider`.
pub const SEND_SECONDS: &str = "payouts_send_duration_seconds";
/// Histogram (seconds): one HTTP call of a provider adapter, by `provider`, `endpoint` (method and
/// path, ids written `{id}`) and `status` class. Recorded by `payout-providers`.
pub const PROVIDER_CALL_SECONDS: &str = "payouts_provider_call_duration_seconds";
/// Counter: webhook events by `provider` and `result`.
pub const WEBHOOK_EVENTS: &str = "payouts_webhook_events_total";
/// Counter: reconciliation checks by `result`.
pub const RECONCILE_CHECKS: &str = "payouts_reconcile_checks_total";
/// Gauge: PROCESSING payouts (the reconciliation backlog).
pub const RECONCILE_BACKLOG: &str = "payouts_reconcile_backlog";
/// Gauge: payouts a person should look at.
pub const ATTENTION: &str = "payouts_attention";
/// Gauge: payouts by `status`.
pub const PAYOUTS: &str = "payouts_payouts";

/// Registers the descriptions of the engine's metrics with the installed recorder (exporters
/// print them as `# HELP`). Call it once after installing one.
pub fn describe() {
    metrics::describe_counter!(
        SENDS,
        "Provider sends by provider and outcome (accepted, succeeded, failed, unknown)."
    );
    metrics::describe_histogram!(
        SEND_SECONDS,
        metrics::Unit::Seconds,
        "One provider send or batch call, the adapter's retries included."
    );
    metrics::describe_histogram!(
        PROVIDER_CALL_SECONDS,
        metrics::Unit::Seconds,
        "One HTTP call of a provider adapter by provider, endpoint and status class."
    );
    metrics::describe_counter!(
        WEBHOOK_EVENTS,
        "Webhook events by provider and result (not_ours: authentic, about nothing this engine sent)."
    );
    metrics::describe_counter!(RECONCILE_CHECKS, "Reconciliation checks by result.");
    metrics::describe_gauge!(
        RECONCILE_BACKLOG,
        "PROCESSING payouts, waiting for a webhook or reconciliation."
    );
    metrics::describe_gauge!(ATTENTION, "Payouts a person should look at (the attention queue).");
    metrics::describe_gauge!(PAYOUTS, "Payouts by status.");
}

/// The `outcome` label of a send's answer, as the attempt records it.
pub(crate) fn send_outcome(result: &std::result::Result<SendReceipt, ProviderError>) -> &'static str {
    match result {
        Ok(r) => match r.status {
            ProviderStatus::Accepted => "accepted",
            ProviderStatus::Failed(_) => "failed",
            ProviderStatus::NotFound | ProviderStatus::Undetermined(_) => "unknown",
            _ => "succeeded",
        },
        Err(e) if e.kind == ProviderErrorKind::Final => "failed",
        Err(_) => "unknown",
    }
}

/// Counts a send's answer and logs it (in the send's span, which names the payout, the attempt's
/// key and the provider).
pub(crate) fn record_send(provider: Provider, result: &std::result::Result<SendReceipt, ProviderError>) {
    let outcome = send_outcome(result);
    metrics::counter!(SENDS, "provider" => provider.as_str(), "outcome" => outcome).increment(1);
    match result {
        Ok(r) => tracing::debug!(outcome, reference = r.reference.as_deref(), "provider answered"),
        Err(e) => tracing::warn!(outcome, error = %e, "provider send failed"),
    }
}

/// Times one send or batch call.
pub(crate) fn record_send_time(provider: Provider, elapsed: Duration) {
    metrics::histogram!(SEND_SECONDS, "provider" => provider.as_str()).record(elapsed.as_secs_f64());
}

/// The `result` label of a webhook event.
pub fn webhook_result(outcome: &EventOutcome) -> &'static str {
    match outcome {
        EventOutcome::Applied { .. } => "applied",
        EventOutcome::Ignored { .. } => "ignored",
        EventOutcome::Flagged { .. } => "flagged",
        EventOutcome::Duplicate { .. } => "duplicate",
        EventOutcome::NotOurs { .. } => "not_ours",
    }
}

/// Counts a webhook delivery: each event by its result, or the delivery's refusal.
pub(crate) fn record_webhook(provider: Provider, result: &crate::Result<crate::service::WebhookReport>) {
    let count = |r: &'static str| metrics::counter!(WEBHOOK_EVENTS, "provider" => provider.as_str(), "result" => r);
    match result {
        Ok(report) => {
            for e in &report.events {
                count(webhook_result(e)).increment(1);
            }
        }
        Err(Error::Webhook(WebhookError::Contradicted(_))) => count("contradicted").increment(1),
        Err(Error::UnknownReference { .. }) => count("unknown_reference").increment(1),
        Err(_) => count("refused").increment(1),
    }
}

/// Counts a reconciliation check by its result.
pub(crate) fn record_check(result: &'static str) {
    metrics::counter!(RECONCILE_CHECKS, "result" => result).increment(1);
}
