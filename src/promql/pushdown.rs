//! Exact pushdown, the engine's half: finds the nodes whose answer for the
//! whole fleet is exactly the union of every backend's own answer, has the
//! federation send them to each backend's query API, and hands the
//! evaluator their values in place of raw samples.
//!
//! Pushed: a per-series range function (`rate`, `increase`, `*_over_time`,
//! ...) of one metric's selector, outside subqueries. Each output series
//! depends on one input series only; when no series lives on two backends
//! (the federation checks: external labels tell every pair apart, no HA
//! replica), each backend's Prometheus 3.8 computes it from the same
//! samples as the union's, bit for bit. The values come back as the raw
//! path would build them (metric name kept, to be dropped at the end), in
//! its order (sorted by label set), so that the aggregations above sum the
//! same terms in the same order. Everything else, and every node a backend
//! answers with a failure, an annotation or a native histogram, is read raw.

use std::collections::HashMap;

use futures::future::join_all;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Call, Expr, MatrixSelector};

use super::plan::{at_ms, duration_ms, matcher_sets_with_default, offset_ms, Bounds};
use super::steps::{Grid, VSeries};
use crate::federation::pushdown::{NotPushed, PushGrid};
use crate::federation::Federation;
use crate::model::METRIC_NAME;
use crate::source::prometheus::{format_api_time, selector_text};

/// Functions whose output series each depend on one input series and whose
/// results Prometheus computes the same on any server holding that series.
/// Not `absent_over_time` (it answers for series no backend holds), nor the
/// experimental ones (a backend may not have them enabled).
const PER_SERIES: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "changes",
    "resets",
    "avg_over_time",
    "sum_over_time",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
];

/// Most points a Prometheus answers per series of a range query.
const MAX_RANGE_POINTS: usize = 11_000;

/// Identifies a call node of the parsed query (its address, stable while
/// the query is borrowed).
pub(crate) fn call_id(c: &Call) -> usize {
    c as *const Call as usize
}

/// The pushed nodes' values, by call node, and a note per node considered.
#[derive(Debug, Default)]
pub(crate) struct PushPlan {
    pub values: HashMap<usize, Vec<VSeries>>,
    pub notes: Vec<String>,
}

/// A node that may be pushed: `func(metric{...}[range])`.
struct Candidate<'a> {
    call: &'a Call,
    ms: &'a MatrixSelector,
    name: String,
    matchers: Vec<Matcher>,
}

impl Candidate<'_> {
    /// The node's text for a backend that is sent `matchers`.
    fn text(&self, matchers: &[Matcher], bounds: Bounds) -> String {
        let vs = &self.ms.vs;
        let mut t = format!(
            "{}({}[{}ms]",
            self.call.func.name,
            selector_text(matchers),
            duration_ms(&self.ms.range)
        );
        let off = offset_ms(&vs.offset);
        if off != 0 {
            t.push_str(&format!(" offset {off}ms"));
        }
        if let Some(at) = at_ms(&vs.at, bounds) {
            t.push_str(&format!(" @ {}", format_api_time(at)));
        }
        t.push(')');
        t
    }

    fn label(&self) -> String {
        format!("{}({})", self.call.func.name, self.name)
    }
}

/// The metric a selector names by an equality matcher, and its matchers,
/// when it has no `or` alternatives.
fn single_metric(ms: &MatrixSelector) -> Option<(String, Vec<Matcher>)> {
    let vs = &ms.vs;
    if !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    let mut sets = matcher_sets_with_default(vs, None);
    let set = sets.pop().filter(|_| sets.is_empty())?;
    let name = set
        .iter()
        .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)?
        .value
        .clone();
    Some((name, set))
}

