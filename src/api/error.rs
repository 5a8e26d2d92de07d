//! API errors and the one place that maps them to Prometheus's `errorType`
//! and HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::cache::CacheError;
use crate::limits::{AdmissionError, QueryFailure, QueryTextError};
use crate::promql::EngineError;
use crate::source::SourceError;

/// Prometheus's error kinds (CONTRACTS.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Canceled,
    Timeout,
    Internal,
    NotFound,
    Unavailable,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Canceled => "canceled",
            ErrorType::Timeout => "timeout",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::Unavailable => "unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

/// An error answered in Prometheus's error format.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    /// `invalid parameter "name": reason`, as Prometheus words it.
    pub fn invalid_param(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {reason}"))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let kind = match &e {
            EngineError::Parse(_) => return ApiError::invalid_param("query", e),
            EngineError::Execution(_) => ErrorType::Execution,
            EngineError::Source(SourceError::BadSelect(_)) => ErrorType::BadData,
            EngineError::Source(_) => ErrorType::Execution,
            EngineError::Timeout(_) => ErrorType::Timeout,
            EngineError::Canceled(_) => ErrorType::Canceled,
            EngineError::Unavailable(_) => ErrorType::Unavailable,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<crate::limits::meter::LimitError> for ApiError {
    fn from(e: crate::limits::meter::LimitError) -> Self {
        ApiError::from(EngineError::from(e))
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        ApiError::from(EngineError::Source(e))
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Engine(e) => ApiError::from(e),
            CacheError::Timeout => ApiError::new(ErrorType::Timeout, e.to_string()),
            CacheError::Ended => ApiError::new(ErrorType::Internal, e.to_string()),
        }
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        let kind = if e.is_unavailable() {
            ErrorType::Unavailable
        } else {
            ErrorType::Timeout
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<QueryTextError> for ApiError {
    fn from(e: QueryTextError) -> Self {
        ApiError::invalid_param(&e.param, &e.reason)
    }
}

impl QueryFailure for ApiError {
    fn error_type(&self) -> &'static str {
        self.kind.as_str()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::wire::error_body(self.kind.as_str(), &self.message);
        (
            self.kind.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
