//! The [`PayoutStore`] conformance suite.
//!
//! Each check is a `pub async fn` taking `&dyn PayoutStore` (one, [`concurrent_apply_has_one_winner`],
//! takes an `Arc<dyn PayoutStore>` because it spawns tasks) and panics with a message saying what
//! the store got wrong. Every check expects a **fresh, empty** store. [`run_all`] runs them all, each
//! on a new store from your factory; [`STORE_CHECKS`] lists them by name to run one at a time.
//!
//! What the suite pins beyond the [`PayoutStore`] docs (the choices a store must make the same way):
//! - bad input is [`Error::InvalidInput`] and writes nothing: `amount_due` not the sum of the items
//!   (or items in another currency), an audit entry, attempt or webhook event naming another payout,
//!   an [`AttemptUpdate`](crate::store::AttemptUpdate) of an attempt the payout does not have;
//! - `items`, `attempts`, `audit_trail` and `apply` of an unknown payout are [`Error::NotFound`];
//! - a batch is taken in order, payouts first: a doctor twice in one batch is created once and then
//!   skipped as `AlreadyCalculated`; re-running a batch with the same payout ids skips everything
//!   (it is not a `Conflict`); a not-skipped payout whose id exists refuses the batch with `Conflict`;
//! - only non-cancelled payouts of origin `Calculated` block a recalculation;
//! - a carry-over stays consumed while the payout that consumed it is not cancelled; cancelling that
//!   payout reopens it (`open_carry_overs` returns it, with `consumed_by: None` like every carry-over
//!   it returns, and a new payout may consume it); `open_carry_overs(before)` means
//!   `period.end < before`;
//! - idempotency keys are unique across all payouts;
//! - an attempt update sets the attempt's `updated_at` to the change's `at`;
//! - `Conflict` names the payout the change was for;
//! - an attempt's destination, a payout's approval and its resolution are read back exactly as
//!   written (a patch replaces the approval or the resolution whole, and keeps them when it has none);
//! - a new payout starts `PENDING` with no approver, approval or resolution: any other is
//!   [`Error::InvalidInput`] and writes nothing;
//! - the consultation ledger: a payout with a consultation a live item holds (stored, earlier in
//!   the batch, or twice in itself) is skipped as `ConsultationHeld`; a manual one is a
//!   `Conflict`; cancelling with `release_consultations` frees them, cancelling without keeps
//!   them held;
//! - runs: a run's totals equal a recount of its members after any changes; a payout named twice
//!   is a member once; an unknown payout, a taken run id or an unknown run writes nothing; a
//!   calculation batch's skipped payouts do not join its run; results and events come back in
//!   the order recorded; a funds override is written only over the one expected; a run's
//!   attention is the attention queue's part that is its members, in the queue's order;
//! - holds: a payout's hold is read back exactly (a release replaces it whole and is kept); a
//!   new payout never carries one; a doctor is held once and released once.

mod at_once;
mod attempts;
mod calculation;
mod changes;
mod checks;
mod holds;
mod ledger;
mod operator;
mod reading;
mod runs;
mod totals;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;

pub use at_once::*;
pub use attempts::*;
pub use calculation::*;
pub use changes::*;
pub use checks::*;
pub use holds::*;
pub use ledger::*;
pub use operator::*;
pub use reading::*;
pub use runs::*;
pub use totals::*;

use crate::domain::{AuditEntry, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider};
use crate::error::Error;
use crate::status::PayoutStatus;
use crate::store::{NewPayout, Page, PayoutChange, PayoutFilter, PayoutStore};
use crate::testkit::fixtures::{self, at, month};

/// One named conformance check.
#[derive(Clone, Copy)]
pub struct StoreCheck {
    /// The check's name (its function's name).
    pub name: &'static str,
    check: fn(Arc<dyn PayoutStore>) -> BoxFuture<'static, ()>,
}

impl StoreCheck {
    /// Runs the check on `store`, which must be fresh and empty; panics if the store fails it.
    pub fn run(&self, store: Arc<dyn PayoutStore>) -> BoxFuture<'static, ()> {
        (self.check)(store)
    }
}

impl fmt::Debug for StoreCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

macro_rules! checks {
    ($($name:ident),* ; $($spawning:ident),*) => {
        &[
            $(StoreCheck {
                name: stringify!($name),
                check: |store| Box::pin(async move { $name(&*store).await }),
            },)*
            $(StoreCheck {
                name: stringify!($spawning),
                check: |store| Box::pin($spawning(store)),
            },)*
        ]
    };
}

