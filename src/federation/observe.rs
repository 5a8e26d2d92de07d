//! Watches each backend's answer to a select: its latency, outcome and
//! samples go to telemetry, and the answer is charged to the current
//! query's budget (`limits::QueryContext::charge`). It lives in the
//! federation, the one place that knows which backend answered.

use std::future::Future;
use std::time::Instant;

use crate::limits::{current, sample_count};
use crate::source::{SelectOutput, SourceError};

/// Awaits one backend's answer to a select: records its latency, outcome
/// and samples, and charges it to the current query's budget (an answer
/// over a limit becomes a [`SourceError::Limit`]).
pub async fn observe_select(
    backend: &str,
    answer: impl Future<Output = Result<SelectOutput, SourceError>>,
) -> Result<SelectOutput, SourceError> {
    let started = Instant::now();
    let mut answer = answer.await;
    if let (Ok(out), Some(ctx)) = (&answer, current()) {
        if let Err(e) = ctx.charge(backend, &out.series) {
            answer = Err(SourceError::Limit(e.to_string()));
        }
    }
    crate::telemetry::backend_answer(
        backend,
        started.elapsed(),
        match &answer {
            Ok(out) => Ok(sample_count(&out.series)),
            Err(SourceError::Timeout { .. }) => Err("timeout"),
            Err(SourceError::Limit(_)) => Err("limit"),
            Err(_) => Err("error"),
        },
    );
    answer
}
