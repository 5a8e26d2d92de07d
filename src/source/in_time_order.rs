//! The last step of the chunked readers (remote read's streamed chunks,
//! the StoreAPI's `Series`): series in label order, samples in time order.

use std::collections::BTreeMap;

use crate::model::{Labels, Sample, Series};

/// `series` sorted by labels, each with its samples in time order and one
/// per timestamp (overlapping chunks: the first sample read at a time is
/// kept); series left without samples are dropped.
pub(crate) fn series_in_time_order(series: BTreeMap<Labels, Vec<Sample>>) -> Vec<Series> {
    series
        .into_iter()
        .filter_map(|(labels, mut samples)| {
            if !samples.is_sorted_by(|a, b| a.t < b.t) {
                // A stable sort keeps the first sample read at each time.
                samples.sort_by_key(|s| s.t);
                samples.dedup_by_key(|s| s.t);
            }
            (!samples.is_empty()).then_some(Series {
                labels,
                samples,
                histograms: Vec::new(),
            })
        })
        .collect()
}
