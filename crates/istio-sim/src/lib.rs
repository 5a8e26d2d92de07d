//! Simulated Istio traffic of the seed's helloworld canary, written as
//! OpenMetrics text that promtool backfills into real Prometheus servers.
//!
//! The mesh: in every cluster `istio-ingressgateway` sends to `helloworld`
//! (v1 pods, service `helloworld`) and `helloworld-canary` (v2 pods, service
//! `helloworld-canary`) along an Argo Rollouts canary weight schedule; a share
//! of each cluster's traffic goes to the pods of the next cluster. A few
//! background services (bookinfo, a gRPC service, plain application metrics)
//! fill each cluster up to a few thousand series.
//!
//! # The data
//! - `istio_requests_total` (counter) and, for the helloworld edges,
//!   `istio_request_duration_milliseconds` (classic histogram, Istio's 20
//!   default buckets), both `reporter="source"` (reported by the
//!   ingress gateway pod, in the source cluster's data) and
//!   `reporter="destination"` (reported by the helloworld pod, in the
//!   destination cluster's data), with Istio's standard labels plus the
//!   scrape labels `job`, `instance`, `pod`, `namespace`. Empty Istio labels
//!   (`grpc_response_status` of HTTP traffic) are left out, as a scrape
//!   drops them; the gRPC background service sets it.
//! - Per cluster: one ingress gateway pod, one helloworld v1 pod, one v2
//!   pod. Ingress rate [`Schedule::ingress_rps`] (30, 40, ... req/s ±10 %),
//!   [`CROSS_CLUSTER_SHARE`] of it to the next cluster's pods; 5xx shares
//!   [`V1_ERROR_RATE`] and [`Canary::error_rate`], split 503/500.
//!   A series appears at its first request, as Envoy's stats do.
//! - Background: bookinfo (productpage, details, reviews v1–v3, ratings,
//!   a gRPC recommendations service; counters only) and
//!   [`SimConfig::background_series`] plain application series (`up`,
//!   `process_*`, `go_goroutines`, `http_server_requests_total`), and
//!   [`SimConfig::background_mesh_series`] `istio_requests_total` series of
//!   those services (none by default; the scale benchmark's clusters have
//!   thousands, so that the dashboard's aggregations touch many series).
//! - One counter reset: the first cluster's ingress gateway pod restarts
//!   a quarter into the third step ([`Schedule::counter_reset`]); its
//!   series restart from zero and it misses one or two scrapes.
//! - With the defaults: about 2,600 series and 610,000 samples per
//!   cluster (230 MB of OpenMetrics text per cluster, 480 MB union).
//!
//! Everything is a pure function of [`SimConfig`]: the same config gives the
//! same bytes. Timestamps are whole milliseconds that are never on a whole
//! second, chosen so that promtool's float parsing stores exactly the
//! millisecond the simulation meant ([`Simulation::series`] returns the very
//! samples a Prometheus loaded from the files holds).

mod background;
mod mesh;
mod openmetrics;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use promfed::model::{Labels, Sample, Series};

/// 2024-08-18T12:00:00Z, the default start of the simulated run (2 h aligned,
/// as promtool's blocks are).
pub const DEFAULT_START: i64 = 1_723_982_400;
/// Default length of the run, seconds.
pub const DEFAULT_DURATION_SECS: i64 = 3600;
/// Default seed.
pub const DEFAULT_SEED: u64 = 42;
/// Default number of plain (non-Istio) background series per cluster.
pub const DEFAULT_BACKGROUND_SERIES: usize = 2000;
/// Default canary weights of the rollout's steps, percent.
pub const DEFAULT_WEIGHTS: [u32; 6] = [0, 20, 40, 60, 80, 100];
/// Scrape interval of every simulated target, seconds.
pub const SCRAPE_INTERVAL_SECS: i64 = 15;
/// Share of each cluster's ingress traffic sent to pods in the next cluster
/// (only with two or more clusters).
pub const CROSS_CLUSTER_SHARE: f64 = 0.25;
/// 5xx share of helloworld v1 (the stable version).
pub const V1_ERROR_RATE: f64 = 0.01;
/// 5xx share of a good canary (v2).
pub const GOOD_CANARY_ERROR_RATE: f64 = 0.012;
/// 5xx share of a bad canary (v2).
pub const BAD_CANARY_ERROR_RATE: f64 = 0.30;
/// Share of 5xx answers that are 503 (the rest are 500).
pub const SHARE_503: f64 = 0.6;

