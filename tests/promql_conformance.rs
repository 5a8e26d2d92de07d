//! Runs Prometheus v3.8's own PromQL test corpus against the engine over a memory source.
//!
//! The files (`promql/promqltest/testdata/*.test`) are read at test time
//! from the Prometheus v3.8.0 module (`github.com/prometheus/prometheus`
//! v0.308.0) in the Go module cache: `scripts/peers --corpus` downloads it
//! (checksum-verified by the go command) and names the directory. Every
//! instant eval also runs as a range query (checked at its middle step) and
//! with `@` pinned at several evaluation times, as the upstream runner does.
//! Set `PROMQL_TEST_FILE=name.test` to run one file, `PROMQL_TEST_DIR=dir`
//! to read the `.test` files from `dir` instead, `PROMQL_TEST_VERBOSE=1`
//! to print every failure and `PROMQL_TEST_DEBUG=1` to print the number of
//! series loaded at each eval, `PROMQL_TEST_RUN_SKIPS=1` to also run the
//! evals skipped for a reason other than the parser (printing
//! `SKIPPED-PASSES` for those that now pass, to be taken off the list).
//! Failures are tagged `[parser]` or `[native-histogram]`; the skip list
//! (`promql_conformance/skips.rs`) is checked too: a skip whose reason no
//! longer holds fails the test.
//!
//! promfed's own files in `tests/promql_fidelity/*.test` run after the
//! corpus.
//!
//! Run: `cargo test --test promql_conformance -- --nocapture`.

#[path = "promql_conformance/dsl.rs"]
mod dsl;
#[path = "promql_conformance/histogram.rs"]
mod histogram;
#[path = "promql_conformance/skips.rs"]
mod skips;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use promql_parser::label::Matcher;
use promql_parser::parser::{AtModifier, Expr};

use dsl::{Cmd, Eval, EvalKind, Expected, MsgMatch, Point, SeriesLine};
use promfed::model::{is_stale_nan, stale_nan, Labels, Series, METRIC_NAME};
use promfed::promql::{self, Engine, QueryOptions, QueryResult, Value};
use promfed::source::matches_all;
use promfed::source::memory::MemorySource;
use skips::{Reason, SKIPS};

