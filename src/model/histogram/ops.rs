//! Arithmetic on float histograms with Prometheus 3.8's semantics: add and
//! subtract (reducing to the smaller schema, reconciling zero buckets and
//! custom bounds), scale, and counter reset detection.

use std::borrow::Cow;
use std::sync::Arc;

use super::{
    bound, exponential_bound, Bucket, CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA,
};

/// Why a histogram is invalid or two histograms cannot be combined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
    IncompatibleSchema,
    #[error("histogram spans specify different number of buckets than provided")]
    SpansBucketsMismatch,
    #[error("histogram has a span whose offset is negative")]
    NegativeSpanOffset,
    #[error("histogram bucket index out of range")]
    IndexOutOfRange,
    #[error("histogram buckets are not in increasing index order")]
    BucketsNotSorted,
    #[error("histogram has a bucket whose observation count is negative")]
    NegativeBucketCount,
    #[error("histogram's observation count is negative")]
    NegativeCount,
    #[error("histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema {0}")]
    InvalidSchema(i32),
    #[error("histogram with exponential schema must not have custom bounds")]
    ExponentialWithCustomBounds,
    #[error("custom buckets: must have zero count of 0")]
    CustomBucketsZeroCount,
    #[error("custom buckets: must have zero threshold of 0")]
    CustomBucketsZeroThreshold,
    #[error("custom buckets: must not have negative buckets")]
    CustomBucketsNegativeBuckets,
    #[error("histogram custom bounds must not be NaN")]
    CustomBoundsNaN,
    #[error("histogram custom bounds must be finite")]
    CustomBoundsInfinite,
    #[error("histogram custom bounds must be in strictly increasing order")]
    CustomBoundsNotIncreasing,
    #[error("histogram custom bounds are too few")]
    CustomBoundsTooFew,
}

/// What adding or subtracting two histograms noticed besides the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Combined {
    /// One side said CounterReset and the other NotCounterReset.
    pub counter_reset_collision: bool,
    /// Custom bounds differed and were intersected.
    pub nhcb_bounds_reconciled: bool,
}

/// Index of bucket `idx` of `origin` schema in the smaller `target` schema.
fn target_index(idx: i32, origin: i32, target: i32) -> i32 {
    // Shifts past 31 bits (invalid schemas) saturate instead of overflowing.
    (idx.saturating_sub(1) >> origin.saturating_sub(target).clamp(0, 31)).saturating_add(1)
}

/// Buckets of `origin` schema merged into the smaller `target` schema.
fn reduce(buckets: &[Bucket], origin: i32, target: i32) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        let index = target_index(b.index, origin, target);
        match out.last_mut() {
            Some(last) if last.index == index => last.count += b.count,
            _ => out.push(Bucket {
                index,
                count: b.count,
            }),
        }
    }
    out
}

/// `a + sign·b`, bucket by bucket; buckets of `b` whose upper bound is at
/// or below `threshold` (inside the zero bucket) are skipped for exponential schemas.
fn add_buckets(schema: i32, threshold: f64, sign: f64, a: &[Bucket], b: &[Bucket]) -> Vec<Bucket> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let exp = schema != CUSTOM_BUCKETS_SCHEMA;
    let b = b
        .iter()
        .skip_while(|x| exp && exponential_bound(x.index, schema) <= threshold);
    let mut a = a.iter().peekable();
    let mut b = b.peekable();
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.index == y.index => {
                out.push(Bucket {
                    index: x.index,
                    count: x.count + sign * y.count,
                });
                a.next();
                b.next();
            }
            (Some(x), Some(y)) if x.index < y.index => {
                out.push(**x);
                a.next();
            }
            (_, Some(y)) => {
                out.push(Bucket {
                    index: y.index,
                    count: sign * y.count,
                });
                b.next();
            }
            (Some(x), None) => {
                out.push(**x);
                a.next();
            }
            (None, None) => return out,
        }
    }
}

