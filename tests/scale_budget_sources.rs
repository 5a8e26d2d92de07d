//! The sample budget binds as answers arrive over the StoreAPI and the
//! Prometheus HTTP API too (issue #17, streaming evaluation memory): a
//! query past `limits.max_samples` over sixteen backends is refused once
//! the backends together have sent about `max_samples`, before their
//! answers are whole, with the error remote read gives. The real binary
//! over a real Prometheus 3.8 (one server listed as sixteen backends: as
//! `query_api` backends with their own `cluster` external label, and
//! through one real Thanos v0.42.4 sidecar as `thanos_store` backends);
//! peak memory from /proc/<pid>/status.

mod common;
mod ops_support;
mod thanos_support;

use std::time::Duration;

use ops_support::{assert_error, client, json, Promfed};
use thanos_support::{store_backend, ThanosProc};

const SERIES: usize = 1000;
const SCRAPE_S: i64 = 15;
const T0: i64 = 1_700_000_000;
/// Three hours and five minutes of samples (741 a series).
const SPAN_S: i64 = 11_100;
const BACKENDS: usize = 16;
/// Under one backend's samples for the query (741,000), far under all
/// sixteen's (11.9 million).
const MAX_SAMPLES: u64 = 1_000_000;
/// The sixteen answers whole would be 190 MB of samples alone; the budget
/// at 16 bytes a sample is 16 MB.
const MAX_GROWTH: u64 = 64 << 20;

/// A Prometheus 3.8 holding `SERIES` series of `wide_m` over `SPAN_S`
/// seconds (with millisecond jitter), external label `cluster="wide"`.
fn prometheus() -> common::PromServer {
    let mut om = String::with_capacity(SERIES * 760 * 40);
    om.push_str("# TYPE wide_m gauge\n");
    for i in 0..SERIES {
        let mut t = T0 * 1000;
        while t <= (T0 + SPAN_S) * 1000 {
            let jitter = (i as i64 * 7 + t / 1000) % 97;
            om.push_str(&format!(
                "wide_m{{i=\"{i}\"}} {} {}.{:03}\n",
                (i as i64 + t / 1000) % 1000,
                (t + jitter) / 1000,
                (t + jitter) % 1000
            ));
            t += SCRAPE_S * 1000;
        }
    }
    om.push_str("# EOF\n");
    common::start_from_openmetrics("wide", &om, &[("cluster", "wide")])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn vm_hwm(p: &Promfed) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", p.child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn query(p: &Promfed, q: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(p.url("/api/v1/query"))
        .form(&[("query", q), ("time", &(T0 + SPAN_S).to_string())])
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("promfed answers");
    json(r).await
}

