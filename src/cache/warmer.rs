//! The warmer: evaluates the configured warm queries at every grid tick,
//! so the first caller of a cell finds its answer stored. Given the
//! service's limits, each warm query is a query of kind `warm`: it waits
//! for an admission slot, ends at `limits.query_timeout`, is charged to a
//! budget of its own and written to the query log.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::task::JoinHandle;

use super::{key, CacheError, QueryCache, Variant};
use crate::limits::{AdmissionError, Limits, QueryFailure};
use crate::model::time::DEFAULT_QUERY_TIMEOUT;
use crate::promql::{EngineError, QueryOptions};
use crate::source::SourceError;

/// Why a warm query failed.
#[derive(Debug, thiserror::Error)]
enum WarmError {
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl QueryFailure for WarmError {
    /// As the API would name it (`api/error.rs`), for the query log.
    fn error_type(&self) -> &'static str {
        match self {
            WarmError::Admission(e) if e.is_unavailable() => "unavailable",
            WarmError::Admission(_) | WarmError::Cache(CacheError::Timeout) => "timeout",
            WarmError::Cache(CacheError::Ended) => "internal",
            WarmError::Cache(CacheError::Engine(e)) => match e {
                EngineError::Parse(_) | EngineError::Source(SourceError::BadSelect(_)) => {
                    "bad_data"
                }
                EngineError::Execution(_) | EngineError::Source(_) => "execution",
                EngineError::Timeout(_) => "timeout",
                EngineError::Canceled(_) => "canceled",
                EngineError::Unavailable(_) => "unavailable",
            },
        }
    }
}

impl QueryCache {
    /// Starts evaluating the configured warm queries at every grid tick;
    /// `None` when there are none. Abort the handle to stop.
    pub fn spawn_warmer(&self) -> Option<JoinHandle<()>> {
        self.spawn_admitted_warmer(None)
    }

    /// [`spawn_warmer`](Self::spawn_warmer) whose queries, given `limits`,
    /// each wait for an admission slot and run under the query deadline
    /// and budget, as a client's query does.
    pub fn spawn_admitted_warmer(&self, limits: Option<Arc<Limits>>) -> Option<JoinHandle<()>> {
        if self.inner.settings.warm_queries.is_empty() {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let grid = me.inner.settings.grid_ms;
            // Replicas sharing Redis tick together: a random delay early in
            // the cell lets the first one's answer reach Redis before the
            // others evaluate (they look there first).
            let spread = if me.inner.stores.shared().is_some() {
                (grid / 5).clamp(1, 2_000)
            } else {
                1
            };
            loop {
                let now = (me.inner.clock)();
                let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..spread);
                let wait = key::round_down(now, grid) + grid - now + jitter;
                tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
                me.warm_admitted(limits.as_deref()).await;
            }
        }))
    }

    /// Evaluates every warm query for the current grid cell.
    pub async fn warm_once(&self) {
        self.warm_admitted(None).await
    }

    /// Evaluates every warm query for the current grid cell; under
    /// `limits`, each as a query of kind `warm` (admission slot, deadline,
    /// budget, query log).
    pub async fn warm_admitted(&self, limits: Option<&Limits>) {
        let now = (self.inner.clock)();
        let opts = QueryOptions::default();
        let variant = Variant::default();
        let runs = self.inner.settings.warm_queries.iter().map(|q| {
            let (opts, variant) = (&opts, &variant);
            async move {
                let warmed = match limits {
                    Some(l) => {
                        let timeout = l.timeout_for(None);
                        l.run("warm", q, timeout, async {
                            self.instant_as("warm", q, now, opts, variant, timeout)
                                .await
                                .map_err(WarmError::from)
                        })
                        .await
                        .map(|_| ())
                    }
                    None => self
                        .instant_as("warm", q, now, opts, variant, DEFAULT_QUERY_TIMEOUT)
                        .await
                        .map(|_| ())
                        .map_err(WarmError::from),
                };
                if let Err(e) = warmed {
                    tracing::warn!(query = %q, error = %e, "warm query failed");
                }
            }
        });
        join_all(runs).await;
    }
}
