//! A bounded log of the instant-query grid cells evaluated lately and how
//! many evaluations each cost (one per cell when single flight and the
//! stores do their job), for the cache page of the UI.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Cells remembered; the oldest is forgotten first.
pub const CELLS_KEPT: usize = 200;

/// One grid cell of one query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cell {
    /// The canonical query text.
    pub query: String,
    /// The cell's start (the time the query was evaluated at), Unix ms.
    pub time_ms: i64,
    /// Evaluations of this cell by this process.
    pub evaluations: u64,
    /// When the last one started, Unix ms.
    pub last_ms: i64,
}

/// The log; cheap to share behind the cache.
#[derive(Debug, Default)]
pub struct CellLog {
    cells: Mutex<VecDeque<Cell>>,
}

impl CellLog {
    /// Counts one evaluation of `query` at cell `time_ms`, at `now_ms`.
    pub fn record(&self, query: &str, time_ms: i64, now_ms: i64) {
        let Ok(mut cells) = self.cells.lock() else {
            return;
        };
        if let Some(pos) = cells
            .iter()
            .position(|c| c.time_ms == time_ms && c.query == query)
        {
            if let Some(mut c) = cells.remove(pos) {
                c.evaluations += 1;
                c.last_ms = now_ms;
                cells.push_front(c);
            }
            return;
        }
        cells.push_front(Cell {
            query: query.to_string(),
            time_ms,
            evaluations: 1,
            last_ms: now_ms,
        });
        cells.truncate(CELLS_KEPT);
    }

    /// The cells, most recently evaluated first.
    pub fn snapshot(&self) -> Vec<Cell> {
        self.cells
            .lock()
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_cell_newest_first_and_bounded() {
        let log = CellLog::default();
        log.record("up", 10_000, 1);
        log.record("up", 20_000, 2);
        log.record("up", 10_000, 3);
        let s = log.snapshot();
        assert_eq!(
            s.iter()
                .map(|c| (c.time_ms, c.evaluations))
                .collect::<Vec<_>>(),
            [(10_000, 2), (20_000, 1)]
        );
        for i in 0..(CELLS_KEPT as i64 + 5) {
            log.record("x", i, i);
        }
        let s = log.snapshot();
        assert_eq!(s.len(), CELLS_KEPT);
        assert_eq!(s[0].time_ms, CELLS_KEPT as i64 + 4);
    }
}
