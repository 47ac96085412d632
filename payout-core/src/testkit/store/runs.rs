//! Checks of runs: members, totals kept as the members move, per-payout results, run events and
//! funds overrides.

use futures::StreamExt;

use crate::domain::{PayoutId, Provider, RunEvent, RunId, RunKind, RunSummary, RunTally, order_totals};
use crate::error::Error;
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{Cursor, Page, PayoutChange, PayoutFilter, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at, month};

use super::{apply, assert_err, count, seed, seed_numbered};

/// `run(id)`, asserting it works.
async fn summary(store: &dyn PayoutStore, id: &str) -> RunSummary {
    store
        .run(&RunId::new(id))
        .await
        .unwrap_or_else(|e| panic!("run({id}) failed: {e}"))
}

/// Every payout matching `filter`, newest first, read with keyset pages of `limit`.
async fn all_listed(store: &dyn PayoutStore, filter: &PayoutFilter, limit: u32) -> Vec<PayoutId> {
    let mut ids = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = Page {
            limit,
            skip: 0,
            after: after.clone(),
        };
        let got = store
            .list(filter, &page)
            .await
            .unwrap_or_else(|e| panic!("list({filter:?}) failed: {e}"));
        ids.extend(got.payouts.iter().map(|p| p.id.clone()));
        match got.next {
            Some(next) => after = Some(next),
            None => return ids,
        }
    }
}

/// The run's totals counted the slow way: every member read and put in its bucket.
async fn recount(store: &dyn PayoutStore, run: &str) -> Vec<RunTally> {
    let filter = PayoutFilter {
        run: Some(RunId::new(run)),
        ..Default::default()
    };
    let mut totals: Vec<RunTally> = Vec::new();
    for id in all_listed(store, &filter, 7).await {
        let p = store.get(&id).await.expect("get a member");
        let bucket = |t: &&mut RunTally| (t.status, t.provider, t.currency) == (p.status, p.provider, p.currency());
        match totals.iter_mut().find(|t| bucket(t)) {
            Some(t) => {
                t.count += 1;
                t.amount = t.amount.checked_add(&p.amount_due).expect("a sum");
            }
            None => totals.push(RunTally {
                status: p.status,
                provider: p.provider,
                currency: p.currency(),
                count: 1,
                amount: p.amount_due,
            }),
        }
    }
    order_totals(totals)
}

