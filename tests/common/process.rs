//! Starting, watching and stopping the harness's processes: promtool
//! backfills and Prometheus servers on free loopback ports.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::HarnessError;

/// Paths of a Prometheus server and the promtool of the same version.
#[derive(Debug, Clone)]
pub struct Tools {
    pub prometheus: PathBuf,
    pub promtool: PathBuf,
}

impl Tools {
    /// The harness's Prometheus: 3.8, the oracle and the usual backend.
    pub fn find() -> Result<Tools, HarnessError> {
        Tools::v3()
    }

    /// Prometheus 3.8.0 and its promtool, built from the Go module proxy by
    /// `scripts/peers` (which `scripts/test` runs first).
    pub fn v3() -> Result<Tools, HarnessError> {
        let bin = super::peers::bin_dir("PROM_BIN")
            .map_err(|message| HarnessError::MissingPeer { message })?;
        Ok(Tools {
            prometheus: bin.join("prometheus"),
            promtool: bin.join("promtool"),
        })
    }

    /// Prometheus 2.42 and promtool from Debian's `prometheus` package, on
    /// `PATH`: an older remote-read server that must keep working.
    pub fn debian() -> Result<Tools, HarnessError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        Ok(Tools {
            prometheus: find_tool(&path, "prometheus")?,
            promtool: find_tool(&path, "promtool")?,
        })
    }
}

/// Finds executable `tool` in the directories of `path` (a `PATH` value).
pub fn find_tool(path: &std::ffi::OsStr, tool: &str) -> Result<PathBuf, HarnessError> {
    std::env::split_paths(path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| HarnessError::MissingTool {
            tool: tool.to_string(),
        })
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    watchdog: Option<Child>,
}

