//! Runs this crate's `promfed` binary (`promfed serve`) in front of test
//! backends, and asks servers through promtool, a real client_golang client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::process::{tail, wait_ready, Managed, TempDir, Tools};
use super::{Harness, HarnessError, READY_TIMEOUT};

/// One backend of a promfed config.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: String,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    pub external_labels: Vec<(String, String)>,
}

/// A promfed config of the shape users write (`listen`, `backends` with
/// name, url, external labels and a 30 s timeout); `extra` is appended
/// verbatim (top-level fields such as `partial_response: warn`).
pub fn promfed_yaml(listen: &str, backends: &[Backend], extra: &str) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut y = format!("listen: {}\nbackends:\n", q(listen));
    for b in backends {
        y.push_str(&format!(
            "  - name: {}\n    url: {}\n",
            q(&b.name),
            q(&b.url)
        ));
        let labels: Vec<String> = b
            .external_labels
            .iter()
            .map(|(k, v)| format!("{k}: {}", q(v)))
            .collect();
        y.push_str(&format!("    external_labels: {{{}}}\n", labels.join(", ")));
        y.push_str("    timeout: 30s\n");
    }
    y.push_str(extra);
    y
}

/// A running `promfed serve`, stopped on drop (or by a watchdog when the
/// test process exits, see [`Promfed::stop_on_exit`]).
#[derive(Debug)]
pub struct Promfed {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    /// Its stderr (the tracing log).
    pub log_path: PathBuf,
    proc: Managed,
    dir: TempDir,
}

impl Promfed {
    /// Starts `promfed serve --config FILE --listen 127.0.0.1:0` with
    /// `yaml` as FILE, learns its port from the `listening on ADDR` line it
    /// prints, and waits for `/-/ready`.
    pub fn start(yaml: &str) -> Result<Promfed, HarnessError> {
        let dir = TempDir::new("promfed-serve")?;
        let config_path = dir.path().join("promfed.yaml");
        super::write_file(&config_path, yaml)?;
        let log_path = dir.path().join("promfed.log");
        let log = std::fs::File::create(&log_path).map_err(|source| HarnessError::Io {
            what: format!("creating {}", log_path.display()),
            source,
        })?;
        let bin = env!("CARGO_BIN_EXE_promfed");
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Io {
                what: format!("starting {bin}"),
                source,
            })?;
        let stdout = child.stdout.take();
        let mut proc = Managed::new(child);
        let (tx, rx) = mpsc::channel();
        if let Some(out) = stdout {
            // Reads until promfed exits, so its stdout never fills up.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            });
        }
        let not_started = |why: String| HarnessError::Exited {
            name: "promfed".into(),
            status: why,
            log: log_path.clone(),
            tail: tail(&log_path, 20),
        };
        let addr: SocketAddr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a
                .parse()
                .map_err(|_| not_started(format!("printed a bad address {a:?}")))?,
            Err(_) => {
                let status = proc
                    .exited()
                    .unwrap_or_else(|| "did not print `listening on` within 30 s".into());
                return Err(not_started(status));
            }
        };
        wait_ready(&mut proc, "promfed", addr, &log_path, READY_TIMEOUT)?;
        Ok(Promfed {
            url: format!("http://{addr}"),
            addr,
            config_path,
            log_path,
            proc,
            dir,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    /// Kills promfed once the test process exits (for use in a static).
    pub fn stop_on_exit(&mut self) {
        self.proc.stop_on_exit();
        let pids: Vec<u32> = self.pid().into_iter().collect();
        self.dir.remove_on_exit(&pids);
    }

    /// Stops promfed and waits for it.
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// The directory holding its config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Harness {
    /// The harness's cluster servers as promfed backends, each with
    /// `external_labels: {cluster: <name>}`.
    pub fn promfed_backends(&self) -> Vec<Backend> {
        self.clusters
            .iter()
            .map(|s| Backend {
                name: s.name.clone(),
                url: s.url.clone(),
                external_labels: vec![("cluster".to_string(), s.name.clone())],
            })
            .collect()
    }

    /// Starts promfed over this harness's cluster servers (`extra` is
    /// appended to its config).
    pub fn start_promfed(&self, extra: &str) -> Result<Promfed, HarnessError> {
        Promfed::start(&promfed_yaml(
            "127.0.0.1:0",
            &self.promfed_backends(),
            extra,
        ))
    }
}

/// `promtool query instant URL EXPR --time=TIME`: the answer as
/// client_golang (the library Argo Rollouts uses) reports it. Returns
/// `(success, stdout, stderr)`.
pub fn promtool_query_instant(
    url: &str,
    expr: &str,
    time: f64,
) -> Result<(bool, String, String), HarnessError> {
    let tools = Tools::find()?;
    let out = Command::new(&tools.promtool)
        .args(["query", "instant"])
        .arg(format!("--time={time:.3}"))
        .arg(url)
        .arg(expr)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Io {
            what: format!("running {}", tools.promtool.display()),
            source,
        })?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The value of a one-sample answer printed by `promtool query instant`
/// (`{labels} => 0.98 @[1723983300.137]` or a scalar `0.98 @[...]`).
pub fn promtool_value(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.contains(" @["))?;
    let before_at = line.split(" @[").next()?;
    let v = before_at.rsplit("=> ").next()?.trim();
    match v {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s => s.parse().ok(),
    }
}
