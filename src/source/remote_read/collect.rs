//! Gathers the series of remote-read answers (streamed chunks or plain
//! samples, floats and native histograms) per query, clipped to each
//! query's range and under one sample budget.

use std::collections::BTreeMap;

use super::chunk::{self, decode_xor_into, xor_sample_count};
use super::histogram_chunk::{self, decode_histogram_into, histogram_sample_count};
use super::histogram_pb::{histogram_sample, HistogramPbError};
use super::prompb::{self, ChunkEncoding};
use crate::model::{Interner, Labels, Sample};
use crate::source::in_time_order::{series_in_time_order, Gathered};
use crate::source::{Select, SelectOutput};

/// Why a response's series cannot be gathered.
#[derive(Debug, thiserror::Error)]
pub(super) enum CollectError {
    #[error(transparent)]
    Chunk(#[from] chunk::ChunkError),
    #[error(transparent)]
    HistogramChunk(#[from] histogram_chunk::HistogramChunkError),
    #[error(transparent)]
    Histogram(#[from] HistogramPbError),
    #[error("more than {0} samples selected")]
    TooManySamples(usize),
    #[error("answers query {0}, which was not asked")]
    NoSuchQuery(usize),
    /// The query's backends together sent more than its `max_samples`.
    #[error("{}", crate::limits::TOO_MANY_SAMPLES)]
    Budget,
}

/// Gathers a batch's series per query, under one sample budget for all,
/// and under the query's own, shared with its other backends' answers as
/// they arrive (`QueryContext::arrive`).
pub(super) struct Collectors {
    each: Vec<Collector>,
    max_samples: usize,
    /// Samples gathered so far by all of them.
    total: usize,
    query: Option<std::sync::Arc<crate::limits::QueryContext>>,
}

impl Collectors {
    pub(super) fn new(sels: &[Select], max_samples: usize) -> Self {
        Collectors {
            each: sels
                .iter()
                .map(|s| Collector::new(s.start_ms, s.end_ms, max_samples))
                .collect(),
            max_samples,
            total: 0,
            query: crate::limits::current(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.each.len()
    }

    /// Runs `add` on query `i`'s collector with what is left of the budget.
    fn with<T>(
        &mut self,
        i: usize,
        add: impl FnOnce(&mut Collector) -> Result<T, CollectError>,
    ) -> Result<T, CollectError> {
        let Some(c) = self.each.get_mut(i) else {
            return Err(CollectError::NoSuchQuery(i));
        };
        let before = c.total;
        c.max_samples = self.max_samples.saturating_sub(self.total - before);
        // What every backend of the query may still send, together.
        let shared = self.query.as_ref().map(|q| {
            usize::try_from(q.arriving_left())
                .unwrap_or(usize::MAX)
                .saturating_add(before)
        });
        let shared_binds = shared.is_some_and(|s| s < c.max_samples);
        if let Some(s) = shared {
            c.max_samples = c.max_samples.min(s);
        }
        let r = add(c);
        self.total = self.total - before + c.total;
        match r {
            Err(CollectError::TooManySamples(_)) if shared_binds => Err(CollectError::Budget),
            Ok(v) => {
                if let Some(q) = &self.query {
                    q.arrive((c.total - before) as u64)
                        .map_err(|_| CollectError::Budget)?;
                }
                Ok(v)
            }
            r => r,
        }
    }

    pub(super) fn add_chunked(
        &mut self,
        i: usize,
        series: prompb::ChunkedSeries,
    ) -> Result<(), CollectError> {
        self.with(i, |c| c.add_chunked(series))
    }

    pub(super) fn add_samples(
        &mut self,
        i: usize,
        ts: prompb::TimeSeries,
    ) -> Result<(), CollectError> {
        self.with(i, |c| c.add_samples(ts))
    }

    pub(super) fn finish(self, backend: &str) -> Vec<SelectOutput> {
        self.each.into_iter().map(|c| c.finish(backend)).collect()
    }
}

/// Gathers the series of one query's answer, clipped to its range.
pub(super) struct Collector {
    start_ms: i64,
    end_ms: i64,
    max_samples: usize,
    /// Samples gathered so far (duplicates from overlapping chunks included).
    total: usize,
    series: BTreeMap<Labels, Gathered>,
    unknown_chunks: usize,
    /// This select's label strings: a name or value repeated over its
    /// series is allocated once.
    pool: Interner,
}

impl Collector {
    pub(super) fn new(start_ms: i64, end_ms: i64, max_samples: usize) -> Self {
        Collector {
            start_ms,
            end_ms,
            max_samples,
            total: 0,
            series: BTreeMap::new(),
            unknown_chunks: 0,
            pool: Interner::new(),
        }
    }

    fn series_of(&mut self, labels: Vec<prompb::Label>) -> &mut Gathered {
        let pool = &mut self.pool;
        let labels = Labels::from_pairs(
            labels
                .iter()
                .map(|l| (pool.intern(&l.name), pool.intern(&l.value))),
        );
        self.series.entry(labels).or_default()
    }

    /// Adds one streamed series (or a slice of it).
    pub(super) fn add_chunked(
        &mut self,
        series: prompb::ChunkedSeries,
    ) -> Result<(), CollectError> {
        let (start, end, max) = (self.start_ms, self.end_ms, self.max_samples);
        let mut total = self.total;
        let mut unknown = 0;
        let g = self.series_of(series.labels);
        // One exact reservation for the frame's float chunks: what they
        // keep of the window (announced counts, scaled for chunks the
        // window cuts), instead of a whole chunk at a time (which doubled
        // the capacity each time it grew: up to 2x the samples held).
        let keep: usize = series
            .chunks
            .iter()
            .filter(|c| c.r#type == ChunkEncoding::Xor as i32)
            .map(|c| {
                kept_estimate(
                    xor_sample_count(&c.data),
                    c.min_time_ms,
                    c.max_time_ms,
                    start,
                    end,
                )
            })
            .sum();
        g.0.reserve_exact(keep);
        for c in series.chunks {
            if c.max_time_ms < start || c.min_time_ms > end {
                continue;
            }
            let encoding = ChunkEncoding::try_from(c.r#type);
            // Checked before decoding, from the count the header announces.
            let announced = match encoding {
                Ok(ChunkEncoding::Xor) => xor_sample_count(&c.data),
                Ok(ChunkEncoding::Histogram | ChunkEncoding::FloatHistogram) => {
                    histogram_sample_count(&c.data)
                }
                Ok(ChunkEncoding::Unknown) | Err(_) => {
                    unknown += 1;
                    continue;
                }
            };
            if total + announced > max {
                return Err(CollectError::TooManySamples(max));
            }
            match encoding {
                Ok(ChunkEncoding::Xor) => {
                    let before = g.0.len();
                    decode_xor_into(&c.data, start, end, &mut g.0)?;
                    total += g.0.len() - before;
                }
                Ok(e) => {
                    let before = g.1.len();
                    let float = e == ChunkEncoding::FloatHistogram;
                    decode_histogram_into(&c.data, float, start, end, &mut g.1)?;
                    total += g.1.len() - before;
                }
                Err(_) => {}
            }
        }
        self.total = total;
        self.unknown_chunks += unknown;
        Ok(())
    }

    /// Adds one series of a SAMPLES response.
    pub(super) fn add_samples(&mut self, ts: prompb::TimeSeries) -> Result<(), CollectError> {
        let (start, end) = (self.start_ms, self.end_ms);
        self.total += ts.samples.len() + ts.histograms.len();
        if self.total > self.max_samples {
            return Err(CollectError::TooManySamples(self.max_samples));
        }
        let g = self.series_of(ts.labels);
        g.0.extend(
            ts.samples
                .iter()
                .filter(|s| (start..=end).contains(&s.timestamp))
                .map(|s| Sample {
                    t: s.timestamp,
                    v: s.value,
                }),
        );
        for h in ts
            .histograms
            .iter()
            .filter(|h| (start..=end).contains(&h.timestamp))
        {
            g.1.push(histogram_sample(h)?);
        }
        Ok(())
    }

    /// Series sorted by labels, each in time order with one sample per
    /// timestamp; series left without samples are dropped.
    pub(super) fn finish(self, backend: &str) -> SelectOutput {
        let mut warnings = Vec::new();
        if self.unknown_chunks > 0 {
            warnings.push(format!(
                "backend {backend}: skipped {} chunk(s) of unknown encoding",
                self.unknown_chunks
            ));
        }
        let series = series_in_time_order(self.series);
        SelectOutput { series, warnings }
    }
}

/// How many of a chunk's `announced` samples, spread over
/// `[min_ms, max_ms]`, fall in `[start, end]`: all of them when the chunk
/// lies inside, else its share of the overlap, rounded up (an estimate
/// for a reservation; decoding keeps the exact ones).
fn kept_estimate(announced: usize, min_ms: i64, max_ms: i64, start: i64, end: i64) -> usize {
    if max_ms < start || min_ms > end {
        return 0;
    }
    if min_ms >= start && max_ms <= end {
        return announced;
    }
    let span = i128::from(max_ms) - i128::from(min_ms);
    if span <= 0 {
        return announced;
    }
    let overlap = i128::from(max_ms.min(end)) - i128::from(min_ms.max(start));
    let share = (announced as i128 * overlap + span - 1) / span + 1;
    (share.max(0) as usize).min(announced)
}

#[cfg(test)]
mod tests {
    use super::{kept_estimate, prompb, Collector};
    use crate::model::Str;

    #[test]
    fn one_select_shares_each_label_string() {
        let mut c = Collector::new(0, 1_000, 100);
        for i in ["1", "2"] {
            let label = |name: &str, value: &str| prompb::Label {
                name: name.into(),
                value: value.into(),
            };
            let ts = prompb::TimeSeries {
                labels: vec![label("job", "api"), label("i", i)],
                samples: vec![prompb::Sample {
                    value: 1.0,
                    timestamp: 10,
                }],
                histograms: Vec::new(),
            };
            assert!(c.add_samples(ts).is_ok());
        }
        let out = c.finish("b");
        assert_eq!(out.series.len(), 2);
        let job = |k: usize| {
            out.series[k]
                .labels
                .iter()
                .find(|l| l.name == "job")
                .cloned()
        };
        let (a, b) = (job(0).expect("job label"), job(1).expect("job label"));
        assert_eq!(a.value, "api");
        assert!(Str::ptr_eq(&a.value, &b.value));
        assert!(Str::ptr_eq(&a.name, &b.name));
    }

    #[test]
    fn the_reservation_covers_the_window_share_of_a_chunk() {
        // 120 samples over [0, 119_000] ms, one a second.
        assert_eq!(kept_estimate(120, 0, 119_000, 0, 200_000), 120);
        assert_eq!(kept_estimate(120, 0, 119_000, 200_000, 300_000), 0);
        // The window keeps samples 60..=119 (60 of them): at least that.
        let half = kept_estimate(120, 0, 119_000, 60_000, 300_000);
        assert!((60..=62).contains(&half), "{half}");
        // Never more than announced, also for one-point chunks.
        assert_eq!(kept_estimate(1, 5, 5, 0, 10), 1);
        assert_eq!(kept_estimate(120, i64::MIN, i64::MAX, 0, 1), 2);
    }
}
