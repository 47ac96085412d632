//! Who pays in a bank file, from configuration: the pain.001 debtor and the NACHA originator.

use chrono::Days;

use super::nacha::{AccountType, NachaSettings, SecCode};
use super::pain001::Pain001Settings;
use super::{BankFileFormat, FileError};
use crate::common::{ConfigError, var};
use payout_core::domain::mask;
use payout_core::service::BankFile;

/// The payer of pain.001 files (`PmtInf/Dbtr`, `DbtrAcct`, `DbtrAgt`, `GrpHdr/InitgPty`).
#[derive(Clone, PartialEq, Eq)]
pub struct Pain001Origin {
    /// `GrpHdr/InitgPty/Nm` (`PAYOUTS_INITIATING_PARTY`; default: the debtor's name).
    pub initiating_party: String,
    /// `Dbtr/Nm` (`PAYOUTS_DEBTOR_NAME`, required).
    pub debtor_name: String,
    /// `DbtrAcct/Id`: an IBAN, or another account id (`PAYOUTS_DEBTOR_ACCOUNT`, required).
    pub debtor_account: String,
    /// `DbtrAgt/FinInstnId/BIC` (`PAYOUTS_DEBTOR_BIC`; optional).
    pub debtor_agent_bic: Option<String>,
}

impl std::fmt::Debug for Pain001Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pain001Origin")
            .field("debtor_name", &self.debtor_name)
            .field("debtor_account", &mask(&self.debtor_account))
            .field("debtor_agent_bic", &self.debtor_agent_bic)
            .finish_non_exhaustive()
    }
}

/// The originator of NACHA files (everything of [`NachaSettings`] that does not change per file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NachaOrigin {
    /// The receiving bank's 9-digit routing number (`PAYOUTS_NACHA_DESTINATION`, required).
    pub immediate_destination: String,
    /// Its name (`PAYOUTS_NACHA_DESTINATION_NAME`; default empty).
    pub immediate_destination_name: String,
    /// Routing number or id agreed with the bank (`PAYOUTS_NACHA_ORIGIN`, required).
    pub immediate_origin: String,
    /// Its name (`PAYOUTS_NACHA_ORIGIN_NAME`; default: the company name).
    pub immediate_origin_name: String,
    /// Company name (`PAYOUTS_NACHA_COMPANY_NAME`, required).
    pub company_name: String,
    /// Company identification (`PAYOUTS_NACHA_COMPANY_ID`, required).
    pub company_id: String,
    /// Entry description shown to the receiver (`PAYOUTS_NACHA_ENTRY_DESCRIPTION`; default `PAYOUTS`).
    pub entry_description: String,
    /// The originating bank's 8-digit routing prefix (`PAYOUTS_NACHA_ORIGINATING_DFI`, required).
    pub originating_dfi: String,
    /// `PPD` or `CCD` (`PAYOUTS_NACHA_SEC_CODE`; default `PPD`).
    pub sec_code: SecCode,
    /// `checking` or `savings` (`PAYOUTS_NACHA_ACCOUNT_TYPE`; default `checking`).
    pub account_type: AccountType,
    /// One addenda record per entry with the full reference (`PAYOUTS_NACHA_ADDENDA`, `true` or
    /// `false`; default `true`).
    pub addenda: bool,
}

