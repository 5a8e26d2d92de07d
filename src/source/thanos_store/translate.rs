//! Translation between promfed's requests and answers and the StoreAPI's
//! messages: matchers, the partial-response strategy, label sets, store
//! info, and the collector that decodes `Series` frames into samples.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};

use super::storepb::{self, ChunkEncoding, MatcherType, PartialResponseStrategy};
use super::{CallError, RESPONSE_BATCH_SIZE};
use crate::model::{Interner, Labels};
use crate::source::arrival::Arrival;
use crate::source::in_time_order::Gathered;
use crate::source::remote_read::chunk::{decode_xor_into, xor_sample_count};
use crate::source::remote_read::histogram_chunk::{decode_histogram_into, histogram_sample_count};
use crate::source::{any_series_matcher, MetaQuery, ReadOptions, Select, SelectOutput, StoreInfo};

/// The partial-response strategy of promfed's policy for this request.
pub(super) fn strategy(read: &ReadOptions) -> PartialResponseStrategy {
    if read.partial_response == Some(true) {
        PartialResponseStrategy::Warn
    } else {
        PartialResponseStrategy::Abort
    }
}

/// `matchers` with a metric-name matcher: a sidecar drops the matchers
/// its external labels satisfy and refuses a request left with none
/// (`{cluster="k8s-1"}` before its Info is known), so a selector without
/// one gets `__name__=~".+"`, which every series satisfies.
pub(super) fn with_name_matcher(matchers: &[Matcher]) -> Vec<Matcher> {
    let mut out = matchers.to_vec();
    if !out.iter().any(|m| m.name == crate::model::METRIC_NAME) {
        out.push(any_series_matcher());
    }
    out
}

/// The `Series` request of one select.
pub fn series_request(sel: &Select) -> storepb::SeriesRequest {
    storepb::SeriesRequest {
        min_time: sel.start_ms,
        max_time: sel.end_ms,
        matchers: store_matchers(&with_name_matcher(&sel.matchers)),
        max_resolution_window: 0,
        aggregates: vec![storepb::Aggr::Raw.into()],
        partial_response_strategy: strategy(&sel.read).into(),
        skip_chunks: false,
        step: sel.hints.step_ms,
        range: sel.hints.range_ms,
        query_hints: Some(storepb::QueryHints {
            step_millis: sel.hints.step_ms,
            func: sel
                .hints
                .func
                .as_ref()
                .map(|f| storepb::Func { name: f.clone() }),
            range: (sel.hints.range_ms > 0).then_some(storepb::Range {
                millis: sel.hints.range_ms,
            }),
        }),
        // Replica labels stay: deduplication (the penalty rule) needs the
        // replicas told apart, which stripping them would undo.
        without_replica_labels: Vec::new(),
        limit: 0,
        response_batch_size: RESPONSE_BATCH_SIZE,
    }
}

/// The matcher sets of a series call: `match[]`, or every series.
pub(super) fn matcher_sets(q: &MetaQuery) -> Vec<Vec<Matcher>> {
    if q.matchers.is_empty() {
        return vec![vec![any_series_matcher()]];
    }
    q.matchers.iter().map(|m| with_name_matcher(m)).collect()
}

/// The matcher sets of a label call: none at all when `match[]` is absent.
pub(super) fn label_matcher_sets(q: &MetaQuery) -> Vec<Vec<storepb::LabelMatcher>> {
    if q.matchers.is_empty() {
        return vec![Vec::new()];
    }
    matcher_sets(q).iter().map(|m| store_matchers(m)).collect()
}

