//! The PromQL engine: parses a query, fetches every selector's series from
//! one [`Source`](crate::source::Source), and evaluates in memory with
//! Prometheus 3 semantics.
//!
//! Public surface used by the API layer and the cache (keep it stable):
//! [`Engine`], [`QueryOptions`], [`QueryResult`], [`Value`], [`EngineError`].

pub mod value;

use std::sync::Arc;

use crate::source::{Source, SourceError};

pub use value::{Value, VectorElem};

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
}

/// Evaluates PromQL over one source.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn Source>,
}

impl Engine {
    pub fn new(source: Arc<dyn Source>) -> Self {
        Engine { source }
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
        let _ = (query, t_ms, opts);
        Err(EngineError::Execution("engine not built yet".into()))
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
        let _ = (query, start_ms, end_ms, step_ms, opts);
        Err(EngineError::Execution("engine not built yet".into()))
    }
}
