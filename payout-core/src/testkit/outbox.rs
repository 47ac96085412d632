//! The [`EventOutbox`] conformance suite: events written with their changes, claimed in order per
//! payout under a lease, and their deliveries recorded.
//!
//! Each check takes the store twice, as the [`PayoutStore`] it is and as its [`EventOutbox`], and
//! expects it **fresh and empty**. [`run_all`] runs them all, each on a new store from your factory.

use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::Duration;
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::domain::{HoldScope, RunEvent, RunId};
use crate::error::Error;
use crate::events::{
    ClaimedEvent, DeliveryOutcome, DeliveryState, EventClaim, EventCursor, EventDone, EventOutbox, EventPage,
    EventType, StoredEvent,
};
use crate::status::PayoutStatus;
use crate::store::{FollowUp, PayoutChange, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at, month};
use crate::testkit::store::seed;

/// A store and its outbox: usually one value behind two `Arc`s.
pub type OutboxPair = (Arc<dyn PayoutStore>, Arc<dyn EventOutbox>);

/// One named outbox check.
#[derive(Clone, Copy)]
pub struct OutboxCheck {
    /// The check's name (its function's name).
    pub name: &'static str,
    check: fn(OutboxPair) -> BoxFuture<'static, ()>,
}

impl std::fmt::Debug for OutboxCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

macro_rules! checks {
    ($($name:ident),* ; $($spawning:ident),*) => {
        &[
            $(OutboxCheck {
                name: stringify!($name),
                check: |(store, outbox)| Box::pin(async move { $name(&*store, &*outbox).await }),
            },)*
            $(OutboxCheck {
                name: stringify!($spawning),
                check: |pair| Box::pin($spawning(pair)),
            },)*
        ]
    };
}

/// Every outbox check, in the order [`run_all`] runs them.
pub const OUTBOX_CHECKS: &[OutboxCheck] = checks![
    every_change_writes_its_event,
    a_refused_change_writes_no_event,
    claims_go_in_order_per_payout_under_a_lease,
    retries_wait_and_dead_letters_unblock;
    concurrent_claims_never_share_an_event
];

/// Runs every check in [`OUTBOX_CHECKS`], each on a new store from `fresh`; panics at the end
/// naming every check that failed.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = OutboxPair>,
{
    let mut failed = Vec::new();
    for check in OUTBOX_CHECKS {
        println!("outbox check {} ...", check.name);
        let pair = fresh().await;
        if AssertUnwindSafe((check.check)(pair)).catch_unwind().await.is_err() {
            println!("outbox check {} FAILED", check.name);
            failed.push(check.name);
        }
    }
    assert!(failed.is_empty(), "outbox checks failed: {}", failed.join(", "));
}

async fn all(outbox: &dyn EventOutbox) -> Vec<StoredEvent> {
    settled_events(outbox, EventCursor::START, 1000).await.events
}

