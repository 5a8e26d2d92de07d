//! promfed as a Thanos StoreAPI server (`grpc_listen`), with real Thanos:
//! a real `thanos query` whose only endpoint is promfed (over Prometheus
//! 3.8 clusters by remote read, k8s-2 an HA pair with a hole), promfed
//! over promfed, and `thanos query` over promfed and a sidecar at once
//! all answer the differential query set as the union Prometheus 3.8
//! does. Plus the limits and the deadline of a `Series` call, seen by a
//! gRPC client.
//!
//! Peers from `scripts/peers` (Prometheus 3.8, Thanos v0.42.4); run with
//! `PROMFED_PEERS_DIR=... cargo test --test storeapi_server`.

mod common;
mod thanos_support;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::compare::assert_same;
use common::differential::{queries, range_queries};
use common::{query, query_range, HarnessError, Promfed};
use promfed::source::thanos_store::storepb::{self, series_response::Result as Frame};
use thanos_support::{sidecars, store_backend, Sidecars, ThanosProc, HOLE_SECS};

type R = Result<(), HarnessError>;

/// The remote-read backends of the Prometheus servers called `names`,
/// each with the external labels its own config carries.
fn remote_read_backends(h: &Sidecars, names: &[&str]) -> String {
    let mut y = String::new();
    for n in names {
        let labels = match *n {
            "k8s-1" => "{cluster: k8s-1}",
            "k8s-2-a" => "{cluster: k8s-2, replica: a}",
            "k8s-2-b" => "{cluster: k8s-2, replica: b}",
            other => panic!("no cluster {other}"),
        };
        y.push_str(&format!(
            "  - name: {n}\n    url: {}\n    timeout: 20s\n    external_labels: {labels}\n",
            h.prom(n).url
        ));
    }
    y
}

fn start_promfed(cfg: &str) -> Promfed {
    match Promfed::start(cfg) {
        Ok(mut p) => {
            p.stop_on_exit();
            p
        }
        Err(e) => panic!("promfed could not start: {e}\n{cfg}"),
    }
}

/// A promfed serving the StoreAPI over the Prometheus servers `names`.
fn store_promfed(h: &Sidecars, names: &[&str], extra: &str) -> Promfed {
    let cfg = format!(
        "listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nreplica_labels: [replica]\n{extra}backends:\n{}",
        remote_read_backends(h, names)
    );
    start_promfed(&cfg)
}

