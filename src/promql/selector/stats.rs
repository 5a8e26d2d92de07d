//! Histograms read as statistics only (count and sum), with counter resets
//! detected while reading, as Prometheus's HistogramStatsIterator does for
//! the selectors inside histogram_count, histogram_sum and histogram_avg.

use std::sync::Arc;

use crate::model::histogram::{CounterResetHint, FloatHistogram, HistogramSample};
use crate::model::is_stale_nan;

/// The samples as count/sum histograms; an Unknown hint becomes
/// CounterReset or NotCounterReset by comparing with the previous histogram.
pub(crate) fn stats_histograms(hs: &[HistogramSample]) -> Vec<HistogramSample> {
    let mut prev: Option<&FloatHistogram> = None;
    hs.iter()
        .map(|s| {
            let stale = is_stale_nan(s.h.sum);
            let mut hint = s.h.counter_reset_hint;
            if !stale && hint == CounterResetHint::Unknown {
                if let Some(p) = prev {
                    hint = if s.h.detect_reset(p) {
                        CounterResetHint::CounterReset
                    } else {
                        CounterResetHint::NotCounterReset
                    };
                }
            }
            if !stale {
                prev = Some(&s.h);
            }
            HistogramSample {
                t: s.t,
                h: Arc::new(FloatHistogram {
                    counter_reset_hint: hint,
                    count: s.h.count,
                    sum: s.h.sum,
                    ..FloatHistogram::default()
                }),
            }
        })
        .collect()
}
