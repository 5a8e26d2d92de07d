//! The scale benchmark (issue #17): promfed over N cluster Prometheus 3.8
//! servers against one union Prometheus 3.8 holding the same N clusters,
//! for N = 2, 8, 16, in one run. Data: `istio-sim` for 16 clusters, 65
//! minutes: the Istio mesh plus background services, `BENCH_BACKGROUND`
//! (default 18,000) plain application series and `BENCH_MESH_BACKGROUND`
//! (default 2,000) `istio_requests_total` series of those services per
//! cluster, about 20,600 series a cluster; each cluster written into its
//! own block by `tests/tsdb-writer` (Prometheus 3.8's tsdb library; see
//! `scale_bench/data.rs`) without a `cluster` label, as a Prometheus
//! with `external_labels: {cluster: ...}` holds it (promfed's backends
//! carry it as external label); the union has it in the data. The union
//! of N is the N clusters' series written into one block, as a Prometheus
//! holding all N would have compacted them.
//!
//! Per N and query (the seed's success-rate query instant; the dashboard's
//! `sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))`
//! instant and as a 1 h range at step 15 s), with two fresh promfeds per
//! query, one reading raw samples and one with `pushdown: true` (every
//! backend `pushdown: true`): the median latency of `BENCH_RUNS` (default
//! 7; ten times that for queries the union answers within 50 ms) runs per
//! side, the three sides alternating; each side's own CPU
//! (utime + stime) per query, and for promfed the N cluster servers' CPU
//! during its queries; promfed's peak RSS (VmHWM) over its RSS before the
//! first query; the bytes promfed received
//! (`promfed_backend_bytes_received_total`) and the bytes the cluster
//! servers sent for one query (`prometheus_http_response_size_bytes_sum`);
//! and the raw samples the query touches (`count_over_time` on the union)
//! at 16 bytes each. Every promfed answer is compared with the union's.
//!
//! `scripts/bench-scale` (builds tsdb-writer, then `cargo test --release
//! --test scale_bench -- --ignored --nocapture`); needs the peers of
//! `scripts/peers`. `BENCH_NS` (default `2,8,16`) picks the N,
//! `BENCH_QUERIES` the queries (name prefixes: `seed`, `dashboard`);
//! `BENCH_HOLD=FILE` pauses for a profiler (see [`hold_for_profiling`]). Only
//! 127.0.0.1 is contacted; every process is stopped by its pid.

#[path = "scale_bench/check.rs"]
mod check;
mod common;
#[path = "scale_bench/data.rs"]
mod data;
#[path = "scale_bench/measure.rs"]
mod measure;
#[path = "scale_bench/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ApiResponse, HarnessError, PromServer, TempDir, Tools};
use istio_sim::{SimConfig, Simulation, SUCCESS_RATE_QUERY};
use measure::{cpu_ticks, cpu_ticks_all, median, ms, status_kb};
use report::{Row, Side};

