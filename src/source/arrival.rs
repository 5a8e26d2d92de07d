//! Samples a source decodes, counted against the query's sample budget as
//! they arrive (`QueryContext::arrive`, shared by every backend of the
//! query), so a query past `limits.max_samples` stops reading before its
//! answers are whole.

use std::sync::Arc;

use super::SourceError;
use crate::limits::QueryContext;

/// The current query's arrival count (nothing is counted outside a query).
pub struct Arrival {
    ctx: Option<Arc<QueryContext>>,
    /// Counted but not yet charged (charged in batches of `BATCH`).
    pending: u64,
}

/// Samples counted before they are charged to the shared counter.
const BATCH: u64 = 1024;

impl Arrival {
    /// The arrival count of the query running now.
    pub fn new() -> Self {
        Arrival {
            ctx: crate::limits::current(),
            pending: 0,
        }
    }

    /// Charges `n` samples just decoded: `Err` (the error every protocol
    /// gives for `limits.max_samples`) once the query's backends together
    /// have sent more than the budget.
    pub fn arrive(&mut self, n: u64) -> Result<(), SourceError> {
        self.pending = self.pending.saturating_add(n);
        self.flush()
    }

    /// Counts one sample, charged with the next batch (at most 1,024
    /// samples late).
    pub fn one(&mut self) -> Result<(), SourceError> {
        self.pending += 1;
        if self.pending >= BATCH {
            return self.flush();
        }
        Ok(())
    }

    /// Charges what was counted so far.
    pub fn flush(&mut self) -> Result<(), SourceError> {
        let n = std::mem::take(&mut self.pending);
        match &self.ctx {
            Some(ctx) if n > 0 => ctx
                .arrive(n)
                .map_err(|_| SourceError::Limit(crate::limits::TOO_MANY_SAMPLES.to_string())),
            _ => Ok(()),
        }
    }
}

impl Default for Arrival {
    fn default() -> Self {
        Arrival::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{scope, LimitsConfig};

    #[tokio::test]
    async fn samples_are_refused_once_all_sources_together_pass_the_budget() {
        let ctx = Arc::new(QueryContext::new(&LimitsConfig {
            max_samples: 2000,
            ..LimitsConfig::default()
        }));
        scope(ctx, async {
            let (mut a, mut b) = (Arrival::new(), Arrival::new());
            a.arrive(900).expect("900 of 2000");
            for _ in 0..1023 {
                b.one().expect("counted, not yet charged");
            }
            b.one().expect("1024 more: 1924 of 2000");
            let e = a.arrive(100).expect_err("2024 of 2000");
            assert_eq!(e.to_string(), crate::limits::TOO_MANY_SAMPLES);
        })
        .await;
        let mut outside = Arrival::new();
        outside
            .arrive(u64::MAX)
            .expect("nothing counts outside a query");
    }
}