/// The corpus directory in the Go module cache, from `scripts/peers
/// --corpus` (the script pins the Prometheus version).
fn testdata_dir() -> PathBuf {
    // A directory of `.test` files of one's own (e.g. to try an eval).
    if let Ok(dir) = std::env::var("PROMQL_TEST_DIR") {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/peers");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("--corpus")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "scripts/peers --corpus failed (needs Go and the module proxy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// promfed's own promqltest files (`tests/promql_fidelity/*.test`): cases
/// where promfed once differed from 3.8, checked against 3.8's own
/// promqltest by `scripts/check-fidelity-tests`.
fn fidelity_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promql_fidelity");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The fewest evals that pass today; a change that loses any fails.
const MIN_PASSED: usize = 1627;

/// The data loaded so far in one file.
#[derive(Default)]
struct Storage {
    src: Arc<MemorySource>,
    /// Series that hold native histogram samples (for tagging failures and checking skips).
    histograms: Vec<Labels>,
}

impl Storage {
    fn load(&mut self, nhcb: bool, series: &[(Labels, Vec<(i64, Point)>)]) {
        let src = Arc::make_mut(&mut self.src);
        for (labels, points) in series {
            // The previous histogram of the series, for the hint the TSDB reads it back with.
            let mut prev: Option<promfed::model::histogram::FloatHistogram> = None;
            for (t, p) in points {
                match p {
                    Point::Float(v) => {
                        src.add(labels.clone(), *t, *v);
                        prev = None;
                    }
                    Point::Stale => {
                        src.add(labels.clone(), *t, stale_nan());
                        prev = None;
                    }
                    Point::Histogram(h) => {
                        if !self.histograms.contains(labels) {
                            self.histograms.push(labels.clone());
                        }
                        let mut h = (**h).clone();
                        h.counter_reset_hint = histogram::tsdb_hint(prev.as_ref(), &h);
                        prev = Some(h.clone());
                        src.add_histogram(labels.clone(), *t, h);
                    }
                }
            }
        }
        if nhcb {
            // load_with_nhcb also builds a histogram series X from X_bucket/_count/_sum.
            for (labels, points) in histogram::nhcb_from_classic(series) {
                if !self.histograms.contains(&labels) {
                    self.histograms.push(labels.clone());
                }
                let mut prev: Option<promfed::model::histogram::FloatHistogram> = None;
                for (t, mut h) in points {
                    h.counter_reset_hint = histogram::tsdb_hint(prev.as_ref(), &h);
                    prev = Some(h.clone());
                    src.add_histogram(labels.clone(), t, h);
                }
            }
        }
    }

    /// True when some selector of `expr` matches a series holding native histograms.
    fn touches_histograms(&self, expr: &Expr) -> bool {
        let mut sets = Vec::new();
        collect_matchers(expr, &mut sets);
        self.histograms
            .iter()
            .any(|h| sets.iter().any(|m| matches_all(h, m)))
    }
}

fn collect_matchers(e: &Expr, out: &mut Vec<Vec<Matcher>>) {
    let mut push = |vs: &promql_parser::parser::VectorSelector| {
        let name: Vec<Matcher> = vs
            .name
            .iter()
            .map(|n| Matcher::new(promql_parser::label::MatchOp::Equal, METRIC_NAME, n))
            .collect();
        let base: Vec<Matcher> = name
            .into_iter()
            .chain(vs.matchers.matchers.iter().cloned())
            .collect();
        if vs.matchers.or_matchers.is_empty() {
            out.push(base);
        } else {
            for alt in &vs.matchers.or_matchers {
                out.push(base.iter().cloned().chain(alt.iter().cloned()).collect());
            }
        }
    };
    match e {
        Expr::VectorSelector(vs) => push(vs),
        Expr::MatrixSelector(ms) => push(&ms.vs),
        Expr::Aggregate(a) => {
            collect_matchers(&a.expr, out);
            if let Some(p) = &a.param {
                collect_matchers(p, out);
            }
        }
        Expr::Unary(u) => collect_matchers(&u.expr, out),
        Expr::Binary(b) => {
            collect_matchers(&b.lhs, out);
            collect_matchers(&b.rhs, out);
        }
        Expr::Paren(p) => collect_matchers(&p.expr, out),
        Expr::Subquery(s) => collect_matchers(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_matchers(a, out)),
        _ => {}
    }
}

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Functions whose result changes with the evaluation time even under `@`.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

fn has_at_unsafe(e: &Expr) -> bool {
    match e {
        Expr::Call(c) => {
            AT_UNSAFE.contains(&c.func.name) || c.args.args.iter().any(|a| has_at_unsafe(a))
        }
        Expr::Aggregate(a) => {
            has_at_unsafe(&a.expr) || a.param.as_deref().is_some_and(has_at_unsafe)
        }
        Expr::Unary(u) => has_at_unsafe(&u.expr),
        Expr::Binary(b) => has_at_unsafe(&b.lhs) || has_at_unsafe(&b.rhs),
        Expr::Paren(p) => has_at_unsafe(&p.expr),
        Expr::Subquery(s) => has_at_unsafe(&s.expr),
        _ => false,
    }
}

/// Sets `@ t` on every selector and subquery without one, not descending into subqueries.
fn pin_at(e: &mut Expr, t: i64) {
    let at = || Some(AtModifier::At(system_time(t)));
    match e {
        Expr::VectorSelector(vs) if vs.at.is_none() => vs.at = at(),
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => ms.vs.at = at(),
        Expr::Subquery(s) if s.at.is_none() => s.at = at(),
        Expr::Aggregate(a) => {
            pin_at(&mut a.expr, t);
            if let Some(p) = &mut a.param {
                pin_at(p, t);
            }
        }
        Expr::Unary(u) => pin_at(&mut u.expr, t),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, t);
            pin_at(&mut b.rhs, t);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, t),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| pin_at(a, t)),
        _ => {}
    }
}

/// Float equality of the upstream runner.
fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return is_stale_nan(a) == is_stale_nan(b);
    }
    if a == b {
        return true;
    }
    let sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || sum < min_normal {
        return diff < EPS * min_normal;
    }
    diff / sum.min(f64::MAX) < EPS
}

fn point_eq(want: &Point, got: &Point) -> bool {
    match (want, got) {
        (Point::Float(w), Point::Float(g)) => almost_equal(*w, *g),
        (Point::Stale, Point::Float(g)) => is_stale_nan(*g),
        (Point::Histogram(w), Point::Histogram(g)) => w.approx_eq(g, almost_equal),
        _ => false,
    }
}

/// A result point as the runner compares it.
fn got_point(v: f64, h: Option<&Arc<promfed::model::histogram::FloatHistogram>>) -> Point {
    match h {
        Some(h) => Point::Histogram(Arc::clone(h)),
        None => Point::Float(v),
    }
}

