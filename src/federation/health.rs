//! Background health probes of the backends: shown on `/api/v1/stores` and
//! `/metrics`, never used to gate readiness.

use std::sync::Mutex;

use futures::future::join_all;

use super::Federation;

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

/// Health of every backend, in the federation's backend order.
#[derive(Debug, Default)]
pub struct HealthBoard {
    states: Vec<Mutex<BackendHealth>>,
}

impl HealthBoard {
    pub fn new(n: usize) -> Self {
        HealthBoard {
            states: (0..n)
                .map(|_| Mutex::new(BackendHealth::default()))
                .collect(),
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

impl Federation {
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