fn grpc_of(p: &Promfed) -> SocketAddr {
    match p.grpc_addr() {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

/// The lower promfed: every cluster (k8s-1, k8s-2's two replicas).
fn lower() -> &'static Promfed {
    static P: OnceLock<Promfed> = OnceLock::new();
    P.get_or_init(|| store_promfed(sidecars(), &["k8s-1", "k8s-2-a", "k8s-2-b"], ""))
}

/// `thanos query --query.replica-label=replica` over `endpoints`, once it
/// has taken all of them in (their Info answered).
async fn thanos_query(name: &str, endpoints: &[SocketAddr]) -> ThanosProc {
    let h = sidecars();
    let mut args = vec!["query".to_string(), "--query.replica-label=replica".into()];
    args.extend(endpoints.iter().map(|e| format!("--endpoint={e}")));
    let mut q = match ThanosProc::start(name, &args, h.dir.path()) {
        Ok(q) => q,
        Err(e) => panic!("thanos query {name}: {e}"),
    };
    q.stop_on_exit();
    let t0 = Instant::now();
    loop {
        let up = stores_up(&q).await;
        if up == endpoints.len() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "thanos query {name}: {up} of {} endpoints up after 60 s; log {}",
            endpoints.len(),
            q.log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    q
}

/// How many of Thanos Query's stores answer (no `lastError`).
async fn stores_up(q: &ThanosProc) -> usize {
    let Ok((200, body)) = common::client::get_text(&q.http_url, "/api/v1/stores").await else {
        return 0;
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]
        .as_object()
        .map(|groups| {
            groups
                .values()
                .filter_map(|g| g.as_array())
                .flatten()
                .filter(|s| s["lastError"].is_null())
                .count()
        })
        .unwrap_or(0)
}

/// Instant-query times: each rollout step's middle, inside and around
/// replica b's hole, the counter reset.
fn times(h: &Sidecars) -> Vec<f64> {
    let s = &h.schedule;
    let mut ts: Vec<f64> = s.steps.iter().map(|x| x.mid()).collect();
    ts.push(s.counter_reset.at as f64 + 7.5);
    let s0 = s.start as f64;
    ts.extend([
        s0 + HOLE_SECS.0 as f64 + 3.3,
        s0 + HOLE_SECS.0 as f64 + 301.0,
        s0 + HOLE_SECS.1 as f64 + 45.0,
    ]);
    ts
}

/// `data.result` with its entries in a fixed order, as text (values are
/// strings, so equal text is equal numbers, NaN included).
fn result_text(r: &common::ApiResponse) -> (Option<String>, Vec<String>) {
    let mut items: Vec<String> = match r.result().as_array() {
        Some(a) => a.iter().map(ToString::to_string).collect(),
        None => vec![r.result().to_string()],
    };
    items.sort();
    (r.result_type().map(str::to_string), items)
}

/// Every query of the differential set, instant and range, through `url`
/// equals the union's answer. With `thanos_anchor` (Thanos Query over the
/// sidecars of the same data), an answer may instead equal that anchor
/// where it differs from the union: Thanos's own engine and dedup answer
/// a few queries otherwise than Prometheus 3.8 (its counter-aware dedup
/// turns `resets` to 0, for one). Returns how many answers took the
/// anchor.
async fn differential_set_matches_the_union(
    url: &str,
    what: &str,
    thanos_anchor: Option<&str>,
) -> Result<usize, HarnessError> {
    let h = sidecars();
    let mut with_data = 0;
    let mut anchored = 0;
    let mut check = |name: String,
                     got: common::ApiResponse,
                     want: common::ApiResponse,
                     anchor: Option<common::ApiResponse>| {
        let as_anchor = anchor.is_some_and(|a| {
            a.is_success()
                && got.is_success()
                && result_text(&got) != result_text(&want)
                && result_text(&a) != result_text(&want)
                && result_text(&got) == result_text(&a)
        });
        if as_anchor {
            anchored += 1;
            return true;
        }
        assert_same(&name, &got, &want)
    };
    for t in times(h) {
        for q in queries() {
            let got = query(url, q, t).await?;
            let want = query(&h.union.url, q, t).await?;
            let anchor = match thanos_anchor {
                Some(a) => Some(query(a, q, t).await?),
                None => None,
            };
            if check(format!("{what}: {q} at {t}"), got, want, anchor) {
                with_data += 1;
            }
        }
    }
    let end = h.schedule.start as f64 + HOLE_SECS.1 as f64 + 300.0;
    for (q, range, step) in range_queries() {
        let got = query_range(url, q, end - range, end, step).await?;
        let want = query_range(&h.union.url, q, end - range, end, step).await?;
        let anchor = match thanos_anchor {
            Some(a) => Some(query_range(a, q, end - range, end, step).await?),
            None => None,
        };
        assert!(
            check(format!("{what}: range {q}"), got, want, anchor),
            "{what}: range {q}: no data"
        );
    }
    // Most instant queries have data (a few are empty by design, e.g. absent()).
    let total = times(h).len() * queries().len();
    assert!(
        with_data > total / 2,
        "{what}: {with_data} of {total} answers with data"
    );
    // The anchor is for the few queries where the engines differ.
    assert!(
        anchored * 10 < total,
        "{what}: {anchored} of {total} answers differ from the union"
    );
    Ok(anchored)
}

#[tokio::test]
async fn thanos_query_over_promfed_alone_answers_as_the_union() -> R {
    let p = lower();
    let q = thanos_query("query-over-promfed", &[grpc_of(p)]).await;
    let h = sidecars();
    let anchored = differential_set_matches_the_union(
        &q.http_url,
        "thanos query over promfed",
        Some(&h.query.http_url),
    )
    .await?;
    eprintln!("thanos query over promfed: {anchored} answers as Thanos over sidecars, the rest as the union");
    // Thanos Query sees one store, the query-like promfed, with the
    // backends' external labels.
    let (_, stores) = common::client::get_text(&q.http_url, "/api/v1/stores").await?;
    let v: serde_json::Value = serde_json::from_str(&stores).unwrap_or_default();
    let listed = v["data"]["query"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 1, "{stores}");
    let sets = listed[0]["labelSets"].to_string();
    for l in ["k8s-1", "k8s-2"] {
        assert!(sets.contains(l), "{sets}");
    }
    Ok(())
}

#[tokio::test]
async fn promfed_over_promfed_answers_as_the_union() -> R {
    let lower = lower();
    let cfg = format!(
        "listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n{}",
        store_backend(
            "regional",
            &format!("grpc://{}", grpc_of(lower)),
            &[],
            "20s"
        )
    );
    let upper = start_promfed(&cfg);
    differential_set_matches_the_union(&upper.url, "promfed over promfed", None).await?;
    Ok(())
}

#[tokio::test]
async fn thanos_query_over_promfed_and_a_sidecar_answers_as_the_union() -> R {
    let h = sidecars();
    // promfed holds k8s-2 (its HA pair); k8s-1 comes from its sidecar.
    let p = store_promfed(h, &["k8s-2-a", "k8s-2-b"], "");
    let q = thanos_query(
        "query-over-promfed-and-sidecar",
        &[grpc_of(&p), h.sidecar("k8s-1").grpc],
    )
    .await;
    let anchored = differential_set_matches_the_union(
        &q.http_url,
        "thanos query over promfed + sidecar",
        Some(&h.query.http_url),
    )
    .await?;
    eprintln!("thanos query over promfed + sidecar: {anchored} answers as Thanos over sidecars, the rest as the union");
    Ok(())
}

/// A gRPC client of promfed's StoreAPI.
async fn client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect().await,
        Err(e) => panic!("endpoint: {e}"),
    };
    match channel {
        Ok(c) => tonic::client::Grpc::new(c),
        Err(e) => panic!("connecting to {addr}: {e}"),
    }
}

