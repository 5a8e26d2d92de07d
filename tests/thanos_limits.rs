//! Byte limits on the StoreAPI's series stream, over real Thanos sidecars:
//! `limits.max_fetched_bytes` (the query's budget over all backends) and a
//! `thanos_store` backend's `max_response_bytes` (one call's answer) refuse
//! a query whose series stream is larger, with a 422 naming the limit (and
//! the backend), whatever the partial-response policy; under a higher
//! limit the same query answers as the Prometheus 3.8 union does.
//!
//! Peers from `scripts/peers`; run with `PROMFED_PEERS_DIR=... cargo test
//! --test thanos_limits`.

mod common;
mod thanos_support;

use common::client::post_form;
use common::compare::assert_same;
use common::{query, ApiResponse, HarnessError, Promfed};
use thanos_support::{sidecars, store_backend, Sidecars};

type R = Result<(), HarnessError>;

/// Reads every sample of the last hour of `istio_requests_total` from
/// every sidecar: a series stream of some megabytes per store.
const HEAVY: &str = "sum by (cluster) (count_over_time(istio_requests_total[1h]))";

/// promfed over the three sidecars with `limits` (YAML flow map, may be
/// empty) and `max_response_bytes` on every backend (if given).
fn start(h: &Sidecars, limits: &str, max_response_bytes: Option<u64>) -> Promfed {
    let mut cfg = String::from("listen: 127.0.0.1:0\nreplica_labels: [replica]\n");
    if !limits.is_empty() {
        cfg.push_str(&format!("limits: {limits}\n"));
    }
    cfg.push_str("backends:\n");
    for s in &h.sidecars {
        cfg.push_str(&store_backend(&s.name, &s.grpc_url(), &[], "20s"));
        if let Some(max) = max_response_bytes {
            cfg.push_str(&format!("    max_response_bytes: {max}\n"));
        }
    }
    Promfed::start(&cfg).unwrap_or_else(|e| panic!("promfed: {e}"))
}

/// The heavy query at the end of the run, with or without
/// `partial_response=true` (warn).
async fn heavy(p: &Promfed, t: f64, warn: bool) -> Result<ApiResponse, HarnessError> {
    let mut form = vec![("query", HEAVY.to_string()), ("time", format!("{t:.3}"))];
    if warn {
        form.push(("partial_response", "true".into()));
    }
    post_form(&p.url, "/api/v1/query", &form).await
}

fn assert_refused(r: &ApiResponse, names: &[&str], what: &str) {
    assert_eq!(r.status, 422, "{what}: {}", r.body);
    assert_eq!(r.body["status"], "error", "{what}: {}", r.body);
    assert_eq!(r.body["errorType"], "execution", "{what}: {}", r.body);
    let err = r.body["error"].as_str().unwrap_or_default();
    for n in names {
        assert!(err.contains(n), "{what}: error does not name {n}: {err}");
    }
}

#[tokio::test]
async fn max_fetched_bytes_refuses_a_large_series_stream_and_a_higher_limit_answers() -> R {
    let h = sidecars();
    let t = h.schedule.end as f64 - 1.0;
    let want = query(&h.union.url, HEAVY, t).await?;
    // 200 kB: less than the three sidecars' hour of chunks.
    let low = start(h, "{max_fetched_bytes: 200000}", None);
    for warn in [false, true] {
        let r = heavy(&low, t, warn).await?;
        assert_refused(&r, &["limits.max_fetched_bytes"], &format!("warn={warn}"));
    }
    // A small query still fits the same budget.
    let small = "count by (cluster) (istio_requests_total{response_code=\"503\"})";
    let got = query(&low.url, small, t).await?;
    assert!(assert_same(
        small,
        &got,
        &query(&h.union.url, small, t).await?
    ));
    let high = start(h, "{max_fetched_bytes: 268435456}", None);
    let got = heavy(&high, t, false).await?;
    assert!(assert_same("under 256 MiB", &got, &want));
    Ok(())
}

#[tokio::test]
async fn a_stores_max_response_bytes_refuses_a_large_series_stream_naming_it() -> R {
    let h = sidecars();
    let t = h.schedule.end as f64 - 1.0;
    let want = query(&h.union.url, HEAVY, t).await?;
    let low = start(h, "", Some(20_000));
    for warn in [false, true] {
        let r = heavy(&low, t, warn).await?;
        if warn {
            // Warn tolerates a failed store: every store is cut, each
            // named with the limit, and nothing is left to answer with.
            let w = r.body["warnings"].to_string();
            assert_eq!(r.status, 200, "{}", r.body);
            for s in &h.sidecars {
                assert!(w.contains(&s.name), "no warning for {}: {w}", s.name);
            }
            assert!(w.contains("backends[].max_response_bytes"), "{w}");
            assert!(r.vector().is_empty(), "{}", r.body);
        } else {
            assert_refused(&r, &["backends[].max_response_bytes", "k8s-"], "abort");
        }
    }
    let high = start(h, "", Some(64 << 20));
    let got = heavy(&high, t, false).await?;
    assert!(assert_same("under 64 MiB a store", &got, &want));
    Ok(())
}
