//! Small builders for test records, all at or around a fixed [`base_time`].
//!
//! They panic on nonsense arguments (an invalid date or amount): they are for tests.
//!
//! ```
//! use payout_core::testkit::fixtures::{self, month};
//! let new = fixtures::new_payout("po_01", "dr-1", month(2025, 1), &["500", "250.50"]);
//! assert_eq!(new.payout.amount_due.to_string(), "750.50 KES");
//! assert_eq!(new.items.len(), 2);
//! assert_eq!(new.audit.action, "CREATE");
//! ```

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::domain::{
    AttemptOutcome, AuditEntry, BankAccount, DoctorHold, DoctorId, FundsOverride, Hold, HoldScope, ItemKind, NewRun,
    Payout, PayoutAttempt, PayoutDestination, PayoutId, PayoutItem, PayoutOrigin, Period, Provider, RunAction, RunId,
    RunKind, RunResult,
};
use crate::money::{Currency, Money};
use crate::provider::PayoutInstruction;
use crate::status::PayoutStatus;
use crate::store::{AttemptUpdate, CarryOver, NewPayout, PayoutChange, PeriodBatch, WebhookEventRecord};

/// The actor the fixtures write as creator.
pub const CREATOR: &str = "system:testkit";

/// The fixed time the fixtures start from: 2025-02-01T08:00:00Z.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 2, 1, 8, 0, 0)
        .single()
        .expect("a valid fixed time")
}

/// [`base_time`] plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    base_time() + Duration::minutes(minutes)
}

/// A UTC day.
pub fn day(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a valid date")
}

/// A whole calendar month as a [`Period`].
pub fn month(year: i32, month: u32) -> Period {
    let start = day(year, month, 1);
    let next = if month == 12 {
        day(year + 1, 1, 1)
    } else {
        day(year, month + 1, 1)
    };
    Period::new(start, next.pred_opt().expect("a day before")).expect("a valid period")
}

/// An amount in KES, e.g. `kes("500")`.
pub fn kes(amount: &str) -> Money {
    Money::parse(amount, Currency::KES).expect("a valid KES amount")
}

/// A consultation item.
pub fn item(reference: &str, amount: Money, occurred_at: DateTime<Utc>) -> PayoutItem {
    PayoutItem {
        kind: ItemKind::Consultation,
        reference: reference.to_string(),
        amount,
        occurred_at,
        description: format!("Consultation {reference}"),
    }
}

/// A calculated `PENDING` payout at version 1, created and updated at [`base_time`].
pub fn payout(id: &str, doctor: &str, period: Period, amount_due: Money) -> Payout {
    Payout::pending(
        PayoutId::new(id),
        DoctorId::new(doctor),
        period,
        amount_due,
        PayoutOrigin::Calculated,
        CREATOR.to_string(),
        base_time(),
    )
}

/// A calculated payout with one consultation item per KES amount (`amount_due` is their sum) and
/// its `CREATE` audit entry.
pub fn new_payout(id: &str, doctor: &str, period: Period, amounts: &[&str]) -> NewPayout {
    let items: Vec<PayoutItem> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| item(&format!("apt-{id}-{doctor}-{}", i + 1), kes(a), period.starts_at()))
        .collect();
    let total = Money::sum(Currency::KES, items.iter().map(|i| &i.amount)).expect("KES items add up");
    let payout = payout(id, doctor, period, total);
    NewPayout {
        audit: create_audit(&payout),
        payout,
        items,
        consumes_carry_overs: Vec::new(),
    }
}

/// [`new_payout`] with `origin` Manual, created by `admin:testkit`.
pub fn manual_payout(id: &str, doctor: &str, period: Period, amounts: &[&str]) -> NewPayout {
    let mut new = new_payout(id, doctor, period, amounts);
    new.payout.origin = PayoutOrigin::Manual;
    new.payout.created_by = "admin:testkit".to_string();
    new.audit.actor = "admin:testkit".to_string();
    new
}

/// `new` with its `created_at` (and `updated_at`, and its audit entry's time) set to `at`.
pub fn created_at(mut new: NewPayout, at: DateTime<Utc>) -> NewPayout {
    new.payout.created_at = at;
    new.payout.updated_at = at;
    new.audit.at = at;
    new
}

