//! Argo Rollouts' own Prometheus provider (`tests/argo-client`, built by
//! `scripts/peers`) measuring the seed's AnalysisTemplate metric: the real
//! analysis client, and the oracle of `promfed analyze`.

use std::process::Command;

use istio_sim::SUCCESS_RATE_QUERY;
use serde::Deserialize;

/// The seed template's `successCondition`.
pub const SUCCESS_CONDITION: &str = "result[0] > 0.90";

/// One `Measurement` as Argo's provider returned it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Measurement {
    pub phase: String,
    pub value: String,
    pub message: String,
}

/// The seed query measured once through `address` at `at` (Unix seconds;
/// the data is backfilled at fixed times) with the seed's condition.
pub fn measure(address: &str, at: f64) -> Measurement {
    measure_with(address, at, SUCCESS_CONDITION, "")
}

/// [`measure`] with other success and failure conditions.
pub fn measure_with(address: &str, at: f64, success: &str, failure: &str) -> Measurement {
    let out = Command::new(super::peers::argo_client())
        .args(["-address", address, "-query", SUCCESS_RATE_QUERY])
        .args(["-success-condition", success, "-failure-condition", failure])
        .args(["-timeout", "20"])
        .arg("-at")
        .arg(format!("{at:.3}"))
        .output()
        .unwrap_or_else(|e| panic!("running argo-client: {e}"));
    assert!(
        out.status.success(),
        "argo-client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "argo-client printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
