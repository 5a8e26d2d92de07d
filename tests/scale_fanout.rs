//! Fan-out at scale (issue #17): the real `promfed serve` over 100 loopback
//! stand-in backends that answer remote read (streamed XOR chunks) from
//! memory. One query fans out to all of them and completes with the sum a
//! plain reference computes from the served data; promfed's open file
//! descriptors and threads stay bounded; and ten backends that stall do not
//! hold the answer of the other ninety past their deadline.

mod ops_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use ops_support::{json, Promfed};
use promfed::model::Sample;
use promfed::source::remote_read::chunk_encode::encode_chunks;
use promfed::source::remote_read::frame::encode_frame;
use promfed::source::remote_read::prompb;
use prost::Message;

/// Backends in every test.
const N: usize = 100;
/// Series of `fan_requests_total` each backend holds.
const SERIES: usize = 40;
/// Samples of each series, one every 15 s.
const POINTS: i64 = 80;
/// First sample's time, ms.
const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;

/// One series a stand-in holds.
struct Held {
    labels: Vec<(String, String)>,
    samples: Vec<Sample>,
}

/// What backend `i` holds: integer values, so sums are exact in any order.
fn data_of(i: usize) -> Vec<Held> {
    (0..SERIES)
        .map(|j| Held {
            labels: vec![
                ("__name__".into(), "fan_requests_total".into()),
                ("job".into(), "app".into()),
                ("pod".into(), format!("pod-{j:03}")),
            ],
            samples: (0..POINTS)
                .map(|k| Sample {
                    // A few ms of scrape jitter, as real scrapes have.
                    t: T0 + k * STEP_MS + ((i + j) as i64 % 7),
                    v: (i * 1000 + j * 10) as f64 + k as f64,
                })
                .collect(),
        })
        .collect()
}

/// A stand-in backend's state.
struct Standin {
    series: Vec<Held>,
    /// Answer remote read only after this long (`None`: at once).
    stall: Option<Duration>,
    reads: AtomicUsize,
    /// Body bytes of every answer sent (remote read and probes).
    served: AtomicUsize,
    /// Set when a read asked for anything but streamed chunks first.
    not_streamed: AtomicBool,
}

/// Prometheus's matching of one matcher (regexes anchored).
fn matches(labels: &[(String, String)], m: &prompb::LabelMatcher) -> bool {
    let v = labels
        .iter()
        .find(|(n, _)| *n == m.name)
        .map_or("", |(_, v)| v.as_str());
    let re = || regex::Regex::new(&format!("^(?:{})$", m.value)).map(|r| r.is_match(v));
    match prompb::MatcherType::try_from(m.r#type) {
        Ok(prompb::MatcherType::Eq) => v == m.value,
        Ok(prompb::MatcherType::Neq) => v != m.value,
        Ok(prompb::MatcherType::Re) => re().unwrap_or(false),
        Ok(prompb::MatcherType::Nre) => re().map(|b| !b).unwrap_or(false),
        Err(_) => false,
    }
}

/// `POST /api/v1/read`: every query answered as STREAMED_XOR_CHUNKS, one
/// frame per series, chunks of at most 120 samples.
async fn read(State(st): State<Arc<Standin>>, body: Bytes) -> Response {
    st.reads.fetch_add(1, Ordering::SeqCst);
    if let Some(d) = st.stall {
        tokio::time::sleep(d).await;
    }
    let req = match snap::raw::Decoder::new()
        .decompress_vec(&body)
        .map_err(|e| e.to_string())
        .and_then(|raw| prompb::ReadRequest::decode(raw.as_slice()).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e).into_response(),
    };
    if req.accepted_response_types.first()
        != Some(&i32::from(prompb::ResponseType::StreamedXorChunks))
    {
        st.not_streamed.store(true, Ordering::SeqCst);
    }
    let mut out = Vec::new();
    for (qi, q) in req.queries.iter().enumerate() {
        for s in st
            .series
            .iter()
            .filter(|s| q.matchers.iter().all(|m| matches(&s.labels, m)))
        {
            let inside: Vec<Sample> = s
                .samples
                .iter()
                .filter(|x| (q.start_timestamp_ms..=q.end_timestamp_ms).contains(&x.t))
                .copied()
                .collect();
            let chunks = encode_chunks(&inside, 120)
                .into_iter()
                .map(|c| prompb::Chunk {
                    min_time_ms: c.min_t,
                    max_time_ms: c.max_t,
                    r#type: i32::from(prompb::ChunkEncoding::Xor),
                    data: c.data.into(),
                })
                .collect();
            let msg = prompb::ChunkedReadResponse {
                chunked_series: vec![prompb::ChunkedSeries {
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| prompb::Label {
                            name: n.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    chunks,
                }],
                query_index: qi as i64,
            };
            encode_frame(&msg.encode_to_vec(), &mut out);
        }
    }
    st.served.fetch_add(out.len(), Ordering::SeqCst);
    Response::builder()
        .header(
            "content-type",
            "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
        )
        .body(axum::body::Body::from(out))
        .unwrap_or_else(|e| {
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        })
}