/// `a += sign·b` as [`add_buckets`] computes it, in place (no allocation)
/// when every bucket of `b` that counts is already in `a`, the common case
/// of histograms of one series or of one layout.
fn add_buckets_into(schema: i32, threshold: f64, sign: f64, a: &mut Vec<Bucket>, b: &[Bucket]) {
    let exp = schema != CUSTOM_BUCKETS_SCHEMA;
    let skip = if exp {
        b.iter()
            .take_while(|x| exponential_bound(x.index, schema) <= threshold)
            .count()
    } else {
        0
    };
    let b = &b[skip..];
    // Every index of `b` in `a`? Both are sorted: one merge walk.
    let mut j = 0usize;
    for y in b {
        while j < a.len() && a[j].index < y.index {
            j += 1;
        }
        if j == a.len() || a[j].index != y.index {
            *a = add_buckets(schema, threshold, sign, a, b);
            return;
        }
    }
    let mut j = 0usize;
    for y in b {
        while a[j].index < y.index {
            j += 1;
        }
        a[j].count += sign * y.count;
    }
}

/// The buckets `bs` of `h` as histogram `seen_by` sees them in reset
/// detection: reduced to its schema (allocating only then), those inside
/// its zero bucket left out (bounds rise with the index: a prefix).
fn visible_buckets<'a>(
    seen_by: &FloatHistogram,
    h: &FloatHistogram,
    bs: &'a [Bucket],
) -> Cow<'a, [Bucket]> {
    if h.uses_custom_buckets() {
        return Cow::Borrowed(bs);
    }
    let bs: Cow<'a, [Bucket]> = if h.schema > seen_by.schema {
        Cow::Owned(reduce(bs, h.schema, seen_by.schema))
    } else {
        Cow::Borrowed(bs)
    };
    let skip = bs
        .iter()
        .take_while(|b| exponential_bound(b.index, seen_by.schema) <= seen_by.zero_threshold)
        .count();
    match bs {
        Cow::Borrowed(b) => Cow::Borrowed(&b[skip..]),
        Cow::Owned(mut b) => {
            b.drain(..skip);
            Cow::Owned(b)
        }
    }
}

/// Intersection of two sorted bound lists.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Maps the custom buckets of both sides onto the intersected bounds
/// (each bucket into the first target bucket whose bound is at or above its
/// own) and adds them; empty target buckets are left out.
fn add_custom_mismatched(
    sign: f64,
    a: &[Bucket],
    a_bounds: &[f64],
    b: &[Bucket],
    b_bounds: &[f64],
    bounds: &[f64],
) -> Vec<Bucket> {
    let mut target = vec![0.0; bounds.len() + 1];
    let mut map = |buckets: &[Bucket], src: &[f64], s: f64| {
        for bk in buckets {
            let i = bk.index as usize;
            let t = match src.get(i) {
                Some(&sb) => bounds.iter().position(|&x| x >= sb).unwrap_or(bounds.len()),
                None => bounds.len(),
            };
            target[t] += s * bk.count;
        }
    };
    map(a, a_bounds, 1.0);
    map(b, b_bounds, sign);
    target
        .into_iter()
        .enumerate()
        .filter(|(_, c)| *c != 0.0)
        .map(|(i, count)| Bucket {
            index: i as i32,
            count,
        })
        .collect()
}

