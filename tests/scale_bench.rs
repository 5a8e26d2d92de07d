//! The scale benchmark (issue #17): promfed over N cluster Prometheus 3.8
//! servers against one union Prometheus 3.8 holding the same N clusters,
//! for N = 2, 8, 16, in one run. Data: `istio-sim` for 16 clusters, 65
//! minutes, with `BENCH_BACKGROUND` (default 2,000, about 2,600 series a
//! cluster; 20,000 for the tens of thousands) plain background
//! series per cluster on top of the Istio mesh, each cluster backfilled
//! with promtool into its own blocks (the `cluster` label in the data, as
//! in the union; the cluster servers also carry it as external label).
//! The union of N is the N clusters' blocks hard-linked into one data
//! directory, compacted by the union Prometheus itself before it is timed.
//!
//! Per N and query (the seed's success-rate query instant; the dashboard's
//! `sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))`
//! instant and as a 1 h range at step 15 s), with a fresh promfed per
//! query: the median latency of `BENCH_RUNS` (default 7) runs per side,
//! alternating; promfed's peak RSS (VmHWM) and CPU (utime + stime) per
//! query; the bytes promfed received from backends per query
//! (`promfed_backend_bytes_received_total`); and the raw samples the query
//! touches (`count_over_time` on the union) at 16 bytes each. Every
//! promfed answer is compared with the union's.
//!
//! `scripts/bench-scale` (= `cargo test --release --test scale_bench --
//! --ignored --nocapture`); needs the peers of `scripts/peers`.
//! `BENCH_NS` (default `2,8,16`) picks the N. Only 127.0.0.1 is contacted;
//! every process is stopped by its pid.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{ApiResponse, HarnessError, PromServer, TempDir, Tools};
use istio_sim::{SimConfig, Simulation, SUCCESS_RATE_QUERY};

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

/// utime + stime of `pid`, clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/<pid>/status` field, kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A metric's value (summed over its series) from a `/metrics` page.
async fn metric(base: &str, name: &str) -> Result<f64, HarnessError> {
    let (_, text) = common::client::get_text(base, "/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Hard-links every file under `from` into `to` (same tree).
fn link_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    for e in std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))? {
        let e = e.map_err(io("reading a directory entry"))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst).map_err(io(format!("linking {}", src.display())))?;
        }
    }
    Ok(())
}

