//! An in-memory `Source` for unit tests and the PromQL conformance corpus.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{matches_all, Select, SelectOutput, Source, SourceError};
use crate::model::{Labels, Sample, Series};

/// Series held in memory, keyed (and so sorted) by label set.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample; samples of a series may arrive in any order and a
    /// later sample at the same timestamp replaces the earlier one.
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        let samples = self.series.entry(labels).or_default();
        match samples.binary_search_by_key(&t, |s| s.t) {
            Ok(i) => samples[i].v = v,
            Err(i) => samples.insert(i, Sample { t, v }),
        }
    }

    /// Adds a whole series (merged with any samples already held).
    pub fn add_series(&mut self, series: Series) {
        for s in series.samples {
            self.add(series.labels.clone(), s.t, s.v);
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Synchronous select, for callers that hold the source directly.
    pub fn select_sync(&self, sel: &Select) -> SelectOutput {
        let series = self
            .series
            .iter()
            .filter(|(labels, _)| matches_all(labels, &sel.matchers))
            .filter_map(|(labels, samples)| {
                let lo = samples.partition_point(|s| s.t < sel.start_ms);
                let hi = samples.partition_point(|s| s.t <= sel.end_ms);
                (lo < hi).then(|| Series {
                    labels: labels.clone(),
                    samples: samples[lo..hi].to_vec(),
                })
            })
            .collect();
        SelectOutput {
            series,
            warnings: Vec::new(),
        }
    }
}

impl Source for MemorySource {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async move { Ok(self.select_sync(sel)) })
    }

    /// No replicas are merged: any matcher may be applied after a select.
    fn replica_labels(&self, _: &super::ReadOptions) -> Option<Vec<String>> {
        Some(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::{MatchOp, Matcher};

    #[tokio::test]
    async fn selects_by_matchers_and_time() {
        let mut m = MemorySource::new();
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        for t in [0, 10, 20, 30] {
            m.add(a.clone(), t, t as f64);
            m.add(b.clone(), t, 1.0);
        }
        let sel = Select {
            matchers: vec![
                Matcher::new(MatchOp::Equal, "__name__", "up"),
                Matcher::new(MatchOp::Equal, "job", "a"),
            ],
            start_ms: 10,
            end_ms: 20,
            hints: Default::default(),
            read: Default::default(),
        };
        let out = m.select(&sel).await.expect("memory select");
        assert_eq!(out.series.len(), 1);
        assert_eq!(out.series[0].labels, a);
        let ts: Vec<i64> = out.series[0].samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![10, 20]);
    }
}
