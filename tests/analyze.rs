//! `promfed analyze` dry-runs the seed's AnalysisTemplate
//! (deploy/analysis-template.yaml) over the harness data through a real
//! promfed: every measurement must have the phase and value that Argo
//! Rollouts' own provider (argo-client) gives at the same time, and the run
//! must end as Argo's controller rules say: Successful for the good canary,
//! Failed for the bad one, Error where the canary has no traffic.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{config_yaml, shared, Harness, Promfed};
use istio_sim::{Canary, SUCCESS_RATE_QUERY};
use serde::Deserialize;

/// The canary's service, the template's `service` argument.
const SERVICE: &str = "helloworld-canary.helloworld.svc.cluster.local";

/// One measurement as `promfed analyze --json` printed it.
#[derive(Debug, Clone, Deserialize)]
struct Measurement {
    at_ms: i64,
    phase: String,
    value: String,
    message: String,
}

#[derive(Debug, Deserialize)]
struct Run {
    phase: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Measurement(Measurement),
    Run(Run),
}

/// Argo's measurement through `address` at `at_ms`.
fn argo(address: &str, at_ms: i64) -> common::argo::Measurement {
    common::argo::measure(address, at_ms as f64 / 1000.0)
}

/// [`argo`] with other conditions.
fn argo_with(address: &str, at_ms: i64, success: &str, failure: &str) -> common::argo::Measurement {
    common::argo::measure_with(address, at_ms as f64 / 1000.0, success, failure)
}

fn template() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/analysis-template.yaml")
}

