//! The `*_over_time` family, `ts_of_*_over_time`, changes and resets.

use super::{arg, map_windows, quantile, Args, Window};
use crate::model::Sample;
use crate::promql::aggregate::kahan_inc;
use crate::promql::eval::Evaluator;
use crate::promql::steps::Val;
use crate::promql::EngineError;

pub(crate) fn avg(s: &[Sample], _: &Window) -> Option<f64> {
    let first = s.first()?;
    let (mut sum, mut c, mut mean, mut incremental) = (first.v, 0.0, 0.0, false);
    let mut count = 1.0;
    for p in &s[1..] {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(p.v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(p.v / count, q * mean, q * c);
    }
    Some(if incremental {
        mean + c
    } else {
        sum / count + c / count
    })
}

pub(crate) fn sum(s: &[Sample], _: &Window) -> Option<f64> {
    let (mut sum, mut c) = (0.0, 0.0);
    for p in s {
        (sum, c) = kahan_inc(p.v, sum, c);
    }
    Some(if sum.is_infinite() { sum } else { sum + c })
}

pub(crate) fn min(s: &[Sample], _: &Window) -> Option<f64> {
    let mut m = s.first()?.v;
    for p in s {
        if p.v < m || m.is_nan() {
            m = p.v;
        }
    }
    Some(m)
}

pub(crate) fn max(s: &[Sample], _: &Window) -> Option<f64> {
    let mut m = s.first()?.v;
    for p in s {
        if p.v > m || m.is_nan() {
            m = p.v;
        }
    }
    Some(m)
}

pub(crate) fn count(s: &[Sample], _: &Window) -> Option<f64> {
    Some(s.len() as f64)
}

pub(crate) fn last(s: &[Sample], _: &Window) -> Option<f64> {
    s.last().map(|p| p.v)
}

pub(crate) fn first(s: &[Sample], _: &Window) -> Option<f64> {
    s.first().map(|p| p.v)
}

pub(crate) fn present(_: &[Sample], _: &Window) -> Option<f64> {
    Some(1.0)
}

fn variance(s: &[Sample]) -> f64 {
    let (mut n, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        n += 1.0;
        let delta = p.v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / n, mean, cmean);
        (aux, caux) = kahan_inc(delta * (p.v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / n
}

pub(crate) fn stdvar(s: &[Sample], _: &Window) -> Option<f64> {
    Some(variance(s))
}

pub(crate) fn stddev(s: &[Sample], _: &Window) -> Option<f64> {
    Some(variance(s).sqrt())
}

pub(crate) fn mad(s: &[Sample], _: &Window) -> Option<f64> {
    let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
    let median = quantile(0.5, &mut v);
    let mut d: Vec<f64> = s.iter().map(|p| (p.v - median).abs()).collect();
    Some(quantile(0.5, &mut d))
}

fn ts_of(s: &[Sample], better: impl Fn(f64, f64) -> bool) -> Option<f64> {
    let mut best = *s.first()?;
    for p in s {
        if better(p.v, best.v) {
            best = *p;
        }
    }
    Some(best.t as f64 / 1000.0)
}

pub(crate) fn ts_of_min(s: &[Sample], _: &Window) -> Option<f64> {
    ts_of(s, |cur, best| cur <= best || best.is_nan())
}

pub(crate) fn ts_of_max(s: &[Sample], _: &Window) -> Option<f64> {
    ts_of(s, |cur, best| cur >= best || best.is_nan())
}

pub(crate) fn ts_of_first(s: &[Sample], _: &Window) -> Option<f64> {
    s.first().map(|p| p.t as f64 / 1000.0)
}

pub(crate) fn ts_of_last(s: &[Sample], _: &Window) -> Option<f64> {
    s.last().map(|p| p.t as f64 / 1000.0)
}

pub(crate) fn changes(s: &[Sample], _: &Window) -> Option<f64> {
    let mut n = 0.0;
    for w in s.windows(2) {
        let (prev, cur) = (w[0].v, w[1].v);
        if cur != prev && !(cur.is_nan() && prev.is_nan()) {
            n += 1.0;
        }
    }
    Some(n)
}

pub(crate) fn resets(s: &[Sample], _: &Window) -> Option<f64> {
    Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64)
}

pub(crate) fn quantile_over_time(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let q = ev.eval_scalar(arg(args, 0)?)?;
    let m = ev.eval_matrix(arg(args, 1)?)?;
    super::hist_over_time::note_mixed_ranges(&m, ev.ann);
    let out = map_windows(&m, false, |i, s, _| {
        let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
        Some(quantile(q[i], &mut v))
    })?;
    if !out.is_empty() {
        for &q in &q {
            if !(0.0..=1.0).contains(&q) {
                ev.ann.invalid_quantile(q);
            }
        }
    }
    Ok(Val::Vector(out))
}

#[cfg(test)]
mod tests {
    use crate::model::{Labels, Sample};
    use crate::promql::labelset::drop_name;
    use crate::promql::testutil::{assert_matrix, random_series, range, source, steps, window};

    fn finite_or_nan<I: Iterator<Item = f64>>(it: I, pick: fn(f64, f64) -> f64) -> f64 {
        it.filter(|v| !v.is_nan()).reduce(pick).unwrap_or(f64::NAN)
    }

    fn median_sorted(mut v: Vec<f64>, q: f64) -> f64 {
        // NaN sorts first, as Prometheus's quantile does.
        v.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => a.total_cmp(b),
        });
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - pos.floor())
    }

    fn variance(v: &[f64]) -> f64 {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n
    }

    /// Plain definitions of each function over one window.
    fn reference(f: &str, w: &[Sample]) -> Option<f64> {
        if w.is_empty() {
            return None;
        }
        let v: Vec<f64> = w.iter().map(|p| p.v).collect();
        Some(match f {
            "sum_over_time" => v.iter().sum(),
            "avg_over_time" => v.iter().sum::<f64>() / v.len() as f64,
            "min_over_time" => finite_or_nan(v.iter().copied(), f64::min),
            "max_over_time" => finite_or_nan(v.iter().copied(), f64::max),
            "count_over_time" => v.len() as f64,
            "last_over_time" => v[v.len() - 1],
            "first_over_time" => v[0],
            "present_over_time" => 1.0,
            "stdvar_over_time" => variance(&v),
            "stddev_over_time" => variance(&v).sqrt(),
            "quantile_over_time" => median_sorted(v, 0.3),
            "changes" => v
                .windows(2)
                .filter(|p| !(p[0] == p[1] || (p[0].is_nan() && p[1].is_nan())))
                .count() as f64,
            "resets" => v.windows(2).filter(|p| p[1] < p[0]).count() as f64,
            "ts_of_last_over_time" => w[w.len() - 1].t as f64 / 1000.0,
            "ts_of_first_over_time" => w[0].t as f64 / 1000.0,
            other => panic!("no reference for {other}"),
        })
    }

    #[test]
    fn over_time_family_matches_reference_on_random_data() {
        let fns = [
            "sum_over_time",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "count_over_time",
            "last_over_time",
            "first_over_time",
            "present_over_time",
            "stdvar_over_time",
            "stddev_over_time",
            "quantile_over_time",
            "changes",
            "resets",
            "ts_of_last_over_time",
            "ts_of_first_over_time",
        ];
        for seed in 10..13 {
            let data = random_series(seed, "m", 5, 60, true);
            let src = source(&data);
            let (start, end, step) = steps(60);
            for f in fns {
                let q = if f == "quantile_over_time" {
                    format!("{f}(0.3, m[2m])")
                } else {
                    format!("{f}(m[2m])")
                };
                let got = range(&src, &q, start, end, step);
                let keep_name = matches!(f, "last_over_time" | "first_over_time");
                let want = data
                    .iter()
                    .map(|s| {
                        let pts = (start..=end)
                            .step_by(step as usize)
                            .filter_map(|t| {
                                reference(f, &window(&s.samples, t, 120_000)).map(|v| (t, v))
                            })
                            .collect();
                        let l = if keep_name {
                            s.labels.clone()
                        } else {
                            drop_name(&s.labels)
                        };
                        (l, pts)
                    })
                    .collect::<Vec<(Labels, _)>>();
                assert_matrix(&q, &got, want);
            }
        }
    }
}
