//! Query results: scalar, string, instant vector and range vector (matrix).

use std::sync::Arc;

use crate::model::histogram::FloatHistogram;
use crate::model::{Labels, Series};

/// One element of an instant vector: a float, or a native histogram when `h` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorElem {
    pub labels: Labels,
    /// Evaluation timestamp, ms.
    pub t: i64,
    /// The float value (unused when `h` is set).
    pub v: f64,
    /// The native histogram value, if this element is one.
    pub h: Option<Arc<FloatHistogram>>,
}

/// A query's value, as the API encodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        t: i64,
        v: f64,
    },
    String {
        t: i64,
        s: String,
    },
    Vector(Vec<VectorElem>),
    /// Series sorted by labels (the engine sorts range results).
    Matrix(Vec<Series>),
}