/// A run is created with its members and its `CREATE` event, and its totals count them by status,
/// provider and currency; a payout named twice is a member once. An unknown payout, an invalid run
/// or a taken id writes nothing; an unknown run is `RunNotFound` everywhere.
pub async fn runs_are_created_with_their_members_and_totals(store: &dyn PayoutStore) {
    let mut usd = fixtures::new_payout("po_usd", "dr-usd", month(2025, 1), &["10"]);
    usd.items[0].amount = Money::parse("12.34", Currency::USD).expect("USD");
    usd.payout.amount_due = usd.items[0].amount;
    usd.audit = fixtures::create_audit(&usd.payout);
    let mut payouts: Vec<_> = (1..=3)
        .map(|i| {
            fixtures::new_payout(
                &format!("po_{i:02}"),
                &format!("dr-{i}"),
                month(2025, 1),
                &["500", "0.25"],
            )
        })
        .collect();
    payouts.push(usd);
    seed(store, payouts).await;
    let ids: Vec<PayoutId> = ["po_01", "po_02", "po_usd", "po_01"]
        .into_iter()
        .map(PayoutId::new)
        .collect();

    let created = store
        .create_run(fixtures::new_run("run_a", at(5)), &ids)
        .await
        .expect("create_run");
    assert_eq!(created.run.id, RunId::new("run_a"));
    assert_eq!(created.run.kind, RunKind::Selection);
    assert_eq!(created.run.created_at, at(5));
    assert_eq!(created.run.funds_override, None);
    let expected = vec![
        RunTally {
            status: PayoutStatus::Pending,
            provider: None,
            currency: Currency::KES,
            count: 2,
            amount: Money::parse("1000.50", Currency::KES).expect("KES"),
        },
        RunTally {
            status: PayoutStatus::Pending,
            provider: None,
            currency: Currency::USD,
            count: 1,
            amount: Money::parse("12.34", Currency::USD).expect("USD"),
        },
    ];
    assert_eq!(
        created.totals, expected,
        "two KES members (one named twice) and one USD"
    );
    assert_eq!(
        summary(store, "run_a").await,
        created,
        "run() reads what create_run returned"
    );
    assert_eq!(
        recount(store, "run_a").await,
        expected,
        "the members are the payouts named"
    );
    let events = store.run_events(&RunId::new("run_a")).await.expect("run_events");
    assert_eq!(events, vec![RunEvent::created(&created.run)], "the CREATE event");

    let empty = store
        .create_run(fixtures::calculation_run("run_empty", month(2025, 2)), &[])
        .await
        .expect("an empty run");
    assert!(empty.totals.is_empty());
    assert_eq!(empty.run.period, Some(month(2025, 2)));

    assert_err!(
        store
            .create_run(fixtures::new_run("run_b", at(6)), &[PayoutId::new("po_01"), PayoutId::new("po_nope")])
            .await,
        Error::NotFound(id) if id.as_str() == "po_nope",
        "a run with an unknown payout"
    );
    assert_err!(
        store.run(&RunId::new("run_b")).await,
        Error::RunNotFound(_),
        "the refused run was not written"
    );
    assert_err!(
        store.create_run(fixtures::new_run("run_a", at(7)), &[]).await,
        Error::RunConflict(id) if id.as_str() == "run_a",
        "a taken run id"
    );
    let mut unlabelled = fixtures::new_run("run_c", at(8));
    unlabelled.label = "  ".into();
    assert_err!(
        store.create_run(unlabelled, &ids).await,
        Error::InvalidInput(_),
        "a run without a label"
    );
    assert_eq!(store.runs(&Page::default()).await.expect("runs").total, 2);
    assert_eq!(summary(store, "run_a").await, created, "refused runs changed nothing");

    let unknown = RunId::new("run_unknown");
    assert_err!(store.run(&unknown).await, Error::RunNotFound(_), "run");
    assert_err!(store.run_events(&unknown).await, Error::RunNotFound(_), "run_events");
    assert_err!(
        store.run_results(&unknown, &Page::default()).await,
        Error::RunNotFound(_),
        "run_results"
    );
    assert_err!(
        store.record_run_results(&unknown, &[]).await,
        Error::RunNotFound(_),
        "record_run_results"
    );
    let mut event = RunEvent::created(&created.run);
    event.run_id = unknown.clone();
    assert_err!(
        store.record_run_event(event).await,
        Error::RunNotFound(_),
        "record_run_event"
    );
    assert_err!(
        store
            .set_funds_override(&unknown, None, fixtures::funds_override(at(9)))
            .await,
        Error::RunNotFound(_),
        "set_funds_override"
    );
}

/// A small deterministic generator (the checks must not be flaky): the same moves every run.
struct Moves(u64);

