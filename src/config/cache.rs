//! The `cache:` section: the grid, TTLs, the range cache and the stores
//! (memory, Redis).

use std::time::Duration;

use serde::Deserialize;

use super::de_duration;

/// The query cache: instant queries on a time grid with single flight, range
/// queries as step-aligned extents, in memory or shared through Redis.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turns the cache off without removing the section (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Instant queries: `time` is rounded down to a multiple of this grid and
    /// the query is evaluated at the rounded time, so every caller in one
    /// grid cell shares one evaluation and gets the same bytes (default 10s).
    #[serde(default = "default_grid", deserialize_with = "de_duration")]
    pub grid: Duration,
    /// How long an instant answer for a recent time is kept (default 1m).
    #[serde(default = "default_instant_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// A rounded `time` older than now minus this horizon counts as old: its
    /// data no longer changes, so its answer is kept for `old_ttl` (default 10m).
    #[serde(default = "default_horizon", deserialize_with = "de_duration")]
    pub horizon: Duration,
    /// How long an instant answer for an old time is kept (default 1h).
    #[serde(default = "default_old_ttl", deserialize_with = "de_duration")]
    pub old_ttl: Duration,
    /// Queries promfed evaluates itself at every grid tick (with default
    /// options), so callers such as analysis runs always find a fresh entry.
    #[serde(default)]
    pub warm_queries: Vec<String>,
    /// The range-query cache.
    #[serde(default)]
    pub range: RangeCacheConfig,
    /// Where entries live: `memory` (this process only, the default) or
    /// `redis` (shared by every promfed replica, with a small memory tier in
    /// front).
    #[serde(default)]
    pub store: CacheStoreKind,
    /// The memory store (also the local tier in front of Redis).
    #[serde(default)]
    pub memory: MemoryStoreConfig,
    /// The Redis store; required when `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisStoreConfig>,
}

/// The range-query cache: results kept as step-aligned extents per query,
/// step and options; only missing parts are evaluated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RangeCacheConfig {
    /// Cache range queries (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Points newer than now minus this are never cached: recent data may
    /// still arrive (default 1m).
    #[serde(default = "default_max_freshness", deserialize_with = "de_duration")]
    pub max_freshness: Duration,
    /// How long a query's extents are kept after their last update (default 1h).
    #[serde(default = "default_old_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
}

impl Default for RangeCacheConfig {
    fn default() -> Self {
        RangeCacheConfig {
            enabled: true,
            max_freshness: default_max_freshness(),
            ttl: default_old_ttl(),
        }
    }
}

/// Which store holds cache entries.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheStoreKind {
    /// In this process's memory.
    #[default]
    Memory,
    /// In Redis, shared by every replica; a memory tier in front.
    Redis,
}

/// The in-memory store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreConfig {
    /// Largest total size of the entries held, in MiB (default 256).
    #[serde(default = "default_memory_mib")]
    pub max_mib: u64,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_mib: default_memory_mib(),
        }
    }
}

/// The Redis store. A Redis outage only turns the shared tier off (a log
/// line and `promfed_cache_store_errors_total`); queries still succeed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisStoreConfig {
    /// Redis URL, e.g. `redis://redis.promfed:6379/0`.
    pub url: String,
    /// Deadline of every Redis call, connecting included (default 100ms).
    #[serde(default = "default_redis_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// After a failure, Redis is left alone for this long (default 5s).
    #[serde(default = "default_redis_backoff", deserialize_with = "de_duration")]
    pub backoff: Duration,
    /// Prefix of every key promfed writes (default `promfed:`).
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
    /// Replicas coalesce through Redis: the first to miss a grid cell takes
    /// a lease on evaluating it and the others wait for its answer, for at
    /// most this long before evaluating themselves (default 10s; `0s`
    /// turns it off, and every replica that misses evaluates).
    #[serde(default = "default_redis_lease", deserialize_with = "de_duration")]
    pub lease: Duration,
}

fn default_true() -> bool {
    true
}

fn default_grid() -> Duration {
    Duration::from_secs(10)
}

fn default_instant_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_horizon() -> Duration {
    Duration::from_secs(600)
}

fn default_old_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_freshness() -> Duration {
    Duration::from_secs(60)
}

fn default_memory_mib() -> u64 {
    256
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_redis_lease() -> Duration {
    Duration::from_secs(10)
}

fn default_redis_backoff() -> Duration {
    Duration::from_secs(5)
}

fn default_redis_prefix() -> String {
    "promfed:".to_string()
}

impl CacheConfig {
    /// Adds this section's problems to `problems`.
    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if self.grid.is_zero() || !self.grid.subsec_nanos().is_multiple_of(1_000_000) {
            problems.push("cache.grid: must be a positive whole number of milliseconds".into());
        }
        for (name, d) in [
            ("cache.ttl", self.ttl),
            ("cache.old_ttl", self.old_ttl),
            ("cache.range.ttl", self.range.ttl),
        ] {
            if d.is_zero() {
                problems.push(format!("{name}: must be greater than 0"));
            }
        }
        if self.memory.max_mib == 0 {
            problems.push("cache.memory.max_mib: must be greater than 0".into());
        }
        for (i, q) in self.warm_queries.iter().enumerate() {
            if let Err(e) = crate::model::query_text::parse(q) {
                problems.push(format!("cache.warm_queries[{i}]: {e}"));
            }
        }
        match (&self.store, &self.redis) {
            (CacheStoreKind::Redis, None) => {
                problems.push("cache.redis: required when cache.store is redis".into())
            }
            (CacheStoreKind::Memory, Some(_)) => problems.push(
                "cache.redis: set, but cache.store is memory (say store: redis to use it)".into(),
            ),
            _ => {}
        }
        if let Some(r) = &self.redis {
            match reqwest::Url::parse(&r.url) {
                Ok(u) if u.scheme() == "redis" => {}
                Ok(u) => problems.push(format!(
                    "cache.redis.url: scheme {:?} is not redis",
                    u.scheme()
                )),
                Err(e) => problems.push(format!("cache.redis.url: {e}")),
            }
            if r.timeout.is_zero() {
                problems.push("cache.redis.timeout: must be greater than 0".into());
            }
        }
    }
}