const DASHBOARD: &str = "sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))";
/// Every cluster of the run; N takes the first N.
const CLUSTERS: usize = 16;
/// 65 minutes: a 1 h range plus its 5 m windows.
const DURATION_SECS: i64 = 3900;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn err(what: &str, message: impl Into<String>) -> HarnessError {
    HarnessError::Query {
        what: what.to_string(),
        message: message.into(),
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// One timed query: instant at `time`, or a range `(start, end, step)`.
#[derive(Clone, Copy)]
enum Ask {
    Instant(f64),
    Range(f64, f64, f64),
}

async fn ask(base: &str, q: &str, a: Ask) -> Result<ApiResponse, HarnessError> {
    let r = match a {
        Ask::Instant(t) => common::query(base, q, t).await?,
        Ask::Range(s, e, st) => common::query_range(base, q, s, e, st).await?,
    };
    if !r.is_success() {
        return Err(err(base, format!("{q}: HTTP {}: {}", r.status, r.body)));
    }
    Ok(r)
}

/// promfed's `X-Promfed-Plan` for `q` (what was pushed down), or "-".
async fn plan(base: &str, q: &str, a: Ask) -> String {
    let params: Vec<(&str, String)> = match a {
        Ask::Instant(t) => vec![("query", q.to_string()), ("time", format!("{t:.3}"))],
        Ask::Range(s, e, st) => vec![
            ("query", q.to_string()),
            ("start", format!("{s:.3}")),
            ("end", format!("{e:.3}")),
            ("step", format!("{st}")),
        ],
    };
    let path = match a {
        Ask::Instant(_) => "/api/v1/query",
        Ask::Range(..) => "/api/v1/query_range",
    };
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return "-".into();
    };
    match client
        .post(format!("{base}{path}"))
        .form(&params)
        .send()
        .await
    {
        Ok(r) => r
            .headers()
            .get("x-promfed-plan")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string(),
        Err(_) => "-".into(),
    }
}

/// Whether `BENCH_QUERIES` (comma-separated name prefixes, default all)
/// picks the query `name`.
fn picked(name: &str) -> bool {
    std::env::var("BENCH_QUERIES").map_or(true, |v| {
        v.split(',')
            .any(|p| !p.trim().is_empty() && name.starts_with(p.trim()))
    })
}

/// promfed's config over `backends` (name, url), pushdown on or off.
fn config(backends: &[(&str, &str)], pushdown: bool) -> String {
    let mut y = format!("listen: 127.0.0.1:0\npushdown: {pushdown}\nbackends:\n");
    for (name, url) in backends {
        y.push_str(&format!(
            "  - name: {name}\n    url: {url}\n    timeout: 60s\n    pushdown: true\n    external_labels: {{cluster: {name}}}\n"
        ));
    }
    y
}

/// The data directories: one per cluster, and the union of the first N
/// clusters for each N.
struct Dirs {
    clusters: Vec<PathBuf>,
    unions: Vec<(usize, PathBuf)>,
    schedule: istio_sim::Schedule,
}

/// Simulates the 16 clusters and writes each into its own block and each
/// union of N into one block (as a Prometheus that had scraped them all
/// would hold them), two blocks at a time (the machine has two cores).
fn make_data(dir: &TempDir, names: &[String], ns: &[usize]) -> Result<Dirs, HarnessError> {
    let background = env_usize("BENCH_BACKGROUND", 18_000);
    let mesh = env_usize("BENCH_MESH_BACKGROUND", 2_000);
    let writer = data::writer_bin()?;
    let t0 = Instant::now();
    let sim = Simulation::generate(&SimConfig {
        clusters: names.to_vec(),
        duration_secs: DURATION_SECS,
        background_series: background,
        background_mesh_series: mesh,
        ..SimConfig::default()
    })?;
    let series: usize = (0..CLUSTERS).map(|i| sim.counts(i).series).sum();
    let samples: usize = (0..CLUSTERS).map(|i| sim.counts(i).samples).sum();
    println!(
        "\ndata: {CLUSTERS} clusters, {} series and {} samples per cluster on average ({background} plain and {mesh} istio_requests_total background series each), simulated in {:.1?}",
        series / CLUSTERS,
        samples / CLUSTERS,
        t0.elapsed()
    );
    let t1 = Instant::now();
    let dirs = Dirs {
        clusters: names
            .iter()
            .map(|n| dir.path().join(format!("tsdb-{n}")))
            .collect(),
        unions: ns
            .iter()
            .map(|&n| (n, dir.path().join(format!("union-{n}"))))
            .collect(),
        schedule: sim.schedule.clone(),
    };
    // Biggest first, so that the two workers end together.
    let mut jobs: Vec<(Vec<usize>, &PathBuf)> = dirs
        .unions
        .iter()
        .map(|(n, d)| ((0..*n).collect(), d))
        .collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.0.len()));
    jobs.extend(dirs.clusters.iter().enumerate().map(|(i, d)| (vec![i], d)));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<u64, HarnessError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (jobs, next, writer, sim) = (&jobs, &next, &writer, &sim);
                s.spawn(move || -> Result<u64, HarnessError> {
                    let mut streamed = 0;
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((which, tsdb)) = jobs.get(k) else {
                            return Ok(streamed);
                        };
                        // Unions (more than one cluster) hold the `cluster` label.
                        streamed += data::write_block(writer, sim, which, which.len() > 1, tsdb)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(err("tsdb-writer", "thread panicked")))
            })
            .collect()
    });
    let mut streamed = 0;
    for r in results {
        streamed += r?;
    }
    let bytes = |d: &[&PathBuf]| d.iter().map(|t| data::dir_bytes(t)).sum::<u64>() as f64 / 1e6;
    let cluster_dirs: Vec<&PathBuf> = dirs.clusters.iter().collect();
    let union_dirs: Vec<&PathBuf> = dirs.unions.iter().map(|u| &u.1).collect();
    println!(
        "wrote {:.0} MB of series through tsdb-writer into {:.0} MB of cluster blocks and {:.0} MB of union blocks in {:.1?} ({:.1?} in all)",
        streamed as f64 / 1e6,
        bytes(&cluster_dirs),
        bytes(&union_dirs),
        t1.elapsed(),
        t0.elapsed()
    );
    Ok(dirs)
}

