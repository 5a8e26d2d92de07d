//! promfed without its cache against the union Prometheus, in one run:
//! three cluster Prometheus 3.8 servers loaded with the simulated Istio
//! traffic, the union Prometheus holding all of it, and promfed (no
//! `cache:`) over the three by remote read. Reports, as ratios
//! promfed / union: the seed query's median latency, the CPU each spends
//! per seed query (utime + stime of the process from `/proc/<pid>/stat`
//! over N sequential queries, divided by N), and the medians of the
//! metadata calls (labels, label values, series).
//!
//! `scripts/bench-uncached` (= `cargo test --release --test
//! bench_uncached -- --ignored --nocapture`); needs the peers of
//! `scripts/peers`. `BENCH_ROUNDS` (default 3) and `BENCH_QUERIES`
//! (default 300) set the rounds and the queries per round and side. Only
//! 127.0.0.1 is contacted; every process is stopped by its pid.

mod common;

use std::time::{Duration, Instant};

use common::HarnessError;
use istio_sim::{Canary, SimConfig, SUCCESS_RATE_QUERY};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One HTTP request and its answer, checked to be a success.
enum Call {
    Query(f64),
    Get(String),
}

async fn send(client: &reqwest::Client, base: &str, call: &Call) -> Result<String, HarnessError> {
    let err = |message: String| HarnessError::Query {
        what: base.to_string(),
        message,
    };
    let req = match call {
        Call::Query(t) => client.post(format!("{base}/api/v1/query")).form(&[
            ("query", SUCCESS_RATE_QUERY.to_string()),
            ("time", format!("{t:.3}")),
        ]),
        Call::Get(path) => client.get(format!("{base}{path}")),
    };
    let resp = req.send().await.map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    if status != 200 || !text.contains("\"success\"") {
        return Err(err(format!("HTTP {status}: {text}")));
    }
    Ok(text)
}

/// Latencies of `calls` sent one after another to `base`, and the CPU
/// ticks `pid` used meanwhile.
async fn block(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    calls: &[Call],
) -> Result<(Vec<Duration>, u64), HarnessError> {
    let c0 = cpu_ticks(pid);
    let mut took = Vec::with_capacity(calls.len());
    for call in calls {
        let t0 = Instant::now();
        send(client, base, call).await?;
        took.push(t0.elapsed());
    }
    Ok((took, cpu_ticks(pid) - c0))
}

