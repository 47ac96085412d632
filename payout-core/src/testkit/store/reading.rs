//! Checks of reading: get, items, list (filters, totals, paging), stream and export rows.

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::domain::{ItemKind, Payout, PayoutId, Period, Provider};
use crate::error::Error;
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{Cursor, ExportRow, NewPayout, Page, PayoutFilter, PayoutPatch, PayoutStore, PayoutStoreExt};
use crate::testkit::fixtures::{self, at, day, kes, month};

use super::{move_to, seed};

/// `n` payouts `po_01`.. for doctors `dr-1`..`dr-3` in turn, each for its own one-day period,
/// created at `times(i)`.
fn numbered(n: usize, times: impl Fn(usize) -> DateTime<Utc>) -> Vec<NewPayout> {
    (0..n)
        .map(|i| {
            let d = day(2025, 1, 1) + Duration::days(i as i64);
            let period = Period::new(d, d).expect("a one-day period");
            let new = fixtures::new_payout(
                &format!("po_{:02}", i + 1),
                &format!("dr-{}", i % 3 + 1),
                period,
                &["500"],
            );
            fixtures::created_at(new, times(i))
        })
        .collect()
}

/// The list order: `created_at` desc, then `id` desc.
fn newest_first(mut payouts: Vec<Payout>) -> Vec<Payout> {
    payouts.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    payouts
}

fn ids(payouts: &[Payout]) -> Vec<&str> {
    payouts.iter().map(|p| p.id.as_str()).collect()
}

fn by_doctor(doctor: &str) -> PayoutFilter {
    PayoutFilter {
        doctor_id: Some(doctor.into()),
        ..PayoutFilter::default()
    }
}

fn by_status(status: PayoutStatus) -> PayoutFilter {
    PayoutFilter {
        status: Some(status),
        ..PayoutFilter::default()
    }
}

fn by_provider(provider: Provider) -> PayoutFilter {
    PayoutFilter {
        provider: Some(provider),
        ..PayoutFilter::default()
    }
}

/// Keyset paging: `limit` rows after `after`.
fn keyset(limit: u32, after: Option<Cursor>) -> Page {
    Page { limit, skip: 0, after }
}

async fn list(store: &dyn PayoutStore, filter: &PayoutFilter, page: &Page) -> crate::store::PayoutPage {
    store
        .list(filter, page)
        .await
        .unwrap_or_else(|e| panic!("list({filter:?}, {page:?}) failed: {e}"))
}

/// `get`, `items`, `attempts`, `audit_trail` and `apply` of an unknown payout are `NotFound` naming it.
pub async fn unknown_payout_is_not_found(store: &dyn PayoutStore) {
    let missing = PayoutId::new("po_missing");
    let is = |e: &Error| matches!(e, Error::NotFound(id) if id == &missing);
    let check = |what: &str, r: Result<(), Error>| match r {
        Err(e) if is(&e) => {}
        other => panic!("{what} of an unknown payout: expected NotFound(po_missing), got {other:?}"),
    };
    check("get", store.get(&missing).await.map(drop));
    check("items", store.items(&missing).await.map(drop));
    check("attempts", store.attempts(&missing).await.map(drop));
    check("audit_trail", store.audit_trail(&missing).await.map(drop));
    let mut ghost = fixtures::payout("po_missing", "dr-1", month(2025, 1), kes("500"));
    ghost.status = PayoutStatus::Pending;
    let change = fixtures::status_change(&ghost, PayoutStatus::Approved, at(1));
    check("apply", store.apply(change).await.map(drop));
}

/// `items` returns a payout's items in the order they were written (not sorted by any field).
pub async fn items_keep_their_order(store: &dyn PayoutStore) {
    let mut new = fixtures::new_payout("po_01", "dr-1", month(2025, 1), &["300", "100", "200", "-50"]);
    let refs = ["zulu", "alpha", "mike", "fee"];
    let times = [at(-60), at(-10), at(-30), at(-20)];
    for (i, item) in new.items.iter_mut().enumerate() {
        item.reference = refs[i].to_string();
        item.occurred_at = times[i];
    }
    new.items[3].kind = ItemKind::Deduction;
    seed(store, vec![new.clone()]).await;
    let items = store.items(&new.payout.id).await.expect("items");
    assert_eq!(items, new.items, "items must come back in the order written");
}