/// Block directories (ULIDs) of a TSDB directory.
fn blocks(tsdb: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tsdb)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").exists())
                .collect()
        })
        .unwrap_or_default()
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Writes cluster `i`'s OpenMetrics text (with its `cluster` label) and
/// backfills it into `tsdb`; the text is removed afterwards.
fn backfill_cluster(
    tools: &Tools,
    sim: &Simulation,
    i: usize,
    work: &Path,
    tsdb: &Path,
) -> Result<u64, HarnessError> {
    let one = Simulation {
        config: sim.config.clone(),
        schedule: sim.schedule.clone(),
        families: sim.families.clone(),
        clusters: vec![sim.clusters[i].clone()],
    };
    let om = work.join(format!("c{i}.om"));
    {
        let f = std::fs::File::create(&om).map_err(io(format!("creating {}", om.display())))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        one.write_union(&mut w)
            .and_then(|()| std::io::Write::flush(&mut w))
            .map_err(io(format!("writing {}", om.display())))?;
    }
    let text = std::fs::metadata(&om).map_or(0, |m| m.len());
    let r = common::process::backfill(tools, &om, tsdb);
    let _ = std::fs::remove_file(&om);
    r.map(|()| text)
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

/// One row of the table.
struct Row {
    n: usize,
    name: &'static str,
    promfed_ms: f64,
    union_ms: f64,
    rss_mb: f64,
    idle_rss_mb: f64,
    cpu_ms: f64,
    union_cpu_ms: f64,
    bytes: f64,
    touched: f64,
    equal: bool,
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
    let background = env_usize("BENCH_BACKGROUND", 2_000);
    let runs = env_usize("BENCH_RUNS", 7).max(1);
    let tools = Tools::find()?;
    let dir = TempDir::new("promfed-scale")?;
    let t0 = Instant::now();
    let names: Vec<String> = (1..=CLUSTERS).map(|i| format!("c{i:02}")).collect();
    let sim = Simulation::generate(&SimConfig {
        clusters: names.clone(),
        duration_secs: DURATION_SECS,
        background_series: background,
        ..SimConfig::default()
    })?;
    let schedule = sim.schedule.clone();
    let series: usize = (0..CLUSTERS).map(|i| sim.counts(i).series).sum();
    let samples: usize = (0..CLUSTERS).map(|i| sim.counts(i).samples).sum();
    println!(
        "\ndata: {CLUSTERS} clusters, {} series and {} samples per cluster on average ({background} background series each), generated in {:.0?}",
        series / CLUSTERS,
        samples / CLUSTERS,
        t0.elapsed()
    );
    // Backfill two clusters at a time (promtool is single-threaded).
    let t1 = Instant::now();
    let tsdbs: Vec<PathBuf> = (0..CLUSTERS)
        .map(|i| dir.path().join(format!("tsdb-{}", names[i])))
        .collect();
    let mut text_bytes = 0;
    for pair in (0..CLUSTERS).collect::<Vec<_>>().chunks(2) {
        let done: Vec<Result<u64, HarnessError>> = std::thread::scope(|s| {
            let hs: Vec<_> = pair
                .iter()
                .map(|&i| {
                    let (tools, sim, work, tsdb) = (&tools, &sim, dir.path(), &tsdbs[i]);
                    s.spawn(move || backfill_cluster(tools, sim, i, work, tsdb))
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(err("backfill", "thread panicked")))
                })
                .collect()
        });
        for d in done {
            text_bytes += d?;
        }
    }
    drop(sim);
    let block_bytes: u64 = tsdbs.iter().map(|t| dir_bytes(t)).sum();
    println!(
        "backfilled {:.1} GB of OpenMetrics text into {:.0} MB of blocks in {:.0?}",
        text_bytes as f64 / 1e9,
        block_bytes as f64 / 1e6,
        t1.elapsed()
    );
    let mut clusters = Vec::new();
    for (name, tsdb) in names.iter().zip(&tsdbs) {
        let work = dir.path().join(format!("run-{name}"));
        link_tree(tsdb, &work.join("data"))?;
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
    let at = schedule.end as f64 - 30.0;
    let queries: [(&'static str, &str, Ask, String); 3] = [
        (
            "seed instant",
            SUCCESS_RATE_QUERY,
            Ask::Instant(at),
            // The canary selector's samples in the 40 s window (the other
            // selector adds matchers to it: one select).
            "sum(count_over_time(istio_requests_total{reporter=\"source\",destination_service=~\"helloworld-canary.helloworld.svc.cluster.local\"}[40s]))".into(),
        ),
        (
            "dashboard instant",
            DASHBOARD,
            Ask::Instant(at),
            "sum(count_over_time(istio_requests_total[5m]))".into(),
        ),
        (
            "dashboard 1 h range, step 15 s",
            DASHBOARD,
            Ask::Range(at - 3600.0, at, 15.0),
            "sum(count_over_time(istio_requests_total[65m]))".into(),
        ),
    ];
    let tps = ticks_per_sec();
    let mut rows = Vec::new();
    for &n in &ns {
        // The union of N: the N clusters' blocks in one directory,
        // compacted into one block before anything is timed.
        let udir = dir.path().join(format!("union-{n}"));
        for tsdb in &tsdbs[..n] {
            link_tree(tsdb, &udir)?;
        }
        let mut union = PromServer::start(&tools, &format!("union-{n}"), &udir, &[], dir.path())?;
        union.wait_ready(common::READY_TIMEOUT)?;
        let tc = Instant::now();
        while blocks(&udir).len() > 1 && tc.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        println!(
            "N={n}: union holds {} block(s) after {:.0?} of compaction",
            blocks(&udir).len(),
            tc.elapsed()
        );
        let upid = union.pid().ok_or_else(|| err("union", "not running"))?;
        let specs_labels: Vec<[(&str, &str); 1]> = names[..n]
            .iter()
            .map(|c| [("cluster", c.as_str())])
            .collect();
        let specs: Vec<common::BackendSpec<'_>> = clusters[..n]
            .iter()
            .zip(&specs_labels)
            .map(|(s, l)| (s.name.as_str(), s.url.as_str(), &l[..]))
            .collect();
        let config = common::config_yaml(&specs, "");
        for (name, q, a, touched_q) in &queries {
            let touched = ask(&union.url, touched_q, Ask::Instant(at))
                .await?
                .first_value()
                .unwrap_or(0.0);
            // A fresh promfed per query: its peak RSS is this query's.
            let mut p = common::Promfed::start(&config)?;
            let ppid = p.pid().ok_or_else(|| err("promfed", "not running"))?;
            let idle_rss = status_kb(ppid, "VmRSS");
            let got = ask(&p.url, q, *a).await?;
            let want = ask(&union.url, q, *a).await?;
            let diff = common::compare::difference(&got, &want);
            if let Some(d) = &diff {
                println!("N={n} {name}: promfed differs from the union: {d}");
            }
            let (mut pt, mut ut) = (Vec::new(), Vec::new());
            let (mut pc, mut uc) = (0, 0);
            let b0 = metric(&p.url, "promfed_backend_bytes_received_total").await?;
            for r in 0..runs {
                // Alternate which side goes first.
                for side in [r % 2, 1 - r % 2] {
                    let (url, pid) = if side == 0 {
                        (&p.url, ppid)
                    } else {
                        (&union.url, upid)
                    };
                    let c0 = cpu_ticks(pid);
                    let s = Instant::now();
                    ask(url, q, *a).await?;
                    let took = s.elapsed();
                    let c = cpu_ticks(pid) - c0;
                    if side == 0 {
                        pt.push(took);
                        pc += c;
                    } else {
                        ut.push(took);
                        uc += c;
                    }
                }
            }
            let bytes = metric(&p.url, "promfed_backend_bytes_received_total").await? - b0;
            let row = Row {
                n,
                name,
                promfed_ms: ms(median(pt)),
                union_ms: ms(median(ut)),
                rss_mb: status_kb(ppid, "VmHWM") as f64 / 1024.0,
                idle_rss_mb: idle_rss as f64 / 1024.0,
                cpu_ms: pc as f64 / tps * 1000.0 / runs as f64,
                union_cpu_ms: uc as f64 / tps * 1000.0 / runs as f64,
                bytes: bytes / runs as f64,
                touched,
                equal: diff.is_none(),
            };
            println!(
                "N={n} {name}: {:.1} / {:.1} ms (ratio {:.2}), peak RSS {:.1} MB (idle {:.1}), CPU {:.1} / {:.1} ms, {:.0} kB received, {} samples touched, answers {}",
                row.promfed_ms,
                row.union_ms,
                row.promfed_ms / row.union_ms,
                row.rss_mb,
                row.idle_rss_mb,
                row.cpu_ms,
                row.union_cpu_ms,
                row.bytes / 1e3,
                row.touched,
                if row.equal { "equal" } else { "DIFFER" }
            );
            rows.push(row);
            p.stop();
        }
        union.stop();
        let _ = std::fs::remove_dir_all(&udir);
    }
    println!(
        "\nload average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "\n| N | query | median ms promfed / union | ratio | promfed peak RSS MB (idle) | touched samples × 16 B, MB | RSS over idle / touched bytes | promfed CPU ms per query (union) | kB received per query | answers |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        let touched_mb = r.touched * 16.0 / 1e6;
        println!(
            "| {} | {} | {:.1} / {:.1} | {:.2} | {:.1} ({:.1}) | {:.1} | {:.2} | {:.1} ({:.1}) | {:.0} | {} |",
            r.n,
            r.name,
            r.promfed_ms,
            r.union_ms,
            r.promfed_ms / r.union_ms,
            r.rss_mb,
            r.idle_rss_mb,
            touched_mb,
            (r.rss_mb - r.idle_rss_mb) * 1.048_576 / touched_mb.max(f64::MIN_POSITIVE),
            r.cpu_ms,
            r.union_cpu_ms,
            r.bytes / 1e3,
            if r.equal { "equal" } else { "differ" }
        );
    }
    // Latency growth: the ratio at the largest N over the ratio at the
    // smallest, per query (goal ≤ 1.5).
    if let (Some(&lo), Some(&hi)) = (ns.first(), ns.last()) {
        println!();
        for (name, ..) in &queries {
            let ratio = |n: usize| {
                rows.iter()
                    .find(|r| r.n == n && r.name == *name)
                    .map(|r| r.promfed_ms / r.union_ms)
            };
            if let (Some(a), Some(b)) = (ratio(lo), ratio(hi)) {
                println!("{name}: ratio at N={hi} / ratio at N={lo} = {:.2}", b / a);
            }
        }
    }
    for c in &mut clusters {
        c.stop();
    }
    if rows.iter().any(|r| !r.equal) {
        return Err(err(
            "scale bench",
            "promfed's answers differ from the union's",
        ));
    }
    Ok(())
}
