//! Exact pushdown (`pushdown: true`): promfed sends per-series range
//! functions, and aggregations whose groups stay on one cluster or whose
//! partial results combine exactly, to each cluster Prometheus's query API
//! and still answers the project's differential set (and more
//! aggregations) exactly as the union Prometheus 3.8 does, an instant
//! vector's order and annotations included; `X-Promfed-Plan` says what was
//! pushed, and an HA pair is read raw.
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

/// An answer of `path` to `form` and its `X-Promfed-Plan` header.
async fn ask_with_plan(
    base: &str,
    path: &str,
    form: &[(&str, String)],
) -> Result<(ApiResponse, String), HarnessError> {
    let err = |message: String| HarnessError::Query {
        what: format!("POST {base}{path} {form:?}"),
        message,
    };
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| err(e.to_string()))?
        .post(format!("{base}{path}"))
        .form(form)
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

/// An instant query's answer and its `X-Promfed-Plan` header.
async fn query_with_plan(
    base: &str,
    q: &str,
    t: f64,
) -> Result<(ApiResponse, String), HarnessError> {
    let form = [("query", q.to_string()), ("time", format!("{t:.3}"))];
    ask_with_plan(base, "/api/v1/query", &form).await
}

/// A range query's answer and its `X-Promfed-Plan` header.
async fn range_with_plan(
    base: &str,
    q: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<(ApiResponse, String), HarnessError> {
    let form = [
        ("query", q.to_string()),
        ("start", format!("{start:.3}")),
        ("end", format!("{end:.3}")),
        ("step", format!("{step}")),
    ];
    ask_with_plan(base, "/api/v1/query_range", &form).await
}

/// The differential set, pushdown on: every instant query at four times
/// and every range query equal to the union; the queries whose
/// per-series functions or aggregations may be pushed are pushed.
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
    // `resets` of one metric outside a subquery (20 of the 31), and the
    // aggregations of one metric pushed whole or combined: 26.
    assert_eq!(pushed, 26 * times.len(), "queries pushed down");
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
    assert_eq!(plan, "pushed sum(rate(istio_requests_total)) to k8s-2");
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
        assert_eq!(plan, "pushed sum(rate(istio_requests_total)) to k8s-1");
    }
    Ok(())
}