/// Warms promfed up on a small query, runs the wide one (refused) and
/// returns how much its peak memory grew; then checks that a query inside
/// the budget answers.
async fn wide_query_refused(p: &Promfed, small_count: usize) -> u64 {
    let small_count = small_count.to_string();
    // Ten series from every backend: 118,560 samples, inside the budget
    // (`small_count` series once merged). It warms up connections, code
    // and the allocator.
    let small = "count(count_over_time(wide_m{i=~\"1.\"}[3h]))";
    let (status, body) = query(p, small).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["result"][0]["value"][1],
        small_count.as_str(),
        "{body}"
    );
    let base = vm_hwm(p);
    let (status, body) = query(p, "count(count_over_time(wide_m[3h]))").await;
    assert_error(
        status,
        &body,
        422,
        "execution",
        "query processing would load too many samples into memory",
    );
    let grew = vm_hwm(p).saturating_sub(base);
    // The budget refuses only the wide query.
    let (status, body) = query(p, small).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["result"][0]["value"][1],
        small_count.as_str(),
        "{body}"
    );
    grew
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_max_samples_over_sixteen_query_api_backends_stops_at_the_budget() {
    let prom = prometheus();
    let mut cfg =
        format!("limits: {{max_samples: {MAX_SAMPLES}, query_timeout: 120s}}\nbackends:\n");
    for i in 0..BACKENDS {
        cfg.push_str(&format!(
            "  - name: b{i:02}\n    url: {}\n    protocol: query_api\n    timeout: 120s\n    external_labels: {{cluster: b{i:02}}}\n",
            prom.url
        ));
    }
    let p = Promfed::start("wide-budget-api", &cfg);
    let grew = wide_query_refused(&p, 10 * BACKENDS).await;
    eprintln!("query_api: peak memory grew by {} MB", grew >> 20);
    assert!(
        grew < MAX_GROWTH,
        "query_api: peak memory grew by {} MB for a budget of {MAX_SAMPLES} samples",
        grew >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_max_samples_over_sixteen_store_api_backends_stops_at_the_budget() {
    let prom = prometheus();
    let work = common::process::TempDir::new("promfed-wide-sidecar").expect("temp dir");
    let sidecar = ThanosProc::sidecar("wide", &prom, work.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg =
        format!("limits: {{max_samples: {MAX_SAMPLES}, query_timeout: 120s}}\nbackends:\n");
    for i in 0..BACKENDS {
        // The sidecar announces `cluster="wide"` for each of them: the
        // sixteen answers are the same series, merged.
        cfg.push_str(&store_backend(
            &format!("b{i:02}"),
            &sidecar.grpc_url(),
            &[],
            "120s",
        ));
    }
    let p = Promfed::start("wide-budget-store", &cfg);
    let grew = wide_query_refused(&p, 10).await;
    eprintln!("thanos_store: peak memory grew by {} MB", grew >> 20);
    assert!(
        grew < MAX_GROWTH,
        "thanos_store: peak memory grew by {} MB for a budget of {MAX_SAMPLES} samples",
        grew >> 20
    );
    drop(sidecar);
}

/// `q` asked of the Prometheus itself (the oracle), as a number.
async fn oracle(prom: &common::PromServer, q: &str) -> f64 {
    let r = client()
        .post(format!("{}/api/v1/query", prom.url))
        .form(&[("query", q), ("time", &(T0 + SPAN_S).to_string())])
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("prometheus answers");
    let (status, body) = json(r).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a number: {body}"))
}

/// A wide query inside the budget over four backends, each answer read as
/// a stream (series cut out of the query API's JSON, StoreAPI chunks
/// decoded frame by frame): its answer is `times` the 3.8's own. Returns
/// how much promfed's peak memory grew and how long the query took (both
/// printed, for docs/benchmarks.md; the peak is the engine's, after the
/// reads).
async fn wide_query_answers(prom: &common::PromServer, p: &Promfed, times: f64) -> (u64, f64) {
    let q = "sum(count_over_time(wide_m[3h]))";
    let want = oracle(prom, q).await * times;
    let (status, body) = query(p, "count(wide_m{i=\"7\"})").await;
    assert_eq!(status, 200, "{body}");
    let base = vm_hwm(p);
    let began = std::time::Instant::now();
    let (status, body) = query(p, q).await;
    let took = began.elapsed().as_secs_f64();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["result"][0]["value"][1],
        want.to_string(),
        "{body}"
    );
    (vm_hwm(p).saturating_sub(base), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_query_over_query_api_backends_read_as_a_stream_is_exact() {
    let prom = prometheus();
    let mut cfg = String::from("limits: {query_timeout: 120s}\nbackends:\n");
    for i in 0..4 {
        cfg.push_str(&format!(
            "  - name: b{i:02}\n    url: {}\n    protocol: query_api\n    timeout: 120s\n    external_labels: {{cluster: b{i:02}}}\n",
            prom.url
        ));
    }
    let p = Promfed::start("wide-api", &cfg);
    let (grew, took) = wide_query_answers(&prom, &p, 4.0).await;
    eprintln!(
        "query_api, 4 x 741,000 samples: peak memory grew by {} MB in {took:.2} s",
        grew >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_query_over_store_api_backends_read_as_a_stream_is_exact() {
    let prom = prometheus();
    let work = common::process::TempDir::new("promfed-wide-sidecar").expect("temp dir");
    let sidecar = ThanosProc::sidecar("wide", &prom, work.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = String::from("limits: {query_timeout: 120s}\nbackends:\n");
    for i in 0..4 {
        cfg.push_str(&store_backend(
            &format!("b{i:02}"),
            &sidecar.grpc_url(),
            &[],
            "120s",
        ));
    }
    let p = Promfed::start("wide-store", &cfg);
    // The sidecar announces `cluster="wide"` for all four: their series
    // are the same, merged into one copy.
    let (grew, took) = wide_query_answers(&prom, &p, 1.0).await;
    eprintln!(
        "thanos_store, 4 x 741,000 samples: peak memory grew by {} MB in {took:.2} s",
        grew >> 20
    );
    drop(sidecar);
}
