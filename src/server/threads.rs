//! The connection threads: `io_threads` current-thread runtimes, each
//! accepting from its own handle of the one listener and serving its
//! connections; each request goes to the service current at its arrival
//! (`dispatch`), answered on the thread or on the worker pool.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::connections::{self, Registry};
use super::reload::Current;
use super::ServeError;
use crate::tls::SharedTls;

/// Serves `app` on `n` threads, each running its own current-thread
/// runtime that accepts from a handle of `listener` (the kernel hands each
/// connection to one of them, and it stays there). A connection's requests
/// are read and answered on its thread without waking any other: the hot
/// path of a cache hit touches no shared run queue. Work that may take long
/// is sent to the worker pool (see [`dispatch`]). When `shutdown` resolves,
/// every thread stops accepting and drains its requests in flight.
pub(super) async fn serve_on_threads(
    listener: TcpListener,
    app: Current,
    tls: Option<SharedTls>,
    registry: Arc<Registry>,
    n: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let n = n.max(1);
    let listener = listener.into_std().map_err(ServeError::io("serving"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Result<(), ServeError>>(n);
    let mut threads = Vec::with_capacity(n);
    let mut started = Ok(());
    for i in 0..n {
        let spawned = listener
            .try_clone()
            .map_err(ServeError::io("serving"))
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
                    .map_err(ServeError::io("starting HTTP thread"))
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
) -> Result<(), ServeError> {
    crate::telemetry::placement::mark_connection_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::io("starting HTTP thread runtime"))?;
    rt.block_on(async move {
        let listener = TcpListener::from_std(listener).map_err(ServeError::io("serving"))?;
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
                    .map_err(ServeError::io("serving TLS"))?;
                connections::serve(listener, registry, app, stopped).await
            }
        }
        Ok(())
    })
}

/// Hands a request to the current service, which it keeps until answered:
/// on the connection's thread when the service says so
/// ([`api::hot_path::runs_inline`](crate::api::hot_path::runs_inline)),
/// else on the worker pool.
async fn dispatch(current: Current, req: Request) -> Response {
    let svc = match current.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let router = svc.router.clone();
    let answer = if crate::api::hot_path::runs_inline(&svc.state, req.uri().path()) {
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
