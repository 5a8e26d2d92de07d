//! Test helpers: seeded random series (with NaN, ±Inf and staleness markers),
//! a blocking query runner and plain reference building blocks.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Engine, QueryOptions, Value};
use crate::model::{is_stale_nan, stale_nan, Labels, Sample, Series};
use crate::source::memory::MemorySource;

/// Scrape interval of the random data, ms.
pub(crate) const SCRAPE: i64 = 15_000;

/// `n` random series of metric `name` (label `i`), about `len` samples each
/// every ~15 s with jitter and gaps; values are counters with resets,
/// sprinkled with NaN, ±Inf and staleness markers when `special` is set.
pub(crate) fn random_series(
    seed: u64,
    name: &str,
    n: usize,
    len: usize,
    special: bool,
) -> Vec<Series> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", name.to_string()),
                ("i", i.to_string()),
                ("g", (i % 3).to_string()),
            ]);
            let mut v: f64 = rng.gen_range(0.0..100.0);
            let mut samples = Vec::new();
            for k in 0..len as i64 {
                if rng.gen_bool(0.05) {
                    continue; // a missed scrape
                }
                let t = k * SCRAPE + rng.gen_range(0..2_000);
                v += rng.gen_range(0.0..20.0f64).floor();
                if rng.gen_bool(0.03) {
                    v = rng.gen_range(0.0..5.0f64).floor(); // counter reset
                }
                let x = if special {
                    match rng.gen_range(0..100) {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        2 => f64::NEG_INFINITY,
                        3 | 4 => stale_nan(),
                        _ => v,
                    }
                } else {
                    v
                };
                samples.push(Sample { t, v: x });
            }
            Series {
                labels,
                samples,
                histograms: Vec::new(),
            }
        })
        .collect()
}

pub(crate) fn source(series: &[Series]) -> MemorySource {
    let mut src = MemorySource::new();
    for s in series {
        src.add_series(s.clone());
    }
    src
}

/// Runs a range query to completion on a fresh runtime.
pub(crate) fn range(src: &MemorySource, q: &str, start: i64, end: i64, step: i64) -> Vec<Series> {
    let engine = Engine::new(Arc::new(src.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    match rt.block_on(engine.range(q, start, end, step, &QueryOptions::default())) {
        Ok(r) => match r.value {
            Value::Matrix(m) => m,
            other => panic!("{q}: not a matrix: {other:?}"),
        },
        Err(e) => panic!("{q}: {e}"),
    }
}

/// The samples a range selector sees at `t`: `(t - range, t]` without staleness markers.
pub(crate) fn window(s: &[Sample], t: i64, range: i64) -> Vec<Sample> {
    s.iter()
        .filter(|p| p.t > t - range && p.t <= t && !is_stale_nan(p.v))
        .copied()
        .collect()
}

/// The value an instant selector sees at `t` (5 m lookback).
pub(crate) fn at(s: &[Sample], t: i64) -> Option<f64> {
    s.iter()
        .rev()
        .find(|p| p.t <= t)
        .filter(|p| p.t > t - 300_000 && !is_stale_nan(p.v))
        .map(|p| p.v)
}

/// Equal within a relative 1e-9, NaN equal to NaN.
pub(crate) fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

/// Asserts that `got` holds exactly `want`: per label set, `(t, v)` points.
pub(crate) fn assert_matrix(q: &str, got: &[Series], mut want: Vec<(Labels, Vec<(i64, f64)>)>) {
    want.retain(|(_, p)| !p.is_empty());
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got.iter().map(|s| &s.labels).collect::<Vec<_>>(),
        want.iter().map(|s| &s.0).collect::<Vec<_>>(),
        "{q}: series differ"
    );
    for (g, (l, w)) in got.iter().zip(&want) {
        assert_eq!(
            g.samples.len(),
            w.len(),
            "{q} {l}: point count: got {:?} want {w:?}",
            g.samples
        );
        for (gs, &(t, v)) in g.samples.iter().zip(w) {
            assert_eq!(gs.t, t, "{q} {l}");
            assert!(close(gs.v, v), "{q} {l} @{t}: got {} want {v}", gs.v);
        }
    }
}

/// Evaluation steps used by the family tests: every 40 s over the data.
pub(crate) fn steps(len: usize) -> (i64, i64, i64) {
    (0, len as i64 * SCRAPE + 60_000, 40_000)
}
