//! One query's budget: the samples and series it fetched, the bytes it
//! holds (drawn from the shared memory pool), its deadline, held in a
//! task-local [`QueryContext`] that work carried to other tasks keeps.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::config::DEFAULT_MAX_QUERY_BYTES;
use super::{fetched, memory, meter, shares, ChargeError, LimitsConfig};
use crate::model::Series;

/// Prometheus's message when a query would load more than `--query.max-samples`.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// What one query has fetched and holds so far, and its limits.
#[derive(Debug)]
pub struct QueryContext {
    max_samples: u64,
    max_series_per_backend: u64,
    /// Samples fetched from backends.
    samples: AtomicU64,
    /// Samples decoded from backends' answers so far, counted as they
    /// arrive (before any answer is whole), over every backend together.
    arriving: AtomicU64,
    /// Samples the engine holds now (points, windows, subquery points).
    held_samples: AtomicU64,
    /// Bytes held now: fetched series, engine values, the answer.
    bytes: AtomicU64,
    max_bytes: u64,
    max_response_bytes: u64,
    /// The pool every query's bytes come from (none in tests).
    memory: Option<Arc<memory::MemoryPool>>,
    /// When the query must have been answered.
    deadline: Option<Instant>,
    /// The in-flight count and the admission slot, held while the context
    /// lives (dropped in this order: the count never shows more queries
    /// than there are slots).
    _slot: Option<(crate::telemetry::InFlight, OwnedSemaphorePermit)>,
    backends: Mutex<BTreeSet<String>>,
    /// How the cache answered (`hit`, `miss`, ...), when it did.
    cache: Mutex<Option<&'static str>>,
    /// What the query planner pushed down to backends or read raw, one
    /// note a node (`X-Promfed-Plan`).
    plan: Mutex<Vec<String>>,
    /// Answer bytes read from backends, and their limit.
    pub fetched: fetched::FetchedBytes,
    /// This query's share of each backend's connections.
    pub backend_shares: shares::Shares,
}

impl QueryContext {
    pub fn new(cfg: &LimitsConfig) -> Self {
        QueryContext {
            max_samples: cfg.max_samples,
            max_series_per_backend: cfg.max_series_per_backend,
            samples: AtomicU64::new(0),
            arriving: AtomicU64::new(0),
            held_samples: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            max_bytes: cfg.max_query_bytes.unwrap_or(DEFAULT_MAX_QUERY_BYTES),
            max_response_bytes: cfg.max_response_bytes,
            memory: None,
            deadline: None,
            _slot: None,
            backends: Mutex::new(BTreeSet::new()),
            cache: Mutex::new(None),
            plan: Mutex::new(Vec::new()),
            fetched: fetched::FetchedBytes::new(cfg.max_fetched_bytes),
            backend_shares: shares::Shares::default(),
        }
    }

    /// This context with a deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// This context drawing its bytes from `pool`, at most `max_bytes`.
    pub fn with_memory(mut self, pool: Arc<memory::MemoryPool>, max_bytes: u64) -> Self {
        self.memory = Some(pool);
        self.max_bytes = max_bytes;
        self
    }

