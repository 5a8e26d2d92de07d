//! Engine hot paths over realistic data: 10k series, 1 h at 15 s.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use promfed::model::histogram::{Bucket, FloatHistogram};
use promfed::model::Labels;
use promfed::promql::{Engine, QueryOptions};
use promfed::source::memory::MemorySource;

const STEP: i64 = 15_000;
const HOUR: i64 = 3_600_000;
/// Data starts 10 minutes before the evaluated hour, for lookback and 5 m windows.
const START: i64 = 1_700_000_000_000;
const EVAL_START: i64 = START + 600_000;

/// Istio-shaped counters (10k series) and duration buckets (1k histograms × 10 buckets).
fn data() -> MemorySource {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut src = MemorySource::new();
    let samples = (HOUR + 600_000) / STEP;
    let add_counter = |src: &mut MemorySource, labels: Labels, rate: f64, rng: &mut ChaCha8Rng| {
        let mut v = 0.0;
        for k in 0..=samples {
            let jitter = rng.gen_range(0..500);
            v += rate * rng.gen_range(0.5..1.5);
            src.add(labels.clone(), START + k * STEP + jitter, v.floor());
        }
    };
    for i in 0..10_000u32 {
        let labels = Labels::from_pairs([
            ("__name__", "istio_requests_total".to_string()),
            (
                "reporter",
                if i % 2 == 0 { "source" } else { "destination" }.to_string(),
            ),
            ("destination_workload", format!("workload-{}", i % 50)),
            ("source_workload", format!("client-{}", (i / 50) % 20)),
            (
                "response_code",
                ["200", "201", "404", "503", "500"][(i / 1000) as usize % 5].to_string(),
            ),
            ("pod", format!("pod-{}", i / 100)),
        ]);
        add_counter(&mut src, labels, 10.0 + (i % 7) as f64, &mut rng);
    }
    let bounds = [
        "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "+Inf",
    ];
    for h in 0..1000u32 {
        let mut cum = vec![0.0; bounds.len()];
        let base = Labels::from_pairs([
            (
                "__name__",
                "istio_request_duration_milliseconds_bucket".to_string(),
            ),
            ("destination_workload", format!("workload-{}", h % 50)),
            ("pod", format!("pod-{h}")),
        ]);
        for k in 0..=samples {
            let jitter = rng.gen_range(0..500);
            let mut acc = 0.0;
            for (b, le) in bounds.iter().enumerate() {
                acc += rng.gen_range(0.0..3.0f64).floor();
                cum[b] += acc;
                let mut l = base.clone();
                l.set("le", le);
                src.add(l, START + k * STEP + jitter, cum[b]);
            }
        }
    }
    add_native(&mut src, &mut rng, samples);
    src
}

/// 1k native histogram counters (schema 3, 24 populated buckets, a zero
/// bucket), `istio_request_duration_milliseconds` as Istio exposes it when
/// native histograms are on.
fn add_native(src: &mut MemorySource, rng: &mut ChaCha8Rng, samples: i64) {
    for h in 0..1000u32 {
        let labels = Labels::from_pairs([
            (
                "__name__",
                "istio_request_duration_milliseconds".to_string(),
            ),
            ("destination_workload", format!("workload-{}", h % 50)),
            ("pod", format!("pod-{h}")),
        ]);
        let first = 20 + (h % 8) as i32;
        let mut counts = [0.0f64; 24];
        let (mut zero, mut sum) = (0.0, 0.0);
        for k in 0..=samples {
            let jitter = rng.gen_range(0..500);
            for (i, c) in counts.iter_mut().enumerate() {
                let n = rng.gen_range(0.0..3.0f64).floor();
                *c += n;
                sum += n * 2f64.powf((first + i as i32) as f64 / 8.0);
            }
            zero += rng.gen_range(0.0..2.0f64).floor();
            let positive: Vec<Bucket> = counts
                .iter()
                .enumerate()
                .map(|(i, &count)| Bucket {
                    index: first + i as i32,
                    count,
                })
                .collect();
            let fh = FloatHistogram {
                schema: 3,
                zero_threshold: 1e-128,
                zero_count: zero,
                count: zero + counts.iter().sum::<f64>(),
                sum,
                positive,
                ..FloatHistogram::default()
            };
            src.add_histogram(labels.clone(), START + k * STEP + jitter, fh);
        }
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let engine = Engine::new(Arc::new(data()));
    let opts = QueryOptions::default();
    let queries = [
        ("rate", "rate(istio_requests_total[5m])"),
        (
            "sum_by_rate",
            "sum by (destination_workload) (rate(istio_requests_total[5m]))",
        ),
        (
            "success_rate",
            r#"sum by (destination_workload) (rate(istio_requests_total{response_code!~"5.*"}[5m])) / sum by (destination_workload) (rate(istio_requests_total[5m]))"#,
        ),
        (
            "binary_one_to_one",
            "istio_requests_total - istio_requests_total offset 5m",
        ),
        (
            "histogram_quantile",
            "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket[5m])))",
        ),
        (
            "native_histogram_quantile",
            "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds[5m])))",
        ),
        (
            "topk",
            "topk(5, sum by (destination_workload, source_workload) (rate(istio_requests_total[5m])))",
        ),
    ];
    let mut g = c.benchmark_group("range_1h_15s");
    g.sample_size(10);
    for (name, q) in queries {
        g.bench_with_input(BenchmarkId::from_parameter(name), &q, |b, q| {
            b.iter(|| {
                rt.block_on(engine.range(q, EVAL_START, EVAL_START + HOUR, STEP, &opts))
                    .expect("query")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
