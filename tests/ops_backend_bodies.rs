//! Backends that declare huge bodies are refused by what they declare,
//! before promfed reads (or holds) the rest: a remote-read SAMPLES answer
//! by the decompressed length in its snappy header, any answer by its
//! `Content-Length`. Nine such remote-read backends and a query-API one,
//! each streaming gigabytes, against the real binary.

mod ops_support;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::Response;
use ops_support::{json, AppBackend, Promfed};

const GIB: u64 = 1 << 30;

/// `first`, then zeros in 1 MiB pieces up to `total` bytes, as a streamed
/// (chunked) body.
fn stream(first: Vec<u8>, total: u64) -> Body {
    let piece = Bytes::from(vec![0u8; 1 << 20]);
    let n = total / piece.len() as u64;
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) });
    let rest = futures::stream::iter((0..n).map(move |_| Ok(piece.clone())));
    Body::from_stream(futures::StreamExt::chain(head, rest))
}

/// A remote-read backend whose SAMPLES answer's snappy header declares
/// 1 GiB decompressed, then streams 2 GiB.
fn snappy_bomb() -> axum::Router {
    axum::Router::new().route(
        "/api/v1/read",
        axum::routing::post(|| async {
            // The varint of 2^30: the decompressed length snappy announces.
            let header = vec![0x80, 0x80, 0x80, 0x80, 0x04];
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .body(stream(header, 2 * GIB))
                .expect("response")
        }),
    )
}

/// A query-API backend answering every request with a body whose
/// `Content-Length` says 3 GiB, streaming as much.
fn declared_json() -> axum::Router {
    axum::Router::new().fallback(|| async {
        Response::builder()
            .header("content-type", "application/json")
            .header("content-length", (3 * GIB).to_string())
            .body(stream(
                b"{\"status\":\"success\",\"data\":[".to_vec(),
                3 * GIB - 28,
            ))
            .expect("response")
    })
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_declaring_more_than_the_cap_are_refused_unread() {
    let mut backends = Vec::new();
    for _ in 0..9 {
        backends.push(AppBackend::start(snappy_bomb()).await);
    }
    let json_backend = AppBackend::start(declared_json()).await;
    // Default caps (128 MiB a body), backends' own deadline 30 s.
    let mut cfg = String::from("partial_response: warn\nbackends:\n");
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "  - name: rr{i}\n    url: {}\n    timeout: 30s\n",
            b.url()
        ));
    }
    cfg.push_str(&format!(
        "  - name: api\n    url: {}\n    protocol: query_api\n    timeout: 30s\n",
        json_backend.url()
    ));
    let p = Promfed::start("declared-bodies", &cfg);
    let pid = p.child.id();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client");
    let started = Instant::now();
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "up"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    let warnings: Vec<String> = body["warnings"]
        .as_array()
        .map(|w| w.iter().map(|x| x.to_string()).collect())
        .unwrap_or_default();
    for i in 0..9 {
        let name = format!("backend rr{i}");
        assert!(
            warnings.iter().any(|w| w.contains(&name)
                && w.contains("declares 1073741824 bytes decompressed")
                && w.contains("backends[].max_response_bytes")),
            "{name} refused by its snappy header: {warnings:?}"
        );
    }
    assert!(
        warnings.iter().any(|w| w.contains("backend api")
            && w.contains(&format!("declares {} bytes", 3 * GIB))
            && w.contains("backends[].max_response_bytes")),
        "the query-API backend refused by its Content-Length: {warnings:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let peak_mb = status_kb(pid, "VmHWM") / 1024;
    eprintln!("answered in {took:?}, peak RSS {peak_mb} MB");
    assert!(
        peak_mb < 150,
        "peak RSS {peak_mb} MB: bodies were read before being refused"
    );
    let r = c.get(p.url("/-/healthy")).send().await.expect("alive");
    assert_eq!(r.status().as_u16(), 200);
}

/// A remote-read backend streaming `total` bytes of chunked frames (whose
/// chunks lie outside any select's range, so only bytes count).
fn streaming(total: u64) -> axum::Router {
    use prost::Message;
    axum::Router::new().route(
        "/api/v1/read",
        axum::routing::post(move || async move {
            use promfed::source::remote_read::prompb;
            let msg = prompb::ChunkedReadResponse {
                chunked_series: vec![prompb::ChunkedSeries {
                    labels: vec![prompb::Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    }],
                    chunks: vec![prompb::Chunk {
                        min_time_ms: -20_000_000,
                        max_time_ms: -10_000_000,
                        r#type: 1,
                        data: vec![0u8; 60_000].into(),
                    }],
                }],
                query_index: 0,
            };
            let mut frame = Vec::new();
            promfed::source::remote_read::frame::encode_frame(&msg.encode_to_vec(), &mut frame);
            let piece = Bytes::from(frame.repeat(16));
            let n = total / piece.len() as u64;
            let body =
                futures::stream::iter((0..n).map(move |_| Ok::<_, std::io::Error>(piece.clone())));
            Response::builder()
                .header(
                    "content-type",
                    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
                )
                .body(Body::from_stream(body))
                .expect("response")
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_backends_streaming_gigabytes_are_each_cut_at_the_default_cap() {
    // The scale: nine backends streaming 2 GiB each, under the
    // default 128 MiB cap a body (the query's byte budget raised so that
    // every backend reaches its own cap).
    let mut backends = Vec::new();
    for _ in 0..9 {
        backends.push(AppBackend::start(streaming(2 * GIB)).await);
    }
    let mut cfg = String::from(
        "partial_response: warn\nlimits: {max_fetched_bytes: 2147483648, query_timeout: 100s}\nbackends:\n",
    );
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "  - name: s{i}\n    url: {}\n    timeout: 90s\n",
            b.url()
        ));
    }
    let p = Promfed::start("nine-streams", &cfg);
    let pid = p.child.id();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .no_proxy()
        .build()
        .expect("client");
    let started = Instant::now();
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "up"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    let warnings = body["warnings"].to_string();
    for i in 0..9 {
        assert!(
            warnings.contains(&format!("backend s{i}")),
            "s{i} cut: {warnings}"
        );
    }
    assert!(
        warnings.matches("max_response_bytes").count() >= 9,
        "every backend cut at its byte cap: {warnings}"
    );
    let peak_mb = status_kb(pid, "VmHWM") / 1024;
    eprintln!("nine streams cut after {took:?}, peak RSS {peak_mb} MB");
    assert!(
        peak_mb < 300,
        "peak RSS {peak_mb} MB reading nine 2 GiB streams"
    );
    let r = c.get(p.url("/-/healthy")).send().await.expect("alive");
    assert_eq!(r.status().as_u16(), 200);
}
