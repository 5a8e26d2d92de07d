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

/// How `got` differs from `want` (the union's answer), in a few words, or
/// `None` when they hold the same result as [`assert_same`] judges it.
/// For reporting a peer's differences (e.g. Thanos Query's) without
/// failing on them.
pub fn difference(got: &ApiResponse, want: &ApiResponse) -> Option<String> {
    if !got.is_success() {
        let err = got.body["error"].as_str().unwrap_or_default();
        return Some(format!("error {}: {}", got.status, cut(err, 120)));
    }
    if got.result_type() != want.result_type() {
        return Some(format!(
            "result type {:?} instead of {:?}",
            got.result_type(),
            want.result_type()
        ));
    }
    match want.result_type() {
        Some("vector") => {
            let g: BTreeMap<_, _> = got.vector().into_iter().collect();
            let w: BTreeMap<_, _> = want.vector().into_iter().collect();
            if let Some(d) = label_set_difference(g.keys(), w.keys()) {
                return Some(d);
            }
            let differing: Vec<_> = w
                .iter()
                .filter(|(k, wv)| !same_value(g[*k], **wv))
                .collect();
            let (k, wv) = differing.first()?;
            Some(format!(
                "{} of {} values differ (e.g. {} instead of {wv} for {})",
                differing.len(),
                w.len(),
                g[*k],
                fmt_labels(k)
            ))
        }
        Some("matrix") => {
            let g = got.matrix();
            let w = want.matrix();
            if let Some(d) = label_set_difference(g.iter().map(|s| &s.0), w.iter().map(|s| &s.0)) {
                return Some(d);
            }
            let (mut points, mut values, mut total) = (0, 0, 0);
            let mut example = None;
            for ((l, gp), (_, wp)) in g.iter().zip(&w) {
                total += wp.len();
                if gp.len() != wp.len() || gp.iter().zip(wp).any(|(a, b)| a.0 != b.0) {
                    points += 1;
                    example.get_or_insert_with(|| {
                        format!(
                            "{} points instead of {} for {}",
                            gp.len(),
                            wp.len(),
                            fmt_labels(l)
                        )
                    });
                    continue;
                }
                for (a, b) in gp.iter().zip(wp) {
                    if !same_value(a.1, b.1) {
                        values += 1;
                        example.get_or_insert_with(|| {
                            format!(
                                "{} instead of {} at {} for {}",
                                a.1,
                                b.1,
                                a.0,
                                fmt_labels(l)
                            )
                        });
                    }
                }
            }
            match (points, values) {
                (0, 0) => None,
                (0, v) => Some(format!(
                    "{v} of {total} points differ in value (e.g. {})",
                    example.unwrap_or_default()
                )),
                (p, _) => Some(format!(
                    "{p} series have other timestamps (e.g. {})",
                    example.unwrap_or_default()
                )),
            }
        }
        _ => {
            let (g, w) = (got.first_value(), want.first_value());
            match (g, w) {
                (Some(a), Some(b)) if same_value(a, b) => None,
                _ => Some(format!("{g:?} instead of {w:?}")),
            }
        }
    }
}

fn label_set_difference<'a>(
    got: impl Iterator<Item = &'a BTreeMap<String, String>>,
    want: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> Option<String> {
    let g: Vec<_> = got.collect();
    let w: Vec<_> = want.collect();
    if g == w {
        return None;
    }
    let extra: Vec<_> = g.iter().filter(|l| !w.contains(l)).collect();
    let missing: Vec<_> = w.iter().filter(|l| !g.contains(l)).collect();
    match (extra.first(), missing.first()) {
        (None, None) => Some("series in another order".into()),
        (Some(e), _) => Some(format!(
            "{} series instead of {} (e.g. extra {})",
            g.len(),
            w.len(),
            fmt_labels(e)
        )),
        (None, Some(m)) => Some(format!(
            "{} series instead of {} (e.g. missing {})",
            g.len(),
            w.len(),
            fmt_labels(m)
        )),
    }
}

fn fmt_labels(l: &BTreeMap<String, String>) -> String {
    let inner: Vec<_> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

fn cut(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
