//! A backend that fails requests is visible at once, against real
//! Prometheus 3.8 servers and the real binary: killed by pid, its
//! `promfed_backend_up` turns 0 on the first failed query (long before the
//! next probe), a flood of failing queries logs a bounded number of lines
//! naming it (with its error, without the credentials promfed sends it),
//! and once it is restarted on the same port, the first query it answers
//! turns the gauge back to 1.

mod common;
mod ops_support;

use std::time::{Duration, Instant};

/// Start of the test data, unix seconds (2024-08-18T12:00:00Z).
const T0: i64 = 1_723_982_400;
/// Failing queries sent in the flood.
const FLOOD: usize = 300;
/// A password sent to the killed backend; it must never reach the log.
const PASSWORD: &str = "hunter2-never-logged";

/// Ten minutes of one gauge at 15 s, `value` everywhere.
fn openmetrics(value: f64) -> String {
    let mut om = String::from("# TYPE demo_value gauge\n");
    for i in 0..40 {
        om.push_str(&format!("demo_value {value} {}\n", T0 + i * 15));
    }
    om.push_str("# EOF\n");
    om
}

/// The `promfed_backend_up` gauge of `backend` on `/metrics`.
async fn backend_up(p: &ops_support::Promfed, backend: &str) -> Option<f64> {
    let text = ops_support::client()
        .get(p.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("promfed_backend_up{{backend=\"{backend}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// `(status, body)` of `sum(demo_value)` at T0 + 5 m.
async fn query(p: &ops_support::Promfed) -> (u16, serde_json::Value) {
    let resp = ops_support::client()
        .post(p.url("/api/v1/query"))
        .form(&[
            ("query", "sum(demo_value)"),
            ("time", &(T0 + 300).to_string()),
        ])
        .send()
        .await
        .expect("query promfed");
    ops_support::json(resp).await
}

/// Lines of promfed's log about a failed request to backend `a`.
fn failure_lines(p: &ops_support::Promfed) -> Vec<String> {
    p.stderr()
        .lines()
        .filter(|l| l.contains("backend request failed") && l.contains("backend=a"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_marks_the_backend_down_at_once_and_an_answer_marks_it_up() {
    let tools = common::Tools::find().unwrap_or_else(|e| panic!("{e}"));
    let mut a = common::start_from_openmetrics("a", &openmetrics(1.0), &[("cluster", "a")])
        .unwrap_or_else(|e| panic!("{e}"));
    let b = common::start_from_openmetrics("b", &openmetrics(2.0), &[("cluster", "b")])
        .unwrap_or_else(|e| panic!("{e}"));
    // Probes are an hour apart: only the one at start-up runs during the
    // test, so every change of the gauge after it comes from a query.
    let config = format!(
        "probe_interval: 1h\nbackends:\n  - name: a\n    url: {}\n    timeout: 5s\n    \
         external_labels: {{cluster: a}}\n    basic_auth: {{username: promfed, password: {PASSWORD}}}\n  \
         - name: b\n    url: {}\n    timeout: 5s\n    external_labels: {{cluster: b}}\n",
        a.url, b.url
    );
    let p = ops_support::Promfed::start("backend-failures", &config);
    let until = Instant::now() + Duration::from_secs(20);
    while backend_up(&p, "a").await != Some(1.0) || backend_up(&p, "b").await != Some(1.0) {
        assert!(
            Instant::now() < until,
            "the start-up probe never marked both up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = query(&p).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "3", "{body}");

    // Kill `a` by its pid: the next query fails (partial response is
    // `abort`) and the gauge is 0 right after it, not an hour later.
    a.stop();
    let (status, body) = query(&p).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(backend_up(&p, "a").await, Some(0.0));
    assert_eq!(backend_up(&p, "b").await, Some(1.0), "b answered");

    // A flood of failing queries: all fail, the log stays short.
    let started = Instant::now();
    for _ in 0..FLOOD {
        let (status, body) = query(&p).await;
        assert_eq!(status, 422, "{body}");
    }
    let took = started.elapsed();
    let lines = failure_lines(&p);
    // One line per backend every 10 s at most (counting the first query).
    let allowed = 1 + (took.as_secs() / 10) as usize + 1;
    assert!(
        !lines.is_empty() && lines.len() <= allowed,
        "{} lines about backend a after {} failing queries in {took:?} (at most {allowed}):\n{}",
        lines.len(),
        FLOOD + 1,
        lines.join("\n")
    );
    // The line says what failed; the credentials sent to `a` are not in it.
    assert!(
        lines[0].contains("backend a:"),
        "no error in {:?}",
        lines[0]
    );
    assert!(!p.stderr().contains(PASSWORD), "{}", p.stderr());
    assert_eq!(backend_up(&p, "a").await, Some(0.0));

    // Restarted on the same port: the first answered query marks it up.
    a.restart(&tools).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = query(&p).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], "3", "{body}");
    assert_eq!(backend_up(&p, "a").await, Some(1.0));
    assert!(
        p.wait_stderr("backend answers again", Duration::from_secs(2)),
        "{}",
        p.stderr()
    );
}
