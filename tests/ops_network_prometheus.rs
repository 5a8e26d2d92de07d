//! Backends are protected from promfed, against a real Prometheus: one
//! query of 1000 `or`-joined selectors never has more than the backend's
//! `max_connections` sockets open to it (counted from the sockets promfed
//! holds, not from its requests), they close once idle, and the Prometheus
//! keeps answering its other clients.

mod common;
mod ops_support;

use ops_support::established;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sockets process `pid` holds open to `port` on loopback: its socket file
/// descriptors, matched by inode against the `/proc/net/tcp` and `tcp6`
/// rows whose remote port is `port` (in any state: a socket counts from
/// its creation until promfed closes it).
fn sockets_held(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| {
                let target = std::fs::read_link(e.ok()?.path()).ok()?;
                let t = target.to_str()?;
                Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .collect()
        })
        .unwrap_or_default();
    let remote = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 9 && f[2].ends_with(&remote) && inodes.contains(f[9])
                })
                .count()
        })
        .sum()
}

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
    let pid = p.child.id();
    // Watch the sockets promfed holds to the Prometheus, and ask it for
    // readiness as any other client would, while the query runs.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(sockets_held(pid, port), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(1));
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
    // Three rounds of four such queries at once (each may use half the
    // backend's connections): together they keep every connection busy,
    // and each request ending races the next one for its connection.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .expect("client");
    let mut answers = Vec::new();
    for round in 0..3 {
        answers.extend(
            futures::future::join_all((0..4).map(|i| {
                let (c, query, url) = (c.clone(), query.clone(), p.url("/api/v1/query"));
                async move {
                    let time = (1000 + 10 * round + i).to_string();
                    let r = c
                        .post(url)
                        .form(&[("query", query.as_str()), ("time", time.as_str())])
                        .send()
                        .await
                        .expect("send");
                    ops_support::json(r).await
                }
            }))
            .await,
        );
    }
    done.store(true, Ordering::Release);
    watcher.join().expect("watcher");
    let slowest = other_client.await.expect("join");
    for (status, body) in answers {
        assert_eq!(status, 200, "{body}");
    }
    // Exactly the backend's cap (default max_connections 8, the readiness
    // probe included): far below Prometheus's 512.
    let peak = peak.load(Ordering::Acquire);
    eprintln!("peak {peak} sockets open from promfed to the Prometheus");
    assert!(peak > 0, "the watcher saw no socket");
    assert!(peak <= 8, "{peak} sockets open to the Prometheus at once");
    assert!(
        slowest < Duration::from_secs(1),
        "the Prometheus took {slowest:?} to answer another client"
    );
    let until = Instant::now() + Duration::from_secs(5);
    while established(port) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(established(port), 0, "idle connections still open");
    assert_eq!(sockets_held(pid, port), 0, "promfed still holds sockets");
}
