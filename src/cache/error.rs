//! The cache's errors. A flight shares its leader's result with every
//! caller, so they are `Clone`; `api/error.rs` maps them to `errorType`.

use crate::limits::meter::LimitError;
use crate::promql::EngineError;

/// Why the cache has no answer for a query.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The evaluation (or the encoding of its result) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The query ran past its timeout.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// The shared evaluation ended without an answer (it panicked).
    #[error("query evaluation ended unexpectedly")]
    Ended,
}

impl From<LimitError> for CacheError {
    fn from(e: LimitError) -> Self {
        CacheError::Engine(EngineError::from(e))
    }
}

/// A cache that cannot be set up (metrics, the Redis client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

impl From<String> for SetupError {
    fn from(message: String) -> Self {
        SetupError(message)
    }
}
