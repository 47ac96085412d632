//! The original system's CSV.

use payout_core::csv::{EXPORT_HEADER, push_record};

use super::{BankTransferLine, FileError, positive};

/// The original system's CSV (`id,doctorId,doctor_name,doctor_email,amount,currency,bankDetails,status`,
/// CRLF line ends), the same columns as the engine's export: `bankDetails` is the account as JSON,
/// `amount` exact decimal text. Cells that a spreadsheet would read as a formula are neutralized.
pub fn csv(lines: &[BankTransferLine]) -> Result<String, FileError> {
    if lines.is_empty() {
        return Err(FileError::Empty);
    }
    let mut out = String::with_capacity(128 * (lines.len() + 1));
    push_record(&mut out, EXPORT_HEADER);
    for line in lines {
        positive(line)?;
        let bank = serde_json::to_string(&line.account).map_err(|e| FileError::Invalid {
            payout_id: line.payout_id.to_string(),
            reason: e.to_string(),
        })?;
        let amount = line.amount.amount_str();
        push_record(
            &mut out,
            [
                line.payout_id.as_str(),
                line.doctor_id.as_str(),
                line.name.as_str(),
                line.email.as_str(),
                amount.as_str(),
                line.amount.currency().code(),
                bank.as_str(),
                line.status.as_str(),
            ],
        );
    }
    Ok(out)
}
