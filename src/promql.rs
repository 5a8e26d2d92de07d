//! The PromQL engine: parses a query, fetches every selector's series from
//! one [`Source`], and evaluates in memory with Prometheus 3 semantics.
//!
//! Public surface used by the API layer and the cache (keep it stable):
//! [`Engine`], [`QueryOptions`], [`QueryResult`], [`Value`], [`EngineError`],
//! [`parse`], [`Expr`].
//!
//! A query travels: `parse` (promql-parser) → `plan` (every selector with
//! the time range it needs, after offset, `@`, ranges, lookback and
//! subqueries) → one concurrent fetch of all selects → `eval`, which
//! evaluates each node over all steps at once (an instant query is a range
//! of one step): `selector`, `binary`, `aggregate`, and `functions` (one
//! table from name to implementation, one file per family). Name dropping
//! is delayed as in Prometheus 3: series carry a flag and lose `__name__`
//! (with `__type__`/`__unit__`) when the result is built.

mod aggregate;
mod annotations;
mod binary;
mod eval;
mod functions;
mod hash;
mod labelset;
mod memo;
mod plan;
mod pushdown;
mod pushdown_agg;
mod selector;
mod steps;
pub mod value;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use promql_parser::parser::Expr;

use crate::limits::meter::{self, CancelOnDrop, LimitError, Meter};
use crate::model::histogram::HistogramSample;
use crate::model::{Labels, Sample, Series};
use crate::source::{Source, SourceError};
use annotations::Annotations;
use eval::{Evaluator, DUPLICATE_LABELSET};
use labelset::drop_name;
use plan::Bounds;
use steps::{Grid, Val};

pub use value::{Value, VectorElem};

/// Parses a PromQL query (a parse or type error is [`EngineError::Parse`]).
pub fn parse(query: &str) -> Result<Expr, EngineError> {
    crate::model::query_text::parse(query).map_err(|e| EngineError::Parse(e.0))
}

/// Per-query options that change the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOptions {
    /// How far back an instant selector looks for a sample, ms (default 5 m).
    pub lookback_delta_ms: i64,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            lookback_delta_ms: 5 * 60 * 1000,
        }
    }
}

/// The outcome of a query: its value and the annotations Prometheus would
/// return beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Annotations of warning level (API `warnings`), including source warnings.
    pub warnings: Vec<String>,
    /// Annotations of info level (API `infos`).
    pub infos: Vec<String>,
}

/// Why a query failed. The API maps each kind to Prometheus's `errorType`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The query does not parse or is not well-typed (`bad_data`, 400).
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed (`execution`, 422), e.g. many-to-many matching.
    #[error("{0}")]
    Execution(String),
    /// A source failed (`execution`, 422 — the message names the backend).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The query ran past its deadline (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(String),
    /// The query was canceled (`canceled`, 499).
    #[error("query was canceled in {0}")]
    Canceled(String),
    /// promfed has no room for the query now (`unavailable`, 503): every
    /// query together holds as much memory as it may.
    #[error("{0}")]
    Unavailable(String),
}

impl From<LimitError> for EngineError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Timeout(stage) => EngineError::Timeout(stage.to_string()),
            LimitError::Canceled(stage) => EngineError::Canceled(stage.to_string()),
            LimitError::Memory { .. } => EngineError::Unavailable(e.to_string()),
            LimitError::Samples
            | LimitError::Bytes { .. }
            | LimitError::Response { .. }
            | LimitError::Aborted(_) => EngineError::Execution(e.to_string()),
        }
    }
}

/// Most samples an instant query may have fetched to be evaluated on the
/// async worker that fetched them (well under a millisecond of work).
const INLINE_EVAL_SAMPLES: usize = 20_000;

/// Evaluates PromQL over one source.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn Source>,
    /// The federation exact pushdown asks (`pushdown: true`), if any.
    pushdown: Option<Arc<crate::federation::Federation>>,
}

impl Engine {
    pub fn new(source: Arc<dyn Source>) -> Self {
        Engine {
            source,
            pushdown: None,
        }
    }

    /// An engine over `fed` that pushes exact sub-queries down to its
    /// backends when the config turned pushdown on for any of them.
    pub fn over_federation(fed: Arc<crate::federation::Federation>) -> Self {
        let pushdown = fed.pushdown_on().then(|| Arc::clone(&fed));
        Engine {
            source: fed,
            pushdown,
        }
    }