/// Equal to the union as `assert_same` judges, and more: an instant
/// vector's elements in the union's order, the same warnings and infos.
fn assert_exact(what: &str, got: &ApiResponse, want: &ApiResponse) {
    assert_same(what, got, want);
    if want.result_type() == Some("vector") {
        let order = |r: &ApiResponse| r.vector().into_iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(order(got), order(want), "{what}: order of the vector");
    }
    for key in ["warnings", "infos"] {
        let list = |r: &ApiResponse| {
            let mut v: Vec<String> = r.body[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|w| w.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        assert_eq!(list(got), list(want), "{what}: {key}");
    }
}

/// The dashboard's query: `cluster` is the backends' external label.
const DASHBOARD: &str = "sum by (destination_workload, cluster) (rate(istio_requests_total[5m]))";

/// Aggregations pushed whole (grouping keeps `cluster`) or combined
/// (count/group/min/max across clusters), each with the plan it must
/// show: the answer equals the union's exactly (order of an instant
/// vector and annotations included) at four times.
#[tokio::test]
async fn aggregations_pushed_whole_or_combined_match_the_union() -> R {
    let h = harness();
    let times = [
        h.schedule.steps[1].mid(),
        h.schedule.steps[2].mid(),
        h.schedule.steps[1].start as f64 + 120.0,
        h.schedule.counter_reset.at as f64 + 31.0,
    ];
    let at = h.schedule.steps[1].mid().round();
    let both = "to k8s-1,k8s-2";
    let rate = "rate(istio_requests_total)";
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            DASHBOARD.into(),
            vec![format!("pushed sum by (destination_workload, cluster) ({rate}) {both}")],
        ),
        // Groups in first-seen order, which is not the order of their
        // labels here (the union's input is sorted by `destination_*`
        // before `source_workload`).
        (
            "count by (cluster, source_workload) (istio_requests_total)".into(),
            vec![format!("pushed count by (cluster, source_workload) (istio_requests_total) {both}")],
        ),
        (
            "avg without (pod, instance) (rate(istio_requests_total{reporter=\"destination\"}[5m]))".into(),
            vec![format!("pushed avg without (pod, instance) ({rate}) {both}")],
        ),
        (
            "sum by (cluster, response_code) (rate(istio_requests_total[5m] offset 3m))".into(),
            vec![format!("pushed sum by (cluster, response_code) ({rate}) {both}")],
        ),
        (
            format!("max by (cluster, destination_version) (rate(istio_requests_total[2m] @ {at}))"),
            vec![format!("pushed max by (cluster, destination_version) ({rate}) {both}")],
        ),
        (
            "sum by (cluster) (rate(istio_requests_total[5m])) / on (cluster) group_left count by (cluster) (istio_requests_total)".into(),
            vec![
                format!("pushed sum by (cluster) ({rate}) {both}"),
                format!("pushed count by (cluster) (istio_requests_total) {both}"),
            ],
        ),
        (
            "sum(sum by (destination_workload, cluster) (rate(istio_requests_total[5m])))".into(),
            vec![format!("pushed sum by (destination_workload, cluster) ({rate}) {both}")],
        ),
        (
            "topk by (cluster) (3, rate(istio_requests_total[5m]))".into(),
            vec![format!("pushed topk by (cluster) (3, {rate}) {both}")],
        ),
        (
            "bottomk by (cluster, reporter) (2, irate(istio_requests_total[1m]))".into(),
            vec![format!("pushed bottomk by (cluster, reporter) (2, irate(istio_requests_total)) {both}")],
        ),
        // Ties: every value 0 within a cluster.
        (
            "topk by (cluster) (2, istio_requests_total * 0)".into(),
            vec![format!("pushed topk by (cluster) (2, istio_requests_total * 0) {both}")],
        ),
        (
            "quantile by (cluster) (0.25, abs(-2 * rate(istio_requests_total[5m])))".into(),
            vec![format!("pushed quantile by (cluster) (0.25, abs(-2 * {rate})) {both}")],
        ),
        (
            "stdvar by (cluster, destination_workload) (increase(istio_requests_total[10m]))".into(),
            vec![format!("pushed stdvar by (cluster, destination_workload) (increase(istio_requests_total)) {both}")],
        ),
        // Groups across clusters, partial results combined.
        (
            "count by (destination_workload) (istio_requests_total)".into(),
            vec![format!("pushed count by (destination_workload) (istio_requests_total), combined {both}")],
        ),
        (
            "max by (source_workload) (istio_requests_total)".into(),
            vec![format!("pushed max by (source_workload) (istio_requests_total), combined {both}")],
        ),
        (
            "group by (response_code) (rate(istio_requests_total[5m]))".into(),
            vec![format!("pushed group by (response_code) ({rate}), combined {both}")],
        ),
        (
            "min by (destination_workload) (rate(istio_requests_total[5m]))".into(),
            vec![format!("pushed min by (destination_workload) ({rate}), combined {both}")],
        ),
        (
            "max(irate(istio_requests_total[1m]))".into(),
            vec![format!("pushed max(irate(istio_requests_total)), combined {both}")],
        ),
        // Re-ranked across clusters (no ties among the best rates).
        (
            "topk(3, rate(istio_requests_total[5m]))".into(),
            vec![format!("pushed topk(3, {rate}), combined {both}")],
        ),
        (
            "topk by (destination_workload) (1, rate(istio_requests_total{reporter=\"destination\"}[5m]))".into(),
            vec![format!("pushed topk by (destination_workload) (1, {rate}), combined {both}")],
        ),
        (
            "bottomk by (response_code) (2, irate(istio_requests_total{response_code=~\"2..\"}[1m]) + 1)".into(),
            vec![format!("pushed bottomk by (response_code) (2, irate(istio_requests_total) + 1), combined {both}")],
        ),
        // NaN (0/0) where a series' rate is 0, +Inf elsewhere: max is NaN
        // only where every value is NaN.
        (
            "max by (destination_workload) (rate(istio_requests_total[1m]) / 0)".into(),
            vec![format!("pushed max by (destination_workload) ({rate} / 0), combined {both}")],
        ),
        (
            "min by (cluster, response_code) (rate(istio_requests_total{response_code=~\"5..\"}[1m]) / 0)".into(),
            vec![format!("pushed min by (cluster, response_code) ({rate} / 0) {both}")],
        ),
    ];
    for (q, plan_want) in &cases {
        let mut non_empty = false;
        for t in times {
            let (got, plan) = query_with_plan(&pushing().url, q, t).await?;
            let want = query(&h.union.url, q, t).await?;
            let what = format!("{q} at {t} (plan: {plan})");
            assert_exact(&what, &got, &want);
            non_empty |= !want.vector().is_empty();
            if q.contains("source_workload") {
                let labels: Vec<_> = want.vector().into_iter().map(|e| e.0).collect();
                let mut sorted = labels.clone();
                sorted.sort();
                assert_ne!(labels, sorted, "{what}: the union's order is its labels'");
            }
            assert_eq!(plan, plan_want.join("; "), "{q} at {t}");
        }
        assert!(non_empty, "{q}: the union answers nothing");
    }
    Ok(())
}

