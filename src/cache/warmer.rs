//! The warmer: evaluates the configured warm queries at every grid tick,
//! so the first caller of a cell finds its answer stored.

use std::time::Duration;

use futures::future::join_all;
use tokio::task::JoinHandle;

use super::{key, QueryCache, Variant};
use crate::model::time::DEFAULT_QUERY_TIMEOUT;
use crate::promql::QueryOptions;

impl QueryCache {
    /// Starts evaluating the configured warm queries at every grid tick;
    /// `None` when there are none. Abort the handle to stop.
    pub fn spawn_warmer(&self) -> Option<JoinHandle<()>> {
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
                me.warm_once().await;
            }
        }))
    }

    /// Evaluates every warm query for the current grid cell.
    pub async fn warm_once(&self) {
        let now = (self.inner.clock)();
        let opts = QueryOptions::default();
        let variant = Variant::default();
        let runs = self.inner.settings.warm_queries.iter().map(|q| {
            let (opts, variant) = (&opts, &variant);
            async move {
                if let Err(e) = self
                    .instant_as("warm", q, now, opts, variant, DEFAULT_QUERY_TIMEOUT)
                    .await
                {
                    tracing::warn!(query = %q, error = %e, "warm query failed");
                }
            }
        });
        join_all(runs).await;
    }
}
