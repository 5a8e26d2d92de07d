//! The HTTP API's contract, tested in-process (Router + oneshot) over an
//! in-memory source: parameters, error format and codes, JSON shapes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use promfed::api::{router, AppState};
use promfed::federation::{Backend, Federation, FederationOptions};
use promfed::model::Labels;
use promfed::source::memory::MemorySource;
use serde_json::Value as Json;
use tower::ServiceExt;

/// One in-memory backend labelled `cluster="mem"`.
fn federation_of(m: MemorySource) -> Federation {
    Federation::new(
        vec![Backend {
            name: "mem".into(),
            external_labels: [("cluster".to_string(), "mem".to_string())].into(),
            source: Arc::new(m),
        }],
        FederationOptions::default(),
    )
}

fn app() -> axum::Router {
    let mut m = MemorySource::new();
    for (job, v) in [("a", 1.0), ("b", 2.0)] {
        let l = Labels::from_pairs([("__name__", "up"), ("job", job)]);
        for i in 0..20 {
            m.add(l.clone(), i * 15_000 + 7, v);
        }
    }
    let st = AppState::new(Arc::new(federation_of(m)));
    st.ready.store(true, Ordering::Release);
    router(st)
}

async fn send(req: Request<Body>) -> (StatusCode, String) {
    let resp = app().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn get(uri: &str) -> (StatusCode, String) {
    send(Request::get(uri).body(Body::empty()).expect("request")).await
}

async fn post_form(uri: &str, form: &str) -> (StatusCode, String) {
    send(
        Request::post(uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_string()))
            .expect("request"),
    )
    .await
}

