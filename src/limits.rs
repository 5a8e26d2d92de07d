//! Query limits: admission (concurrency with a bounded queue), deadlines,
//! and the per-query budget of samples and series fetched from backends.
//!
//! A query runs inside [`Limits::run`]: it waits for a slot, then evaluates
//! with a [`QueryContext`] in a task-local scope. The federation reports each
//! backend answer to [`observe_select`], which records the backend's latency
//! and charges the answer to the query's budget. Code that moves an
//! evaluation to another task must carry the context with [`scope`]: the
//! context holds the query's admission slot, deadline and budget, so work
//! carried elsewhere (a cache's single flight) keeps them while it runs.
//! What the engine builds is charged through [`meter`]; all queries
//! together draw their memory from one [`memory`] pool.

pub mod memory;
pub mod meter;

pub mod fetched;
pub mod shares;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::{ApiError, ErrorType};
use crate::source::{SelectOutput, SourceError};

/// Prometheus's message when a query would load more than `--query.max-samples`.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// The `limits:` section of the config. Every field has a default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most samples one query may fetch from all backends together, as
    /// Prometheus's `--query.max-samples` (default 50000000). A query over
    /// it fails with `execution` (422).
    #[serde(default = "default_max_samples")]
    pub max_samples: u64,
    /// Most series one backend may return for one selector (default
    /// 1000000). More fails the query with `execution` (422), naming the
    /// backend.
    #[serde(default = "default_max_series_per_backend")]
    pub max_series_per_backend: u64,
    /// Default and largest query timeout; a request's `timeout` parameter
    /// may only shorten it (a Prometheus duration; default `2m`).
    #[serde(
        default = "default_query_timeout",
        deserialize_with = "crate::config::de_duration"
    )]
    pub query_timeout: Duration,
    /// Most queries (`/api/v1/query`, `/api/v1/query_range`) evaluated at
    /// once (default 20, as Prometheus's `--query.max-concurrency`).
    #[serde(default = "default_max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// Most queries waiting for a slot (default 100); a query arriving when
    /// the queue is full is answered at once with `unavailable` (503).
    #[serde(default = "default_max_queued_queries")]
    pub max_queued_queries: usize,
    /// Largest request body, bytes (default 4194304). A larger form body is
    /// refused with `bad_data` (400).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest `query` (or `match[]`) parameter, bytes (default 131072);
    /// longer is `bad_data` (400).
    #[serde(default = "default_max_query_length")]
    pub max_query_length: usize,
    /// Deepest nesting of `(`, `[` and `{` in a query (default 128);
    /// deeper is `bad_data` (400). Guards the parser and evaluator, which
    /// recurse, against queries built to exhaust the stack.
    #[serde(default = "default_max_query_depth")]
    pub max_query_depth: usize,
    /// Most operators (`+ - * / % ^`, comparisons, `and`/`or`/`unless`/
    /// `atan2`) in a query (default 1000); more is `bad_data` (400). Long
    /// operator chains parse in quadratic time and nest as deep as they are
    /// long.
    #[serde(default = "default_max_query_operators")]
    pub max_query_operators: usize,
    /// Most bytes one query may hold at once: series fetched, the values
    /// the engine builds (points, windows, subquery points, label sets it
    /// creates) and its JSON answer. More fails it with `execution` (422)
    /// before the memory is allocated. Default: 1 GiB, at most half of
    /// `max_memory_bytes`.
    #[serde(default)]
    pub max_query_bytes: Option<u64>,
    /// Largest JSON answer of a query, bytes (default 268435456, 256 MiB);
    /// a larger one fails with `execution` (422) naming this limit.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Most bytes all queries together may hold. A query starts only while
    /// a tenth of it is free (else it waits in the queue until its
    /// deadline); a query whose next value would overflow it is refused
    /// with `unavailable` (503). Default: half the memory limit of
    /// promfed's cgroup, or of the machine when there is none.
    #[serde(default)]
    pub max_memory_bytes: Option<u64>,
    /// Most answer bytes one query or metadata request may read from all
    /// backends together (default 536870912, 512 MiB). Counted as bodies
    /// arrive; more fails the request with `execution` (422). Each
    /// backend's own cap is `backends[].max_response_bytes`.
    #[serde(default = "fetched::default_max_fetched_bytes")]
    pub max_fetched_bytes: u64,
}

