//! Shared harness of the integration tests: simulated Istio traffic loaded
//! into real Prometheus servers (one per cluster, with
//! `global.external_labels: {cluster: ...}`, and one "union" Prometheus
//! holding every cluster's data with the `cluster` label in the data).
//!
//! Use it from a test binary with `mod common;`:
//!
//! ```ignore
//! let h = common::harness();               // started once per test binary
//! let t = h.schedule.steps[3].mid();       // 60 % canary weight
//! let union = common::query(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
//! let pf = h.start_promfed("")?;           // promfed over h.clusters
//! let got = common::query(&pf.url, SUCCESS_RATE_QUERY, t).await?;
//! assert_eq!(got.first_value(), union.first_value());
//! ```
//!
//! The servers of [`shared`] (and [`harness`]) are started once per test
//! binary and stopped when the test process exits (a watchdog per server,
//! as statics are never dropped); [`Harness::start`] and
//! [`start_from_openmetrics`] give servers that stop on drop. Run with
//! `cargo test` (threads in one process), not nextest's process per test,
//! or every test starts its own servers.

#![allow(dead_code)] // each test binary uses a different part

pub mod argo;
pub mod client;
pub mod compare;
pub mod differential;
pub mod gateway;
pub mod grafana;
pub mod native_data;
pub mod peers;
pub mod process;
pub mod remote_write;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use istio_sim::{Canary, Schedule, SimConfig, Simulation};

// Re-exports for the test binaries; each uses a different part.
#[allow(unused_imports)]
pub use client::{query, query_range, ApiResponse};
#[allow(unused_imports)]
pub use gateway::{config_yaml, promtool_query_instant, promtool_value, BackendSpec, Promfed};
#[allow(unused_imports)]
pub use process::{find_tool, PromServer, TempDir, Tools};

/// How long a Prometheus may take to answer `/-/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `prometheus` or `promtool` is not installed.
    #[error("{tool} not found on PATH: install Debian's prometheus package (apt-get update && apt-get install -y prometheus)")]
    MissingTool { tool: String },
    /// A peer built from Go modules is missing.
    #[error("{message}")]
    MissingPeer { message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("promtool tsdb create-blocks-from openmetrics {file} failed ({status}): {output}")]
    Backfill {
        file: PathBuf,
        status: String,
        output: String,
    },
    #[error("prometheus {name} at {url} not ready after {waited:?}; last lines of {log}:\n{tail}")]
    NotReady {
        name: String,
        url: String,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "prometheus {name} exited ({status}) before it was ready; last lines of {log}:\n{tail}"
    )]
    Exited {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("simulation: {0}")]
    Sim(#[from] istio_sim::SimError),
    #[error("query {what}: {message}")]
    Query { what: String, message: String },
}

/// Simulated data in running Prometheus servers.
pub struct Harness {
    /// The generated run (every cluster's series, in memory).
    pub sim: Simulation,
    /// When the run happens: steps, weights, the counter reset.
    pub schedule: Schedule,
    /// One Prometheus per cluster, in the order of `schedule.clusters`;
    /// each `name` is the cluster's name and its config carries
    /// `global.external_labels: {cluster: <name>}`.
    pub clusters: Vec<PromServer>,
    /// The union Prometheus: every cluster's series with its `cluster`
    /// label in the data, no external labels.
    pub union: PromServer,
    /// Working directory (removed on drop, or by a watchdog when shared).
    pub dir: TempDir,
}

/// The data the shared harness loads: the default simulation (two
/// clusters, one hour from 2024-08-18T12:00:00Z) with fewer background
/// series to keep startup short.
pub fn harness_config(canary: Canary) -> SimConfig {
    SimConfig {
        canary,
        background_series: 400,
        ..SimConfig::default()
    }
}

static SHARED_GOOD: OnceLock<Result<Harness, String>> = OnceLock::new();
static SHARED_BAD: OnceLock<Result<Harness, String>> = OnceLock::new();

/// The harness of this test binary for `canary` (good or bad), started at
/// its first use and shared by every test. Panics with the reason when the
/// servers cannot be started (e.g. prometheus is not installed).
pub fn shared(canary: Canary) -> &'static Harness {
    let cell = match canary {
        Canary::Good => &SHARED_GOOD,
        Canary::Bad => &SHARED_BAD,
    };
    let started = cell.get_or_init(|| {
        Harness::start(&harness_config(canary))
            .map(|mut h| {
                h.stop_on_exit();
                h
            })
            .map_err(|e| e.to_string())
    });
    match started {
        Ok(h) => h,
        Err(e) => panic!("test harness could not start: {e}"),
    }
}

/// The good-canary harness (see [`shared`]).
pub fn harness() -> &'static Harness {
    shared(Canary::Good)
}

