//! An in-memory [`PayoutStore`](crate::PayoutStore) with the same semantics as a database.

/// An in-memory store.
#[derive(Debug, Default)]
pub struct MemoryStore {}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}
