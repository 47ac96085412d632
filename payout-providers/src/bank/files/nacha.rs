//! NACHA (US ACH) credit files: fixed-width 94-character records, blocked by 10.

use chrono::{DateTime, NaiveDate, Utc};

use super::{BankTransferLine, FileError, positive};

/// The ACH standard entry class of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecCode {
    /// Prearranged payment and deposit: to a consumer account.
    #[default]
    Ppd,
    /// Corporate credit or debit: to a business account.
    Ccd,
}

impl SecCode {
    fn as_str(self) -> &'static str {
        match self {
            SecCode::Ppd => "PPD",
            SecCode::Ccd => "CCD",
        }
    }
}

/// The receiving account's type (the bank details carry none, so the file states one for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountType {
    /// Checking: transaction code 22 (automated deposit).
    #[default]
    Checking,
    /// Savings: transaction code 32.
    Savings,
}

impl AccountType {
    fn credit_code(self) -> &'static str {
        match self {
            AccountType::Checking => "22",
            AccountType::Savings => "32",
        }
    }
}

/// The originator's side of a NACHA file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NachaSettings {
    /// Immediate destination: the 9-digit routing number of the bank that receives the file.
    pub immediate_destination: String,
    /// Its name (23 characters).
    pub immediate_destination_name: String,
    /// Immediate origin: 9-digit routing number or 10-character id agreed with the bank.
    pub immediate_origin: String,
    /// Its name (23 characters).
    pub immediate_origin_name: String,
    /// Company name (16 characters).
    pub company_name: String,
    /// Company identification (10 characters, often `1` + EIN).
    pub company_id: String,
    /// Company entry description shown to the receiver (10 characters), e.g. `PAYOUTS`.
    pub entry_description: String,
    /// The originating bank's 8-digit routing prefix (also the trace numbers' prefix).
    pub originating_dfi: String,
    /// The effective entry date.
    pub effective_date: NaiveDate,
    /// When the file is made.
    pub created_at: DateTime<Utc>,
    /// The file id modifier (`A`-`Z`, `0`-`9`), distinguishing files made on one day.
    pub file_id_modifier: char,
    /// The batch's entry class.
    pub sec_code: SecCode,
    /// The receivers' account type.
    pub account_type: AccountType,
    /// Add one `05` addenda record per entry carrying the full reference (the idempotency key).
    pub addenda: bool,
}

const RECORD: usize = 94;
const BLOCKING_FACTOR: usize = 10;

