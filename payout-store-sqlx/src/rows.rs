//! Rows to domain records and back: the one place that knows how each record is laid out in SQL.

use payout_core::Result;
use payout_core::domain::{AttemptOutcome, AuditEntry, ItemKind, Payout, PayoutAttempt, PayoutItem, Period, Provider};
use payout_core::money::{Currency, Money};
use payout_core::status::PayoutStatus;
use payout_core::store::{CarryOver, ExportRow};
use serde::de::DeserializeOwned;

use crate::db::RowExt;
use crate::error::{corrupt, db};

/// The columns a payout is created with (an insert binds their values in this order); the columns
/// an approval or an operator sets later are NULL until then.
macro_rules! created_payout_columns {
    () => {
        "id, doctor_id, period_start, period_end, amount_minor, currency, status, provider, provider_reference, \
         notes, origin, created_by, approved_by, processed_at, created_at, updated_at, version"
    };
}

/// The columns of `payouts` a new payout is inserted with, in the order `payout_values` binds them.
pub(crate) const PAYOUT_COLUMNS: &str = created_payout_columns!();

/// Every column of `payouts` that [`payout`] reads: the created ones, then the approval's and the
/// operator's (migration `20261205000300_operator`), then the hold (`20261207000200_holds`).
pub(crate) const PAYOUT_READ_COLUMNS: &str = concat!(created_payout_columns!(), ", approval, resolution, hold");

/// The columns of an export row, in the order [`ExportRowExt::export_row`] reads them (by
/// position); `created_at` is last, read only where a keyset chunk ends.
pub(crate) const EXPORT_COLUMNS: &str = "id, doctor_id, amount_minor, currency, status, created_at";

pub(crate) const ITEM_COLUMNS: &str = "kind, reference, amount_minor, currency, occurred_at, description";

pub(crate) const ATTEMPT_COLUMNS: &str = "payout_id, attempt_no, provider, idempotency_key, request_summary, outcome, \
     outcome_reason, provider_reference, error, created_at, updated_at, destination, batch_id";

pub(crate) const AUDIT_COLUMNS: &str = "payout_id, actor, at, action, from_status, to_status, detail";

pub(crate) const CARRY_OVER_COLUMNS: &str =
    "doctor_id, period_start, period_end, amount_minor, currency, note, created_at, consumed_by";

/// The condition, on a `carry_overs` row, of an open carry-over: never consumed, or consumed by a
/// payout that has been cancelled since (its earnings are owed again). Every statement that reads
/// or consumes open carry-overs uses this one text, so they can never disagree.
pub(crate) const CARRY_OVER_IS_OPEN: &str = "(carry_overs.consumed_by IS NULL OR EXISTS (\
     SELECT 1 FROM payouts WHERE payouts.id = carry_overs.consumed_by AND payouts.status = 'CANCELLED'))";

pub(crate) fn payout(r: &impl RowExt) -> Result<Payout> {
    let currency = currency(&r.text("currency").map_err(db)?)?;
    Ok(Payout {
        id: r.text("id").map_err(db)?.into(),
        doctor_id: r.text("doctor_id").map_err(db)?.into(),
        period_start: r.date("period_start").map_err(db)?,
        period_end: r.date("period_end").map_err(db)?,
        amount_due: Money::from_minor_units(r.int("amount_minor").map_err(db)?, currency),
        status: status(&r.text("status").map_err(db)?)?,
        provider: r
            .opt_text("provider")
            .map_err(db)?
            .as_deref()
            .map(provider)
            .transpose()?,
        provider_reference: r.opt_text("provider_reference").map_err(db)?,
        notes: r.opt_text("notes").map_err(db)?,
        origin: from_name("origin", &r.text("origin").map_err(db)?)?,
        created_by: r.text("created_by").map_err(db)?,
        approved_by: r.opt_text("approved_by").map_err(db)?,
        processed_at: r.opt_ts("processed_at").map_err(db)?,
        created_at: r.ts("created_at").map_err(db)?,
        updated_at: r.ts("updated_at").map_err(db)?,
        version: r.int("version").map_err(db)?,
        approval: from_json("approval", r.opt_text("approval").map_err(db)?)?,
        resolution: from_json("resolution", r.opt_text("resolution").map_err(db)?)?,
        hold: from_json("hold", r.opt_text("hold").map_err(db)?)?,
    })
}

