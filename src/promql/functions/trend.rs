//! Trends over a window: deriv, predict_linear, double_exponential_smoothing.

use super::{arg, map_windows, Args, Window};
use crate::model::Sample;
use crate::promql::aggregate::kahan_inc;
use crate::promql::eval::Evaluator;
use crate::promql::steps::Val;
use crate::promql::EngineError;

/// Least-squares fit `(slope, intercept)` with x in seconds from `intercept_t`.
pub(crate) fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = s[0].v;
    let mut const_y = true;
    for (i, p) in s.iter().enumerate() {
        if const_y && i > 0 && p.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

pub(crate) fn deriv(s: &[Sample], _: &Window) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    Some(linear_regression(s, s[0].t).0)
}

pub(crate) fn predict_linear(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let m = ev.eval_matrix(arg(args, 0)?)?;
    super::hist_over_time::note_mixed_ranges(&m, ev.ann);
    let d = ev.eval_scalar(arg(args, 1)?)?;
    let grid = ev.grid;
    Ok(Val::Vector(map_windows(&m, false, |i, s, _| {
        if s.len() < 2 {
            return None;
        }
        let (slope, intercept) = linear_regression(s, grid.ts(i));
        Some(slope * d[i] + intercept)
    })?))
}

pub(crate) fn double_exponential_smoothing(
    ev: &mut Evaluator<'_>,
    args: &Args,
) -> Result<Val, EngineError> {
    let m = ev.eval_matrix(arg(args, 0)?)?;
    super::hist_over_time::note_mixed_ranges(&m, ev.ann);
    let sf = ev.eval_scalar(arg(args, 1)?)?;
    let tf = ev.eval_scalar(arg(args, 2)?)?;
    for (&sf, &tf) in sf.iter().zip(&tf) {
        if !(sf > 0.0 && sf < 1.0) {
            return Err(EngineError::Execution(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
            )));
        }
        if !(tf > 0.0 && tf < 1.0) {
            return Err(EngineError::Execution(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
            )));
        }
    }
    Ok(Val::Vector(map_windows(&m, false, |i, s, _| {
        smooth(s, sf[i], tf[i])
    })?))
}

fn smooth(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, p) in s.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use crate::model::{Labels, Sample};
    use crate::promql::labelset::drop_name;
    use crate::promql::testutil::{assert_matrix, random_series, range, source, steps, window};

    /// Two-pass least squares: (slope, value at `x0`), x in seconds.
    fn fit(w: &[Sample], x0: i64) -> (f64, f64) {
        let n = w.len() as f64;
        let xs: Vec<f64> = w.iter().map(|p| (p.t - x0) as f64 / 1000.0).collect();
        let mx = xs.iter().sum::<f64>() / n;
        let my = w.iter().map(|p| p.v).sum::<f64>() / n;
        let sxy: f64 = xs.iter().zip(w).map(|(x, p)| (x - mx) * (p.v - my)).sum();
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let slope = sxy / sxx;
        (slope, my - slope * mx)
    }

    #[test]
    fn deriv_and_predict_linear_match_least_squares() {
        for seed in 20..23 {
            // Finite values only: the closed forms differ in how Inf cancels.
            let data = random_series(seed, "m", 4, 60, false);
            let src = source(&data);
            let (start, end, step) = steps(60);
            for (q, predict) in [
                ("deriv(m[3m])", false),
                ("predict_linear(m[3m], 600)", true),
            ] {
                let got = range(&src, q, start, end, step);
                let want = data
                    .iter()
                    .map(|s| {
                        let pts = (start..=end)
                            .step_by(step as usize)
                            .filter_map(|t| {
                                let w = window(&s.samples, t, 180_000);
                                if w.len() < 2 {
                                    return None;
                                }
                                let v = if predict {
                                    let (slope, at_t) = fit(&w, t);
                                    slope * 600.0 + at_t
                                } else {
                                    fit(&w, w[0].t).0
                                };
                                Some((t, v))
                            })
                            .collect();
                        (drop_name(&s.labels), pts)
                    })
                    .collect::<Vec<(Labels, _)>>();
                assert_matrix(q, &got, want);
            }
        }
    }
}