/// Runs `promfed analyze` over `[from, to]` (Unix seconds) against
/// `address`: its exit code, measurements and run.
fn analyze(address: &str, from: f64, to: f64) -> (i32, Vec<Measurement>, Run) {
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("analyze")
        .arg(template())
        .args(["--arg", &format!("service={SERVICE}")])
        .args(["--address", address, "--json"])
        .args(["--from", &format!("{from:.3}"), "--to", &format!("{to:.3}")])
        .output()
        .unwrap_or_else(|e| panic!("running promfed analyze: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut ms = Vec::new();
    let mut run = None;
    for line in stdout.lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Measurement(m)) => ms.push(m),
            Ok(Line::Run(r)) => run = Some(r),
            Err(e) => panic!("promfed analyze printed {line:?}: {e}"),
        }
    }
    let run = run.unwrap_or_else(|| {
        panic!(
            "no run line; stdout {stdout:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), ms, run)
}

/// promfed without a cache over the good or bad canary's clusters.
fn promfed(canary: Canary) -> &'static Promfed {
    static GOOD: OnceLock<Promfed> = OnceLock::new();
    static BAD: OnceLock<Promfed> = OnceLock::new();
    let cell = match canary {
        Canary::Good => &GOOD,
        Canary::Bad => &BAD,
    };
    cell.get_or_init(|| {
        let h: &Harness = shared(canary);
        let b = h.backends();
        let k1 = [("cluster", b[0].0.as_str())];
        let k2 = [("cluster", b[1].0.as_str())];
        let cfg = config_yaml(&[(&b[0].0, &b[0].1, &k1), (&b[1].0, &b[1].1, &k2)], "");
        let mut p = Promfed::start(&cfg).unwrap_or_else(|e| panic!("promfed: {e}"));
        p.stop_on_exit();
        p
    })
}

/// Each of `ms` has the phase and value Argo's provider gives through the
/// same promfed at the same time.
fn agree_with_argo(address: &str, ms: &[Measurement]) {
    for m in ms {
        let want = argo(address, m.at_ms);
        assert_eq!(
            (m.phase.as_str(), m.value.as_str()),
            (want.phase.as_str(), want.value.as_str()),
            "at {}: analyze {m:?}, Argo {want:?}",
            m.at_ms
        );
        if want.phase == "Error" {
            assert!(!m.message.is_empty(), "an Error without a message: {m:?}");
        }
    }
}

/// The canary steps 2 and 3 (40 % and 60 %), starting off the 20 s grid.
fn window(h: &Harness) -> (f64, f64) {
    let s = &h.schedule.steps;
    assert!(s[2].weight > 0 && s[3].weight > 0);
    (s[2].start as f64 + 7.137, s[3].end as f64 - 1.0)
}

#[test]
fn good_canary_is_successful_and_every_measurement_matches_argo() {
    let h = shared(Canary::Good);
    let pf = promfed(Canary::Good);
    let (from, to) = window(h);
    let (code, ms, run) = analyze(&pf.url, from, to);
    // Every 20 s from `from` through `to`, none failing: the window ends
    // the (indefinite) metric, as the end of the rollout step would.
    let expected = ((to - from) / 20.0).floor() as usize + 1;
    assert_eq!(ms.len(), expected, "{ms:?}");
    for (i, m) in ms.iter().enumerate() {
        let want_ms = (from * 1000.0).round() as i64 + 20_000 * i as i64;
        assert_eq!(m.at_ms, want_ms, "measurement {i}");
    }
    agree_with_argo(&pf.url, &ms);
    assert!(ms.iter().all(|m| m.phase == "Successful"), "{ms:?}");
    assert_eq!((run.phase.as_str(), code), ("Successful", 0), "{run:?}");
}

#[test]
fn bad_canary_fails_after_failure_limit_and_every_measurement_matches_argo() {
    let h = shared(Canary::Bad);
    let pf = promfed(Canary::Bad);
    let (from, to) = window(h);
    let (code, ms, run) = analyze(&pf.url, from, to);
    agree_with_argo(&pf.url, &ms);
    // failureLimit 3: the fourth failed measurement fails the run, and no
    // measurement is taken after it.
    assert_eq!(ms.len(), 4, "{ms:?}");
    assert!(ms.iter().all(|m| m.phase == "Failed"), "{ms:?}");
    assert_eq!((run.phase.as_str(), code), ("Failed", 1), "{run:?}");
    assert!(
        run.message.contains("failed (4) > failureLimit (3)"),
        "{run:?}"
    );
    // The text output says the same (the README shows it).
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("analyze")
        .arg(template())
        .args(["--arg", &format!("service={SERVICE}")])
        .args(["--address", &pf.url])
        .args(["--from", &format!("{from:.3}"), "--to", &format!("{to:.3}")])
        .output()
        .unwrap_or_else(|e| panic!("running promfed analyze: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4 + 3, "{text}");
    for (line, m) in lines.iter().zip(&ms) {
        assert!(
            line.contains("Failed") && line.contains(&m.value),
            "{line} vs {m:?}"
        );
    }
    assert_eq!(lines[5], "phase: Failed", "{text}");
}

#[test]
fn no_canary_traffic_is_an_error_after_five_errors_in_a_row() {
    let h = shared(Canary::Good);
    let pf = promfed(Canary::Good);
    let s0 = &h.schedule.steps[0];
    assert_eq!(s0.weight, 0);
    let from = s0.start as f64 + 100.5;
    let (code, ms, run) = analyze(&pf.url, from, s0.end as f64 - 1.0);
    agree_with_argo(&pf.url, &ms);
    // An empty result is an Error; errors are retried after 10 s, and the
    // fifth in a row (> consecutiveErrorLimit 4) ends the run.
    assert_eq!(ms.len(), 5, "{ms:?}");
    for (i, m) in ms.iter().enumerate() {
        assert_eq!(m.phase, "Error", "{m:?}");
        assert_eq!(m.at_ms, (from * 1000.0) as i64 + 10_000 * i as i64);
    }
    assert_eq!((run.phase.as_str(), code), ("Error", 2), "{run:?}");
}

#[test]
fn a_missing_argument_is_an_error_before_any_query() {
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("analyze")
        .arg(template())
        .args([
            "--address",
            "http://127.0.0.1:1",
            "--from",
            "0",
            "--to",
            "60",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running promfed analyze: {e}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("argument \"service\" was not supplied"),
        "{err}"
    );
}

/// The conditions are evaluated as Argo's `expr` evaluates them: for each
/// pair, one measurement by `promfed analyze` has the phase (and value)
/// Argo's provider gives with the same conditions at the same time, on a
/// real answer (a one-element vector) and on an empty one.
#[test]
fn conditions_evaluate_as_argos_expr_does() {
    let h = shared(Canary::Good);
    let pf = promfed(Canary::Good);
    let with_traffic = h.schedule.steps[3].start as f64 + 300.25;
    let without = h.schedule.steps[0].start as f64 + 300.25;
    let pairs: &[(&str, &str)] = &[
        ("result[0] > 0.90", ""),
        ("result[0] > 0.999", ""),
        ("", "result[0] < 0.5"),
        ("", "result[0] > 0.5"),
        ("result[0] > 0.999", "result[0] < 0.5"),
        ("result[0] > 0.5", "result[0] > 0.9"),
        ("len(result) == 1 && result[-1] >= 0.9", ""),
        ("all(result, {# > 0.9}) and not any(result, {isNaN(#)})", ""),
        ("result[0] * 100 > 90 || result[1] > 0", ""),
        ("asInt(result[0] * 10) == 9 ? true : false", ""),
        ("isNil(result) || default(result, [0])[0] > 0.9", ""),
        ("len(result) == 0", ""),
        ("result > 0.9", ""),
        ("result[0]", ""),
        ("", ""),
    ];
    let dir = common::TempDir::new("promfed-analyze-conditions").expect("temp dir");
    let mut judged = 0;
    for (i, (success, failure)) in pairs.iter().enumerate() {
        let path = dir.path().join(format!("t{i}.yaml"));
        let yaml = format!(
            "kind: AnalysisTemplate\nspec:\n  metrics:\n  - name: m\n    successCondition: {}\n    failureCondition: {}\n    provider:\n      prometheus:\n        query: {}\n",
            serde_json::to_string(success).expect("json"),
            serde_json::to_string(failure).expect("json"),
            serde_json::to_string(SUCCESS_RATE_QUERY).expect("json"),
        );
        std::fs::write(&path, yaml).expect("writing the template");
        for at in [with_traffic, without] {
            let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
                .arg("analyze")
                .arg(&path)
                .args(["--address", &pf.url, "--json"])
                .args(["--from", &format!("{at:.3}"), "--to", &format!("{at:.3}")])
                .output()
                .unwrap_or_else(|e| panic!("running promfed analyze: {e}"));
            let text = String::from_utf8_lossy(&out.stdout);
            let m = text
                .lines()
                .find_map(|l| match serde_json::from_str::<Line>(l) {
                    Ok(Line::Measurement(m)) => Some(m),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no measurement for {success:?}/{failure:?}: {text}"));
            let want = argo_with(&pf.url, m.at_ms, success, failure);
            assert_eq!(
                (m.phase.as_str(), m.value.as_str()),
                (want.phase.as_str(), want.value.as_str()),
                "success {success:?}, failure {failure:?} at {at}: analyze {m:?}, Argo {want:?}"
            );
            judged += 1;
        }
    }
    assert_eq!(judged, 2 * pairs.len());
}

/// A promfed whose only backend is down: constant queries (`vector(1)`)
/// need no backend, so measurements depend only on the schedule.
fn constant_promfed() -> Promfed {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let cfg = config_yaml(&[("k8s-1", &dead, &[("cluster", "k8s-1")])], "");
    Promfed::start(&cfg).unwrap_or_else(|e| panic!("promfed: {e}"))
}

/// Runs `promfed analyze --json` on the template `yaml` with `window`.
fn analyze_yaml(yaml: &str, address: &str, window: &[&str]) -> (i32, Vec<Measurement>, Run) {
    let dir = common::TempDir::new("promfed-analyze-schedule").expect("temp dir");
    let path = dir.path().join("t.yaml");
    std::fs::write(&path, yaml).expect("writing the template");
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .arg("analyze")
        .arg(&path)
        .args(["--address", address, "--json"])
        .args(window)
        .output()
        .unwrap_or_else(|e| panic!("running promfed analyze: {e}"));
    let mut ms = Vec::new();
    let mut run = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Measurement(m)) => ms.push(m),
            Ok(Line::Run(r)) => run = Some(r),
            Err(e) => panic!("promfed analyze printed {line:?}: {e}"),
        }
    }
    let run = run.unwrap_or_else(|| panic!("no run: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), ms, run)
}

fn metric_yaml(fields: &str) -> String {
    format!(
        "kind: AnalysisTemplate\nspec:\n  metrics:\n  - name: m\n    provider:\n      prometheus:\n        query: vector(1)\n{fields}"
    )
}

/// Argo's schedule: the first measurement after `initialDelay`, then one
/// per `interval` until `count`; a count reached is Successful, a failure
/// past `failureLimit` ends the run at once.
#[test]
fn initial_delay_interval_count_and_failure_limit_schedule_measurements() {
    let pf = constant_promfed();
    let window = ["--from", "1000", "--to", "2000"];
    let yaml = metric_yaml(
        "    initialDelay: 30s\n    interval: 20s\n    count: 3\n    successCondition: result[0] == 1\n",
    );
    let (code, ms, run) = analyze_yaml(&yaml, &pf.url, &window);
    let at: Vec<i64> = ms.iter().map(|m| m.at_ms).collect();
    assert_eq!(at, [1_030_000, 1_050_000, 1_070_000], "{ms:?}");
    assert!(ms
        .iter()
        .all(|m| m.phase == "Successful" && m.value == "[1]"));
    assert_eq!((run.phase.as_str(), code), ("Successful", 0), "{run:?}");

    let yaml = metric_yaml(
        "    interval: 1m\n    count: 5\n    failureLimit: 1\n    successCondition: result[0] == 2\n",
    );
    let (code, ms, run) = analyze_yaml(&yaml, &pf.url, &window);
    assert_eq!(ms.len(), 2, "{ms:?}");
    assert_eq!(ms[1].at_ms, 1_060_000);
    assert_eq!((run.phase.as_str(), code), ("Failed", 1), "{run:?}");

    // Neither condition holds: Inconclusive (inconclusiveLimit 0), exit 3.
    let yaml =
        metric_yaml("    successCondition: result[0] > 1\n    failureCondition: result[0] < 1\n");
    let (code, ms, run) = analyze_yaml(&yaml, &pf.url, &window);
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert_eq!((run.phase.as_str(), code), ("Inconclusive", 3), "{run:?}");
}

/// Live: the measurement is taken now.
#[test]
fn live_measures_now() {
    let pf = constant_promfed();
    let yaml = metric_yaml("    successCondition: result[0] == 1\n");
    let before = chrono::Utc::now().timestamp_millis();
    let (code, ms, run) = analyze_yaml(&yaml, &pf.url, &["--live"]);
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert!((before..=after).contains(&ms[0].at_ms), "{ms:?}");
    assert_eq!((run.phase.as_str(), code), ("Successful", 0), "{run:?}");
}