pub(super) fn store_matchers(ms: &[Matcher]) -> Vec<storepb::LabelMatcher> {
    ms.iter()
        .map(|m| storepb::LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => MatcherType::Eq,
                MatchOp::NotEqual => MatcherType::Neq,
                MatchOp::Re(_) => MatcherType::Re,
                MatchOp::NotRe(_) => MatcherType::Nre,
            }
            .into(),
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

pub(super) fn labels_of(labels: Vec<storepb::Label>) -> Labels {
    Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
}

/// As `labels_of`, with names and values shared through `pool`.
fn labels_in(pool: &mut Interner, labels: Vec<storepb::Label>) -> Labels {
    Labels::from_pairs(
        labels
            .iter()
            .map(|l| (pool.intern(&l.name), pool.intern(&l.value))),
    )
}

pub(super) fn store_info_of(r: storepb::InfoResponse) -> StoreInfo {
    let store = r.store.unwrap_or_default();
    StoreInfo {
        component: r.component_type,
        label_sets: r
            .label_sets
            .into_iter()
            .map(|s| labels_of(s.labels))
            .collect(),
        min_time_ms: store.min_time,
        max_time_ms: store.max_time,
        supports_without_replica_labels: store.supports_without_replica_labels,
    }
}

/// Gathers the series of one `Series` stream, clipped to the selection.
pub(super) struct Collector {
    start_ms: i64,
    end_ms: i64,
    max_samples: usize,
    total: usize,
    series: BTreeMap<Labels, Gathered>,
    /// The query's budget, shared with its other backends, charged chunk
    /// by chunk as the stream is decoded.
    arrival: Arrival,
    /// This select's label strings, each distinct one allocated once.
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
            arrival: Arrival::new(),
            pool: Interner::new(),
        }
    }

    /// Adds one series (or a time slice of it: a store may split a series
    /// over consecutive frames). Its label set is kept once, without a
    /// copy: a new series is decoded apart and then moved into the map.
    pub(super) fn add(&mut self, s: storepb::Series) -> Result<(), CallError> {
        let labels = labels_in(&mut self.pool, s.labels);
        let mut d = Decode {
            start: self.start_ms,
            end: self.end_ms,
            max_samples: self.max_samples,
            total: self.total,
            arrival: &mut self.arrival,
        };
        let named = |labels: &Labels, e: ChunkProblem| match e {
            ChunkProblem::Bad(problem) => CallError::Chunk {
                labels: labels.to_string(),
                problem,
            },
            ChunkProblem::Call(e) => e,
        };
        match self.series.entry(labels) {
            Entry::Occupied(mut o) => d
                .chunks(s.chunks, o.get_mut())
                .map_err(|e| named(o.key(), e))?,
            Entry::Vacant(v) => {
                let mut g = Gathered::default();
                d.chunks(s.chunks, &mut g).map_err(|e| named(v.key(), e))?;
                if !g.0.is_empty() || !g.1.is_empty() {
                    v.insert(g);
                }
            }
        }
        self.total = d.total;
        Ok(())
    }

    /// Series sorted by labels, samples in time order, one per timestamp;
    /// series without samples in range are dropped.
    pub(super) fn finish(self) -> SelectOutput {
        let series = crate::source::in_time_order::series_in_time_order(self.series);
        SelectOutput {
            series,
            warnings: Vec::new(),
        }
    }
}

/// Why a series' chunks could not be decoded, before it is named.
enum ChunkProblem {
    Bad(String),
    Call(CallError),
}

/// Decodes one series' chunks under the select's and the query's budgets.
struct Decode<'a> {
    start: i64,
    end: i64,
    max_samples: usize,
    /// Samples gathered by the select so far.
    total: usize,
    arrival: &'a mut Arrival,
}

impl Decode<'_> {
    fn chunks(
        &mut self,
        chunks: Vec<storepb::AggrChunk>,
        (samples, histograms): &mut Gathered,
    ) -> Result<(), ChunkProblem> {
        let (start, end) = (self.start, self.end);
        for c in chunks {
            if c.max_time < start || c.min_time > end {
                continue;
            }
            let raw = c.raw.ok_or_else(|| {
                ChunkProblem::Bad("a chunk without raw data (downsampled data is not read)".into())
            })?;
            let encoding = ChunkEncoding::try_from(raw.r#type).map_err(|_| {
                ChunkProblem::Bad(format!("a chunk of unknown encoding {}", raw.r#type))
            })?;
            // Checked before decoding, from the count the header announces.
            let announced = match encoding {
                ChunkEncoding::Xor => xor_sample_count(&raw.data),
                // Thanos sends Prometheus's own histogram chunk encodings.
                ChunkEncoding::Histogram | ChunkEncoding::FloatHistogram => {
                    histogram_sample_count(&raw.data)
                }
            };
            if self.total.saturating_add(announced) > self.max_samples {
                return Err(ChunkProblem::Call(CallError::TooManySamples(
                    self.max_samples,
                )));
            }
            let decoded = match encoding {
                ChunkEncoding::Xor => {
                    let before = samples.len();
                    samples.reserve(announced);
                    decode_xor_into(&raw.data, start, end, samples)
                        .map_err(|e| ChunkProblem::Bad(e.to_string()))?;
                    samples.len() - before
                }
                e => {
                    let before = histograms.len();
                    histograms.reserve(announced);
                    let float = e == ChunkEncoding::FloatHistogram;
                    decode_histogram_into(&raw.data, float, start, end, histograms)
                        .map_err(|e| ChunkProblem::Bad(e.to_string()))?;
                    histograms.len() - before
                }
            };
            self.total += decoded;
            self.arrival
                .arrive(decoded as u64)
                .map_err(|e| ChunkProblem::Call(CallError::Budget(e)))?;
        }
        Ok(())
    }
}
