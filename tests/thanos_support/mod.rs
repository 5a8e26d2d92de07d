//! Real Thanos sidecars for the StoreAPI tests: one Prometheus 3.8 per
//! cluster (data backfilled with promtool 3.8, `global.external_labels` in
//! its config), each with a `thanos sidecar`; cluster k8s-2 as an HA pair
//! whose replica `b` lacks ten minutes; a union Prometheus 3.8 holding
//! every cluster's data (the oracle); and a `thanos query` over the
//! sidecars (the anchor of the benchmark).
//!
//! The peers come from `scripts/peers` (`$PROMFED_PEERS_DIR`, else
//! `target/peers`); a missing peer fails the test with how to build it.

#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use istio_sim::{Canary, Schedule, SimConfig, Simulation};

use crate::common::process::{self, free_port, Managed, PromServer, TempDir, Tools};
use crate::common::{harness_config, render_cluster, HarnessError, READY_TIMEOUT};

/// Prometheus 3.8's module version, as `scripts/peers` names its directory.
pub const PROMETHEUS_VERSION: &str = "v0.308.0";
/// Thanos's version, as `scripts/peers` names its directory.
pub const THANOS_VERSION: &str = "v0.42.4";
/// `[start, end)` of replica b's hole, seconds after the schedule's start.
pub const HOLE_SECS: (i64, i64) = (1200, 1800);

/// Where `scripts/peers` puts its builds: `$PROMFED_PEERS_DIR`, else
/// `<crate>/target/peers`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("PROMFED_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers"))
}

/// The binary `bin` of peer `dir` (e.g. `thanos-v0.42.4`), built and
/// stamped by `scripts/peers`.
pub fn peer_binary(dir: &str, bin: &str) -> Result<PathBuf, HarnessError> {
    let root = peers_dir().join(dir);
    let path = root.join("bin").join(bin);
    if root.join("stamp").is_file() && path.is_file() {
        return Ok(path);
    }
    Err(HarnessError::Io {
        what: format!("peer {dir}: {}", path.display()),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not built (no binary or no stamp): run scripts/peers, or point PROMFED_PEERS_DIR at its output",
        ),
    })
}

/// Prometheus 3.8 and its promtool.
pub fn prometheus3() -> Result<Tools, HarnessError> {
    let dir = format!("prometheus-{PROMETHEUS_VERSION}");
    Ok(Tools {
        prometheus: peer_binary(&dir, "prometheus")?,
        promtool: peer_binary(&dir, "promtool")?,
    })
}

/// The `thanos` binary.
pub fn thanos() -> Result<PathBuf, HarnessError> {
    peer_binary(&format!("thanos-{THANOS_VERSION}"), "thanos")
}

/// One running Thanos component (sidecar or query), stopped by pid.
pub struct ThanosProc {
    pub name: String,
    /// gRPC `127.0.0.1:PORT`.
    pub grpc: SocketAddr,
    /// HTTP `http://127.0.0.1:PORT`.
    pub http_url: String,
    pub http: SocketAddr,
    pub log_path: PathBuf,
    proc: Managed,
}

