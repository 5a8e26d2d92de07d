//! Prometheus JSON encoding of query results, written by hand for speed and
//! for Prometheus's exact number formats. It sits below the cache, which
//! stores these bytes, and above the engine whose results it encodes.

use std::fmt::Write as _;

use crate::limits::meter::{self, LimitError};
use crate::model::{Labels, Sample};
use crate::promql::{QueryResult, Value};

/// Appends a sample value as Prometheus does: a JSON string, `NaN`, `+Inf`,
/// `-Inf`, or the shortest round-trip decimal (exponent form below 1e-6 or
/// at or above 1e21 in magnitude, Go style `1e-07`).
pub fn push_value(out: &mut String, v: f64) {
    out.push('"');
    push_float(out, v);
    out.push('"');
}

/// Formats a float like Go's `strconv.FormatFloat(v, 'f' or 'e', -1, 64)`
/// with Prometheus's choice between them.
pub fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let a = v.abs();
        if a != 0.0 && !(1e-6..1e21).contains(&a) {
            // Rust prints `1.5e-7`; Go prints `1.5e-07` (at least two exponent digits, signed).
            let s = format!("{v:e}");
            match s.split_once('e') {
                Some((mant, exp)) => {
                    let (sign, digits) = match exp.strip_prefix('-') {
                        Some(d) => ('-', d),
                        None => ('+', exp),
                    };
                    let _ = write!(out, "{mant}e{sign}");
                    if digits.len() < 2 {
                        out.push('0');
                    }
                    out.push_str(digits);
                }
                None => out.push_str(&s),
            }
        } else {
            let _ = write!(out, "{v}");
        }
    }
}

/// Appends a timestamp in ms as JSON seconds with up to three decimals.
pub fn push_timestamp(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    let _ = write!(out, "{}", a / 1000);
    let frac = a % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

/// Appends a JSON string literal.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a label set as a JSON object.
pub fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &l.name);
        out.push(':');
        push_str(out, &l.value);
    }
    out.push('}');
}

fn push_point(out: &mut String, s: Sample) {
    out.push('[');
    push_timestamp(out, s.t);
    out.push(',');
    push_value(out, s.v);
    out.push(']');
}

fn push_string_list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, ",\"{key}\":[");
    for (i, w) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, w);
    }
    out.push(']');
}

/// Points or series written between two looks at the body's size, the
/// query's budget and its deadline.
const CHECK_EVERY: usize = 1024;

/// Watches a body as it grows: its size against `limits.max_response_bytes`,
/// its memory against the query's budget, the query's deadline.
struct BodyMeter {
    limit: Option<u64>,
    charged: usize,
    items: usize,
}

impl BodyMeter {
    fn new() -> BodyMeter {
        BodyMeter {
            limit: meter::max_response_bytes(),
            charged: 0,
            items: 0,
        }
    }

    /// Counts one point or series written.
    fn item(&mut self, out: &String) -> Result<(), LimitError> {
        self.items += 1;
        if self.items.is_multiple_of(CHECK_EVERY) {
            self.look(out)?;
        }
        Ok(())
    }

    fn look(&mut self, out: &String) -> Result<(), LimitError> {
        if let Some(limit) = self.limit {
            if out.len() as u64 > limit {
                return Err(LimitError::Response { limit });
            }
        }
        let cap = out.capacity();
        meter::charge(0, cap.saturating_sub(self.charged) as u64)?;
        self.charged = self.charged.max(cap);
        Ok(())
    }
}

/// The fewest bytes the body of `r` can take (every point and label
/// written as briefly as JSON allows): refused before encoding when even
/// that is over the limit.
fn least_body_bytes(r: &QueryResult) -> u64 {
    let labels = |l: &Labels| -> u64 {
        l.iter()
            .map(|l| l.name.len() + l.value.len() + 6)
            .sum::<usize>() as u64
    };
    match &r.value {
        Value::Scalar { .. } | Value::String { .. } => 0,
        Value::Vector(elems) => elems.iter().map(|e| 24 + labels(&e.labels)).sum(),
        Value::Matrix(series) => series
            .iter()
            .map(|s| 24 + labels(&s.labels) + 8 * s.samples.len() as u64)
            .sum(),
    }
}

/// The whole success body of a query or query_range answer.
pub fn query_body(r: &QueryResult) -> String {
    let mut out = String::with_capacity(256);
    // Outside a metered query nothing is limited: this cannot fail.
    let _ = write_query_body(
        r,
        &mut out,
        &mut BodyMeter {
            limit: None,
            charged: 0,
            items: 0,
        },
    );
    out
}

