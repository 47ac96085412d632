//! Two calculations racing on overlapping periods, each through its own pool (two app instances
//! sharing one database), pay each consultation exactly once (RELIABILITY.md: "overlapping
//! calculations").
//!
//! 240 doctors with 12 consultations each, spread over January and February. Instance A calculates
//! January, instance B January 15 to February 14, at the same time, in chunks of 20 doctors with
//! two chunks in flight, so their chunks interleave and contend for the same consultations. Both
//! must finish without an error (a chunk that loses is planned again), and afterwards every
//! consultation of January 1 to February 14 is on exactly one payout that is not cancelled, and
//! none of the rest is on any. The race runs without a look-back (where what each run read and did
//! not pay must be reported as already paid) and with the default 90-day look-back (where January's
//! first half is also the overlapping run's late consultations). A third race pits January, whose
//! doctors are all below the minimum payout and carry their consultations over, against February
//! paying January's consultations as late ones: each ends up carried or paid, never both. On
//! Postgres (needs `PAYOUTS_TEST_POSTGRES_URL`; without it the test prints `skipped: ...` and
//! passes) and on a SQLite file.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use futures::TryStreamExt;
use payout_store_sqlx::testkit::PgTestSchema;
use payouts::calculation::CalculationPolicy;
use payouts::domain::{Actor, Consultation, ItemKind, Period, Recipient};
use payouts::service::{CalculationReport, PerformanceConfig};
use payouts::source::{StaticConsultations, StaticDirectory};
use payouts::status::PayoutStatus;
use payouts::store::PayoutFilter;
use payouts::store_sqlx::{PgStore, SqliteStore};
use payouts::{PayoutService, PayoutStore};

const DOCTORS: usize = 240;
const PER_DOCTOR: usize = 12;

/// Doctor `d`'s consultation `k` completes on day `(d + 5k) mod 59` of the year (January and
/// February 2025), at 10:00.
fn consultations() -> Vec<Consultation> {
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 10, 0, 0).unwrap();
    (0..DOCTORS)
        .flat_map(|d| {
            (0..PER_DOCTOR).map(move |k| Consultation {
                appointment_id: format!("apt-{d}-{k}"),
                doctor_id: format!("dr-{d:03}").into(),
                completed_at: start + Duration::days(((d + 5 * k) % 59) as i64),
            })
        })
        .collect()
}

fn service(store: Arc<dyn PayoutStore>) -> PayoutService {
    let recipients = (0..DOCTORS).map(|d| Recipient {
        doctor_id: format!("dr-{d:03}").into(),
        name: format!("Dr. {d}"),
        email: format!("dr{d}@example.com"),
        mpesa_phone_number: Some("254712345678".into()),
        ..Default::default()
    });
    PayoutService::builder()
        .store(store)
        .consultations(Arc::new(StaticConsultations::new(consultations())))
        .directory(Arc::new(StaticDirectory::new(recipients)))
        .performance(PerformanceConfig {
            calculation_chunk: 20,
            calculation_writes_in_flight: 2,
            ..Default::default()
        })
        .build()
        .expect("a service")
}

fn january() -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        NaiveDate::from_ymd_opt(2025, 1, 31).unwrap(),
    )
    .unwrap()
}

fn overlapping() -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(2025, 1, 15).unwrap(),
        NaiveDate::from_ymd_opt(2025, 2, 14).unwrap(),
    )
    .unwrap()
}

async fn calculate(store: Arc<dyn PayoutStore>, period: Period, lookback_days: u32) -> CalculationReport {
    let policy = CalculationPolicy {
        lookback_days,
        ..Default::default()
    };
    calculate_with(store, period, policy).await
}

async fn calculate_with(store: Arc<dyn PayoutStore>, period: Period, policy: CalculationPolicy) -> CalculationReport {
    service(store)
        .calculate_period(&Actor::admin("admin-1"), Some(period), &policy)
        .await
        .unwrap_or_else(|e| panic!("calculating {period} failed: {e}"))
}

