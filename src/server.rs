//! Serves the service: builds it from a config ([`build`]), serves HTTP on
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
) -> Result<(), String> {
    reload::serve(cfg.clone(), None, listener, shutdown).await
}
