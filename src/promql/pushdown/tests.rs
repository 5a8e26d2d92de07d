//! Answers turned into the raw path's vectors; which nodes are candidates.

use super::*;
use crate::model::{Labels, Sample, Series};

fn series(labels: &[(&str, &str)], pts: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs(labels.iter().copied()),
        samples: pts.iter().map(|&(t, v)| Sample { t, v }).collect(),
        histograms: Vec::new(),
    }
}

#[test]
fn answers_become_the_raw_paths_vectors() {
    let grid = Grid {
        start: 1000,
        end: 3000,
        step: 1000,
    };
    let got = as_vectors(
        vec![
            series(&[("cluster", "b"), ("a", "1")], &[(2000, 1.5)]),
            series(
                &[("cluster", "a"), ("a", "1")],
                &[(1000, 0.5), (3000, -0.0)],
            ),
            // last_over_time keeps the name.
            series(&[("__name__", "x"), ("cluster", "c")], &[(3000, 2.0)]),
        ]
        .into_iter(),
        "x",
        grid,
    )
    .expect("on the grid");
    let labels: Vec<String> = got.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        labels,
        [
            "{__name__=\"x\", a=\"1\", cluster=\"a\"}",
            "{__name__=\"x\", a=\"1\", cluster=\"b\"}",
            "{__name__=\"x\", cluster=\"c\"}"
        ]
    );
    assert_eq!(
        got.iter().map(|s| s.drop_name).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(got[0].vals, vec![Some(0.5), None, Some(-0.0)]);
    assert!(got[0].vals[2].is_some_and(|v| v.is_sign_negative()));
    assert_eq!(got[1].vals, vec![None, Some(1.5), None]);
    // Off the grid, or one series from two backends: not used.
    let off = as_vectors(
        vec![series(&[("a", "1")], &[(1500, 1.0)])].into_iter(),
        "x",
        grid,
    );
    assert!(off.is_none());
    let twice = as_vectors(
        vec![
            series(&[("a", "1")], &[(1000, 1.0)]),
            series(&[("a", "1")], &[(2000, 1.0)]),
        ]
        .into_iter(),
        "x",
        grid,
    );
    assert!(twice.is_none());
}

#[test]
fn only_per_series_functions_of_one_metric_outside_subqueries() {
    let pushed = |q: &str| -> Vec<String> {
        let e = crate::model::query_text::parse(q).expect("parses");
        let mut found = Vec::new();
        candidates(&e, false, false, &mut found);
        found
            .iter()
            .filter_map(|n| match n {
                Node::Series(c) => Some(c.label()),
                Node::Agg(..) => None,
            })
            .collect()
    };
    assert_eq!(
        pushed("sum(rate(a[5m])) / sum by (c) (max_over_time(b{c=\"1\"}[1m] offset 1m))"),
        ["rate(a)", "max_over_time(b)"]
    );
    assert!(pushed("max_over_time(rate(a[1m])[5m:])").is_empty());
    assert!(pushed("rate({__name__=~\"a|b\"}[5m])").is_empty());
    assert!(pushed("absent_over_time(a[5m])").is_empty());
    assert!(pushed("quantile_over_time(0.5, a[5m])").is_empty());
    assert_eq!(
        pushed("label_replace(irate(a[1m]), \"x\", \"$1\", \"c\", \"(.*)\")"),
        ["irate(a)"]
    );
}
