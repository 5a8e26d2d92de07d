//! Memory is a budget and every query ends at its deadline (issue #12, the
//! engine's side): the hostile queries of the issue, against the real
//! binary over a real Prometheus, with small limits so that they run in
//! seconds. Each checks the answer, the process's peak memory (VmHWM of
//! /proc/<pid>/status) and that it is still alive.

mod common;
mod ops_support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::PromServer;
use ops_support::{assert_error, client, json, Promfed};

/// Series in the data set, and their samples' spacing.
const SERIES: usize = 600;
const SCRAPE_S: i64 = 15;
/// The data covers `[T0, T0 + SPAN_S]` (unix seconds).
const T0: i64 = 1_700_000_000;
const SPAN_S: i64 = 11_100;

/// One Prometheus holding `SERIES` gauges `hostile_m{i="N"}` with a sample
/// every 15 s (with millisecond jitter) over three hours; started once per
/// test binary, stopped when the test process exits.
fn prometheus() -> &'static PromServer {
    static PROM: OnceLock<Result<PromServer, String>> = OnceLock::new();
    let started = PROM.get_or_init(|| {
        let mut om = String::with_capacity(SERIES * 800 * 40);
        om.push_str("# TYPE hostile_m gauge\n");
        for i in 0..SERIES {
            let mut t = T0 * 1000;
            while t <= (T0 + SPAN_S) * 1000 {
                let jitter = (i as i64 * 7 + t / 1000) % 97;
                om.push_str(&format!(
                    "hostile_m{{i=\"{i}\"}} {} {}.{:03}\n",
                    (i as i64 + t / 1000) % 1000,
                    (t + jitter) / 1000,
                    (t + jitter) % 1000
                ));
                t += SCRAPE_S * 1000;
            }
        }
        om.push_str("# EOF\n");
        common::start_from_openmetrics("budget", &om, &[("cluster", "k8s-1")])
            .map(|mut p| {
                p.stop_on_exit();
                p
            })
            .map_err(|e| e.to_string())
    });
    match started {
        Ok(p) => p,
        Err(e) => panic!("prometheus could not start: {e}"),
    }
}

/// promfed over the data set with `limits` (YAML flow mapping body) and
/// `extra` config lines.
fn promfed(tag: &str, limits: &str, extra: &str) -> Promfed {
    let prom = prometheus();
    Promfed::start(
        tag,
        &format!(
            "backends:\n  - name: k8s-1\n    url: {}\n    external_labels: {{cluster: k8s-1}}\n    timeout: 20s\nlimits: {{{limits}}}\n{extra}",
            prom.url
        ),
    )
}

/// A field of /proc/<pid>/status, bytes (`VmHWM`, `VmRSS`).
fn status_bytes(p: &Promfed, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU time the process has used so far (user + system), in seconds.
fn cpu_seconds(p: &Promfed) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.child.id())).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn alive(p: &mut Promfed) {
    assert!(
        matches!(p.child.try_wait(), Ok(None)),
        "promfed exited: {}",
        p.stderr()
    );
}

async fn post(
    p: &Promfed,
    path: &str,
    form: &[(&str, &str)],
) -> (Duration, u16, serde_json::Value) {
    let started = Instant::now();
    let r = client()
        .post(p.url(path))
        .form(form)
        .send()
        .await
        .expect("promfed answers");
    let (status, body) = json(r).await;
    (started.elapsed(), status, body)
}

const MIB: u64 = 1 << 20;

