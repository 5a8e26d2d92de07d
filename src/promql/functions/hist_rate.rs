//! rate, increase, delta, irate and idelta over native histograms, as
//! Prometheus 3.8's `histogramRate`, `extrapolatedRate` and `instantValue`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::Window;
use crate::limits::meter;
use crate::model::histogram::{CounterResetHint, FloatHistogram, HistogramSample};
use crate::model::Sample;
use crate::promql::annotations::{Annotations, HistOp};
use crate::promql::hash::labels_hash;
use crate::promql::steps::{RSeries, RangeVec, VSeries};
use crate::promql::EngineError;

/// The floats and histograms of `s` in the window `(lo, hi]`.
fn window(s: &RSeries, lo: i64, hi: i64) -> (&[Sample], &[HistogramSample]) {
    let (fw, hw, _) = window_at(s, lo, hi);
    (fw, hw)
}

/// [`window`], with the index in `s.hists` of the window's first histogram.
fn window_at(s: &RSeries, lo: i64, hi: i64) -> (&[Sample], &[HistogramSample], usize) {
    let fa = s.samples.partition_point(|p| p.t <= lo);
    let fb = s.samples.partition_point(|p| p.t <= hi).max(fa);
    let ha = s.hists.partition_point(|p| p.t <= lo);
    let hb = s.hists.partition_point(|p| p.t <= hi).max(ha);
    (&s.samples[fa..fb], &s.hists[ha..hb], ha)
}

/// Whether each histogram of `hists` is a counter reset against the one
/// before it (`false` for the first): computed once per series, not once
/// per overlapping window.
fn reset_flags(hists: &[HistogramSample]) -> Vec<bool> {
    std::iter::once(false)
        .chain(hists.windows(2).map(|p| p[1].h.detect_reset(&p[0].h)))
        .collect()
}

/// Where each input series' results go in `out`: the entries already
/// there (float results) by label hash, and those added here. A series
/// looks its slot up once, not once per step.
struct Slots {
    by_hash: HashMap<u64, Vec<usize>>,
}

impl Slots {
    fn new(out: &[VSeries]) -> Self {
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, o) in out.iter().enumerate() {
            by_hash.entry(labels_hash(&o.labels)).or_default().push(i);
        }
        Slots { by_hash }
    }

    /// The position of `s`'s entry in `out`, if there is one.
    fn find(&self, out: &[VSeries], s: &RSeries) -> Option<usize> {
        self.by_hash
            .get(&labels_hash(&s.labels))?
            .iter()
            .copied()
            .find(|&i| out[i].labels == s.labels)
    }

    /// The position of `s`'s entry in `out`, created when missing.
    fn get(&mut self, out: &mut Vec<VSeries>, s: &RSeries, n: usize) -> usize {
        if let Some(i) = self.find(out, s) {
            return i;
        }
        out.push(VSeries {
            labels: s.labels.clone(),
            drop_name: true,
            vals: vec![None; n],
            hists: Vec::new(),
        });
        let i = out.len() - 1;
        self.by_hash
            .entry(labels_hash(&s.labels))
            .or_default()
            .push(i);
        i
    }
}

/// The slot of one series, looked up on first use.
struct Slot(Option<usize>);

impl Slot {
    fn get<'a>(
        &mut self,
        slots: &mut Slots,
        out: &'a mut Vec<VSeries>,
        s: &RSeries,
        n: usize,
    ) -> &'a mut VSeries {
        let i = match self.0 {
            Some(i) => i,
            None => {
                let i = slots.get(out, s, n);
                self.0 = Some(i);
                i
            }
        };
        &mut out[i]
    }
}

fn set_hist(o: &mut VSeries, i: usize, n: usize, h: FloatHistogram) {
    if o.hists.is_empty() {
        o.hists = vec![None; n];
    }
    o.vals[i] = None;
    o.hists[i] = Some(Arc::new(h));
}

