//! Native histograms read back from a real Prometheus 3.8 over remote
//! read: the chunks it writes (HISTOGRAM and FLOAT_HISTOGRAM encodings,
//! captured raw) and its SAMPLES answers decode to exactly the histograms
//! that were remote-written into it.

mod common;

use std::time::Duration;

use common::native_data::{histograms, series, Kind};
use common::remote_write::{start_receiver, write};
use promfed::model::histogram::{CounterResetHint, FloatHistogram};
use promfed::model::Labels;
use promfed::source::remote_read::histogram_chunk::{
    decode_histogram_chunk, histogram_sample_count,
};
use promfed::source::remote_read::histogram_pb::histogram_sample;
use promfed::source::remote_read::{build_request, prompb, RemoteReadSource, ResponseMode};
use promfed::source::{Select, SelectHints, Source};
use promql_parser::label::{MatchOp, Matcher};
use prost::Message;

/// The written series: name, kind, and the sample where the counter resets.
const SERIES: &[(&str, Kind, Option<usize>)] = &[
    ("nh_int", Kind::IntCounter, Some(120)),
    ("nh_float", Kind::FloatCounter, None),
    ("nh_gauge", Kind::Gauge, None),
    ("nh_custom", Kind::Custom, Some(90)),
];
const SAMPLES: usize = 200;

fn select_all(start_ms: i64, end_ms: i64) -> Select {
    let re = regex::Regex::new("^(?:nh_.+)$").expect("regex");
    Select {
        matchers: vec![Matcher::new(MatchOp::Re(re), "__name__", "nh_.+")],
        start_ms,
        end_ms,
        hints: SelectHints {
            start_ms,
            end_ms,
            ..Default::default()
        },
        read: Default::default(),
    }
}

/// Exact equality of everything but the counter-reset hint (checked apart).
fn same(got: &FloatHistogram, want: &FloatHistogram) -> bool {
    got.approx_eq(want, |a, b| a.to_bits() == b.to_bits() || a == b)
        && got.zero_threshold == want.zero_threshold
}

#[tokio::test]
async fn histograms_come_back_exactly_from_chunks_and_samples() {
    let prom = start_receiver("nh-rr", &[("cluster", "k8s-1")]).expect("prometheus 3.8");
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - (SAMPLES as i64) * 15_000 - 60_000;
    let written: Vec<(String, Kind, Vec<prompb::Histogram>)> = SERIES
        .iter()
        .enumerate()
        .map(|(i, &(name, kind, reset))| {
            (
                name.to_string(),
                kind,
                histograms(kind, 7 + i as u64, start, SAMPLES, reset),
            )
        })
        .collect();
    let ts: Vec<prompb::TimeSeries> = written
        .iter()
        .map(|(name, _, h)| series(&[("__name__", name), ("job", "nh")], h.clone()))
        .collect();
    write(&prom.url, &ts).await.expect("remote write");

    // The raw chunks: both histogram encodings, each decoding to the
    // samples its header announces, within its announced bounds.
    let sel = select_all(start - 1, now);
    let body = snap::raw::Encoder::new()
        .compress_vec(&build_request(&sel, ResponseMode::Chunks).encode_to_vec())
        .expect("compress");
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/read", prom.url))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .expect("remote read");
    let bytes = response.bytes().await.expect("body");
    let mut frames = promfed::source::remote_read::frame::FrameReader::new(1 << 26);
    frames.push(&bytes);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(frame) = frames.next_frame().expect("valid frame") {
        let msg = prompb::ChunkedReadResponse::decode(frame).expect("ChunkedReadResponse");
        for s in msg.chunked_series {
            for c in s.chunks {
                seen.insert(c.r#type);
                let float = c.r#type == prompb::ChunkEncoding::FloatHistogram as i32;
                let got = decode_histogram_chunk(&c.data, float).expect("real chunk decodes");
                assert_eq!(got.len(), histogram_sample_count(&c.data));
                let (first, last) = (got.first().expect("one"), got.last().expect("one"));
                assert_eq!((first.t, last.t), (c.min_time_ms, c.max_time_ms));
                // Fuzz seeds: PROMFED_DUMP_CHUNKS=fuzz/seeds/histogram_chunk
                // writes each chunk as the target reads it (mode byte, an
                // open window, the chunk).
                if let Some(dir) = std::env::var_os("PROMFED_DUMP_CHUNKS") {
                    let mut seed = vec![c.r#type as u8, 0, 255];
                    seed.extend_from_slice(&c.data);
                    let path = std::path::Path::new(&dir).join(format!(
                        "real-{}-{}",
                        c.r#type,
                        c.min_time_ms % 1000
                    ));
                    std::fs::write(path, seed).expect("write seed");
                }
            }
        }
    }
    assert!(
        seen.contains(&(prompb::ChunkEncoding::Histogram as i32))
            && seen.contains(&(prompb::ChunkEncoding::FloatHistogram as i32)),
        "encodings seen: {seen:?}"
    );

    for mode in [ResponseMode::Chunks, ResponseMode::Samples] {
        let source = RemoteReadSource::new(
            "k8s-1",
            &prom.url,
            Duration::from_secs(30),
            promfed::source::http::BackendHttp::plain(),
        );
        let source = match mode {
            ResponseMode::Chunks => source,
            ResponseMode::Samples => source.samples_only(),
        };
        // Prometheus 3.8's SAMPLES answers drop custom bucket bounds
        // (prompb.FromIntHistogram does not copy them): a clear error there.
        let wanted: Vec<_> = written
            .iter()
            .filter(|(_, k, _)| mode == ResponseMode::Chunks || *k != Kind::Custom)
            .collect();
        let sel = if mode == ResponseMode::Samples {
            let err = source
                .select(&sel)
                .await
                .expect_err("custom buckets without bounds");
            assert!(
                err.to_string().contains("without its bucket bounds"),
                "{err}"
            );
            let mut sel = sel.clone();
            sel.matchers
                .push(Matcher::new(MatchOp::NotEqual, "__name__", "nh_custom"));
            sel
        } else {
            sel.clone()
        };
        let out = source.select(&sel).await.expect("select");
        assert!(out.warnings.is_empty(), "{mode:?}: {:?}", out.warnings);
        assert_eq!(out.series.len(), wanted.len(), "{mode:?}");
        for (name, kind, msgs) in wanted {
            let labels = Labels::from_pairs([
                ("__name__", name.as_str()),
                ("job", "nh"),
                ("cluster", "k8s-1"),
            ]);
            let s = out
                .series
                .iter()
                .find(|s| s.labels == labels)
                .unwrap_or_else(|| panic!("{mode:?}: no {labels}"));
            assert!(s.samples.is_empty());
            assert_eq!(s.histograms.len(), msgs.len(), "{mode:?} {name}");
            for (i, (got, m)) in s.histograms.iter().zip(msgs).enumerate() {
                let want = histogram_sample(m).expect("valid");
                assert_eq!(got.t, want.t, "{mode:?} {name} #{i}");
                assert!(
                    same(&got.h, &want.h),
                    "{mode:?} {name} #{i}:\n got {:?}\nwant {:?}",
                    got.h,
                    want.h
                );
                if *kind == Kind::Gauge {
                    assert_eq!(got.h.counter_reset_hint, CounterResetHint::Gauge);
                }
            }
        }
    }
}
