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
