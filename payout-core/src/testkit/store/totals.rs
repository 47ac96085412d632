//! Checks of the summary totals: [`PayoutStore::totals`] and [`PayoutStore::paid_by_month`] equal a
//! recount of the payouts, after every kind of change that moves a payout between buckets.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use futures::TryStreamExt;

use crate::domain::{Payout, PayoutItem, Provider};
use crate::money::{Currency, Money};
use crate::status::PayoutStatus;
use crate::store::{
    MonthTotal, NewPayout, PayoutChange, PayoutFilter, PayoutStore, StatusTally, TotalsFilter, first_of_month,
    sort_tallies,
};
use crate::testkit::fixtures::{self, month};

use super::seed;

/// A small deterministic generator (xorshift64*), so a failure replays exactly.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % sides
    }
}

/// The currencies and amounts the check writes: two with minor units, one without.
const CURRENCIES: [(Currency, &str); 3] = [
    (Currency::KES, "1234.56"),
    (Currency::USD, "0.07"),
    (Currency::JPY, "15000"),
];

/// A calculated payout `id` of one item of `amount` in `currency`, created at `at`.
fn payout_in(id: &str, currency: Currency, amount: &str, at: DateTime<Utc>) -> NewPayout {
    let mut new = fixtures::new_payout(id, &format!("dr-{id}"), month(2025, 1), &["1"]);
    let money = Money::parse(amount, currency).expect("a valid amount");
    new.items = vec![PayoutItem {
        amount: money,
        ..new.items[0].clone()
    }];
    new.payout.amount_due = money;
    new.audit = fixtures::create_audit(&new.payout);
    fixtures::created_at(new, at)
}

/// Creation times over four months, at the edges of a month too (UTC).
fn creation_time(i: usize) -> DateTime<Utc> {
    let times = [
        Utc.with_ymd_and_hms(2024, 11, 30, 23, 59, 59),
        Utc.with_ymd_and_hms(2024, 12, 1, 0, 0, 0),
        Utc.with_ymd_and_hms(2025, 1, 15, 12, 0, 0),
        Utc.with_ymd_and_hms(2025, 2, 28, 23, 59, 59),
    ];
    times[i % times.len()].single().expect("a valid time") + Duration::seconds((i / times.len()) as i64)
}

/// Running counts and sums (minor units) by status, provider and currency code.
type Buckets = BTreeMap<(PayoutStatus, Option<Provider>, String), (Currency, u64, i64)>;

/// What `totals(filter)` must answer, recounted from every payout the store holds.
fn recount(payouts: &[Payout], filter: &TotalsFilter) -> Vec<StatusTally> {
    let mut buckets = Buckets::new();
    for p in payouts.iter().filter(|p| filter.matches(p)) {
        let b = buckets
            .entry((p.status, p.provider, p.currency().code().to_string()))
            .or_insert((p.currency(), 0, 0));
        b.1 += 1;
        b.2 += p.amount_due.to_minor_units().expect("fits");
    }
    let mut out: Vec<StatusTally> = buckets
        .into_iter()
        .map(|((status, provider, _), (currency, count, minor))| StatusTally {
            status,
            provider,
            currency,
            count,
            amount: Money::from_minor_units(minor, currency),
        })
        .collect();
    sort_tallies(&mut out);
    out
}

/// What `paid_by_month(currency, from)` must answer, recounted.
fn recount_paid(payouts: &[Payout], currency: Option<Currency>, from: NaiveDate) -> Vec<MonthTotal> {
    let mut months: BTreeMap<(NaiveDate, String), (Currency, u64, i64)> = BTreeMap::new();
    for p in payouts {
        let m = first_of_month(p.created_at.date_naive());
        if p.status != PayoutStatus::Paid || m < first_of_month(from) || currency.is_some_and(|c| c != p.currency()) {
            continue;
        }
        let b = months
            .entry((m, p.currency().code().to_string()))
            .or_insert((p.currency(), 0, 0));
        b.1 += 1;
        b.2 += p.amount_due.to_minor_units().expect("fits");
    }
    months
        .into_iter()
        .map(|((month, _), (currency, count, minor))| MonthTotal {
            month,
            currency,
            count,
            amount: Money::from_minor_units(minor, currency),
        })
        .collect()
}

