//! Classic-bucket histograms: histogram_quantile and histogram_fraction over `le` buckets.

use std::collections::HashMap;

use super::{arg, native, Args};
use crate::model::Labels;
use crate::promql::eval::Evaluator;
use crate::promql::labelset::full_key;
use crate::promql::steps::{VSeries, Val};
use crate::promql::EngineError;

const BUCKET_LABEL: &str = "le";
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// One bucket: upper bound and cumulative count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Parses an `le` value as Go's `strconv.ParseFloat` would.
pub(crate) fn parse_le(s: &str) -> Option<f64> {
    let t = s.trim();
    if t != s || t.is_empty() {
        return None;
    }
    match t.to_ascii_lowercase().trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            return Some(if t.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.replace('_', "").parse::<f64>().ok()
}

/// One histogram: output labels, metric name, and (bound, series index) per bucket.
type Group = (Labels, Option<String>, Vec<(f64, usize)>);

/// Series grouped by their labels without `le`.
struct Groups {
    groups: Vec<Group>,
}

fn group_buckets(ev: &mut Evaluator<'_>, v: &[VSeries]) -> Groups {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for (i, s) in v.iter().enumerate() {
        if s.vals.iter().all(Option::is_none) {
            // Only native histogram points: not a classic bucket.
            continue;
        }
        let le = s.labels.get(BUCKET_LABEL).unwrap_or("");
        let Some(upper) = parse_le(le) else {
            let name = s.labels.metric_name().unwrap_or("").to_string();
            ev.ann.bad_bucket_label(&name, le);
            continue;
        };
        let mut labels = s.labels.clone();
        labels.remove(BUCKET_LABEL);
        let key = full_key(&labels);
        let gi = *index.entry(key).or_insert_with(|| {
            let name = labels.metric_name().map(str::to_string);
            groups.push((labels, name, Vec::new()));
            groups.len() - 1
        });
        groups[gi].2.push((upper, i));
    }
    Groups { groups }
}

fn evaluate(
    ev: &mut Evaluator<'_>,
    v: &[VSeries],
    mut f: impl FnMut(usize, &mut Vec<Bucket>, &mut bool) -> f64,
) -> Vec<VSeries> {
    let n = ev.grid.len();
    let g = group_buckets(ev, v);
    let mut out = Vec::new();
    for (labels, name, members) in g.groups {
        let mut vals = vec![None; n];
        let mut forced = false;
        let mut buckets = Vec::with_capacity(members.len());
        for (step, val) in vals.iter_mut().enumerate() {
            buckets.clear();
            for &(upper, i) in &members {
                if let Some(c) = v[i].vals[step] {
                    buckets.push(Bucket { upper, count: c });
                }
            }
            if buckets.is_empty() {
                continue;
            }
            *val = Some(f(step, &mut buckets, &mut forced));
        }
        if forced {
            ev.ann.histogram_monotonicity(name.as_deref().unwrap_or(""));
        }
        out.push(VSeries {
            labels,
            drop_name: true,
            vals,
            hists: Vec::new(),
        });
    }
    out.retain(|s| !s.is_empty());
    out
}

pub(crate) fn histogram_quantile(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let q = ev.eval_scalar(arg(args, 0)?)?;
    let v = ev.eval_vector(arg(args, 1)?)?;
    for &q in &q {
        if !(0.0..=1.0).contains(&q) {
            ev.ann.invalid_quantile(q);
        }
    }
    let mut out = evaluate(ev, &v, |step, b, forced| {
        let (r, f) = bucket_quantile(q[step], b);
        *forced |= f;
        r
    });
    let native = native::map_histograms(
        &without_mixed(ev, &v, &mut out),
        |step, h, l, ann| {
            Some(native::quantile(
                q[step],
                h,
                l.metric_name().unwrap_or(""),
                ann,
            ))
        },
        ev.ann,
    );
    out.extend(native);
    Ok(Val::Vector(out))
}

pub(crate) fn histogram_fraction(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let lo = ev.eval_scalar(arg(args, 0)?)?;
    let hi = ev.eval_scalar(arg(args, 1)?)?;
    let v = ev.eval_vector(arg(args, 2)?)?;
    let mut out = evaluate(ev, &v, |step, b, _| bucket_fraction(lo[step], hi[step], b));
    let native = native::map_histograms(
        &without_mixed(ev, &v, &mut out),
        |step, h, l, ann| {
            Some(native::fraction(
                lo[step],
                hi[step],
                h,
                l.metric_name().unwrap_or(""),
                ann,
            ))
        },
        ev.ann,
    );
    out.extend(native);
    Ok(Val::Vector(out))
}

/// The series of `v` holding native histograms, without the points where
/// classic buckets of the same labels (a result in `classic`) exist too:
/// those are warned about and both left out, as Prometheus does.
fn without_mixed(
    ev: &mut Evaluator<'_>,
    v: &[VSeries],
    classic: &mut Vec<VSeries>,
) -> Vec<VSeries> {
    let mut out = Vec::new();
    for s in v.iter().filter(|s| s.hists.iter().any(Option::is_some)) {
        let mut s = s.clone();
        if let Some(c) = classic.iter_mut().find(|c| c.labels == s.labels) {
            for (i, h) in s.hists.iter_mut().enumerate() {
                if h.is_some() && c.vals.get(i).copied().flatten().is_some() {
                    *h = None;
                    c.vals[i] = None;
                    ev.ann
                        .mixed_classic_native(s.labels.metric_name().unwrap_or(""));
                }
            }
        }
        out.push(s);
    }
    classic.retain(|c| !c.is_empty());
    out
}

