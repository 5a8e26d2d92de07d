//! A load run (metadata and PromQL queries) against promfed over two real
//! Prometheus servers, one of them killed or frozen midway: no crash, no answer past its deadline, the survivor's
//! data keeps flowing with the dead backend named in warnings. Prints the
//! figures (run with `--nocapture` to see them).

mod ops_support;
#[path = "common/peers.rs"]
mod peers;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ops_support::{client, Promfed, TempDir};

/// Backend deadline in promfed's config.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(2);
const WORKERS: usize = 8;
const RUN: Duration = Duration::from_secs(8);
const KILL_AT: Duration = Duration::from_secs(3);

/// A real Prometheus scraping itself every second (so it holds series).
struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus(cluster: &str) -> Prometheus {
    let dir = TempDir::new(&format!("load-{cluster}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let cfg = dir.write(
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels: {{cluster: {cluster}}}\n\
             scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    );
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let child = Command::new(peers::prometheus())
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus (Debian package `prometheus`)");
    let p = Prometheus {
        child,
        port,
        _dir: dir,
    };
    // Ready, and holding at least one scrape.
    let c = client();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c
            .get(format!("http://127.0.0.1:{port}/api/v1/series"))
            .query(&[("match[]", "up")])
            .send()
            .await;
        if let Ok(r) = r {
            if r.text().await.is_ok_and(|t| t.contains("\"up\"")) {
                return p;
            }
        }
        assert!(Instant::now() < until, "prometheus {cluster} not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Outcome {
    at: Duration,
    took: Duration,
    status: u16,
    body: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test]
async fn load_with_a_backend_killed_midway() {
    run_load(false).await;
}

#[tokio::test]
async fn load_with_a_backend_frozen_midway() {
    run_load(true).await;
}

/// Sends `sig` to `pid`.
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// The load run; k8s-2 is killed (connections refused at once) or frozen
/// with SIGSTOP (connections hang until the backend deadline).
async fn run_load(freeze: bool) {
    let a = prometheus("k8s-1").await;
    let mut b = prometheus("k8s-2").await;
    let p = Promfed::start(
        "load",
        &format!(
            "backends:\n\
             \x20 - {{name: k8s-1, url: 'http://127.0.0.1:{}', external_labels: {{cluster: k8s-1}}, timeout: 2s}}\n\
             \x20 - {{name: k8s-2, url: 'http://127.0.0.1:{}', external_labels: {{cluster: k8s-2}}, timeout: 2s}}\n\
             partial_response: warn\n",
            a.port, b.port
        ),
    );
    let requests: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/api/v1/series", vec![("match[]", "up")]),
        ("/api/v1/labels", vec![]),
        ("/api/v1/label/job/values", vec![]),
        ("/api/v1/query", vec![("query", "sum by (cluster) (up)")]),
        ("/api/v1/series", vec![("match[]", "prometheus_build_info")]),
    ];
    let requests = Arc::new(requests);
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (requests, outcomes, base) = (requests.clone(), outcomes.clone(), p.url(""));
        workers.push(tokio::spawn(async move {
            let c = client();
            let mut i = w;
            // Bounded in time and in count.
            while start.elapsed() < RUN && i < 100_000 {
                let (path, params) = &requests[i % requests.len()];
                i += 1;
                let sent = Instant::now();
                let r = c.get(format!("{base}{path}")).query(params).send().await;
                let (status, body) = match r {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                };
                if let Ok(mut o) = outcomes.lock() {
                    o.push(Outcome {
                        at: sent - start,
                        took: sent.elapsed(),
                        status,
                        body,
                    });
                }
            }
        }));
    }
    tokio::time::sleep(KILL_AT).await;
    if freeze {
        signal(b.child.id(), "STOP");
    } else {
        let _ = b.child.kill();
        let _ = b.child.wait();
    }
    let killed_at = start.elapsed();
    for w in workers {
        w.await.expect("worker");
    }
    if freeze {
        signal(b.child.id(), "CONT");
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().expect("outcomes"));

    // Figures.
    let mut took: Vec<Duration> = outcomes.iter().map(|o| o.took).collect();
    took.sort();
    let mut by_status = std::collections::BTreeMap::new();
    for o in &outcomes {
        *by_status.entry(o.status).or_insert(0usize) += 1;
    }
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.at > killed_at).collect();
    let warned = after
        .iter()
        .filter(|o| o.status == 200 && o.body.contains("k8s-2"))
        .count();
    eprintln!(
        "load: {} requests in {:?} by {WORKERS} workers, k8s-2 {} at {killed_at:?}; \
         status counts {by_status:?}; latency p50 {:?} p99 {:?} max {:?}; \
         after the kill: {} requests, {warned} answered 200 with k8s-2 in warnings",
        outcomes.len(),
        RUN,
        if freeze { "frozen" } else { "killed" },
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took.last().copied().unwrap_or_default(),
        after.len(),
    );

    assert!(outcomes.len() > 50, "too few requests: {}", outcomes.len());
    // No crash: every request got an HTTP answer and the process still runs.
    assert!(
        !by_status.contains_key(&0),
        "connection failures: {by_status:?}"
    );
    let mut p = p;
    assert!(
        p.child.try_wait().expect("try_wait").is_none(),
        "promfed exited"
    );
    // No answer past the backend deadline (plus scheduling slack).
    let max = took.last().copied().unwrap_or_default();
    assert!(
        max < BACKEND_TIMEOUT + Duration::from_secs(1),
        "slowest answer took {max:?}"
    );
    // Every answer after the loss comes from the survivor, naming the lost
    // backend in warnings.
    assert!(!after.is_empty());
    for o in &after {
        assert!(
            o.status == 200 && o.body.contains("k8s-2"),
            "answer {} after the loss: {}",
            o.status,
            o.body
        );
    }
    let r = client().get(p.url("/-/ready")).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
}
