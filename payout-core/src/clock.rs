//! Injectable time and ids, so the engine is deterministic under test.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};

use crate::domain::{PayoutId, RunId};

/// The current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock { now: Mutex::new(at) }
    }
    /// Moves it forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
    /// Sets it.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// New payout and run ids.
pub trait IdGenerator: Send + Sync {
    /// A fresh, unique id.
    fn payout_id(&self) -> PayoutId;

    /// A fresh, unique run id. The default is `run_` and a fresh payout id (unique because payout
    /// ids are); a generator whose payout ids tests count on gives runs a sequence of their own.
    fn run_id(&self) -> RunId {
        RunId::new(format!("run_{}", self.payout_id()))
    }
}

/// UUIDv7 ids: unique across processes and ordered by creation time.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn payout_id(&self) -> PayoutId {
        PayoutId::new(uuid::Uuid::now_v7().to_string())
    }

    fn run_id(&self) -> RunId {
        RunId::new(format!("run_{}", uuid::Uuid::now_v7()))
    }
}

/// `po_000001`, `po_000002`, ...: deterministic ids for tests; runs get `run_000001`, ... of their
/// own, so making a run does not shift the payout ids a test expects.
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: AtomicU64,
    next_run: AtomicU64,
}

impl IdGenerator for SequentialIds {
    fn payout_id(&self) -> PayoutId {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        PayoutId::new(format!("po_{n:06}"))
    }

    fn run_id(&self) -> RunId {
        let n = self.next_run.fetch_add(1, Ordering::Relaxed) + 1;
        RunId::new(format!("run_{n:06}"))
    }
}
