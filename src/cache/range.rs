//! Range-query extents: step-aligned pieces of a range result, what is
//! missing from them, and how pieces merge.
//!
//! A range result at step `k` is the union of independent evaluations at
//! `start + i*k`; so results over disjoint sets of those points can be
//! concatenated series by series, and a stored piece answers any later
//! request whose points fall on the same `start % step` lattice.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::federation::points::{points_of, split, Timed};
use crate::model::histogram::HistogramSample;
use crate::model::{Labels, Sample, Series};

/// A stored piece: every series' points in `[start, end]` (both on the
/// step lattice). A piece with no series is a cached "nothing there".
#[derive(Debug, Clone, PartialEq)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
    pub series: Vec<Series>,
}

/// The last lattice point `<= end` for a range starting at `start`.
pub fn last_point(start: i64, end: i64, step: i64) -> i64 {
    start + (end - start).div_euclid(step) * step
}

/// The sub-ranges of `[start, end]` (points on the lattice) that `extents`
/// (sorted by start, not overlapping) do not cover.
pub fn gaps(extents: &[Extent], start: i64, end: i64, step: i64) -> Vec<(i64, i64)> {
    let end = last_point(start, end, step);
    let mut out = Vec::new();
    let mut cur = start;
    for x in extents {
        if cur > end {
            break;
        }
        if x.end < cur {
            continue;
        }
        if x.start > end {
            break;
        }
        if x.start > cur {
            out.push((cur, (x.start - step).min(end)));
        }
        cur = cur.max(x.end + step);
    }
    if cur <= end {
        out.push((cur, end));
    }
    out
}

/// The series of `pieces`, clipped to `[lo, hi]`, merged by label set in
/// label order; samples in time order, one per timestamp (the later piece
/// wins a tie). Series left without samples are dropped, as Prometheus
/// never returns an empty series.
pub fn merge<'a>(pieces: impl IntoIterator<Item = &'a [Series]>, lo: i64, hi: i64) -> Vec<Series> {
    let pieces: Vec<&[Series]> = pieces.into_iter().collect();
    if pieces
        .iter()
        .all(|p| p.iter().all(|s| s.histograms.is_empty()))
    {
        return merge_by(
            &pieces,
            lo,
            hi,
            |s| Cow::Borrowed(&s.samples),
            |samples| (samples, Vec::new()),
        );
    }
    // Native histograms too: one stream per series, whatever the kind.
    merge_by(&pieces, lo, hi, |s| Cow::Owned(points_of(s)), split)
}

