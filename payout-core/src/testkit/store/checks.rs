//! Checks of reconciliation's follow-ups: the schedule a status change writes, claims under a
//! lease, finished checks, and the attention queue.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::Barrier;

use super::{apply, move_to, seed_numbered, snapshot};
use crate::domain::{AttemptOutcome, Payout, PayoutDestination, Provider};
use crate::error::Error;
use crate::status::PayoutStatus;
use crate::store::{CheckClaim, CheckDone, CheckState, ClaimedCheck, FollowUp, Page, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at};

async fn state(store: &dyn PayoutStore, p: &Payout) -> CheckState {
    store
        .check_state(&p.id)
        .await
        .unwrap_or_else(|e| panic!("check_state({}) failed: {e}", p.id))
}

async fn claim(store: &dyn PayoutStore, due_by: i64, limit: u32, lease_until: i64) -> Vec<ClaimedCheck> {
    store
        .claim_checks(&CheckClaim {
            due_by: at(due_by),
            limit,
            lease_until: at(lease_until),
        })
        .await
        .unwrap_or_else(|e| panic!("claim_checks failed: {e}"))
}

fn ids(claimed: &[ClaimedCheck]) -> Vec<&str> {
    claimed.iter().map(|c| c.payout.id.as_str()).collect()
}

fn done(c: &ClaimedCheck, follow_up: FollowUp, when: i64) -> CheckDone {
    CheckDone {
        payout_id: c.payout.id.clone(),
        lease: c.lease,
        follow_up,
        at: at(when),
    }
}

async fn finish_all(store: &dyn PayoutStore, done: &[CheckDone]) -> Vec<bool> {
    let written = store
        .finish_checks(done)
        .await
        .unwrap_or_else(|e| panic!("finish_checks failed: {e}"));
    assert_eq!(written.len(), done.len(), "finish_checks answers once per check");
    written
}

async fn finish(store: &dyn PayoutStore, c: &ClaimedCheck, follow_up: FollowUp, when: i64) -> bool {
    finish_all(store, &[done(c, follow_up, when)]).await[0]
}

/// Entering PROCESSING schedules a check at the change's time, in the same step (single and
/// batched changes alike); PAID and FAILED unschedule it; RETURNED and REVERSED flag the payout;
/// a change's own follow-up wins. Only the status changes bump the version.
pub async fn a_status_change_writes_its_follow_up(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 5).await;
    assert_eq!(
        state(store, &created[0]).await,
        CheckState::default(),
        "nothing before PROCESSING"
    );
    let mut approved = Vec::new();
    for p in &created {
        approved.push(move_to(store, p, PayoutStatus::Approved, at(1)).await);
    }
    assert_eq!(
        state(store, &approved[0]).await,
        CheckState::default(),
        "approving schedules nothing"
    );
    let changes = approved
        .iter()
        .map(|p| fixtures::status_change(p, PayoutStatus::Processing, at(5)))
        .collect();
    let processing: Vec<Payout> = store
        .apply_many(changes)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("apply_many to PROCESSING failed: {e}")))
        .collect();
    for p in &processing {
        assert_eq!(
            state(store, p).await,
            CheckState {
                next_check_at: Some(at(5)),
                checks: 0,
                attention: None
            },
            "{} entered PROCESSING at minute 5",
            p.id
        );
    }
    let paid = move_to(store, &processing[0], PayoutStatus::Paid, at(6)).await;
    assert_eq!(
        state(store, &paid).await,
        CheckState::default(),
        "PAID is not scheduled"
    );
    let failed = move_to(store, &processing[1], PayoutStatus::Failed, at(6)).await;
    assert_eq!(
        state(store, &failed).await,
        CheckState::default(),
        "FAILED is not scheduled"
    );
    let returned = move_to(store, &paid, PayoutStatus::Returned, at(7)).await;
    let s = state(store, &returned).await;
    assert_eq!(s.next_check_at, None, "RETURNED is not scheduled");
    assert!(s.attention.is_some(), "RETURNED is flagged for a person");

    let mut watched = fixtures::status_change(&processing[2], PayoutStatus::Paid, at(8));
    watched.follow_up = Some(FollowUp::check_at(at(60)).flagged("watch"));
    let watched = apply(store, watched, "PAID with its own follow-up").await;
    assert_eq!(
        state(store, &watched).await,
        CheckState {
            next_check_at: Some(at(60)),
            checks: 0,
            attention: Some("watch".into())
        },
        "a change's own follow-up wins"
    );
    assert_eq!(watched.version, processing[2].version + 1, "one change, one version");

    // Flagged follow-ups in one batch: each flag's `since` is its change's time.
    let flagged_batch = [(3, 9), (4, 10)].map(|(k, when)| {
        let mut change = fixtures::status_change(&processing[k], PayoutStatus::Paid, at(when));
        change.follow_up = Some(FollowUp::check_at(at(70)).flagged(format!("batch {k}")));
        change
    });
    for r in store.apply_many(Vec::from(flagged_batch)).await {
        r.unwrap_or_else(|e| panic!("apply_many of flagged follow-ups failed: {e}"));
    }
    let page = store.attention(&Page::new(10, 0)).await.expect("attention");
    let got: Vec<(&str, &str, _)> = page
        .flagged
        .iter()
        .filter(|f| f.payout.id == processing[3].id || f.payout.id == processing[4].id)
        .map(|f| (f.payout.id.as_str(), f.reason.as_str(), f.since))
        .collect();
    assert_eq!(
        got,
        [
            (processing[3].id.as_str(), "batch 3", at(9)),
            (processing[4].id.as_str(), "batch 4", at(10))
        ],
        "a batched change flags since its own time"
    );
    assert_eq!(state(store, &processing[4]).await.next_check_at, Some(at(70)));
}

