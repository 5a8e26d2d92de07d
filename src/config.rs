//! The YAML configuration: its schema, defaults and validation.

mod parse;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on, e.g. `0.0.0.0:9090`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Address of the Thanos StoreAPI gRPC listener (`thanos.info.Info`,
    /// `thanos.Store` Series/LabelNames/LabelValues), e.g. `0.0.0.0:10901`:
    /// Thanos Query or another promfed (`protocol: thanos_store`) can then
    /// use this promfed as a store. It uses the `tls:` settings of the
    /// HTTP API (certificate, and client certificates with
    /// `client_ca_file`) and its `connections:` limits. Absent: no gRPC
    /// listener. Read at start.
    #[serde(default)]
    pub grpc_listen: Option<String>,
    /// Threads that serve HTTP connections, each with its own event loop
    /// (a connection stays on one); answers held by the cache are served
    /// there, everything else is evaluated on the shared worker pool.
    /// Default: the number of CPUs promfed may use. Read at start.
    #[serde(default)]
    pub io_threads: Option<usize>,
    /// Client connections: how many may be open, how long a request's
    /// headers and an idle keep-alive may take. Read at start.
    #[serde(default)]
    pub connections: ConnectionsConfig,
    /// The Prometheus servers (or Prometheus-compatible endpoints) to federate.
    pub backends: Vec<BackendConfig>,
    /// The query cache (instant grid cache, range extents, stores). Absent:
    /// no cache, every query is evaluated.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// What a query does when a backend fails: `abort` fails it with an
    /// error naming the backend; `warn` answers from the others and names
    /// the failed backend in `warnings`. Requests may override it with
    /// Thanos' `partial_response` parameter.
    #[serde(default)]
    pub partial_response: PartialResponse,
    /// Labels that tell HA replicas apart (e.g. `replica`). Series equal
    /// but for these labels are merged into one. Requests may override it
    /// with `replicaLabels[]` and turn merging off with `dedup=false`.
    #[serde(default)]
    pub replica_labels: Vec<String>,
    /// Limits on what one query or request may cost (see `limits.rs`).
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// Where to write the query log, one JSON line per query (query,
    /// duration, samples, backends asked): `stderr` or a file path
    /// (appended to). Off when absent.
    #[serde(default)]
    pub query_log: Option<String>,
    /// Serve the API over HTTPS with these certificates (see `tls.rs`).
    #[serde(default)]
    pub tls: Option<crate::tls::ServerTlsConfig>,
    /// Require clients to authenticate (see `auth.rs`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
}

/// `connections:`: limits on clients' HTTP connections, so that clients
/// who connect and send nothing cannot take what probes and queries need.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Most client connections open at once (default 4096; lowered at
    /// start to the process's open-file limit minus 256). A connection
    /// arriving at the cap closes the connection idle the longest (else
    /// the oldest one still sending its headers); when every connection is
    /// answering a request, the new one is closed at once.
    #[serde(default = "default_max_open")]
    pub max_open: usize,
    /// How long a client may take to send a request's headers, counted
    /// from the connection's accept or, on a kept-alive connection, from
    /// the request's first byte (default 10s); then the connection closes.
    #[serde(
        default = "default_header_read_timeout",
        deserialize_with = "de_duration"
    )]
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request
    /// before it closes (default 60s).
    #[serde(default = "default_idle_timeout", deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max_open: default_max_open(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_max_open() -> usize {
    4096
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The partial-response policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PartialResponse {
    /// Fail the query when any backend fails (the default).
    #[default]
    Abort,
    /// Leave failed backends out and say so in `warnings`.
    Warn,
}

