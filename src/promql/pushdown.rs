//! Exact pushdown, the engine's half: finds the nodes whose answer for the
//! whole fleet is exactly the union of every backend's own answer (or
//! combines exactly from them), has the federation send them to each
//! backend's query API, and hands the evaluator their values in place of
//! raw samples.
//!
//! Pushed: a per-series range function (`rate`, `increase`, `*_over_time`,
//! ...) of one metric's selector, outside subqueries. Each output series
//! depends on one input series only; when no series lives on two backends
//! (the federation checks: external labels tell every pair apart, no HA
//! replica), each backend's Prometheus 3.8 computes it from the same
//! samples as the union's, bit for bit. The values come back as the raw
//! path would build them (metric name kept, to be dropped at the end), in
//! its order (sorted by label set), so that the aggregations above sum the
//! same terms in the same order. Whole aggregations over such nodes:
//! `pushdown_agg`. Everything else, and every node a backend answers with
//! a failure, an annotation or a native histogram, is read raw.
//!
//! What is pushed is planned before any backend is asked ([`plan`]), so
//! that the pushed sub-queries ([`Pushdown::run`]) and the raw reads of
//! the rest start together; the few nodes the backends then do not answer
//! are read after.

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Call, Expr, MatrixSelector, VectorSelector};

use super::plan::{at_ms, duration_ms, matcher_sets_with_default, offset_ms, Bounds};
use super::pushdown_agg::{self, agg_id, AggNode};
use super::steps::{Grid, VSeries};
use crate::federation::pushdown::{NotPushed, PushGrid, Target};
use crate::federation::Federation;
use crate::model::METRIC_NAME;
use crate::source::prometheus::{format_api_time, selector_text};