/// Calls `Series`, returning the frames received and how the stream ended.
async fn series_call(
    addr: SocketAddr,
    req: storepb::SeriesRequest,
) -> (Vec<storepb::SeriesResponse>, Result<(), tonic::Status>) {
    let mut grpc = client(addr).await;
    if let Err(e) = grpc.ready().await {
        panic!("not ready: {e}");
    }
    let codec =
        tonic_prost::ProstCodec::<storepb::SeriesRequest, storepb::SeriesResponse>::default();
    let r = tonic::Request::new(req);
    let path = http::uri::PathAndQuery::from_static("/thanos.Store/Series");
    let mut stream = match grpc.server_streaming(r, path, codec).await {
        Ok(s) => s.into_inner(),
        Err(s) => return (Vec::new(), Err(s)),
    };
    let mut frames = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, Ok(())),
            Err(s) => return (frames, Err(s)),
        }
    }
}

fn every_istio_series(h: &Sidecars, batch: i64) -> storepb::SeriesRequest {
    storepb::SeriesRequest {
        min_time: h.schedule.start * 1000,
        max_time: h.schedule.end * 1000,
        matchers: vec![storepb::LabelMatcher {
            r#type: storepb::MatcherType::Eq.into(),
            name: "__name__".into(),
            value: "istio_requests_total".into(),
        }],
        aggregates: vec![storepb::Aggr::Raw.into()],
        response_batch_size: batch,
        ..Default::default()
    }
}

fn series_in(frames: &[storepb::SeriesResponse]) -> Vec<&storepb::Series> {
    frames
        .iter()
        .flat_map(|f| match &f.result {
            Some(Frame::Series(s)) => vec![s],
            Some(Frame::Batch(b)) => b.series.iter().collect(),
            _ => vec![],
        })
        .collect()
}