/// Every pushable node of `e` evaluated on the query's own grid (not
/// under a subquery, whose grid differs).
fn candidates<'a>(e: &'a Expr, out: &mut Vec<Candidate<'a>>) {
    match e {
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                candidates(p, out);
            }
            candidates(&a.expr, out)
        }
        Expr::Unary(u) => candidates(&u.expr, out),
        Expr::Binary(b) => {
            candidates(&b.lhs, out);
            candidates(&b.rhs, out)
        }
        Expr::Paren(p) => candidates(&p.expr, out),
        Expr::Call(c) => {
            if PER_SERIES.contains(&c.func.name) && c.args.args.len() == 1 {
                if let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|a| a.as_ref()) {
                    if let Some((name, matchers)) = single_metric(ms) {
                        out.push(Candidate {
                            call: c,
                            ms,
                            name,
                            matchers,
                        });
                    }
                }
                return;
            }
            if c.func.name == "info" {
                return;
            }
            for a in &c.args.args {
                candidates(a, out);
            }
        }
        Expr::Subquery(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

/// Pushes down every node of `expr` it can (evaluated on `grid`; `instant`
/// for an instant query); the others are left to the raw reads.
pub(crate) async fn push(
    fed: &Federation,
    expr: &Expr,
    grid: Grid,
    bounds: Bounds,
    instant: bool,
) -> PushPlan {
    let mut plan = PushPlan::default();
    let mut found = Vec::new();
    candidates(expr, &mut found);
    if found.is_empty() {
        return plan;
    }
    if !instant && grid.len() > MAX_RANGE_POINTS {
        plan.notes.push(format!(
            "raw: {} steps, over a backend's {MAX_RANGE_POINTS} points",
            grid.len()
        ));
        return plan;
    }
    let push_grid = PushGrid {
        start_ms: grid.start,
        end_ms: grid.end,
        step_ms: if instant { 0 } else { grid.step },
    };
    let asks = found.iter().map(|c| async move {
        let vs = &c.ms.vs;
        let off = offset_ms(&vs.offset);
        let range = duration_ms(&c.ms.range);
        let (s, e) = match at_ms(&vs.at, bounds) {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        let targets = fed.push_targets(&c.matchers, s - off - range, e - off)?;
        let answers = fed
            .push_query(&targets, &c.matchers, |m| c.text(m, bounds), push_grid)
            .await?;
        let names: Vec<String> = answers.iter().map(|a| a.backend.clone()).collect();
        let series = answers.into_iter().flat_map(|a| a.series);
        let values = as_vectors(series, &c.name, grid).ok_or_else(|| NotPushed::Answer {
            backend: names.join(","),
            why: "series off the grid or on two backends".into(),
        })?;
        Ok::<_, NotPushed>((values, names))
    });
    for (c, outcome) in found.iter().zip(join_all(asks).await) {
        match outcome {
            Ok((values, names)) => {
                plan.notes
                    .push(format!("pushed {} to {}", c.label(), names.join(",")));
                plan.values.insert(call_id(c.call), values);
            }
            Err(why) => plan.notes.push(format!("raw {}: {why}", c.label())),
        }
    }
    plan
}

/// The backends' series as the raw path's function would build them:
/// points on the grid, the metric name kept where the function drops it
/// (and marked to be dropped), sorted by label set. `None` when a point is
/// off the grid or two series share a label set (a series on two
/// backends).
fn as_vectors(
    series: impl Iterator<Item = crate::model::Series>,
    name: &str,
    grid: Grid,
) -> Option<Vec<VSeries>> {
    let n = grid.len();
    let mut out = Vec::new();
    for s in series {
        let mut labels = s.labels;
        let drop_name = labels.get(METRIC_NAME).is_none();
        if drop_name {
            labels.set(METRIC_NAME, name);
        }
        let mut vals = vec![None; n];
        for p in s.samples {
            let i = usize::try_from((p.t - grid.start).checked_div(grid.step)?).ok()?;
            if i >= n || grid.ts(i) != p.t {
                return None;
            }
            vals[i] = Some(p.v);
        }
        out.push(VSeries {
            labels,
            drop_name,
            vals,
            hists: Vec::new(),
        });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    if out.windows(2).any(|w| w[0].labels == w[1].labels) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Sample, Series};

    fn series(labels: &[(&str, &str)], pts: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(labels.iter().copied()),
            samples: pts.iter().map(|&(t, v)| Sample { t, v }).collect(),
            histograms: Vec::new(),
        }
    }

    #[test]
    fn answers_become_the_raw_paths_vectors() {
        let grid = Grid {
            start: 1000,
            end: 3000,
            step: 1000,
        };
        let got = as_vectors(
            vec![
                series(&[("cluster", "b"), ("a", "1")], &[(2000, 1.5)]),
                series(
                    &[("cluster", "a"), ("a", "1")],
                    &[(1000, 0.5), (3000, -0.0)],
                ),
                // last_over_time keeps the name.
                series(&[("__name__", "x"), ("cluster", "c")], &[(3000, 2.0)]),
            ]
            .into_iter(),
            "x",
            grid,
        )
        .expect("on the grid");
        let labels: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(
            labels,
            [
                "{__name__=\"x\", a=\"1\", cluster=\"a\"}",
                "{__name__=\"x\", a=\"1\", cluster=\"b\"}",
                "{__name__=\"x\", cluster=\"c\"}"
            ]
        );
        assert_eq!(
            got.iter().map(|s| s.drop_name).collect::<Vec<_>>(),
            [true, true, false]
        );
        assert_eq!(got[0].vals, vec![Some(0.5), None, Some(-0.0)]);
        assert!(got[0].vals[2].is_some_and(|v| v.is_sign_negative()));
        assert_eq!(got[1].vals, vec![None, Some(1.5), None]);
        // Off the grid, or one series from two backends: not used.
        let off = as_vectors(
            vec![series(&[("a", "1")], &[(1500, 1.0)])].into_iter(),
            "x",
            grid,
        );
        assert!(off.is_none());
        let twice = as_vectors(
            vec![
                series(&[("a", "1")], &[(1000, 1.0)]),
                series(&[("a", "1")], &[(2000, 1.0)]),
            ]
            .into_iter(),
            "x",
            grid,
        );
        assert!(twice.is_none());
    }

    #[test]
    fn only_per_series_functions_of_one_metric_outside_subqueries() {
        let pushed = |q: &str| -> Vec<String> {
            let e = crate::model::query_text::parse(q).expect("parses");
            let mut found = Vec::new();
            candidates(&e, &mut found);
            found.iter().map(|c| c.label()).collect()
        };
        assert_eq!(
            pushed("sum(rate(a[5m])) / sum by (c) (max_over_time(b{c=\"1\"}[1m] offset 1m))"),
            ["rate(a)", "max_over_time(b)"]
        );
        assert!(pushed("max_over_time(rate(a[1m])[5m:])").is_empty());
        assert!(pushed("rate({__name__=~\"a|b\"}[5m])").is_empty());
        assert!(pushed("absent_over_time(a[5m])").is_empty());
        assert!(pushed("quantile_over_time(0.5, a[5m])").is_empty());
        assert_eq!(
            pushed("label_replace(irate(a[1m]), \"x\", \"$1\", \"c\", \"(.*)\")"),
            ["irate(a)"]
        );
    }
}
