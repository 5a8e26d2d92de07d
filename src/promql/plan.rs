//! Plans a query's reads: finds every selector with the time range it needs,
//! then fetches them all from the source at once.

mod narrow;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use super::steps::Grid;
use super::EngineError;
use crate::model::{is_stale_nan, Labels, Sample, Series, METRIC_NAME};
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

/// Largest time or duration the engine handles (±2^61 ms), so that sums of
/// a few never overflow.
const MAX_MS: i64 = 1 << 61;

pub(crate) fn duration_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(MAX_MS).min(MAX_MS)
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
    /// Call and aggregation nodes answered by pushdown: their selectors
    /// are not read.
    pushed: &'a HashSet<usize>,
    /// When set, only the selectors under these nodes are read (how many
    /// of them the walk is inside).
    only: Option<&'a HashSet<usize>>,
    inside: usize,
}

impl<'a> Planner<'a> {
    fn walk(&mut self, e: &'a Expr, grid: Grid, func: Option<&str>) {
        let id = match e {
            Expr::Call(c) => Some(super::pushdown::call_id(c)),
            Expr::Aggregate(a) => Some(super::pushdown_agg::agg_id(a)),
            _ => None,
        };
        if id.is_some_and(|id| self.pushed.contains(&id)) {
            return;
        }
        let entered = matches!((self.only, id), (Some(o), Some(id)) if o.contains(&id));
        self.inside += usize::from(entered);
        self.walk_node(e, grid, func);
        self.inside -= usize::from(entered);
    }

    fn walk_node(&mut self, e: &'a Expr, grid: Grid, func: Option<&str>) {
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
        if self.only.is_some() && self.inside == 0 {
            return;
        }
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

/// One fetched series; its samples are shared with range vectors read from it.
#[derive(Debug)]
pub(crate) struct FetchedSeries {
    pub labels: Labels,
    pub samples: Arc<Vec<Sample>>,
    /// Native histogram samples in time order.
    pub histograms: Arc<Vec<crate::model::histogram::HistogramSample>>,
    /// Whether any sample is a staleness marker.
    pub has_stale: bool,
}

/// Every selector's series, by node (selectors with equal matchers and
/// function hint share one read).
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    sets: Vec<Vec<FetchedSeries>>,
    by_node: HashMap<usize, usize>,
    /// The values of the call nodes pushed down, by node.
    pub pushed: HashMap<usize, Vec<super::steps::VSeries>>,
}

impl Fetched {
    /// Samples held over every read (a read shared by selectors, or
    /// narrowed from another, counted each time).
    pub fn sample_count(&self) -> usize {
        self.sets.iter().flatten().map(|s| s.samples.len()).sum()
    }

    /// Adds the reads of `other` (of other selector nodes).
    pub fn absorb(&mut self, other: Fetched) {
        let base = self.sets.len();
        self.sets.extend(other.sets);
        self.by_node
            .extend(other.by_node.into_iter().map(|(n, i)| (n, base + i)));
    }

