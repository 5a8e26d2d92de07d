//! The query cache over a counting evaluator: one evaluation per grid cell,
//! single flight, what is never stored, range extents equal to uncached
//! evaluation, warm queries, and the HTTP header and metrics.

mod cache_common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cache_common::*;
use promfed::api::{router, AppState};
use promfed::cache::{CacheStatus, QueryCache, Variant, CACHE_HEADER};
use promfed::federation::Federation;
use promfed::promql::QueryOptions;
use promfed::wire;
use rand::{Rng, SeedableRng};
use tower::ServiceExt;

const Q: &str = r#"istio_requests_total{response_code="200",cluster="k8s-1"}"#;
const T: Duration = Duration::from_secs(30);

fn cache_over(
    eval: Arc<CountingEval>,
    now: i64,
) -> (QueryCache, Arc<std::sync::atomic::AtomicI64>) {
    let (clock, handle) = manual_clock(now);
    let c = QueryCache::with_clock(&cache_config(), eval, &prometheus::Registry::new(), clock)
        .expect("cache");
    (c, handle)
}

fn default_opts() -> QueryOptions {
    QueryOptions::default()
}

#[tokio::test]
async fn two_controllers_in_one_grid_cell_get_identical_bytes_from_one_evaluation() {
    let eval = Arc::new(CountingEval::new(istio_source(1)));
    let (cache, _) = cache_over(eval.clone(), T0 + 7_200_000);
    let cell = T0 + 3_600_000; // a multiple of 10 s
                               // Two controllers polling at different float times inside one cell.
    let a = cache
        .instant(Q, cell + 123, &default_opts(), &Variant::default(), T)
        .await
        .expect("a");
    let b = cache
        .instant(Q, cell + 9_876, &default_opts(), &Variant::default(), T)
        .await
        .expect("b");
    assert_eq!(a.body, b.body);
    assert_eq!(eval.instants(), 1);
    assert_eq!((a.status, b.status), (CacheStatus::Miss, CacheStatus::Hit));
    // The answer is the evaluation at the rounded time.
    let oracle = eval
        .eval_instant(Q, cell, &default_opts())
        .await
        .expect("oracle");
    assert_eq!(a.body, wire::query_body(&oracle).as_bytes());
    // Whitespace and matcher order do not make another entry.
    let q2 = r#"istio_requests_total{ cluster="k8s-1", response_code="200" }"#;
    let c = cache
        .instant(q2, cell + 5_000, &default_opts(), &Variant::default(), T)
        .await
        .expect("c");
    assert_eq!(c.body, a.body);
    assert_eq!(eval.instants(), 1);
    // The next cell is a new evaluation; a different lookback is another key.
    cache
        .instant(Q, cell + 10_000, &default_opts(), &Variant::default(), T)
        .await
        .expect("d");
    assert_eq!(eval.instants(), 2);
    let mut o = default_opts();
    o.lookback_delta_ms = 60_000;
    cache
        .instant(Q, cell + 10_000, &o, &Variant::default(), T)
        .await
        .expect("e");
    assert_eq!(eval.instants(), 3);
}

#[tokio::test]
async fn fifty_concurrent_cold_requests_cause_one_evaluation() {
    let mut e = CountingEval::new(istio_source(2));
    e.delay_ms = 200;
    let eval = Arc::new(e);
    let (cache, _) = cache_over(eval.clone(), T0 + 7_200_000);
    let t = T0 + 1_800_000;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .instant(Q, t + i * 100, &default_opts(), &Variant::default(), T)
                    .await
            })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut misses = 0;
    for t in tasks {
        let a = t.await.expect("task").expect("answer");
        misses += usize::from(a.status == CacheStatus::Miss);
        assert_ne!(a.status, CacheStatus::Bypass);
        bodies.push(a.body);
    }
    assert_eq!(eval.instants(), 1);
    assert_eq!(misses, 1);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn errors_and_warnings_are_not_stored() {
    let mut e = CountingEval::new(istio_source(3));
    e.warn_marker = Some("k8s-2".into());
    let eval = Arc::new(e);
    let (cache, _) = cache_over(eval.clone(), T0 + 7_200_000);
    let t = T0 + 600_000;
    // Warnings: answered, never stored.
    let q = r#"istio_requests_total{cluster="k8s-2"}"#;
    for _ in 0..3 {
        let a = cache
            .instant(q, t, &default_opts(), &Variant::default(), T)
            .await
            .expect("warned answer");
        assert!(std::str::from_utf8(&a.body)
            .expect("utf8")
            .contains("\"warnings\""));
        assert_eq!(a.status, CacheStatus::Miss);
    }
    assert_eq!(eval.instants(), 3);
    // Evaluation errors: returned each time, never stored.
    for _ in 0..2 {
        let err = cache
            .instant(
                "sum(istio_requests_total)",
                t,
                &default_opts(),
                &Variant::default(),
                T,
            )
            .await
            .map_err(promfed::api::ApiError::from)
            .expect_err("the test evaluator refuses aggregations");
        assert!(
            err.message.contains("only evaluates selectors"),
            "{}",
            err.message
        );
    }
    assert_eq!(eval.instants(), 5);
    // Parse errors: the engine's own error, uncached.
    let err = cache
        .instant("sum(", t, &default_opts(), &Variant::default(), T)
        .await
        .map_err(promfed::api::ApiError::from)
        .expect_err("parse error");
    assert_eq!(err.kind, promfed::api::ErrorType::BadData);
}

