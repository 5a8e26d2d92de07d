//! The evaluator: walks the parsed query and evaluates each node over every step at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use promql_parser::parser::{Expr, SubqueryExpr};

use super::annotations::Annotations;
use super::plan::{at_ms, duration_ms, offset_ms, subquery_grid, Bounds, Fetched};
use super::steps::{Grid, RSeries, RangeVec, VSeries, Val};
use super::{aggregate, binary, functions, selector, EngineError};
use crate::limits::meter::{self, label_bytes, POINT_BYTES, SAMPLE_BYTES};
use crate::model::Sample;

/// Text of Prometheus's error for two series with one label set at one step.
pub(crate) const DUPLICATE_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// Most steps a subquery may evaluate its inner expression at.
const MAX_SUBQUERY_STEPS: usize = 1_000_000;

/// Evaluates nodes on one grid over fetched data.
pub(crate) struct Evaluator<'a> {
    pub data: &'a Fetched,
    pub grid: Grid,
    pub bounds: Bounds,
    pub lookback: i64,
    pub ann: &'a mut Annotations,
    /// Set when the caller stopped waiting: evaluation ends at the next node.
    pub canceled: &'a AtomicBool,
    /// Selectors read histograms as count and sum only, with counter resets
    /// detected while reading (inside histogram_count/sum/avg, as
    /// Prometheus's HistogramStatsIterator).
    pub stats_only: bool,
}

impl<'a> Evaluator<'a> {
    /// Evaluates `e` over every step of the grid. What the node builds is
    /// charged to the query's budget (the nodes that build much charge it
    /// before they build); once the node is done, what its children built
    /// is gone and only its own value stays charged.
    pub fn eval(&mut self, e: &Expr) -> Result<Val, EngineError> {
        if self.canceled.load(Ordering::Relaxed) {
            return Err(EngineError::Canceled("query evaluation".into()));
        }
        meter::check()?;
        let mark = meter::mark();
        let val = self.eval_node(e)?;
        meter::settle(mark, held_size(&val))?;
        Ok(val)
    }

    fn eval_node(&mut self, e: &Expr) -> Result<Val, EngineError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.grid.len()])),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(mut vs) => {
                    for s in &mut vs {
                        s.drop_name = true;
                        for v in s.vals.iter_mut().flatten() {
                            *v = -*v;
                        }
                        for h in s.hists.iter_mut().flatten() {
                            let mut n = (**h).clone();
                            n.mul(-1.0);
                            *h = Arc::new(n);
                        }
                    }
                    Ok(Val::Vector(vs))
                }
                other => Err(EngineError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => selector::instant(self, vs),
            Expr::MatrixSelector(ms) => Ok(selector::range(self, ms)),
            Expr::Subquery(sq) => self.subquery(sq),
            Expr::Binary(b) => binary::eval(self, b),
            Expr::Aggregate(a) => match self.data.pushed.get(&super::pushdown_agg::agg_id(a)) {
                // Pushed down whole: the backends' groups, in the raw path's order.
                Some(v) => Ok(Val::Vector(v.clone())),
                None => aggregate::eval(self, a),
            },
            Expr::Call(c) => match self.data.pushed.get(&super::pushdown::call_id(c)) {
                // Pushed down: the backends' values, as the raw path builds them.
                Some(v) => Ok(Val::Vector(v.clone())),
                None => functions::call(self, c),
            },
            Expr::Extension(_) => Err(EngineError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates `e`, which must be an instant vector.
    pub fn eval_vector(&mut self, e: &Expr) -> Result<Vec<VSeries>, EngineError> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            other => Err(type_error("instant vector", &other)),
        }
    }

    /// Evaluates `e`, which must be a scalar.
    pub fn eval_scalar(&mut self, e: &Expr) -> Result<Vec<f64>, EngineError> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            other => Err(type_error("scalar", &other)),
        }
    }

    /// Evaluates `e`, which must be a range vector.
    pub fn eval_matrix(&mut self, e: &Expr) -> Result<RangeVec, EngineError> {
        match self.eval(e)? {
            Val::Matrix(m) => Ok(m),
            other => Err(type_error("range vector", &other)),
        }
    }

    /// A subquery: the inner expression on its own aligned grid, seen
    /// through a window per outer step.
    fn subquery(&mut self, sq: &SubqueryExpr) -> Result<Val, EngineError> {
        let inner = subquery_grid(self.grid, sq, self.bounds);
        if inner.len() > MAX_SUBQUERY_STEPS {
            return Err(EngineError::Execution(
                "query processing would load too many samples into memory in query execution"
                    .into(),
            ));
        }
        let val = {
            let mut sub = Evaluator {
                data: self.data,
                grid: inner,
                bounds: self.bounds,
                lookback: self.lookback,
                ann: &mut *self.ann,
                stats_only: false,
                canceled: self.canceled,
            };
            sub.eval(&sq.expr)?
        };
        let to_samples = |vals: &[Option<f64>]| -> Result<Vec<Sample>, EngineError> {
            // The points become samples while the inner vector still lives.
            let n = vals.iter().flatten().count() as u64;
            meter::charge(n, n * SAMPLE_BYTES)?;
            Ok(vals
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| Sample { t: inner.ts(i), v }))
                .collect())
        };
        let series = match val {
            Val::Vector(vs) => {
                let mut out = Vec::with_capacity(vs.len());
                for s in vs {
                    let samples = to_samples(&s.vals)?;
                    let hists = subquery_histograms(&s.hists, inner);
                    if !samples.is_empty() || !hists.is_empty() {
                        out.push(RSeries {
                            samples: Arc::new(samples),
                            labels: s.labels,
                            drop_name: s.drop_name,
                            hists: Arc::new(hists),
                        });
                    }
                }
                out
            }
            Val::Scalar(v) => vec![RSeries {
                labels: Default::default(),
                drop_name: false,
                samples: Arc::new(
                    v.iter()
                        .enumerate()
                        .map(|(i, &v)| Sample { t: inner.ts(i), v })
                        .collect(),
                ),
                hists: Default::default(),
            }],
            other => return Err(type_error("instant vector", &other)),
        };
        let off = offset_ms(&sq.offset);
        let range_ms = duration_ms(&sq.range);
        let windows = match at_ms(&sq.at, self.bounds) {
            Some(t) => vec![(t - off - range_ms, t - off); self.grid.len()],
            None => self
                .grid
                .timestamps()
                .map(|t| (t - off - range_ms, t - off))
                .collect(),
        };
        Ok(Val::Matrix(RangeVec {
            series,
            windows,
            range_ms,
        }))
    }
}

