//! The conformance suites on the in-memory store and the simulated provider, and what is particular
//! to the in-memory store.
//!
//! Run with: `cargo test -p payout-core --features testkit --test memory_store`

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt;
use payout_core::PayoutStore;
use payout_core::domain::{AttemptOutcome, Payout, Provider};
use payout_core::memory::{MemoryStore, STREAM_CHUNK};
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::store::{NewPayout, Page, PayoutChange, PayoutFilter};
use payout_core::testkit::fixtures::{self, at, base_time, month};
use payout_core::testkit::{provider, store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_every_store_check() {
    store::run_all(|| async { Arc::new(MemoryStore::new()) as Arc<dyn PayoutStore> }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_check_runs_on_its_own() {
    // The registry is usable one check at a time, e.g. one database per check.
    for check in store::STORE_CHECKS {
        assert!(store::check_named(check.name).is_some());
    }
    let check = store::check_named("concurrent_apply_has_one_winner").expect("the race check is listed");
    check.run(Arc::new(MemoryStore::new())).await;
    assert!(store::check_named("no_such_check").is_none());
}

#[tokio::test]
async fn simulated_provider_passes_the_provider_check() {
    for p in Provider::ALL {
        for settlement in [SimulatedSettlement::Immediate, SimulatedSettlement::Deferred] {
            let sim = SimulatedProvider::new(p).with_settlement(settlement);
            provider::check_provider(&sim, fixtures::instruction(p)).await;
        }
    }
}

/// `n` January payouts `po_00000`.., each of its own doctor, created at `created_at(i)`.
fn payouts(n: usize, created_at: impl Fn(usize) -> DateTime<Utc>) -> Vec<NewPayout> {
    (0..n)
        .map(|i| {
            let id = format!("po_{i:05}");
            let new = fixtures::new_payout(&id, &format!("dr-{id}"), month(2025, 1), &["500"]);
            fixtures::created_at(new, created_at(i))
        })
        .collect()
}

async fn stream_all(store: &MemoryStore) -> Vec<Payout> {
    store.stream(PayoutFilter::default()).try_collect().await.unwrap()
}

#[tokio::test]
async fn stream_pages_across_chunks_in_list_order() {
    let store = MemoryStore::new();
    // Several rows per second, so chunk boundaries fall inside runs of equal `created_at`.
    let news = payouts(STREAM_CHUNK * 2 + 7, |i| {
        base_time() + Duration::seconds((i / 5) as i64)
    });
    store.create_period(fixtures::batch(news, Vec::new())).await.unwrap();
    let streamed = stream_all(&store).await;
    let listed = store
        .list(&PayoutFilter::default(), &Page::new(Page::MAX_LIMIT, 0))
        .await
        .unwrap();
    assert_eq!(streamed.len(), STREAM_CHUNK * 2 + 7);
    assert_eq!(streamed, listed.payouts);
}

#[tokio::test]
async fn stream_of_exactly_one_chunk_ends() {
    let store = MemoryStore::new();
    let news = payouts(STREAM_CHUNK, |_| base_time());
    store.create_period(fixtures::batch(news, Vec::new())).await.unwrap();
    assert_eq!(stream_all(&store).await.len(), STREAM_CHUNK);
}

#[tokio::test]
async fn clones_share_data() {
    let store = MemoryStore::new();
    let other = store.clone();
    let new = fixtures::new_payout("po_1", "dr-1", month(2025, 1), &["500"]);
    store.create_payout(new).await.unwrap();
    assert_eq!(other.get(&"po_1".into()).await.unwrap().id.as_str(), "po_1");
    assert!(format!("{other:?}").contains("payouts: 1"));
}

#[tokio::test]
async fn a_change_may_insert_and_update_the_same_attempt() {
    let store = MemoryStore::new();
    let new = fixtures::new_payout("po_1", "dr-1", month(2025, 1), &["500"]);
    let payout = store.create_payout(new).await.unwrap();
    let mut change = PayoutChange::of(&payout, at(1));
    change.new_attempt = Some(fixtures::attempt(&payout.id, 1, Provider::MpesaB2c, at(1)));
    change.attempt_update = Some(fixtures::attempt_update(1, AttemptOutcome::Accepted, Some("ws_1")));
    store.apply(change).await.unwrap();
    let attempts = store.attempts(&payout.id).await.unwrap();
    assert_eq!(attempts[0].outcome, AttemptOutcome::Accepted);
    assert_eq!(attempts[0].provider_reference.as_deref(), Some("ws_1"));
}