fn json(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Asserts Prometheus's error format with the given type and message part.
fn assert_error(status: StatusCode, body: &str, code: u16, error_type: &str, part: &str) {
    assert_eq!(status.as_u16(), code, "{body}");
    let v = json(body);
    assert_eq!(v["status"], "error", "{body}");
    assert_eq!(v["errorType"], error_type, "{body}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert!(msg.contains(part), "error {msg:?} lacks {part:?}");
}

#[tokio::test]
async fn bad_time_is_bad_data() {
    let (s, b) = get("/api/v1/query?query=up&time=yesterday").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        r#"invalid parameter "time": cannot parse "yesterday" to a valid timestamp"#,
    );
}

#[tokio::test]
async fn range_checks() {
    let (s, b) = get("/api/v1/query_range?query=up&start=100&end=200&step=0").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        "zero or negative query resolution step",
    );
    let (s, b) = get("/api/v1/query_range?query=up&start=100&end=200&step=-1").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        "zero or negative query resolution step",
    );
    let (s, b) = get("/api/v1/query_range?query=up&start=200&end=100&step=1").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        "end timestamp must not be before start time",
    );
    let (s, b) = get("/api/v1/query_range?query=up&start=0&end=11001&step=1").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries",
    );
    let (s, b) = get("/api/v1/query_range?query=up&start=x&end=1&step=1").await;
    assert_error(s, &b, 400, "bad_data", r#"invalid parameter "start""#);
    let (s, b) = get("/api/v1/query_range?query=up&start=0&end=1&step=abc").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        r#"invalid parameter "step": cannot parse "abc" to a valid duration"#,
    );
    let (s, b) = get("/api/v1/query_range?query=up&start=0&end=1").await;
    assert_error(s, &b, 400, "bad_data", r#"invalid parameter "step""#);
    let (s, b) = post_form("/api/v1/query", "query=up&timeout=forever").await;
    assert_error(s, &b, 400, "bad_data", r#"invalid parameter "timeout""#);
    let (s, b) = post_form("/api/v1/query", "query=up&lookback_delta=-5m").await;
    assert_error(
        s,
        &b,
        400,
        "bad_data",
        r#"invalid parameter "lookback_delta""#,
    );
}

#[tokio::test]
async fn exactly_11000_points_is_allowed_past_the_checks() {
    let (s, b) = get("/api/v1/query_range?query=up&start=0&end=11000&step=1").await;
    assert_ne!(s.as_u16(), 400, "{b}");
}

#[tokio::test]
async fn buildinfo_health_ready() {
    let (s, b) = get("/api/v1/status/buildinfo").await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    assert_eq!(v["status"], "success");
    for k in [
        "version",
        "revision",
        "branch",
        "buildUser",
        "buildDate",
        "goVersion",
    ] {
        assert!(v["data"][k].is_string(), "missing {k}: {b}");
    }
    assert_eq!(get("/-/healthy").await.0, StatusCode::OK);
    assert_eq!(get("/-/ready").await.0, StatusCode::OK);
    let head = send(Request::head("/-/ready").body(Body::empty()).expect("req")).await;
    assert_eq!(head.0, StatusCode::OK);
}

#[tokio::test]
async fn not_ready_until_marked() {
    let st = AppState::new(Arc::new(federation_of(MemorySource::new())));
    let resp = router(st)
        .oneshot(Request::get("/-/ready").body(Body::empty()).expect("req"))
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn unknown_path_is_not_found_in_prometheus_format() {
    let (s, b) = get("/api/v1/nope").await;
    assert_error(s, &b, 404, "not_found", "/api/v1/nope");
}

#[tokio::test]
async fn series_requires_match() {
    let (s, b) = get("/api/v1/series").await;
    assert_error(s, &b, 400, "bad_data", "no match[] parameter provided");
    let (s, b) = get("/api/v1/series?match[]=rate(up[5m])").await;
    assert_error(s, &b, 400, "bad_data", r#"invalid parameter "match[]""#);
}

#[tokio::test]
async fn series_labels_and_values_carry_external_labels() {
    let (s, b) = get("/api/v1/series?match[]=up").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        json(&b)["data"],
        serde_json::json!([
            {"__name__": "up", "cluster": "mem", "job": "a"},
            {"__name__": "up", "cluster": "mem", "job": "b"}
        ])
    );
    let (_, b) = get("/api/v1/labels").await;
    assert_eq!(
        json(&b)["data"],
        serde_json::json!(["__name__", "cluster", "job"])
    );
    let (_, b) = get("/api/v1/label/job/values?match[]=up").await;
    assert_eq!(json(&b)["data"], serde_json::json!(["a", "b"]));
    let (_, b) = get("/api/v1/label/cluster/values").await;
    assert_eq!(json(&b)["data"], serde_json::json!(["mem"]));
    let (_, b) = get("/api/v1/label/cluster/values?match[]=%7Bcluster=%22other%22%7D").await;
    assert_eq!(json(&b)["data"], serde_json::json!([]));
    let (_, b) = get("/api/v1/series?match[]=up&limit=1").await;
    let v = json(&b);
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["warnings"][0], "results truncated due to limit");
}

#[tokio::test]
async fn grafana_endpoints_never_404() {
    for path in [
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/metadata",
        "/api/v1/query_exemplars?query=test&start=1724000000000&end=1724000300000",
        "/api/v1/stores",
        "/api/v1/format_query?query=sum(rate(x[5m]))by(job)",
        "/api/v1/parse_query?query=up",
        "/metrics",
    ] {
        let (s, b) = get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    let (_, b) = get("/api/v1/rules").await;
    assert_eq!(json(&b)["data"]["groups"], serde_json::json!([]));
    let (_, b) = get("/api/v1/format_query?query=sum(rate(x[5m]))by(job)").await;
    assert_eq!(json(&b)["data"], "sum by (job) (rate(x[5m]))");
    let (_, b) = get("/api/v1/stores").await;
    assert_eq!(json(&b)["data"]["sidecar"][0]["name"], "mem");
    assert_eq!(
        json(&b)["data"]["sidecar"][0]["labelSets"][0]["cluster"],
        "mem"
    );
}

#[tokio::test]
async fn annotations_come_back_as_prometheus_words_them() {
    // `up` is not a counter by name: rate() over it carries Prometheus's info.
    let (s, b) = post_form("/api/v1/query", "query=rate(up[5m])&time=300").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let v = json(&b);
    let infos = v["infos"].to_string();
    assert!(
        infos.contains("metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \\\"up\\\""),
        "{b}"
    );
    assert!(v.get("warnings").is_none(), "{b}");
    // A warning-level annotation: quantile out of range.
    let (s, b) = post_form("/api/v1/query", "query=quantile(2, up)&time=300").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        json(&b)["warnings"]
            .to_string()
            .contains("quantile value should be between 0 and 1"),
        "{b}"
    );
}

#[tokio::test]
async fn answers_with_warnings_must_not_be_cached_by_proxies() {
    let req = |q: &str| {
        Request::post("/api/v1/query")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("query={q}&time=300")))
            .expect("request")
    };
    let warned = app().oneshot(req("quantile(2,up)")).await.expect("answer");
    assert_eq!(
        warned.headers().get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let clean = app().oneshot(req("up")).await.expect("answer");
    assert_eq!(clean.status(), StatusCode::OK);
    assert!(clean.headers().get("cache-control").is_none());
}