/// `GET /api/v1/query` (promfed's health probe): `query=1` as Prometheus
/// answers it.
async fn probe(State(st): State<Arc<Standin>>) -> Response {
    const BODY: &str = r#"{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}"#;
    st.served.fetch_add(BODY.len(), Ordering::SeqCst);
    ([("content-type", "application/json")], BODY).into_response()
}

/// A stand-in on a loopback port, stopped on drop.
struct Backend {
    addr: SocketAddr,
    state: Arc<Standin>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start(i: usize, stall: Option<Duration>) -> Backend {
        let state = Arc::new(Standin {
            series: data_of(i),
            stall,
            reads: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            not_streamed: AtomicBool::new(false),
        });
        let app = axum::Router::new()
            .route("/api/v1/read", axum::routing::post(read))
            .route("/api/v1/query", axum::routing::get(probe).post(probe))
            .with_state(state.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Backend { addr, state, task }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cluster(i: usize) -> String {
    format!("c{i:03}")
}

/// promfed's config over `backends`, each with deadline `timeout`.
fn config(backends: &[Backend], timeout: &str, extra: &str) -> String {
    let mut cfg = format!("{extra}probe_interval: 1h\nbackends:\n");
    for (i, b) in backends.iter().enumerate() {
        cfg.push_str(&format!(
            "  - name: {c}\n    url: http://{a}\n    timeout: {timeout}\n    external_labels: {{cluster: {c}}}\n",
            c = cluster(i),
            a = b.addr
        ));
    }
    cfg
}

/// The plain reference: `sum by (cluster) (fan_requests_total)` at `at_ms`
/// from the data the backends `live` hold (the newest sample at or before
/// `at_ms` within the 5 m lookback, per series).
fn expected(live: impl Iterator<Item = usize>, at_ms: i64) -> BTreeMap<String, f64> {
    live.map(|i| {
        let sum: f64 = data_of(i)
            .iter()
            .filter_map(|s| {
                s.samples
                    .iter()
                    .rev()
                    .find(|x| x.t <= at_ms && x.t > at_ms - 300_000)
                    .map(|x| x.v)
            })
            .sum();
        (cluster(i), sum)
    })
    .collect()
}

/// Open file descriptors and threads of `pid`.
fn fds_threads(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    (fds, threads)
}

/// The most fds and threads of `pid` seen while `run` runs (polled every
/// 2 ms on a thread of its own).
async fn peak_while<T>(pid: u32, run: impl std::future::Future<Output = T>) -> (T, usize, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut fds, mut threads) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let (f, t) = fds_threads(pid);
                fds = fds.max(f);
                threads = threads.max(t);
                std::thread::sleep(Duration::from_millis(2));
            }
            (fds, threads)
        })
    };
    let out = run.await;
    stop.store(true, Ordering::SeqCst);
    let (fds, threads) = poller.join().expect("poller");
    (out, fds, threads)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client")
}

/// The query's time: 10 s after the last sample.
const AT_MS: i64 = T0 + (POINTS - 1) * STEP_MS + 10_000;
const QUERY: &str = "sum by (cluster) (fan_requests_total)";

