//! Argo Rollouts' own Prometheus metric provider is the analysis client:
//! `metricproviders/prometheus` (NewPrometheusAPI, NewPrometheusProvider,
//! Provider.Run) from the Argo Rollouts Go module, built into
//! `tests/argo-client` by `scripts/peers`, measures the seed's
//! AnalysisTemplate metric through promfed and through the Prometheus 3.8
//! union, and the phases and values must agree.

mod common;

use std::sync::OnceLock;

use common::argo::measure;
use common::{config_yaml, harness, shared, Harness, Promfed};
use istio_sim::Canary;

/// promfed over `h`'s clusters (remote read), with `extra` config.
fn start_promfed(h: &Harness, extra: &str) -> Promfed {
    let b = h.backends();
    let k1 = [("cluster", b[0].0.as_str())];
    let k2 = [("cluster", b[1].0.as_str())];
    let cfg = config_yaml(&[(&b[0].0, &b[0].1, &k1), (&b[1].0, &b[1].1, &k2)], extra);
    let mut p = Promfed::start(&cfg).unwrap_or_else(|e| panic!("promfed: {e}"));
    p.stop_on_exit();
    p
}

/// promfed without a cache over the good or bad canary's clusters.
fn uncached(canary: Canary) -> &'static Promfed {
    static GOOD: OnceLock<Promfed> = OnceLock::new();
    static BAD: OnceLock<Promfed> = OnceLock::new();
    let cell = match canary {
        Canary::Good => &GOOD,
        Canary::Bad => &BAD,
    };
    cell.get_or_init(|| start_promfed(shared(canary), ""))
}

/// At two times in the middle of every step (as the two controllers poll), Argo's
/// measurement through promfed is `expected` where the canary gets
/// traffic, and equals the measurement against the 3.8 union everywhere
/// (phase, value and message: an empty result before the canary gets
/// traffic is an `Error` from both).
fn every_step(canary: Canary, expected: &str) {
    let h = shared(canary);
    let pf = uncached(canary);
    let mut judged = 0;
    for step in &h.schedule.steps {
        for t in [step.mid() + 2.137, step.mid() + 9.512] {
            let got = measure(&pf.url, t);
            let want = measure(&h.union.url, t);
            assert_eq!(got, want, "step {} at {t}: promfed vs union", step.index);
            if step.weight > 0 {
                assert_eq!(got.phase, expected, "step {} at {t}: {got:?}", step.index);
                judged += 1;
            } else {
                assert_eq!(
                    got.phase, "Error",
                    "step {} (no canary traffic) at {t}: {got:?}",
                    step.index
                );
            }
        }
    }
    assert!(
        judged >= 8,
        "only {judged} measurements with canary traffic"
    );
}

#[test]
fn good_canary_is_successful_at_every_step() {
    every_step(Canary::Good, "Successful");
}

#[test]
fn bad_canary_fails_at_every_step() {
    every_step(Canary::Bad, "Failed");
}

/// A backend down under the default `partial_response: abort`: Argo's
/// measurement is an `Error` carrying promfed's message, which names the
/// backend.
#[test]
fn a_failed_backend_is_an_error_measurement_with_promfeds_message() {
    let h = harness();
    let b = h.backends();
    // A port nobody listens on: bind, note the port, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let k1 = [("cluster", b[0].0.as_str())];
    let k2 = [("cluster", "k8s-2")];
    let cfg = config_yaml(&[(&b[0].0, &b[0].1, &k1), ("k8s-2", &dead, &k2)], "");
    let pf = Promfed::start(&cfg).unwrap_or_else(|e| panic!("promfed: {e}"));
    let step = h
        .schedule
        .steps
        .iter()
        .rfind(|s| s.weight > 0)
        .expect("a canary step");
    let got = measure(&pf.url, step.mid());
    assert_eq!(got.phase, "Error", "{got:?}");
    assert!(
        got.message.contains("k8s-2"),
        "message does not name the backend: {got:?}"
    );
}

/// With the cache on, the two clusters' controllers polling at different
/// times within one grid cell get the same value, the union's at the
/// cell's start.
#[test]
fn two_controllers_in_one_grid_cell_get_the_same_value() {
    let h = harness();
    let pf = start_promfed(h, "cache:\n  grid: 10s\n");
    for step in h.schedule.steps.iter().filter(|s| s.weight > 0) {
        let cell = (step.mid() / 10.0).floor() * 10.0;
        let k8s1 = measure(&pf.url, cell + 2.137);
        let k8s2 = measure(&pf.url, cell + 9.512);
        assert_eq!(k8s1, k8s2, "step {}", step.index);
        assert_eq!(k8s1.phase, "Successful", "step {}", step.index);
        let union = measure(&h.union.url, cell);
        assert_eq!(k8s1.value, union.value, "step {}", step.index);
    }
}