fn default_max_samples() -> u64 {
    50_000_000
}
fn default_max_series_per_backend() -> u64 {
    1_000_000
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_concurrent_queries() -> usize {
    20
}
fn default_max_queued_queries() -> usize {
    100
}
fn default_max_body_bytes() -> usize {
    4 << 20
}
fn default_max_query_length() -> usize {
    128 << 10
}
fn default_max_query_depth() -> usize {
    128
}
fn default_max_query_operators() -> usize {
    1000
}
fn default_max_response_bytes() -> u64 {
    256 << 20
}
/// Default of `max_query_bytes` before it is capped by the memory limit.
const DEFAULT_MAX_QUERY_BYTES: u64 = 1 << 30;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_samples: default_max_samples(),
            max_series_per_backend: default_max_series_per_backend(),
            query_timeout: default_query_timeout(),
            max_concurrent_queries: default_max_concurrent_queries(),
            max_queued_queries: default_max_queued_queries(),
            max_body_bytes: default_max_body_bytes(),
            max_query_length: default_max_query_length(),
            max_query_depth: default_max_query_depth(),
            max_query_operators: default_max_query_operators(),
            max_query_bytes: None,
            max_response_bytes: default_max_response_bytes(),
            max_memory_bytes: None,
            max_fetched_bytes: fetched::default_max_fetched_bytes(),
        }
    }
}