/// Range queries: an aggregation at the root is pushed whole (the answer
/// is sorted by labels, its order cannot matter); one inside another
/// aggregation is not (the backends' sorted matrices are not the order the
/// outer sum adds in), only its range function.
#[tokio::test]
async fn range_queries_push_aggregations_at_the_root() -> R {
    let h = harness();
    let (s, e) = (h.schedule.start as f64, h.schedule.end as f64);
    let rate = "rate(istio_requests_total)";
    let cases = [
        (
            DASHBOARD.to_string(),
            format!("pushed sum by (destination_workload, cluster) ({rate}) to k8s-1,k8s-2"),
        ),
        (
            "count by (response_code) (istio_requests_total) * 2".to_string(),
            "pushed count by (response_code) (istio_requests_total), combined to k8s-1,k8s-2"
                .to_string(),
        ),
        (
            "sum(sum by (destination_workload, cluster) (rate(istio_requests_total[5m])))"
                .to_string(),
            format!("pushed {rate} to k8s-1,k8s-2"),
        ),
        (
            "topk(3, rate(istio_requests_total[5m]))".to_string(),
            format!("pushed topk(3, {rate}), combined to k8s-1,k8s-2"),
        ),
    ];
    for (q, plan_want) in cases {
        let mut windows = vec![(s, e, 15.0), (s + 600.0, s + 1500.0, 45.0)];
        if q.starts_with("topk") {
            // Over the whole hour the 3rd and 4th best rates tie at one
            // step (16.6 = 16.6 at step 63 of 241): not re-ranked.
            windows.remove(0);
        }
        for (start, end, step) in windows {
            let (got, plan) = range_with_plan(&pushing().url, &q, start, end, step).await?;
            let want = query_range(&h.union.url, &q, start, end, step).await?;
            let what = format!("range {q} {start}..{end} step {step} (plan: {plan})");
            assert_exact(&what, &got, &want);
            assert!(!want.matrix().is_empty(), "{what}: empty");
            assert_eq!(plan, plan_want, "{what}");
        }
    }
    Ok(())
}

/// Where exactness is not certain the aggregation is not pushed whole,
/// and the answer still equals the union: a `sum` whose groups span the
/// clusters (only its rate is pushed), a metric with a label (`app`)
/// sorting before the external label `cluster` (the union orders its
/// series otherwise than a cluster server does), `count_values`, and
/// cross-cluster `topk`/`bottomk` with ties.
#[tokio::test]
async fn aggregations_not_certain_fall_back() -> R {
    let h = harness();
    let t = h.schedule.steps[2].mid();
    let cases = [
        // Pushed whole, the groups would come cluster by cluster; the
        // union's come app by app.
        (
            "sum by (app, cluster) (rate(process_cpu_seconds_total[5m]))",
            "raw sum by (app, cluster) (rate(process_cpu_seconds_total)): backend k8s-1: label app sorts before external label cluster; pushed rate(process_cpu_seconds_total) to k8s-1,k8s-2",
        ),
        (
            "sum by (destination_workload) (rate(istio_requests_total[5m]))",
            "pushed rate(istio_requests_total) to k8s-1,k8s-2",
        ),
        (
            "sum by (cluster) (rate(process_cpu_seconds_total[5m]))",
            "raw sum by (cluster) (rate(process_cpu_seconds_total)): backend k8s-1: label app sorts before external label cluster; pushed rate(process_cpu_seconds_total) to k8s-1,k8s-2",
        ),
        (
            "count by (cluster) (process_cpu_seconds_total)",
            "raw count by (cluster) (process_cpu_seconds_total): backend k8s-1: label app sorts before external label cluster",
        ),
        (
            "count_values by (cluster) (\"v\", istio_requests_total * 0)",
            "",
        ),
        // Ties: every value 0 (the union's heap picks), or many 5xx rates
        // 0 at the bottom: not re-ranked.
        (
            "topk(2, istio_requests_total * 0)",
            "raw topk(2, istio_requests_total * 0), combined: backend k8s-1,k8s-2: not certain (a tie or NaN where topk/bottomk re-rank, a group on two backends or a point off the grid)",
        ),
        (
            "bottomk(3, rate(istio_requests_total{response_code=~\"5..\"}[5m]))",
            "raw bottomk(3, rate(istio_requests_total)), combined: backend k8s-1,k8s-2: not certain (a tie or NaN where topk/bottomk re-rank, a group on two backends or a point off the grid); pushed rate(istio_requests_total) to k8s-1,k8s-2",
        ),
    ];
    for (q, plan_want) in cases {
        let (got, plan) = query_with_plan(&pushing().url, q, t).await?;
        let want = query(&h.union.url, q, t).await?;
        if !q.starts_with("sum") && !q.starts_with("count by") {
            // Under ties the engine's order is its own (not Prometheus's
            // heap order), and count_values' is Go's map order in the
            // union, pushdown or not: the same series and values.
            assert_same(&format!("{q} (plan: {plan})"), &got, &want);
        } else {
            assert_exact(&format!("{q} (plan: {plan})"), &got, &want);
        }
        assert!(!want.vector().is_empty(), "{q}: empty");
        assert_eq!(plan, plan_want, "{q}");
    }
    Ok(())
}
