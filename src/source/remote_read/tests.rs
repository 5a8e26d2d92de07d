use super::chunk::tests::encode_xor;
use super::collect::{CollectError, Collector};
use super::prompb::ChunkEncoding;
use super::*;
use crate::model::{stale_nan, Sample};

fn re(v: &str) -> MatchOp {
    MatchOp::Re(regex::Regex::new(&format!("^(?:{v})$")).expect("regex"))
}

fn sel(matchers: Vec<Matcher>, start_ms: i64, end_ms: i64) -> Select {
    Select {
        matchers,
        start_ms,
        end_ms,
        hints: Default::default(),
        read: Default::default(),
    }
}

#[test]
fn request_carries_matchers_range_hints_and_response_types() {
    let mut s = sel(
        vec![
            Matcher::new(MatchOp::Equal, "__name__", "up"),
            Matcher::new(MatchOp::NotEqual, "job", "x"),
            Matcher::new(re("a|b"), "instance", "a|b"),
            Matcher::new(
                MatchOp::NotRe(regex::Regex::new("^(?:5..)$").expect("regex")),
                "code",
                "5..",
            ),
        ],
        1000,
        2000,
    );
    s.hints.step_ms = 15;
    s.hints.range_ms = 300_000;
    s.hints.func = Some("rate".into());
    let req = build_request(&s, ResponseMode::Chunks);
    assert_eq!(req.accepted_response_types, vec![1, 0]);
    let q = &req.queries[0];
    assert_eq!((q.start_timestamp_ms, q.end_timestamp_ms), (1000, 2000));
    let ms: Vec<(i32, &str, &str)> = q
        .matchers
        .iter()
        .map(|m| (m.r#type, m.name.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(
        ms,
        vec![
            (0, "__name__", "up"),
            (1, "job", "x"),
            (2, "instance", "a|b"),
            (3, "code", "5..")
        ]
    );
    let h = q.hints.as_ref().expect("hints");
    assert_eq!(
        (h.step_ms, h.func.as_str(), h.start_ms, h.end_ms, h.range_ms),
        (15, "rate", 1000, 2000, 300_000)
    );
    let req = build_request(&s, ResponseMode::Samples);
    assert_eq!(req.accepted_response_types, vec![0]);
}

#[test]
fn wire_layout_matches_prompb_field_numbers() {
    let m = prompb::LabelMatcher {
        r#type: MatcherType::Re.into(),
        name: "a".into(),
        value: "b".into(),
    };
    // type=1 varint 2, name=2 "a", value=3 "b".
    assert_eq!(m.encode_to_vec(), b"\x08\x02\x12\x01a\x1a\x01b");
    let r = prompb::ReadRequest {
        queries: vec![],
        accepted_response_types: vec![1, 0],
    };
    // accepted_response_types=2, packed.
    assert_eq!(r.encode_to_vec(), b"\x12\x02\x01\x00");
    let h = prompb::ReadHints {
        step_ms: 1,
        func: "f".into(),
        start_ms: 3,
        end_ms: 4,
        grouping: vec!["g".into()],
        by: true,
        range_ms: 7,
    };
    assert_eq!(
        h.encode_to_vec(),
        b"\x08\x01\x12\x01f\x18\x03\x20\x04\x2a\x01g\x30\x01\x38\x07"
    );
    let c = prompb::Chunk {
        min_time_ms: 1,
        max_time_ms: 2,
        r#type: ChunkEncoding::Xor.into(),
        data: bytes::Bytes::from_static(b"z"),
    };
    assert_eq!(c.encode_to_vec(), b"\x08\x01\x10\x02\x18\x01\x22\x01z");
    let s = prompb::Sample {
        value: 1.0,
        timestamp: 5,
    };
    assert_eq!(
        s.encode_to_vec(),
        b"\x09\x00\x00\x00\x00\x00\x00\xf0\x3f\x10\x05"
    );
}

fn label(name: &str, value: &str) -> prompb::Label {
    prompb::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn xor_chunk(samples: &[Sample]) -> prompb::Chunk {
    prompb::Chunk {
        min_time_ms: samples.first().map_or(0, |s| s.t),
        max_time_ms: samples.last().map_or(0, |s| s.t),
        r#type: ChunkEncoding::Xor.into(),
        data: encode_xor(samples).into(),
    }
}

fn samples(ts: impl IntoIterator<Item = i64>) -> Vec<Sample> {
    ts.into_iter().map(|t| Sample { t, v: t as f64 }).collect()
}

#[test]
fn split_and_overlapping_series_merge_into_one() {
    let mut c = Collector::new(0, 1000, 100);
    let labels = || vec![label("job", "a"), label("__name__", "up"), label("x", "")];
    // The same series in two frames, the second's chunk overlapping the
    // first's, plus a chunk wholly outside the range.
    c.add_chunked(prompb::ChunkedSeries {
        labels: labels(),
        chunks: vec![xor_chunk(&samples([10, 20, 30]))],
    })
    .expect("decodes");
    c.add_chunked(prompb::ChunkedSeries {
        labels: labels(),
        chunks: vec![
            xor_chunk(&samples([20, 30, 40, 50])),
            xor_chunk(&samples([2000, 3000])),
        ],
    })
    .expect("decodes");
    c.add_chunked(prompb::ChunkedSeries {
        labels: vec![label("__name__", "up"), label("job", "0")],
        chunks: vec![xor_chunk(&samples([5]))],
    })
    .expect("decodes");
    let out = c.finish("b");
    assert!(out.warnings.is_empty());
    let names: Vec<String> = out.series.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        vec![r#"{__name__="up", job="0"}"#, r#"{__name__="up", job="a"}"#]
    );
    let ts: Vec<i64> = out.series[1].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![10, 20, 30, 40, 50]);
}

#[test]
fn chunks_are_clipped_and_empty_series_dropped() {
    let mut c = Collector::new(25, 45, 100);
    c.add_chunked(prompb::ChunkedSeries {
        labels: vec![label("__name__", "a")],
        chunks: vec![xor_chunk(&samples([10, 20, 30, 40, 50]))],
    })
    .expect("decodes");
    c.add_chunked(prompb::ChunkedSeries {
        labels: vec![label("__name__", "b")],
        // Announced inside the range, but no sample is.
        chunks: vec![prompb::Chunk {
            min_time_ms: 0,
            max_time_ms: 100,
            ..xor_chunk(&samples([10, 20, 50]))
        }],
    })
    .expect("decodes");
    let out = c.finish("b");
    assert_eq!(out.series.len(), 1);
    let ts: Vec<i64> = out.series[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![30, 40]);
}

#[test]
fn unknown_chunks_are_skipped_with_a_warning_and_bad_histograms_refused() {
    let mut c = Collector::new(0, 100, 100);
    let mut stale = samples([10]);
    stale[0].v = stale_nan();
    c.add_chunked(prompb::ChunkedSeries {
        labels: vec![label("__name__", "h")],
        chunks: vec![prompb::Chunk {
            r#type: 42,
            ..xor_chunk(&samples([30]))
        }],
    })
    .expect("decodes");
    c.add_chunked(prompb::ChunkedSeries {
        labels: vec![label("__name__", "f")],
        chunks: vec![xor_chunk(&stale)],
    })
    .expect("decodes");
    let out = c.finish("k8s-1");
    assert_eq!(out.series.len(), 1);
    assert_eq!(out.series[0].samples[0].v.to_bits(), stale_nan().to_bits());
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("backend k8s-1: skipped 1 chunk(s) of unknown encoding"));

    // An XOR chunk read as a histogram chunk is garbage: an error, not a panic.
    let mut c = Collector::new(0, 100, 100);
    let err = c.add_chunked(prompb::ChunkedSeries {
        labels: vec![label("__name__", "g")],
        chunks: vec![prompb::Chunk {
            r#type: ChunkEncoding::Histogram.into(),
            ..xor_chunk(&samples([10, 20, 30]))
        }],
    });
    assert!(err.is_err(), "{err:?}");
    // Spans announcing more buckets than given: refused.
    let err = c.add_samples(prompb::TimeSeries {
        labels: vec![label("__name__", "s")],
        samples: vec![],
        histograms: vec![prompb::Histogram {
            count: Some(prompb::HistogramCount::CountInt(1)),
            positive_spans: vec![prompb::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![1],
            timestamp: 10,
            ..Default::default()
        }],
    });
    assert!(
        err.as_ref().is_err_and(|e| e.to_string().contains("spans")),
        "{err:?}"
    );
}

#[test]
fn samples_responses_are_clipped_and_sorted() {
    let mut c = Collector::new(20, 40, 100);
    c.add_samples(prompb::TimeSeries {
        labels: vec![label("__name__", "z")],
        samples: [50, 40, 30, 20, 10]
            .into_iter()
            .map(|t| prompb::Sample {
                value: 1.0,
                timestamp: t,
            })
            .collect(),
        histograms: vec![],
    })
    .expect("within limits");
    let out = c.finish("b");
    let ts: Vec<i64> = out.series[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![20, 30, 40]);
}

#[test]
fn sample_limit_is_enforced_both_ways() {
    let mut c = Collector::new(0, 1000, 5);
    let chunked = |ts: &[i64]| prompb::ChunkedSeries {
        labels: vec![label("__name__", "a")],
        chunks: vec![xor_chunk(&samples(ts.iter().copied()))],
    };
    c.add_chunked(chunked(&[1, 2, 3])).expect("3 of 5");
    c.add_chunked(chunked(&[4, 5])).expect("5 of 5");
    assert!(matches!(
        c.add_chunked(chunked(&[6])),
        Err(CollectError::TooManySamples(5))
    ));
    let mut c = Collector::new(0, 1000, 2);
    let ts = prompb::TimeSeries {
        labels: vec![label("__name__", "a")],
        samples: vec![prompb::Sample::default(); 3],
        histograms: vec![],
    };
    assert!(matches!(
        c.add_samples(ts),
        Err(CollectError::TooManySamples(2))
    ));
}

#[test]
fn base_url_slashes_are_normalised() {
    let client = crate::source::http::BackendHttp::plain();
    for base in ["http://h:9090", "http://h:9090/", "http://h:9090//"] {
        let s = RemoteReadSource::new("b", base, Duration::from_secs(1), client.clone());
        assert_eq!(s.url, "http://h:9090/api/v1/read");
    }
    let s = RemoteReadSource::new("b", "http://h/prom/", Duration::from_secs(1), client);
    assert_eq!(s.url, "http://h/prom/api/v1/read");
}
