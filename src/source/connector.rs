//! The connector of a backend's HTTP client: a socket to the backend is
//! opened only while holding one of the backend's `max_connections`
//! permits, and the permit lives inside the connection, so it is given
//! back when the socket closes (never when a request ends). The number of
//! sockets open to one backend is therefore at most `max_connections`,
//! whatever the client's pool does with them (hyper-util races a connect
//! against a connection on its way back to the pool and keeps the loser).

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;

/// Why no connection to the backend could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection free: all {max} connections to the backend stayed busy for {waited:?} (backends[].max_connections)")]
    Busy { max: usize, waited: Duration },
    #[error("bad backend address: {0}")]
    Address(String),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Opens connections to one backend, at most `max` at once.
#[derive(Clone)]
pub struct CappedConnector {
    gate: Arc<Semaphore>,
    max: usize,
    /// Longest wait for a free permit before the connect fails.
    wait: Duration,
    /// The TLS client config for `https` URLs.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl CappedConnector {
    /// A connector of at most `max` open connections (at least one); a
    /// connect waits at most `wait` for one to close.
    pub fn new(max: usize, wait: Duration, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let max = max.max(1);
        CappedConnector {
            gate: Arc::new(Semaphore::new(max)),
            max,
            wait,
            tls,
        }
    }

    /// Connections open now (or being opened).
    pub fn open(&self) -> usize {
        self.max - self.gate.available_permits()
    }

    async fn connect(self, uri: http::Uri) -> Result<CappedIo, ConnectError> {
        // The permit first: no socket exists without one.
        let permit = match tokio::time::timeout(self.wait, self.gate.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => p,
            // The gate is never closed.
            Ok(Err(_)) | Err(_) => {
                return Err(ConnectError::Busy {
                    max: self.max,
                    waited: self.wait,
                })
            }
        };
        let bad = |m: &str| ConnectError::Address(m.to_string());
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((bare, port)).await?;
        tcp.set_nodelay(true)?;
        let io = if https {
            let cfg = self
                .tls
                .clone()
                .ok_or_else(|| ConnectError::Tls("no TLS config for an https backend".into()))?;
            let name = rustls::pki_types::ServerName::try_from(bare.to_string())
                .map_err(|e| ConnectError::Tls(format!("server name {bare:?}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await?;
            Io::Tls(Box::new(TokioIo::new(tls)))
        } else {
            Io::Plain(TokioIo::new(tcp))
        };
        Ok(CappedIo {
            io,
            _permit: permit,
        })
    }
}

impl tower::Service<http::Uri> for CappedConnector {
    type Response = CappedIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<CappedIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(self.clone().connect(uri))
    }
}

enum Io {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

/// One open connection to the backend and the permit it holds.
pub struct CappedIo {
    // Declared before the permit, so dropped (the socket closed) first.
    io: Io,
    _permit: OwnedSemaphorePermit,
}

impl Connection for CappedIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for CappedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for CappedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Service;

    #[tokio::test]
    async fn a_socket_holds_its_permit_until_it_closes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let uri: http::Uri = format!("http://{}", l.local_addr().expect("addr"))
            .parse()
            .expect("uri");
        let mut c = CappedConnector::new(2, Duration::from_millis(200), None);
        let a = c.call(uri.clone()).await.expect("first");
        let b = c.call(uri.clone()).await.expect("second");
        assert_eq!(c.open(), 2);
        let third = c.call(uri.clone()).await;
        assert!(
            matches!(third, Err(ConnectError::Busy { max: 2, .. })),
            "a third socket while two are open"
        );
        drop(a);
        assert_eq!(c.open(), 1, "the permit comes back when the socket closes");
        let _c = c.call(uri).await.expect("room again");
        drop(b);
        assert_eq!(c.open(), 1);
    }
}
