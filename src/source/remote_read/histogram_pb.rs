//! Converts `prometheus.Histogram` messages (remote read SAMPLES answers,
//! remote write requests) to and from promfed's float histograms.

use std::sync::Arc;

use super::prompb::{self, BucketSpan, HistogramCount, HistogramZeroCount};
use crate::model::histogram::{
    CounterResetHint, FloatHistogram, HistogramError, HistogramSample, Span, CUSTOM_BUCKETS_SCHEMA,
    EXPONENTIAL_SCHEMA_MAX,
};
use crate::model::is_stale_nan;

/// Why a `prometheus.Histogram` could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramPbError {
    #[error("native histogram at {t}: {source}")]
    Invalid { t: i64, source: HistogramError },
    /// Prometheus 3.8's SAMPLES answers leave the bounds of custom-bucket
    /// histograms out (`prompb.FromIntHistogram` does not copy them).
    #[error("native histogram with custom buckets at {t} arrived without its bucket bounds (Prometheus's SAMPLES remote-read answers drop them): read this backend with streamed chunks")]
    CustomBoundsMissing { t: i64 },
    #[error("native histogram at {t}: unknown reset hint {hint}")]
    ResetHint { t: i64, hint: i32 },
}

fn spans_of(spans: &[BucketSpan]) -> Vec<Span> {
    spans
        .iter()
        .map(|s| Span {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

/// The sample a message holds: integer histograms (`count_int`) read their
/// buckets as deltas, float ones as absolute counts; the result is checked
/// as Prometheus validates an ingested histogram. A sum that is the
/// staleness marker makes a staleness marker, whatever else it holds.
pub fn histogram_sample(h: &prompb::Histogram) -> Result<HistogramSample, HistogramPbError> {
    let t = h.timestamp;
    if is_stale_nan(h.sum) {
        return Ok(HistogramSample {
            t,
            h: Arc::new(FloatHistogram {
                sum: h.sum,
                ..FloatHistogram::default()
            }),
        });
    }
    let invalid = |source| HistogramPbError::Invalid { t, source };
    if h.schema == CUSTOM_BUCKETS_SCHEMA && h.custom_values.is_empty() {
        return Err(HistogramPbError::CustomBoundsMissing { t });
    }
    let hint = u8::try_from(h.reset_hint)
        .ok()
        .and_then(CounterResetHint::from_u8)
        .ok_or(HistogramPbError::ResetHint {
            t,
            hint: h.reset_hint,
        })?;
    let (pos, neg) = (spans_of(&h.positive_spans), spans_of(&h.negative_spans));
    let float = matches!(h.count, Some(HistogramCount::CountFloat(_)));
    let (positive, negative) = if float {
        (
            FloatHistogram::buckets_from_spans(&pos, &h.positive_counts),
            FloatHistogram::buckets_from_spans(&neg, &h.negative_counts),
        )
    } else {
        (
            FloatHistogram::buckets_from_int_spans(&pos, &h.positive_deltas),
            FloatHistogram::buckets_from_int_spans(&neg, &h.negative_deltas),
        )
    };
    let mut fh = FloatHistogram {
        counter_reset_hint: hint,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: match h.zero_count {
            Some(HistogramZeroCount::ZeroCountInt(c)) => c as f64,
            Some(HistogramZeroCount::ZeroCountFloat(c)) => c,
            None => 0.0,
        },
        count: match h.count {
            Some(HistogramCount::CountInt(c)) => c as f64,
            Some(HistogramCount::CountFloat(c)) => c,
            None => 0.0,
        },
        sum: h.sum,
        positive: positive.map_err(invalid)?,
        negative: negative.map_err(invalid)?,
        custom_values: h.custom_values.clone().into(),
    };
    // A newer Prometheus's finer schemas are read at the finest 3.8 knows.
    if fh.schema > EXPONENTIAL_SCHEMA_MAX && fh.schema <= 52 {
        fh.reduce_resolution(EXPONENTIAL_SCHEMA_MAX);
    }
    fh.validate().map_err(invalid)?;
    Ok(HistogramSample { t, h: Arc::new(fh) })
}

/// A float histogram as a message (float form: absolute bucket counts).
pub fn float_histogram_message(t: i64, h: &FloatHistogram) -> prompb::Histogram {
    let side = |buckets| {
        let (spans, counts) = FloatHistogram::spans_of(buckets);
        let spans = spans
            .into_iter()
            .map(|s| BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect();
        (spans, counts)
    };
    let (positive_spans, positive_counts) = side(&h.positive);
    let (negative_spans, negative_counts) = side(&h.negative);
    prompb::Histogram {
        count: Some(HistogramCount::CountFloat(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(HistogramZeroCount::ZeroCountFloat(h.zero_count)),
        negative_spans,
        negative_deltas: Vec::new(),
        negative_counts,
        positive_spans,
        positive_deltas: Vec::new(),
        positive_counts,
        reset_hint: h.counter_reset_hint as i32,
        timestamp: t,
        custom_values: h.custom_values.to_vec(),
    }
}
