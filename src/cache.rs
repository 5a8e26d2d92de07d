//! Caches query answers: instant queries on a time grid with single flight,
//! range queries as step-aligned extents; in memory, or shared through Redis.
//!
//! Instant: `time` is rounded down to the grid and the query is evaluated at
//! the rounded time, so every caller in one grid cell shares one evaluation
//! and gets the same bytes. Identical in-flight queries share one
//! evaluation. Errors and answers with warnings are never stored.
//!
//! Range: the result is kept as extents per (canonical query, step, options,
//! `start % step`); a request evaluates only what the extents lack, and the
//! newest points (`max_freshness`) are never stored.

pub mod cells;
pub mod error;
pub mod flight;
pub mod instant;
pub mod key;
pub mod lease;
pub mod metrics;
pub mod range;
pub mod range_query;
pub mod store;
pub mod warmer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use prometheus::Registry;

use crate::config::{CacheConfig, CacheStoreKind};
use crate::model::time::DEFAULT_QUERY_TIMEOUT;
use crate::promql::{Engine, EngineError, QueryOptions, QueryResult};
pub use error::{CacheError, SetupError};
use flight::Flights;
use metrics::CacheMetrics;
use store::{MemoryStore, RedisStore, Stores};

/// Response header naming how the cache answered (`hit`, `miss`,
/// `coalesced`, `partial`, `bypass`).
pub const CACHE_HEADER: &str = "x-promfed-cache";

/// How a query was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// From a stored entry, without evaluating.
    Hit,
    /// Evaluated by this request.
    Miss,
    /// Shared the evaluation another identical request started.
    Coalesced,
    /// Range query: part from stored extents, part evaluated.
    Partial,
    /// Not cacheable (does not parse, `@ start()`/`@ end()` in a range
    /// query, range cache off): evaluated as sent.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Partial => "partial",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// An answer: the whole JSON success body and how it was obtained.
#[derive(Debug, Clone)]
pub struct Answer {
    pub body: Bytes,
    pub status: CacheStatus,
    /// The body carries warnings (such answers are never stored).
    pub has_warnings: bool,
}

impl Answer {
    /// Encodes `r` as part of the current query: within its deadline, its
    /// memory budget and `limits.max_response_bytes`.
    async fn of(r: QueryResult, status: CacheStatus) -> Result<Answer, CacheError> {
        let has_warnings = !r.warnings.is_empty();
        let body = crate::limits::meter::blocking("response encoding", move || {
            crate::wire::query_body_checked(&r)
        })
        .await?;
        Ok(Answer {
            body: Bytes::from(body),
            status,
            has_warnings,
        })
    }

    fn stored(body: Bytes) -> Answer {
        Answer {
            body,
            status: CacheStatus::Hit,
            has_warnings: false,
        }
    }
}

/// What sets a request apart beyond its query and [`QueryOptions`]: e.g.
/// Thanos' `partial_response`/`dedup`/`replicaLabels[]`, which need their
/// own engine. The default is the cache's own evaluator and an empty key.
#[derive(Clone, Default)]
pub struct Variant {
    /// Part of every key of this request.
    pub key: String,
    /// Evaluates this request instead of the cache's evaluator.
    pub eval: Option<Arc<dyn Evaluate>>,
}

/// What the cache evaluates with: the engine, or a stand-in in tests.
pub trait Evaluate: Send + Sync + 'static {
    fn instant<'a>(
        &'a self,
        query: &'a str,
        t_ms: i64,
        opts: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>>;

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>>;
}

impl Evaluate for Engine {
    fn instant<'a>(
        &'a self,
        query: &'a str,
        t_ms: i64,
        opts: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>> {
        Box::pin(Engine::instant(self, query, t_ms, opts))
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>> {
        Box::pin(Engine::range(self, query, start_ms, end_ms, step_ms, opts))
    }
}

/// Wall clock in ms since the epoch; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// The cache settings in the units the cache computes with.
#[derive(Debug, Clone)]
struct Settings {
    grid_ms: i64,
    ttl: Duration,
    horizon_ms: i64,
    old_ttl: Duration,
    warm_queries: Vec<String>,
    range_enabled: bool,
    max_freshness_ms: i64,
    range_ttl: Duration,
    /// Longest wait for another replica's evaluation (Redis leases); zero
    /// when replicas do not coalesce.
    lease: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl From<&CacheConfig> for Settings {
    fn from(c: &CacheConfig) -> Self {
        Settings {
            grid_ms: ms(c.grid).max(1),
            ttl: c.ttl,
            horizon_ms: ms(c.horizon),
            old_ttl: c.old_ttl,
            warm_queries: c.warm_queries.clone(),
            range_enabled: c.range.enabled,
            max_freshness_ms: ms(c.range.max_freshness),
            range_ttl: c.range.ttl,
            lease: match (c.store, &c.redis) {
                (CacheStoreKind::Redis, Some(r)) => r.lease,
                _ => Duration::ZERO,
            },
        }
    }
}

/// Size bound of the memo of canonical forms (raw text → canonical text).
const CANON_MEMO_BYTES: usize = 32 << 20;

/// History kept per range key, in steps: as many points as one request may
/// ask for, so panels over different windows of one query do not evict
/// each other's extents.
const RANGE_HISTORY_STEPS: i64 = crate::model::time::MAX_POINTS_PER_SERIES;

/// What a flight yields: the answer as its leader obtained it.
type Flown = Result<Answer, CacheError>;

fn flight_panicked() -> Flown {
    Err(CacheError::Ended)
}

/// The query cache. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct QueryCache {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    eval: Arc<dyn Evaluate>,
    stores: Stores,
    flights: Flights<Flown>,
    /// Raw query text → its canonical form (`None`: does not parse).
    canon: key::CanonMemo,
    metrics: CacheMetrics,
    clock: Clock,
    /// Recent instant-query cells and their evaluations (the UI shows it).
    cells: cells::CellLog,
}

impl QueryCache {
    /// Builds the cache of `cfg` over `eval`, with its metrics in promfed's
    /// registry. With `store: redis` it must run inside Tokio.
    pub fn new(cfg: &CacheConfig, eval: Arc<dyn Evaluate>) -> Result<Self, SetupError> {
        let metrics = CacheMetrics::global().map_err(|e| format!("cache metrics: {e}"))?;
        Self::build(cfg, eval, metrics, system_clock())
    }

