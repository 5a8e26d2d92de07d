//! The memory every query together may hold (`limits.max_memory_bytes`):
//! one pool that each query's charges draw from, so that two large queries
//! are refused or wait instead of aborting the process between them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::meter::LimitError;

/// Share of the memory available to the process that queries may hold
/// together by default (the rest is the process itself, the cache, buffers
/// of requests and answers in flight, and allocator slack).
const DEFAULT_SHARE_PERCENT: u64 = 50;

/// When neither a cgroup limit nor the machine's memory can be read.
const FALLBACK_MEMORY_BYTES: u64 = 4 << 30;

/// Share of the pool that must be free for a new query to start.
const ADMIT_BELOW_PERCENT: u64 = 90;

/// The shared pool of query memory.
#[derive(Debug)]
pub struct MemoryPool {
    limit: u64,
    used: AtomicU64,
    released: Notify,
}

impl MemoryPool {
    pub fn new(limit: u64) -> MemoryPool {
        crate::telemetry::query_memory_limit(limit);
        MemoryPool {
            limit: limit.max(1),
            used: AtomicU64::new(0),
            released: Notify::new(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by all queries now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Takes `n` bytes; `Err` (nothing taken) when the pool would overflow.
    pub fn take(&self, n: u64) -> Result<(), LimitError> {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let next = cur.saturating_add(n);
            if next > self.limit {
                crate::telemetry::query_refused("memory");
                return Err(LimitError::Memory { limit: self.limit });
            }
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    crate::telemetry::query_memory(i64::try_from(n).unwrap_or(i64::MAX));
                    return Ok(());
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives `n` bytes back and wakes queries waiting to start.
    pub fn give(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            let next = cur.saturating_sub(n);
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    crate::telemetry::query_memory(-i64::try_from(cur - next).unwrap_or(0));
                    break;
                }
                Err(actual) => cur = actual,
            }
        }
        self.released.notify_waiters();
    }

    fn has_room(&self) -> bool {
        self.used() < self.limit / 100 * ADMIT_BELOW_PERCENT
    }

    /// Waits until the pool has room for a new query (a tenth of it free),
    /// at most until `deadline`; `false` when it did not get room in time.
    pub async fn wait_for_room(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let released = self.released.notified();
            if self.has_room() {
                return true;
            }
            // Wake on a release, and look again now and then in case a
            // release happened between the look and the wait.
            let next =
                (tokio::time::Instant::now() + std::time::Duration::from_millis(50)).min(deadline);
            let _ = tokio::time::timeout_at(next, released).await;
            if tokio::time::Instant::now() >= deadline {
                return self.has_room();
            }
        }
    }
}

/// Bytes kept taken from the pool until dropped (an answer while it is
/// sent, after its query has ended).
#[derive(Debug)]
pub struct Held {
    pool: Option<Arc<MemoryPool>>,
    bytes: u64,
}

impl Held {
    pub fn new(pool: Option<Arc<MemoryPool>>, bytes: u64) -> Held {
        Held { pool, bytes }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives up to `n` of the held bytes back now (part of the answer was
    /// sent).
    pub fn give_back(&mut self, n: u64) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        if let Some(pool) = &self.pool {
            pool.give(n);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give(self.bytes);
        }
    }
}

/// The default of `limits.max_memory_bytes`: half the memory the process
/// may use (its cgroup's limit, else the machine's memory).
pub fn default_limit() -> u64 {
    available_memory().unwrap_or(FALLBACK_MEMORY_BYTES) / 100 * DEFAULT_SHARE_PERCENT
}

/// The memory limit of this process's cgroup (v2, then v1), else the
/// machine's total memory.
fn available_memory() -> Option<u64> {
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    // v1 reports "no limit" as a number near 2^63.
    .find(|&n| n > 0 && n < (1 << 60));
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| meminfo_total(&s));
    match (cgroup, total) {
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

/// `MemTotal` of /proc/meminfo, bytes.
fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_refuses_what_would_overflow_and_takes_it_back() {
        let p = MemoryPool::new(1000);
        p.take(600).expect("fits");
        assert_eq!(p.take(401), Err(LimitError::Memory { limit: 1000 }));
        assert_eq!(p.used(), 600);
        p.give(600);
        p.take(1000).expect("fits when free");
        p.give(5000);
        assert_eq!(p.used(), 0);
    }

    #[test]
    fn held_bytes_go_back_when_dropped() {
        let p = Arc::new(MemoryPool::new(1000));
        p.take(300).expect("fits");
        let held = Held::new(Some(p.clone()), 300);
        assert_eq!(p.used(), 300);
        drop(held);
        assert_eq!(p.used(), 0);
        // Given back in parts, never more than was held.
        p.take(300).expect("fits");
        let mut held = Held::new(Some(p.clone()), 300);
        held.give_back(100);
        assert_eq!((p.used(), held.bytes()), (200, 200));
        held.give_back(1000);
        assert_eq!((p.used(), held.bytes()), (0, 0));
        drop(held);
        assert_eq!(p.used(), 0);
    }

    #[tokio::test]
    async fn a_new_query_waits_for_room() {
        let p = std::sync::Arc::new(MemoryPool::new(1000));
        p.take(950).expect("fits");
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        assert!(
            !p.wait_for_room(soon).await,
            "no room: waits, then gives up"
        );
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move {
                let later = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                p.wait_for_room(later).await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        p.give(500);
        assert!(waiter.await.expect("join"));
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        let s = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(meminfo_total(s), Some(24_576_000 * 1024));
        assert_eq!(meminfo_total("nothing"), None);
        assert!(default_limit() > 0);
    }
}
