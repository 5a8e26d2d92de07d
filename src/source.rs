//! The `Source` trait: anything that answers "which series match these
//! matchers, with which samples between these times".

pub mod memory;
pub mod prometheus;
pub mod remote_read;

use futures::future::BoxFuture;
use promql_parser::label::Matcher;

use crate::model::Series;

/// What the engine knows about why it selects (passed to backends that use
/// it, such as remote read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// Evaluation start, ms.
    pub start_ms: i64,
    /// Evaluation end, ms.
    pub end_ms: i64,
    /// Query step, ms (0 for instant queries).
    pub step_ms: i64,
    /// The function the selector is an argument of, if any (e.g. `rate`).
    pub func: Option<String>,
    /// The range of a range selector, ms (0 for instant selectors).
    pub range_ms: i64,
}

/// One selection: every series matching all `matchers` (the `__name__`
/// matcher included), with its samples in `[start_ms, end_ms]`.
#[derive(Debug, Clone)]
pub struct Select {
    pub matchers: Vec<Matcher>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub hints: SelectHints,
}

/// The answer to a [`Select`]: series sorted by labels, unique label sets,
/// samples in time order; plus warnings that the caller must pass on.
#[derive(Debug, Clone, Default)]
pub struct SelectOutput {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

/// Why a select failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// A backend answered with an error or could not be reached.
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    /// A backend did not answer within its deadline.
    #[error("backend {backend}: timed out after {timeout_ms} ms")]
    Timeout { backend: String, timeout_ms: u64 },
    /// The selection itself is not acceptable (e.g. matches every series).
    #[error("{0}")]
    BadSelect(String),
}

/// Anything that can answer a select. The federation layer is itself a
/// `Source` made of `Source`s.
pub trait Source: Send + Sync {
    /// Selects the series matching `sel`.
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>>;
}

/// True when `labels` satisfies every matcher (a missing label matches as "").
pub fn matches_all(labels: &crate::model::Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}
