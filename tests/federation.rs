//! promfed over the per-cluster Prometheus servers answers as the union
//! Prometheus (one server holding every cluster's data) does.
//!
//! Real servers: one Prometheus per cluster and the union Prometheus from
//! the shared harness, promfed started as its own process in front.

mod common;

use std::sync::OnceLock;

use common::client::{get_text, post_form};
use common::compare::{assert_same, same_value};
use common::{
    config_yaml, harness, query, query_range, render_cluster, start_from_openmetrics, ApiResponse,
    Harness, HarnessError, Promfed,
};
use istio_sim::SUCCESS_RATE_QUERY;

type R = Result<(), HarnessError>;

/// A promfed kept for the whole test binary (stopped when it exits),
/// started with the config `cfg` builds on first use.
fn shared_promfed(
    cell: &'static OnceLock<Result<Promfed, String>>,
    cfg: impl FnOnce() -> String,
) -> &'static Promfed {
    let p = cell.get_or_init(|| {
        Promfed::start(&cfg())
            .map(|mut p| {
                p.stop_on_exit();
                p
            })
            .map_err(|e| e.to_string())
    });
    match p {
        Ok(p) => p,
        Err(e) => panic!("promfed could not start: {e}"),
    }
}

/// promfed over both cluster servers (remote read, the default).
fn promfed() -> &'static Promfed {
    static P: OnceLock<Result<Promfed, String>> = OnceLock::new();
    shared_promfed(&P, || {
        let h = harness();
        let b = h.backends();
        let k1 = [("cluster", b[0].0.as_str())];
        let k2 = [("cluster", b[1].0.as_str())];
        config_yaml(&[(&b[0].0, &b[0].1, &k1), (&b[1].0, &b[1].1, &k2)], "")
    })
}

/// The oracle answer for `q`: the union Prometheus 3.8.
async fn oracle(q: &str, t: f64) -> Result<ApiResponse, HarnessError> {
    query(&harness().union.url, q, t).await
}

async fn oracle_range(q: &str, s: f64, e: f64, step: f64) -> Result<ApiResponse, HarnessError> {
    query_range(&harness().union.url, q, s, e, step).await
}

/// promfed over both cluster servers through the query API source.
fn promfed_query_api() -> &'static Promfed {
    static P: OnceLock<Result<Promfed, String>> = OnceLock::new();
    shared_promfed(&P, || {
        let h = harness();
        let b = h.backends();
        let mut cfg = String::from("listen: 127.0.0.1:0\nbackends:\n");
        for (name, url) in &b {
            cfg.push_str(&format!(
                "  - name: {name}\n    url: {url}\n    protocol: query_api\n    external_labels: {{cluster: {name}}}\n"
            ));
        }
        cfg
    })
}

/// Instant-query times across the rollout: every step's middle, and odd
/// times near the counter reset and the ends.
fn times(h: &Harness) -> Vec<f64> {
    let mut ts: Vec<f64> = h.schedule.steps.iter().map(|s| s.mid()).collect();
    ts.extend(h.schedule.steps.iter().map(|s| s.start as f64 + 0.123));
    ts.push(h.schedule.counter_reset.at as f64 + 7.5);
    ts.push(h.schedule.counter_reset.at as f64 + 31.0);
    ts.push(h.schedule.start as f64 + 61.234);
    ts.push(h.schedule.end as f64 - 0.001);
    ts
}

