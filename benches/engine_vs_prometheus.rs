//! Engine time against a real Prometheus's own `evalTotalTime` on the same data.
//!
//! One command (needs Prometheus 3.8 built by `scripts/peers`):
//! `cargo bench --bench engine_vs_prometheus`
//!
//! It writes 10k Istio-shaped counter series and 200 classic histograms
//! (10 buckets) over 1 h 10 m at 15 s with millisecond jitter, backfills them
//! with promtool, starts Prometheus on a free loopback port, and runs each
//! query as a 1 h range at 15 s: Prometheus's median `evalTotalTime`
//! (`stats=all`) against the median time of `Engine::range` over a memory
//! source holding the same samples. It exits non-zero when a ratio exceeds 1.

#[path = "../tests/common/peers.rs"]
mod peers;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use promfed::model::Labels;
use promfed::promql::{Engine, QueryOptions};
use promfed::source::memory::MemorySource;

const START_S: i64 = 1_700_000_000;
const STEP_S: i64 = 15;
const SAMPLES: i64 = 281;
const RUNS: usize = 5;

const QUERIES: &[&str] = &[
    "sum by (destination_workload) (rate(istio_requests_total[5m]))",
    r#"sum(irate(istio_requests_total{reporter="source",destination_workload=~"workload-1.*",response_code!~"5.*"}[40s])) / sum(irate(istio_requests_total{reporter="source",destination_workload=~"workload-1.*"}[40s]))"#,
    "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket[5m])))",
    "topk(5, sum by (destination_workload, source_workload) (rate(istio_requests_total[5m])))",
    "rate(istio_requests_total[5m])",
];

/// Stops the Prometheus it holds (by pid) when dropped.
struct Prom(Child);

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes the OpenMetrics file and fills `src` with the same samples.
fn generate(path: &Path, src: &mut MemorySource) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(path).expect("create OpenMetrics file"));
    let write_series = |out: &mut std::io::BufWriter<std::fs::File>,
                        src: &mut MemorySource,
                        name: &str,
                        pairs: &[(String, String)],
                        values: &[(i64, f64)]| {
        let labels = pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",");
        let mut all = vec![("__name__".to_string(), name.to_string())];
        all.extend(pairs.iter().cloned());
        let l = Labels::from_pairs(all);
        for &(t_ms, v) in values {
            writeln!(
                out,
                "{name}{{{labels}}} {v} {}.{:03}",
                t_ms / 1000,
                t_ms % 1000
            )
            .expect("write");
            src.add(l.clone(), t_ms, v);
        }
    };
    writeln!(out, "# TYPE istio_requests_total counter").expect("write");
    let codes = ["200", "201", "404", "503", "500"];
    for i in 0..10_000u32 {
        let pairs = vec![
            (
                "reporter".to_string(),
                if i % 2 == 0 { "source" } else { "destination" }.to_string(),
            ),
            (
                "destination_workload".to_string(),
                format!("workload-{}", i % 50),
            ),
            (
                "source_workload".to_string(),
                format!("client-{}", (i / 50) % 20),
            ),
            (
                "response_code".to_string(),
                codes[(i / 1000) as usize % 5].to_string(),
            ),
            ("pod".to_string(), format!("pod-{}", i / 100)),
        ];
        let mut v = 0.0f64;
        let values: Vec<(i64, f64)> = (0..SAMPLES)
            .map(|k| {
                v += ((10 + i % 7) as f64 * rng.gen_range(0.5..1.5)).floor();
                ((START_S + k * STEP_S) * 1000 + rng.gen_range(1..500), v)
            })
            .collect();
        write_series(&mut out, src, "istio_requests_total", &pairs, &values);
    }
    writeln!(out, "# TYPE istio_request_duration_milliseconds histogram").expect("write");
    let bounds = [
        "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "+Inf",
    ];
    for h in 0..200u32 {
        let jitter: Vec<i64> = (0..SAMPLES).map(|_| rng.gen_range(1..500)).collect();
        let mut cum = vec![0.0f64; bounds.len()];
        let mut per_bucket: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len()];
        for k in 0..SAMPLES {
            let mut acc = 0.0;
            for b in 0..bounds.len() {
                acc += rng.gen_range(0.0..3.0f64).floor();
                cum[b] += acc;
                per_bucket[b].push(((START_S + k * STEP_S) * 1000 + jitter[k as usize], cum[b]));
            }
        }
        for (b, le) in bounds.iter().enumerate() {
            let pairs = vec![
                (
                    "destination_workload".to_string(),
                    format!("workload-{}", h % 50),
                ),
                ("pod".to_string(), format!("pod-{h}")),
                ("le".to_string(), le.to_string()),
            ];
            write_series(
                &mut out,
                src,
                "istio_request_duration_milliseconds_bucket",
                &pairs,
                &per_bucket[b],
            );
        }
    }
    writeln!(out, "# EOF").expect("write");
    out.flush().expect("flush");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (prometheus, promtool) = (peers::prometheus(), peers::promtool());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("promql-vs-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    let om = dir.join("data.om");
    let mut src = MemorySource::new();
    generate(&om, &mut src);
    let tsdb = dir.join("tsdb");
    let status = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .stdout(Stdio::null())
        .status()
        .expect("promtool");
    assert!(status.success(), "promtool backfill failed");
    let _ = std::fs::remove_file(&om);
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("config");
    let port = free_port();
    let prom = Prom(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    rt.block_on(async {
        for _ in 0..120 {
            if let Ok(r) = client.get(format!("{base}/-/ready")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("prometheus did not become ready");
    });
    let engine = Engine::new(Arc::new(src));
    let (start, end) = (START_S + 600, START_S + 600 + 3600);
    println!(
        "{:>10} {:>10} {:>7}  query",
        "prom ms", "promfed ms", "ratio"
    );
    let mut worst: f64 = 0.0;
    for q in QUERIES {
        let prom_ms = median(
            (0..RUNS)
                .map(|_| {
                    rt.block_on(async {
                        let form = [
                            ("query", q.to_string()),
                            ("start", start.to_string()),
                            ("end", end.to_string()),
                            ("step", STEP_S.to_string()),
                            ("stats", "all".to_string()),
                        ];
                        let body: serde_json::Value = client
                            .post(format!("{base}/api/v1/query_range"))
                            .form(&form)
                            .send()
                            .await
                            .expect("query prometheus")
                            .json()
                            .await
                            .expect("prometheus json");
                        body["data"]["stats"]["timings"]["evalTotalTime"]
                            .as_f64()
                            .unwrap_or_else(|| panic!("no evalTotalTime for {q}: {body}"))
                            * 1000.0
                    })
                })
                .collect(),
        );
        let ours_ms = median(
            (0..RUNS)
                .map(|_| {
                    let t0 = Instant::now();
                    rt.block_on(engine.range(
                        q,
                        start * 1000,
                        end * 1000,
                        STEP_S * 1000,
                        &QueryOptions::default(),
                    ))
                    .unwrap_or_else(|e| panic!("{q}: {e}"));
                    t0.elapsed().as_secs_f64() * 1000.0
                })
                .collect(),
        );
        let ratio = ours_ms / prom_ms;
        worst = worst.max(ratio);
        println!("{prom_ms:>10.1} {ours_ms:>10.1} {ratio:>7.2}  {q}");
    }
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        worst <= 1.0,
        "promfed's engine is slower than Prometheus (worst ratio {worst:.2})"
    );
}
