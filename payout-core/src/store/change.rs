//! One atomic, conditional change to a payout, and the rules every store applies it by: which
//! records it may carry ([`PayoutChange::validate`]), how an attempt inserted and updated in the
//! same change is written ([`PayoutChange::normalized`]), and what a patch or an attempt update
//! sets ([`PayoutPatch::apply_to`], [`AttemptUpdate::apply_to`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Approval, AttemptOutcome, AuditEntry, Hold, Payout, PayoutAttempt, PayoutId, Provider, Resolution,
};
use crate::error::{Error, Result};
use crate::status::PayoutStatus;

/// A provider event recorded once per (provider, event id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEventRecord {
    /// The provider.
    pub provider: Provider,
    /// The provider's event id.
    pub event_id: String,
    /// The payout it applied to.
    pub payout_id: PayoutId,
    /// The provider's event type.
    pub event_type: String,
    /// Received.
    pub received_at: DateTime<Utc>,
}

/// New facts about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptUpdate {
    /// Which attempt.
    pub attempt_no: u32,
    /// Its outcome now.
    pub outcome: AttemptOutcome,
    /// The provider's reference, if learned (kept if `None`).
    pub provider_reference: Option<String>,
    /// The last error (kept if `None`).
    pub error: Option<String>,
}

impl AttemptUpdate {
    /// Writes the update onto `attempt`, changed at `at`: the outcome always, the reference and the
    /// error only when the update carries them.
    pub fn apply_to(&self, attempt: &mut PayoutAttempt, at: DateTime<Utc>) {
        attempt.outcome = self.outcome.clone();
        if let Some(reference) = &self.provider_reference {
            attempt.provider_reference = Some(reference.clone());
        }
        if let Some(error) = &self.error {
            attempt.error = Some(error.clone());
        }
        attempt.updated_at = at;
    }
}

/// Fields a change may set on a payout; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayoutPatch {
    /// The provider chosen.
    pub provider: Option<Provider>,
    /// The provider's reference.
    pub provider_reference: Option<String>,
    /// Notes (replace).
    pub notes: Option<String>,
    /// The approver.
    pub approved_by: Option<String>,
    /// When the outcome was confirmed.
    pub processed_at: Option<DateTime<Utc>>,
    /// What an approval vouched for (replaces the whole record).
    pub approval: Option<Approval>,
    /// An operator's resolution (replaces the whole record; a settled one is kept, marked
    /// confirmed or rejected, never removed).
    pub resolution: Option<Resolution>,
    /// A hold (replaces the whole record; a released one is kept, marked released, never
    /// removed).
    pub hold: Option<Hold>,
}

impl PayoutPatch {
    /// Sets every field the patch carries on `payout` (the SQL stores write the same with
    /// `COALESCE(new, old)` per column).
    pub fn apply_to(&self, payout: &mut Payout) {
        if let Some(provider) = self.provider {
            payout.provider = Some(provider);
        }
        if let Some(reference) = &self.provider_reference {
            payout.provider_reference = Some(reference.clone());
        }
        if let Some(notes) = &self.notes {
            payout.notes = Some(notes.clone());
        }
        if let Some(approver) = &self.approved_by {
            payout.approved_by = Some(approver.clone());
        }
        if let Some(at) = self.processed_at {
            payout.processed_at = Some(at);
        }
        if let Some(approval) = &self.approval {
            payout.approval = Some(approval.clone());
        }
        if let Some(resolution) = &self.resolution {
            payout.resolution = Some(resolution.clone());
        }
        if let Some(hold) = &self.hold {
            payout.hold = Some(hold.clone());
        }
    }
}