impl FloatHistogram {
    /// Scales every count and the sum by `factor`; a negative factor makes it a gauge.
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.count *= factor;
        }
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Divides every count and the sum by `scalar`; division by zero drops
    /// the buckets (count and sum become ±Inf or NaN), as Prometheus does.
    pub fn div(&mut self, scalar: f64) {
        self.zero_count /= scalar;
        self.count /= scalar;
        self.sum /= scalar;
        if scalar == 0.0 {
            self.positive.clear();
            self.negative.clear();
            return;
        }
        for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            b.count /= scalar;
        }
        if scalar < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Merges buckets into the smaller `target` schema (exponential only).
    pub fn reduce_resolution(&mut self, target: i32) {
        if self.uses_custom_buckets() || target >= self.schema {
            return;
        }
        self.positive = reduce(&self.positive, self.schema, target);
        self.negative = reduce(&self.negative, self.schema, target);
        self.schema = target;
    }

    /// Adds `other` (Prometheus's `Add`): the result has the smaller schema
    /// and the larger zero threshold.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<Combined, HistogramError> {
        self.combine(other, 1.0)
    }

    /// Subtracts `other` (Prometheus's `Sub`).
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<Combined, HistogramError> {
        self.combine(other, -1.0)
    }

    fn combine(&mut self, other: &FloatHistogram, sign: f64) -> Result<Combined, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramError::IncompatibleSchema);
        }
        let mut res = Combined {
            counter_reset_collision: self.adjust_counter_reset(other),
            ..Combined::default()
        };
        if !self.uses_custom_buckets() {
            let other_zero = self.reconcile_zero_buckets(other);
            self.zero_count += sign * other_zero;
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        if self.uses_custom_buckets() {
            if self.custom_values[..] == other.custom_values[..] {
                self.positive = add_buckets(
                    self.schema,
                    self.zero_threshold,
                    sign,
                    &self.positive,
                    &other.positive,
                );
            } else {
                res.nhcb_bounds_reconciled = true;
                let bounds = intersect_bounds(&self.custom_values, &other.custom_values);
                self.positive = add_custom_mismatched(
                    sign,
                    &self.positive,
                    &self.custom_values,
                    &other.positive,
                    &other.custom_values,
                    &bounds,
                );
                self.custom_values = Arc::from(bounds);
            }
            return Ok(res);
        }
        let (op, on): (Cow<'_, [Bucket]>, Cow<'_, [Bucket]>) = if other.schema > self.schema {
            (
                Cow::Owned(reduce(&other.positive, other.schema, self.schema)),
                Cow::Owned(reduce(&other.negative, other.schema, self.schema)),
            )
        } else {
            if other.schema < self.schema {
                self.reduce_resolution(other.schema);
            }
            (
                Cow::Borrowed(&other.positive),
                Cow::Borrowed(&other.negative),
            )
        };
        let (schema, threshold) = (self.schema, self.zero_threshold);
        add_buckets_into(schema, threshold, sign, &mut self.positive, &op);
        add_buckets_into(schema, threshold, sign, &mut self.negative, &on);
        Ok(res)
    }

    /// The hint of a sum or difference; true when CounterReset met NotCounterReset.
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        let (a, b) = (self.counter_reset_hint, other.counter_reset_hint);
        if a == b || a == Gauge {
            return false;
        }
        if b == Gauge {
            self.counter_reset_hint = Gauge;
            return false;
        }
        if a == Unknown {
            return false;
        }
        self.counter_reset_hint = Unknown;
        b != Unknown
    }

    /// The zero count this histogram would have with the zero bucket widened
    /// to at least `larger`, and the threshold it ends with (widened further
    /// when a populated bucket straddles it).
    fn zero_count_for_larger_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        'outer: loop {
            let mut count = self.zero_count;
            for b in &self.positive {
                let (lower, upper) = (self.bound(b.index.saturating_sub(1)), self.bound(b.index));
                if lower >= larger {
                    break;
                }
                count += b.count;
                if upper > larger {
                    if b.count != 0.0 {
                        larger = upper;
                    }
                    break;
                }
            }
            for b in &self.negative {
                let (upper, lower) = (-self.bound(b.index.saturating_sub(1)), -self.bound(b.index));
                if upper <= -larger {
                    break;
                }
                count += b.count;
                if lower < -larger {
                    if b.count != 0.0 {
                        larger = -lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (count, larger);
        }
    }

    /// Drops the buckets that now lie inside the zero bucket.
    fn trim_buckets_in_zero_bucket(&mut self) {
        let zt = self.zero_threshold;
        let (schema, cv) = (self.schema, Arc::clone(&self.custom_values));
        self.positive
            .retain(|b| bound(b.index.saturating_sub(1), schema, &cv) >= zt);
        self.negative
            .retain(|b| -bound(b.index.saturating_sub(1), schema, &cv) <= -zt);
    }

    /// Widens the narrower zero bucket of the two to the wider one; returns
    /// `other`'s zero count for the common threshold.
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_count = other.zero_count;
        let mut other_threshold = other.zero_threshold;
        while other_threshold != self.zero_threshold {
            if self.zero_threshold > other_threshold {
                (other_count, other_threshold) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                (self.zero_count, self.zero_threshold) =
                    self.zero_count_for_larger_threshold(other_threshold);
                self.trim_buckets_in_zero_bucket();
            }
        }
        other_count
    }

    /// Whether a counter reset happened between `previous` and this
    /// histogram (Prometheus 3.8's `DetectReset`): the hint decides if it is
    /// CounterReset or NotCounterReset; otherwise a smaller count, a change
    /// of bucket layout that cannot happen without a reset, or any bucket
    /// (after reducing `previous` to this schema) that went down.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if self.custom_values[..] != previous.custom_values[..] {
                return self.reset_with_mismatched_bounds(previous);
            }
        }
        if self.schema > previous.schema || self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zero, threshold) = previous.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold || self.zero_count < prev_zero {
            return true;
        }
        let visible = |h: &FloatHistogram, bs| visible_buckets(self, h, bs);
        let went_down = |cur: &[Bucket], prev: &[Bucket]| {
            let mut c = cur.iter().peekable();
            for p in prev {
                while c.peek().is_some_and(|x| x.index < p.index) {
                    c.next();
                }
                match c.peek() {
                    Some(x) if x.index == p.index => {
                        if x.count < p.count {
                            return true;
                        }
                    }
                    _ => {
                        if p.count != 0.0 {
                            return true;
                        }
                    }
                }
            }
            false
        };
        went_down(
            &visible(self, &self.positive),
            &visible(previous, &previous.positive),
        ) || went_down(
            &visible(self, &self.negative),
            &visible(previous, &previous.negative),
        )
    }

    /// Reset detection between NHCBs of different bounds: at each bound the
    /// two share, the cumulative count up to it must not go down.
    fn reset_with_mismatched_bounds(&self, previous: &FloatHistogram) -> bool {
        let cumulative = |h: &FloatHistogram, upto: f64| -> f64 {
            h.positive
                .iter()
                .filter(|b| h.bound(b.index) <= upto)
                .map(|b| b.count)
                .sum()
        };
        let mut shared = intersect_bounds(&self.custom_values, &previous.custom_values);
        shared.push(f64::INFINITY);
        // Each shared bound's rollup counts the buckets between it and the
        // previous shared bound.
        let mut prev_bound = f64::NEG_INFINITY;
        for &b in &shared {
            let in_range = |h: &FloatHistogram| cumulative(h, b) - cumulative(h, prev_bound);
            if in_range(self) < in_range(previous) {
                return true;
            }
            prev_bound = b;
        }
        false
    }
}