/// A claim takes due checks only, earliest first and at most `limit`, moves them to the lease's
/// end and leaves the payout as it was (version, `updated_at`); a claimed check is not claimed
/// again until its lease ends. Finishing needs the latest lease, counts the check and
/// reschedules it; a change in between ends the lease.
pub async fn claims_take_due_checks_under_a_lease(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 5).await;
    let mut processing = Vec::new();
    for (i, p) in created.iter().enumerate() {
        let approved = move_to(store, p, PayoutStatus::Approved, at(0)).await;
        // po_01 due at minute 5, po_02 at 4, ... po_05 at 1.
        processing.push(move_to(store, &approved, PayoutStatus::Processing, at(5 - i as i64)).await);
    }
    let before = snapshot(store, &processing[0].id).await;

    let first = claim(store, 3, 2, 100).await;
    let mut got = ids(&first);
    got.sort_unstable();
    assert_eq!(got, ["po_04", "po_05"], "the two earliest of the three due by minute 3");
    for c in &first {
        let stored = processing
            .iter()
            .find(|p| p.id == c.payout.id)
            .expect("a seeded payout");
        assert_eq!(
            &c.payout, stored,
            "a claim returns the payout as stored and changes it not"
        );
        assert_eq!(c.checks, 0);
    }
    assert!(
        ids(&claim(store, 3, 10, 100).await) == ["po_03"],
        "claimed checks are not due again"
    );
    assert!(
        claim(store, 3, 10, 100).await.is_empty(),
        "nothing left due by minute 3"
    );
    super::assert_unchanged(store, &before, "an unclaimed payout").await;

    // po_04's check found nothing new: due again at minute 30.
    let c4 = first
        .iter()
        .find(|c| c.payout.id.as_str() == "po_04")
        .expect("po_04 claimed");
    assert!(finish(store, c4, FollowUp::check_at(at(30)), 10).await, "its own lease");
    assert!(
        !finish(store, c4, FollowUp::check_at(at(31)), 10).await,
        "a lease is finished once"
    );
    let s = state(store, &c4.payout).await;
    assert_eq!(
        (s.next_check_at, s.checks),
        (Some(at(30)), 1),
        "rescheduled, counted once"
    );
    assert_eq!(
        store.get(&c4.payout.id).await.expect("get"),
        c4.payout,
        "no new version"
    );

    // po_05's lease ends at minute 100: taken over then, and the first claimer's lease is dead.
    let c5 = first
        .iter()
        .find(|c| c.payout.id.as_str() == "po_05")
        .expect("po_05 claimed");
    let all = claim(store, 100, 10, 200).await;
    let mut got = ids(&all);
    got.sort_unstable();
    assert_eq!(
        got,
        ["po_01", "po_02", "po_03", "po_04", "po_05"],
        "every check due by minute 100"
    );
    assert!(
        !finish(store, c5, FollowUp::none(), 101).await,
        "a lease taken over is dead"
    );

    // A change (the payout settles) ends the lease and writes its own follow-up.
    let c1 = all
        .iter()
        .find(|c| c.payout.id.as_str() == "po_01")
        .expect("po_01 claimed");
    move_to(store, &c1.payout, PayoutStatus::Paid, at(102)).await;
    assert!(
        !finish(store, c1, FollowUp::check_at(at(300)), 103).await,
        "a change ended the lease"
    );
    assert_eq!(
        state(store, &c1.payout).await.next_check_at,
        None,
        "the change's follow-up stays"
    );
}

