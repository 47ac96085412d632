//! A stored bank file ([`BankFile`]) written in a format, its totals checked: what the file states
//! (read back from the text written) must be exactly what was marked.

use std::str::FromStr;

use payout_core::money::{Currency, Money};
use payout_core::service::{BankFile, BankFileTotals};

use super::config::BankFileConfig;
use super::{BankTransferLine, FileError, csv, nacha, pain001};

/// A bank file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BankFileFormat {
    /// The original system's CSV ([`csv()`](super::csv())).
    Csv,
    /// ISO 20022 `pain.001.001.03` ([`pain001()`](super::pain001())).
    Pain001,
    /// NACHA ([`nacha()`](super::nacha())).
    Nacha,
}

impl BankFileFormat {
    /// Every format.
    pub const ALL: [BankFileFormat; 3] = [BankFileFormat::Csv, BankFileFormat::Pain001, BankFileFormat::Nacha];

    /// The name a request gives it: `csv`, `pain001`, `nacha`.
    pub fn as_str(self) -> &'static str {
        match self {
            BankFileFormat::Csv => "csv",
            BankFileFormat::Pain001 => "pain001",
            BankFileFormat::Nacha => "nacha",
        }
    }

    /// Its name for people: `CSV`, `pain.001`, `NACHA`.
    pub fn name(self) -> &'static str {
        match self {
            BankFileFormat::Csv => "CSV",
            BankFileFormat::Pain001 => "pain.001",
            BankFileFormat::Nacha => "NACHA",
        }
    }

    /// The file's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            BankFileFormat::Csv => "text/csv; charset=utf-8",
            BankFileFormat::Pain001 => "application/xml; charset=utf-8",
            BankFileFormat::Nacha => "text/plain; charset=us-ascii",
        }
    }

    /// The file name's extension: `csv`, `xml`, `ach`.
    pub fn extension(self) -> &'static str {
        match self {
            BankFileFormat::Csv => "csv",
            BankFileFormat::Pain001 => "xml",
            BankFileFormat::Nacha => "ach",
        }
    }
}

impl std::fmt::Display for BankFileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bank file format {0:?} (expected csv, pain001 or nacha)")]
pub struct UnknownFormat(pub String);

impl FromStr for BankFileFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BankFileFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.chars().take(32).collect()))
    }
}

impl BankFileConfig {
    /// `file` written in `format`, with its totals checked: the count and the exact sum per
    /// currency the written file states (read back from its text: its data rows or entries, and
    /// its own control records where it has them) must equal those of `file`'s members, or the
    /// file is refused ([`FileError::TotalsDisagree`]), never handed out.
    ///
    /// Deterministic: the same stored file, written again, gives the same text (as long as the
    /// doctors' names in the directory are the same).
    pub fn write(&self, format: BankFileFormat, file: &BankFile) -> Result<String, FileError> {
        let lines = file
            .members
            .iter()
            .map(BankTransferLine::from_instruction)
            .collect::<Result<Vec<_>, _>>()?;
        let text = match format {
            BankFileFormat::Csv => csv(&lines)?,
            BankFileFormat::Pain001 => pain001(&lines, &self.pain001_settings(file)?)?,
            BankFileFormat::Nacha => nacha(&lines, &self.nacha_settings(file)?)?,
        };
        let marked = file.totals().map_err(|e| FileError::Settings(e.to_string()))?;
        let stated = stated_totals(format, &text)?;
        if stated != marked {
            return Err(FileError::TotalsDisagree {
                stated: describe(&stated),
                marked: describe(&marked),
            });
        }
        Ok(text)
    }
}

/// `3 transfers, 1525.50 USD` (for an error message).
fn describe(t: &BankFileTotals) -> String {
    let sums: Vec<String> = t.sums.iter().map(Money::to_string).collect();
    format!("{} transfers, {}", t.count, sums.join(" + "))
}

/// What a file written in `format` states it pays, read back from its text, and checked against
/// its own control records (NACHA's file control, pain.001's group and payment headers).
pub fn stated_totals(format: BankFileFormat, text: &str) -> Result<BankFileTotals, FileError> {
    let amounts = match format {
        BankFileFormat::Csv => csv_amounts(text)?,
        BankFileFormat::Pain001 => pain001_amounts(text)?,
        BankFileFormat::Nacha => nacha_amounts(text)?,
    };
    BankFileTotals::of(&amounts).map_err(|e| unreadable(e.to_string()))
}

fn unreadable(why: impl Into<String>) -> FileError {
    FileError::TotalsDisagree {
        stated: format!("an unreadable file: {}", why.into()),
        marked: "the file's members".into(),
    }
}

