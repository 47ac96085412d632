//! Run with: `cargo run --example nats_consumer --features nats`
//!
//! A host reading the payout events from NATS JetStream. The engine publishes each event with a
//! [`NatsSink`] (the demo server does with `PAYOUTS_EVENTS_NATS_URL` set:
//! `PAYOUTS_EVENTS_NATS_URL=nats://127.0.0.1:4222 cargo run --features cli,nats -- serve`) to
//! `payouts.events.<type>` in the stream `PAYOUTS_EVENTS`; this program reads them with a durable
//! pull consumer, handles each (here: prints it) and acks it only then, so an event it did not
//! finish is delivered again after a restart. It remembers the ids it handled: an event can arrive
//! twice (JetStream drops a republished event only within the stream's duplicate window).
//!
//! Settings: `PAYOUTS_EVENTS_NATS_URL` (default `nats://127.0.0.1:4222`), the sink's
//! `PAYOUTS_EVENTS_NATS_SUBJECT_PREFIX` and `PAYOUTS_EVENTS_NATS_STREAM`, and
//! `PAYOUTS_EVENTS_CONSUMER` (the durable consumer's name, default `payouts-host`). Stops with Ctrl-C.

use std::collections::HashSet;

use futures::StreamExt;
use payouts::events::{EventType, PayoutEvent};
use payouts::server::events::nats::async_nats::{self, jetstream};
use payouts::server::events::nats::{DEFAULT_STREAM, DEFAULT_SUBJECT_PREFIX, StreamSettings};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// The host's handling of one event: what a real host would do (mark its invoice paid, tell
/// support about a failed payout) is printed here. Returns the line printed.
fn handle(event: &PayoutEvent) -> String {
    let amount = event.amount.as_ref().map(|m| format!(" {m}")).unwrap_or_default();
    let line = match event.event_type {
        EventType::PayoutStatusChanged => format!(
            "{}: payout {} {} -> {}{amount}",
            event.id,
            event.stream_key(),
            event.previous_status.map(|s| s.to_string()).unwrap_or_default(),
            event.status.map(|s| s.to_string()).unwrap_or_default(),
        ),
        EventType::RunCompleted => format!("{}: run {} finished {}", event.id, event.stream_key(), event.action),
        other => format!("{}: {other} {}{amount}", event.id, event.stream_key()),
    };
    println!("{line}");
    line
}

/// Reads one message: handles its event unless already handled, then acks it. A message that is
/// no event is acked too (it would never parse) after a warning.
async fn receive(message: jetstream::Message, handled: &mut HashSet<String>) -> Result<Option<String>, AnyError> {
    let line = match serde_json::from_slice::<PayoutEvent>(&message.payload) {
        Ok(event) if handled.insert(event.id.clone()) => Some(handle(&event)),
        Ok(_) => None,
        Err(e) => {
            eprintln!("not an event on {}: {e}", message.subject);
            None
        }
    };
    // Acked once handled: a crash before this line gets the event again.
    message.ack().await?;
    Ok(line)
}

