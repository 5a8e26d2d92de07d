//! Plans a query's reads: finds every selector with the time range it needs,
//! then fetches them all from the source at once.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use futures::future::try_join_all;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use super::steps::Grid;
use super::EngineError;
use crate::model::{Series, METRIC_NAME};
use crate::source::{Select, SelectHints, Source};

/// Step of a subquery written without one (`[5m:]`), as Prometheus's
/// default global evaluation interval.
pub(crate) const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The query-wide times `@ start()` and `@ end()` refer to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub start: i64,
    pub end: i64,
}

/// Identifies a selector node of the parsed query (its address, stable while
/// the query is borrowed).
pub(crate) fn node_id(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}

/// The fixed evaluation time an `@` modifier sets, if any.
pub(crate) fn at_ms(at: &Option<AtModifier>, b: Bounds) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(b.start),
        Some(AtModifier::End) => Some(b.end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// The grid a subquery evaluates its inner expression on, aligned to its
/// step as Prometheus aligns it.
pub(crate) fn subquery_grid(outer: Grid, sq: &SubqueryExpr, b: Bounds) -> Grid {
    let step = sq
        .step
        .as_ref()
        .map(duration_ms)
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_SUBQUERY_STEP_MS);
    let off = offset_ms(&sq.offset);
    let range = duration_ms(&sq.range);
    let (os, oe) = match at_ms(&sq.at, b) {
        Some(t) => (t, t),
        None => (outer.start, outer.end),
    };
    let lo = os - off - range;
    let mut start = step * lo.div_euclid(step);
    if start <= lo {
        start += step;
    }
    Grid {
        start,
        end: oe - off,
        step,
    }
}

/// The info metric `info()` reads without a second argument.
pub(crate) const DEFAULT_INFO_METRIC: &str = "target_info";

/// The selector `info()` reads without a second argument.
pub(crate) static DEFAULT_INFO: std::sync::LazyLock<VectorSelector> =
    std::sync::LazyLock::new(|| VectorSelector::from(DEFAULT_INFO_METRIC));

/// One selector to read: its matcher alternatives and time range.
struct Need<'a> {
    vs: &'a VectorSelector,
    /// Metric name to select when the selector names none (info selectors).
    default_name: Option<&'static str>,
    mint: i64,
    maxt: i64,
    hints: SelectHints,
}

struct Planner<'a> {
    bounds: Bounds,
    lookback: i64,
    needs: Vec<Need<'a>>,
}