/// One atomic, conditional change to a payout.
///
/// Everything in it commits together or not at all: the status change, the patch, the attempt
/// insert/update, the webhook event record and the audit entries.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutChange {
    /// The payout.
    pub payout_id: PayoutId,
    /// The version the caller read; a different current version is a [`Conflict`](crate::Error::Conflict).
    pub expected_version: i64,
    /// The status the caller read; a different current status is a `Conflict`.
    pub expected_status: PayoutStatus,
    /// The new status, if it changes.
    pub new_status: Option<PayoutStatus>,
    /// Fields to set.
    pub patch: PayoutPatch,
    /// An attempt to record (before its provider call).
    pub new_attempt: Option<PayoutAttempt>,
    /// An existing attempt's outcome.
    pub attempt_update: Option<AttemptUpdate>,
    /// A webhook event to record once; if already recorded the whole change is refused with
    /// [`DuplicateEvent`](crate::Error::DuplicateEvent).
    pub webhook_event: Option<WebhookEventRecord>,
    /// Audit entries (append-only).
    pub audit: Vec<AuditEntry>,
    /// When (becomes `updated_at`).
    pub at: DateTime<Utc>,
    /// Reconciliation's follow-up to write with the change, replacing the one its status change
    /// calls for ([`PayoutChange::follow_up_written`]); `None`: that one.
    pub follow_up: Option<super::FollowUp>,
    /// The consultation ledger: the payout's items stop holding their consultations, so a later
    /// calculation may pay them (a cancel that releases them). Only with a move to `CANCELLED`
    /// ([`validate`](Self::validate)); `false` leaves the items holding them (voided). Either
    /// way a cancel releases the payout's clawbacks ([`ledger_release`](Self::ledger_release)).
    pub release_consultations: bool,
}

/// What a change takes out of the consultation ledger: see [`PayoutChange::ledger_release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerRelease {
    /// Nothing: the payout's items keep holding what they hold.
    Nothing,
    /// Its `CLAWBACK` items only: a cancel that voids the consultations. The clawback was never
    /// collected (the payout pays nothing), so a later calculation takes it again.
    Clawbacks,
    /// All its items: a cancel that releases the consultations (and the clawbacks with them).
    All,
}

impl LedgerRelease {
    /// As the SQL stores encode it in a batch (0, 1, 2).
    pub fn code(self) -> i64 {
        match self {
            LedgerRelease::Nothing => 0,
            LedgerRelease::Clawbacks => 1,
            LedgerRelease::All => 2,
        }
    }
}

impl PayoutChange {
    /// What the change takes out of the consultation ledger, in the same atomic step: a move to
    /// `CANCELLED` releases the payout's clawbacks (a cancelled payout collects nothing, so its
    /// clawbacks are owed again), and its consultations too when
    /// [`release_consultations`](Self::release_consultations) says so; any other change, nothing.
    pub fn ledger_release(&self) -> LedgerRelease {
        match (self.new_status, self.release_consultations) {
            (Some(PayoutStatus::Cancelled), true) => LedgerRelease::All,
            (Some(PayoutStatus::Cancelled), false) => LedgerRelease::Clawbacks,
            _ => LedgerRelease::Nothing,
        }
    }

    /// A change of `payout` as read, at `at`, with nothing in it yet.
    pub fn of(payout: &Payout, at: DateTime<Utc>) -> Self {
        PayoutChange {
            payout_id: payout.id.clone(),
            expected_version: payout.version,
            expected_status: payout.status,
            new_status: None,
            patch: PayoutPatch::default(),
            new_attempt: None,
            attempt_update: None,
            webhook_event: None,
            audit: Vec::new(),
            at,
            follow_up: None,
            release_consultations: false,
        }
    }

    /// Refuses, with [`Error::InvalidInput`], a change whose audit entries, new attempt or webhook
    /// event name another payout than the one it changes, or that releases consultations without
    /// moving the payout to `CANCELLED`. Every store calls it before it writes.
    pub fn validate(&self) -> Result<()> {
        let id = &self.payout_id;
        if self.release_consultations && self.new_status != Some(PayoutStatus::Cancelled) {
            return Err(Error::InvalidInput(format!(
                "payout {id}: consultations are released only by a move to CANCELLED"
            )));
        }
        for entry in &self.audit {
            belongs(id, &entry.payout_id, "audit entry")?;
        }
        if let Some(a) = &self.new_attempt {
            belongs(id, &a.payout_id, "attempt")?;
        }
        if let Some(e) = &self.webhook_event {
            belongs(id, &e.payout_id, "webhook event")?;
        }
        Ok(())
    }

    /// The same change with an update of the attempt it inserts folded into the insert, so that a
    /// store writes each attempt once: the attempt is inserted as the update leaves it (outcome,
    /// reference and error as [`AttemptUpdate::apply_to`] sets them, `updated_at` = `at`). Any
    /// other change is returned as it is.
    pub fn normalized(mut self) -> Self {
        let same = matches!(
            (&self.new_attempt, &self.attempt_update),
            (Some(a), Some(u)) if a.attempt_no == u.attempt_no
        );
        if same {
            if let (Some(attempt), Some(update)) = (self.new_attempt.as_mut(), self.attempt_update.take()) {
                update.apply_to(attempt, self.at);
            }
        }
        self
    }
}

