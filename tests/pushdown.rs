//! Exact pushdown (`pushdown: true`): promfed sends per-series range
//! functions to each cluster Prometheus's query API and still answers the
//! project's differential set exactly as the union Prometheus 3.8 does;
//! `X-Promfed-Plan` says what was pushed, and an HA pair is read raw.
//!
//! Real servers: the shared harness's Prometheus 3.8 per cluster and its
//! union, promfed as its own process.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::compare::assert_same;
use common::differential;
use common::{
    harness, query, query_range, render_cluster, start_from_openmetrics, ApiResponse, HarnessError,
    Promfed,
};
use istio_sim::SUCCESS_RATE_QUERY;

type R = Result<(), HarnessError>;

/// A config over `backends` (name, url, external labels as YAML flow
/// map), each taking pushdown, with `pushdown: true` when `on`.
fn config(backends: &[(String, String, String)], on: bool, extra: &str) -> String {
    let mut y = format!("listen: 127.0.0.1:0\npushdown: {on}\n{extra}backends:\n");
    for (name, url, labels) in backends {
        y.push_str(&format!(
            "  - name: {name}\n    url: {url}\n    timeout: 10s\n    pushdown: true\n    external_labels: {labels}\n"
        ));
    }
    y
}

/// promfed over both cluster servers with pushdown on (kept for the binary).
fn pushing() -> &'static Promfed {
    static P: OnceLock<Result<Promfed, String>> = OnceLock::new();
    let p = P.get_or_init(|| {
        let b: Vec<(String, String, String)> = harness()
            .backends()
            .into_iter()
            .map(|(n, u)| {
                let l = format!("{{cluster: {n}}}");
                (n, u, l)
            })
            .collect();
        Promfed::start(&config(&b, true, ""))
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

/// An instant query's answer and its `X-Promfed-Plan` header.
async fn query_with_plan(
    base: &str,
    q: &str,
    t: f64,
) -> Result<(ApiResponse, String), HarnessError> {
    let err = |message: String| HarnessError::Query {
        what: format!("POST {base}/api/v1/query {q}"),
        message,
    };
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| err(e.to_string()))?
        .post(format!("{base}/api/v1/query"))
        .form(&[("query", q.to_string()), ("time", format!("{t:.3}"))])
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let plan = resp
        .headers()
        .get("x-promfed-plan")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    let body = serde_json::from_str(&text).map_err(|e| err(format!("{e}: {text}")))?;
    Ok((ApiResponse { status, body }, plan))
}

/// The differential set, pushdown on: every instant query at four times
/// and every range query equal to the union; the queries whose
/// per-series functions may be pushed are pushed.
#[tokio::test]
async fn differential_set_with_pushdown_matches_the_union() -> R {
    let h = harness();
    let times = [
        h.schedule.steps[1].mid(),
        h.schedule.steps[2].mid(),
        h.schedule.steps[1].start as f64 + 120.0,
        h.schedule.counter_reset.at as f64 + 31.0,
    ];
    let mut pushed = 0;
    for q in differential::queries() {
        let mut non_empty = 0;
        for t in times {
            let (got, plan) = query_with_plan(&pushing().url, q, t).await?;
            let want = query(&h.union.url, q, t).await?;
            if assert_same(&format!("{q} at {t} (plan: {plan})"), &got, &want) {
                non_empty += 1;
            }
            assert!(!plan.contains("raw "), "{q}: not pushed: {plan}");
            if plan.contains("pushed ") {
                pushed += 1;
            }
        }
        assert!(non_empty > 0, "{q}: the union answers nothing at any time");
    }
    // Every query of the set with `rate`/`irate`/`increase`/`changes`/
    // `resets` of one metric outside a subquery: 20 of the 31.
    assert_eq!(pushed, 20 * times.len(), "queries pushed down");
    let end = h.schedule.start as f64 + 1500.0;
    for (q, range, step) in differential::range_queries() {
        let s = end - range;
        let got = query_range(&pushing().url, q, s, end, step).await?;
        let want = query_range(&h.union.url, q, s, end, step).await?;
        assert!(
            assert_same(&format!("range {q}"), &got, &want),
            "range {q}: empty"
        );
    }
    Ok(())
}

/// What the plan header says: the seed query's two irates go to both
/// clusters; a selector on one cluster goes to that one only; with
/// pushdown off nothing is pushed.
#[tokio::test]
async fn plan_header_names_what_was_pushed() -> R {
    let h = harness();
    let t = h.schedule.steps[2].mid();
    let (_, plan) = query_with_plan(&pushing().url, SUCCESS_RATE_QUERY, t).await?;
    assert_eq!(
        plan,
        "pushed irate(istio_requests_total) to k8s-1,k8s-2; pushed irate(istio_requests_total) to k8s-1,k8s-2"
    );
    let q = "sum(rate(istio_requests_total{cluster=\"k8s-2\",reporter=\"source\"}[5m]))";
    let (_, plan) = query_with_plan(&pushing().url, q, t).await?;
    assert_eq!(plan, "pushed rate(istio_requests_total) to k8s-2");
    let b: Vec<(String, String, String)> = h
        .backends()
        .into_iter()
        .map(|(n, u)| {
            let l = format!("{{cluster: {n}}}");
            (n, u, l)
        })
        .collect();
    let off = Promfed::start(&config(&b, false, ""))?;
    let (got, plan) = query_with_plan(&off.url, SUCCESS_RATE_QUERY, t).await?;
    assert_eq!(plan, "", "pushdown off");
    let want = query(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
    assert_same("pushdown off", &got, &want);
    Ok(())
}

/// An HA pair (k8s-2 as replicas a and b, b with a 10-minute hole): a node
/// reaching the pair is read raw and deduplicated, equal to the union;
/// one reaching only k8s-1 is still pushed.
#[tokio::test]
async fn ha_pair_is_read_raw() -> R {
    let h = harness();
    let k2 = h
        .sim
        .clusters
        .iter()
        .position(|c| c.name == "k8s-2")
        .expect("harness has k8s-2");
    let full = render_cluster(&h.sim, k2, None)?;
    let hole = (h.schedule.start + 1200) * 1000..(h.schedule.start + 1800) * 1000;
    let holed = render_cluster(&h.sim, k2, Some(hole))?;
    let a = start_from_openmetrics("k8s-2-a", &full, &[("cluster", "k8s-2"), ("replica", "a")])?;
    let b = start_from_openmetrics("k8s-2-b", &holed, &[("cluster", "k8s-2"), ("replica", "b")])?;
    let k1 = h.cluster("k8s-1").expect("harness has k8s-1");
    let backends = vec![
        (
            "k8s-1".to_string(),
            k1.url.clone(),
            "{cluster: k8s-1}".to_string(),
        ),
        (
            "k8s-2-b".to_string(),
            b.url.clone(),
            "{cluster: k8s-2, replica: b}".to_string(),
        ),
        (
            "k8s-2-a".to_string(),
            a.url.clone(),
            "{cluster: k8s-2, replica: a}".to_string(),
        ),
    ];
    let p = Promfed::start(&config(&backends, true, "replica_labels: [replica]\n"))?;
    let s0 = h.schedule.start as f64;
    let q = "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[5m]))";
    for t in [s0 + 1300.0, s0 + 1500.0, h.schedule.steps[1].mid()] {
        let (got, plan) = query_with_plan(&p.url, q, t).await?;
        let want = query(&h.union.url, q, t).await?;
        assert_same(&format!("HA {q} at {t}"), &got, &want);
        assert_eq!(
            plan,
            "raw rate(istio_requests_total): backend k8s-2-b is an HA replica"
        );
        let q1 = "sum(rate(istio_requests_total{cluster=\"k8s-1\"}[5m]))";
        let (got, plan) = query_with_plan(&p.url, q1, t).await?;
        let want = query(&h.union.url, q1, t).await?;
        assert_same(&format!("k8s-1 only at {t}"), &got, &want);
        assert_eq!(plan, "pushed rate(istio_requests_total) to k8s-1");
    }
    Ok(())
}
