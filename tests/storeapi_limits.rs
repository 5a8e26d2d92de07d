//! The StoreAPI server under promfed's memory limit: a `Series` answer
//! still to be streamed stays counted in `limits.max_memory_bytes` (seen
//! in `/metrics` as `promfed_query_memory_bytes`) while its client reads
//! slowly, another call that would overflow the pool meanwhile is refused
//! with RESOURCE_EXHAUSTED naming the limit, and the pool is back at 0
//! once the slow client goes away.
//!
//! Data: the shared harness (two simulated clusters in Debian's
//! Prometheus). Only 127.0.0.1 is contacted.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{harness, HarnessError, Promfed};
use promfed::source::thanos_store::storepb;

type R = Result<(), HarnessError>;

fn start(extra: &str) -> Promfed {
    let h = harness();
    match h.start_promfed(&format!("grpc_listen: 127.0.0.1:0\n{extra}")) {
        Ok(mut p) => {
            p.stop_on_exit();
            p
        }
        Err(e) => panic!("promfed could not start: {e}"),
    }
}

fn grpc_of(p: &Promfed) -> SocketAddr {
    match p.grpc_addr() {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

/// Every series of the harness over its whole run, one per frame.
fn everything() -> storepb::SeriesRequest {
    let s = &harness().schedule;
    storepb::SeriesRequest {
        min_time: s.start * 1000,
        max_time: s.end * 1000,
        matchers: vec![storepb::LabelMatcher {
            r#type: storepb::MatcherType::Re.into(),
            name: "__name__".into(),
            value: ".+".into(),
        }],
        aggregates: vec![storepb::Aggr::Raw.into()],
        response_batch_size: 1,
        ..Default::default()
    }
}

/// `promfed_query_memory_bytes` now.
async fn pool_bytes(p: &Promfed) -> u64 {
    let text = match common::client::get_text(&p.url, "/metrics").await {
        Ok((200, t)) => t,
        other => panic!("/metrics: {other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("promfed_query_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no promfed_query_memory_bytes in /metrics"))
}

/// Polls the pool until it reads the same twice in a row (a stream has
/// stalled, or everything was given back), at most 20 s.
async fn settled(p: &Promfed) -> u64 {
    let t0 = Instant::now();
    let mut last = pool_bytes(p).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = pool_bytes(p).await;
        if now == last || t0.elapsed() > Duration::from_secs(20) {
            return now;
        }
        last = now;
    }
}

/// A `Series` call over a bare HTTP/2 connection whose client never gives
/// flow-control capacity back: promfed sends a window's worth and waits.
/// Dropping it closes the connection.
struct SlowReader {
    conn: tokio::task::JoinHandle<()>,
    _answer: h2::RecvStream,
    _send: h2::SendStream<bytes::Bytes>,
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

async fn slow_reader(addr: SocketAddr, req: &storepb::SeriesRequest) -> SlowReader {
    use prost::Message;
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => panic!("connecting to {addr}: {e}"),
    };
    let (client, conn) = match h2::client::handshake(tcp).await {
        Ok(c) => c,
        Err(e) => panic!("HTTP/2 handshake: {e}"),
    };
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = match client.ready().await {
        Ok(c) => c,
        Err(e) => panic!("HTTP/2: {e}"),
    };
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/thanos.Store/Series"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap_or_else(|e| panic!("request head: {e}"));
    let (answer, mut send) = match client.send_request(head, false) {
        Ok(x) => x,
        Err(e) => panic!("sending: {e}"),
    };
    let body = req.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    if let Err(e) = send.send_data(frame.into(), true) {
        panic!("sending the request: {e}");
    }
    let answer = match tokio::time::timeout(Duration::from_secs(30), answer).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => panic!("answer: {e}"),
        Err(_) => panic!("no answer within 30 s"),
    };
    let (parts, mut body) = answer.into_parts();
    assert!(
        parts.headers.get("grpc-status").is_none(),
        "the call ended at once: {:?}",
        parts.headers
    );
    // The first data arrives (the answer is being streamed), then nothing
    // is released: the window stays full.
    match tokio::time::timeout(Duration::from_secs(30), body.data()).await {
        Ok(Some(Ok(_))) => {}
        other => panic!("no data from the stream: {other:?}"),
    }
    SlowReader {
        conn,
        _answer: body,
        _send: send,
    }
}

/// Calls `Series` with a gRPC client: the series received and how the
/// stream ended.
async fn series_call(
    addr: SocketAddr,
    req: storepb::SeriesRequest,
) -> (usize, Result<(), tonic::Status>) {
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect().await,
        Err(e) => panic!("endpoint: {e}"),
    };
    let mut grpc = match channel {
        Ok(c) => tonic::client::Grpc::new(c),
        Err(e) => panic!("connecting to {addr}: {e}"),
    };
    if let Err(e) = grpc.ready().await {
        panic!("not ready: {e}");
    }
    let codec =
        tonic_prost::ProstCodec::<storepb::SeriesRequest, storepb::SeriesResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/thanos.Store/Series");
    let mut stream = match grpc
        .server_streaming(tonic::Request::new(req), path, codec)
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => return (0, Err(s)),
    };
    let mut n = 0;
    loop {
        match stream.message().await {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, Ok(())),
            Err(s) => return (n, Err(s)),
        }
    }
}

#[tokio::test]
async fn a_stream_being_sent_holds_its_memory_and_a_call_that_would_overflow_the_pool_is_refused(
) -> R {
    // How much a stalled stream holds, with room to spare.
    let roomy = start("limits:\n  max_memory_bytes: 1073741824\n  max_query_bytes: 1073741824\n");
    let slow = slow_reader(grpc_of(&roomy), &everything()).await;
    let held = settled(&roomy).await;
    eprintln!("a stalled stream of every series holds {held} bytes");
    assert!(
        held > 1 << 20,
        "a stream still to be sent holds {held} bytes of the memory pool"
    );
    drop(slow);
    assert_eq!(settled(&roomy).await, 0, "the pool is not given back");

    // A pool of 1.5 times that: one stream fits and stays counted while its
    // client reads slowly; a second call would overflow the pool.
    let limit = held / 2 * 3;
    let tight = start(&format!(
        "limits:\n  max_memory_bytes: {limit}\n  max_query_bytes: {limit}\n"
    ));
    let addr = grpc_of(&tight);
    let slow = slow_reader(addr, &everything()).await;
    let now = settled(&tight).await;
    assert!(now > limit / 2, "the stalled stream holds {now} of {limit}");
    let (_, end) = series_call(addr, everything()).await;
    let status = end.expect_err("a second call does not fit the pool");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("limits.max_memory_bytes"),
        "{}",
        status.message()
    );
    // The slow client goes away: everything is given back, and the same
    // call now runs to its end.
    drop(slow);
    assert_eq!(settled(&tight).await, 0, "the pool is not given back");
    let (n, end) = series_call(addr, everything()).await;
    assert!(end.is_ok(), "{end:?}");
    assert!(n > 100, "{n} series");
    assert_eq!(settled(&tight).await, 0, "the pool is not given back");
    Ok(())
}
