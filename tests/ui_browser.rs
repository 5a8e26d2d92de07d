//! The web UI in real headless Chromium (Debian's, driven by playwright-core
//! through tests/ui/browser.cjs) against the real promfed binary over the
//! harness's Prometheus 3.8 servers: a query typed into the box shows the
//! numbers that the union Prometheus (the oracle) and promfed's API give, a
//! range query is drawn as one line per series with every point, the
//! stores page shows a killed backend as down, and the cache page counts
//! one evaluation for a grid cell asked twice, and the analyze page replays
//! the seed's AnalysisTemplate with the phases and values Argo Rollouts'
//! own provider gets from the same promfed. Screenshots are kept under
//! target/ui-screenshots. Needs `scripts/ui-deps` (Chromium, playwright-core).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config_yaml, harness, start_from_openmetrics, Promfed};
use serde_json::{json, Value};

/// Longest a browser run may take before it is stopped.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

const INSTANT_QUERY: &str = "sum by (cluster, response_code) (rate(istio_requests_total{reporter=\"source\",destination_service=~\"helloworld.*\"}[1m]))";
const RANGE_QUERY: &str = "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[1m]))";
const WARM_QUERY: &str = "sum(up)";

/// The canary's service, the template's `service` argument.
const SERVICE: &str = "helloworld-canary.helloworld.svc.cluster.local";

