//! The answer bytes one query reads from backends, counted as they arrive.
//!
//! The count lives here, in the query's budget, and not in `source`: the
//! sources charge every piece they read ([`charge`]) without knowing the
//! query, and the limits layer (below the sources) knows nothing of how a
//! backend is read. A charge over the limit is a [`FetchLimit`], which the
//! sources turn into their own `SourceError::Limit`.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) fn default_max_fetched_bytes() -> u64 {
    512 << 20
}

/// A query read more answer bytes from backends than its limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the query read more than {max} bytes from backends (limits.max_fetched_bytes)")]
pub struct FetchLimit {
    /// `limits.max_fetched_bytes`.
    pub max: u64,
}

/// Bytes read so far by one query, and its limit.
#[derive(Debug)]
pub struct FetchedBytes {
    read: AtomicU64,
    max: u64,
}

impl FetchedBytes {
    pub fn new(max: u64) -> Self {
        FetchedBytes {
            read: AtomicU64::new(0),
            max,
        }
    }

    /// Bytes read so far.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }

    fn charge(&self, n: u64) -> Result<(), FetchLimit> {
        let total = self.read.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        if total > self.max {
            return Err(FetchLimit { max: self.max });
        }
        Ok(())
    }
}

/// Charges `n` bytes just read from a backend to the current query (if
/// any): an error once the query is over `limits.max_fetched_bytes`. Every
/// byte also counts in `promfed_backend_bytes_received_total`.
pub fn charge(n: usize) -> Result<(), FetchLimit> {
    crate::telemetry::backend_bytes(n);
    match super::current() {
        Some(ctx) => ctx.fetched.charge(n as u64),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{scope, LimitsConfig, QueryContext};
    use std::sync::Arc;

    #[tokio::test]
    async fn bytes_are_charged_to_the_query_and_limited() {
        assert!(charge(usize::MAX).is_ok(), "outside a query nothing counts");
        let ctx = Arc::new(QueryContext::new(&LimitsConfig {
            max_fetched_bytes: 100,
            ..LimitsConfig::default()
        }));
        let r = scope(ctx.clone(), async {
            charge(60)?;
            charge(40)?;
            charge(1)
        })
        .await;
        let e = r.expect_err("over the limit");
        assert!(e.to_string().contains("limits.max_fetched_bytes"), "{e}");
        assert_eq!(ctx.fetched.read(), 101);
    }
}
