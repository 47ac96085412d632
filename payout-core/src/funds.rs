//! The funds check: before payouts are sent, what they need per provider and currency is compared
//! with what each provider says it holds.
//!
//! Reading a balance is an optional ability of a provider, a trait of its own ([`BalanceSource`]),
//! never a defaulted method of [`PayoutProvider`](crate::PayoutProvider): a provider that offers no
//! balance (PayPal Payouts, a bank) simply has no source, and its lines are
//! [`FundsState::Unknown`]. The comparison is a pure function ([`funds_check`]); only
//! [`PayoutService::balances`](crate::PayoutService::balances) does I/O.
//!
//! ```
//! use std::collections::HashMap;
//! use chrono::{TimeZone, Utc};
//! use payout_core::domain::Provider;
//! use payout_core::funds::{BalanceAnswer, FundsState, funds_check};
//! use payout_core::money::{Currency, Money};
//!
//! let kes = |s: &str| Money::parse(s, Currency::KES).unwrap();
//! let needs = [(Provider::MpesaB2c, kes("1500")), (Provider::MpesaB2c, kes("500.50"))];
//! let balances = HashMap::from([(
//!     Provider::MpesaB2c,
//!     BalanceAnswer::Known { available: vec![kes("2000")], as_of: Utc.timestamp_opt(0, 0).unwrap() },
//! )]);
//! let report = funds_check(&needs, &balances).unwrap();
//! assert_eq!(report.lines[0].needed, kes("2000.50"));
//! assert_eq!(report.lines[0].state, FundsState::Shortfall { short_by: kes("0.50") });
//! assert!(report.blocks());
//! ```

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Provider;
use crate::error::{Error, ProviderError, Result};
use crate::money::{Currency, Money};

/// What a provider says about the money it holds for us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum BalanceAnswer {
    /// The balance, as of a time.
    Known {
        /// What can be paid out now, at most one amount per currency (a currency not listed is
        /// held at zero).
        available: Vec<Money>,
        /// When the provider gave this answer.
        as_of: DateTime<Utc>,
    },
    /// The provider answers asynchronously (M-Pesa): a query is out and the answer has not
    /// arrived yet. Ask again later.
    Pending {
        /// When the outstanding query was sent.
        requested_at: DateTime<Utc>,
    },
    /// The balance cannot be told: the provider offers none, no source is registered, or the
    /// provider could not be asked just now.
    Unknown {
        /// Why, for a person (no secrets).
        why: String,
    },
}

/// A provider's balance, an optional ability beside [`PayoutProvider`](crate::PayoutProvider).
///
/// Object safe; the service holds sources as `Arc<dyn BalanceSource>`, registered with
/// [`PayoutServiceBuilder::balance_source`](crate::service::PayoutServiceBuilder::balance_source).
/// An adapter that is both (Stripe, M-Pesa) is registered twice, as the same `Arc`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait BalanceSource: Send + Sync {
    /// Whose balance this is.
    fn provider(&self) -> Provider;

    /// Reads the balance that payouts through this provider are paid from.
    ///
    /// # Behavior
    /// Read-only at the provider: it moves no money and changes no payout. It may send a query
    /// whose answer comes later (then it answers [`BalanceAnswer::Pending`], and a later call
    /// answers what arrived). An error is classified like a send's; the service shows it as
    /// [`BalanceAnswer::Unknown`].
    async fn balance(&self) -> std::result::Result<BalanceAnswer, ProviderError>;
}

/// Where one (provider, currency) line of a funds check stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum FundsState {
    /// The provider holds at least what is needed.
    Enough,
    /// The provider holds less than what is needed: this blocks.
    Shortfall {
        /// How much is missing (needed minus available; more than needed when the balance is
        /// below zero).
        short_by: Money,
    },
    /// The provider's answer has not arrived yet. Shown; does not block.
    Pending {
        /// When the outstanding query was sent.
        requested_at: DateTime<Utc>,
    },
    /// The balance cannot be told. Shown; does not block.
    Unknown {
        /// Why.
        why: String,
    },
}

/// One (provider, currency) line of a [`FundsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsLine {
    /// The provider.
    pub provider: Provider,
    /// The currency.
    pub currency: Currency,
    /// What the payouts need through this provider in this currency, in all.
    pub needed: Money,
    /// What the provider holds in this currency, when its balance is known (zero when the
    /// balance lists no amount in this currency).
    pub available: Option<Money>,
    /// When the balance was given, when it is known.
    pub as_of: Option<DateTime<Utc>>,
    /// Where the line stands.
    #[serde(flatten)]
    pub state: FundsState,
}

