//! The cache-hit path in process (no HTTP): what an instant query costs
//! when its grid cell is already cached, and what a cold canonicalisation
//! of the success-rate query costs.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use futures::future::BoxFuture;
use istio_sim::SUCCESS_RATE_QUERY;
use promfed::cache::key::Canonical;
use promfed::cache::{CacheStatus, Evaluate, QueryCache, Variant};
use promfed::model::Labels;
use promfed::promql::{EngineError, QueryOptions, QueryResult, Value, VectorElem};

/// Answers every query with one sample (only misses reach it).
struct Fixed;

impl Evaluate for Fixed {
    fn instant<'a>(
        &'a self,
        _: &'a str,
        t_ms: i64,
        _: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>> {
        Box::pin(async move {
            Ok(QueryResult {
                value: Value::Vector(vec![VectorElem {
                    labels: Labels::empty(),
                    t: t_ms,
                    v: 0.995,
                }]),
                warnings: vec![],
                infos: vec![],
            })
        })
    }

    fn range<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: i64,
        _: i64,
        _: &'a QueryOptions,
    ) -> BoxFuture<'a, Result<QueryResult, EngineError>> {
        Box::pin(async move { Err(EngineError::Execution("not used".into())) })
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = promfed::config::Config::from_yaml(
        "backends: [{name: a, url: 'http://127.0.0.1:1'}]\ncache: {}\n",
        "bench",
    )
    .expect("config")
    .cache
    .expect("cache section");
    let cache = rt.block_on(async {
        QueryCache::with_clock(
            &cfg,
            Arc::new(Fixed),
            &prometheus::Registry::new(),
            Arc::new(|| 1_724_000_100_000),
        )
        .expect("cache")
    });
    let (opts, variant) = (QueryOptions::default(), Variant::default());
    let t = 1_724_000_000_123;
    let first = rt
        .block_on(cache.instant(
            SUCCESS_RATE_QUERY,
            t,
            &opts,
            &variant,
            Duration::from_secs(5),
        ))
        .expect("miss");
    assert_eq!(first.status, CacheStatus::Miss);
    c.bench_function("instant hit (success-rate query)", |b| {
        b.iter(|| {
            let a = rt
                .block_on(cache.instant(
                    SUCCESS_RATE_QUERY,
                    t + 1_000,
                    &opts,
                    &variant,
                    Duration::from_secs(5),
                ))
                .expect("hit");
            assert_eq!(a.status, CacheStatus::Hit);
            a
        })
    });
    c.bench_function("canonicalise success-rate query (cold)", |b| {
        b.iter(|| Canonical::of(SUCCESS_RATE_QUERY))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