impl<'a> Planner<'a> {
    fn walk(&mut self, e: &'a Expr, grid: Grid, func: Option<&str>) {
        match e {
            Expr::VectorSelector(vs) => self.need(vs, grid, self.lookback, func, 0),
            Expr::MatrixSelector(ms) => {
                let r = duration_ms(&ms.range);
                self.need(&ms.vs, grid, r, func, r)
            }
            Expr::Subquery(sq) => {
                let inner = subquery_grid(grid, sq, self.bounds);
                self.walk(&sq.expr, inner, None)
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.walk(p, grid, None);
                }
                self.walk(&a.expr, grid, None)
            }
            Expr::Unary(u) => self.walk(&u.expr, grid, None),
            Expr::Binary(b) => {
                self.walk(&b.lhs, grid, None);
                self.walk(&b.rhs, grid, None)
            }
            Expr::Paren(p) => self.walk(&p.expr, grid, func),
            Expr::Call(c) => {
                if c.func.name == "info" {
                    match c.args.args.get(1).map(|a| a.as_ref()) {
                        Some(Expr::VectorSelector(vs)) => self.need_named(
                            vs,
                            grid,
                            self.lookback,
                            Some("info"),
                            0,
                            Some(DEFAULT_INFO_METRIC),
                        ),
                        _ => self.need_named(
                            &DEFAULT_INFO,
                            grid,
                            self.lookback,
                            Some("info"),
                            0,
                            Some(DEFAULT_INFO_METRIC),
                        ),
                    }
                    if let Some(a) = c.args.args.first() {
                        self.walk(a, grid, Some("info"));
                    }
                    return;
                }
                for a in &c.args.args {
                    self.walk(a, grid, Some(c.func.name));
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn need(
        &mut self,
        vs: &'a VectorSelector,
        grid: Grid,
        back: i64,
        func: Option<&str>,
        range: i64,
    ) {
        self.need_named(vs, grid, back, func, range, None)
    }

    fn need_named(
        &mut self,
        vs: &'a VectorSelector,
        grid: Grid,
        back: i64,
        func: Option<&str>,
        range: i64,
        default_name: Option<&'static str>,
    ) {
        let off = offset_ms(&vs.offset);
        let (s, e) = match at_ms(&vs.at, self.bounds) {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        let (mint, maxt) = (s - off - back, e - off);
        let hints = SelectHints {
            start_ms: grid.start,
            end_ms: grid.end,
            step_ms: if grid.len() > 1 { grid.step } else { 0 },
            func: func.map(str::to_string),
            range_ms: range,
        };
        if let Some(n) = self.needs.iter_mut().find(|n| std::ptr::eq(n.vs, vs)) {
            n.mint = n.mint.min(mint);
            n.maxt = n.maxt.max(maxt);
            return;
        }
        self.needs.push(Need {
            vs,
            default_name,
            mint,
            maxt,
            hints,
        });
    }
}

/// The matcher sets a selector stands for: one per `or` alternative, each
/// with the metric name matcher (`default` when the selector names no metric).
pub(crate) fn matcher_sets_with_default(
    vs: &VectorSelector,
    default: Option<&str>,
) -> Vec<Vec<Matcher>> {
    let has_name = vs.name.is_some()
        || vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
            .any(|m| m.name == METRIC_NAME);
    let name = vs
        .name
        .clone()
        .or_else(|| default.filter(|_| !has_name).map(str::to_string))
        .map(|n| Matcher::new(MatchOp::Equal, METRIC_NAME, &n));
    let base: Vec<Matcher> = name
        .into_iter()
        .chain(vs.matchers.matchers.iter().cloned())
        .collect();
    if vs.matchers.or_matchers.is_empty() {
        return vec![base];
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|alt| base.iter().cloned().chain(alt.iter().cloned()).collect())
        .collect()
}

/// Every selector's series, by node.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    map: HashMap<usize, Vec<Series>>,
}

impl Fetched {
    pub fn get(&self, vs: &VectorSelector) -> &[Series] {
        self.map.get(&node_id(vs)).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Finds every selector of `expr` evaluated on `grid` and fetches them all concurrently.
pub(crate) async fn fetch(
    source: &dyn Source,
    expr: &Expr,
    grid: Grid,
    bounds: Bounds,
    lookback: i64,
) -> Result<(Fetched, Vec<String>), EngineError> {
    let mut p = Planner {
        bounds,
        lookback,
        needs: Vec::new(),
    };
    p.walk(expr, grid, None);
    let mut selects = Vec::new();
    for (i, n) in p.needs.iter().enumerate() {
        for m in matcher_sets_with_default(n.vs, n.default_name) {
            selects.push((
                i,
                Select {
                    matchers: m,
                    start_ms: n.mint,
                    end_ms: n.maxt,
                    hints: n.hints.clone(),
                    read: Default::default(),
                },
            ));
        }
    }
    let outs = try_join_all(selects.iter().map(|(_, s)| source.select(s))).await?;
    let mut fetched = Fetched::default();
    let mut warnings = Vec::new();
    for ((i, _), out) in selects.iter().zip(outs) {
        for w in out.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let id = node_id(p.needs[*i].vs);
        let entry = fetched.map.entry(id).or_default();
        if entry.is_empty() {
            *entry = out.series;
        } else {
            entry.extend(out.series);
            entry.sort_by(|a, b| a.labels.cmp(&b.labels));
            entry.dedup_by(|a, b| a.labels == b.labels);
        }
    }
    Ok((fetched, warnings))
}