    /// [`new`](Self::new) with its metrics in `registry` and a chosen clock
    /// (tests count and move time by hand).
    pub fn with_clock(
        cfg: &CacheConfig,
        eval: Arc<dyn Evaluate>,
        registry: &Registry,
        clock: Clock,
    ) -> Result<Self, SetupError> {
        let metrics =
            CacheMetrics::register(registry).map_err(|e| format!("cache metrics: {e}"))?;
        Self::build(cfg, eval, metrics, clock)
    }

    fn build(
        cfg: &CacheConfig,
        eval: Arc<dyn Evaluate>,
        metrics: CacheMetrics,
        clock: Clock,
    ) -> Result<Self, SetupError> {
        let memory = MemoryStore::new(cfg.memory.max_mib.saturating_mul(1 << 20), &metrics);
        let shared = match (cfg.store, &cfg.redis) {
            (CacheStoreKind::Redis, Some(r)) => Some(RedisStore::new(r, &metrics)?),
            (CacheStoreKind::Redis, None) => {
                return Err(SetupError(
                    "cache.redis: required when cache.store is redis".to_string(),
                ))
            }
            (CacheStoreKind::Memory, _) => None,
        };
        Ok(QueryCache {
            inner: Arc::new(Inner {
                settings: Settings::from(cfg),
                eval,
                stores: Stores::new(memory, shared),
                flights: Flights::default(),
                canon: key::CanonMemo::new(CANON_MEMO_BYTES),
                metrics,
                clock,
                cells: cells::CellLog::default(),
            }),
        })
    }

    /// The instant-query cells evaluated lately, newest first.
    pub fn recent_cells(&self) -> Vec<cells::Cell> {
        self.inner.cells.snapshot()
    }

    /// The grid, milliseconds.
    pub fn grid_ms(&self) -> i64 {
        self.inner.settings.grid_ms
    }

    /// The queries the warmer evaluates at every grid tick.
    pub fn warm_queries(&self) -> &[String] {
        &self.inner.settings.warm_queries
    }

    /// The cache's counters.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.inner.metrics
    }

    /// The stores (tests inspect them).
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    async fn finish(
        &self,
        kind: &'static str,
        timeout: Duration,
        flight: flight::Flight<Flown>,
        leader: bool,
    ) -> Result<Answer, CacheError> {
        let mut answer = tokio::time::timeout(timeout, flight)
            .await
            .map_err(|_| CacheError::Timeout)??;
        answer.status = match answer.status {
            CacheStatus::Hit => CacheStatus::Hit,
            s if leader => s,
            _ => CacheStatus::Coalesced,
        };
        self.inner.count(kind, answer.status);
        Ok(answer)
    }
}

impl Inner {
    fn count(&self, kind: &str, status: CacheStatus) {
        self.metrics
            .requests
            .with_label_values(&[kind, status.as_str()])
            .inc();
    }

    fn not_stored(&self, reason: &str) {
        self.metrics.not_stored.with_label_values(&[reason]).inc();
    }

    async fn bounded(
        &self,
        timeout: Duration,
        fut: BoxFuture<'_, Result<QueryResult, EngineError>>,
    ) -> Result<QueryResult, CacheError> {
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(CacheError::from),
            Err(_) => Err(CacheError::Timeout),
        }
    }
}

/// Time left until the current query's deadline: a flight's evaluation
/// keeps the deadline of the query that started it, even after every
/// caller has gone. Outside a query (warm queries), the default timeout.
fn query_time_left() -> Duration {
    crate::limits::current()
        .and_then(|c| c.deadline())
        .map(|d| d.saturating_duration_since(std::time::Instant::now()))
        .unwrap_or(DEFAULT_QUERY_TIMEOUT)
}

fn push_unique(into: &mut Vec<String>, items: Vec<String>) {
    for i in items {
        if !into.contains(&i) {
            into.push(i);
        }
    }
}
