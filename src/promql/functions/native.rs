//! Functions of native histograms: histogram_count/sum/avg/stddev/stdvar,
//! and the native half of histogram_quantile and histogram_fraction.

use super::{arg, Args};
use crate::model::gomath;
use crate::model::histogram::{BucketBounds, FloatHistogram};
use crate::model::Labels;
use crate::promql::annotations::Annotations;
use crate::promql::eval::Evaluator;
use crate::promql::steps::{VSeries, Val};
use crate::promql::EngineError;

/// One float per histogram point of the argument; float points are dropped.
fn per_histogram(
    ev: &mut Evaluator<'_>,
    args: &Args,
    f: impl Fn(&FloatHistogram) -> f64,
) -> Result<Val, EngineError> {
    let v = ev.eval_vector(arg(args, 0)?)?;
    Ok(Val::Vector(map_histograms(
        &v,
        |_, h, _, _| Some(f(h)),
        ev.ann,
    )))
}

/// Maps every histogram point of `v` to a float (with its step); the name is dropped.
pub(crate) fn map_histograms(
    v: &[VSeries],
    mut f: impl FnMut(usize, &FloatHistogram, &Labels, &mut Annotations) -> Option<f64>,
    ann: &mut Annotations,
) -> Vec<VSeries> {
    let mut out = Vec::new();
    for s in v {
        if s.hists.iter().all(Option::is_none) {
            continue;
        }
        let vals: Vec<Option<f64>> = s
            .hists
            .iter()
            .enumerate()
            .map(|(i, h)| h.as_ref().and_then(|h| f(i, h, &s.labels, ann)))
            .collect();
        out.push(VSeries {
            labels: s.labels.clone(),
            drop_name: true,
            vals,
            hists: Vec::new(),
        });
    }
    out.retain(|s| !s.is_empty());
    out
}

pub(crate) fn histogram_count(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    per_histogram(ev, args, |h| h.count)
}

pub(crate) fn histogram_sum(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    per_histogram(ev, args, |h| h.sum)
}

pub(crate) fn histogram_avg(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    per_histogram(ev, args, |h| h.sum / h.count)
}

pub(crate) fn histogram_stddev(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    per_histogram(ev, args, |h| variance(h).sqrt())
}

pub(crate) fn histogram_stdvar(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    per_histogram(ev, args, variance)
}

/// Neumaier-compensated addition, as Prometheus's `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The estimated variance of the observations: each bucket's observations
/// sit at its (geometric, or for custom buckets arithmetic) middle.
fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let m = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -m
            } else {
                m
            }
        };
        let d = val - mean;
        (var, c) = kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

/// The `q`-quantile of the observations of `h` (Prometheus's `HistogramQuantile`).
pub(crate) fn quantile(q: f64, h: &FloatHistogram, metric: &str, ann: &mut Annotations) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let forward = h.sum.is_nan() || q < 0.5;
    let mut buckets = h.all_buckets();
    if !forward {
        buckets.reverse();
    }
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut pos = buckets.len();
    let mut b = BucketBounds {
        lower: 0.0,
        upper: 0.0,
        lower_inclusive: false,
        upper_inclusive: false,
        count: 0.0,
    };
    for (i, x) in buckets.iter().enumerate() {
        b = *x;
        pos = i + 1;
        if x.count == 0.0 {
            continue;
        }
        count += x.count;
        if count >= rank {
            break;
        }
    }
    if !h.uses_custom_buckets() && b.lower < 0.0 && b.upper > 0.0 {
        if h.negative.is_empty() && !h.positive.is_empty() {
            b.lower = 0.0;
        } else if h.positive.is_empty() && !h.negative.is_empty() {
            b.upper = 0.0;
        }
    } else if h.uses_custom_buckets() {
        if b.lower == f64::NEG_INFINITY {
            if b.upper <= 0.0 {
                return b.upper;
            }
            b.lower = 0.0;
        } else if b.upper == f64::INFINITY {
            return b.lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            ann.quantile_nan_result(metric);
            return f64::NAN;
        }
        return b.upper;
    }
    if forward {
        rank -= count - b.count;
    } else {
        rank = count - rank;
    }
    if h.sum.is_nan() {
        let rest: f64 = buckets[pos..].iter().map(|b| b.count).sum();
        if count + rest < h.count {
            ann.quantile_nan_skew(metric);
        }
    }
    let fraction = rank / b.count;
    if h.uses_custom_buckets() || (b.lower <= 0.0 && b.upper >= 0.0) {
        return b.lower + (b.upper - b.lower) * fraction;
    }
    // Go's Log2/Exp2, not libm's: they differ in the last bit.
    let log_lower = gomath::log2(b.lower.abs());
    let log_upper = gomath::log2(b.upper.abs());
    if b.lower > 0.0 {
        gomath::exp2(log_lower + (log_upper - log_lower) * fraction)
    } else {
        -gomath::exp2(log_upper + (log_lower - log_upper) * (1.0 - fraction))
    }
}

/// The fraction of observations of `h` between `lower` and `upper`
/// (Prometheus's `HistogramFraction`).
pub(crate) fn fraction(
    lower: f64,
    upper: f64,
    h: &FloatHistogram,
    metric: &str,
    ann: &mut Annotations,
) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let buckets = h.all_buckets();
    let mut consumed = buckets.len();
    for (i, b0) in buckets.iter().enumerate() {
        let mut b = *b0;
        count += b.count;
        let linear = |b: &BucketBounds, v: f64, rank: f64| {
            if b.lower == f64::NEG_INFINITY {
                return b.count;
            }
            rank + b.count * (v - b.lower) / (b.upper - b.lower)
        };
        let exponential = |b: &BucketBounds, v: f64, rank: f64| {
            let (ll, lu, lv) = (
                gomath::log2(b.lower.abs()),
                gomath::log2(b.upper.abs()),
                gomath::log2(v.abs()),
            );
            let f = if v > 0.0 {
                (lv - ll) / (lu - ll)
            } else {
                1.0 - ((lv - lu) / (ll - lu))
            };
            rank + b.count * f
        };
        let mut zero = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero = true;
            if h.negative.is_empty() && !h.positive.is_empty() {
                b.lower = 0.0;
            } else if h.positive.is_empty() && !h.negative.is_empty() {
                b.upper = 0.0;
            }
        }
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = i + 1;
            break;
        }
        let interp = |v: f64| {
            if h.uses_custom_buckets() || zero {
                linear(&b, v, rank)
            } else {
                exponential(&b, v, rank)
            }
        };
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = i + 1;
            break;
        }
        rank += b.count;
    }
    if h.sum.is_nan() {
        count += buckets[consumed.min(buckets.len())..]
            .iter()
            .map(|b| b.count)
            .sum::<f64>();
        if count < h.count {
            ann.fraction_nans(metric);
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / h.count
}
