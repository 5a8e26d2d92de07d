//! One query's share of each backend's connections: a query may hold at
//! most half of a backend's `max_connections` at once, so that another
//! query's requests wait behind a few of its requests, not all of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// The query's semaphores, one per backend gate it has used.
#[derive(Debug, Default)]
pub struct Shares {
    by_gate: Mutex<HashMap<usize, Arc<Semaphore>>>,
}

/// A query's share of a gate of `max_connections` permits.
pub fn share_of(max_connections: usize) -> usize {
    max_connections.div_ceil(2).max(1)
}

impl Shares {
    /// This query's semaphore for `gate` (created with `share` permits).
    pub fn for_gate(&self, gate: &Arc<Semaphore>, share: usize) -> Arc<Semaphore> {
        let key = Arc::as_ptr(gate) as usize;
        let mut m = self.by_gate.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(share.max(1))))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_semaphore_per_gate_with_half_the_permits() {
        let s = Shares::default();
        let (a, b) = (Arc::new(Semaphore::new(8)), Arc::new(Semaphore::new(1)));
        let sa = s.for_gate(&a, share_of(8));
        assert_eq!(sa.available_permits(), 4);
        assert!(Arc::ptr_eq(&sa, &s.for_gate(&a, share_of(8))));
        assert_eq!(s.for_gate(&b, share_of(1)).available_permits(), 1);
    }
}
