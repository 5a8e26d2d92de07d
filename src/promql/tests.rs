//! Engine tests against plain reference computations over a memory source.

use std::sync::Arc;

use super::*;
use crate::model::stale_nan;
use crate::source::memory::MemorySource;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn engine(src: MemorySource) -> Engine {
    Engine::new(Arc::new(src))
}

async fn instant(e: &Engine, q: &str, t: i64) -> Vec<(Labels, f64)> {
    match e.instant(q, t, &QueryOptions::default()).await {
        Ok(QueryResult {
            value: Value::Vector(v),
            ..
        }) => {
            let mut v: Vec<(Labels, f64)> = v.into_iter().map(|e| (e.labels, e.v)).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        other => panic!("{q}: unexpected {other:?}"),
    }
}

/// Istio-like counters: three series scraped every 15 s with jitter.
fn istio() -> (MemorySource, Vec<(Labels, Vec<Sample>)>) {
    let mut src = MemorySource::new();
    let mut all = Vec::new();
    for (i, code) in ["200", "503", "201"].iter().enumerate() {
        let l = labels(&[
            ("__name__", "istio_requests_total"),
            ("reporter", "source"),
            (
                "destination_service",
                "helloworld-canary.helloworld.svc.cluster.local",
            ),
            ("response_code", code),
        ]);
        let mut v = 0.0;
        let mut samples = Vec::new();
        for k in 0..40i64 {
            let t = k * 15_000 + (k * 37 + i as i64 * 11) % 900;
            v += (k % 7 + 1 + i as i64) as f64;
            if k == 25 && i == 0 {
                v = 3.0; // a counter reset
            }
            src.add(l.clone(), t, v);
            samples.push(Sample { t, v });
        }
        all.push((l, samples));
    }
    let other = labels(&[
        ("__name__", "istio_requests_total"),
        ("reporter", "destination"),
        (
            "destination_service",
            "helloworld-canary.helloworld.svc.cluster.local",
        ),
        ("response_code", "200"),
    ]);
    for k in 0..40i64 {
        src.add(other.clone(), k * 15_000, 1000.0 * k as f64);
    }
    (src, all)
}

/// Reference irate over `(t - range, t]`.
fn ref_irate(s: &[Sample], t: i64, range: i64) -> Option<f64> {
    let w: Vec<&Sample> = s.iter().filter(|p| p.t > t - range && p.t <= t).collect();
    if w.len() < 2 {
        return None;
    }
    let (a, b) = (w[w.len() - 2], w[w.len() - 1]);
    let d = if b.v < a.v { b.v } else { b.v - a.v };
    Some(d / ((b.t - a.t) as f64 / 1000.0))
}

const SEED: &str = r#"sum(irate(istio_requests_total{reporter="source",destination_service=~"helloworld-canary.helloworld.svc.cluster.local",response_code!~"5.*"}[40s])) / sum(irate(istio_requests_total{reporter="source",destination_service=~"helloworld-canary.helloworld.svc.cluster.local"}[40s]))"#;

fn ref_seed(all: &[(Labels, Vec<Sample>)], t: i64) -> Option<f64> {
    let mut num: Option<f64> = None;
    let mut den: Option<f64> = None;
    for (l, s) in all {
        if let Some(r) = ref_irate(s, t, 40_000) {
            *den.get_or_insert(0.0) += r;
            if !l.get("response_code").unwrap_or("").starts_with('5') {
                *num.get_or_insert(0.0) += r;
            }
        }
    }
    Some(num? / den?)
}

#[tokio::test]
async fn seed_query_instant_and_range() {
    let (src, all) = istio();
    let e = engine(src);
    for t in [100_000, 301_000, 390_000, 400_000, 450_000] {
        let got = instant(&e, SEED, t).await;
        let want = ref_seed(&all, t).expect("reference has a value");
        assert_eq!(got.len(), 1, "at {t}");
        assert!(got[0].0.is_empty());
        assert!(
            (got[0].1 - want).abs() < 1e-12,
            "at {t}: {} vs {want}",
            got[0].1
        );
    }
    let r = e
        .range(SEED, 60_000, 580_000, 10_000, &QueryOptions::default())
        .await
        .expect("range query");
    let Value::Matrix(m) = r.value else {
        panic!("not a matrix")
    };
    assert_eq!(m.len(), 1);
    let mut want = Vec::new();
    for t in (60_000..=580_000).step_by(10_000) {
        if let Some(v) = ref_seed(&all, t) {
            want.push(Sample { t, v });
        }
    }
    assert_eq!(m[0].samples.len(), want.len());
    for (g, w) in m[0].samples.iter().zip(&want) {
        assert_eq!(g.t, w.t);
        assert!((g.v - w.v).abs() < 1e-12);
    }
}

#[tokio::test]
async fn lookback_staleness_and_offset() {
    let mut src = MemorySource::new();
    let l = labels(&[("__name__", "up"), ("job", "a")]);
    src.add(l.clone(), 0, 1.0);
    src.add(l.clone(), 60_000, 2.0);
    src.add(l.clone(), 120_000, stale_nan());
    src.add(l.clone(), 600_000, 5.0);
    let e = engine(src);
    let out = |v: f64| vec![(l.clone(), v)];
    assert_eq!(instant(&e, "up", 60_000).await, out(2.0));
    assert_eq!(instant(&e, "up", 119_999).await, out(2.0));
    assert_eq!(instant(&e, "up", 120_000).await, vec![]);
    assert_eq!(instant(&e, "up", 299_999).await, vec![]);
    assert_eq!(instant(&e, "up", 600_000).await, out(5.0));
    // Lookback is left-open: a sample exactly 5 m old is out.
    assert_eq!(instant(&e, "up", 900_000).await, vec![]);
    assert_eq!(instant(&e, "up", 899_999).await, out(5.0));
    assert_eq!(instant(&e, "up offset 1m", 120_000).await, out(2.0));
    assert_eq!(instant(&e, "up offset -10m", 0).await, out(5.0));
    // Range windows are left-open and drop staleness markers.
    assert_eq!(
        instant(&e, "count_over_time(up[1m])", 120_000).await,
        vec![]
    );
    assert_eq!(
        instant(&e, "count_over_time(up[2m])", 120_000).await,
        vec![(labels(&[("job", "a")]), 1.0)]
    );
    assert_eq!(
        instant(&e, "count_over_time(up[2m1ms])", 120_000).await,
        vec![(labels(&[("job", "a")]), 2.0)]
    );
}

fn http() -> MemorySource {
    let mut src = MemorySource::new();
    let mut k = 0.0;
    for job in ["api", "app"] {
        for inst in ["0", "1", "2"] {
            k += 1.0;
            let l = labels(&[("__name__", "http"), ("job", job), ("instance", inst)]);
            src.add(l.clone(), 0, k);
            src.add(
                labels(&[("__name__", "cap"), ("job", job), ("instance", inst)]),
                0,
                10.0 * k,
            );
        }
    }
    src
}

#[tokio::test]
async fn matchers_of_all_four_kinds() {
    let e = engine(http());
    assert_eq!(instant(&e, r#"http{job="api"}"#, 0).await.len(), 3);
    assert_eq!(instant(&e, r#"http{job!="api"}"#, 0).await.len(), 3);
    assert_eq!(instant(&e, r#"http{instance=~"0|1"}"#, 0).await.len(), 4);
    assert_eq!(instant(&e, r#"http{instance!~"0|1"}"#, 0).await.len(), 2);
    assert_eq!(
        instant(
            &e,
            r#"http{instance=~"1"} or http{job="api",instance="1"}"#,
            0
        )
        .await
        .len(),
        2
    );
    assert_eq!(
        instant(&e, r#"http{job="api" or instance="2"}"#, 0)
            .await
            .len(),
        4
    );
}

#[tokio::test]
async fn aggregations_by_and_without() {
    let e = engine(http());
    let api = labels(&[("job", "api")]);
    let app = labels(&[("job", "app")]);
    assert_eq!(
        instant(&e, "sum by (job) (http)", 0).await,
        vec![(api.clone(), 6.0), (app.clone(), 15.0)]
    );
    assert_eq!(
        instant(&e, "sum without (instance) (http)", 0).await,
        vec![(api.clone(), 6.0), (app.clone(), 15.0)]
    );
    assert_eq!(
        instant(&e, "avg by (job) (http)", 0).await,
        vec![(api.clone(), 2.0), (app.clone(), 5.0)]
    );
    assert_eq!(
        instant(&e, "min by (job) (http)", 0).await,
        vec![(api.clone(), 1.0), (app.clone(), 4.0)]
    );
    assert_eq!(
        instant(&e, "max by (job) (http)", 0).await,
        vec![(api.clone(), 3.0), (app.clone(), 6.0)]
    );
    assert_eq!(
        instant(&e, "count(http)", 0).await,
        vec![(Labels::empty(), 6.0)]
    );
}

#[tokio::test]
async fn binary_operators_and_matching() {
    let e = engine(http());
    let one = |job: &str, inst: &str| labels(&[("job", job), ("instance", inst)]);
    let got = instant(&e, "http / cap", 0).await;
    assert_eq!(got.len(), 6);
    assert!(got.iter().all(|(_, v)| (*v - 0.1).abs() < 1e-15));
    let got = instant(&e, r#"http{job="api"} + on(instance) http{job="app"}"#, 0).await;
    assert_eq!(
        got,
        vec![
            (labels(&[("instance", "0")]), 5.0),
            (labels(&[("instance", "1")]), 7.0),
            (labels(&[("instance", "2")]), 9.0)
        ]
    );
    let got = instant(&e, "http > 4", 0).await;
    assert_eq!(got.iter().map(|x| x.1).collect::<Vec<_>>(), vec![5.0, 6.0]);
    assert!(got.iter().all(|x| x.0.metric_name() == Some("http")));
    let got = instant(&e, "http > bool 4", 0).await;
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], (one("api", "0"), 0.0));
    let got = instant(&e, "2 * http - 1", 0).await;
    assert_eq!(got[0], (one("api", "0"), 1.0));
    let r = e
        .instant("(1 + 2) * 3", 0, &QueryOptions::default())
        .await
        .expect("scalar");
    assert_eq!(r.value, Value::Scalar { t: 0, v: 9.0 });
    let err = e
        .instant(
            r#"http + ignoring(instance) cap"#,
            0,
            &QueryOptions::default(),
        )
        .await
        .expect_err("many-to-many");
    assert!(
        err.to_string()
            .contains("many-to-many matching not allowed"),
        "{err}"
    );
}

#[tokio::test]
async fn rate_family_against_reference() {
    let mut src = MemorySource::new();
    let l = labels(&[("__name__", "c_total")]);
    let samples: Vec<Sample> = (0..20)
        .map(|k| Sample {
            t: k * 10_000 + 3,
            v: if k < 12 {
                (k * 5) as f64
            } else {
                ((k - 12) * 2) as f64
            },
        })
        .collect();
    for s in &samples {
        src.add(l.clone(), s.t, s.v);
    }
    let e = engine(src);
    let t = 150_000;
    let w: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|p| p.t > t - 60_000 && p.t <= t)
        .collect();
    let got = instant(&e, "idelta(c_total[1m])", t).await;
    assert_eq!(got[0].1, w[w.len() - 1].v - w[w.len() - 2].v);
    let got = instant(&e, "delta(c_total[1m])", t).await;
    // Reference extrapolation: samples are regular, so extrapolate by half a step at each end
    // only where the gap to the boundary exceeds 1.1 steps; here both gaps are small.
    let raw = w[w.len() - 1].v - w[0].v;
    let sampled = (w[w.len() - 1].t - w[0].t) as f64 / 1000.0;
    let to_start = (w[0].t - (t - 60_000)) as f64 / 1000.0;
    let to_end = (t - w[w.len() - 1].t) as f64 / 1000.0;
    let want = raw * (sampled + to_start + to_end) / sampled;
    assert!((got[0].1 - want).abs() < 1e-9, "{} vs {want}", got[0].1);
    let got = instant(&e, "increase(c_total[1m])", t).await;
    let mut inc = raw;
    for p in w.windows(2) {
        if p[1].v < p[0].v {
            inc += p[0].v;
        }
    }
    let want = inc * (sampled + to_start + to_end) / sampled;
    assert!((got[0].1 - want).abs() < 1e-9, "{} vs {want}", got[0].1);
    let got = instant(&e, "rate(c_total[1m])", t).await;
    assert!((got[0].1 - want / 60.0).abs() < 1e-9);
}

/// A random well-typed query over metrics `m` and `n` (depth-limited).
fn random_query(rng: &mut rand_chacha::ChaCha8Rng, kind: char, depth: u32) -> String {
    use rand::Rng;
    let pick =
        |rng: &mut rand_chacha::ChaCha8Rng, xs: &[&str]| xs[rng.gen_range(0..xs.len())].to_string();
    let leaf = depth == 0;
    match kind {
        's' => match if leaf { 0 } else { rng.gen_range(0..4) } {
            0 => pick(rng, &["1", "-2.5", "0", "NaN", "Inf", "0.5", "3"]),
            1 => format!("scalar({})", random_query(rng, 'v', depth - 1)),
            2 => "time()".into(),
            _ => format!(
                "({} {} {})",
                random_query(rng, 's', depth - 1),
                pick(rng, &["+", "-", "*", "/", "%", "^", "== bool", "> bool"]),
                random_query(rng, 's', depth - 1)
            ),
        },
        'm' => {
            let sel = pick(rng, &["m", "n", r#"m{g="1"}"#, r#"{__name__=~"m|n"}"#]);
            match if leaf { 0 } else { rng.gen_range(0..3) } {
                0 => format!("{sel}[{}]", pick(rng, &["1m", "30s", "5m", "2m"])),
                1 => format!(
                    "{sel}[2m] {}",
                    pick(rng, &["offset 1m", "@ 300", "offset -30s", "@ end()"])
                ),
                _ => format!(
                    "({})[{}:{}]",
                    random_query(rng, 'v', depth - 1),
                    pick(rng, &["3m", "1m"]),
                    pick(rng, &["", "30s", "1m"])
                ),
            }
        }
        _ => match if leaf { 0 } else { rng.gen_range(0..9) } {
            0 => pick(
                rng,
                &[
                    "m",
                    "n",
                    r#"m{g!="1"}"#,
                    r#"n{i=~"1|2"}"#,
                    "m offset 1m",
                    "m @ 120",
                ],
            ),
            1 => format!(
                "{}({})",
                pick(
                    rng,
                    &[
                        "abs",
                        "ceil",
                        "sqrt",
                        "ln",
                        "sgn",
                        "exp",
                        "timestamp",
                        "sort",
                        "sort_desc",
                        "absent",
                        "hour",
                        "deg"
                    ]
                ),
                random_query(rng, 'v', depth - 1)
            ),
            2 => format!(
                "{}({})",
                pick(
                    rng,
                    &[
                        "rate",
                        "irate",
                        "increase",
                        "delta",
                        "idelta",
                        "deriv",
                        "changes",
                        "resets",
                        "avg_over_time",
                        "min_over_time",
                        "max_over_time",
                        "sum_over_time",
                        "count_over_time",
                        "stddev_over_time",
                        "last_over_time",
                        "present_over_time",
                        "absent_over_time",
                        "mad_over_time",
                        "ts_of_max_over_time",
                    ]
                ),
                random_query(rng, 'm', depth - 1)
            ),
            3 => format!(
                "{} {}({})",
                pick(
                    rng,
                    &["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"]
                ),
                pick(rng, &["by (g)", "without (i)", "", "by (__name__)"]),
                random_query(rng, 'v', depth - 1)
            ),
            4 => format!(
                "{}({}, {})",
                pick(
                    rng,
                    &["topk", "bottomk", "limitk", "quantile", "limit_ratio"]
                ),
                random_query(rng, 's', depth - 1),
                random_query(rng, 'v', depth - 1)
            ),
            5 => format!(
                "({} {} {} {})",
                random_query(rng, 'v', depth - 1),
                pick(
                    rng,
                    &["+", "-", "*", "/", ">", "<=", "== bool", "and", "or", "unless", "atan2"]
                ),
                pick(
                    rng,
                    &[
                        "",
                        "on(g)",
                        "ignoring(i)",
                        "on(i) group_left",
                        "ignoring(i) group_right(g)"
                    ]
                ),
                random_query(rng, 'v', depth - 1)
            ),
            6 => format!(
                "({} * {})",
                random_query(rng, 'v', depth - 1),
                random_query(rng, 's', depth - 1)
            ),
            7 => match rng.gen_range(0..4) {
                0 => format!(
                    "quantile_over_time({}, {})",
                    random_query(rng, 's', depth - 1),
                    random_query(rng, 'm', depth - 1)
                ),
                1 => format!(
                    "histogram_quantile({}, {})",
                    random_query(rng, 's', depth - 1),
                    random_query(rng, 'v', depth - 1)
                ),
                2 => format!(
                    "predict_linear({}, {})",
                    random_query(rng, 'm', depth - 1),
                    random_query(rng, 's', depth - 1)
                ),
                _ => format!(
                    "clamp({}, {}, {})",
                    random_query(rng, 'v', depth - 1),
                    random_query(rng, 's', depth - 1),
                    random_query(rng, 's', depth - 1)
                ),
            },
            _ => format!(
                r#"label_replace({}, "dst", "$1", "i", "(.*)")"#,
                random_query(rng, 'v', depth - 1)
            ),
        },
    }
}

#[tokio::test]
async fn random_queries_never_panic() {
    use rand::SeedableRng;
    let mut data = super::testutil::random_series(100, "m", 6, 40, true);
    data.extend(super::testutil::random_series(101, "n", 4, 40, true));
    let e = engine(super::testutil::source(&data));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut evaluated = 0;
    for _ in 0..500 {
        let q = random_query(&mut rng, 'v', 3);
        let Ok(expr) = parse(&q) else { continue };
        evaluated += 1;
        for r in [
            e.instant_expr(&expr, 300_000, &QueryOptions::default())
                .await,
            e.range_expr(&expr, 0, 600_000, 30_000, &QueryOptions::default())
                .await,
        ] {
            if let Err(err) = r {
                assert!(
                    !err.to_string().contains("evaluation aborted"),
                    "{q}: {err}"
                );
            }
        }
    }
    assert!(evaluated > 350, "only {evaluated} random queries parsed");
}

#[test]
fn a_canceled_evaluation_stops_with_canceled() {
    use std::sync::atomic::AtomicBool;
    let fetched = plan::Fetched::default();
    let mut ann = Annotations::default();
    let canceled = AtomicBool::new(true);
    let expr = parse("1 + 1").expect("parses");
    let r = Evaluator {
        data: &fetched,
        grid: Grid {
            start: 0,
            end: 0,
            step: 1,
        },
        bounds: Bounds { start: 0, end: 0 },
        lookback: 300_000,
        ann: &mut ann,
        stats_only: false,
        canceled: &canceled,
    }
    .eval(&expr);
    assert!(matches!(r, Err(EngineError::Canceled(_))), "{r:?}");
}

/// Runs `q` as a range query of 101 steps over `src` inside a query whose
/// budget is `max_samples` (and `max_query_bytes`).
fn range_within(
    src: &MemorySource,
    q: &str,
    max_samples: u64,
    max_query_bytes: u64,
) -> Result<QueryResult, EngineError> {
    let cfg = crate::limits::LimitsConfig {
        max_samples,
        max_query_bytes: Some(max_query_bytes),
        ..Default::default()
    };
    let ctx = Arc::new(crate::limits::QueryContext::new(&cfg));
    let engine = Engine::new(Arc::new(src.clone()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(crate::limits::scope(
        ctx,
        engine.range(q, 0, 100 * 15_000, 15_000, &QueryOptions::default()),
    ))
}

#[test]
fn the_engine_charges_the_points_it_builds_and_releases_them_when_a_node_is_done() {
    // 10 series over 101 steps: a selector builds 1010 points (the ~380
    // samples fetched are counted on their own).
    let data = testutil::random_series(11, "m", 10, 40, false);
    let src = testutil::source(&data);
    let big = u64::MAX / 4;
    let too_many = |r: Result<QueryResult, EngineError>| matches!(r, Err(EngineError::Execution(ref m)) if m == crate::limits::TOO_MANY_SAMPLES);
    assert!(range_within(&src, "m", 1010, big).is_ok());
    assert!(too_many(range_within(&src, "m", 1009, big)));
    // sum(m): the selector's 1010 points are gone once the sum (101) is
    // built; the peak is the selector's.
    assert!(range_within(&src, "sum(m)", 1010, big).is_ok());
    assert!(too_many(range_within(&src, "sum(m)", 1009, big)));
    // m + m: both operands (2 x 1010) and the result being built (1010).
    assert!(range_within(&src, "m + m", 3030, big).is_ok());
    assert!(too_many(range_within(&src, "m + m", 3029, big)));
    // Bytes: each point is 16 bytes; 10 label sets of 3 labels.
    let labels: u64 = data
        .iter()
        .map(|s| crate::limits::meter::label_bytes(&s.labels))
        .sum();
    // Fetched series are charged as the federation receives them (the
    // memory source is not a federation): here only the engine's values.
    let points = 1010 * 16 + labels;
    assert!(range_within(&src, "m", big, points).is_ok());
    let e = range_within(&src, "m", big, points - 1).expect_err("over the byte budget");
    assert!(e.to_string().contains("limits.max_query_bytes"), "{e}");
}
