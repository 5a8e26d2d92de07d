//! A series' float and histogram samples as one time-ordered list, for the
//! merges that choose samples by time whatever their kind.

use crate::model::histogram::HistogramSample;
use crate::model::{Sample, Series};

/// One sample of either kind.
#[derive(Debug, Clone)]
pub(crate) enum Point {
    Float(Sample),
    Histogram(HistogramSample),
}

impl Point {
    pub(crate) fn t(&self) -> i64 {
        match self {
            Point::Float(s) => s.t,
            Point::Histogram(h) => h.t,
        }
    }
}

/// Something with a timestamp that the merges order by.
pub(crate) trait Timed: Clone {
    fn time(&self) -> i64;
    /// The float value, for counter adjustment (none for a histogram).
    fn float(&self) -> Option<f64>;
    /// This sample with `adj` added to its float value (a histogram is
    /// left as it is).
    fn shifted(&self, adj: f64) -> Self;
}

impl Timed for Sample {
    fn time(&self) -> i64 {
        self.t
    }
    fn float(&self) -> Option<f64> {
        Some(self.v)
    }
    fn shifted(&self, adj: f64) -> Self {
        Sample {
            t: self.t,
            v: self.v + adj,
        }
    }
}

impl Timed for Point {
    fn time(&self) -> i64 {
        self.t()
    }
    fn float(&self) -> Option<f64> {
        match self {
            Point::Float(s) => Some(s.v),
            Point::Histogram(_) => None,
        }
    }
    fn shifted(&self, adj: f64) -> Self {
        match self {
            Point::Float(s) => Point::Float(s.shifted(adj)),
            Point::Histogram(_) => self.clone(),
        }
    }
}

/// The samples of `s` of both kinds, in time order (a float first if both
/// kinds share a timestamp, which a well-formed series never does).
pub(crate) fn points_of(s: &Series) -> Vec<Point> {
    let (a, b) = (&s.samples, &s.histograms);
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_float = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.t <= y.t,
            (Some(_), None) => true,
            _ => false,
        };
        if take_float {
            out.push(Point::Float(a[i]));
            i += 1;
        } else {
            out.push(Point::Histogram(b[j].clone()));
            j += 1;
        }
    }
    out
}

/// Splits points back into a series' two lists.
pub(crate) fn split(points: Vec<Point>) -> (Vec<Sample>, Vec<HistogramSample>) {
    let mut floats = Vec::new();
    let mut histograms = Vec::new();
    for p in points {
        match p {
            Point::Float(s) => floats.push(s),
            Point::Histogram(h) => histograms.push(h),
        }
    }
    (floats, histograms)
}

/// Two time-ordered lists merged, one sample per timestamp (`a`'s on a tie).
pub(crate) fn merge_sorted<P: Timed>(a: &[P], b: &[P]) -> Vec<P> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ta, tb) = (a[i].time(), b[j].time());
        if ta < tb {
            out.push(a[i].clone());
            i += 1;
        } else if tb < ta {
            out.push(b[j].clone());
            j += 1;
        } else {
            out.push(a[i].clone());
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
