//! ISO 20022 `pain.001.001.03` (customer credit transfer initiation).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::{BankTransferLine, FileError, positive};

/// The namespace of `pain.001.001.03`.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03";

/// Who pays, and the message's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pain001Settings {
    /// `GrpHdr/MsgId`: unique per file, at most 35 characters.
    pub message_id: String,
    /// `GrpHdr/CreDtTm`.
    pub created_at: DateTime<Utc>,
    /// `PmtInf/ReqdExctnDt`.
    pub execution_date: NaiveDate,
    /// `GrpHdr/InitgPty/Nm`.
    pub initiating_party: String,
    /// `PmtInf/Dbtr/Nm`.
    pub debtor_name: String,
    /// `PmtInf/DbtrAcct/Id`: an IBAN (written as `IBAN`) or another account id (`Othr/Id`).
    pub debtor_account: String,
    /// `PmtInf/DbtrAgt/FinInstnId/BIC`; without it the agent is `Othr/Id` `NOTPROVIDED`.
    pub debtor_agent_bic: Option<String>,
}

/// The `EndToEndId` of each transfer: [`payout_core::domain::end_to_end_id`] of its reference
/// (the attempt's idempotency key), the rule a bank file's settlement matches returned items by.
/// The full key is also written in `RmtInf/Ustrd`.
pub use payout_core::domain::end_to_end_id;

/// A `pain.001.001.03` document paying `lines`: one `PmtInf` per currency (in code order), each with
/// its own `NbOfTxs` and `CtrlSum`; the group header's `NbOfTxs` and `CtrlSum` cover the whole file.
/// Text is XML-escaped. What identifies a party or an account is never cut: a name over 140
/// characters (`Max140Text`), an account id over 34 (`Othr/Id`, `Max34Text`), a bank or branch code
/// over 35, or a BIC that does not match ISO 9362 (`[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?`, the
/// XSD's pattern) refuses the file, naming the payout (or the setting). Only the free-text
/// remittance is cut to 140 characters, after the reference it starts with; ids are never cut (see
/// [`end_to_end_id`]).
pub fn pain001(lines: &[BankTransferLine], settings: &Pain001Settings) -> Result<String, FileError> {
    if lines.is_empty() {
        return Err(FileError::Empty);
    }
    let msg_id = settings.message_id.trim();
    if msg_id.is_empty() || msg_id.chars().count() > 35 {
        return Err(FileError::Settings("message_id must be 1..=35 characters".into()));
    }
    if settings.debtor_account.trim().is_empty() {
        return Err(FileError::Settings("debtor_account is empty".into()));
    }
    let setting = |what: &str, why: String| FileError::Settings(format!("{what}: {why}"));
    fits("initiating_party", &settings.initiating_party, 140).map_err(|e| setting("initiating_party", e))?;
    fits("debtor_name", &settings.debtor_name, 140).map_err(|e| setting("debtor_name", e))?;
    account_fits(&settings.debtor_account).map_err(|e| setting("debtor_account", e))?;
    let debtor_bic = match settings.debtor_agent_bic.as_deref().map(str::trim) {
        Some(b) if !b.is_empty() => {
            if !is_bic(b) {
                return Err(setting("debtor_agent_bic", format!("{b:?} is not a BIC (ISO 9362)")));
            }
            Some(b)
        }
        _ => None,
    };
    let mut by_currency: BTreeMap<String, Vec<&BankTransferLine>> = BTreeMap::new();
    for line in lines {
        positive(line)?;
        let invalid = |reason: String| FileError::Invalid {
            payout_id: line.payout_id.to_string(),
            reason,
        };
        if line.account.account_number.trim().is_empty() {
            return Err(invalid("no account number".into()));
        }
        if let Some(iban) = as_iban(&line.account.account_number) {
            if !iban_checksum_ok(&iban) {
                return Err(invalid("the IBAN's check digits are wrong".into()));
            }
        }
        fits("the beneficiary's name", line.beneficiary_name(), 140).map_err(invalid)?;
        account_fits(&line.account.account_number).map_err(invalid)?;
        agent_fits(line).map_err(invalid)?;
        by_currency
            .entry(line.amount.currency().code().to_string())
            .or_default()
            .push(line);
    }
    let all: Vec<&BankTransferLine> = lines.iter().collect();
    let total = sum_amounts(&all)?;

    let mut x = String::with_capacity(1024 + 900 * lines.len());
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<Document xmlns=\"{NAMESPACE}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">"
    );
    x.push_str("<CstmrCdtTrfInitn>\n<GrpHdr>");
    el(&mut x, "MsgId", msg_id);
    el(
        &mut x,
        "CreDtTm",
        &settings.created_at.format("%Y-%m-%dT%H:%M:%S").to_string(),
    );
    el(&mut x, "NbOfTxs", &lines.len().to_string());
    el(&mut x, "CtrlSum", &total);
    x.push_str("<InitgPty>");
    el(&mut x, "Nm", settings.initiating_party.trim());
    x.push_str("</InitgPty></GrpHdr>\n");

    for (currency, group) in &by_currency {
        let pmt_inf_id = format!("{}-{currency}", msg_id.chars().take(31).collect::<String>());
        x.push_str("<PmtInf>");
        el(&mut x, "PmtInfId", &pmt_inf_id);
        el(&mut x, "PmtMtd", "TRF");
        el(&mut x, "NbOfTxs", &group.len().to_string());
        el(&mut x, "CtrlSum", &sum_amounts(group)?);
        el(
            &mut x,
            "ReqdExctnDt",
            &settings.execution_date.format("%Y-%m-%d").to_string(),
        );
        x.push_str("<Dbtr>");
        el(&mut x, "Nm", settings.debtor_name.trim());
        x.push_str("</Dbtr><DbtrAcct>");
        account_id(&mut x, &settings.debtor_account);
        x.push_str("</DbtrAcct><DbtrAgt><FinInstnId>");
        match debtor_bic {
            Some(bic) => el(&mut x, "BIC", bic),
            None => x.push_str("<Othr><Id>NOTPROVIDED</Id></Othr>"),
        }
        x.push_str("</FinInstnId></DbtrAgt>\n");
        for line in group {
            x.push_str("<CdtTrfTxInf><PmtId>");
            el(&mut x, "EndToEndId", &end_to_end_id(&line.reference));
            x.push_str("</PmtId><Amt>");
            let _ = write!(
                x,
                "<InstdAmt Ccy=\"{}\">{}</InstdAmt>",
                escape(line.amount.currency().code()),
                escape(&line.amount.amount_str())
            );
            x.push_str("</Amt>");
            creditor_agent(&mut x, line);
            x.push_str("<Cdtr>");
            el(&mut x, "Nm", line.beneficiary_name().trim());
            x.push_str("</Cdtr><CdtrAcct>");
            account_id(&mut x, &line.account.account_number);
            x.push_str("</CdtrAcct><RmtInf>");
            let ustrd = if line.remittance.trim().is_empty() {
                line.reference.clone()
            } else {
                format!("{} {}", line.reference, line.remittance.trim())
            };
            el(&mut x, "Ustrd", &cut(&ustrd, 140));
            x.push_str("</RmtInf></CdtTrfTxInf>\n");
        }
        x.push_str("</PmtInf>\n");
    }
    x.push_str("</CstmrCdtTrfInitn>\n</Document>\n");
    Ok(x)
}

