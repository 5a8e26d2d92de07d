//! Remote read vs the HTTP API, measured in one run against one real
//! Prometheus: bytes read from the backend and latency of fetching every
//! `istio_requests_total` series over 3 h.
//!
//! `cargo run --release --example remote_read_bench -- [SERIES] [ROUNDS]`
//! (defaults 400 series, 15 rounds). Needs `prometheus` and `promtool` on
//! the PATH (Debian package `prometheus`). Only 127.0.0.1 is contacted and
//! the Prometheus started here is stopped by its pid.
//!
//! Latency covers the request, the body and decoding into `Series` (the
//! HTTP API's JSON through `serde_json::Value`). A SAMPLES body is itself
//! snappy-compressed, so its "body bytes" are compressed bytes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promfed::model::{Labels, Sample, Series};
use promfed::source::prometheus::PrometheusHttpSource;
use promfed::source::remote_read::{build_request, RemoteReadSource, ResponseMode};
use promfed::source::{Select, SelectHints, Source};
use promql_parser::label::{MatchOp, Matcher};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2026-09-21T11:33:20Z, inside the 3650-day retention used below.
const BASE_MS: i64 = 1_790_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const METRIC: &str = "istio_requests_total";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A Prometheus on a free loopback port, stopped by pid on drop, with its
/// scratch directory.
struct Prometheus {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `series` istio-like counters over 3 h 10 min as OpenMetrics.
fn openmetrics(series: usize) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut text = String::from("# TYPE istio_requests counter\n");
    let workloads = ["productpage", "reviews", "ratings", "details", "gateway"];
    let codes = ["200", "201", "404", "500", "503"];
    for i in 0..series {
        let labels = format!(
            "cluster=\"k8s-1\",reporter=\"{}\",source_workload=\"{}\",destination_workload=\"{}\",response_code=\"{}\",pod=\"pod-{}\"",
            if i % 2 == 0 { "source" } else { "destination" },
            workloads[i % workloads.len()],
            workloads[(i / 5) % workloads.len()],
            codes[(i / 25) % codes.len()],
            i
        );
        let mut t = BASE_MS + rng.gen_range(0..15_000);
        let mut v: f64 = 0.0;
        while t < BASE_MS + 3 * HOUR_MS + 10 * 60_000 {
            text.push_str(&format!(
                "{METRIC}{{{labels}}} {v:?} {}.{:03}\n",
                t / 1000,
                t % 1000
            ));
            v += f64::from(rng.gen_range(0u32..200));
            t += 15_000 + rng.gen_range(-300..=300);
        }
    }
    text.push_str("# EOF\n");
    text
}

