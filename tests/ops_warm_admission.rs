//! The cache's warm queries are queries like any other: each takes an
//! admission slot (`promfed_queries_in_flight`), ends at `query_timeout`
//! and is written to the query log; before, they ran outside admission
//! with a fixed 120 s deadline.

mod ops_support;

use std::time::{Duration, Instant};

use ops_support::Promfed;

/// The value of an unlabelled metric on promfed's `/metrics`.
async fn metric(c: &reqwest::Client, p: &Promfed, name: &str) -> Option<f64> {
    let text = c
        .get(p.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_queries_take_an_admission_slot_and_end_at_the_query_timeout() {
    // A warm query of 10080 subqueries of 86400 points: many seconds of CPU, far
    // past the 250 ms query timeout.
    let p = Promfed::start(
        "warm-admission",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\nquery_log: stderr\nlimits:\n  query_timeout: 250ms\n  max_concurrent_queries: 1\ncache:\n  grid: 2s\n  warm_queries: ['max_over_time(max_over_time(vector(1)[1d:1s])[7d:1m])']\n",
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("client");
    // The warmer holds the only slot while it evaluates.
    let until = Instant::now() + Duration::from_secs(8);
    let mut held = false;
    while Instant::now() < until && !held {
        held = metric(&c, &p, "promfed_queries_in_flight").await == Some(1.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held, "no warm query ever held an admission slot");
    // And it ends at the query timeout, as the query log says.
    let logged = p.wait_stderr("\"kind\":\"warm\"", Duration::from_secs(6));
    assert!(logged, "no warm query in the query log: {}", p.stderr());
    let log = p.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("\"kind\":\"warm\""))
        .expect("warm line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
    assert_eq!(v["error"], "timeout", "{line}");
    let took = v["duration_seconds"].as_f64().expect("duration");
    assert!(
        (0.2..1.0).contains(&took),
        "the warm query ran {took} s with a 250 ms timeout: {line}"
    );
}
