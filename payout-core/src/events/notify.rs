//! Events as messages to doctors: what a doctor is told when their payout is sent, paid, held,
//! released, fails or comes back. The host says how a message reaches the doctor (SMS, e-mail,
//! push) by implementing [`Notifier`]; [`NotifyingSink`] is the [`PayoutEventSink`] that turns
//! events into messages and hands them over.
//!
//! ```
//! use payout_core::events::notify::doctor_message;
//! # use payout_core::events::{EventType, PayoutEvent};
//! # use payout_core::domain::{Period, Provider};
//! # use payout_core::money::{Currency, Money};
//! # use payout_core::status::PayoutStatus;
//! # let d = |y, m, day| chrono::NaiveDate::from_ymd_opt(y, m, day).unwrap();
//! # let event = PayoutEvent {
//! #     id: "evt_1".into(), seq: 1, event_type: EventType::PayoutStatusChanged,
//! #     payout_id: Some("po_1".into()), doctor_id: Some("dr-1".into()), run_id: None,
//! #     period: Some(Period { start: d(2026, 11, 1), end: d(2026, 11, 30) }),
//! #     status: Some(PayoutStatus::Processing), previous_status: Some(PayoutStatus::Approved),
//! #     amount: Some(Money::from_minor_units(650_000, Currency::KES)), provider: Some(Provider::MpesaB2c),
//! #     actor: "admin:a".into(), action: "TRIGGER".into(), detail: String::new(),
//! #     occurred_at: chrono::Utc::now(),
//! # };
//! let message = doctor_message(&event).expect("a sent payout is worth a message");
//! assert_eq!(message.text, "Your November 2026 payout of 6,500.00 KES was sent by M-Pesa.");
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Datelike;

use super::{EventType, PayoutEvent, PayoutEventSink, SinkError};
use crate::domain::{DoctorId, Period, Provider};
use crate::money::Money;
use crate::status::PayoutStatus;

/// A message for one doctor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorMessage {
    /// Who it is for.
    pub doctor_id: DoctorId,
    /// The event it comes from: a notifier that must not send twice deduplicates by it.
    pub event_id: String,
    /// What to tell them (no internal detail: no error text, no admin names).
    pub text: String,
}

/// How a host reaches its doctors.
///
/// # Behavior
/// `Ok` once the message is handed over for good; an error is retried later by the relay (the
/// same message, with the same `event_id`).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends one message.
    async fn notify(&self, message: &DoctorMessage) -> Result<(), SinkError>;
}

/// A provider as a doctor knows it.
pub fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::StripeConnect => "Stripe",
        Provider::PaypalPayouts => "PayPal",
        Provider::MpesaB2c => "M-Pesa",
        Provider::BankTransfer => "bank transfer",
    }
}

/// `6,500.00 KES`: the exact amount, its digits grouped by thousands.
pub fn grouped(amount: &Money) -> String {
    let plain = amount.amount_str();
    let (sign, digits) = plain.strip_prefix('-').map_or(("", plain.as_str()), |d| ("-", d));
    let (whole, fraction) = digits.split_once('.').map_or((digits, None), |(w, f)| (w, Some(f)));
    let mut out = String::with_capacity(plain.len() + whole.len() / 3 + 5);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{out}.{f} {}", amount.currency().code()),
        None => format!("{sign}{out} {}", amount.currency().code()),
    }
}

fn month_label(period: &Period) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (start, end) = (period.start, period.end);
    if start.day() == 1 && start.month() == end.month() && start.year() == end.year() {
        format!("{} {}", MONTHS[start.month0() as usize], start.year())
    } else {
        format!("{start} to {end}")
    }
}

/// The message a doctor gets for `event`, if any: when their payout is sent (moved to
/// `PROCESSING`), paid, fails, comes back (returned, reversed), is held or released. Other events
/// (creation, approval, attention flags, runs) are for the host's staff, not the doctor.
pub fn doctor_message(event: &PayoutEvent) -> Option<DoctorMessage> {
    let doctor_id = event.doctor_id.clone()?;
    let amount = event.amount.as_ref()?;
    let what = match &event.period {
        Some(p) => format!("Your {} payout of {}", month_label(p), grouped(amount)),
        None => format!("Your payout of {}", grouped(amount)),
    };
    let by = event.provider.map(provider_name).unwrap_or("your payment method");
    let text = match (event.event_type, event.status) {
        (EventType::PayoutStatusChanged, Some(PayoutStatus::Processing)) => format!("{what} was sent by {by}."),
        (EventType::PayoutStatusChanged, Some(PayoutStatus::Paid)) => format!("{what} has arrived ({by})."),
        (EventType::PayoutStatusChanged, Some(PayoutStatus::Failed)) => {
            format!("{what} could not be sent by {by}. We will contact you about it.")
        }
        (EventType::PayoutStatusChanged, Some(PayoutStatus::Returned | PayoutStatus::Reversed)) => {
            format!("{what} came back from {by}. We will contact you about it.")
        }
        (EventType::PayoutHeld, _) => format!("{what} is on hold. We will contact you about it."),
        (EventType::PayoutReleased, _) => format!("{what} is no longer on hold."),
        _ => return None,
    };
    Some(DoctorMessage {
        doctor_id,
        event_id: event.id.clone(),
        text,
    })
}

