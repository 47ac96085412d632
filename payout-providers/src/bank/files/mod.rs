//! Files for paying a set of payouts through a bank by hand: pure functions from
//! [`BankTransferLine`]s to text.
//!
//! | function | format |
//! |---|---|
//! | [`csv`] | the original system's columns `id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status` |
//! | [`pain001`] | ISO 20022 `pain.001.001.03` customer credit transfer initiation |
//! | [`nacha`] | NACHA (US ACH) PPD/CCD credits, 94-character records blocked by 10 |
//!
//! A file the engine marked ([`PayoutService::send_by_file`](payout_core::PayoutService::send_by_file))
//! is written by [`BankFileConfig::write`], which adds the per-file settings (the payer, from
//! [`BankFileConfig`]) and checks the totals the written file states against the members marked.
//!
//! ```
//! use payout_core::domain::Provider;
//! use payout_core::testkit::fixtures;
//! use payout_providers::bank::{BankTransferLine, csv};
//!
//! let line = BankTransferLine::from_instruction(&fixtures::instruction(Provider::BankTransfer)).unwrap();
//! let file = csv(&[line]).unwrap();
//! assert!(file.starts_with("id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status\r\n"));
//! ```

mod config;
mod csv;
mod nacha;
mod pain001;
mod write;

use payout_core::domain::{BankAccount, DoctorId, Payout, PayoutDestination, PayoutId, Recipient};
use payout_core::money::Money;
use payout_core::provider::PayoutInstruction;
use payout_core::status::PayoutStatus;

pub use self::csv::csv;
pub use config::{BankFileConfig, NachaOrigin, Pain001Origin};
pub use nacha::{AccountType, NachaSettings, SecCode, nacha};
pub use pain001::{Pain001Settings, end_to_end_id, pain001};
pub use write::{BankFileFormat, UnknownFormat, stated_totals};

/// One transfer in a bank file.
#[derive(Clone, PartialEq, Eq)]
pub struct BankTransferLine {
    /// The payout.
    pub payout_id: PayoutId,
    /// The doctor.
    pub doctor_id: DoctorId,
    /// The doctor's name.
    pub name: String,
    /// The doctor's email.
    pub email: String,
    /// Where to pay.
    pub account: BankAccount,
    /// How much (positive).
    pub amount: Money,
    /// The end-to-end reference: the attempt's idempotency key.
    pub reference: String,
    /// Remittance text for the doctor's statement.
    pub remittance: String,
    /// The payout's status (the CSV's last column).
    pub status: PayoutStatus,
}

impl std::fmt::Debug for BankTransferLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BankTransferLine")
            .field("payout_id", &self.payout_id)
            .field("account", &self.account)
            .field("amount", &self.amount)
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl BankTransferLine {
    /// The line for an instruction the engine would send (status `PROCESSING`).
    pub fn from_instruction(i: &PayoutInstruction) -> Result<Self, FileError> {
        let PayoutDestination::Bank(account) = &i.destination else {
            return Err(FileError::invalid(
                &i.payout_id,
                format!("not a bank destination: {}", i.destination.masked()),
            ));
        };
        Ok(BankTransferLine {
            payout_id: i.payout_id.clone(),
            doctor_id: i.doctor_id.clone(),
            name: i.recipient_name.clone(),
            email: i.recipient_email.clone(),
            account: account.clone(),
            amount: i.amount,
            reference: i.idempotency_key.clone(),
            remittance: i.description.clone(),
            status: PayoutStatus::Processing,
        })
    }

    /// The line for a payout and its doctor's profile; `reference` is the attempt's idempotency key.
    pub fn from_payout(
        payout: &Payout,
        recipient: &Recipient,
        reference: impl Into<String>,
    ) -> Result<Self, FileError> {
        let account = recipient
            .bank_details
            .clone()
            .filter(|b| !b.account_number.trim().is_empty())
            .ok_or_else(|| FileError::invalid(&payout.id, "the doctor has no bank details".to_string()))?;
        Ok(BankTransferLine {
            payout_id: payout.id.clone(),
            doctor_id: payout.doctor_id.clone(),
            name: recipient.name.clone(),
            email: recipient.email.clone(),
            account,
            amount: payout.amount_due,
            reference: reference.into(),
            remittance: format!("Consultations {}", payout.period()),
            status: payout.status,
        })
    }

    /// The beneficiary's name: the account holder's, else the doctor's.
    pub fn beneficiary_name(&self) -> &str {
        let holder = self.account.account_name.trim();
        if holder.is_empty() { self.name.trim() } else { holder }
    }
}

/// Why a file could not be produced. Nothing is written partially: a file is all lines or an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// There are no lines.
    #[error("no transfers to write")]
    Empty,
    /// One line cannot be written in this format.
    #[error("payout {payout_id}: {reason}")]
    Invalid {
        /// The payout at fault.
        payout_id: String,
        /// Why.
        reason: String,
    },
    /// The file settings are unusable.
    #[error("invalid file settings: {0}")]
    Settings(String),
    /// The format needs settings that are not configured.
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// What the written file states it pays is not what was marked: the file is refused.
    #[error("the file states {stated}, but {marked} were marked")]
    TotalsDisagree {
        /// What the written file states.
        stated: String,
        /// What was marked.
        marked: String,
    },
}

impl FileError {
    fn invalid(payout_id: &PayoutId, reason: String) -> Self {
        FileError::Invalid {
            payout_id: payout_id.to_string(),
            reason,
        }
    }
}

/// Checks the amount every format needs: positive.
fn positive(line: &BankTransferLine) -> Result<(), FileError> {
    if line.amount.is_zero() || line.amount.is_negative() {
        return Err(FileError::invalid(
            &line.payout_id,
            format!("amount {} must be positive", line.amount),
        ));
    }
    Ok(())
}
