//! The cache end to end: promfed processes over real Prometheus servers
//! holding simulated Istio traffic (and a real redis-server). Upstream work
//! is counted from the backends' own `prometheus_http_requests_total` for
//! remote read, and from promfed's `/metrics`.

mod cache_common;
// The shared harness re-exports more than this binary uses.
#[allow(unused_imports)]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use cache_common::RedisServer;
use common::{harness, query, Harness, HarnessError, TempDir};
use istio_sim::SUCCESS_RATE_QUERY;

type R = Result<(), HarnessError>;

/// Tests that count backend requests must not overlap.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The grid of the caches under test, seconds.
const GRID: f64 = 10.0;

/// A promfed process (`serve`), stopped by pid when dropped.
struct Promfed {
    child: Child,
    base: String,
    _dir: TempDir,
}

impl Promfed {
    fn start(h: &Harness, cache_yaml: &str) -> Promfed {
        let dir = TempDir::new("promfed-cache-test").expect("temp dir");
        let mut yaml = String::from("listen: 127.0.0.1:0\nbackends:\n");
        for (name, url) in h.backends() {
            yaml.push_str(&format!(
                "  - {{name: {name}, url: '{url}', external_labels: {{cluster: {name}}}}}\n"
            ));
        }
        yaml.push_str(cache_yaml);
        let cfg = dir.path().join("promfed.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_promfed"))
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("promfed starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("promfed did not report its address within 30 s");
            }
        };
        Promfed {
            child,
            base: format!("http://{addr}"),
            _dir: dir,
        }
    }
}

impl Drop for Promfed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A raw answer: status, `X-Promfed-Cache`, body bytes.
struct Raw {
    status: u16,
    cache: String,
    body: bytes::Bytes,
}

async fn post(base: &str, path: &str, form: &[(&str, String)]) -> Raw {
    let resp = client()
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .await
        .expect("promfed answers");
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-promfed-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.bytes().await.expect("body");
    Raw {
        status,
        cache,
        body,
    }
}

async fn instant(base: &str, q: &str, t: f64) -> Raw {
    post(
        base,
        "/api/v1/query",
        &[("query", q.to_string()), ("time", format!("{t:.3}"))],
    )
    .await
}