/// One backend: a cluster's Prometheus, Thanos sidecar or any
/// Prometheus-compatible HTTP API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// A unique name, used in errors, warnings and metrics (e.g. `k8s-1`).
    pub name: String,
    /// Base URL of the backend's HTTP API, e.g. `http://prometheus.k8s-1:9090`.
    pub url: String,
    /// Labels added to every series from this backend when the series lacks
    /// them (e.g. `{cluster: k8s-1}`); also used to skip backends that
    /// cannot match a query's matchers.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Deadline for one whole exchange with this backend, body included
    /// (a Prometheus duration such as `30s`; default 30s).
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Most connections (and so requests in flight) promfed opens to this
    /// backend at once, over every query together (default 8; a Prometheus
    /// serves at most 512). Further requests wait for one to be free,
    /// within their query's deadline.
    #[serde(default = "default_backend_max_connections")]
    pub max_connections: usize,
    /// How long an unused connection to this backend is kept open for
    /// reuse before it is closed (a Prometheus duration; default 5s).
    #[serde(
        default = "default_backend_idle_timeout",
        deserialize_with = "de_duration"
    )]
    pub idle_connection_timeout: Duration,
    /// Largest answer body read from this backend for one request, bytes
    /// (default 134217728, 128 MiB). Bodies are decoded as they arrive
    /// where the format allows (streamed remote read) and are never
    /// buffered past this; a larger answer fails with `execution` (422),
    /// naming the backend. Bytes also count against the query's
    /// `limits.max_fetched_bytes`.
    #[serde(default = "default_backend_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How raw samples are read: `remote_read` (Prometheus's
    /// `/api/v1/read`, streamed XOR chunks; the default, for Prometheus and
    /// Thanos sidecars), `query_api` (`/api/v1/query` of a range selector,
    /// for any Prometheus-compatible endpoint such as Thanos Query,
    /// VictoriaMetrics or Mimir) or `thanos_store` (the Thanos StoreAPI over
    /// gRPC, `url: grpc://host:10901`, for sidecars and store gateways;
    /// external labels and time range are discovered through Thanos' Info
    /// API). Metadata uses the HTTP API, or the StoreAPI for `thanos_store`.
    #[serde(default)]
    pub protocol: ReadProtocol,
    /// TLS towards this backend: CA, client certificate, skip-verify.
    #[serde(default)]
    pub tls: Option<crate::tls::BackendTlsConfig>,
    /// A file holding a bearer token sent to this backend (re-read on reload).
    #[serde(default)]
    pub bearer_token_file: Option<std::path::PathBuf>,
    /// Basic-auth credentials sent to this backend.
    #[serde(default)]
    pub basic_auth: Option<crate::auth::BasicAuthConfig>,
}

/// How a backend's raw samples are read.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadProtocol {
    /// Prometheus remote read (`POST /api/v1/read`).
    #[default]
    RemoteRead,
    /// The query API (`/api/v1/query` of a range selector).
    QueryApi,
    /// The Thanos StoreAPI over gRPC (`thanos.Store/Series`).
    ThanosStore,
}

/// Most HTTP connection threads (`io_threads`).
pub const MAX_IO_THREADS: usize = 256;

