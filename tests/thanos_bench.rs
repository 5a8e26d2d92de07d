//! promfed against Thanos Query over the same real Thanos sidecars, in one
//! run: the seed's success-rate query as an uncached instant query and as
//! a 3 h range query; the calls Grafana makes when a dashboard loads and
//! the query editor opens (`common::grafana`), timed as one sequence; and
//! the cached analysis query's throughput under wrk (promfed with its
//! cache on). Prints a Markdown table of ratios.
//!
//! `scripts/bench-thanos` (= `cargo test --release --test thanos_bench --
//! --ignored --nocapture`); needs the peers of `scripts/peers`. Only
//! 127.0.0.1 is contacted; every process is stopped by its pid.

mod common;
mod thanos_support;

use std::time::{Duration, Instant};

use common::{grafana, query, query_range, ApiResponse, HarnessError, Promfed};
use istio_sim::{Canary, SimConfig, SUCCESS_RATE_QUERY};
use thanos_support::{store_backend, Sidecars};

/// Rounds of the instant query (each at its own time, both servers).
const INSTANT_ROUNDS: usize = 200;
/// Rounds of the 3 h range query.
const RANGE_ROUNDS: usize = 40;
/// Range query step, seconds.
const RANGE_STEP: f64 = 15.0;
/// Rounds of Grafana's call sequence.
const GRAFANA_ROUNDS: usize = 30;
/// Grafana's max data points of a panel (a panel about 1,000 px wide).
const GRAFANA_MAX_POINTS: f64 = 1000.0;
/// wrk rounds per server, seconds per round, connections.
const WRK_ROUNDS: usize = 3;
const WRK_SECS: u32 = 5;
const WRK_CONNECTIONS: u32 = 4;

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn timed<F: std::future::Future<Output = Result<ApiResponse, HarnessError>>>(
    what: &str,
    f: F,
) -> Result<(Duration, Option<f64>), HarnessError> {
    let t0 = Instant::now();
    let r = f.await?;
    let took = t0.elapsed();
    assert!(r.is_success(), "{what}: {}", r.body);
    assert!(
        !r.result().as_array().is_none_or(Vec::is_empty),
        "{what}: empty answer: {}",
        r.body
    );
    Ok((took, r.first_value()))
}

/// One row: medians and p99 of both, and the ratios promfed / Thanos.
fn row(name: &str, mut pf: Vec<Duration>, mut th: Vec<Duration>) -> String {
    pf.sort();
    th.sort();
    let (pm, tm) = (quantile(&pf, 0.5), quantile(&th, 0.5));
    let (p99, t99) = (quantile(&pf, 0.99), quantile(&th, 0.99));
    format!(
        "| {name} | {} | {:.1} / {:.1} | {:.2} | {:.1} / {:.1} | {:.2} |",
        pf.len(),
        ms(pm),
        ms(tm),
        ms(pm) / ms(tm),
        ms(p99),
        ms(t99),
        ms(p99) / ms(t99),
    )
}

