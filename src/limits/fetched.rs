//! The answer bytes one query reads from backends, counted as they arrive.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::source::SourceError;

pub(crate) fn default_max_fetched_bytes() -> u64 {
    512 << 20
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

    fn charge(&self, n: u64) -> Result<(), SourceError> {
        let total = self.read.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        if total > self.max {
            return Err(SourceError::Limit(format!(
                "the query read more than {} bytes from backends (limits.max_fetched_bytes)",
                self.max
            )));
        }
        Ok(())
    }
}

/// Charges `n` bytes just read from a backend to the current query (if
/// any): an error once the query is over `limits.max_fetched_bytes`.
pub fn charge(n: usize) -> Result<(), SourceError> {
    match super::current() {
        Some(ctx) => ctx.fetched.charge(n as u64),
        None => Ok(()),
    }
}

/// Reads `response`'s body as it arrives, charging every piece to the
/// current query and refusing more than `max` bytes (`what` names the cap
/// in the error); `each` is given every piece.
pub async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), SourceError>,
    too_large: impl Fn() -> SourceError,
    failed: impl Fn(reqwest::Error) -> SourceError,
) -> Result<usize, SourceError> {
    let mut total: usize = 0;
    while let Some(bytes) = response.chunk().await.map_err(&failed)? {
        total = total.saturating_add(bytes.len());
        if total > max {
            return Err(too_large());
        }
        charge(bytes.len())?;
        each(&bytes)?;
    }
    Ok(total)
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
