//! Shared parts of the cache tests: an evaluator that counts its
//! evaluations, a simulated data set, and a real `redis-server`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use promfed::cache::{Clock, Evaluate};
use promfed::config::CacheConfig;
use promfed::model::{Labels, Sample, Series};
use promfed::promql::{EngineError, QueryOptions, QueryResult, Value, VectorElem};
use promfed::source::memory::MemorySource;
use promfed::source::{Select, Source};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};
use rand::{Rng, SeedableRng};

/// Start of the simulated data, ms.
pub const T0: i64 = 1_724_000_000_000;
/// Scrape interval of the simulated data, ms.
pub const SCRAPE: i64 = 15_000;

/// Evaluates plain vector selectors over a memory source, step by step as
/// Prometheus does (last sample within the lookback window), and counts
/// every evaluation. It stands in for the engine while the cache's own
/// mechanics are tested; the cache must answer exactly what it answers.
pub struct CountingEval {
    pub source: MemorySource,
    pub instant_evals: AtomicUsize,
    pub range_evals: AtomicUsize,
    /// Added to each evaluation, ms.
    pub delay_ms: u64,
    /// Queries containing this text come back with a warning.
    pub warn_marker: Option<String>,
}

impl CountingEval {
    pub fn new(source: MemorySource) -> Self {
        CountingEval {
            source,
            instant_evals: AtomicUsize::new(0),
            range_evals: AtomicUsize::new(0),
            delay_ms: 0,
            warn_marker: None,
        }
    }

    pub fn instants(&self) -> usize {
        self.instant_evals.load(Ordering::SeqCst)
    }

    pub fn ranges(&self) -> usize {
        self.range_evals.load(Ordering::SeqCst)
    }

    fn matchers(query: &str) -> Result<Vec<Matcher>, EngineError> {
        let ast = parser::parse(query).map_err(EngineError::Parse)?;
        let Expr::VectorSelector(vs) = ast else {
            return Err(EngineError::Execution(format!(
                "test evaluator only evaluates selectors, not {query}"
            )));
        };
        let mut ms = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            if !ms.iter().any(|m| m.name == "__name__") {
                ms.push(Matcher::new(MatchOp::Equal, "__name__", name));
            }
        }
        Ok(ms)
    }

    async fn series(&self, query: &str, lo: i64, hi: i64) -> Result<Vec<Series>, EngineError> {
        let sel = Select {
            matchers: Self::matchers(query)?,
            start_ms: lo,
            end_ms: hi,
            hints: Default::default(),
            read: Default::default(),
        };
        Ok(self.source.select(&sel).await?.series)
    }

    fn at(s: &Series, t: i64, lookback: i64) -> Option<Sample> {
        let i = s.samples.partition_point(|p| p.t <= t);
        let p = *s.samples.get(i.checked_sub(1)?)?;
        (p.t > t - lookback).then_some(p)
    }

    fn warnings(&self, query: &str) -> Vec<String> {
        match &self.warn_marker {
            Some(m) if query.contains(m.as_str()) => vec!["simulated partial response".into()],
            _ => Vec::new(),
        }
    }

    /// The answer without counting (the oracle of the tests).
    pub async fn eval_instant(
        &self,
        query: &str,
        t: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        let lb = opts.lookback_delta_ms;
        let series = self.series(query, t - lb, t).await?;
        let elems = series
            .iter()
            .filter_map(|s| {
                Self::at(s, t, lb).map(|p| VectorElem {
                    labels: s.labels.clone(),
                    t,
                    v: p.v,
                    h: None,
                })
            })
            .collect();
        Ok(QueryResult {
            value: Value::Vector(elems),
            warnings: self.warnings(query),
            infos: Vec::new(),
        })
    }

    /// The range answer without counting (the oracle of the tests).
    pub async fn eval_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        let lb = opts.lookback_delta_ms;
        let series = self.series(query, start - lb, end).await?;
        let mut out = Vec::new();
        for s in &series {
            let mut samples = Vec::new();
            let mut t = start;
            while t <= end {
                if let Some(p) = Self::at(s, t, lb) {
                    samples.push(Sample { t, v: p.v });
                }
                t += step;
            }
            if !samples.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    samples,
                    histograms: Vec::new(),
                });
            }
        }
        Ok(QueryResult {
            value: Value::Matrix(out),
            warnings: self.warnings(query),
            infos: Vec::new(),
        })
    }
}

impl Evaluate for CountingEval {
    fn instant<'a>(
        &'a self,
        query: &'a str,
        t_ms: i64,
        opts: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>> {
        Box::pin(async move {
            self.instant_evals.fetch_add(1, Ordering::SeqCst);
            if self.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            }
            self.eval_instant(query, t_ms, opts).await
        })
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>> {
        Box::pin(async move {
            self.range_evals.fetch_add(1, Ordering::SeqCst);
            if self.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            }
            self.eval_range(query, start_ms, end_ms, step_ms, opts)
                .await
        })
    }
}

/// Istio-like request counters for two clusters over two hours, with
/// millisecond scrape jitter and a gap (a series that stops and restarts).
pub fn istio_source(seed: u64) -> MemorySource {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut m = MemorySource::new();
    for cluster in ["k8s-1", "k8s-2"] {
        for version in ["v1", "v2"] {
            for code in ["200", "503"] {
                let l = Labels::from_pairs([
                    ("__name__", "istio_requests_total"),
                    ("cluster", cluster),
                    ("destination_version", version),
                    ("response_code", code),
                ]);
                let mut v = 0.0;
                for i in 0..480 {
                    // A 10-minute hole in one series.
                    if cluster == "k8s-2"
                        && version == "v2"
                        && code == "503"
                        && (200..240).contains(&i)
                    {
                        continue;
                    }
                    v += f64::from(rng.gen_range(0..50u32));
                    m.add(l.clone(), T0 + i * SCRAPE + rng.gen_range(1..900), v);
                }
            }
        }
    }
    m
}

/// A cache section with defaults (memory store).
pub fn cache_config() -> CacheConfig {
    promfed::config::Config::from_yaml(
        "backends: [{name: a, url: 'http://127.0.0.1:1'}]\ncache: {}\n",
        "test",
    )
    .expect("valid config")
    .cache
    .expect("cache section")
}

/// A clock the test moves by hand.
pub fn manual_clock(start: i64) -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(start));
    let n = now.clone();
    (Arc::new(move || n.load(Ordering::SeqCst)), now)
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real `redis-server` on loopback, stopped (by pid) when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; scripts/test installs it)");
        let s = RedisServer {
            port,
            child: Some(child),
        };
        for _ in 0..100 {
            if s.ping() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not answer PING within 5 s");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        c.write_all(b"PING\r\n").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Stops the server (SIGKILL to its pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
