//! Asking the registered balance sources, for the funds check.

use std::collections::{BTreeSet, HashMap};

use futures::future::join_all;

use super::PayoutService;
use crate::domain::Provider;
use crate::error::Result;
use crate::funds::{BalanceAnswer, FundsReport, funds_check};
use crate::money::Money;

impl PayoutService {
    /// The balance of each of `providers` (each named once in the answer, however often it is
    /// named here), as its registered [`BalanceSource`](crate::funds::BalanceSource) answers.
    ///
    /// Every source is asked once, all at the same time, each within the policy's
    /// [`send_timeout`](super::ServicePolicy::send_timeout). A provider without a source, a source
    /// that fails and one that does not answer in time are each
    /// [`BalanceAnswer::Unknown`] with the reason: the funds check shows it and does not block on it.
    pub async fn balances(&self, providers: &[Provider]) -> HashMap<Provider, BalanceAnswer> {
        let wanted: BTreeSet<Provider> = providers.iter().copied().collect();
        let timeout = self.policy.send_timeout;
        let asks = wanted.into_iter().map(|provider| async move {
            let answer = match self.balance_sources.get(&provider) {
                None => BalanceAnswer::Unknown {
                    why: format!("{provider} has no balance source: its balance is not read"),
                },
                Some(source) => match tokio::time::timeout(timeout, source.balance()).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(e)) => {
                        tracing::warn!(%provider, error = %e, "balance could not be read");
                        BalanceAnswer::Unknown {
                            why: format!("the balance could not be read: {e}"),
                        }
                    }
                    Err(_) => {
                        tracing::warn!(%provider, ?timeout, "balance not read in time");
                        BalanceAnswer::Unknown {
                            why: format!("{provider} did not answer the balance query within {timeout:?}"),
                        }
                    }
                },
            };
            (provider, answer)
        });
        join_all(asks).await.into_iter().collect()
    }

    /// The funds check of `needs` (what payouts need, per provider, in exact amounts): the
    /// balances of the providers named ([`balances`](Self::balances)) compared by
    /// [`funds_check`]. Errors as [`funds_check`]'s (a negative need, an overflowing sum).
    pub async fn check_funds(&self, needs: &[(Provider, Money)]) -> Result<FundsReport> {
        let providers: Vec<Provider> = needs.iter().map(|(p, _)| *p).collect();
        let balances = self.balances(&providers).await;
        funds_check(needs, &balances)
    }
}
