//! The gRPC listener (`grpc_listen`): serves promfed's StoreAPI
//! ([`crate::storeapi`]) over HTTP/2, with the HTTPS listener's TLS
//! settings (certificate, and client certificates when `client_ca_file`
//! is set) and the same connection limits.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::connections::{self, Registry};
use crate::api::AppState;
use crate::config::ConnectionsConfig;
use crate::tls::SharedTls;

/// The state of the service in force (a reload swaps it; calls in flight
/// keep the one they started with).
pub type States = Arc<dyn Fn() -> Arc<AppState> + Send + Sync>;

/// Why the gRPC listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("grpc_listen {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("grpc_listen {addr}: TLS: {source}")]
    Tls {
        addr: String,
        source: std::io::Error,
    },
}

/// A running gRPC listener; stopped (after its calls in flight) when dropped
/// or by [`GrpcServer::stop`].
pub struct GrpcServer {
    /// The bound address (the port is known when `grpc_listen` says `:0`).
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcServer {
    /// Binds `addr` and serves the StoreAPI of `states()` on it, over TLS
    /// when `tls` is given.
    pub async fn start(
        addr: &str,
        tls: Option<SharedTls>,
        states: States,
        limits: &ConnectionsConfig,
    ) -> Result<GrpcServer, GrpcError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| GrpcError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = tcp.local_addr().map_err(|source| GrpcError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        // gRPC paths are short: no request target beyond the usual URI limit.
        let registry = Registry::new(limits, 0);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let stopping = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let handle = move |req: axum::extract::Request| {
            let st = states();
            async move {
                crate::storeapi::handle(st, req)
                    .await
                    .map(axum::body::Body::new)
            }
        };
        let task = match tls {
            None => tokio::spawn(connections::serve(tcp, registry, handle, stopping)),
            Some(tls) => {
                let handshakes = registry.max_open();
                let listener =
                    crate::tls::TlsListener::new(tcp, tls, handshakes).map_err(|source| {
                        GrpcError::Tls {
                            addr: addr.to_string(),
                            source,
                        }
                    })?;
                tokio::spawn(connections::serve(listener, registry, handle, stopping))
            }
        };
        Ok(GrpcServer {
            addr: local,
            stop,
            task,
        })
    }

    /// Stops accepting, lets the calls in flight finish, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