impl Config {
    /// How many HTTP connection threads to run: `io_threads`, else the
    /// number of CPUs this process may use.
    pub fn io_thread_count(&self) -> usize {
        self.io_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

fn default_listen() -> String {
    "0.0.0.0:9090".to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_backend_max_connections() -> usize {
    8
}

fn default_backend_idle_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_backend_max_response_bytes() -> usize {
    128 << 20
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_prometheus_duration(&s)
        .map(|ms| Duration::from_millis(ms as u64))
        .map_err(serde::de::Error::custom)
}

/// Parses a Prometheus duration (`1h30m`, `250ms`, `2d`) into milliseconds.
/// Units must fall in order `y w d h m s ms`, each at most once.
pub fn parse_prometheus_duration(s: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let bad = || format!("not a valid duration string: {s:?}");
    if s.is_empty() {
        return Err(bad());
    }
    if s == "0" {
        return Ok(0);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(bad());
        }
        let n: i64 = s[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(bad());
        }
        last_unit = Some(idx);
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is invalid:\n  - {}", problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_yaml(&text, &p)
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = parse::parse_all(text).map_err(|problems| ConfigError::Invalid {
            path: origin.to_string(),
            problems,
        })?;
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: origin.to_string(),
                problems,
            })
        }
    }

    /// Things that are allowed but probably wrong, for `check-config` and
    /// the start-up log: backends whose configured external labels are
    /// identical while no `replica_labels` are set (their series would be
    /// merged as if one backend held them, and neither deduplicated as
    /// replicas nor told apart).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.replica_labels.is_empty() {
            return warnings;
        }
        for (i, a) in self.backends.iter().enumerate() {
            for b in &self.backends[i + 1..] {
                if a.external_labels == b.external_labels {
                    warnings.push(format!(
                        "backends {:?} and {:?} have identical external_labels ({}) and no \
                         replica_labels are set: their series cannot be told apart; give each \
                         its own external labels, or name the replica label in replica_labels \
                         if they are an HA pair",
                        a.name,
                        b.name,
                        if a.external_labels.is_empty() {
                            "none".to_string()
                        } else {
                            format!("{:?}", a.external_labels)
                        }
                    ));
                }
            }
        }
        warnings
    }

    /// Every problem with this config, all at once (empty when valid).
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "listen: {:?} is not a socket address such as 0.0.0.0:9090",
                self.listen
            ));
        }
        if self.backends.is_empty() {
            problems.push("backends: at least one backend is required".to_string());
        }
        if let Some(n) = self.io_threads {
            if !(1..=MAX_IO_THREADS).contains(&n) {
                problems.push(format!(
                    "io_threads: {n} is not between 1 and {MAX_IO_THREADS}"
                ));
            }
        }
        if self.connections.max_open == 0 {
            problems.push("connections.max_open: must be greater than 0".to_string());
        }
        for (name, d) in [
            (
                "connections.header_read_timeout",
                self.connections.header_read_timeout,
            ),
            ("connections.idle_timeout", self.connections.idle_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{name}: must be greater than 0"));
            }
        }
        for (i, l) in self.replica_labels.iter().enumerate() {
            if !is_valid_label_name(l) {
                problems.push(format!(
                    "replica_labels[{i}]: {l:?} is not a valid label name"
                ));
            }
        }
        problems.extend(self.limits.validate());
        if let Some(a) = &self.auth {
            problems.extend(a.validate());
        }
        if self
            .query_log
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            problems.push("query_log: must be `stderr` or a file path".to_string());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let at = format!("backends[{i}]");
            if b.name.trim().is_empty() {
                problems.push(format!("{at}.name: must not be empty"));
            } else if !seen.insert(b.name.as_str()) {
                problems.push(format!("{at}.name: {:?} is used twice", b.name));
            }
            match reqwest::Url::parse(&b.url) {
                Ok(u) if !u.username().is_empty() || u.password().is_some() => problems.push(
                    format!("{at}.url: must not hold credentials (use basic_auth)"),
                ),
                _ if b.protocol == ReadProtocol::ThanosStore => {
                    if let Err(e) = crate::source::thanos_store::validate_url(&b.url) {
                        problems.push(format!("{at}.{e}"));
                    }
                }
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                Ok(u) => problems.push(format!(
                    "{at}.url: scheme {:?} is not http or https",
                    u.scheme()
                )),
                Err(e) => problems.push(format!("{at}.url: {e}")),
            }
            if let Some(t) = &b.tls {
                problems.extend(t.validate(&at));
            }
            problems.extend(crate::auth::validate_backend(
                &at,
                b.bearer_token_file.as_ref(),
                b.basic_auth.as_ref(),
            ));
            if b.timeout.is_zero() {
                problems.push(format!("{at}.timeout: must be greater than 0"));
            }
            if b.max_connections == 0 {
                problems.push(format!("{at}.max_connections: must be greater than 0"));
            }
            if b.max_response_bytes == 0 {
                problems.push(format!("{at}.max_response_bytes: must be greater than 0"));
            }
            for (k, v) in &b.external_labels {
                if !is_valid_label_name(k) {
                    problems.push(format!(
                        "{at}.external_labels: {k:?} is not a valid label name"
                    ));
                }
                if k == crate::model::METRIC_NAME {
                    problems.push(format!(
                        "{at}.external_labels: __name__ cannot be an external label"
                    ));
                }
                if v.is_empty() {
                    problems.push(format!("{at}.external_labels.{k}: value must not be empty"));
                }
            }
        }
        if let Some(c) = &self.cache {
            c.validate(&mut problems);
        }
        problems
    }
}

