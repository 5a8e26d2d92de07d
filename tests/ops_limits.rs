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
