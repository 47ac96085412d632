//! What the engine reads from the host application: completed consultations and doctors' payout profiles.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::domain::{Consultation, DoctorId, Period, Recipient, Reversal};
use crate::error::Result;

/// The host's completed consultations.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ConsultationSource: Send + Sync {
    /// The consultations with status `COMPLETED` whose completion falls in `period`, streamed.
    ///
    /// # Behavior
    /// All of one doctor's consultations must come together (e.g. `ORDER BY doctor_id, completed_at`),
    /// so the calculation can finish each doctor as soon as the next one starts and never holds the
    /// whole period in memory. The calculation refuses a stream that breaks this.
    fn completed(&self, period: Period) -> BoxStream<'static, Result<Consultation>>;

    /// The consultations refunded or voided after they were completed, whose reversal falls in
    /// `window`, streamed in any order. A calculation reads the reversals of its period and its
    /// look-back, and claws back the pay of each one that was paid, once.
    ///
    /// # Behavior
    /// A reversed consultation is no longer `COMPLETED`: [`completed`](Self::completed) leaves it
    /// out. The default reports none, for hosts that never take a consultation back.
    fn reversed(&self, window: Period) -> BoxStream<'static, Result<Reversal>> {
        let _ = window;
        Box::pin(futures::stream::empty())
    }
}

/// Doctors' names, emails and payout details.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RecipientDirectory: Send + Sync {
    /// One doctor's profile, if the host knows the doctor.
    async fn recipient(&self, doctor_id: &DoctorId) -> Result<Option<Recipient>>;

    /// Several doctors' profiles (unknown ids are left out).
    ///
    /// # Behavior
    /// The default asks [`RecipientDirectory::recipient`] once per id; a database-backed directory
    /// should answer in one query.
    async fn recipients(&self, doctor_ids: &[DoctorId]) -> Result<Vec<Recipient>> {
        let mut out = Vec::with_capacity(doctor_ids.len());
        for id in doctor_ids {
            if let Some(r) = self.recipient(id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }
}

/// A fixed list of consultations: for tests, examples and small hosts.
#[derive(Debug, Clone, Default)]
pub struct StaticConsultations {
    consultations: Vec<Consultation>,
    reversals: Vec<Reversal>,
}

impl StaticConsultations {
    /// Holds `consultations` (any order; they are served grouped by doctor).
    pub fn new(mut consultations: Vec<Consultation>) -> Self {
        consultations.sort_by(|a, b| (&a.doctor_id, a.completed_at).cmp(&(&b.doctor_id, b.completed_at)));
        StaticConsultations {
            consultations,
            reversals: Vec::new(),
        }
    }

    /// Also reports `reversals`; their consultations are no longer completed, so they are left out
    /// of [`completed`](ConsultationSource::completed).
    pub fn with_reversals(mut self, reversals: Vec<Reversal>) -> Self {
        let reversed: std::collections::HashSet<&str> = reversals.iter().map(|r| r.appointment_id.as_str()).collect();
        self.consultations
            .retain(|c| !reversed.contains(c.appointment_id.as_str()));
        self.reversals = reversals;
        self
    }
}

#[async_trait]
impl ConsultationSource for StaticConsultations {
    fn completed(&self, period: Period) -> BoxStream<'static, Result<Consultation>> {
        let rows: Vec<Result<Consultation>> = self
            .consultations
            .iter()
            .filter(|c| period.contains(c.completed_at))
            .cloned()
            .map(Ok)
            .collect();
        Box::pin(futures::stream::iter(rows))
    }

    fn reversed(&self, window: Period) -> BoxStream<'static, Result<Reversal>> {
        let rows: Vec<Result<Reversal>> = self
            .reversals
            .iter()
            .filter(|r| window.contains(r.reversed_at))
            .cloned()
            .map(Ok)
            .collect();
        Box::pin(futures::stream::iter(rows))
    }
}

/// A fixed directory of recipients: for tests, examples and small hosts.
#[derive(Debug, Clone, Default)]
pub struct StaticDirectory {
    recipients: HashMap<DoctorId, Recipient>,
}

impl StaticDirectory {
    /// Holds `recipients`.
    pub fn new(recipients: impl IntoIterator<Item = Recipient>) -> Self {
        StaticDirectory {
            recipients: recipients.into_iter().map(|r| (r.doctor_id.clone(), r)).collect(),
        }
    }
}

#[async_trait]
impl RecipientDirectory for StaticDirectory {
    async fn recipient(&self, doctor_id: &DoctorId) -> Result<Option<Recipient>> {
        Ok(self.recipients.get(doctor_id).cloned())
    }
}
