//! Native histograms: the float histogram PromQL evaluates, its buckets and their bounds.
//!
//! Buckets are kept sparse, as `(index, count)` pairs sorted by index, with
//! absolute counts: integer histograms (delta-encoded buckets) and span
//! layouts are converted on the way in ([`FloatHistogram::buckets_from_spans`],
//! [`FloatHistogram::buckets_from_int_spans`]). A bucket of count 0 may be present;
//! comparisons and the wire ignore it, as Prometheus's do after `Compact(0)`.

mod bounds_table;
mod display;
mod ops;

use std::sync::Arc;

pub use display::go_g;
pub use ops::HistogramError;

/// Schema of native histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Smallest and largest exponential schema.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

/// What the producer said about a counter reset at this sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// Nothing known: PromQL detects resets by comparing with the previous sample.
    #[default]
    Unknown,
    /// A counter reset happened right before this sample.
    CounterReset,
    /// No counter reset happened right before this sample.
    NotCounterReset,
    /// A gauge histogram: resets do not apply.
    Gauge,
}

impl CounterResetHint {
    /// The hint from its protobuf / chunk encoding number (0..=3).
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(CounterResetHint::Unknown),
            1 => Some(CounterResetHint::CounterReset),
            2 => Some(CounterResetHint::NotCounterReset),
            3 => Some(CounterResetHint::Gauge),
            _ => None,
        }
    }
}

/// One populated bucket: its index in the schema and its (absolute) count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub index: i32,
    pub count: f64,
}

/// A run of consecutive bucket indexes, as the wire formats lay buckets out:
/// `offset` is the gap from the end of the previous span (from 0 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// A native histogram with float counts, as PromQL evaluates it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8 for exponential buckets, [`CUSTOM_BUCKETS_SCHEMA`] for custom bounds.
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    /// Positive buckets sorted by index.
    pub positive: Vec<Bucket>,
    /// Negative buckets sorted by index (index i covers `[-upper(i), -lower(i))`).
    pub negative: Vec<Bucket>,
    /// Upper bounds of the custom buckets (NHCB only); the last bucket
    /// (index `custom_values.len()`) reaches +Inf. Shared, never mutated.
    pub custom_values: Arc<[f64]>,
}

/// A histogram sample: milliseconds since the epoch and the histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    pub t: i64,
    pub h: Arc<FloatHistogram>,
}

/// One bucket with its bounds, as iterators and the wire present it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketBounds {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

impl FloatHistogram {
    /// True for NHCB (custom bucket bounds).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// Builds a bucket list from spans and absolute counts.
    pub fn buckets_from_spans(
        spans: &[Span],
        counts: &[f64],
    ) -> Result<Vec<Bucket>, HistogramError> {
        let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
        if total != counts.len() as u64 {
            return Err(HistogramError::SpansBucketsMismatch);
        }
        let mut out = Vec::with_capacity(counts.len());
        let mut idx: i64 = 0;
        let mut k = 0usize;
        for (i, s) in spans.iter().enumerate() {
            if i > 0 && s.offset < 0 {
                return Err(HistogramError::NegativeSpanOffset);
            }
            idx += i64::from(s.offset);
            for _ in 0..s.length {
                let index = i32::try_from(idx).map_err(|_| HistogramError::IndexOutOfRange)?;
                out.push(Bucket {
                    index,
                    count: counts[k],
                });
                k += 1;
                idx += 1;
            }
        }
        Ok(out)
    }

    /// Builds a bucket list from spans and delta-encoded integer counts
    /// (the layout of integer histograms).
    pub fn buckets_from_int_spans(
        spans: &[Span],
        deltas: &[i64],
    ) -> Result<Vec<Bucket>, HistogramError> {
        let mut abs = Vec::with_capacity(deltas.len());
        let mut cur: i64 = 0;
        for &d in deltas {
            cur = cur.wrapping_add(d);
            abs.push(cur as f64);
        }
        Self::buckets_from_spans(spans, &abs)
    }

