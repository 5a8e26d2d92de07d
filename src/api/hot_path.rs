//! The one hot-path rule: what runs on a connection thread and what goes
//! to the worker pool.
//!
//! A connection thread (`server::threads`: one current-thread runtime per
//! core) reads requests and writes answers. Of the work between, it does
//! only what costs no parsing, waiting or I/O: for an instant query when the
//! cache is on, the form values, a memo lookup of the query's canonical form
//! (never a parse: a text not seen before goes to the workers), the grid
//! cell's key and a lookup of the bytes held in memory. Everything else, a
//! miss included, runs on the workers ([`on_workers`]): parsing PromQL,
//! admission and evaluation, Redis and backend reads, every other endpoint.
//!
//! [`runs_inline`] is the only place that names what may stay on the
//! connection thread; `server::threads` asks it per request. Work that
//! belongs on the workers reports itself to
//! `telemetry::placement::needs_workers`, which counts a breach
//! (`tests/hot_path.rs` fails on one).

use super::error::{ApiError, ErrorType};
use super::{AppState, QUERY_PATH};

/// Whether a request to `path` starts on the connection's thread rather
/// than the worker pool: instant queries when there is a cache (the
/// handler answers a hit at once and sends the rest to the workers).
pub fn runs_inline(state: &AppState, path: &str) -> bool {
    state.cache.is_some() && path == QUERY_PATH
}

/// Runs `fut` on the worker pool and waits for it there, so that whatever
/// it costs never holds up the connection thread it was called from; a
/// panic in it becomes an `internal` error instead of a dropped connection.
/// `fut` is spawned (or boxed) at once: the caller's own future stays
/// small, which matters on the hot path where it is moved and boxed.
pub fn on_workers<F>(
    st: &AppState,
    fut: F,
) -> impl std::future::Future<Output = Result<F::Output, ApiError>> + Send + 'static
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let run = match &st.workers {
        Some(workers) => futures::future::Either::Left(workers.spawn(fut)),
        None => futures::future::Either::Right(Box::pin(fut)),
    };
    async move {
        match run {
            futures::future::Either::Left(spawned) => spawned.await.map_err(|e| {
                tracing::error!("request task failed: {e}");
                ApiError::new(ErrorType::Internal, "internal error while answering")
            }),
            futures::future::Either::Right(inline) => Ok(inline.await),
        }
    }
}