impl Moves {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A run's totals follow every change of its members' status and provider, one at a time
/// (`apply`) or many at once (`apply_many`), and nothing else's: after each round of random
/// moves they equal a recount of the members. A payout in two runs counts in both; a change that
/// moves no payout between buckets (a note) changes no total.
pub async fn run_totals_follow_every_change(store: &dyn PayoutStore) {
    let seeded = seed_numbered(store, 12).await;
    let ids: Vec<PayoutId> = seeded.iter().map(|p| p.id.clone()).collect();
    store
        .create_run(
            fixtures::new_run("run_even", at(1)),
            &ids.iter().step_by(2).cloned().collect::<Vec<_>>(),
        )
        .await
        .expect("create_run");
    store
        .create_run(fixtures::new_run("run_first", at(2)), &ids[..6])
        .await
        .expect("create_run");
    let providers = [None, Some(Provider::MpesaB2c), Some(Provider::BankTransfer)];
    let mut moves = Moves(17);
    for round in 0..6 {
        let mut changes = Vec::new();
        let mut touched = std::collections::HashSet::new();
        for _ in 0..5 {
            let id = &ids[moves.below(ids.len())];
            if !touched.insert(id.clone()) {
                continue;
            }
            let p = store.get(id).await.expect("get");
            let to = PayoutStatus::ALL[moves.below(PayoutStatus::ALL.len())];
            let mut change = fixtures::status_change(&p, to, at(10 + round));
            change.patch.provider = providers[moves.below(providers.len())];
            changes.push(change);
        }
        if round % 2 == 0 {
            for change in changes {
                apply(store, change, "a random move").await;
            }
        } else {
            for r in store.apply_many(changes).await {
                r.unwrap_or_else(|e| panic!("apply_many of random moves failed: {e}"));
            }
        }
        for run in ["run_even", "run_first"] {
            assert_eq!(
                summary(store, run).await.totals,
                recount(store, run).await,
                "{run}: the totals after round {round} are not a recount of its members"
            );
        }
    }
    let before = summary(store, "run_first").await;
    let p = store.get(&ids[0]).await.expect("get");
    let mut note = PayoutChange::of(&p, at(30));
    note.patch.notes = Some("a note moves nothing".into());
    apply(store, note, "a note").await;
    assert_eq!(summary(store, "run_first").await, before, "a note changes no total");
    assert_eq!(summary(store, "run_first").await.count(), 6);
    assert_eq!(summary(store, "run_even").await.count(), 6);
}

/// A calculation's batch with a run makes the payouts it creates members of that run, and only
/// those (a skipped payout is not a member); an unknown run refuses the batch, writing nothing.
pub async fn a_calculation_batch_makes_its_payouts_members(store: &dyn PayoutStore) {
    let jan = month(2025, 1);
    store
        .create_run(fixtures::calculation_run("run_jan", jan), &[])
        .await
        .expect("create_run");
    let mut batch = fixtures::batch(
        vec![
            fixtures::new_payout("po_01", "dr-1", jan, &["500"]),
            fixtures::new_payout("po_02", "dr-2", jan, &["700"]),
        ],
        Vec::new(),
    );
    batch.run = Some(RunId::new("run_jan"));
    let outcome = store.create_period(batch).await.expect("create_period");
    assert_eq!(outcome.created.len(), 2);

    // A re-run: dr-1 is skipped (already calculated), dr-3 is new.
    let mut rerun = fixtures::batch(
        vec![
            fixtures::new_payout("po_03", "dr-1", jan, &["500"]),
            fixtures::new_payout("po_04", "dr-3", jan, &["300"]),
        ],
        Vec::new(),
    );
    rerun.run = Some(RunId::new("run_jan"));
    let outcome = store.create_period(rerun).await.expect("create_period");
    assert_eq!(outcome.created, vec![PayoutId::new("po_04")]);
    let members = all_listed(
        store,
        &PayoutFilter {
            run: Some(RunId::new("run_jan")),
            ..Default::default()
        },
        10,
    )
    .await;
    let mut members: Vec<&str> = members.iter().map(PayoutId::as_str).collect();
    members.sort_unstable();
    assert_eq!(
        members,
        ["po_01", "po_02", "po_04"],
        "the created payouts, not the skipped one"
    );
    let s = summary(store, "run_jan").await;
    assert_eq!(s.count(), 3);
    assert_eq!(
        s.by_currency().expect("by currency")[0].amount,
        fixtures::kes("1500"),
        "500 + 700 + 300"
    );

    let mut orphan = fixtures::batch(vec![fixtures::new_payout("po_05", "dr-5", jan, &["500"])], Vec::new());
    orphan.run = Some(RunId::new("run_nope"));
    let before = count(store).await;
    assert_err!(
        store.create_period(orphan).await,
        Error::RunNotFound(id) if id.as_str() == "run_nope",
        "a batch for an unknown run"
    );
    assert_eq!(count(store).await, before, "the refused batch wrote nothing");
}

/// `run` and `held` filter `list` (and its total), `stream` and the export alike, together with
/// the other filters.
pub async fn filters_by_run_and_hold_apply_everywhere(store: &dyn PayoutStore) {
    let seeded = seed_numbered(store, 6).await;
    let ids: Vec<PayoutId> = seeded.iter().map(|p| p.id.clone()).collect();
    store
        .create_run(fixtures::new_run("run_a", at(1)), &ids[..4])
        .await
        .expect("create_run");
    // po_01 and po_05 held, po_02 held then released.
    for (n, release) in [(0, false), (4, false), (1, true)] {
        let mut change = PayoutChange::of(&seeded[n], at(2));
        change.patch.hold = Some(fixtures::hold(crate::domain::HoldScope::Payout, at(2)));
        let held = apply(store, change, "hold").await;
        if release {
            let mut change = PayoutChange::of(&held, at(3));
            change.patch.hold = held.hold.as_ref().map(|h| h.released("admin:other".into(), at(3)));
            apply(store, change, "release").await;
        }
    }
    let approved = store.get(&ids[2]).await.expect("get");
    apply(
        store,
        fixtures::status_change(&approved, PayoutStatus::Approved, at(4)),
        "approve po_03",
    )
    .await;

    // A run made after the holds and the approval: its members join with their state as it is.
    store
        .create_run(
            fixtures::new_run("run_b", at(5)),
            &[ids[4].clone(), ids[1].clone(), ids[0].clone(), ids[2].clone()],
        )
        .await
        .expect("create_run");

    let run = Some(RunId::new("run_a"));
    let run_b = Some(RunId::new("run_b"));
    // The seeded payouts are all created on one day.
    let day = seeded[0].created_at.date_naive();
    assert!(seeded.iter().all(|p| p.created_at.date_naive() == day));
    let cases: Vec<(PayoutFilter, Vec<&str>)> = vec![
        (
            PayoutFilter {
                run: run.clone(),
                ..Default::default()
            },
            vec!["po_04", "po_03", "po_02", "po_01"],
        ),
        (
            PayoutFilter {
                held: Some(true),
                ..Default::default()
            },
            vec!["po_05", "po_01"],
        ),
        (
            PayoutFilter {
                run: run.clone(),
                held: Some(false),
                ..Default::default()
            },
            vec!["po_04", "po_03", "po_02"],
        ),
        (
            PayoutFilter {
                run: run.clone(),
                status: Some(PayoutStatus::Approved),
                ..Default::default()
            },
            vec!["po_03"],
        ),
        (
            PayoutFilter {
                run: run.clone(),
                status: Some(PayoutStatus::Pending),
                held: Some(true),
                ..Default::default()
            },
            vec!["po_01"],
        ),
        (
            PayoutFilter {
                run: run.clone(),
                held: Some(true),
                ..Default::default()
            },
            vec!["po_01"],
        ),
        (
            PayoutFilter {
                run: run_b.clone(),
                held: Some(true),
                ..Default::default()
            },
            vec!["po_05", "po_01"],
        ),
        (
            PayoutFilter {
                run: run_b.clone(),
                held: Some(false),
                ..Default::default()
            },
            vec!["po_03", "po_02"],
        ),
        (
            PayoutFilter {
                run: run_b.clone(),
                status: Some(PayoutStatus::Approved),
                held: Some(false),
                ..Default::default()
            },
            vec!["po_03"],
        ),
        (
            PayoutFilter {
                run: run_b.clone(),
                doctor_id: Some(seeded[4].doctor_id.clone()),
                ..Default::default()
            },
            vec!["po_05"],
        ),
        (
            PayoutFilter {
                run: run.clone(),
                created_from: Some(day),
                created_to: Some(day),
                ..Default::default()
            },
            vec!["po_04", "po_03", "po_02", "po_01"],
        ),
        (
            PayoutFilter {
                run: run.clone(),
                created_from: day.succ_opt(),
                ..Default::default()
            },
            vec![],
        ),
        (
            PayoutFilter {
                run: run_b.clone(),
                held: Some(true),
                created_to: day.pred_opt(),
                ..Default::default()
            },
            vec![],
        ),
        (
            PayoutFilter {
                run: Some(RunId::new("run_unknown")),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let page = store.list(&filter, &Page::new(2, 0)).await.expect("list");
        assert_eq!(page.total, expected.len() as u64, "list total of {filter:?}");
        let listed = all_listed(store, &filter, 2).await;
        let listed: Vec<&str> = listed.iter().map(PayoutId::as_str).collect();
        assert_eq!(listed, expected, "list of {filter:?}, newest first (then by id)");
        // Offset pages agree with the keyset ones, one payout at a time and past the end.
        for skip in 0..=expected.len() {
            let page = store.list(&filter, &Page::new(1, skip as u64)).await.expect("list");
            let got: Vec<&str> = page.payouts.iter().map(|p| p.id.as_str()).collect();
            assert_eq!(
                got,
                expected.get(skip).into_iter().copied().collect::<Vec<_>>(),
                "page {skip} of {filter:?}"
            );
            assert_eq!(page.total, expected.len() as u64, "total of page {skip} of {filter:?}");
        }
        let streamed: Vec<String> = store
            .stream(filter.clone())
            .map(|p| p.expect("stream").id.to_string())
            .collect()
            .await;
        assert_eq!(streamed, expected, "stream of {filter:?}");
        let exported: Vec<String> = store
            .export_stream(filter.clone())
            .map(|r| r.expect("export").id.to_string())
            .collect()
            .await;
        assert_eq!(exported, expected, "export of {filter:?}");
    }
}

/// A run's results are kept in the order recorded and paged oldest first, its events likewise;
/// neither is checked against the members.
pub async fn run_results_and_events_are_kept_in_order(store: &dyn PayoutStore) {
    let seeded = seed_numbered(store, 3).await;
    let run = RunId::new("run_a");
    store
        .create_run(fixtures::new_run("run_a", at(1)), &[seeded[0].id.clone()])
        .await
        .expect("create_run");
    let first: Vec<_> = seeded
        .iter()
        .enumerate()
        .map(|(n, p)| fixtures::run_result(&p.id, n != 1, at(2)))
        .collect();
    store.record_run_results(&run, &first).await.expect("record");
    let mut approved = fixtures::run_result(&seeded[1].id, true, at(3));
    approved.action = crate::domain::RunAction::Approve;
    approved.provider = None;
    approved.status_after = Some(PayoutStatus::Approved);
    store
        .record_run_results(&run, std::slice::from_ref(&approved))
        .await
        .expect("record");
    store.record_run_results(&run, &[]).await.expect("nothing to record");
    let mut all = first.clone();
    all.push(approved);
    let page = store.run_results(&run, &Page::new(10, 0)).await.expect("results");
    assert_eq!(page.results, all, "every result, as written, in order");
    assert_eq!(page.total, 4);
    let page = store.run_results(&run, &Page::new(2, 1)).await.expect("results");
    assert_eq!(page.results, all[1..3].to_vec(), "limit and skip");
    assert_eq!(page.total, 4);

    let mut events = store.run_events(&run).await.expect("events");
    for (n, action) in [RunEvent::APPROVE, RunEvent::TRIGGER].into_iter().enumerate() {
        let event = RunEvent {
            run_id: run.clone(),
            at: at(10 + n as i64),
            actor: "admin:testkit".into(),
            action: action.into(),
            details: (n == 0).then(|| "2 approved, 1 refused: \"quoted\" \u{e9}".to_string()),
        };
        store.record_run_event(event.clone()).await.expect("record event");
        events.push(event);
    }
    assert_eq!(store.run_events(&run).await.expect("events"), events);
    assert_eq!(events[0].action, RunEvent::CREATE);
}

/// A funds override is written only over the one the caller read, with its event; of two admins
/// confirming the same request, one wins.
pub async fn funds_override_is_conditional(store: &dyn PayoutStore) {
    let run = RunId::new("run_a");
    store
        .create_run(fixtures::new_run("run_a", at(1)), &[])
        .await
        .expect("create_run");
    let requested = fixtures::funds_override(at(2));
    assert_err!(
        store
            .set_funds_override(&run, Some(requested.clone()), requested.clone())
            .await,
        Error::RunConflict(_),
        "expecting an override that is not there"
    );
    let written = store
        .set_funds_override(&run, None, requested.clone())
        .await
        .expect("request");
    assert_eq!(written.funds_override.as_ref(), Some(&requested));
    let confirmed = crate::domain::FundsOverride {
        confirmed_by: Some("admin:two".into()),
        confirmed_at: Some(at(3)),
        ..requested.clone()
    };
    assert_err!(
        store.set_funds_override(&run, None, confirmed.clone()).await,
        Error::RunConflict(_),
        "a second request over the first"
    );
    store
        .set_funds_override(&run, Some(requested.clone()), confirmed.clone())
        .await
        .expect("confirm");
    let mut other = confirmed.clone();
    other.confirmed_by = Some("admin:three".into());
    assert_err!(
        store.set_funds_override(&run, Some(requested.clone()), other).await,
        Error::RunConflict(_),
        "a second confirmation of the same request"
    );
    assert_eq!(
        summary(store, "run_a").await.run.funds_override,
        Some(confirmed.clone())
    );
    let actions: Vec<String> = store
        .run_events(&run)
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            RunEvent::CREATE,
            RunEvent::FUNDS_OVERRIDE_REQUESTED,
            RunEvent::FUNDS_OVERRIDE_CONFIRMED
        ],
        "one event per override written, none for the refused ones"
    );
}

/// Runs are listed newest first (`created_at`, then id), with their totals, paged by limit and skip.
pub async fn runs_are_listed_newest_first(store: &dyn PayoutStore) {
    let seeded = seed_numbered(store, 2).await;
    for (id, minutes) in [("run_b", 5), ("run_a", 5), ("run_c", 1), ("run_d", 9)] {
        store
            .create_run(fixtures::new_run(id, at(minutes)), &[seeded[0].id.clone()])
            .await
            .expect("create_run");
    }
    let page = store.runs(&Page::new(3, 0)).await.expect("runs");
    assert_eq!(page.total, 4);
    let order: Vec<&str> = page.runs.iter().map(|r| r.run.id.as_str()).collect();
    assert_eq!(order, ["run_d", "run_b", "run_a"]);
    assert!(page.runs.iter().all(|r| r.count() == 1), "each with its totals");
    let page = store.runs(&Page::new(3, 3)).await.expect("runs");
    let order: Vec<&str> = page.runs.iter().map(|r| r.run.id.as_str()).collect();
    assert_eq!(order, ["run_c"]);
    assert_eq!(
        store.runs(&Page::new(50_000, 0)).await.expect("runs").runs.len(),
        4,
        "a limit above the maximum is clamped, not refused"
    );
}

/// A run's attention is the attention queue's part that is its members: flagged by a check or by
/// money that came back, in the queue's order, paged, with the total; a payout in two runs is in
/// both; a change that clears the flag takes it out; an unknown run is `RunNotFound`.
pub async fn a_runs_attention_is_its_flagged_members(store: &dyn PayoutStore) {
    use crate::store::{CheckClaim, CheckDone, FollowUp};

    let seeded = seed_numbered(store, 5).await;
    let ids: Vec<PayoutId> = seeded.iter().map(|p| p.id.clone()).collect();
    store
        .create_run(fixtures::new_run("run_a", at(0)), &ids[..3])
        .await
        .expect("create_run run_a");
    store
        .create_run(fixtures::new_run("run_b", at(0)), &ids[2..])
        .await
        .expect("create_run run_b");
    store
        .create_run(fixtures::new_run("run_empty", at(0)), &[])
        .await
        .expect("create_run run_empty");
    let mut processing = Vec::new();
    for p in &seeded {
        let approved = super::move_to(store, p, PayoutStatus::Approved, at(1)).await;
        processing.push(super::move_to(store, &approved, PayoutStatus::Processing, at(2)).await);
    }
    let claimed = store
        .claim_checks(&CheckClaim {
            due_by: at(2),
            limit: 10,
            lease_until: at(50),
        })
        .await
        .expect("claim_checks");
    assert_eq!(claimed.len(), 5);
    // Flagged by a check: po_03 (in both runs) at minute 3, po_01 at 4, po_05 at 5; po_04 is not
    // flagged, nor po_02 yet (the money comes back later).
    let done: Vec<CheckDone> = [("po_03", 3), ("po_01", 4), ("po_05", 5)]
        .into_iter()
        .map(|(id, when)| {
            let c = claimed.iter().find(|c| c.payout.id.as_str() == id).expect("claimed");
            CheckDone {
                payout_id: c.payout.id.clone(),
                lease: c.lease,
                follow_up: FollowUp::check_at(at(40)).flagged(format!("look at {id}")),
                at: at(when),
            }
        })
        .collect();
    assert_eq!(
        store.finish_checks(&done).await.expect("finish_checks"),
        [true, true, true]
    );
    // po_02 is paid, then its money comes back: flagged by the change, at minute 7.
    let paid = super::move_to(store, &processing[1], PayoutStatus::Paid, at(6)).await;
    super::move_to(store, &paid, PayoutStatus::Returned, at(7)).await;

    let listed = |page: &crate::store::AttentionPage| -> Vec<(String, String, chrono::DateTime<chrono::Utc>)> {
        page.flagged
            .iter()
            .map(|f| (f.payout.id.to_string(), f.reason.clone(), f.since))
            .collect()
    };
    let run_a = store
        .run_attention(&RunId::new("run_a"), &Page::new(10, 0))
        .await
        .expect("run_attention(run_a)");
    assert_eq!(run_a.total, 3, "po_03, po_01 and po_02 of run_a are flagged");
    assert_eq!(
        listed(&run_a),
        [
            ("po_03".to_string(), "look at po_03".to_string(), at(3)),
            ("po_01".to_string(), "look at po_01".to_string(), at(4)),
            (
                "po_02".to_string(),
                "RETURNED: the money came back after it was paid".to_string(),
                at(7)
            ),
        ],
        "run_a's flagged members, oldest flag first, each with its reason"
    );
    assert_eq!(
        run_a.flagged[2].payout.status,
        PayoutStatus::Returned,
        "the payout as stored"
    );
    let run_b = store
        .run_attention(&RunId::new("run_b"), &Page::new(10, 0))
        .await
        .expect("run_attention(run_b)");
    let got: Vec<String> = run_b.flagged.iter().map(|f| f.payout.id.to_string()).collect();
    assert_eq!(
        got,
        ["po_03", "po_05"],
        "a payout in two runs is in both; po_04 is not flagged"
    );
    assert_eq!(run_b.total, 2);
    let second = store
        .run_attention(&RunId::new("run_a"), &Page::new(1, 1))
        .await
        .expect("run_attention page 2");
    assert_eq!(second.total, 3, "the total whatever the page");
    let got: Vec<&str> = second.flagged.iter().map(|f| f.payout.id.as_str()).collect();
    assert_eq!(got, ["po_01"], "limit and skip");
    let past = store
        .run_attention(&RunId::new("run_a"), &Page::new(10, 3))
        .await
        .expect("run_attention past the end");
    assert!(past.flagged.is_empty());
    assert_eq!(past.total, 3);
    let empty = store
        .run_attention(&RunId::new("run_empty"), &Page::new(10, 0))
        .await
        .expect("run_attention(run_empty)");
    assert_eq!((empty.flagged.len(), empty.total), (0, 0), "a run without members");
    assert_eq!(
        store.attention(&Page::new(10, 0)).await.expect("attention").total,
        4,
        "the whole queue holds every flagged payout"
    );

    // po_01 settles: the change clears its flag, and it leaves run_a's attention.
    let current = store.get(&ids[0]).await.expect("get po_01");
    super::move_to(store, &current, PayoutStatus::Paid, at(8)).await;
    let run_a = store
        .run_attention(&RunId::new("run_a"), &Page::new(10, 0))
        .await
        .expect("run_attention after a settlement");
    let got: Vec<&str> = run_a.flagged.iter().map(|f| f.payout.id.as_str()).collect();
    assert_eq!(got, ["po_03", "po_02"]);
    assert_eq!(run_a.total, 2);

    assert_err!(
        store.run_attention(&RunId::new("run_unknown"), &Page::default()).await,
        Error::RunNotFound(id) if id.as_str() == "run_unknown",
        "run_attention of an unknown run"
    );
}