#[tokio::test]
#[ignore = "benchmark: scripts/bench-thanos"]
async fn bench_promfed_vs_thanos_query() -> Result<(), HarnessError> {
    let config = SimConfig {
        duration_secs: 3 * 3600,
        background_series: 400,
        canary: Canary::Good,
        ..SimConfig::default()
    };
    let h = Sidecars::start_with(&config)?;
    let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
    for s in &h.sidecars {
        cfg.push_str(&store_backend(&s.name, &s.grpc_url(), &[], "60s"));
    }
    // No `cache:` section: every promfed query is evaluated.
    let p = Promfed::start(&cfg)?;
    let thanos = h.query.http_url.clone();
    let (s0, e0) = (h.schedule.start as f64, h.schedule.end as f64);
    // The canary has traffic from step 1 on.
    let from = h.schedule.steps[1].start as f64 + 120.0;
    // Warm both (connections, Prometheus's page cache).
    for base in [&p.url, &thanos] {
        for i in 0..3 {
            query(base, SUCCESS_RATE_QUERY, from + i as f64 * 60.0).await?;
        }
    }
    let (mut pf, mut th) = (Vec::new(), Vec::new());
    let mut differ = 0;
    for i in 0..INSTANT_ROUNDS {
        // Distinct times across the run (after the canary starts), so that
        // nothing can be reused; alternate which server goes first.
        let t = from + (e0 - 100.0 - from) * i as f64 / INSTANT_ROUNDS as f64 + 0.137;
        let a = timed("promfed instant", query(&p.url, SUCCESS_RATE_QUERY, t));
        let b = timed("thanos instant", query(&thanos, SUCCESS_RATE_QUERY, t));
        let ((ta, va), (tb, vb)) = if i % 2 == 0 {
            let a = a.await?;
            (a, b.await?)
        } else {
            let b = b.await?;
            (a.await?, b)
        };
        pf.push(ta);
        th.push(tb);
        if !matches!((va, vb), (Some(x), Some(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs())) {
            differ += 1;
        }
    }
    println!(
        "instant answers differing between promfed and Thanos Query: {differ} of {INSTANT_ROUNDS}"
    );
    let instant = row("seed query, instant, uncached", pf, th);
    let (mut pf, mut th) = (Vec::new(), Vec::new());
    for i in 0..RANGE_ROUNDS {
        let (s, e) = (s0 + 60.0 + i as f64, e0 - 1.0);
        let a = timed(
            "promfed range",
            query_range(&p.url, SUCCESS_RATE_QUERY, s, e, RANGE_STEP),
        );
        let b = timed(
            "thanos range",
            query_range(&thanos, SUCCESS_RATE_QUERY, s, e, RANGE_STEP),
        );
        let ((ta, _), (tb, _)) = if i % 2 == 0 {
            let a = a.await?;
            (a, b.await?)
        } else {
            let b = b.await?;
            (a.await?, b)
        };
        pf.push(ta);
        th.push(tb);
    }
    let range = row("seed query, 3 h range at 15 s", pf, th);
    let grafana = grafana_rows(&p.url, &thanos, e0).await?;
    // The analysis query with promfed's cache on, at a time on the grid.
    let cached = Promfed::start(&format!("{cfg}cache:\n  grid: 10s\n"))?;
    let at = (h.schedule.steps[3].mid() / 10.0).floor() * 10.0 + 2.137;
    let throughput = wrk_row(&cached.url, &thanos, at).await?;
    println!("\n| query | rounds | median ms promfed / Thanos | ratio | p99 ms promfed / Thanos | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("{instant}\n{range}\n{grafana}\n");
    println!("{throughput}\n");
    Ok(())
}

/// Grafana's dashboard-and-editor sequence over the last 3 h of the data,
/// alternating which server goes first; one client per server, kept, as Grafana keeps its own.
async fn grafana_rows(promfed: &str, thanos: &str, e0: f64) -> Result<String, HarnessError> {
    let client = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| HarnessError::Query {
                what: "building a client".into(),
                message: e.to_string(),
            })
    };
    let (cp, ct) = (client()?, client()?);
    let dashboard = |end: f64| grafana::sequence(end - 3.0 * 3600.0, end, GRAFANA_MAX_POINTS);
    grafana::run(&cp, promfed, &dashboard(e0 - 90.0)).await?;
    grafana::run(&ct, thanos, &dashboard(e0 - 90.0)).await?;
    let (mut pf, mut th) = (Vec::new(), Vec::new());
    for i in 0..GRAFANA_ROUNDS {
        // "now" moves on by 2 s a round, as a dashboard refreshed.
        let seq = dashboard(e0 - 61.0 + 2.0 * i as f64);
        if i % 2 == 0 {
            pf.push(grafana::run(&cp, promfed, &seq).await?);
            th.push(grafana::run(&ct, thanos, &seq).await?);
        } else {
            th.push(grafana::run(&ct, thanos, &seq).await?);
            pf.push(grafana::run(&cp, promfed, &seq).await?);
        }
    }
    let calls: usize = dashboard(e0).iter().map(Vec::len).sum();
    Ok(row(
        &format!("Grafana: dashboard + query editor ({calls} calls, as one sequence)"),
        pf,
        th,
    ))
}

/// One wrk run: requests per second, or why there is none.
fn wrk(url: &str, body: &str) -> Result<(f64, u64, u64), HarnessError> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-cache.lua");
    let out = std::process::Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{WRK_SECS}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("{url}/api/v1/query"))
        .env("BENCH_BODY", body)
        .output()
        .map_err(|source| HarnessError::Io {
            what: "running wrk (apt-get install wrk)".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .ok_or_else(|| HarnessError::Query {
            what: format!("wrk {url}"),
            message: format!("no result: {text} {}", String::from_utf8_lossy(&out.stderr)),
        })?;
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    Ok((
        field("rps"),
        field("requests") as u64,
        (field("errors") + field("non200")) as u64,
    ))
}

/// The seed query at `at` (on the analysis grid) under wrk: promfed with
/// its cache vs Thanos Query, rounds alternating; all requests over all
/// rounds.
async fn wrk_row(promfed: &str, thanos: &str, at: f64) -> Result<String, HarnessError> {
    let q = SUCCESS_RATE_QUERY;
    let a = query(promfed, q, at).await?;
    let b = query(thanos, q, at).await?;
    assert!(a.is_success() && b.is_success(), "{} / {}", a.body, b.body);
    let body = format!(
        "query={}&time={at:.3}",
        q.bytes()
            .map(|c| match c {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' =>
                    (c as char).to_string(),
                _ => format!("%{c:02X}"),
            })
            .collect::<String>()
    );
    let (mut pr, mut tr) = (Vec::new(), Vec::new());
    for _ in 0..WRK_ROUNDS {
        let (rps, n, bad) = wrk(thanos, &body)?;
        assert_eq!(bad, 0, "Thanos Query: {bad} of {n} requests failed");
        tr.push(rps);
        let (rps, n, bad) = wrk(promfed, &body)?;
        assert_eq!(bad, 0, "promfed: {bad} of {n} requests failed");
        pr.push(rps);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (p, t) = (mean(&pr), mean(&tr));
    Ok(format!(
        "| query | wrk | req/s promfed (cache) / Thanos Query | ratio (goal >= 20) |\n|---|---|---:|---:|\n| seed query at the analysis grid | {WRK_ROUNDS} x {WRK_SECS} s, {WRK_CONNECTIONS} connections, 1 thread | {p:.0} / {t:.0} | {:.1} |",
        p / t
    ))
}
