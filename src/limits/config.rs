//! The `limits:` section of the config: every field, its default and its
//! validation.

use std::time::Duration;

use serde::Deserialize;

use super::fetched;

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
        deserialize_with = "crate::model::time::de_duration"
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
pub(super) const DEFAULT_MAX_QUERY_BYTES: u64 = 1 << 30;

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
