//! Coalescing an instant miss across replicas that share Redis: the first
//! to miss a cell takes a lease (`cache.redis.lease`) and evaluates; the
//! others poll Redis for its answer and evaluate themselves only when it
//! lets go without storing one or the lease runs out.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::key::Canonical;
use super::store::{self, Lease};
use super::{Answer, CacheStatus, Evaluate, Flown, Inner};
use crate::promql::QueryOptions;

/// How often a replica waiting for another's evaluation looks in Redis.
const LEASE_POLL: Duration = Duration::from_millis(20);

impl Inner {
    pub(super) async fn evaluate_instant(
        &self,
        eval: Arc<dyn Evaluate>,
        key: &str,
        canon: &Canonical,
        t: i64,
        opts: &QueryOptions,
    ) -> Flown {
        let ttl = self.instant_ttl(t);
        // A flight that just landed may have stored the answer between this
        // caller's lookup and its start of this flight.
        if let Some(body) = self.stores.get(key, ttl).await {
            return Ok(Answer::stored(body));
        }
        // A time still ahead is never stored, so nobody could wait for it.
        let storable = t <= (self.clock)();
        let mut lease = None;
        if let (true, Some(redis)) = (
            storable && !self.settings.lease.is_zero(),
            self.stores.shared(),
        ) {
            match redis.take_lease(key, self.settings.lease).await {
                Lease::Ours(token) => {
                    // Another replica may have stored it and let go since
                    // this one looked.
                    if let Some(body) = self.stores.get(key, ttl).await {
                        redis.release_lease(key, &token).await;
                        return Ok(Answer::stored(body));
                    }
                    lease = Some(token);
                }
                Lease::Elsewhere => {
                    if let Some(body) = self.await_other_replica(redis, key).await {
                        self.stores.memory().put(key, body.clone(), ttl).await;
                        return Ok(Answer {
                            body,
                            status: CacheStatus::Coalesced,
                            has_warnings: false,
                        });
                    }
                }
                Lease::Unavailable => {}
            }
        }
        let answer = self
            .evaluate_and_store(eval, key, canon, t, opts, storable, ttl)
            .await;
        if let (Some(token), Some(redis)) = (lease, self.stores.shared()) {
            redis.release_lease(key, &token).await;
        }
        answer
    }

    /// Waits while another replica holds the lease on `key`, for its stored
    /// answer; `None` when it let go without storing one (an error, or
    /// warnings), the lease ran out, or Redis stopped answering: then this
    /// replica evaluates itself.
    async fn await_other_replica(&self, redis: &store::RedisStore, key: &str) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + self.settings.lease;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LEASE_POLL).await;
            match redis.entry_or_lease(key).await? {
                (Some(body), _) => {
                    self.metrics
                        .remote_waits
                        .with_label_values(&["answered"])
                        .inc();
                    return Some(body);
                }
                (None, true) => {}
                (None, false) => break,
            }
        }
        self.metrics
            .remote_waits
            .with_label_values(&["gave_up"])
            .inc();
        None
    }
}
