//! Argo Rollouts' own Prometheus provider (`tests/argo-client`, run through
//! `common::argo`) pointed at promfed over real Thanos sidecars (k8s-1, and
//! k8s-2 as an HA pair with a gap in replica b): the good canary's
//! analysis is Successful and the bad canary's Failed, at every step with
//! canary traffic, and every measurement (phase, value, message) equals
//! the one Argo's provider takes against the Prometheus 3.8 union.
//!
//! Peers from `scripts/peers` (Prometheus 3.8, Thanos v0.42.4, the Argo
//! client); run with `PROMFED_PEERS_DIR=... cargo test --test thanos_argo`.

mod common;
mod thanos_support;

use std::sync::OnceLock;

use common::argo::measure;
use common::{harness_config, Promfed};
use istio_sim::Canary;
use thanos_support::{store_backend, Sidecars, HOLE_SECS};

/// The sidecar harness over the `canary` run, and promfed (no cache) over
/// its sidecars; both started once per test binary, stopped at exit.
fn over_sidecars(canary: Canary) -> &'static (Sidecars, Promfed) {
    static GOOD: OnceLock<Result<(Sidecars, Promfed), String>> = OnceLock::new();
    static BAD: OnceLock<Result<(Sidecars, Promfed), String>> = OnceLock::new();
    let cell = match canary {
        Canary::Good => &GOOD,
        Canary::Bad => &BAD,
    };
    let started = cell.get_or_init(|| {
        let mut h = Sidecars::start_with(&harness_config(canary)).map_err(|e| e.to_string())?;
        h.stop_on_exit();
        let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\nbackends:\n");
        for s in &h.sidecars {
            cfg.push_str(&store_backend(&s.name, &s.grpc_url(), &[], "20s"));
        }
        let mut p = Promfed::start(&cfg).map_err(|e| e.to_string())?;
        p.stop_on_exit();
        Ok((h, p))
    });
    match started {
        Ok(x) => x,
        Err(e) => panic!("sidecar harness or promfed could not start: {e}"),
    }
}

/// Two polls per step (as the two clusters' controllers poll) and two in
/// replica b's hole: Argo's measurement through promfed equals the one
/// through the union, and is `expected` where the canary gets traffic (an
/// `Error`, an empty result, where it gets none).
fn every_step(canary: Canary, expected: &str) {
    let (h, pf) = over_sidecars(canary);
    let s0 = h.schedule.start as f64;
    let mut polls: Vec<(f64, u32)> = Vec::new();
    for step in &h.schedule.steps {
        polls.push((step.mid() + 2.137, step.weight));
        polls.push((step.mid() + 9.512, step.weight));
    }
    for t in [
        s0 + HOLE_SECS.0 as f64 + 120.25,
        s0 + HOLE_SECS.0 as f64 + 470.75,
    ] {
        let weight = h
            .schedule
            .steps
            .iter()
            .find(|s| (s.start as f64) <= t && t < s.end as f64)
            .map_or(0, |s| s.weight);
        polls.push((t, weight));
    }
    let mut judged = 0;
    for (t, weight) in polls {
        let got = measure(&pf.url, t);
        let want = measure(&h.union.url, t);
        assert_eq!(got, want, "at {t}: promfed over sidecars vs union");
        if weight > 0 {
            assert_eq!(got.phase, expected, "at {t} (weight {weight}): {got:?}");
            judged += 1;
        } else {
            assert_eq!(got.phase, "Error", "at {t} (no canary traffic): {got:?}");
        }
    }
    assert!(
        judged >= 8,
        "only {judged} measurements with canary traffic"
    );
}

#[test]
fn good_canary_over_sidecars_is_successful() {
    every_step(Canary::Good, "Successful");
}

#[test]
fn bad_canary_over_sidecars_fails() {
    every_step(Canary::Bad, "Failed");
}
