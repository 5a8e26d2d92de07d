//! The Redis store, shared by every promfed replica. Every call is bounded
//! by a short deadline; a failure turns the store off for a back-off period
//! (a log line and a metric) and the query goes on without it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::cache::metrics::CacheMetrics;
use crate::config::RedisStoreConfig;

/// The outcome of asking for the lease on evaluating a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// Taken: evaluate, store, then release with this token.
    Ours(String),
    /// Another replica holds it: wait for its answer.
    Elsewhere,
    /// Redis did not answer: nobody coordinates, evaluate.
    Unavailable,
}

/// A Redis server holding entries under a key prefix.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    backoff: Duration,
    /// Reference point of `down_until_ms`.
    epoch: Instant,
    /// Until when (ms after `epoch`) calls are skipped after a failure.
    down_until_ms: AtomicU64,
    up: AtomicBool,
    metrics: CacheMetrics,
}

impl RedisStore {
    /// Prepares a connection; it is made on first use, so promfed starts
    /// (and serves) while Redis is unreachable. Must run inside Tokio.
    pub fn new(
        cfg: &RedisStoreConfig,
        metrics: &CacheMetrics,
    ) -> Result<Self, crate::cache::SetupError> {
        let client =
            redis::Client::open(cfg.url.as_str()).map_err(|e| format!("cache.redis.url: {e}"))?;
        let conn_cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            .set_number_of_retries(1)
            .set_max_delay(cfg.backoff);
        let conn = ConnectionManager::new_lazy_with_config(client, conn_cfg)
            .map_err(|e| format!("cache.redis: {e}"))?;
        metrics.redis_up.set(1);
        Ok(RedisStore {
            conn,
            prefix: cfg.key_prefix.clone(),
            timeout: cfg.timeout,
            backoff: cfg.backoff,
            epoch: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            up: AtomicBool::new(true),
            metrics: metrics.clone(),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs one command under the deadline; `None` on any failure.
    async fn call<T: redis::FromRedisValue>(&self, op: &'static str, cmd: redis::Cmd) -> Option<T> {
        if self.elapsed_ms() < self.down_until_ms.load(Ordering::Relaxed) {
            self.metrics.store_errors.with_label_values(&[op]).inc();
            return None;
        }
        let mut conn = self.conn.clone();
        let outcome = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await;
        match outcome {
            Ok(Ok(v)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis cache store reachable again; sharing cache entries");
                    self.metrics.redis_up.set(1);
                }
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(op, &format!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    fn failed(&self, op: &'static str, why: &str) {
        self.metrics.store_errors.with_label_values(&[op]).inc();
        let backoff_ms = u64::try_from(self.backoff.as_millis()).unwrap_or(u64::MAX);
        self.down_until_ms.store(
            self.elapsed_ms().saturating_add(backoff_ms),
            Ordering::Relaxed,
        );
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                op,
                error = why,
                "redis cache store unavailable; continuing without the shared cache"
            );
            self.metrics.redis_up.set(0);
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn ttl_ms(ttl: Duration) -> u64 {
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        let mut c = redis::cmd("GET");
        c.arg(self.key(key));
        self.call::<Option<Vec<u8>>>("get", c)
            .await
            .flatten()
            .map(Bytes::from)
    }

    pub async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        let mut c = redis::cmd("SET");
        c.arg(self.key(key))
            .arg(&value[..])
            .arg("PX")
            .arg(Self::ttl_ms(ttl));
        let _ = self.call::<()>("set", c).await;
    }

    /// `SET NX GET`: stores `value` unless the key exists and returns what
    /// Redis holds afterwards (`value` itself when Redis is unavailable).
    pub async fn put_first(&self, key: &str, value: Bytes, ttl: Duration) -> Bytes {
        let mut c = redis::cmd("SET");
        c.arg(self.key(key))
            .arg(&value[..])
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(Self::ttl_ms(ttl));
        match self.call::<Option<Vec<u8>>>("set", c).await {
            Some(Some(existing)) => Bytes::from(existing),
            _ => value,
        }
    }

    fn lease_key(&self, key: &str) -> String {
        format!("{}lease:{key}", self.prefix)
    }

    /// Tries to take the lease on evaluating `key` for `lease` (`SET NX
    /// PX`): this replica evaluates and the others wait for its answer.
    pub async fn take_lease(&self, key: &str, lease: Duration) -> Lease {
        let token = format!("{:016x}", rand::random::<u64>());
        let mut c = redis::cmd("SET");
        c.arg(self.lease_key(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(Self::ttl_ms(lease));
        match self.call::<Option<String>>("lease", c).await {
            Some(Some(_)) => Lease::Ours(token),
            Some(None) => Lease::Elsewhere,
            None => Lease::Unavailable,
        }
    }

    /// Gives the lease up, if it is still this replica's (an expired lease
    /// may have been taken by another since).
    pub async fn release_lease(&self, key: &str, token: &str) {
        let mut c = redis::cmd("EVAL");
        c.arg("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end")
            .arg(1)
            .arg(self.lease_key(key))
            .arg(token);
        let _ = self.call::<i64>("lease", c).await;
    }

    /// The entry for `key` if stored, and whether a lease on evaluating it
    /// is held; `None` when Redis does not answer.
    pub async fn entry_or_lease(&self, key: &str) -> Option<(Option<Bytes>, bool)> {
        let mut c = redis::cmd("MGET");
        c.arg(self.key(key)).arg(self.lease_key(key));
        let mut got = self
            .call::<Vec<Option<Vec<u8>>>>("get", c)
            .await?
            .into_iter();
        let value = got.next().flatten().map(Bytes::from);
        let leased = got.next().flatten().is_some();
        Some((value, leased))
    }

    /// True while the store is believed reachable.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}
