//! Single flight: identical in-flight work runs once and every caller
//! waiting for it gets its outcome.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, FutureExt, Shared};

/// A shared outcome that any number of callers can await.
pub type Flight<T> = Shared<BoxFuture<'static, T>>;

/// The work in flight, by key.
pub struct Flights<T: Clone + Send + Sync + 'static> {
    inflight: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for Flights<T> {
    fn default() -> Self {
        Flights {
            inflight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Joins the flight for `key`, or starts one running `work` as its own
    /// task (so it finishes, and fills the cache, even when every caller has
    /// gone away). Returns the flight and whether this call started it.
    ///
    /// The flight leaves the table when `work` is done, after `work` has
    /// stored its result: a caller that missed the store afterwards finds
    /// the result there (work re-checks the store before it evaluates).
    pub fn join_or_start<F, W>(&self, key: &str, work: W, on_panic: fn() -> T) -> (Flight<T>, bool)
    where
        W: FnOnce() -> F,
        F: Future<Output = T> + Send + 'static,
    {
        let mut map = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = map.get(key) {
            return (f.clone(), false);
        }
        // The spawned evaluation keeps the caller's query budget (limits).
        let fut = crate::limits::carry(work());
        let table = self.inflight.clone();
        let owned_key = key.to_string();
        let handle = tokio::spawn(async move {
            let out = fut.await;
            table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&owned_key);
            out
        });
        let table = self.inflight.clone();
        let owned_key = key.to_string();
        let flight = async move {
            match handle.await {
                Ok(out) => out,
                Err(_) => {
                    // The task panicked or was aborted: forget it so the next
                    // caller starts afresh.
                    table
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&owned_key);
                    on_panic()
                }
            }
        }
        .boxed()
        .shared();
        map.insert(key.to_string(), flight.clone());
        (flight, true)
    }

    /// Number of flights in the air (for tests and metrics).
    pub fn len(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<u64>> = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (flights, runs) = (flights.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                let (f, leader) = flights.join_or_start(
                    "k",
                    || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        42
                    },
                    || 0,
                );
                (f.await, leader)
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, leader) = t.await.expect("task");
            assert_eq!(v, 42);
            leaders += usize::from(leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn work_finishes_when_the_caller_leaves() {
        let flights: Flights<u64> = Flights::default();
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let (f, _) = flights.join_or_start(
            "k",
            || async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                d.fetch_add(1, Ordering::SeqCst);
                1
            },
            || 0,
        );
        drop(f);
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 1 && flights.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the abandoned work did not finish");
    }

    #[tokio::test]
    async fn a_panic_is_an_outcome_and_clears_the_key() {
        let flights: Flights<u64> = Flights::default();
        let (f, _) = flights.join_or_start(
            "k",
            || async move {
                if flights_panic() {
                    panic!("boom");
                }
                1
            },
            || 7,
        );
        assert_eq!(f.await, 7);
        assert!(flights.is_empty());
    }

    fn flights_panic() -> bool {
        true
    }
}
