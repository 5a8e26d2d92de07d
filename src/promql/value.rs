//! Query results: scalar, string, instant vector and range vector (matrix).

use crate::model::{Labels, Series};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorElem {
    pub labels: Labels,
    /// Evaluation timestamp, ms.
    pub t: i64,
    pub v: f64,
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
