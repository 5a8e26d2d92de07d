//! The sample budget binds across a wide fan-out (issue #17, streaming
//! evaluation memory): samples are charged to the query as they arrive
//! from every backend together, so a query past `limits.max_samples` over
//! sixteen backends is refused once the backends together have sent about
//! `max_samples`, not once each of them has. The real binary over a real
//! Prometheus 3.8 (one server listed as sixteen backends, each with its own
//! `cluster` external label); peak memory from /proc/<pid>/status.

mod common;
mod ops_support;

use std::time::Duration;

use ops_support::{assert_error, client, json, Promfed};

const SERIES: usize = 1000;
const SCRAPE_S: i64 = 15;
const T0: i64 = 1_700_000_000;
/// Three hours and five minutes of samples (741 a series).
const SPAN_S: i64 = 11_100;
const BACKENDS: usize = 16;
/// Under one backend's samples for the query (741,000), far under all
/// sixteen's (11.9 million).
const MAX_SAMPLES: u64 = 1_000_000;

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
    common::start_from_openmetrics("wide", &om, &[]).unwrap_or_else(|e| panic!("{e}"))
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
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("promfed answers");
    json(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_max_samples_over_sixteen_backends_stops_at_the_budget() {
    let prom = prometheus();
    let mut cfg =
        format!("limits: {{max_samples: {MAX_SAMPLES}, query_timeout: 60s}}\nbackends:\n");
    for i in 0..BACKENDS {
        cfg.push_str(&format!(
            "  - name: b{i:02}\n    url: {}\n    timeout: 60s\n    external_labels: {{cluster: b{i:02}}}\n",
            prom.url
        ));
    }
    let p = Promfed::start("wide-budget", &cfg);
    // Warm up on one backend's few samples: connections, code, allocator.
    let (status, body) = query(&p, "count(wide_m{cluster=\"b00\"})").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
    let base = vm_hwm(&p);
    let (status, body) = query(&p, "count(count_over_time(wide_m[3h]))").await;
    assert_error(
        status,
        &body,
        422,
        "execution",
        "query processing would load too many samples into memory",
    );
    let grew = vm_hwm(&p).saturating_sub(base);
    // max_samples at 16 bytes is 16 MB; the sixteen answers whole would
    // be 190 MB of samples alone.
    eprintln!("peak memory grew by {} MB", grew >> 20);
    assert!(
        grew < 64 << 20,
        "peak memory grew by {} MB for a budget of {MAX_SAMPLES} samples",
        grew >> 20
    );
    // The budget refuses only the wide query: one backend's share answers.
    let (status, body) = query(&p, "count(count_over_time(wide_m{cluster=\"b03\"}[3h]))").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
}
