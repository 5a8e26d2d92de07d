//! The Redis store against a real `redis-server`: replicas share entries,
//! the first replica's answer wins, and a Redis outage only turns the
//! shared tier off.

mod cache_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_common::*;
use promfed::cache::metrics::CacheMetrics;
use promfed::cache::store::RedisStore;
use promfed::cache::{CacheStatus, QueryCache, Variant};
use promfed::config::{CacheConfig, CacheStoreKind, RedisStoreConfig};
use promfed::promql::QueryOptions;

const Q: &str = r#"istio_requests_total{response_code="503"}"#;
const T: Duration = Duration::from_secs(30);

fn redis_config(url: &str) -> CacheConfig {
    let mut c = cache_config();
    c.store = CacheStoreKind::Redis;
    c.redis = Some(RedisStoreConfig {
        url: url.to_string(),
        timeout: Duration::from_millis(100),
        backoff: Duration::from_millis(300),
        key_prefix: format!("promfed-test-{}:", std::process::id()),
        lease: Duration::from_secs(10),
    });
    c
}

struct Replica {
    cache: QueryCache,
    eval: Arc<CountingEval>,
    registry: prometheus::Registry,
}

fn replica(cfg: &CacheConfig) -> Replica {
    slow_replica(cfg, 0, None)
}