/// What the bank files need besides their lines, for each format: the CSV needs nothing, pain.001
/// its debtor ([`Pain001Origin`]) and NACHA its originator ([`NachaOrigin`]). `Debug` masks the
/// debtor's account.
///
/// | variable | for | default |
/// |---|---|---|
/// | `PAYOUTS_DEBTOR_NAME`, `PAYOUTS_DEBTOR_ACCOUNT` | pain.001 (both, or neither) | — (pain.001 not configured) |
/// | `PAYOUTS_DEBTOR_BIC`, `PAYOUTS_INITIATING_PARTY` | pain.001 | none; the debtor's name |
/// | `PAYOUTS_NACHA_DESTINATION`, `PAYOUTS_NACHA_ORIGIN`, `PAYOUTS_NACHA_COMPANY_NAME`, `PAYOUTS_NACHA_COMPANY_ID`, `PAYOUTS_NACHA_ORIGINATING_DFI` | NACHA (all, or none) | — (NACHA not configured) |
/// | `PAYOUTS_NACHA_DESTINATION_NAME`, `PAYOUTS_NACHA_ORIGIN_NAME`, `PAYOUTS_NACHA_ENTRY_DESCRIPTION` | NACHA | empty; the company name; `PAYOUTS` |
/// | `PAYOUTS_NACHA_SEC_CODE`, `PAYOUTS_NACHA_ACCOUNT_TYPE`, `PAYOUTS_NACHA_ADDENDA` | NACHA | `PPD`; `checking`; `true` |
/// | `PAYOUTS_BANK_FILE_EXECUTION_DAYS` | pain.001 `ReqdExctnDt`, NACHA effective date: days after the file is made | 1 |
///
/// The names are those `payouts export` reads, so one setting serves the command and the server.
/// Per file: pain.001's `MsgId` is the file's id, the creation time is when the file was made (so
/// a file read again is written the same), and NACHA's file id modifier is derived from the file's
/// id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankFileConfig {
    /// The pain.001 debtor, if configured.
    pub pain001: Option<Pain001Origin>,
    /// The NACHA originator, if configured.
    pub nacha: Option<NachaOrigin>,
    /// Days from the file's making to its requested execution (effective) date.
    pub execution_days: u32,
}

impl Default for BankFileConfig {
    /// CSV only: neither pain.001 nor NACHA configured; execution one day after the file is made.
    fn default() -> Self {
        BankFileConfig {
            pain001: None,
            nacha: None,
            execution_days: 1,
        }
    }
}

const PAIN001_REQUIRED: [&str; 2] = ["PAYOUTS_DEBTOR_NAME", "PAYOUTS_DEBTOR_ACCOUNT"];
const NACHA_REQUIRED: [&str; 5] = [
    "PAYOUTS_NACHA_DESTINATION",
    "PAYOUTS_NACHA_ORIGIN",
    "PAYOUTS_NACHA_COMPANY_NAME",
    "PAYOUTS_NACHA_COMPANY_ID",
    "PAYOUTS_NACHA_ORIGINATING_DFI",
];

