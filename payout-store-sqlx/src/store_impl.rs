//! The [`PayoutStore`](payout_core::PayoutStore) impl of each store type: every method hands its pool
//! to the one implementation in [`read`](crate::read) and [`write`](crate::write).

/// Implements `PayoutStore` for a store type with a `pool` field whose type implements `Db`.
macro_rules! delegate_payout_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl payout_core::PayoutStore for $store {
            async fn create_period(
                &self,
                batch: payout_core::store::PeriodBatch,
            ) -> payout_core::Result<payout_core::store::PeriodBatchOutcome> {
                $crate::write::create_period(&self.pool, batch).await
            }

            async fn create_payout(
                &self,
                new: payout_core::store::NewPayout,
            ) -> payout_core::Result<payout_core::domain::Payout> {
                $crate::write::create_payout(&self.pool, new).await
            }

            async fn get(
                &self,
                id: &payout_core::domain::PayoutId,
            ) -> payout_core::Result<payout_core::domain::Payout> {
                $crate::read::get(&self.pool, id).await
            }

            async fn list(
                &self,
                filter: &payout_core::store::PayoutFilter,
                page: &payout_core::store::Page,
            ) -> payout_core::Result<payout_core::store::PayoutPage> {
                $crate::read::list(&self.pool, filter, page).await
            }

            fn stream(
                &self,
                filter: payout_core::store::PayoutFilter,
            ) -> futures::stream::BoxStream<'static, payout_core::Result<payout_core::domain::Payout>> {
                $crate::read::stream(self.pool.clone(), filter)
            }

            async fn items(
                &self,
                id: &payout_core::domain::PayoutId,
            ) -> payout_core::Result<Vec<payout_core::domain::PayoutItem>> {
                $crate::read::items(&self.pool, id).await
            }

            async fn apply(
                &self,
                change: payout_core::store::PayoutChange,
            ) -> payout_core::Result<payout_core::domain::Payout> {
                $crate::write::apply(&self.pool, change).await
            }

            async fn apply_all(
                &self,
                changes: Vec<payout_core::store::PayoutChange>,
            ) -> Vec<payout_core::Result<payout_core::domain::Payout>> {
                $crate::batch::apply_all(&self.pool, changes).await
            }

            fn parallel_writes(&self) -> usize {
                $crate::batch::parallel_writes(&self.pool)
            }

            async fn payouts_with_attempts(
                &self,
                ids: &[payout_core::domain::PayoutId],
            ) -> payout_core::Result<
                Vec<(
                    payout_core::domain::Payout,
                    Vec<payout_core::domain::PayoutAttempt>,
                )>,
            > {
                $crate::batch::payouts_with_attempts(&self.pool, ids).await
            }

            async fn attempts(
                &self,
                id: &payout_core::domain::PayoutId,
            ) -> payout_core::Result<Vec<payout_core::domain::PayoutAttempt>> {
                $crate::read::attempts(&self.pool, id).await
            }

            async fn find_attempt(
                &self,
                provider: payout_core::domain::Provider,
                reference: &payout_core::provider::EventReference,
            ) -> payout_core::Result<Option<payout_core::domain::PayoutAttempt>> {
                $crate::read::find_attempt(&self.pool, provider, reference).await
            }

            async fn webhook_event_seen(
                &self,
                provider: payout_core::domain::Provider,
                event_id: &str,
            ) -> payout_core::Result<bool> {
                $crate::read::webhook_event_seen(&self.pool, provider, event_id).await
            }

            async fn audit_trail(
                &self,
                id: &payout_core::domain::PayoutId,
            ) -> payout_core::Result<Vec<payout_core::domain::AuditEntry>> {
                $crate::read::audit_trail(&self.pool, id).await
            }

            async fn stuck_processing(
                &self,
                updated_before: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> payout_core::Result<Vec<payout_core::domain::Payout>> {
                $crate::read::stuck_processing(&self.pool, updated_before, limit).await
            }

            async fn open_carry_overs(
                &self,
                before: chrono::NaiveDate,
            ) -> payout_core::Result<Vec<payout_core::store::CarryOver>> {
                $crate::read::open_carry_overs(&self.pool, before).await
            }

            fn export_rows(
                &self,
                filter: payout_core::store::PayoutFilter,
            ) -> futures::stream::BoxStream<'static, payout_core::Result<payout_core::store::ExportRow>> {
                $crate::read::export_rows(self.pool.clone(), filter)
            }
        }
    };
}
pub(crate) use delegate_payout_store;
