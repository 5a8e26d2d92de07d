//! Exact pushdown against raw selects, in one run: N cluster Prometheus
//! 3.8 servers (istio-sim, `BENCH_CLUSTERS`, default 8) and their union;
//! two promfeds over the clusters by remote read, one with `pushdown:
//! true`, one without. For the seed query and a dashboard's
//! `sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))`,
//! instant and as a 1 h range (the whole run): the bytes the cluster
//! servers sent (their `prometheus_http_response_size_bytes_sum`, every
//! handler but `/metrics`) per query, and the median latency, pushdown vs
//! raw and each vs the union. Every answer is first checked equal to the
//! union's, and the dashboard's plan to push it whole. Then a query
//! mixing a pushed aggregation and a raw node, against its two halves
//! alone: the pushed sub-queries run beside the raw reads, so the mixed
//! query takes about the longer half, not the sum.
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

/// A pushed aggregation beside a node read raw (a comparison).
const MIXED: &str = "sum by (cluster) (rate(istio_requests_total[5m])) / on (cluster) sum by (cluster) (istio_requests_total > 0)";
const MIXED_PUSHED: &str = "sum by (cluster) (rate(istio_requests_total[5m]))";
const MIXED_RAW: &str = "sum by (cluster) (istio_requests_total > 0)";

/// The `X-Promfed-Plan` of an instant query.
async fn plan_of(base: &str, q: &str, t: f64) -> Result<String, HarnessError> {
    let err = |message: String| HarnessError::Query {
        what: format!("plan of {q}"),
        message,
    };
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| err(e.to_string()))?
        .post(format!("{base}/api/v1/query"))
        .form(&[("query", q.to_string()), ("time", format!("{t:.3}"))])
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(resp
        .headers()
        .get("x-promfed-plan")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string())
}

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
    let (s, e) = (h.schedule.start as f64, h.schedule.end as f64);
    let plan = plan_of(&push.url, DASHBOARD, t).await?;
    assert!(
        plan.starts_with(
            "pushed sum by (destination_workload, cluster) (rate(istio_requests_total)) to "
        ),
        "dashboard not pushed whole: {plan}"
    );
    let plan = plan_of(&push.url, MIXED, t).await?;
    assert!(
        plan.starts_with("pushed sum by (cluster) (rate(istio_requests_total)) to ")
            && !plan.contains("raw"),
        "mixed: {plan}"
    );
    let range = Shape::Range(s, e, 15.0);
    let cases = [
        ("seed, instant", SUCCESS_RATE_QUERY, Shape::Instant(t)),
        ("dashboard, instant", DASHBOARD, Shape::Instant(t)),
        ("seed, range 1 h step 15 s", SUCCESS_RATE_QUERY, range),
        ("dashboard, range 1 h step 15 s", DASHBOARD, range),
        ("mixed, instant", MIXED, Shape::Instant(t)),
        ("its pushed half alone", MIXED_PUSHED, Shape::Instant(t)),
        ("its raw half alone", MIXED_RAW, Shape::Instant(t)),
    ];
    println!("| query ({n} clusters) | bytes sent per query, raw | pushdown | ratio | median latency, raw | pushdown | ratio | union | raw / union | pushdown / union |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut pushed_ms = Vec::new();
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
        pushed_ms.push(ms(lp));
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
    if let [.., mixed, pushed, raw] = pushed_ms[..] {
        println!(
            "\nmixed query with pushdown: {mixed:.1} ms; its halves alone {pushed:.1} + {raw:.1} ms; mixed / sum {:.2}, mixed / longer half {:.2}",
            mixed / (pushed + raw),
            mixed / pushed.max(raw)
        );
    }
    Ok(())
}
