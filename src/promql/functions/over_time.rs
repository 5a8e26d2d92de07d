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
    let out = map_windows(&m, false, |i, s, _| {
        let mut v: Vec<f64> = s.iter().map(|p| p.v).collect();
        Some(quantile(q[i], &mut v))
    });
    if !out.is_empty() {
        for &q in &q {
            if !(0.0..=1.0).contains(&q) {
                ev.ann.invalid_quantile(q);
            }
        }
    }
    Ok(Val::Vector(out))
}
