//! The shortcode's balance for the funds check: Daraja's Account Balance query is answered by a
//! callback, so the adapter keeps the last answer and says `Pending` until one has arrived.
//!
//! Which answer to give is decided by [`BalanceBook::decide`], a pure function of what the book
//! holds and the time; sending the query and reading the callback are the plumbing around it.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payout_core::domain::Provider;
use payout_core::funds::{BalanceAnswer, BalanceSource};
use payout_core::money::Money;
use payout_core::provider::ProviderEvent;
use payout_core::{ProviderError, WebhookError};

use super::wire::{Ack, BalanceQuery, Callback, account_balance, result_meaning};
use super::{BALANCE_TIMEOUT_KIND, MpesaProvider};

/// How the balance is read and kept (see the module table of [`super`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BalancePolicy {
    /// The account B2C payments are paid from (`Utility Account`).
    pub account: String,
    /// A balance older than this is asked for again.
    pub max_age: Duration,
    /// How long an unanswered query is waited for before another is sent, and how long a refused
    /// or timed-out query is reported before the balance is asked for again.
    pub wait: Duration,
}

/// What the adapter knows of the balance: the last one that arrived, the query out, the last
/// refusal. Shared by every clone of the adapter.
#[derive(Debug, Default)]
pub(crate) struct BalanceBook {
    pub known: Option<Known>,
    pub outstanding: Option<Outstanding>,
    pub refused: Option<Refused>,
}

/// A balance that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    pub available: Money,
    /// When its callback arrived.
    pub as_of: DateTime<Utc>,
}

/// A query sent and not answered yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outstanding {
    pub conversation_id: Option<String>,
    pub originator_conversation_id: Option<String>,
    pub requested_at: DateTime<Utc>,
}

/// A query Daraja refused or timed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub why: String,
    pub at: DateTime<Utc>,
}

/// What `balance` does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Answer this, without asking Daraja.
    Answer(BalanceAnswer),
    /// Send a query (the answer will be `Pending` from now).
    Ask,
}

fn younger_than(then: DateTime<Utc>, now: DateTime<Utc>, limit: Duration) -> bool {
    // A time ahead of the clock (a clock set back) counts as fresh.
    (now - then).to_std().map_or(true, |age| age < limit)
}

impl BalanceBook {
    /// A balance no older than `max_age` is the answer; otherwise a query sent less than `wait`
    /// ago is still awaited (`Pending`), and a query refused less than `wait` ago is reported
    /// (`Unknown`); otherwise it is time to ask.
    pub fn decide(&self, now: DateTime<Utc>, policy: &BalancePolicy) -> Decision {
        if let Some(k) = &self.known {
            if (now - k.as_of).to_std().map_or(true, |age| age <= policy.max_age) {
                return Decision::Answer(BalanceAnswer::Known {
                    available: vec![k.available],
                    as_of: k.as_of,
                });
            }
        }
        if let Some(o) = &self.outstanding {
            if younger_than(o.requested_at, now, policy.wait) {
                return Decision::Answer(BalanceAnswer::Pending {
                    requested_at: o.requested_at,
                });
            }
        }
        if let Some(r) = &self.refused {
            if younger_than(r.at, now, policy.wait) {
                return Decision::Answer(BalanceAnswer::Unknown {
                    why: format!(
                        "{} (at {}; asked again {} s after that)",
                        r.why,
                        r.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        policy.wait.as_secs()
                    ),
                });
            }
        }
        Decision::Ask
    }

    /// A query was acknowledged at `now`: it is the one awaited.
    pub fn asked(&mut self, ack: &Ack, now: DateTime<Utc>) {
        self.outstanding = Some(Outstanding {
            conversation_id: ack.conversation_id.clone(),
            originator_conversation_id: ack.originator_conversation_id.clone(),
            requested_at: now,
        });
        self.refused = None;
    }

    /// True when the callback's ids are those of the query awaited.
    fn awaited(&self, conversation: Option<&str>, originator: Option<&str>) -> bool {
        self.outstanding.as_ref().is_some_and(|o| {
            let same = |ours: &Option<String>, theirs: Option<&str>| {
                ours.as_deref()
                    .is_some_and(|a| theirs.is_some_and(|b| !b.is_empty() && a == b))
            };
            same(&o.conversation_id, conversation) || same(&o.originator_conversation_id, originator)
        })
    }

