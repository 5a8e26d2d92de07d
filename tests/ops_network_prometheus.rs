//! Backends are protected from promfed, against a real Prometheus: one
//! query of 1000 `or`-joined selectors keeps to a few connections, which
//! close once idle, and the Prometheus keeps answering its other clients.

mod common;
mod ops_support;

use ops_support::established;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_or_selectors_leave_a_real_prometheus_free_for_its_other_clients() {
    let tools = common::Tools::find().unwrap_or_else(|e| panic!("{e}"));
    let dir = common::TempDir::new("promfed-or-prom").unwrap_or_else(|e| panic!("{e}"));
    let tsdb = dir.path().join("tsdb");
    std::fs::create_dir_all(&tsdb).expect("tsdb dir");
    let mut prom = common::PromServer::start(&tools, "k8s-1", &tsdb, &[], dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    prom.wait_ready(common::READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Defaults but for a short idle timeout: max_connections 8.
    let p = ops_support::Promfed::start(
        "or-prometheus",
        &format!(
            "backends:\n  - name: k8s-1\n    url: {}\n    idle_connection_timeout: 1s\n",
            prom.url
        ),
    );
    let port = prom.addr.port();
    // Watch the Prometheus's connections, and ask it for readiness as any
    // other client would, while the query runs.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(established(port), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let other_client = {
        let (done, addr) = (done.clone(), prom.addr);
        tokio::task::spawn_blocking(move || {
            let mut slowest = Duration::ZERO;
            let mut asked = 0;
            while !done.load(Ordering::Acquire) && asked < 200 {
                let started = Instant::now();
                let status = common::process::http_status(addr, "/-/ready", Duration::from_secs(5));
                assert_eq!(status, Some(200), "Prometheus stopped answering");
                slowest = slowest.max(started.elapsed());
                asked += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            slowest
        })
    };
    let query = (0..1000)
        .map(|i| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client")
        .post(p.url("/api/v1/query"))
        .form(&[("query", query.as_str()), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let (status, body) = ops_support::json(r).await;
    done.store(true, Ordering::Release);
    watcher.join().expect("watcher");
    let slowest = other_client.await.expect("join");
    assert_eq!(status, 200, "{body}");
    // promfed's 8 requests in flight (a connection on its way back to the
    // pool may briefly be replaced by a new one), plus the readiness
    // check's own; far below Prometheus's 512.
    let peak = peak.load(Ordering::Acquire);
    assert!(peak <= 12, "{peak} connections to the Prometheus at once");
    assert!(
        slowest < Duration::from_secs(1),
        "the Prometheus took {slowest:?} to answer another client"
    );
    let until = Instant::now() + Duration::from_secs(5);
    while established(port) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(established(port), 0, "idle connections still open");
}