/// The Argo Rollouts AnalysisTemplate query of the seed: the canary's
/// success rate over both clusters.
pub const SUCCESS_RATE_QUERY: &str = "sum(irate(istio_requests_total{reporter=\"source\",destination_service=~\"helloworld-canary.helloworld.svc.cluster.local\",response_code!~\"5.*\"}[40s])) / sum(irate(istio_requests_total{reporter=\"source\",destination_service=~\"helloworld-canary.helloworld.svc.cluster.local\"}[40s]))";

/// The AnalysisTemplate's threshold: `result[0] > 0.90` passes.
pub const SUCCESS_THRESHOLD: f64 = 0.90;

/// Which canary the run rolls out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Canary {
    /// v2 fails about as often as v1: the analysis passes.
    Good,
    /// v2 fails [`BAD_CANARY_ERROR_RATE`] of requests: the analysis fails.
    Bad,
}

impl Canary {
    /// The configured 5xx share of v2.
    pub fn error_rate(self) -> f64 {
        match self {
            Canary::Good => GOOD_CANARY_ERROR_RATE,
            Canary::Bad => BAD_CANARY_ERROR_RATE,
        }
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Canary::Good => "good",
            Canary::Bad => "bad",
        })
    }
}

impl FromStr for Canary {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "good" => Ok(Canary::Good),
            "bad" => Ok(Canary::Bad),
            other => Err(SimError::Config(vec![format!(
                "canary must be good or bad, not {other:?}"
            )])),
        }
    }
}

/// Why a simulation could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is not usable; every problem is listed.
    #[error("invalid simulation config: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Writing the output failed.
    #[error("writing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Cluster names, e.g. `k8s-1`, `k8s-2` (the value of the `cluster` label).
    pub clusters: Vec<String>,
    /// Start of the run, unix seconds.
    pub start: i64,
    /// Length of the run, seconds; split evenly between the weight steps.
    pub duration_secs: i64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Good or bad canary.
    pub canary: Canary,
    /// Plain (non-Istio) background series per cluster.
    pub background_series: usize,
    /// `istio_requests_total` series of the background services per
    /// cluster (their pods' destination-reported requests from other
    /// background services, 200 and 503 answers), on top of the mesh's.
    pub background_mesh_series: usize,
    /// Canary weight of each rollout step, percent.
    pub weights: Vec<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            clusters: vec!["k8s-1".to_string(), "k8s-2".to_string()],
            start: DEFAULT_START,
            duration_secs: DEFAULT_DURATION_SECS,
            seed: DEFAULT_SEED,
            canary: Canary::Good,
            background_series: DEFAULT_BACKGROUND_SERIES,
            background_mesh_series: 0,
            weights: DEFAULT_WEIGHTS.to_vec(),
        }
    }
}