    pub fn get(&self, vs: &VectorSelector) -> &[FetchedSeries] {
        self.by_node
            .get(&node_id(vs))
            .and_then(|&i| self.sets.get(i))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// One read from the source: the union of the time ranges of every selector
/// with these matcher sets.
struct Read {
    key: String,
    sets: Vec<Vec<Matcher>>,
    mint: i64,
    maxt: i64,
    hints: SelectHints,
    nodes: Vec<usize>,
}

fn matchers_key(sets: &[Vec<Matcher>]) -> String {
    let mut alts: Vec<String> = sets
        .iter()
        .map(|set| {
            let mut ms: Vec<String> = set
                .iter()
                .map(|m| format!("{}{}{:?}", m.name, m.op, m.value))
                .collect();
            ms.sort();
            ms.join(",")
        })
        .collect();
    alts.sort();
    alts.join(" or ")
}

/// Finds every selector of `expr` evaluated on `grid` (but under the
/// `pushed` nodes) and fetches them all concurrently.
pub(crate) async fn fetch(
    source: &dyn Source,
    expr: &Expr,
    grid: Grid,
    bounds: Bounds,
    lookback: i64,
    pushed: &HashSet<usize>,
) -> Result<(Fetched, Vec<String>), EngineError> {
    fetch_some(source, expr, grid, bounds, lookback, pushed, None).await
}

/// As [`fetch`], only the selectors under the nodes `only`.
pub(crate) async fn fetch_under(
    source: &dyn Source,
    expr: &Expr,
    grid: Grid,
    bounds: Bounds,
    lookback: i64,
    pushed: &HashSet<usize>,
    only: &HashSet<usize>,
) -> Result<(Fetched, Vec<String>), EngineError> {
    fetch_some(source, expr, grid, bounds, lookback, pushed, Some(only)).await
}

async fn fetch_some(
    source: &dyn Source,
    expr: &Expr,
    grid: Grid,
    bounds: Bounds,
    lookback: i64,
    pushed: &HashSet<usize>,
    only: Option<&HashSet<usize>>,
) -> Result<(Fetched, Vec<String>), EngineError> {
    let mut p = Planner {
        bounds,
        lookback,
        needs: Vec::new(),
        pushed,
        only,
        inside: 0,
    };
    p.walk(expr, grid, None);
    let mut reads: Vec<Read> = Vec::new();
    for n in &p.needs {
        let sets = matcher_sets_with_default(n.vs, n.default_name);
        // Reads are shared only under the same function hint: the
        // federation treats samples for rate-like functions differently.
        let key = format!(
            "{}|{}",
            n.hints.func.as_deref().unwrap_or(""),
            matchers_key(&sets)
        );
        match reads.iter_mut().find(|r| r.key == key) {
            Some(r) => {
                r.mint = r.mint.min(n.mint);
                r.maxt = r.maxt.max(n.maxt);
                r.hints.range_ms = r.hints.range_ms.max(n.hints.range_ms);
                r.nodes.push(node_id(n.vs));
            }
            None => reads.push(Read {
                key,
                sets,
                mint: n.mint,
                maxt: n.maxt,
                hints: n.hints.clone(),
                nodes: vec![node_id(n.vs)],
            }),
        }
    }
    // Selectors that differ from another only in matchers the engine can
    // apply itself are taken from its series (the seed's two halves).
    let replicas = source.replica_labels(&Default::default());
    let narrowed = narrow::narrow(
        &reads
            .iter()
            .map(|r| narrow::ReadShape {
                func: r.hints.func.as_deref().unwrap_or(""),
                sets: &r.sets,
                mint: r.mint,
                maxt: r.maxt,
            })
            .collect::<Vec<_>>(),
        replicas.as_deref(),
    );
    let mut selects = Vec::new();
    for (i, r) in reads.iter().enumerate() {
        if narrowed[i].is_some() {
            continue;
        }
        for m in &r.sets {
            selects.push((
                i,
                Select {
                    matchers: m.clone(),
                    start_ms: r.mint,
                    end_ms: r.maxt,
                    hints: r.hints.clone(),
                    read: Default::default(),
                },
            ));
        }
    }
    // One call for every select: a backend that reads several selects in
    // one request (remote read) gets few requests, not one per select.
    let batch: Vec<Select> = selects.iter().map(|(_, s)| s.clone()).collect();
    let outs = source
        .select_many(&batch)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    drop(batch);
    let mut per_read: Vec<Vec<Series>> = (0..reads.len()).map(|_| Vec::new()).collect();
    let mut warnings = Vec::new();
    for ((i, _), out) in selects.iter().zip(outs) {
        for w in out.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let entry = &mut per_read[*i];
        if entry.is_empty() {
            *entry = out.series;
        } else {
            // Or-alternatives: union by label set.
            entry.extend(out.series);
            entry.sort_by(|a, b| a.labels.cmp(&b.labels));
            entry.dedup_by(|a, b| a.labels == b.labels);
        }
    }
    let mut sets: Vec<Vec<FetchedSeries>> = per_read
        .into_iter()
        .map(|series| {
            series
                .into_iter()
                .map(|s| FetchedSeries {
                    has_stale: s.samples.iter().any(|p| is_stale_nan(p.v)),
                    labels: s.labels,
                    samples: Arc::new(s.samples),
                    histograms: Arc::new(s.histograms),
                })
                .collect()
        })
        .collect();
    for (i, n) in narrowed.iter().enumerate() {
        let Some(n) = n else { continue };
        // Bases are never narrowed themselves; the samples are shared.
        let kept: Vec<FetchedSeries> = sets
            .get(n.base)
            .map(|base| {
                base.iter()
                    .filter(|s| n.keeps(&s.labels))
                    .map(|s| FetchedSeries {
                        labels: s.labels.clone(),
                        samples: Arc::clone(&s.samples),
                        histograms: Arc::clone(&s.histograms),
                        has_stale: s.has_stale,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(slot) = sets.get_mut(i) {
            *slot = kept;
        }
    }
    let by_node = reads
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.nodes.iter().map(move |&n| (n, i)))
        .collect();
    Ok((
        Fetched {
            sets,
            by_node,
            pushed: HashMap::new(),
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::future::BoxFuture;

    use super::*;
    use crate::promql::{Engine, QueryOptions};
    use crate::source::{SelectOutput, SourceError};

    /// Records every select it is asked for and answers with nothing.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Select>>);

    impl Source for Recorder {
        fn select<'a>(
            &'a self,
            sel: &'a Select,
        ) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
            if let Ok(mut v) = self.0.lock() {
                v.push(sel.clone());
            }
            Box::pin(async { Ok(SelectOutput::default()) })
        }
    }

    fn describe(s: &Select) -> (Vec<String>, i64, i64, Option<String>, i64, i64) {
        let mut m: Vec<String> = s
            .matchers
            .iter()
            .map(|m| format!("{}{}{}", m.name, m.op, m.value))
            .collect();
        m.sort();
        (
            m,
            s.start_ms,
            s.end_ms,
            s.hints.func.clone(),
            s.hints.range_ms,
            s.hints.step_ms,
        )
    }

    async fn selects(
        q: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Vec<(Vec<String>, i64, i64, Option<String>, i64, i64)> {
        let rec = Arc::new(Recorder::default());
        let e = Engine::new(rec.clone());
        e.range(q, start, end, step, &QueryOptions::default())
            .await
            .expect("query");
        let mut v: Vec<_> = rec
            .0
            .lock()
            .map(|v| v.iter().map(describe).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn selects_carry_name_matcher_time_range_and_hints() {
        let got = selects(
            r#"sum(rate(http_total{job="a"}[5m] offset 1m)) / up"#,
            600_000,
            900_000,
            15_000,
        )
        .await;
        assert_eq!(
            got,
            vec![
                (
                    strs(&["__name__=http_total", "job=a"]),
                    600_000 - 60_000 - 300_000,
                    900_000 - 60_000,
                    Some("rate".into()),
                    300_000,
                    15_000
                ),
                (
                    strs(&["__name__=up"]),
                    600_000 - 300_000,
                    900_000,
                    None,
                    0,
                    15_000
                ),
            ]
        );
    }

    #[tokio::test]
    async fn equal_selectors_share_one_read_over_the_union_of_ranges() {
        let got = selects("x - x offset 5m", 600_000, 900_000, 15_000).await;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].1, got[0].2), (600_000 - 300_000 - 300_000, 900_000));
    }

    /// A recorder that says no replicas are merged (as the federation
    /// without `replica_labels`), so matchers may be applied after a select.
    #[derive(Default)]
    struct NoReplicas(Recorder);

    impl Source for NoReplicas {
        fn select<'a>(
            &'a self,
            sel: &'a Select,
        ) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
            self.0.select(sel)
        }

        fn replica_labels(&self, _: &crate::source::ReadOptions) -> Option<Vec<String>> {
            Some(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_selector_with_one_more_matcher_is_read_with_the_wider_one() {
        let q = r#"sum(irate(x{a="1",code!~"5.*"}[40s])) / sum(irate(x{a="1"}[40s]))"#;
        let rec = Arc::new(NoReplicas::default());
        Engine::new(rec.clone())
            .instant(q, 600_000, &QueryOptions::default())
            .await
            .expect("query");
        let got: Vec<_> = rec
            .0
             .0
            .lock()
            .map(|v| v.iter().map(describe).collect())
            .unwrap_or_default();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, strs(&["__name__=x", "a=1"]));
        // A source that does not say which labels it dedups over is asked
        // for both.
        assert_eq!(selects(q, 600_000, 600_000, 1).await.len(), 2);
    }

    #[tokio::test]
    async fn or_matchers_select_once_per_alternative() {
        let got = selects(r#"foo{a="1" or b="2"}"#, 0, 0, 1).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, strs(&["__name__=foo", "a=1"]));
        assert_eq!(got[1].0, strs(&["__name__=foo", "b=2"]));
    }

    #[tokio::test]
    async fn subqueries_and_at_widen_the_range() {
        // [10m:1m] at t=3600s: inner steps from the first multiple of 1m after 3000s.
        let got = selects(
            "max_over_time(rate(x[1m])[10m:1m])",
            3_600_000,
            3_600_000,
            1,
        )
        .await;
        assert_eq!(got[0].1, 3_060_000 - 60_000);
        assert_eq!(got[0].2, 3_600_000);
        let got = selects("x @ 100", 3_600_000, 7_200_000, 60_000).await;
        assert_eq!((got[0].1, got[0].2), (100_000 - 300_000, 100_000));
    }
}
