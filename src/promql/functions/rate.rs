//! rate, increase and delta (one extrapolating implementation), irate and idelta.

use super::{arg, hist_rate, map_windows, Args, Window};
use crate::model::Sample;
use crate::promql::eval::Evaluator;
use crate::promql::steps::Val;
use crate::promql::EngineError;

pub(crate) fn rate(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    extrapolated(ev, args, true, true)
}

pub(crate) fn increase(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    extrapolated(ev, args, true, false)
}

pub(crate) fn delta(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    extrapolated(ev, args, false, false)
}

pub(crate) fn irate(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    instant(ev, args, true)
}

pub(crate) fn idelta(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    instant(ev, args, false)
}

fn extrapolated(
    ev: &mut Evaluator<'_>,
    args: &Args,
    counter: bool,
    per_second: bool,
) -> Result<Val, EngineError> {
    let m = ev.eval_matrix(arg(args, 0)?)?;
    let mut out = map_windows(&m, false, |_, s, w| {
        extrapolated_rate(s, w, counter, per_second)
    })?;
    if counter {
        for s in &out {
            if let Some(name) = s.labels.metric_name() {
                if !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix))
                {
                    ev.ann.possible_non_counter(name);
                }
            }
        }
    }
    hist_rate::add_extrapolated(&m, counter, per_second, &mut out, ev.ann)?;
    Ok(Val::Vector(out))
}

/// Prometheus's extrapolatedRate over one window of float samples.
pub(crate) fn extrapolated_rate(
    s: &[Sample],
    w: &Window,
    counter: bool,
    per_second: bool,
) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut result = last.v - first.v;
    if counter {
        let mut prev = first.v;
        for p in &s[1..] {
            if p.v < prev {
                result += prev;
            }
            prev = p.v;
        }
    }
    let mut to_start = (first.t - w.lo) as f64 / 1000.0;
    let mut to_end = (w.hi - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_step = sampled / (s.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= w.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant(ev: &mut Evaluator<'_>, args: &Args, per_second: bool) -> Result<Val, EngineError> {
    let m = ev.eval_matrix(arg(args, 0)?)?;
    let mut out = map_windows(&m, false, |_, s, _| instant_value(s, per_second))?;
    hist_rate::add_instant(&m, per_second, &mut out, ev.ann)?;
    Ok(Val::Vector(out))
}

/// Prometheus's instantValue: from the last two samples of the window.
pub(crate) fn instant_value(s: &[Sample], per_second: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (prev, last) = (s[s.len() - 2], s[s.len() - 1]);
    let mut v = if per_second && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    if per_second {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use crate::model::{Labels, Sample};
    use crate::promql::labelset::drop_name;
    use crate::promql::testutil::{assert_matrix, random_series, range, source, steps, window};

    /// Plain extrapolation: correct the counter first, then stretch the
    /// sampled interval towards the window's edges.
    fn reference(w: &[Sample], t: i64, r: i64, counter: bool, per_second: bool) -> Option<f64> {
        if w.len() < 2 {
            return None;
        }
        let mut offset = 0.0;
        let mut corrected = Vec::new();
        for (i, p) in w.iter().enumerate() {
            if counter && i > 0 && p.v < w[i - 1].v {
                offset += w[i - 1].v;
            }
            corrected.push(p.v + offset);
        }
        let delta = corrected[corrected.len() - 1] - corrected[0];
        let (ft, lt) = (w[0].t as f64, w[w.len() - 1].t as f64);
        let span = lt - ft;
        let avg = span / (w.len() - 1) as f64;
        let gap_start = ft - (t - r) as f64;
        let gap_end = t as f64 - lt;
        let mut ext_start = if gap_start < avg * 1.1 {
            gap_start
        } else {
            avg / 2.0
        };
        if counter && delta > 0.0 && w[0].v >= 0.0 {
            ext_start = ext_start.min(span * w[0].v / delta);
        }
        let ext_end = if gap_end < avg * 1.1 {
            gap_end
        } else {
            avg / 2.0
        };
        let v = delta * (span + ext_start + ext_end) / span;
        Some(if per_second {
            v / (r as f64 / 1000.0)
        } else {
            v
        })
    }

    fn reference_instant(w: &[Sample], per_second: bool) -> Option<f64> {
        let [.., a, b] = w else { return None };
        if b.t == a.t {
            return None;
        }
        let d = if per_second && b.v < a.v {
            b.v
        } else {
            b.v - a.v
        };
        Some(if per_second {
            d / ((b.t - a.t) as f64 / 1000.0)
        } else {
            d
        })
    }

    #[test]
    fn rate_family_matches_reference_on_random_data() {
        for seed in 0..4 {
            let data = random_series(seed, "m_total", 6, 80, true);
            let src = source(&data);
            let (start, end, step) = steps(80);
            for (f, counter, per_second, instant) in [
                ("rate", true, true, false),
                ("increase", true, false, false),
                ("delta", false, false, false),
                ("irate", true, true, true),
                ("idelta", false, false, true),
            ] {
                for r in [60_000i64, 95_000, 300_000] {
                    let q = format!("{f}(m_total[{r}ms])");
                    let got = range(&src, &q, start, end, step);
                    let want = data
                        .iter()
                        .map(|s| {
                            let pts = (start..=end)
                                .step_by(step as usize)
                                .filter_map(|t| {
                                    let w = window(&s.samples, t, r);
                                    let v = if instant {
                                        reference_instant(&w, per_second)
                                    } else {
                                        reference(&w, t, r, counter, per_second)
                                    };
                                    v.map(|v| (t, v))
                                })
                                .collect();
                            (drop_name(&s.labels), pts)
                        })
                        .collect::<Vec<(Labels, _)>>();
                    assert_matrix(&q, &got, want);
                }
            }
        }
    }
}
