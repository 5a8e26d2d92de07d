//! Instant and range vector selectors: lookback, staleness, offset and `@`.

mod stats;

use std::sync::Arc;

use promql_parser::parser::{MatrixSelector, VectorSelector};

use super::eval::Evaluator;
use super::plan::{at_ms, duration_ms, offset_ms};
use super::steps::{RSeries, RangeVec, VSeries, Val};
use super::EngineError;
use crate::limits::meter::{self, label_bytes, POINT_BYTES};
use crate::model::{is_stale_nan, Sample};

/// The time each step of `vs` reads at (after `@` and offset).
fn read_times(ev: &Evaluator<'_>, vs: &VectorSelector) -> Vec<i64> {
    let off = offset_ms(&vs.offset);
    match at_ms(&vs.at, ev.bounds) {
        Some(t) => vec![t - off; ev.grid.len()],
        None => ev.grid.timestamps().map(|t| t - off).collect(),
    }
}

/// An instant selector: per step, the newest sample in `(t - lookback, t]`,
/// unless that sample is a staleness marker.
pub(crate) fn instant(ev: &Evaluator<'_>, vs: &VectorSelector) -> Result<Val, EngineError> {
    instant_series(ev, vs, false).map(Val::Vector)
}

/// Like [`instant`], but each point's value is its sample's timestamp in seconds.
pub(crate) fn instant_timestamps(
    ev: &Evaluator<'_>,
    vs: &VectorSelector,
) -> Result<Vec<VSeries>, EngineError> {
    instant_series(ev, vs, true)
}

/// A series of an instant vector with its points' sample timestamps (ms).
pub(crate) type SeriesWithTimestamps = (VSeries, Vec<Option<f64>>);

/// Like [`instant`], with each series also giving its points' sample timestamps (ms).
pub(crate) fn instant_series_with_ts(
    ev: &Evaluator<'_>,
    vs: &VectorSelector,
) -> Result<Vec<SeriesWithTimestamps>, EngineError> {
    let vals = instant_series(ev, vs, false)?;
    let ts = instant_series(ev, vs, true)?;
    Ok(vals
        .into_iter()
        .zip(ts)
        .map(|(v, t)| {
            (
                v,
                t.vals.into_iter().map(|x| x.map(|s| s * 1000.0)).collect(),
            )
        })
        .collect())
}

fn instant_series(
    ev: &Evaluator<'_>,
    vs: &VectorSelector,
    timestamps: bool,
) -> Result<Vec<VSeries>, EngineError> {
    let times = read_times(ev, vs);
    let lookback = ev.lookback;
    let mut out = Vec::new();
    let steps = times.len() as u64;
    for s in ev.data.get(vs) {
        // One point per step and a copy of the labels, charged before they
        // are built; given back when the series has no point.
        let cost = (steps, steps * POINT_BYTES + label_bytes(&s.labels));
        meter::charge(cost.0, cost.1)?;
        meter::tick_by(times.len())?;
        let samples = &s.samples;
        let stats_owned;
        let hsamples: &[crate::model::histogram::HistogramSample] = if ev.stats_only {
            stats_owned = stats::stats_histograms(&s.histograms);
            &stats_owned
        } else {
            &s.histograms
        };
        let mut vals = Vec::with_capacity(times.len());
        let mut hists = Vec::new();
        if !hsamples.is_empty() && !timestamps {
            hists.reserve(times.len());
        }
        let mut any = false;
        let mut idx = 0usize; // number of samples with t <= current time
        let mut hidx = 0usize; // number of histogram samples with t <= current time
        let mut prev_t = i64::MIN;
        for &t in &times {
            if t < prev_t {
                idx = 0;
                hidx = 0;
            }
            prev_t = t;
            while idx < samples.len() && samples[idx].t <= t {
                idx += 1;
            }
            while hidx < hsamples.len() && hsamples[hidx].t <= t {
                hidx += 1;
            }
            let f = idx.checked_sub(1).map(|i| samples[i]);
            let h = hidx.checked_sub(1).map(|i| &hsamples[i]);
            // The newer of the float and the histogram sample counts.
            let (v, hv) = match (f, h) {
                (_, Some(h)) if h.t > t - lookback && f.is_none_or(|f| f.t < h.t) => {
                    if is_stale_nan(h.h.sum) {
                        (None, None)
                    } else if timestamps {
                        (Some(h.t as f64 / 1000.0), None)
                    } else {
                        (None, Some(Arc::clone(&h.h)))
                    }
                }
                (Some(p), _) if p.t > t - lookback && !is_stale_nan(p.v) => (
                    Some(if timestamps { p.t as f64 / 1000.0 } else { p.v }),
                    None,
                ),
                _ => (None, None),
            };
            any |= v.is_some() || hv.is_some();
            vals.push(v);
            if !hsamples.is_empty() && !timestamps {
                hists.push(hv);
            }
        }
        if any {
            out.push(VSeries {
                labels: s.labels.clone(),
                drop_name: false,
                vals,
                hists,
            });
        } else {
            meter::release(cost.0, cost.1);
        }
    }
    Ok(out)
}

/// A range selector: the series without staleness markers, and per step the
/// window `(t - range, t]`.
pub(crate) fn range(ev: &Evaluator<'_>, ms: &MatrixSelector) -> Val {
    let range_ms = duration_ms(&ms.range);
    let windows = read_times(ev, &ms.vs)
        .into_iter()
        .map(|t| (t - range_ms, t))
        .collect();
    let series = ev
        .data
        .get(&ms.vs)
        .iter()
        .map(|s| RSeries {
            labels: s.labels.clone(),
            drop_name: false,
            samples: if s.has_stale {
                Arc::new(
                    s.samples
                        .iter()
                        .filter(|p| !is_stale_nan(p.v))
                        .copied()
                        .collect::<Vec<Sample>>(),
                )
            } else {
                Arc::clone(&s.samples)
            },
            hists: if ev.stats_only {
                Arc::new(
                    stats::stats_histograms(&s.histograms)
                        .into_iter()
                        .filter(|h| !is_stale_nan(h.h.sum))
                        .collect(),
                )
            } else if s.histograms.iter().any(|h| is_stale_nan(h.h.sum)) {
                Arc::new(
                    s.histograms
                        .iter()
                        .filter(|h| !is_stale_nan(h.h.sum))
                        .cloned()
                        .collect(),
                )
            } else {
                Arc::clone(&s.histograms)
            },
        })
        .filter(|s| !s.samples.is_empty() || !s.hists.is_empty())
        .collect();
    Val::Matrix(RangeVec {
        series,
        windows,
        range_ms,
    })
}
