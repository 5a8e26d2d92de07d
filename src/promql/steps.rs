//! The evaluator's internal values: every node is evaluated over all steps at once.

use std::sync::Arc;

use crate::limits::meter::{self, LimitError};
use crate::model::histogram::{FloatHistogram, HistogramSample};
use crate::model::{Labels, Sample};

/// The evaluation grid: timestamps `start, start+step, …, end` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    /// Step in ms; always > 0 (an instant query uses a one-point grid).
    pub step: i64,
}

impl Grid {
    /// The one step of an instant query at `t`.
    pub fn at(t: i64) -> Grid {
        Grid {
            start: t,
            end: t,
            step: 1,
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        ((self.end - self.start) / self.step + 1) as usize
    }

    /// Timestamp of step `i`.
    pub fn ts(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }

    /// Every timestamp of the grid.
    pub fn timestamps(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|i| self.ts(i))
    }
}

/// One series of an instant vector over all steps of the grid.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VSeries {
    pub labels: Labels,
    /// The metric name (and `__type__`/`__unit__`) is to be dropped at the end
    /// of the query (Prometheus's delayed name removal).
    pub drop_name: bool,
    /// One value per step; `None` where the series has no point.
    pub vals: Vec<Option<f64>>,
    /// Native histogram points: empty when the series has none, else one
    /// entry per step. A step holds a float or a histogram, never both.
    pub hists: Vec<Option<Arc<FloatHistogram>>>,
}

impl VSeries {
    pub fn is_empty(&self) -> bool {
        self.vals.iter().all(Option::is_none) && self.hists.iter().all(Option::is_none)
    }

    /// The histogram at step `i`, if that step holds one.
    pub fn hist(&self, i: usize) -> Option<&Arc<FloatHistogram>> {
        self.hists.get(i).and_then(Option::as_ref)
    }
}

/// One series of a range vector: its samples (no staleness markers).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RSeries {
    pub labels: Labels,
    pub drop_name: bool,
    /// Shared with the fetched data when no staleness marker had to be dropped.
    pub samples: Arc<Vec<Sample>>,
    /// Native histogram samples, in time order (shared with the fetched data).
    pub hists: Arc<Vec<HistogramSample>>,
}

/// A range vector over all steps: the series plus, per step, the window
/// `(lo, hi]` (ms) that step sees.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RangeVec {
    pub series: Vec<RSeries>,
    pub windows: Vec<(i64, i64)>,
    /// Range of the selector or subquery, ms.
    pub range_ms: i64,
}

/// Samples visited between two reports to the meter.
const WORK_PER_TICK: usize = 4096;

impl RangeVec {
    /// Calls `f(step, samples in window)` for every step of one series,
    /// sliding two cursors over its samples; stops early when the query
    /// runs past its deadline or is canceled.
    pub fn for_each_window(
        &self,
        series: &RSeries,
        mut f: impl FnMut(usize, &[Sample]),
    ) -> Result<(), LimitError> {
        let s = &series.samples;
        let (mut lo, mut hi) = (0usize, 0usize);
        let mut prev: Option<(i64, i64)> = None;
        // Work done since the meter last heard of it (the meter is a
        // thread-local: tell it in batches, not once per window).
        let mut work = 0usize;
        for (i, &(wlo, whi)) in self.windows.iter().enumerate() {
            match prev {
                Some((plo, phi)) if wlo >= plo && whi >= phi => {}
                _ => {
                    lo = 0;
                    hi = 0;
                }
            }
            prev = Some((wlo, whi));
            while lo < s.len() && s[lo].t <= wlo {
                lo += 1;
            }
            if hi < lo {
                hi = lo;
            }
            while hi < s.len() && s[hi].t <= whi {
                hi += 1;
            }
            work += hi - lo + 1;
            if work >= WORK_PER_TICK {
                meter::tick_by(work)?;
                work = 0;
            }
            f(i, &s[lo..hi]);
        }
        meter::tick_by(work)?;
        Ok(())
    }
}

/// A node's value over all steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    Vector(Vec<VSeries>),
    Matrix(RangeVec),
    String(String),
}

impl Val {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
            Val::String(_) => "string",
        }
    }
}