impl ThanosProc {
    /// Starts `thanos <args...>` with free gRPC and HTTP ports, logging to
    /// `work/thanos-<name>.log`, and waits until `/-/ready` answers 200.
    pub fn start(name: &str, args: &[String], work: &Path) -> Result<ThanosProc, HarnessError> {
        let bin = thanos()?;
        let log_path = work.join(format!("thanos-{name}.log"));
        let mut last = None;
        // A port picked free may be taken before thanos binds it: retry.
        for _ in 0..3 {
            let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let log = File::create(&log_path).map_err(|source| HarnessError::Io {
                what: format!("creating {}", log_path.display()),
                source,
            })?;
            let log2 = log.try_clone().map_err(|source| HarnessError::Io {
                what: "cloning a log file".into(),
                source,
            })?;
            let child = Command::new(&bin)
                .args(args)
                .arg(format!("--grpc-address={grpc}"))
                .arg(format!("--http-address={http}"))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|source| HarnessError::Io {
                    what: format!("starting {}", bin.display()),
                    source,
                })?;
            let mut p = ThanosProc {
                name: name.to_string(),
                grpc,
                http_url: format!("http://{http}"),
                http,
                log_path: log_path.clone(),
                proc: Managed::new(child),
            };
            match process::wait_ready(
                &mut p.proc,
                &format!("thanos {name}"),
                http,
                &log_path,
                READY_TIMEOUT,
            ) {
                Ok(()) => return Ok(p),
                Err(e) if process::tail(&log_path, 40).contains("address already in use") => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Query {
            what: format!("starting thanos {name}"),
            message: "no attempt made".into(),
        }))
    }

    /// A `thanos sidecar` in front of `prom`.
    pub fn sidecar(name: &str, prom: &PromServer, work: &Path) -> Result<ThanosProc, HarnessError> {
        ThanosProc::sidecar_with(name, prom, work, &[])
    }

    /// A `thanos sidecar` in front of `prom` with `extra` flags (e.g. TLS).
    pub fn sidecar_with(
        name: &str,
        prom: &PromServer,
        work: &Path,
        extra: &[String],
    ) -> Result<ThanosProc, HarnessError> {
        let mut args = vec![
            "sidecar".to_string(),
            format!("--prometheus.url={}", prom.url),
            "--prometheus.get_config_interval=1s".into(),
            format!("--tsdb.path={}", prom.data_dir.display()),
        ];
        args.extend_from_slice(extra);
        ThanosProc::start(name, &args, work)
    }

    /// `grpc://127.0.0.1:PORT`, a promfed `thanos_store` URL.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.grpc)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("sh")
                .args(["-c", "kill -s \"$1\" \"$2\"", "sh", signal])
                .arg(pid.to_string())
                .stdin(Stdio::null())
                .status();
        }
    }

    /// Kills it once the test process exits (statics are never dropped).
    pub fn stop_on_exit(&mut self) {
        self.proc.stop_on_exit();
    }

    /// Stops it (SIGTERM, then SIGKILL) and waits; resumes it first in case
    /// it was stopped with SIGSTOP.
    pub fn stop(&mut self) {
        self.signal("CONT");
        self.proc.stop();
    }
}

impl Drop for ThanosProc {
    fn drop(&mut self) {
        self.signal("CONT");
    }
}

/// One backfill: name, OpenMetrics file, TSDB directory, external labels.
type Job = (String, PathBuf, PathBuf, Vec<(&'static str, &'static str)>);

/// The sidecar harness.
pub struct Sidecars {
    pub sim: Simulation,
    pub schedule: Schedule,
    /// k8s-1, k8s-2-a (replica a, full), k8s-2-b (replica b, holed).
    pub proms: Vec<PromServer>,
    /// One sidecar per entry of `proms`, same order and names.
    pub sidecars: Vec<ThanosProc>,
    /// Every cluster's data, the `cluster` label in the data.
    pub union: PromServer,
    /// `thanos query --query.replica-label=replica` over the sidecars.
    pub query: ThanosProc,
    pub dir: TempDir,
}

static SHARED: OnceLock<Result<Sidecars, String>> = OnceLock::new();

/// The harness of this test binary, started at first use and stopped when
/// the test process exits. Panics with the reason when it cannot start.
pub fn sidecars() -> &'static Sidecars {
    let started = SHARED.get_or_init(|| {
        Sidecars::start()
            .map(|mut s| {
                s.stop_on_exit();
                s
            })
            .map_err(|e| e.to_string())
    });
    match started {
        Ok(s) => s,
        Err(e) => panic!("sidecar harness could not start: {e}"),
    }
}

impl Sidecars {
    /// The harness over the shared harness's data (one hour, two clusters).
    pub fn start() -> Result<Sidecars, HarnessError> {
        Sidecars::start_with(&harness_config(Canary::Good))
    }