/// Items come back exactly as written whatever their text holds (tabs, line breaks, backslashes,
/// quotes, `\N`, non-ASCII), with their times to the microsecond, also in a batch of several
/// payouts with more items than one statement binds.
pub async fn items_keep_text_and_time_exactly(store: &dyn PayoutStore) {
    let awkward = [
        "tab\there",
        "line\nbreak\r\n",
        "back\\slash \\N \\.",
        "quote \" ' ,;",
        "Nairobi – café ✓",
        "",
    ];
    let mut batch = Vec::new();
    for (p, count) in [(1, 6), (2, 1_200), (3, 7)] {
        let amounts: Vec<String> = (0..count).map(|i| format!("{}.{:02}", 1 + i % 9, i % 100)).collect();
        let amounts: Vec<&str> = amounts.iter().map(String::as_str).collect();
        let mut new = fixtures::new_payout(&format!("po_0{p}"), &format!("dr-{p}"), month(2025, 1), &amounts);
        for (i, item) in new.items.iter_mut().enumerate() {
            item.reference = format!("{}#{p}-{i}", awkward[i % awkward.len()]);
            item.description = awkward[(i + 1) % awkward.len()].to_string();
            item.occurred_at = at(-(i as i64)) + Duration::microseconds(i as i64 * 7 + 1);
        }
        batch.push(new);
    }
    seed(store, batch.clone()).await;
    for new in &batch {
        let items = store.items(&new.payout.id).await.expect("items");
        assert_eq!(items.len(), new.items.len(), "{}: every item comes back", new.payout.id);
        assert!(
            items == new.items,
            "{}: items must come back exactly as written",
            new.payout.id
        );
    }
}

/// `list` applies every filter (status, doctor, provider, created_from/created_to as inclusive UTC
/// days, and their combination) and `total` counts every match, not just the page.
pub async fn list_filters_and_counts(store: &dyn PayoutStore) {
    let times = [
        day(2025, 2, 28).and_hms_opt(23, 59, 59),
        day(2025, 3, 1).and_hms_opt(0, 0, 0),
        day(2025, 3, 1).and_hms_opt(23, 59, 59),
        day(2025, 3, 2).and_hms_opt(0, 0, 0),
        day(2025, 3, 5).and_hms_opt(12, 0, 0),
    ]
    .map(|t| t.expect("a valid time").and_utc());
    let created = seed(store, numbered(5, |i| times[i])).await;
    // po_02 -> APPROVED, po_03 -> PROCESSING with M-Pesa, po_05 -> PROCESSING with Stripe.
    move_to(store, &created[1], PayoutStatus::Approved, at(1)).await;
    let with_provider = |p: &Payout, provider: Provider| {
        let mut change = fixtures::status_change(p, PayoutStatus::Processing, at(2));
        change.patch = PayoutPatch {
            provider: Some(provider),
            ..PayoutPatch::default()
        };
        change
    };
    store
        .apply(with_provider(&created[2], Provider::MpesaB2c))
        .await
        .expect("apply");
    store
        .apply(with_provider(&created[4], Provider::StripeConnect))
        .await
        .expect("apply");

    let cases: Vec<(&str, PayoutFilter, Vec<&str>)> = vec![
        (
            "no filter",
            PayoutFilter::default(),
            vec!["po_05", "po_04", "po_03", "po_02", "po_01"],
        ),
        (
            "status PENDING",
            by_status(PayoutStatus::Pending),
            vec!["po_04", "po_01"],
        ),
        ("doctor dr-1", by_doctor("dr-1"), vec!["po_04", "po_01"]),
        ("provider MPESA_B2C", by_provider(Provider::MpesaB2c), vec!["po_03"]),
        (
            "created on 2025-03-01 (both ends inclusive)",
            PayoutFilter {
                created_from: Some(day(2025, 3, 1)),
                created_to: Some(day(2025, 3, 1)),
                ..Default::default()
            },
            vec!["po_03", "po_02"],
        ),
        (
            "created from 2025-03-02",
            PayoutFilter {
                created_from: Some(day(2025, 3, 2)),
                ..Default::default()
            },
            vec!["po_05", "po_04"],
        ),
        (
            "created to 2025-02-28",
            PayoutFilter {
                created_to: Some(day(2025, 2, 28)),
                ..Default::default()
            },
            vec!["po_01"],
        ),
        (
            "status PROCESSING and created from 2025-03-02",
            PayoutFilter {
                status: Some(PayoutStatus::Processing),
                created_from: Some(day(2025, 3, 2)),
                ..Default::default()
            },
            vec!["po_05"],
        ),
        (
            "doctor dr-2 and provider STRIPE_CONNECT",
            PayoutFilter {
                doctor_id: Some("dr-2".into()),
                provider: Some(Provider::StripeConnect),
                ..Default::default()
            },
            vec!["po_05"],
        ),
        ("an unknown doctor", by_doctor("dr-404"), vec![]),
    ];
    for (name, filter, expected) in cases {
        let page = list(store, &filter, &Page::new(100, 0)).await;
        assert_eq!(ids(&page.payouts), expected, "list with {name}");
        assert_eq!(page.total, expected.len() as u64, "total with {name}");
        for p in &page.payouts {
            assert!(
                filter.matches(p),
                "list with {name} returned {} which does not match",
                p.id
            );
        }
        let small = list(store, &filter, &Page::new(1, 0)).await;
        assert_eq!(
            small.total,
            expected.len() as u64,
            "total with {name} must count beyond the page"
        );
    }
}

