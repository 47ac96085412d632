//! Run with: `cargo run --example notify_doctors`
//!
//! Events as messages to doctors. A host implements [`Notifier`] (here: an SMS gateway stand-in
//! that prints), and an [`EventRelay`] hands every event of the store's outbox to a
//! [`NotifyingSink`], which turns the ones a doctor cares about into messages:
//! "Your November 2026 payout of 6,500.00 KES was sent by M-Pesa."
//!
//! The store is in memory here; with `payouts::store_sqlx` the same relay reads the SQL outbox, and
//! several app instances can run one each (every event is claimed by one of them).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, NaiveDate, Utc};
use payouts::events::notify::{DoctorMessage, Notifier, NotifyingSink};
use payouts::events::{EventRelay, RelayConfig, SinkError};
use payouts::prelude::*;
use payouts::source::{StaticConsultations, StaticDirectory};

/// The host's way to reach a doctor: an SMS to the phone in their profile. Prints, and keeps what
/// it sent (a real one would call the gateway and deduplicate by `message.event_id`).
struct Sms {
    phones: Vec<(DoctorId, String)>,
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Notifier for Sms {
    async fn notify(&self, message: &DoctorMessage) -> Result<(), SinkError> {
        let phone = self
            .phones
            .iter()
            .find(|(d, _)| *d == message.doctor_id)
            .map(|(_, p)| p.as_str())
            .ok_or_else(|| SinkError::permanent(format!("no phone for {}", message.doctor_id)))?;
        // Only the last digits of a phone number in output (numbers are personal data).
        println!("SMS to ****{}: {}", &phone[phone.len() - 4..], message.text);
        self.sent.lock().unwrap().push(message.text.clone());
        Ok(())
    }
}

/// November 2026, a month of 13 consultations for Dr. Wanjiru: 6,500.00 KES at 500 KES each, sent
/// by M-Pesa (simulated: no credentials are configured); returns what was sent to her.
async fn november() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryStore::new());
    let doctor = Recipient {
        doctor_id: "dr-wanjiru".into(),
        name: "Dr. Wanjiru Kamau".into(),
        email: "wanjiru@clinic.example".into(),
        mpesa_phone_number: Some("254712345678".into()),
        ..Default::default()
    };
    let start = NaiveDate::from_ymd_opt(2026, 11, 1).ok_or("a date")?;
    let end = NaiveDate::from_ymd_opt(2026, 11, 30).ok_or("a date")?;
    let period = Period::new(start, end)?;
    let consultations = (0..13)
        .map(|n| Consultation {
            appointment_id: format!("apt-{n:02}"),
            doctor_id: doctor.doctor_id.clone(),
            completed_at: period.starts_at() + Duration::hours(9 + 24 * n),
        })
        .collect();
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(vec![doctor.clone()])))
        .simulate_missing_providers(true)
        .build()?;

    let report = service
        .calculate_period(&Actor::system("monthly-calculation"), Some(period), &Default::default())
        .await?;
    let admin = Actor::admin("admin-1");
    for id in &report.created {
        service.approve(&admin, id).await?;
        service.trigger(&admin, id, Provider::MpesaB2c).await?;
    }

    let sms = Arc::new(Sms {
        phones: vec![(doctor.doctor_id.clone(), "254712345678".into())],
        sent: Mutex::new(Vec::new()),
    });
    let relay = EventRelay::new(
        store,
        Arc::new(NotifyingSink::new(sms.clone())),
        Arc::new(SystemClock),
        RelayConfig::default(),
    );
    // A host runs `relay.run(every, shutdown)` in the background; here, until nothing is due.
    let pass = relay.drain().await?;
    println!("{} events relayed at {}", pass.delivered, Utc::now().format("%H:%M:%S"));
    let sent = sms.sent.lock().unwrap().clone();
    Ok(sent)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    november().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_doctor_is_told_her_payout_was_sent_by_m_pesa() {
        let sent = super::november().await.unwrap();
        assert_eq!(
            sent.first().map(String::as_str),
            Some("Your November 2026 payout of 6,500.00 KES was sent by M-Pesa.")
        );
        assert!(
            sent.iter()
                .all(|m| m.starts_with("Your November 2026 payout of 6,500.00 KES")),
            "{sent:?}"
        );
    }
}