/// The histogram points of a subquery's inner vector as samples. Their
/// CounterReset/NotCounterReset hints become Unknown, as in Prometheus: the
/// subquery may skip or repeat samples, so only detection can be trusted.
fn subquery_histograms(
    hists: &[Option<Arc<crate::model::histogram::FloatHistogram>>],
    inner: Grid,
) -> Vec<crate::model::histogram::HistogramSample> {
    use crate::model::histogram::CounterResetHint;
    hists
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let h = h.as_ref()?;
            let h = match h.counter_reset_hint {
                CounterResetHint::CounterReset | CounterResetHint::NotCounterReset => {
                    let mut c = (**h).clone();
                    c.counter_reset_hint = CounterResetHint::Unknown;
                    Arc::new(c)
                }
                _ => Arc::clone(h),
            };
            Some(crate::model::histogram::HistogramSample { t: inner.ts(i), h })
        })
        .collect()
}

/// Samples and bytes a value holds: points of instant vectors, samples a
/// range vector owns (not those it shares with the fetched series, which
/// are charged when fetched), label sets and scalars.
pub(crate) fn held_size(v: &Val) -> (u64, u64) {
    match v {
        Val::Scalar(v) => (0, v.len() as u64 * 8),
        Val::String(s) => (0, s.len() as u64),
        Val::Vector(vs) => vs.iter().fold((0, 0), |(n, b), s| {
            let points = s.vals.len() as u64;
            (
                n + points,
                b + points * POINT_BYTES + label_bytes(&s.labels),
            )
        }),
        Val::Matrix(m) => {
            let windows = m.windows.len() as u64 * 16;
            m.series.iter().fold((0, windows), |(n, b), s| {
                let owned = if Arc::strong_count(&s.samples) == 1 {
                    s.samples.len() as u64
                } else {
                    0
                };
                (n + owned, b + owned * SAMPLE_BYTES + label_bytes(&s.labels))
            })
        }
    }
}

pub(crate) fn type_error(want: &str, got: &Val) -> EngineError {
    EngineError::Execution(format!("expected type {want}, got {}", got.type_name()))
}

/// Merges series with equal label sets into one;
/// two of them with a point at one step is Prometheus's duplicate-labelset error.
pub(crate) fn merge_same_labels(series: Vec<VSeries>) -> Result<Vec<VSeries>, EngineError> {
    let mut out: Vec<VSeries> = Vec::with_capacity(series.len());
    let mut index: HashMap<crate::model::Labels, usize> = HashMap::new();
    for s in series {
        meter::tick()?;
        if s.is_empty() {
            continue;
        }
        let key = s.labels.clone();
        match index.get(&key) {
            Some(&i) => {
                let o = &mut out[i];
                let n = o.vals.len();
                let taken =
                    |o: &VSeries, step: usize| o.vals[step].is_some() || o.hist(step).is_some();
                for (step, src) in s.vals.into_iter().enumerate().take(n) {
                    if let Some(v) = src {
                        if taken(o, step) {
                            return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
                        }
                        o.vals[step] = Some(v);
                    }
                }
                // Histogram points too: a step holds a float or a histogram.
                for (step, src) in s.hists.into_iter().enumerate().take(n) {
                    if let Some(h) = src {
                        if taken(o, step) {
                            return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
                        }
                        if o.hists.is_empty() {
                            o.hists = vec![None; n];
                        }
                        o.hists[step] = Some(h);
                    }
                }
            }
            None => {
                index.insert(key, out.len());
                out.push(s);
            }
        }
    }
    Ok(out)
}
