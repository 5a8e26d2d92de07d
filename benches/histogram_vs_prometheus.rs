//! `histogram_quantile(0.99, sum(rate(h[5m])))` over native histograms:
//! promfed's engine against a real Prometheus 3.8's own `evalTotalTime` on
//! the same samples.
//!
//! One command (needs Prometheus 3.8 built by `scripts/peers`):
//! `cargo bench --bench histogram_vs_prometheus`
//!
//! It generates 1,000 integer counter histogram series (exponential schema
//! 1, buckets appearing as observations reach them, about 30 positive,
//! negative and zero buckets at the end; every tenth series resets once)
//! over 1 h 11 m at 15 s with a few ms of jitter, remote-writes them in time
//! order into a Prometheus 3.8 started with
//! `--web.enable-remote-write-receiver`, and fills a memory source with the
//! same samples. The query runs as a 1 h range at 15 s; promfed's answer
//! must equal Prometheus's before anything is timed: the summed rate
//! histograms (`sum(rate(h[5m]))`) and the quantiles, exactly (promfed
//! interpolates with Go's `math.Log2`/`math.Exp2`, `model::gomath`).
//! The series are created in label order: 3.8 sums the head's series in
//! the order they were created (its select is unsorted), promfed in label
//! order, and float addition is not associative.
//! Then Prometheus's median `evalTotalTime` (`stats=all`) is set against
//! the median time of `Engine::range`. It exits non-zero when the ratio
//! exceeds 1.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::native_data::{histograms, series, Kind};
use common::remote_write::{start_receiver, write};
use promfed::model::Labels;
use promfed::promql::{Engine, QueryOptions};
use promfed::source::memory::MemorySource;
use promfed::source::remote_read::histogram_pb::histogram_sample;
use promfed::source::remote_read::prompb;

const SERIES: usize = 1000;
const SAMPLES: usize = 285;
/// Samples per remote-write round: every series' samples of one time slice,
/// so that no append falls behind the head's appendable window.
const SLICE: usize = 20;
const STEP_MS: i64 = 15_000;
const RUNS: usize = 7;
const QUERY: &str = "histogram_quantile(0.99, sum(rate(nh_bench_seconds[5m])))";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `data.result` with matrix elements sorted by their labels.
fn result_of(body: &serde_json::Value) -> serde_json::Value {
    let mut r = body["data"]["result"].clone();
    if let Some(a) = r.as_array_mut() {
        a.sort_by_key(|x| x["metric"].to_string());
    }
    r
}