/// Functions whose output series each depend on one input series and whose
/// results Prometheus computes the same on any server holding that series.
/// Not `absent_over_time` (it answers for series no backend holds), nor the
/// experimental ones (a backend may not have them enabled).
pub(crate) const PER_SERIES: &[&str] = &[
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

/// The pushed nodes' values, by node, a note per node considered, and
/// the planned nodes the backends did not answer (read raw, but for the
/// nodes inside them in `values`).
#[derive(Debug, Default)]
pub(crate) struct PushPlan {
    pub values: HashMap<usize, Vec<VSeries>>,
    pub notes: Vec<String>,
    pub raw: HashSet<usize>,
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
pub(crate) fn single_metric(vs: &VectorSelector) -> Option<(String, Vec<Matcher>)> {
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

/// A node to push: a per-series function, or a whole aggregation with
/// the per-series functions inside it to push instead when it cannot be.
enum Node<'a> {
    Series(Candidate<'a>),
    Agg(AggNode<'a>, Vec<Candidate<'a>>),
}

fn is_number(e: &Expr) -> bool {
    match e {
        Expr::Paren(p) => is_number(&p.expr),
        Expr::NumberLiteral(_) => true,
        _ => false,
    }
}

/// Every pushable node of `e` evaluated on the query's own grid (not
/// under a subquery, whose grid differs). Whole aggregations only in an
/// `instant` query (the backends answer vectors in evaluation order) or
/// where `any_order` (the order of their output cannot change the answer:
/// a range query's root, under parentheses or arithmetic with a number).
fn candidates<'a>(e: &'a Expr, instant: bool, any_order: bool, out: &mut Vec<Node<'a>>) {
    let any_order = instant || any_order;
    match e {
        Expr::Aggregate(a) => {
            if any_order {
                if let Some(node) = pushdown_agg::candidate(a) {
                    let mut inner = Vec::new();
                    candidates(&a.expr, instant, false, &mut inner);
                    let inner = inner
                        .into_iter()
                        .filter_map(|n| match n {
                            Node::Series(c) => Some(c),
                            Node::Agg(..) => None,
                        })
                        .collect();
                    out.push(Node::Agg(node, inner));
                    return;
                }
            }
            if let Some(p) = &a.param {
                candidates(p, instant, false, out);
            }
            candidates(&a.expr, instant, false, out)
        }
        Expr::Unary(u) => candidates(&u.expr, instant, any_order, out),
        Expr::Binary(b) => {
            let keep = any_order && (is_number(&b.lhs) || is_number(&b.rhs));
            candidates(&b.lhs, instant, keep, out);
            candidates(&b.rhs, instant, keep, out)
        }
        Expr::Paren(p) => candidates(&p.expr, instant, any_order, out),
        Expr::Call(c) => {
            if PER_SERIES.contains(&c.func.name) && c.args.args.len() == 1 {
                if let Some(Expr::MatrixSelector(ms)) = c.args.args.first().map(|a| a.as_ref()) {
                    if let Some((name, matchers)) = single_metric(&ms.vs) {
                        out.push(Node::Series(Candidate {
                            call: c,
                            ms,
                            name,
                            matchers,
                        }));
                    }
                }
                return;
            }
            if c.func.name == "info" {
                return;
            }
            for a in &c.args.args {
                candidates(a, instant, false, out);
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

/// A node with the backends it goes to.
struct Planned<'a> {
    node: Node<'a>,
    targets: Vec<Target<'a>>,
}

/// What a query pushes down, decided before any backend is asked (so that
/// the raw reads of the rest start at the same time).
pub(crate) struct Pushdown<'a> {
    fed: &'a Federation,
    nodes: Vec<Planned<'a>>,
    notes: Vec<String>,
    grid: Grid,
    bounds: Bounds,
    lookback: i64,
    instant: bool,
}

impl Candidate<'_> {
    fn window(&self, grid: Grid, bounds: Bounds) -> (i64, i64) {
        let vs = &self.ms.vs;
        let off = offset_ms(&vs.offset);
        let range = duration_ms(&self.ms.range);
        let (s, e) = match at_ms(&vs.at, bounds) {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        (s - off - range, e - off)
    }
}

/// Plans the pushdown of every node of `expr` it can (evaluated on `grid`
/// with `lookback`; `instant` for an instant query).
pub(crate) fn plan<'a>(
    fed: &'a Federation,
    expr: &'a Expr,
    grid: Grid,
    bounds: Bounds,
    lookback: i64,
    instant: bool,
) -> Pushdown<'a> {
    let mut p = Pushdown {
        fed,
        nodes: Vec::new(),
        notes: Vec::new(),
        grid,
        bounds,
        lookback,
        instant,
    };
    let mut found = Vec::new();
    candidates(expr, instant, true, &mut found);
    if found.is_empty() {
        return p;
    }
    if !instant && grid.len() > MAX_RANGE_POINTS {
        p.notes.push(format!(
            "raw: {} steps, over a backend's {MAX_RANGE_POINTS} points",
            grid.len()
        ));
        return p;
    }
    for node in found {
        p.add(node);
    }
    p
}

impl<'a> Pushdown<'a> {
    /// Adds `node` with its targets, or notes why it stays raw (a whole
    /// aggregation falls back to the functions inside it).
    fn add(&mut self, node: Node<'a>) {
        match node {
            Node::Series(c) => {
                let (s, e) = c.window(self.grid, self.bounds);
                match self.fed.push_targets(&c.matchers, s, e) {
                    Ok(targets) => self.nodes.push(Planned {
                        node: Node::Series(c),
                        targets,
                    }),
                    Err(why) => self.notes.push(format!("raw {}: {why}", c.label())),
                }
            }
            Node::Agg(mut a, inner) => {
                let (s, e) = a.window(self.grid, self.bounds, self.lookback);
                let targets = self
                    .fed
                    .push_targets(&a.matchers, s, e)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        let ext: Vec<_> =
                            t.iter().map(|t| t.backend.labels().into_owned()).collect();
                        a.partitions(&ext.iter().collect::<Vec<_>>())
                            .map(|()| t)
                            .map_err(|e| e.to_string())
                    });
                match targets {
                    Ok(targets) => self.nodes.push(Planned {
                        node: Node::Agg(a, inner),
                        targets,
                    }),
                    Err(why) => {
                        if inner.is_empty() {
                            self.notes.push(format!("raw {}: {why}", a.label()));
                        }
                        for c in inner {
                            self.add(Node::Series(c));
                        }
                    }
                }
            }
        }
    }

    /// The nodes whose selectors the raw reads leave out.
    pub fn node_ids(&self) -> HashSet<usize> {
        self.nodes
            .iter()
            .map(|p| match &p.node {
                Node::Series(c) => call_id(c.call),
                Node::Agg(a, _) => agg_id(a.agg),
            })
            .collect()
    }

    fn push_grid(&self, lookback: bool) -> PushGrid {
        PushGrid {
            start_ms: self.grid.start,
            end_ms: self.grid.end,
            step_ms: if self.instant { 0 } else { self.grid.step },
            lookback_ms: lookback.then_some(self.lookback),
        }
    }

    async fn series(
        &self,
        c: &Candidate<'_>,
        targets: &[Target<'_>],
    ) -> Result<(Vec<VSeries>, Vec<String>), NotPushed> {
        let answers = self
            .fed
            .push_query(
                targets,
                Some(&c.matchers),
                |m| c.text(m, self.bounds),
                self.push_grid(false),
            )
            .await?;
        let names: Vec<String> = answers.iter().map(|a| a.backend.clone()).collect();
        let series = answers.into_iter().flat_map(|a| a.series);
        let values = as_vectors(series, &c.name, self.grid).ok_or_else(|| NotPushed::Answer {
            backend: names.join(","),
            why: "series off the grid or on two backends".into(),
        })?;
        Ok((values, names))
    }

    async fn whole(
        &self,
        a: &AggNode<'_>,
        targets: &[Target<'_>],
    ) -> Result<(Vec<VSeries>, Vec<String>), NotPushed> {
        let (s, e) = a.window(self.grid, self.bounds, self.lookback);
        let (labels, answers) = futures::join!(
            self.fed.push_label_names(targets, s, e),
            self.fed.push_query(
                targets,
                None,
                |m| a.text(m, self.bounds),
                self.push_grid(a.uses_lookback()),
            )
        );
        let (labels, answers) = (labels?, answers?);
        for (t, names) in targets.iter().zip(&labels) {
            pushdown_agg::order_kept(&t.backend.labels(), names).map_err(|why| {
                NotPushed::Answer {
                    backend: t.backend.name.clone(),
                    why: why.to_string(),
                }
            })?;
        }
        let names: Vec<String> = answers.iter().map(|a| a.backend.clone()).collect();
        let external: Vec<_> = targets
            .iter()
            .map(|t| t.backend.labels().into_owned())
            .collect();
        let values =
            pushdown_agg::as_values(a, answers, &external, self.grid).ok_or_else(|| {
                NotPushed::Answer {
                    backend: names.join(","),
                    why: "not certain (a tie or NaN where topk/bottomk re-rank, a group on two backends or a point off the grid)".into(),
                }
            })?;
        Ok((values, names))
    }

    /// Asks the backends for every planned node; a whole aggregation they
    /// cannot answer falls back to the functions inside it. Nodes left
    /// without values are listed in `raw`, to be read.
    pub async fn run(self) -> PushPlan {
        let this = &self;
        let mut plan = PushPlan {
            notes: self.notes.clone(),
            ..PushPlan::default()
        };
        let asks = self.nodes.iter().map(|p| async move {
            match &p.node {
                Node::Series(c) => this.series(c, &p.targets).await,
                Node::Agg(a, _) => this.whole(a, &p.targets).await,
            }
        });
        let outcomes = join_all(asks).await;
        let mut retry = Vec::new();
        for (p, outcome) in self.nodes.iter().zip(outcomes) {
            let (id, label) = match &p.node {
                Node::Series(c) => (call_id(c.call), c.label()),
                Node::Agg(a, _) => (agg_id(a.agg), a.label()),
            };
            match outcome {
                Ok((values, names)) => {
                    plan.notes
                        .push(format!("pushed {label} to {}", names.join(",")));
                    plan.values.insert(id, values);
                }
                Err(why) => {
                    plan.notes.push(format!("raw {label}: {why}"));
                    plan.raw.insert(id);
                    if let Node::Agg(_, inner) = &p.node {
                        retry.extend(inner.iter());
                    }
                }
            }
        }
        // The functions inside an aggregation the backends could not
        // answer whole: asked now, after it.
        let asks = retry.iter().map(|c| async move {
            let (s, e) = c.window(this.grid, this.bounds);
            let targets = this.fed.push_targets(&c.matchers, s, e)?;
            this.series(c, &targets).await
        });
        for (c, outcome) in retry.iter().zip(join_all(asks).await) {
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
mod concurrent;
#[cfg(test)]
mod tests;