/// Peak memory after a warm-up query that fetched everything once: what
/// the process needs before the hostile query builds anything.
async fn baseline(p: &Promfed) -> u64 {
    let end = (T0 + SPAN_S).to_string();
    let (_, status, body) = post(
        p,
        "/api/v1/query",
        &[
            ("query", "count(count_over_time({__name__=~\".+\"}[4h]))"),
            ("time", &end),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
    status_bytes(p, "VmHWM")
}

#[tokio::test]
async fn label_replace_building_huge_labels_is_refused_before_it_builds_them() {
    // Row 1: every series' name repeated 20000 times into a new label.
    let mut p = promfed(
        "labels",
        "max_query_bytes: 33554432, query_timeout: 20s",
        "",
    );
    let base = baseline(&p).await;
    let q = format!(
        "count(label_replace({{__name__=~\".+\"}}, \"x\", \"{}\", \"__name__\", \"(.*)\"))",
        "$1".repeat(20_000)
    );
    let end = (T0 + SPAN_S).to_string();
    let (took, status, body) = post(
        &p,
        "/api/v1/query",
        &[("query", &q), ("time", &end), ("timeout", "10s")],
    )
    .await;
    // 600 series x 180 kB of label each would be 108 MB, more than the
    // 32 MiB budget: refused as it reaches the budget, within the timeout.
    assert_error(status, &body, 422, "execution", "limits.max_query_bytes");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let grew = status_bytes(&p, "VmHWM").saturating_sub(base);
    eprintln!(
        "peak memory grew by {} MiB (baseline {} MiB)",
        grew / MIB,
        base / MIB
    );
    assert!(grew < 64 * MIB, "peak memory grew by {} MiB", grew / MIB);
    alive(&mut p);
    // Under the budget, the same function answers as Prometheus does.
    let (_, status, body) = post(
        &p,
        "/api/v1/query",
        &[
            (
                "query",
                "count(label_replace(hostile_m, \"x\", \"$1$1\", \"i\", \"(.*)\"))",
            ),
            ("time", &end),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
}

/// Every series at every second of 11000 s: 6.6 M points built from about
/// 440 k samples fetched.
fn every_series_every_second() -> [(&'static str, String); 4] {
    [
        ("query", "{__name__=~\".+\"}".to_string()),
        ("start", (T0 + 100).to_string()),
        ("end", (T0 + 11_100).to_string()),
        ("step", "1".to_string()),
    ]
}

#[tokio::test]
async fn a_range_query_building_more_points_than_max_samples_is_refused_twice_at_once() {
    // Row 2: the samples fetched are under max_samples, the points built
    // are not; two such queries at once.
    let mut p = promfed("points", "max_samples: 3000000, query_timeout: 20s", "");
    let base = baseline(&p).await;
    let form = every_series_every_second();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (a, b) = tokio::join!(
        post(&p, "/api/v1/query_range", &form),
        post(&p, "/api/v1/query_range", &form)
    );
    for (took, status, body) in [a, b] {
        assert_error(
            status,
            &body,
            422,
            "execution",
            "query processing would load too many samples into memory in query execution",
        );
        assert!(took < Duration::from_secs(10), "answered after {took:?}");
    }
    // Each may hold 3 M points (48 MB) before it is refused.
    let grew = status_bytes(&p, "VmHWM").saturating_sub(base);
    eprintln!(
        "peak memory grew by {} MiB (baseline {} MiB)",
        grew / MIB,
        base / MIB
    );
    assert!(grew < 160 * MIB, "peak memory grew by {} MiB", grew / MIB);
    alive(&mut p);
}

#[tokio::test]
async fn an_answer_over_the_response_limit_is_refused_before_it_is_encoded() {
    // Row 3: the same query once, evaluated within the budgets, but its
    // JSON answer (over 100 MB) is larger than max_response_bytes.
    let mut p = promfed(
        "response",
        "max_samples: 50000000, max_query_bytes: 402653184, max_response_bytes: 16777216, query_timeout: 20s",
        "",
    );
    let base = baseline(&p).await;
    let form = every_series_every_second();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (took, status, body) = post(&p, "/api/v1/query_range", &form).await;
    assert_error(status, &body, 422, "execution", "limits.max_response_bytes");
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    // Evaluated (6.6 M points, ~210 MB with the matrix), never encoded.
    let grew = status_bytes(&p, "VmHWM").saturating_sub(base);
    eprintln!(
        "peak memory grew by {} MiB (baseline {} MiB)",
        grew / MIB,
        base / MIB
    );
    assert!(grew < 384 * MIB, "peak memory grew by {} MiB", grew / MIB);
    alive(&mut p);
}

#[tokio::test]
async fn a_subquery_over_every_series_at_every_second_is_refused_within_the_budget() {
    // Row 4: 10800 inner steps x 600 series = 6.5 M points.
    let mut p = promfed("subquery", "max_samples: 2000000, query_timeout: 20s", "");
    let base = baseline(&p).await;
    let end = (T0 + SPAN_S).to_string();
    let (took, status, body) = post(
        &p,
        "/api/v1/query",
        &[
            ("query", "max_over_time({__name__=~\".+\"}[3h:1s])"),
            ("time", &end),
        ],
    )
    .await;
    assert_error(
        status,
        &body,
        422,
        "execution",
        "query processing would load too many samples into memory in query execution",
    );
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    // At most 2 M points (32 MB) held before the refusal.
    let grew = status_bytes(&p, "VmHWM").saturating_sub(base);
    eprintln!(
        "peak memory grew by {} MiB (baseline {} MiB)",
        grew / MIB,
        base / MIB
    );
    assert!(grew < 96 * MIB, "peak memory grew by {} MiB", grew / MIB);
    alive(&mut p);
    // A subquery within the budget still answers.
    let (_, status, body) = post(
        &p,
        "/api/v1/query",
        &[
            ("query", "count(max_over_time(hostile_m[10m:1s]))"),
            ("time", &end),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
}

#[tokio::test]
async fn a_query_that_would_overflow_the_memory_of_all_queries_is_refused_and_the_next_one_runs() {
    // The pool all queries share (16 MiB) is smaller than what this query
    // builds (~14 MB of points, then its JSON), though its own budget is
    // larger: refused as unavailable, and the memory is given back.
    let mut p = promfed(
        "pool",
        "max_memory_bytes: 16777216, max_query_bytes: 67108864, query_timeout: 20s",
        "",
    );
    let base = baseline(&p).await;
    let (start, end) = ((T0 + 3_000).to_string(), (T0 + 4_500).to_string());
    let form = [
        ("query", "{__name__=~\".+\"}"),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", "1"),
    ];
    let (took, status, body) = post(&p, "/api/v1/query_range", &form).await;
    assert_error(status, &body, 503, "unavailable", "limits.max_memory_bytes");
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    let grew = status_bytes(&p, "VmHWM").saturating_sub(base);
    eprintln!(
        "peak memory grew by {} MiB (baseline {} MiB)",
        grew / MIB,
        base / MIB
    );
    assert!(grew < 48 * MIB, "peak memory grew by {} MiB", grew / MIB);
    alive(&mut p);
    // What it held went back to the pool, as the metrics show.
    let metrics = metrics_text(&p).await;
    for line in [
        "promfed_query_memory_bytes 0",
        "promfed_query_memory_limit_bytes 16777216",
        "promfed_queries_refused_total{reason=\"memory\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in {metrics}"
        );
    }
    // A small query runs.
    let (_, status, body) = post(
        &p,
        "/api/v1/query",
        &[("query", "count(hostile_m)"), ("time", &end)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["result"][0]["value"][1], SERIES.to_string());
}

/// promfed's own metrics, as text.
async fn metrics_text(p: &Promfed) -> String {
    client()
        .get(p.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// `promfed_queries_in_flight` now.
async fn in_flight(p: &Promfed) -> f64 {
    metrics_text(p)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("promfed_queries_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn cached_evaluations_keep_their_slot_and_deadline_and_stop_when_it_passes() {
    // Row 5: cache on, 2 slots + 2 queued, 3 s deadline; 30 distinct
    // CPU-heavy queries arriving over 6 s.
    let mut p = promfed(
        "flights",
        "max_concurrent_queries: 2, max_queued_queries: 2, query_timeout: 3s",
        "cache: {grid: 10s}\n",
    );
    let started = Instant::now();
    let mut clients = Vec::new();
    for n in 0..30 {
        let url = p.url("/api/v1/query_range");
        clients.push(tokio::spawn(async move {
            let q = format!("quantile_over_time(0.5, vector({n})[2d:1s])");
            let sent = Instant::now();
            let r = client()
                .post(url)
                .form(&[
                    ("query", q.as_str()),
                    ("start", "1000000"),
                    ("end", "1011000"),
                    ("step", "1"),
                ])
                .send()
                .await
                .expect("promfed answers");
            let (status, body) = json(r).await;
            (sent.elapsed(), status, body)
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut most_in_flight = 0.0f64;
    while clients.iter().any(|c| !c.is_finished()) && started.elapsed() < Duration::from_secs(30) {
        most_in_flight = most_in_flight.max(in_flight(&p).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in clients {
        let (took, status, body) = c.await.expect("join");
        assert_eq!(status, 503, "{body}");
        assert!(
            took < Duration::from_millis(3500),
            "answered after {took:?}: {body}"
        );
    }
    assert!(
        most_in_flight <= 2.0,
        "{most_in_flight} queries in flight at once"
    );
    // Every evaluation ends with its deadline: a second after the last
    // caller left nothing is in flight and the process is idle.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(in_flight(&p).await, 0.0);
    let cpu = cpu_seconds(&p);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = cpu_seconds(&p) - cpu;
    assert!(
        busy < 0.3,
        "{busy:.2} s of CPU in 2 s after the last caller left"
    );
    alive(&mut p);
}

/// POSTs a range query of `every_series_every_second` shape and returns
/// the time until the answer's headers arrived (the body is encoded before
/// they are sent), the status and, for errors, the JSON body.
async fn range_headers_after(
    p: &Promfed,
    query: &str,
    timeout: &str,
) -> (Duration, u16, serde_json::Value) {
    let mut form = every_series_every_second();
    form[0].1 = query.to_string();
    let mut form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    form.push(("timeout", timeout));
    let started = Instant::now();
    let r = client()
        .post(p.url("/api/v1/query_range"))
        .form(&form)
        .send()
        .await
        .expect("promfed answers");
    let took = started.elapsed();
    let status = r.status().as_u16();
    if status == 200 {
        // Read, not parsed: parsing 100 MB here would take longer than
        // promfed took to write it.
        let n = r.bytes().await.map(|b| b.len()).unwrap_or(0);
        return (took, status, serde_json::json!({ "bytes": n }));
    }
    let (_, body) = json(r).await;
    (took, status, body)
}

#[tokio::test]
async fn an_answer_whose_encoding_outlives_the_deadline_gets_the_timeout_error() {
    // Row 3 again, with no response limit in the way: the answer's JSON
    // (over 100 MB) is written inside the query's deadline, so a deadline
    // that passes while it is written gives 503, never a late 200.
    let mut p = promfed(
        "encode-deadline",
        "max_samples: 50000000, max_query_bytes: 1073741824, max_response_bytes: 1073741824, query_timeout: 120s",
        "",
    );
    baseline(&p).await;
    // The whole answer, and the same evaluation with an empty answer (no
    // value is -1): their difference is the time the JSON takes.
    let every = "{__name__=~\".+\"}";
    let (whole, status, body) = range_headers_after(&p, every, "120s").await;
    assert_eq!(status, 200, "{body}");
    let (eval, status, body) = range_headers_after(&p, "{__name__=~\".+\"} == -1", "120s").await;
    assert_eq!(status, 200, "{body}");
    eprintln!("whole answer after {whole:?}, evaluation alone {eval:?}");
    assert!(
        whole > eval + Duration::from_millis(600),
        "encoding took under 0.6 s ({whole:?} against {eval:?}): no deadline falls inside it"
    );
    // A deadline a quarter into the encoding (the machine is shared: a
    // later run may be faster or slower than these two).
    let deadline = eval + (whole - eval) / 4;
    let (took, status, body) =
        range_headers_after(&p, every, &format!("{}ms", deadline.as_millis())).await;
    assert_error(status, &body, 503, "timeout", "query timed out");
    assert!(
        took < deadline + Duration::from_millis(1500),
        "answered {took:?} after a deadline of {deadline:?}"
    );
    // And the encoding stopped there: it does not go on writing the rest
    // of the body for nobody (it had most of its work left).
    let cpu_before = cpu_seconds(&p);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu_after = cpu_seconds(&p);
    eprintln!("{:.2} s of CPU after the deadline", cpu_after - cpu_before);
    assert!(
        cpu_after - cpu_before < 0.25,
        "{:.2} s of CPU in the 1.5 s after the deadline",
        cpu_after - cpu_before
    );
    alive(&mut p);
}