/// A NACHA file paying `lines` (USD only) in one credit batch (service class 220).
///
/// Entry `n` (from 1, in `lines` order) gets trace number `originating_dfi` + `n` as 7 digits, its
/// individual id number is the first 15 characters of the doctor id, and with `addenda` its `05`
/// addenda carries the reference. The entry hash is the sum of the receiving banks' 8-digit routing
/// prefixes, its last 10 digits kept; the file is padded with `9` records to a multiple of 10.
/// Text is written in uppercase ASCII; records end with `\n`.
pub fn nacha(lines: &[BankTransferLine], s: &NachaSettings) -> Result<String, FileError> {
    if lines.is_empty() {
        return Err(FileError::Empty);
    }
    let destination = routing_number(&s.immediate_destination)
        .ok_or_else(|| FileError::Settings("immediate_destination must be a valid 9-digit routing number".into()))?;
    let origin = s.immediate_origin.trim();
    if origin.is_empty() || origin.len() > 10 || !origin.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FileError::Settings(
            "immediate_origin must be 1..=10 letters or digits".into(),
        ));
    }
    let odfi = s.originating_dfi.trim();
    if odfi.len() != 8 || !odfi.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FileError::Settings("originating_dfi must be 8 digits".into()));
    }
    if !s.file_id_modifier.is_ascii_alphanumeric() {
        return Err(FileError::Settings("file_id_modifier must be A-Z or 0-9".into()));
    }
    if lines.len() > 9_999_999 {
        return Err(FileError::Settings("more entries than trace numbers".into()));
    }

    let mut records: Vec<String> = Vec::with_capacity(lines.len() * 2 + 4);
    // File header.
    records.push(format!(
        "101{:>10}{:>10}{}{}{}094{}1{}{}{}",
        destination,
        origin,
        s.created_at.format("%y%m%d"),
        s.created_at.format("%H%M"),
        s.file_id_modifier.to_ascii_uppercase(),
        BLOCKING_FACTOR,
        alpha(&s.immediate_destination_name, 23),
        alpha(&s.immediate_origin_name, 23),
        alpha("", 8),
    ));
    let company_id = alpha(&s.company_id, 10);
    let batch_number = format!("{:07}", 1);
    records.push(format!(
        "5220{}{}{}{}{}{}{}{}1{}{}",
        alpha(&s.company_name, 16),
        alpha("", 20),
        company_id,
        s.sec_code.as_str(),
        alpha(&s.entry_description, 10),
        alpha("", 6),
        s.effective_date.format("%y%m%d"),
        alpha("", 3),
        odfi,
        batch_number,
    ));

    let mut entry_and_addenda: u64 = 0;
    let mut hash: u64 = 0;
    let mut credit_total: u64 = 0;
    for (n, line) in lines.iter().enumerate() {
        positive(line)?;
        let invalid = |reason: &str| FileError::Invalid {
            payout_id: line.payout_id.to_string(),
            reason: reason.into(),
        };
        if line.amount.currency().code() != "USD" {
            return Err(invalid("NACHA carries USD only"));
        }
        let cents = line.amount.to_minor_units().map_err(|_| invalid("amount overflows"))?;
        let cents = u64::try_from(cents).map_err(|_| invalid("amount must be positive"))?;
        if cents > 9_999_999_999 {
            return Err(invalid("amount exceeds the 10-digit NACHA amount field"));
        }
        let routing = line
            .account
            .bank_code
            .as_deref()
            .and_then(routing_number)
            .ok_or_else(|| invalid("bank_code must be a valid 9-digit ABA routing number"))?;
        let account: String = line
            .account
            .account_number
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if account.is_empty() || account.len() > 17 || !account.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("account number must be 1..=17 letters, digits or hyphens"));
        }
        let sequence = format!("{:07}", n + 1);
        let trace = format!("{odfi}{sequence}");
        records.push(format!(
            "6{}{}{:<17}{:010}{}{}{}{}{}",
            s.account_type.credit_code(),
            &routing,
            account.to_ascii_uppercase(),
            cents,
            alpha(line.doctor_id.as_str(), 15),
            alpha(line.beneficiary_name(), 22),
            alpha("", 2),
            if s.addenda { '1' } else { '0' },
            trace,
        ));
        entry_and_addenda += 1;
        if s.addenda {
            records.push(format!("705{}0001{sequence}", alpha(&line.reference, 80)));
            entry_and_addenda += 1;
        }
        hash += routing[..8]
            .parse::<u64>()
            .map_err(|_| invalid("routing number is not numeric"))?;
        credit_total += cents;
    }
    let hash = hash % 10_000_000_000;
    if credit_total > 999_999_999_999 {
        return Err(FileError::Settings(
            "the file total exceeds the 12-digit control field".into(),
        ));
    }
    records.push(format!(
        "8220{:06}{:010}{:012}{:012}{}{}{}{}{}",
        entry_and_addenda,
        hash,
        0,
        credit_total,
        company_id,
        alpha("", 19),
        alpha("", 6),
        odfi,
        batch_number,
    ));
    let with_control = records.len() + 1;
    let blocks = with_control.div_ceil(BLOCKING_FACTOR);
    records.push(format!(
        "9{:06}{:06}{:08}{:010}{:012}{:012}{}",
        1,
        blocks,
        entry_and_addenda,
        hash,
        0,
        credit_total,
        alpha("", 39),
    ));
    while records.len() % BLOCKING_FACTOR != 0 {
        records.push("9".repeat(RECORD));
    }
    if let Some(bad) = records.iter().find(|r| r.len() != RECORD) {
        // A bug in this function, not in the input: refuse rather than write a broken file.
        return Err(FileError::Settings(format!(
            "internal error: a record of {} characters",
            bad.len()
        )));
    }
    let mut out = records.join("\n");
    out.push('\n');
    Ok(out)
}

/// A valid ABA routing number (9 digits, 3-7-1 weighted check digit), trimmed.
fn routing_number(text: &str) -> Option<String> {
    let t = text.trim();
    let d: Vec<u32> = t.chars().map(|c| c.to_digit(10)).collect::<Option<_>>()?;
    if d.len() != 9 {
        return None;
    }
    let sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8]);
    (sum % 10 == 0).then(|| t.to_string())
}

/// Uppercase ASCII, left-justified, space-padded and cut to `width` characters. Accented Latin
/// letters lose their accents; other characters NACHA does not allow become spaces.
fn alpha(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(width);
    for c in text.trim().chars() {
        if out.len() == width {
            break;
        }
        let c = fold(c).to_ascii_uppercase();
        out.push(if c.is_ascii_graphic() || c == ' ' { c } else { ' ' });
    }
    while out.len() < width {
        out.push(' ');
    }
    out
}

fn fold(c: char) -> char {
    match c {
        'À'..='Å' | 'à'..='å' => 'A',
        'Ç' | 'ç' => 'C',
        'È'..='Ë' | 'è'..='ë' => 'E',
        'Ì'..='Ï' | 'ì'..='ï' => 'I',
        'Ñ' | 'ñ' => 'N',
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' => 'O',
        'Ù'..='Ü' | 'ù'..='ü' => 'U',
        'Ý' | 'ý' | 'ÿ' => 'Y',
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_numbers_are_checked() {
        assert_eq!(routing_number("021000021").as_deref(), Some("021000021"));
        assert_eq!(routing_number("011000015").as_deref(), Some("011000015"));
        assert!(routing_number("021000022").is_none());
        assert!(routing_number("12345678").is_none());
    }

    #[test]
    fn alpha_pads_cuts_and_folds() {
        assert_eq!(alpha("Dr. Müller", 12), "DR. MULLER  ");
        assert_eq!(alpha("abcdef", 3), "ABC");
        assert_eq!(alpha("日本", 3), "   ");
    }
}
