//! Exact pushdown of whole aggregations, the engine's half: which
//! aggregation nodes a backend can answer for its own groups, the text it
//! is sent, and its answers turned into the values the raw path builds,
//! in the order it builds them.
//!
//! An aggregation is pushed whole only when no group can span two
//! backends: its grouping (`by` listing, or `without` not listing, an
//! external label) keeps, for every pair of targeted backends, a label in
//! which their external labels differ (or only one backend is reached).
//! Each group then lives on one backend, and that backend's Prometheus
//! computes it from the same series as one Prometheus holding every
//! cluster would. Exactness also needs the same *order* of those series
//! (Kahan sums, topk ties, the sign of a zero min/max): the union sorts
//! series by their full label set, external labels included; the backend
//! by its own labels. Both orders agree when every external label sorts
//! before every other label of the selected series but `__name__` (asked
//! of each backend's `/api/v1/labels` alongside the query, e.g. `cluster`
//! before `destination_*`), and then the union's groups are every
//! backend's groups, backends in the order of their external label values:
//! the answers are concatenated so. When the labels do not sort so, the
//! node is not pushed whole (its inner range function still may be).
//!
//! Operators: `sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`,
//! `stdvar`, `quantile` (literal φ), `topk`/`bottomk` (literal k): each
//! group's answer is computed by one backend exactly as the union does.
//! Where groups span backends, only operators whose partial results
//! combine exactly (`COMBINED`): `count`, `group`, `min`, `max` folded in
//! the union's order, and `topk`/`bottomk` re-ranked from each backend's
//! best k + 1 (`rerank`: not when a tie or NaN lets Prometheus's heap
//! decide); then the groups come in first-seen order over the backends in
//! turn, as the union's input has them. Not pushed: `count_values`
//! (Prometheus orders its output through a Go map), `limitk`/`limit_ratio`
//! (experimental: a backend may not enable them), and `sum`/`avg`/
//! `stddev`/`stdvar`/`quantile` whose groups may span backends: partial
//! sums are not bit-exact (the union adds every series' value in one
//! Kahan-compensated pass; adding per-backend sums rounds differently),
//! so they are read raw.
//!
//! The inner expression is one metric's selector under per-series
//! operations only: a range function of `pushdown::PER_SERIES`, `abs`,
//! `ceil`, `floor`, `sgn`, unary minus, and `+ - * /` with a number.
//!
//! In a range query the backends answer matrices sorted by label set, not
//! in the order the union builds an inner node in: there an aggregation is
//! pushed whole only where its order cannot matter (the query's root, under
//! parentheses or arithmetic with a number). An instant query's backends
//! answer vectors in evaluation order, so any node may be pushed.

mod rerank;

use std::collections::{BTreeMap, HashMap};

use promql_parser::label::Matcher;
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier, VectorSelector};

use super::plan::{at_ms, duration_ms, offset_ms, Bounds};
use super::pushdown::{single_metric, PER_SERIES};
use super::steps::{Grid, VSeries};
use crate::federation::pushdown::Pushed;
use crate::model::{Labels, METRIC_NAME};
use crate::source::prometheus::{format_api_time, selector_text};

/// Aggregations a backend computes exactly for a group it holds whole.
const WHOLE: &[&str] = &[
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "quantile", "topk", "bottomk",
];

/// Aggregations whose per-backend partial results combine exactly when
/// a group spans backends: counts are integers (their sum is exact below
/// 2^53), `group` is 1, and folding partial minima/maxima in the union's
/// series order (backends in external-label order) with Prometheus's rule
/// (a NaN is replaced by anything; a value only by a strictly smaller or
/// greater one) gives what one pass over all series gives, NaN only when
/// every value is NaN and the same zero sign on ties. `topk`/`bottomk`
/// are re-ranked from every backend's own top k (`rerank`), only where no
/// tie or NaN makes the union's pick depend on its heap.
const COMBINED: &[&str] = &["count", "group", "min", "max", "topk", "bottomk"];

/// Instant-vector functions that map each series' value alone, the same
/// in Go and here.
const MATH: &[&str] = &["abs", "ceil", "floor", "sgn"];

/// Why an aggregation is not pushed whole or combined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum NotWhole {
    #[error("backends with other external label names")]
    LabelNames,
    #[error("a group may span backends")]
    Spans,
    #[error("label {label} sorts before external label {external}")]
    Order { label: String, external: String },
}

/// Identifies an aggregation node of the parsed query (its address).
pub(crate) fn agg_id(a: &AggregateExpr) -> usize {
    a as *const AggregateExpr as usize
}