#[tokio::test]
async fn times_ahead_of_now_are_not_stored() {
    let eval = Arc::new(CountingEval::new(istio_source(4)));
    let now = T0 + 3_600_000;
    let (cache, clock) = cache_over(eval.clone(), now);
    cache
        .instant(Q, now + 15_000, &default_opts(), &Variant::default(), T)
        .await
        .expect("a");
    cache
        .instant(Q, now + 15_000, &default_opts(), &Variant::default(), T)
        .await
        .expect("b");
    assert_eq!(eval.instants(), 2);
    clock.store(now + 30_000, Ordering::SeqCst);
    cache
        .instant(Q, now + 15_000, &default_opts(), &Variant::default(), T)
        .await
        .expect("c");
    cache
        .instant(Q, now + 15_000, &default_opts(), &Variant::default(), T)
        .await
        .expect("d");
    assert_eq!(eval.instants(), 3);
}

#[tokio::test]
async fn a_short_caller_deadline_times_out_but_the_evaluation_still_fills_the_cache() {
    let mut e = CountingEval::new(istio_source(5));
    e.delay_ms = 300;
    let eval = Arc::new(e);
    let (cache, _) = cache_over(eval.clone(), T0 + 7_200_000);
    let t = T0 + 900_000;
    let err = cache
        .instant(
            Q,
            t,
            &default_opts(),
            &Variant::default(),
            Duration::from_millis(50),
        )
        .await
        .map_err(promfed::api::ApiError::from)
        .expect_err("deadline");
    assert_eq!(err.kind, promfed::api::ErrorType::Timeout);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = cache
        .instant(Q, t, &default_opts(), &Variant::default(), T)
        .await
        .expect("later");
    assert_eq!(a.status, CacheStatus::Hit);
    assert_eq!(eval.instants(), 1);
}

#[tokio::test]
async fn warm_queries_leave_a_fresh_entry_for_callers() {
    let eval = Arc::new(CountingEval::new(istio_source(6)));
    let now = T0 + 3_600_000 + 4_321;
    let (clock, _) = manual_clock(now);
    let mut cfg = cache_config();
    cfg.warm_queries = vec![Q.to_string()];
    let cache = QueryCache::with_clock(&cfg, eval.clone(), &prometheus::Registry::new(), clock)
        .expect("cache");
    cache.warm_once().await;
    assert_eq!(eval.instants(), 1);
    let a = cache
        .instant(Q, now + 10, &default_opts(), &Variant::default(), T)
        .await
        .expect("a");
    assert_eq!(a.status, CacheStatus::Hit);
    assert_eq!(eval.instants(), 1);
}

async fn range_body(
    cache: &QueryCache,
    q: &str,
    s: i64,
    e: i64,
    step: i64,
) -> (bytes::Bytes, CacheStatus) {
    let a = cache
        .range(q, s, e, step, &default_opts(), &Variant::default(), T)
        .await
        .expect("range answer");
    (a.body, a.status)
}