#[tokio::test]
async fn series_streams_chunks_of_at_most_120_samples_in_batches() -> R {
    let h = sidecars();
    let addr = grpc_of(lower());
    let (frames, end) = series_call(addr, every_istio_series(h, 7)).await;
    assert!(end.is_ok(), "{end:?}");
    let series = series_in(&frames);
    assert!(series.len() > 20, "{} series", series.len());
    // Batches of 7 (the last may be smaller).
    for f in &frames {
        if let Some(Frame::Batch(b)) = &f.result {
            assert!(!b.series.is_empty() && b.series.len() <= 7);
        }
    }
    // Deduplicated on request: ask for the replica label to go.
    let mut req = every_istio_series(h, 1);
    req.without_replica_labels = vec!["replica".into()];
    let (frames, end) = series_call(addr, req).await;
    assert!(end.is_ok(), "{end:?}");
    let series = series_in(&frames);
    let mut prev: Option<Vec<(String, String)>> = None;
    for s in &series {
        assert!(s.labels.iter().all(|l| l.name != "replica"));
        let labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        if let Some(p) = &prev {
            assert!(
                p < &labels,
                "series out of order or repeated: {p:?} then {labels:?}"
            );
        }
        prev = Some(labels);
        for c in &s.chunks {
            let raw = c.raw.as_ref().expect("raw chunk");
            let n = u16::from_be_bytes([raw.data[0], raw.data[1]]);
            assert!((1..=120).contains(&n), "{n} samples in a chunk");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_limit_hit_mid_stream_ends_it_with_a_clear_status() -> R {
    let h = sidecars();
    let p = store_promfed(
        h,
        &["k8s-1", "k8s-2-a", "k8s-2-b"],
        "limits:\n  max_response_bytes: 60000\n",
    );
    let (frames, end) = series_call(grpc_of(&p), every_istio_series(h, 1)).await;
    let status = end.expect_err("the answer is larger than 60000 bytes");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("limits.max_response_bytes"),
        "{}",
        status.message()
    );
    // Mid-stream: some series came before the cut.
    assert!(
        !series_in(&frames).is_empty(),
        "nothing was sent before the cut"
    );

    // The sample limit ends the call before anything is sent.
    let p = store_promfed(h, &["k8s-1"], "limits:\n  max_samples: 1000\n");
    let (frames, end) = series_call(grpc_of(&p), every_istio_series(h, 1)).await;
    let status = end.expect_err("more than 1000 samples");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("too many samples"),
        "{}",
        status.message()
    );
    assert!(series_in(&frames).is_empty());
    Ok(())
}

/// Calls `Series` over a bare HTTP/2 connection with a `grpc-timeout`
/// header (a client that never gives up by itself): the gRPC status and
/// message that end the call, and how long it took.
async fn raw_series(
    addr: SocketAddr,
    req: &storepb::SeriesRequest,
    grpc_timeout: &str,
) -> (Option<String>, String, Duration) {
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
        .header("grpc-timeout", grpc_timeout)
        .body(())
        .unwrap_or_else(|e| panic!("request head: {e}"));
    let t0 = Instant::now();
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
    let field =
        |h: &http::HeaderMap, k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut status = field(&parts.headers, "grpc-status");
    let mut message = field(&parts.headers, "grpc-message").unwrap_or_default();
    if status.is_none() {
        while let Some(Ok(d)) = body.data().await {
            let _ = body.flow_control().release_capacity(d.len());
        }
        if let Ok(Some(t)) = body.trailers().await {
            status = field(&t, "grpc-status");
            message = field(&t, "grpc-message").unwrap_or_default();
        }
    }
    let took = t0.elapsed();
    conn.abort();
    (status, message, took)
}

#[tokio::test]
async fn the_requests_deadline_is_honoured() -> R {
    let h = sidecars();
    // A backend that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| HarnessError::Io {
        what: "binding a silent backend".into(),
        source,
    })?;
    let silent_addr = silent.local_addr().map_err(|source| HarnessError::Io {
        what: "silent backend address".into(),
        source,
    })?;
    let cfg = format!(
        "listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nbackends:\n  - name: silent\n    url: http://{silent_addr}\n    timeout: 60s\n    external_labels: {{cluster: k8s-9}}\n"
    );
    let p = start_promfed(&cfg);
    let (status, message, took) = raw_series(grpc_of(&p), &every_istio_series(h, 1), "800m").await;
    drop(silent);
    // DEADLINE_EXCEEDED, said by promfed, soon after the 800 ms.
    assert_eq!(status.as_deref(), Some("4"), "{message}");
    assert!(message.contains("promfed"), "{message}");
    assert!(
        took >= Duration::from_millis(700),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate,
/// as PEM files in `dir`.
fn pki(dir: &std::path::Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("writing {name}: {e}"))
    };
    let key = || KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let params = |names: Vec<String>| {
        CertificateParams::new(names).unwrap_or_else(|e| panic!("certificate params: {e}"))
    };
    let ca_key = key();
    let mut ca = params(Vec::new());
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "storeapi test CA");
    let ca_cert = ca
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("CA: {e}"));
    write("ca.pem", ca_cert.pem());
    let server_key = key();
    let mut server = params(vec!["127.0.0.1".into(), "localhost".into()]);
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap_or_else(|e| panic!("server certificate: {e}"));
    write("server.pem", server_cert.pem());
    write("server.key", server_key.serialize_pem());
    let client_key = key();
    let mut client = params(Vec::new());
    client
        .distinguished_name
        .push(DnType::CommonName, "global promfed");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client
        .signed_by(&client_key, &ca_cert, &ca_key)
        .unwrap_or_else(|e| panic!("client certificate: {e}"));
    write("client.pem", client_cert.pem());
    write("client.key", client_key.serialize_pem());
}