/// Races the two calculations through `a` and `b` (two pools on one database) and checks the
/// ledger afterwards. With a look-back (`lookback_days` > 0) the overlapping run also reads
/// January's first half as its look-back and races January's run for it as late consultations.
async fn overlapping_calculations_pay_each_consultation_once(
    a: Arc<dyn PayoutStore>,
    b: Arc<dyn PayoutStore>,
    lookback_days: u32,
) {
    let (ra, rb) = tokio::join!(
        tokio::spawn(calculate(a.clone(), january(), lookback_days)),
        tokio::spawn(calculate(b.clone(), overlapping(), lookback_days))
    );
    let (ra, rb) = (ra.expect("task A"), rb.expect("task B"));
    assert!(
        ra.skipped.is_empty() && rb.skipped.is_empty(),
        "{:?} {:?}",
        ra.skipped,
        rb.skipped
    );

    let mut on_payouts: BTreeMap<String, usize> = BTreeMap::new();
    let all: Vec<_> = a
        .stream(PayoutFilter::default())
        .try_collect()
        .await
        .expect("every payout");
    assert_eq!(all.len(), ra.created.len() + rb.created.len());
    for p in &all {
        assert_ne!(p.status, PayoutStatus::Cancelled);
        let items = a.items(&p.id).await.expect("items");
        let sum = payouts::money::Money::sum(p.currency(), items.iter().map(|i| &i.amount)).unwrap();
        assert_eq!(sum, p.amount_due, "{}: amount is the sum of its items", p.id);
        for i in items.into_iter().filter(|i| i.kind == ItemKind::Consultation) {
            *on_payouts.entry(i.reference).or_default() += 1;
        }
    }
    let twice: Vec<_> = on_payouts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "consultations on more than one live payout: {twice:?}"
    );
    let covered = Period::new(january().start, overlapping().end).unwrap();
    let wanted: Vec<String> = consultations()
        .into_iter()
        .filter(|c| covered.contains(c.completed_at))
        .map(|c| c.appointment_id)
        .collect();
    let paid: Vec<&String> = on_payouts.keys().collect();
    let mut wanted_sorted: Vec<&String> = wanted.iter().collect();
    wanted_sorted.sort();
    assert_eq!(
        paid, wanted_sorted,
        "every consultation of the two periods is paid, once"
    );
    if lookback_days > 0 {
        // Held consultations of a look-back are expected, not reported: only the late ones paid
        // can be counted.
        assert_eq!(ra.late, 0, "January's look-back holds no consultation");
        return;
    }
    let reported: u64 = ra
        .already_paid
        .iter()
        .chain(&rb.already_paid)
        .map(|x| x.consultations)
        .sum();
    assert_eq!(
        ra.consultations + rb.consultations - reported,
        wanted.len() as u64,
        "what one run read and did not pay, it reported as already paid"
    );
}

