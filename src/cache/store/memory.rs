//! The memory store: moka, bounded by total size, each entry with its TTL.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;
use moka::notification::RemovalCause;
use moka::Expiry;

use crate::cache::metrics::CacheMetrics;

#[derive(Clone)]
struct Entry {
    value: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, e: &Entry, _: Instant) -> Option<Duration> {
        Some(e.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        e: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.ttl)
    }
}

/// Entries in this process's memory.
#[derive(Clone)]
pub struct MemoryStore {
    /// Keys are long (the query text); foldhash, randomly seeded per
    /// process, hashes them several times faster than SipHash.
    cache: Cache<String, Entry, foldhash::fast::RandomState>,
}

impl MemoryStore {
    /// A store holding at most `max_bytes` of keys and values.
    pub fn new(max_bytes: u64, metrics: &CacheMetrics) -> Self {
        let evictions = metrics.evictions.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, e: &Entry| {
                u32::try_from(k.len() + e.value.len() + 64).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Size => evictions.with_label_values(&["size"]).inc(),
                RemovalCause::Expired => evictions.with_label_values(&["expired"]).inc(),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build_with_hasher(foldhash::fast::RandomState::default());
        MemoryStore { cache }
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.cache.get(key).await.map(|e| e.value)
    }

    pub async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        self.cache
            .insert(key.to_string(), Entry { value, ttl })
            .await;
    }

    /// Stores `value` unless an entry exists; returns the entry held.
    pub async fn put_first(&self, key: &str, value: Bytes, ttl: Duration) -> Bytes {
        self.cache
            .entry(key.to_string())
            .or_insert(Entry { value, ttl })
            .await
            .into_value()
            .value
    }

    /// Runs moka's pending housekeeping (evictions), for tests.
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Number of entries (approximate until [`sync`](Self::sync)).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> CacheMetrics {
        CacheMetrics::register(&prometheus::Registry::new()).expect("metrics")
    }

    #[tokio::test]
    async fn put_get_and_first_writer_wins() {
        let m = MemoryStore::new(1 << 20, &metrics());
        let ttl = Duration::from_secs(60);
        assert_eq!(m.get("k").await, None);
        assert_eq!(
            m.put_first("k", Bytes::from("a"), ttl).await,
            Bytes::from("a")
        );
        assert_eq!(
            m.put_first("k", Bytes::from("b"), ttl).await,
            Bytes::from("a")
        );
        m.put("k", Bytes::from("c"), ttl).await;
        assert_eq!(m.get("k").await, Some(Bytes::from("c")));
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let met = metrics();
        let m = MemoryStore::new(1 << 20, &met);
        m.put("short", Bytes::from("x"), Duration::from_millis(50))
            .await;
        m.put("long", Bytes::from("y"), Duration::from_secs(60))
            .await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(m.get("short").await, None);
        assert_eq!(m.get("long").await, Some(Bytes::from("y")));
    }

    #[tokio::test]
    async fn size_bound_evicts_and_counts() {
        let met = metrics();
        let m = MemoryStore::new(64 * 1024, &met);
        let big = Bytes::from(vec![b'x'; 4096]);
        for i in 0..100 {
            m.put(&format!("k{i}"), big.clone(), Duration::from_secs(60))
                .await;
        }
        m.sync().await;
        assert!(m.entry_count() <= 16, "{} entries", m.entry_count());
        assert!(met.evictions.with_label_values(&["size"]).get() > 0);
    }
}