#[tokio::test]
async fn seed_query_instant_matches_the_union_across_the_rollout() -> R {
    let h = harness();
    for p in [promfed(), promfed_query_api()] {
        // The canary gets traffic from step 1 on; a minute later the ratio
        // must have data.
        let canary_from = h.schedule.steps[1].start as f64 + 60.0;
        for t in times(h) {
            let got = query(&p.url, SUCCESS_RATE_QUERY, t).await?;
            let want = query(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
            let has_data = assert_same(&format!("seed query at {t} via {}", p.url), &got, &want);
            assert!(has_data || t < canary_from, "no data at {t}: {}", want.body);
        }
    }
    Ok(())
}

#[tokio::test]
async fn seed_query_range_matches_the_union() -> R {
    let h = harness();
    let (s, e) = (h.schedule.start as f64 + 60.0, h.schedule.end as f64);
    for step in [20.0, 15.0, 7.0] {
        let got = query_range(&promfed().url, SUCCESS_RATE_QUERY, s, e, step).await?;
        let want = query_range(&h.union.url, SUCCESS_RATE_QUERY, s, e, step).await?;
        assert_same(&format!("seed range step {step}"), &got, &want);
    }
    Ok(())
}

#[tokio::test]
async fn by_cluster_aggregations_match_the_union() -> R {
    let h = harness();
    let queries = [
        "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))",
        "sum by (cluster, destination_version) (increase(istio_requests_total{reporter=\"destination\"}[2m]))",
        "count by (cluster) (istio_requests_total)",
        "max by (cluster, response_code) (irate(istio_requests_total[1m]))",
        "sum by (destination_cluster) (rate(istio_requests_total{source_cluster!=\"\"}[5m])) / on() group_left sum(rate(istio_requests_total[5m]))",
        "avg without (instance, pod) (rate(istio_requests_total{reporter=\"source\",response_code=~\"5..\"}[5m]))",
        "sum(rate(istio_requests_total{cluster=\"k8s-2\",reporter=\"source\"}[5m]))",
        "istio_requests_total{cluster=~\"k8s-1\",destination_service=~\"helloworld.*\",reporter=\"source\"} offset 3m",
    ];
    for t in [
        h.schedule.steps[1].mid(),
        h.schedule.steps[2].mid(),
        h.schedule.steps[1].start as f64 + 120.0,
    ] {
        for q in queries {
            let got = query(&promfed().url, q, t).await?;
            let want = oracle(q, t).await?;
            assert!(
                assert_same(&format!("{q} at {t}"), &got, &want),
                "{q}: empty"
            );
        }
    }
    let (s, e) = (
        h.schedule.start as f64 + 300.0,
        h.schedule.start as f64 + 1500.0,
    );
    for q in [queries[0], queries[3]] {
        let got = query_range(&promfed().url, q, s, e, 30.0).await?;
        let want = oracle_range(q, s, e, 30.0).await?;
        assert!(assert_same(&format!("range {q}"), &got, &want));
    }
    Ok(())
}

/// promtool is a client_golang client, as Argo Rollouts' controller is.
#[tokio::test]
async fn promtool_query_instant_gets_the_union_answer() -> R {
    let h = harness();
    let t = h.schedule.steps[3].mid();
    let run = |url: String| {
        let out = std::process::Command::new(common::peers::promtool())
            .args([
                "query",
                "instant",
                &url,
                SUCCESS_RATE_QUERY,
                &format!("--time={t:.3}"),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => panic!(
                "promtool against {url} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("running promtool: {e}"),
        }
    };
    let got = run(promfed().url.clone());
    let want = run(h.union.url.clone());
    // promtool prints `{} => 0.98... @[t]`.
    let value = |s: &str| -> f64 {
        s.split("=>")
            .nth(1)
            .and_then(|r| r.split('@').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected promtool output: {s:?}"))
    };
    assert!(same_value(value(&got), value(&want)), "{got} vs {want}");
    Ok(())
}

async fn expect_error(resp: ApiResponse, code: u16, error_type: &str, part: &str) {
    assert_eq!(resp.status, code, "{}", resp.body);
    assert_eq!(resp.body["status"], "error", "{}", resp.body);
    assert_eq!(resp.body["errorType"], error_type, "{}", resp.body);
    let msg = resp.body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(part), "{msg:?} lacks {part:?}");
}

#[tokio::test]
async fn errors_have_prometheus_types_and_codes() -> R {
    let url = &promfed().url;
    let r = post_form(url, "/api/v1/query", &[("query", "sum(rate(x[5m])".into())]).await?;
    expect_error(r, 400, "bad_data", "invalid parameter \"query\"").await;
    let r = post_form(
        url,
        "/api/v1/query",
        &[("query", "up".into()), ("time", "soon".into())],
    )
    .await?;
    expect_error(r, 400, "bad_data", "invalid parameter \"time\"").await;
    let r = query_range(url, "up", 100.0, 200.0, 0.0).await?;
    expect_error(r, 400, "bad_data", "zero or negative query resolution step").await;
    let r = query_range(url, "up", 0.0, 1_000_000.0, 1.0).await?;
    expect_error(
        r,
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points",
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn a_backend_down_fails_the_query_naming_it() -> R {
    let h = harness();
    let b = h.backends();
    // A free port where nothing listens.
    let dead = format!("http://127.0.0.1:{}", common::process::free_port()?);
    let k1 = [("cluster", b[0].0.as_str())];
    let k2 = [("cluster", "k8s-2")];
    let cfg = config_yaml(&[(&b[0].0, &b[0].1, &k1), ("k8s-2", &dead, &k2)], "");
    let p = Promfed::start(&cfg)?;
    let t = h.schedule.steps[2].mid();
    let r = query(&p.url, SUCCESS_RATE_QUERY, t).await?;
    expect_error(r, 422, "execution", "k8s-2").await;
    // A query routed away from the dead backend still answers.
    let q = "sum(rate(istio_requests_total{cluster=\"k8s-1\"}[5m]))";
    let got = query(&p.url, q, t).await?;
    let want = query(&h.union.url, q, t).await?;
    assert_same("routed around the dead backend", &got, &want);
    // Ready all the same: one cluster down must not take the hub out.
    assert_eq!(get_text(&p.url, "/-/ready").await?.0, 200);
    // Thanos' partial_response=true answers from the others with a warning.
    let r = post_form(
        &p.url,
        "/api/v1/query",
        &[
            ("query", "count(istio_requests_total)".into()),
            ("time", format!("{t:.3}")),
            ("partial_response", "true".into()),
        ],
    )
    .await?;
    assert!(r.is_success(), "{}", r.body);
    let w = r.body["warnings"][0].as_str().unwrap_or_default();
    assert!(w.contains("k8s-2"), "warning {w:?} should name k8s-2");
    let only_k1 = query(
        &h.union.url,
        "count(istio_requests_total{cluster=\"k8s-1\"})",
        t,
    )
    .await?;
    assert_eq!(r.first_value(), only_k1.first_value());
    Ok(())
}

#[tokio::test]
async fn malformed_requests_never_break_the_server() -> R {
    let url = &promfed().url;
    let bad = [
        "query=",
        "query=%ff%fe",
        "query=sum(",
        "query=up&time=1e400",
        "query=up&time=-1e400",
        "query=up&time=NaN",
        "query=up[5m]&time=abc",
        "query=rate(up)",
        "query=label_replace(up,\"a\",\"$1\",\"b\",\"(\")",
        "query={__name__=~\".*\"}",
        "query=up&lookback_delta=-1",
        "query=up&timeout=abc",
        "query=1/0",
        "query=histogram_quantile(\"a\", up)",
        "query=up{a=~\"(\"}",
        "query=((((((((((((((((((((up))))))))))))))))))))",
        "query=up@-1e300",
        "query=up offset 1000000000y",
    ];
    for body in bad {
        let r = reqwest::Client::new()
            .post(format!("{url}/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| HarnessError::Query {
                what: body.into(),
                message: e.to_string(),
            })?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        assert!(
            [200, 400, 422].contains(&status),
            "{body}: HTTP {status}: {text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{body}: not JSON ({e}): {text}"));
        assert!(
            v["status"] == "success" || v["errorType"].is_string(),
            "{body}: {text}"
        );
    }
    for path in [
        "/api/v1/query_range?query=up&start=1&end=0&step=1",
        "/api/v1/query_range?query=up&start=&end=&step=",
        "/api/v1/label/%ff/values",
        "/api/v1/series?match[]=%7B",
    ] {
        let (status, text) = get_text(url, path).await?;
        assert!(status < 500, "{path}: HTTP {status}: {text}");
    }
    let t = harness().schedule.steps[1].mid();
    let r = query(url, "1+1", t).await?;
    assert_eq!(
        r.first_value(),
        Some(2.0),
        "server still answers: {}",
        r.body
    );
    Ok(())
}

/// Cluster k8s-2 as an HA pair: replica a holds everything, replica b lacks
/// a 10-minute stretch. Deduplicated, promfed must answer as the union does.
#[tokio::test]
async fn ha_pair_answers_like_one_copy() -> R {
    let h = harness();
    let k2 = h
        .sim
        .clusters
        .iter()
        .position(|c| c.name == "k8s-2")
        .expect("harness has k8s-2");
    let full = render_cluster(&h.sim, k2, None)?;
    let hole = (h.schedule.start + 1200) * 1000..(h.schedule.start + 1800) * 1000;
    let holed = render_cluster(&h.sim, k2, Some(hole.clone()))?;
    let a = start_from_openmetrics("k8s-2-a", &full, &[("cluster", "k8s-2"), ("replica", "a")])?;
    let b = start_from_openmetrics("k8s-2-b", &holed, &[("cluster", "k8s-2"), ("replica", "b")])?;
    let k1 = h.cluster("k8s-1").expect("harness has k8s-1");
    let cfg = format!(
        "listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n  - name: k8s-1\n    url: {}\n    external_labels: {{cluster: k8s-1}}\n  - name: k8s-2-b\n    url: {}\n    external_labels: {{cluster: k8s-2, replica: b}}\n  - name: k8s-2-a\n    url: {}\n    external_labels: {{cluster: k8s-2, replica: a}}\n",
        k1.url, b.url, a.url
    );
    let p = Promfed::start(&cfg)?;
    let s0 = h.schedule.start as f64;
    let mut ts: Vec<f64> = (0..12).map(|i| s0 + 1100.0 + i as f64 * 73.3).collect();
    ts.extend(times(h));
    for q in [
        SUCCESS_RATE_QUERY,
        "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))",
        "count by (cluster) (istio_requests_total)",
    ] {
        for &t in &ts {
            let got = query(&p.url, q, t).await?;
            let want = oracle(q, t).await?;
            assert_same(&format!("HA {q} at {t}"), &got, &want);
        }
    }
    let got = query_range(&p.url, SUCCESS_RATE_QUERY, s0 + 900.0, s0 + 2100.0, 10.0).await?;
    let want = query_range(
        &h.union.url,
        SUCCESS_RATE_QUERY,
        s0 + 900.0,
        s0 + 2100.0,
        10.0,
    )
    .await?;
    assert_same("HA range across the hole", &got, &want);
    // Without dedup both replicas show up, told apart by `replica`.
    let r = post_form(
        &p.url,
        "/api/v1/query",
        &[
            (
                "query",
                "count by (replica) (istio_requests_total{cluster=\"k8s-2\"})".into(),
            ),
            ("time", format!("{:.3}", s0 + 600.0)),
            ("dedup", "false".into()),
        ],
    )
    .await?;
    assert_eq!(r.vector().len(), 2, "{}", r.body);
    Ok(())
}

#[tokio::test]
async fn read_api_matches_the_union() -> R {
    let h = harness();
    let p = promfed();
    let (s, e) = (h.schedule.start, h.schedule.end);
    let range = format!("&start={s}&end={e}");
    for path in [
        format!("/api/v1/series?match[]=istio_requests_total%7Bdestination_service_name%3D%22helloworld-canary%22%7D{range}"),
        format!("/api/v1/labels?match[]=istio_requests_total{range}"),
        format!("/api/v1/label/cluster/values?{range}"),
        format!("/api/v1/label/destination_version/values?match[]=istio_requests_total{range}"),
        format!("/api/v1/label/__name__/values?{range}"),
    ] {
        let (gs, got) = get_text(&p.url, &path).await?;
        let (ws, want) = get_text(&h.union.url, &path).await?;
        assert_eq!((gs, ws), (200, 200), "{path}: {got} / {want}");
        let mut g: serde_json::Value = serde_json::from_str(&got).expect("promfed JSON");
        let mut w: serde_json::Value = serde_json::from_str(&want).expect("union JSON");
        for v in [&mut g, &mut w] {
            if let Some(a) = v["data"].as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
        assert_eq!(g["data"], w["data"], "{path}");
        assert!(!w["data"].as_array().is_none_or(Vec::is_empty), "{path}: union answered nothing");
    }
    Ok(())
}

/// A backend that accepts TCP and never answers cannot hold a query past
/// its deadline.
#[tokio::test]
async fn a_hanging_backend_is_cut_at_its_deadline() -> R {
    let h = harness();
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| HarnessError::Io {
            what: "binding the hanging listener".into(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| HarnessError::Io {
        what: "reading its address".into(),
        source,
    })?;
    // Accept connections and hold them open, silent, for at most 60 s.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let t0 = std::time::Instant::now();
        let _ = listener.set_nonblocking(true);
        while t0.elapsed() < std::time::Duration::from_secs(60) {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let k1 = h.cluster("k8s-1").expect("k8s-1");
    for protocol in ["remote_read", "query_api"] {
        let cfg = format!(
            "listen: 127.0.0.1:0\nbackends:\n  - name: k8s-1\n    url: {}\n    external_labels: {{cluster: k8s-1}}\n  - name: k8s-2\n    url: http://{addr}\n    protocol: {protocol}\n    timeout: 2s\n    external_labels: {{cluster: k8s-2}}\n",
            k1.url
        );
        let p = Promfed::start(&cfg)?;
        let t0 = std::time::Instant::now();
        let r = query(&p.url, SUCCESS_RATE_QUERY, h.schedule.steps[2].mid()).await?;
        let took = t0.elapsed();
        expect_error(r, 422, "execution", "k8s-2").await;
        assert!(
            took < std::time::Duration::from_secs(5),
            "{protocol}: the 2 s deadline held the query {took:?}"
        );
        let r = post_form(
            &p.url,
            "/api/v1/query",
            &[
                ("query", "count(up or istio_requests_total)".into()),
                ("time", format!("{:.3}", h.schedule.steps[2].mid())),
                ("partial_response", "1".into()),
            ],
        )
        .await?;
        assert!(r.is_success(), "{}", r.body);
        assert!(
            r.body["warnings"].to_string().contains("timed out"),
            "{}",
            r.body
        );
    }
    Ok(())
}

/// Grafana's calls (CONTRACTS.md §4): save & test, label browser,
/// variables, metadata, rules, exemplar probe with millisecond times.
#[tokio::test]
async fn grafana_call_sequence_succeeds() -> R {
    let h = harness();
    let url = &promfed().url;
    let r = post_form(
        url,
        "/api/v1/query",
        &[("query", "1+1".into()), ("time", "4".into())],
    )
    .await?;
    assert!(r.is_success(), "save & test: {}", r.body);
    assert_eq!(r.result_type(), Some("scalar"));
    assert_eq!(r.first_value(), Some(2.0));
    let (s, e) = (h.schedule.start, h.schedule.end);
    let (sm, em) = (s * 1000, e * 1000);
    for path in [
        "/api/v1/status/buildinfo".to_string(),
        format!("/api/v1/label/__name__/values?start={s}&end={e}&limit=40000"),
        format!("/api/v1/labels?start={s}&end={e}"),
        format!("/api/v1/label/destination_service/values?match[]=istio_requests_total&start={s}&end={e}"),
        format!("/api/v1/series?match[]=%7B__name__%3D%22istio_requests_total%22%2Creporter%3D%22source%22%7D&start={s}&end={e}&limit=100"),
        "/api/v1/metadata".to_string(),
        "/api/v1/rules".to_string(),
        format!("/api/v1/query_exemplars?query=test&start={sm}&end={em}"),
        format!("/api/v1/query_range?query=sum(rate(istio_requests_total%5B5m%5D))&start={}&end={}&step=60", s + 600, e),
    ] {
        let (status, text) = get_text(url, &path).await?;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!((status, v["status"].as_str()), (200, Some("success")), "{path}: {text}");
    }
    Ok(())
}

/// promtool's series and label-values queries (client_golang, GET).
#[tokio::test]
async fn promtool_series_and_labels() -> R {
    let h = harness();
    let run = |args: &[&str]| -> String {
        match std::process::Command::new(common::peers::promtool())
            .args(args)
            .output()
        {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => panic!("promtool {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("running promtool: {e}"),
        }
    };
    let (s, e) = (h.schedule.start.to_string(), h.schedule.end.to_string());
    let sorted = |t: String| {
        let mut l: Vec<String> = t.lines().map(str::to_string).collect();
        l.sort();
        l
    };
    let sel = "--match=istio_requests_total{destination_service_name=\"helloworld-canary\",reporter=\"source\"}";
    let got = sorted(run(&[
        "query",
        "series",
        &promfed().url,
        sel,
        "--start",
        &s,
        "--end",
        &e,
    ]));
    let want = sorted(run(&[
        "query",
        "series",
        &h.union.url,
        sel,
        "--start",
        &s,
        "--end",
        &e,
    ]));
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let got = run(&[
        "query",
        "labels",
        &promfed().url,
        "cluster",
        "--start",
        &s,
        "--end",
        &e,
    ]);
    let want = run(&[
        "query",
        "labels",
        &h.union.url,
        "cluster",
        "--start",
        &s,
        "--end",
        &e,
    ]);
    assert_eq!(got, want);
    assert!(want.contains("k8s-1") && want.contains("k8s-2"), "{want}");
    Ok(())
}

/// `/api/v1/stores` and `/metrics` show backend health from the probes.
#[tokio::test]
async fn stores_and_metrics_show_backend_health() -> R {
    let h = harness();
    let dead = format!("http://127.0.0.1:{}", common::process::free_port()?);
    let k1 = h.cluster("k8s-1").expect("k8s-1");
    let cfg = config_yaml(
        &[
            ("k8s-1", &k1.url, &[("cluster", "k8s-1")]),
            ("k8s-2", &dead, &[("cluster", "k8s-2")]),
        ],
        "",
    );
    let p = Promfed::start(&cfg)?;
    // The first probe runs at start; give it a moment.
    let mut stores = serde_json::Value::Null;
    for _ in 0..50 {
        let (_, text) = get_text(&p.url, "/api/v1/stores").await?;
        stores = serde_json::from_str(&text).unwrap_or_default();
        if stores["data"]["sidecar"][1]["lastCheck"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let list = &stores["data"]["sidecar"];
    assert_eq!(list[0]["name"], "k8s-1", "{stores}");
    assert!(list[0]["lastError"].is_null(), "{stores}");
    assert_eq!(list[0]["labelSets"][0]["cluster"], "k8s-1");
    assert!(list[1]["lastError"].is_string(), "{stores}");
    assert!(
        !list[1]["lastError"].to_string().contains(&dead),
        "URL leaked: {stores}"
    );
    let (_, metrics) = get_text(&p.url, "/metrics").await?;
    assert!(
        metrics.contains("promfed_backend_up{backend=\"k8s-1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("promfed_backend_up{backend=\"k8s-2\"} 0"),
        "{metrics}"
    );
    assert_eq!(get_text(&p.url, "/-/ready").await?.0, 200);
    Ok(())
}
