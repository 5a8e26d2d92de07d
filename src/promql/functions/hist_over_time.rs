//! The `*_over_time` functions that accept native histograms: count,
//! present, last, first, sum and avg over windows holding histograms.

use std::sync::Arc;

use crate::limits::meter;
use crate::model::histogram::{CounterResetHint, FloatHistogram, HistogramSample};
use crate::promql::annotations::{Annotations, HistOp};
use crate::promql::steps::{RangeVec, VSeries};
use crate::promql::EngineError;

/// The histogram samples of `hs` in the window `(lo, hi]`.
fn window(hs: &[HistogramSample], lo: i64, hi: i64) -> &[HistogramSample] {
    let a = hs.partition_point(|s| s.t <= lo);
    let b = hs.partition_point(|s| s.t <= hi);
    &hs[a..b.max(a)]
}

/// Sum of histograms as Prometheus's aggregation adds them; `None` when
/// exponential and custom-bucket histograms meet.
pub(crate) fn sum_histograms<'a>(
    hs: impl Iterator<Item = &'a FloatHistogram>,
    ann: &mut Annotations,
    metric: &str,
) -> Option<FloatHistogram> {
    let mut acc: Option<FloatHistogram> = None;
    let (mut reset, mut not_reset) = (false, false);
    for h in hs {
        match h.counter_reset_hint {
            CounterResetHint::CounterReset => reset = true,
            CounterResetHint::NotCounterReset => not_reset = true,
            _ => {}
        }
        match acc.as_mut() {
            None => acc = Some(h.clone()),
            Some(a) => match a.add(h) {
                Ok(c) => {
                    if c.nhcb_bounds_reconciled {
                        ann.mismatched_custom_buckets(HistOp::Agg);
                    }
                }
                Err(_) => {
                    ann.mixed_exponential_custom(metric);
                    return None;
                }
            },
        }
    }
    if reset && not_reset {
        ann.counter_reset_collision(HistOp::Agg);
    }
    acc
}

/// Adds the histogram windows of `m` to `out` (the float results of the
/// same function over `m`) for the functions that accept histograms; the
/// others only note, where a window held both kinds, that histograms were ignored.
pub(crate) fn add_histogram_windows(
    name: &str,
    m: &RangeVec,
    keep_name: bool,
    out: &mut Vec<VSeries>,
    ann: &mut Annotations,
) -> Result<(), EngineError> {
    let n = m.windows.len();
    for s in m.series.iter().filter(|s| !s.hists.is_empty()) {
        meter::tick_by(n)?;
        let metric = s.labels.metric_name().unwrap_or("").to_string();
        let pos = match out.iter().position(|o| o.labels == s.labels) {
            Some(p) => p,
            None => {
                out.push(VSeries {
                    labels: s.labels.clone(),
                    drop_name: s.drop_name || !keep_name,
                    vals: vec![None; n],
                    hists: Vec::new(),
                });
                out.len() - 1
            }
        };
        let o = &mut out[pos];
        for (i, &(lo, hi)) in m.windows.iter().enumerate() {
            let hw = window(&s.hists, lo, hi);
            if hw.is_empty() {
                continue;
            }
            let fa = s.samples.partition_point(|p| p.t <= lo);
            let fb = s.samples.partition_point(|p| p.t <= hi).max(fa);
            let fw = &s.samples[fa..fb];
            let set_hist = |o: &mut VSeries, h: Arc<FloatHistogram>| {
                if o.hists.is_empty() {
                    o.hists = vec![None; n];
                }
                o.vals[i] = None;
                o.hists[i] = Some(h);
            };
            match name {
                "count_over_time" => o.vals[i] = Some((fw.len() + hw.len()) as f64),
                "present_over_time" => o.vals[i] = Some(1.0),
                "ts_of_last_over_time" => {
                    let t = hw[hw.len() - 1].t.max(fw.last().map_or(i64::MIN, |f| f.t));
                    o.vals[i] = Some(t as f64 / 1000.0);
                }
                "ts_of_first_over_time" => {
                    let t = hw[0].t.min(fw.first().map_or(i64::MAX, |f| f.t));
                    o.vals[i] = Some(t as f64 / 1000.0);
                }
                "resets" | "changes" => {
                    o.vals[i] = Some(super::hist_rate::count_transitions(
                        name == "resets",
                        fw,
                        hw,
                    ))
                }
                "last_over_time" => {
                    let lh = &hw[hw.len() - 1];
                    if fw.last().is_none_or(|f| f.t < lh.t) {
                        set_hist(o, Arc::clone(&lh.h));
                    }
                }
                "first_over_time" => {
                    let fh = &hw[0];
                    if fw.first().is_none_or(|f| f.t > fh.t) {
                        set_hist(o, Arc::clone(&fh.h));
                    }
                }
                "sum_over_time" | "avg_over_time" => {
                    if !fw.is_empty() {
                        ann.mixed_floats_histograms(&metric);
                        o.vals[i] = None;
                        continue;
                    }
                    let Some(mut h) = sum_histograms(hw.iter().map(|x| &*x.h), ann, &metric) else {
                        continue;
                    };
                    if name == "avg_over_time" {
                        h.div(hw.len() as f64);
                    }
                    h.compact();
                    set_hist(o, Arc::new(h));
                }
                _ => {
                    if !fw.is_empty() {
                        ann.histogram_ignored_in_mixed_range(&metric);
                    }
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    Ok(())
}

/// For the functions over ranges that take floats only: notes each window
/// that held both floats and histograms (the histograms are ignored).
pub(crate) fn note_mixed_ranges(m: &RangeVec, ann: &mut Annotations) {
    for s in m
        .series
        .iter()
        .filter(|s| !s.hists.is_empty() && !s.samples.is_empty())
    {
        let mixed = m.windows.iter().any(|&(lo, hi)| {
            !window(&s.hists, lo, hi).is_empty() && s.samples.iter().any(|p| p.t > lo && p.t <= hi)
        });
        if mixed {
            ann.histogram_ignored_in_mixed_range(s.labels.metric_name().unwrap_or(""));
        }
    }
}