/// `limit`/`skip` paging walks the list order; pages past the end are empty with the full total.
pub async fn list_limit_skip_paging(store: &dyn PayoutStore) {
    // Pairs of equal `created_at`: the order falls back to `id` desc.
    let created = seed(store, numbered(7, |i| at((i / 2) as i64))).await;
    let all = newest_first(created);
    let filter = PayoutFilter::default();
    let mut seen = Vec::new();
    for skip in [0u64, 3, 6] {
        let page = list(store, &filter, &Page::new(3, skip)).await;
        assert_eq!(page.total, 7, "total with skip {skip}");
        let want = &all[skip as usize..(skip as usize + 3).min(7)];
        assert_eq!(ids(&page.payouts), ids(want), "page with limit 3, skip {skip}");
        seen.extend(page.payouts);
    }
    assert_eq!(seen, all, "the pages together are the whole list, in order");
    let past = list(store, &filter, &Page::new(3, 7)).await;
    assert!(past.payouts.is_empty(), "a page past the end is empty");
    assert_eq!(past.total, 7);
    assert_eq!(past.next, None, "an empty page has no next cursor");
    let zero = list(store, &filter, &Page::new(0, 0)).await;
    assert!(zero.payouts.is_empty(), "limit 0 returns no rows");
    assert_eq!(zero.total, 7);
}

