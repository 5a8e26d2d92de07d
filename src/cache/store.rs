//! Where cache entries live: a memory tier, and optionally Redis shared by
//! every replica behind it.

pub mod memory;
pub mod redis;

use std::time::Duration;

use bytes::Bytes;

pub use self::memory::MemoryStore;
pub use self::redis::{Lease, RedisStore};

/// The memory tier and, when configured, the shared Redis tier.
pub struct Stores {
    memory: MemoryStore,
    shared: Option<RedisStore>,
}

impl Stores {
    pub fn new(memory: MemoryStore, shared: Option<RedisStore>) -> Self {
        Stores { memory, shared }
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryStore {
        &self.memory
    }

    /// The shared tier, if any.
    pub fn shared(&self) -> Option<&RedisStore> {
        self.shared.as_ref()
    }

    /// The entry for `key`: from memory, else from Redis (then kept in
    /// memory for `fill_ttl`).
    pub async fn get(&self, key: &str, fill_ttl: Duration) -> Option<Bytes> {
        if let Some(v) = self.memory.get(key).await {
            return Some(v);
        }
        let v = self.shared.as_ref()?.get(key).await?;
        self.memory.put(key, v.clone(), fill_ttl).await;
        Some(v)
    }

    /// Stores `value` unless an entry already exists, and returns the entry
    /// now held: with Redis, the first replica's answer wins everywhere, so
    /// every replica serves the same bytes for one key.
    pub async fn put_first(&self, key: &str, value: Bytes, ttl: Duration) -> Bytes {
        let held = match &self.shared {
            Some(r) => r.put_first(key, value, ttl).await,
            None => value,
        };
        self.memory.put_first(key, held, ttl).await
    }

    /// Stores `value`, replacing any entry.
    pub async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        if let Some(r) = &self.shared {
            r.put(key, value.clone(), ttl).await;
        }
        self.memory.put(key, value, ttl).await;
    }
}