async fn range(base: &str, q: &str, start: f64, end: f64, step: f64) -> Raw {
    post(
        base,
        "/api/v1/query_range",
        &[
            ("query", q.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ],
    )
    .await
}

/// Sum of the samples of `series` in `text`: a name with its labels as
/// exposed, or a bare name (then every label set of it counts).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .filter_map(|rest| match rest.strip_prefix('{') {
            Some(labelled) if !series.contains('{') => labelled.split_once('}').map(|(_, v)| v),
            _ => Some(rest),
        })
        .filter(|v| v.starts_with(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

async fn metrics_of(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Remote reads every cluster Prometheus has served so far.
async fn backend_reads(h: &Harness) -> f64 {
    let mut n = 0.0;
    for s in &h.clusters {
        let text = metrics_of(&s.url).await;
        n += metric(
            &text,
            r#"prometheus_http_requests_total{code="200",handler="/api/v1/read"}"#,
        );
    }
    n
}

async fn evaluations(base: &str) -> f64 {
    metric(
        &metrics_of(base).await,
        r#"promfed_cache_upstream_evaluations_total{kind="instant"}"#,
    )
}

/// Start of grid cell `i` within the run's 4th step.
fn cell(h: &Harness, i: u32) -> f64 {
    let mid = h.schedule.steps[3].mid();
    (mid / GRID).floor() * GRID + f64::from(i) * GRID
}

/// Backend reads of one cold evaluation of `q` (measured, not assumed).
async fn reads_of_one_evaluation(h: &Harness, base: &str, q: &str, t: f64) -> f64 {
    let before = backend_reads(h).await;
    let r = instant(base, q, t).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.cache, "miss");
    let d = backend_reads(h).await - before;
    assert!(d > 0.0, "an evaluation read nothing from the backends");
    d
}

/// Every task's answer (all must be 200): the bodies, and how many of each
/// `X-Promfed-Cache` kind.
async fn answers_of(
    tasks: Vec<tokio::task::JoinHandle<Raw>>,
) -> (Vec<bytes::Bytes>, std::collections::BTreeMap<String, usize>) {
    let mut bodies = Vec::new();
    let mut kinds = std::collections::BTreeMap::new();
    for task in tasks {
        let r = task.await.expect("task");
        assert_eq!(r.status, 200);
        *kinds.entry(r.cache).or_insert(0) += 1;
        bodies.push(r.body);
    }
    (bodies, kinds)
}

fn first_value(body: &[u8]) -> f64 {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no first value in {v}"))
}

#[tokio::test]
async fn two_controllers_get_identical_bytes_while_the_backends_see_one_evaluation() -> R {
    let _serial = SERIAL.lock().await;
    let h = harness();
    let pf = Promfed::start(h, "cache: {grid: 10s}\n");
    let q = SUCCESS_RATE_QUERY;
    let one = reads_of_one_evaluation(h, &pf.base, q, cell(h, 0) + 1.5).await;

    let t = cell(h, 1);
    let (reads0, evals0) = (backend_reads(h).await, evaluations(&pf.base).await);
    // Two controllers, each polling five times at its own float times, all
    // inside one grid cell.
    let controller = |offsets: [f64; 5]| {
        let base = pf.base.clone();
        async move {
            let mut bodies = Vec::new();
            for o in offsets {
                let r = instant(&base, q, t + o).await;
                assert_eq!(r.status, 200);
                bodies.push(r.body);
            }
            bodies
        }
    };
    let (a, b) = tokio::join!(
        controller([0.123, 2.5, 4.75, 6.001, 9.998]),
        controller([0.877, 1.25, 5.5, 8.25, 9.5])
    );
    for body in a.iter().chain(b.iter()) {
        assert_eq!(body, &a[0], "bodies differ within one grid cell");
    }
    assert_eq!(evaluations(&pf.base).await - evals0, 1.0);
    assert_eq!(backend_reads(h).await - reads0, one);

    // The answer is the success rate at the rounded time, as one Prometheus
    // holding every cluster's data computes it.
    let oracle = query(&h.union.url, q, t).await?;
    let want = oracle.first_value().expect("union answers");
    let got = first_value(&a[0]);
    // Exact: promfed and the 3.8 union add the same terms in the same order.
    assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_cold_requests_cause_one_fan_out() -> R {
    let _serial = SERIAL.lock().await;
    let h = harness();
    let pf = Promfed::start(h, "cache: {}\n");
    let q = SUCCESS_RATE_QUERY;
    let one = reads_of_one_evaluation(h, &pf.base, q, cell(h, 2)).await;
    let t = cell(h, 3) + 0.5;
    let before = backend_reads(h).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let base = pf.base.clone();
            tokio::spawn(async move { instant(&base, q, t + f64::from(i) * 0.1).await })
        })
        .collect();
    let (bodies, kinds) = answers_of(tasks).await;
    assert_eq!(backend_reads(h).await - before, one, "{kinds:?}");
    assert_eq!(kinds.get("miss"), Some(&1), "{kinds:?}");
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    Ok(())
}

fn redis_yaml(redis: &RedisServer) -> String {
    format!(
        "cache:\n  store: redis\n  redis: {{url: '{}', timeout: 100ms, backoff: 500ms}}\n",
        redis.url()
    )
}

#[tokio::test]
async fn two_promfed_processes_share_hits_through_one_redis() -> R {
    let _serial = SERIAL.lock().await;
    let h = harness();
    let redis = RedisServer::start();
    let a = Promfed::start(h, &redis_yaml(&redis));
    let b = Promfed::start(h, &redis_yaml(&redis));
    let q = SUCCESS_RATE_QUERY;
    let t = cell(h, 5);
    let before = backend_reads(h).await;
    let x = instant(&a.base, q, t + 1.0).await;
    let reads_a = backend_reads(h).await - before;
    let y = instant(&b.base, q, t + 7.0).await;
    assert_eq!((x.status, y.status), (200, 200));
    assert_eq!((x.cache.as_str(), y.cache.as_str()), ("miss", "hit"));
    assert_eq!(x.body, y.body);
    assert!(reads_a > 0.0);
    assert_eq!(
        backend_reads(h).await - before,
        reads_a,
        "b read the backends"
    );
    assert_eq!(evaluations(&b.base).await, 0.0);
    Ok(())
}

#[tokio::test]
async fn two_promfed_processes_missing_one_cell_at_once_evaluate_it_once() -> R {
    let _serial = SERIAL.lock().await;
    let h = harness();
    let redis = RedisServer::start();
    let a = Promfed::start(h, &redis_yaml(&redis));
    let b = Promfed::start(h, &redis_yaml(&redis));
    // A query that reads every sample of the last two hours: its evaluation
    // lasts long enough that both replicas surely miss the cell together.
    let q = "sum by (cluster) (count_over_time(istio_requests_total[2h]))";
    let one = reads_of_one_evaluation(h, &a.base, q, cell(h, 7)).await;
    let evals_before = evaluations(&a.base).await + evaluations(&b.base).await;
    let t = cell(h, 8) + 0.25;
    let before = backend_reads(h).await;
    // Controllers of both clusters, landing on both replicas at once.
    let start = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                instant(&base, q, t + f64::from(i) * 0.4).await
            })
        })
        .collect();
    let (bodies, kinds) = answers_of(tasks).await;
    let evals = evaluations(&a.base).await + evaluations(&b.base).await - evals_before;
    assert_eq!(evals, 1.0, "{kinds:?}");
    assert_eq!(backend_reads(h).await - before, one, "{kinds:?}");
    assert_eq!(kinds.get("miss"), Some(&1), "{kinds:?}");
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    Ok(())
}