/// Keyset paging (`after` the previous page's `next`) walks every row exactly once in the list
/// order, ties on `created_at` included; `skip` is ignored with a cursor; `next` is the last row's
/// cursor on a full page and `None` on a short one.
pub async fn list_keyset_paging_walks_every_row_once(store: &dyn PayoutStore) {
    // Runs of three equal `created_at`s, so page boundaries fall inside runs.
    let created = seed(store, numbered(10, |i| at((i / 3) as i64))).await;
    let all = newest_first(created);
    let filter = PayoutFilter::default();
    let mut seen: Vec<Payout> = Vec::new();
    let mut page = Page::new(3, 0);
    loop {
        let got = list(store, &filter, &page).await;
        assert_eq!(got.total, 10, "total on every keyset page");
        let full = got.payouts.len() == 3;
        match (&got.next, got.payouts.last()) {
            (Some(next), Some(last)) => {
                assert!(full, "next is only set on a full page");
                assert_eq!(next, &Cursor::after(last), "next is the cursor of the page's last row");
            }
            (None, _) => assert!(!full, "a full page must carry a next cursor"),
            (Some(next), None) => panic!("an empty page carries a next cursor {next:?}"),
        }
        seen.extend(got.payouts);
        assert!(
            seen.len() <= 10,
            "keyset paging returned more rows than exist: {:?}",
            ids(&seen)
        );
        match got.next {
            // `skip` must be ignored once a cursor is given.
            Some(next) => {
                page = Page {
                    limit: 3,
                    skip: 2,
                    after: Some(next),
                }
            }
            None => break,
        }
    }
    assert_eq!(
        ids(&seen),
        ids(&all),
        "keyset paging must visit every row once, newest first"
    );

    // A page whose last row is the last row overall is full: its next page is empty.
    let first = list(store, &filter, &Page::new(5, 0)).await;
    let second = list(store, &filter, &keyset(5, first.next.clone())).await;
    assert_eq!(ids(&second.payouts), ids(&all[5..]));
    let third = list(store, &filter, &keyset(5, second.next.clone())).await;
    assert!(
        third.payouts.is_empty() && third.next.is_none(),
        "after the last row: {third:?}"
    );

    // A cursor for a row that is not stored still positions by (created_at, id).
    let between = Cursor {
        created_at: all[4].created_at,
        id: PayoutId::new(format!("{}z", all[5].id)),
    };
    let got = list(store, &filter, &keyset(2, Some(between))).await;
    assert_eq!(got.payouts.first().map(|p| p.id.as_str()), Some(all[5].id.as_str()));
}

/// A `limit` above [`Page::MAX_LIMIT`] returns at most `MAX_LIMIT` rows.
pub async fn list_clamps_limit_to_max(store: &dyn PayoutStore) {
    let n = Page::MAX_LIMIT as usize + 5;
    let base = fixtures::base_time();
    let news = (0..n)
        .map(|i| {
            let new = fixtures::new_payout(&format!("po_{i:05}"), &format!("dr-{i:05}"), month(2025, 1), &["1"]);
            fixtures::created_at(new, base + Duration::seconds(i as i64))
        })
        .collect();
    seed(store, news).await;
    let page = list(store, &PayoutFilter::default(), &Page::new(u32::MAX, 0)).await;
    assert_eq!(
        page.payouts.len(),
        Page::MAX_LIMIT as usize,
        "limit must be clamped to Page::MAX_LIMIT"
    );
    assert_eq!(page.total, n as u64);
    assert!(page.next.is_some(), "a clamped full page carries a next cursor");
    let rest = list(store, &PayoutFilter::default(), &keyset(u32::MAX, page.next.clone())).await;
    assert_eq!(rest.payouts.len(), 5, "the rows after the clamped page");
}

/// `stream` yields the same rows as `list` for the same filter, in the same order.
pub async fn stream_matches_list(store: &dyn PayoutStore) {
    let created = seed(store, numbered(9, |i| at((i / 2) as i64))).await;
    move_to(store, &created[3], PayoutStatus::Approved, at(30)).await;
    let filters = [
        PayoutFilter::default(),
        by_doctor("dr-2"),
        by_status(PayoutStatus::Approved),
        by_doctor("dr-404"),
    ];
    for filter in filters {
        let listed = list(store, &filter, &Page::new(Page::MAX_LIMIT, 0)).await.payouts;
        let streamed: Vec<Payout> = store
            .stream(filter.clone())
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("stream({filter:?}) failed: {e}"));
        assert_eq!(ids(&streamed), ids(&listed), "stream and list order with {filter:?}");
        assert_eq!(streamed, listed, "stream and list rows with {filter:?}");
    }
}

