//! A provider that holds its sends at a gate, and approved payouts to send through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use http::HeaderMap;
use payout_core::domain::{Actor, PayoutId, Provider};
use payout_core::error::{ProviderError, WebhookError};
use payout_core::memory::MemoryStore;
use payout_core::provider::{
    AttemptLookup, Capabilities, PayoutInstruction, PayoutProvider, ProviderEvent, ProviderStatus, SendReceipt,
};
use payout_core::service::{CalculationPolicy, PayoutService, PerformanceConfig};
use payout_core::simulated::SimulatedProvider;
use payout_core::source::{StaticConsultations, StaticDirectory};
use tokio::sync::{Notify, Semaphore};

use super::{consultation, month, recipient};

/// The simulated M-Pesa provider behind a gate: each send logs (as an adapter does), is counted,
/// then waits for a permit of `gate` before it answers.
pub struct GatedProvider {
    inner: SimulatedProvider,
    /// Sends wait for a permit of this.
    pub gate: Semaphore,
    /// Sends that reached the provider.
    pub sends: AtomicUsize,
    sent: Notify,
}

impl GatedProvider {
    /// With `permits` sends let through.
    pub fn new(permits: usize) -> Self {
        GatedProvider {
            inner: SimulatedProvider::new(Provider::MpesaB2c),
            gate: Semaphore::new(permits),
            sends: AtomicUsize::new(0),
            sent: Notify::new(),
        }
    }

    /// Waits until `n` sends have reached the provider.
    pub async fn reached(&self, n: usize) {
        loop {
            let notified = self.sent.notified();
            if self.sends.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl PayoutProvider for GatedProvider {
    fn provider(&self) -> Provider {
        self.inner.provider()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn send(&self, instruction: &PayoutInstruction) -> Result<SendReceipt, ProviderError> {
        tracing::info!("adapter: sending to the provider");
        self.sends.fetch_add(1, Ordering::SeqCst);
        self.sent.notify_waiters();
        self.gate.acquire().await.expect("the gate stays open").forget();
        self.inner.send(instruction).await
    }
    async fn verify_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Vec<ProviderEvent>, WebhookError> {
        self.inner.verify_webhook(headers, body).await
    }
    async fn lookup(&self, attempt: &AttemptLookup) -> Result<ProviderStatus, ProviderError> {
        self.inner.lookup(attempt).await
    }
}

/// `doctors` doctors with one January 2025 consultation each; their payouts calculated and
/// approved. Returns the service, its store and the payout ids.
pub async fn approved_payouts(
    doctors: usize,
    provider: Arc<GatedProvider>,
    trigger_concurrency: usize,
) -> (PayoutService, Arc<MemoryStore>, Vec<PayoutId>) {
    let names: Vec<String> = (0..doctors).map(|i| format!("dr-{i:03}")).collect();
    let consultations = names
        .iter()
        .enumerate()
        .map(|(i, d)| consultation(&format!("apt-{i}"), d, 2025, 1, 10))
        .collect();
    let store = Arc::new(MemoryStore::new());
    let service = PayoutService::builder()
        .store(store.clone())
        .consultations(Arc::new(StaticConsultations::new(consultations)))
        .directory(Arc::new(StaticDirectory::new(names.iter().map(|d| recipient(d)))))
        .provider(provider)
        .performance(PerformanceConfig {
            trigger_concurrency,
            ..PerformanceConfig::default()
        })
        .build()
        .unwrap();
    let admin = Actor::admin("calculator");
    let mut ids = service
        .calculate_period(&admin, Some(month(2025, 1)), &CalculationPolicy::default())
        .await
        .unwrap()
        .created;
    ids.sort();
    assert_eq!(ids.len(), doctors);
    let approver = Actor::admin("approver");
    for id in &ids {
        service.approve(&approver, id).await.unwrap();
    }
    (service, store, ids)
}