/// The line's bank code and branch code, trimmed, when given.
fn agent_codes(line: &BankTransferLine) -> (Option<&str>, Option<&str>) {
    fn given(c: &Option<String>) -> Option<&str> {
        c.as_deref().map(str::trim).filter(|c| !c.is_empty())
    }
    (given(&line.account.bank_code), given(&line.account.branch_code))
}

/// Refuses a creditor agent the schema cannot carry as given: a code shaped like a BIC (eight or
/// eleven letters and digits, the first six letters) that is not one, or a code or branch over 35.
fn agent_fits(line: &BankTransferLine) -> Result<(), String> {
    let (code, branch) = agent_codes(line);
    if let Some(code) = code {
        let b = code.as_bytes();
        let bic_shaped = (b.len() == 8 || b.len() == 11)
            && b[..6].iter().all(u8::is_ascii_alphabetic)
            && b.iter().all(u8::is_ascii_alphanumeric);
        if bic_shaped && !is_bic(code) {
            return Err(format!("bank code {code:?} is not a BIC (ISO 9362)"));
        }
        fits("the bank code", code, 35)?;
    }
    if let Some(branch) = branch {
        fits("the branch code", branch, 35)?;
    }
    Ok(())
}

/// Refuses `text` longer than `max` characters: never cut.
fn fits(what: &str, text: &str, max: usize) -> Result<(), String> {
    let n = text.trim().chars().count();
    if n > max {
        Err(format!(
            "{what} has {n} characters; pain.001 takes at most {max} (never cut)"
        ))
    } else {
        Ok(())
    }
}

/// Refuses an account id that is not an IBAN and over 34 characters (`Othr/Id`).
fn account_fits(account: &str) -> Result<(), String> {
    if as_iban(account).is_some() {
        return Ok(());
    }
    fits("the account id", account, 34)
}