fn money(amount: &str, currency: &str) -> Result<Money, FileError> {
    let currency = Currency::from_code(currency).map_err(|e| unreadable(e.to_string()))?;
    Money::parse(amount, currency).map_err(|e| unreadable(e.to_string()))
}

/// The CSV's data rows: each row's `amount` in its `currency`.
fn csv_amounts(text: &str) -> Result<Vec<Money>, FileError> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| unreadable(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| unreadable(format!("no {name} column")))
    };
    let (amount, currency) = (column("amount")?, column("currency")?);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| unreadable(e.to_string()))?;
        let cell = |i: usize| record.get(i).ok_or_else(|| unreadable("a short row"));
        out.push(money(cell(amount)?, cell(currency)?)?);
    }
    Ok(out)
}

/// Every `<InstdAmt Ccy="…">…</InstdAmt>`, checked against the group header's `NbOfTxs` and
/// `CtrlSum` and each `PmtInf`'s.
fn pain001_amounts(text: &str) -> Result<Vec<Money>, FileError> {
    fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{name}>"))? + start;
        Some(&text[start..end])
    }
    fn amounts(text: &str) -> Result<Vec<Money>, FileError> {
        let mut out = Vec::new();
        for piece in text.split("<InstdAmt Ccy=\"").skip(1) {
            let (currency, rest) = piece.split_once("\">").ok_or_else(|| unreadable("an InstdAmt"))?;
            let (amount, _) = rest
                .split_once("</InstdAmt>")
                .ok_or_else(|| unreadable("an InstdAmt"))?;
            out.push(money(amount, currency)?);
        }
        Ok(out)
    }
    /// `NbOfTxs` and `CtrlSum` of `header` against `amounts` (a plain sum, as ISO 20022 adds them).
    fn check(header: &str, amounts: &[Money], what: &str) -> Result<(), FileError> {
        let count = element(header, "NbOfTxs").ok_or_else(|| unreadable(format!("no NbOfTxs in {what}")))?;
        let sum = element(header, "CtrlSum").ok_or_else(|| unreadable(format!("no CtrlSum in {what}")))?;
        let sum: rust_decimal::Decimal = sum
            .parse()
            .map_err(|_| unreadable(format!("{what}'s CtrlSum {sum:?}")))?;
        let plain = amounts
            .iter()
            .try_fold(rust_decimal::Decimal::ZERO, |t, m| t.checked_add(m.amount()))
            .ok_or_else(|| unreadable("the sum overflows"))?;
        if count != amounts.len().to_string() || sum != plain {
            return Err(unreadable(format!(
                "{what} states {count} transfers of {sum}, its transfers are {} of {plain}",
                amounts.len()
            )));
        }
        Ok(())
    }
    let all = amounts(text)?;
    let group = element(text, "GrpHdr").ok_or_else(|| unreadable("no GrpHdr"))?;
    check(group, &all, "the group header")?;
    for (n, info) in text.split("<PmtInf>").skip(1).enumerate() {
        let info = info.split("</PmtInf>").next().unwrap_or_default();
        let header = info.split("<CdtTrfTxInf>").next().unwrap_or_default();
        check(header, &amounts(info)?, &format!("payment information {}", n + 1))?;
    }
    Ok(all)
}

/// The `6` entries' amounts (cents, USD), checked against the `9` file control record's entry and
/// addenda count and total credit.
fn nacha_amounts(text: &str) -> Result<Vec<Money>, FileError> {
    let records: Vec<&str> = text.lines().collect();
    let field = |r: &str, from: usize, to: usize| -> Result<u64, FileError> {
        r.get(from..to)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| unreadable(format!("record {r:.20}… positions {}-{to}", from + 1)))
    };
    let mut out = Vec::new();
    let mut cents_total: u64 = 0;
    let mut entries_and_addenda: u64 = 0;
    for r in &records {
        match r.as_bytes().first() {
            Some(b'6') => {
                let cents = field(r, 29, 39)?;
                cents_total += cents;
                entries_and_addenda += 1;
                let cents = i64::try_from(cents).map_err(|_| unreadable("an amount"))?;
                out.push(Money::from_minor_units(cents, Currency::USD));
            }
            Some(b'7') => entries_and_addenda += 1,
            _ => {}
        }
    }
    let control = records
        .iter()
        .find(|r| r.starts_with('9') && !r.bytes().all(|b| b == b'9'))
        .ok_or_else(|| unreadable("no file control record"))?;
    let (count, credit) = (field(control, 13, 21)?, field(control, 43, 55)?);
    if count != entries_and_addenda || credit != cents_total {
        return Err(unreadable(format!(
            "the file control states {count} entries and addenda and {credit} cents of credit; the file holds \
             {entries_and_addenda} and {cents_total}"
        )));
    }
    Ok(out)
}