    /// The spans and counts of a bucket list (consecutive indexes form one span).
    pub fn spans_of(buckets: &[Bucket]) -> (Vec<Span>, Vec<f64>) {
        let mut spans: Vec<Span> = Vec::new();
        let mut counts = Vec::with_capacity(buckets.len());
        let mut next: Option<i32> = None;
        for b in buckets {
            match next {
                Some(n) if n == b.index => {
                    if let Some(last) = spans.last_mut() {
                        last.length += 1;
                    }
                }
                Some(n) => spans.push(Span {
                    offset: b.index - n,
                    length: 1,
                }),
                None => spans.push(Span {
                    offset: b.index,
                    length: 1,
                }),
            }
            counts.push(b.count);
            next = Some(b.index + 1);
        }
        (spans, counts)
    }

    /// Upper bound of bucket `index` in this histogram's schema.
    pub fn bound(&self, index: i32) -> f64 {
        bound(index, self.schema, &self.custom_values)
    }

    /// Every bucket with its bounds, from the lowest to the highest bound
    /// (Prometheus's `AllBucketIterator`): negative buckets (from -Inf
    /// towards 0), the zero bucket when it holds observations, then positive
    /// buckets; bounds inside the zero bucket are clamped to its threshold.
    /// Buckets of count 0 are included.
    pub fn all_buckets(&self) -> Vec<BucketBounds> {
        let zt = self.zero_threshold;
        let clamp = |mut b: BucketBounds| {
            if b.upper < 0.0 && b.upper > -zt {
                b.upper = -zt;
            } else if b.lower > 0.0 && b.lower < zt {
                b.lower = zt;
            }
            b
        };
        let mut out = Vec::with_capacity(self.positive.len() + self.negative.len() + 1);
        for b in self.negative.iter().rev() {
            out.push(clamp(BucketBounds {
                lower: -self.bound(b.index),
                upper: -self.bound(b.index.saturating_sub(1)),
                lower_inclusive: true,
                upper_inclusive: false,
                count: b.count,
            }));
        }
        if !self.uses_custom_buckets() && self.zero_count > 0.0 {
            out.push(BucketBounds {
                lower: -zt,
                upper: zt,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        out.extend(self.positive_buckets().map(clamp));
        out
    }

    /// The positive buckets with their bounds, lowest first.
    pub fn positive_buckets(&self) -> impl Iterator<Item = BucketBounds> + '_ {
        self.positive.iter().map(move |b| BucketBounds {
            lower: if self.uses_custom_buckets() && b.index == 0 {
                f64::NEG_INFINITY
            } else {
                self.bound(b.index.saturating_sub(1))
            },
            upper: self.bound(b.index),
            lower_inclusive: false,
            upper_inclusive: true,
            count: b.count,
        })
    }

    /// Drops buckets of count 0 (Prometheus's `Compact(0)`).
    pub fn compact(&mut self) {
        self.positive.retain(|b| b.count != 0.0);
        self.negative.retain(|b| b.count != 0.0);
    }

    /// Equality as the test corpus compares histograms: schema, count, sum,
    /// custom bounds, zero bucket and every non-empty bucket, counts within
    /// `eq` (the caller's float tolerance).
    pub fn approx_eq(&self, other: &FloatHistogram, eq: impl Fn(f64, f64) -> bool) -> bool {
        if self.schema != other.schema || !eq(self.count, other.count) || !eq(self.sum, other.sum) {
            return false;
        }
        if self.uses_custom_buckets() && self.custom_values[..] != other.custom_values[..] {
            return false;
        }
        if self.zero_threshold != other.zero_threshold || !eq(self.zero_count, other.zero_count) {
            return false;
        }
        let same = |a: &[Bucket], b: &[Bucket]| {
            let a: Vec<&Bucket> = a.iter().filter(|x| x.count != 0.0).collect();
            let b: Vec<&Bucket> = b.iter().filter(|x| x.count != 0.0).collect();
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(x, y)| x.index == y.index && eq(x.count, y.count))
        };
        same(&self.positive, &other.positive) && same(&self.negative, &other.negative)
    }

    /// Prometheus's `FloatHistogram.Equals` (what `==` and `!=` between
    /// histograms use): same schema, custom bounds and zero threshold;
    /// count, sum, zero count and every bucket bit for bit (NaN equals NaN,
    /// 0 differs from -0); the same buckets present, an explicit empty
    /// bucket included.
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        let bits = |a: f64, b: f64| a.to_bits() == b.to_bits();
        let buckets = |a: &[Bucket], b: &[Bucket]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.index == y.index && bits(x.count, y.count))
        };
        self.schema == other.schema
            && bits(self.count, other.count)
            && bits(self.sum, other.sum)
            && (!self.uses_custom_buckets() || self.custom_values[..] == other.custom_values[..])
            && self.zero_threshold == other.zero_threshold
            && bits(self.zero_count, other.zero_count)
            && buckets(&self.negative, &other.negative)
            && buckets(&self.positive, &other.positive)
    }

    /// Checks the invariants Prometheus's `Validate` checks.
    pub fn validate(&self) -> Result<(), HistogramError> {
        if self.uses_custom_buckets() {
            if self.zero_count != 0.0 {
                return Err(HistogramError::CustomBucketsZeroCount);
            }
            if self.zero_threshold != 0.0 {
                return Err(HistogramError::CustomBucketsZeroThreshold);
            }
            if !self.negative.is_empty() {
                return Err(HistogramError::CustomBucketsNegativeBuckets);
            }
            if self.custom_values.iter().any(|v| v.is_nan()) {
                return Err(HistogramError::CustomBoundsNaN);
            }
            if self.custom_values.iter().any(|v| v.is_infinite()) {
                return Err(HistogramError::CustomBoundsInfinite);
            }
            if self.custom_values.windows(2).any(|w| w[0] >= w[1]) {
                return Err(HistogramError::CustomBoundsNotIncreasing);
            }
            if self
                .positive
                .last()
                .is_some_and(|b| b.index < 0 || b.index as usize > self.custom_values.len())
                || self.positive.first().is_some_and(|b| b.index < 0)
            {
                return Err(HistogramError::CustomBoundsTooFew);
            }
        } else {
            if !(EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&self.schema) {
                return Err(HistogramError::InvalidSchema(self.schema));
            }
            if !self.custom_values.is_empty() {
                return Err(HistogramError::ExponentialWithCustomBounds);
            }
        }
        for bs in [&self.positive, &self.negative] {
            if bs.windows(2).any(|w| w[0].index >= w[1].index) {
                return Err(HistogramError::BucketsNotSorted);
            }
            if bs.iter().any(|b| b.count < 0.0) {
                return Err(HistogramError::NegativeBucketCount);
            }
        }
        if self.count < 0.0 {
            return Err(HistogramError::NegativeCount);
        }
        Ok(())
    }
}

