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
pub mod flight;
pub mod key;
pub mod metrics;
pub mod range;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{join_all, BoxFuture};
use prometheus::Registry;
use tokio::task::JoinHandle;

use crate::api::{encode, ApiError, ErrorType, DEFAULT_QUERY_TIMEOUT};
use crate::config::{CacheConfig, CacheStoreKind};
use crate::limits::Limits;
use crate::promql::{Engine, EngineError, QueryOptions, QueryResult, Value};
use flight::Flights;
use key::Canonical;
use metrics::CacheMetrics;
use range::Extent;
use store::{Lease, MemoryStore, RedisStore, Stores};

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
    async fn of(r: QueryResult, status: CacheStatus) -> Result<Answer, ApiError> {
        let has_warnings = !r.warnings.is_empty();
        let body = crate::limits::meter::blocking("response encoding", move || {
            encode::query_body_checked(&r)
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

/// How often a replica waiting for another's evaluation looks in Redis.
const LEASE_POLL: Duration = Duration::from_millis(20);

/// Size bound of the memo of canonical forms (raw text → canonical text).
const CANON_MEMO_BYTES: usize = 32 << 20;

/// History kept per range key, in steps: as many points as one request may
/// ask for, so panels over different windows of one query do not evict
/// each other's extents.
const RANGE_HISTORY_STEPS: i64 = crate::api::MAX_POINTS_PER_SERIES;

/// What a flight yields: the answer as its leader obtained it.
type Flown = Result<Answer, ApiError>;

fn flight_panicked() -> Flown {
    Err(ApiError::new(
        ErrorType::Internal,
        "query evaluation ended unexpectedly",
    ))
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
    pub fn new(cfg: &CacheConfig, eval: Arc<dyn Evaluate>) -> Result<Self, String> {
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
    ) -> Result<Self, String> {
        let metrics =
            CacheMetrics::register(registry).map_err(|e| format!("cache metrics: {e}"))?;
        Self::build(cfg, eval, metrics, clock)
    }

    fn build(
        cfg: &CacheConfig,
        eval: Arc<dyn Evaluate>,
        metrics: CacheMetrics,
        clock: Clock,
    ) -> Result<Self, String> {
        let memory = MemoryStore::new(cfg.memory.max_mib.saturating_mul(1 << 20), &metrics);
        let shared = match (cfg.store, &cfg.redis) {
            (CacheStoreKind::Redis, Some(r)) => Some(RedisStore::new(r, &metrics)?),
            (CacheStoreKind::Redis, None) => {
                return Err("cache.redis: required when cache.store is redis".into())
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

    /// Answers an instant query at `t_ms` (evaluated at `t_ms` rounded down
    /// to the grid).
    pub async fn instant(
        &self,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
        timeout: Duration,
    ) -> Result<Answer, ApiError> {
        self.instant_as("instant", query, t_ms, opts, variant, timeout)
            .await
    }

    async fn instant_as(
        &self,
        kind: &'static str,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
        timeout: Duration,
    ) -> Result<Answer, ApiError> {
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
    /// lookup, a key and a map lookup.
    pub async fn instant_hit(
        &self,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
    ) -> Option<Answer> {
        let inner = &self.inner;
        let canon = inner.canon.get(query)?;
        let t = key::round_down(t_ms, inner.settings.grid_ms);
        let key = key::instant_key(&canon, t, opts, &variant.key);
        let body = inner.stores.memory().get(&key).await?;
        inner.metrics.instant_hits.inc();
        Some(Answer::stored(body))
    }

    /// Answers a range query from stored extents and evaluations of what
    /// they lack.
    #[allow(clippy::too_many_arguments)]
    pub async fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
        timeout: Duration,
    ) -> Result<Answer, ApiError> {
        let inner = &self.inner;
        let eval = variant.eval.clone().unwrap_or_else(|| inner.eval.clone());
        let canon = match inner.canon.get(query) {
            Some(c) if c.range_cacheable && inner.settings.range_enabled && step_ms > 0 => c,
            _ => {
                inner.count("range", CacheStatus::Bypass);
                let r = inner
                    .bounded(timeout, eval.range(query, start_ms, end_ms, step_ms, opts))
                    .await?;
                return Answer::of(r, CacheStatus::Bypass).await;
            }
        };
        let rkey = key::range_key(&canon, step_ms, start_ms, opts, &variant.key);
        let fkey = format!("{rkey}|{start_ms}|{end_ms}");
        let (flight, leader) = inner.flights.join_or_start(
            &fkey,
            || {
                let (inner, opts) = (self.inner.clone(), opts.clone());
                async move {
                    inner
                        .evaluate_range(eval, &rkey, &canon, start_ms, end_ms, step_ms, &opts)
                        .await
                }
            },
            flight_panicked,
        );
        self.finish("range", timeout, flight, leader).await
    }

    async fn finish(
        &self,
        kind: &'static str,
        timeout: Duration,
        flight: flight::Flight<Flown>,
        leader: bool,
    ) -> Result<Answer, ApiError> {
        let mut answer = tokio::time::timeout(timeout, flight)
            .await
            .map_err(|_| crate::api::timeout_error())??;
        answer.status = match answer.status {
            CacheStatus::Hit => CacheStatus::Hit,
            s if leader => s,
            _ => CacheStatus::Coalesced,
        };
        self.inner.count(kind, answer.status);
        Ok(answer)
    }

    /// Starts evaluating the configured warm queries at every grid tick;
    /// `None` when there are none. Abort the handle to stop.
    pub fn spawn_warmer(&self) -> Option<JoinHandle<()>> {
        self.spawn_admitted_warmer(None)
    }

    /// [`spawn_warmer`](Self::spawn_warmer) whose queries, given `limits`,
    /// each wait for an admission slot and run under the query deadline
    /// and budget, as a client's query does.
    pub fn spawn_admitted_warmer(&self, limits: Option<Arc<Limits>>) -> Option<JoinHandle<()>> {
        if self.inner.settings.warm_queries.is_empty() {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let grid = me.inner.settings.grid_ms;
            // Replicas sharing Redis tick together: a random delay early in
            // the cell lets the first one's answer reach Redis before the
            // others evaluate (they look there first).
            let spread = if me.inner.stores.shared().is_some() {
                (grid / 5).clamp(1, 2_000)
            } else {
                1
            };
            loop {
                let now = (me.inner.clock)();
                let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..spread);
                let wait = key::round_down(now, grid) + grid - now + jitter;
                tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
                me.warm_admitted(limits.as_deref()).await;
            }
        }))
    }

    /// Evaluates every warm query for the current grid cell.
    pub async fn warm_once(&self) {
        self.warm_admitted(None).await
    }

    /// Evaluates every warm query for the current grid cell; under
    /// `limits`, each as a query of kind `warm` (admission slot, deadline,
    /// budget, query log).
    pub async fn warm_admitted(&self, limits: Option<&Limits>) {
        let now = (self.inner.clock)();
        let opts = QueryOptions::default();
        let variant = Variant::default();
        let runs = self.inner.settings.warm_queries.iter().map(|q| {
            let (opts, variant) = (&opts, &variant);
            async move {
                let warmed = match limits {
                    Some(l) => {
                        let timeout = l.timeout_for(None);
                        l.run(
                            "warm",
                            q,
                            timeout,
                            self.instant_as("warm", q, now, opts, variant, timeout),
                        )
                        .await
                    }
                    None => {
                        self.instant_as("warm", q, now, opts, variant, DEFAULT_QUERY_TIMEOUT)
                            .await
                    }
                };
                if let Err(e) = warmed {
                    tracing::warn!(query = %q, error = %e.message, "warm query failed");
                }
            }
        });
        join_all(runs).await;
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

    /// TTL of an instant answer at rounded time `t`.
    fn instant_ttl(&self, t: i64) -> Duration {
        let now = (self.clock)();
        if t < now.saturating_sub(self.settings.horizon_ms) {
            self.settings.old_ttl
        } else {
            self.settings.ttl
        }
    }

    async fn bounded(
        &self,
        timeout: Duration,
        fut: BoxFuture<'_, Result<QueryResult, EngineError>>,
    ) -> Result<QueryResult, ApiError> {
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(_) => Err(crate::api::timeout_error()),
        }
    }

    async fn evaluate_instant(
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

    /// Evaluates an instant query and stores the answer when it may be.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate_and_store(
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

    #[allow(clippy::too_many_arguments)]
    async fn evaluate_range(
        &self,
        eval: Arc<dyn Evaluate>,
        rkey: &str,
        canon: &Canonical,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Flown {
        let ttl = self.settings.range_ttl;
        let extents: Vec<Extent> = match self.stores.get(rkey, ttl).await {
            Some(b) => range::codec::decode(&b).unwrap_or_default(),
            None => Vec::new(),
        };
        let last = range::last_point(start, end, step);
        let gaps = range::gaps(&extents, start, last, step);
        if gaps.is_empty() {
            let series = range::merge(extents.iter().map(|x| x.series.as_slice()), start, last);
            let r = QueryResult {
                value: Value::Matrix(series),
                warnings: Vec::new(),
                infos: Vec::new(),
            };
            return Answer::of(r, CacheStatus::Hit).await;
        }
        let status = if gaps == [(start, last)] {
            CacheStatus::Miss
        } else {
            CacheStatus::Partial
        };
        self.metrics
            .evaluations
            .with_label_values(&["range"])
            .inc_by(gaps.len() as u64);
        let evals = gaps.iter().map(|&(s, e)| {
            self.bounded(query_time_left(), eval.range(&canon.text, s, e, step, opts))
        });
        let mut pieces = Vec::with_capacity(gaps.len());
        let (mut warnings, mut infos) = (Vec::new(), Vec::new());
        for (&(s, e), r) in gaps.iter().zip(join_all(evals).await) {
            let r = r?;
            push_unique(&mut warnings, r.warnings);
            push_unique(&mut infos, r.infos);
            match r.value {
                Value::Matrix(series) => pieces.push(Extent {
                    start: s,
                    end: e,
                    series,
                }),
                _ => {
                    // Not a range result: answer the request as sent, uncached.
                    let r = self
                        .bounded(
                            query_time_left(),
                            eval.range(&canon.text, start, end, step, opts),
                        )
                        .await?;
                    return Answer::of(r, CacheStatus::Bypass).await;
                }
            }
        }
        let series = range::merge(
            extents
                .iter()
                .chain(pieces.iter())
                .map(|x| x.series.as_slice()),
            start,
            last,
        );
        let annotated = !warnings.is_empty() || !infos.is_empty();
        let r = QueryResult {
            value: Value::Matrix(series),
            warnings,
            infos,
        };
        let answer = Answer::of(r, status).await?;
        if annotated {
            // Extents carry no annotations: a later hit could not repeat them.
            self.not_stored("annotations");
            return Ok(answer);
        }
        let cacheable_end = (self.clock)().saturating_sub(self.settings.max_freshness_ms);
        let new: Vec<Extent> = pieces
            .into_iter()
            .filter_map(|p| {
                let hi = p.end.min(range::last_point(p.start, cacheable_end, step));
                (hi >= p.start).then(|| Extent {
                    start: p.start,
                    end: hi,
                    series: range::merge([p.series.as_slice()], p.start, hi),
                })
            })
            .collect();
        if new.is_empty() {
            self.not_stored("fresh");
        } else {
            let keep_from = last.saturating_sub(RANGE_HISTORY_STEPS.saturating_mul(step));
            let kept = range::insert(extents, new, step, keep_from);
            self.stores
                .put(rkey, Bytes::from(range::codec::encode(&kept)), ttl)
                .await;
        }
        Ok(answer)
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