/// A record stored as JSON text (`None` for NULL).
pub(crate) fn from_json<T: DeserializeOwned>(what: &'static str, text: Option<String>) -> Result<Option<T>> {
    // The parse error is left out: it may quote the text, and a destination holds bank details.
    text.map(|t| serde_json::from_str(&t).map_err(|_| corrupt(what, "not the JSON of its record")))
        .transpose()
}

/// A record as the JSON text it is stored as. Serializing the records stored this way
/// (`Approval`, `Resolution`, `Hold`, `FundsOverride`, `PayoutDestination`: strings, numbers and
/// timestamps, no maps) cannot fail, so there is no error to return.
pub(crate) fn to_json<T: serde::Serialize>(value: Option<&T>) -> Option<String> {
    value.and_then(|v| serde_json::to_string(v).ok())
}

/// Reads [`EXPORT_COLUMNS`] by position (no column looked up by name), borrowing the text columns
/// from the row: an export reads every matching payout this way.
pub(crate) trait ExportRowExt: RowExt {
    /// The row as an [`ExportRow`]; `currencies` remembers the currencies seen so far.
    fn export_row(&self, currencies: &mut Currencies) -> Result<ExportRow>;
}

impl<R> ExportRowExt for R
where
    R: RowExt + sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn export_row(&self, currencies: &mut Currencies) -> Result<ExportRow> {
        let id: &str = self.try_get(0).map_err(db)?;
        let doctor_id: &str = self.try_get(1).map_err(db)?;
        let amount_minor: i64 = self.try_get(2).map_err(db)?;
        let currency = currencies.get(self.try_get(3).map_err(db)?)?;
        Ok(ExportRow {
            id: id.into(),
            doctor_id: doctor_id.into(),
            amount_due: Money::from_minor_units(amount_minor, currency),
            status: export_status(self.try_get(4).map_err(db)?)?,
        })
    }
}

/// The currencies one read has met, so each row's code is compared with a few known ones instead
/// of being looked up in the ISO 4217 table (and upper-cased into a new `String`) every time.
#[derive(Debug, Default)]
pub(crate) struct Currencies(Vec<Currency>);

impl Currencies {
    fn get(&mut self, code: &str) -> Result<Currency> {
        if let Some(c) = self.0.iter().find(|c| c.code() == code) {
            return Ok(*c);
        }
        let c = currency(code)?;
        // Only codes stored as `Currency::code` writes them are remembered; any other spelling is
        // looked up every time.
        if c.code() == code {
            self.0.push(c);
        }
        Ok(c)
    }
}

/// A status as the store writes it (its exact name, compared without allocating), or any spelling
/// [`PayoutStatus`] reads.
fn export_status(name: &str) -> Result<PayoutStatus> {
    match PayoutStatus::ALL.iter().find(|s| s.as_str() == name) {
        Some(s) => Ok(*s),
        None => status(name),
    }
}

pub(crate) fn item(r: &impl RowExt) -> Result<PayoutItem> {
    let currency = currency(&r.text("currency").map_err(db)?)?;
    Ok(PayoutItem {
        kind: from_name::<ItemKind>("item kind", &r.text("kind").map_err(db)?)?,
        reference: r.text("reference").map_err(db)?,
        amount: Money::from_minor_units(r.int("amount_minor").map_err(db)?, currency),
        occurred_at: r.ts("occurred_at").map_err(db)?,
        description: r.text("description").map_err(db)?,
    })
}

pub(crate) fn attempt(r: &impl RowExt) -> Result<PayoutAttempt> {
    let attempt_no = r.int("attempt_no").map_err(db)?;
    Ok(PayoutAttempt {
        payout_id: r.text("payout_id").map_err(db)?.into(),
        attempt_no: u32::try_from(attempt_no).map_err(|e| corrupt("attempt_no", e))?,
        provider: provider(&r.text("provider").map_err(db)?)?,
        idempotency_key: r.text("idempotency_key").map_err(db)?,
        request_summary: r.text("request_summary").map_err(db)?,
        outcome: outcome(
            &r.text("outcome").map_err(db)?,
            r.opt_text("outcome_reason").map_err(db)?,
        )?,
        provider_reference: r.opt_text("provider_reference").map_err(db)?,
        error: r.opt_text("error").map_err(db)?,
        created_at: r.ts("created_at").map_err(db)?,
        updated_at: r.ts("updated_at").map_err(db)?,
        destination: from_json("attempt destination", r.opt_text("destination").map_err(db)?)?,
        batch_id: r.opt_text("batch_id").map_err(db)?,
    })
}