/// Upper bound of bucket `index` in `schema` (custom bounds for NHCB).
pub fn bound(index: i32, schema: i32, custom_values: &[f64]) -> f64 {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        let len = custom_values.len() as i64;
        let i = i64::from(index);
        return if i >= len {
            f64::INFINITY
        } else if i < 0 {
            f64::NEG_INFINITY
        } else {
            custom_values[i as usize]
        };
    }
    exponential_bound(index, schema)
}

/// Upper bound of bucket `index` in exponential `schema`: 2^(index·2^-schema),
/// with the last finite bucket ending at `f64::MAX` as Prometheus defines it.
pub fn exponential_bound(index: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = i64::from(index) << schema.unsigned_abs().min(62);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let schema = schema.min(EXPONENTIAL_SCHEMA_MAX);
    let per = 1i64 << schema;
    let frac_idx = i64::from(index) & (per - 1);
    // The fraction in [0.5, 1): Prometheus's exact table of 2^(frac_idx/2^schema - 1).
    let frac = bounds_table::EXPONENTIAL_BOUNDS[schema as usize][frac_idx as usize];
    let exp = (i64::from(index) >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac · 2^exp` without intermediate overflow or underflow.
fn ldexp(frac: f64, exp: i64) -> f64 {
    let mut v = frac;
    let mut e = exp.clamp(-2200, 2200);
    while e > 1000 {
        v *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        v *= 2f64.powi(-1000);
        e += 1000;
    }
    v * 2f64.powi(e as i32)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upstream_cases;