    /// The harness over the data `config` generates.
    pub fn start_with(config: &SimConfig) -> Result<Sidecars, HarnessError> {
        let tools = prometheus3()?;
        thanos()?;
        let dir = TempDir::new("promfed-thanos")?;
        let sim = Simulation::generate(config)?;
        let schedule = sim.schedule.clone();
        let k1 = cluster_index(&sim, "k8s-1")?;
        let k2 = cluster_index(&sim, "k8s-2")?;
        let hole = (schedule.start + HOLE_SECS.0) * 1000..(schedule.start + HOLE_SECS.1) * 1000;
        let files = sim.write_dir(&dir.path().join("data"))?;
        let texts = [
            (
                "k8s-1",
                render_cluster(&sim, k1, None)?,
                vec![("cluster", "k8s-1")],
            ),
            (
                "k8s-2-a",
                render_cluster(&sim, k2, None)?,
                vec![("cluster", "k8s-2"), ("replica", "a")],
            ),
            (
                "k8s-2-b",
                render_cluster(&sim, k2, Some(hole))?,
                vec![("cluster", "k8s-2"), ("replica", "b")],
            ),
        ];
        let mut jobs: Vec<Job> = Vec::new();
        for (name, text, labels) in &texts {
            let om = dir.path().join(format!("{name}.om"));
            crate::common::write_file(&om, text)?;
            jobs.push((
                name.to_string(),
                om,
                dir.path().join(format!("tsdb-{name}")),
                labels.clone(),
            ));
        }
        jobs.push((
            "union".into(),
            files.union.clone(),
            dir.path().join("tsdb-union"),
            vec![],
        ));
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(_, om, tsdb, _)| s.spawn(|| process::backfill(&tools, om, tsdb)))
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
        let _ = std::fs::remove_dir_all(dir.path().join("data"));
        let mut proms = Vec::new();
        for (name, om, tsdb, labels) in &jobs {
            let _ = std::fs::remove_file(om);
            proms.push(PromServer::start(&tools, name, tsdb, labels, dir.path())?);
        }
        for p in &mut proms {
            p.wait_ready(READY_TIMEOUT)?;
        }
        let union = proms.pop().ok_or_else(|| HarnessError::Query {
            what: "harness".into(),
            message: "no union server".into(),
        })?;
        let mut sidecars = Vec::new();
        for p in &proms {
            sidecars.push(ThanosProc::sidecar(&p.name, p, dir.path())?);
        }
        let mut args = vec![
            "query".to_string(),
            "--query.replica-label=replica".to_string(),
        ];
        args.extend(sidecars.iter().map(|s| format!("--endpoint={}", s.grpc)));
        let query = ThanosProc::start("query", &args, dir.path())?;
        Ok(Sidecars {
            sim,
            schedule,
            proms,
            sidecars,
            union,
            query,
            dir,
        })
    }

    /// Stops every process once the test process exits (for a harness kept
    /// in a static).
    pub fn stop_on_exit(&mut self) {
        let mut pids = Vec::new();
        for p in self
            .proms
            .iter_mut()
            .chain(std::iter::once(&mut self.union))
        {
            p.stop_on_exit();
            pids.extend(p.pid());
        }
        for s in self
            .sidecars
            .iter_mut()
            .chain(std::iter::once(&mut self.query))
        {
            s.stop_on_exit();
            pids.extend(s.pid());
        }
        self.dir.remove_on_exit(&pids);
    }

    /// The Prometheus called `name`.
    pub fn prom(&self, name: &str) -> &PromServer {
        match self.proms.iter().find(|p| p.name == name) {
            Some(p) => p,
            None => panic!("no Prometheus {name} in the harness"),
        }
    }

    /// The sidecar of the Prometheus called `name`.
    pub fn sidecar(&self, name: &str) -> &ThanosProc {
        match self.sidecars.iter().find(|p| p.name == name) {
            Some(p) => p,
            None => panic!("no sidecar {name} in the harness"),
        }
    }
}

fn cluster_index(sim: &Simulation, name: &str) -> Result<usize, HarnessError> {
    sim.clusters
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| HarnessError::Query {
            what: "harness".into(),
            message: format!("the simulation has no cluster {name}"),
        })
}

/// A promfed backend entry over the StoreAPI (`labels` may be empty: the
/// sidecar announces them).
pub fn store_backend(name: &str, url: &str, labels: &[(&str, &str)], timeout: &str) -> String {
    let mut y = format!(
        "  - name: {name}\n    url: {url}\n    protocol: thanos_store\n    timeout: {timeout}\n"
    );
    if !labels.is_empty() {
        y.push_str("    external_labels:\n");
        for (k, v) in labels {
            y.push_str(&format!("      {k}: {v}\n"));
        }
    }
    y
}