/// The durable consumer `name` on the events' stream (made the way the sink makes it, so either
/// may start first).
async fn consumer(
    js: &jetstream::Context,
    stream: &StreamSettings,
    prefix: &str,
    name: &str,
) -> Result<jetstream::consumer::PullConsumer, AnyError> {
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: stream.name.clone(),
            subjects: vec![format!("{prefix}.>")],
            duplicate_window: stream.duplicate_window,
            ..Default::default()
        })
        .await?;
    Ok(stream
        .get_or_create_consumer(
            name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.to_string()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                filter_subject: format!("{prefix}.>"),
                ..Default::default()
            },
        )
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let var = |k: &str, default: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or(default.into())
    };
    let url = var("PAYOUTS_EVENTS_NATS_URL", "nats://127.0.0.1:4222");
    let prefix = var("PAYOUTS_EVENTS_NATS_SUBJECT_PREFIX", DEFAULT_SUBJECT_PREFIX);
    let stream = StreamSettings {
        name: var("PAYOUTS_EVENTS_NATS_STREAM", DEFAULT_STREAM),
        ..StreamSettings::default()
    };
    let name = var("PAYOUTS_EVENTS_CONSUMER", "payouts-host");

    let js = jetstream::new(async_nats::connect(url.as_str()).await?);
    let consumer = consumer(&js, &stream, &prefix, &name).await?;
    println!("reading {prefix}.> from the stream {} as {name}", stream.name);
    let mut handled = HashSet::new();
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        receive(message?, &mut handled).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use payouts::events::{EventCursor, EventOutbox, EventRelay, PayoutEventSink, RelayConfig};
    use payouts::prelude::*;
    use payouts::server::events::nats::{NatsSink, NatsSinkConfig};
    use payouts::source::{StaticConsultations, StaticDirectory};

    use super::*;

    #[tokio::test]
    async fn the_host_reads_each_event_once_and_acks_it() {
        let Ok(url) = std::env::var("PAYOUTS_TEST_NATS_URL") else {
            println!("skipped: PAYOUTS_TEST_NATS_URL not set");
            return;
        };
        let run = format!("{}_{}", std::process::id(), uuid_like());
        let prefix = format!("payouts_example_{run}.events");
        let stream = StreamSettings {
            name: format!("PAYOUTS_EXAMPLE_{run}"),
            ..StreamSettings::default()
        };

        // The engine's side: one payout created and approved, its events published.
        let store = Arc::new(MemoryStore::new());
        let doctor = Recipient {
            doctor_id: "dr-wanjiru".into(),
            name: "Dr. Wanjiru Kamau".into(),
            email: "wanjiru@clinic.example".into(),
            mpesa_phone_number: Some("254712345678".into()),
            ..Default::default()
        };
        let period = Period::new(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        )
        .unwrap();
        let consultations = (0..3)
            .map(|n| Consultation {
                appointment_id: format!("apt-{n:02}"),
                doctor_id: doctor.doctor_id.clone(),
                completed_at: period.starts_at() + chrono::Duration::hours(9 + 24 * n),
            })
            .collect();
        let service = PayoutService::builder()
            .store(store.clone())
            .consultations(Arc::new(StaticConsultations::new(consultations)))
            .directory(Arc::new(StaticDirectory::new(vec![doctor])))
            .simulate_missing_providers(true)
            .build()
            .unwrap();
        let report = service
            .calculate_period(&Actor::system("monthly-calculation"), Some(period), &Default::default())
            .await
            .unwrap();
        service
            .approve(&Actor::admin("admin-1"), &report.created[0])
            .await
            .unwrap();
        let sink = Arc::new(
            NatsSink::connect(
                NatsSinkConfig::new(&url)
                    .unwrap()
                    .with_subject_prefix(&prefix)
                    .unwrap()
                    .with_stream(Some(stream.clone()))
                    .unwrap(),
            )
            .await
            .unwrap(),
        );
        let relay = EventRelay::new(
            store.clone(),
            sink.clone(),
            Arc::new(SystemClock),
            RelayConfig::default(),
        );
        relay.drain().await.unwrap();
        let events = store.events_after(EventCursor::START, 100).await.unwrap().events;
        assert_eq!(events.len(), 2, "created and approved");
        // Republished (a relay that died before recording it): stored once.
        sink.deliver(&events[0].event).await.unwrap();

        // The host's side.
        let js = jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
        let consumer = consumer(&js, &stream, &prefix, "host").await.unwrap();
        let mut handled = HashSet::new();
        let mut lines = Vec::new();
        let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
        while let Some(m) = batch.next().await {
            lines.extend(receive(m.unwrap(), &mut handled).await.unwrap());
        }
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("payout.created"), "{lines:?}");
        assert!(lines[1].contains("PENDING -> APPROVED"), "{lines:?}");
        // Acked: the durable consumer has nothing more for the host.
        let mut again = consumer.fetch().max_messages(10).messages().await.unwrap();
        assert!(again.next().await.is_none());

        js.delete_stream(&stream.name).await.unwrap();
    }

    fn uuid_like() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}
