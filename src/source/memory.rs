//! An in-memory `Source` for unit tests and the PromQL conformance corpus.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{matches_all, Select, SelectOutput, Source, SourceError};
use crate::model::histogram::{FloatHistogram, HistogramSample};
use crate::model::{Labels, Sample, Series};

/// Series held in memory, keyed (and so sorted) by label set.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    series: BTreeMap<Labels, Vec<Sample>>,
    /// Native histogram samples, by series.
    histograms: BTreeMap<Labels, Vec<HistogramSample>>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample; samples of a series may arrive in any order and a
    /// later sample at the same timestamp replaces the earlier one.
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        if let Some(hs) = self.histograms.get_mut(&labels) {
            if let Ok(i) = hs.binary_search_by_key(&t, |s| s.t) {
                hs.remove(i);
            }
        }
        let samples = self.series.entry(labels).or_default();
        match samples.binary_search_by_key(&t, |s| s.t) {
            Ok(i) => samples[i].v = v,
            Err(i) => samples.insert(i, Sample { t, v }),
        }
    }

    /// Adds a native histogram sample; it replaces a float or histogram
    /// sample at the same timestamp.
    pub fn add_histogram(&mut self, labels: Labels, t: i64, h: FloatHistogram) {
        if let Some(fs) = self.series.get_mut(&labels) {
            if let Ok(i) = fs.binary_search_by_key(&t, |s| s.t) {
                fs.remove(i);
            }
        }
        let hs = self.histograms.entry(labels).or_default();
        let h = std::sync::Arc::new(h);
        match hs.binary_search_by_key(&t, |s| s.t) {
            Ok(i) => hs[i].h = h,
            Err(i) => hs.insert(i, HistogramSample { t, h }),
        }
    }

    /// Adds a whole series (merged with any samples already held).
    pub fn add_series(&mut self, series: Series) {
        for s in series.samples {
            self.add(series.labels.clone(), s.t, s.v);
        }
        for s in series.histograms {
            self.add_histogram(series.labels.clone(), s.t, (*s.h).clone());
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
        self.histograms.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
            + self
                .histograms
                .keys()
                .filter(|l| !self.series.contains_key(*l))
                .count()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.histograms.is_empty()
    }

    /// Synchronous select, for callers that hold the source directly.
    pub fn select_sync(&self, sel: &Select) -> SelectOutput {
        let empty_f: Vec<Sample> = Vec::new();
        let empty_h: Vec<HistogramSample> = Vec::new();
        let mut names: Vec<&Labels> = self
            .series
            .keys()
            .chain(self.histograms.keys())
            .filter(|labels| matches_all(labels, &sel.matchers))
            .collect();
        names.sort();
        names.dedup();
        let series = names
            .into_iter()
            .filter_map(|labels| {
                let fs = self.series.get(labels).unwrap_or(&empty_f);
                let hs = self.histograms.get(labels).unwrap_or(&empty_h);
                let lo = fs.partition_point(|s| s.t < sel.start_ms);
                let hi = fs.partition_point(|s| s.t <= sel.end_ms);
                let hlo = hs.partition_point(|s| s.t < sel.start_ms);
                let hhi = hs.partition_point(|s| s.t <= sel.end_ms);
                (lo < hi || hlo < hhi).then(|| Series {
                    labels: labels.clone(),
                    samples: fs[lo..hi].to_vec(),
                    histograms: hs[hlo..hhi].to_vec(),
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
