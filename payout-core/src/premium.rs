//! Premium feature gating: which payout features a user's subscription unlocks.
//!
//! The original system's `userHasPremium(userId)` and `getUserFeatureAccess(userId)`, over a
//! [`SubscriptionSource`] the host implements.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A subscription plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum Plan {
    /// No paid plan.
    Free,
    /// The premium plan.
    Premium,
    /// The enterprise plan (everything).
    Enterprise,
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum SubscriptionStatus {
    /// Paid and current.
    Active,
    /// In a trial.
    Trialing,
    /// Payment overdue: premium features are withheld.
    PastDue,
    /// Ended.
    Canceled,
}

/// A user's subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// The plan.
    pub plan: Plan,
    /// Its status.
    pub status: SubscriptionStatus,
    /// When the paid-for period ends; `None` = open-ended.
    pub current_period_end: Option<DateTime<Utc>>,
}

impl Subscription {
    /// True when it grants a paid plan at `now`.
    pub fn is_premium_at(&self, now: DateTime<Utc>) -> bool {
        self.plan != Plan::Free
            && matches!(self.status, SubscriptionStatus::Active | SubscriptionStatus::Trialing)
            && self.current_period_end.is_none_or(|end| end > now)
    }
}

/// The features a user may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureAccess {
    /// Earnings analytics in the doctor's payout history (monthly totals, per-consultation average,
    /// status breakdown).
    pub advanced_analytics: bool,
    /// Export of one's own payout history as CSV.
    pub earnings_export: bool,
    /// Payouts as soon as approved instead of on the monthly run (enterprise).
    pub priority_payouts: bool,
}

impl FeatureAccess {
    /// What a plan unlocks.
    pub fn for_plan(plan: Plan) -> Self {
        match plan {
            Plan::Free => FeatureAccess::default(),
            Plan::Premium => FeatureAccess {
                advanced_analytics: true,
                earnings_export: true,
                priority_payouts: false,
            },
            Plan::Enterprise => FeatureAccess {
                advanced_analytics: true,
                earnings_export: true,
                priority_payouts: true,
            },
        }
    }
}

/// Where subscriptions come from (the host's billing data).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SubscriptionSource: Send + Sync {
    /// The user's current subscription, if any.
    async fn subscription(&self, user_id: &str) -> Result<Option<Subscription>>;
}

/// True when the user has any premium plan at `now` (the original `userHasPremium`).
pub async fn user_has_premium(source: &dyn SubscriptionSource, user_id: &str, now: DateTime<Utc>) -> Result<bool> {
    Ok(source
        .subscription(user_id)
        .await?
        .is_some_and(|s| s.is_premium_at(now)))
}

/// The features the user may use at `now` (the original `getUserFeatureAccess`). No subscription,
/// a lapsed one or an overdue one gives the free set.
pub async fn feature_access(
    source: &dyn SubscriptionSource,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<FeatureAccess> {
    Ok(match source.subscription(user_id).await? {
        Some(s) if s.is_premium_at(now) => FeatureAccess::for_plan(s.plan),
        _ => FeatureAccess::default(),
    })
}

/// A fixed map of subscriptions: for tests, examples and small hosts.
#[derive(Debug, Clone, Default)]
pub struct StaticSubscriptions {
    by_user: HashMap<String, Subscription>,
}

impl StaticSubscriptions {
    /// Holds `(user id, subscription)` pairs.
    pub fn new(entries: impl IntoIterator<Item = (String, Subscription)>) -> Self {
        StaticSubscriptions {
            by_user: entries.into_iter().collect(),
        }
    }
}

#[async_trait]
impl SubscriptionSource for StaticSubscriptions {
    async fn subscription(&self, user_id: &str) -> Result<Option<Subscription>> {
        Ok(self.by_user.get(user_id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 2, 1, 0, 0, 0).unwrap()
    }

    fn sub(plan: Plan, status: SubscriptionStatus, days: i64) -> Subscription {
        Subscription {
            plan,
            status,
            current_period_end: Some(now() + chrono::Duration::days(days)),
        }
    }

    #[tokio::test]
    async fn gating_follows_plan_status_and_expiry() {
        let src = StaticSubscriptions::new([
            ("active".to_string(), sub(Plan::Premium, SubscriptionStatus::Active, 10)),
            (
                "trial".to_string(),
                sub(Plan::Enterprise, SubscriptionStatus::Trialing, 3),
            ),
            (
                "expired".to_string(),
                sub(Plan::Premium, SubscriptionStatus::Active, -1),
            ),
            (
                "overdue".to_string(),
                sub(Plan::Premium, SubscriptionStatus::PastDue, 10),
            ),
            ("free".to_string(), sub(Plan::Free, SubscriptionStatus::Active, 10)),
        ]);
        assert!(user_has_premium(&src, "active", now()).await.unwrap());
        assert!(user_has_premium(&src, "trial", now()).await.unwrap());
        for u in ["expired", "overdue", "free", "nobody"] {
            assert!(!user_has_premium(&src, u, now()).await.unwrap(), "{u}");
            assert_eq!(
                feature_access(&src, u, now()).await.unwrap(),
                FeatureAccess::default(),
                "{u}"
            );
        }
        let a = feature_access(&src, "active", now()).await.unwrap();
        assert!(a.advanced_analytics && a.earnings_export && !a.priority_payouts);
        assert!(feature_access(&src, "trial", now()).await.unwrap().priority_payouts);
    }
}