impl SimConfig {
    /// Checks the config, reporting every problem at once.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut errs = Vec::new();
        if self.clusters.is_empty() {
            errs.push("at least one cluster is needed".to_string());
        }
        for (i, c) in self.clusters.iter().enumerate() {
            let ok = !c.is_empty()
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.');
            if !ok {
                errs.push(format!(
                    "cluster name {c:?} must be non-empty [A-Za-z0-9._-] (it is also a file name)"
                ));
            }
            if self.clusters[..i].contains(c) {
                errs.push(format!("cluster {c:?} is listed twice"));
            }
            if c == "union" {
                errs.push("cluster name \"union\" is reserved for the union file".to_string());
            }
        }
        if self.weights.is_empty() {
            errs.push("at least one weight step is needed".to_string());
        }
        if let Some(w) = self.weights.iter().find(|w| **w > 100) {
            errs.push(format!("weight {w} is above 100 percent"));
        }
        let steps = self.weights.len().max(1) as i64;
        if self.duration_secs < steps * 4 * SCRAPE_INTERVAL_SECS {
            errs.push(format!(
                "duration {} s is too short: each of the {steps} steps needs at least {} s",
                self.duration_secs,
                4 * SCRAPE_INTERVAL_SECS
            ));
        }
        if self.duration_secs > 7 * 24 * 3600 {
            errs.push("duration above 7 days".to_string());
        }
        if self.start <= 0 || self.start > 32_503_680_000 {
            errs.push(format!("start {} is not a plausible unix time", self.start));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(SimError::Config(errs))
        }
    }

    /// The rollout schedule this config produces.
    pub fn schedule(&self) -> Schedule {
        let n = self.weights.len().max(1) as i64;
        let step_len = self.duration_secs / n;
        let steps = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| Step {
                index: i,
                weight: *w,
                start: self.start + i as i64 * step_len,
                end: if i as i64 == n - 1 {
                    self.start + self.duration_secs
                } else {
                    self.start + (i as i64 + 1) * step_len
                },
            })
            .collect::<Vec<_>>();
        let reset_step = steps.len().min(3).saturating_sub(1);
        let reset_at = steps
            .get(reset_step)
            .map(|s| s.start + (s.end - s.start) / 4)
            .unwrap_or(self.start);
        Schedule {
            start: self.start,
            end: self.start + self.duration_secs,
            scrape_interval_seconds: SCRAPE_INTERVAL_SECS,
            clusters: self.clusters.clone(),
            seed: self.seed,
            canary: self.canary,
            v1_error_rate: V1_ERROR_RATE,
            v2_error_rate: self.canary.error_rate(),
            expected_canary_success_rate: 1.0 - self.canary.error_rate(),
            cross_cluster_share: if self.clusters.len() > 1 {
                CROSS_CLUSTER_SHARE
            } else {
                0.0
            },
            ingress_rps: (0..self.clusters.len()).map(mesh::ingress_rps).collect(),
            steps,
            counter_reset: CounterReset {
                cluster: self.clusters.first().cloned().unwrap_or_default(),
                pod: mesh::ingress_pod_name(0, 0),
                at: reset_at,
                down_seconds: mesh::RESTART_DOWN_SECS,
            },
            success_rate_query: SUCCESS_RATE_QUERY.to_string(),
            success_threshold: SUCCESS_THRESHOLD,
        }
    }
}

/// When the run happens and what it does; written as `schedule.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// First possible sample, unix seconds (samples are strictly after it).
    pub start: i64,
    /// End of the run, unix seconds (samples are strictly before it).
    pub end: i64,
    /// Scrape interval of every series, seconds.
    pub scrape_interval_seconds: i64,
    /// The clusters, in config order.
    pub clusters: Vec<String>,
    /// The seed.
    pub seed: u64,
    /// Good or bad canary.
    pub canary: Canary,
    /// Configured 5xx share of v1.
    pub v1_error_rate: f64,
    /// Configured 5xx share of v2 (the canary).
    pub v2_error_rate: f64,
    /// `1 - v2_error_rate`: what the success-rate query should be near.
    pub expected_canary_success_rate: f64,
    /// Share of each cluster's ingress traffic sent to the next cluster.
    pub cross_cluster_share: f64,
    /// Mean ingress requests per second to helloworld, per cluster.
    pub ingress_rps: Vec<f64>,
    /// The rollout's steps.
    pub steps: Vec<Step>,
    /// The one counter reset of the run.
    pub counter_reset: CounterReset,
    /// The AnalysisTemplate query ([`SUCCESS_RATE_QUERY`]).
    pub success_rate_query: String,
    /// The AnalysisTemplate threshold ([`SUCCESS_THRESHOLD`]).
    pub success_threshold: f64,
}

/// One rollout step: from `start` to `end` (unix seconds) the canary gets
/// `weight` percent of helloworld's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub index: usize,
    pub weight: u32,
    pub start: i64,
    pub end: i64,
}

impl Step {
    /// The middle of the step, unix seconds.
    pub fn mid(&self) -> f64 {
        (self.start + self.end) as f64 / 2.0
    }
}

/// A container restart of one istio-ingressgateway pod: every series it
/// reports starts again from zero at `at`, and it is not scraped for
/// `down_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CounterReset {
    pub cluster: String,
    pub pod: String,
    /// Unix seconds.
    pub at: i64,
    pub down_seconds: i64,
}

/// The kind of a metric family (its `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric family: the name after `# TYPE` and its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// One simulated series of one cluster, without the `cluster` label.
#[derive(Debug, Clone, PartialEq)]
pub struct SimSeries {
    /// Index into [`Simulation::families`].
    pub family: usize,
    /// The sample name (`istio_requests_total`, `..._bucket`, ...).
    pub name: String,
    /// Labels without `__name__` and without `cluster`.
    pub labels: Labels,
    /// Samples in time order, ms timestamps.
    pub samples: Vec<Sample>,
}

/// The data of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterData {
    pub name: String,
    /// Sorted by family, then name, then labels.
    pub series: Vec<SimSeries>,
}

/// Series and sample counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub series: usize,
    pub samples: usize,
}

