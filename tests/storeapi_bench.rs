//! Stacked promfeds, in one run: a global promfed over K regional promfeds
//! (StoreAPI, `grpc_listen`), each over its share of 8 clusters, against
//! one promfed over all 8 clusters directly (remote read). Every query of
//! the differential set at a few times, uncached, alternating the two;
//! latency and bytes into the top promfed (counted by a loopback TCP relay
//! in front of each of its backends) as ratios stacked / direct.
//!
//! `scripts/bench-stacked` (= `cargo test --release --test storeapi_bench
//! -- --ignored --nocapture`). Only 127.0.0.1 is contacted; every process
//! is stopped by its pid.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::differential::queries;
use common::{query, Harness, HarnessError, Promfed};
use istio_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLUSTERS: usize = 8;
/// Instant-query times per query and configuration.
const TIMES: usize = 4;

/// A loopback TCP relay to `upstream` counting the bytes it carries back.
struct Relay {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(upstream: SocketAddr) -> Relay {
    let l = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("relay bind: {e}"),
    };
    let addr = l.local_addr().unwrap_or_else(|e| panic!("relay addr: {e}"));
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = up.into_split();
                let to_up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                    let _ = uw.shutdown().await;
                });
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match ur.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            counted.fetch_add(n as u64, Ordering::Relaxed);
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                to_up.abort();
            });
        }
    });
    Relay { addr, bytes, task }
}

fn start(cfg: &str) -> Promfed {
    match Promfed::start(cfg) {
        Ok(p) => p,
        Err(e) => panic!("promfed: {e}\n{cfg}"),
    }
}

fn remote_read(name: &str, url: &str) -> String {
    format!(
        "  - name: {name}\n    url: {url}\n    timeout: 30s\n    external_labels: {{cluster: {name}}}\n"
    )
}

/// A top promfed and the relays in front of its backends.
struct Top {
    promfed: Promfed,
    relays: Vec<Relay>,
    _regions: Vec<Promfed>,
}

impl Top {
    fn bytes(&self) -> u64 {
        self.relays
            .iter()
            .map(|r| r.bytes.load(Ordering::Relaxed))
            .sum()
    }
}

async fn direct(h: &Harness) -> Top {
    let mut relays = Vec::new();
    let mut y = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for c in &h.clusters {
        let r = relay(c.addr).await;
        y.push_str(&remote_read(&c.name, &format!("http://{}", r.addr)));
        relays.push(r);
    }
    Top {
        promfed: start(&y),
        relays,
        _regions: Vec::new(),
    }
}

async fn stacked(h: &Harness, k: usize) -> Top {
    let per = h.clusters.len().div_ceil(k);
    let mut regions = Vec::new();
    let mut relays = Vec::new();
    let mut y = String::from("listen: 127.0.0.1:0\nbackends:\n");
    for (i, part) in h.clusters.chunks(per).enumerate() {
        let mut r = String::from("listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nbackends:\n");
        for c in part {
            r.push_str(&remote_read(&c.name, &c.url));
        }
        let region = start(&r);
        let grpc = match region.grpc_addr() {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        let rel = relay(grpc).await;
        y.push_str(&format!(
            "  - name: region-{i}\n    url: grpc://{}\n    protocol: thanos_store\n    timeout: 30s\n",
            rel.addr
        ));
        relays.push(rel);
        regions.push(region);
    }
    Top {
        promfed: start(&y),
        relays,
        _regions: regions,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the differential set on both, alternating; returns per-query
/// medians of (direct, stacked) latency and total bytes of each.
async fn run(h: &Harness, a: &Top, b: &Top) -> Result<(f64, f64, u64, u64, usize), HarnessError> {
    let s = &h.schedule;
    let times: Vec<f64> = (0..TIMES)
        .map(|i| s.steps[i % s.steps.len()].mid() + i as f64 * 7.3)
        .collect();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let (a0, b0) = (a.bytes(), b.bytes());
    let mut n = 0;
    for t in &times {
        for q in queries() {
            for (top, out) in [(a, &mut ta), (b, &mut tb)] {
                let t0 = Instant::now();
                let r = query(&top.promfed.url, q, *t).await?;
                out.push(t0.elapsed());
                assert!(r.is_success(), "{q}: {}", r.body);
            }
            n += 1;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((
        ms(median(ta)),
        ms(median(tb)),
        a.bytes() - a0,
        b.bytes() - b0,
        n,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench-stacked"]
async fn stacked_promfeds_against_one_over_every_cluster() -> Result<(), HarnessError> {
    let config = SimConfig {
        clusters: (1..=CLUSTERS).map(|i| format!("k8s-{i}")).collect(),
        background_series: 100,
        ..SimConfig::default()
    };
    let h = tokio::task::spawn_blocking(move || Harness::start(&config))
        .await
        .map_err(|e| HarnessError::Query {
            what: "harness".into(),
            message: e.to_string(),
        })??;
    let one = direct(&h).await;
    println!("| K regional promfeds | queries | median latency direct / stacked (ms) | latency ratio | bytes into the top promfed per query, direct / stacked | bytes ratio |");
    println!("|---|---|---|---|---|---|");
    for k in [2, 4] {
        let top = stacked(&h, k).await;
        // One warm-up pass each (connections, Info probes).
        let _ = run(&h, &one, &top).await?;
        let (ld, ls, bd, bs, n) = run(&h, &one, &top).await?;
        println!(
            "| {k} | {n} | {ld:.1} / {ls:.1} | {:.2} | {} / {} | {:.2} |",
            ls / ld.max(1e-9),
            bd / n as u64,
            bs / n as u64,
            bs as f64 / (bd as f64).max(1.0)
        );
    }
    Ok(())
}
