//! Starts the real `promfed` binary (`serve --config`) on a free loopback
//! port for integration tests, and stops it by pid.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::process::{http_status, TempDir};
use super::HarnessError;

/// One running promfed.
pub struct Promfed {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    watchdog: Option<Child>,
    /// Where the `grpc listening on ADDR` line arrives (`grpc_listen`).
    grpc_lines: std::sync::Mutex<mpsc::Receiver<String>>,
    grpc: std::sync::OnceLock<SocketAddr>,
    /// Holds its config; removed on drop, or at exit after `stop_on_exit`.
    dir: TempDir,
}

/// One backend of a test config: name, URL, external labels.
pub type BackendSpec<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A promfed config with these backends; `extra` goes before `backends:`.
pub fn config_yaml(backends: &[BackendSpec<'_>], extra: &str) -> String {
    let mut y = String::from("listen: 127.0.0.1:0\n");
    y.push_str(extra);
    y.push_str("backends:\n");
    for (name, url, labels) in backends {
        y.push_str(&format!(
            "  - name: {name}\n    url: {url}\n    timeout: 10s\n"
        ));
        if !labels.is_empty() {
            y.push_str("    external_labels:\n");
            for (k, v) in labels.iter() {
                y.push_str(&format!("      {k}: {v}\n"));
            }
        }
    }
    y
}

impl Promfed {
    /// Starts promfed with `config` (YAML) and waits until `/-/ready`.
    pub fn start(config: &str) -> Result<Promfed, HarnessError> {
        let dir = TempDir::new("promfed-test")?;
        let cfg_path = dir.path().join("promfed.yaml");
        super::write_file(&cfg_path, config)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_promfed"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "warn");
        Promfed::spawn(cmd, dir)
    }

    /// Runs `cmd`, a promfed `serve` however it is wrapped (e.g. in a
    /// chroot), that prints `listening on ADDR`; waits until `/-/ready`.
    /// `cmd` must exec promfed itself, so that its pid is promfed's: that
    /// pid is what [`Promfed::stop`] kills. `dir` is kept until the drop.
    pub fn spawn(mut cmd: Command, dir: TempDir) -> Result<Promfed, HarnessError> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| HarnessError::Io {
                what: "starting promfed".into(),
                source,
            })?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel();
        let (grpc_tx, grpc_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(out) = stdout else { return };
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                } else if let Some(addr) = line.strip_prefix("grpc listening on ") {
                    let _ = grpc_tx.send(addr.trim().to_string());
                }
            }
        });
        let fail = |message: String| HarnessError::Query {
            what: "starting promfed".into(),
            message,
        };
        let addr_text = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail("no `listening on` line within 30 s".into()));
            }
        };
        let addr: SocketAddr = addr_text
            .parse()
            .map_err(|e| fail(format!("bad address {addr_text:?}: {e}")))?;
        let mut p = Promfed {
            url: format!("http://{addr}"),
            addr,
            child: Some(child),
            watchdog: None,
            grpc_lines: std::sync::Mutex::new(grpc_rx),
            grpc: std::sync::OnceLock::new(),
            dir,
        };
        let t0 = Instant::now();
        while http_status(addr, "/-/ready", Duration::from_secs(2)) != Some(200) {
            if t0.elapsed() > Duration::from_secs(30) {
                p.stop();
                return Err(fail("not ready within 30 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(p)
    }

    /// The address of its StoreAPI listener (`grpc_listen`), as it
    /// printed it; waits up to 10 s for the line.
    pub fn grpc_addr(&self) -> Result<SocketAddr, HarnessError> {
        if let Some(a) = self.grpc.get() {
            return Ok(*a);
        }
        let fail = |message: String| HarnessError::Query {
            what: "promfed grpc_listen".into(),
            message,
        };
        let rx = self
            .grpc_lines
            .lock()
            .map_err(|_| fail("poisoned lock".into()))?;
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| fail("no `grpc listening on` line within 10 s".into()))?;
        let addr: SocketAddr = line
            .parse()
            .map_err(|e| fail(format!("bad address {line:?}: {e}")))?;
        Ok(*self.grpc.get_or_init(|| addr))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills promfed once the test process has exited (for shared instances).
    pub fn stop_on_exit(&mut self) {
        let Some(pid) = self.pid() else { return };
        let script = r#"
            while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
            kill "$2" 2>/dev/null
        "#;
        self.watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("promfed-test-watchdog")
            .arg(std::process::id().to_string())
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        // A static is never dropped: remove the directory after exit too.
        self.dir.remove_on_exit(&[pid]);
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Stops promfed (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Promfed {
    fn drop(&mut self) {
        self.stop();
    }
}

impl super::Harness {
    /// The harness's cluster servers as promfed backends: `(name, url)`,
    /// each to be given `external_labels: {cluster: <name>}`.
    pub fn promfed_config(&self, extra: &str) -> String {
        let labels: Vec<[(&str, &str); 1]> = self
            .clusters
            .iter()
            .map(|s| [("cluster", s.name.as_str())])
            .collect();
        let specs: Vec<BackendSpec<'_>> = self
            .clusters
            .iter()
            .zip(&labels)
            .map(|(s, l)| (s.name.as_str(), s.url.as_str(), &l[..]))
            .collect();
        config_yaml(&specs, extra)
    }

    /// Starts promfed over this harness's cluster servers, each backend
    /// with its `cluster` external label (`extra` goes into the config
    /// before `backends:`).
    pub fn start_promfed(&self, extra: &str) -> Result<Promfed, HarnessError> {
        Promfed::start(&self.promfed_config(extra))
    }
}

/// `promtool query instant --time=TIME URL EXPR`: the answer as
/// client_golang (the library Argo Rollouts uses) reports it. Returns
/// `(success, stdout, stderr)`.
pub fn promtool_query_instant(
    url: &str,
    expr: &str,
    time: f64,
) -> Result<(bool, String, String), HarnessError> {
    let tools = super::Tools::find()?;
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
/// (`{labels} => 0.98 @[1723983300.137]`, or a scalar `0.98 @[...]`).
pub fn promtool_value(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.contains(" @["))?;
    let before_at = line.split(" @[").next()?;
    match before_at.rsplit("=> ").next()?.trim() {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s => s.parse().ok(),
    }
}
