//! Serves the service: builds it from a config ([`build`]), serves HTTP on
//! the connection threads and swaps in a new service on reload
//! ([`reload`]), one connection at a time ([`connections`]).

pub mod build;
pub mod connections;
pub mod reload;

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
