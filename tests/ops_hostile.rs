//! Hostile input: garbage, truncated, huge and slow backend answers give
//! clear errors within the deadline; queries of death are refused or
//! bounded; the server keeps answering throughout.

mod ops_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ops_support::{client, http_answer, json, Promfed, RawBackend, Respond};
use promfed::source::prometheus::PrometheusHttpSource;
use promfed::source::remote_read::frame::encode_frame;
use promfed::source::remote_read::RemoteReadSource;
use promfed::source::{Select, Source, SourceError};
use promql_parser::label::{MatchOp, Matcher};

const STREAMED: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

fn answer(delay_ms: u64, bytes: Vec<u8>) -> Respond {
    Arc::new(move |_: &str| (Duration::from_millis(delay_ms), bytes.clone()))
}

/// Answers that no decoder may accept, by name.
fn hostile_http_answers() -> Vec<(&'static str, Respond)> {
    let mut truncated = http_answer(
        200,
        "application/json",
        br#"{"status":"success","data":["a","b"]}"#,
    );
    truncated.truncate(truncated.len() - 12);
    // Claims 10 MB, sends 30 bytes, then closes.
    let mut short =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n"
            .to_vec();
    short.extend_from_slice(br#"{"status":"success","data":["#);
    let mut huge_garbage = vec![b'['; 8 << 20];
    huge_garbage.extend_from_slice(b"]");
    vec![
        (
            "garbage",
            answer(
                0,
                http_answer(200, "application/json", b"\x00\xff\xfe not json at all"),
            ),
        ),
        ("not-http", answer(0, b"SSH-2.0-OpenSSH_9.2\r\n".to_vec())),
        ("truncated", answer(0, truncated)),
        ("short-body", answer(0, short)),
        (
            "huge-garbage",
            answer(0, http_answer(200, "application/json", &huge_garbage)),
        ),
        (
            "html-500",
            answer(
                0,
                http_answer(
                    500,
                    "text/html",
                    b"<html><body>Internal Server Error</body></html>",
                ),
            ),
        ),
        (
            "wrong-shape",
            answer(
                0,
                http_answer(
                    200,
                    "application/json",
                    br#"{"status":"success","data":{"resultType":"vector","result":7}}"#,
                ),
            ),
        ),
        (
            "slow",
            answer(
                30_000,
                http_answer(
                    200,
                    "application/json",
                    br#"{"status":"success","data":[]}"#,
                ),
            ),
        ),
    ]
}

#[tokio::test]
async fn hostile_backends_give_clear_errors_within_the_deadline_and_the_server_keeps_answering() {
    let mut backends = Vec::new();
    for (name, respond) in hostile_http_answers() {
        backends.push((name, RawBackend::start(respond).await));
    }
    let mut cfg = String::from("backends:\n");
    for (name, b) in &backends {
        cfg.push_str(&format!(
            "  - name: {name}\n    url: {}\n    external_labels: {{cluster: {name}}}\n    timeout: 1s\n",
            b.url()
        ));
    }
    let p = Promfed::start("hostile", &cfg);
    let c = client();
    for (name, _) in &backends {
        // Only this backend is asked (routed by its external label).
        for path in [
            "/api/v1/labels",
            "/api/v1/series",
            "/api/v1/label/job/values",
        ] {
            let started = Instant::now();
            let r = c
                .get(p.url(path))
                .query(&[("match[]", format!("up{{cluster=\"{name}\"}}"))])
                .send()
                .await
                .expect("promfed answers");
            let took = started.elapsed();
            let (status, body) = json(r).await;
            assert!(
                took < Duration::from_secs(3),
                "{name} {path}: took {took:?}"
            );
            assert!(
                status == 422 || status == 503 || status == 500,
                "{name} {path}: {status} {body}"
            );
            assert_eq!(body["status"], "error", "{name} {path}: {body}");
            let msg = body["error"].as_str().unwrap_or_default();
            assert!(
                msg.contains(name),
                "{name} {path}: the error must name the backend: {msg}"
            );
            assert!(
                msg.len() < 2048,
                "{name} {path}: error too long ({} bytes)",
                msg.len()
            );
        }
        let r = c.get(p.url("/-/healthy")).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 200, "after {name}");
    }
    // Asked together under the warn policy: an answer with every backend
    // named in warnings, within one backend deadline.
    let started = Instant::now();
    let r = c
        .get(p.url("/api/v1/labels"))
        .query(&[("partial_response", "true")])
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let warnings = body["warnings"].to_string();
    for (name, _) in &backends {
        assert!(warnings.contains(name), "{name} missing from {warnings}");
    }
}

