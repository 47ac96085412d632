//! The relay: claims due events from an [`EventOutbox`] and hands them to a [`PayoutEventSink`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::{ClaimedEvent, DeliveryOutcome, EventClaim, EventDone, EventOutbox, PayoutEventSink, SinkError};
use crate::clock::Clock;
use crate::error::Result;

/// Exponential back-off with jitter, capped: the wait before try `n + 1` after `n` failures is
/// `min(max, base * 2^(n-1))`, scaled by a factor in `[1 - jitter, 1]` drawn from the event's id
/// and `n` (so retries of many events spread out, and a test can predict them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait. Default: 5 s.
    pub base: Duration,
    /// The longest wait. Default: 1 h.
    pub max: Duration,
    /// How much of a wait may be taken off at random, from 0 (none) to 1 (full jitter). Default: 0.5.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed tries (at least 1) of the event `event_id`.
    pub fn delay(&self, event_id: &str, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let digest = Sha256::new()
            .chain_update(event_id.as_bytes())
            .chain_update(failures.to_be_bytes())
            .finalize();
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&digest[..8]);
        // A fraction in [0, 1): timing only, never money.
        let draw = (u64::from_be_bytes(eight) >> 11) as f64 / (1u64 << 53) as f64;
        let jitter = self.jitter.clamp(0.0, 1.0);
        full.mul_f64(1.0 - jitter * draw)
    }
}

/// How a relay delivers. Every default is written down.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Events claimed per pass. Default: 100.
    pub batch: u32,
    /// How long a claim is the claimer's; an event whose claimer died is delivered again after
    /// it. Longer than a sink's timeout. Default: 60 s.
    pub lease: Duration,
    /// Tries before an event is dead-lettered. Default: 10.
    pub max_tries: u32,
    /// Waits between tries.
    pub backoff: Backoff,
    /// Deliveries under way at once (events of different payouts). Default: 8.
    pub concurrency: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 100,
            lease: Duration::from_secs(60),
            max_tries: 10,
            backoff: Backoff::default(),
            concurrency: 8,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayPass {
    /// Events claimed.
    pub claimed: usize,
    /// Delivered.
    pub delivered: usize,
    /// Failed, to be retried.
    pub retried: usize,
    /// Dead-lettered.
    pub dead_lettered: usize,
    /// Outcomes not written because another claim took the event meanwhile (a lease ran out).
    pub lost_leases: usize,
}

/// Delivers the outbox's events to a sink: each pass ([`deliver_due`](EventRelay::deliver_due))
/// claims due events under a lease, hands them over (one at a time per payout) and records each
/// outcome. Several relays (instances) may run against one store.
#[derive(Clone)]
pub struct EventRelay {
    outbox: Arc<dyn EventOutbox>,
    sink: Arc<dyn PayoutEventSink>,
    clock: Arc<dyn Clock>,
    config: RelayConfig,
}