/// The increase (or, not for counters, the change) between the first and
/// last histogram of a window, reset-corrected for counters. `resets[k]`
/// is `points[k].h.detect_reset(&points[k - 1].h)` (used for counters only).
fn histogram_rate(
    points: &[HistogramSample],
    resets: &[bool],
    counter: bool,
    metric: &str,
    ann: &mut Annotations,
) -> Option<FloatHistogram> {
    let first = &points[0].h;
    let last = &points[points.len() - 1].h;
    // Borrowed: only a reset at the second sample replaces it.
    let mut prev: Cow<'_, FloatHistogram> = Cow::Borrowed(&**first);
    let mut custom = prev.uses_custom_buckets();
    if counter
        && (first.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        ann.native_histogram_not_counter(metric);
    }
    let mut second_reset = false;
    if counter && points.len() > 1 {
        let second = &points[1].h;
        if resets
            .get(1)
            .copied()
            .unwrap_or_else(|| second.detect_reset(&prev))
        {
            second_reset = true;
            prev = Cow::Owned(FloatHistogram {
                schema: second.schema,
                custom_values: Arc::clone(&second.custom_values),
                ..FloatHistogram::default()
            });
            custom = second.uses_custom_buckets();
        }
    }
    if last.uses_custom_buckets() != custom {
        ann.mixed_exponential_custom(metric);
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    if counter {
        for p in &points[1..points.len() - 1] {
            if p.h.counter_reset_hint == CounterResetHint::Gauge {
                ann.native_histogram_not_counter(metric);
            }
            min_schema = min_schema.min(p.h.schema);
            if p.h.uses_custom_buckets() != custom {
                ann.mixed_exponential_custom(metric);
                return None;
            }
        }
    }
    let mut h = (**last).clone();
    if min_schema < h.schema {
        h.reduce_resolution(min_schema);
        h.counter_reset_hint = CounterResetHint::Unknown;
    }
    match h.sub(&prev) {
        Ok(c) if c.nhcb_bounds_reconciled => ann.mismatched_custom_buckets(HistOp::Sub),
        Ok(_) => {}
        Err(_) => {
            ann.mixed_exponential_custom(metric);
            return None;
        }
    }
    if counter {
        // From the first histogram, or the empty one standing in for it
        // when the second already reset.
        let mut prev: &FloatHistogram = &prev;
        for (k, p) in points.iter().enumerate().skip(1) {
            // Against the window's previous histogram the flag holds; the
            // empty stand-in for a reset first one is checked here.
            let reset = if k == 1 && second_reset {
                p.h.detect_reset(prev)
            } else {
                resets
                    .get(k)
                    .copied()
                    .unwrap_or_else(|| p.h.detect_reset(prev))
            };
            if reset {
                match h.add(prev) {
                    Ok(c) if c.nhcb_bounds_reconciled => ann.mismatched_custom_buckets(HistOp::Add),
                    Ok(_) => {}
                    Err(_) => {
                        ann.mixed_exponential_custom(metric);
                        return None;
                    }
                }
            }
            prev = &p.h;
        }
    } else if first.counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        ann.native_histogram_not_gauge(metric);
    }
    h.compact();
    Some(h)
}

/// Adds rate/increase/delta over the histogram windows of `m` to `out`
/// (the float results); windows holding both kinds give nothing and a warning.
pub(crate) fn add_extrapolated(
    m: &RangeVec,
    counter: bool,
    per_second: bool,
    out: &mut Vec<VSeries>,
    ann: &mut Annotations,
) -> Result<(), EngineError> {
    let n = m.windows.len();
    let mut slots = Slots::new(out);
    for s in m.series.iter().filter(|s| !s.hists.is_empty()) {
        meter::tick_by(n)?;
        let metric = s.labels.metric_name().unwrap_or("");
        let mut slot = Slot(slots.find(out, s));
        let flags = if counter {
            reset_flags(&s.hists)
        } else {
            Vec::new()
        };
        for (i, &(lo, hi)) in m.windows.iter().enumerate() {
            let (fw, hw, ha) = window_at(s, lo, hi);
            if hw.is_empty() {
                continue;
            }
            if !fw.is_empty() {
                ann.mixed_floats_histograms(metric);
                if let Some(o) = slot.0 {
                    out[o].vals[i] = None;
                }
                continue;
            }
            if hw.len() < 2 {
                continue;
            }
            let resets = flags.get(ha..ha + hw.len()).unwrap_or(&[]);
            let Some(mut h) = histogram_rate(hw, resets, counter, metric, ann) else {
                continue;
            };
            let w = Window {
                lo,
                hi,
                range_ms: m.range_ms,
            };
            let (first, last) = (&hw[0], &hw[hw.len() - 1]);
            let mut to_start = (first.t - w.lo) as f64 / 1000.0;
            let mut to_end = (w.hi - last.t) as f64 / 1000.0;
            let sampled = (last.t - first.t) as f64 / 1000.0;
            let avg_step = sampled / (hw.len() - 1) as f64;
            let threshold = avg_step * 1.1;
            if to_start >= threshold {
                to_start = avg_step / 2.0;
            }
            if counter && h.count > 0.0 && first.h.count >= 0.0 {
                let to_zero = sampled * (first.h.count / h.count);
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
            h.mul(factor);
            set_hist(slot.get(&mut slots, out, s, n), i, n, h);
        }
    }
    out.retain(|s| !s.is_empty());
    Ok(())
}

/// One sample of a window: a float or a histogram.
enum Point<'a> {
    F(Sample),
    H(&'a HistogramSample),
}

impl Point<'_> {
    fn t(&self) -> i64 {
        match self {
            Point::F(s) => s.t,
            Point::H(h) => h.t,
        }
    }
}