/// A promfed's figures over the timed runs, filled in by [`measure_query`].
struct Timed {
    times: Vec<Duration>,
    own: u64,
    backends: u64,
}

impl Timed {
    fn new() -> Self {
        Timed {
            times: Vec::new(),
            own: 0,
            backends: 0,
        }
    }
}

/// Times one query on raw promfed, pushdown promfed and the union,
/// `runs` times each, alternating.
#[allow(clippy::too_many_arguments)]
async fn measure_query(
    n: usize,
    name: &'static str,
    q: &str,
    a: Ask,
    touched: f64,
    configs: [&str; 2],
    union: &PromServer,
    backends: &[&str],
    backend_pids: &[u32],
) -> Result<Row, HarnessError> {
    let tps = measure::ticks_per_sec();
    let upid = union.pid().ok_or_else(|| err("union", "not running"))?;
    let t = Instant::now();
    let want = ask(&union.url, q, a).await?;
    // Cheap queries run ten times as often: CPU comes in 10 ms ticks.
    let runs = env_usize("BENCH_RUNS", 7).max(1)
        * if t.elapsed() < Duration::from_millis(50) {
            10
        } else {
            1
        };
    // Fresh promfeds: their peak RSS is this query's.
    let mut ps = Vec::new();
    let mut sides = [Side::default(); 3];
    for (i, c) in configs.iter().enumerate() {
        let p = common::Promfed::start(c)?;
        let pid = p.pid().ok_or_else(|| err("promfed", "not running"))?;
        sides[i].idle_rss_mb = status_kb(pid, "VmRSS") as f64 / 1024.0;
        let s0 = measure::sent_bytes(backends).await?;
        let got = ask(&p.url, q, a).await?;
        sides[i].sent = measure::sent_bytes(backends).await? - s0;
        // Each scrape of the servers' /metrics is a new connection of its
        // own: counted without a query first, then taken off.
        let c0 = measure::accepted_connections(backends).await?;
        let c1 = measure::accepted_connections(backends).await?;
        ask(&p.url, q, a).await?;
        let c2 = measure::accepted_connections(backends).await?;
        sides[i].conns = (c2 - c1) - (c1 - c0);
        let diff = common::compare::difference(&got, &want);
        if let Some(d) = &diff {
            println!(
                "N={n} {name}: promfed ({}) differs from the union: {d}",
                ["raw", "pushdown"][i]
            );
        }
        sides[i].equal = diff.is_none();
        if i == 1 {
            println!("N={n} {name}: X-Promfed-Plan: {}", plan(&p.url, q, a).await);
        }
        sides[i].runs = runs;
        ps.push((p, pid));
    }
    let mut recv0 = [0.0; 2];
    for (i, (p, _)) in ps.iter().enumerate() {
        recv0[i] = measure::metric(&p.url, "promfed_backend_bytes_received_total").await?;
    }
    let mut timed = [Timed::new(), Timed::new(), Timed::new()];
    for r in 0..runs {
        for k in 0..3 {
            let side = (r + k) % 3;
            let (url, pid) = match side {
                2 => (union.url.as_str(), upid),
                i => (ps[i].0.url.as_str(), ps[i].1),
            };
            let (c0, b0) = (cpu_ticks(pid), cpu_ticks_all(backend_pids));
            let s = Instant::now();
            ask(url, q, a).await?;
            let took = s.elapsed();
            let t = &mut timed[side];
            t.times.push(took);
            t.own += cpu_ticks(pid) - c0;
            t.backends += cpu_ticks_all(backend_pids) - b0;
        }
    }
    let per_query = |ticks: u64| ticks as f64 / tps * 1000.0 / runs as f64;
    for (i, t) in timed.into_iter().enumerate() {
        sides[i].ms = ms(median(t.times));
        sides[i].cpu_ms = per_query(t.own);
        if i < 2 {
            sides[i].backend_cpu_ms = per_query(t.backends);
        }
    }
    for (i, (p, pid)) in ps.iter_mut().enumerate() {
        let recv = measure::metric(&p.url, "promfed_backend_bytes_received_total").await?;
        sides[i].received = (recv - recv0[i]) / runs as f64;
        sides[i].rss_mb = status_kb(*pid, "VmHWM") as f64 / 1024.0;
        p.stop();
    }
    let [raw, push, mut union_side] = sides;
    union_side.equal = true;
    union_side.runs = runs;
    Ok(Row {
        n,
        name,
        raw,
        push,
        union: union_side,
        touched,
    })
}