impl std::fmt::Debug for EventRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRelay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EventRelay {
    /// A relay from `outbox` to `sink`.
    pub fn new(
        outbox: Arc<dyn EventOutbox>,
        sink: Arc<dyn PayoutEventSink>,
        clock: Arc<dyn Clock>,
        config: RelayConfig,
    ) -> Self {
        EventRelay {
            outbox,
            sink,
            clock,
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// One pass: claims due events and delivers them; returns what it did. A store error ends
    /// the pass (claimed events are delivered again when their lease ends).
    pub async fn deliver_due(&self) -> Result<RelayPass> {
        let now = self.clock.now();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(60));
        let claimed = self
            .outbox
            .claim_events(&EventClaim {
                now,
                lease_until: now + lease,
                limit: self.config.batch,
            })
            .await?;
        let mut pass = RelayPass {
            claimed: claimed.len(),
            ..RelayPass::default()
        };
        // A claim holds at most one event per payout, so these may go at once.
        let done: Vec<EventDone> = futures::stream::iter(claimed)
            .map(|c| self.deliver_one(c))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let written = self.outbox.finish_events(&done).await?;
        for (d, ok) in done.iter().zip(written) {
            if !ok {
                pass.lost_leases += 1;
                continue;
            }
            match d.outcome {
                DeliveryOutcome::Delivered => pass.delivered += 1,
                DeliveryOutcome::Retry { .. } => pass.retried += 1,
                DeliveryOutcome::DeadLetter { .. } => pass.dead_lettered += 1,
            }
        }
        if pass.claimed > 0 {
            tracing::debug!(?pass, "events relayed");
        }
        Ok(pass)
    }

    /// Passes until a pass finds nothing due; returns their sum. For tests and for a host that
    /// drains the outbox before it stops.
    pub async fn drain(&self) -> Result<RelayPass> {
        let mut total = RelayPass::default();
        loop {
            let pass = self.deliver_due().await?;
            total.claimed += pass.claimed;
            total.delivered += pass.delivered;
            total.retried += pass.retried;
            total.dead_lettered += pass.dead_lettered;
            total.lost_leases += pass.lost_leases;
            if pass.claimed == 0 || pass.delivered + pass.dead_lettered == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs passes until `shutdown` resolves: one every `every`, or at once after a pass that
    /// found a full batch. Store errors are logged and the next pass tries again. A pass under way
    /// when `shutdown` resolves finishes first (its claims would otherwise wait out their lease).
    pub async fn run(&self, every: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let full = match self.deliver_due().await {
                Ok(pass) => pass.claimed as u32 >= self.config.batch,
                Err(e) => {
                    tracing::warn!(error = %e, "event relay pass failed");
                    false
                }
            };
            if full {
                // A backlog: the next pass at once, unless the host is stopping.
                if futures::FutureExt::now_or_never(shutdown.as_mut()).is_some() {
                    return;
                }
                continue;
            }
            let pause = std::pin::pin!(tokio::time::sleep(every));
            if let futures::future::Either::Left(_) = futures::future::select(shutdown.as_mut(), pause).await {
                return;
            }
        }
    }

    async fn deliver_one(&self, claimed: ClaimedEvent) -> EventDone {
        let ClaimedEvent { event, lease, tries } = claimed;
        let result = self.sink.deliver(&event).await;
        let at = self.clock.now();
        let outcome = match result {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(e) => {
                let failures = tries.saturating_add(1);
                let error = e.to_string();
                tracing::warn!(event = %event.id, seq = event.seq, failures, error = %error, "event delivery failed");
                match e {
                    SinkError::Permanent { .. } => DeliveryOutcome::DeadLetter { error },
                    _ if failures >= self.config.max_tries => DeliveryOutcome::DeadLetter { error },
                    _ => DeliveryOutcome::Retry {
                        next_try_at: later(at, self.config.backoff.delay(&event.id, failures)),
                        error,
                    },
                }
            }
        };
        EventDone {
            seq: event.seq,
            lease,
            outcome,
            at,
        }
    }
}

fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_bounded_jitter() {
        let b = Backoff {
            base: Duration::from_secs(4),
            max: Duration::from_secs(60),
            jitter: 0.5,
        };
        for n in 1..=40u32 {
            let full = Duration::from_secs(4)
                .saturating_mul(1 << (n - 1).min(31))
                .min(Duration::from_secs(60));
            let d = b.delay("evt_1", n);
            assert!(
                d <= full && d >= full / 2,
                "try {n}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
            assert_eq!(d, b.delay("evt_1", n), "the same event and try wait the same");
        }
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay("evt_1", 1), Duration::from_secs(4));
        assert_eq!(none.delay("evt_1", 3), Duration::from_secs(16));
        assert_eq!(none.delay("evt_1", 9), Duration::from_secs(60));
        // Jitter spreads events retried at the same moment.
        let spread: std::collections::HashSet<_> = (0..20).map(|i| b.delay(&format!("evt_{i}"), 3)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
