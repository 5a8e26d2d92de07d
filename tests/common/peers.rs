//! Where the peers built from Go modules by `scripts/peers` live:
//! Prometheus 3.8 (`prometheus`, `promtool`), Thanos and the Argo Rollouts
//! provider client. The script is the one place that knows their versions
//! and paths (it honours `PROMFED_PEERS_DIR` and `CARGO_TARGET_DIR`); the
//! tests ask it with `scripts/peers --print`.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory `scripts/peers --print` names as `key` (`PROM_BIN`,
/// `THANOS_BIN`, `ARGO_BIN`), once its build has finished (the `stamp`
/// file beside it); otherwise a message saying how to build it.
pub fn bin_dir(key: &str) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/peers"))
        .arg("--print")
        .output()
        .map_err(|e| format!("running scripts/peers --print: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(PathBuf::from)
        .ok_or_else(|| format!("scripts/peers --print names no {key}"))?;
    let built = dir.parent().is_some_and(|d| d.join("stamp").is_file());
    if built {
        Ok(dir)
    } else {
        Err(format!(
            "{} is not built: run scripts/peers (builds Prometheus 3.8, Thanos and the \
             Argo client from the Go module proxy, once per machine)",
            dir.display()
        ))
    }
}

/// `prometheus` 3.8, built by `scripts/peers`; panics with how to build it.
pub fn prometheus() -> PathBuf {
    prom_bin("prometheus")
}

/// `promtool` 3.8, built by `scripts/peers`; panics with how to build it.
pub fn promtool() -> PathBuf {
    prom_bin("promtool")
}

fn prom_bin(name: &str) -> PathBuf {
    match bin_dir("PROM_BIN") {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// The Argo Rollouts provider client (tests/argo-client), built by
/// `scripts/peers`; panics with how to build it.
pub fn argo_client() -> PathBuf {
    match bin_dir("ARGO_BIN") {
        Ok(dir) => dir.join("argo-client"),
        Err(e) => panic!("{e}"),
    }
}