/// True for a legacy Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The query cache: instant queries on a time grid with single flight, range
/// queries as step-aligned extents, in memory or shared through Redis.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Turns the cache off without removing the section (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Instant queries: `time` is rounded down to a multiple of this grid and
    /// the query is evaluated at the rounded time, so every caller in one
    /// grid cell shares one evaluation and gets the same bytes (default 10s).
    #[serde(default = "default_grid", deserialize_with = "de_duration")]
    pub grid: Duration,
    /// How long an instant answer for a recent time is kept (default 1m).
    #[serde(default = "default_instant_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// A rounded `time` older than now minus this horizon counts as old: its
    /// data no longer changes, so its answer is kept for `old_ttl` (default 10m).
    #[serde(default = "default_horizon", deserialize_with = "de_duration")]
    pub horizon: Duration,
    /// How long an instant answer for an old time is kept (default 1h).
    #[serde(default = "default_old_ttl", deserialize_with = "de_duration")]
    pub old_ttl: Duration,
    /// Queries promfed evaluates itself at every grid tick (with default
    /// options), so callers such as analysis runs always find a fresh entry.
    #[serde(default)]
    pub warm_queries: Vec<String>,
    /// The range-query cache.
    #[serde(default)]
    pub range: RangeCacheConfig,
    /// Where entries live: `memory` (this process only, the default) or
    /// `redis` (shared by every promfed replica, with a small memory tier in
    /// front).
    #[serde(default)]
    pub store: CacheStoreKind,
    /// The memory store (also the local tier in front of Redis).
    #[serde(default)]
    pub memory: MemoryStoreConfig,
    /// The Redis store; required when `store: redis`.
    #[serde(default)]
    pub redis: Option<RedisStoreConfig>,
}

/// The range-query cache: results kept as step-aligned extents per query,
/// step and options; only missing parts are evaluated.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RangeCacheConfig {
    /// Cache range queries (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Points newer than now minus this are never cached: recent data may
    /// still arrive (default 1m).
    #[serde(default = "default_max_freshness", deserialize_with = "de_duration")]
    pub max_freshness: Duration,
    /// How long a query's extents are kept after their last update (default 1h).
    #[serde(default = "default_old_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
}

impl Default for RangeCacheConfig {
    fn default() -> Self {
        RangeCacheConfig {
            enabled: true,
            max_freshness: default_max_freshness(),
            ttl: default_old_ttl(),
        }
    }
}

/// Which store holds cache entries.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheStoreKind {
    /// In this process's memory.
    #[default]
    Memory,
    /// In Redis, shared by every replica; a memory tier in front.
    Redis,
}

/// The in-memory store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemoryStoreConfig {
    /// Largest total size of the entries held, in MiB (default 256).
    #[serde(default = "default_memory_mib")]
    pub max_mib: u64,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_mib: default_memory_mib(),
        }
    }
}

/// The Redis store. A Redis outage only turns the shared tier off (a log
/// line and `promfed_cache_store_errors_total`); queries still succeed.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisStoreConfig {
    /// Redis URL, e.g. `redis://redis.promfed:6379/0`.
    pub url: String,
    /// Deadline of every Redis call, connecting included (default 100ms).
    #[serde(default = "default_redis_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// After a failure, Redis is left alone for this long (default 5s).
    #[serde(default = "default_redis_backoff", deserialize_with = "de_duration")]
    pub backoff: Duration,
    /// Prefix of every key promfed writes (default `promfed:`).
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
    /// Replicas coalesce through Redis: the first to miss a grid cell takes
    /// a lease on evaluating it and the others wait for its answer, for at
    /// most this long before evaluating themselves (default 10s; `0s`
    /// turns it off, and every replica that misses evaluates).
    #[serde(default = "default_redis_lease", deserialize_with = "de_duration")]
    pub lease: Duration,
}

fn default_true() -> bool {
    true
}

fn default_grid() -> Duration {
    Duration::from_secs(10)
}

fn default_instant_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_horizon() -> Duration {
    Duration::from_secs(600)
}

fn default_old_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_freshness() -> Duration {
    Duration::from_secs(60)
}

fn default_memory_mib() -> u64 {
    256
}

fn default_redis_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_redis_lease() -> Duration {
    Duration::from_secs(10)
}

fn default_redis_backoff() -> Duration {
    Duration::from_secs(5)
}

