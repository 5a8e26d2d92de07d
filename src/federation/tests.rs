use super::*;
use crate::model::Sample;
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

struct Down;
impl Source for Down {
    fn select<'a>(&'a self, _: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async {
            Err(SourceError::Backend {
                backend: "k8s-2".into(),
                message: "connection refused".into(),
            })
        })
    }
}

#[tokio::test]
async fn partial_response_policy() {
    let make = |partial| {
        Federation::new(
            vec![
                backend("k8s-1", "k8s-1", up_source(&["x"])),
                Backend {
                    name: "k8s-2".into(),
                    external_labels: [("cluster".to_string(), "k8s-2".to_string())].into(),
                    source: Arc::new(Down),
                },
            ],
            FederationOptions {
                partial_response: partial,
                replica_labels: vec![],
            },
        )
    };
    let mut s = sel(vec![Matcher::new(MatchOp::Equal, "__name__", "up")]);
    let err = make(false).select(&s).await.expect_err("abort fails");
    assert!(err.to_string().contains("k8s-2"), "{err}");
    let out = make(true).select(&s).await.expect("warn answers");
    assert_eq!(out.series.len(), 1);
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].contains("k8s-2"), "{:?}", out.warnings);
    // The request's parameter overrides the default both ways.
    s.read.partial_response = Some(true);
    assert!(make(false).select(&s).await.is_ok());
    s.read.partial_response = Some(false);
    assert!(make(true).select(&s).await.is_err());
}

#[tokio::test]
async fn replicas_are_merged_unless_dedup_is_off() {
    let mk = |replica: &str| Backend {
        name: format!("k8s-2-{replica}"),
        external_labels: [
            ("cluster".to_string(), "k8s-2".to_string()),
            ("replica".to_string(), replica.to_string()),
        ]
        .into(),
        source: Arc::new(up_source(&["x"])),
    };
    let f = Federation::new(
        vec![mk("a"), mk("b")],
        FederationOptions {
            partial_response: false,
            replica_labels: vec!["replica".into()],
        },
    );
    let mut s = sel(vec![Matcher::new(MatchOp::Equal, "__name__", "up")]);
    let out = f.select(&s).await.expect("select");
    assert_eq!(out.series.len(), 1);
    assert_eq!(out.series[0].labels.get("replica"), None);
    s.read.dedup = Some(false);
    assert_eq!(f.select(&s).await.expect("select").series.len(), 2);
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
        read: Default::default(),
    }
}

#[tokio::test]
async fn adds_external_labels_and_merges() {
    let f = Federation::new(
        vec![
            backend("a", "k8s-1", up_source(&["x", "y"])),
            backend("b", "k8s-2", up_source(&["x"])),
        ],
        Default::default(),
    );
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
    let f = Federation::new(
        vec![
            backend("a", "k8s-1", up_source(&["x"])),
            backend("b", "k8s-2", up_source(&["x"])),
        ],
        Default::default(),
    );
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
    let read = ReadOptions::default();
    let got = backend_select(&b, &s, &read).expect("not routed away");
    assert_eq!(got.matchers.len(), 1);
    let s = sel(vec![Matcher::new(MatchOp::Equal, "cluster", "k8s-2")]);
    assert!(backend_select(&b, &s, &read).is_none());
}

/// A store that announces its labels and time range (as Thanos Info
/// does) and counts the selects it is asked.
struct Announcing {
    inner: MemorySource,
    info: StoreInfo,
    asked: std::sync::atomic::AtomicUsize,
}

impl Source for Announcing {
    fn select<'a>(&'a self, s: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.select(s)
    }
    fn store_info(&self) -> Option<StoreInfo> {
        Some(self.info.clone())
    }
}

#[tokio::test]
async fn announced_labels_and_time_range_route_and_label() {
    let store = Arc::new(Announcing {
        inner: up_source(&["x"]),
        info: StoreInfo {
            component: "sidecar".into(),
            label_sets: vec![Labels::from_pairs([("cluster", "k8s-3"), ("replica", "a")])],
            min_time_ms: 500,
            max_time_ms: 20_000,
            supports_without_replica_labels: true,
        },
        asked: Default::default(),
    });
    let b = Backend {
        name: "k8s-3".into(),
        // Configured labels that disagree with the announced ones.
        external_labels: [("cluster".to_string(), "k8s-9".to_string())].into(),
        source: store.clone(),
    };
    let d = labels_disagreement(&b, &b.source.store_info().expect("info")).expect("disagree");
    assert!(d.contains("k8s-9") && d.contains("k8s-3"), "{d}");
    let f = Federation::new(vec![b], Default::default());
    let up = || Matcher::new(MatchOp::Equal, "__name__", "up");
    // The announced labels win: they label the series and route.
    let out = f
        .select(&sel(vec![
            up(),
            Matcher::new(MatchOp::Equal, "cluster", "k8s-3"),
        ]))
        .await
        .expect("select");
    assert_eq!(out.series.len(), 1);
    assert_eq!(out.series[0].labels.get("replica"), Some("a"));
    assert_eq!(store.asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    let out = f
        .select(&sel(vec![
            up(),
            Matcher::new(MatchOp::Equal, "cluster", "k8s-9"),
        ]))
        .await
        .expect("select");
    assert!(out.series.is_empty());
    // Outside the announced time range the store is not asked.
    let mut late = sel(vec![up()]);
    late.start_ms = 30_000;
    late.end_ms = 40_000;
    assert!(f.select(&late).await.expect("select").series.is_empty());
    assert_eq!(store.asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    let agreeing = Backend {
        name: "k8s-3".into(),
        external_labels: [("cluster".to_string(), "k8s-3".to_string())].into(),
        source: store,
    };
    let info = agreeing.source.store_info().expect("info");
    assert_eq!(labels_disagreement(&agreeing, &info), None);
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
                    histograms: Vec::new(),
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

#[test]
fn merge_keeps_histograms_and_the_first_source_on_a_tie() {
    use crate::model::histogram::{FloatHistogram, HistogramSample};
    let h = |t: i64, count: f64| HistogramSample {
        t,
        h: std::sync::Arc::new(FloatHistogram {
            count,
            ..FloatHistogram::default()
        }),
    };
    let labels = Labels::from_pairs([("__name__", "h")]);
    let a = Series {
        labels: labels.clone(),
        samples: vec![Sample { t: 10, v: 1.0 }],
        histograms: vec![h(20, 2.0), h(30, 3.0)],
    };
    let b = Series {
        labels: labels.clone(),
        samples: vec![Sample { t: 30, v: 9.0 }, Sample { t: 40, v: 4.0 }],
        histograms: vec![h(5, 0.5), h(20, 8.0)],
    };
    let out = merge_series(vec![a, b]);
    assert_eq!(out.len(), 1);
    let ts: Vec<i64> = out[0].samples.iter().map(|s| s.t).collect();
    assert_eq!(ts, vec![10, 40]);
    let hs: Vec<(i64, f64)> = out[0].histograms.iter().map(|s| (s.t, s.h.count)).collect();
    assert_eq!(hs, vec![(5, 0.5), (20, 2.0), (30, 3.0)]);
}