fn select() -> Select {
    Select {
        matchers: vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
        start_ms: 0,
        end_ms: 3_600_000,
        hints: Default::default(),
        read: Default::default(),
    }
}

fn remote_read(b: &RawBackend) -> RemoteReadSource {
    RemoteReadSource::new(
        "rr",
        &b.url(),
        Duration::from_secs(1),
        promfed::source::http::BackendHttp::plain(),
    )
}

/// A streamed body whose chunks trickle in forever.
fn trickle() -> Respond {
    Arc::new(|_: &str| {
        let mut head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {STREAMED}\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        head.extend_from_slice(b"1\r\n\x05\r\n");
        (Duration::ZERO, head)
    })
}

#[tokio::test]
async fn remote_read_rejects_hostile_bodies_within_the_deadline() {
    let frame = |data: &[u8]| {
        let mut out = Vec::new();
        encode_frame(data, &mut out);
        out
    };
    let mut bad_crc = frame(b"\x0a\x03abc");
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let mut truncated = frame(&[7u8; 100]);
    truncated.truncate(50);
    // A frame header announcing 2^40 bytes.
    let huge_frame = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 0, 0, 0];
    // A SAMPLES body whose snappy header claims 4 GiB.
    let snappy_bomb = vec![0x80, 0x80, 0x80, 0x80, 0x10, 0x00];
    let cases: Vec<(&str, Respond)> = vec![
        ("bad-crc", answer(0, http_answer(200, STREAMED, &bad_crc))),
        (
            "truncated-frame",
            answer(0, http_answer(200, STREAMED, &truncated)),
        ),
        (
            "huge-frame",
            answer(0, http_answer(200, STREAMED, &huge_frame)),
        ),
        (
            "garbage-message",
            answer(0, http_answer(200, STREAMED, &frame(b"\xff\xff\xff\xff"))),
        ),
        (
            "snappy-bomb",
            answer(0, http_answer(200, "application/x-protobuf", &snappy_bomb)),
        ),
        (
            "garbage-snappy",
            answer(
                0,
                http_answer(200, "application/x-protobuf", b"\xff\x00garbage"),
            ),
        ),
        (
            "wrong-type",
            answer(0, http_answer(200, "text/plain", b"hello")),
        ),
        ("slow", answer(30_000, http_answer(200, STREAMED, &[]))),
        ("trickle", trickle()),
    ];
    for (name, respond) in cases {
        let b = RawBackend::start(respond).await;
        let started = Instant::now();
        let r = remote_read(&b).select(&select()).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{name}: took {took:?}");
        match r {
            Ok(out) => panic!("{name}: accepted {} series", out.series.len()),
            Err(e @ (SourceError::Backend { .. } | SourceError::Timeout { .. })) => {
                assert!(e.to_string().contains("rr"), "{name}: {e}");
            }
            Err(e) => panic!("{name}: unexpected error kind {e:?}"),
        }
    }
}

#[tokio::test]
async fn query_api_source_rejects_hostile_bodies_within_the_deadline() {
    for (name, respond) in hostile_http_answers() {
        let b = RawBackend::start(respond).await;
        let src = PrometheusHttpSource::new(
            "qa",
            &b.url(),
            promfed::source::http::BackendHttp::plain(),
            Duration::from_secs(1),
        );
        let started = Instant::now();
        let r = src.select(&select()).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{name}: took {took:?}");
        let e = r.expect_err(name);
        assert!(e.to_string().contains("qa"), "{name}: {e}");
    }
}

