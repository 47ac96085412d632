//! Bank files: the id a file of bank transfers is known by, how an attempt sent in one is told
//! apart from a bank API send, and the end-to-end reference a bank reports a file's lines by.

use std::fmt;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{PayoutAttempt, Provider};
use crate::error::{Error, Result};

/// The id of a bank file: `bf-` and 32 lowercase hex digits, 35 characters in all, so it fits
/// every field a bank file names itself by (pain.001's `MsgId` takes at most 35).
///
/// Every attempt sent in the file is stored with this id as its
/// [`batch_id`](PayoutAttempt::batch_id) and its provider reference (provider `BANK_TRANSFER`),
/// which is how the file's members are found again, and how an attempt sent by file is told apart
/// from one sent through a bank's API ([`PayoutAttempt::bank_file`]): a bank API attempt never has
/// a batch id of this form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BankFileId(String);

impl BankFileId {
    /// What every bank file id starts with.
    pub const PREFIX: &'static str = "bf-";
    /// How many hex digits follow the prefix.
    const DIGITS: usize = 32;

    /// The id of a new file, derived from a fresh unique id (the service's id generator): the
    /// first 32 hex digits of its SHA-256.
    pub fn derive(unique: &str) -> Self {
        let digest = Sha256::digest(unique.as_bytes());
        let mut id = String::with_capacity(Self::PREFIX.len() + Self::DIGITS);
        id.push_str(Self::PREFIX);
        for b in digest.iter().take(Self::DIGITS / 2) {
            let _ = write!(id, "{b:02x}");
        }
        BankFileId(id)
    }

    /// Reads an id given from outside; `InvalidInput` unless it has the form (nothing is looked up).
    pub fn parse(text: &str) -> Result<Self> {
        if Self::is_form(text) {
            Ok(BankFileId(text.to_string()))
        } else {
            Err(Error::InvalidInput(format!(
                "{:?} is not a bank file id (bf- and 32 lowercase hex digits)",
                text.chars().take(64).collect::<String>()
            )))
        }
    }

    /// True when `text` has the form of a bank file id.
    pub fn is_form(text: &str) -> bool {
        text.strip_prefix(Self::PREFIX).is_some_and(|hex| {
            hex.len() == Self::DIGITS && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BankFileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BankFileId({:?})", self.0)
    }
}

impl PayoutAttempt {
    /// The bank file this attempt was sent in, if it was sent by file: provider `BANK_TRANSFER`
    /// and a batch id of the [`BankFileId`] form. Such an attempt is never looked up or re-sent
    /// through a bank API (the bank received it in a file, not by API); only the file's settlement
    /// (or an operator's resolution) settles it.
    pub fn bank_file(&self) -> Option<BankFileId> {
        match (&self.provider, self.batch_id.as_deref()) {
            (Provider::BankTransfer, Some(id)) if BankFileId::is_form(id) => Some(BankFileId(id.to_string())),
            _ => None,
        }
    }
}

/// The `EndToEndId` a bank file gives the transfer of an idempotency key, and the reference the
/// bank reports it by: the key itself when it fits (at most 35 characters of
/// `A-Z a-z 0-9 - _ . / : ? ( ) + ,` and space), otherwise `H` followed by the first 34 hex digits
/// of its SHA-256 — deterministic, so a bank statement line maps back to the attempt.
///
/// ```
/// use payout_core::domain::end_to_end_id;
/// assert_eq!(end_to_end_id("po_1-1"), "po_1-1");
/// let long = end_to_end_id("0190f8a4-7d2c-7b1e-9a3f-4c5d6e7f8a9b-1");
/// assert_eq!(long.len(), 35);
/// assert!(long.starts_with('H'));
/// ```
pub fn end_to_end_id(key: &str) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_./:?()+, ".contains(c);
    if !key.is_empty() && key.len() <= 35 && key.chars().all(allowed) {
        return key.to_string();
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::from("H");
    for b in digest.iter().take(17) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_form() {
        let id = BankFileId::derive("0190f8a4-7d2c-7b1e-9a3f-4c5d6e7f8a9b");
        assert_eq!(id.as_str().len(), 35);
        assert!(BankFileId::is_form(id.as_str()));
        assert_eq!(BankFileId::parse(id.as_str()).unwrap(), id);
        assert_eq!(BankFileId::derive("x"), BankFileId::derive("x"));
        assert_ne!(BankFileId::derive("x"), BankFileId::derive("y"));
        for bad in [
            "",
            "bf-",
            "bf-0123",
            "BF-0123456789abcdef0123456789abcdef",
            "bf-0123456789ABCDEF0123456789abcdef",
            "bf-0123456789abcdef0123456789abcdeg",
            "bf-0123456789abcdef0123456789abcdef0",
            "batch-1",
            "po_1-1",
        ] {
            assert!(BankFileId::parse(bad).is_err(), "{bad}");
        }
    }
}
