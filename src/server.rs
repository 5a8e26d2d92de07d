//! Builds the whole service from a config and serves it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::cache::QueryCache;
use crate::config::Config;
use crate::federation::{Backend, Federation};
use crate::promql::Engine;
use crate::source::prometheus::PrometheusHttpSource;
use crate::telemetry::Telemetry;

/// Builds the federation of every configured backend.
pub fn federation_from_config(cfg: &Config) -> Result<Federation, String> {
    let client = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
        .map_err(|e| format!("building HTTP client: {e}"))?;
    let backends = cfg
        .backends
        .iter()
        .map(|b| Backend {
            name: b.name.clone(),
            external_labels: b.external_labels.clone(),
            source: Arc::new(PrometheusHttpSource::new(
                &b.name,
                &b.url,
                client.clone(),
                b.timeout,
            )),
        })
        .collect();
    Ok(Federation::new(backends))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let fed = federation_from_config(cfg)?;
    let engine = Engine::new(Arc::new(fed));
    let telemetry = Telemetry::new();
    let cache = match &cfg.cache {
        Some(c) if c.enabled => Some(QueryCache::new(
            c,
            Arc::new(engine.clone()),
            telemetry.registry(),
        )?),
        _ => None,
    };
    let warmer = cache.as_ref().and_then(QueryCache::spawn_warmer);
    let state = AppState::with_cache(engine, cache, telemetry);
    let app = api::router(state.clone());
    state.ready.store(true, Ordering::Release);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving: {e}"));
    if let Some(w) = warmer {
        w.abort();
    }
    served
}
