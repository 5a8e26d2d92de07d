//! Exact pushdown, the federation's half: which backends a pushed-down
//! sub-query goes to (only when no series can span two of them), asking
//! each one's query API, and its answer as series with the backend's
//! external labels. The engine (`promql::pushdown`) decides what to push.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::future::join_all;
use promql_parser::label::Matcher;
use serde_json::Value as Json;

use super::{observe, route_matchers, Backend, Federation};
use crate::model::{Labels, Sample, Series, METRIC_NAME};
use crate::source::prometheus::{format_api_time, parse_value, selector_text};
use crate::source::SelectOutput;

/// Why a node is not pushed down (its samples are read instead).
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotPushed {
    #[error("pushdown is off")]
    Off,
    #[error("backend {0} does not take pushdown")]
    NotPushable(String),
    #[error("backend {0} is an HA replica")]
    Replica(String),
    #[error("backends {0} and {1} may hold the same series")]
    Overlap(String, String),
    #[error("backend {backend}: {why}")]
    Answer { backend: String, why: String },
}

/// One backend a pushed-down node goes to, with the matchers it is sent
/// (those its external labels satisfy left out, as for selects).
pub struct Target<'a> {
    pub backend: &'a Backend,
    pub matchers: Vec<Matcher>,
}

/// When a pushed-down node is evaluated: one time (`step_ms` 0) or every
/// step of a range.
#[derive(Debug, Clone, Copy)]
pub struct PushGrid {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    /// The query's lookback delta, sent (`lookback_delta`) when the node
    /// has an instant selector.
    pub lookback_ms: Option<i64>,
}

/// One backend's answer to a pushed-down node.
pub struct Pushed {
    pub backend: String,
    /// Its series, external labels added.
    pub series: Vec<Series>,
}

impl Federation {
    /// Turns pushdown on for the backends where `pushable` is true (by
    /// position); the others are read as usual.
    pub fn with_pushdown(mut self, pushable: Vec<bool>) -> Self {
        self.pushable = pushable;
        self
    }

    /// Whether any backend takes pushdown.
    pub fn pushdown_on(&self) -> bool {
        self.pushable.iter().any(|p| *p)
    }

