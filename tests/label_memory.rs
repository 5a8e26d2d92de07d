//! What label sets cost promfed (issue #17, label interning): the growth
//! of its peak memory (VmHWM) for an instant query over 30,000 series of
//! 20 samples, once with one short label a series and once with twelve
//! istio-like labels, through remote read and the query API, from a real
//! Prometheus 3.8; each answer checked against the 3.8's own. A
//! measurement, not a bound: run with `cargo test --test label_memory --
//! --ignored --nocapture` (figures in docs/benchmarks.md).

mod common;
mod ops_support;

use std::time::Duration;

use ops_support::{client, json, Promfed};

const SERIES: usize = 30_000;
const T0: i64 = 1_700_000_000;

fn labels(i: usize, wide: bool) -> String {
    if !wide {
        return format!("i=\"{i}\"");
    }
    format!(
        "cluster=\"k8s-{}\",connection_security_policy=\"mutual_tls\",destination_app=\"svc-{}\",destination_service=\"svc-{}.ns-{}.svc.cluster.local\",destination_workload=\"svc-{}-v{}\",instance=\"10.0.{}.{}:15020\",job=\"kubernetes-pods\",pod=\"svc-{}-7d9f-{}\",reporter=\"{}\",response_code=\"{}\",source_workload=\"svc-{}-v1\"",
        i % 16, i % 200, i % 200, i % 20, i % 200, i % 3, (i / 10) % 250, (i / 10) % 200, i % 200, i / 10,
        if i.is_multiple_of(2) { "source" } else { "destination" }, ["200", "404", "503", "500"][i % 4], (i * 7) % 200 + i / 1000
    )
}

fn prometheus(wide: bool) -> common::PromServer {
    let mut om = String::new();
    om.push_str("# TYPE m gauge\n");
    for i in 0..SERIES {
        let l = labels(i, wide);
        for k in 0..20 {
            let t = T0 * 1000 + k * 15_000 + (i as i64 % 97);
            om.push_str(&format!("m{{{l}}} {k} {}.{:03}\n", t / 1000, t % 1000));
        }
    }
    om.push_str("# EOF\n");
    common::start_from_openmetrics(if wide { "wide" } else { "narrow" }, &om, &[])
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

async fn query_at(url: String, q: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(url)
        .form(&[("query", q), ("time", &(T0 + 290).to_string())])
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("promfed answers");
    json(r).await
}

async fn query(p: &Promfed, q: &str) -> (u16, serde_json::Value) {
    query_at(p.url("/api/v1/query"), q).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn what_label_sets_cost_an_instant_query_over_many_series() {
    let q = "count(count_over_time(m[5m]))";
    for wide in [false, true] {
        let prom = prometheus(wide);
        let (s, want) = query_at(format!("{}/api/v1/query", prom.url), q).await;
        assert_eq!(s, 200, "{want}");
        assert_eq!(want["data"]["result"][0]["value"][1], SERIES.to_string());
        for proto in ["remote_read", "query_api"] {
            let cfg = format!(
                "backends:\n  - name: a\n    url: {}\n    protocol: {proto}\n    timeout: 120s\n    external_labels: {{cluster2: a}}\n",
                prom.url
            );
            let p = Promfed::start("label-share", &cfg);
            let (s, b) = query(&p, "count(m{i=\"7\"} or m{pod=\"svc-7-7d9f-0\"})").await;
            assert_eq!(s, 200, "{b}");
            let base = vm_hwm(&p);
            let (s, b) = query(&p, q).await;
            assert_eq!(s, 200, "{b}");
            assert_eq!(b["data"], want["data"], "{proto}");
            eprintln!(
                "{} labels a series, {proto}: peak grew by {} MB",
                if wide { 12 } else { 1 },
                vm_hwm(&p).saturating_sub(base) >> 20
            );
        }
    }
}
