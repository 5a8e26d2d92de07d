//! Self-metrics on `/metrics` (prometheus crate) for promfed itself.

use std::sync::LazyLock;

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// The registry every promfed metric is registered in.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

static BACKEND_UP: LazyLock<Option<IntGaugeVec>> = LazyLock::new(|| {
    let g = IntGaugeVec::new(
        Opts::new(
            "promfed_backend_up",
            "Whether the last health probe of a backend succeeded (1) or not (0).",
        ),
        &["backend"],
    )
    .ok()?;
    REGISTRY.register(Box::new(g.clone())).ok()?;
    Some(g)
});

/// Records a backend's probe outcome.
pub fn backend_up(backend: &str, up: bool) {
    if let Some(g) = BACKEND_UP.as_ref() {
        g.with_label_values(&[backend]).set(i64::from(up));
    }
}

/// Every metric in the Prometheus text format.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = REGISTRY.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