fn default_redis_prefix() -> String {
    "promfed:".to_string()
}

impl CacheConfig {
    /// Adds this section's problems to `problems`.
    fn validate(&self, problems: &mut Vec<String>) {
        if self.grid.is_zero() || !self.grid.subsec_nanos().is_multiple_of(1_000_000) {
            problems.push("cache.grid: must be a positive whole number of milliseconds".into());
        }
        for (name, d) in [
            ("cache.ttl", self.ttl),
            ("cache.old_ttl", self.old_ttl),
            ("cache.range.ttl", self.range.ttl),
        ] {
            if d.is_zero() {
                problems.push(format!("{name}: must be greater than 0"));
            }
        }
        if self.memory.max_mib == 0 {
            problems.push("cache.memory.max_mib: must be greater than 0".into());
        }
        for (i, q) in self.warm_queries.iter().enumerate() {
            if let Err(e) = promql_parser::parser::parse(q) {
                problems.push(format!("cache.warm_queries[{i}]: {e}"));
            }
        }
        match (&self.store, &self.redis) {
            (CacheStoreKind::Redis, None) => {
                problems.push("cache.redis: required when cache.store is redis".into())
            }
            (CacheStoreKind::Memory, Some(_)) => problems.push(
                "cache.redis: set, but cache.store is memory (say store: redis to use it)".into(),
            ),
            _ => {}
        }
        if let Some(r) = &self.redis {
            match reqwest::Url::parse(&r.url) {
                Ok(u) if u.scheme() == "redis" => {}
                Ok(u) => problems.push(format!(
                    "cache.redis.url: scheme {:?} is not redis",
                    u.scheme()
                )),
                Err(e) => problems.push(format!("cache.redis.url: {e}")),
            }
            if r.timeout.is_zero() {
                problems.push("cache.redis.timeout: must be greater than 0".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_prometheus_duration("30s"), Ok(30_000));
        assert_eq!(parse_prometheus_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_prometheus_duration("250ms"), Ok(250));
        assert_eq!(parse_prometheus_duration("0"), Ok(0));
        assert!(parse_prometheus_duration("").is_err());
        assert!(parse_prometheus_duration("30").is_err());
        assert!(parse_prometheus_duration("1m1h").is_err());
        assert!(parse_prometheus_duration("1x").is_err());
        assert!(parse_prometheus_duration("99999999999999999y").is_err());
    }

    #[test]
    fn every_bad_value_is_reported_with_its_path_and_line() {
        let text = "listen: 127.0.0.1:0\nbackends:\n  - name: a\n    url: http://127.0.0.1:1\n    timeout: 5x\n  - name: b\n    url: http://127.0.0.1:2\n    timout: 5s\ncache:\n  grid: soon\n";
        let Err(ConfigError::Invalid { problems, .. }) = Config::from_yaml(text, "t") else {
            panic!("accepted");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(
            problems[0],
            "backends[0].timeout: not a valid duration string: \"5x\" (line 5)"
        );
        assert!(
            problems[1].starts_with("backends[1].timout: unknown field `timout`, expected one of")
                && problems[1].ends_with("(line 8)"),
            "{problems:?}"
        );
        assert_eq!(
            problems[2],
            "cache.grid: not a valid duration string: \"soon\" (line 10)"
        );
    }

    #[test]
    fn identical_external_labels_without_replica_labels_are_flagged() {
        let two = |extra: &str, l2: &str| {
            Config::from_yaml(
                &format!("{extra}backends:\n  - {{name: a, url: 'http://127.0.0.1:1', external_labels: {{cluster: x}}}}\n  - {{name: b, url: 'http://127.0.0.1:2', external_labels: {{cluster: {l2}}}}}\n"),
                "t",
            )
            .expect("valid")
            .warnings()
        };
        let w = two("", "x");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("\"a\" and \"b\" have identical external_labels"),
            "{w:?}"
        );
        assert!(two("", "y").is_empty());
        assert!(two("replica_labels: [replica]\n", "x").is_empty());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_yaml(
            "backends:\n  - name: a\n    url: http://127.0.0.1:9091\n",
            "test",
        )
        .expect("valid");
        assert_eq!(c.listen, "0.0.0.0:9090");
        assert_eq!(c.backends[0].timeout, Duration::from_secs(30));
    }

    #[test]
    fn io_threads_default_to_the_cpus_and_are_bounded() {
        let base = "backends:\n  - name: a\n    url: http://127.0.0.1:9091\n";
        let c = Config::from_yaml(base, "test").expect("valid");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.io_thread_count(), cpus);
        let c = Config::from_yaml(&format!("io_threads: 3\n{base}"), "test").expect("valid");
        assert_eq!(c.io_thread_count(), 3);
        for bad in ["0", "257"] {
            let e = Config::from_yaml(&format!("io_threads: {bad}\n{base}"), "test")
                .expect_err("out of range");
            assert!(e.to_string().contains("io_threads"), "{e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = Config::from_yaml(
            "backends:\n  - name: a\n    url: http://x\n    tiemout: 3s\n",
            "test",
        )
        .expect_err("typo must be refused");
        assert!(e.to_string().contains("tiemout"), "{e}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = Config::from_yaml(
            "listen: nowhere\nbackends:\n  - name: a\n    url: ftp://x\n  - name: a\n    url: 'not a url'\n    external_labels: {'0bad': x}\n",
            "test",
        )
        .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = e else {
            panic!("expected Invalid, got {e}");
        };
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }

    #[test]
    fn thanos_store_backends_take_grpc_urls() {
        let c = Config::from_yaml(
            "backends:\n  - name: a\n    url: grpc://127.0.0.1:10901\n    protocol: thanos_store\n",
            "test",
        )
        .expect("valid");
        assert_eq!(c.backends[0].protocol, ReadProtocol::ThanosStore);
        for (url, protocol, want) in [
            ("http://127.0.0.1:10901", "thanos_store", "grpc://host:port"),
            ("grpc://127.0.0.1", "thanos_store", "no port"),
            ("grpc://127.0.0.1:10901", "remote_read", "not http or https"),
        ] {
            let e = Config::from_yaml(
                &format!("backends:\n  - name: a\n    url: {url}\n    protocol: {protocol}\n"),
                "test",
            )
            .expect_err("invalid");
            assert!(e.to_string().contains(want), "{url} {protocol}: {e}");
        }
    }

    #[test]
    fn cache_section_is_optional_and_has_defaults() {
        let base = "backends:\n  - name: a\n    url: http://127.0.0.1:9091\n";
        assert_eq!(Config::from_yaml(base, "test").expect("valid").cache, None);
        let c = Config::from_yaml(&format!("{base}cache: {{}}\n"), "test")
            .expect("valid")
            .cache
            .expect("cache section");
        assert!(c.enabled && c.range.enabled);
        assert_eq!(c.grid, Duration::from_secs(10));
        assert_eq!(c.store, CacheStoreKind::Memory);
        let c = Config::from_yaml(
            &format!("{base}cache:\n  grid: 20s\n  store: redis\n  redis: {{url: 'redis://127.0.0.1:6379/0', timeout: 50ms}}\n  warm_queries: ['sum(up)']\n"),
            "test",
        )
        .expect("valid")
        .cache
        .expect("cache section");
        assert_eq!(c.grid, Duration::from_secs(20));
        assert_eq!(c.redis.map(|r| r.timeout), Some(Duration::from_millis(50)));
    }

    #[test]
    fn cache_problems_are_reported() {
        let e = Config::from_yaml(
            "backends:\n  - name: a\n    url: http://x\ncache:\n  grid: 0s\n  store: redis\n  warm_queries: ['sum(']\n  memory: {max_mib: 0}\n",
            "test",
        )
        .expect_err("invalid");
        let ConfigError::Invalid { problems, .. } = e else {
            panic!("expected Invalid, got {e}");
        };
        assert_eq!(problems.len(), 4, "{problems:#?}");
        let e = Config::from_yaml(
            "backends:\n  - name: a\n    url: http://x\ncache: {gird: 10s}\n",
            "test",
        )
        .expect_err("typo must be refused");
        assert!(e.to_string().contains("gird"), "{e}");
    }

    #[test]
    fn shipped_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("config/ exists") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n > 0, "no config files found in {}", dir.display());
    }
}
