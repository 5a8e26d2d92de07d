//! Serving with live reload: SIGHUP or a change of the config file builds a
//! new service and swaps it in atomically; an invalid config is refused
//! with a log line and the running one kept. Requests in flight finish on
//! the service they started on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;

use super::build::{build, Service};
use super::connections::Registry;
use super::threads::serve_on_threads;
use super::ServeError;
use crate::config::Config;
use crate::tls::SharedTls;

/// How often the config file is checked for changes, by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The service answering new requests.
pub(super) type Current = Arc<RwLock<Arc<Service>>>;

/// Where and how often to watch the config file.
#[derive(Debug, Clone)]
pub struct Watch {
    pub path: PathBuf,
    pub interval: Duration,
    /// `listen` as the file gave it at start (before any command-line
    /// override): a reload that changes it says that it needs a restart.
    pub file_listen: String,
}

/// Serves `cfg` on `listener` until `shutdown` resolves, then drains the
/// requests in flight. With `watch`, reloads on SIGHUP and file changes.
/// `listen` changes, and turning TLS on or off, take effect at the next
/// start; new certificates are picked up by a reload.
pub async fn serve(
    cfg: Config,
    watch: Option<Watch>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let current: Current = Arc::new(RwLock::new(Arc::new(build(&cfg)?)));
    let cfg_threads = cfg.io_thread_count();
    let registry = Registry::new(&cfg.connections, cfg.limits.max_body_bytes);
    crate::telemetry::config_reloaded(true);
    let tls: Option<SharedTls> = cfg
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?
        .map(|c| Arc::new(RwLock::new(c)));
    let grpc = start_grpc(&cfg, tls.clone(), current.clone()).await?;
    // The SIGHUP handler is in place before the first request is served.
    let reloader = watch.map(|w| {
        let hup = hangups();
        let at_start = Some(StartOnly {
            listen: w.file_listen.clone(),
            ..StartOnly::of(&cfg)
        });
        let running = Running {
            cfg,
            at_start,
            tls: tls.clone(),
            current: current.clone(),
        };
        tokio::spawn(watch_config(w, hup, running))
    });
    let served = serve_on_threads(listener, current, tls, registry, cfg_threads, shutdown).await;
    if let Some(r) = reloader {
        r.abort();
    }
    if let Some(g) = grpc {
        g.stop().await;
    }
    served
}

/// Starts the StoreAPI listener of `grpc_listen`, if set, answering with
/// the service in force; prints `grpc listening on ADDR` (tests and
/// scripts read it when the port is 0).
async fn start_grpc(
    cfg: &Config,
    tls: Option<SharedTls>,
    current: Current,
) -> Result<Option<super::grpc::GrpcServer>, super::grpc::GrpcError> {
    let Some(addr) = &cfg.grpc_listen else {
        return Ok(None);
    };
    let states: super::grpc::States = Arc::new(move || match current.read() {
        Ok(g) => g.state.clone(),
        Err(poisoned) => poisoned.into_inner().state.clone(),
    });
    let g = super::grpc::GrpcServer::start(addr, tls, states, &cfg.connections).await?;
    tracing::info!(addr = %g.addr, "promfed StoreAPI listening");
    println!("grpc listening on {}", g.addr);
    Ok(Some(g))
}

/// What identifies a version of the file: modification time and length.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The fingerprints of the config file and the TLS files it names.
fn fingerprints(path: &Path, cfg: &Config) -> Vec<Option<(SystemTime, u64)>> {
    let mut out = vec![fingerprint(path)];
    if let Some(t) = &cfg.tls {
        out.push(fingerprint(&t.cert_file));
        out.push(fingerprint(&t.key_file));
        if let Some(ca) = &t.client_ca_file {
            out.push(fingerprint(ca));
        }
    }
    out
}