/// Adds irate/idelta over the windows of `m` that hold histograms to
/// `out`: from the last two samples of the window, whatever their kind.
pub(crate) fn add_instant(
    m: &RangeVec,
    per_second: bool,
    out: &mut Vec<VSeries>,
    ann: &mut Annotations,
) -> Result<(), EngineError> {
    let n = m.windows.len();
    let mut slots = Slots::new(out);
    for s in m.series.iter().filter(|s| !s.hists.is_empty()) {
        meter::tick_by(n)?;
        let metric = s.labels.metric_name().unwrap_or("").to_string();
        let mut slot = Slot(slots.find(out, s));
        for (i, &(lo, hi)) in m.windows.iter().enumerate() {
            let (fw, hw) = window(s, lo, hi);
            if hw.is_empty() || fw.len() + hw.len() < 2 {
                continue;
            }
            let mut last: Vec<Point<'_>> = fw[fw.len().saturating_sub(2)..]
                .iter()
                .map(|f| Point::F(*f))
                .chain(hw[hw.len().saturating_sub(2)..].iter().map(Point::H))
                .collect();
            last.sort_by_key(Point::t);
            let (a, b) = (&last[last.len() - 2], &last[last.len() - 1]);
            let dt = b.t() - a.t();
            let o = slot.get(&mut slots, out, s, n);
            o.vals[i] = None;
            if dt == 0 {
                continue;
            }
            match (a, b) {
                (Point::F(x), Point::F(y)) => {
                    let mut v = if per_second && y.v < x.v {
                        y.v
                    } else {
                        y.v - x.v
                    };
                    if per_second {
                        v /= dt as f64 / 1000.0;
                    }
                    o.vals[i] = Some(v);
                }
                (Point::H(x), Point::H(y)) => {
                    let mut h = (*y.h).clone();
                    let gauge =
                        |p: &HistogramSample| p.h.counter_reset_hint == CounterResetHint::Gauge;
                    if per_second && (gauge(x) || gauge(y)) {
                        ann.native_histogram_not_counter(&metric);
                    }
                    if !per_second && (!gauge(x) || !gauge(y)) {
                        ann.native_histogram_not_gauge(&metric);
                    }
                    if !per_second || !y.h.detect_reset(&x.h) {
                        match h.sub(&x.h) {
                            Ok(c) if c.nhcb_bounds_reconciled => {
                                ann.mismatched_custom_buckets(HistOp::Sub)
                            }
                            Ok(_) => {}
                            Err(_) => {
                                ann.mixed_exponential_custom(&metric);
                                continue;
                            }
                        }
                    }
                    h.counter_reset_hint = CounterResetHint::Gauge;
                    h.compact();
                    if per_second {
                        h.div(dt as f64 / 1000.0);
                    }
                    set_hist(o, i, n, h);
                }
                _ => ann.mixed_floats_histograms(&metric),
            }
        }
    }
    out.retain(|s| !s.is_empty());
    Ok(())
}

/// resets() and changes() over windows holding histograms: a switch
/// between a float and a histogram counts; between histograms, a detected
/// reset (or, for changes, any difference) counts.
pub(crate) fn count_transitions(resets: bool, fw: &[Sample], hw: &[HistogramSample]) -> f64 {
    let mut pts: Vec<Point<'_>> = fw
        .iter()
        .map(|f| Point::F(*f))
        .chain(hw.iter().map(Point::H))
        .collect();
    pts.sort_by_key(Point::t);
    let mut count = 0.0;
    for w in pts.windows(2) {
        let hit = match (&w[0], &w[1]) {
            (Point::F(a), Point::F(b)) => {
                if resets {
                    b.v < a.v
                } else {
                    !(a.v == b.v || (a.v.is_nan() && b.v.is_nan()))
                }
            }
            (Point::H(a), Point::H(b)) => {
                if resets {
                    b.h.detect_reset(&a.h)
                } else {
                    !b.h.approx_eq(&a.h, |x, y| x.to_bits() == y.to_bits() || x == y)
                }
            }
            _ => true,
        };
        if hit {
            count += 1.0;
        }
    }
    count
}