impl BankFileConfig {
    /// Reads the variables in the table above from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`. A format none of
    /// whose required variables is set is not configured (asking for its file is then a clear
    /// [`FileError::NotConfigured`]); one with only some of them set, or a value that cannot be
    /// read, is an error here.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(&lookup, name);
        let required = |names: &[&'static str]| -> Result<Option<Vec<String>>, ConfigError> {
            let values: Vec<Option<String>> = names.iter().map(|n| get(n)).collect();
            if values.iter().all(Option::is_none) {
                return Ok(None);
            }
            names
                .iter()
                .zip(values)
                .map(|(name, v)| v.ok_or(ConfigError::Missing(name)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let pain001 = required(&PAIN001_REQUIRED)?.map(|v| {
            let [debtor_name, debtor_account] = <[String; 2]>::try_from(v).unwrap_or_default();
            Pain001Origin {
                initiating_party: get("PAYOUTS_INITIATING_PARTY").unwrap_or_else(|| debtor_name.clone()),
                debtor_name,
                debtor_account,
                debtor_agent_bic: get("PAYOUTS_DEBTOR_BIC"),
            }
        });
        let nacha = match required(&NACHA_REQUIRED)? {
            None => None,
            Some(v) => {
                let [destination, origin, company_name, company_id, odfi] =
                    <[String; 5]>::try_from(v).unwrap_or_default();
                Some(NachaOrigin {
                    immediate_destination: destination,
                    immediate_destination_name: get("PAYOUTS_NACHA_DESTINATION_NAME").unwrap_or_default(),
                    immediate_origin: origin,
                    immediate_origin_name: get("PAYOUTS_NACHA_ORIGIN_NAME").unwrap_or_else(|| company_name.clone()),
                    company_name,
                    company_id,
                    entry_description: get("PAYOUTS_NACHA_ENTRY_DESCRIPTION").unwrap_or_else(|| "PAYOUTS".into()),
                    originating_dfi: odfi,
                    sec_code: match get("PAYOUTS_NACHA_SEC_CODE")
                        .as_deref()
                        .map(str::to_ascii_uppercase)
                        .as_deref()
                    {
                        None | Some("PPD") => SecCode::Ppd,
                        Some("CCD") => SecCode::Ccd,
                        Some(other) => {
                            return Err(invalid(
                                "PAYOUTS_NACHA_SEC_CODE",
                                format!("{other:?} is not PPD or CCD"),
                            ));
                        }
                    },
                    account_type: match get("PAYOUTS_NACHA_ACCOUNT_TYPE")
                        .as_deref()
                        .map(str::to_ascii_lowercase)
                        .as_deref()
                    {
                        None | Some("checking") => AccountType::Checking,
                        Some("savings") => AccountType::Savings,
                        Some(other) => {
                            return Err(invalid(
                                "PAYOUTS_NACHA_ACCOUNT_TYPE",
                                format!("{other:?} is not checking or savings"),
                            ));
                        }
                    },
                    addenda: match get("PAYOUTS_NACHA_ADDENDA").as_deref() {
                        None | Some("true") => true,
                        Some("false") => false,
                        Some(other) => {
                            return Err(invalid(
                                "PAYOUTS_NACHA_ADDENDA",
                                format!("{other:?} is not true or false"),
                            ));
                        }
                    },
                })
            }
        };
        let execution_days = match get("PAYOUTS_BANK_FILE_EXECUTION_DAYS") {
            None => 1,
            Some(v) => v.parse::<u32>().ok().filter(|d| *d <= 60).ok_or_else(|| {
                invalid(
                    "PAYOUTS_BANK_FILE_EXECUTION_DAYS",
                    format!("{v:?} is not a whole number of days from 0 to 60"),
                )
            })?,
        };
        Ok(BankFileConfig {
            pain001,
            nacha,
            execution_days,
        })
    }

    /// The formats this configuration can write: CSV always, pain.001 and NACHA when configured.
    pub fn formats(&self) -> Vec<BankFileFormat> {
        let mut out = vec![BankFileFormat::Csv];
        if self.pain001.is_some() {
            out.push(BankFileFormat::Pain001);
        }
        if self.nacha.is_some() {
            out.push(BankFileFormat::Nacha);
        }
        out
    }

    /// Refuses a format that is not configured, naming the variables it needs.
    pub fn require(&self, format: BankFileFormat) -> Result<(), FileError> {
        let missing = match format {
            BankFileFormat::Csv => return Ok(()),
            BankFileFormat::Pain001 if self.pain001.is_some() => return Ok(()),
            BankFileFormat::Nacha if self.nacha.is_some() => return Ok(()),
            BankFileFormat::Pain001 => PAIN001_REQUIRED.join(", "),
            BankFileFormat::Nacha => NACHA_REQUIRED.join(", "),
        };
        Err(FileError::NotConfigured(format!(
            "{} files need {missing} (see the bank module's documentation)",
            format.name()
        )))
    }

    /// The pain.001 settings of `file`.
    pub(super) fn pain001_settings(&self, file: &BankFile) -> Result<Pain001Settings, FileError> {
        self.require(BankFileFormat::Pain001)?;
        let origin = self
            .pain001
            .as_ref()
            .ok_or_else(|| FileError::NotConfigured("pain.001".into()))?;
        Ok(Pain001Settings {
            message_id: file.id.to_string(),
            created_at: file.created_at,
            execution_date: self.execution_date(file)?,
            initiating_party: origin.initiating_party.clone(),
            debtor_name: origin.debtor_name.clone(),
            debtor_account: origin.debtor_account.clone(),
            debtor_agent_bic: origin.debtor_agent_bic.clone(),
        })
    }

    /// The NACHA settings of `file`.
    pub(super) fn nacha_settings(&self, file: &BankFile) -> Result<NachaSettings, FileError> {
        self.require(BankFileFormat::Nacha)?;
        let o = self
            .nacha
            .as_ref()
            .ok_or_else(|| FileError::NotConfigured("NACHA".into()))?;
        Ok(NachaSettings {
            immediate_destination: o.immediate_destination.clone(),
            immediate_destination_name: o.immediate_destination_name.clone(),
            immediate_origin: o.immediate_origin.clone(),
            immediate_origin_name: o.immediate_origin_name.clone(),
            company_name: o.company_name.clone(),
            company_id: o.company_id.clone(),
            entry_description: o.entry_description.clone(),
            originating_dfi: o.originating_dfi.clone(),
            effective_date: self.execution_date(file)?,
            created_at: file.created_at,
            file_id_modifier: file_id_modifier(file.id.as_str()),
            sec_code: o.sec_code,
            account_type: o.account_type,
            addenda: o.addenda,
        })
    }

    fn execution_date(&self, file: &BankFile) -> Result<chrono::NaiveDate, FileError> {
        file.created_at
            .date_naive()
            .checked_add_days(Days::new(u64::from(self.execution_days)))
            .ok_or_else(|| FileError::Settings("the execution date is out of range".into()))
    }
}

/// NACHA's file id modifier (`A`-`Z`, `0`-`9`) of a file: from its id, so the file read again is
/// written the same. Two files of one day share a modifier one time in 36; their creation times
/// (to the minute) in the header still tell them apart.
fn file_id_modifier(file_id: &str) -> char {
    const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = file_id
        .bytes()
        .fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)));
    char::from(ALPHABET[(n % 36) as usize])
}

