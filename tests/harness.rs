//! Proves the test harness: real Prometheus servers per cluster and one
//! union Prometheus, loaded with the simulated canary traffic, agree with
//! each other and with the simulation.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::process::Command;

use common::{harness, query, query_range, shared, ApiResponse, Harness, HarnessError};
use istio_sim::{Canary, SUCCESS_RATE_QUERY, SUCCESS_THRESHOLD};
use promfed::model::METRIC_NAME;

type R = Result<(), HarnessError>;

fn pid_alive(pid: u32) -> bool {
    Command::new("sh")
        .args(["-c", "kill -0 \"$1\" 2>/dev/null", "sh"])
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Times across the run: the middle of every step and a few odd ones.
fn times(h: &Harness) -> Vec<f64> {
    let mut ts: Vec<f64> = h.schedule.steps.iter().map(|s| s.mid()).collect();
    ts.push(h.schedule.start as f64 + 61.234);
    ts.push(h.schedule.counter_reset.at as f64 + 7.5);
    ts.push(h.schedule.end as f64 - 0.001);
    ts
}

async fn single(base: &str, expr: &str, t: f64) -> Result<f64, HarnessError> {
    let r = query(base, expr, t).await?;
    assert!(r.is_success(), "{expr} at {t} on {base}: {:?}", r.body);
    r.first_value().ok_or_else(|| HarnessError::Query {
        what: expr.to_string(),
        message: format!("no value at {t}: {}", r.body),
    })
}

#[tokio::test]
async fn every_server_is_ready_and_holds_the_run() -> R {
    let h = harness();
    assert_eq!(h.clusters.len(), h.schedule.clusters.len());
    let mid = h.schedule.steps[3].mid();
    for s in h.all() {
        assert!(s.is_ready(), "{} at {} is not ready", s.name, s.url);
        let n = single(&s.url, "count(istio_requests_total)", mid).await?;
        assert!(n > 10.0, "{}: only {n} istio_requests_total series", s.name);
    }
    Ok(())
}

#[tokio::test]
async fn cluster_servers_carry_their_external_label() -> R {
    let h = harness();
    for s in &h.clusters {
        let (status, body) = common::client::get_text(&s.url, "/api/v1/status/config").await?;
        assert_eq!(status, 200);
        assert!(
            body.contains(&format!("cluster: {}", s.name)),
            "{} config lacks its external label: {body}",
            s.name
        );
    }
    let (_, body) = common::client::get_text(&h.union.url, "/api/v1/status/config").await?;
    assert!(
        !body.contains("external_labels"),
        "union has external labels: {body}"
    );
    Ok(())
}

#[tokio::test]
async fn union_count_is_the_sum_over_clusters() -> R {
    let h = harness();
    for expr in [
        "count(istio_requests_total)",
        "count({__name__=~\".+\"})",
        "count(istio_request_duration_milliseconds_bucket)",
    ] {
        for t in times(h) {
            let union = single(&h.union.url, expr, t).await?;
            let mut sum = 0.0;
            for s in &h.clusters {
                sum += single(&s.url, expr, t).await?;
            }
            assert_eq!(union, sum, "{expr} at {t}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn union_by_cluster_matches_each_cluster() -> R {
    let h = harness();
    let inner = "istio_requests_total{reporter=\"source\"}";
    for t in times(h) {
        for (by, own) in [
            (
                format!("sum by (cluster) (rate({inner}[1m]))"),
                format!("sum(rate({inner}[1m]))"),
            ),
            (
                format!("sum by (cluster) ({inner})"),
                format!("sum({inner})"),
            ),
            (
                "count by (cluster) (up)".to_string(),
                "count(up)".to_string(),
            ),
        ] {
            let r = query(&h.union.url, &by, t).await?;
            assert!(r.is_success(), "{:?}", r.body);
            let union: BTreeMap<String, f64> = r
                .vector()
                .into_iter()
                .map(|(l, v)| (l.get("cluster").cloned().unwrap_or_default(), v))
                .collect();
            assert_eq!(union.len(), h.clusters.len(), "{by} at {t}: {union:?}");
            for s in &h.clusters {
                let mine = single(&s.url, &own, t).await?;
                let theirs = union.get(&s.name).copied().unwrap_or(f64::NAN);
                // Exact: each cluster's series are the union's series of
                // that cluster, summed in the same (label-set) order.
                assert!(
                    mine.to_bits() == theirs.to_bits(),
                    "{by} at {t}: {} has {mine}, union says {theirs}",
                    s.name
                );
            }
        }
    }
    Ok(())
}

/// How far the success rate may stray from the configured one at a step:
/// five binomial standard deviations of the requests irate sees (one
/// 15 s scrape interval of canary traffic in every cluster).
fn tolerance(h: &Harness, weight: u32) -> f64 {
    let s = &h.schedule;
    let p = s.v2_error_rate;
    let n: f64 = s.ingress_rps.iter().sum::<f64>() * f64::from(weight) / 100.0
        * s.scrape_interval_seconds as f64
        * 0.9; // rates swing ±10 %
    5.0 * (p * (1.0 - p) / n).sqrt() + 0.002
}

async fn check_success_rate(h: &Harness) -> R {
    let s = &h.schedule;
    let want = s.expected_canary_success_rate;
    assert!((want - (1.0 - s.v2_error_rate)).abs() < 1e-12);
    let mut checked = 0;
    for step in s.steps.iter().filter(|st| st.weight > 0) {
        for t in [step.mid(), step.mid() + 12.345] {
            let got = single(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
            let tol = tolerance(h, step.weight);
            assert!(
                (got - want).abs() < tol,
                "{} canary, step {} ({}%) at {t}: success rate {got}, configured {want} ± {tol}",
                s.canary,
                step.index,
                step.weight
            );
            match s.canary {
                Canary::Good => {
                    assert!(got > SUCCESS_THRESHOLD, "good canary at {t}: {got}");
                    if step.weight >= 40 {
                        assert!(got > 0.95, "good canary mid-rollout at {t}: {got}");
                    }
                }
                Canary::Bad => assert!(got < SUCCESS_THRESHOLD, "bad canary at {t}: {got}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 4);
    // Before the rollout the canary has no traffic: no ratio at all.
    let r = query(&h.union.url, SUCCESS_RATE_QUERY, s.steps[0].mid()).await?;
    assert!(r.is_success());
    assert!(
        r.vector().is_empty() || r.first_value().is_some_and(f64::is_nan),
        "step 0 (0%) should have no canary traffic: {:?}",
        r.body
    );
    Ok(())
}

#[tokio::test]
async fn good_canary_success_rate_passes_the_analysis() -> R {
    let h = harness();
    assert_eq!(h.schedule.canary, Canary::Good);
    // The configured rates themselves put the good canary above 0.95 from
    // the 40 % step on, and above the threshold at 20 %.
    assert!(h.schedule.expected_canary_success_rate - tolerance(h, 40) > 0.95);
    assert!(h.schedule.expected_canary_success_rate - tolerance(h, 20) > SUCCESS_THRESHOLD);
    check_success_rate(h).await
}

#[tokio::test]
async fn bad_canary_success_rate_fails_the_analysis() -> R {
    let h = shared(Canary::Bad);
    assert_eq!(h.schedule.canary, Canary::Bad);
    assert!(h.schedule.expected_canary_success_rate + tolerance(h, 20) < SUCCESS_THRESHOLD);
    check_success_rate(h).await
}

#[tokio::test]
async fn success_rate_as_a_range_query_spans_the_rollout() -> R {
    let h = harness();
    let s = &h.schedule;
    let r = query_range(
        &h.union.url,
        SUCCESS_RATE_QUERY,
        s.start as f64,
        s.end as f64,
        20.0,
    )
    .await?;
    assert!(r.is_success(), "{:?}", r.body);
    let m = r.matrix();
    assert_eq!(m.len(), 1);
    let points = &m[0].1;
    // The canary gets traffic from the second step on.
    let first = points.first().map(|p| p.0).unwrap_or(f64::NAN);
    assert!(
        first >= s.steps[1].start as f64 && first < s.steps[1].start as f64 + 60.0,
        "first point at {first}"
    );
    assert!(points.len() > 100);
    Ok(())
}

#[tokio::test]
async fn raw_samples_are_exactly_the_simulated_ones() -> R {
    let h = harness();
    let t = h.schedule.steps[2].mid();
    let window_ms = 300_000;
    let t_ms = (t * 1000.0).round() as i64;
    for (ci, cluster) in h.clusters.iter().enumerate() {
        let want = h
            .sim
            .series(ci, false)
            .into_iter()
            .find(|s| {
                s.labels.metric_name() == Some("istio_requests_total")
                    && s.labels.get("reporter") == Some("source")
                    && s.labels.get("destination_version") == Some("v2")
                    && s.labels.get("response_code") == Some("200")
            })
            .expect("the simulation has canary series");
        let matchers: Vec<String> = want
            .labels
            .iter()
            .filter(|l| l.name != METRIC_NAME)
            .map(|l| format!("{}={:?}", l.name, l.value))
            .collect();
        let sel = format!("istio_requests_total{{{}}}[5m]", matchers.join(","));
        let expected: Vec<(i64, f64)> = want
            .samples
            .iter()
            .filter(|x| x.t > t_ms - window_ms && x.t <= t_ms)
            .map(|x| (x.t, x.v))
            .collect();
        // 20 scrapes in 5 m, fewer across the restart's missed scrapes.
        assert!(expected.len() >= 17, "{expected:?}");
        let union_sel = sel.replacen('{', &format!("{{cluster={:?},", cluster.name), 1);
        for (base, sel) in [(&cluster.url, &sel), (&h.union.url, &union_sel)] {
            let r: ApiResponse = query(base, sel, t).await?;
            assert!(r.is_success(), "{:?}", r.body);
            let m = r.matrix();
            assert_eq!(m.len(), 1, "{sel}: {:?}", r.body);
            let got: Vec<(i64, f64)> = m[0]
                .1
                .iter()
                .map(|(ts, v)| ((ts * 1000.0).round() as i64, *v))
                .collect();
            assert_eq!(got, expected, "{sel} on {base}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_counter_reset_is_in_the_data() -> R {
    let h = harness();
    let reset = &h.schedule.counter_reset;
    let server = h
        .cluster(&reset.cluster)
        .expect("reset cluster has a server");
    let expr = format!(
        "sum(resets(istio_requests_total{{pod={:?},destination_version=\"v2\"}}[5m]))",
        reset.pod
    );
    let after = single(&server.url, &expr, reset.at as f64 + 120.0).await?;
    assert!(after >= 1.0, "no reset seen after {}: {after}", reset.at);
    let before = single(&server.url, &expr, reset.at as f64 - 1.0).await;
    // Before the restart there is no reset (or no canary series yet).
    if let Ok(v) = before {
        assert_eq!(v, 0.0);
    }
    Ok(())
}

#[tokio::test]
async fn extra_servers_from_openmetrics_text_stop_on_drop() -> R {
    let t0 = 1_723_982_400_i64;
    let mut text = String::from("# TYPE up gauge\n");
    for i in 0..20 {
        text.push_str(&format!(
            "up{{job=\"x\"}} 1 {}.{:03}\n",
            t0 + 15 * i + 1,
            100 + i
        ));
    }
    text.push_str("# EOF\n");
    let a = common::start_from_openmetrics(
        "replica-a",
        &text,
        &[("cluster", "k8s-1"), ("replica", "a")],
    )?;
    let b = common::start_from_openmetrics(
        "replica-b",
        &text,
        &[("cluster", "k8s-1"), ("replica", "b")],
    )?;
    assert_ne!(a.url, b.url);
    for s in [&a, &b] {
        let v = single(&s.url, "sum(up)", t0 as f64 + 200.0).await?;
        assert_eq!(v, 1.0);
    }
    let pids: Vec<u32> = [&a, &b].iter().filter_map(|s| s.pid()).collect();
    let dirs = [a.data_dir.clone(), b.data_dir.clone()];
    assert_eq!(pids.len(), 2);
    drop(a);
    drop(b);
    for p in pids {
        assert!(!pid_alive(p), "prometheus {p} still runs after drop");
    }
    for d in dirs {
        assert!(!d.exists(), "{} not removed", d.display());
    }
    Ok(())
}

#[test]
fn a_missing_tool_names_the_debian_package() {
    let err = common::find_tool(OsStr::new("/nonexistent-dir"), "promtool")
        .expect_err("no promtool there")
        .to_string();
    assert!(err.contains("promtool"), "{err}");
    assert!(err.contains("apt-get install -y prometheus"), "{err}");
}

#[tokio::test]
async fn promtool_reads_the_union_like_the_http_api() -> R {
    let h = harness();
    let t = h.schedule.steps[3].mid() + 0.25;
    let api = single(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
    let (ok, out, err) = common::promtool_query_instant(&h.union.url, SUCCESS_RATE_QUERY, t)?;
    assert!(ok, "promtool failed: {err}");
    let got = common::promtool_value(&out).expect("promtool printed a value");
    // promtool prints the value in full precision.
    assert_eq!(got, api, "promtool said {out}");
    Ok(())
}

#[tokio::test]
async fn promfed_binary_starts_over_the_cluster_servers() -> R {
    let h = harness();
    let yaml = h.promfed_config("");
    for b in &h.clusters {
        assert!(yaml.contains(&format!("url: {}", b.url)), "{yaml}");
        assert!(yaml.contains(&format!("cluster: {}", b.name)), "{yaml}");
    }
    let pf = h.start_promfed("")?;
    let pid = pf.pid().expect("promfed runs");
    let (status, body) = common::client::get_text(&pf.url, "/api/v1/status/buildinfo").await?;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"version\""), "{body}");
    drop(pf);
    assert!(!pid_alive(pid), "promfed {pid} still runs after drop");
    Ok(())
}