    /// Records an authenticated result callback that arrived at `now`.
    ///
    /// | body | effect |
    /// |---|---|
    /// | not a `{"Result": {...}}` with a `ResultCode` | `Malformed`, nothing changes |
    /// | `ResultCode` 0 and the account's balance | the balance, as of `now`; no query is awaited any more |
    /// | `ResultCode` 0, no `AccountBalance` parameter | `Malformed`, nothing changes (not a balance result) |
    /// | `ResultCode` 0, an `AccountBalance` without the account or unreadable | `Malformed`, and the query counts as refused with the reason |
    /// | another `ResultCode` | the query counts as refused, with the code's meaning and `ResultDesc` |
    ///
    /// A result is taken whether or not it answers the query this instance sent: with several
    /// instances, the balance lives where the callback lands.
    pub fn record_result(
        &mut self,
        body: &[u8],
        policy: &BalancePolicy,
        now: DateTime<Utc>,
    ) -> Result<(), WebhookError> {
        let callback: Callback = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let r = callback.result;
        let Some(code) = r.result_code.as_deref() else {
            return Err(WebhookError::Malformed("a balance result without a ResultCode".into()));
        };
        let awaited = self.awaited(r.conversation_id.as_deref(), r.originator_conversation_id.as_deref());
        if !awaited {
            tracing::info!(
                conversation_id = ?r.conversation_id,
                "M-Pesa balance result for a query this instance is not waiting for: taken"
            );
        }
        if code != "0" {
            let (meaning, _) = result_meaning(code);
            let desc = r.result_desc.as_deref().unwrap_or_default();
            self.refuse(
                format!("M-Pesa refused the balance query: result {code} ({meaning}) {desc}"),
                now,
            );
            return Ok(());
        }
        let Some(value) = r.parameter("AccountBalance") else {
            return Err(WebhookError::Malformed(
                "a successful balance result without an AccountBalance parameter".into(),
            ));
        };
        match account_balance(&value, &policy.account) {
            Ok(line) => {
                self.known = Some(Known {
                    available: line.payable,
                    as_of: now,
                });
                self.outstanding = None;
                self.refused = None;
                Ok(())
            }
            Err(why) => {
                self.refuse(format!("M-Pesa's balance result is unusable: {why}"), now);
                Err(WebhookError::Malformed(why))
            }
        }
    }

    /// Records an authenticated queue-timeout callback: the query awaited will not be answered.
    /// Its body's shape is **[unverified]**, so it is not read; with no query awaited it changes
    /// nothing.
    pub fn record_timeout(&mut self, now: DateTime<Utc>) {
        if self.outstanding.is_some() {
            self.refuse("M-Pesa's queue timed out the balance query".into(), now);
        }
    }

    fn refuse(&mut self, why: String, now: DateTime<Utc>) {
        tracing::warn!(reason = %why, "M-Pesa balance query not answered with a balance");
        self.outstanding = None;
        self.refused = Some(Refused {
            why: why.trim().to_string(),
            at: now,
        });
    }
}

impl MpesaProvider {
    /// Records an authenticated balance callback of `kind`; it yields no payout events.
    pub(super) async fn balance_callback(&self, kind: &str, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        let now = self.config.client.clock().now();
        let mut book = self.balance.lock().await;
        if kind == BALANCE_TIMEOUT_KIND {
            book.record_timeout(now);
        } else {
            book.record_result(body, &self.config.balance, now)?;
        }
        Ok(Vec::new())
    }
}
#[async_trait]
impl BalanceSource for MpesaProvider {
    fn provider(&self) -> Provider {
        Provider::MpesaB2c
    }

