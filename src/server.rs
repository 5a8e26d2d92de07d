//! Serves the service: builds it from a config ([`mod@build`]), serves HTTP on
//! the connection threads ([`threads`]) one connection at a time
//! ([`connections`]), and swaps in a new service on reload ([`reload`]).

pub mod build;
pub mod connections;
pub mod grpc;
pub mod long_uri;
pub mod reload;
pub mod threads;

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

/// Why the service could not be built or served. It carries the message of
/// the layer that failed (TLS, credentials, cache, a backend, the query
/// log, the listener), for `promfed serve` to print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ServeError(pub String);

impl From<String> for ServeError {
    fn from(message: String) -> Self {
        ServeError(message)
    }
}

macro_rules! serve_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ServeError {
            fn from(e: $t) -> Self {
                ServeError(e.to_string())
            }
        }
    )*};
}

serve_error_from!(
    crate::tls::TlsError,
    crate::auth::AuthError,
    crate::cache::SetupError,
    crate::source::SetupError,
    crate::telemetry::QueryLogError
);