impl TempDir {
    /// Creates `<tmp>/<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> Result<TempDir, HarnessError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
        Ok(TempDir {
            path,
            watchdog: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory once this test process has exited and the
    /// processes `pids` (which write into it) are gone (waiting for them at
    /// most 15 s).
    pub fn remove_on_exit(&mut self, pids: &[u32]) {
        let script = r#"
            t=$1; d=$2; shift 2
            while kill -0 "$t" 2>/dev/null; do sleep 0.5; done
            for p in "$@"; do
              n=0
              while kill -0 "$p" 2>/dev/null && [ $n -lt 60 ]; do sleep 0.25; n=$((n+1)); done
            done
            rm -rf -- "$d"
        "#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("promfed-harness-cleanup")
            .arg(std::process::id().to_string())
            .arg(&self.path)
            .args(pids.iter().map(|p| p.to_string()));
        self.watchdog = spawn_detached(&mut cmd);
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn spawn_detached(cmd: &mut Command) -> Option<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Last `n` lines of the file at `path` (or why it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// `promtool tsdb create-blocks-from openmetrics om tsdb`.
pub fn backfill(tools: &Tools, om: &Path, tsdb: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(tsdb).map_err(io_err(format!("creating {}", tsdb.display())))?;
    let out = Command::new(&tools.promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(om)
        .arg(tsdb)
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running {}", tools.promtool.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stdout));
    let keep: Vec<&str> = output.lines().rev().take(20).collect();
    Err(HarnessError::Backfill {
        file: om.to_path_buf(),
        status: out.status.to_string(),
        output: keep.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

/// A free loopback port (bound then released; the caller retries if
/// someone else takes it first).
pub fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding 127.0.0.1:0"))?;
    let port = l.local_addr().map_err(io_err("local_addr"))?.port();
    Ok(port)
}

/// Status code of `GET path` on `addr` (plain HTTP/1.0, no runtime needed).
pub fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = std::str::from_utf8(&buf[..got]).ok()?;
    head.split(' ').nth(1)?.parse().ok()
}

/// A child process stopped by pid: on [`Managed::stop`], on drop, or by a
/// watchdog once the test process exits ([`Managed::stop_on_exit`]).
#[derive(Debug)]
pub struct Managed {
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Managed {
    pub fn new(child: Child) -> Managed {
        Managed {
            child: Some(child),
            watchdog: None,
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `Some(status)` when the process has exited (or was stopped).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(format!("unknown: {e}")),
            None => Some("stopped".to_string()),
        }
    }

    /// Starts a watchdog that kills the process once the test process has
    /// exited (statics are never dropped).
    pub fn stop_on_exit(&mut self) {
        let Some(pid) = self.pid() else { return };
        if self.watchdog.is_some() {
            return;
        }
        let script = r#"
            while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
            kill "$2" 2>/dev/null
        "#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("promfed-harness-watchdog")
            .arg(std::process::id().to_string())
            .arg(pid.to_string());
        self.watchdog = spawn_detached(&mut cmd);
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM first so that servers shut down cleanly (`kill` of sh, as
        // procps may be missing).
        let _ = Command::new("sh")
            .args(["-c", "kill \"$1\" 2>/dev/null", "sh"])
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `GET /-/ready` on `addr` until it answers 200 (at most `timeout`);
/// fails early when `proc` exits. `name` and `log` go into errors.
pub fn wait_ready(
    proc: &mut Managed,
    name: &str,
    addr: SocketAddr,
    log: &Path,
    timeout: Duration,
) -> Result<(), HarnessError> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if http_status(addr, "/-/ready", Duration::from_secs(2)) == Some(200) {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            return Err(HarnessError::Exited {
                name: name.to_string(),
                status,
                log: log.to_path_buf(),
                tail: tail(log, 20),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(HarnessError::NotReady {
        name: name.to_string(),
        url: format!("http://{addr}"),
        waited: timeout,
        log: log.to_path_buf(),
        tail: tail(log, 20),
    })
}

/// One running Prometheus.
#[derive(Debug)]
pub struct PromServer {
    /// Cluster name, `union`, or the name given to
    /// [`start_from_openmetrics`](super::start_from_openmetrics).
    pub name: String,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    proc: Managed,
    /// A directory removed after the server stops (fields drop in order).
    dir: Option<super::TempDir>,
}

impl PromServer {
    /// Starts `prometheus` over the TSDB at `tsdb` with `external_labels`,
    /// writing its config and log into `work`. Does not wait for it to be
    /// ready (see [`PromServer::wait_ready`]).
    pub fn start(
        tools: &super::Tools,
        name: &str,
        tsdb: &Path,
        external_labels: &[(&str, &str)],
        work: &Path,
    ) -> Result<PromServer, HarnessError> {
        Self::start_with_args(tools, name, tsdb, external_labels, work, &[])
    }

    /// [`PromServer::start`] with extra command-line flags (e.g.
    /// `--web.enable-remote-write-receiver`).
    pub fn start_with_args(
        tools: &super::Tools,
        name: &str,
        tsdb: &Path,
        external_labels: &[(&str, &str)],
        work: &Path,
        extra: &[&str],
    ) -> Result<PromServer, HarnessError> {
        let config_path = work.join(format!("prometheus-{name}.yml"));
        let mut yml =
            String::from("# promfed test harness: no scrape jobs, data is backfilled.\nglobal:\n");
        if !external_labels.is_empty() {
            yml.push_str("  external_labels:\n");
            for (k, v) in external_labels {
                yml.push_str(&format!("    {k}: {}\n", serde_json::Value::from(*v)));
            }
        }
        yml.push_str("scrape_configs: []\n");
        super::write_file(&config_path, &yml)?;
        let log_path = work.join(format!("prometheus-{name}.log"));
        let mut last_err = None;
        // A port picked free may be taken before prometheus binds it: retry.
        for _attempt in 0..3 {
            let port = free_port()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = File::create(&log_path)
                .map_err(io_err(format!("creating {}", log_path.display())))?;
            let log2 = log.try_clone().map_err(io_err("cloning log file"))?;
            let child = Command::new(&tools.prometheus)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--storage.tsdb.retention.time=3650d")
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(io_err(format!("starting {}", tools.prometheus.display())))?;
            let mut server = PromServer {
                name: name.to_string(),
                url: format!("http://{addr}"),
                addr,
                data_dir: tsdb.to_path_buf(),
                config_path: config_path.clone(),
                log_path: log_path.clone(),
                proc: Managed::new(child),
                dir: None,
            };
            // Give it a moment to fail on a taken port before handing it out.
            std::thread::sleep(Duration::from_millis(300));
            match server.proc.exited() {
                None => return Ok(server),
                Some(status) => {
                    let log = tail(&log_path, 20);
                    let err = HarnessError::Exited {
                        name: name.to_string(),
                        status,
                        log: log_path.clone(),
                        tail: log.clone(),
                    };
                    if !log.contains("address already in use") {
                        return Err(err);
                    }
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| HarnessError::Query {
            what: format!("starting {name}"),
            message: "no attempt made".into(),
        }))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Waits until `GET /-/ready` answers 200, at most `timeout`; fails
    /// early, with its log, when the process exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), HarnessError> {
        let name = format!("prometheus {}", self.name);
        wait_ready(&mut self.proc, &name, self.addr, &self.log_path, timeout)
    }

    /// Whether `/-/ready` answers 200 now.
    pub fn is_ready(&self) -> bool {
        http_status(self.addr, "/-/ready", Duration::from_secs(2)) == Some(200)
    }

    /// Starts a watchdog that kills this server once the test process has
    /// exited (statics are never dropped).
    pub fn stop_on_exit(&mut self) {
        self.proc.stop_on_exit();
    }

    /// Keeps `dir` alive as long as the server and removes it after.
    pub(super) fn own_dir(&mut self, dir: super::TempDir) {
        self.dir = Some(dir);
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// Starts the stopped server again on the same address, config and
    /// TSDB (as a restarted pod behind the same Service), and waits until
    /// it is ready.
    pub fn restart(&mut self, tools: &super::Tools) -> Result<(), HarnessError> {
        self.proc.stop();
        let log = File::create(&self.log_path)
            .map_err(io_err(format!("creating {}", self.log_path.display())))?;
        let log2 = log.try_clone().map_err(io_err("cloning log file"))?;
        let child = Command::new(&tools.prometheus)
            .arg(format!("--config.file={}", self.config_path.display()))
            .arg(format!("--storage.tsdb.path={}", self.data_dir.display()))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--storage.tsdb.retention.time=3650d")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io_err(format!("starting {}", tools.prometheus.display())))?;
        self.proc = Managed::new(child);
        self.wait_ready(super::READY_TIMEOUT)
    }
}
