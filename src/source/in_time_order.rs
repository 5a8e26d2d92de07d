//! The last step of the chunked readers (remote read's streamed chunks and
//! samples, the StoreAPI's `Series`): series in label order, samples in
//! time order.

use std::collections::BTreeMap;

use crate::model::histogram::HistogramSample;
use crate::model::{Labels, Sample, Series};

/// One series' float and histogram samples as gathered, in arrival order.
pub(crate) type Gathered = (Vec<Sample>, Vec<HistogramSample>);

/// `series` sorted by labels, each with its float and its histogram samples
/// in time order and one per timestamp (overlapping chunks: the first
/// sample read at a time is kept); series left without samples are dropped.
pub(crate) fn series_in_time_order(series: BTreeMap<Labels, Gathered>) -> Vec<Series> {
    series
        .into_iter()
        .filter_map(|(labels, (mut samples, mut histograms))| {
            in_time_order(&mut samples, |s| s.t);
            in_time_order(&mut histograms, |h| h.t);
            (!samples.is_empty() || !histograms.is_empty()).then_some(Series {
                labels,
                samples,
                histograms,
            })
        })
        .collect()
}

/// Sorts `v` by time, keeping the first element read at each time.
fn in_time_order<T>(v: &mut Vec<T>, t: impl Fn(&T) -> i64) {
    if !v.is_sorted_by(|a, b| t(a) < t(b)) {
        // A stable sort keeps the first sample read at each time.
        v.sort_by_key(|x| t(x));
        v.dedup_by_key(|x| t(x));
    }
}