/// A series' floats and histograms merged in time order.
fn series_points(s: &Series) -> Vec<(i64, Point)> {
    let mut pts: Vec<(i64, Point)> = s
        .samples
        .iter()
        .map(|p| (p.t, Point::Float(p.v)))
        .chain(
            s.histograms
                .iter()
                .map(|p| (p.t, Point::Histogram(Arc::clone(&p.h)))),
        )
        .collect();
    pts.sort_by_key(|p| p.0);
    pts
}

fn msg_matches(m: &MsgMatch, s: &str) -> bool {
    match m {
        MsgMatch::Any => true,
        MsgMatch::Exact(e) => e == s,
        MsgMatch::Regex(r) => regex::Regex::new(r).is_ok_and(|re| re.is_match(s)),
    }
}

fn check_annotations(ev: &Eval, res: &QueryResult) -> Result<(), String> {
    let check = |kind: &str, want: &[MsgMatch], no: bool, got: &[String]| -> Result<(), String> {
        if no && !got.is_empty() {
            return Err(format!("expected no {kind}s, got {got:?}"));
        }
        if want.is_empty() {
            return Ok(());
        }
        for w in want {
            if !got.iter().any(|g| msg_matches(w, g)) {
                return Err(format!("expected {kind} {w:?}, got {got:?}"));
            }
        }
        for g in got {
            if !want.iter().any(|w| msg_matches(w, g)) {
                return Err(format!("unexpected {kind} {g:?}"));
            }
        }
        Ok(())
    };
    check("warning", &ev.warns, ev.no_warn, &res.warnings)?;
    check("info", &ev.infos, ev.no_info, &res.infos)
}

/// Compares `(labels, value)` pairs with expected series of one point each.
fn compare_vector(
    want: &[SeriesLine],
    got: &[(Labels, Point)],
    ordered: bool,
) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!(
            "expected {} elements, got {}: {:?}",
            want.len(),
            got.len(),
            got.iter()
                .map(|(l, v)| format!("{l} {v:?}"))
                .collect::<Vec<_>>()
        ));
    }
    for (i, w) in want.iter().enumerate() {
        let Some(Some(wp)) = w.vals.first() else {
            return Err(format!("expected series {} has no value", w.labels));
        };
        let pos = got.iter().position(|(l, _)| *l == w.labels);
        let Some(pos) = pos else {
            return Err(format!(
                "expected {} not in result {:?}",
                w.labels,
                got.iter().map(|g| g.0.to_string()).collect::<Vec<_>>()
            ));
        };
        if ordered && pos != i {
            return Err(format!("expected {} at position {i}, got {pos}", w.labels));
        }
        if !point_eq(wp, &got[pos].1) {
            return Err(format!(
                "{}: expected {wp:?}, got {:?}",
                w.labels, got[pos].1
            ));
        }
    }
    Ok(())
}

fn compare_matrix(
    want: &[SeriesLine],
    got: &[Series],
    start: i64,
    step: i64,
) -> Result<(), String> {
    if got.windows(2).any(|w| w[0].labels >= w[1].labels) {
        return Err("matrix is not sorted by labels".into());
    }
    if want.len() != got.len() {
        return Err(format!(
            "expected {} series, got {}: {:?}",
            want.len(),
            got.len(),
            got.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
        ));
    }
    for w in want {
        let Some(g) = got.iter().find(|g| g.labels == w.labels) else {
            return Err(format!("expected series {} missing", w.labels));
        };
        let want_pts: Vec<(i64, Point)> = w
            .vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.clone().map(|p| (start + i as i64 * step, p)))
            .collect();
        let got_pts = series_points(g);
        if want_pts.len() != got_pts.len() {
            return Err(format!(
                "{}: expected {} points, got {}: {:?}",
                w.labels,
                want_pts.len(),
                got_pts.len(),
                got_pts
            ));
        }
        for ((wt, wp), (gt, gp)) in want_pts.iter().zip(&got_pts) {
            if wt != gt || !point_eq(wp, gp) {
                return Err(format!(
                    "{}: expected {wp:?}@{wt}, got {gp:?}@{gt}",
                    w.labels
                ));
            }
        }
    }
    Ok(())
}