/// Every store check, in the order [`run_all`] runs them (the concurrency checks are last).
pub const STORE_CHECKS: &[StoreCheck] = checks![
    create_period_creates_payouts_items_and_audit,
    create_period_is_idempotent,
    only_live_calculated_payouts_block_recalculation,
    carry_over_is_recorded_once,
    carry_over_is_consumed_once,
    taken_carry_over_skips_the_payout,
    cancelling_the_consumer_reopens_the_carry_over,
    amount_must_equal_sum_of_items,
    create_payout_creates_a_manual_payout,
    unknown_payout_is_not_found,
    items_keep_their_order,
    items_keep_text_and_time_exactly,
    list_filters_and_counts,
    list_limit_skip_paging,
    list_keyset_paging_walks_every_row_once,
    list_clamps_limit_to_max,
    stream_matches_list,
    export_rows_match_stream,
    apply_bumps_version_and_appends_audit,
    apply_with_stale_version_conflicts_and_changes_nothing,
    apply_with_wrong_status_conflicts,
    duplicate_attempt_conflicts,
    webhook_event_is_recorded_once,
    refusals_come_in_one_order,
    attempt_update_changes_outcome_and_keeps_reference,
    apply_all_answers_each_change_as_apply_would,
    find_attempt_by_reference_and_key,
    audit_trail_is_append_only,
    records_must_belong_to_their_payout,
    attempts_keep_their_destination,
    batch_members_are_the_attempts_stored_with_its_id,
    approval_and_resolution_are_kept,
    a_new_payout_is_never_pre_approved,
    a_status_change_writes_its_follow_up,
    claims_take_due_checks_under_a_lease,
    claims_carry_the_latest_attempt,
    finishing_a_batch_writes_each_under_its_lease,
    attention_queue_lists_flagged_payouts,
    a_consultation_is_held_by_one_live_payout,
    cancelling_releases_or_voids_the_consultations,
    carry_overs_and_clawbacks_join_the_ledger,
    totals_equal_a_recount_after_changes,
    runs_are_created_with_their_members_and_totals,
    run_totals_follow_every_change,
    a_calculation_batch_makes_its_payouts_members,
    filters_by_run_and_hold_apply_everywhere,
    run_results_and_events_are_kept_in_order,
    funds_override_is_conditional,
    runs_are_listed_newest_first,
    a_runs_attention_is_its_flagged_members,
    holds_are_kept_as_written,
    doctor_holds_are_placed_once_and_released;
    concurrent_apply_has_one_winner,
    two_claimers_never_get_the_same_check
];

/// The check called `name`, if there is one.
pub fn check_named(name: &str) -> Option<&'static StoreCheck> {
    STORE_CHECKS.iter().find(|c| c.name == name)
}

/// Runs every check in [`STORE_CHECKS`], each on a new store from `fresh`, printing each name.
///
/// Keeps going after a failure and panics at the end naming every check that failed (each
/// failure's own message is printed when it happens). Run it in a multi-threaded runtime
/// (`#[tokio::test(flavor = "multi_thread")]`) so the concurrency check races for real.
pub async fn run_all<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn PayoutStore>>,
{
    let mut failed = Vec::new();
    for check in STORE_CHECKS {
        println!("store check {} ...", check.name);
        let store = fresh().await;
        if AssertUnwindSafe(check.run(store)).catch_unwind().await.is_err() {
            println!("store check {} FAILED", check.name);
            failed.push(check.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} store checks failed: {}",
        failed.len(),
        STORE_CHECKS.len(),
        failed.join(", ")
    );
}

/// Panics unless `$result` is an `Err` matching `$pattern` (and its guard).
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?, $($context:tt)+) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                format!($($context)+),
                stringify!($pattern $(if $guard)?),
                other
            ),
        }
    };
}
pub(crate) use assert_err;

/// Everything a store holds about one payout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) payout: Payout,
    pub(crate) items: Vec<PayoutItem>,
    pub(crate) attempts: Vec<PayoutAttempt>,
    pub(crate) audit: Vec<AuditEntry>,
}

pub(crate) async fn snapshot(store: &dyn PayoutStore, id: &PayoutId) -> Snapshot {
    Snapshot {
        payout: store.get(id).await.unwrap_or_else(|e| panic!("get({id}) failed: {e}")),
        items: store
            .items(id)
            .await
            .unwrap_or_else(|e| panic!("items({id}) failed: {e}")),
        attempts: store
            .attempts(id)
            .await
            .unwrap_or_else(|e| panic!("attempts({id}) failed: {e}")),
        audit: store
            .audit_trail(id)
            .await
            .unwrap_or_else(|e| panic!("audit_trail({id}) failed: {e}")),
    }
}

pub(crate) async fn assert_unchanged(store: &dyn PayoutStore, before: &Snapshot, context: &str) {
    let after = snapshot(store, &before.payout.id).await;
    assert_eq!(
        &after, before,
        "{context}: the payout, its items, attempts or audit trail changed"
    );
}

