//! Limits, self-metrics and the query log, against the real binary.

mod ops_support;

use ops_support::{assert_error, client, json, Promfed};

const CONFIG: &str = r#"
backends:
  - name: k8s-1
    url: http://127.0.0.1:1
    external_labels: {cluster: k8s-1}
    timeout: 2s
limits:
  max_query_length: 100
  max_body_bytes: 2048
  query_timeout: 5s
query_log: QUERY_LOG
"#;

fn start() -> Promfed {
    let dir = ops_support::TempDir::new("limits");
    let log = dir.path().join("queries.log");
    let cfg = dir.write(
        "promfed.yaml",
        CONFIG.replace("QUERY_LOG", &log.display().to_string()),
    );
    Promfed::start_in(dir, cfg, &[]).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_query_over_the_length_limit_is_bad_data() {
    let p = start();
    let long = format!("sum(up{{job=\"{}\"}})", "x".repeat(120));
    let (status, body) = json(
        client()
            .post(p.url("/api/v1/query"))
            .form(&[("query", long.as_str())])
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(
        status,
        &body,
        400,
        "bad_data",
        "more than the limit of 100 bytes",
    );
    // The same holds for range queries, and GET.
    let (status, body) = json(
        client()
            .get(p.url("/api/v1/query_range"))
            .query(&[
                ("query", long.as_str()),
                ("start", "0"),
                ("end", "60"),
                ("step", "15"),
            ])
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(
        status,
        &body,
        400,
        "bad_data",
        "invalid parameter \"query\"",
    );
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_bad_data_and_the_server_keeps_answering() {
    let p = start();
    let body = format!("query=up&pad={}", "y".repeat(4096));
    let (status, v) = json(
        client()
            .post(p.url("/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_error(status, &v, 400, "bad_data", "error parsing form values");
    let r = client()
        .get(p.url("/-/healthy"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_endpoint_and_code_and_queries_are_logged() {
    let p = start();
    let c = client();
    // One bad request (400) and one query that reaches evaluation.
    let r = c
        .get(p.url("/api/v1/query_range"))
        .query(&[
            ("query", "up"),
            ("start", "10"),
            ("end", "0"),
            ("step", "1"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .post(p.url("/api/v1/query"))
        .form(&[("query", "sum(up)"), ("time", "1000")])
        .send()
        .await
        .expect("send");
    let code = r.status().as_u16();
    let metrics = c
        .get(p.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    for want in [
        "promfed_http_requests_total{code=\"400\",handler=\"/api/v1/query_range\"} 1".to_string(),
        format!("promfed_http_requests_total{{code=\"{code}\",handler=\"/api/v1/query\"}} 1"),
        "promfed_http_request_duration_seconds_bucket{code=\"400\",handler=\"/api/v1/query_range\""
            .to_string(),
        "promfed_query_duration_seconds_count{kind=\"instant\"".to_string(),
        "promfed_queries_in_flight 0".to_string(),
        "promfed_query_fanout_backends_bucket{kind=\"instant\"".to_string(),
    ] {
        assert!(metrics.contains(&want), "/metrics lacks {want}:\n{metrics}");
    }
    // The query log holds the evaluated query (and not the refused one).
    let log = std::fs::read_to_string(p.dir.path().join("queries.log")).expect("query log");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(lines[0]["query"], "sum(up)");
    assert_eq!(lines[0]["kind"], "instant");
    assert!(lines[0]["duration_seconds"].as_f64().is_some(), "{log}");
    assert!(lines[0]["samples"].as_u64().is_some(), "{log}");
    assert!(lines[0]["backends"].is_array(), "{log}");
    assert!(lines[0]["cache"].is_null(), "no cache configured: {log}");
}

#[tokio::test]
async fn the_query_log_names_the_backends_asked_and_the_cache_outcome() {
    let b = matrix_backend(2, Duration::ZERO).await;
    let dir = ops_support::TempDir::new("qlog");
    let log = dir.path().join("queries.log");
    let cfg = dir.write(
        "promfed.yaml",
        query_api_config(
            &b.url(),
            &format!("cache: {{grid: 10s}}\nquery_log: {}\n", log.display()),
        ),
    );
    let p = Promfed::start_in(dir, cfg, &[]).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        let (status, body) = instant(&p, "count_over_time(up[1h])", &[]).await;
        assert_eq!(status, 200, "{body}");
    }
    let text = std::fs::read_to_string(&log).expect("query log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["cache"], "miss", "{text}");
    assert_eq!(lines[0]["backends"], serde_json::json!(["k8s-1"]), "{text}");
    assert_eq!(lines[0]["samples"], 120, "{text}");
    assert_eq!(lines[1]["cache"], "hit", "{text}");
    assert_eq!(lines[1]["samples"], 0, "{text}");
}

#[test]
fn invalid_limits_are_refused_by_check_config() {
    let dir = ops_support::TempDir::new("limits-check");
    let cfg = dir.write(
        "bad.yaml",
        "backends:\n  - name: a\n    url: http://127.0.0.1:1\nlimits:\n  max_samples: 0\n  max_concurrent_queries: 0\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("run check-config");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("limits.max_samples") && err.contains("limits.max_concurrent_queries"),
        "{err}"
    );
}

/// A query-API backend answering every range selector with `series` series
/// of one sample a minute over the hour before t=3600 s, after `delay`.
async fn matrix_backend(series: usize, delay: Duration) -> ops_support::RawBackend {
    let mut result = Vec::new();
    for i in 0..series {
        let values: Vec<serde_json::Value> =
            (1..=60).map(|m| serde_json::json!([m * 60, "1"])).collect();
        result.push(serde_json::json!({
            "metric": {"__name__": "up", "instance": format!("i{i}")},
            "values": values,
        }));
    }
    let body = serde_json::json!({
        "status": "success",
        "data": {"resultType": "matrix", "result": result},
    })
    .to_string();
    ops_support::RawBackend::start(std::sync::Arc::new(move |_: &str| {
        (
            delay,
            ops_support::http_answer(200, "application/json", body.as_bytes()),
        )
    }))
    .await
}

fn query_api_config(url: &str, extra: &str) -> String {
    format!(
        "backends:\n  - name: k8s-1\n    url: {url}\n    protocol: query_api\n    timeout: 10s\n{extra}"
    )
}

async fn instant(p: &Promfed, query: &str, extra: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut form = vec![("query", query), ("time", "3600")];
    form.extend_from_slice(extra);
    json(
        client()
            .post(p.url("/api/v1/query"))
            .form(&form)
            .send()
            .await
            .expect("send"),
    )
    .await
}

use std::time::{Duration, Instant};

#[tokio::test]
async fn too_many_samples_is_prometheus_s_execution_error_with_and_without_the_cache() {
    // 5 series x 60 samples = 300 samples per read.
    let b = matrix_backend(5, Duration::ZERO).await;
    for cache in ["", "cache: {grid: 10s}\n"] {
        let p = Promfed::start(
            "samples",
            &query_api_config(&b.url(), &format!("{cache}limits: {{max_samples: 299}}\n")),
        );
        let (status, body) = instant(&p, "count_over_time(up[1h])", &[]).await;
        assert_error(
            status,
            &body,
            422,
            "execution",
            "query processing would load too many samples into memory in query execution",
        );
        let p = Promfed::start(
            "samples-ok",
            &query_api_config(&b.url(), &format!("{cache}limits: {{max_samples: 300}}\n")),
        );
        let (status, body) = instant(&p, "sum(count_over_time(up[1h]))", &[]).await;
        assert_eq!(status, 200, "cache {cache:?}: {body}");
        assert_eq!(body["data"]["result"][0]["value"][1], "300", "{body}");
    }
}

#[tokio::test]
async fn too_many_series_from_one_backend_fails_the_query_naming_it() {
    let b = matrix_backend(5, Duration::ZERO).await;
    let p = Promfed::start(
        "series",
        &query_api_config(
            &b.url(),
            "limits: {max_series_per_backend: 4}\npartial_response: warn\n",
        ),
    );
    let (status, body) = instant(&p, "count(up)", &[]).await;
    assert_error(
        status,
        &body,
        422,
        "execution",
        "backend k8s-1 returned 5 series",
    );
}

#[tokio::test]
async fn the_timeout_parameter_is_honoured_and_capped() {
    // The backend answers after 5 s; promfed gives a query at most 1 s.
    let b = matrix_backend(1, Duration::from_secs(5)).await;
    let p = Promfed::start(
        "timeout",
        &query_api_config(&b.url(), "limits: {query_timeout: 1s}\n"),
    );
    for (timeout, at_least, at_most) in [
        ("30s", 900, 2500), // capped by the config
        ("0.3", 250, 1000), // honoured
        ("", 900, 2500),    // the config's default
    ] {
        let started = Instant::now();
        let extra: Vec<(&str, &str)> = if timeout.is_empty() {
            vec![]
        } else {
            vec![("timeout", timeout)]
        };
        let q = format!("up + {}", at_least); // a distinct query each time
        let (status, body) = instant(&p, &q, &extra).await;
        let took = started.elapsed().as_millis();
        assert_error(status, &body, 503, "timeout", "timed out");
        assert!(
            (at_least..at_most).contains(&took),
            "timeout={timeout:?}: answered after {took} ms"
        );
    }
}

/// With one evaluation slot and one queue place: one query running and one
/// waiting (distinct queries: no coalescing), each answering 200 later.
async fn fill_the_queue(p: &std::sync::Arc<Promfed>) -> Vec<tokio::task::JoinHandle<u16>> {
    let mut held = Vec::new();
    for q in ["up + 1", "up + 2"] {
        let p = p.clone();
        held.push(tokio::spawn(async move { instant(&p, q, &[]).await.0 }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    held
}

#[tokio::test]
async fn a_full_query_queue_answers_503_unavailable_at_once() {
    let b = matrix_backend(1, Duration::from_millis(1500)).await;
    let p = Promfed::start(
        "queue",
        &query_api_config(
            &b.url(),
            "limits: {max_concurrent_queries: 1, max_queued_queries: 1}\n",
        ),
    );
    let p = std::sync::Arc::new(p);
    let held = fill_the_queue(&p).await;
    let started = Instant::now();
    let (status, body) = instant(&p, "up + 3", &[]).await;
    assert_error(status, &body, 503, "unavailable", "too many queries");
    assert!(started.elapsed() < Duration::from_millis(1000));
    for h in held {
        assert_eq!(h.await.expect("join"), 200);
    }
    let metrics = client()
        .get(p.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("promfed_queries_refused_total{reason=\"queue_full\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cached_answer_is_served_while_the_query_queue_is_full() {
    let b = matrix_backend(1, Duration::from_millis(1500)).await;
    // One HTTP thread: the hit shares it with the two queries in flight.
    let p = Promfed::start(
        "queue-hit",
        &query_api_config(
            &b.url(),
            "io_threads: 1\ncache: {grid: 10s}\nlimits: {max_concurrent_queries: 1, max_queued_queries: 1}\n",
        ),
    );
    let (status, warm) = instant(&p, "sum(up)", &[]).await;
    assert_eq!(status, 200, "{warm}");
    let p = std::sync::Arc::new(p);
    let held = fill_the_queue(&p).await;
    // The queue is full: a new evaluation is refused...
    let (status, body) = instant(&p, "up + 3", &[]).await;
    assert_error(status, &body, 503, "unavailable", "too many queries");
    // ...but the cell already held is answered, from memory, the same.
    let resp = client()
        .post(p.url("/api/v1/query"))
        .form(&[("query", "sum( up )"), ("time", "3604.5")])
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("x-promfed-cache")
            .map(|v| v.to_str().ok()),
        Some(Some("hit"))
    );
    let hit: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(hit, warm);
    for h in &held {
        assert!(!h.is_finished(), "the held queries should still be running");
    }
    for h in held {
        assert_eq!(h.await.expect("join"), 200);
    }
}