fn compare_instant(ev: &Eval, v: &Value) -> Result<(), String> {
    match (&ev.expected, v) {
        (Expected::Series(want), Value::Vector(got)) => {
            let got: Vec<(Labels, Point)> = got
                .iter()
                .map(|e| (e.labels.clone(), got_point(e.v, e.h.as_ref())))
                .collect();
            compare_vector(want, &got, ev.ordered)
        }
        (Expected::Scalar(w), Value::Scalar { v, .. }) => {
            if almost_equal(*w, *v) {
                Ok(())
            } else {
                Err(format!("expected scalar {w}, got {v}"))
            }
        }
        (Expected::String(w), Value::String { s, .. }) => {
            if w == s {
                Ok(())
            } else {
                Err(format!("expected string {w:?}, got {s:?}"))
            }
        }
        (
            Expected::RangeVector {
                start,
                step,
                series,
            },
            Value::Matrix(m),
        ) => {
            if ev.ordered {
                return Err("a matrix cannot be ordered".into());
            }
            compare_matrix(series, m, *start, *step)
        }
        (want, got) => Err(format!("expected {want:?}, got {got:?}")),
    }
}

fn check_failure(
    ev: &Eval,
    res: Result<QueryResult, promql::EngineError>,
) -> Result<Option<QueryResult>, String> {
    match (res, &ev.fail) {
        (Err(e), Some(m)) => {
            if msg_matches(m, &e.to_string()) {
                Ok(None)
            } else {
                Err(format!("expected error {m:?}, got {e}"))
            }
        }
        (Err(e), None) => Err(format!("error: {e}")),
        (Ok(_), Some(_)) => Err("expected an error, got none".into()),
        (Ok(r), None) => Ok(Some(r)),
    }
}

async fn run_instant(engine: &Engine, ev: &Eval, expr: &Expr, t: i64) -> Result<(), String> {
    let opts = QueryOptions::default();
    let Some(res) = check_failure(ev, engine.instant_expr(expr, t, &opts).await)? else {
        return Ok(());
    };
    check_annotations(ev, &res)?;
    compare_instant(ev, &res.value)?;
    if ev.ordered
        || matches!(
            ev.expected,
            Expected::String(_) | Expected::RangeVector { .. }
        )
    {
        return Ok(());
    }
    let r = engine
        .range_expr(expr, t - 60_000, t + 60_000, 60_000, &opts)
        .await
        .map_err(|e| format!("range mode: {e}"))?;
    let Value::Matrix(m) = r.value else {
        return Err(format!("range mode: not a matrix: {:?}", r.value));
    };
    if m.windows(2).any(|w| w[0].labels >= w[1].labels) {
        return Err("range mode: matrix not sorted".into());
    }
    let at_t: Vec<(Labels, Point)> = m
        .iter()
        .filter_map(|s| {
            series_points(s)
                .into_iter()
                .find(|p| p.0 == t)
                .map(|p| (s.labels.clone(), p.1))
        })
        .collect();
    match &ev.expected {
        Expected::Scalar(w) => match at_t.first() {
            Some((_, Point::Float(v))) if almost_equal(*w, *v) => Ok(()),
            other => Err(format!("range mode: expected scalar {w}, got {other:?}")),
        },
        Expected::Series(want) => {
            compare_vector(want, &at_t, false).map_err(|e| format!("range mode: {e}"))
        }
        _ => Ok(()),
    }
}

async fn run_eval(engine: &Engine, ev: &Eval, expr: &Expr) -> Result<(), String> {
    match ev.kind {
        EvalKind::Instant { at } => {
            run_instant(engine, ev, expr, at).await?;
            if has_at_unsafe(expr) {
                return Ok(());
            }
            let mut pinned = expr.clone();
            pin_at(&mut pinned, at);
            let times: Vec<i64> = if at == 0 {
                vec![-1000, 0, 1000]
            } else {
                vec![-10 * at, 0, at / 5, at, 10 * at]
            };
            for t in times {
                run_instant(engine, ev, &pinned, t)
                    .await
                    .map_err(|e| format!("with @ {at} evaluated at {t}: {e}"))?;
            }
            Ok(())
        }
        EvalKind::Range { start, end, step } => {
            let res = engine
                .range_expr(expr, start, end, step, &QueryOptions::default())
                .await;
            let Some(res) = check_failure(ev, res)? else {
                return Ok(());
            };
            check_annotations(ev, &res)?;
            match (&ev.expected, &res.value) {
                (Expected::Series(want), Value::Matrix(m)) => {
                    if ev.ordered {
                        return Err("a matrix cannot be ordered".into());
                    }
                    compare_matrix(want, m, start, step)
                }
                (want, got) => Err(format!("expected {want:?}, got {got:?}")),
            }
        }
    }
}

