//! Exact pushdown against raw selects, in one run: N cluster Prometheus
//! 3.8 servers (istio-sim, `BENCH_CLUSTERS`, default 8) and their union;
//! two promfeds over the clusters by remote read, one with `pushdown:
//! true`, one without. For the seed query and a dashboard's
//! `sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))`,
//! instant and as a range over the whole run: the bytes the cluster
//! servers sent (their `prometheus_http_response_size_bytes_sum`, every
//! handler but `/metrics`) per query, and the median latency, pushdown vs
//! raw and each vs the union. Every answer is first checked equal to the
//! union's.
//!
//! `cargo test --test bench_pushdown -- --ignored --nocapture`;
//! `BENCH_QUERIES` (default 30) queries per shape and side, in 3 rounds
//! that alternate the sides. Only 127.0.0.1 is contacted; every process is
//! stopped by its pid.

mod common;

use std::time::{Duration, Instant};

use common::compare::assert_same;
use common::{query, query_range, ApiResponse, Harness, HarnessError, Promfed};
use istio_sim::{SimConfig, SUCCESS_RATE_QUERY};

const DASHBOARD: &str = "sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes the cluster servers have sent so far, every handler but `/metrics`.
async fn sent_bytes(h: &Harness) -> Result<f64, HarnessError> {
    let mut total = 0.0;
    for s in &h.clusters {
        let (_, text) = common::client::get_text(&s.url, "/metrics").await?;
        total += text
            .lines()
            .filter(|l| l.starts_with("prometheus_http_response_size_bytes_sum{"))
            .filter(|l| !l.contains("handler=\"/metrics\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Ok(total)
}

#[derive(Clone, Copy)]
enum Shape {
    Instant(f64),
    Range(f64, f64, f64),
}

async fn ask(base: &str, q: &str, shape: Shape) -> Result<ApiResponse, HarnessError> {
    match shape {
        Shape::Instant(t) => query(base, q, t).await,
        Shape::Range(s, e, step) => query_range(base, q, s, e, step).await,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn config(h: &Harness, on: bool) -> String {
    let mut y = format!("listen: 127.0.0.1:0\npushdown: {on}\nbackends:\n");
    for (name, url) in h.backends() {
        y.push_str(&format!(
            "  - name: {name}\n    url: {url}\n    timeout: 60s\n    pushdown: true\n    external_labels: {{cluster: {name}}}\n"
        ));
    }
    y
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn pushdown_against_raw_selects() -> Result<(), HarnessError> {
    let n = env_usize("BENCH_CLUSTERS", 8);
    let per = env_usize("BENCH_QUERIES", 30).max(3);
    let started = Instant::now();
    let h = Harness::start(&SimConfig {
        clusters: (1..=n).map(|i| format!("k8s-{i}")).collect(),
        background_series: 400,
        ..SimConfig::default()
    })?;
    eprintln!("{n} clusters loaded in {:.0?}", started.elapsed());
    let raw = Promfed::start(&config(&h, false))?;
    let push = Promfed::start(&config(&h, true))?;
    let t = h.schedule.steps[3].mid();
    let (s, e) = (h.schedule.start as f64 + 300.0, h.schedule.end as f64);
    let cases = [
        ("seed, instant", SUCCESS_RATE_QUERY, Shape::Instant(t)),
        ("dashboard, instant", DASHBOARD, Shape::Instant(t)),
        (
            "seed, range 55 m step 15 s",
            SUCCESS_RATE_QUERY,
            Shape::Range(s, e, 15.0),
        ),
        (
            "dashboard, range 55 m step 15 s",
            DASHBOARD,
            Shape::Range(s, e, 15.0),
        ),
    ];
    println!("| query ({n} clusters) | bytes sent per query, raw | pushdown | ratio | median latency, raw | pushdown | ratio | union | raw / union | pushdown / union |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (what, q, shape) in cases {
        let want = ask(&h.union.url, q, shape).await?;
        for p in [&raw, &push] {
            let got = ask(&p.url, q, shape).await?;
            assert!(assert_same(what, &got, &want), "{what}: empty");
        }
        let (mut lat, mut bytes) = ([vec![], vec![], vec![]], [0.0f64; 2]);
        for _ in 0..3 {
            for (side, base) in [&raw.url, &push.url, &h.union.url].into_iter().enumerate() {
                let before = sent_bytes(&h).await?;
                for _ in 0..per / 3 {
                    let t0 = Instant::now();
                    let r = ask(base, q, shape).await?;
                    lat[side].push(t0.elapsed());
                    assert!(r.is_success(), "{what}: {}", r.body);
                }
                if side < 2 {
                    bytes[side] += sent_bytes(&h).await? - before;
                }
            }
        }
        let count = (per / 3 * 3) as f64;
        let (br, bp) = (bytes[0] / count, bytes[1] / count);
        let [lr, lp, lu] = lat.map(median);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {what} | {br:.0} | {bp:.0} | {:.3} | {:.1} ms | {:.1} ms | {:.2} | {:.1} ms | {:.2} | {:.2} |",
            bp / br,
            ms(lr),
            ms(lp),
            ms(lp) / ms(lr),
            ms(lu),
            ms(lr) / ms(lu),
            ms(lp) / ms(lu)
        );
    }
    Ok(())
}
