//! The NATS JetStream publisher of events against a real server (`PAYOUTS_TEST_NATS_URL`, e.g.
//! `nats://127.0.0.1:4222`, with JetStream on; `.ci/run` starts one): the relay publishes the
//! outbox's events, a pull consumer reads each once on its type's subject with the event's JSON,
//! and the same event published twice is stored once (its id is the `Nats-Msg-Id`). Each test has
//! a stream and subject prefix of its own, deleted at the end.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use payout_core::clock::SystemClock;
use payout_core::domain::Actor;
use payout_core::events::{
    DeliveryState, EventCursor, EventOutbox, EventRelay, PayoutEvent, PayoutEventSink, RelayConfig, SinkError,
    new_event_id,
};
use payout_core::memory::MemoryStore;
use payout_core::service::CalculationPolicy;
use payout_server::events::nats::async_nats::jetstream::{self, consumer::pull};
use payout_server::events::nats::{NatsSink, NatsSinkConfig, StreamSettings, async_nats};

fn nats_url() -> Option<String> {
    match std::env::var("PAYOUTS_TEST_NATS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped: PAYOUTS_TEST_NATS_URL not set");
            None
        }
    }
}

/// A name no other test or run uses: the process, the time and a counter.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A calculated January (three payouts), one approved and one held: created, status changed and
/// held events in the memory store's outbox.
async fn calculated() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let service = service_over(store.clone());
    let report = service
        .calculate_period(&Actor::system("test"), Some(jan()), &CalculationPolicy::default())
        .await
        .unwrap();
    let admin = Actor::admin("admin-1");
    service.approve(&admin, &report.created[0]).await.unwrap();
    service.approve(&admin, &report.created[1]).await.unwrap();
    service
        .hold(&admin, &report.created[1], "documents missing")
        .await
        .unwrap();
    store
}

/// Deletes the test's stream when the test panics before its own clean-up (on a runtime of its
/// own: the test's is unwinding).
struct DeleteOnPanic {
    url: String,
    stream: String,
}

impl Drop for DeleteOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (url, stream) = (self.url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let js = jetstream::new(async_nats::connect(url.as_str()).await.ok()?);
                js.delete_stream(&stream).await.ok()
            })
        })
        .join();
    }
}

async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// Every message of `stream`, read once with a pull consumer and acked.
async fn consume_all(js: &jetstream::Context, stream: &str) -> Vec<jetstream::Message> {
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(stream)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        // `fetch` answers at once with what is stored (no waiting for more).
        let mut batch = consumer.fetch().max_messages(100).messages().await.unwrap();
        let before = got.len();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            m.ack().await.unwrap();
            got.push(m);
        }
        if got.len() == before {
            return got;
        }
    }
}

#[tokio::test]
async fn the_relay_publishes_each_event_once_on_its_types_subject() {
    let Some(url) = nats_url() else { return };
    let run = unique();
    let prefix = format!("payouts_test_{run}.events");
    let stream = format!("PAYOUTS_TEST_{run}");
    let _cleanup = DeleteOnPanic {
        url: url.clone(),
        stream: stream.clone(),
    };
    let config = NatsSinkConfig::new(&url)
        .unwrap()
        .with_subject_prefix(&prefix)
        .unwrap()
        .with_stream(Some(StreamSettings {
            name: stream.clone(),
            duplicate_window: Duration::from_secs(600),
        }))
        .unwrap();
    let sink = Arc::new(NatsSink::connect(config).await.unwrap());

    let store = calculated().await;
    let relay = EventRelay::new(
        store.clone(),
        sink.clone(),
        Arc::new(SystemClock),
        RelayConfig::default(),
    );
    let pass = relay.drain().await.unwrap();
    let stored = store.events_after(EventCursor::START, 1000).await.unwrap().events;
    assert!(stored.len() >= 6, "{} events", stored.len());
    assert_eq!(pass.delivered, stored.len(), "{pass:?}");
    assert!(stored.iter().all(|e| e.delivery == DeliveryState::Delivered));

    let js = jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
    let got = consume_all(&js, &stream).await;
    assert_eq!(got.len(), stored.len(), "each event once");
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for m in &got {
        let event: PayoutEvent = serde_json::from_slice(&m.payload).unwrap();
        let original = stored
            .iter()
            .find(|s| s.event.id == event.id)
            .unwrap_or_else(|| panic!("{} is no event of the outbox", event.id));
        assert_eq!(event, original.event);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap(),
            serde_json::to_value(&original.event).unwrap(),
            "the payload is the event's JSON"
        );
        assert_eq!(m.subject.as_str(), format!("{prefix}.{}", event.event_type));
        let msg_id = m
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str());
        assert_eq!(msg_id, Some(event.id.as_str()));
        assert!(seen.insert(event.id.clone()), "{} twice", event.id);
        order.push((event.stream_key(), event.seq, m.info().unwrap().stream_sequence));
    }
    // A payout's events are stored in the order they were written.
    for (key, seq, at) in &order {
        for (k2, s2, a2) in &order {
            if key == k2 && seq < s2 {
                assert!(at < a2, "{key}: event {seq} stored after {s2}");
            }
        }
    }
    let types: HashSet<&str> = got.iter().map(|m| m.subject.as_str()).collect();
    assert!(types.contains(format!("{prefix}.payout.held").as_str()), "{types:?}");

    // The same event again (a relay that crashed before recording its delivery): delivered, stored once.
    let first = &stored[0].event;
    sink.deliver(first).await.unwrap();
    assert_eq!(stream_messages(&js, &stream).await, stored.len() as u64);
    // A new id is a new message: the dedup is by id, not by content.
    let again = PayoutEvent {
        id: new_event_id(),
        ..first.clone()
    };
    sink.deliver(&again).await.unwrap();
    assert_eq!(stream_messages(&js, &stream).await, stored.len() as u64 + 1);

    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn a_subject_no_stream_takes_is_retried() {
    let Some(url) = nats_url() else { return };
    let config = NatsSinkConfig::new(&url)
        .unwrap()
        .with_subject_prefix(&format!("payouts_test_{}.nostream", unique()))
        .unwrap()
        .with_stream(None)
        .unwrap();
    let sink = NatsSink::connect(config).await.unwrap();
    let store = calculated().await;
    let event = store
        .events_after(EventCursor::START, 1)
        .await
        .unwrap()
        .events
        .remove(0)
        .event;
    match sink.deliver(&event).await {
        Err(SinkError::Retryable { message, .. }) => assert!(message.contains("no NATS stream"), "{message}"),
        other => panic!("expected a retryable failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_retried_and_the_relay_keeps_the_event() {
    // Nothing listens on port 1: the client keeps connecting, the delivery times out.
    let mut config = NatsSinkConfig::new("nats://127.0.0.1:1").unwrap();
    config.timeout = Duration::from_millis(300);
    let sink = Arc::new(NatsSink::connect(config).await.unwrap());
    let store = calculated().await;
    let relay_config = RelayConfig {
        batch: 1,
        ..RelayConfig::default()
    };
    let relay = EventRelay::new(store.clone(), sink, Arc::new(SystemClock), relay_config);
    let pass = relay.deliver_due().await.unwrap();
    assert_eq!((pass.claimed, pass.retried, pass.delivered), (1, 1, 0), "{pass:?}");
    let first = &store.events_after(EventCursor::START, 1).await.unwrap().events[0];
    assert_eq!(first.delivery, DeliveryState::Pending);
    assert_eq!(first.tries, 1);
    assert!(
        first.last_error.as_deref().unwrap_or_default().contains("will retry"),
        "{:?}",
        first.last_error
    );
}
