//! The `Source` trait: anything that answers "which series match these
//! matchers, with which samples between these times".

pub mod memory;
pub mod prometheus;

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

/// Per-request federation options (Thanos' query parameters); `None`
/// means "the configured default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    /// `partial_response`: `true` leaves out failed backends with a warning,
    /// `false` fails the query.
    pub partial_response: Option<bool>,
    /// `dedup`: merge HA replicas (default true).
    pub dedup: Option<bool>,
    /// `replicaLabels[]`: the labels that tell replicas apart.
    pub replica_labels: Option<Vec<String>>,
}

/// One selection: every series matching all `matchers` (the `__name__`
/// matcher included), with its samples in `[start_ms, end_ms]`.
#[derive(Debug, Clone)]
pub struct Select {
    pub matchers: Vec<Matcher>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub hints: SelectHints,
    /// Federation options of the request this select serves.
    pub read: ReadOptions,
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

/// A source that stamps the request's [`ReadOptions`] on every select it
/// passes to `inner`: how per-request federation options reach the
/// federation without the engine knowing about them.
pub struct WithReadOptions {
    pub inner: std::sync::Arc<dyn Source>,
    pub read: ReadOptions,
}

impl Source for WithReadOptions {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async move {
            let mut sel = sel.clone();
            sel.read = self.read.clone();
            self.inner.select(&sel).await
        })
    }
}

/// True when `labels` satisfies every matcher (a missing label matches as "").
pub fn matches_all(labels: &crate::model::Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}