impl FundsLine {
    /// True when this line blocks ([`FundsState::Shortfall`]).
    pub fn is_shortfall(&self) -> bool {
        matches!(self.state, FundsState::Shortfall { .. })
    }
}

/// The funds check of a set of payouts: one line per (provider, currency), ordered by provider
/// then currency code.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FundsReport {
    /// The lines.
    pub lines: Vec<FundsLine>,
}

impl FundsReport {
    /// True when a line is a [`FundsState::Shortfall`]: the payouts should not be sent unless a
    /// second admin overrides. Pending and unknown lines do not block (they are shown).
    pub fn blocks(&self) -> bool {
        self.lines.iter().any(FundsLine::is_shortfall)
    }

    /// The lines that block.
    pub fn shortfalls(&self) -> impl Iterator<Item = &FundsLine> {
        self.lines.iter().filter(|l| l.is_shortfall())
    }
}

/// Compares what payouts need with what their providers hold.
///
/// `needs` may name a (provider, currency) several times (one entry per payout, say): they are
/// added up, exactly. For each (provider, currency):
/// - the provider's balance is [`Known`](BalanceAnswer::Known): [`Enough`](FundsState::Enough)
///   when the amount it lists in that currency (amounts listed twice are added; none listed is
///   zero) is at least the need, otherwise a [`Shortfall`](FundsState::Shortfall) of the
///   difference; a need of zero is always enough;
/// - [`Pending`](BalanceAnswer::Pending): [`Pending`](FundsState::Pending);
/// - [`Unknown`](BalanceAnswer::Unknown), or no answer in `balances`:
///   [`Unknown`](FundsState::Unknown).
///
/// Amounts are never converted between currencies. A negative need is an
/// [`Error::InvalidInput`]; a sum too large to hold is an [`Error::Money`].
pub fn funds_check(needs: &[(Provider, Money)], balances: &HashMap<Provider, BalanceAnswer>) -> Result<FundsReport> {
    // `Currency` orders by its code.
    let mut totals: BTreeMap<(Provider, Currency), Money> = BTreeMap::new();
    for (provider, need) in needs {
        if need.is_negative() {
            return Err(Error::InvalidInput(format!(
                "a payout through {provider} needs {need}: a need cannot be negative"
            )));
        }
        let key = (*provider, need.currency());
        let total = match totals.get(&key) {
            Some(sum) => sum.checked_add(need)?,
            None => *need,
        };
        totals.insert(key, total);
    }
    let mut lines = Vec::with_capacity(totals.len());
    for ((provider, _), needed) in totals {
        lines.push(line(provider, needed, balances.get(&provider))?);
    }
    Ok(FundsReport { lines })
}