/// [`EventOutbox::events_after`], read again until nothing is withheld: a store ordering by
/// commit (Postgres) holds events back while any transaction that began writing before them is
/// still running, anywhere on the server, such as another test's. Gives up after 60 s.
pub async fn settled_events(outbox: &dyn EventOutbox, after: EventCursor, limit: u32) -> EventPage {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let page = outbox.events_after(after, limit).await.expect("events_after");
        if !page.withheld {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events still withheld after 60 s: a transaction on the server never ends"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn claim_at(minutes: i64, limit: u32) -> EventClaim {
    EventClaim {
        now: at(minutes),
        lease_until: at(minutes) + Duration::minutes(5),
        limit,
    }
}

fn done(c: &ClaimedEvent, outcome: DeliveryOutcome, minutes: i64) -> EventDone {
    EventDone {
        seq: c.event.seq,
        lease: c.lease,
        outcome,
        at: at(minutes),
    }
}

fn keys(claimed: &[ClaimedEvent]) -> Vec<(String, EventType)> {
    claimed
        .iter()
        .map(|c| (c.event.stream_key(), c.event.event_type))
        .collect()
}

/// Each kind of change writes its event with it, exact: creation, a status change (with the
/// status before), a hold and its release (through `apply` and `apply_many`), a new attention
/// flag (by a change and by a finished check, once while it stays set), a run's finished step;
/// a note, a flag that stays set and a run's creation write none. Events come back in the order
/// written, each with a unique id, and `events_after(seq)` starts after `seq`.
pub async fn every_change_writes_its_event(store: &dyn PayoutStore, outbox: &dyn EventOutbox) {
    let seeded = seed(
        store,
        vec![
            fixtures::new_payout("po_ev_1", "dr-ev-1", month(2025, 11), &["6500.00"]),
            fixtures::new_payout("po_ev_2", "dr-ev-2", month(2025, 11), &["10.50", "2.25"]),
        ],
    )
    .await;
    let created = all(outbox).await;
    assert_eq!(created.len(), 2, "one payout.created per payout: {created:#?}");
    for (event, payout) in created.iter().zip(&seeded) {
        let e = &event.event;
        assert_eq!(e.event_type, EventType::PayoutCreated);
        assert_eq!(e.payout_id.as_ref(), Some(&payout.id));
        assert_eq!(e.doctor_id.as_ref(), Some(&payout.doctor_id));
        assert_eq!(e.status, Some(PayoutStatus::Pending));
        assert_eq!(e.previous_status, None);
        assert_eq!(e.amount, Some(payout.amount_due), "the amount, exact");
        assert_eq!(e.period, Some(payout.period()));
        assert_eq!(event.delivery, DeliveryState::Pending);
        assert_eq!(event.tries, 0);
    }
    assert_eq!(
        created[0].event.amount.map(|m| m.to_string()).as_deref(),
        Some("6500.00 KES")
    );

    let approved = store
        .apply(fixtures::status_change(&seeded[0], PayoutStatus::Approved, at(1)))
        .await
        .expect("approve");
    let mut note = PayoutChange::of(&approved, at(2));
    note.patch.notes = Some("a note".into());
    note.audit
        .push(fixtures::audit(&approved.id, "NOTE", None, None, at(2)));
    let noted = store.apply(note).await.expect("a note");
    assert_eq!(all(outbox).await.len(), 3, "a note writes no event");

    let hold = fixtures::hold(HoldScope::Payout, at(3));
    let mut held = Vec::new();
    for p in [&noted, &seeded[1]] {
        let mut change = PayoutChange::of(p, at(3));
        change.patch.hold = Some(hold.clone());
        change.audit.push(fixtures::audit(&p.id, "HOLD", None, None, at(3)));
        held.push(change);
    }
    let held: Vec<_> = store
        .apply_many(held)
        .await
        .into_iter()
        .map(|r| r.expect("hold"))
        .collect();
    let mut release = PayoutChange::of(&held[0], at(4));
    release.patch.hold = Some(hold.released("admin:other".into(), at(4)));
    release
        .audit
        .push(fixtures::audit(&held[0].id, "RELEASE", None, None, at(4)));
    let released = store.apply(release).await.expect("release");

    let mut processing = fixtures::status_change(&released, PayoutStatus::Processing, at(5));
    processing.patch.provider = Some(crate::domain::Provider::MpesaB2c);
    let processing = store.apply(processing).await.expect("processing");
    let mut flag = PayoutChange::of(&processing, at(6));
    flag.follow_up = Some(FollowUp::none().flagged("no answer from the provider"));
    flag.audit
        .push(fixtures::audit(&processing.id, "NOTE", None, None, at(6)));
    let flagged = store.apply(flag).await.expect("a flag");
    let mut again = PayoutChange::of(&flagged, at(7));
    again.follow_up = Some(FollowUp::none().flagged("still no answer"));
    store.apply(again).await.expect("a flag that stays");

    store
        .create_run(fixtures::new_run("run_ev", at(8)), &[seeded[1].id.clone()])
        .await
        .expect("a run");
    store
        .record_run_event(RunEvent {
            run_id: RunId::new("run_ev"),
            at: at(9),
            actor: "admin:a".into(),
            action: RunEvent::TRIGGER.into(),
            details: Some("1 sent".into()),
        })
        .await
        .expect("a run event");

    let events = all(outbox).await;
    let kinds: Vec<(Option<String>, EventType)> = events
        .iter()
        .map(|e| (e.event.payout_id.as_ref().map(|p| p.to_string()), e.event.event_type))
        .collect();
    let p1 = Some("po_ev_1".to_string());
    let p2 = Some("po_ev_2".to_string());
    let mut held_two = vec![(p1.clone(), EventType::PayoutHeld), (p2.clone(), EventType::PayoutHeld)];
    let mut got_held = kinds[3..5].to_vec();
    held_two.sort_by(|a, b| a.0.cmp(&b.0));
    got_held.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got_held, held_two, "{events:#?}");
    assert_eq!(
        [&kinds[..3], &kinds[5..]].concat(),
        vec![
            (p1.clone(), EventType::PayoutCreated),
            (p2.clone(), EventType::PayoutCreated),
            (p1.clone(), EventType::PayoutStatusChanged),
            (p1.clone(), EventType::PayoutReleased),
            (p1.clone(), EventType::PayoutStatusChanged),
            (p1.clone(), EventType::PayoutAttentionFlagged),
            (None, EventType::RunCompleted),
        ],
        "{events:#?}"
    );
    let approve = &events[2].event;
    assert_eq!(approve.previous_status, Some(PayoutStatus::Pending));
    assert_eq!(approve.status, Some(PayoutStatus::Approved));
    assert_eq!(approve.occurred_at, at(1));
    assert_eq!(approve.action, "APPROVED");
    assert_eq!(approve.actor, "admin:testkit");
    let sent = &events[6].event;
    assert_eq!(sent.provider, Some(crate::domain::Provider::MpesaB2c));
    assert_eq!(sent.status, Some(PayoutStatus::Processing));
    let flag = &events[7].event;
    assert_eq!(flag.detail, "no answer from the provider");
    assert_eq!(flag.status, Some(PayoutStatus::Processing));
    assert_eq!(flag.occurred_at, at(6));
    let run = &events[8].event;
    assert_eq!(run.run_id, Some(RunId::new("run_ev")));
    assert_eq!((run.action.as_str(), run.detail.as_str()), ("TRIGGER", "1 sent"));
    assert_eq!(run.stream_key(), "run:run_ev");
    assert_eq!((run.amount, run.period), (None, None));

    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing seq: {seqs:?}");
    let ids: HashSet<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids.len(), events.len(), "unique ids");
    assert!(
        events
            .iter()
            .all(|e| e.event.id.starts_with("evt_") && e.event.id.len() == 36)
    );
    let cursors: Vec<EventCursor> = events.iter().map(|e| e.cursor).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "increasing cursors: {cursors:?}"
    );
    let rest = settled_events(outbox, events[6].cursor, 1000).await;
    assert_eq!(rest.events, events[7..].to_vec());
    assert_eq!(settled_events(outbox, EventCursor::START, 2).await.events.len(), 2);
}

