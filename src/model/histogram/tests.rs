use std::sync::Arc;

use super::upstream_cases::{ADD, DETECT_RESET, SUB};
use super::*;

/// A histogram as the transcribed upstream cases write it (spans and absolute counts).
pub(super) struct H {
    pub schema: i32,
    pub zt: f64,
    pub zc: f64,
    pub count: f64,
    pub sum: f64,
    pub ps: &'static [(i32, u32)],
    pub pb: &'static [f64],
    pub ns: &'static [(i32, u32)],
    pub nb: &'static [f64],
    pub cv: &'static [f64],
    pub hint: CounterResetHint,
}

impl H {
    fn build(&self) -> FloatHistogram {
        let spans = |s: &[(i32, u32)]| -> Vec<Span> {
            s.iter()
                .map(|&(offset, length)| Span { offset, length })
                .collect()
        };
        FloatHistogram {
            counter_reset_hint: self.hint,
            schema: self.schema,
            zero_threshold: self.zt,
            zero_count: self.zc,
            count: self.count,
            sum: self.sum,
            positive: FloatHistogram::buckets_from_spans(&spans(self.ps), self.pb)
                .expect("upstream case has consistent spans"),
            negative: FloatHistogram::buckets_from_spans(&spans(self.ns), self.nb)
                .expect("upstream case has consistent spans"),
            custom_values: Arc::from(self.cv),
        }
    }
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn detect_reset_as_prometheus() {
    assert!(DETECT_RESET.len() > 30);
    for (name, prev, cur, want) in DETECT_RESET {
        assert_eq!(cur.build().detect_reset(&prev.build()), *want, "{name}");
    }
}

/// (name, a, b, expected, error, counter reset collision, NHCB bounds reconciled)
type CombineCase = (&'static str, H, H, Option<H>, &'static str, bool, bool);

fn check_combine(
    op: &str,
    cases: &[CombineCase],
    f: impl Fn(&mut FloatHistogram, &FloatHistogram) -> Result<ops::Combined, HistogramError>,
) {
    for (name, a, b, want, err, collision, reconciled) in cases {
        let mut got = a.build();
        match f(&mut got, &b.build()) {
            Err(e) => assert_eq!(e.to_string(), *err, "{op} {name}"),
            Ok(c) => {
                assert!(err.is_empty(), "{op} {name}: expected error {err}");
                assert_eq!(c.counter_reset_collision, *collision, "{op} {name}");
                assert_eq!(c.nhcb_bounds_reconciled, *reconciled, "{op} {name}");
                if let Some(w) = want {
                    let w = w.build();
                    assert!(
                        got.approx_eq(&w, same),
                        "{op} {name}: got {got:?}, want {w:?}"
                    );
                    assert_eq!(got.counter_reset_hint, w.counter_reset_hint, "{op} {name}");
                }
            }
        }
    }
}

#[test]
fn add_as_prometheus() {
    assert!(ADD.len() > 15);
    check_combine("add", ADD, |a, b| a.add(b));
}

#[test]
fn sub_as_prometheus() {
    assert!(SUB.len() > 5);
    check_combine("sub", SUB, |a, b| a.sub(b));
}

#[test]
fn exponential_bounds() {
    // Schema 0: powers of two; schema 3: 2^(1/8) steps; the last finite bucket ends at f64::MAX.
    assert_eq!(exponential_bound(0, 0), 1.0);
    assert_eq!(exponential_bound(3, 0), 8.0);
    assert_eq!(exponential_bound(-2, 0), 0.25);
    // Prometheus's table value for schema 3, index 1 (0.5452538663326288 · 2).
    assert_eq!(exponential_bound(1, 3), 1.0905077326652576);
    assert_eq!(exponential_bound(1024, 0), f64::MAX);
    assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
    assert_eq!(exponential_bound(256, -2), f64::MAX);
    assert_eq!(exponential_bound(1, -2), 16.0);
}

#[test]
fn spans_round_trip() {
    let spans = [
        Span {
            offset: -2,
            length: 2,
        },
        Span {
            offset: 3,
            length: 1,
        },
    ];
    let b = FloatHistogram::buckets_from_spans(&spans, &[1.0, 2.0, 3.0]).expect("valid");
    let idx: Vec<i32> = b.iter().map(|b| b.index).collect();
    assert_eq!(idx, vec![-2, -1, 3]);
    let (s, c) = FloatHistogram::spans_of(&b);
    assert_eq!(s, spans.to_vec());
    assert_eq!(c, vec![1.0, 2.0, 3.0]);
    let d = FloatHistogram::buckets_from_int_spans(&spans, &[1, 1, 1]).expect("valid");
    assert_eq!(d, b);
    assert_eq!(
        FloatHistogram::buckets_from_spans(&spans, &[1.0]),
        Err(HistogramError::SpansBucketsMismatch)
    );
}

#[test]
fn mul_div_by_scalar() {
    let mut h = H {
        schema: 0,
        zt: 0.001,
        zc: 2.0,
        count: 6.0,
        sum: 10.0,
        ps: &[(0, 2)],
        pb: &[1.0, 3.0],
        ns: &[],
        nb: &[],
        cv: &[],
        hint: CounterResetHint::NotCounterReset,
    }
    .build();
    h.mul(2.0);
    assert_eq!(
        (h.count, h.sum, h.zero_count, h.positive[1].count),
        (12.0, 20.0, 4.0, 6.0)
    );
    assert_eq!(h.counter_reset_hint, CounterResetHint::NotCounterReset);
    h.div(-4.0);
    assert_eq!((h.count, h.positive[1].count), (-3.0, -1.5));
    assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    h.div(0.0);
    assert!(h.positive.is_empty() && h.count.is_infinite());
}

#[test]
fn hostile_schemas_and_indexes_do_not_panic() {
    // Values a backend could send; validate() refuses them, but nothing may panic.
    for schema in [i32::MIN, -100, -5, 9, 100, i32::MAX] {
        for index in [i32::MIN, -1, 0, 1, i32::MAX] {
            let _ = exponential_bound(index, schema.max(-5000));
            let h = FloatHistogram {
                schema,
                count: 1.0,
                positive: vec![Bucket { index, count: 1.0 }],
                negative: vec![Bucket { index, count: 1.0 }],
                ..FloatHistogram::default()
            };
            let _ = h.all_buckets();
            let _ = h.validate();
            let mut a = h.clone();
            let mut b = h.clone();
            b.schema = 0;
            b.zero_threshold = 0.5;
            let _ = a.add(&b);
            let _ = b.sub(&h);
            let _ = h.detect_reset(&b);
            let _ = b.detect_reset(&h);
        }
    }
}