/// The `CREATE` audit entry of `payout`.
pub fn create_audit(payout: &Payout) -> AuditEntry {
    AuditEntry {
        payout_id: payout.id.clone(),
        actor: payout.created_by.clone(),
        at: payout.created_at,
        action: "CREATE".to_string(),
        from: None,
        to: Some(payout.status),
        detail: format!("{} for {}", payout.amount_due, payout.period()),
    }
}

/// An audit entry.
pub fn audit(
    payout_id: &PayoutId,
    action: &str,
    from: Option<PayoutStatus>,
    to: Option<PayoutStatus>,
    at: DateTime<Utc>,
) -> AuditEntry {
    AuditEntry {
        payout_id: payout_id.clone(),
        actor: "admin:testkit".to_string(),
        at,
        action: action.to_string(),
        from,
        to,
        detail: format!("{action} by the testkit"),
    }
}

/// A change of `payout` as read to `to` at `at`, with the matching audit entry.
pub fn status_change(payout: &Payout, to: PayoutStatus, at: DateTime<Utc>) -> PayoutChange {
    let mut change = PayoutChange::of(payout, at);
    change.new_status = Some(to);
    change
        .audit
        .push(audit(&payout.id, to.as_str(), Some(payout.status), Some(to), at));
    change
}

/// A `PENDING` attempt with the standard idempotency key and no provider reference yet.
pub fn attempt(payout_id: &PayoutId, attempt_no: u32, provider: Provider, at: DateTime<Utc>) -> PayoutAttempt {
    PayoutAttempt {
        payout_id: payout_id.clone(),
        attempt_no,
        provider,
        idempotency_key: PayoutAttempt::key_for(payout_id, attempt_no),
        request_summary: "500.00 KES to mpesa ********5678".to_string(),
        outcome: AttemptOutcome::Pending,
        provider_reference: None,
        error: None,
        created_at: at,
        updated_at: at,
        destination: Some(PayoutDestination::MpesaPhone {
            phone: "254712345678".to_string(),
        }),
        batch_id: None,
    }
}

/// An update of attempt `attempt_no` to `outcome`, with the provider's `reference` if given and no
/// error.
pub fn attempt_update(attempt_no: u32, outcome: AttemptOutcome, reference: Option<&str>) -> AttemptUpdate {
    AttemptUpdate {
        attempt_no,
        outcome,
        provider_reference: reference.map(str::to_string),
        error: None,
    }
}

/// A period batch of `payouts`, then `carry_overs`.
pub fn batch(payouts: Vec<NewPayout>, carry_overs: Vec<CarryOver>) -> PeriodBatch {
    PeriodBatch {
        payouts,
        carry_overs,
        run: None,
    }
}

/// An open carry-over, recorded at [`base_time`].
pub fn carry_over(doctor: &str, period: Period, amount: Money) -> CarryOver {
    CarryOver {
        doctor_id: DoctorId::new(doctor),
        period,
        amount,
        items: Vec::new(),
        note: "below the minimum payout".to_string(),
        created_at: base_time(),
        consumed_by: None,
    }
}

/// A [`new_payout`] for `doctor` that also pays out `carried` (a carry-over item per period) and
/// consumes those carry-overs. Every carried period is paid 300 KES.
pub fn payout_consuming(id: &str, doctor: &str, period: Period, amounts: &[&str], carried: &[Period]) -> NewPayout {
    let mut new = new_payout(id, doctor, period, amounts);
    for p in carried {
        new.items.push(PayoutItem {
            kind: ItemKind::CarryOver,
            reference: p.to_string(),
            amount: kes("300"),
            occurred_at: p.starts_at(),
            description: format!("Carried over from {p}"),
        });
    }
    let total = Money::sum(Currency::KES, new.items.iter().map(|i| &i.amount)).expect("KES items add up");
    new.payout.amount_due = total;
    new.audit = create_audit(&new.payout);
    new.consumes_carry_overs = carried.to_vec();
    new
}

/// A selection run `id`, labelled `Run {id}`, made by `admin:testkit` at `at`.
pub fn new_run(id: &str, at: DateTime<Utc>) -> NewRun {
    NewRun {
        id: RunId::new(id),
        kind: RunKind::Selection,
        label: format!("Run {id}"),
        period: None,
        created_by: "admin:testkit".to_string(),
        created_at: at,
    }
}