/// A change the store refuses (stale version, unknown payout) writes no event.
pub async fn a_refused_change_writes_no_event(store: &dyn PayoutStore, outbox: &dyn EventOutbox) {
    let seeded = seed(
        store,
        vec![fixtures::new_payout("po_ev_r", "dr-ev-r", month(2025, 11), &["500"])],
    )
    .await;
    let before = all(outbox).await;
    let mut stale = fixtures::status_change(&seeded[0], PayoutStatus::Approved, at(1));
    stale.expected_version += 1;
    assert!(matches!(store.apply(stale).await, Err(Error::Conflict(_))));
    let mut other = seeded[0].clone();
    other.id = "po_unknown".into();
    assert!(matches!(
        store
            .apply(fixtures::status_change(&other, PayoutStatus::Approved, at(1)))
            .await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(all(outbox).await, before, "no event for a refused change");
}

/// Claims take the first pending event of each payout only, oldest first, under a lease: the
/// next event of a payout waits until the earlier one is delivered; a claimed event is not
/// claimed again before its lease ends, is claimed again after, and an outcome under an old lease
/// writes nothing.
pub async fn claims_go_in_order_per_payout_under_a_lease(store: &dyn PayoutStore, outbox: &dyn EventOutbox) {
    let seeded = seed(
        store,
        vec![
            fixtures::new_payout("po_ev_a", "dr-a", month(2025, 11), &["500"]),
            fixtures::new_payout("po_ev_b", "dr-b", month(2025, 11), &["700"]),
        ],
    )
    .await;
    store
        .apply(fixtures::status_change(&seeded[0], PayoutStatus::Approved, at(1)))
        .await
        .expect("approve a");
    let first = outbox.claim_events(&claim_at(2, 10)).await.expect("claim");
    assert_eq!(
        keys(&first),
        vec![
            ("po_ev_a".to_string(), EventType::PayoutCreated),
            ("po_ev_b".to_string(), EventType::PayoutCreated)
        ],
        "one event per payout, the first"
    );
    assert!(
        outbox.claim_events(&claim_at(3, 10)).await.expect("claim").is_empty(),
        "leased"
    );
    let written = outbox
        .finish_events(&[done(&first[0], DeliveryOutcome::Delivered, 3)])
        .await
        .expect("finish");
    assert_eq!(written, vec![true]);
    let next = outbox.claim_events(&claim_at(3, 10)).await.expect("claim");
    assert_eq!(
        keys(&next),
        vec![("po_ev_a".to_string(), EventType::PayoutStatusChanged)]
    );

    // b's claimer died: its lease ends at minute 7.
    let again = outbox
        .claim_events(&claim_at(7, 10))
        .await
        .expect("claim after the lease");
    assert_eq!(
        again.iter().map(|c| c.event.seq).collect::<Vec<_>>(),
        vec![first[1].event.seq]
    );
    assert!(again[0].lease > first[1].lease);
    let late = outbox
        .finish_events(&[
            done(&first[1], DeliveryOutcome::Delivered, 8),
            done(&again[0], DeliveryOutcome::Delivered, 8),
            done(&again[0], DeliveryOutcome::Delivered, 8),
        ])
        .await
        .expect("finish");
    assert_eq!(late, vec![false, true, false], "only the latest lease writes, once");
    let states: Vec<DeliveryState> = all(outbox).await.iter().map(|e| e.delivery).collect();
    assert_eq!(
        states,
        vec![
            DeliveryState::Delivered,
            DeliveryState::Delivered,
            DeliveryState::Pending
        ]
    );
    assert_eq!(
        outbox
            .finish_events(&[EventDone {
                seq: 999_999,
                lease: 1,
                outcome: DeliveryOutcome::Delivered,
                at: at(9),
            }])
            .await
            .expect("unknown seq"),
        vec![false]
    );
}

/// A failed delivery counts a try and waits until its next try, holding back the payout's later
/// events; a dead letter is listed, counts its try, and lets the payout's next event go.
pub async fn retries_wait_and_dead_letters_unblock(store: &dyn PayoutStore, outbox: &dyn EventOutbox) {
    let seeded = seed(
        store,
        vec![fixtures::new_payout("po_ev_d", "dr-d", month(2025, 11), &["500"])],
    )
    .await;
    store
        .apply(fixtures::status_change(&seeded[0], PayoutStatus::Approved, at(1)))
        .await
        .expect("approve");
    let c = outbox.claim_events(&claim_at(2, 10)).await.expect("claim");
    assert_eq!(c.len(), 1);
    let retry = DeliveryOutcome::Retry {
        next_try_at: at(30),
        error: "503 from the receiver".into(),
    };
    assert_eq!(
        outbox.finish_events(&[done(&c[0], retry, 2)]).await.expect("finish"),
        vec![true]
    );
    assert!(
        outbox.claim_events(&claim_at(29, 10)).await.expect("claim").is_empty(),
        "not before its next try, and the later event waits"
    );
    let c = outbox.claim_events(&claim_at(30, 10)).await.expect("claim");
    assert_eq!((c.len(), c[0].tries), (1, 1));
    let dead = DeliveryOutcome::DeadLetter {
        error: "410 gone".into(),
    };
    assert_eq!(
        outbox.finish_events(&[done(&c[0], dead, 30)]).await.expect("finish"),
        vec![true]
    );
    let letters = outbox.dead_letters(0, 100).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.seq, c[0].event.seq);
    assert_eq!(letters[0].tries, 2);
    assert_eq!(letters[0].last_error.as_deref(), Some("410 gone"));
    assert_eq!(letters[0].delivery, DeliveryState::DeadLettered);
    let next = outbox.claim_events(&claim_at(31, 10)).await.expect("claim");
    assert_eq!(
        keys(&next),
        vec![("po_ev_d".to_string(), EventType::PayoutStatusChanged)]
    );
    assert!(
        outbox
            .dead_letters(letters[0].event.seq, 100)
            .await
            .expect("after")
            .is_empty()
    );
}

/// Several claimers at once (instances of a relay) never get the same event, and between them
/// claim every payout's first event.
pub async fn concurrent_claims_never_share_an_event((store, outbox): OutboxPair) {
    let payouts: Vec<_> = (0..40)
        .map(|i| {
            fixtures::new_payout(
                &format!("po_ev_c{i:02}"),
                &format!("dr-c{i}"),
                month(2025, 11),
                &["500"],
            )
        })
        .collect();
    seed(&*store, payouts).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..4 {
                    for c in outbox.claim_events(&claim_at(1, 3)).await.expect("claim") {
                        mine.push(c.event.seq);
                    }
                }
                mine
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in tasks {
        for seq in t.await.expect("a claimer") {
            assert!(seen.insert(seq), "event {seq} claimed twice");
        }
    }
    let rest = outbox.claim_events(&claim_at(1, 100)).await.expect("claim the rest");
    for c in rest {
        assert!(seen.insert(c.event.seq), "event {} claimed twice", c.event.seq);
    }
    assert_eq!(seen.len(), 40, "every event claimed once");
}