#[cfg(test)]
mod in_place_tests {
    use proptest::prelude::*;

    use super::*;

    fn buckets() -> impl Strategy<Value = Vec<Bucket>> {
        proptest::collection::btree_map(-6i32..12, 0.0f64..100.0, 0..10).prop_map(|m| {
            m.into_iter()
                .map(|(index, count)| Bucket { index, count })
                .collect()
        })
    }

    proptest! {
        /// The in-place sum is the allocating one, bit for bit, whether or
        /// not `b`'s buckets are all in `a` (and with a zero threshold
        /// that hides some of `b`'s).
        #[test]
        fn add_buckets_into_is_add_buckets(
            a in buckets(),
            b in buckets(),
            sign in prop_oneof![Just(1.0f64), Just(-1.0f64)],
            threshold in prop_oneof![Just(0.0f64), Just(1.0), Just(4.0)],
            subset in any::<bool>(),
        ) {
            // Half the cases: b restricted to a's indexes (the in-place path).
            let b: Vec<Bucket> = if subset {
                b.into_iter().filter(|x| a.iter().any(|y| y.index == x.index)).collect()
            } else {
                b
            };
            let want = add_buckets(1, threshold, sign, &a, &b);
            let mut got = a.clone();
            add_buckets_into(1, threshold, sign, &mut got, &b);
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.index, w.index);
                prop_assert_eq!(g.count.to_bits(), w.count.to_bits());
            }
        }
    }
}
