//! Instant queries: the grid cell's stored answer, or one evaluation per
//! cell shared by a single flight (and, with Redis, by every replica:
//! [`super::lease`]); stored unless it has warnings or is for a time
//! still ahead.

use std::sync::Arc;
use std::time::Duration;

use super::key::{self, Canonical};
use super::{
    flight_panicked, query_time_left, Answer, CacheError, CacheStatus, Evaluate, Flown, Inner,
    QueryCache, Variant,
};
use crate::promql::QueryOptions;

impl QueryCache {
    /// Answers an instant query at `t_ms` (evaluated at `t_ms` rounded down
    /// to the grid).
    pub async fn instant(
        &self,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
        timeout: Duration,
    ) -> Result<Answer, CacheError> {
        self.instant_as("instant", query, t_ms, opts, variant, timeout)
            .await
    }

    pub(super) async fn instant_as(
        &self,
        kind: &'static str,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
        timeout: Duration,
    ) -> Result<Answer, CacheError> {
        let inner = &self.inner;
        let eval = variant.eval.clone().unwrap_or_else(|| inner.eval.clone());
        let Some(canon) = inner.canon.get(query) else {
            inner.count(kind, CacheStatus::Bypass);
            let r = inner
                .bounded(timeout, eval.instant(query, t_ms, opts))
                .await?;
            return Answer::of(r, CacheStatus::Bypass).await;
        };
        let t = key::round_down(t_ms, inner.settings.grid_ms);
        let key = key::instant_key(&canon, t, opts, &variant.key);
        if let Some(body) = inner.stores.get(&key, inner.instant_ttl(t)).await {
            inner.count(kind, CacheStatus::Hit);
            return Ok(Answer::stored(body));
        }
        let (flight, leader) = inner.flights.join_or_start(
            &key,
            || {
                let (inner, key, opts) = (self.inner.clone(), key.clone(), opts.clone());
                async move { inner.evaluate_instant(eval, &key, &canon, t, &opts).await }
            },
            flight_panicked,
        );
        self.finish(kind, timeout, flight, leader).await
    }

    /// The answer for an instant query when this process already holds its
    /// grid cell in memory, without evaluating, waiting or asking Redis;
    /// `None` sends the caller to [`instant`](Self::instant). For a query
    /// text seen before (its canonical form memoized) a hit costs a memo
    /// lookup, a key and a map lookup; a text not seen before is `None`
    /// (it is parsed on the workers, by [`instant`](Self::instant)).
    pub async fn instant_hit(
        &self,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
    ) -> Option<Answer> {
        // Only what is memoized: parsing belongs on the workers.
        let canon = self.inner.canon.peek(query).flatten()?;
        self.memory_hit(&canon, t_ms, opts, variant).await
    }

    /// As [`instant_hit`](Self::instant_hit), but a text not seen before is
    /// parsed to find its canonical form (so `sum( up )` finds the cell of
    /// `sum(up)`): for the workers, where parsing may run; like a hit on
    /// the connection thread it takes no admission slot.
    pub async fn instant_hit_parsing(
        &self,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
    ) -> Option<Answer> {
        let canon = self.inner.canon.get(query)?;
        self.memory_hit(&canon, t_ms, opts, variant).await
    }

    /// The stored answer for the grid cell of `canon` at `t_ms`, if this
    /// process holds it in memory.
    async fn memory_hit(
        &self,
        canon: &Canonical,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
    ) -> Option<Answer> {
        let inner = &self.inner;
        let t = key::round_down(t_ms, inner.settings.grid_ms);
        let key = key::instant_key(canon, t, opts, &variant.key);
        let body = inner.stores.memory().get(&key).await?;
        inner.metrics.instant_hits.inc();
        Some(Answer::stored(body))
    }
}

impl Inner {
    /// TTL of an instant answer at rounded time `t`.
    pub(super) fn instant_ttl(&self, t: i64) -> Duration {
        let now = (self.clock)();
        if t < now.saturating_sub(self.settings.horizon_ms) {
            self.settings.old_ttl
        } else {
            self.settings.ttl
        }
    }

    /// Evaluates an instant query and stores the answer when it may be.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn evaluate_and_store(
        &self,
        eval: Arc<dyn Evaluate>,
        key: &str,
        canon: &Canonical,
        t: i64,
        opts: &QueryOptions,
        storable: bool,
        ttl: Duration,
    ) -> Flown {
        self.metrics
            .evaluations
            .with_label_values(&["instant"])
            .inc();
        self.cells.record(&canon.text, t, (self.clock)());
        let r = self
            .bounded(query_time_left(), eval.instant(&canon.text, t, opts))
            .await?;
        let mut answer = Answer::of(r, CacheStatus::Miss).await?;
        if answer.has_warnings {
            self.not_stored("warnings");
        } else if !storable {
            // A time still ahead: samples up to it may yet arrive.
            self.not_stored("fresh");
        } else {
            answer.body = self.stores.put_first(key, answer.body, ttl).await;
        }
        Ok(answer)
    }
}
