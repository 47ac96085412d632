//! Graceful shutdown in the engine (issue 16 item 5): once it begins, a bulk trigger starts no
//! more sends, while the sends under way finish and their answers are recorded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use payout_core::domain::{Actor, Provider};
use payout_core::error::Error;
use payout_core::status::PayoutStatus;
use payout_core::store::PayoutStore;

mod common;
use common::gated::{GatedProvider, approved_payouts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_stops_a_bulk_trigger_from_starting_sends_and_lets_those_under_way_finish() {
    const PAYOUTS: usize = 40;
    const CONCURRENCY: usize = 4;
    // Every send waits at the gate until the shutdown has begun.
    let provider = Arc::new(GatedProvider::new(0));
    let (service, store, ids) = approved_payouts(PAYOUTS, provider.clone(), CONCURRENCY).await;
    let service = Arc::new(service);
    let admin = Actor::admin("triggerer");
    let bulk = tokio::spawn({
        let (service, ids, admin) = (service.clone(), ids.clone(), admin.clone());
        async move { service.bulk_trigger(&admin, &ids, Provider::MpesaB2c).await }
    });
    provider.reached(CONCURRENCY).await;
    service.begin_shutdown();
    assert!(service.is_shutting_down());
    provider.gate.add_permits(PAYOUTS);
    let outcomes = bulk.await.unwrap();
    assert_eq!(outcomes.len(), PAYOUTS);

    let mut sent = 0;
    let mut stopped = 0;
    for (o, id) in outcomes.iter().zip(&ids) {
        assert_eq!(&o.id, id, "one outcome per id, in order");
        let payout = store.get(id).await.unwrap();
        let attempts = store.attempts(id).await.unwrap();
        match &o.result {
            Ok(p) => {
                sent += 1;
                assert_eq!(p.status, PayoutStatus::Paid, "{id}: sent and its answer recorded");
                assert_eq!(payout.status, PayoutStatus::Paid);
                assert_eq!(attempts.len(), 1, "{id}");
                assert!(attempts[0].provider_reference.is_some(), "{id}: the answer is recorded");
            }
            Err(Error::ShuttingDown) => {
                stopped += 1;
                assert_eq!(payout.status, PayoutStatus::Approved, "{id}: untouched");
                assert!(attempts.is_empty(), "{id}: no attempt");
                assert!(
                    store
                        .audit_trail(id)
                        .await
                        .unwrap()
                        .iter()
                        .all(|e| e.action != "TRIGGER")
                );
            }
            Err(other) => panic!("{id}: {other}"),
        }
    }
    assert_eq!(
        sent,
        provider.sends.load(Ordering::SeqCst),
        "every committed attempt was sent"
    );
    assert!(sent >= CONCURRENCY, "the sends under way finished: {sent}");
    // Chunks of CONCURRENCY are prepared at most two ahead of the sends in flight.
    assert!(
        sent <= 3 * CONCURRENCY,
        "no chunk was prepared after the shutdown began: {sent} sent"
    );
    assert_eq!(sent + stopped, PAYOUTS);

    // A single trigger or a retry now changes nothing.
    let untouched = outcomes
        .iter()
        .find(|o| o.result.is_err())
        .map(|o| o.id.clone())
        .unwrap();
    match service.trigger(&admin, &untouched, Provider::MpesaB2c).await {
        Err(Error::ShuttingDown) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(&untouched).await.unwrap().status, PayoutStatus::Approved);
    assert!(store.attempts(&untouched).await.unwrap().is_empty());
}
