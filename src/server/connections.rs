//! Client connections: a cap on how many are open, a deadline for a
//! request's headers and for idle keep-alive, so that clients who open
//! connections and send nothing cannot take the file descriptors that
//! probes and queries need.
//!
//! Every connection is in one of three states: *busy* (a request is being
//! answered, its body included), *reading* (promfed waits for a request's
//! headers: from accept, or from the first byte of a request on a
//! kept-alive connection) or *idle* (kept alive between requests). Reading
//! ends after `header_read_timeout`, idle after `idle_timeout`; busy
//! connections are bounded by the query deadlines. At the cap, a new
//! connection closes the idle connection unused the longest, else the
//! oldest reading one; when every connection is busy it is refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::long_uri::{LongTarget, LongUri};
use crate::config::ConnectionsConfig;

/// File descriptors kept for everything but client connections (backend
/// connections, config and TLS files, the cache's Redis) when the cap is
/// lowered to fit the process's open-file limit.
pub const RESERVED_FDS: usize = 256;

/// The open client connections of the whole process (every HTTP thread).
pub struct Registry {
    max_open: usize,
    /// The longest request target taken (`limits.max_body_bytes` at start).
    max_target: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

/// What the registry knows of one connection.
pub struct ConnState {
    /// Requests being answered (until their response body is written).
    busy: AtomicUsize,
    /// Waiting for a request's headers.
    reading: AtomicBool,
    /// When the state last changed, ms since the registry's epoch.
    since_ms: AtomicU64,
    /// Told to close (evicted at the cap).
    close: Notify,
}

/// The soft limit on open files of this process, from `/proc/self/limits`
/// (`None` where that cannot be read, or when unlimited).
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Raises this process's soft limit on open files to its hard limit, as
/// Go programs (Prometheus, Thanos) do at start: the defaults of many
/// systems (1024 soft, far more hard) would otherwise cap client
/// connections and backend sockets at a few hundred. Returns the limits
/// before and after, or `None` when it cannot be read or changed.
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    let (soft, _hard) = rlimit::Resource::NOFILE.get().ok()?;
    let raised = rlimit::increase_nofile_limit(u64::MAX).ok()?;
    Some((soft, raised))
}

impl Registry {
    /// The registry of `cfg`, its cap lowered to what the open-file limit
    /// allows (with [`RESERVED_FDS`] kept for the rest).
    pub fn new(cfg: &ConnectionsConfig, max_target: usize) -> Arc<Self> {
        let mut max_open = cfg.max_open;
        if let Some(fds) = open_files_limit() {
            let fits = fds.saturating_sub(RESERVED_FDS).max(16);
            if fits < max_open {
                tracing::warn!(
                    configured = max_open,
                    open_files_limit = fds,
                    "connections.max_open lowered to {fits} to fit the open-file limit (raise it with ulimit -n / LimitNOFILE)"
                );
                max_open = fits;
            }
        }
        Arc::new(Registry {
            max_open,
            max_target,
            header_read_timeout: cfg.header_read_timeout,
            idle_timeout: cfg.idle_timeout,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The cap in force.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers a new connection, closing another at the cap; `None` when
    /// it must be refused (every open connection is busy).
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let state = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            reading: AtomicBool::new(true),
            since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max_open {
            // Idle first (oldest), then reading (oldest); never busy.
            let victim = open
                .iter()
                .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| {
                    (
                        c.reading.load(Ordering::Acquire),
                        c.since_ms.load(Ordering::Acquire),
                    )
                })
                .map(|(id, _)| *id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(c) => {
                    crate::telemetry::connection_closed("evicted");
                    c.close.notify_one();
                }
                None => {
                    crate::telemetry::connection_closed("refused");
                    return None;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            registry: self.clone(),
        })
    }

    /// When the connection in `c` times out in its current state, if it
    /// does (`None` while busy).
    fn deadline(&self, c: &ConnState) -> Option<Instant> {
        if c.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.epoch + Duration::from_millis(c.since_ms.load(Ordering::Acquire));
        Some(
            since
                + if c.reading.load(Ordering::Acquire) {
                    self.header_read_timeout
                } else {
                    self.idle_timeout
                },
        )
    }
}

/// A connection's place in the registry; leaving it frees the place.
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.registry.open.lock() {
            open.remove(&self.id);
        }
    }
}