pub(crate) fn audit(r: &impl RowExt) -> Result<AuditEntry> {
    Ok(AuditEntry {
        payout_id: r.text("payout_id").map_err(db)?.into(),
        actor: r.text("actor").map_err(db)?,
        at: r.ts("at").map_err(db)?,
        action: r.text("action").map_err(db)?,
        from: r
            .opt_text("from_status")
            .map_err(db)?
            .as_deref()
            .map(status)
            .transpose()?,
        to: r
            .opt_text("to_status")
            .map_err(db)?
            .as_deref()
            .map(status)
            .transpose()?,
        detail: r.text("detail").map_err(db)?,
    })
}

pub(crate) fn carry_over(r: &impl RowExt) -> Result<CarryOver> {
    let currency = currency(&r.text("currency").map_err(db)?)?;
    Ok(CarryOver {
        doctor_id: r.text("doctor_id").map_err(db)?.into(),
        period: Period {
            start: r.date("period_start").map_err(db)?,
            end: r.date("period_end").map_err(db)?,
        },
        amount: Money::from_minor_units(r.int("amount_minor").map_err(db)?, currency),
        items: Vec::new(),
        note: r.text("note").map_err(db)?,
        created_at: r.ts("created_at").map_err(db)?,
        consumed_by: r.opt_text("consumed_by").map_err(db)?.map(Into::into),
    })
}

/// An amount as integer minor units, the only way money is written.
pub(crate) fn minor_units(m: &Money) -> Result<i64> {
    Ok(m.to_minor_units()?)
}

pub(crate) fn from_name<T: DeserializeOwned>(what: &'static str, name: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| corrupt(what, name))
}

pub(crate) fn currency(code: &str) -> Result<Currency> {
    Currency::from_code(code).map_err(|e| corrupt("currency", e))
}

pub(crate) fn status(name: &str) -> Result<PayoutStatus> {
    name.parse().map_err(|e| corrupt("status", e))
}

pub(crate) fn provider(name: &str) -> Result<Provider> {
    name.parse().map_err(|e| corrupt("provider", e))
}

/// An attempt outcome as its name and, for the outcomes that carry one, its reason.
pub(crate) fn outcome_parts(outcome: &AttemptOutcome) -> (String, Option<String>) {
    let reason = match serde_json::to_value(outcome) {
        Ok(serde_json::Value::Object(map)) => map.get("reason").and_then(|r| r.as_str()).map(str::to_string),
        _ => None,
    };
    (outcome.as_str().to_string(), reason)
}

fn outcome(name: &str, reason: Option<String>) -> Result<AttemptOutcome> {
    let mut map = serde_json::Map::new();
    map.insert("state".into(), serde_json::Value::String(name.to_string()));
    if let Some(reason) = reason {
        map.insert("reason".into(), serde_json::Value::String(reason));
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| corrupt("attempt outcome", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_name_and_reason() {
        for o in [
            AttemptOutcome::Pending,
            AttemptOutcome::Accepted,
            AttemptOutcome::Succeeded,
            AttemptOutcome::Failed {
                reason: "insufficient funds".into(),
            },
            AttemptOutcome::Unknown {
                reason: "timeout".into(),
            },
        ] {
            let (name, reason) = outcome_parts(&o);
            assert_eq!(outcome(&name, reason).unwrap(), o);
        }
    }

    #[test]
    fn item_kinds_round_trip_through_their_names() {
        for k in [
            ItemKind::Consultation,
            ItemKind::CarryOver,
            ItemKind::Deduction,
            ItemKind::Adjustment,
            ItemKind::Clawback,
        ] {
            assert_eq!(from_name::<ItemKind>("kind", k.as_str()).unwrap(), k);
        }
        assert_eq!(ItemKind::CarryOver.as_str(), "CARRY_OVER");
        assert!(from_name::<ItemKind>("kind", "BONUS").is_err());
    }
}
