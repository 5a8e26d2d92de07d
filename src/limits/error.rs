//! The errors of the limits layer. They know nothing of HTTP: `api/error.rs`
//! maps them to Prometheus's `errorType` and status, the sources turn a
//! [`ChargeError`] into their own `SourceError::Limit`.

use super::meter::LimitError;
use super::TOO_MANY_SAMPLES;

/// Why a query was not admitted, or ran out of time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// Every slot taken and `max_queued_queries` already waiting.
    #[error("too many queries: {running} running and {waiting} waiting (limits.max_concurrent_queries, limits.max_queued_queries); try again later")]
    QueueFull { running: usize, waiting: usize },
    /// The slots are gone: the process is stopping.
    #[error("promfed is shutting down")]
    ShuttingDown,
    /// The deadline passed while waiting for a slot.
    #[error("query timed out in queue waiting for an evaluation slot")]
    QueueTimeout,
    /// The deadline passed while waiting for room in the memory pool.
    #[error("query timed out in queue waiting for memory (limits.max_memory_bytes)")]
    MemoryTimeout,
    /// The deadline passed during evaluation.
    #[error("query timed out in expression evaluation")]
    Deadline,
}

impl AdmissionError {
    /// True when the query may succeed later (the process is overloaded or
    /// stopping), false when it ran out of time.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            AdmissionError::QueueFull { .. } | AdmissionError::ShuttingDown
        )
    }
}

/// Query text refused before anything parses it (parameter `param`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct QueryTextError {
    /// The parameter that held the text (`query`, `match[]`).
    pub param: String,
    /// Which limit it breaks.
    pub reason: String,
}

impl QueryTextError {
    pub fn new(param: &str, reason: String) -> Self {
        QueryTextError {
            param: param.to_string(),
            reason,
        }
    }
}

/// A backend's answer that breaks the query's budget.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChargeError {
    #[error("backend {backend} returned {series} series for one selector, more than the limit of {limit} (limits.max_series_per_backend)")]
    SeriesPerBackend {
        backend: String,
        series: u64,
        limit: u64,
    },
    #[error("{}", TOO_MANY_SAMPLES)]
    Samples,
    #[error(transparent)]
    Memory(LimitError),
}

/// What the query log records of a failed query: its Prometheus
/// `errorType` (`timeout`, `execution`, ...), named by the layer that maps
/// errors to it.
pub trait QueryFailure {
    fn error_type(&self) -> &'static str;
}
