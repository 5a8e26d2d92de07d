//! Serving with live reload: SIGHUP or a change of the config file builds a
//! new service and swaps it in atomically; an invalid config is refused
//! with a log line and the running one kept. Requests in flight finish on
//! the service they started on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;
use crate::server::connections::{self, Registry};
use crate::server::{self, Service};
use crate::tls::SharedTls;

/// How often the config file is checked for changes, by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// The service answering new requests.
type Current = Arc<RwLock<Arc<Service>>>;

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
) -> Result<(), String> {
    let current: Current = Arc::new(RwLock::new(Arc::new(server::build(&cfg)?)));
    let cfg_threads = cfg.io_thread_count();
    let registry = crate::server::connections::Registry::new(&cfg.connections);
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
) -> Result<Option<server::grpc::GrpcServer>, String> {
    let Some(addr) = &cfg.grpc_listen else {
        return Ok(None);
    };
    let states: server::grpc::States = Arc::new(move || match current.read() {
        Ok(g) => g.state.clone(),
        Err(poisoned) => poisoned.into_inner().state.clone(),
    });
    let g = server::grpc::GrpcServer::start(addr, tls, states, &cfg.connections).await?;
    tracing::info!(addr = %g.addr, "promfed StoreAPI listening");
    println!("grpc listening on {}", g.addr);
    Ok(Some(g))
}

/// Serves `app` on `n` threads, each running its own current-thread
/// runtime that accepts from a handle of `listener` (the kernel hands each
/// connection to one of them, and it stays there). A connection's requests
/// are read and answered on its thread without waking any other: the hot
/// path of a cache hit touches no shared run queue. Work that may take long
/// is sent to the worker pool (see [`dispatch`]). When `shutdown` resolves,
/// every thread stops accepting and drains its requests in flight.
async fn serve_on_threads(
    listener: TcpListener,
    app: Current,
    tls: Option<SharedTls>,
    registry: Arc<Registry>,
    n: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let n = n.max(1);
    let listener = listener.into_std().map_err(|e| format!("serving: {e}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(n);
    let mut threads = Vec::with_capacity(n);
    let mut started = Ok(());
    for i in 0..n {
        let spawned = listener
            .try_clone()
            .map_err(|e| format!("serving: {e}"))
            .and_then(|l| {
                let (app, tls, stop, done) =
                    (app.clone(), tls.clone(), stop_rx.clone(), done_tx.clone());
                let registry = registry.clone();
                std::thread::Builder::new()
                    .name(format!("promfed-io-{i}"))
                    // Cached answers are keyed by parsed query text here.
                    .stack_size(16 << 20)
                    .spawn(move || {
                        let _ = done.blocking_send(serve_thread(l, app, tls, registry, stop));
                    })
                    .map_err(|e| format!("starting HTTP thread: {e}"))
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    drop(done_tx);
    drop(listener);
    // Until shutdown, unless a thread could not start or serve.
    let mut result = started;
    if result.is_ok() {
        tokio::select! {
            _ = shutdown => {}
            r = done_rx.recv() => result = r.unwrap_or(Ok(())),
        }
    }
    let _ = stop_tx.send(true);
    while let Some(r) = done_rx.recv().await {
        if let (Ok(()), Err(e)) = (&result, r) {
            result = Err(e);
        }
    }
    // Every thread has reported, so these joins return at once.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    result
}

/// One HTTP thread: a current-thread runtime serving `listener` until
/// `stop` says so, then draining.
fn serve_thread(
    listener: std::net::TcpListener,
    current: Current,
    tls: Option<SharedTls>,
    registry: Arc<Registry>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting HTTP thread runtime: {e}"))?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).map_err(|e| format!("serving: {e}"))?;
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        // Every request goes straight to `dispatch` (no router in front).
        let app = move |req: Request| dispatch(current.clone(), req);
        match tls {
            None => connections::serve(listener, registry, app, stopped).await,
            Some(tls) => {
                let handshakes = registry.max_open();
                let listener = crate::tls::TlsListener::new(listener, tls, handshakes)
                    .map_err(|e| format!("serving TLS: {e}"))?;
                connections::serve(listener, registry, app, stopped).await
            }
        }
        Ok(())
    })
}

/// Hands a request to the current service, which it keeps until answered:
/// on the connection's thread when the service says so
/// ([`AppState::answers_inline`](crate::api::AppState::answers_inline)),
/// else on the worker pool.
async fn dispatch(current: Current, req: Request) -> Response {
    let svc = match current.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let router = svc.router.clone();
    let answer = if svc.state.answers_inline(req.uri().path()) {
        router.oneshot(req).await
    } else {
        match crate::api::on_workers(&svc.state, router.oneshot(req)).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        }
    };
    drop(svc);
    match answer {
        Ok(r) => r,
        Err(never) => match never {},
    }
    .into_response()
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
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            let tls = match (&cfg.tls, &running.tls) {
                (Some(t), Some(_)) => Some(crate::tls::server_config(t)?),
                _ => None,
            };
            server::build(&cfg).map(|svc| (cfg, svc, tls))
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