/// A sink that tells doctors: each event worth a message ([`doctor_message`]) goes to the
/// [`Notifier`]; the others are taken without a word.
#[derive(Clone)]
pub struct NotifyingSink {
    notifier: Arc<dyn Notifier>,
}

impl std::fmt::Debug for NotifyingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyingSink").finish_non_exhaustive()
    }
}

impl NotifyingSink {
    /// A sink telling doctors through `notifier`.
    pub fn new(notifier: Arc<dyn Notifier>) -> Self {
        NotifyingSink { notifier }
    }
}

#[async_trait]
impl PayoutEventSink for NotifyingSink {
    async fn deliver(&self, event: &PayoutEvent) -> Result<(), SinkError> {
        match doctor_message(event) {
            Some(message) => self.notifier.notify(&message).await,
            None => Ok(()),
        }
    }
}

/// Several sinks as one: each event goes to every sink, in order. A failure fails the delivery;
/// on the retry, the sinks before the one that failed are skipped if they took the event in this
/// process (a restart forgets it, so they may get it again: deduplicate by id).
#[derive(Clone, Default)]
pub struct FanOut {
    sinks: Vec<Arc<dyn PayoutEventSink>>,
    /// Per event id whose delivery failed part-way: how many sinks, from the first, took it.
    taken: Arc<Mutex<HashMap<String, usize>>>,
}

/// How many part-way deliveries [`FanOut`] remembers; past it, it forgets them all (at least once
/// still holds: the sinks before the failed one get those events again).
const FAN_OUT_MEMORY: usize = 100_000;

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanOut").field("sinks", &self.sinks.len()).finish()
    }
}

impl FanOut {
    /// No sinks yet.
    pub fn new() -> Self {
        FanOut::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: Arc<dyn PayoutEventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    fn taken(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // Only counts are kept under the lock; a poisoned one still holds consistent counts.
        self.taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl PayoutEventSink for FanOut {
    async fn deliver(&self, event: &PayoutEvent) -> Result<(), SinkError> {
        let skip = self.taken().get(&event.id).copied().unwrap_or(0);
        for (n, sink) in self.sinks.iter().enumerate().skip(skip) {
            if let Err(e) = sink.deliver(event).await {
                let mut taken = self.taken();
                if taken.len() >= FAN_OUT_MEMORY {
                    taken.clear();
                }
                taken.insert(event.id.clone(), n);
                return Err(e);
            }
        }
        self.taken().remove(&event.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    /// Records what it took; fails the first `fail` deliveries.
    #[derive(Default)]
    struct Recording {
        took: Mutex<Vec<String>>,
        fail: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl PayoutEventSink for Recording {
        async fn deliver(&self, event: &PayoutEvent) -> Result<(), SinkError> {
            let failing = self
                .fail
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok();
            if failing {
                return Err(SinkError::retryable("down"));
            }
            self.took.lock().unwrap().push(event.id.clone());
            Ok(())
        }
    }

    fn event(id: &str) -> PayoutEvent {
        PayoutEvent {
            id: id.into(),
            seq: 1,
            event_type: EventType::PayoutCreated,
            payout_id: None,
            doctor_id: None,
            run_id: None,
            period: None,
            status: None,
            previous_status: None,
            amount: None,
            provider: None,
            actor: "system:test".into(),
            action: "CREATE".into(),
            detail: String::new(),
            occurred_at: chrono::Utc::now(),
        }
    }

    /// The second sink fails twice: the first takes the event once, the second on the third try;
    /// another event goes to both at once.
    #[tokio::test]
    async fn a_retry_skips_the_sinks_that_took_the_event() {
        let (first, second) = (Arc::new(Recording::default()), Arc::new(Recording::default()));
        second.fail.store(2, std::sync::atomic::Ordering::SeqCst);
        let fan = FanOut::new().with(first.clone()).with(second.clone());
        assert!(fan.deliver(&event("evt_a")).await.is_err());
        assert!(fan.deliver(&event("evt_a")).await.is_err());
        fan.deliver(&event("evt_a")).await.unwrap();
        fan.deliver(&event("evt_b")).await.unwrap();
        assert_eq!(*first.took.lock().unwrap(), ["evt_a", "evt_b"]);
        assert_eq!(*second.took.lock().unwrap(), ["evt_a", "evt_b"]);
        assert!(fan.taken().is_empty(), "nothing left once delivered");
    }

    #[test]
    fn amounts_are_grouped_by_thousands_exactly() {
        assert_eq!(
            grouped(&Money::from_minor_units(650_000, Currency::KES)),
            "6,500.00 KES"
        );
        assert_eq!(grouped(&Money::from_minor_units(50, Currency::KES)), "0.50 KES");
        assert_eq!(
            grouped(&Money::from_minor_units(123_456_789, Currency::USD)),
            "1,234,567.89 USD"
        );
        assert_eq!(
            grouped(&Money::from_minor_units(1_000_000, Currency::JPY)),
            "1,000,000 JPY"
        );
        assert_eq!(
            grouped(&Money::from_minor_units(-100_000, Currency::USD)),
            "-1,000.00 USD"
        );
    }
}