#[tokio::test]
async fn redis_killed_mid_test_and_queries_are_still_answered() -> R {
    let _serial = SERIAL.lock().await;
    let h = harness();
    let mut redis = RedisServer::start();
    let pf = Promfed::start(h, &redis_yaml(&redis));
    let q = SUCCESS_RATE_QUERY;
    let r = instant(&pf.base, q, cell(h, 7)).await;
    assert_eq!(r.status, 200);
    redis.kill();
    for i in 8..12 {
        let t = cell(h, i) + 3.0;
        let r = instant(&pf.base, q, t).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let want = query(&h.union.url, q, cell(h, i))
            .await?
            .first_value()
            .expect("union answers");
        let got = first_value(&r.body);
        assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
        // The memory tier still serves what it holds.
        let again = instant(&pf.base, q, t + 1.0).await;
        assert_eq!(again.cache, "hit");
    }
    let text = metrics_of(&pf.base).await;
    assert!(
        metric(&text, "promfed_cache_store_errors_total") > 0.0,
        "{text}"
    );
    assert_eq!(metric(&text, "promfed_cache_redis_up"), 0.0, "{text}");
    Ok(())
}

#[tokio::test]
async fn range_cache_returns_exactly_what_an_uncached_promfed_returns() -> R {
    let _serial = SERIAL.lock().await;
    let h = harness();
    let cached = Promfed::start(h, "cache: {}\n");
    let plain = Promfed::start(h, "");
    let s0 = h.schedule.start as f64;
    let queries = [
        SUCCESS_RATE_QUERY.to_string(),
        "sum by (cluster, destination_version) (rate(istio_requests_total{reporter=\"destination\"}[1m]))".to_string(),
        "count(istio_requests_total)".to_string(),
    ];
    let mut kinds = std::collections::BTreeMap::new();
    // Overlapping and shifted windows, as dashboards refreshing and
    // zooming produce them.
    let windows: [(f64, f64, f64); 8] = [
        (600.0, 1800.0, 30.0),
        (900.0, 2100.0, 30.0),
        (600.0, 1200.0, 30.0),
        (300.0, 2400.0, 30.0),
        (615.0, 1815.0, 30.0),
        (600.0, 3000.0, 60.0),
        (1200.0, 1500.0, 15.0),
        (1140.0, 1560.0, 15.0),
    ];
    for q in &queries {
        for &(a, b, step) in &windows {
            let (start, end) = (s0 + a, s0 + b);
            let got = range(&cached.base, q, start, end, step).await;
            let want = range(&plain.base, q, start, end, step).await;
            assert_eq!(want.status, 200, "{:?}", want.body);
            assert_eq!(got.status, 200);
            assert_eq!(
                std::str::from_utf8(&got.body).expect("utf8"),
                std::str::from_utf8(&want.body).expect("utf8"),
                "{q} [{a}, {b}] step {step} ({})",
                got.cache
            );
            *kinds.entry(got.cache).or_insert(0) += 1;
        }
    }
    assert!(
        kinds.contains_key("hit") && kinds.contains_key("partial"),
        "{kinds:?}"
    );
    Ok(())
}
