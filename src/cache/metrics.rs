//! The cache's `/metrics` counters.

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

static GLOBAL: LazyLock<Result<CacheMetrics, super::SetupError>> = LazyLock::new(|| {
    CacheMetrics::register(&crate::telemetry::REGISTRY)
        .map_err(|e| super::SetupError(e.to_string()))
});

/// Counters of hits, misses, coalesced waits, evictions, upstream
/// evaluations and store failures.
#[derive(Clone)]
pub struct CacheMetrics {
    /// Cache lookups by query kind and outcome.
    pub requests: IntCounterVec,
    /// `requests{kind="instant",result="hit"}`, resolved once: the hot path.
    pub instant_hits: IntCounter,
    /// Evaluations the cache asked the engine for, by query kind.
    pub evaluations: IntCounterVec,
    /// Answers not stored, by reason.
    pub not_stored: IntCounterVec,
    /// Memory-store entries removed by the size bound or their TTL.
    pub evictions: IntCounterVec,
    /// Failed or skipped calls to the shared store, by operation.
    pub store_errors: IntCounterVec,
    /// 1 while the shared store answers, 0 while promfed runs without it.
    pub redis_up: IntGauge,
    /// Waits for another replica's evaluation of a cell, by how they ended
    /// (`answered`, or `gave_up` and evaluated here).
    pub remote_waits: IntCounterVec,
}

impl CacheMetrics {
    /// The metrics in promfed's registry (what `/metrics` serves), created
    /// once per process and shared by every cache in it.
    pub fn global() -> Result<Self, super::SetupError> {
        GLOBAL.clone()
    }

    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
                Opts::new(
                    "promfed_cache_requests_total",
                    "Queries answered through the cache, by kind (instant, range, warm) and result (hit, miss, coalesced, partial, bypass).",
                ),
                &["kind", "result"],
            )?;
        let m = CacheMetrics {
            instant_hits: requests.with_label_values(&["instant", "hit"]),
            requests,
            evaluations: IntCounterVec::new(
                Opts::new(
                    "promfed_cache_upstream_evaluations_total",
                    "Evaluations the cache asked the engine for (each one a fan-out to the backends), by kind.",
                ),
                &["kind"],
            )?,
            not_stored: IntCounterVec::new(
                Opts::new(
                    "promfed_cache_not_stored_total",
                    "Successful answers the cache did not store, by reason (warnings, annotations, fresh).",
                ),
                &["reason"],
            )?,
            evictions: IntCounterVec::new(
                Opts::new(
                    "promfed_cache_evictions_total",
                    "Memory-store entries removed before being replaced, by reason (size, expired).",
                ),
                &["reason"],
            )?,
            store_errors: IntCounterVec::new(
                Opts::new(
                    "promfed_cache_store_errors_total",
                    "Calls to the shared (Redis) store that failed, timed out or were skipped while it is down, by operation.",
                ),
                &["op"],
            )?,
            redis_up: IntGauge::new(
                "promfed_cache_redis_up",
                "1 while the shared (Redis) store answers, 0 while promfed runs without it.",
            )?,
            remote_waits: IntCounterVec::new(
                Opts::new(
                    "promfed_cache_remote_waits_total",
                    "Waits for another replica's evaluation of a grid cell (Redis lease), by result (answered, gave_up).",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.evaluations.clone()))?;
        registry.register(Box::new(m.not_stored.clone()))?;
        registry.register(Box::new(m.evictions.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.redis_up.clone()))?;
        registry.register(Box::new(m.remote_waits.clone()))?;
        Ok(m)
    }
}