#[tokio::test]
async fn range_cache_returns_exactly_the_uncached_answer_for_shifted_and_overlapping_windows() {
    let eval = Arc::new(CountingEval::new(istio_source(7)));
    // "Now" is inside the data, so the freshest minute is never stored.
    let now = T0 + 100 * 60_000 + 1_234;
    let (cache, clock) = cache_over(eval.clone(), now);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let queries = [
        "istio_requests_total",
        r#"istio_requests_total{response_code="503"}"#,
        r#"istio_requests_total{cluster="k8s-2",destination_version="v2"}"#,
    ];
    let mut statuses = std::collections::HashMap::new();
    for round in 0..60 {
        let q = queries[round % queries.len()];
        let step = [15_000, 30_000, 60_000][rng.gen_range(0..3)];
        // Dashboard-like windows: aligned to the step, shifted, overlapping,
        // some reaching past "now".
        let base = T0 + rng.gen_range(0..100) * 60_000;
        let start = base - base.rem_euclid(step) + if round % 7 == 0 { 5_000 } else { 0 };
        let end = start + rng.gen_range(1..40) * step + rng.gen_range(0..2) * 1_000;
        let (body, status) = range_body(&cache, q, start, end, step).await;
        let oracle = eval
            .eval_range(q, start, end, step, &default_opts())
            .await
            .expect("oracle");
        assert_eq!(
            std::str::from_utf8(&body).expect("utf8"),
            wire::query_body(&oracle),
            "round {round}: {q} [{start}, {end}] step {step} ({status:?})"
        );
        *statuses.entry(status).or_insert(0) += 1;
        if round % 10 == 9 {
            clock.fetch_add(20_000, Ordering::SeqCst);
        }
    }
    assert!(
        statuses.get(&CacheStatus::Hit).is_some_and(|n| *n > 0),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&CacheStatus::Partial).is_some_and(|n| *n > 0),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn range_cache_reuses_extents_and_never_stores_the_freshest_minute() {
    let eval = Arc::new(CountingEval::new(istio_source(8)));
    let step = 30_000;
    let now = T0 + 60 * 60_000; // aligned to the step
    let (cache, clock) = cache_over(eval.clone(), now);
    let (s, e) = (now - 30 * 60_000, now);
    let (first, st) = range_body(&cache, Q, s, e, step).await;
    assert_eq!(st, CacheStatus::Miss);
    // The same window again: only the fresh tail (after now - 1m) is evaluated.
    let (again, st) = range_body(&cache, Q, s, e, step).await;
    assert_eq!(again, first);
    assert_eq!(st, CacheStatus::Partial);
    assert_eq!(eval.ranges(), 2);
    // An older window inside the stored extents: a pure hit.
    let (_, st) = range_body(&cache, Q, s, e - 5 * 60_000, step).await;
    assert_eq!(st, CacheStatus::Hit);
    assert_eq!(eval.ranges(), 2);
    // A refresh 2 minutes later: only the missing tail is evaluated.
    clock.fetch_add(2 * 60_000, Ordering::SeqCst);
    let (s2, e2) = (s + 2 * 60_000, e + 2 * 60_000);
    let (b, st) = range_body(&cache, Q, s2, e2, step).await;
    assert_eq!(st, CacheStatus::Partial);
    assert_eq!(eval.ranges(), 3);
    let oracle = eval
        .eval_range(Q, s2, e2, step, &default_opts())
        .await
        .expect("oracle");
    assert_eq!(b, wire::query_body(&oracle).as_bytes());
    // `@ start()` makes every step depend on the range: not cached.
    let (_, st) = range_body(&cache, &format!("{Q} @ start()"), s, e, step).await;
    assert_eq!(st, CacheStatus::Bypass);
}

#[tokio::test]
async fn range_answers_with_warnings_are_not_stored() {
    let mut e = CountingEval::new(istio_source(9));
    e.warn_marker = Some("k8s-2".into());
    let eval = Arc::new(e);
    let now = T0 + 7_200_000;
    let (cache, _) = cache_over(eval.clone(), now);
    let q = r#"istio_requests_total{cluster="k8s-2"}"#;
    for _ in 0..2 {
        let (b, st) = range_body(&cache, q, T0, T0 + 600_000, 60_000).await;
        assert_eq!(st, CacheStatus::Miss);
        assert!(std::str::from_utf8(&b)
            .expect("utf8")
            .contains("\"warnings\""));
    }
    assert_eq!(eval.ranges(), 2);
}

#[tokio::test]
async fn http_answers_carry_the_cache_header_and_metrics_count_them() {
    let eval = Arc::new(CountingEval::new(istio_source(10)));
    // Metrics in promfed's registry, as `serve` builds it.
    let cache = QueryCache::new(&cache_config(), eval.clone()).expect("cache");
    // The federation is unused: every query goes through the cache's evaluator.
    let fed = Arc::new(Federation::new(vec![], Default::default()));
    let st = AppState::with_cache(fed, Some(cache));
    st.ready.store(true, Ordering::Release);
    let app = router(st);
    let hits = r#"promfed_cache_requests_total{kind="instant",result="hit"}"#;
    let evals = r#"promfed_cache_upstream_evaluations_total{kind="instant"}"#;
    let before = metrics_text(&app).await;
    let t = (T0 + 3_600_000) as f64 / 1000.0;
    let form = |dt: f64| {
        format!(
            "query={}&time={:.3}",
            form_urlencoded::byte_serialize(Q.as_bytes()).collect::<String>(),
            t + dt
        )
    };
    let mut seen = Vec::new();
    for dt in [0.5, 3.25, 7.0] {
        let resp = app
            .clone()
            .oneshot(
                Request::post("/api/v1/query")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(form(dt)))
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let h = resp
            .headers()
            .get(CACHE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        seen.push((h, body));
    }
    assert_eq!(seen[0].0, "miss");
    assert_eq!(seen[1].0, "hit");
    assert!(seen.windows(2).all(|w| w[0].1 == w[1].1));
    let after = metrics_text(&app).await;
    assert_eq!(
        metric_value(&after, hits) - metric_value(&before, hits),
        2.0,
        "{after}"
    );
    assert_eq!(
        metric_value(&after, evals) - metric_value(&before, evals),
        1.0,
        "{after}"
    );
}

async fn metrics_text(app: &axum::Router) -> String {
    let resp = app
        .clone()
        .oneshot(
            Request::get("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    String::from_utf8(body.to_vec()).expect("utf8")
}

/// The value of the sample whose name and labels are `series` (0 if absent).
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_hundred_controllers_cause_one_evaluation_per_grid_cell() {
    // 100 controllers poll every 20 s for 2 minutes (simulated time), each
    // with its own phase and millisecond jitter, as rollouts controllers in
    // many clusters do. The oracle is the number of grid cells their
    // `time`s fall in, counted independently of the cache.
    let eval = Arc::new(CountingEval::new(istio_source(13)));
    let start = T0 + 3_600_000 + 3_000;
    let (cache, clock) = cache_over(eval.clone(), start);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let phases: Vec<i64> = (0..100).map(|_| rng.gen_range(0..20_000)).collect();
    let mut polls: Vec<(i64, usize)> = Vec::new();
    for (c, phase) in phases.iter().enumerate() {
        for k in 0..6 {
            polls.push((start + phase + k * 20_000 + rng.gen_range(0..50), c));
        }
    }
    polls.sort();
    let mut cells = std::collections::BTreeSet::new();
    let mut bodies_by_cell: std::collections::HashMap<i64, bytes::Bytes> = Default::default();
    for (t, _) in &polls {
        clock.store(*t, Ordering::SeqCst);
        let cell = t - t.rem_euclid(10_000);
        cells.insert(cell);
        let a = cache
            .instant(Q, *t, &default_opts(), &Variant::default(), T)
            .await
            .expect("answer");
        let first = bodies_by_cell.entry(cell).or_insert_with(|| a.body.clone());
        assert_eq!(*first, a.body, "two bodies in cell {cell}");
    }
    assert_eq!(polls.len(), 600);
    assert_eq!(eval.instants(), cells.len());
}

#[tokio::test]
async fn answers_for_old_times_are_kept_longer_than_recent_ones() {
    let eval = Arc::new(CountingEval::new(istio_source(14)));
    let now = T0 + 7_200_000;
    let (clock, _) = manual_clock(now);
    let mut cfg = cache_config();
    cfg.ttl = Duration::from_millis(100);
    cfg.horizon = Duration::from_secs(600);
    cfg.old_ttl = Duration::from_secs(60);
    let cache = QueryCache::with_clock(&cfg, eval.clone(), &prometheus::Registry::new(), clock)
        .expect("cache");
    let v = Variant::default();
    let old = now - 3_600_000; // an hour before now: beyond the horizon
    let recent = now - 30_000;
    for t in [old, recent] {
        let a = cache
            .instant(Q, t, &default_opts(), &v, T)
            .await
            .expect("cold");
        assert_eq!(a.status, CacheStatus::Miss);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = cache
        .instant(Q, old, &default_opts(), &v, T)
        .await
        .expect("old");
    assert_eq!(a.status, CacheStatus::Hit);
    let b = cache
        .instant(Q, recent, &default_opts(), &v, T)
        .await
        .expect("recent");
    assert_eq!(
        b.status,
        CacheStatus::Miss,
        "the recent entry outlived its TTL"
    );
    assert_eq!(eval.instants(), 3);
}

#[tokio::test]
async fn the_warmer_evaluates_on_every_grid_tick_in_the_background() {
    let eval = Arc::new(CountingEval::new(istio_source(15)));
    let mut cfg = cache_config();
    cfg.grid = Duration::from_secs(1);
    cfg.warm_queries = vec![Q.to_string()];
    let wall: promfed::cache::Clock = Arc::new(|| chrono::Utc::now().timestamp_millis());
    let cache = QueryCache::with_clock(&cfg, eval.clone(), &prometheus::Registry::new(), wall)
        .expect("cache");
    let warmer = cache.spawn_warmer().expect("a warm query is configured");
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let ticks = eval.instants();
    assert!(
        (1..=3).contains(&ticks),
        "{ticks} warm evaluations in 2.6 s"
    );
    // A caller in the current cell finds the warm entry (unless the cell
    // turned over this very moment: then the next one is warm in time).
    let mut hit = false;
    for _ in 0..6 {
        let now = chrono::Utc::now().timestamp_millis();
        if now % 1_000 > 400 && now % 1_000 < 950 {
            let a = cache
                .instant(Q, now, &default_opts(), &Variant::default(), T)
                .await
                .expect("answer");
            hit = a.status == CacheStatus::Hit;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    warmer.abort();
    assert!(hit, "the caller did not find the warm entry");
}