/// `InvalidInput` unless `named` is `payout`.
pub(crate) fn belongs(payout: &PayoutId, named: &PayoutId, what: &str) -> Result<()> {
    if payout != named {
        return Err(Error::InvalidInput(format!(
            "{what} names payout {named}, not payout {payout}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::money::{Currency, Money};

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_735_689_600 + s, 0).unwrap()
    }

    fn attempt(payout: &str, no: u32) -> PayoutAttempt {
        PayoutAttempt {
            payout_id: payout.into(),
            attempt_no: no,
            provider: Provider::MpesaB2c,
            idempotency_key: format!("{payout}-{no}"),
            request_summary: "500.00 KES to mpesa ****5678".into(),
            outcome: AttemptOutcome::Pending,
            provider_reference: Some("kept".into()),
            error: None,
            created_at: at(0),
            updated_at: at(0),
            destination: None,
            batch_id: None,
        }
    }

    fn payout(id: &str) -> Payout {
        Payout {
            id: id.into(),
            doctor_id: "dr-1".into(),
            period_start: at(0).date_naive(),
            period_end: at(0).date_naive(),
            amount_due: Money::from_minor_units(50_000, Currency::KES),
            status: PayoutStatus::Approved,
            provider: None,
            provider_reference: Some("tr_1".into()),
            notes: None,
            origin: crate::domain::PayoutOrigin::Manual,
            created_by: "admin:b".into(),
            approved_by: None,
            processed_at: None,
            created_at: at(0),
            updated_at: at(0),
            version: 1,
            approval: None,
            resolution: None,
            hold: None,
        }
    }

    fn change(id: &str) -> PayoutChange {
        PayoutChange::of(&payout(id), at(5))
    }

    #[test]
    fn normalizing_folds_an_update_of_the_inserted_attempt_into_the_insert() {
        let mut c = change("po_1");
        c.new_attempt = Some(attempt("po_1", 1));
        c.attempt_update = Some(AttemptUpdate {
            attempt_no: 1,
            outcome: AttemptOutcome::Accepted,
            provider_reference: None,
            error: Some("slow".into()),
        });
        let n = c.normalized();
        assert_eq!(n.attempt_update, None);
        let a = n.new_attempt.expect("the attempt");
        assert_eq!(a.outcome, AttemptOutcome::Accepted);
        assert_eq!(
            a.provider_reference.as_deref(),
            Some("kept"),
            "no reference in the update keeps it"
        );
        assert_eq!(a.error.as_deref(), Some("slow"));
        assert_eq!(a.updated_at, at(5));

        // An update of another attempt stays an update.
        let mut c = change("po_1");
        c.new_attempt = Some(attempt("po_1", 2));
        c.attempt_update = Some(AttemptUpdate {
            attempt_no: 1,
            outcome: AttemptOutcome::Failed { reason: "x".into() },
            provider_reference: None,
            error: None,
        });
        assert_eq!(c.clone().normalized(), c);
    }

    #[test]
    fn validation_refuses_records_of_another_payout() {
        let mut c = change("po_1");
        assert!(c.validate().is_ok());
        c.new_attempt = Some(attempt("po_2", 1));
        let e = c.validate().unwrap_err();
        assert!(
            matches!(&e, Error::InvalidInput(m) if m.contains("attempt names payout po_2")),
            "{e}"
        );
    }

    #[test]
    fn a_patch_sets_only_what_it_carries() {
        let mut p = payout("po_1");
        let before = p.clone();
        PayoutPatch::default().apply_to(&mut p);
        assert_eq!(p, before);
        PayoutPatch {
            notes: Some("n".into()),
            approved_by: Some("admin:a".into()),
            ..Default::default()
        }
        .apply_to(&mut p);
        assert_eq!(p.notes.as_deref(), Some("n"));
        assert_eq!(p.approved_by.as_deref(), Some("admin:a"));
        assert_eq!(p.provider_reference, before.provider_reference);
    }
}