    /// The backends a node over a selector of `matchers` reading
    /// `[start_ms, end_ms]` goes to, or why it cannot be pushed: every
    /// backend that may hold a match must take pushdown, none may be an HA
    /// replica (dedup merges replicas' samples, which no backend sees),
    /// and each pair's external labels must differ in a label both have,
    /// so that no series lives on two backends.
    pub fn push_targets(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Target<'_>>, NotPushed> {
        if !self.pushdown_on() {
            return Err(NotPushed::Off);
        }
        let mut out: Vec<(Target<'_>, BTreeMap<String, String>)> = Vec::new();
        for (i, b) in self.backends.iter().enumerate() {
            let info = b.source.store_info();
            if !b.may_hold(info.as_ref(), matchers, start_ms, end_ms) {
                continue;
            }
            let labels = b.labels().into_owned();
            let Some(ms) = route_matchers(&labels, matchers) else {
                continue;
            };
            if !self.pushable.get(i).copied().unwrap_or(false) {
                return Err(NotPushed::NotPushable(b.name.clone()));
            }
            if labels.keys().any(|k| self.opts.replica_labels.contains(k)) {
                return Err(NotPushed::Replica(b.name.clone()));
            }
            for (other, theirs) in &out {
                let apart = labels
                    .iter()
                    .any(|(k, v)| theirs.get(k).is_some_and(|w| w != v));
                if !apart {
                    return Err(NotPushed::Overlap(
                        other.backend.name.clone(),
                        b.name.clone(),
                    ));
                }
            }
            out.push((
                Target {
                    backend: b,
                    matchers: ms,
                },
                labels,
            ));
        }
        Ok(out.into_iter().map(|(t, _)| t).collect())
    }

    /// Asks every target's query API for `query(target's matchers)` on
    /// `grid`; when `matchers` are given (a per-series node), each
    /// answer's series get the backend's external labels and must still
    /// match them (but the metric name); otherwise (an aggregation) the
    /// series are left as the backend labels them. Any failure, warning,
    /// info or native histogram refuses the whole node.
    pub async fn push_query(
        &self,
        targets: &[Target<'_>],
        matchers: Option<&[Matcher]>,
        query: impl Fn(&[Matcher]) -> String,
        grid: PushGrid,
    ) -> Result<Vec<Pushed>, NotPushed> {
        let asks = targets.iter().map(|t| {
            let text = query(&t.matchers);
            let (path, mut params) = if grid.step_ms == 0 {
                (
                    "/api/v1/query",
                    vec![
                        ("query".to_string(), text),
                        ("time".to_string(), format_api_time(grid.start_ms)),
                    ],
                )
            } else {
                (
                    "/api/v1/query_range",
                    vec![
                        ("query".to_string(), text),
                        ("start".to_string(), format_api_time(grid.start_ms)),
                        ("end".to_string(), format_api_time(grid.end_ms)),
                        ("step".to_string(), format_api_time(grid.step_ms)),
                    ],
                )
            };
            if let Some(l) = grid.lookback_ms {
                params.push(("lookback_delta".to_string(), format_api_time(l)));
            }
            async move {
                let started = Instant::now();
                let answer = t.backend.source.api_get(path, &params).await;
                (started, answer)
            }
        });
        let answers = join_all(asks).await;
        let mut out = Vec::with_capacity(targets.len());
        for (t, (started, answer)) in targets.iter().zip(answers) {
            let b = t.backend;
            let refuse = |why: String| NotPushed::Answer {
                backend: b.name.clone(),
                why,
            };
            let data = match answer {
                Ok(Some(d)) => d,
                Ok(None) => return Err(NotPushed::NotPushable(b.name.clone())),
                Err(e) => return Err(refuse(e.to_string())),
            };
            if let Some(w) = data.warnings.first().or(data.infos.first()) {
                return Err(refuse(format!("annotated: {w}")));
            }
            let external = b.labels();
            let mut series = parse_result(&data.data, &b.name)?;
            for s in &mut series {
                if matchers.is_some() {
                    let l = std::mem::take(&mut s.labels);
                    s.labels = Federation::with_external(&external, l);
                }
                if s.labels
                    .iter()
                    .any(|l| self.opts.replica_labels.iter().any(|r| l.name == *r))
                {
                    return Err(refuse("a series has a replica label".into()));
                }
                if !matchers
                    .unwrap_or_default()
                    .iter()
                    .filter(|m| m.name != METRIC_NAME)
                    .all(|m| m.is_match(s.labels.get(&m.name).unwrap_or("")))
                {
                    return Err(refuse("a series does not match the selector".into()));
                }
            }
            // Charged to the query's budget and counted as a read from
            // the backend, as a select's answer is.
            let charged = observe::observed_select(
                &b.name,
                started,
                Ok(SelectOutput {
                    series,
                    warnings: Vec::new(),
                }),
            )
            .map_err(|e| refuse(e.to_string()))?;
            out.push(Pushed {
                backend: b.name.clone(),
                series: charged.series,
            });
        }
        Ok(out)
    }
}

impl Federation {
    /// The label names of the series each target holds for its matchers
    /// in `[start_ms, end_ms]` (its `/api/v1/labels`), in target order.
    pub async fn push_label_names(
        &self,
        targets: &[Target<'_>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Vec<String>>, NotPushed> {
        let asks = targets.iter().map(|t| {
            let params = vec![
                ("match[]".to_string(), selector_text(&t.matchers)),
                ("start".to_string(), format_api_time(start_ms)),
                ("end".to_string(), format_api_time(end_ms)),
            ];
            async move { t.backend.source.api_get("/api/v1/labels", &params).await }
        });
        let mut out = Vec::with_capacity(targets.len());
        for (t, answer) in targets.iter().zip(join_all(asks).await) {
            let b = &t.backend.name;
            let data = match answer {
                Ok(Some(d)) => d,
                Ok(None) => return Err(NotPushed::NotPushable(b.clone())),
                Err(e) => {
                    return Err(NotPushed::Answer {
                        backend: b.clone(),
                        why: e.to_string(),
                    })
                }
            };
            let Some(names) = data.data.as_array() else {
                return Err(NotPushed::Answer {
                    backend: b.clone(),
                    why: "label names answer is not a list".into(),
                });
            };
            out.push(
                names
                    .iter()
                    .map(|n| n.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| NotPushed::Answer {
                        backend: b.clone(),
                        why: "a label name is not a string".into(),
                    })?,
            );
        }
        Ok(out)
    }
}

/// The series of a query API answer's `data` (a vector or a matrix of
/// floats): one sample per point.
fn parse_result(data: &Json, backend: &str) -> Result<Vec<Series>, NotPushed> {
    let bad = |why: String| NotPushed::Answer {
        backend: backend.to_string(),
        why,
    };
    let kind = data["resultType"].as_str().unwrap_or_default();
    let key = match kind {
        "vector" => "value",
        "matrix" => "values",
        other => return Err(bad(format!("unexpected result type {other:?}"))),
    };
    let Some(result) = data["result"].as_array() else {
        return Err(bad("answer without a result".into()));
    };
    let mut out = Vec::with_capacity(result.len());
    for r in result {
        if r.get("histogram").is_some() || r.get("histograms").is_some() {
            return Err(bad("a native histogram in the answer".into()));
        }
        let Some(metric) = r["metric"].as_object() else {
            return Err(bad("a series without labels".into()));
        };
        let labels = Labels::from_pairs(
            metric
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
        );
        let points: Vec<&Json> = match kind {
            "vector" => vec![&r[key]],
            _ => r[key]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
        };
        let mut samples = Vec::with_capacity(points.len());
        for p in points {
            let (Some(t), Some(v)) = (p[0].as_f64(), p[1].as_str().and_then(parse_value)) else {
                return Err(bad(format!("bad point {p}")));
            };
            samples.push(Sample {
                t: (t * 1000.0).round() as i64,
                v,
            });
        }
        out.push(Series {
            labels,
            samples,
            histograms: Vec::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use promql_parser::label::{MatchOp, Matcher};

    use super::NotPushed;
    use crate::federation::{Backend, Federation, FederationOptions};
    use crate::source::memory::MemorySource;

    fn backend(name: &str, labels: &[(&str, &str)]) -> Backend {
        Backend {
            name: name.into(),
            external_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            source: Arc::new(MemorySource::default()),
        }
    }

    fn fed(backends: Vec<Backend>, pushable: Vec<bool>) -> Federation {
        Federation::new(
            backends,
            FederationOptions {
                partial_response: false,
                replica_labels: vec!["replica".into()],
            },
        )
        .with_pushdown(pushable)
    }

    fn names(f: &Federation, ms: &[Matcher]) -> Result<Vec<String>, NotPushed> {
        f.push_targets(ms, 0, 1000)
            .map(|t| t.iter().map(|t| t.backend.name.clone()).collect())
    }

    #[test]
    fn targets_only_when_no_series_can_span_backends() {
        let x = Matcher::new(MatchOp::Equal, "__name__", "x");
        let only_2 = Matcher::new(MatchOp::Equal, "cluster", "k8s-2");
        let a = || backend("k8s-1", &[("cluster", "k8s-1")]);
        let b = || backend("k8s-2", &[("cluster", "k8s-2")]);
        let f = fed(vec![a(), b()], vec![true, true]);
        assert_eq!(
            names(&f, std::slice::from_ref(&x)).ok(),
            Some(vec!["k8s-1".into(), "k8s-2".into()])
        );
        // The cluster matcher routes to one backend, and is not sent there.
        let t = f.push_targets(&[x.clone(), only_2.clone()], 0, 1000).ok();
        let t = t.as_deref().unwrap_or_default();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].matchers, vec![x.clone()]);
        // Off, or a backend that does not take it.
        let off = Federation::new(vec![a(), b()], FederationOptions::default());
        assert!(matches!(
            names(&off, std::slice::from_ref(&x)),
            Err(NotPushed::Off)
        ));
        let f = fed(vec![a(), b()], vec![true, false]);
        assert!(
            matches!(names(&f, std::slice::from_ref(&x)), Err(NotPushed::NotPushable(n)) if n == "k8s-2")
        );
        // ... unless the node does not reach it.
        assert!(names(
            &f,
            &[x.clone(), Matcher::new(MatchOp::Equal, "cluster", "k8s-1")]
        )
        .is_ok());
        // Backends not told apart by a shared label: a series may be on both.
        let f = fed(
            vec![a(), backend("other", &[("region", "eu")])],
            vec![true, true],
        );
        assert!(matches!(
            names(&f, std::slice::from_ref(&x)),
            Err(NotPushed::Overlap(..))
        ));
        // An HA pair.
        let f = fed(
            vec![
                a(),
                backend("k8s-2-a", &[("cluster", "k8s-2"), ("replica", "a")]),
                backend("k8s-2-b", &[("cluster", "k8s-2"), ("replica", "b")]),
            ],
            vec![true, true, true],
        );
        assert!(
            matches!(names(&f, std::slice::from_ref(&x)), Err(NotPushed::Replica(n)) if n == "k8s-2-a")
        );
        assert!(matches!(
            names(&f, &[x.clone(), only_2]),
            Err(NotPushed::Replica(_))
        ));
    }
}
