//! A SAMPLES remote-read answer's two buffers (the compressed body and the
//! decompressed message) are charged to the query's byte budget before
//! they are allocated: an answer under the backend's byte cap whose two
//! buffers together do not fit `limits.max_query_bytes` fails the query
//! with a 422 naming the backend and the limit, against the real binary.

mod ops_support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Response;
use ops_support::{json, Promfed};
use rand::RngCore;

/// A loopback backend served by axum, stopped on drop.
struct AppBackend {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AppBackend {
    async fn start(app: axum::Router) -> AppBackend {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        AppBackend { addr, task }
    }
}

impl Drop for AppBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MIB: usize = 1 << 20;

/// A snappy-compressed `ReadResponse` without results whose only field is
/// an unknown one (number 15) of `n` random bytes: the decoder skips it,
/// so the query answers nothing, but its compressed body and decompressed
/// message are each about `n` bytes.
fn padded_read_response(n: usize) -> Vec<u8> {
    let mut msg = vec![(15 << 3) | 2];
    let mut len = n as u64;
    while len >= 0x80 {
        msg.push((len as u8) | 0x80);
        len >>= 7;
    }
    msg.push(len as u8);
    let start = msg.len();
    msg.resize(start + n, 0);
    rand::thread_rng().fill_bytes(&mut msg[start..]);
    snap::raw::Encoder::new()
        .compress_vec(&msg)
        .expect("compress")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_buffers_of_a_samples_answer_count_against_the_query_budget() {
    let body = padded_read_response(4 * MIB);
    assert!(body.len() > 4 * MIB, "random bytes do not compress");
    let backend = AppBackend::start(axum::Router::new().route(
        "/api/v1/read",
        axum::routing::post(move || {
            let body = body.clone();
            async move {
                Response::builder()
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "snappy")
                    .body(axum::body::Body::from(body))
                    .expect("response")
            }
        }),
    ))
    .await;
    // Each buffer (about 4 MiB) is under the backend's byte cap and under
    // the query's 6 MiB; both at once are not.
    let cfg = format!(
        "limits: {{max_query_bytes: {}}}\nbackends:\n  - name: rr\n    url: http://{}\n    max_response_bytes: {}\n",
        6 * MIB,
        backend.addr,
        5 * MIB
    );
    let p = Promfed::start("read-buffers", &cfg);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("client");
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "up"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let (status, body) = json(r).await;
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("backend rr") && error.contains("limits.max_query_bytes"),
        "{body}"
    );
    // A budget with room for both answers (nothing matched).
    drop(p);
    let cfg = cfg.replace(
        &format!("max_query_bytes: {}", 6 * MIB),
        "max_query_bytes: 12582912",
    );
    let p = Promfed::start("read-buffers-room", &cfg);
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "up"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"], serde_json::json!([]), "{body}");
}