/// A claim carries each payout's latest attempt exactly as `attempts` reads it (the highest
/// `attempt_no`, after a failed attempt and a retry), or none when the payout has none.
pub async fn claims_carry_the_latest_attempt(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 2).await;
    let approved = move_to(store, &created[0], PayoutStatus::Approved, at(0)).await;
    let mut send = fixtures::status_change(&approved, PayoutStatus::Processing, at(1));
    send.new_attempt = Some(fixtures::attempt(&approved.id, 1, Provider::MpesaB2c, at(1)));
    let sent = apply(store, send, "PROCESSING with attempt 1").await;
    let mut fail = fixtures::status_change(&sent, PayoutStatus::Failed, at(2));
    fail.attempt_update = Some(fixtures::attempt_update(
        1,
        AttemptOutcome::Failed {
            reason: "declined".to_string(),
        },
        Some("ref-1"),
    ));
    let failed = apply(store, fail, "attempt 1 failed").await;
    let retried = move_to(store, &failed, PayoutStatus::Approved, at(3)).await;
    let mut resend = fixtures::status_change(&retried, PayoutStatus::Processing, at(4));
    let mut second = fixtures::attempt(&retried.id, 2, Provider::StripeConnect, at(4));
    second.destination = Some(PayoutDestination::StripeAccount {
        account_id: "acct_second".into(),
    });
    resend.new_attempt = Some(second);
    apply(store, resend, "PROCESSING with attempt 2").await;
    let other = move_to(store, &created[1], PayoutStatus::Approved, at(0)).await;
    move_to(store, &other, PayoutStatus::Processing, at(4)).await;

    let claimed = claim(store, 4, 10, 100).await;
    assert_eq!(claimed.len(), 2, "both due by minute 4");
    for c in &claimed {
        let stored = store.attempts(&c.payout.id).await.expect("attempts");
        assert_eq!(
            c.latest_attempt.as_ref(),
            stored.last(),
            "{}: the claim carries the latest attempt as stored",
            c.payout.id
        );
    }
    let first = claimed
        .iter()
        .find(|c| c.payout.id == created[0].id)
        .expect("po_01 claimed");
    assert_eq!(
        first.latest_attempt.as_ref().map(|a| a.attempt_no),
        Some(2),
        "the retry's attempt, not the failed one"
    );
    assert!(
        claimed
            .iter()
            .any(|c| c.payout.id == created[1].id && c.latest_attempt.is_none()),
        "a payout without attempts is claimed without one"
    );
}

/// Finishing checks in one call writes each under its own lease and answers for each in order:
/// a lease a change ended, or a payout listed a second time, is `false`; an unknown payout
/// anywhere in the call is `NotFound` and nothing of the call is written.
pub async fn finishing_a_batch_writes_each_under_its_lease(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 4).await;
    for p in &created {
        let approved = move_to(store, p, PayoutStatus::Approved, at(0)).await;
        move_to(store, &approved, PayoutStatus::Processing, at(1)).await;
    }
    let claimed = claim(store, 1, 10, 100).await;
    let c = |id: &str| {
        claimed
            .iter()
            .find(|c| c.payout.id.as_str() == id)
            .unwrap_or_else(|| panic!("{id} claimed"))
    };
    assert_eq!(
        finish_all(store, &[]).await,
        Vec::<bool>::new(),
        "an empty batch writes nothing"
    );
    // po_02 settles while its check is out: the change ends the lease.
    move_to(store, &c("po_02").payout, PayoutStatus::Paid, at(5)).await;
    let written = finish_all(
        store,
        &[
            done(c("po_01"), FollowUp::check_at(at(30)), 10),
            done(c("po_02"), FollowUp::check_at(at(31)), 10),
            done(c("po_03"), FollowUp::check_at(at(32)).flagged("look at po_03"), 10),
            done(c("po_01"), FollowUp::check_at(at(33)), 10),
        ],
    )
    .await;
    assert_eq!(
        written,
        [true, false, true, false],
        "each under its lease; a second finish of one lease is refused"
    );
    assert_eq!(
        state(store, &c("po_01").payout).await,
        CheckState {
            next_check_at: Some(at(30)),
            checks: 1,
            attention: None
        },
        "po_01: its first finish, counted once"
    );
    assert_eq!(
        state(store, &c("po_02").payout).await,
        CheckState::default(),
        "po_02: the change's follow-up stays"
    );
    assert_eq!(
        state(store, &c("po_03").payout).await,
        CheckState {
            next_check_at: Some(at(32)),
            checks: 1,
            attention: Some("look at po_03".into())
        },
        "po_03: rescheduled and flagged"
    );
    let page = store.attention(&Page::new(10, 0)).await.expect("attention");
    assert_eq!(page.flagged.len(), 1);
    assert_eq!(page.flagged[0].since, at(10), "flagged since the finish");

    let unknown = CheckDone {
        payout_id: "po_missing".into(),
        lease: 1,
        follow_up: FollowUp::none(),
        at: at(11),
    };
    match store
        .finish_checks(&[done(c("po_04"), FollowUp::check_at(at(40)), 11), unknown])
        .await
    {
        Err(Error::NotFound(id)) => assert_eq!(id.as_str(), "po_missing"),
        other => panic!("a batch naming an unknown payout is NotFound, got {other:?}"),
    }
    assert_eq!(
        state(store, &c("po_04").payout).await,
        CheckState {
            next_check_at: Some(at(100)),
            checks: 0,
            attention: None
        },
        "a refused batch writes nothing: po_04 is still under its lease"
    );
    assert!(
        finish(store, c("po_04"), FollowUp::check_at(at(40)), 12).await,
        "its lease is still good"
    );
}