impl Harness {
    /// Generates `config`'s data, backfills it with promtool and starts one
    /// Prometheus per cluster plus the union Prometheus. Everything stops
    /// and the directory is removed when the `Harness` is dropped.
    pub fn start(config: &SimConfig) -> Result<Harness, HarnessError> {
        let tools = Tools::find()?;
        let dir = TempDir::new("promfed-harness")?;
        let sim = Simulation::generate(config)?;
        let files = sim.write_dir(&dir.path().join("data"))?;

        // Backfill all files at once (promtool is single-threaded).
        let mut jobs: Vec<(String, PathBuf, PathBuf)> = files
            .clusters
            .iter()
            .map(|(name, om)| {
                (
                    name.clone(),
                    om.clone(),
                    dir.path().join(format!("tsdb-{name}")),
                )
            })
            .collect();
        jobs.push((
            "union".to_string(),
            files.union.clone(),
            dir.path().join("tsdb-union"),
        ));
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(_, om, tsdb)| s.spawn(|| process::backfill(&tools, om, tsdb)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(HarnessError::Query {
                            what: "backfill".into(),
                            message: "backfill thread panicked".into(),
                        })
                    })
                })
                .collect::<Result<Vec<()>, HarnessError>>()
        })?;
        // The text files are large; the blocks are what the servers need.
        for (_, om, _) in &jobs {
            let _ = std::fs::remove_file(om);
        }

        let mut clusters = Vec::new();
        for (name, _, tsdb) in &jobs[..jobs.len() - 1] {
            let server = PromServer::start(
                &tools,
                name,
                tsdb,
                &[("cluster", name.as_str())],
                dir.path(),
            )?;
            clusters.push(server);
        }
        let union = PromServer::start(&tools, "union", &jobs[jobs.len() - 1].2, &[], dir.path())?;
        let mut union = union;
        for s in clusters.iter_mut().chain(std::iter::once(&mut union)) {
            s.wait_ready(READY_TIMEOUT)?;
        }
        Ok(Harness {
            schedule: sim.schedule.clone(),
            sim,
            clusters,
            union,
            dir,
        })
    }

    /// Makes sure the servers stop and the directory goes away when the
    /// test process exits, even though a static is never dropped.
    fn stop_on_exit(&mut self) {
        for s in self
            .clusters
            .iter_mut()
            .chain(std::iter::once(&mut self.union))
        {
            s.stop_on_exit();
        }
        let pids: Vec<u32> = self.all().filter_map(|s| s.pid()).collect();
        self.dir.remove_on_exit(&pids);
    }

    /// The cluster server called `name`.
    pub fn cluster(&self, name: &str) -> Option<&PromServer> {
        self.clusters.iter().find(|s| s.name == name)
    }

    /// Every server: clusters first, then the union.
    pub fn all(&self) -> impl Iterator<Item = &PromServer> {
        self.clusters.iter().chain(std::iter::once(&self.union))
    }

    /// `(cluster name, base URL)` of every cluster server, e.g. for a
    /// promfed config.
    pub fn backends(&self) -> Vec<(String, String)> {
        self.clusters
            .iter()
            .map(|s| (s.name.clone(), s.url.clone()))
            .collect()
    }
}

/// Starts a Prometheus holding `openmetrics` (text ending with `# EOF`),
/// with `external_labels` in its config. It has its own directory and stops
/// on drop; call [`PromServer::stop_on_exit`] when keeping it in a static.
pub fn start_from_openmetrics(
    name: &str,
    openmetrics: &str,
    external_labels: &[(&str, &str)],
) -> Result<PromServer, HarnessError> {
    let tools = Tools::find()?;
    let dir = TempDir::new(&format!("promfed-prom-{name}"))?;
    let om = dir.path().join("data.om");
    std::fs::write(&om, openmetrics).map_err(|source| HarnessError::Io {
        what: format!("writing {}", om.display()),
        source,
    })?;
    let tsdb = dir.path().join("tsdb");
    process::backfill(&tools, &om, &tsdb)?;
    let mut server = PromServer::start(&tools, name, &tsdb, external_labels, dir.path())?;
    server.own_dir(dir);
    server.wait_ready(READY_TIMEOUT)?;
    Ok(server)
}

/// Writes `text` to `path`, mapping the error.
pub fn write_file(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(|source| HarnessError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// Cluster `i`'s OpenMetrics text, without samples in `hole` (ms) if given.
pub fn render_cluster(
    sim: &Simulation,
    i: usize,
    hole: Option<std::ops::Range<i64>>,
) -> Result<String, HarnessError> {
    let mut sim = sim.clone();
    if let (Some(hole), Some(c)) = (hole, sim.clusters.get_mut(i)) {
        for s in &mut c.series {
            s.samples.retain(|x| !hole.contains(&x.t));
        }
        c.series.retain(|s| !s.samples.is_empty());
    }
    let mut buf = Vec::new();
    sim.write_cluster(i, &mut buf)
        .map_err(|source| HarnessError::Io {
            what: "rendering OpenMetrics".into(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