/// Asserts that every summary figure the store answers ([`PayoutStore::totals`] under a few
/// filters, [`PayoutStore::paid_by_month`] from a few months) equals a recount of the payouts it
/// holds (read with [`PayoutStore::stream`]); panics naming `context` otherwise. For a store's own
/// tests, e.g. after a migration that rebuilds its tallies.
pub async fn assert_totals_match_a_recount(store: &dyn PayoutStore, context: &str) {
    let payouts: Vec<Payout> = store
        .stream(PayoutFilter::default())
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{context}: stream failed: {e}"));
    let mut filters = vec![TotalsFilter::default()];
    for provider in [Provider::MpesaB2c, Provider::StripeConnect] {
        filters.push(TotalsFilter {
            provider: Some(provider),
            ..Default::default()
        });
    }
    for (currency, _) in CURRENCIES {
        filters.push(TotalsFilter {
            currency: Some(currency),
            ..Default::default()
        });
    }
    filters.push(TotalsFilter {
        provider: Some(Provider::MpesaB2c),
        currency: Some(Currency::KES),
    });
    for filter in &filters {
        let got = store
            .totals(filter)
            .await
            .unwrap_or_else(|e| panic!("{context}: totals({filter:?}) failed: {e}"));
        assert_eq!(
            got,
            recount(&payouts, filter),
            "{context}: totals({filter:?}) against a recount"
        );
    }
    let froms = [
        fixtures::day(2024, 1, 1),
        fixtures::day(2024, 12, 17),
        fixtures::day(2025, 2, 1),
    ];
    for from in froms {
        for currency in [None, Some(Currency::KES), Some(Currency::JPY)] {
            let got = store
                .paid_by_month(currency, from)
                .await
                .unwrap_or_else(|e| panic!("{context}: paid_by_month({currency:?}, {from}) failed: {e}"));
            assert_eq!(
                got,
                recount_paid(&payouts, currency, from),
                "{context}: paid_by_month({currency:?}, {from}) against a recount"
            );
        }
    }
}

/// The statuses a payout is moved through (any order: the store follows what it is told).
const STATUSES: [PayoutStatus; 8] = PayoutStatus::ALL;

/// Totals and paid totals per month equal a recount of the payouts, however they are created and
/// changed: new payouts in three currencies (one without minor units) over four months (at the
/// edges of a month), then a few hundred seeded random changes of status and provider, each
/// checked against a recount. Figures are per currency, never converted; empty buckets are left out.
pub async fn totals_equal_a_recount_after_changes(store: &dyn PayoutStore) {
    let empty = store.totals(&TotalsFilter::default()).await.expect("totals");
    assert!(empty.is_empty(), "a fresh store has no totals: {empty:?}");
    let none_paid = store
        .paid_by_month(None, fixtures::day(2000, 1, 1))
        .await
        .expect("paid_by_month");
    assert!(none_paid.is_empty(), "a fresh store paid nothing: {none_paid:?}");

    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let batch: Vec<NewPayout> = (0..24)
        .map(|i| {
            let (currency, amount) = CURRENCIES[dice.roll(CURRENCIES.len())];
            payout_in(&format!("po_t{i:02}"), currency, amount, creation_time(i))
        })
        .collect();
    seed(store, batch).await;
    assert_totals_match_a_recount(store, "after creating 24 payouts").await;

    let providers = [Provider::MpesaB2c, Provider::StripeConnect, Provider::BankTransfer];
    for step in 0..120 {
        let id = crate::domain::PayoutId::new(format!("po_t{:02}", dice.roll(24)));
        let current = store.get(&id).await.unwrap_or_else(|e| panic!("get({id}) failed: {e}"));
        let at = fixtures::at(step);
        let mut change = PayoutChange::of(&current, at);
        match dice.roll(3) {
            // A status move.
            0 | 1 => {
                let to = STATUSES[dice.roll(STATUSES.len())];
                change = fixtures::status_change(&current, to, at);
                if dice.roll(2) == 0 {
                    change.patch.provider = Some(providers[dice.roll(providers.len())]);
                }
            }
            // The provider alone (a re-trigger with another provider).
            _ => change.patch.provider = Some(providers[dice.roll(providers.len())]),
        }
        store
            .apply(change)
            .await
            .unwrap_or_else(|e| panic!("step {step}: apply to {id} failed: {e}"));
        if step % 10 == 9 {
            assert_totals_match_a_recount(store, &format!("after change {step}")).await;
        }
    }
    // More payouts after the changes land in the same tallies.
    let later: Vec<NewPayout> = (24..30)
        .map(|i| payout_in(&format!("po_t{i:02}"), Currency::KES, "10.01", creation_time(i)))
        .collect();
    seed(store, later).await;
    assert_totals_match_a_recount(store, "after creating 6 more").await;
}