/// The files [`Simulation::write_dir`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SimFiles {
    /// `(cluster, DIR/<cluster>.om)`, no `cluster` label inside.
    pub clusters: Vec<(String, PathBuf)>,
    /// `DIR/union.om`, every series with its `cluster` label.
    pub union: PathBuf,
    /// `DIR/schedule.json`.
    pub schedule: PathBuf,
}

/// A generated run: every cluster's series and the schedule.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub config: SimConfig,
    pub schedule: Schedule,
    pub families: Vec<Family>,
    pub clusters: Vec<ClusterData>,
}

impl Simulation {
    /// Simulates the run `config` describes.
    pub fn generate(config: &SimConfig) -> Result<Simulation, SimError> {
        config.validate()?;
        let schedule = config.schedule();
        let families = mesh::families();
        let clusters = mesh::simulate(config, &schedule);
        Ok(Simulation {
            config: config.clone(),
            schedule,
            families,
            clusters,
        })
    }

    /// Series and samples of cluster `i`.
    pub fn counts(&self, i: usize) -> Counts {
        self.clusters
            .get(i)
            .map(|c| Counts {
                series: c.series.len(),
                samples: c.series.iter().map(|s| s.samples.len()).sum(),
            })
            .unwrap_or_default()
    }

    /// Every cluster's series as the model's series: `__name__` set, and the
    /// `cluster` label too when `with_cluster_label`.
    pub fn series(&self, i: usize, with_cluster_label: bool) -> Vec<Series> {
        let Some(c) = self.clusters.get(i) else {
            return Vec::new();
        };
        let mut out: Vec<Series> = c
            .series
            .iter()
            .map(|s| {
                let mut labels = s.labels.clone();
                labels.set(promfed::model::METRIC_NAME, &s.name);
                if with_cluster_label {
                    labels.set("cluster", &c.name);
                }
                Series {
                    labels,
                    samples: s.samples.clone(),
                    histograms: Vec::new(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Writes cluster `i`'s OpenMetrics text (no `cluster` label).
    pub fn write_cluster(&self, i: usize, w: &mut dyn Write) -> io::Result<()> {
        let Some(c) = self.clusters.get(i) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no cluster number {i}"),
            ));
        };
        openmetrics::write(&self.families, &[(c, None)], w)
    }

    /// Writes the union OpenMetrics text: every cluster's series with its
    /// `cluster` label.
    pub fn write_union(&self, w: &mut dyn Write) -> io::Result<()> {
        let parts: Vec<(&ClusterData, Option<&str>)> = self
            .clusters
            .iter()
            .map(|c| (c, Some(c.name.as_str())))
            .collect();
        openmetrics::write(&self.families, &parts, w)
    }

    /// Writes `<cluster>.om` for every cluster, `union.om` and
    /// `schedule.json` into `dir` (created if missing).
    pub fn write_dir(&self, dir: &Path) -> Result<SimFiles, SimError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SimError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let write_file = |path: &Path, f: &dyn Fn(&mut dyn Write) -> io::Result<()>| {
            let file = std::fs::File::create(path).map_err(io_err(path))?;
            let mut w = io::BufWriter::with_capacity(1 << 20, file);
            f(&mut w).map_err(io_err(path))?;
            w.flush().map_err(io_err(path))
        };
        let mut clusters = Vec::new();
        for (i, c) in self.clusters.iter().enumerate() {
            let path = dir.join(format!("{}.om", c.name));
            write_file(&path, &|w| self.write_cluster(i, w))?;
            clusters.push((c.name.clone(), path));
        }
        let union = dir.join("union.om");
        write_file(&union, &|w| self.write_union(w))?;
        let schedule = dir.join("schedule.json");
        write_file(&schedule, &|w| {
            serde_json::to_writer_pretty(&mut *w, &self.schedule).map_err(io::Error::other)?;
            w.write_all(b"\n")
        })?;
        Ok(SimFiles {
            clusters,
            union,
            schedule,
        })
    }
}

/// Parses a duration such as `1h`, `90m`, `45s`, `1h30m` or plain seconds.
pub fn parse_duration_secs(s: &str) -> Result<i64, SimError> {
    let bad = || SimError::Config(vec![format!("bad duration {s:?} (use e.g. 1h, 30m, 90s)")]);
    if let Ok(n) = s.parse::<i64>() {
        return if n > 0 { Ok(n) } else { Err(bad()) };
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let mult = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total <= 0 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