/// Writes `payouts` as one batch and asserts every one was created, in order; returns them as
/// written. For tests and benchmarks that need many fresh payouts in a store.
pub async fn seed(store: &dyn PayoutStore, payouts: Vec<NewPayout>) -> Vec<Payout> {
    let ids: Vec<PayoutId> = payouts.iter().map(|n| n.payout.id.clone()).collect();
    let expected: Vec<Payout> = payouts.iter().map(|n| n.payout.clone()).collect();
    let outcome = store
        .create_period(fixtures::batch(payouts, Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("create_period of fresh payouts failed: {e}"));
    assert_eq!(
        outcome.created, ids,
        "create_period should create every fresh payout, in order"
    );
    assert!(
        outcome.skipped.is_empty(),
        "nothing should be skipped: {:?}",
        outcome.skipped
    );
    expected
}

/// One fresh calculated payout.
pub(crate) async fn seed_one(store: &dyn PayoutStore, id: &str) -> Payout {
    let new = fixtures::new_payout(id, &format!("dr-{id}"), month(2025, 1), &["500"]);
    seed(store, vec![new]).await.remove(0)
}

/// `n` fresh calculated January payouts of 500 KES: `po_01` for `dr-1`, `po_02` for `dr-2`, ...
pub(crate) async fn seed_numbered(store: &dyn PayoutStore, n: usize) -> Vec<Payout> {
    let payouts = (1..=n)
        .map(|i| fixtures::new_payout(&format!("po_{i:02}"), &format!("dr-{i}"), month(2025, 1), &["500"]))
        .collect();
    seed(store, payouts).await
}

/// `apply(change)`, asserting it works.
pub(crate) async fn apply(store: &dyn PayoutStore, change: PayoutChange, context: &str) -> Payout {
    store
        .apply(change)
        .await
        .unwrap_or_else(|e| panic!("{context}: apply failed: {e}"))
}

/// A change of `p` that would write a bit of everything: a status, a patch, an attempt, a webhook
/// event and an audit entry.
pub(crate) fn everything(p: &Payout, event_id: &str) -> PayoutChange {
    let mut change = fixtures::status_change(p, PayoutStatus::Approved, at(50));
    change.patch.notes = Some("must not be written".to_string());
    change.new_attempt = Some(fixtures::attempt(&p.id, 9, Provider::MpesaB2c, at(50)));
    change.webhook_event = Some(fixtures::webhook_event(Provider::MpesaB2c, event_id, &p.id, at(50)));
    change
}

/// `change` with a new attempt `attempt_no` of its payout, recorded at `at`, under idempotency key `key`.
pub(crate) fn with_keyed_attempt(
    mut change: PayoutChange,
    attempt_no: u32,
    key: &str,
    at: DateTime<Utc>,
) -> PayoutChange {
    let mut attempt = fixtures::attempt(&change.payout_id, attempt_no, Provider::MpesaB2c, at);
    attempt.idempotency_key = key.to_string();
    change.new_attempt = Some(attempt);
    change
}

/// Whether the store has recorded `provider`'s webhook event `event_id`.
pub(crate) async fn event_seen(store: &dyn PayoutStore, provider: Provider, event_id: &str) -> bool {
    store
        .webhook_event_seen(provider, event_id)
        .await
        .unwrap_or_else(|e| panic!("webhook_event_seen({provider}, {event_id}) failed: {e}"))
}

/// Applies `change`, which must be refused with a `Conflict` naming its payout and write nothing:
/// the payout, its items, attempts and audit trail stay as `before`, and the change's webhook event
/// is not recorded.
pub(crate) async fn assert_refused_as_conflict(
    store: &dyn PayoutStore,
    change: PayoutChange,
    before: &Snapshot,
    context: &str,
) {
    let id = change.payout_id.clone();
    let event = change.webhook_event.clone();
    assert_err!(
        store.apply(change).await,
        e if is_conflict_for(&e, &id),
        "{context} (expected Conflict({id}))"
    );
    assert_unchanged(store, before, context).await;
    if let Some(event) = event {
        assert!(
            !event_seen(store, event.provider, &event.event_id).await,
            "{context}: the webhook event {} of a refused change was recorded",
            event.event_id
        );
    }
}

/// Moves a payout to `to` at `at` through `apply`, asserting it works.
pub(crate) async fn move_to(store: &dyn PayoutStore, payout: &Payout, to: PayoutStatus, at: DateTime<Utc>) -> Payout {
    store
        .apply(fixtures::status_change(payout, to, at))
        .await
        .unwrap_or_else(|e| panic!("apply moving {} to {to} failed: {e}", payout.id))
}

/// How many payouts the store holds.
pub(crate) async fn count(store: &dyn PayoutStore) -> u64 {
    store
        .list(&PayoutFilter::default(), &Page::new(1, 0))
        .await
        .unwrap_or_else(|e| panic!("list failed: {e}"))
        .total
}

pub(crate) fn is_conflict_for(e: &Error, id: &PayoutId) -> bool {
    matches!(e, Error::Conflict(x) if x == id)
}
