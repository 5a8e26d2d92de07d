//! Self-metrics on `/metrics` (prometheus crate) and the query log.
//!
//! Metrics: HTTP requests and latency per endpoint and status code, each
//! backend's answers (latency, outcome), fan-out width, samples fetched,
//! evaluation time and queries in flight. The query log (config
//! `query_log`) writes one JSON line per query.

pub mod placement;

use std::io::Write;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The registry every promfed metric is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Latency buckets, seconds: 1 ms to 2 min.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> Option<T> {
    REGISTRY.register(Box::new(c.clone())).ok()?;
    Some(c)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
    register(IntGaugeVec::new(Opts::new(name, help), labels).ok()?)
}

fn gauge(name: &str, help: &str) -> Option<IntGauge> {
    register(IntGauge::new(name, help).ok()?)
}

fn counter(name: &str, help: &str) -> Option<IntCounter> {
    register(IntCounter::new(name, help).ok()?)
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
    register(IntCounterVec::new(Opts::new(name, help), labels).ok()?)
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> Option<HistogramVec> {
    register(
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )
        .ok()?,
    )
}

static BACKEND_UP: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    gauge_vec(
        "promfed_backend_up",
        "Whether the last probe of or request to a backend succeeded (1) or not (0).",
        &["backend"],
    )
});

static HTTP_REQUESTS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_http_requests_total",
        "HTTP requests answered, by endpoint (route pattern) and status code.",
        &["handler", "code"],
    )
});

static HTTP_DURATION: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "promfed_http_request_duration_seconds",
        "Time to answer an HTTP request, by endpoint and status code.",
        &["handler", "code"],
        LATENCY_BUCKETS,
    )
});

static BACKEND_DURATION: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "promfed_backend_request_duration_seconds",
        "Time a backend took to answer a select, by backend and outcome (ok, error, timeout, limit).",
        &["backend", "outcome"],
        LATENCY_BUCKETS,
    )
});

static BACKEND_ERRORS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_backend_errors_total",
        "Selects a backend failed, by backend and reason (error, timeout, limit).",
        &["backend", "reason"],
    )
});

static SAMPLES_FETCHED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_backend_samples_fetched_total",
        "Samples fetched from each backend.",
        &["backend"],
    )
});

static BYTES_RECEIVED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter("promfed_backend_bytes_received_total", "Answer body bytes read from all backends together, as they arrive (remote read and StoreAPI as sent on the wire; HTTP API answers after content decoding).")
});

/// Counts `n` answer bytes just read from a backend.
pub fn backend_bytes(n: usize) {
    if let Some(c) = BYTES_RECEIVED.as_ref() {
        c.inc_by(n as u64);
    }
}

static QUERY_DURATION: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "promfed_query_duration_seconds",
        "Query evaluation time (after admission), by kind (instant, range) and outcome (ok or the errorType).",
        &["kind", "outcome"],
        LATENCY_BUCKETS,
    )
});

static QUERY_SAMPLES: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "promfed_query_samples_fetched",
        "Samples one query fetched from all backends together.",
        &["kind"],
        &[0.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 5e7],
    )
});

static FANOUT: LazyLock<Option<HistogramVec>> = LazyLock::new(|| {
    histogram_vec(
        "promfed_query_fanout_backends",
        "Backends one query asked (fan-out width).",
        &["kind"],
        &[0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0],
    )
});

static QUERIES_REFUSED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_queries_refused_total",
        "Queries refused, by reason (queue_full, queue_timeout, memory, memory_timeout).",
        &["reason"],
    )
});

static IN_FLIGHT: LazyLock<Option<IntGauge>> =
    LazyLock::new(|| gauge("promfed_queries_in_flight", "Queries being evaluated now."));

static QUERY_MEMORY: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "promfed_query_memory_bytes",
        "Bytes all queries hold now, as charged to limits.max_memory_bytes.",
    )
});

static QUERY_MEMORY_LIMIT: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "promfed_query_memory_limit_bytes",
        "limits.max_memory_bytes in force.",
    )
});

/// Records a change of the bytes all queries hold (`delta` may be negative).
pub fn query_memory(delta: i64) {
    if let Some(g) = QUERY_MEMORY.as_ref() {
        g.add(delta);
    }
}