/// An aggregation that may be pushed whole.
pub(crate) struct AggNode<'a> {
    pub agg: &'a AggregateExpr,
    op: String,
    /// `by` (true) or `without` (false) and its label names.
    include: bool,
    names: Vec<String>,
    param: Option<f64>,
    vs: &'a VectorSelector,
    /// The selector's range, or `None` for an instant selector.
    range_ms: Option<i64>,
    pub name: String,
    pub matchers: Vec<Matcher>,
    /// Whether groups may span backends and the partial results are
    /// combined (set by [`AggNode::partitions`]).
    combine: bool,
}

fn legacy_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        e => e,
    }
}

fn number(e: &Expr) -> Option<f64> {
    match unparen(e) {
        Expr::NumberLiteral(n) if n.val.is_finite() => Some(n.val),
        _ => None,
    }
}

/// The one selector of a per-series inner expression, and its range
/// (`None`: an instant selector).
fn inner_selector(e: &Expr) -> Option<(&VectorSelector, Option<i64>)> {
    match e {
        Expr::Paren(p) => inner_selector(&p.expr),
        Expr::VectorSelector(vs) => Some((vs, None)),
        Expr::Unary(u) => inner_selector(&u.expr),
        Expr::Call(c) if c.args.args.len() == 1 => {
            let arg = c.args.args.first()?;
            if PER_SERIES.contains(&c.func.name) {
                match arg.as_ref() {
                    Expr::MatrixSelector(ms) => Some((&ms.vs, Some(duration_ms(&ms.range)))),
                    _ => None,
                }
            } else if MATH.contains(&c.func.name) {
                inner_selector(arg)
            } else {
                None
            }
        }
        Expr::Binary(b) => {
            let op = b.op.to_string();
            if !["+", "-", "*", "/"].contains(&op.as_str())
                || b.modifier.as_ref().is_some_and(|m| m.return_bool)
            {
                return None;
            }
            match (number(&b.lhs), number(&b.rhs)) {
                (Some(_), None) => inner_selector(&b.rhs),
                (None, Some(_)) => inner_selector(&b.lhs),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `agg` as a node to push whole, if its shape allows.
pub(crate) fn candidate(agg: &AggregateExpr) -> Option<AggNode<'_>> {
    let op = agg.op.to_string().to_lowercase();
    if !WHOLE.contains(&op.as_str()) {
        return None;
    }
    let (include, names) = match &agg.modifier {
        Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
        None => (true, Vec::new()),
    };
    if names.iter().any(|n| !legacy_name(n) || n.starts_with("__")) {
        return None;
    }
    let param = match &agg.param {
        Some(p) => Some(number(p)?),
        None => None,
    };
    let (vs, range_ms) = inner_selector(&agg.expr)?;
    let (name, set) = single_metric(vs)?;
    Some(AggNode {
        agg,
        op,
        include,
        names,
        param,
        vs,
        range_ms,
        name,
        matchers: set,
        combine: false,
    })
}

fn num_text(v: f64) -> String {
    format!("({v:?})")
}

impl AggNode<'_> {
    /// Whether the output keeps label `name` (grouping labels; every
    /// label for topk/bottomk).
    pub fn keeps(&self, name: &str) -> bool {
        if self.selects_series() {
            return true;
        }
        let listed = self.names.iter().any(|n| n == name);
        if self.include {
            listed
        } else {
            !listed && name != METRIC_NAME
        }
    }

    /// Whether the output is some of the input series (topk/bottomk).
    fn selects_series(&self) -> bool {
        matches!(self.op.as_str(), "topk" | "bottomk")
    }

    /// Whether the groups split by label `name`.
    fn groups_by(&self, name: &str) -> bool {
        let listed = self.names.iter().any(|n| n == name);
        if self.include {
            listed
        } else {
            !listed
        }
    }

    /// Whether an instant selector inside reads with the lookback delta.
    pub fn uses_lookback(&self) -> bool {
        self.range_ms.is_none()
    }

    /// The times its selector reads, for a query on `grid`.
    pub fn window(&self, grid: Grid, bounds: Bounds, lookback: i64) -> (i64, i64) {
        let off = offset_ms(&self.vs.offset);
        let back = self.range_ms.unwrap_or(lookback);
        let (s, e) = match at_ms(&self.vs.at, bounds) {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        (s - off - back, e - off)
    }

    /// A short name for the plan header, e.g. `sum by (cluster) (rate(x))`
    /// (`, combined` when partial results are combined).
    pub fn label(&self) -> String {
        let l = self.plain_label();
        if self.combine {
            format!("{l}, combined")
        } else {
            l
        }
    }

    fn plain_label(&self) -> String {
        let grouping = match (&self.agg.modifier, self.include) {
            (None, _) => String::new(),
            (Some(_), true) => format!(" by ({}) ", self.names.join(", ")),
            (Some(_), false) => format!(" without ({}) ", self.names.join(", ")),
        };
        let param = self.param.map(|p| format!("{p}, ")).unwrap_or_default();
        let mut inner = String::new();
        self.short(&self.agg.expr, &mut inner);
        format!("{}{grouping}({param}{inner})", self.op)
    }

    /// The inner expression with its selector as the metric name only.
    fn short(&self, e: &Expr, out: &mut String) {
        match e {
            Expr::Paren(p) => self.short(&p.expr, out),
            Expr::VectorSelector(_) | Expr::MatrixSelector(_) => out.push_str(&self.name),
            Expr::Unary(u) => {
                out.push('-');
                self.short(&u.expr, out);
            }
            Expr::Call(c) => {
                out.push_str(c.func.name);
                out.push('(');
                if let Some(a) = c.args.args.first() {
                    self.short(a, out);
                }
                out.push(')');
            }
            Expr::Binary(b) => {
                let side = |e: &Expr, out: &mut String| match number(e) {
                    Some(v) => out.push_str(&v.to_string()),
                    None => self.short(e, out),
                };
                side(&b.lhs, out);
                out.push_str(&format!(" {} ", b.op));
                side(&b.rhs, out);
            }
            _ => {}
        }
    }

    /// The node's text for a backend that is sent `matchers`.
    pub fn text(&self, matchers: &[Matcher], bounds: Bounds) -> String {
        let grouping = match (&self.agg.modifier, self.include) {
            (None, _) => String::new(),
            (Some(_), true) => format!(" by ({})", self.names.join(", ")),
            (Some(_), false) => format!(" without ({})", self.names.join(", ")),
        };
        // Re-ranking asks each backend for one more than k: a tie at the
        // k-th place then shows in its answer.
        let extra = if self.combine && self.selects_series() {
            1.0
        } else {
            0.0
        };
        let param = self
            .param
            .map(|p| format!("{}, ", num_text(p + extra)))
            .unwrap_or_default();
        let mut inner = String::new();
        self.render(&self.agg.expr, matchers, bounds, &mut inner);
        format!("{}{grouping} ({param}{inner})", self.op)
    }

    fn selector(&self, matchers: &[Matcher], range: Option<i64>, bounds: Bounds) -> String {
        let mut t = selector_text(matchers);
        if let Some(r) = range {
            t.push_str(&format!("[{r}ms]"));
        }
        let off = offset_ms(&self.vs.offset);
        if off != 0 {
            t.push_str(&format!(" offset {off}ms"));
        }
        if let Some(at) = at_ms(&self.vs.at, bounds) {
            t.push_str(&format!(" @ {}", format_api_time(at)));
        }
        t
    }

    /// Renders an inner expression `candidate` accepted.
    fn render(&self, e: &Expr, matchers: &[Matcher], bounds: Bounds, out: &mut String) {
        match e {
            Expr::Paren(p) => self.render(&p.expr, matchers, bounds, out),
            Expr::VectorSelector(_) => out.push_str(&self.selector(matchers, None, bounds)),
            Expr::Unary(u) => {
                out.push_str("-(");
                self.render(&u.expr, matchers, bounds, out);
                out.push(')');
            }
            Expr::Call(c) => {
                out.push_str(c.func.name);
                out.push('(');
                if let Some(a) = c.args.args.first() {
                    match a.as_ref() {
                        Expr::MatrixSelector(_) => {
                            out.push_str(&self.selector(matchers, self.range_ms, bounds))
                        }
                        a => self.render(a, matchers, bounds, out),
                    }
                }
                out.push(')');
            }
            Expr::Binary(b) => {
                let side = |e: &Expr, out: &mut String| match number(e) {
                    Some(v) => out.push_str(&num_text(v)),
                    None => {
                        out.push('(');
                        self.render(e, matchers, bounds, out);
                        out.push(')');
                    }
                };
                side(&b.lhs, out);
                out.push_str(&format!(" {} ", b.op));
                side(&b.rhs, out);
            }
            // Not accepted by `candidate`.
            _ => {}
        }
    }

    /// Whether the node can be pushed to `targets` (their external
    /// labels): they must share their label names, and either each pair
    /// differs in one the grouping keeps (no group spans two of them), or
    /// the operator's partial results combine exactly (`combine` is set).
    pub fn partitions(&mut self, targets: &[&BTreeMap<String, String>]) -> Result<(), NotWhole> {
        let whole = self.partitions_whole(targets);
        if whole.is_err() && COMBINED.contains(&self.op.as_str()) && self.agg_names_ok(targets) {
            self.combine = true;
            return Ok(());
        }
        whole
    }

    fn agg_names_ok(&self, targets: &[&BTreeMap<String, String>]) -> bool {
        targets
            .first()
            .is_some_and(|f| targets.iter().all(|t| t.keys().eq(f.keys())))
    }

    fn partitions_whole(&self, targets: &[&BTreeMap<String, String>]) -> Result<(), NotWhole> {
        let Some(first) = targets.first() else {
            return Ok(());
        };
        if targets.iter().any(|t| !t.keys().eq(first.keys())) {
            return Err(NotWhole::LabelNames);
        }
        for (i, a) in targets.iter().enumerate() {
            for b in &targets[i + 1..] {
                let apart = a
                    .iter()
                    .any(|(k, v)| self.groups_by(k) && b.get(k).is_some_and(|w| w != v));
                if !apart {
                    return Err(NotWhole::Spans);
                }
            }
        }
        Ok(())
    }
}

/// One partial result `v` folded into `acc` (from backends before it).
fn fold(op: &str, acc: f64, v: f64) -> f64 {
    match op {
        "count" => acc + v,
        "min" if acc > v || acc.is_nan() => v,
        "max" if acc < v || acc.is_nan() => v,
        _ => acc,
    }
}

/// Why the union orders a backend's series otherwise than it does, if it
/// may: a label of its series (`names`, from its labels API) sorting
/// before one of its external labels, or one of them.
pub(crate) fn order_kept(
    external: &BTreeMap<String, String>,
    names: &[String],
) -> Result<(), NotWhole> {
    let Some(last) = external.keys().next_back() else {
        return Ok(());
    };
    match names
        .iter()
        .find(|n| n.as_str() != METRIC_NAME && n.as_str() <= last.as_str())
    {
        Some(n) => Err(NotWhole::Order {
            label: n.clone(),
            external: last.clone(),
        }),
        None => Ok(()),
    }
}

/// The backends' answers (`answers[i]` from the backend with external
/// labels `external[i]`) as the raw path builds the node: backends in the
/// order of their external label values, each answer in its own order,
/// the external labels the output keeps added, and for topk/bottomk the
/// metric name its input had (marked to be dropped); groups on several
/// backends combined. `None` when a point is off the grid, two series
/// share a label set where they may not, or a re-ranking is not certain.
pub(crate) fn as_values(
    node: &AggNode<'_>,
    answers: Vec<Pushed>,
    external: &[BTreeMap<String, String>],
    grid: Grid,
) -> Option<Vec<VSeries>> {
    let mut order: Vec<usize> = (0..answers.len()).collect();
    order.sort_by(|&a, &b| {
        let va = external.get(a).map(|e| e.values().collect::<Vec<_>>());
        let vb = external.get(b).map(|e| e.values().collect::<Vec<_>>());
        va.cmp(&vb)
    });
    let mut answers: Vec<Option<Pushed>> = answers.into_iter().map(Some).collect();
    let n = grid.len();
    // Every answer series in the union's order, with its backend's rank.
    let mut all: Vec<(usize, VSeries)> = Vec::new();
    for (rank, i) in order.into_iter().enumerate() {
        let a = answers.get_mut(i)?.take()?;
        let ext = external.get(i)?;
        for s in a.series {
            let mut labels = s.labels;
            for (k, v) in ext {
                if node.keeps(k) && labels.get(k).is_none() {
                    labels.set(k, v);
                }
            }
            let mut drop_name = false;
            if node.selects_series() && labels.get(METRIC_NAME).is_none() {
                labels.set(METRIC_NAME, &node.name);
                drop_name = true;
            }
            let mut vals = vec![None; n];
            for p in s.samples {
                let i = usize::try_from((p.t - grid.start).checked_div(grid.step)?).ok()?;
                if i >= n || grid.ts(i) != p.t {
                    return None;
                }
                vals[i] = Some(p.v);
            }
            all.push((
                rank,
                VSeries {
                    labels,
                    drop_name,
                    vals,
                    hists: Vec::new(),
                },
            ));
        }
    }
    if node.combine && node.selects_series() {
        let k = node.param?;
        let group = |l: &Labels| {
            Labels::from_pairs(
                l.iter()
                    .filter(|x| x.name != METRIC_NAME && node.groups_by(&x.name))
                    .map(|x| (x.name.as_str(), x.value.as_str())),
            )
        };
        let top = node.op == "topk";
        return rerank::rerank(all, k, top, group, n == 1);
    }
    let mut out: Vec<VSeries> = Vec::new();
    let mut seen: HashMap<Labels, usize> = HashMap::new();
    for (_, s) in all {
        if let Some(&at) = seen.get(&s.labels) {
            // A group on several backends: only combined operators.
            if !node.combine {
                return None;
            }
            let acc = &mut out.get_mut(at)?.vals;
            for (a, v) in acc.iter_mut().zip(s.vals) {
                *a = match (*a, v) {
                    (Some(a), Some(v)) => Some(fold(&node.op, a, v)),
                    (a, v) => a.or(v),
                };
            }
            continue;
        }
        seen.insert(s.labels.clone(), out.len());
        out.push(s);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