impl LimitsConfig {
    /// Every problem with these limits (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut positive = |name: &str, v: u64| {
            if v == 0 {
                problems.push(format!("limits.{name}: must be greater than 0"));
            }
        };
        positive("max_samples", self.max_samples);
        positive("max_series_per_backend", self.max_series_per_backend);
        positive("max_concurrent_queries", self.max_concurrent_queries as u64);
        positive("max_body_bytes", self.max_body_bytes as u64);
        positive("max_query_length", self.max_query_length as u64);
        positive("max_query_depth", self.max_query_depth as u64);
        positive("max_query_operators", self.max_query_operators as u64);
        positive("max_response_bytes", self.max_response_bytes);
        if let Some(b) = self.max_query_bytes {
            positive("max_query_bytes", b);
        }
        if let Some(b) = self.max_memory_bytes {
            positive("max_memory_bytes", b);
        }
        positive("max_fetched_bytes", self.max_fetched_bytes);
        if self.query_timeout.is_zero() {
            problems.push("limits.query_timeout: must be greater than 0".to_string());
        }
        problems
    }
}

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
    pub fn check_query_text(&self, param: &str, query: &str) -> Result<(), ApiError> {
        let c = &self.config;
        if query.len() > c.max_query_length {
            return Err(ApiError::invalid_param(
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
            return Err(ApiError::invalid_param(
                param,
                format!(
                    "query nests {} levels deep, more than the limit of {} (limits.max_query_depth)",
                    shape.depth, c.max_query_depth
                ),
            ));
        }
        if shape.operators > c.max_query_operators {
            return Err(ApiError::invalid_param(
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
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return self.room_for(p, deadline).await;
        }
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        let _queued = Queued(&self.queued);
        if before >= self.config.max_queued_queries {
            crate::telemetry::query_refused("queue_full");
            return Err(ApiError::new(
                ErrorType::Unavailable,
                format!(
                    "too many queries: {} running and {} waiting (limits.max_concurrent_queries, limits.max_queued_queries); try again later",
                    self.config.max_concurrent_queries, self.config.max_queued_queries
                ),
            ));
        }
        match tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => self.room_for(p, deadline).await,
            Ok(Err(_)) => Err(ApiError::new(
                ErrorType::Unavailable,
                "promfed is shutting down",
            )),
            Err(_) => {
                crate::telemetry::query_refused("queue_timeout");
                Err(ApiError::new(
                    ErrorType::Timeout,
                    "query timed out in queue waiting for an evaluation slot",
                ))
            }
        }
    }

    /// Keeps slot `p` once the memory pool has room for a new query; while
    /// it has none, the query waits (holding its slot) until `deadline`.
    async fn room_for(
        &self,
        p: OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        if self.memory.wait_for_room(deadline).await {
            return Ok(p);
        }
        crate::telemetry::query_refused("memory_timeout");
        Err(ApiError::new(
            ErrorType::Timeout,
            "query timed out in queue waiting for memory (limits.max_memory_bytes)",
        ))
    }

    /// Evaluates `fut` as one query of `kind` (`instant` or `range`): waits
    /// for a slot, runs it under the query's budget until `timeout` (queue
    /// time included), records metrics and the query log. The slot and the
    /// in-flight count belong to the query's context: work that carries the
    /// context on (a single flight) holds them until it ends.
    pub async fn run<T>(
        &self,
        kind: &'static str,
        query: &str,
        timeout: Duration,
        fut: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
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
            Err(_) => Err(ApiError::new(
                ErrorType::Timeout,
                "query timed out in expression evaluation",
            )),
        };
        crate::telemetry::query_done(&crate::telemetry::QueryRecord {
            kind,
            query,
            duration: started.elapsed(),
            samples: ctx.samples(),
            backends: ctx.backends(),
            cache: ctx.cache(),
            error: result.as_ref().err().map(|e| e.kind.as_str()),
        });
        result
    }
}

/// The nesting depth and operator count of query text, read lexically
/// (string literals skipped; an over-estimate is fine, it only bounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryShape {
    pub depth: usize,
    pub operators: usize,
}

/// Bytes that continue an identifier (metric, label or function name).
static IDENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        c += 1;
    }
    t
};

thread_local! {
    /// This thread's shapes of recent long queries.
    static SHAPES: crate::recent::Memo<String, QueryShape> = Default::default();
}

impl QueryShape {
    /// [`of`](Self::of), remembered per thread for long queries.
    pub fn remembered(q: &str) -> QueryShape {
        crate::recent::recall(&SHAPES, q, q.len(), QueryShape::of)
    }

