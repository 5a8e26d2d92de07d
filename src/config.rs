//! The YAML configuration: its schema, defaults and validation.

mod cache;
mod parse;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub(crate) use crate::model::time::de_duration;
pub use crate::model::time::parse_prometheus_duration;
pub use cache::{
    CacheConfig, CacheStoreKind, MemoryStoreConfig, RangeCacheConfig, RedisStoreConfig,
};
pub use values::{grpc_authority, is_valid_label_name, validate_url};

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
    /// `client_ca_file`) and its `connections:` limits. `auth:` is not
    /// applied to it (StoreAPI clients send no bearer token or basic
    /// auth): with `auth:` set, `tls.client_ca_file` is required, so that
    /// the StoreAPI is no unauthenticated way around it. Absent: no gRPC
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
    /// Exact pushdown (default false): a per-series range function of one
    /// metric (`rate(x[5m])`, `increase`, `irate`, `delta`, `idelta`,
    /// `deriv`, `changes`, `resets`, `*_over_time` but `absent_over_time`
    /// and the experimental ones) is sent whole to the `/api/v1/query`
    /// (`query_range`) of every backend that may hold the metric, and only
    /// its answer (one point per series and step, gzipped JSON) comes back
    /// instead of the raw samples; promfed evaluates the rest. An
    /// aggregation of such a function, of the metric's selector or of
    /// per-series arithmetic with a number (`sum by (cluster)
    /// (rate(x[5m]))`, `count(x)`) is sent whole when its groups stay on
    /// one backend (its `by` keeps, or `without` spares, an external label
    /// telling the backends apart: `sum`, `avg`, `count`, `min`, `max`,
    /// `group`, `stddev`, `stdvar`, `quantile`, `topk`, `bottomk`), or its
    /// partial results combine exactly (`count`, `group`, `min`, `max`;
    /// `topk`/`bottomk` re-ranked from each backend's best k + 1 unless a
    /// tie or NaN lets Prometheus's heap decide),
    /// and every backend's external labels sort before the labels of its
    /// series (asked of its `/api/v1/labels`), so that its order is the
    /// union's; in a range query only at the root. A node is pushed only
    /// when every backend it reaches has `pushdown: true`, none is an HA
    /// replica (has a `replica_labels` label) and their external labels
    /// tell each pair apart (so no series spans two backends); otherwise,
    /// or when a backend's answer fails, warns or holds a native
    /// histogram, its samples are read as usual. Pushed nodes are asked
    /// while the other selectors are read. The `X-Promfed-Plan` answer
    /// header says what was pushed. Requests with Thanos' `dedup`,
    /// `replicaLabels[]` or `partial_response` parameters and cached
    /// queries are not pushed down. Read at start.
    #[serde(default)]
    pub pushdown: bool,
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
    /// How often every backend is probed for `/api/v1/stores` and the
    /// `promfed_backend_up` gauge (a Prometheus duration; default 15s).
    /// Between probes, each request a backend fails turns its gauge to 0
    /// at once and each one it answers turns it back to 1.
    #[serde(default = "default_probe_interval", deserialize_with = "de_duration")]
    pub probe_interval: Duration,
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
    /// where the format allows (streamed remote read, StoreAPI frames,
    /// the query API's answers to selectors) and are never
    /// buffered past this; a larger answer fails with `execution` (422),
    /// naming the backend. Bytes also count against the query's
    /// `limits.max_fetched_bytes`.
    #[serde(default = "default_backend_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Ask this backend to gzip its answers to metadata and pass-through
    /// calls (series, labels, label values, metadata, rules, ...; default
    /// false). A Prometheus spends about a millisecond gzipping each
    /// answer, more than a small answer saves on a fast link: turn it on
    /// for slow links and large label sets. Sample reads are not affected
    /// (remote read is snappy-compressed; `query_api` reads always offer
    /// gzip).
    #[serde(default)]
    pub metadata_gzip: bool,
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
    /// Whether this backend's `/api/v1/query` and `/api/v1/query_range`
    /// (at `url`, also for `remote_read`) evaluate PromQL exactly as the
    /// Prometheus version promfed follows (3.8): a Prometheus 3.8 server or
    /// a Thanos sidecar's Prometheus, not Thanos Query, Mimir or
    /// VictoriaMetrics, whose functions differ. Only such backends take
    /// part in the top-level `pushdown` (default false; not for
    /// `thanos_store`, which has no query API).
    #[serde(default)]
    pub pushdown: bool,
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

fn default_probe_interval() -> Duration {
    Duration::from_secs(15)
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
    /// replicas nor told apart). A `thanos_store` backend is left out:
    /// its labels are the ones its store announces through Info, known
    /// only once it answers (promfed's own StoreAPI announces the union of
    /// its backends', a sidecar its Prometheus's).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.replica_labels.is_empty() {
            return warnings;
        }
        let configured: Vec<&BackendConfig> = self
            .backends
            .iter()
            .filter(|b| b.protocol != ReadProtocol::ThanosStore)
            .collect();
        for (i, a) in configured.iter().enumerate() {
            for b in &configured[i + 1..] {
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

    /// `auth:` with `grpc_listen:` needs client certificates on the gRPC
    /// listener: Thanos Query and Ruler authenticate to a store only with
    /// a TLS client certificate (they send no bearer token or basic auth),
    /// so the one credential every StoreAPI client can present is the
    /// certificate (promfed above promfed sends its `backends[].tls`
    /// one); without `tls.client_ca_file` the listener would serve every
    /// series to anyone who reaches the port, around `auth:`.
    fn grpc_auth_problem(&self) -> Option<String> {
        let mtls = self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        match &self.grpc_listen {
            Some(addr) if !mtls => Some(format!(
                "grpc_listen: {addr:?} would serve the StoreAPI without authentication while \
                 auth: protects the HTTP API (Thanos Query and Ruler send stores no bearer \
                 token or basic auth, only a client certificate); require client certificates \
                 with tls.cert_file, tls.key_file and tls.client_ca_file, or leave grpc_listen \
                 out"
            )),
            _ => None,
        }
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
            ("probe_interval", self.probe_interval),
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
            problems.extend(self.grpc_auth_problem());
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
                    if let Err(e) = validate_url(&b.url) {
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
            if b.pushdown && b.protocol == ReadProtocol::ThanosStore {
                problems.push(format!(
                    "{at}.pushdown: a thanos_store backend has no query API to push down to"
                ));
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

#[cfg(test)]
mod tests;