    /// The source this engine reads.
    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// Evaluates `query` at `t_ms`.
    pub async fn instant(
        &self,
        query: &str,
        t_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        let expr = memo::parsed(query, parse)?;
        self.run(expr, Grid::at(t_ms), true, opts).await
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`.
    pub async fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        let expr = memo::parsed(query, parse)?;
        self.range_shared(expr, start_ms, end_ms, step_ms, opts)
            .await
    }

    /// Evaluates a parsed query at `t_ms`.
    pub async fn instant_expr(
        &self,
        expr: &Expr,
        t_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        // The plan keys selectors by node address: plan over the copy that
        // the blocking evaluation owns.
        self.run(Arc::new(expr.clone()), Grid::at(t_ms), true, opts)
            .await
    }

    /// Evaluates a parsed query at every step from `start_ms` to `end_ms`.
    pub async fn range_expr(
        &self,
        expr: &Expr,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        self.range_shared(Arc::new(expr.clone()), start_ms, end_ms, step_ms, opts)
            .await
    }

    async fn range_shared(
        &self,
        expr: Arc<Expr>,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        if step_ms <= 0 {
            return Err(EngineError::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(EngineError::Execution(
                "end timestamp must not be before start time".into(),
            ));
        }
        let grid = Grid {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        self.run(expr, grid, false, opts).await
    }

    /// Evaluates `expr` on `grid`. The plan keys selectors by node address:
    /// `expr` is shared with the blocking evaluation, never copied.
    async fn run(
        &self,
        expr: Arc<Expr>,
        grid: Grid,
        instant: bool,
        opts: &QueryOptions,
    ) -> Result<QueryResult, EngineError> {
        let bounds = Bounds {
            start: grid.start,
            end: grid.end,
        };
        let lookback = if opts.lookback_delta_ms > 0 {
            opts.lookback_delta_ms
        } else {
            QueryOptions::default().lookback_delta_ms
        };
        // The pushed nodes are asked while the rest is read; the nodes the
        // backends do not answer are read after.
        let planned = self
            .pushdown
            .as_deref()
            .map(|fed| pushdown::plan(fed, &expr, grid, bounds, lookback, instant));
        let skip = planned.as_ref().map(|p| p.node_ids()).unwrap_or_default();
        let push = async {
            match planned {
                Some(p) => p.run().await,
                None => pushdown::PushPlan::default(),
            }
        };
        let read = plan::fetch(self.source.as_ref(), &expr, grid, bounds, lookback, &skip);
        let (pushed, read) = futures::join!(push, read);
        let (mut fetched, mut warnings) = read?;
        for note in &pushed.notes {
            crate::limits::note_plan(note.clone());
        }
        if !pushed.raw.is_empty() {
            let (more, w) = plan::fetch_under(
                self.source.as_ref(),
                &expr,
                grid,
                bounds,
                lookback,
                &pushed.values.keys().copied().collect(),
                &pushed.raw,
            )
            .await?;
            fetched.absorb(more);
            for w in w {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
        }
        fetched.pushed = pushed.values;
        let small = fetched.sample_count() <= INLINE_EVAL_SAMPLES;
        // Evaluation is CPU-bound: keep it off the async workers, unless it
        // is small (an instant query over few samples), where the hop to a
        // blocking thread and back costs more than the work. If this future
        // is dropped (timeout, client gone), the guard stops it; the meter
        // charges what it builds to the query and stops it at the query's
        // deadline.
        let guard = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let canceled = Arc::clone(&guard.0);
        let meter = Meter::new(
            crate::limits::current(),
            Some(Arc::clone(&canceled)),
            "expression evaluation",
        );
        let evaluate = move || {
            let _metered = meter.enter();
            let mut ann = Annotations::default();
            let val = Evaluator {
                data: &fetched,
                grid,
                bounds,
                lookback,
                ann: &mut ann,
                stats_only: false,
                canceled: &canceled,
            }
            .eval(&expr)?;
            finish(val, grid, instant).map(|v| (v, ann))
        };
        let (value, ann) = if instant && small {
            evaluate()?
        } else {
            tokio::task::spawn_blocking(evaluate)
                .await
                .map_err(|e| EngineError::Execution(format!("evaluation aborted: {e}")))??
        };
        for w in ann.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        Ok(QueryResult {
            value,
            warnings,
            infos: ann.infos,
        })
    }
}

/// The final label set of a result series: without its name if marked so.
fn final_labels(labels: Labels, drop: bool) -> Labels {
    if drop {
        drop_name(&labels)
    } else {
        labels
    }
}

/// Two results with one label set is an error.
fn check_unique<'a>(labels: impl Iterator<Item = &'a Labels>) -> Result<(), EngineError> {
    let mut seen = HashSet::new();
    for l in labels {
        meter::tick()?;
        if !seen.insert(l) {
            return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
        }
    }
    Ok(())
}

/// A matrix sorted by labels, as Prometheus returns it; two series with one
/// label set is an error.
fn sorted_matrix(out: Vec<Series>) -> Result<Value, EngineError> {
    let out = meter::sort_by(out, |a, b| a.labels.cmp(&b.labels))?;
    if out.windows(2).any(|w| w[0].labels == w[1].labels) {
        return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
    }
    Ok(Value::Matrix(out))
}

/// Turns the root node's value into the API's value.
fn finish(val: Val, grid: Grid, instant: bool) -> Result<Value, EngineError> {
    let t = grid.start;
    match val {
        Val::Scalar(v) if instant => Ok(Value::Scalar {
            t,
            v: v.first().copied().unwrap_or(f64::NAN),
        }),
        Val::Scalar(v) => Ok(Value::Matrix(vec![Series {
            labels: Labels::empty(),
            samples: v
                .into_iter()
                .enumerate()
                .map(|(i, v)| Sample { t: grid.ts(i), v })
                .collect(),
            histograms: Vec::new(),
        }])),
        Val::String(s) if instant => Ok(Value::String { t, s }),
        Val::Vector(vs) => {
            if instant {
                let mut out: Vec<VectorElem> = Vec::with_capacity(vs.len());
                for s in vs {
                    meter::tick()?;
                    let h = s.hist(0).cloned();
                    let v = s.vals.first().copied().flatten();
                    if v.is_some() || h.is_some() {
                        out.push(VectorElem {
                            labels: final_labels(s.labels, s.drop_name),
                            t,
                            v: v.unwrap_or(0.0),
                            h,
                        });
                    }
                }
                check_unique(out.iter().map(|e| &e.labels))?;
                Ok(Value::Vector(out))
            } else {
                let mut out: Vec<Series> = Vec::with_capacity(vs.len());
                for s in vs {
                    meter::tick_by(s.vals.len())?;
                    if s.is_empty() {
                        continue;
                    }
                    out.push(Series {
                        samples: s
                            .vals
                            .iter()
                            .enumerate()
                            .filter_map(|(i, v)| v.map(|v| Sample { t: grid.ts(i), v }))
                            .collect(),
                        histograms: s
                            .hists
                            .iter()
                            .enumerate()
                            .filter_map(|(i, h)| {
                                h.as_ref().map(|h| HistogramSample {
                                    t: grid.ts(i),
                                    h: Arc::clone(h),
                                })
                            })
                            .collect(),
                        labels: final_labels(s.labels, s.drop_name),
                    });
                }
                sorted_matrix(out)
            }
        }
        Val::Matrix(m) if instant => {
            let (lo, hi) = m.windows.first().copied().unwrap_or((t, t));
            let mut out: Vec<Series> = Vec::with_capacity(m.series.len());
            for s in m.series {
                meter::tick()?;
                let samples: Vec<Sample> = s
                    .samples
                    .iter()
                    .filter(|p| p.t > lo && p.t <= hi)
                    .copied()
                    .collect();
                let histograms: Vec<HistogramSample> = s
                    .hists
                    .iter()
                    .filter(|p| p.t > lo && p.t <= hi)
                    .cloned()
                    .collect();
                if !samples.is_empty() || !histograms.is_empty() {
                    out.push(Series {
                        samples,
                        labels: final_labels(s.labels, s.drop_name),
                        histograms,
                    });
                }
            }
            sorted_matrix(out)
        }
        other => Err(EngineError::Execution(format!(
            "invalid expression type {:?} for range query, must be Scalar or instant Vector",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