/// Marks a connection busy until dropped (with the response body).
struct Busy {
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl Busy {
    fn enter(state: &Arc<ConnState>, registry: &Arc<Registry>) -> Busy {
        state.busy.fetch_add(1, Ordering::AcqRel);
        state.reading.store(false, Ordering::Release);
        Busy {
            state: state.clone(),
            registry: registry.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state
            .since_ms
            .store(self.registry.now_ms(), Ordering::Release);
        self.state.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The connection's IO: the first byte of a request on an idle connection
/// starts its header-read deadline.
struct Tracked<T> {
    inner: T,
    state: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.state.busy.load(Ordering::Acquire) == 0
            && !self.state.reading.load(Ordering::Acquire)
        {
            self.state
                .since_ms
                .store(self.registry.now_ms(), Ordering::Release);
            self.state.reading.store(true, Ordering::Release);
        }
        r
    }
}

super::write_through::write_through!(Tracked);

/// A response body that keeps its connection busy until it is written.
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves the connections of `listener` with `handle` until `stop`
/// resolves, then lets the requests in flight finish.
pub async fn serve<L, H, F>(
    mut listener: L,
    registry: Arc<Registry>,
    handle: H,
    stop: impl std::future::Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response> + Send + 'static,
{
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut stop => break,
            c = listener.accept() => c,
        };
        // Finished connections are reaped as new ones come.
        while tasks.try_join_next().is_some() {}
        let Some(slot) = registry.admit() else {
            drop(io);
            continue;
        };
        tasks.spawn(connection(io, peer, slot, handle.clone(), stopping.clone()));
    }
    let _ = stopping_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

/// Serves one connection until it ends, times out, is evicted or, on
/// shutdown, has answered its requests in flight.
async fn connection<I, H, F>(
    io: I,
    peer: SocketAddr,
    slot: Slot,
    handle: H,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response> + Send + 'static,
{
    let registry = slot.registry.clone();
    let state = slot.state.clone();
    let handoff = Arc::new(Mutex::new(None));
    let idle = {
        let state = state.clone();
        move || state.busy.load(Ordering::Acquire) == 0 && !state.reading.load(Ordering::Acquire)
    };
    let io = TokioIo::new(LongUri::new(
        Tracked {
            inner: io,
            state: state.clone(),
            registry: registry.clone(),
        },
        registry.max_target,
        handoff.clone(),
        idle,
    ));
    let svc = {
        let (state, registry) = (state.clone(), registry.clone());
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let busy = Busy::enter(&state, &registry);
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            let answer = match handoff.lock().ok().and_then(|mut h| h.take()) {
                Some(LongTarget::TooLong { len, max }) => Err(LongTarget::too_long(len, max)),
                long => {
                    if let Some(long) = long {
                        req.extensions_mut().insert(long);
                    }
                    Ok(handle(req))
                }
            };
            async move {
                let resp = match answer {
                    Ok(answer) => answer.await,
                    Err(e) => axum::response::IntoResponse::into_response(e),
                };
                Ok::<_, Infallible>(resp.map(|inner| BusyBody { inner, _busy: busy }))
            }
        })
    };
    // No hyper timer: its header-read timeout would also cut idle
    // keep-alive; the watchdog below keeps both deadlines.
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = registry.deadline(&state);
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                // Busy: look again later (a request ends on its own deadline).
                None => tokio::time::sleep(registry.header_read_timeout).await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = state.close.notified() => break,
            _ = timer => {
                if registry
                    .deadline(&state)
                    .is_some_and(|d| d <= Instant::now())
                {
                    crate::telemetry::connection_closed(
                        if state.reading.load(Ordering::Acquire) { "header_timeout" } else { "idle_timeout" },
                    );
                    break;
                }
            }
            changed = stopping.changed(), if !draining => {
                if changed.is_err() || *stopping.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(max_open: usize) -> Arc<Registry> {
        Registry::new(
            &ConnectionsConfig {
                max_open,
                ..ConnectionsConfig::default()
            },
            4 << 20,
        )
    }

    #[test]
    fn at_the_cap_idle_goes_first_then_the_oldest_reading_and_busy_never() {
        let r = registry(2);
        let a = r.admit().expect("room");
        let b = r.admit().expect("room");
        // a is idle (between requests), b is reading: a goes.
        a.state.reading.store(false, Ordering::Release);
        let c = r.admit().expect("evicts a");
        assert!(!r.open.lock().expect("lock").contains_key(&a.id));
        // b and c are reading: b is older, b goes.
        let busy_c = Busy::enter(&c.state, &r);
        let d = r.admit().expect("evicts b");
        assert!(!r.open.lock().expect("lock").contains_key(&b.id));
        // c is busy and d is reading: d goes, c never.
        let _busy_d = Busy::enter(&d.state, &r);
        assert!(r.admit().is_none(), "every connection busy: refused");
        drop(busy_c);
        let e = r.admit();
        assert!(e.is_some(), "c is idle again, and goes");
        assert_eq!(r.open(), 2);
    }

    #[test]
    fn open_files_limit_is_read() {
        if std::path::Path::new("/proc/self/limits").exists() {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
