//! Builds the whole service from a config: the backends, the federation,
//! the cache and the router.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ServeError;
use crate::api::{self, AppState};
use crate::cache::QueryCache;
use crate::config::{Config, PartialResponse, ReadProtocol};
use crate::federation::{Backend, Federation, FederationOptions};
use crate::source::guard::Guarded;
use crate::source::prometheus::{PrometheusHttpSource, SamplesVia};
use crate::source::remote_read::RemoteReadSource;
use crate::source::thanos_store::ThanosStoreSource;
use crate::source::Source;

/// Builds the federation of every configured backend.
pub fn federation_from_config(cfg: &Config) -> Result<Federation, ServeError> {
    let backends = cfg
        .backends
        .iter()
        .map(|b| {
            let (client, redactor) = crate::source::client::backend_client(b)?;
            let api = PrometheusHttpSource::new(&b.name, &b.url, client.clone(), b.timeout)
                .with_max_response_bytes(b.max_response_bytes)
                .with_metadata_gzip(b.metadata_gzip);
            let source: Arc<dyn Source> = match b.protocol {
                ReadProtocol::QueryApi => Arc::new(api),
                ReadProtocol::ThanosStore => Arc::new(
                    ThanosStoreSource::new(
                        &b.name,
                        &b.url,
                        b.timeout,
                        b.tls.as_ref(),
                        crate::auth::backend_authorization(
                            b.bearer_token_file.as_ref(),
                            b.basic_auth.as_ref(),
                        )
                        .map_err(|source| ServeError::BackendAuth {
                            backend: b.name.clone(),
                            source,
                        })?,
                    )?
                    .with_max_response_bytes(b.max_response_bytes),
                ),
                ReadProtocol::RemoteRead => Arc::new(SamplesVia {
                    samples: RemoteReadSource::new(&b.name, &b.url, b.timeout, client.clone())
                        .with_max_response_bytes(b.max_response_bytes),
                    api,
                }),
            };
            Ok(Backend {
                name: b.name.clone(),
                external_labels: b.external_labels.clone(),
                source: Arc::new(Guarded::new(source, b.max_connections, redactor)),
            })
        })
        .collect::<Result<Vec<_>, ServeError>>()?;
    let fed = Federation::new(
        backends,
        FederationOptions {
            partial_response: cfg.partial_response == PartialResponse::Warn,
            replica_labels: cfg.replica_labels.clone(),
        },
    );
    Ok(if cfg.pushdown {
        fed.with_pushdown(cfg.backends.iter().map(|b| b.pushdown).collect())
    } else {
        fed
    })
}

/// One configuration's running service: its router and the background
/// tasks that belong to it (stopped when it is dropped).
pub struct Service {
    pub router: axum::Router,
    pub state: Arc<AppState>,
    prober: tokio::task::JoinHandle<()>,
    /// Evaluates the cache's warm queries on every grid tick, if any.
    warmer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.prober.abort();
        if let Some(w) = &self.warmer {
            w.abort();
        }
    }
}

/// Builds the whole service of `cfg` (inside a Tokio runtime); nothing is
/// changed when it fails, so a reload can keep the running service.
pub fn build(cfg: &Config) -> Result<Service, ServeError> {
    let fed = Arc::new(federation_from_config(cfg)?);
    let cache = match &cfg.cache {
        Some(c) if c.enabled => Some(QueryCache::new(
            c,
            Arc::new(crate::promql::Engine::new(fed.clone())),
        )?),
        _ => None,
    };
    let state = AppState::build(fed.clone(), cache, cfg.limits.clone());
    let router = crate::auth::protect(
        api::router(state.clone()).merge(crate::ui::router(state.clone())),
        cfg.auth.as_ref(),
    )?;
    crate::telemetry::set_query_log(cfg.query_log.as_deref())?;
    // Background tasks start only once nothing more can fail.
    // Warm queries are admitted, timed out and budgeted as any query.
    let warmer = state
        .cache
        .as_ref()
        .and_then(|c| c.spawn_admitted_warmer(Some(state.limits.clone())));
    // Health probes run in the background; they are shown, never gated on.
    let every = cfg.probe_interval;
    let prober = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            fed.probe_all().await;
        }
    });
    state.ready.store(true, Ordering::Release);
    Ok(Service {
        router,
        state,
        prober,
        warmer,
    })
}
