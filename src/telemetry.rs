//! Process metrics: one registry that every layer registers into, served
//! at `/metrics` in the Prometheus text format.

use prometheus::{Registry, TextEncoder};

/// The metrics registry of one server.
#[derive(Clone, Default)]
pub struct Telemetry {
    registry: Registry,
}

impl Telemetry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Where metrics are registered.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the text exposition format.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }
}