/// Whether an eval's expectation involves native histograms.
fn expects_histograms(ev: &Eval) -> bool {
    let lines = match &ev.expected {
        Expected::Series(s) | Expected::RangeVector { series: s, .. } => s.as_slice(),
        _ => &[],
    };
    lines.iter().any(|s| {
        s.vals
            .iter()
            .any(|v| matches!(v, Some(Point::Histogram(_))))
    })
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
}

#[tokio::test(flavor = "current_thread")]
async fn promql_conformance() {
    let dir = testdata_dir();
    let only = std::env::var("PROMQL_TEST_FILE").ok();
    let verbose = std::env::var("PROMQL_TEST_VERBOSE").is_ok();
    // Also runs the evals skipped as native histogram and says which pass.
    let run_skips = std::env::var("PROMQL_TEST_RUN_SKIPS").is_ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    files.extend(fidelity_files());
    let mut total = Tally::default();
    let mut failures: Vec<String> = Vec::new();
    let mut used_skips = vec![false; SKIPS.len()];
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cmds = dsl::parse_file(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut storage = Storage::default();
        let mut tally = Tally::default();
        for cmd in &cmds {
            match cmd {
                Cmd::Clear => storage = Storage::default(),
                Cmd::Load { nhcb, series } => storage.load(*nhcb, series),
                Cmd::Eval(ev) => {
                    let parsed = promql::parse(&ev.expr);
                    let skip = SKIPS
                        .iter()
                        .position(|s| s.file == name && s.line == ev.line);
                    if let Some(i) = skip {
                        used_skips[i] = true;
                        let s = &SKIPS[i];
                        // A skip must still be justified.
                        let justified = match s.reason {
                            Reason::Parser => parsed.is_err(),
                            Reason::Other(_) => true,
                        };
                        if justified && run_skips && s.reason != Reason::Parser {
                            if let Ok(expr) = &parsed {
                                let engine = Engine::new(storage.src.clone());
                                match run_eval(&engine, ev, expr).await {
                                    Ok(()) => println!("SKIPPED-PASSES {name}:{}", ev.line),
                                    Err(e) => println!(
                                        "SKIPPED-FAILS {name}:{}: {}\n    {e}",
                                        ev.line, ev.expr
                                    ),
                                }
                            }
                        }
                        if justified {
                            tally.skipped += 1;
                        } else {
                            tally.failed += 1;
                            failures.push(format!(
                                "{name}:{}: skip no longer justified ({:?}): {}",
                                ev.line, s.reason, ev.expr
                            ));
                        }
                        continue;
                    }
                    if std::env::var("PROMQL_TEST_DEBUG").is_ok() {
                        println!("{name}:{} series loaded: {}", ev.line, storage.src.len());
                    }
                    let engine = Engine::new(storage.src.clone());
                    let outcome = match &parsed {
                        Ok(expr) => run_eval(&engine, ev, expr).await,
                        Err(e) => match &ev.fail {
                            Some(m) if msg_matches(m, &e.to_string()) => Ok(()),
                            _ => Err(format!("parse error: {e}")),
                        },
                    };
                    match outcome {
                        Ok(()) => tally.passed += 1,
                        Err(e) => {
                            tally.failed += 1;
                            let hist = expects_histograms(ev)
                                || parsed.as_ref().is_ok_and(|x| storage.touches_histograms(x));
                            let tag = if parsed.is_err() {
                                " [parser]"
                            } else if hist {
                                " [native-histogram]"
                            } else {
                                ""
                            };
                            failures.push(format!("{name}:{}{tag}: {}\n    {e}", ev.line, ev.expr));
                        }
                    }
                }
            }
        }
        println!(
            "{name}: {} passed, {} failed, {} skipped",
            tally.passed, tally.failed, tally.skipped
        );
        total.passed += tally.passed;
        total.failed += tally.failed;
        total.skipped += tally.skipped;
    }
    if only.is_none() {
        for (i, used) in used_skips.iter().enumerate() {
            if !used {
                total.failed += 1;
                failures.push(format!(
                    "skip list entry {}:{} matches no eval",
                    SKIPS[i].file, SKIPS[i].line
                ));
            }
        }
    }
    let shown = if verbose {
        failures.len()
    } else {
        failures.len().min(60)
    };
    for f in &failures[..shown] {
        println!("FAIL {f}");
    }
    println!(
        "{} passed, {} failed, {} skipped",
        total.passed, total.failed, total.skipped
    );
    assert_eq!(total.failed, 0, "{} conformance evals failed", total.failed);
    if only.is_none() {
        assert!(
            total.passed >= MIN_PASSED,
            "only {} evals passed (at least {MIN_PASSED} did before)",
            total.passed
        );
    }
}