#[tokio::test]
async fn queries_of_death_are_refused_or_bounded() {
    let p = Promfed::start(
        "qod",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\n    timeout: 1s\n",
    );
    let c = client();
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let c = c.clone();
        let url = p.url(path);
        async move {
            let started = Instant::now();
            let r = c.post(url).form(&form).send().await.expect("send");
            (started.elapsed(), json(r).await)
        }
    };
    // Huge range, tiny step.
    let (took, (status, body)) = post(
        "/api/v1/query_range",
        vec![
            ("query", "up".into()),
            ("start", "0".into()),
            ("end", "4000000000".into()),
            ("step", "0.001".into()),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("11,000 points"));
    assert!(took < Duration::from_secs(2));
    // A giant regex: over the query length limit.
    let giant = format!("up{{job=~\"{}\"}}", "(a|b)*".repeat(40_000));
    let (_, (status, body)) = post("/api/v1/query", vec![("query", giant)]).await;
    assert_eq!(status, 400, "{body}");
    // Deep nesting, on every endpoint that parses a query: refused, and the
    // process survives it.
    let deep = format!("{}1{}", "(".repeat(50_000), ")".repeat(50_000));
    for path in [
        "/api/v1/query",
        "/api/v1/format_query",
        "/api/v1/parse_query",
    ] {
        let (took, (status, body)) = post(path, vec![("query", deep.clone())]).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{path}: {body}");
        assert!(took < Duration::from_secs(5), "{path}: {took:?}");
    }
    // Durations whose seconds overflow make promql-parser 0.11 panic; they
    // are bad_data on every endpoint that parses, the query cache's key
    // included.
    for (path, param, text) in [
        ("/api/v1/query", "query", "Z[5e1000011]"),
        ("/api/v1/query", "query", "rate(x[1e400])"),
        ("/api/v1/format_query", "query", "x offset 1e400"),
        ("/api/v1/parse_query", "query", "x[5m:1e400]"),
        ("/api/v1/series", "match[]", "x offset 1e400"),
    ] {
        let (_, (status, body)) = post(path, vec![(param, text.to_string())]).await;
        assert_eq!(status, 400, "{path} {text}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{path} {text}: {body}");
    }
    let deep_selector = format!("{}up{}", "sum(".repeat(20_000), ")".repeat(20_000));
    let (_, (status, _)) = post("/api/v1/series", vec![("match[]", deep_selector)]).await;
    assert_eq!(status, 400);
    // Still answering.
    let r = c.get(p.url("/-/healthy")).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let (_, (status, body)) = post(
        "/api/v1/format_query",
        vec![("query", "sum(rate(x[5m]))".into())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn cpu_heavy_queries_end_at_their_deadline_and_the_server_keeps_answering() {
    let p = Promfed::start(
        "cpu",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\n    timeout: 1s\nlimits: {query_timeout: 2s}\n",
    );
    let heavy = {
        let url = p.url("/api/v1/query_range");
        tokio::spawn(async move {
            let started = Instant::now();
            let r = client()
                .post(url)
                .form(&[
                    ("query", "max_over_time(vector(1)[1d:1s])"),
                    ("start", "0"),
                    ("end", "10999"),
                    ("step", "1"),
                ])
                .send()
                .await
                .expect("send");
            (started.elapsed(), json(r).await)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = client()
        .get(p.url("/-/healthy"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (took, (status, body)) = heavy.await.expect("join");
    ops_support::assert_error(status, &body, 503, "timeout", "timed out");
    assert!(
        took < Duration::from_millis(3500),
        "answered after {took:?}"
    );
    // A subquery far past the sample budget is refused outright.
    let started = Instant::now();
    let r = client()
        .post(p.url("/api/v1/query"))
        .form(&[
            ("query", "count_over_time(vector(1)[1000d:1s])"),
            ("time", "1e9"),
        ])
        .send()
        .await
        .expect("send");
    let (status, body) = json(r).await;
    ops_support::assert_error(status, &body, 422, "execution", "too many samples");
    assert!(started.elapsed() < Duration::from_secs(2));
}
