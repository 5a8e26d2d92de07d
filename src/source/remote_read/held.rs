//! The buffers of one SAMPLES remote-read answer (the compressed body as
//! it is read, then the decompressed message) charged to the current
//! query's byte budget (`limits.max_query_bytes` and the shared memory
//! pool) while they are held, and given back as they drop.

use std::sync::Arc;

use crate::limits::budget::QueryContext;
use crate::limits::meter::LimitError;

/// Bytes charged to the current query (if any) for buffers alive now;
/// whatever is still charged is given back on drop.
pub struct HeldBytes {
    ctx: Option<Arc<QueryContext>>,
    bytes: u64,
}

impl HeldBytes {
    /// Nothing held yet, charged to the query running now (none outside a
    /// query: then nothing is counted).
    pub fn new() -> Self {
        HeldBytes {
            ctx: crate::limits::current(),
            bytes: 0,
        }
    }

    /// Charges `n` more bytes before they are allocated; `Err` (nothing
    /// charged) when the query or the memory pool has no room for them.
    pub fn take(&mut self, n: usize) -> Result<(), LimitError> {
        let n = n as u64;
        if let Some(ctx) = &self.ctx {
            ctx.hold(0, n)?;
        }
        self.bytes += n;
        Ok(())
    }

    /// Gives back `n` bytes of a buffer just dropped.
    pub fn give(&mut self, n: usize) {
        let n = (n as u64).min(self.bytes);
        if let Some(ctx) = &self.ctx {
            ctx.unhold(0, n);
        }
        self.bytes -= n;
    }

    /// Bytes charged now.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        if let Some(ctx) = &self.ctx {
            ctx.unhold(0, self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{scope, LimitsConfig};

    #[tokio::test]
    async fn buffers_are_charged_before_allocation_and_given_back() {
        let ctx = Arc::new(QueryContext::new(&LimitsConfig {
            max_query_bytes: Some(100),
            ..LimitsConfig::default()
        }));
        let seen = ctx.clone();
        scope(ctx.clone(), async move {
            let mut held = HeldBytes::new();
            held.take(60).expect("room for 60");
            assert!(held.take(50).is_err(), "110 bytes over a budget of 100");
            assert_eq!((held.bytes(), seen.bytes()), (60, 60));
            held.give(60);
            held.take(50).expect("room once the first buffer is gone");
            assert_eq!(seen.bytes(), 50);
            drop(held);
            assert_eq!(seen.bytes(), 0, "given back on drop");
        })
        .await;
        assert!(HeldBytes::new().take(usize::MAX).is_ok(), "outside a query");
    }
}