fn creditor_agent(x: &mut String, line: &BankTransferLine) {
    let (code, branch) = agent_codes(line);
    let Some(code) = code else { return };
    x.push_str("<CdtrAgt><FinInstnId>");
    if is_bic(code) {
        el(x, "BIC", code);
    } else {
        x.push_str("<Othr>");
        el(x, "Id", code);
        x.push_str("</Othr>");
    }
    x.push_str("</FinInstnId>");
    if let Some(b) = branch {
        x.push_str("<BrnchId>");
        el(x, "Id", b);
        x.push_str("</BrnchId>");
    }
    x.push_str("</CdtrAgt>");
}

fn account_id(x: &mut String, account: &str) {
    x.push_str("<Id>");
    match as_iban(account) {
        Some(iban) => el(x, "IBAN", &iban),
        None => {
            x.push_str("<Othr>");
            el(x, "Id", account.trim());
            x.push_str("</Othr>");
        }
    }
    x.push_str("</Id>");
}

/// `<name>escaped text</name>`
fn el(x: &mut String, name: &str, text: &str) {
    let _ = write!(x, "<{name}>{}</{name}>", escape(text));
}

/// XML text: the five predefined entities escaped, characters XML 1.0 forbids replaced by spaces.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn cut(text: &str, max: usize) -> String {
    text.trim().chars().take(max).collect()
}

/// The account as an IBAN (spaces removed, uppercase) when it has an IBAN's shape.
fn as_iban(account: &str) -> Option<String> {
    let compact: String = account
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let b = compact.as_bytes();
    let shaped = (15..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric);
    shaped.then_some(compact)
}

/// ISO 13616 mod-97 check.
fn iban_checksum_ok(iban: &str) -> bool {
    let rearranged = iban.chars().skip(4).chain(iban.chars().take(4));
    let mut rem: u32 = 0;
    for c in rearranged {
        let v = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A BIC as ISO 9362 and the pain.001.001.03 XSD define it: `[A-Z]{6}[A-Z2-9][A-NP-Z0-9]([A-Z0-9]{3})?`
/// (4 letters for the bank, 2 for the country, a location whose first character is not 0 or 1 and
/// whose second is not the letter O, and an optional 3-character branch).
fn is_bic(code: &str) -> bool {
    let b = code.as_bytes();
    let upper_or_digit = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
    (b.len() == 8 || b.len() == 11)
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && (b[6].is_ascii_uppercase() || (b'2'..=b'9').contains(&b[6]))
        && upper_or_digit(&b[7])
        && b[7] != b'O'
        && b[8..].iter().all(upper_or_digit)
}

/// The sum of the lines' amounts as exact decimal text at the largest exponent among them,
/// whatever their currencies (ISO 20022's `CtrlSum` is a plain sum of the amounts).
fn sum_amounts(lines: &[&BankTransferLine]) -> Result<String, FileError> {
    let mut total = Decimal::ZERO;
    for l in lines {
        total = total.checked_add(l.amount.amount()).ok_or_else(|| FileError::Invalid {
            payout_id: l.payout_id.to_string(),
            reason: "the control sum overflows".into(),
        })?;
    }
    let scale = lines.iter().map(|l| l.amount.currency().exponent()).max().unwrap_or(0);
    let mut total = total.normalize();
    if total.scale() < scale {
        total.rescale(scale);
    }
    Ok(total.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ibans_and_bics_are_recognised() {
        assert_eq!(
            as_iban("DE89 3704 0044 0532 0130 00").as_deref(),
            Some("DE89370400440532013000")
        );
        assert!(iban_checksum_ok("DE89370400440532013000"));
        assert!(!iban_checksum_ok("DE88370400440532013000"));
        assert!(as_iban("0123456789").is_none());
        assert!(is_bic("DEUTDEFF") && is_bic("DEUTDEFF500") && !is_bic("01") && !is_bic("deutdeff"));
        // The XSD's pattern: the location's first character is not 0 or 1, its second not O.
        assert!(is_bic("KCBLKENX") && is_bic("BARCKENX") && is_bic("DEUTDE2H"));
        for bad in [
            "DEUTDE0F",
            "DEUTDE1F",
            "DEUTDEFO",
            "DEUTDEFF50",
            "DEUTDEFF5000",
            "DEU1DEFF",
            "DEUTDEFF50a",
        ] {
            assert!(!is_bic(bad), "{bad}");
        }
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            escape("A&B <x> \"q\" 'a'\u{1}"),
            "A&amp;B &lt;x&gt; &quot;q&quot; &apos;a&apos; "
        );
    }
}