/// What a reload replaces.
struct Running {
    cfg: Config,
    /// The settings read only at start, as the config file last gave them
    /// (the command line may override `listen`).
    at_start: Option<StartOnly>,
    tls: Option<SharedTls>,
    current: Current,
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangups() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::warn!("SIGHUP will not reload: {e}"))
        .ok()
}

#[cfg(not(unix))]
fn hangups() -> Hangups {}

async fn watch_config(w: Watch, mut hup: Hangups, mut running: Running) {
    let mut last = fingerprints(&w.path, &running.cfg);
    let mut tick = tokio::time::interval(w.interval.max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let reason = tokio::select! {
            _ = hangup => "SIGHUP",
            _ = tick.tick() => {
                if fingerprints(&w.path, &running.cfg) == last {
                    continue;
                }
                "file changed"
            }
        };
        // Taken before reading, so that a file written during the reload
        // is seen as changed at the next check (at worst one extra reload).
        let before = fingerprints(&w.path, &running.cfg);
        reload(&w.path, reason, &mut running);
        last = before;
    }
}

/// The settings that take effect only when promfed starts.
#[derive(Debug, Clone, PartialEq)]
struct StartOnly {
    listen: String,
    grpc_listen: Option<String>,
    io_threads: Option<usize>,
    connections: crate::config::ConnectionsConfig,
}

impl StartOnly {
    fn of(cfg: &Config) -> Self {
        StartOnly {
            listen: cfg.listen.clone(),
            grpc_listen: cfg.grpc_listen.clone(),
            io_threads: cfg.io_threads,
            connections: cfg.connections.clone(),
        }
    }

    /// The names of the settings that differ in `new`.
    fn changed(&self, new: &StartOnly) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listen != new.listen {
            out.push("listen");
        }
        if self.grpc_listen != new.grpc_listen {
            out.push("grpc_listen");
        }
        if self.io_threads != new.io_threads {
            out.push("io_threads");
        }
        if self.connections != new.connections {
            out.push("connections");
        }
        out
    }
}

/// Loads, validates and builds the config at `path` (and its TLS
/// certificates), and swaps it all in, or nothing.
fn reload(path: &Path, reason: &str, running: &mut Running) {
    let built = Config::load(path)
        .map_err(ServeError::from)
        .and_then(|cfg| {
            let tls = match (&cfg.tls, &running.tls) {
                (Some(t), Some(_)) => Some(crate::tls::server_config(t)?),
                _ => None,
            };
            build(&cfg).map(|svc| (cfg, svc, tls))
        });
    match built {
        Err(e) => {
            crate::telemetry::config_reloaded(false);
            tracing::error!(%reason, "config reload refused, keeping the running config: {e}");
        }
        Ok((cfg, svc, tls)) => {
            if cfg.tls.is_some() != running.tls.is_some() {
                tracing::warn!("turning TLS on or off takes effect at the next start");
            }
            if let (Some(new), Some(shared)) = (tls, &running.tls) {
                match shared.write() {
                    Ok(mut g) => *g = new,
                    Err(poisoned) => *poisoned.into_inner() = new,
                }
            }
            let old = match running.current.write() {
                Ok(mut g) => std::mem::replace(&mut *g, Arc::new(svc)),
                Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), Arc::new(svc)),
            };
            drop(old);
            let now = StartOnly::of(&cfg);
            let changed = running
                .at_start
                .as_ref()
                .map(|s| s.changed(&now))
                .unwrap_or_default();
            running.cfg = cfg;
            crate::telemetry::config_reloaded(true);
            if changed.is_empty() {
                tracing::info!(%reason, backends = running.cfg.backends.len(), "config reloaded");
            } else {
                // The rest is in force; these wait for a restart (and are
                // compared again at every reload until then).
                tracing::warn!(
                    %reason,
                    backends = running.cfg.backends.len(),
                    "config reloaded except {}: changing {} needs a restart of promfed",
                    changed.join(", "),
                    if changed.len() == 1 { "it" } else { "them" },
                );
            }
        }
    }
}
