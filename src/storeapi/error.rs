//! The StoreAPI server's errors and the one place they become gRPC statuses.

use tonic::{Code, Status};

use super::request::RequestError;
use crate::api::{ApiError, ErrorType};
use crate::limits::meter::LimitError;
use crate::source::SourceError;

/// Why a StoreAPI call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreApiError {
    /// The request itself is not acceptable.
    #[error("{0}")]
    Request(#[from] RequestError),
    /// The federation failed (a backend under abort, a limit, a deadline).
    #[error("{0}")]
    Source(#[from] SourceError),
    /// Admission refused the call or its deadline passed (queue full,
    /// `limits.query_timeout` or the request's gRPC deadline).
    #[error("{}", .0.message)]
    Admission(ApiError),
    /// The memory pool of all queries (`limits.max_memory_bytes`) has no
    /// room for the answer while it is streamed.
    #[error("{0}")]
    Memory(LimitError),
    /// The streamed answer grew past `limits.max_response_bytes`.
    #[error("the answer exceeds {limit} bytes (limits.max_response_bytes) after {series} series were sent; narrow the selection or its time range")]
    AnswerTooLarge { limit: u64, series: usize },
    /// The deadline passed while the answer was being streamed.
    #[error("deadline exceeded after {series} series were sent (the request's gRPC deadline, or limits.query_timeout)")]
    DeadlineWhileStreaming { series: usize },
}

impl StoreApiError {
    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            StoreApiError::Request(_) => Code::InvalidArgument,
            StoreApiError::Source(e) => match e {
                SourceError::Limit(_) => Code::ResourceExhausted,
                SourceError::Timeout { .. } => Code::DeadlineExceeded,
                SourceError::BadSelect(_) => Code::InvalidArgument,
                SourceError::Backend { .. } => Code::Unavailable,
            },
            StoreApiError::Admission(e) => match e.kind {
                ErrorType::Timeout => Code::DeadlineExceeded,
                ErrorType::Unavailable => Code::Unavailable,
                ErrorType::BadData => Code::InvalidArgument,
                ErrorType::Canceled => Code::Cancelled,
                ErrorType::Execution => Code::ResourceExhausted,
                _ => Code::Internal,
            },
            StoreApiError::Memory(_) | StoreApiError::AnswerTooLarge { .. } => {
                Code::ResourceExhausted
            }
            StoreApiError::DeadlineWhileStreaming { .. } => Code::DeadlineExceeded,
        }
    }

    /// The status a client sees (its message says what to change).
    pub fn status(&self) -> Status {
        Status::new(self.code(), format!("promfed: {self}"))
    }
}

impl From<StoreApiError> for Status {
    fn from(e: StoreApiError) -> Self {
        e.status()
    }
}