async fn start_prometheus(series: usize) -> Result<Prometheus, BoxError> {
    let dir = std::env::temp_dir().join(format!("promfed-rread-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("data.om");
    std::fs::write(&file, openmetrics(series))?;
    let data = dir.join("data");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&data)
        .output()?;
    if !out.status.success() {
        return Err(format!("promtool: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=3650d")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let prom = Prometheus {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..600 {
        let ready = client
            .get(format!("{}/-/ready", prom.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(prom);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("prometheus did not become ready within 60 s".into())
}

/// The HTTP API path: an instant query of a range selector, decoded into
/// series as an HTTP API source would.
async fn http_api_select(
    client: &reqwest::Client,
    base: &str,
    range: &str,
    time_ms: i64,
) -> Result<(Vec<Series>, usize), BoxError> {
    let body = client
        .post(format!("{base}/api/v1/query"))
        .form(&[
            ("query", format!("{METRIC}[{range}]")),
            ("time", format!("{}.{:03}", time_ms / 1000, time_ms % 1000)),
        ])
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let mut out = Vec::new();
    for r in json["data"]["result"].as_array().ok_or("no result array")? {
        let labels = Labels::from_pairs(
            r["metric"]
                .as_object()
                .ok_or("no metric")?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())),
        );
        let mut samples = Vec::new();
        for p in r["values"].as_array().ok_or("no values")? {
            let t = p[0].as_f64().ok_or("bad time")?;
            let v: f64 = p[1].as_str().ok_or("bad value")?.parse()?;
            samples.push(Sample {
                t: (t * 1000.0).round() as i64,
                v,
            });
        }
        out.push(Series {
            labels,
            samples,
            histograms: Vec::new(),
        });
    }
    Ok((out, body.len()))
}

/// Bytes on the wire for one request: the body as sent, with gzip offered
/// the way a default reqwest client offers it, not decoded.
async fn wire_bytes(request: reqwest::RequestBuilder) -> Result<(usize, String), BoxError> {
    let response = request
        .header("Accept-Encoding", "gzip")
        .send()
        .await?
        .error_for_status()?;
    let encoding = response
        .headers()
        .get("Content-Encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_string();
    Ok((response.bytes().await?.len(), encoding))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

struct Row {
    name: &'static str,
    times: Vec<Duration>,
    decoded_bytes: usize,
    wire: (usize, String),
    series: usize,
    samples: usize,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(400);
    let rounds: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(15)
        .clamp(1, 200);
    eprintln!("loading {series} series x 3 h into a Prometheus ...");
    let prom = start_prometheus(series).await?;

    // A query time off the 15 s grid, so no sample sits on the window edge.
    let end = BASE_MS + 3 * HOUR_MS + 7_777;
    let start = end - 3 * HOUR_MS;
    let sel = Select {
        matchers: vec![Matcher::new(MatchOp::Equal, "__name__", METRIC)],
        start_ms: start + 1,
        end_ms: end,
        hints: SelectHints {
            start_ms: end,
            end_ms: end,
            range_ms: 3 * HOUR_MS,
            ..Default::default()
        },
        read: Default::default(),
    };
    // The backend client of a default backend (8 connections).
    let client = promfed::source::http::BackendHttp::plain();
    let api_client = reqwest::Client::new();
    let raw = reqwest::Client::builder().no_gzip().build()?;
    let http_source =
        PrometheusHttpSource::new("bench", &prom.base, client.clone(), Duration::from_secs(60));
    let chunks =
        RemoteReadSource::new("bench", &prom.base, Duration::from_secs(60), client.clone());
    let samples =
        RemoteReadSource::new("bench", &prom.base, Duration::from_secs(60), client.clone())
            .samples_only();

    let read_request = |mode: ResponseMode| -> Result<reqwest::RequestBuilder, BoxError> {
        let body =
            snap::raw::Encoder::new().compress_vec(&build_request(&sel, mode).encode_to_vec())?;
        Ok(raw
            .post(format!("{}/api/v1/read", prom.base))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body))
    };
    let http_request = raw.post(format!("{}/api/v1/query", prom.base)).form(&[
        ("query", format!("{METRIC}[3h]")),
        ("time", format!("{}.{:03}", end / 1000, end % 1000)),
    ]);
    let mut rows = vec![
        Row {
            name: "remote read, streamed XOR chunks",
            times: vec![],
            decoded_bytes: 0,
            wire: wire_bytes(read_request(ResponseMode::Chunks)?).await?,
            series: 0,
            samples: 0,
        },
        Row {
            name: "remote read, SAMPLES",
            times: vec![],
            decoded_bytes: 0,
            wire: wire_bytes(read_request(ResponseMode::Samples)?).await?,
            series: 0,
            samples: 0,
        },
        Row {
            name: "HTTP API source (/api/v1/query of [3h])",
            times: vec![],
            decoded_bytes: 0,
            wire: wire_bytes(http_request).await?,
            series: 0,
            samples: 0,
        },
    ];

    // One warm-up round, then the measured rounds, the methods interleaved
    // so that they share whatever else the machine is doing.
    for round in 0..=rounds {
        for (i, row) in rows.iter_mut().enumerate() {
            let t0 = Instant::now();
            let (got, bytes) = match i {
                0 | 1 => {
                    let source = if i == 0 { &chunks } else { &samples };
                    let before = source.stats().bytes_read;
                    let out = source.select(&sel).await?;
                    (out.series, (source.stats().bytes_read - before) as usize)
                }
                // The HTTP API source promfed uses (`protocol: query_api`);
                // its body size is measured once, in the warm-up round.
                _ if round == 0 => http_api_select(&api_client, &prom.base, "3h", end).await?,
                _ => {
                    let out = http_source.select(&sel).await?;
                    (out.series, row.decoded_bytes)
                }
            };
            let elapsed = t0.elapsed();
            if round > 0 {
                row.times.push(elapsed);
            }
            row.decoded_bytes = bytes;
            row.series = got.len();
            row.samples = got.iter().map(|s| s.samples.len()).sum();
        }
    }

    println!("\n{series} series, 3 h range at 15 s scrapes, {rounds} rounds, one Prometheus 2.42 on loopback\n");
    println!(
        "| method | median ms | p90 ms | body bytes read (after HTTP gzip decoding) | bytes on the wire, gzip offered (Content-Encoding) | series | samples |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &mut rows {
        row.times.sort();
        println!(
            "| {} | {:.1} | {:.1} | {} | {} ({}) | {} | {} |",
            row.name,
            percentile(&row.times, 0.5).as_secs_f64() * 1e3,
            percentile(&row.times, 0.9).as_secs_f64() * 1e3,
            row.decoded_bytes,
            row.wire.0,
            row.wire.1,
            row.series,
            row.samples
        );
    }
    let http = &rows[2];
    let http_median = percentile(&http.times, 0.5).as_secs_f64();
    for row in &rows[..2] {
        println!(
            "\n{}: latency {:.2}x of the HTTP API's, body {:.2}x, wire {:.2}x",
            row.name,
            percentile(&row.times, 0.5).as_secs_f64() / http_median,
            row.decoded_bytes as f64 / http.decoded_bytes as f64,
            row.wire.0 as f64 / http.wire.0 as f64,
        );
    }
    if rows
        .iter()
        .any(|r| r.samples != http.samples || r.series != http.series)
    {
        println!("\nWARNING: the methods returned different data");
    }
    Ok(())
}