fn line(provider: Provider, needed: Money, balance: Option<&BalanceAnswer>) -> Result<FundsLine> {
    let currency = needed.currency();
    let mut out = FundsLine {
        provider,
        currency,
        needed,
        available: None,
        as_of: None,
        state: FundsState::Enough,
    };
    out.state = match balance {
        None => FundsState::Unknown {
            why: format!("no balance source is registered for {provider}"),
        },
        Some(BalanceAnswer::Unknown { why }) => FundsState::Unknown { why: why.clone() },
        Some(BalanceAnswer::Pending { requested_at }) => FundsState::Pending {
            requested_at: *requested_at,
        },
        Some(BalanceAnswer::Known { available, as_of }) => {
            let held = Money::sum(currency, available.iter().filter(|m| m.currency() == currency))?;
            out.available = Some(held);
            out.as_of = Some(*as_of);
            if held >= needed {
                FundsState::Enough
            } else {
                FundsState::Shortfall {
                    short_by: needed.checked_sub(&held)?,
                }
            }
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn m(s: &str, c: Currency) -> Money {
        Money::parse(s, c).unwrap()
    }
    fn kes(s: &str) -> Money {
        m(s, Currency::KES)
    }
    fn usd(s: &str) -> Money {
        m(s, Currency::USD)
    }
    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }
    fn known(available: Vec<Money>) -> BalanceAnswer {
        BalanceAnswer::Known {
            available,
            as_of: at(1_000),
        }
    }
    fn balances(pairs: Vec<(Provider, BalanceAnswer)>) -> HashMap<Provider, BalanceAnswer> {
        pairs.into_iter().collect()
    }

    #[test]
    fn equal_amounts_are_enough_and_one_minor_unit_less_is_a_shortfall_of_it() {
        let b = balances(vec![(Provider::MpesaB2c, known(vec![kes("1000.00")]))]);
        let r = funds_check(&[(Provider::MpesaB2c, kes("1000"))], &b).unwrap();
        assert_eq!(r.lines[0].state, FundsState::Enough);
        assert_eq!(r.lines[0].available, Some(kes("1000")));
        assert!(!r.blocks());

        let r = funds_check(&[(Provider::MpesaB2c, kes("1000.01"))], &b).unwrap();
        assert_eq!(r.lines[0].state, FundsState::Shortfall { short_by: kes("0.01") });
        assert!(r.blocks());
    }

    #[test]
    fn needs_are_summed_exactly_per_provider_and_currency() {
        // 0.1 + 0.2 is 0.3 exactly (never 0.30000000000000004).
        let needs = vec![
            (Provider::StripeConnect, usd("0.10")),
            (Provider::StripeConnect, usd("0.20")),
        ];
        let b = balances(vec![(Provider::StripeConnect, known(vec![usd("0.30")]))]);
        let r = funds_check(&needs, &b).unwrap();
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].needed, usd("0.30"));
        assert_eq!(r.lines[0].state, FundsState::Enough);
    }

    #[test]
    fn a_currency_the_provider_holds_nothing_in_is_short_by_the_whole_need() {
        let b = balances(vec![(Provider::StripeConnect, known(vec![usd("5000")]))]);
        let r = funds_check(&[(Provider::StripeConnect, m("12.34", Currency::EUR))], &b).unwrap();
        let l = &r.lines[0];
        assert_eq!(l.currency, Currency::EUR);
        assert_eq!(l.available, Some(Money::zero(Currency::EUR)));
        assert_eq!(
            l.state,
            FundsState::Shortfall {
                short_by: m("12.34", Currency::EUR)
            }
        );
        assert!(r.blocks());
    }

    #[test]
    fn several_currencies_are_compared_each_on_its_own_never_converted() {
        let yen = |s: &str| m(s, Currency::JPY);
        let needs = vec![
            (Provider::StripeConnect, usd("100")),
            (Provider::StripeConnect, yen("5000")),
            (Provider::StripeConnect, m("10", Currency::EUR)),
        ];
        // Plenty of dollars does not cover yen.
        let b = balances(vec![(
            Provider::StripeConnect,
            known(vec![usd("1000000"), yen("4999"), m("10.00", Currency::EUR)]),
        )]);
        let r = funds_check(&needs, &b).unwrap();
        let by: HashMap<&str, &FundsLine> = r.lines.iter().map(|l| (l.currency.code(), l)).collect();
        assert_eq!(by["USD"].state, FundsState::Enough);
        assert_eq!(by["EUR"].state, FundsState::Enough);
        assert_eq!(by["JPY"].state, FundsState::Shortfall { short_by: yen("1") });
        assert_eq!(r.shortfalls().count(), 1);
        // Ordered by provider, then currency code.
        let order: Vec<&str> = r.lines.iter().map(|l| l.currency.code()).collect();
        assert_eq!(order, ["EUR", "JPY", "USD"]);
    }

    #[test]
    fn amounts_listed_twice_in_a_balance_are_added() {
        let b = balances(vec![(Provider::MpesaB2c, known(vec![kes("600"), kes("400.00")]))]);
        let r = funds_check(&[(Provider::MpesaB2c, kes("1000"))], &b).unwrap();
        assert_eq!(r.lines[0].available, Some(kes("1000")));
        assert_eq!(r.lines[0].state, FundsState::Enough);
    }

    #[test]
    fn an_overdrawn_balance_is_short_by_more_than_the_need() {
        let b = balances(vec![(Provider::MpesaB2c, known(vec![kes("-250.50")]))]);
        let r = funds_check(&[(Provider::MpesaB2c, kes("100"))], &b).unwrap();
        assert_eq!(
            r.lines[0].state,
            FundsState::Shortfall {
                short_by: kes("350.50")
            }
        );
    }

    #[test]
    fn pending_unknown_and_missing_balances_are_shown_and_do_not_block() {
        let needs = vec![
            (Provider::MpesaB2c, kes("1")),
            (Provider::PaypalPayouts, usd("1")),
            (Provider::BankTransfer, kes("1")),
        ];
        let b = balances(vec![
            (Provider::MpesaB2c, BalanceAnswer::Pending { requested_at: at(5) }),
            (
                Provider::PaypalPayouts,
                BalanceAnswer::Unknown {
                    why: "PayPal offers no balance".into(),
                },
            ),
        ]);
        let r = funds_check(&needs, &b).unwrap();
        assert!(!r.blocks());
        let by: HashMap<Provider, &FundsLine> = r.lines.iter().map(|l| (l.provider, l)).collect();
        assert_eq!(
            by[&Provider::MpesaB2c].state,
            FundsState::Pending { requested_at: at(5) }
        );
        assert_eq!(
            by[&Provider::PaypalPayouts].state,
            FundsState::Unknown {
                why: "PayPal offers no balance".into()
            }
        );
        assert!(
            matches!(&by[&Provider::BankTransfer].state, FundsState::Unknown { why } if why.contains("BANK_TRANSFER"))
        );
        assert!(r.lines.iter().all(|l| l.available.is_none() && l.as_of.is_none()));
    }

    #[test]
    fn one_shortfall_among_many_lines_blocks() {
        let needs = vec![(Provider::MpesaB2c, kes("10")), (Provider::StripeConnect, usd("10"))];
        let b = balances(vec![
            (Provider::MpesaB2c, BalanceAnswer::Pending { requested_at: at(5) }),
            (Provider::StripeConnect, known(vec![usd("9.99")])),
        ]);
        let r = funds_check(&needs, &b).unwrap();
        assert!(r.blocks());
        let short: Vec<_> = r.shortfalls().map(|l| l.provider).collect();
        assert_eq!(short, [Provider::StripeConnect]);
    }

    #[test]
    fn a_zero_need_is_enough_and_no_needs_make_an_empty_report() {
        let b = balances(vec![(Provider::MpesaB2c, known(vec![]))]);
        let r = funds_check(&[(Provider::MpesaB2c, kes("0"))], &b).unwrap();
        assert_eq!(r.lines[0].state, FundsState::Enough);
        let empty = funds_check(&[], &b).unwrap();
        assert!(empty.lines.is_empty() && !empty.blocks());
    }

    #[test]
    fn a_negative_need_is_refused() {
        let err = funds_check(&[(Provider::MpesaB2c, kes("-1"))], &HashMap::new()).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    }

    #[test]
    fn a_sum_too_large_to_hold_is_an_error_not_a_wrong_answer() {
        let huge = kes("792281625142643375935439503.35");
        let err = funds_check(
            &[(Provider::MpesaB2c, huge), (Provider::MpesaB2c, huge)],
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Money(_)), "{err}");
    }

    #[test]
    fn reports_serialize_in_camel_case_with_the_state_inline() {
        let b = balances(vec![
            (Provider::MpesaB2c, known(vec![kes("100")])),
            (Provider::StripeConnect, BalanceAnswer::Pending { requested_at: at(60) }),
        ]);
        let needs = vec![(Provider::MpesaB2c, kes("150")), (Provider::StripeConnect, usd("1"))];
        let r = funds_check(&needs, &b).unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"lines": [
                {"provider": "STRIPE_CONNECT", "currency": "USD", "needed": {"amount": "1.00", "currency": "USD"},
                 "available": null, "asOf": null, "state": "pending", "requestedAt": "1970-01-01T00:01:00Z"},
                {"provider": "MPESA_B2C", "currency": "KES", "needed": {"amount": "150.00", "currency": "KES"},
                 "available": {"amount": "100.00", "currency": "KES"}, "asOf": "1970-01-01T00:16:40Z",
                 "state": "shortfall", "shortBy": {"amount": "50.00", "currency": "KES"}},
            ]})
        );
        let back: FundsReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);

        let answer = serde_json::to_value(BalanceAnswer::Unknown { why: "no API".into() }).unwrap();
        assert_eq!(answer, serde_json::json!({"state": "unknown", "why": "no API"}));
        let answer = serde_json::to_value(known(vec![usd("2")])).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"state": "known", "available": [{"amount": "2.00", "currency": "USD"}],
                               "asOf": "1970-01-01T00:16:40Z"})
        );
    }
}