/// Export rows (through [`PayoutStoreExt::export_stream`]: the store's
/// [`BulkPayoutStore::export_rows`](crate::store::BulkPayoutStore::export_rows) when it offers it)
/// are exactly the rows of `stream` for the same filter, in the same order, each
/// with the payout's id, doctor, amount (in KES, JPY and KWD; zero and negative too) and status:
/// over several filters and 2,500 rows in runs of equal `created_at` (more than one `stream`
/// query of the SQL stores reads); and the store serves other calls while they are being read.
pub async fn export_rows_match_stream(store: &dyn PayoutStore) {
    const ROWS: usize = 2_500;
    let currencies = [Currency::KES, Currency::JPY, Currency::from_code("KWD").expect("KWD")];
    let base = fixtures::base_time();
    let news: Vec<NewPayout> = (0..ROWS)
        .map(|i| {
            let d = day(2018, 1, 1) + Duration::days(i as i64);
            let period = Period::new(d, d).expect("a one-day period");
            let mut new = fixtures::new_payout(&format!("po_{i:05}"), &format!("dr-{}", i % 7), period, &["1"]);
            // Amounts of every size (a payout is positive), in currencies of 2, 0 and 3 decimals.
            let units = match i % 5 {
                0 => 1,
                1 => (i as i64) * 13 + 1,
                _ => (i as i64) * 7_919 + 1,
            };
            let amount = Money::from_minor_units(units, currencies[i % currencies.len()]);
            new.items = vec![fixtures::item(&format!("apt-{i}"), amount, period.starts_at())];
            new.payout.amount_due = amount;
            // Runs of seven equal `created_at`s, so chunk boundaries fall inside runs.
            fixtures::created_at(new, base + Duration::seconds((i / 7) as i64))
        })
        .collect();
    let created = seed(store, news).await;
    for (i, to) in [
        (3, PayoutStatus::Approved),
        (999, PayoutStatus::Cancelled),
        (1_000, PayoutStatus::Approved),
    ] {
        move_to(store, &created[i], to, base + Duration::days(30)).await;
    }
    let mut paid = fixtures::status_change(&created[1_001], PayoutStatus::Processing, base + Duration::days(30));
    paid.patch.provider = Some(Provider::MpesaB2c);
    store.apply(paid).await.expect("apply");

    let filters = [
        PayoutFilter::default(),
        by_doctor("dr-3"),
        by_status(PayoutStatus::Approved),
        by_status(PayoutStatus::Pending),
        by_provider(Provider::MpesaB2c),
        PayoutFilter {
            created_from: Some(base.date_naive()),
            created_to: Some(base.date_naive()),
            ..Default::default()
        },
        by_doctor("dr-404"),
    ];
    for filter in filters {
        let streamed: Vec<ExportRow> = store
            .stream(filter.clone())
            .map_ok(ExportRow::from)
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("stream({filter:?}) failed: {e}"));
        // One row more than `stream` at most, so a store whose export loops fails instead of hanging.
        let exported: Vec<ExportRow> = store
            .export_stream(filter.clone())
            .take(streamed.len() + 1)
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("export_rows({filter:?}) failed: {e}"));
        let ids = |rows: &[ExportRow]| rows.iter().map(|r| r.id.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(
            ids(&exported),
            ids(&streamed),
            "export_rows and stream rows and order with {filter:?}"
        );
        for (e, s) in exported.iter().zip(&streamed) {
            assert_eq!(e, s, "export_rows and stream field values with {filter:?}");
        }
    }

    // The store keeps serving other calls while an export reads (an in-memory SQLite database has
    // one connection for both).
    let mut rows = store.export_stream(PayoutFilter::default());
    let mut n = 0;
    while let Some(row) = rows.try_next().await.expect("export_rows") {
        if n % 300 == 0 {
            let p = store.get(&row.id).await.expect("get while export_rows reads");
            assert_eq!(ExportRow::from(p), row, "get and export_rows of {}", row.id);
        }
        n += 1;
        assert!(n <= ROWS, "export_rows returned more rows than were written");
    }
    assert_eq!(n, ROWS, "export_rows read while the store was used");
}
