//! Serves the service: builds it from a config ([`mod@build`]), serves HTTP on
//! the connection threads ([`threads`]) one connection at a time
//! ([`connections`]), and swaps in a new service on reload ([`reload`]).

pub mod build;
pub mod connections;
pub mod grpc;
pub mod long_uri;
pub mod reload;
pub mod threads;
mod write_through;

use tokio::net::TcpListener;

use crate::config::Config;
pub use build::{build, Service};

/// Serves the API on `listener` until `shutdown` resolves, then drains the
/// requests in flight. Over TLS when the config says so; no reloading (see
/// [`reload::serve`] for that).
pub async fn serve(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    reload::serve(cfg.clone(), None, listener, shutdown).await
}

/// Why the service could not be built or served: the error of the layer
/// that failed (the config, TLS, credentials, cache, a backend, the query
/// log, the listeners), for `promfed serve` to print.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Cache(#[from] crate::cache::SetupError),
    #[error(transparent)]
    Source(#[from] crate::source::SetupError),
    #[error(transparent)]
    QueryLog(#[from] crate::telemetry::QueryLogError),
    #[error(transparent)]
    Grpc(#[from] grpc::GrpcError),
    /// A backend's credentials could not be read.
    #[error("backend {backend}: {source}")]
    BackendAuth {
        backend: String,
        source: crate::auth::AuthError,
    },
    /// The listener or a connection thread could not be set up (`doing`:
    /// `serving`, `starting HTTP thread`, ...).
    #[error("{doing}: {source}")]
    Io {
        doing: &'static str,
        source: std::io::Error,
    },
}

impl ServeError {
    /// A closure for `map_err` that names what failed.
    pub(crate) fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> ServeError {
        move |source| ServeError::Io { doing, source }
    }
}