/// `BENCH_HOLD=FILE`: with the 16 cluster servers up, writes a raw
/// promfed config over all of them to FILE and waits (at most 30 minutes)
/// until FILE is removed, to run promfed by hand under a profiler
/// (`heaptrack target/release/promfed serve --config FILE`).
async fn hold_for_profiling(file: &Path, clusters: &[PromServer]) -> Result<(), HarnessError> {
    let backends: Vec<(&str, &str)> = clusters
        .iter()
        .map(|s| (s.name.as_str(), s.url.as_str()))
        .collect();
    std::fs::write(file, config(&backends, false))
        .map_err(io(format!("writing {}", file.display())))?;
    println!(
        "holding: promfed config in {}; remove it to go on",
        file.display()
    );
    let t = Instant::now();
    while file.exists() && t.elapsed() < Duration::from_secs(1800) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "benchmark: scripts/bench-scale"]
async fn bench_scale_promfed_vs_union() -> Result<(), HarnessError> {
    let ns: Vec<usize> = std::env::var("BENCH_NS")
        .unwrap_or_else(|_| "2,8,16".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| (1..=CLUSTERS).contains(n))
        .collect();
    let tools = Tools::find()?;
    let dir = TempDir::new("promfed-scale")?;
    let names: Vec<String> = (1..=CLUSTERS).map(|i| format!("c{i:02}")).collect();
    let dirs = make_data(&dir, &names, &ns)?;
    let mut clusters = Vec::new();
    for (name, tsdb) in names.iter().zip(&dirs.clusters) {
        let work = dir.path().join(format!("run-{name}"));
        data::link_tree(tsdb, &work.join("data"))?;
        clusters.push(PromServer::start(
            &tools,
            name,
            &work.join("data"),
            &[("cluster", name.as_str())],
            dir.path(),
        )?);
    }
    for c in &mut clusters {
        c.wait_ready(common::READY_TIMEOUT)?;
    }
    if let Ok(hold) = std::env::var("BENCH_HOLD") {
        hold_for_profiling(Path::new(&hold), &clusters).await?;
    }
    let at = dirs.schedule.end as f64 - 30.0;
    let queries: [(&'static str, &str, Ask, &str); 3] = [
        (
            "seed instant",
            SUCCESS_RATE_QUERY,
            Ask::Instant(at),
            // The canary selector's samples in the 40 s window (the other
            // selector adds matchers to it: one select).
            "sum(count_over_time(istio_requests_total{reporter=\"source\",destination_service=~\"helloworld-canary.helloworld.svc.cluster.local\"}[40s]))",
        ),
        (
            "dashboard instant",
            DASHBOARD,
            Ask::Instant(at),
            "sum(count_over_time(istio_requests_total[5m]))",
        ),
        (
            "dashboard 1 h range, step 15 s",
            DASHBOARD,
            Ask::Range(at - 3600.0, at, 15.0),
            "sum(count_over_time(istio_requests_total[65m]))",
        ),
    ];
    let mut rows = Vec::new();
    for (n, udir) in &dirs.unions {
        let n = *n;
        let mut union = PromServer::start(&tools, &format!("union-{n}"), udir, &[], dir.path())?;
        union.wait_ready(common::READY_TIMEOUT)?;
        println!("N={n}: union holds {} block(s)", data::blocks(udir).len());
        let backends: Vec<(&str, &str)> = clusters[..n]
            .iter()
            .map(|s| (s.name.as_str(), s.url.as_str()))
            .collect();
        let urls: Vec<&str> = backends.iter().map(|b| b.1).collect();
        let pids: Vec<u32> = clusters[..n].iter().filter_map(PromServer::pid).collect();
        let (raw, push) = (config(&backends, false), config(&backends, true));
        for (name, q, a, touched_q) in queries.iter().filter(|q| picked(q.0)) {
            let touched = ask(&union.url, touched_q, Ask::Instant(at))
                .await?
                .first_value()
                .unwrap_or(0.0);
            let row =
                measure_query(n, name, q, *a, touched, [&raw, &push], &union, &urls, &pids).await?;
            report::print_line(&row);
            rows.push(row);
        }
        union.stop();
        let _ = std::fs::remove_dir_all(udir);
    }
    println!(
        "\nload average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let names: Vec<&'static str> = queries.iter().map(|q| q.0).collect();
    report::print_tables(&rows, &ns, &names);
    for c in &mut clusters {
        c.stop();
    }
    if rows.iter().any(|r| !r.raw.equal || !r.push.equal) {
        return Err(err(
            "scale bench",
            "promfed's answers differ from the union's",
        ));
    }
    Ok(())
}
