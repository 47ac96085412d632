//! What the engine's integration tests share: the months they pay, the doctors' consultations and
//! payout profiles. (The `testkit` fixtures play this part for store tests; these tests run
//! without the `testkit` feature.)

// Each test crate uses the part it needs.
#![allow(dead_code)]

pub mod gated;
pub mod rail;

use chrono::{NaiveDate, TimeZone, Utc};
use payout_core::domain::{BankAccount, Consultation, Period, Recipient};

/// The calendar month `month` of `year`.
pub fn month(year: i32, month: u32) -> Period {
    let start = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
    let next = start.checked_add_months(chrono::Months::new(1)).unwrap();
    Period::new(start, next.pred_opt().unwrap()).unwrap()
}

/// Consultation `id` of `doctor`, completed at 10:00 UTC on the day given.
pub fn consultation(id: &str, doctor: &str, y: i32, m: u32, d: u32) -> Consultation {
    Consultation {
        appointment_id: id.into(),
        doctor_id: doctor.into(),
        completed_at: Utc.with_ymd_and_hms(y, m, d, 10, 0, 0).unwrap(),
    }
}

/// A doctor set up for every provider: a Stripe account, a PayPal email, an M-Pesa phone and a bank
/// account.
pub fn recipient(doctor: &str) -> Recipient {
    Recipient {
        doctor_id: doctor.into(),
        name: format!("Dr. {doctor}"),
        email: format!("{doctor}@example.com"),
        stripe_account_id: Some(format!("acct_{doctor}")),
        paypal_payout_email: Some(format!("{doctor}@paypal.example.com")),
        mpesa_phone_number: Some("254712345678".into()),
        bank_details: Some(BankAccount {
            account_name: format!("Dr. {doctor}"),
            account_number: "0123456789".into(),
            bank_name: Some("KCB".into()),
            ..Default::default()
        }),
        preferred_provider: None,
    }
}
