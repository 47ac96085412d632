//! Many payouts at once: [`BulkPayoutStore`], the optional ability a store offers through
//! [`PayoutStore::bulk`], and [`PayoutStoreExt`], which callers use whether or not a store offers
//! it.
//!
//! A bulk method does what the minimal contract's methods do for each payout, in fewer round trips.
//! Keeping them out of [`PayoutStore`] (object_store removed such defaulted fast paths from
//! `ObjectStore` for the same reason) means a store wrapper can never lose them silently: it either
//! forwards [`PayoutStore::bulk`] on purpose, or answers `None` and visibly offers none.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{ExportRow, PayoutChange, PayoutFilter, PayoutStore};
use crate::domain::{Payout, PayoutAttempt, PayoutId};
use crate::error::{Error, Result};

/// A store's bulk abilities: what [`PayoutStore`] does one payout at a time, for many.
///
/// A store that implements it returns itself from [`PayoutStore::bulk`]. The conformance suite
/// (`testkit::store`) checks these methods against their one-at-a-time meaning whenever a store
/// offers them.
#[async_trait]
pub trait BulkPayoutStore: Send + Sync {
    /// Applies each change as [`PayoutStore::apply`] would, and returns one result per change, in
    /// order.
    ///
    /// # Behavior
    /// Each change is checked and applied on its own: a refused one (a conflict, a duplicate event,
    /// a missing attempt) changes nothing and leaves the others as they are. An error for the whole
    /// call (the database is down) is returned for every change it left unapplied.
    async fn apply_all(&self, changes: Vec<PayoutChange>) -> Vec<Result<Payout>>;

    /// The payouts of `ids` that exist, each with its attempts oldest first, in the order of `ids`
    /// (unknown ids are left out, a repeated id is returned once): what [`PayoutStore::get`] and
    /// [`PayoutStore::attempts`] return for each.
    ///
    /// # Behavior
    /// The attempts are read no earlier than their payout, so they are at least as new as the
    /// payout they come with.
    async fn payouts_with_attempts(&self, ids: &[PayoutId]) -> Result<Vec<(Payout, Vec<PayoutAttempt>)>>;

    /// Every payout matching `filter`, newest first, with only what the CSV export writes of it.
    ///
    /// # Behavior
    /// The same rows, in the same order, as [`PayoutStore::stream`] with the same filter, read the
    /// same way (as they are written out, never all at once).
    fn export_rows(&self, filter: PayoutFilter) -> BoxStream<'static, Result<ExportRow>>;
}

/// The bulk abilities for any store: through [`PayoutStore::bulk`] where the store offers them,
/// one payout at a time where it does not. Implemented for every [`PayoutStore`], `dyn` included.
#[async_trait]
pub trait PayoutStoreExt: PayoutStore {
    /// [`BulkPayoutStore::apply_all`], or [`PayoutStore::apply`] for each change in turn.
    async fn apply_many(&self, changes: Vec<PayoutChange>) -> Vec<Result<Payout>> {
        if let Some(bulk) = self.bulk() {
            return bulk.apply_all(changes).await;
        }
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            out.push(self.apply(change).await);
        }
        out
    }

    /// [`BulkPayoutStore::payouts_with_attempts`], or [`PayoutStore::get`] then
    /// [`PayoutStore::attempts`] for each id in turn.
    async fn read_with_attempts(&self, ids: &[PayoutId]) -> Result<Vec<(Payout, Vec<PayoutAttempt>)>> {
        if let Some(bulk) = self.bulk() {
            return bulk.payouts_with_attempts(ids).await;
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            match self.get(id).await {
                Ok(p) => out.push((p, self.attempts(id).await?)),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A payout and its attempts (at least as new as the payout); `NotFound` for an unknown one.
    async fn payout_and_attempts(&self, id: &PayoutId) -> Result<(Payout, Vec<PayoutAttempt>)> {
        self.read_with_attempts(std::slice::from_ref(id))
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(id.clone()))
    }

    /// [`BulkPayoutStore::export_rows`], or [`PayoutStore::stream`] cut down to its export rows.
    fn export_stream(&self, filter: PayoutFilter) -> BoxStream<'static, Result<ExportRow>> {
        match self.bulk() {
            Some(bulk) => bulk.export_rows(filter),
            None => self.stream(filter).map(|p| p.map(ExportRow::from)).boxed(),
        }
    }
}

impl<S: PayoutStore + ?Sized> PayoutStoreExt for S {}
