//! Comparing promfed's answers with the union Prometheus's: exactly.

use std::collections::BTreeMap;

use super::ApiResponse;

/// Equal as numbers go: exactly, NaN equal to NaN. promfed adds the same
/// terms in the same order (series sorted by label set, Kahan-compensated
/// as in Prometheus 3) as one Prometheus holding every cluster's data.
pub fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Asserts two answers hold the same result: type, label sets and values.
/// Returns whether the result was non-empty.
pub fn assert_same(what: &str, got: &ApiResponse, want: &ApiResponse) -> bool {
    assert!(got.is_success(), "{what}: promfed failed: {}", got.body);
    assert!(want.is_success(), "{what}: union failed: {}", want.body);
    assert_eq!(got.result_type(), want.result_type(), "{what}");
    match want.result_type() {
        Some("vector") => {
            let g: BTreeMap<_, _> = got.vector().into_iter().collect();
            let w: BTreeMap<_, _> = want.vector().into_iter().collect();
            assert_eq!(
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>(),
                "{what}: label sets differ"
            );
            for (k, wv) in &w {
                let gv = g[k];
                assert!(same_value(gv, *wv), "{what} {k:?}: promfed {gv} union {wv}");
            }
            !w.is_empty()
        }
        Some("matrix") => {
            let g = got.matrix();
            let w = want.matrix();
            let gl: Vec<_> = g.iter().map(|s| &s.0).collect();
            let wl: Vec<_> = w.iter().map(|s| &s.0).collect();
            assert_eq!(gl, wl, "{what}: series differ (or order)");
            for ((l, gp), (_, wp)) in g.iter().zip(&w) {
                assert_eq!(gp.len(), wp.len(), "{what} {l:?}: point counts");
                for (a, b) in gp.iter().zip(wp) {
                    assert_eq!(a.0, b.0, "{what} {l:?}: timestamps");
                    assert!(
                        same_value(a.1, b.1),
                        "{what} {l:?} at {}: {} vs {}",
                        a.0,
                        a.1,
                        b.1
                    );
                }
            }
            !w.is_empty()
        }
        other => {
            let (g, w) = (got.first_value(), want.first_value());
            assert!(
                matches!((g, w), (Some(a), Some(b)) if same_value(a, b)),
                "{what} ({other:?}): {g:?} vs {w:?}"
            );
            true
        }
    }
}
