//! The outbox on the in-memory store (the conformance suite), and the relay's delivery rules:
//! order per payout, back-off, dead letters, permanent refusals, a sink's answer after a lost lease.
//!
//! Run with: `cargo test -p payout-core --features testkit --test outbox`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use payout_core::PayoutStore;
use payout_core::clock::{Clock, ManualClock};
use payout_core::events::{
    Backoff, DeliveryState, EventCursor, EventOutbox, EventRelay, EventType, PayoutEvent, PayoutEventSink, RelayConfig,
    SinkError,
};
use payout_core::memory::MemoryStore;
use payout_core::status::PayoutStatus;
use payout_core::testkit::fixtures::{self, at, month};
use payout_core::testkit::outbox;
use payout_core::testkit::store::seed;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_every_outbox_check() {
    outbox::run_all(|| async {
        let store = Arc::new(MemoryStore::new());
        (store.clone() as Arc<dyn PayoutStore>, store as Arc<dyn EventOutbox>)
    })
    .await;
}

/// A sink that records what it was given and fails as scripted: per payout, how many deliveries
/// fail before one succeeds (`u32::MAX`: always), and whether the failure is permanent.
#[derive(Default)]
struct Scripted {
    got: Mutex<Vec<PayoutEvent>>,
    failures: Mutex<HashMap<String, (u32, bool)>>,
}

#[async_trait]
impl PayoutEventSink for Scripted {
    async fn deliver(&self, event: &PayoutEvent) -> Result<(), SinkError> {
        self.got.lock().unwrap().push(event.clone());
        let mut failures = self.failures.lock().unwrap();
        if let Some((left, permanent)) = failures.get_mut(&event.stream_key()) {
            if *left > 0 {
                *left -= 1;
                return Err(if *permanent {
                    SinkError::permanent("410 gone")
                } else {
                    SinkError::retryable("503 unavailable")
                });
            }
        }
        Ok(())
    }
}

impl Scripted {
    fn fail(&self, payout: &str, times: u32, permanent: bool) {
        self.failures
            .lock()
            .unwrap()
            .insert(payout.to_string(), (times, permanent));
    }

    fn of(&self, payout: &str) -> Vec<EventType> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.stream_key() == payout)
            .map(|e| e.event_type)
            .collect()
    }
}

struct Setup {
    store: Arc<MemoryStore>,
    sink: Arc<Scripted>,
    clock: Arc<ManualClock>,
    relay: EventRelay,
}

fn setup(max_tries: u32) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(Scripted::default());
    let clock = Arc::new(ManualClock::new(at(100)));
    let relay = EventRelay::new(
        store.clone(),
        sink.clone(),
        clock.clone(),
        RelayConfig {
            max_tries,
            backoff: Backoff {
                base: Duration::from_secs(10),
                max: Duration::from_secs(60),
                jitter: 0.0,
            },
            ..RelayConfig::default()
        },
    );
    Setup {
        store,
        sink,
        clock,
        relay,
    }
}

async fn two_payouts_one_approved(store: &MemoryStore) {
    let seeded = seed(
        store,
        vec![
            fixtures::new_payout("po_1", "dr-1", month(2025, 11), &["6500.00"]),
            fixtures::new_payout("po_2", "dr-2", month(2025, 11), &["700"]),
        ],
    )
    .await;
    store
        .apply(fixtures::status_change(&seeded[0], PayoutStatus::Approved, at(1)))
        .await
        .expect("approve");
}

#[tokio::test]
async fn a_failed_event_is_retried_after_its_back_off_and_holds_back_its_payout() {
    let s = setup(10);
    two_payouts_one_approved(&s.store).await;
    s.sink.fail("po_1", 1, false);

    let pass = s.relay.drain().await.expect("drain");
    assert_eq!((pass.delivered, pass.retried), (1, 1), "{pass:?}");
    assert_eq!(s.sink.of("po_1"), vec![EventType::PayoutCreated]);
    assert_eq!(s.sink.of("po_2"), vec![EventType::PayoutCreated]);

    // 10 s of back-off (no jitter): not one second before.
    s.clock.advance(chrono::Duration::seconds(9));
    assert_eq!(s.relay.drain().await.expect("drain").claimed, 0);
    s.clock.advance(chrono::Duration::seconds(1));
    let pass = s.relay.drain().await.expect("drain");
    assert_eq!(pass.delivered, 2, "the retry, then the payout's next event: {pass:?}");
    assert_eq!(
        s.sink.of("po_1"),
        vec![
            EventType::PayoutCreated,
            EventType::PayoutCreated,
            EventType::PayoutStatusChanged
        ]
    );
    let all = s
        .store
        .events_after(EventCursor::START, 100)
        .await
        .expect("events")
        .events;
    assert!(all.iter().all(|e| e.delivery == DeliveryState::Delivered), "{all:#?}");
    assert_eq!(all[0].tries, 1);
    assert_eq!(
        all[0].last_error.as_deref(),
        Some("delivery failed, will retry: 503 unavailable")
    );
}

#[tokio::test]
async fn after_max_tries_an_event_is_dead_lettered_and_the_next_one_goes() {
    let s = setup(3);
    two_payouts_one_approved(&s.store).await;
    s.sink.fail("po_1", 3, false);
    for wait in [0, 10, 20] {
        s.clock.advance(chrono::Duration::seconds(wait));
        s.relay.drain().await.expect("drain");
    }
    let dead = s.store.dead_letters(0, 10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].tries, dead[0].event.event_type), (3, EventType::PayoutCreated));
    assert_eq!(
        s.sink.of("po_1"),
        vec![
            EventType::PayoutCreated,
            EventType::PayoutCreated,
            EventType::PayoutCreated,
            EventType::PayoutStatusChanged
        ],
        "three tries, then the approval goes"
    );
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_at_once() {
    let s = setup(10);
    two_payouts_one_approved(&s.store).await;
    s.sink.fail("po_2", 1, true);
    let pass = s.relay.drain().await.expect("drain");
    assert_eq!(pass.dead_lettered, 1, "{pass:?}");
    let dead = s.store.dead_letters(0, 10).await.expect("dead letters");
    assert_eq!(dead[0].event.payout_id.as_ref().map(|p| p.as_str()), Some("po_2"));
    assert_eq!(dead[0].tries, 1);
}

#[tokio::test]
async fn an_event_whose_relay_died_is_delivered_again_after_its_lease() {
    let s = setup(10);
    two_payouts_one_approved(&s.store).await;
    // A relay that claimed and died: its claim holds the events until the lease ends.
    let lease = chrono::Duration::from_std(s.relay.config().lease).unwrap();
    let claimed = s
        .store
        .claim_events(&payout_core::events::EventClaim {
            now: s.clock.now(),
            lease_until: s.clock.now() + lease,
            limit: 10,
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    assert_eq!(s.relay.drain().await.expect("drain").claimed, 0, "leased elsewhere");
    s.clock.advance(lease);
    let pass = s.relay.drain().await.expect("drain");
    assert_eq!(pass.delivered, 3, "{pass:?}");
}