fn main() {
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - SAMPLES as i64 * STEP_MS - 30_000;
    let data: Vec<(String, Vec<prompb::Histogram>)> = (0..SERIES)
        .map(|i| {
            let reset = (i % 10 == 0).then_some(150 + i % 7);
            (
                // Zero-padded: the head sums series in creation order,
                // promfed in label order; created in label order, both add
                // the same histograms in the same order.
                format!("i{i:04}"),
                histograms(Kind::IntCounter, 1000 + i as u64, start, SAMPLES, reset),
            )
        })
        .collect();
    let mut src = MemorySource::new();
    for (instance, hs) in &data {
        let labels = Labels::from_pairs([
            ("__name__", "nh_bench_seconds"),
            ("instance", instance.as_str()),
            ("job", "api"),
        ]);
        for h in hs {
            let s = histogram_sample(h).expect("generated histogram is valid");
            src.add_histogram(labels.clone(), s.t, (*s.h).clone());
        }
    }
    let buckets = data
        .iter()
        .filter_map(|(_, hs)| hs.last())
        .map(|h| {
            h.positive_spans.iter().map(|s| s.length).sum::<u32>()
                + h.negative_spans.iter().map(|s| s.length).sum::<u32>()
        })
        .max()
        .unwrap_or(0);

    let prom = start_receiver("hbench", &[]).expect("start Prometheus 3.8 receiver");
    let base = prom.url.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        for from in (0..SAMPLES).step_by(SLICE) {
            let to = (from + SLICE).min(SAMPLES);
            let slice: Vec<prompb::TimeSeries> = data
                .iter()
                .map(|(instance, hs)| {
                    series(
                        &[
                            ("__name__", "nh_bench_seconds"),
                            ("instance", instance.as_str()),
                            ("job", "api"),
                        ],
                        hs[from..to].to_vec(),
                    )
                })
                .collect();
            write(&base, &slice).await.expect("remote write");
        }
    });

    let (q_start, q_end) = (start + 6 * 60_000, start + 66 * 60_000);
    // Prometheus's range API takes seconds; keep both on whole seconds.
    let (q_start, q_end) = (q_start / 1000 * 1000, q_end / 1000 * 1000);
    let client = reqwest::Client::new();
    let ask_with = |query: &str, stats: bool| -> serde_json::Value {
        rt.block_on(async {
            let mut form = vec![
                ("query", query.to_string()),
                ("start", (q_start / 1000).to_string()),
                ("end", (q_end / 1000).to_string()),
                ("step", (STEP_MS / 1000).to_string()),
            ];
            if stats {
                form.push(("stats", "all".to_string()));
            }
            client
                .post(format!("{base}/api/v1/query_range"))
                .form(&form)
                .send()
                .await
                .expect("query prometheus")
                .json()
                .await
                .expect("prometheus json")
        })
    };
    let ask = |stats: bool| ask_with(QUERY, stats);
    let ask_query = |query: &str| ask_with(query, false);
    let engine = Engine::new(Arc::new(src));
    let ours = || {
        rt.block_on(engine.range(QUERY, q_start, q_end, STEP_MS, &QueryOptions::default()))
            .unwrap_or_else(|e| panic!("{QUERY}: {e}"))
    };

    // The same answer first. The summed rate histograms, exactly:
    let inner = QUERY
        .strip_prefix("histogram_quantile(0.99, ")
        .and_then(|q| q.strip_suffix(')'))
        .expect("inner query");
    let theirs_inner = ask_query(inner);
    let ours_inner: serde_json::Value = serde_json::from_str(&promfed::wire::query_body(
        &rt.block_on(engine.range(inner, q_start, q_end, STEP_MS, &QueryOptions::default()))
            .unwrap_or_else(|e| panic!("{inner}: {e}")),
    ))
    .expect("promfed json");
    assert_eq!(
        result_of(&ours_inner),
        result_of(&theirs_inner),
        "promfed's {inner} differs from Prometheus 3.8's"
    );
    // Then the quantiles: Prometheus's JSON result against promfed's.
    let theirs = ask(false);
    assert_eq!(theirs["status"], "success", "prometheus: {theirs}");
    let ours_body: serde_json::Value =
        serde_json::from_str(&promfed::wire::query_body(&ours())).expect("promfed json");
    let (want, got) = (result_of(&theirs), result_of(&ours_body));
    let points = want[0]["values"].as_array().map_or(0, Vec::len);
    assert!(
        points > 200,
        "prometheus answered {points} points: {theirs}"
    );
    assert_eq!(
        got, want,
        "promfed's quantiles differ from Prometheus 3.8's"
    );

    let prom_ms = median(
        (0..RUNS)
            .map(|_| {
                let body = ask(true);
                body["data"]["stats"]["timings"]["evalTotalTime"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no evalTotalTime: {body}"))
                    * 1000.0
            })
            .collect(),
    );
    let ours_ms = median(
        (0..RUNS)
            .map(|_| {
                let t0 = Instant::now();
                ours();
                t0.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    );
    drop(prom);
    let ratio = ours_ms / prom_ms;
    println!(
        "{SERIES} series x {SAMPLES} samples (up to {buckets} buckets), {points} steps, every value equal to Prometheus 3.8's"
    );
    println!(
        "{:>10} {:>10} {:>7}  query",
        "prom ms", "promfed ms", "ratio"
    );
    println!("{prom_ms:>10.1} {ours_ms:>10.1} {ratio:>7.2}  {QUERY}");
    assert!(
        ratio <= 1.0,
        "promfed's engine is slower than Prometheus 3.8 (ratio {ratio:.2})"
    );
}