fn invalid(name: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { name, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn nothing_set_is_csv_only_and_the_missing_variables_are_named() {
        let c = BankFileConfig::from_vars(|_| None).unwrap();
        assert_eq!(c, BankFileConfig::default());
        assert_eq!(c.formats(), vec![BankFileFormat::Csv]);
        let e = c.require(BankFileFormat::Nacha).unwrap_err().to_string();
        assert!(e.contains("PAYOUTS_NACHA_ORIGINATING_DFI"), "{e}");
        let e = c.require(BankFileFormat::Pain001).unwrap_err().to_string();
        assert!(e.contains("PAYOUTS_DEBTOR_ACCOUNT"), "{e}");
    }

    #[test]
    fn a_format_half_configured_is_an_error_that_names_what_is_missing() {
        let e = BankFileConfig::from_vars(vars(&[("PAYOUTS_DEBTOR_NAME", "Clinic Ltd")])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("PAYOUTS_DEBTOR_ACCOUNT"));
        let e = BankFileConfig::from_vars(vars(&[("PAYOUTS_NACHA_DESTINATION", "021000021")])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("PAYOUTS_NACHA_ORIGIN"));
        let e = BankFileConfig::from_vars(vars(&[("PAYOUTS_BANK_FILE_EXECUTION_DAYS", "soon")])).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    name: "PAYOUTS_BANK_FILE_EXECUTION_DAYS",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn every_setting_is_read_and_the_debtor_account_is_masked() {
        let c = BankFileConfig::from_vars(vars(&[
            ("PAYOUTS_DEBTOR_NAME", "Clinic Ltd"),
            ("PAYOUTS_DEBTOR_ACCOUNT", "DE89370400440532013000"),
            ("PAYOUTS_DEBTOR_BIC", "DEUTDEFF"),
            ("PAYOUTS_NACHA_DESTINATION", "021000021"),
            ("PAYOUTS_NACHA_ORIGIN", "1234567890"),
            ("PAYOUTS_NACHA_COMPANY_NAME", "CLINIC"),
            ("PAYOUTS_NACHA_COMPANY_ID", "1234567890"),
            ("PAYOUTS_NACHA_ORIGINATING_DFI", "02100002"),
            ("PAYOUTS_NACHA_SEC_CODE", "ccd"),
            ("PAYOUTS_NACHA_ACCOUNT_TYPE", "savings"),
            ("PAYOUTS_NACHA_ADDENDA", "false"),
            ("PAYOUTS_BANK_FILE_EXECUTION_DAYS", "0"),
        ]))
        .unwrap();
        assert_eq!(
            c.formats(),
            vec![BankFileFormat::Csv, BankFileFormat::Pain001, BankFileFormat::Nacha]
        );
        let p = c.pain001.as_ref().unwrap();
        assert_eq!(p.initiating_party, "Clinic Ltd");
        assert_eq!(p.debtor_agent_bic.as_deref(), Some("DEUTDEFF"));
        let n = c.nacha.as_ref().unwrap();
        assert_eq!(
            (n.sec_code, n.account_type, n.addenda, n.immediate_origin_name.as_str()),
            (SecCode::Ccd, AccountType::Savings, false, "CLINIC")
        );
        assert_eq!(c.execution_days, 0);
        let debug = format!("{c:?}");
        assert!(!debug.contains("0532013000"), "{debug}");
    }

    #[test]
    fn the_modifier_is_a_nacha_character_and_stable() {
        for id in ["bf-0", "bf-1", "bf-abc"] {
            let m = file_id_modifier(id);
            assert!(m.is_ascii_uppercase() || m.is_ascii_digit());
            assert_eq!(m, file_id_modifier(id));
        }
    }
}
