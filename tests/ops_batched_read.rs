//! A query's selects to one remote-read backend go in few requests:
//! against real Prometheus 3.8 servers, 1000 `or`-joined selectors answer
//! exactly as the union Prometheus does, while each backend counts at most
//! 10 remote-read requests (its own `prometheus_http_requests_total`) and
//! sees at most `max_connections` connections at once.

mod common;
mod ops_support;

use ops_support::established;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the data starts (unix seconds); samples every 15 s for 10 min.
const T0: i64 = 1_764_000_000;
const SELECTORS: usize = 1000;

/// Whether cluster `c` (1 or 2) holds metric `m{i}`: cluster 1 the even
/// ones, cluster 2 every third; some are in both, some in neither.
fn holds(c: usize, i: usize) -> bool {
    if c == 1 {
        i.is_multiple_of(2)
    } else {
        i.is_multiple_of(3)
    }
}

/// OpenMetrics of the clusters in `clusters`, metric `m{i}` with two pods
/// each (with `cluster` written in for the union), scrape jitter in ms.
fn openmetrics(clusters: &[usize], with_cluster_label: bool) -> String {
    let mut out = String::new();
    for i in 0..SELECTORS {
        let mine: Vec<usize> = clusters.iter().copied().filter(|&c| holds(c, i)).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# TYPE m{i} gauge");
        for c in mine {
            let cluster = if with_cluster_label {
                format!(",cluster=\"k8s-{c}\"")
            } else {
                String::new()
            };
            for pod in 0..2 {
                for k in 0..40 {
                    let t = T0 + k * 15;
                    let v = (i * 7 + pod * 3 + c) as f64 + k as f64 / 8.0;
                    let _ = writeln!(out, "m{i}{{pod=\"p{pod}\"{cluster}}} {v} {t}.{:03}", 17 * c);
                }
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Remote-read requests a Prometheus has served, from its own `/metrics`.
async fn read_requests(base: &str) -> f64 {
    let (status, text) = common::client::get_text(base, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{")
                && l.contains("handler=\"/api/v1/read\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_or_selectors_make_a_few_remote_read_requests_and_answer_as_the_union() {
    // The cluster data is big enough to render once per server.
    let one =
        common::start_from_openmetrics("k8s-1", &openmetrics(&[1], false), &[("cluster", "k8s-1")])
            .unwrap_or_else(|e| panic!("{e}"));
    let two =
        common::start_from_openmetrics("k8s-2", &openmetrics(&[2], false), &[("cluster", "k8s-2")])
            .unwrap_or_else(|e| panic!("{e}"));
    let union = common::start_from_openmetrics("union", &openmetrics(&[1, 2], true), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let p = ops_support::Promfed::start(
        "batched-read",
        &format!(
            "backends:\n  - name: k8s-1\n    url: {}\n    external_labels: {{cluster: k8s-1}}\n    max_connections: 4\n  - name: k8s-2\n    url: {}\n    external_labels: {{cluster: k8s-2}}\n    max_connections: 4\n",
            one.url, two.url
        ),
    );
    let base = format!("http://{}", p.addr);
    let query = (0..SELECTORS)
        .map(|i| format!("m{i}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let at = (T0 + 300) as f64;
    let before = [read_requests(&one.url).await, read_requests(&two.url).await];
    // Watch both backends' connections while the queries run.
    let done = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let watcher = {
        let (done, peaks) = (done.clone(), peaks.clone());
        let ports = [one.addr.port(), two.addr.port()];
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                for (peak, port) in peaks.iter().zip(ports) {
                    peak.fetch_max(established(port), Ordering::AcqRel);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let got = common::query(&base, &query, at)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want = common::query(&union.url, &query, at)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        common::compare::assert_same("1000 or, instant", &got, &want),
        "empty answer"
    );
    let (start, end) = ((T0 + 60) as f64, (T0 + 540) as f64);
    let got = common::query_range(&base, &query, start, end, 30.0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want = common::query_range(&union.url, &query, start, end, 30.0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        common::compare::assert_same("1000 or, range", &got, &want),
        "empty answer"
    );
    done.store(true, Ordering::Release);
    watcher.join().expect("watcher");
    let after = [read_requests(&one.url).await, read_requests(&two.url).await];
    for (i, name) in ["k8s-1", "k8s-2"].iter().enumerate() {
        // Two queries of 1000 selects each, at most 100 selects a request.
        let made = after[i] - before[i];
        assert!(
            (1.0..=20.0).contains(&made),
            "{name} served {made} remote-read requests for two queries of {SELECTORS} selectors"
        );
        let peak = peaks[i].load(Ordering::Acquire);
        eprintln!("{name}: {made} remote-read requests, at most {peak} connections at once");
        assert!(
            peak <= 4,
            "{name} saw {peak} connections at once (max_connections 4)"
        );
    }
}
