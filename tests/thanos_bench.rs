//! promfed against Thanos Query over the same real Thanos sidecars, in one
//! run: the seed's success-rate query as an uncached instant query, and
//! as a 3 h range query. Prints a Markdown table of ratios.
//!
//! `scripts/bench-thanos` (= `cargo test --release --test thanos_bench --
//! --ignored --nocapture`); needs the peers of `scripts/peers`. Only
//! 127.0.0.1 is contacted; every process is stopped by its pid.

mod common;
mod thanos_support;

use std::time::{Duration, Instant};

use common::{query, query_range, ApiResponse, HarnessError, Promfed};
use istio_sim::{Canary, SimConfig, SUCCESS_RATE_QUERY};
use thanos_support::{store_backend, Sidecars};

/// Rounds of the instant query (each at its own time, both servers).
const INSTANT_ROUNDS: usize = 200;
/// Rounds of the 3 h range query.
const RANGE_ROUNDS: usize = 40;
/// Range query step, seconds.
const RANGE_STEP: f64 = 15.0;

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
    println!("\n| query | rounds | median ms promfed / Thanos | ratio | p99 ms promfed / Thanos | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!("{instant}\n{range}\n");
    Ok(())
}