/// Argo Rollouts' provider (argo-client) once through `address` at `at_ms`:
/// (phase, value).
fn argo(address: &str, at_ms: i64) -> (String, String) {
    let m = common::argo::measure(address, at_ms as f64 / 1000.0);
    (m.phase, m.value)
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// playwright-core as `scripts/ui-deps` installs it.
fn playwright_core() -> PathBuf {
    let dir = std::env::var_os("PROMFED_PLAYWRIGHT_CORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("ui-node/node_modules/playwright-core"));
    assert!(
        dir.join("package.json").is_file() && PathBuf::from("/usr/bin/chromium").is_file(),
        "playwright-core ({}) or /usr/bin/chromium missing: run scripts/ui-deps",
        dir.display()
    );
    dir
}

fn shots_dir() -> PathBuf {
    let d = target_dir().join("ui-screenshots");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// Runs tests/ui/browser.cjs with `actions` against `url`; what each page
/// showed, in order. The browser run is stopped by pid past its deadline.
fn browse(url: &str, actions: Value) -> Vec<Value> {
    let plan = json!({ "url": url, "shots": shots_dir(), "actions": actions });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ui/browser.cjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(plan.to_string())
        .env("PLAYWRIGHT_CORE", playwright_core())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting node: {e}"));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > BROWSER_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("browser run took over {BROWSER_TIMEOUT:?}; stopped");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("waiting for node: {e}"),
        }
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("node output: {e}"));
    assert!(
        out.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "browser printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v["pageErrors"], json!([]), "JavaScript errors on the page");
    v["results"].as_array().cloned().unwrap_or_default()
}

/// A series' labels as the UI prints them (and Prometheus's own UI does):
/// `name{a="b", c="d"}`, labels sorted.
fn series_name(metric: &Value) -> String {
    let m: BTreeMap<String, String> = metric
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let name = m.get("__name__").cloned().unwrap_or_default();
    let labels: Vec<String> = m
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    if labels.is_empty() {
        if name.is_empty() {
            "{}".into()
        } else {
            name
        }
    } else {
        format!("{name}{{{}}}", labels.join(", "))
    }
}

/// (series, value as the API printed it) of a vector answer, sorted.
fn vector_rows(body: &Value) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                series_name(&s["metric"]),
                s["value"][1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// (series, "last @t (n points)", n) of a matrix answer, sorted.
fn matrix_rows(body: &Value) -> Vec<(String, String, usize)> {
    let mut rows: Vec<(String, String, usize)> = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let values = s["values"].as_array().cloned().unwrap_or_default();
            let last = values.last().cloned().unwrap_or(Value::Null);
            let at = last[0].as_f64().unwrap_or(f64::NAN);
            (
                series_name(&s["metric"]),
                format!(
                    "{} @{at} ({} points)",
                    last[1].as_str().unwrap_or_default(),
                    values.len()
                ),
                values.len(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn ui_rows(seen: &Value) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = seen["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["labels"].as_str().unwrap_or_default().to_string(),
                r["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn store_states(seen: &Value) -> BTreeMap<String, String> {
    seen["stores"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[test]
fn the_ui_shows_the_apis_numbers_and_a_killed_backend_as_down() {
    let h = harness();
    let step = &h.schedule.steps[3];
    // On the 10 s grid, so that the cached answer is the one at `t`.
    let t = step.start + 300;
    assert_eq!(t % 10, 0);
    // A third backend, to be killed.
    let om = format!(
        "# TYPE ui_probe gauge\nui_probe{{job=\"x\"}} 1 {}\nui_probe{{job=\"x\"}} 1 {}\n# EOF\n",
        t - 30,
        t - 15
    );
    let mut extra = start_from_openmetrics("k8s-3", &om, &[("cluster", "k8s-3")])
        .unwrap_or_else(|e| panic!("third backend: {e}"));
    let b = h.backends();
    let k1 = [("cluster", b[0].0.as_str())];
    let k2 = [("cluster", b[1].0.as_str())];
    let k3 = [("cluster", "k8s-3")];
    let cfg = config_yaml(
        &[
            (&b[0].0, &b[0].1, &k1),
            (&b[1].0, &b[1].1, &k2),
            ("k8s-3", &extra.url, &k3),
        ],
        &format!("cache:\n  grid: 10s\n  warm_queries: ['{WARM_QUERY}']\n"),
    );
    let pf = Promfed::start(&cfg).unwrap_or_else(|e| panic!("promfed: {e}"));

    let range = (step.start, step.start + 600, 30);
    let template = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/analysis-template.yaml"),
    )
    .unwrap_or_else(|e| panic!("reading the template: {e}"));
    let from = step.start as f64 + 7.137;
    let seen = browse(
        &pf.url,
        json!([
            {"do": "instant", "query": INSTANT_QUERY, "time": iso(t), "shot": "query-instant.png"},
            {"do": "range", "query": RANGE_QUERY, "start": iso(range.0), "end": iso(range.1),
             "step": range.2.to_string(), "shot": "query-range.png"},
            {"do": "analyze", "template": template, "args": format!("service={SERVICE}"),
             "from": format!("{from:.3}"), "to": format!("{:.3}", from + 100.0), "shot": "analyze.png"},
            {"do": "stores", "probe": true},
        ]),
    );
    let (instant, ranged, analysis, stores_before) = (&seen[0], &seen[1], &seen[2], &seen[3]);

    // Analyze: a measurement every 20 s, each with the phase and value
    // Argo's provider gets through the same promfed at the same time.
    assert_eq!(analysis["error"], "", "{analysis}");
    assert_eq!(analysis["phase"], "Successful", "{analysis}");
    let rows = analysis["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 6, "{analysis}");
    for (i, r) in rows.iter().enumerate() {
        let at_ms = r["atMs"].as_i64().unwrap_or_default();
        assert_eq!(at_ms, (from * 1000.0).round() as i64 + 20_000 * i as i64);
        let got = (
            r["phase"].as_str().unwrap_or_default().to_string(),
            r["value"].as_str().unwrap_or_default().to_string(),
        );
        assert_eq!(got, argo(&pf.url, at_ms), "measurement {i}: {r}");
    }

    // The oracle: the union Prometheus; and promfed's own API (asked after
    // the page, so the page's evaluation is the cell's only one).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (union_i, api_i, union_r) = rt.block_on(async {
        let q = |url: String, query: &'static str| async move {
            common::query(&url, query, t as f64)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let ui = q(h.union.url.clone(), INSTANT_QUERY).await;
        let api = q(pf.url.clone(), INSTANT_QUERY).await;
        let ur = common::query_range(
            &h.union.url,
            RANGE_QUERY,
            range.0 as f64,
            range.1 as f64,
            range.2 as f64,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        (ui.body, api.body, ur.body)
    });

    // Instant: the page's table is the union's answer, and the API's.
    let want = vector_rows(&union_i);
    assert!(want.len() >= 4, "too few series to judge: {want:?}");
    assert_eq!(ui_rows(instant), want, "page vs union: {instant}");
    assert_eq!(vector_rows(&api_i), want, "API vs union");
    assert_eq!(instant["error"], "", "{instant}");
    assert_eq!(
        instant["backends"], "answered by: k8s-1, k8s-2, k8s-3",
        "{instant}"
    );

    // Range: one row and one line per series, every point drawn.
    let want = matrix_rows(&union_r);
    assert_eq!(want.len(), 2, "{want:?}");
    let rows = ui_rows(ranged);
    assert_eq!(
        rows,
        want.iter()
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect::<Vec<_>>(),
        "{ranged}"
    );
    let mut paths: Vec<(String, usize)> = ranged["paths"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["title"].as_str().unwrap_or_default().to_string(),
                p["points"].as_u64().unwrap_or(0) as usize,
            )
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        want.iter()
            .map(|(n, _, k)| (n.clone(), *k))
            .collect::<Vec<_>>()
    );
    assert_eq!(want[0].2, 21, "{want:?}");

    // Stores: all up, then the third backend is killed and shows as down.
    let before = store_states(stores_before);
    assert_eq!(
        before.values().collect::<Vec<_>>(),
        ["up", "up", "up"],
        "{stores_before}"
    );
    extra.stop();
    let seen = browse(
        &pf.url,
        json!([
            {"do": "stores", "probe": true, "shot": "stores-down.png"},
            {"do": "cache", "shot": "cache.png"},
        ]),
    );
    let (stores_after, cache) = (&seen[0], &seen[1]);
    let after = store_states(stores_after);
    assert_eq!(
        after.get("k8s-3").map(String::as_str),
        Some("down"),
        "{stores_after}"
    );
    assert_eq!(after.get("k8s-1").map(String::as_str), Some("up"));
    assert_eq!(after.get("k8s-2").map(String::as_str), Some("up"));
    let err = stores_after["stores"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "k8s-3"))
        .map(|s| s["lastError"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        !err.is_empty(),
        "a down backend without its error: {stores_after}"
    );

    // Cache: the configured warm query, and the instant cell asked by the
    // page and then the API evaluated once.
    assert_eq!(cache["warm"], json!([WARM_QUERY]), "{cache}");
    let cell = cache["cells"]
        .as_array()
        .and_then(|cells| cells.iter().find(|c| c["time"] == iso(t)))
        .cloned()
        .unwrap_or_else(|| panic!("no cell at {}: {cache}", iso(t)));
    assert_eq!(cell["evaluations"], 1, "{cache}");
    let instant_counts = cache["requests"]
        .as_array()
        .and_then(|r| r.iter().find(|k| k["kind"] == "instant"))
        .cloned()
        .unwrap_or_else(|| panic!("no instant row: {cache}"));
    assert!(instant_counts["hit"].as_u64() >= Some(1), "{cache}");
    assert!(instant_counts["miss"].as_u64() >= Some(1), "{cache}");
}