/// [`query_body`] within the current query's limits: `Err` as soon as the
/// body would be larger than `limits.max_response_bytes` (before encoding
/// when that can be known beforehand), would break the query's memory
/// budget, or when the query runs past its deadline while encoding.
pub fn query_body_checked(r: &QueryResult) -> Result<String, LimitError> {
    let mut body = BodyMeter::new();
    if let Some(limit) = body.limit {
        if least_body_bytes(r) > limit {
            return Err(LimitError::Response { limit });
        }
    }
    meter::check()?;
    let mut out = String::with_capacity(256);
    write_query_body(r, &mut out, &mut body)?;
    body.look(&out)?;
    Ok(out)
}

fn write_query_body(
    r: &QueryResult,
    out: &mut String,
    body: &mut BodyMeter,
) -> Result<(), LimitError> {
    out.push_str("{\"status\":\"success\",\"data\":{\"resultType\":");
    match &r.value {
        Value::Scalar { t, v } => {
            out.push_str("\"scalar\",\"result\":");
            push_point(out, Sample { t: *t, v: *v });
        }
        Value::String { t, s } => {
            out.push_str("\"string\",\"result\":[");
            push_timestamp(out, *t);
            out.push(',');
            push_str(out, s);
            out.push(']');
        }
        Value::Vector(elems) => {
            out.push_str("\"vector\",\"result\":[");
            for (i, e) in elems.iter().enumerate() {
                body.item(out)?;
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &e.labels);
                out.push_str(",\"value\":");
                push_point(out, Sample { t: e.t, v: e.v });
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                body.item(out)?;
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &s.labels);
                out.push_str(",\"values\":[");
                for (j, p) in s.samples.iter().enumerate() {
                    body.item(out)?;
                    if j > 0 {
                        out.push(',');
                    }
                    push_point(out, *p);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    push_string_list(out, "warnings", &r.warnings);
    push_string_list(out, "infos", &r.infos);
    out.push('}');
    Ok(())
}

/// `{"status":"success","data":<data>}` around already-encoded JSON data,
/// with optional warnings.
pub fn success_body(data_json: &str, warnings: &[String]) -> String {
    let mut out = String::with_capacity(data_json.len() + 32);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data_json);
    push_string_list(&mut out, "warnings", warnings);
    out.push('}');
    out
}

/// The error body: `{"status":"error","errorType":…,"error":…}`.
pub fn error_body(error_type: &str, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 48);
    out.push_str("{\"status\":\"error\",\"errorType\":");
    push_str(&mut out, error_type);
    out.push_str(",\"error\":");
    push_str(&mut out, message);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Series;
    use crate::promql::VectorElem;

    fn fmt(v: f64) -> String {
        let mut s = String::new();
        push_float(&mut s, v);
        s
    }

    #[test]
    fn floats_print_as_go_does() {
        // Expected strings are Go's strconv.FormatFloat output.
        assert_eq!(fmt(1.0), "1");
        assert_eq!(fmt(0.1), "0.1");
        assert_eq!(fmt(-2.5), "-2.5");
        assert_eq!(fmt(1e-6), "0.000001");
        assert_eq!(fmt(1e-7), "1e-07");
        assert_eq!(fmt(1.5e-7), "1.5e-07");
        assert_eq!(fmt(1e20), "100000000000000000000");
        assert_eq!(fmt(1e21), "1e+21");
        assert_eq!(fmt(1.2345e300), "1.2345e+300");
        assert_eq!(fmt(5e-324), "5e-324");
        assert_eq!(fmt(0.0), "0");
        assert_eq!(fmt(-0.0), "-0");
        assert_eq!(fmt(f64::NAN), "NaN");
        assert_eq!(fmt(f64::INFINITY), "+Inf");
        assert_eq!(fmt(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt(0.30000000000000004), "0.30000000000000004");
    }

    fn matrix(series: usize, points: usize) -> QueryResult {
        QueryResult {
            value: Value::Matrix(
                (0..series)
                    .map(|i| Series {
                        labels: Labels::from_pairs([("i", i.to_string())]),
                        samples: (0..points)
                            .map(|t| Sample {
                                t: t as i64 * 1000,
                                v: 1.5,
                            })
                            .collect(),
                    })
                    .collect(),
            ),
            warnings: vec![],
            infos: vec![],
        }
    }

    fn metered<T>(
        cfg: impl FnOnce(&mut crate::limits::LimitsConfig),
        ctx: impl FnOnce(crate::limits::QueryContext) -> crate::limits::QueryContext,
        f: impl FnOnce() -> T,
    ) -> T {
        let mut c = crate::limits::LimitsConfig::default();
        cfg(&mut c);
        let ctx = std::sync::Arc::new(ctx(crate::limits::QueryContext::new(&c)));
        let _m = meter::Meter::new(Some(ctx), None, "response encoding").enter();
        f()
    }

    #[test]
    fn the_checked_body_is_the_body_within_the_limits() {
        let r = matrix(30, 100);
        let body = query_body(&r);
        let limit = body.len() as u64;
        let same = metered(
            |c| c.max_response_bytes = limit,
            |c| c,
            || query_body_checked(&r),
        );
        assert_eq!(same.as_deref(), Ok(body.as_str()));
        // One byte less: refused, naming the limit.
        let limit = limit - 1;
        let over = metered(
            |c| c.max_response_bytes = limit,
            |c| c,
            || query_body_checked(&r),
        );
        assert_eq!(over, Err(LimitError::Response { limit }));
        assert!(over
            .unwrap_err()
            .to_string()
            .contains("limits.max_response_bytes"));
    }

    #[test]
    fn a_body_that_cannot_fit_is_refused_before_it_is_encoded() {
        // 8 bytes a point at the very least: 1 M points cannot fit in 1 MB.
        let r = matrix(1000, 1000);
        assert!(least_body_bytes(&r) > 1 << 20);
        assert!(least_body_bytes(&r) < query_body(&r).len() as u64);
        let e = metered(
            |c| {
                c.max_response_bytes = 1 << 20;
                c.max_query_bytes = Some(1 << 10);
            },
            |c| c,
            || query_body_checked(&r),
        );
        // The response limit is named (not the memory budget it would
        // have broken while encoding).
        assert_eq!(e, Err(LimitError::Response { limit: 1 << 20 }));
    }

    #[test]
    fn encoding_counts_against_the_deadline_and_the_memory_budget() {
        let r = matrix(10, 10_000);
        let past = std::time::Instant::now();
        let e = metered(|_| {}, |c| c.with_deadline(past), || query_body_checked(&r));
        assert_eq!(e, Err(LimitError::Timeout("response encoding")));
        let e = metered(
            |c| c.max_query_bytes = Some(64 << 10),
            |c| c,
            || query_body_checked(&r),
        );
        assert_eq!(e, Err(LimitError::Bytes { limit: 64 << 10 }));
    }

    #[test]
    fn floats_round_trip() {
        for v in [1.0 / 3.0, 123456.789, 9.999999e-7, 1e-300, 4.2e25, -7.0e-9] {
            let s = fmt(v);
            assert_eq!(s.parse::<f64>().ok(), Some(v), "{s}");
        }
    }

    #[test]
    fn timestamps() {
        let mut s = String::new();
        push_timestamp(&mut s, 1_435_781_451_781);
        s.push(' ');
        push_timestamp(&mut s, 4000);
        s.push(' ');
        push_timestamp(&mut s, 1005);
        s.push(' ');
        push_timestamp(&mut s, -1500);
        assert_eq!(s, "1435781451.781 4 1.005 -1.500");
    }

    #[test]
    fn vector_body_shape() {
        let r = QueryResult {
            value: Value::Vector(vec![VectorElem {
                labels: Labels::from_pairs([("__name__", "up"), ("job", "node")]),
                t: 1_435_781_451_781,
                v: 1.0,
            }]),
            warnings: vec!["w".into()],
            infos: vec![],
        };
        assert_eq!(
            query_body(&r),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"node"},"value":[1435781451.781,"1"]}]},"warnings":["w"]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&query_body(&r)).expect("valid JSON");
        assert_eq!(v["data"]["result"][0]["value"][1], "1");
    }

    #[test]
    fn empty_results_are_lists() {
        for value in [Value::Vector(vec![]), Value::Matrix(vec![])] {
            let r = QueryResult {
                value,
                warnings: vec![],
                infos: vec![],
            };
            let v: serde_json::Value = serde_json::from_str(&query_body(&r)).expect("valid JSON");
            assert_eq!(v["data"]["result"], serde_json::json!([]));
        }
    }

    #[test]
    fn matrix_and_scalar_and_string() {
        let r = QueryResult {
            value: Value::Matrix(vec![Series {
                labels: Labels::from_pairs([("a", "\"q\"\n")]),
                samples: vec![
                    Sample {
                        t: 1000,
                        v: f64::NAN,
                    },
                    Sample { t: 2000, v: 2.0 },
                ],
            }]),
            warnings: vec![],
            infos: vec!["i".into()],
        };
        assert_eq!(
            query_body(&r),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"\"q\"\n"},"values":[[1,"NaN"],[2,"2"]]}]},"infos":["i"]}"#
        );
        let s = QueryResult {
            value: Value::Scalar { t: 4000, v: 2.0 },
            warnings: vec![],
            infos: vec![],
        };
        assert_eq!(
            query_body(&s),
            r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
        );
        let st = QueryResult {
            value: Value::String {
                t: 0,
                s: "x".into(),
            },
            warnings: vec![],
            infos: vec![],
        };
        assert_eq!(
            query_body(&st),
            r#"{"status":"success","data":{"resultType":"string","result":[0,"x"]}}"#
        );
    }

    #[test]
    fn error_body_shape() {
        assert_eq!(
            error_body("bad_data", "invalid parameter \"query\": x"),
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": x"}"#
        );
    }
}
