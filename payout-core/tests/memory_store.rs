//! The conformance suites on the in-memory store and the simulated provider.
//!
//! Run with: `cargo test -p payout-core --features testkit --test memory_store`

use std::sync::Arc;

use payout_core::PayoutStore;
use payout_core::domain::Provider;
use payout_core::memory::MemoryStore;
use payout_core::simulated::{SimulatedProvider, SimulatedSettlement};
use payout_core::testkit::{fixtures, provider, store};

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
