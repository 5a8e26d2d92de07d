//! PromQL answers that must equal Prometheus 3.8's bit for bit, checked both ways.
//!
//! Each file in `tests/promql_fidelity/` is a `promtool test rules` unit
//! test file (input series, expressions, expected samples). The test runs
//! the real promtool 3.8 on it first: the expected values are 3.8's own
//! answers (promtool compares exactly). Then it loads the same series into a
//! memory source and evaluates every expression with promfed's engine,
//! comparing exactly too: floats and every histogram field bit for bit
//! (the counter reset hint aside, which the loading paths set differently).
//! The conformance corpus compares with a tolerance; these cases pin the
//! last bits (and overflow) where promfed used to differ from 3.8.
//!
//! Run: `cargo test --test promql_fidelity` (needs `scripts/peers`).

// Shared with the conformance runner, which uses the parts left unused here.
#[allow(dead_code)]
#[path = "promql_conformance/dsl.rs"]
mod dsl;
#[allow(dead_code)]
#[path = "promql_conformance/histogram.rs"]
mod histogram;
#[path = "common/peers.rs"]
mod peers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use dsl::{Cmd, Point};
use promfed::model::histogram::FloatHistogram;
use promfed::model::{stale_nan, Labels};
use promfed::promql::{Engine, QueryOptions, Value};
use promfed::source::memory::MemorySource;

#[derive(Deserialize)]
struct UnitFile {
    tests: Vec<UnitTest>,
}

#[derive(Deserialize)]
struct UnitTest {
    interval: String,
    input_series: Vec<InputSeries>,
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Deserialize)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
struct ExpSample {
    labels: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    histogram: Option<String>,
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql_fidelity");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no cases in {}", dir.display());
    out
}

/// The series of one unit test, loaded as the conformance runner loads them.
fn load(t: &UnitTest) -> MemorySource {
    let mut text = format!("load {}\n", t.interval);
    for s in &t.input_series {
        text.push_str(&format!("    {} {}\n", s.series, s.values));
    }
    let cmds = dsl::parse_file(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut src = MemorySource::new();
    for cmd in cmds {
        let Cmd::Load { series, .. } = cmd else {
            continue;
        };
        for (labels, points) in series {
            let mut prev: Option<FloatHistogram> = None;
            for (t, p) in points {
                match p {
                    Point::Float(v) => {
                        src.add(labels.clone(), t, v);
                        prev = None;
                    }
                    Point::Stale => {
                        src.add(labels.clone(), t, stale_nan());
                        prev = None;
                    }
                    Point::Histogram(h) => {
                        let mut h = (*h).clone();
                        h.counter_reset_hint = histogram::tsdb_hint(prev.as_ref(), &h);
                        prev = Some(h.clone());
                        src.add_histogram(labels.clone(), t, h);
                    }
                }
            }
        }
    }
    src
}

/// Exact equality of histograms, the counter reset hint aside.
fn same_histogram(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.compact();
    b.compact();
    a.counter_reset_hint = b.counter_reset_hint;
    a.equals(&b)
}

fn parse_histogram(s: &str) -> FloatHistogram {
    let body = s
        .trim()
        .strip_prefix("{{")
        .and_then(|x| x.strip_suffix("}}"))
        .unwrap_or_else(|| panic!("not a histogram: {s}"));
    histogram::parse(body).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn promtool_3_8_agrees_with_the_expected_values() {
    let promtool = peers::promtool();
    for f in files() {
        let out = std::process::Command::new(&promtool)
            .arg("test")
            .arg("rules")
            .arg(&f)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
        assert!(
            out.status.success(),
            "promtool 3.8 disagrees with {}:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn promfed_gives_the_same_bits() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in files() {
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let unit: UnitFile =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for t in &unit.tests {
            let engine = Engine::new(Arc::new(load(t)));
            for case in &t.promql_expr_test {
                checked += 1;
                let at = dsl::parse_duration(&case.eval_time)
                    .unwrap_or_else(|e| panic!("{}: {e}", case.eval_time));
                let got = match engine
                    .instant(&case.expr, at, &QueryOptions::default())
                    .await
                {
                    Ok(r) => r.value,
                    Err(e) => {
                        failures.push(format!("{}: {e}", case.expr));
                        continue;
                    }
                };
                let Value::Vector(mut got) = got else {
                    failures.push(format!("{}: not a vector: {got:?}", case.expr));
                    continue;
                };
                let mut want: Vec<(Labels, &ExpSample)> = case
                    .exp_samples
                    .iter()
                    .map(|s| {
                        let (l, rest) = dsl::parse_series_desc(&s.labels)
                            .unwrap_or_else(|e| panic!("{}: {e}", s.labels));
                        assert!(rest.trim().is_empty(), "{}", s.labels);
                        (l, s)
                    })
                    .collect();
                want.sort_by(|a, b| a.0.cmp(&b.0));
                got.sort_by(|a, b| a.labels.cmp(&b.labels));
                let ok = got.len() == want.len()
                    && got.iter().zip(&want).all(|(g, (l, w))| {
                        g.labels == *l
                            && match (&g.h, &w.histogram, w.value) {
                                (Some(h), Some(wh), None) => {
                                    same_histogram(h, &parse_histogram(wh))
                                }
                                (None, None, Some(v)) => g.v.to_bits() == v.to_bits(),
                                _ => false,
                            }
                    });
                if !ok {
                    failures.push(format!(
                        "{} at {}: got {:?}",
                        case.expr,
                        case.eval_time,
                        got.iter()
                            .map(|g| match &g.h {
                                Some(h) => format!("{} {}", g.labels, h.go_string()),
                                None => format!("{} {:?}", g.labels, g.v),
                            })
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
    }
    assert!(checked > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
