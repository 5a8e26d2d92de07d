//! Background health probes of the backends: shown on `/api/v1/stores` and
//! `/metrics`, never used to gate readiness.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::{Backend, Federation};
use crate::source::SourceError;

/// Least time between two log lines about one backend's failed requests
/// (and, apart, between two about it answering again).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the last probe of one backend found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendHealth {
    /// Whether the last probe succeeded (false before the first probe).
    pub up: bool,
    /// When the last probe finished (RFC3339), if one has.
    pub last_check: Option<String>,
    /// The last probe's error, if it failed.
    pub last_error: Option<String>,
    /// How long the last probe took, milliseconds.
    pub latency_ms: Option<f64>,
    /// How the configured external labels disagree with the ones the
    /// store announces (Thanos Info), if they do.
    pub labels_disagreement: Option<String>,
}

/// When a kind of log line about one backend was last written, and how
/// many were left out since.
#[derive(Debug, Default)]
struct LogGate {
    last: Option<Instant>,
    skipped: u64,
}

impl LogGate {
    /// `Some(lines left out since the last one)` when a line may be
    /// written now, else `None` (and the line is counted as left out).
    fn pass(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// Health of every backend, in the federation's backend order.
#[derive(Debug, Default)]
pub struct HealthBoard {
    states: Vec<Mutex<BackendHealth>>,
    /// Per backend: (failures, recoveries) log gates.
    logs: Vec<Mutex<(LogGate, LogGate)>>,
}

impl HealthBoard {
    pub fn new(n: usize) -> Self {
        HealthBoard {
            states: (0..n)
                .map(|_| Mutex::new(BackendHealth::default()))
                .collect(),
            logs: (0..n).map(|_| Mutex::new(Default::default())).collect(),
        }
    }

    /// The health of backend `i`.
    pub fn get(&self, i: usize) -> BackendHealth {
        self.states
            .get(i)
            .and_then(|m| m.lock().ok().map(|h| h.clone()))
            .unwrap_or_default()
    }

    fn set(&self, i: usize, h: BackendHealth) {
        if let Some(Ok(mut slot)) = self.states.get(i).map(|m| m.lock()) {
            *slot = h;
        }
    }
}

/// Whether a request's error says the backend failed it (rather than
/// promfed's own limits, or the request itself).
fn backend_failed(e: &SourceError) -> bool {
    matches!(e, SourceError::Backend { .. } | SourceError::Timeout { .. })
}

impl Federation {
    /// Records the outcome of one request to backend `b` (a select, a
    /// metadata call, an API pass-through): a failure turns its
    /// `promfed_backend_up` to 0 at once and is logged (at most one line
    /// per backend every [`LOG_EVERY`], counting the ones left out); an
    /// answer turns it back to 1. The error has been redacted by the
    /// backend's guard.
    pub(crate) fn record_outcome<T>(&self, b: &Backend, outcome: &Result<T, SourceError>) {
        let Some(i) = self.backends.iter().position(|x| std::ptr::eq(x, b)) else {
            return;
        };
        let failed = match outcome {
            Ok(_) => None,
            Err(e) if backend_failed(e) => Some(e),
            // A limit of promfed's, or a select no backend would take.
            Err(_) => return,
        };
        let Some(Ok(mut h)) = self.health.states.get(i).map(|m| m.lock()) else {
            return;
        };
        let (was_up, was_failing) = (h.up, h.last_error.is_some());
        if was_up && failed.is_none() {
            return;
        }
        h.up = failed.is_none();
        h.last_error = failed.map(SourceError::to_string);
        drop(h);
        crate::telemetry::backend_up(&b.name, failed.is_none());
        let Some(Ok(mut gates)) = self.health.logs.get(i).map(|m| m.lock()) else {
            return;
        };
        let now = Instant::now();
        match failed {
            Some(e) => {
                if let Some(skipped) = gates.0.pass(now) {
                    tracing::warn!(
                        backend = %b.name,
                        failures_not_logged = skipped,
                        "backend request failed, marked down: {e}"
                    );
                }
            }
            None if was_failing => {
                if let Some(skipped) = gates.1.pass(now) {
                    tracing::info!(
                        backend = %b.name,
                        recoveries_not_logged = skipped,
                        "backend answers again, marked up"
                    );
                }
            }
            None => {}
        }
    }

    /// Probes every backend once, concurrently, and records the outcome.
    pub async fn probe_all(&self) {
        let timed = self.backends.iter().map(|b| async move {
            let started = std::time::Instant::now();
            let r = b.source.probe().await;
            (r, started.elapsed())
        });
        let results = join_all(timed).await;
        for (i, (r, took)) in results.into_iter().enumerate() {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let mut h = BackendHealth {
                up: r.is_ok(),
                last_check: Some(now),
                last_error: r.err().map(|e| e.to_string()),
                latency_ms: Some(took.as_secs_f64() * 1000.0),
                labels_disagreement: None,
            };
            if let Some(b) = self.backends.get(i) {
                crate::telemetry::backend_up(&b.name, h.up);
                h.labels_disagreement = b
                    .source
                    .store_info()
                    .and_then(|info| super::labels_disagreement(b, &info));
                // Said once when it appears (the first probe runs at
                // startup), not at every probe.
                if let Some(d) = &h.labels_disagreement {
                    if self.health.get(i).labels_disagreement.as_ref() != Some(d) {
                        tracing::warn!(backend = %b.name, "{d}");
                    }
                }
            }
            self.health.set(i, h);
        }
    }

    /// The health of backend `i`.
    pub fn health(&self, i: usize) -> BackendHealth {
        self.health.get(i)
    }
}