fn metric(r: &prometheus::Registry, name: &str) -> f64 {
    r.gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        // A metric is a counter or a gauge; the other part reads 0.
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

#[tokio::test]
async fn two_replicas_share_entries_through_redis() {
    let redis = RedisServer::start();
    let cfg = redis_config(&redis.url());
    let (a, b) = (replica(&cfg), replica(&cfg));
    let t = T0 + 3_600_000;
    let x = a
        .cache
        .instant(
            Q,
            t + 1_500,
            &QueryOptions::default(),
            &Variant::default(),
            T,
        )
        .await
        .expect("a");
    let y = b
        .cache
        .instant(
            Q,
            t + 8_000,
            &QueryOptions::default(),
            &Variant::default(),
            T,
        )
        .await
        .expect("b");
    assert_eq!((x.status, y.status), (CacheStatus::Miss, CacheStatus::Hit));
    assert_eq!(x.body, y.body);
    assert_eq!(a.eval.instants() + b.eval.instants(), 1);
    // Range extents are shared too.
    let (s, e, step) = (T0, T0 + 1_800_000, 60_000);
    let r1 = a
        .cache
        .range(
            Q,
            s,
            e,
            step,
            &QueryOptions::default(),
            &Variant::default(),
            T,
        )
        .await
        .expect("r1");
    let r2 = b
        .cache
        .range(
            Q,
            s,
            e,
            step,
            &QueryOptions::default(),
            &Variant::default(),
            T,
        )
        .await
        .expect("r2");
    assert_eq!(
        (r1.status, r2.status),
        (CacheStatus::Miss, CacheStatus::Hit)
    );
    assert_eq!(r1.body, r2.body);
    assert_eq!(a.eval.ranges() + b.eval.ranges(), 1);
    assert_eq!(metric(&a.registry, "promfed_cache_store_errors_total"), 0.0);
}

#[tokio::test]
async fn the_first_replica_to_store_wins_so_both_serve_the_same_bytes() {
    // Two replicas that both missed and both evaluated (their answers differ,
    // e.g. a sample arrived in between): the second stores nothing and
    // serves the first one's bytes.
    let redis = RedisServer::start();
    let cfg = redis_config(&redis.url());
    let rcfg = cfg.redis.clone().expect("redis section");
    let store = |_: u8| {
        let m = CacheMetrics::register(&prometheus::Registry::new()).expect("metrics");
        RedisStore::new(&rcfg, &m).expect("store")
    };
    let (a, b) = (store(0), store(1));
    let ttl = Duration::from_secs(60);
    let first = Bytes::from_static(b"answer of replica a");
    let second = Bytes::from_static(b"answer of replica b");
    assert_eq!(a.put_first("k", first.clone(), ttl).await, first);
    assert_eq!(b.put_first("k", second.clone(), ttl).await, first);
    assert_eq!(b.get("k").await, Some(first.clone()));
    // Entries expire with their TTL.
    a.put("short", second.clone(), Duration::from_millis(100))
        .await;
    assert_eq!(b.get("short").await, Some(second));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(b.get("short").await, None);
}

#[tokio::test]
async fn redis_killed_mid_test_degrades_to_no_shared_cache_and_recovers() {
    let mut redis = RedisServer::start();
    let port = redis.port;
    let cfg = redis_config(&redis.url());
    let a = replica(&cfg);
    let opts = QueryOptions::default();
    let t = T0 + 2_400_000;
    a.cache
        .instant(Q, t, &opts, &Variant::default(), T)
        .await
        .expect("before the outage");
    assert_eq!(metric(&a.registry, "promfed_cache_redis_up"), 1.0);

    redis.kill();
    // Queries are still answered, each within far less than a backend
    // timeout; the memory tier still serves what it holds.
    for i in 0..5 {
        let started = Instant::now();
        let ans = a
            .cache
            .instant(Q, t + (i + 1) * 10_000, &opts, &Variant::default(), T)
            .await
            .expect("answered without Redis");
        assert_eq!(ans.status, CacheStatus::Miss);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let held = a
        .cache
        .instant(Q, t, &opts, &Variant::default(), T)
        .await
        .expect("memory tier");
    assert_eq!(held.status, CacheStatus::Hit);
    let range = a
        .cache
        .range(Q, T0, T0 + 600_000, 60_000, &opts, &Variant::default(), T)
        .await
        .expect("range without Redis");
    assert_eq!(range.status, CacheStatus::Miss);
    assert!(metric(&a.registry, "promfed_cache_store_errors_total") > 0.0);
    assert_eq!(metric(&a.registry, "promfed_cache_redis_up"), 0.0);

    // Redis comes back (empty): after the back-off, entries are shared again.
    let _redis = RedisServer::start_on(port);
    let b = replica(&cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut k = 100;
    loop {
        tokio::time::sleep(Duration::from_millis(350)).await;
        k += 1;
        let tk = t + k * 10_000;
        a.cache
            .instant(Q, tk, &opts, &Variant::default(), T)
            .await
            .expect("a");
        let before = b.eval.instants();
        b.cache
            .instant(Q, tk, &opts, &Variant::default(), T)
            .await
            .expect("b");
        if b.eval.instants() == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis was not used again within 10 s"
        );
    }
    assert_eq!(metric(&a.registry, "promfed_cache_redis_up"), 1.0);
}

fn slow_replica(cfg: &CacheConfig, delay_ms: u64, warn_marker: Option<&str>) -> Replica {
    let mut eval = CountingEval::new(istio_source(11));
    eval.delay_ms = delay_ms;
    eval.warn_marker = warn_marker.map(str::to_string);
    let eval = Arc::new(eval);
    let registry = prometheus::Registry::new();
    let (clock, _) = manual_clock(T0 + 7_200_000);
    let cache = QueryCache::with_clock(cfg, eval.clone(), &registry, clock).expect("cache");
    Replica {
        cache,
        eval,
        registry,
    }
}

/// Both replicas miss one cell at once, each at its own time in the cell.
async fn both_ask(
    a: &Replica,
    b: &Replica,
    q: &str,
) -> (promfed::cache::Answer, promfed::cache::Answer) {
    let t = T0 + 3_600_000;
    let (opts, v) = (QueryOptions::default(), Variant::default());
    let (x, y) = tokio::join!(
        a.cache.instant(q, t + 1_500, &opts, &v, T),
        b.cache.instant(q, t + 8_000, &opts, &v, T),
    );
    (x.expect("a"), y.expect("b"))
}

#[tokio::test]
async fn replicas_missing_one_cell_at_once_share_one_evaluation_through_a_lease() {
    let redis = RedisServer::start();
    let cfg = redis_config(&redis.url());
    let (a, b) = (slow_replica(&cfg, 400, None), slow_replica(&cfg, 400, None));
    let (x, y) = both_ask(&a, &b, Q).await;
    assert_eq!(a.eval.instants() + b.eval.instants(), 1);
    assert_eq!(x.body, y.body);
    let mut statuses = [x.status, y.status];
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(statuses, [CacheStatus::Coalesced, CacheStatus::Miss]);
    let waits = metric(&a.registry, "promfed_cache_remote_waits_total")
        + metric(&b.registry, "promfed_cache_remote_waits_total");
    assert_eq!(waits, 1.0);
    // The waiting replica keeps the answer in memory too.
    let again = both_ask(&a, &b, Q).await;
    assert_eq!(
        (again.0.status, again.1.status),
        (CacheStatus::Hit, CacheStatus::Hit)
    );
    assert_eq!(a.eval.instants() + b.eval.instants(), 1);
}

#[tokio::test]
async fn a_waiting_replica_evaluates_itself_when_the_lease_holder_stores_nothing() {
    // Answers with warnings are never stored: the holder lets go and the
    // waiting replica evaluates at once instead of waiting out the lease.
    let redis = RedisServer::start();
    let cfg = redis_config(&redis.url());
    let marker = "503";
    let (a, b) = (
        slow_replica(&cfg, 400, Some(marker)),
        slow_replica(&cfg, 400, Some(marker)),
    );
    let started = Instant::now();
    let (x, y) = both_ask(&a, &b, Q).await;
    assert!(x.has_warnings && y.has_warnings);
    assert_eq!(a.eval.instants() + b.eval.instants(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited out the 10 s lease: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn with_a_zero_lease_every_replica_that_misses_evaluates() {
    let redis = RedisServer::start();
    let mut cfg = redis_config(&redis.url());
    if let Some(r) = cfg.redis.as_mut() {
        r.lease = Duration::ZERO;
    }
    let (a, b) = (slow_replica(&cfg, 400, None), slow_replica(&cfg, 400, None));
    let (x, y) = both_ask(&a, &b, Q).await;
    assert_eq!(a.eval.instants() + b.eval.instants(), 2);
    // The first stored answer wins, so both still serve the same bytes.
    assert_eq!(x.body, y.body);
}
