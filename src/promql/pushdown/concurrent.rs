//! The pushed sub-queries and the raw reads of one query run at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;

use crate::federation::{Backend, Federation, FederationOptions};
use crate::model::{Labels, Sample, Series};
use crate::promql::{Engine, QueryOptions, Value};
use crate::source::{ApiData, Select, SelectOutput, Source, SourceError};

/// A backend that answers a select only once a query-API call has
/// started, and a query-API call only once a select has started (each
/// gives up after 5 s, noting it): asked one after the other, the first
/// waits in vain.
#[derive(Default)]
struct Rendezvous {
    selecting: AtomicBool,
    querying: AtomicBool,
    missed: AtomicBool,
}

impl Rendezvous {
    async fn wait_for(&self, flag: &AtomicBool) {
        for _ in 0..500 {
            if flag.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.missed.store(true, Ordering::SeqCst);
    }
}

impl Source for Rendezvous {
    fn select<'a>(&'a self, _: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async move {
            self.selecting.store(true, Ordering::SeqCst);
            self.wait_for(&self.querying).await;
            Ok(SelectOutput {
                series: vec![Series {
                    labels: Labels::from_pairs([("__name__", "b"), ("job", "x")]),
                    samples: vec![Sample { t: 999_000, v: 1.0 }],
                    histograms: Vec::new(),
                }],
                warnings: Vec::new(),
            })
        })
    }

    fn api_get<'a>(
        &'a self,
        path: &'a str,
        _: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<ApiData>, SourceError>> {
        Box::pin(async move {
            if path.ends_with("/labels") {
                return Ok(Some(ApiData {
                    data: json!(["__name__", "job"]),
                    ..ApiData::default()
                }));
            }
            self.querying.store(true, Ordering::SeqCst);
            self.wait_for(&self.selecting).await;
            Ok(Some(ApiData {
                data: json!({"resultType": "vector", "result": [
                    {"metric": {"job": "x"}, "value": [1000.0, "2"]}
                ]}),
                ..ApiData::default()
            }))
        })
    }
}

#[tokio::test]
async fn pushed_sub_queries_run_beside_the_raw_reads() {
    let backend = Arc::new(Rendezvous::default());
    let fed = Federation::new(
        vec![Backend {
            name: "c1".into(),
            external_labels: [("cluster".to_string(), "c1".to_string())].into(),
            source: Arc::clone(&backend) as Arc<dyn Source>,
        }],
        FederationOptions::default(),
    )
    .with_pushdown(vec![true]);
    let engine = Engine::over_federation(Arc::new(fed));
    // The left side pushed whole, the right one read raw (a comparison).
    let q = "sum by (job) (rate(a[5m])) + on (job) sum by (job) (b > 0)";
    let got = engine
        .instant(q, 1_000_000, &QueryOptions::default())
        .await
        .expect("evaluates");
    assert!(
        !backend.missed.load(Ordering::SeqCst),
        "the pushed query and the raw read did not overlap"
    );
    match got.value {
        Value::Vector(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].labels.to_string(), "{job=\"x\"}");
            assert_eq!(v[0].v, 3.0);
        }
        other => panic!("not a vector: {other:?}"),
    }
}