/// A child process killed (by its pid) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A promfed serving HTTPS and the StoreAPI over mutual TLS; its process
/// and the gRPC address it printed.
fn start_tls_promfed(cfg_path: &std::path::Path) -> (Killed, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("serve")
        .arg("--config")
        .arg(cfg_path)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting promfed: {e}"));
    let out = child.stdout.take();
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Some(out) = out else { return };
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("grpc listening on ") {
                let _ = tx.send(a.trim().to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)).map(|a| a.parse()) {
        Ok(Ok(a)) => (child, a),
        other => panic!("no gRPC address from the TLS promfed: {other:?}"),
    }
}

#[tokio::test]
async fn promfed_over_promfed_over_mutual_tls() -> R {
    let h = sidecars();
    let dir = common::TempDir::new("promfed-storeapi-tls")?;
    let d = dir.path();
    pki(d);
    let p = |f: &str| d.join(f).display().to_string();
    // The lower promfed also requires a token on its HTTP API: its
    // StoreAPI is protected by the client certificates alone.
    common::write_file(&d.join("token"), "s3cret\n")?;
    let lower_cfg = format!(
        "listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nauth:\n  bearer_token_files: [{}]\ntls:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: {}\nbackends:\n{}",
        p("token"),
        p("server.pem"),
        p("server.key"),
        p("ca.pem"),
        remote_read_backends(h, &["k8s-1"])
    );
    let cfg_path = d.join("lower.yaml");
    common::write_file(&cfg_path, &lower_cfg)?;
    let (lower, grpc) = start_tls_promfed(&cfg_path);
    let upper_cfg = |client_cert: bool| {
        let mut y = format!(
            "listen: 127.0.0.1:0\nbackends:\n  - name: region\n    url: grpc://{grpc}\n    protocol: thanos_store\n    timeout: 10s\n    tls:\n      ca_file: {}\n",
            p("ca.pem")
        );
        if client_cert {
            y.push_str(&format!(
                "      cert_file: {}\n      key_file: {}\n",
                p("client.pem"),
                p("client.key")
            ));
        }
        y
    };
    let t = h.schedule.steps[2].mid();
    let q = "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))";
    let want = query(&h.union.url, q, t).await?;
    let with_cert = start_promfed(&upper_cfg(true));
    let got = query(&with_cert.url, q, t).await?;
    let without = start_promfed(&upper_cfg(false));
    let refused = query(&without.url, q, t).await?;
    drop(lower);
    // Over mutual TLS the global promfed sees k8s-1 as the union does
    // (the union also holds k8s-2: compare k8s-1's sample only).
    let k1 = |r: &common::ApiResponse| {
        r.vector()
            .into_iter()
            .find(|(l, _)| l.get("cluster").map(String::as_str) == Some("k8s-1"))
            .map(|(_, v)| v)
    };
    assert!(got.is_success(), "{}", got.body);
    assert_eq!(got.vector().len(), 1, "{}", got.body);
    let (g, w) = (k1(&got), k1(&want));
    assert!(
        matches!((g, w), (Some(a), Some(b)) if common::compare::same_value(a, b)),
        "over mutual TLS: {g:?} vs the union's {w:?}"
    );
    // Without a client certificate the handshake is refused, named.
    assert!(
        !refused.is_success(),
        "answered without a client certificate: {}",
        refused.body
    );
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("region"),
        "{}",
        refused.body
    );
    Ok(())
}
