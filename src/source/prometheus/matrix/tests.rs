use super::*;

/// Reads `body` fed in pieces of `piece` bytes.
fn read(body: &str, piece: usize, start: i64, end: i64) -> Result<MatrixAnswer, MatrixError> {
    let mut r = MatrixReader::new(start, end);
    for p in body.as_bytes().chunks(piece) {
        r.feed(p)?;
    }
    r.finish()
}

const ANSWER: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[
 {"metric":{"__name__":"up","job":"a]},\"[{b"},"values":[[1.5,"1"],[2,"NaN"],[3.001,"+Inf"]]},
 {"metric":{"__name__":"up","job":"x"},"values":[[2.5,"-Inf"]],"histograms":[[2.6,{"count":"1"}]]},
 {"metric":{},"values":[[0.5,"7"]]}
]},"warnings":["w1"],"infos":[]}"#;

#[test]
fn series_are_cut_out_exactly_whatever_the_pieces() {
    for piece in [1, 2, 3, 7, 64, ANSWER.len()] {
        let a = read(ANSWER, piece, 1000, 3001).unwrap_or_else(|e| panic!("{piece}: {e}"));
        assert_eq!(a.histograms, 1);
        let envelope: serde_json::Value =
            serde_json::from_slice(&a.envelope).expect("the envelope stays JSON");
        assert_eq!(
            envelope,
            serde_json::json!({"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["w1"],"infos":[]})
        );
        let got: Vec<(String, Vec<(i64, u64)>)> = a
            .series
            .iter()
            .map(|s| {
                let samples = s.samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
                (s.labels.to_string(), samples)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    r#"{__name__="up", job="a]},\"[{b"}"#.to_string(),
                    vec![
                        (1500, 1f64.to_bits()),
                        (2000, f64::NAN.to_bits()),
                        (3001, f64::INFINITY.to_bits())
                    ]
                ),
                (
                    r#"{__name__="up", job="x"}"#.to_string(),
                    vec![(2500, f64::NEG_INFINITY.to_bits())]
                ),
            ],
            "piece {piece}: the series out of range is dropped"
        );
    }
}

#[test]
fn envelopes_without_series_pass_through_whole() {
    let error = r#"{"status":"error","errorType":"bad_data","error":"x [ { \" y"}"#;
    let a = read(error, 5, 0, 10).expect("an error envelope");
    assert_eq!(a.envelope, error.as_bytes());
    assert!(a.series.is_empty());
    let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2"]}]}}"#;
    let a = read(vector, 3, 0, 10_000).expect("a vector");
    assert!(a.series.is_empty(), "no values: no series");
    let html = "<html>502 Bad Gateway</html>";
    assert_eq!(
        read(html, 4, 0, 1).expect("not JSON").envelope,
        html.as_bytes()
    );
}

#[test]
fn bad_series_are_errors() {
    let bad_value = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#;
    let e = read(bad_value, 9, 0, 10_000).err().expect("a bad value");
    assert!(e.to_string().contains("bad sample value \"x\""), "{e}");
    let stray = r#"{"status":"success","data":{"resultType":"matrix","result":[1]}}"#;
    let e = read(stray, 9, 0, 10_000)
        .err()
        .expect("a number for a series");
    assert!(e.to_string().contains("not a series"), "{e}");
}

#[tokio::test]
async fn buffers_are_charged_to_the_query_s_bytes_and_given_back() {
    use crate::limits::{scope, LimitsConfig, QueryContext};
    use std::sync::Arc;
    // One series of 2,000 samples: about 30 kB of JSON cut out at once.
    let values: Vec<String> = (0..2000).map(|i| format!("[{i},\"{i}\"]")).collect();
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
        values.join(",")
    );
    let ctx = |max| {
        Arc::new(QueryContext::new(&LimitsConfig {
            max_query_bytes: Some(max),
            ..LimitsConfig::default()
        }))
    };
    let small = ctx(20_000);
    let r = scope(small.clone(), async { read(&body, 512, 0, i64::MAX).err() }).await;
    assert!(matches!(r, Some(MatrixError::Held(_))), "{r:?}");
    assert_eq!(small.bytes(), 0, "given back when the reader drops");
    let enough = ctx(200_000);
    let (n, held) = scope(enough.clone(), async {
        let mut r = MatrixReader::new(0, i64::MAX);
        for p in body.as_bytes().chunks(512) {
            r.feed(p).expect("room for the buffers");
        }
        let held = crate::limits::current().map(|c| c.bytes());
        (r.finish().expect("whole").series[0].samples.len(), held)
    })
    .await;
    assert_eq!(n, 2000);
    assert!(held.is_some_and(|b| b >= 30_000), "{held:?}");
    assert_eq!(enough.bytes(), 0);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    /// A label value with the characters JSON escapes or the scanner
    /// watches (quotes, backslashes, brackets, commas, colons, non-ASCII).
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('['),
                Just(']'),
                Just('{'),
                Just('}'),
                Just(','),
                Just(':'),
                Just('é'),
                Just('\n'),
                proptest::char::range('a', 'z'),
            ],
            1..8,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            any::<f64>().prop_filter("finite", |v| v.is_finite()),
        ]
    }

    /// A Go-style value string that parses back to `v` (NaN as `NaN`).
    fn go_value(v: f64) -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v == f64::INFINITY {
            "+Inf".into()
        } else if v == f64::NEG_INFINITY {
            "-Inf".into()
        } else {
            format!("{v:e}")
        }
    }

    type Drawn = Vec<(Vec<(String, String)>, Vec<(i64, f64)>)>;

    fn matrix() -> impl Strategy<Value = Drawn> {
        proptest::collection::vec(
            (
                proptest::collection::vec((text(), text()), 0..4),
                proptest::collection::vec((0i64..100_000, value()), 0..6),
            ),
            0..6,
        )
    }

    proptest! {
        /// Whatever the series and however the answer is split, the reader
        /// gives what a plain parse of the whole answer gives.
        #[test]
        fn the_stream_reads_as_the_whole_answer(m in matrix(), piece in 1usize..40, warn in text()) {
            let result: Vec<serde_json::Value> = m
                .iter()
                .map(|(labels, samples)| {
                    let metric: serde_json::Map<String, serde_json::Value> = labels
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    let values: Vec<serde_json::Value> = samples
                        .iter()
                        .map(|(t, v)| serde_json::json!([*t as f64 / 1000.0, go_value(*v)]))
                        .collect();
                    serde_json::json!({"metric": metric, "values": values})
                })
                .collect();
            let body = serde_json::json!({
                "status": "success",
                "data": {"resultType": "matrix", "result": result},
                "warnings": [warn],
            })
            .to_string();
            let (start, end) = (10_000, 90_000);
            let got = read(&body, piece, start, end).expect("a valid answer");
            // The reference: the whole answer parsed at once, by hand.
            let whole: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            let mut want = Vec::new();
            for s in whole["data"]["result"].as_array().expect("a list") {
                let labels = Labels::from_pairs(
                    s["metric"]
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
                );
                let samples: Vec<(i64, u64)> = s["values"]
                    .as_array()
                    .expect("values")
                    .iter()
                    .map(|p| {
                        let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
                        let v = parse_value(p[1].as_str().expect("value")).expect("a number");
                        (t, v.to_bits())
                    })
                    .filter(|(t, _)| (start..=end).contains(t))
                    .collect();
                if !samples.is_empty() {
                    want.push((labels, samples));
                }
            }
            let got: Vec<(Labels, Vec<(i64, u64)>)> = got
                .series
                .into_iter()
                .map(|s| (s.labels, s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect()))
                .collect();
            prop_assert_eq!(got, want);
            let envelope: serde_json::Value =
                serde_json::from_slice(&read(&body, piece, start, end).expect("valid").envelope)
                    .expect("the envelope stays JSON");
            prop_assert_eq!(&envelope["warnings"][0], &serde_json::Value::String(warn));
            prop_assert_eq!(&envelope["data"]["result"], &serde_json::json!([]));
        }
    }
}
