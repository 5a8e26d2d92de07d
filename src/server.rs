//! Builds the whole service from a config and serves it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::cache::QueryCache;
use crate::config::Config;
use crate::config::PartialResponse;
use crate::config::ReadProtocol;
use crate::federation::{Backend, Federation, FederationOptions};
use crate::source::prometheus::{PrometheusHttpSource, SamplesVia};
use crate::source::remote_read::RemoteReadSource;
use crate::source::Source;

/// How often backends are probed for `/api/v1/stores` and `/metrics`.
pub const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

/// Builds the federation of every configured backend.
pub fn federation_from_config(cfg: &Config) -> Result<Federation, String> {
    let client = reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .build()
        .map_err(|e| format!("building HTTP client: {e}"))?;
    let backends = cfg
        .backends
        .iter()
        .map(|b| {
            let api = PrometheusHttpSource::new(&b.name, &b.url, client.clone(), b.timeout);
            let source: Arc<dyn Source> = match b.protocol {
                ReadProtocol::QueryApi => Arc::new(api),
                ReadProtocol::RemoteRead => Arc::new(SamplesVia {
                    samples: RemoteReadSource::new(&b.name, &b.url, b.timeout, client.clone()),
                    api,
                }),
            };
            Backend {
                name: b.name.clone(),
                external_labels: b.external_labels.clone(),
                source,
            }
        })
        .collect();
    Ok(Federation::new(
        backends,
        FederationOptions {
            partial_response: cfg.partial_response == PartialResponse::Warn,
            replica_labels: cfg.replica_labels.clone(),
        },
    ))
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let fed = Arc::new(federation_from_config(cfg)?);
    let cache = match &cfg.cache {
        Some(c) if c.enabled => Some(QueryCache::new(
            c,
            Arc::new(crate::promql::Engine::new(fed.clone())),
        )?),
        _ => None,
    };
    let warmer = cache.as_ref().and_then(QueryCache::spawn_warmer);
    let state = AppState::with_cache(fed.clone(), cache);
    let app = api::router(state.clone());
    // Health probes run in the background; they are shown, never gated on.
    let prober = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tick.tick().await;
            fed.probe_all().await;
        }
    });
    state.ready.store(true, Ordering::Release);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving: {e}"));
    prober.abort();
    if let Some(w) = warmer {
        w.abort();
    }
    served
}