    pub fn of(q: &str) -> QueryShape {
        let b = q.as_bytes();
        let mut shape = QueryShape::default();
        let mut depth = 0usize;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'"' | b'\'' | b'`' => {
                    // Skip the literal; escapes do not apply in raw (`) strings.
                    i += 1;
                    while i < b.len() {
                        let stop = |x: &u8| *x == c || (*x == b'\\' && c != b'`');
                        match b[i..].iter().position(stop) {
                            None => i = b.len(),
                            Some(n) if b[i + n] == c => {
                                i += n;
                                break;
                            }
                            Some(n) => i += n + 2,
                        }
                    }
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    shape.depth = shape.depth.max(depth);
                }
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => shape.operators += 1,
                b'=' | b'!' if b.get(i + 1) == Some(&b'=') => {
                    shape.operators += 1;
                    i += 1;
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let start = i;
                    i += b[i..]
                        .iter()
                        .position(|&x| !IDENT[usize::from(x)])
                        .unwrap_or(b.len() - i);
                    let word = &b[start..i];
                    if matches!(word.len(), 2 | 3 | 5 | 6)
                        && [&b"and"[..], b"or", b"unless", b"atan2"]
                            .iter()
                            .any(|k| word.eq_ignore_ascii_case(k))
                    {
                        shape.operators += 1;
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        shape
    }
}

/// What one query has fetched and holds so far, and its limits.
#[derive(Debug)]
pub struct QueryContext {
    max_samples: u64,
    max_series_per_backend: u64,
    /// Samples fetched from backends.
    samples: AtomicU64,
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
            held_samples: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            max_bytes: cfg.max_query_bytes.unwrap_or(DEFAULT_MAX_QUERY_BYTES),
            max_response_bytes: cfg.max_response_bytes,
            memory: None,
            deadline: None,
            _slot: None,
            backends: Mutex::new(BTreeSet::new()),
            cache: Mutex::new(None),
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
    fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
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

    /// How the cache answered this query, if it did.
    pub fn cache(&self) -> Option<&'static str> {
        self.cache.lock().ok().and_then(|c| *c)
    }

    /// The backends asked so far, by name.
    pub fn backends(&self) -> Vec<String> {
        self.backends
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Charges one backend's answer; an error when it breaks a limit.
    fn charge(&self, backend: &str, out: &SelectOutput) -> Result<(), SourceError> {
        if let Ok(mut b) = self.backends.lock() {
            if !b.contains(backend) {
                b.insert(backend.to_string());
            }
        }
        let series = out.series.len() as u64;
        if series > self.max_series_per_backend {
            return Err(SourceError::Limit(format!(
                "backend {backend} returned {series} series for one selector, more than the limit of {} (limits.max_series_per_backend)",
                self.max_series_per_backend
            )));
        }
        let samples = sample_count(out);
        let total = self.samples.fetch_add(samples, Ordering::AcqRel) + samples;
        if total > self.max_samples {
            return Err(SourceError::Limit(TOO_MANY_SAMPLES.to_string()));
        }
        // The fetched series stay in memory for the rest of the query.
        let bytes: u64 = out
            .series
            .iter()
            .map(|s| meter::label_bytes(&s.labels) + s.samples.len() as u64 * meter::SAMPLE_BYTES)
            .sum();
        self.take_bytes(bytes)
            .map_err(|e| SourceError::Limit(e.to_string()))
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

/// Records how the cache answered the current query (for the query log).
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

fn sample_count(out: &SelectOutput) -> u64 {
    out.series.iter().map(|s| s.samples.len() as u64).sum()
}

/// Awaits one backend's answer to a select: records its latency, outcome
/// and samples, and charges it to the current query's budget (an answer
/// over a limit becomes a [`SourceError::Limit`]).
pub async fn observe_select(
    backend: &str,
    answer: impl Future<Output = Result<SelectOutput, SourceError>>,
) -> Result<SelectOutput, SourceError> {
    let started = Instant::now();
    let answer = answer.await;
    observed_select(backend, started, answer)
}

/// [`observe_select`] of an answer already received, asked for at
/// `started` (one of a batch of selects).
pub fn observed_select(
    backend: &str,
    started: Instant,
    mut answer: Result<SelectOutput, SourceError>,
) -> Result<SelectOutput, SourceError> {
    if let (Ok(out), Some(ctx)) = (&answer, current()) {
        if let Err(e) = ctx.charge(backend, out) {
            answer = Err(e);
        }
    }
    crate::telemetry::backend_answer(
        backend,
        started.elapsed(),
        match &answer {
            Ok(out) => Ok(sample_count(out)),
            Err(e) => Err(e),
        },
    );
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::federation::{Backend, Federation, FederationOptions};
    use crate::model::Labels;
    use crate::promql::{EngineError, QueryResult};
    use crate::source::memory::MemorySource;
    use crate::source::{Select, Source};
    use axum::response::IntoResponse;
    use promql_parser::label::{MatchOp, Matcher};

    /// Two backends, each with `series` series of 10 samples.
    fn federation(series: usize, partial: bool) -> Federation {
        let backend = |cluster: &str| {
            let mut m = MemorySource::new();
            for i in 0..series {
                let l = Labels::from_pairs([("__name__", "up"), ("i", &i.to_string())]);
                for t in 0..10 {
                    m.add(l.clone(), t * 1000, 1.0);
                }
            }
            Backend {
                name: cluster.to_string(),
                external_labels: [("cluster".to_string(), cluster.to_string())].into(),
                source: Arc::new(m),
            }
        };
        Federation::new(
            vec![backend("k8s-1"), backend("k8s-2")],
            FederationOptions {
                partial_response: partial,
                replica_labels: vec![],
            },
        )
    }

    fn select_up() -> Select {
        Select {
            matchers: vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
            start_ms: 0,
            end_ms: 60_000,
            hints: Default::default(),
            read: Default::default(),
        }
    }

    fn limits(f: impl FnOnce(&mut LimitsConfig)) -> Limits {
        let mut c = LimitsConfig::default();
        f(&mut c);
        Limits::new(c)
    }

    /// Runs one select of `up` as a query under `l`.
    async fn run_select(l: &Limits, fed: Arc<Federation>) -> Result<QueryResult, ApiError> {
        l.run("instant", "up", Duration::from_secs(5), async move {
            let out = fed.select(&select_up()).await?;
            Ok(QueryResult {
                value: crate::promql::Value::Scalar {
                    t: 0,
                    v: out.series.len() as f64,
                },
                warnings: out.warnings,
                infos: vec![],
            })
        })
        .await
    }

    #[tokio::test]
    async fn samples_are_counted_across_backends_and_limited() {
        // 2 backends x 3 series x 10 samples = 60 samples.
        let fed = Arc::new(federation(3, false));
        let at_limit = limits(|c| c.max_samples = 60);
        assert!(run_select(&at_limit, fed.clone()).await.is_ok());
        for partial in [false, true] {
            let fed = Arc::new(federation(3, partial));
            let over = limits(|c| c.max_samples = 59);
            let e = run_select(&over, fed).await.expect_err("over the limit");
            assert_eq!(e.kind, ErrorType::Execution, "partial={partial}");
            assert_eq!(e.message, TOO_MANY_SAMPLES);
            assert_eq!(e.into_response().status().as_u16(), 422);
        }
    }

    #[tokio::test]
    async fn series_per_backend_are_limited() {
        let fed = Arc::new(federation(5, true));
        assert!(
            run_select(&limits(|c| c.max_series_per_backend = 5), fed.clone())
                .await
                .is_ok()
        );
        let e = run_select(&limits(|c| c.max_series_per_backend = 4), fed)
            .await
            .expect_err("over the limit");
        assert_eq!(e.kind, ErrorType::Execution);
        assert!(
            e.message.contains("returned 5 series")
                && e.message.contains("limits.max_series_per_backend"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn context_records_backends_and_samples() {
        let fed = federation(2, false);
        let ctx = Arc::new(QueryContext::new(&LimitsConfig::default()));
        scope(ctx.clone(), fed.select(&select_up()))
            .await
            .expect("select");
        assert_eq!(ctx.samples(), 40);
        assert_eq!(ctx.backends(), ["k8s-1", "k8s-2"]);
        // Outside a scope nothing is charged and nothing fails.
        assert!(current().is_none());
    }

    #[test]
    fn queries_share_one_memory_pool() {
        let pool = Arc::new(memory::MemoryPool::new(1000));
        let cfg = LimitsConfig::default();
        let a = QueryContext::new(&cfg).with_memory(pool.clone(), 800);
        let b = QueryContext::new(&cfg).with_memory(pool.clone(), 800);
        a.hold(0, 700).expect("fits the pool");
        // Within its own budget, but not within what is left of the pool.
        assert_eq!(
            b.hold(0, 400),
            Err(meter::LimitError::Memory { limit: 1000 })
        );
        b.hold(0, 300).expect("fits");
        assert_eq!(b.bytes(), 300);
        // Over its own budget.
        assert_eq!(a.hold(0, 101), Err(meter::LimitError::Bytes { limit: 800 }));
        // An answer kept past its query stays taken until sent.
        let kept = a.keep_bytes(500);
        drop(a);
        assert_eq!(pool.used(), 800);
        drop(kept);
        drop(b);
        assert_eq!(pool.used(), 0);
    }

    #[tokio::test]
    async fn fetched_series_are_charged_to_the_byte_budget() {
        // 2 backends x 2 series x 10 samples of 16 bytes, plus labels.
        let fed = federation(2, false);
        let ctx = Arc::new(QueryContext::new(&LimitsConfig::default()));
        scope(ctx.clone(), fed.select(&select_up()))
            .await
            .expect("select");
        assert!(ctx.bytes() > 40 * meter::SAMPLE_BYTES, "{}", ctx.bytes());
        let ctx = Arc::new(QueryContext::new(&LimitsConfig {
            max_query_bytes: Some(40 * meter::SAMPLE_BYTES),
            ..LimitsConfig::default()
        }));
        let e = scope(ctx, fed.select(&select_up()))
            .await
            .expect_err("over the byte budget");
        assert!(e.to_string().contains("limits.max_query_bytes"), "{e}");
    }

    #[test]
    fn timeout_parameter_is_capped() {
        let l = limits(|c| c.query_timeout = Duration::from_secs(10));
        assert_eq!(l.timeout_for(None), Duration::from_secs(10));
        assert_eq!(l.timeout_for(Some(0)), Duration::from_secs(10));
        assert_eq!(l.timeout_for(Some(2_000)), Duration::from_secs(2));
        assert_eq!(l.timeout_for(Some(3_600_000)), Duration::from_secs(10));
    }

    #[test]
    fn query_length_is_limited() {
        let l = limits(|c| c.max_query_length = 8);
        assert!(l.check_query_text("query", "up{a=\"b\"}").is_err());
        assert!(l.check_query_text("query", "sum(up)").is_ok());
    }

    #[test]
    fn query_shape_skips_strings_and_counts_nesting_and_operators() {
        let s = |q: &str| {
            let s = QueryShape::of(q);
            (s.depth, s.operators)
        };
        assert_eq!(s("up"), (0, 0));
        assert_eq!(s("sum(rate(x[5m]))"), (3, 0));
        assert_eq!(s("a + b * c or d"), (0, 3));
        assert_eq!(s(r#"up{job=~"((((a-b)))){}", x!="+"}"#), (1, 1));
        assert_eq!(s(r#"x{a="\"(("}"#), (1, 0));
        assert_eq!(s("`((`"), (0, 0));
        assert_eq!(s("1 >= bool 2 == 3"), (0, 2));
        assert_eq!(s("sum by (order, or_not) (x)"), (1, 0));
        // Unterminated strings and stray closers do not panic.
        assert_eq!(s("\"((("), (0, 0));
        assert_eq!(s(")))(").0, 1);
        assert_eq!(s("é(ü"), (1, 0));
        // Escapes: an escaped quote does not end the literal, an escaped
        // backslash does not escape the quote after it; a trailing escape.
        assert_eq!(s(r#"x{a="\\"}(("#), (2, 0));
        assert_eq!(s(r#"x{a="\"(("}"#), (1, 0));
        assert_eq!(s(r#"'it\'s ( a'(b)"#), (1, 0));
        assert_eq!(s("x{a=\"\\"), (1, 0));
        assert_eq!(s("`a\\`(b)"), (1, 0));
    }

    #[test]
    fn remembered_shapes_are_the_shapes() {
        for i in 0..80 {
            let q = format!(
                "sum(rate(x{{a=\"{}\"}}[5m])) / sum(rate(y[5m])) + {i}",
                "(".repeat(i)
            );
            for _ in 0..2 {
                assert_eq!(QueryShape::remembered(&q), QueryShape::of(&q), "{q}");
            }
        }
        let deep = format!("{}up{}", "sum(".repeat(30), ")".repeat(30));
        assert_eq!(QueryShape::remembered(&deep).depth, 30);
        assert_eq!(QueryShape::remembered(&deep).depth, 30);
    }

    #[test]
    fn deep_and_long_queries_are_refused() {
        let l = Limits::default();
        let deep = format!("{}up{}", "sum(".repeat(200), ")".repeat(200));
        let e = l.check_query_text("query", &deep).expect_err("too deep");
        assert!(
            e.message.contains("limits.max_query_depth"),
            "{}",
            e.message
        );
        let chain = vec!["1"; 1500].join("+");
        let e = l
            .check_query_text("query", &chain)
            .expect_err("too many operators");
        assert!(
            e.message.contains("limits.max_query_operators"),
            "{}",
            e.message
        );
        let fine = format!("{}up{}", "sum(".repeat(100), ")".repeat(100));
        assert!(l.check_query_text("match[]", &fine).is_ok());
    }

    /// A query that holds its slot until `release` fires.
    async fn held(
        l: &Limits,
        release: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<QueryResult, ApiError> {
        l.run("instant", "held", Duration::from_secs(5), async move {
            let _ = release.await;
            Ok(QueryResult {
                value: crate::promql::Value::Scalar { t: 0, v: 1.0 },
                warnings: vec![],
                infos: vec![],
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_full_queue_answers_unavailable_at_once() {
        let l = Arc::new(limits(|c| {
            c.max_concurrent_queries = 1;
            c.max_queued_queries = 1;
        }));
        let (tx1, rx1) = tokio::sync::oneshot::channel();
        let (tx2, rx2) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let l = l.clone();
            async move { held(&l, rx1).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = tokio::spawn({
            let l = l.clone();
            async move { held(&l, rx2).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_tx3, rx3) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        let e = held(&l, rx3).await.expect_err("queue is full");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(e.kind, ErrorType::Unavailable);
        assert!(e.message.contains("too many queries"), "{}", e.message);
        assert_eq!(e.into_response().status().as_u16(), 503);
        // The queued query runs once the first one ends.
        let _ = tx1.send(());
        assert!(first.await.expect("join").is_ok());
        let _ = tx2.send(());
        assert!(second.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn waiting_in_the_queue_counts_against_the_timeout() {
        let l = Arc::new(limits(|c| c.max_concurrent_queries = 1));
        let (tx1, rx1) = tokio::sync::oneshot::channel();
        let first = tokio::spawn({
            let l = l.clone();
            async move { held(&l, rx1).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let e = l
            .run("instant", "q", Duration::from_millis(200), async {
                Err::<(), _>(ApiError::from(EngineError::Execution(
                    "must not run".into(),
                )))
            })
            .await
            .expect_err("times out in the queue");
        assert_eq!(e.kind, ErrorType::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
        let _ = tx1.send(());
        assert!(first.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn evaluation_past_the_deadline_is_a_timeout() {
        let l = Limits::default();
        let e = l
            .run("range", "slow", Duration::from_millis(100), async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err::<(), _>(ApiError::from(EngineError::Execution("unreachable".into())))
            })
            .await
            .expect_err("times out");
        assert_eq!(e.kind, ErrorType::Timeout);
        assert_eq!(e.into_response().status().as_u16(), 503);
    }

    #[test]
    fn limits_config_validates_and_refuses_unknown_fields() {
        let c: LimitsConfig =
            serde_yaml_ng::from_str("max_samples: 0\nquery_timeout: 0s\n").expect("parses");
        assert_eq!(c.validate().len(), 2, "{:?}", c.validate());
        assert!(serde_yaml_ng::from_str::<LimitsConfig>("max_sampels: 3\n").is_err());
    }
}
