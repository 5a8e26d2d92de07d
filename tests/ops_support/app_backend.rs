//! A loopback backend served by axum (kept-alive connections), stopped on
//! drop: for the operations tests whose backends must misbehave in ways
//! no real Prometheus can be made to.

use std::net::SocketAddr;

/// An axum `Router` served on a free loopback port.
pub struct AppBackend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AppBackend {
    pub async fn start(app: axum::Router) -> AppBackend {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        AppBackend { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for AppBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
