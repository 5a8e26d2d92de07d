use super::super::remote_read::chunk::tests::encode_xor;
use super::*;
use crate::model::Sample;
use promql_parser::label::{MatchOp, Matcher};
use prost::Message;
use storepb::{ChunkEncoding, MatcherType, PartialResponseStrategy};

fn sel(matchers: Vec<Matcher>, start_ms: i64, end_ms: i64) -> Select {
    Select {
        matchers,
        start_ms,
        end_ms,
        hints: Default::default(),
        read: Default::default(),
    }
}

fn label(name: &str, value: &str) -> storepb::Label {
    storepb::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn samples(ts: impl IntoIterator<Item = i64>) -> Vec<Sample> {
    ts.into_iter().map(|t| Sample { t, v: t as f64 }).collect()
}

fn chunk(kind: ChunkEncoding, s: &[Sample]) -> storepb::AggrChunk {
    storepb::AggrChunk {
        min_time: s.first().map_or(0, |x| x.t),
        max_time: s.last().map_or(0, |x| x.t),
        raw: Some(storepb::Chunk {
            r#type: kind.into(),
            data: encode_xor(s).into(),
        }),
    }
}

#[test]
fn wire_layout_matches_the_store_api_field_numbers() {
    // Chunk: type=1 varint, data=2 bytes; XOR is 0 (omitted), HISTOGRAM 1.
    let c = storepb::Chunk {
        r#type: ChunkEncoding::Histogram.into(),
        data: bytes::Bytes::from_static(b"z"),
    };
    assert_eq!(c.encode_to_vec(), b"\x08\x01\x12\x01z");
    // SeriesRequest: min_time=1, max_time=2, matchers=3, skip_chunks=8,
    // without_replica_labels=14, response_batch_size=16.
    let r = storepb::SeriesRequest {
        min_time: 1,
        max_time: 2,
        matchers: vec![storepb::LabelMatcher {
            r#type: MatcherType::Nre.into(),
            name: "a".into(),
            value: "b".into(),
        }],
        partial_response_strategy: PartialResponseStrategy::Abort.into(),
        skip_chunks: true,
        without_replica_labels: vec!["r".into()],
        response_batch_size: 3,
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        b"\x08\x01\x10\x02\x1a\x08\x08\x03\x12\x01a\x1a\x01b\x38\x01\x40\x01\x72\x01r\x80\x01\x03"
    );
    // SeriesResponse oneof: warning=2, batch=4.
    let w = storepb::SeriesResponse {
        result: Some(Frame::Warning("w".into())),
    };
    assert_eq!(w.encode_to_vec(), b"\x12\x01w");
    let b = storepb::SeriesResponse {
        result: Some(Frame::Batch(storepb::SeriesBatch { series: vec![] })),
    };
    assert_eq!(b.encode_to_vec(), b"\x22\x00");
    // InfoResponse: label_sets=1, ComponentType=2, store=3 {min=1, max=2,
    // supports_without_replica_labels=5}.
    let i = storepb::InfoResponse {
        label_sets: vec![storepb::LabelSet {
            labels: vec![label("c", "1")],
        }],
        component_type: "sidecar".into(),
        store: Some(storepb::StoreInfo {
            min_time: 5,
            max_time: 6,
            supports_sharding: false,
            supports_without_replica_labels: true,
        }),
    };
    let bytes = i.encode_to_vec();
    assert_eq!(
        bytes,
        b"\x0a\x08\x0a\x06\x0a\x01c\x12\x011\x12\x07sidecar\x1a\x06\x08\x05\x10\x06\x28\x01"
    );
    let info = store_info_of(storepb::InfoResponse::decode(bytes.as_slice()).expect("decodes"));
    assert_eq!(info.component, "sidecar");
    assert_eq!(info.label_sets, vec![Labels::from_pairs([("c", "1")])]);
    assert_eq!((info.min_time_ms, info.max_time_ms), (5, 6));
    assert!(info.supports_without_replica_labels);
}

#[test]
fn series_request_carries_matchers_range_hints_and_policy() {
    let mut s = sel(
        vec![
            Matcher::new(MatchOp::Equal, "__name__", "up"),
            Matcher::new(
                MatchOp::Re(regex::Regex::new("^(?:a|b)$").expect("regex")),
                "job",
                "a|b",
            ),
        ],
        1000,
        2000,
    );
    s.hints.step_ms = 15_000;
    s.hints.range_ms = 300_000;
    s.hints.func = Some("rate".into());
    let r = series_request(&s);
    assert_eq!((r.min_time, r.max_time), (1000, 2000));
    let ms: Vec<(i32, &str, &str)> = r
        .matchers
        .iter()
        .map(|m| (m.r#type, m.name.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(ms, vec![(0, "__name__", "up"), (2, "job", "a|b")]);
    assert_eq!((r.step, r.range), (15_000, 300_000));
    let h = r.query_hints.expect("hints");
    assert_eq!(h.func.map(|f| f.name), Some("rate".to_string()));
    assert_eq!(h.range.map(|r| r.millis), Some(300_000));
    assert!(!r.skip_chunks);
    assert!(r.without_replica_labels.is_empty());
    // Abort unless the request tolerates partial answers.
    assert_eq!(r.partial_response_strategy, 1);
    s.read.partial_response = Some(true);
    assert_eq!(series_request(&s).partial_response_strategy, 0);
    // No matcher at all, or none on the name: every series with a name.
    let r = series_request(&sel(vec![], 0, 1));
    assert_eq!(r.matchers.len(), 1);
    assert_eq!(
        (r.matchers[0].r#type, r.matchers[0].value.as_str()),
        (2, ".+")
    );
    let r = series_request(&sel(
        vec![Matcher::new(MatchOp::Equal, "cluster", "k8s-1")],
        0,
        1,
    ));
    let ms: Vec<(&str, &str)> = r
        .matchers
        .iter()
        .map(|m| (m.name.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(ms, vec![("cluster", "k8s-1"), ("__name__", ".+")]);
}

#[test]
fn split_series_merge_and_chunks_are_clipped() {
    let mut c = Collector::new(15, 45, 100);
    let labels = || vec![label("job", "a"), label("__name__", "up")];
    c.add(storepb::Series {
        labels: labels(),
        chunks: vec![chunk(ChunkEncoding::Xor, &samples([10, 20, 30]))],
    })
    .expect("decodes");
    c.add(storepb::Series {
        labels: labels(),
        chunks: vec![
            chunk(ChunkEncoding::Xor, &samples([30, 40, 50])),
            chunk(ChunkEncoding::Xor, &samples([100, 200])),
        ],
    })
    .expect("decodes");
    c.add(storepb::Series {
        labels: vec![label("__name__", "gone")],
        chunks: vec![chunk(ChunkEncoding::Xor, &samples([1, 2]))],
    })
    .expect("decodes");
    let out = c.finish();
    assert_eq!(
        out.series.len(),
        1,
        "the series without samples in range is dropped"
    );
    assert_eq!(
        out.series[0].labels.to_string(),
        r#"{__name__="up", job="a"}"#
    );
    let ts: Vec<i64> = out.series[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![20, 30, 40]);
}

#[test]
fn bad_histogram_unknown_and_downsampled_chunks_are_refused() {
    for (kind, raw, want) in [
        // XOR bytes read as histogram chunks: garbage, refused clearly.
        (1, true, "histogram chunk"),
        (2, true, "histogram chunk"),
        (9, true, "unknown encoding 9"),
        (0, false, "without raw data"),
    ] {
        let mut ch = chunk(ChunkEncoding::Xor, &samples([10]));
        if let Some(r) = ch.raw.as_mut() {
            r.r#type = kind;
        }
        if !raw {
            ch.raw = None;
        }
        let mut c = Collector::new(0, 100, 100);
        let err = c
            .add(storepb::Series {
                labels: vec![label("__name__", "h")],
                chunks: vec![ch],
            })
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(want) && text.contains("__name__=\"h\""),
            "{text}"
        );
    }
}

#[test]
fn sample_limit_is_enforced() {
    let mut c = Collector::new(0, 1000, 4);
    let series = |ts: &[i64]| storepb::Series {
        labels: vec![label("__name__", "a")],
        chunks: vec![chunk(ChunkEncoding::Xor, &samples(ts.iter().copied()))],
    };
    c.add(series(&[1, 2, 3])).expect("3 of 4");
    assert!(matches!(
        c.add(series(&[4, 5])),
        Err(CallError::TooManySamples(4))
    ));
}

#[test]
fn urls_must_be_grpc_host_port() {
    assert_eq!(
        grpc_authority("grpc://127.0.0.1:10901").as_deref(),
        Ok("127.0.0.1:10901")
    );
    assert_eq!(
        grpc_authority("grpc://[::1]:10901/").as_deref(),
        Ok("[::1]:10901")
    );
    for bad in [
        "http://127.0.0.1:10901",
        "grpc://127.0.0.1",
        "grpc://h:1/path",
        "127.0.0.1:10901",
    ] {
        assert!(grpc_authority(bad).is_err(), "{bad}");
    }
}

/// One gRPC message as it travels in an HTTP/2 DATA frame.
fn grpc_frame(msg: &impl Message) -> bytes::Bytes {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    out.extend_from_slice(&body);
    out.into()
}

/// A bare HTTP/2 server on loopback answering every `Series` call with a
/// warning frame and one series, then either ending the stream or
/// stalling (for at most 30 s); stopped when the handle is dropped.
async fn scripted_store(stall: bool) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut conn) = h2::server::handshake(sock).await else {
            return;
        };
        while let Some(Ok((_req, mut respond))) = conn.accept().await {
            tokio::spawn(async move {
                let head = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .body(())
                    .expect("response head");
                let Ok(mut send) = respond.send_response(head, false) else {
                    return;
                };
                let warning = storepb::SeriesResponse {
                    result: Some(Frame::Warning("block 01ABC unavailable".into())),
                };
                let series = storepb::SeriesResponse {
                    result: Some(Frame::Batch(storepb::SeriesBatch {
                        series: vec![storepb::Series {
                            labels: vec![label("__name__", "up")],
                            chunks: vec![chunk(ChunkEncoding::Xor, &samples([10, 20]))],
                        }],
                    })),
                };
                let _ = send.send_data(grpc_frame(&warning), false);
                let _ = send.send_data(grpc_frame(&series), false);
                if stall {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                } else {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let _ = send.send_trailers(trailers);
                }
            });
        }
    });
    (format!("grpc://{addr}"), task)
}

#[tokio::test]
async fn store_warnings_reach_the_answer() {
    let (url, task) = scripted_store(false).await;
    let s =
        ThanosStoreSource::new("k8s-7", &url, Duration::from_secs(5), None, None).expect("source");
    let out = s
        .select(&sel(
            vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
            0,
            100,
        ))
        .await
        .expect("answers");
    task.abort();
    assert_eq!(out.series.len(), 1);
    assert_eq!(out.series[0].samples.len(), 2);
    assert_eq!(
        out.warnings,
        vec!["backend k8s-7: block 01ABC unavailable".to_string()]
    );
}

/// A stream that stalls after its first frames is cut at the deadline.
#[tokio::test]
async fn a_stream_stalling_mid_way_is_cut_at_the_deadline() {
    let (url, task) = scripted_store(true).await;
    let s = ThanosStoreSource::new("k8s-8", &url, Duration::from_millis(700), None, None)
        .expect("source");
    let t0 = std::time::Instant::now();
    let err = s
        .select(&sel(
            vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
            0,
            100,
        ))
        .await
        .expect_err("stalls");
    let took = t0.elapsed();
    task.abort();
    assert!(
        matches!(&err, SourceError::Timeout { backend, timeout_ms: 700 } if backend == "k8s-8"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn replica_labels_are_stripped_by_stores_that_support_it_when_deduplicating() {
    let s = ThanosStoreSource::new(
        "k",
        "grpc://127.0.0.1:1",
        Duration::from_secs(1),
        None,
        None,
    )
    .expect("source");
    let read = |dedup| ReadOptions {
        partial_response: Some(false),
        dedup: Some(dedup),
        replica_labels: Some(vec!["replica".into()]),
    };
    // Unknown support (no Info yet): nothing stripped.
    assert!(s.strip_replicas(&read(true)).is_empty());
    let set = |supports| {
        if let Ok(mut i) = s.info.write() {
            *i = Some(StoreInfo {
                supports_without_replica_labels: supports,
                ..Default::default()
            });
        }
    };
    set(true);
    assert_eq!(s.strip_replicas(&read(true)), vec!["replica".to_string()]);
    assert!(s.strip_replicas(&read(false)).is_empty());
    set(false);
    assert!(s.strip_replicas(&read(true)).is_empty());
}

/// A store that cannot be reached fails with an error naming it, within
/// its deadline.
#[tokio::test]
async fn an_unreachable_store_is_named() {
    // A port nobody listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let s = ThanosStoreSource::new(
        "k8s-9",
        &format!("grpc://127.0.0.1:{port}"),
        Duration::from_secs(5),
        None,
        None,
    )
    .expect("source");
    let t0 = std::time::Instant::now();
    let err = s
        .select(&sel(
            vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
            0,
            1,
        ))
        .await
        .expect_err("nobody listens");
    assert!(err.to_string().contains("k8s-9"), "{err}");
    // The root cause is kept, not just "tcp connect error".
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(s.probe().await.is_err());
    assert_eq!(s.store_info(), None);
}