/// The attention queue lists flagged payouts, oldest flag first, with the total; a flag that
/// stays set keeps its `since`; a change that clears it takes the payout off the queue.
pub async fn attention_queue_lists_flagged_payouts(store: &dyn PayoutStore) {
    let created = seed_numbered(store, 3).await;
    let mut processing = Vec::new();
    for p in &created {
        let approved = move_to(store, p, PayoutStatus::Approved, at(0)).await;
        processing.push(move_to(store, &approved, PayoutStatus::Processing, at(1)).await);
    }
    let claimed = claim(store, 1, 10, 50).await;
    assert_eq!(claimed.len(), 3);
    // po_03 flagged at minute 2, po_01 at minute 3; po_02 not.
    for (id, when) in [("po_03", 2), ("po_01", 3)] {
        let c = claimed.iter().find(|c| c.payout.id.as_str() == id).expect("claimed");
        assert!(
            finish(
                store,
                c,
                FollowUp::check_at(at(20)).flagged(format!("look at {id}")),
                when
            )
            .await
        );
    }
    let page = store.attention(&Page::new(10, 0)).await.expect("attention");
    assert_eq!(page.total, 2);
    let got: Vec<(&str, &str, _)> = page
        .flagged
        .iter()
        .map(|f| (f.payout.id.as_str(), f.reason.as_str(), f.since))
        .collect();
    assert_eq!(
        got,
        [("po_03", "look at po_03", at(2)), ("po_01", "look at po_01", at(3))],
        "oldest flag first"
    );
    let second = store.attention(&Page::new(1, 1)).await.expect("attention");
    assert_eq!(second.flagged.len(), 1);
    assert_eq!(second.flagged[0].payout.id.as_str(), "po_01", "limit and skip");

    // Flagged again (still unresolved): the flag keeps its `since`.
    let again = claim(store, 20, 10, 50).await;
    let c3 = again
        .iter()
        .find(|c| c.payout.id.as_str() == "po_03")
        .expect("po_03 due again");
    assert_eq!(c3.attention.as_deref(), Some("look at po_03"), "a claim shows the flag");
    assert!(finish(store, c3, FollowUp::check_at(at(40)).flagged("still unresolved"), 21).await);
    let page = store.attention(&Page::new(10, 0)).await.expect("attention");
    assert_eq!(page.flagged[0].since, at(2), "the flag's since stays");
    assert_eq!(page.flagged[0].reason, "still unresolved");

    // po_01 settles: the change clears its flag in the same step.
    let current = store.get(&processing[0].id).await.expect("get");
    move_to(store, &current, PayoutStatus::Paid, at(22)).await;
    let page = store.attention(&Page::new(10, 0)).await.expect("attention");
    assert_eq!(page.total, 1);
    assert_eq!(page.flagged[0].payout.id.as_str(), "po_03");
}

/// Several claimers at once never get the same check, and together they get every due one.
pub async fn two_claimers_never_get_the_same_check(store: Arc<dyn PayoutStore>) {
    const PAYOUTS: usize = 60;
    const CLAIMERS: usize = 4;
    let created = seed_numbered(&*store, PAYOUTS).await;
    for p in &created {
        let approved = move_to(&*store, p, PayoutStatus::Approved, at(0)).await;
        move_to(&*store, &approved, PayoutStatus::Processing, at(1)).await;
    }
    let barrier = Arc::new(Barrier::new(CLAIMERS));
    let mut tasks = Vec::new();
    for _ in 0..CLAIMERS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut mine = Vec::new();
            loop {
                let got = claim(&*store, 1, 7, 100).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.payout.id));
            }
        }));
    }
    let mut seen = BTreeSet::new();
    for task in tasks {
        for id in task.await.expect("a claimer panicked") {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), PAYOUTS, "every due check was claimed");
}