/// Records the memory limit of all queries.
pub fn query_memory_limit(bytes: u64) {
    if let Some(g) = QUERY_MEMORY_LIMIT.as_ref() {
        g.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

/// Records a backend's probe outcome.
pub fn backend_up(backend: &str, up: bool) {
    if let Some(g) = BACKEND_UP.as_ref() {
        g.with_label_values(&[backend]).set(i64::from(up));
    }
}

/// Records one backend's answer to a select: its samples, or why it failed
/// (`timeout`, `limit`, `error`).
pub fn backend_answer(backend: &str, took: Duration, answer: Result<u64, &'static str>) {
    let outcome = match answer {
        Ok(samples) => {
            if let Some(c) = SAMPLES_FETCHED.as_ref() {
                c.with_label_values(&[backend]).inc_by(samples);
            }
            "ok"
        }
        Err(outcome) => outcome,
    };
    if outcome != "ok" {
        if let Some(c) = BACKEND_ERRORS.as_ref() {
            c.with_label_values(&[backend, outcome]).inc();
        }
    }
    if let Some(h) = BACKEND_DURATION.as_ref() {
        h.with_label_values(&[backend, outcome])
            .observe(took.as_secs_f64());
    }
}

/// Counts a query refused before evaluation.
pub fn query_refused(reason: &str) {
    if let Some(c) = QUERIES_REFUSED.as_ref() {
        c.with_label_values(&[reason]).inc();
    }
}

static CONNECTIONS_CLOSED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_http_connections_closed_total",
        "Client connections promfed closed or refused itself, by reason (header_timeout, idle_timeout, evicted, refused).",
        &["reason"],
    )
});

/// Counts a client connection promfed closed or refused (`reason`).
pub fn connection_closed(reason: &str) {
    if let Some(c) = CONNECTIONS_CLOSED.as_ref() {
        c.with_label_values(&[reason]).inc();
    }
}

static AUTH_THROTTLED: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_http_auth_throttled_total",
        "Authentication attempts refused without checking, by reason (client, user, busy).",
        &["reason"],
    )
});

/// Counts an authentication attempt refused unchecked (`reason`).
pub fn auth_throttled(reason: &str) {
    if let Some(c) = AUTH_THROTTLED.as_ref() {
        c.with_label_values(&[reason]).inc();
    }
}

static AUTH_REFUSED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    counter(
        "promfed_http_unauthorized_total",
        "Requests refused for missing or wrong credentials.",
    )
});

static RELOADS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    counter_vec(
        "promfed_config_reloads_total",
        "Config loads (start and reloads), by result (success, failure).",
        &["result"],
    )
});

static LAST_RELOAD_OK: LazyLock<Option<IntGauge>> = LazyLock::new(|| {
    gauge(
        "promfed_config_last_reload_successful",
        "Whether the last config reload succeeded (1) or was refused (0).",
    )
});

/// Records a config load's outcome.
pub fn config_reloaded(ok: bool) {
    if let Some(c) = RELOADS.as_ref() {
        c.with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
    }
    if let Some(g) = LAST_RELOAD_OK.as_ref() {
        g.set(i64::from(ok));
    }
}

/// Counts a request refused for its credentials.
pub fn auth_refused() {
    if let Some(c) = AUTH_REFUSED.as_ref() {
        c.inc();
    }
}

/// Counts a query in flight while alive.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn enter() -> Self {
        if let Some(g) = IN_FLIGHT.as_ref() {
            g.inc();
        }
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = IN_FLIGHT.as_ref() {
            g.dec();
        }
    }
}

/// What is known about a finished query.
pub struct QueryRecord<'a> {
    /// `instant` or `range`.
    pub kind: &'static str,
    pub query: &'a str,
    pub duration: Duration,
    pub samples: u64,
    /// Backends asked, by name.
    pub backends: Vec<String>,
    /// How the cache answered (`hit`, `miss`, `coalesced`, ...), if used.
    pub cache: Option<&'static str>,
    /// The errorType when it failed.
    pub error: Option<&'static str>,
}

/// Records a finished query in the metrics and the query log.
pub fn query_done(r: &QueryRecord<'_>) {
    let outcome = r.error.unwrap_or("ok");
    QUERY_HANDLES.with(|cell| {
        let mut handles = cell.borrow_mut();
        let at = handles
            .iter()
            .position(|(k, o, _)| *k == r.kind && *o == outcome);
        let at = match at {
            Some(at) => at,
            None => {
                let (Some(d), Some(s), Some(f)) = (
                    QUERY_DURATION.as_ref(),
                    QUERY_SAMPLES.as_ref(),
                    FANOUT.as_ref(),
                ) else {
                    return;
                };
                handles.push((
                    r.kind,
                    outcome,
                    [
                        d.with_label_values(&[r.kind, outcome]),
                        s.with_label_values(&[r.kind]),
                        f.with_label_values(&[r.kind]),
                    ],
                ));
                handles.len() - 1
            }
        };
        let [duration, samples, fanout] = &handles[at].2;
        duration.observe(r.duration.as_secs_f64());
        samples.observe(r.samples as f64);
        fanout.observe(r.backends.len() as f64);
    });
    write_query_log(r);
}