    /// This context holding the query's admission slot (and counting as a
    /// query in flight) for as long as it lives.
    pub(super) fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self._slot = Some((crate::telemetry::InFlight::enter(), slot));
        self
    }

    /// When the query must have been answered, if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// `limits.max_response_bytes` of this query.
    pub fn max_response_bytes(&self) -> u64 {
        self.max_response_bytes
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Moves up to `n` bytes this query holds (its answer) out of the
    /// query into a guard that keeps them taken from the memory pool until
    /// it drops: the answer stays counted while it is sent.
    pub fn keep_bytes(&self, n: u64) -> memory::Held {
        let n = n.min(self.bytes());
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        memory::Held::new(self.memory.clone(), n)
    }

    /// Keeps `n` bytes of answer taken from the memory pool past the query
    /// (a stream still to be sent): what the query already holds moves
    /// into the guard, the rest is taken from the pool; `Err` (nothing
    /// moved or taken) when the pool has no room for the rest.
    pub fn keep_answer(&self, n: u64) -> Result<memory::Held, meter::LimitError> {
        let kept = n.min(self.bytes());
        if let Some(pool) = &self.memory {
            pool.take(n - kept)?;
        }
        self.bytes.fetch_sub(kept, Ordering::AcqRel);
        Ok(memory::Held::new(self.memory.clone(), n))
    }

    /// Charges bytes held by this query; `Err` (nothing charged) over the
    /// query's or the pool's limit.
    fn take_bytes(&self, n: u64) -> Result<(), meter::LimitError> {
        let total = self.bytes.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        if total > self.max_bytes {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
            return Err(meter::LimitError::Bytes {
                limit: self.max_bytes,
            });
        }
        if let Some(pool) = &self.memory {
            if let Err(e) = pool.take(n) {
                self.bytes.fetch_sub(n, Ordering::AcqRel);
                return Err(e);
            }
        }
        Ok(())
    }

    fn give_bytes(&self, n: u64) {
        let n = n.min(self.bytes());
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        if let Some(pool) = &self.memory {
            pool.give(n);
        }
    }

    /// Charges values the engine is about to build: `samples` against
    /// `max_samples` (samples held at once, as Prometheus counts them) and
    /// `bytes` against the byte budgets.
    pub(crate) fn hold(&self, samples: u64, bytes: u64) -> Result<(), meter::LimitError> {
        let total = self
            .held_samples
            .fetch_add(samples, Ordering::AcqRel)
            .saturating_add(samples);
        if total > self.max_samples {
            self.held_samples.fetch_sub(samples, Ordering::AcqRel);
            return Err(meter::LimitError::Samples);
        }
        if let Err(e) = self.take_bytes(bytes) {
            self.held_samples.fetch_sub(samples, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    /// Gives back what [`hold`](Self::hold) took, for values dropped.
    pub(crate) fn unhold(&self, samples: u64, bytes: u64) {
        let _ = self
            .held_samples
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(samples))
            });
        self.give_bytes(bytes);
    }

    /// Samples fetched so far.
    pub fn samples(&self) -> u64 {
        self.samples.load(Ordering::Acquire)
    }

    /// Samples this query may still fetch.
    pub fn samples_left(&self) -> u64 {
        self.max_samples.saturating_sub(self.samples())
    }

    /// Samples the query's backends may still send, together, before the
    /// query is over `max_samples` (what [`QueryContext::arrive`] counts).
    pub fn arriving_left(&self) -> u64 {
        self.max_samples
            .saturating_sub(self.arriving.load(Ordering::Acquire))
    }

    /// Counts `n` samples just decoded from a backend's answer, while the
    /// answers still arrive: an error once every backend together has sent
    /// more than `max_samples`. A source checks this as it decodes, so a
    /// query fanned out to many backends stops near its budget, not at
    /// the budget times the number of backends (each answer is charged
    /// whole again by [`QueryContext::charge`]).
    pub fn arrive(&self, n: u64) -> Result<(), ChargeError> {
        let total = self
            .arriving
            .fetch_add(n, Ordering::AcqRel)
            .saturating_add(n);
        if total > self.max_samples {
            return Err(ChargeError::Samples);
        }
        Ok(())
    }

    /// How the cache answered this query, if it did.
    pub fn cache(&self) -> Option<&'static str> {
        self.cache.lock().ok().and_then(|c| *c)
    }

    /// The planner's notes so far (what was pushed down).
    pub fn plan(&self) -> Vec<String> {
        self.plan.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The backends asked so far, by name.
    pub fn backends(&self) -> Vec<String> {
        self.backends
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Charges one backend's answer (`series`); an error when it breaks a
    /// limit.
    pub fn charge(&self, backend: &str, series: &[Series]) -> Result<(), ChargeError> {
        if let Ok(mut b) = self.backends.lock() {
            if !b.contains(backend) {
                b.insert(backend.to_string());
            }
        }
        let out = series;
        let series = out.len() as u64;
        if series > self.max_series_per_backend {
            return Err(ChargeError::SeriesPerBackend {
                backend: backend.to_string(),
                series,
                limit: self.max_series_per_backend,
            });
        }
        let samples = sample_count(out);
        let total = self.samples.fetch_add(samples, Ordering::AcqRel) + samples;
        if total > self.max_samples {
            return Err(ChargeError::Samples);
        }
        // The fetched series stay in memory for the rest of the query.
        let bytes: u64 = out
            .iter()
            .map(|s| meter::label_bytes(&s.labels) + s.samples.len() as u64 * meter::SAMPLE_BYTES)
            .sum();
        self.take_bytes(bytes).map_err(ChargeError::Memory)
    }
}

impl Drop for QueryContext {
    fn drop(&mut self) {
        // Whatever the query still held goes back to the pool.
        self.give_bytes(self.bytes());
    }
}

tokio::task_local! {
    static QUERY: Arc<QueryContext>;
}

/// Runs `fut` with `ctx` as the current query's context (also for code that
/// moves an evaluation to another task).
pub async fn scope<F: Future>(ctx: Arc<QueryContext>, fut: F) -> F::Output {
    QUERY.scope(ctx, fut).await
}

/// Records a planner note for the current query, if any.
pub fn note_plan(note: String) {
    if let Some(ctx) = current() {
        if let Ok(mut p) = ctx.plan.lock() {
            p.push(note);
        }
    }
}

/// Records how the cache answered the current query, if any.
pub fn note_cache(outcome: &'static str) {
    if let Some(ctx) = current() {
        if let Ok(mut c) = ctx.cache.lock() {
            *c = Some(outcome);
        }
    }
}

/// `fut` carrying the current query's context (if any), for running it in
/// another task (`tokio::spawn`), where task-locals do not follow.
pub fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let ctx = current();
    async move {
        match ctx {
            Some(ctx) => scope(ctx, fut).await,
            None => fut.await,
        }
    }
}

/// The current query's context, if running inside [`scope`].
pub fn current() -> Option<Arc<QueryContext>> {
    QUERY.try_with(Arc::clone).ok()
}

/// Samples in `series`.
pub fn sample_count(series: &[Series]) -> u64 {
    series.iter().map(|s| s.samples.len() as u64).sum()
}
