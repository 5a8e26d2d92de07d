//! Native histograms in aggregations: sum adds them, avg takes 3.8's
//! incremental mean (annotations for mixes and conflicts as 3.8's), count and group count them, the
//! float-only aggregations ignore them with an info.

use std::sync::Arc;

use super::Kind;
use crate::model::histogram::{CounterResetHint, FloatHistogram};
use crate::promql::annotations::{Annotations, HistOp};
use crate::promql::steps::VSeries;

/// One group's histogram sum at one step.
#[derive(Debug, Clone, Default)]
struct Cell {
    sum: Option<FloatHistogram>,
    n: f64,
    /// Hints seen: a CounterReset and a NotCounterReset together conflict.
    reset_seen: bool,
    not_reset_seen: bool,
    /// Exponential and custom-bucket histograms met: no result.
    incompatible: bool,
}

/// The histogram points of the input, aggregated per group and step, for
/// `sum` and `avg`; `None` where a group has no histogram at a step.
/// Float-only kinds note that they ignored histograms.
pub(super) fn aggregate(
    kind: Kind,
    op: &str,
    input: &[VSeries],
    ids: &[usize],
    groups: usize,
    n: usize,
    ann: &mut Annotations,
) -> Option<Vec<Option<Arc<FloatHistogram>>>> {
    if input.iter().all(|s| s.hists.iter().all(Option::is_none)) {
        return None;
    }
    match kind {
        Kind::Sum | Kind::Avg => {}
        Kind::Count | Kind::Group => return None,
        _ => {
            ann.histogram_ignored_in_aggregation(op);
            return None;
        }
    }
    let mut cells = vec![Cell::default(); groups * n];
    for (s, &gi) in input.iter().zip(ids) {
        for (step, h) in s.hists.iter().enumerate() {
            let Some(h) = h else { continue };
            let c = &mut cells[gi * n + step];
            if c.incompatible {
                continue;
            }
            c.n += 1.0;
            match h.counter_reset_hint {
                CounterResetHint::CounterReset => c.reset_seen = true,
                CounterResetHint::NotCounterReset => c.not_reset_seen = true,
                _ => {}
            }
            let Some(acc) = c.sum.as_mut() else {
                c.sum = Some((**h).clone());
                continue;
            };
            let added = if kind == Kind::Avg {
                add_to_mean(acc, h, c.n)
            } else {
                acc.add(h).map(|r| r.nhcb_bounds_reconciled)
            };
            match added {
                Ok(reconciled) => {
                    if reconciled {
                        ann.mismatched_custom_buckets(HistOp::Agg);
                    }
                }
                Err(_) => {
                    c.incompatible = true;
                    c.sum = None;
                    ann.mixed_exponential_custom(s.labels.metric_name().unwrap_or(""));
                }
            }
        }
    }
    Some(
        cells
            .into_iter()
            .map(|c| {
                let mut h = c.sum?;
                if c.reset_seen && c.not_reset_seen {
                    ann.counter_reset_collision(HistOp::Agg);
                }
                h.compact();
                Some(Arc::new(h))
            })
            .collect(),
    )
}

/// One step of 3.8's incremental mean of histograms: `mean += h/n - mean/n`
/// (the `n`th histogram of the group), computed as 3.8 does it (divide both,
/// subtract, add), so that the result has the same bits and does not
/// overflow where the plain sum would. True when custom bounds were
/// reconciled.
fn add_to_mean(
    mean: &mut FloatHistogram,
    h: &FloatHistogram,
    n: f64,
) -> Result<bool, crate::model::histogram::HistogramError> {
    let mut to_add = h.clone();
    to_add.div(n);
    let mut part = mean.clone();
    part.div(n);
    let sub = to_add.sub(&part)?;
    let add = mean.add(&to_add)?;
    Ok(sub.nhcb_bounds_reconciled || add.nhcb_bounds_reconciled)
}

/// Drops the histogram points of `input` for an aggregation that takes
/// floats only (noting it once), and the series left empty.
pub(super) fn ignore_histograms(input: &mut Vec<VSeries>, op: &str, ann: &mut Annotations) {
    if input.iter().any(|s| s.hists.iter().any(Option::is_some)) {
        ann.histogram_ignored_in_aggregation(op);
        for s in input.iter_mut() {
            s.hists = Vec::new();
        }
        input.retain(|s| !s.is_empty());
    }
}

impl Annotations {
    /// An aggregation that works on floats only met a histogram.
    pub fn histogram_ignored_in_aggregation(&mut self, aggregation: &str) {
        self.info(format!(
            "PromQL info: ignored histogram in {aggregation} aggregation"
        ));
    }

    /// An aggregation saw floats and histograms in one group.
    pub fn mixed_floats_histograms_agg(&mut self) {
        self.warn(
            "PromQL warning: encountered a mix of histograms and floats for aggregation".into(),
        );
    }
}
