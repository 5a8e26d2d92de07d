//! Query limits: admission (concurrency with a bounded queue), deadlines,
//! and the per-query budget of samples and series fetched from backends.
//!
//! A query runs inside [`Limits::run`]: it waits for a slot, then evaluates
//! with a [`QueryContext`] in a task-local scope. The federation reports each
//! backend answer to [`observe_select`], which records the backend's latency
//! and charges the answer to the query's budget. Code that moves an
//! evaluation to another task must carry the context with [`scope`].

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
        Limits {
            slots: Arc::new(Semaphore::new(config.max_concurrent_queries.max(1))),
            queued: AtomicUsize::new(0),
            config,
        }
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
            return Ok(p);
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
            Ok(Ok(p)) => Ok(p),
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

    /// Evaluates `fut` as one query of `kind` (`instant` or `range`): waits
    /// for a slot, runs it under the query's budget until `timeout` (queue
    /// time included), records metrics and the query log.
    pub async fn run<T>(
        &self,
        kind: &'static str,
        query: &str,
        timeout: Duration,
        fut: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let _slot = self.admit(deadline).await?;
        let _in_flight = crate::telemetry::InFlight::enter();
        let ctx = Arc::new(QueryContext::new(&self.config));
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

/// What one query has fetched so far, and its limits.
#[derive(Debug)]
pub struct QueryContext {
    max_samples: u64,
    max_series_per_backend: u64,
    samples: AtomicU64,
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
            backends: Mutex::new(BTreeSet::new()),
            cache: Mutex::new(None),
            fetched: fetched::FetchedBytes::new(cfg.max_fetched_bytes),
            backend_shares: shares::Shares::default(),
        }
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
        Ok(())
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

/// Charges `n` samples that the engine itself materialises (subquery
/// points, range vectors built during evaluation) to the current query's
/// `max_samples` budget, as Prometheus counts every sample a query holds.
/// `Err` carries Prometheus's message ([`TOO_MANY_SAMPLES`]); outside a
/// query's scope nothing is counted.
pub fn charge_samples(n: u64) -> Result<(), &'static str> {
    let Some(ctx) = current() else {
        return Ok(());
    };
    let total = ctx.samples.fetch_add(n, Ordering::AcqRel).saturating_add(n);
    if total > ctx.max_samples {
        return Err(TOO_MANY_SAMPLES);
    }
    Ok(())
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
    let mut answer = answer.await;
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

    #[tokio::test]
    async fn samples_the_engine_materialises_share_the_budget() {
        assert_eq!(
            charge_samples(u64::MAX),
            Ok(()),
            "outside a query nothing counts"
        );
        let ctx = Arc::new(QueryContext::new(&LimitsConfig {
            max_samples: 100,
            ..LimitsConfig::default()
        }));
        let fed = federation(2, false); // 40 samples fetched
        let r = scope(ctx.clone(), async {
            fed.select(&select_up()).await.expect("select");
            charge_samples(60)?;
            charge_samples(1)
        })
        .await;
        assert_eq!(r, Err(TOO_MANY_SAMPLES));
        assert_eq!(ctx.samples(), 101);
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