    /// The Utility Account's balance (see [Balance](super#balance)): `Known` while the last one is
    /// fresh, else `Pending` while a query is awaited, else a new query is sent. The book is held
    /// while the query is sent, so concurrent checks send one query, and a callback that races the
    /// acknowledgement is recorded after it.
    async fn balance(&self) -> Result<BalanceAnswer, ProviderError> {
        let c = &self.config;
        let mut book = self.balance.lock().await;
        let now = c.client.clock().now();
        if let Decision::Answer(answer) = book.decide(now, &c.balance) {
            return Ok(answer);
        }
        let query = BalanceQuery {
            initiator: c.initiator_name.clone(),
            security_credential: c.security_credential.expose().to_string(),
            command_id: "AccountBalance",
            party_a: c.shortcode.clone(),
            identifier_type: "4",
            remarks: "Funds check before payouts".to_string(),
            queue_time_out_url: c.balance_timeout_url.clone(),
            result_url: c.balance_result_url.clone(),
        };
        let ack = self.client.query_balance(&query).await?;
        book.asked(&ack, now);
        Ok(BalanceAnswer::Pending { requested_at: now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use payout_core::money::Currency;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }
    fn policy() -> BalancePolicy {
        BalancePolicy {
            account: "Utility Account".into(),
            max_age: Duration::from_secs(300),
            wait: Duration::from_secs(120),
        }
    }
    fn kes(s: &str) -> Money {
        Money::parse(s, Currency::KES).unwrap()
    }
    fn ack(conversation: &str) -> Ack {
        serde_json::from_value(serde_json::json!({"ConversationID": conversation,
            "OriginatorConversationID": "orig-1", "ResponseCode": "0"}))
        .unwrap()
    }
    fn result(code: i64, conversation: &str, balance: Option<&str>) -> Vec<u8> {
        let mut r = serde_json::json!({"Result": {"ResultType": 0, "ResultCode": code, "ResultDesc": "desc",
            "OriginatorConversationID": "orig-1", "ConversationID": conversation, "TransactionID": "OAR0000000"}});
        if let Some(b) = balance {
            r["Result"]["ResultParameters"] = serde_json::json!({"ResultParameter": [
                {"Key": "AccountBalance", "Value": b}, {"Key": "BOCompletedTime", "Value": 20240706224852_i64}]});
        }
        serde_json::to_vec(&r).unwrap()
    }
    const UTILITY: &str = "Working Account|KES|1.00|1.00|0.00|0.00&Utility Account|KES|481000.50|481000.50|0.00|0.00";

    #[test]
    fn nothing_known_is_time_to_ask_then_pending_until_the_wait_is_over() {
        let mut book = BalanceBook::default();
        assert_eq!(book.decide(at(0), &policy()), Decision::Ask);
        book.asked(&ack("AG_1"), at(0));
        let pending = Decision::Answer(BalanceAnswer::Pending { requested_at: at(0) });
        assert_eq!(book.decide(at(0), &policy()), pending);
        assert_eq!(book.decide(at(119), &policy()), pending);
        assert_eq!(
            book.decide(at(120), &policy()),
            Decision::Ask,
            "an unanswered query is given up"
        );
    }

    #[test]
    fn a_result_is_known_until_it_is_older_than_the_max_age() {
        let mut book = BalanceBook::default();
        book.asked(&ack("AG_1"), at(0));
        book.record_result(&result(0, "AG_1", Some(UTILITY)), &policy(), at(5))
            .unwrap();
        let known = Decision::Answer(BalanceAnswer::Known {
            available: vec![kes("481000.50")],
            as_of: at(5),
        });
        assert_eq!(book.decide(at(5), &policy()), known);
        assert_eq!(book.decide(at(305), &policy()), known);
        assert_eq!(book.decide(at(306), &policy()), Decision::Ask);
        // While the refresh is awaited the answer is pending, not the stale balance.
        book.asked(&ack("AG_2"), at(306));
        assert_eq!(
            book.decide(at(307), &policy()),
            Decision::Answer(BalanceAnswer::Pending { requested_at: at(306) })
        );
    }

    #[test]
    fn a_refusal_is_reported_for_the_wait_then_asked_again() {
        let mut book = BalanceBook::default();
        book.asked(&ack("AG_1"), at(0));
        book.record_result(&result(2001, "AG_1", None), &policy(), at(3))
            .unwrap();
        let Decision::Answer(BalanceAnswer::Unknown { why }) = book.decide(at(4), &policy()) else {
            panic!("a refusal is unknown")
        };
        assert!(why.contains("2001") && why.contains("invalid initiator"), "{why}");
        assert_eq!(book.decide(at(123), &policy()), Decision::Ask);
    }

    #[test]
    fn a_queue_timeout_ends_the_wait() {
        let mut book = BalanceBook::default();
        book.record_timeout(at(0));
        assert_eq!(book.refused, None, "no query awaited: nothing to time out");
        book.asked(&ack("AG_1"), at(0));
        book.record_timeout(at(30));
        assert!(book.outstanding.is_none());
        assert!(matches!(
            book.decide(at(31), &policy()),
            Decision::Answer(BalanceAnswer::Unknown { why }) if why.contains("timed out")
        ));
    }

    #[test]
    fn a_result_for_another_instance_s_query_is_taken() {
        let mut book = BalanceBook::default();
        book.record_result(&result(0, "AG_elsewhere", Some(UTILITY)), &policy(), at(1))
            .unwrap();
        assert!(matches!(
            book.decide(at(2), &policy()),
            Decision::Answer(BalanceAnswer::Known { .. })
        ));
    }

    #[test]
    fn malformed_results_change_nothing_and_unusable_balances_say_why() {
        let mut book = BalanceBook::default();
        book.asked(&ack("AG_1"), at(0));
        for bad in [
            &b"not json"[..],
            br#"{"Result": {"ConversationID": "AG_1"}}"#,
            &result(0, "AG_1", None),
        ] {
            let e = book.record_result(bad, &policy(), at(1)).unwrap_err();
            assert!(matches!(e, WebhookError::Malformed(_)), "{e}");
            assert!(book.outstanding.is_some() && book.known.is_none() && book.refused.is_none());
        }
        let e = book
            .record_result(
                &result(0, "AG_1", Some("Working Account|KES|1.00|1.00|0.00|0.00")),
                &policy(),
                at(2),
            )
            .unwrap_err();
        assert!(matches!(e, WebhookError::Malformed(_)));
        assert!(matches!(
            book.decide(at(3), &policy()),
            Decision::Answer(BalanceAnswer::Unknown { why }) if why.contains("Utility Account")
        ));
    }
}