/// A calculation run `id` for `period`, made by [`CREATOR`] at [`base_time`].
pub fn calculation_run(id: &str, period: Period) -> NewRun {
    NewRun {
        id: RunId::new(id),
        kind: RunKind::Calculation,
        label: format!("Calculation {period}"),
        period: Some(period),
        created_by: CREATOR.to_string(),
        created_at: base_time(),
    }
}

/// A trigger result for `payout_id` at `at`: sent with M-Pesa and `PROCESSING` when `ok`, else
/// refused with a message naming the payout.
pub fn run_result(payout_id: &PayoutId, ok: bool, at: DateTime<Utc>) -> RunResult {
    RunResult {
        payout_id: payout_id.clone(),
        action: RunAction::Trigger,
        provider: Some(Provider::MpesaB2c),
        ok,
        status_after: ok.then_some(PayoutStatus::Processing),
        message: (!ok).then(|| format!("refused: {payout_id} has no M-Pesa number")),
        at,
        by: "admin:testkit".to_string(),
    }
}

/// A hold of `scope` placed by `admin:testkit` at `at`.
pub fn hold(scope: HoldScope, at: DateTime<Utc>) -> Hold {
    Hold::placed(scope, "bank details in doubt", "admin:testkit".to_string(), at)
}

/// `doctor` held by `admin:testkit` at `at`.
pub fn doctor_hold(doctor: &str, at: DateTime<Utc>) -> DoctorHold {
    DoctorHold {
        doctor_id: DoctorId::new(doctor),
        reason: format!("{doctor}: identity check"),
        placed_by: "admin:testkit".to_string(),
        placed_at: at,
    }
}

/// A funds override requested by `admin:one` at `at`, not confirmed yet.
pub fn funds_override(at: DateTime<Utc>) -> FundsOverride {
    FundsOverride {
        requested_by: "admin:one".to_string(),
        requested_at: at,
        reason: "the top-up is on its way".to_string(),
        confirmed_by: None,
        confirmed_at: None,
    }
}

/// A webhook event record.
pub fn webhook_event(
    provider: Provider,
    event_id: &str,
    payout_id: &PayoutId,
    at: DateTime<Utc>,
) -> WebhookEventRecord {
    WebhookEventRecord {
        provider,
        event_id: event_id.to_string(),
        payout_id: payout_id.clone(),
        event_type: "payout.paid".to_string(),
        received_at: at,
    }
}

/// A plausible test destination for `provider` (sandbox-style values, no real account).
pub fn destination(provider: Provider) -> PayoutDestination {
    match provider {
        Provider::StripeConnect => PayoutDestination::StripeAccount {
            account_id: "acct_1TestkitDoctor".to_string(),
        },
        Provider::PaypalPayouts => PayoutDestination::PaypalEmail {
            email: "doctor@example.com".to_string(),
        },
        Provider::MpesaB2c => PayoutDestination::MpesaPhone {
            phone: "254708374149".to_string(),
        },
        Provider::BankTransfer => PayoutDestination::Bank(BankAccount {
            account_name: "Dr. Testkit".to_string(),
            account_number: "0123456789".to_string(),
            bank_name: Some("Test Bank".to_string()),
            bank_code: Some("01".to_string()),
            branch_code: None,
            country: Some("KE".to_string()),
        }),
    }
}

/// Attempt 1 of payout `po_testkit` paying 500 KES to [`destination`]`(provider)`.
pub fn instruction(provider: Provider) -> PayoutInstruction {
    let payout_id = PayoutId::new("po_testkit");
    PayoutInstruction {
        idempotency_key: PayoutAttempt::key_for(&payout_id, 1),
        payout_id,
        attempt_no: 1,
        doctor_id: DoctorId::new("dr-testkit"),
        recipient_name: "Dr. Testkit".to_string(),
        recipient_email: "doctor@example.com".to_string(),
        destination: destination(provider),
        amount: kes("500"),
        description: format!("Consultations {}", month(2025, 1)),
        batch_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_end_on_their_last_day() {
        assert_eq!(month(2024, 2).end, day(2024, 2, 29));
        assert_eq!(month(2024, 12).end, day(2024, 12, 31));
    }

    #[test]
    fn consuming_payouts_add_up() {
        let new = payout_consuming("po_01", "dr-1", month(2025, 2), &["500"], &[month(2025, 1)]);
        assert_eq!(new.payout.amount_due, kes("800"));
        assert_eq!(new.audit.payout_id, new.payout.id);
    }
}