/// [`merge`] over `points` of each series, turned back by `finish`.
fn merge_by<'a, P: Timed + 'a>(
    pieces: &[&'a [Series]],
    lo: i64,
    hi: i64,
    points: impl Fn(&'a Series) -> Cow<'a, [P]>,
    finish: impl Fn(Vec<P>) -> (Vec<Sample>, Vec<HistogramSample>),
) -> Vec<Series> {
    let mut by_labels: BTreeMap<&Labels, Vec<P>> = BTreeMap::new();
    for series in pieces {
        for s in series.iter() {
            let all = points(s);
            let from = all.partition_point(|p| p.time() < lo);
            let to = all.partition_point(|p| p.time() <= hi);
            if from < to {
                by_labels
                    .entry(&s.labels)
                    .or_default()
                    .extend_from_slice(&all[from..to]);
            }
        }
    }
    by_labels
        .into_iter()
        .map(|(labels, mut samples)| {
            // Stable: of equal timestamps the later piece comes last; keep it.
            samples.sort_by_key(Timed::time);
            let mut out: Vec<P> = Vec::with_capacity(samples.len());
            for p in samples {
                match out.last_mut() {
                    Some(last) if last.time() == p.time() => *last = p,
                    _ => out.push(p),
                }
            }
            let (samples, histograms) = finish(out);
            Series {
                labels: labels.clone(),
                samples,
                histograms,
            }
        })
        .collect()
}

/// `extents` with `new` pieces added: sorted, overlapping or adjacent pieces
/// (`next.start <= end + step`) joined, and everything before `keep_from`
/// dropped.
pub fn insert(
    mut extents: Vec<Extent>,
    new: Vec<Extent>,
    step: i64,
    keep_from: i64,
) -> Vec<Extent> {
    extents.extend(new);
    extents.retain(|x| x.end >= keep_from && x.start <= x.end);
    extents.sort_by_key(|x| x.start);
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for x in extents {
        match out.last_mut() {
            Some(last) if x.start <= last.end.saturating_add(step) => {
                let end = last.end.max(x.end);
                let series = merge(
                    [last.series.as_slice(), x.series.as_slice()],
                    last.start,
                    end,
                );
                last.end = end;
                last.series = series;
            }
            _ => out.push(x),
        }
    }
    for x in &mut out {
        if x.start < keep_from {
            // The first lattice point at or after `keep_from` (x.end is one).
            let from = x.start + (keep_from - x.start + step - 1).div_euclid(step) * step;
            x.series = merge([x.series.as_slice()], from, x.end);
            x.start = from;
        }
    }
    out
}

/// Binary encoding of extents (for the stores). Floats keep their bits, so
/// NaN payloads (stale markers) survive. `PFX2` adds each series' native
/// histograms after its floats; `PFX1` entries (floats only) still decode.
pub mod codec {
    use std::sync::Arc;

    use super::Extent;
    use crate::model::histogram::{Bucket, CounterResetHint, FloatHistogram, HistogramSample};
    use crate::model::{Labels, Sample, Series};

    const MAGIC: &[u8; 4] = b"PFX2";
    const MAGIC_FLOATS_ONLY: &[u8; 4] = b"PFX1";

    fn put_f64(out: &mut Vec<u8>, v: f64) {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    fn put_histogram(out: &mut Vec<u8>, p: &HistogramSample) {
        let h = &p.h;
        out.extend_from_slice(&p.t.to_le_bytes());
        out.push(match h.counter_reset_hint {
            CounterResetHint::Unknown => 0,
            CounterResetHint::CounterReset => 1,
            CounterResetHint::NotCounterReset => 2,
            CounterResetHint::Gauge => 3,
        });
        out.extend_from_slice(&i64::from(h.schema).to_le_bytes());
        for v in [h.zero_threshold, h.zero_count, h.count, h.sum] {
            put_f64(out, v);
        }
        for side in [&h.positive, &h.negative] {
            put_len(out, side.len());
            for b in side {
                out.extend_from_slice(&i64::from(b.index).to_le_bytes());
                put_f64(out, b.count);
            }
        }
        put_len(out, h.custom_values.len());
        for &v in h.custom_values.iter() {
            put_f64(out, v);
        }
    }

    fn histogram(r: &mut Reader<'_>) -> Option<HistogramSample> {
        let t = r.i64()?;
        let hint = CounterResetHint::from_u8(*r.take(1)?.first()?)?;
        let schema = i32::try_from(r.i64()?).ok()?;
        let f = |r: &mut Reader<'_>| r.u64().map(f64::from_bits);
        let (zero_threshold, zero_count, count, sum) = (f(r)?, f(r)?, f(r)?, f(r)?);
        let mut sides = [Vec::new(), Vec::new()];
        for side in &mut sides {
            let n = r.len()?;
            side.reserve(n.min(1 << 12));
            for _ in 0..n {
                let index = i32::try_from(r.i64()?).ok()?;
                side.push(Bucket {
                    index,
                    count: f(r)?,
                });
            }
        }
        let n = r.len()?;
        let mut custom = Vec::with_capacity(n.min(1 << 12));
        for _ in 0..n {
            custom.push(f(r)?);
        }
        let [positive, negative] = sides;
        Some(HistogramSample {
            t,
            h: Arc::new(FloatHistogram {
                counter_reset_hint: hint,
                schema,
                zero_threshold,
                zero_count,
                count,
                sum,
                positive,
                negative,
                custom_values: custom.into(),
            }),
        })
    }

    pub fn encode(extents: &[Extent]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        put_len(&mut out, extents.len());
        for x in extents {
            out.extend_from_slice(&x.start.to_le_bytes());
            out.extend_from_slice(&x.end.to_le_bytes());
            put_len(&mut out, x.series.len());
            for s in &x.series {
                put_len(&mut out, s.labels.len());
                for l in s.labels.iter() {
                    put_str(&mut out, &l.name);
                    put_str(&mut out, &l.value);
                }
                put_len(&mut out, s.samples.len());
                for p in &s.samples {
                    out.extend_from_slice(&p.t.to_le_bytes());
                    out.extend_from_slice(&p.v.to_bits().to_le_bytes());
                }
                put_len(&mut out, s.histograms.len());
                for p in &s.histograms {
                    put_histogram(&mut out, p);
                }
            }
        }
        out
    }

    /// `None` when `buf` is not a whole, well-formed encoding.
    pub fn decode(buf: &[u8]) -> Option<Vec<Extent>> {
        let mut r = Reader { buf, pos: 0 };
        let with_histograms = match r.take(4)? {
            m if m == MAGIC => true,
            m if m == MAGIC_FLOATS_ONLY => false,
            _ => return None,
        };
        let n = r.len()?;
        let mut extents = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let start = r.i64()?;
            let end = r.i64()?;
            let ns = r.len()?;
            let mut series = Vec::with_capacity(ns.min(1024));
            for _ in 0..ns {
                let nl = r.len()?;
                let mut pairs = Vec::with_capacity(nl.min(64));
                for _ in 0..nl {
                    let name = r.str()?;
                    let value = r.str()?;
                    pairs.push((name, value));
                }
                let np = r.len()?;
                let mut samples = Vec::with_capacity(np.min(1 << 16));
                for _ in 0..np {
                    let t = r.i64()?;
                    let v = f64::from_bits(r.u64()?);
                    samples.push(Sample { t, v });
                }
                let mut histograms = Vec::new();
                if with_histograms {
                    let nh = r.len()?;
                    histograms.reserve(nh.min(1 << 12));
                    for _ in 0..nh {
                        histograms.push(histogram(&mut r)?);
                    }
                }
                series.push(Series {
                    labels: Labels::from_pairs(pairs),
                    samples,
                    histograms,
                });
            }
            extents.push(Extent { start, end, series });
        }
        (r.pos == buf.len()).then_some(extents)
    }

    fn put_len(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        put_len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }

    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let end = self.pos.checked_add(n)?;
            let s = self.buf.get(self.pos..end)?;
            self.pos = end;
            Some(s)
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn i64(&mut self) -> Option<i64> {
            Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn len(&mut self) -> Option<usize> {
            let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
            usize::try_from(n).ok()
        }
        fn str(&mut self) -> Option<String> {
            let n = self.len()?;
            String::from_utf8(self.take(n)?.to_vec()).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;
    use proptest::prelude::*;

    fn piece(start: i64, end: i64, step: i64, ids: &[&str]) -> Extent {
        let series = ids
            .iter()
            .map(|id| Series {
                labels: Labels::from_pairs([("id", *id)]),
                samples: (0..)
                    .map(|i| start + i * step)
                    .take_while(|t| *t <= end)
                    .map(|t| Sample { t, v: t as f64 })
                    .collect(),
                histograms: Vec::new(),
            })
            .collect();
        Extent { start, end, series }
    }

    #[test]
    fn codec_round_trips_bits() {
        let mut x = piece(0, 40, 10, &["a", "b"]);
        x.series[0].samples[1].v = stale_nan();
        x.series[1].samples[2].v = f64::NEG_INFINITY;
        let empty = Extent {
            start: 50,
            end: 90,
            series: vec![],
        };
        let enc = codec::encode(&[x.clone(), empty.clone()]);
        let dec = codec::decode(&enc).expect("decodes");
        assert_eq!(dec.len(), 2);
        assert_eq!(dec[1], empty);
        assert!(crate::model::is_stale_nan(dec[0].series[0].samples[1].v));
        assert_eq!(dec[0].series[1], x.series[1]);
        for cut in [0, 3, 4, 10, enc.len() - 1] {
            assert!(codec::decode(&enc[..cut]).is_none(), "cut at {cut}");
        }
        assert!(codec::decode(b"garbage!").is_none());
    }

    #[test]
    fn codec_and_merge_carry_histograms() {
        use crate::model::histogram::{Bucket, FloatHistogram, HistogramSample};
        let h = |t: i64, count: f64| HistogramSample {
            t,
            h: std::sync::Arc::new(FloatHistogram {
                schema: -53,
                count,
                sum: count * 2.0,
                positive: vec![Bucket { index: 1, count }],
                custom_values: vec![0.5, 1.0].into(),
                counter_reset_hint: crate::model::histogram::CounterResetHint::Gauge,
                ..FloatHistogram::default()
            }),
        };
        let mut x = piece(0, 40, 10, &["a"]);
        x.series[0].samples.truncate(2);
        x.series[0].histograms = vec![h(20, 3.0), h(30, 4.0), h(40, 5.0)];
        let enc = codec::encode(std::slice::from_ref(&x));
        let dec = codec::decode(&enc).expect("decodes");
        assert_eq!(dec[0], x);
        let mut later = piece(30, 50, 10, &["a"]);
        later.series[0].samples.truncate(1); // a float at 30 replaces the histogram
        later.series[0].histograms = vec![h(40, 6.0), h(50, 7.0)];
        let merged = merge([x.series.as_slice(), later.series.as_slice()], 10, 50);
        let ts: Vec<i64> = merged[0].samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![10, 30]);
        let hs: Vec<(i64, f64)> = merged[0]
            .histograms
            .iter()
            .map(|p| (p.t, p.h.count))
            .collect();
        assert_eq!(hs, vec![(20, 3.0), (40, 6.0), (50, 7.0)]);
    }

    proptest! {
        /// Gaps and extents together cover exactly the request's points,
        /// and inserting the evaluated gaps leaves sorted, disjoint extents.
        #[test]
        fn gaps_complete_the_extents(
            spans in prop::collection::vec((0i64..60, 0i64..10), 0..6),
            start in 0i64..70,
            len in 0i64..40,
        ) {
            let step = 10;
            let mut extents = Vec::new();
            for (s, l) in spans {
                extents = insert(extents, vec![piece(s * step, (s + l) * step, step, &["a"])], step, i64::MIN);
            }
            prop_assert!(extents.windows(2).all(|w| w[0].end + step < w[1].start));
            let (s, e) = (start * step, (start + len) * step + 3);
            let gs = gaps(&extents, s, e, step);
            let last = last_point(s, e, step);
            let mut covered = Vec::new();
            for t in (s..=last).step_by(step as usize) {
                let in_extent = extents.iter().any(|x| x.start <= t && t <= x.end);
                let in_gap = gs.iter().any(|(a, b)| *a <= t && t <= *b);
                prop_assert!(in_extent != in_gap, "t={} extent={} gap={}", t, in_extent, in_gap);
                covered.push(t);
            }
            let new: Vec<Extent> = gs.iter().map(|&(a, b)| piece(a, b, step, &["a"])).collect();
            let all = insert(extents, new, step, i64::MIN);
            let merged = merge(all.iter().map(|x| x.series.as_slice()), s, last);
            let ts: Vec<i64> = merged.iter().flat_map(|x| x.samples.iter().map(|p| p.t)).collect();
            prop_assert_eq!(ts, covered);
        }
    }

    #[test]
    fn insert_trims_history_on_the_lattice() {
        let x = insert(vec![piece(0, 100, 10, &["a"])], vec![], 10, 35);
        assert_eq!(x.len(), 1);
        assert_eq!(x[0].start, 40);
        assert_eq!(x[0].series[0].samples[0].t, 40);
        assert!(insert(vec![piece(0, 30, 10, &["a"])], vec![], 10, 35).is_empty());
    }
}