/// `(status, per-cluster values, warnings)` of the query.
async fn ask(p: &Promfed) -> (u16, BTreeMap<String, f64>, Vec<String>, serde_json::Value) {
    let r = client()
        .post(p.url("/api/v1/query"))
        .form(&[
            ("query", QUERY),
            ("time", &format!("{}", AT_MS as f64 / 1000.0)),
        ])
        .send()
        .await
        .expect("send");
    let (status, body) = json(r).await;
    let got = body["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    let c = s["metric"]["cluster"].as_str()?.to_string();
                    let v: f64 = s["value"][1].as_str()?.parse().ok()?;
                    Some((c, v))
                })
                .collect()
        })
        .unwrap_or_default();
    let warnings = body["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (status, got, warnings, body)
}

/// `promfed_backend_bytes_received_total` from promfed's `/metrics`.
async fn bytes_received(p: &Promfed) -> u64 {
    let text = client()
        .get(p.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|l| l.strip_prefix("promfed_backend_bytes_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no promfed_backend_bytes_received_total in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_over_a_hundred_backends_is_exact_with_bounded_fds_and_threads() {
    let mut backends = Vec::new();
    for i in 0..N {
        backends.push(Backend::start(i, None).await);
    }
    let p = Promfed::start("scale-fanout", &config(&backends, "10s", ""));
    let pid = p.child.id();
    // Settle: the first health probes (one per backend) run at startup.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_fds, idle_threads) = fds_threads(pid);
    let ((status, got, warnings, body), fds, threads) = peak_while(pid, ask(&p)).await;
    assert_eq!(status, 200, "{body}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let want = expected(0..N, AT_MS);
    assert_eq!(
        got, want,
        "promfed's per-cluster sums against the reference"
    );
    for b in &backends {
        assert_eq!(
            b.state.reads.load(Ordering::SeqCst),
            1,
            "one read per backend"
        );
        assert!(!b.state.not_streamed.load(Ordering::SeqCst));
    }
    eprintln!(
        "idle: {idle_fds} fds, {idle_threads} threads; peak during the query: {fds} fds, {threads} threads"
    );
    // promfed counts every byte the backends sent it.
    let served: usize = backends
        .iter()
        .map(|b| b.state.served.load(Ordering::SeqCst))
        .sum();
    assert_eq!(bytes_received(&p).await, served as u64);
    // One connection per backend for the query's one batched read, plus
    // at most one kept from the startup probe: 2N over what promfed holds
    // idle without backend connections (listener, logs, epoll, ...).
    assert!(fds <= 2 * N + 40, "{fds} fds open for {N} backends");
    // No thread per backend: the worker pool, the connection threads and
    // one blocking evaluation thread, whatever N is.
    assert!(
        threads <= idle_threads + 4,
        "{threads} threads (idle {idle_threads})"
    );
    assert!(threads <= 16, "{threads} threads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tenth_does_not_hold_up_the_other_ninety_past_their_deadline() {
    let stalled = |i: usize| i % 10 == 7;
    let mut backends = Vec::new();
    for i in 0..N {
        let stall = stalled(i).then_some(Duration::from_secs(60));
        backends.push(Backend::start(i, stall).await);
    }
    let deadline = Duration::from_secs(2);
    let p = Promfed::start(
        "scale-stall",
        &config(&backends, "2s", "partial_response: warn\n"),
    );
    let pid = p.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let ((status, got, warnings, body), fds, threads) = peak_while(pid, ask(&p)).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    let want = expected((0..N).filter(|&i| !stalled(i)), AT_MS);
    assert_eq!(
        got, want,
        "the 90 answering backends' sums against the reference"
    );
    for i in (0..N).filter(|&i| stalled(i)) {
        let name = format!("backend {}", cluster(i));
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&name) && w.contains("partial response")),
            "{name} named in the warnings: {warnings:?}"
        );
    }
    assert_eq!(warnings.len(), 10, "{warnings:?}");
    eprintln!("answered in {took:?}: {fds} fds, {threads} threads at peak");
    assert!(
        took >= deadline && took < deadline + Duration::from_millis(1500),
        "answered after {took:?}; the stalled backends' deadline is {deadline:?}"
    );
    // promfed is still answering at once, the stalled reads given up.
    let again = Instant::now();
    let r = client().get(p.url("/-/ready")).send().await.expect("ready");
    assert_eq!(r.status().as_u16(), 200);
    assert!(again.elapsed() < Duration::from_secs(1));
}
