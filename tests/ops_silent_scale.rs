//! The scale for silent connections: 19,000 client connections
//! that send nothing (this machine's hard open-file limit is 20,000, and
//! the test process holds the client ends), against promfed with its
//! default `connections.max_open` (4096): probes and queries answer, its
//! open files stay near the cap, and the silent ones are closed after
//! `header_read_timeout`.

mod ops_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ops_support::Promfed;

/// Established TCP connections whose local port is `port` (the server's
/// side of each), from `/proc/net/tcp`.
fn established(port: u16) -> usize {
    let local = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "01"
        })
        .count()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The soft open-file limit of this process.
fn own_open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("Max open files"))?;
            l["Max open files".len()..]
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nineteen_thousand_silent_connections_do_not_starve_probes_or_queries() {
    const SILENT: usize = 19_000;
    // The client ends need as many files: raise this process's soft limit
    // to its hard one.
    let me = std::process::id();
    let raised = std::process::Command::new("prlimit")
        .arg(format!("--pid={me}"))
        .arg("--nofile=20000:20000")
        .status()
        .expect("run prlimit");
    assert!(raised.success(), "prlimit refused");
    assert!(
        own_open_files_limit() >= SILENT + 500,
        "open-file limit {} is too low for {SILENT} connections",
        own_open_files_limit()
    );
    let p = Promfed::start(
        "silent-scale",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\nconnections:\n  header_read_timeout: 5s\n",
    );
    let pid = p.child.id();
    let addr: SocketAddr = p.addr.parse().expect("addr");
    let started = Instant::now();
    let silent: Vec<std::net::TcpStream> = tokio::task::spawn_blocking(move || {
        // Stops at SILENT, or after 10 connects in a row time out.
        let mut out = Vec::with_capacity(SILENT);
        let mut failed = 0;
        while out.len() < SILENT && failed < 10 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => {
                    out.push(s);
                    failed = 0;
                }
                Err(_) => failed += 1,
            }
        }
        out
    })
    .await
    .expect("join");
    eprintln!(
        "{} silent connections opened in {:?}",
        silent.len(),
        started.elapsed()
    );
    assert!(silent.len() >= SILENT, "only {} connected", silent.len());
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    for i in 0..5 {
        let r = c.get(p.url("/-/healthy")).send().await;
        assert!(
            r.as_ref().is_ok_and(|r| r.status().as_u16() == 200),
            "healthy #{i} with {} silent connections: {r:?}",
            silent.len()
        );
    }
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "1+1"), ("time", "1000")])
        .send()
        .await
        .expect("a query answers");
    assert_eq!(r.status().as_u16(), 200);
    let fds = open_fds(pid);
    eprintln!("promfed holds {fds} files");
    assert!(fds < 4096 + 300, "{fds} files open, over the cap of 4096");
    // Silent connections are closed after header_read_timeout (5 s).
    let port = addr.port();
    let until = Instant::now() + Duration::from_secs(12);
    while established(port) > 5 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = established(port);
    assert!(left <= 5, "{left} silent connections still open");
    drop(silent);
}
