//! The funds check through the service (issue 17 item 2): the registered balance sources are
//! asked once each, side by side, within the policy's send timeout, and whatever cannot be read is
//! an unknown balance, which the check shows and does not block on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use payout_core::domain::Provider;
use payout_core::funds::{BalanceAnswer, BalanceSource, FundsState};
use payout_core::memory::MemoryStore;
use payout_core::money::{Currency, Money};
use payout_core::service::{PayoutService, ServicePolicy};
use payout_core::source::StaticDirectory;
use payout_core::{ProviderError, ProviderErrorKind};
use tokio::sync::Barrier;

fn kes(s: &str) -> Money {
    Money::parse(s, Currency::KES).unwrap()
}
fn usd(s: &str) -> Money {
    Money::parse(s, Currency::USD).unwrap()
}

/// How a test source answers.
enum Answer {
    /// This, at once.
    Now(BalanceAnswer),
    /// An error.
    Fail(ProviderError),
    /// This, once every source sharing the barrier has been asked.
    AfterAll(Arc<Barrier>, BalanceAnswer),
    /// Never.
    Never,
}

struct Source {
    provider: Provider,
    answer: Answer,
    asked: AtomicUsize,
}

impl Source {
    fn new(provider: Provider, answer: Answer) -> Arc<Self> {
        Arc::new(Source {
            provider,
            answer,
            asked: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl BalanceSource for Source {
    fn provider(&self) -> Provider {
        self.provider
    }

    async fn balance(&self) -> Result<BalanceAnswer, ProviderError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        match &self.answer {
            Answer::Now(a) => Ok(a.clone()),
            Answer::Fail(e) => Err(e.clone()),
            Answer::AfterAll(barrier, a) => {
                barrier.wait().await;
                Ok(a.clone())
            }
            Answer::Never => std::future::pending().await,
        }
    }
}

fn known(available: Vec<Money>) -> BalanceAnswer {
    BalanceAnswer::Known {
        available,
        as_of: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
    }
}

fn service(sources: &[Arc<Source>]) -> PayoutService {
    let mut b = PayoutService::builder()
        .store(Arc::new(MemoryStore::new()))
        .directory(Arc::new(StaticDirectory::new([])))
        .policy(ServicePolicy {
            send_timeout: Duration::from_secs(30),
            ..Default::default()
        });
    for s in sources {
        b = b.balance_source(s.clone());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn each_source_is_asked_once_and_a_provider_without_one_is_unknown() {
    let stripe = Source::new(Provider::StripeConnect, Answer::Now(known(vec![usd("10")])));
    let svc = service(std::slice::from_ref(&stripe));
    let balances = svc
        .balances(&[
            Provider::StripeConnect,
            Provider::PaypalPayouts,
            Provider::StripeConnect,
        ])
        .await;
    assert_eq!(balances.len(), 2);
    assert_eq!(balances[&Provider::StripeConnect], known(vec![usd("10")]));
    assert!(
        matches!(&balances[&Provider::PaypalPayouts], BalanceAnswer::Unknown { why } if why.contains("PAYPAL_PAYOUTS")),
        "{balances:?}"
    );
    assert_eq!(stripe.asked.load(Ordering::SeqCst), 1, "asked once, though named twice");
}

/// Each source answers only once the other has been asked too: asked one after the other, the
/// first would wait until the timeout and be unknown.
#[tokio::test(start_paused = true)]
async fn sources_are_asked_side_by_side() {
    let barrier = Arc::new(Barrier::new(2));
    let stripe = Source::new(
        Provider::StripeConnect,
        Answer::AfterAll(barrier.clone(), known(vec![usd("1")])),
    );
    let mpesa = Source::new(Provider::MpesaB2c, Answer::AfterAll(barrier, known(vec![kes("1")])));
    let svc = service(&[stripe, mpesa]);
    let balances = svc.balances(&[Provider::StripeConnect, Provider::MpesaB2c]).await;
    assert_eq!(balances[&Provider::StripeConnect], known(vec![usd("1")]));
    assert_eq!(balances[&Provider::MpesaB2c], known(vec![kes("1")]));
}

#[tokio::test(start_paused = true)]
async fn a_source_that_fails_or_does_not_answer_in_time_is_unknown_with_the_reason() {
    let failing = Source::new(
        Provider::StripeConnect,
        Answer::Fail(ProviderError::new(
            Provider::StripeConnect,
            ProviderErrorKind::Final,
            "HTTP 401 invalid_request_error",
        )),
    );
    let silent = Source::new(Provider::MpesaB2c, Answer::Never);
    let svc = service(&[failing, silent]);
    let balances = svc.balances(&[Provider::StripeConnect, Provider::MpesaB2c]).await;
    assert!(
        matches!(&balances[&Provider::StripeConnect], BalanceAnswer::Unknown { why } if why.contains("HTTP 401")),
        "{balances:?}"
    );
    assert!(
        matches!(&balances[&Provider::MpesaB2c], BalanceAnswer::Unknown { why } if why.contains("did not answer") && why.contains("30s")),
        "{balances:?}"
    );
}

#[tokio::test]
async fn check_funds_compares_the_needs_with_the_balances_read() {
    let stripe = Source::new(Provider::StripeConnect, Answer::Now(known(vec![usd("99.99")])));
    let mpesa = Source::new(
        Provider::MpesaB2c,
        Answer::Now(BalanceAnswer::Pending {
            requested_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        }),
    );
    let svc = service(&[stripe.clone(), mpesa.clone()]);
    let needs = [
        (Provider::StripeConnect, usd("60")),
        (Provider::StripeConnect, usd("40")),
        (Provider::MpesaB2c, kes("500")),
        (Provider::BankTransfer, kes("700")),
    ];
    let report = svc.check_funds(&needs).await.unwrap();
    assert!(report.blocks());
    let states: Vec<(Provider, &FundsState)> = report.lines.iter().map(|l| (l.provider, &l.state)).collect();
    assert_eq!(states.len(), 3);
    assert_eq!(
        states[0],
        (
            Provider::StripeConnect,
            &FundsState::Shortfall { short_by: usd("0.01") }
        )
    );
    assert!(matches!(states[1], (Provider::MpesaB2c, FundsState::Pending { .. })));
    assert!(matches!(
        states[2],
        (Provider::BankTransfer, FundsState::Unknown { .. })
    ));
    assert_eq!(stripe.asked.load(Ordering::SeqCst), 1);
    assert_eq!(mpesa.asked.load(Ordering::SeqCst), 1);
}