/// Races January, where doctors below a minimum payout of 4,000 KES (all of them: each has 5 to 7
/// January consultations at 500) carry their January
/// consultations over, with February and its 90-day look-back, which pays January's consultations
/// that nobody holds as late ones: a consultation ends up carried or on a live payout item, never
/// both and never twice, and every consultation of the two months is held by one of them (on
/// Postgres, a carry-over's items and a payout's items are in two tables that no unique index
/// spans: the store's per-doctor lock is what this checks).
async fn carry_overs_and_late_consultations_race(a: Arc<dyn PayoutStore>, b: Arc<dyn PayoutStore>) {
    let carrying = CalculationPolicy {
        minimum_payout: Some(payouts::money::Money::from_minor_units(
            400_000,
            payouts::money::Currency::KES,
        )),
        ..Default::default()
    };
    let february = Period::new(
        NaiveDate::from_ymd_opt(2025, 2, 1).unwrap(),
        NaiveDate::from_ymd_opt(2025, 2, 28).unwrap(),
    )
    .unwrap();
    let (ra, rb) = tokio::join!(
        tokio::spawn(calculate_with(a.clone(), january(), carrying)),
        tokio::spawn(calculate_with(b.clone(), february, CalculationPolicy::default()))
    );
    let (ra, rb) = (ra.expect("task A"), rb.expect("task B"));
    println!(
        "January carried {} doctors over and paid {}; February paid {} late consultations",
        ra.carried_over.len(),
        ra.created.len(),
        rb.late
    );
    let mut on_payouts: BTreeMap<String, usize> = BTreeMap::new();
    let all: Vec<_> = a
        .stream(PayoutFilter::default())
        .try_collect()
        .await
        .expect("every payout");
    assert_eq!(all.len(), ra.created.len() + rb.created.len());
    for p in &all {
        for i in a.items(&p.id).await.expect("items") {
            if i.kind == ItemKind::Consultation {
                *on_payouts.entry(i.reference).or_default() += 1;
            }
        }
    }
    let ids: Vec<String> = consultations().into_iter().map(|c| c.appointment_id).collect();
    let held = a.held_consultations(&ids).await.expect("the ledger");
    let carried: Vec<&String> = held
        .iter()
        .filter(|h| matches!(h.held_by, payouts::store::Holder::CarryOver(_)))
        .map(|h| &h.appointment_id)
        .collect();
    let both: Vec<_> = carried.iter().filter(|c| on_payouts.contains_key(**c)).collect();
    assert!(both.is_empty(), "carried and on a payout: {both:?}");
    let twice: Vec<_> = on_payouts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "on more than one live payout: {twice:?}");
    assert_eq!(
        carried.len() + on_payouts.len(),
        ids.len(),
        "every consultation of January and February is carried or paid (late ones by February's run: {})",
        rb.late
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_overlapping_calculations_pay_each_consultation_once() {
    let Some(url) = PgTestSchema::url_from_env("PAYOUTS_TEST_POSTGRES_URL") else {
        return;
    };
    for lookback_days in [0, 90] {
        let schema = PgTestSchema::create(&url, "payouts_ledger_race").await;
        schema.migrated_pool(1).await.close().await;
        schema
            .run(|schema| async move {
                let (pa, pb) = (schema.pool(3).await, schema.pool(3).await);
                overlapping_calculations_pay_each_consultation_once(
                    Arc::new(PgStore::new(pa.clone())),
                    Arc::new(PgStore::new(pb.clone())),
                    lookback_days,
                )
                .await;
                pa.close().await;
                pb.close().await;
            })
            .await;
    }
    let schema = PgTestSchema::create(&url, "payouts_ledger_race").await;
    schema.migrated_pool(1).await.close().await;
    schema
        .run(|schema| async move {
            let (pa, pb) = (schema.pool(3).await, schema.pool(3).await);
            carry_overs_and_late_consultations_race(
                Arc::new(PgStore::new(pa.clone())),
                Arc::new(PgStore::new(pb.clone())),
            )
            .await;
            pa.close().await;
            pb.close().await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_file_overlapping_calculations_pay_each_consultation_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for lookback_days in [0, 90] {
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(format!("payouts-{lookback_days}.db")).display()
        );
        let a = SqliteStore::connect(&url).await.expect("store A");
        let b = SqliteStore::connect(&url).await.expect("store B");
        overlapping_calculations_pay_each_consultation_once(Arc::new(a.clone()), Arc::new(b.clone()), lookback_days)
            .await;
        a.pool().close().await;
        b.pool().close().await;
    }
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("payouts-carry.db").display());
    let a = SqliteStore::connect(&url).await.expect("store A");
    let b = SqliteStore::connect(&url).await.expect("store B");
    carry_overs_and_late_consultations_race(Arc::new(a.clone()), Arc::new(b.clone())).await;
    a.pool().close().await;
    b.pool().close().await;
}