fn sort_and_coalesce(b: &mut Vec<Bucket>) {
    b.sort_by(|x, y| {
        x.upper
            .partial_cmp(&y.upper)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut out: Vec<Bucket> = Vec::with_capacity(b.len());
    for &x in b.iter() {
        match out.last_mut() {
            Some(l) if l.upper == x.upper => l.count += x.count,
            _ => out.push(x),
        }
    }
    *b = out;
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if (a.is_nan() && b.is_nan()) || a == b {
        return true;
    }
    let sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || sum < min_normal {
        return diff < eps * min_normal;
    }
    diff / sum.min(f64::MAX) < eps
}

/// Makes counts monotonic; true when a real decrease had to be removed.
fn ensure_monotonic(b: &mut [Bucket]) -> bool {
    let mut forced = false;
    let Some(first) = b.first() else {
        return false;
    };
    let mut prev = first.count;
    for x in b.iter_mut().skip(1) {
        let cur = x.count;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, SMALL_DELTA_TOLERANCE) {
            x.count = prev;
            continue;
        }
        if cur < prev {
            x.count = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    forced
}

/// Prometheus's BucketQuantile: `(value, forced monotonic)`.
pub(crate) fn bucket_quantile(q: f64, b: &mut Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    sort_and_coalesce(b);
    match b.last() {
        Some(l) if l.upper == f64::INFINITY => {}
        _ => return (f64::NAN, false),
    }
    let forced = ensure_monotonic(b);
    if b.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = b[b.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let idx = b[..b.len() - 1].partition_point(|x| x.count < rank);
    if idx == b.len() - 1 {
        return (b[b.len() - 2].upper, forced);
    }
    if idx == 0 && b[0].upper <= 0.0 {
        return (b[0].upper, forced);
    }
    let end = b[idx].upper;
    let mut count = b[idx].count;
    let mut start = 0.0;
    if idx > 0 {
        start = b[idx - 1].upper;
        count -= b[idx - 1].count;
        rank -= b[idx - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// Prometheus's BucketFraction: the share of observations in `[lower, upper]`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, b: &mut Vec<Bucket>) -> f64 {
    sort_and_coalesce(b);
    match b.last() {
        Some(l) if l.upper == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    let count = b[b.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, x) in b.iter().enumerate() {
        let ub = x.upper;
        // The first bucket starts at 0 when its upper bound is positive.
        let lb = match i {
            0 if ub > 0.0 => 0.0,
            0 => f64::NEG_INFINITY,
            _ => b[i - 1].upper,
        };
        // No interpolation within a bucket of infinite width: its
        // observations sit at its finite edge.
        let interpolate = |v: f64| {
            if lb == f64::NEG_INFINITY {
                x.count
            } else if ub == f64::INFINITY {
                rank
            } else {
                rank + (x.count - rank) * (v - lb) / (ub - lb)
            }
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = x.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::model::{Labels, Sample, Series};
    use crate::promql::testutil::{assert_matrix, range, source};

    const BOUNDS: [f64; 6] = [0.1, 0.5, 1.0, 2.5, 10.0, f64::INFINITY];

    /// Linear interpolation within the bucket holding the rank; the first
    /// bucket starts at 0, a rank in the +Inf bucket gives the last finite bound.
    fn reference(q: f64, counts: &[f64]) -> f64 {
        let total = counts[counts.len() - 1];
        if total == 0.0 {
            return f64::NAN;
        }
        let rank = q * total;
        for (i, &c) in counts.iter().enumerate() {
            if c >= rank {
                if i == counts.len() - 1 {
                    return BOUNDS[i - 1];
                }
                let (lo, below) = if i == 0 {
                    (0.0, 0.0)
                } else {
                    (BOUNDS[i - 1], counts[i - 1])
                };
                return lo + (BOUNDS[i] - lo) * (rank - below) / (c - below);
            }
        }
        BOUNDS[BOUNDS.len() - 2]
    }

    #[test]
    fn histogram_quantile_matches_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(70);
        let mut data = Vec::new();
        let mut expected_counts: Vec<Vec<Vec<f64>>> = Vec::new(); // [series][step][bucket]
        for h in 0..4 {
            let mut per_step = Vec::new();
            let mut series: Vec<Series> = BOUNDS
                .iter()
                .map(|b| Series {
                    labels: Labels::from_pairs([
                        ("__name__", "d_bucket".to_string()),
                        ("h", h.to_string()),
                        (
                            "le",
                            if b.is_infinite() {
                                "+Inf".to_string()
                            } else {
                                b.to_string()
                            },
                        ),
                    ]),
                    samples: Vec::new(),
                    histograms: Vec::new(),
                })
                .collect();
            for k in 0..10 {
                let mut acc = 0.0;
                let mut counts = Vec::new();
                for s in series.iter_mut() {
                    acc += rng.gen_range(0.0..5.0f64).floor();
                    counts.push(acc);
                    s.samples.push(Sample {
                        t: k * 60_000,
                        v: acc,
                    });
                }
                per_step.push(counts);
            }
            data.extend(series);
            expected_counts.push(per_step);
        }
        let src = source(&data);
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 1.0] {
            let query = format!("histogram_quantile({q}, d_bucket)");
            let got = range(&src, &query, 0, 540_000, 60_000);
            let want = (0..4)
                .map(|h| {
                    let pts = (0..10)
                        .map(|k| (k as i64 * 60_000, reference(q, &expected_counts[h][k])))
                        .collect();
                    (Labels::from_pairs([("h", h.to_string())]), pts)
                })
                .collect();
            assert_matrix(&query, &got, want);
        }
    }
}
