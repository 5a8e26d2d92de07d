//! Native histogram test data: counter (integer and float), gauge and
//! custom-bucket histogram series with growing bucket layouts and a
//! counter reset, as remote-write messages.

use std::collections::BTreeMap;

use promfed::source::remote_read::prompb::{self, BucketSpan, HistogramCount, HistogramZeroCount};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::remote_write::labels;

/// The kinds of series [`series`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Integer counter histogram, exponential schema (HISTOGRAM chunks).
    IntCounter,
    /// Float counter histogram (FLOAT_HISTOGRAM chunks).
    FloatCounter,
    /// Integer gauge histogram (reset hint GAUGE).
    Gauge,
    /// Integer counter histogram with custom bucket bounds (NHCB).
    Custom,
}

/// Bounds of the custom-bucket series.
pub const CUSTOM_BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

fn spans(buckets: &BTreeMap<i32, f64>) -> Vec<BucketSpan> {
    let mut out: Vec<BucketSpan> = Vec::new();
    let mut next: Option<i32> = None;
    for &i in buckets.keys() {
        match (next, out.last_mut()) {
            (Some(n), Some(last)) if n == i => last.length += 1,
            (Some(n), _) => out.push(BucketSpan {
                offset: i - n,
                length: 1,
            }),
            (None, _) => out.push(BucketSpan {
                offset: i,
                length: 1,
            }),
        }
        next = Some(i + 1);
    }
    out
}

fn deltas(buckets: &BTreeMap<i32, f64>) -> Vec<i64> {
    let mut prev = 0i64;
    buckets
        .values()
        .map(|&c| {
            let c = c as i64;
            let d = c - prev;
            prev = c;
            d
        })
        .collect()
}

/// One histogram message from its buckets.
fn message(
    kind: Kind,
    t: i64,
    pos: &BTreeMap<i32, f64>,
    neg: &BTreeMap<i32, f64>,
    zero: f64,
    sum: f64,
) -> prompb::Histogram {
    let count = pos.values().sum::<f64>() + neg.values().sum::<f64>() + zero;
    let float = kind == Kind::FloatCounter;
    prompb::Histogram {
        count: Some(if float {
            HistogramCount::CountFloat(count)
        } else {
            HistogramCount::CountInt(count as u64)
        }),
        sum,
        schema: if kind == Kind::Custom { -53 } else { 1 },
        zero_threshold: if kind == Kind::Custom { 0.0 } else { 0.001 },
        zero_count: Some(if float {
            HistogramZeroCount::ZeroCountFloat(zero)
        } else {
            HistogramZeroCount::ZeroCountInt(zero as u64)
        }),
        negative_spans: spans(neg),
        negative_deltas: if float { Vec::new() } else { deltas(neg) },
        negative_counts: if float {
            neg.values().copied().collect()
        } else {
            Vec::new()
        },
        positive_spans: spans(pos),
        positive_deltas: if float { Vec::new() } else { deltas(pos) },
        positive_counts: if float {
            pos.values().copied().collect()
        } else {
            Vec::new()
        },
        reset_hint: if kind == Kind::Gauge { 3 } else { 0 },
        timestamp: t,
        custom_values: if kind == Kind::Custom {
            CUSTOM_BOUNDS.to_vec()
        } else {
            Vec::new()
        },
    }
}

/// `n` samples of one series of `kind` from `start` (ms) every 15 s with a
/// few ms of jitter, seeded by `seed`; `reset_at` restarts the counter at
/// that sample. Buckets appear as observations reach them, so the layout
/// grows over time (Prometheus recodes its chunks then).
pub fn histograms(
    kind: Kind,
    seed: u64,
    start: i64,
    n: usize,
    reset_at: Option<usize>,
) -> Vec<prompb::Histogram> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut pos, mut neg) = (BTreeMap::<i32, f64>::new(), BTreeMap::<i32, f64>::new());
    let (mut zero, mut sum) = (0.0f64, 0.0f64);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if Some(i) == reset_at {
            pos.clear();
            neg.clear();
            zero = 0.0;
            sum = 0.0;
        }
        if kind == Kind::Gauge {
            // A gauge: every sample is a fresh distribution.
            pos.clear();
            neg.clear();
            zero = 0.0;
            sum = 0.0;
        }
        let observations = rng.gen_range(0..12);
        for _ in 0..observations {
            let step = if kind == Kind::FloatCounter { 0.5 } else { 1.0 };
            match kind {
                Kind::Custom => {
                    let b = rng.gen_range(0..=CUSTOM_BOUNDS.len() as i32);
                    *pos.entry(b).or_default() += step;
                    sum += CUSTOM_BOUNDS.get(b as usize).copied().unwrap_or(4.0) * 0.9;
                }
                _ => {
                    // Exponential schema 1: index i covers (2^((i-1)/2), 2^(i/2)].
                    let idx = rng.gen_range(-4..(4 + (i as i32 / 40)));
                    let roll = rng.gen_range(0..10);
                    if roll == 0 {
                        zero += step;
                    } else if roll == 1 && kind != Kind::Custom {
                        *neg.entry(idx).or_default() += step;
                        sum -= 2f64.powf(idx as f64 / 2.0) * 0.9 * step;
                    } else {
                        *pos.entry(idx).or_default() += step;
                        sum += 2f64.powf(idx as f64 / 2.0) * 0.9 * step;
                    }
                }
            }
        }
        let t = start + i as i64 * 15_000 + rng.gen_range(0..40);
        out.push(message(kind, t, &pos, &neg, zero, sum));
    }
    out
}

/// A series of histogram samples with `pairs` as labels.
pub fn series(pairs: &[(&str, &str)], histograms: Vec<prompb::Histogram>) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels(pairs),
        samples: Vec::new(),
        histograms,
    }
}
