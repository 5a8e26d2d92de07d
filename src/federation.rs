//! Fans one select out to every backend, adds each backend's external
//! labels, and merges the answers by label set.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::{join_all, BoxFuture};
use promql_parser::label::Matcher;

use crate::model::{Labels, Sample, Series};
use crate::source::{matches_all, Select, SelectOutput, Source, SourceError};

/// One federated backend: a source and the labels that identify it.
pub struct Backend {
    /// Name used in errors and warnings.
    pub name: String,
    /// Added to each series that lacks them.
    pub external_labels: BTreeMap<String, String>,
    pub source: Arc<dyn Source>,
}

/// A `Source` made of backends.
pub struct Federation {
    backends: Vec<Backend>,
}

impl Federation {
    pub fn new(backends: Vec<Backend>) -> Self {
        Federation { backends }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    async fn select_all(&self, sel: &Select) -> Result<SelectOutput, SourceError> {
        // Route: skip backends whose external labels contradict a matcher, and
        // drop matchers that the external labels alone satisfy (the backend's
        // own storage does not hold its external labels).
        let plans: Vec<(&Backend, Select)> = self
            .backends
            .iter()
            .filter_map(|b| backend_select(b, sel).map(|s| (b, s)))
            .collect();
        let answers = join_all(plans.iter().map(|(b, s)| b.source.select(s))).await;

        let mut warnings = Vec::new();
        let mut all: Vec<Series> = Vec::new();
        for ((b, _), answer) in plans.iter().zip(answers) {
            let out = answer?;
            warnings.extend(out.warnings);
            for mut s in out.series {
                for (k, v) in &b.external_labels {
                    if s.labels.get(k).is_none() {
                        s.labels.set(k, v);
                    }
                }
                // Re-check the full matchers: a series may carry its own value
                // for a label that is also external.
                if matches_all(&s.labels, &sel.matchers) {
                    all.push(s);
                }
            }
        }
        Ok(SelectOutput {
            series: merge_series(all),
            warnings,
        })
    }
}

impl Source for Federation {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(self.select_all(sel))
    }
}

/// The select to send to `b`, or `None` when `b` cannot hold a matching series.
fn backend_select(b: &Backend, sel: &Select) -> Option<Select> {
    let mut matchers: Vec<Matcher> = Vec::with_capacity(sel.matchers.len());
    for m in &sel.matchers {
        match b.external_labels.get(&m.name) {
            Some(v) if m.is_match(v) => {}
            Some(_) => return None,
            None => matchers.push(m.clone()),
        }
    }
    Some(Select {
        matchers,
        start_ms: sel.start_ms,
        end_ms: sel.end_ms,
        hints: sel.hints.clone(),
    })
}

/// Sorts series by labels and merges those with equal label sets into one,
/// keeping one sample per timestamp (the first source's on a tie).
pub fn merge_series(mut all: Vec<Series>) -> Vec<Series> {
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.samples = merge_samples(&last.samples, &s.samples);
            }
            _ => out.push(s),
        }
    }
    out
}

fn merge_samples(a: &[Sample], b: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].t < b[j].t {
            out.push(a[i]);
            i += 1;
        } else if b[j].t < a[i].t {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Label set of a backend's external labels, for display.
pub fn external_labels_of(b: &Backend) -> Labels {
    Labels::from_pairs(
        b.external_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::MemorySource;
    use promql_parser::label::MatchOp;
    use proptest::prelude::*;

    fn backend(name: &str, cluster: &str, src: MemorySource) -> Backend {
        Backend {
            name: name.into(),
            external_labels: [("cluster".to_string(), cluster.to_string())].into(),
            source: Arc::new(src),
        }
    }

    fn up_source(jobs: &[&str]) -> MemorySource {
        let mut m = MemorySource::new();
        for j in jobs {
            let l = Labels::from_pairs([("__name__", "up"), ("job", *j)]);
            m.add(l, 1000, 1.0);
        }
        m
    }

    fn sel(matchers: Vec<Matcher>) -> Select {
        Select {
            matchers,
            start_ms: 0,
            end_ms: 10_000,
            hints: Default::default(),
        }
    }

    #[tokio::test]
    async fn adds_external_labels_and_merges() {
        let f = Federation::new(vec![
            backend("a", "k8s-1", up_source(&["x", "y"])),
            backend("b", "k8s-2", up_source(&["x"])),
        ]);
        let out = f
            .select(&sel(vec![Matcher::new(MatchOp::Equal, "__name__", "up")]))
            .await
            .expect("select");
        let got: Vec<String> = out.series.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            got,
            vec![
                r#"{__name__="up", cluster="k8s-1", job="x"}"#,
                r#"{__name__="up", cluster="k8s-1", job="y"}"#,
                r#"{__name__="up", cluster="k8s-2", job="x"}"#,
            ]
        );
    }

    #[tokio::test]
    async fn routes_by_external_labels() {
        let f = Federation::new(vec![
            backend("a", "k8s-1", up_source(&["x"])),
            backend("b", "k8s-2", up_source(&["x"])),
        ]);
        let out = f
            .select(&sel(vec![
                Matcher::new(MatchOp::Equal, "__name__", "up"),
                Matcher::new(MatchOp::Equal, "cluster", "k8s-2"),
            ]))
            .await
            .expect("select");
        assert_eq!(out.series.len(), 1);
        assert_eq!(out.series[0].labels.get("cluster"), Some("k8s-2"));
    }

    #[test]
    fn backend_select_drops_satisfied_matchers() {
        let b = backend("a", "k8s-1", MemorySource::new());
        let s = sel(vec![
            Matcher::new(MatchOp::Equal, "__name__", "up"),
            Matcher::new(MatchOp::NotEqual, "cluster", "k8s-2"),
        ]);
        let got = backend_select(&b, &s).expect("not routed away");
        assert_eq!(got.matchers.len(), 1);
        let s = sel(vec![Matcher::new(MatchOp::Equal, "cluster", "k8s-2")]);
        assert!(backend_select(&b, &s).is_none());
    }

    fn arb_series() -> impl Strategy<Value = Vec<Series>> {
        prop::collection::vec(
            (0u8..4, prop::collection::vec((0i64..50, -5i32..5), 0..8)),
            0..8,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(id, samples)| {
                    let mut samples: Vec<Sample> = samples
                        .into_iter()
                        .map(|(t, v)| Sample { t, v: v as f64 })
                        .collect();
                    samples.sort_by_key(|s| s.t);
                    samples.dedup_by_key(|s| s.t);
                    Series {
                        labels: Labels::from_pairs([("id", id.to_string())]),
                        samples,
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn merge_is_sorted_unique_and_idempotent(series in arb_series()) {
            let merged = merge_series(series.clone());
            prop_assert!(merged.windows(2).all(|w| w[0].labels < w[1].labels));
            for s in &merged {
                prop_assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
            }
            let mut doubled = merged.clone();
            doubled.extend(merged.clone());
            prop_assert_eq!(merge_series(doubled), merged.clone());
            // Every input timestamp survives.
            for s in &series {
                let m = merged.iter().find(|x| x.labels == s.labels);
                prop_assert!(m.is_some());
                if let Some(m) = m {
                    for smp in &s.samples {
                        prop_assert!(m.samples.iter().any(|x| x.t == smp.t));
                    }
                }
            }
        }
    }
}
