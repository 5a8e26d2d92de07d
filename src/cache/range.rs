//! Range-query extents: step-aligned pieces of a range result, what is
//! missing from them, and how pieces merge.
//!
//! A range result at step `k` is the union of independent evaluations at
//! `start + i*k`; so results over disjoint sets of those points can be
//! concatenated series by series, and a stored piece answers any later
//! request whose points fall on the same `start % step` lattice.

use std::collections::BTreeMap;

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
    let mut by_labels: BTreeMap<&Labels, Vec<Sample>> = BTreeMap::new();
    for series in pieces {
        for s in series {
            let from = s.samples.partition_point(|p| p.t < lo);
            let to = s.samples.partition_point(|p| p.t <= hi);
            if from < to {
                by_labels
                    .entry(&s.labels)
                    .or_default()
                    .extend_from_slice(&s.samples[from..to]);
            }
        }
    }
    by_labels
        .into_iter()
        .map(|(labels, mut samples)| {
            // Stable: of equal timestamps the later piece comes last; keep it.
            samples.sort_by_key(|p| p.t);
            let mut out: Vec<Sample> = Vec::with_capacity(samples.len());
            for p in samples {
                match out.last_mut() {
                    Some(last) if last.t == p.t => *last = p,
                    _ => out.push(p),
                }
            }
            Series {
                labels: labels.clone(),
                samples: out,
                histograms: Vec::new(),
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
/// NaN payloads (stale markers) survive.
pub mod codec {
    use super::Extent;
    use crate::model::{Labels, Sample, Series};

    const MAGIC: &[u8; 4] = b"PFX1";

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
            }
        }
        out
    }

    /// `None` when `buf` is not a whole, well-formed encoding.
    pub fn decode(buf: &[u8]) -> Option<Vec<Extent>> {
        let mut r = Reader { buf, pos: 0 };
        if r.take(4)? != MAGIC {
            return None;
        }
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
                series.push(Series {
                    labels: Labels::from_pairs(pairs),
                    samples,
                    histograms: Vec::new(),
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