/// The value of a one-sample vector answer.
fn value_of(body: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark: scripts/bench-uncached"]
async fn bench_uncached_promfed_vs_union() -> Result<(), HarnessError> {
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let n = env_usize("BENCH_QUERIES", 300);
    let config = SimConfig {
        clusters: ["k8s-1", "k8s-2", "k8s-3"].map(String::from).to_vec(),
        canary: Canary::Good,
        ..SimConfig::default()
    };
    let h = common::Harness::start(&config)?;
    // No `cache:` section: every query is evaluated. BENCH_PROMFED_BIN runs
    // another build (e.g. the previous commit's) for a before/after.
    let mut p = match std::env::var_os("BENCH_PROMFED_BIN") {
        None => h.start_promfed("")?,
        Some(bin) => {
            let dir = common::TempDir::new("promfed-bench")?;
            let cfg = dir.path().join("promfed.yaml");
            common::write_file(&cfg, &h.promfed_config(""))?;
            let mut cmd = std::process::Command::new(bin);
            cmd.arg("serve")
                .arg("--config")
                .arg(&cfg)
                .args(["--listen", "127.0.0.1:0"])
                .env("RUST_LOG", "warn");
            common::Promfed::spawn(cmd, dir)?
        }
    };
    let ppid = p.pid().ok_or_else(|| HarnessError::Query {
        what: "promfed".into(),
        message: "no pid".into(),
    })?;
    let upid = h.union.pid().ok_or_else(|| HarnessError::Query {
        what: "union".into(),
        message: "no pid".into(),
    })?;
    // As wrk and curl ask, without gzip: neither side compresses.
    let client = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| HarnessError::Query {
            what: "client".into(),
            message: e.to_string(),
        })?;
    let tps = ticks_per_sec();
    let (from, to) = (
        h.schedule.steps[1].start as f64 + 120.0,
        h.schedule.end as f64 - 60.0,
    );
    let (s, e) = (h.schedule.start, h.schedule.end);
    let meta: Vec<(&str, String)> = vec![
        ("labels", format!("/api/v1/labels?start={s}&end={e}")),
        (
            "label values (destination_service)",
            format!("/api/v1/label/destination_service/values?start={s}&end={e}"),
        ),
        (
            "series (reporter=\"source\", canary)",
            format!(
                "/api/v1/series?match[]=istio_requests_total%7Breporter%3D%22source%22%2Cdestination_service%3D~%22helloworld-canary.helloworld.svc.cluster.local%22%7D&start={s}&end={e}"
            ),
        ),
    ];
    // Warm both: connections, page cache, promfed's code paths.
    for i in 0..20 {
        let call = Call::Query(from + i as f64 * 7.0);
        send(&client, &p.url, &call).await?;
        send(&client, &h.union.url, &call).await?;
    }
    let mut differ = 0;
    for i in 0..50 {
        let call = Call::Query(from + (to - from) * i as f64 / 50.0 + 0.123);
        let a = value_of(&send(&client, &p.url, &call).await?);
        let b = value_of(&send(&client, &h.union.url, &call).await?);
        if !matches!((a, b), (Some(x), Some(y)) if (x - y).abs() <= 1e-12 * x.abs().max(y.abs())) {
            differ += 1;
        }
    }
    println!("\nseed-query answers differing between promfed and the union: {differ} of 50");
    println!(
        "\n| round | seed median ms promfed / union | ratio | CPU ms per query promfed / union | ratio | promfed + backends CPU ms per query | {} |",
        meta.iter()
            .map(|(m, _)| format!("{m} median ms promfed / union (ratio)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!(
        "|---|---:|---:|---:|---:|---:|{}",
        "---:|".repeat(meta.len())
    );
    for round in 0..rounds {
        // Each query at its own time; the union answers the same times.
        let calls: Vec<Call> = (0..n)
            .map(|i| {
                Call::Query(
                    from + (to - from) * i as f64 / n as f64 + 0.001 * (round * n + i) as f64,
                )
            })
            .collect();
        let backends: Vec<u32> = h.clusters.iter().filter_map(|c| c.pid()).collect();
        let backend_cpu = || backends.iter().map(|&b| cpu_ticks(b)).sum::<u64>();
        // Alternate which side goes first; the backends' CPU is counted
        // over promfed's block only (the union's does not touch them).
        let (union_first, mut backend_ticks) = (round % 2 == 1, 0);
        let mut u = None;
        if union_first {
            u = Some(block(&client, &h.union.url, upid, &calls).await?);
        }
        let b0 = backend_cpu();
        let (pt, pc) = block(&client, &p.url, ppid, &calls).await?;
        backend_ticks += backend_cpu() - b0;
        let (ut, uc) = match u {
            Some(u) => u,
            None => block(&client, &h.union.url, upid, &calls).await?,
        };
        let per = |ticks: u64| ticks as f64 / tps * 1000.0 / n as f64;
        let (pm, um) = (median(pt), median(ut));
        let mut cells = Vec::new();
        for (_, path) in &meta {
            let calls: Vec<Call> = (0..n / 3).map(|_| Call::Get(path.clone())).collect();
            let (a, _) = block(&client, &p.url, ppid, &calls).await?;
            let (b, _) = block(&client, &h.union.url, upid, &calls).await?;
            let (a, b) = (median(a), median(b));
            cells.push(format!(
                "{:.2} / {:.2} ({:.2})",
                ms(a),
                ms(b),
                ms(a) / ms(b)
            ));
        }
        println!(
            "| {} | {:.2} / {:.2} | {:.2} | {:.3} / {:.3} | {:.2} | {:.3} | {} |",
            round + 1,
            ms(pm),
            ms(um),
            ms(pm) / ms(um),
            per(pc),
            per(uc),
            per(pc) / per(uc).max(f64::MIN_POSITIVE),
            per(pc + backend_ticks),
            cells.join(" | ")
        );
    }
    println!();
    if std::env::var_os("BENCH_HOLD").is_some() {
        // For profiling: keep everything up and print where it is.
        println!(
            "holding: promfed {} (pid {ppid}), union {} (pid {upid}); time {from:.3}; Ctrl-C to stop",
            p.url, h.union.url
        );
        tokio::time::sleep(Duration::from_secs(
            env_usize("BENCH_HOLD", 600).min(3600) as u64
        ))
        .await;
    }
    p.stop();
    Ok(())
}
