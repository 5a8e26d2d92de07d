//! Where work runs. The connection threads mark themselves; work that must
//! run on the worker pool (parsing PromQL, admission and evaluation, reads
//! from backends) calls [`needs_workers`], which counts and logs it when it
//! finds itself on a connection thread. What goes where is decided in one
//! place, `api::hot_path`; this only observes that the decision holds
//! (tests read [`misplaced`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static CONNECTION_THREAD: Cell<bool> = const { Cell::new(false) };
}

static MISPLACED: AtomicU64 = AtomicU64::new(0);

/// Marks the calling thread as a connection thread (for its lifetime).
pub fn mark_connection_thread() {
    CONNECTION_THREAD.with(|c| c.set(true));
}

/// True on a connection thread.
pub fn on_connection_thread() -> bool {
    CONNECTION_THREAD.with(Cell::get)
}

/// Reports work (`what`) that belongs on the worker pool: counted and
/// logged when it runs on a connection thread.
pub fn needs_workers(what: &'static str) {
    if on_connection_thread() {
        MISPLACED.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            work = what,
            "work that belongs on the worker pool ran on a connection thread"
        );
    }
}

/// How many times work that belongs on the worker pool ran on a
/// connection thread in this process.
pub fn misplaced() -> u64 {
    MISPLACED.load(Ordering::Relaxed)
}
