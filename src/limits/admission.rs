//! Admission: a bounded number of queries evaluate at once, a bounded
//! queue waits for a slot (and for room in the memory pool) until the
//! query's deadline; [`Limits::run`] runs one query under its budget and
//! records it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::DEFAULT_MAX_QUERY_BYTES;
use super::{
    memory, scope, AdmissionError, LimitsConfig, QueryContext, QueryFailure, QueryShape,
    QueryTextError,
};

/// The limits in force and the admission gate they govern.
pub struct Limits {
    pub config: LimitsConfig,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    /// The memory all queries together may hold.
    memory: Arc<memory::MemoryPool>,
    /// `max_query_bytes` in force (its default depends on the memory limit).
    query_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(LimitsConfig::default())
    }
}

/// Decrements the queue length when a waiting query leaves the queue.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        let memory = config
            .max_memory_bytes
            .unwrap_or_else(memory::default_limit);
        let query_bytes = config
            .max_query_bytes
            .unwrap_or(DEFAULT_MAX_QUERY_BYTES.min(memory / 2));
        Limits {
            slots: Arc::new(Semaphore::new(config.max_concurrent_queries.max(1))),
            queued: AtomicUsize::new(0),
            memory: Arc::new(memory::MemoryPool::new(memory)),
            query_bytes,
            config,
        }
    }

    /// The memory pool of every query (its limit and what is held now).
    pub fn memory(&self) -> &memory::MemoryPool {
        &self.memory
    }

    /// `max_query_bytes` in force.
    pub fn max_query_bytes(&self) -> u64 {
        self.query_bytes
    }

    /// The timeout for a request asking for `requested_ms` (`timeout`
    /// parameter): the config's `query_timeout` unless the request asks for
    /// less.
    pub fn timeout_for(&self, requested_ms: Option<i64>) -> Duration {
        match requested_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64).min(self.config.query_timeout),
            _ => self.config.query_timeout,
        }
    }

    /// Refuses query text (parameter `param`) that is too long, nests too
    /// deep or chains too many operators, before anything parses it.
    pub fn check_query_text(&self, param: &str, query: &str) -> Result<(), QueryTextError> {
        let c = &self.config;
        if query.len() > c.max_query_length {
            return Err(QueryTextError::new(
                param,
                format!(
                    "query is {} bytes long, more than the limit of {} bytes (limits.max_query_length)",
                    query.len(),
                    c.max_query_length
                ),
            ));
        }
        let shape = QueryShape::remembered(query);
        if shape.depth > c.max_query_depth {
            return Err(QueryTextError::new(
                param,
                format!(
                    "query nests {} levels deep, more than the limit of {} (limits.max_query_depth)",
                    shape.depth, c.max_query_depth
                ),
            ));
        }
        if shape.operators > c.max_query_operators {
            return Err(QueryTextError::new(
                param,
                format!(
                    "query has {} operators, more than the limit of {} (limits.max_query_operators)",
                    shape.operators, c.max_query_operators
                ),
            ));
        }
        Ok(())
    }

    /// Waits for an evaluation slot until `deadline`; refuses at once when
    /// the queue is full.
    async fn admit(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, AdmissionError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return self.room_for(p, deadline).await;
        }
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(&self.queued);
        if before >= self.config.max_queued_queries {
            crate::telemetry::query_refused("queue_full");
            return Err(AdmissionError::QueueFull {
                running: self.config.max_concurrent_queries,
                waiting: self.config.max_queued_queries,
            });
        }
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => self.room_for(p, deadline).await,
            Ok(Err(_)) => Err(AdmissionError::ShuttingDown),
            Err(_) => {
                crate::telemetry::query_refused("queue_timeout");
                Err(AdmissionError::QueueTimeout)
            }
        }
    }

    /// Keeps slot `p` once the memory pool has room for a new query; while
    /// it has none, the query waits (holding its slot) until `deadline`.
    async fn room_for(
        &self,
        p: OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, AdmissionError> {
        if self.memory.wait_for_room(deadline).await {
            return Ok(p);
        }
        crate::telemetry::query_refused("memory_timeout");
        Err(AdmissionError::MemoryTimeout)
    }

    /// Evaluates `fut` as one query of `kind` (`instant` or `range`): waits
    /// for a slot, runs it under the query's budget until `timeout` (queue
    /// time included), records metrics and the query log. The slot and the
    /// in-flight count belong to the query's context: work that carries the
    /// context on (a single flight) holds them until it ends.
    pub async fn run<T, E: From<AdmissionError> + QueryFailure>(
        &self,
        kind: &'static str,
        query: &str,
        timeout: Duration,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        crate::telemetry::placement::needs_workers("admission and evaluation");
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let slot = self.admit(deadline).await?;
        let ctx = Arc::new(
            QueryContext::new(&self.config)
                .with_deadline(deadline.into_std())
                .with_memory(self.memory.clone(), self.query_bytes)
                .holding(slot),
        );
        let evaluated = tokio::time::timeout_at(deadline, scope(ctx.clone(), fut)).await;
        let result = match evaluated {
            Ok(r) => r,
            Err(_) => Err(AdmissionError::Deadline.into()),
        };
        crate::telemetry::query_done(&crate::telemetry::QueryRecord {
            kind,
            query,
            duration: started.elapsed(),
            samples: ctx.samples(),
            backends: ctx.backends(),
            cache: ctx.cache(),
            error: result.as_ref().err().map(|e| e.error_type()),
        });
        result
    }
}