/// Where query log lines go.
enum QueryLogSink {
    Stderr,
    File(std::fs::File),
}

static QUERY_LOG: LazyLock<Mutex<Option<QueryLogSink>>> = LazyLock::new(|| Mutex::new(None));

/// Sends the query log to `target`: `stderr`, a file path (appended to), or
/// nowhere (`None`).
pub fn set_query_log(target: Option<&str>) -> Result<(), QueryLogError> {
    let sink = match target {
        None => None,
        Some("stderr") => Some(QueryLogSink::Stderr),
        Some(path) => Some(QueryLogSink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("opening query log {path}: {e}"))?,
        )),
    };
    if let Ok(mut slot) = QUERY_LOG.lock() {
        *slot = sink;
    }
    Ok(())
}

fn write_query_log(r: &QueryRecord<'_>) {
    let Ok(mut slot) = QUERY_LOG.lock() else {
        return;
    };
    let Some(sink) = slot.as_mut() else {
        return;
    };
    let line = serde_json::json!({
        "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "kind": r.kind,
        "query": r.query,
        "duration_seconds": r.duration.as_secs_f64(),
        "samples": r.samples,
        "backends": r.backends,
        "cache": r.cache,
        "error": r.error,
    })
    .to_string();
    let written = match sink {
        QueryLogSink::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
        QueryLogSink::File(f) => writeln!(f, "{line}"),
    };
    if let Err(e) = written {
        tracing::warn!("writing the query log: {e}");
    }
}

thread_local! {
    /// This thread's resolved query histograms by (kind, outcome): both
    /// come from short fixed sets (`instant`/`range`, `ok`/errorTypes).
    #[allow(clippy::type_complexity)]
    static QUERY_HANDLES: std::cell::RefCell<Vec<(&'static str, &'static str, [prometheus::Histogram; 3])>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Most (route, code) metric handles one thread keeps resolved.
const MAX_HTTP_HANDLES: usize = 64;

thread_local! {
    /// This thread's resolved `promfed_http_*` series by (route, code): a
    /// request then costs a short scan instead of two label-set lookups.
    static HTTP_HANDLES: std::cell::RefCell<Vec<(String, u16, IntCounter, prometheus::Histogram)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Middleware: counts and times every HTTP request by route pattern and
/// status code.
pub async fn track_http(req: Request, next: Next) -> Response {
    // MatchedPath shares its text (an Arc): no copy per request.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let handler = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let started = Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed().as_secs_f64();
    let code = resp.status().as_u16();
    HTTP_HANDLES.with(|cell| {
        let mut handles = cell.borrow_mut();
        if let Some((_, _, c, h)) = handles
            .iter()
            .find(|(n, k, _, _)| *k == code && n.as_str() == handler)
        {
            c.inc();
            h.observe(took);
            return;
        }
        let (Some(c), Some(h)) = (HTTP_REQUESTS.as_ref(), HTTP_DURATION.as_ref()) else {
            return;
        };
        let status = resp.status();
        let labels = [handler, status.as_str()];
        let (c, h) = (c.with_label_values(&labels), h.with_label_values(&labels));
        c.inc();
        h.observe(took);
        if handles.len() < MAX_HTTP_HANDLES {
            handles.push((handler.to_string(), code, c, h));
        }
    });
    resp
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    // Make every family visible from the start, even before its first sample.
    for m in [
        &*HTTP_REQUESTS,
        &*BACKEND_ERRORS,
        &*SAMPLES_FETCHED,
        &*QUERIES_REFUSED,
    ] {
        let _ = m.as_ref();
    }
    for h in [
        &*HTTP_DURATION,
        &*BACKEND_DURATION,
        &*QUERY_DURATION,
        &*QUERY_SAMPLES,
        &*FANOUT,
    ] {
        let _ = h.as_ref();
    }
    let _ = IN_FLIGHT.as_ref();
    let mut buf = Vec::new();
    let families = REGISTRY.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// A query log target that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryLogError(pub String);

impl From<String> for QueryLogError {
    fn from(message: String) -> Self {
        QueryLogError(message)
    }
}
