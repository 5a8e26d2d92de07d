//! Which aggregations are pushed whole, their text, and how answers combine.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

use super::*;
use crate::federation::pushdown::Pushed;
use crate::model::{Labels, Sample, Series};

fn parsed(q: &str) -> Expr {
    crate::model::query_text::parse(q).expect("parses")
}

fn with_node<T>(q: &str, f: impl FnOnce(Option<AggNode<'_>>) -> T) -> T {
    let e = parsed(q);
    match &e {
        Expr::Aggregate(a) => f(candidate(a)),
        _ => f(None),
    }
}

fn ext(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const B: Bounds = Bounds {
    start: 1_000_000,
    end: 2_000_000,
};

#[test]
fn shapes_pushed_whole_and_their_text() {
    let text = |q: &str| {
        with_node(q, |n| {
            n.map(|n| {
                let ms = vec![
                    Matcher::new(MatchOp::Equal, METRIC_NAME, "x"),
                    Matcher::new(MatchOp::Equal, "a", "1"),
                ];
                (n.label(), n.text(&ms, B))
            })
        })
    };
    assert_eq!(
        text("sum by (cluster) (rate(x{a=\"1\"}[5m] offset 1m))"),
        Some((
            "sum by (cluster) (rate(x))".into(),
            "sum by (cluster) (rate({__name__=\"x\",a=\"1\"}[300000ms] offset 60000ms))".into()
        ))
    );
    assert_eq!(
        text("topk without (pod) (3, abs(-2 * x @ end()))"),
        Some((
            "topk without (pod) (3, abs(-2 * x))".into(),
            "topk without (pod) ((3.0), abs((-2.0) * ({__name__=\"x\",a=\"1\"} @ 2000.000)))"
                .into()
        ))
    );
    assert_eq!(
        text("max(-(irate(x[1m])) / 0)").map(|t| t.1),
        Some("max ((-(irate({__name__=\"x\",a=\"1\"}[60000ms]))) / (0.0))".into())
    );
    for q in [
        "sum by (c) (rate(x[5m]) + y)",
        "sum by (c) (ln(x))",
        "sum by (c) (x > 1)",
        "sum by (c) (x ^ 2)",
        "sum by (c) (x % 2)",
        "count_values by (c) (\"v\", x)",
        "limitk by (c) (2, x)",
        "sum by (__name__) (x)",
        "topk by (c) (scalar(y), x)",
        "sum by (c) ({__name__=~\"a|b\"})",
        "sum by (c) (max_over_time(rate(x[1m])[5m:]))",
        "sum by (c) (absent_over_time(x[5m]))",
        "sum by (c) (x or y)",
    ] {
        assert!(text(q).is_none(), "{q} must not be pushed whole");
    }
}

#[test]
fn groups_must_stay_on_one_backend_unless_partial_results_combine() {
    let a = ext(&[("cluster", "k8s-1")]);
    let b = ext(&[("cluster", "k8s-2")]);
    let r = ext(&[("region", "eu")]);
    let check = |q: &str, targets: &[&BTreeMap<String, String>]| {
        with_node(q, |n| {
            let mut n = n.expect("a candidate");
            n.partitions(targets).map(|()| n.label())
        })
    };
    assert_eq!(
        check("sum by (cluster, x) (rate(m[5m]))", &[&a, &b]),
        Ok("sum by (cluster, x) (rate(m))".into())
    );
    assert!(check("sum without (pod) (m)", &[&a, &b]).is_ok());
    // One backend: any grouping.
    assert!(check("sum(m)", &[&b]).is_ok());
    assert!(check("sum by (x) (m)", &[&a, &b]).is_err());
    assert!(check("avg without (cluster) (m)", &[&a, &b]).is_err());
    assert_eq!(
        check("topk(2, m)", &[&a, &b]),
        Ok("topk(2, m), combined".into())
    );
    assert!(check("sum(m)", &[&a, &b]).is_err());
    assert!(check("stddev by (x) (m)", &[&a, &b]).is_err());
    assert!(check("sum by (cluster) (m)", &[&a, &r]).is_err());
    assert_eq!(
        check("count by (x) (m)", &[&a, &b]),
        Ok("count by (x) (m), combined".into())
    );
    assert_eq!(check("max(m)", &[&a, &b]), Ok("max(m), combined".into()));
    // Backends with other external label names: never.
    assert!(check("count(m)", &[&a, &r]).is_err());
}

#[test]
fn external_labels_must_sort_before_every_series_label() {
    let e = ext(&[("cluster", "k8s-1")]);
    let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(order_kept(&e, &names(&["__name__", "destination", "pod"])).is_ok());
    assert!(order_kept(&e, &names(&["__name__", "app", "pod"])).is_err());
    // The series carry the external label themselves.
    assert!(order_kept(&e, &names(&["__name__", "cluster"])).is_err());
    assert!(order_kept(&BTreeMap::new(), &names(&["__name__", "app"])).is_ok());
}

#[test]
fn partial_minima_maxima_and_counts_fold_as_one_pass_would() {
    let fold_all = |op: &str, parts: &[f64]| {
        parts
            .iter()
            .copied()
            .reduce(|acc, v| fold(op, acc, v))
            .unwrap_or(f64::NAN)
    };
    assert_eq!(fold_all("max", &[f64::NAN, 1.0, f64::NAN]), 1.0);
    assert_eq!(fold_all("min", &[2.0, f64::NAN, -1.0]), -1.0);
    assert!(fold_all("max", &[f64::NAN, f64::NAN]).is_nan());
    // Ties keep the first: the sign of a zero.
    assert!(fold_all("max", &[-0.0, 0.0]).is_sign_negative());
    assert!(fold_all("min", &[0.0, -0.0]).is_sign_positive());
    assert_eq!(fold_all("count", &[3.0, 4.0]), 7.0);
    assert_eq!(fold_all("group", &[1.0, 1.0]), 1.0);
}

fn answer(backend: &str, series: &[(&[(&str, &str)], f64)]) -> Pushed {
    Pushed {
        backend: backend.into(),
        series: series
            .iter()
            .map(|(l, v)| Series {
                labels: Labels::from_pairs(l.iter().copied()),
                samples: vec![Sample { t: 1000, v: *v }],
                histograms: Vec::new(),
            })
            .collect(),
    }
}

#[test]
fn answers_in_external_label_order_with_kept_labels_added() {
    let grid = Grid {
        start: 1000,
        end: 1000,
        step: 1,
    };
    let (a, b) = (ext(&[("cluster", "k8s-1")]), ext(&[("cluster", "k8s-2")]));
    // Whole: the backends' groups, k8s-1's first whatever order they came in.
    let got = with_node("sum by (cluster, w) (rate(m[5m]))", |n| {
        let mut n = n.expect("a candidate");
        n.partitions(&[&b, &a]).expect("partitioned");
        as_values(
            &n,
            vec![
                answer("k8s-2", &[(&[("w", "x")], 1.0)]),
                answer("k8s-1", &[(&[("w", "y")], 2.0), (&[("w", "x")], 3.0)]),
            ],
            &[b.clone(), a.clone()],
            grid,
        )
    })
    .expect("on the grid");
    let shown: Vec<(String, Option<f64>)> = got
        .iter()
        .map(|s| (s.labels.to_string(), s.vals[0]))
        .collect();
    assert_eq!(
        shown,
        [
            ("{cluster=\"k8s-1\", w=\"y\"}".to_string(), Some(2.0)),
            ("{cluster=\"k8s-1\", w=\"x\"}".to_string(), Some(3.0)),
            ("{cluster=\"k8s-2\", w=\"x\"}".to_string(), Some(1.0)),
        ]
    );
    // Combined: one group from both, in first-seen order; the name of a
    // topk's input comes back.
    let got = with_node("max by (w) (m)", |n| {
        let mut n = n.expect("a candidate");
        n.partitions(&[&a, &b]).expect("combined");
        as_values(
            &n,
            vec![
                answer("k8s-1", &[(&[("w", "y")], f64::NAN), (&[("w", "x")], 3.0)]),
                answer("k8s-2", &[(&[("w", "x")], 4.0), (&[("w", "y")], 1.0)]),
            ],
            &[a.clone(), b.clone()],
            grid,
        )
    })
    .expect("on the grid");
    let shown: Vec<(String, Option<f64>)> = got
        .iter()
        .map(|s| (s.labels.to_string(), s.vals[0]))
        .collect();
    assert_eq!(
        shown,
        [
            ("{w=\"y\"}".to_string(), Some(1.0)),
            ("{w=\"x\"}".to_string(), Some(4.0)),
        ]
    );
    let got = with_node("topk by (cluster) (1, rate(m[1m]))", |n| {
        let mut n = n.expect("a candidate");
        n.partitions(&[&a]).expect("one backend");
        as_values(
            &n,
            vec![answer("k8s-1", &[(&[("w", "y")], 1.0)])],
            std::slice::from_ref(&a),
            grid,
        )
    })
    .expect("on the grid");
    assert_eq!(
        got[0].labels.to_string(),
        "{__name__=\"m\", cluster=\"k8s-1\", w=\"y\"}"
    );
    assert!(got[0].drop_name);
    // A group on two backends where none may be: not used.
    let twice = with_node("sum by (cluster, w) (m)", |n| {
        let mut n = n.expect("a candidate");
        n.partitions(&[&a, &b]).expect("partitioned");
        as_values(
            &n,
            vec![
                answer("k8s-1", &[(&[("cluster", "k8s-2"), ("w", "x")], 1.0)]),
                answer("k8s-2", &[(&[("w", "x")], 1.0)]),
            ],
            &[a.clone(), b.clone()],
            grid,
        )
    });
    assert!(twice.is_none());
}

#[test]
fn topk_is_reranked_only_without_ties() {
    let vs = |l: &str, v: &[Option<f64>]| VSeries {
        labels: Labels::from_pairs([("s", l)]),
        drop_name: false,
        vals: v.to_vec(),
        hists: Vec::new(),
    };
    let one = |_: &Labels| Labels::empty();
    // Backend 0 answered its best 3 (k + 1 for k = 2), backend 1 its 2.
    let all = || {
        vec![
            (0, vs("a", &[Some(5.0), Some(1.0)])),
            (0, vs("b", &[Some(3.0), Some(2.0)])),
            (0, vs("c", &[Some(1.0), None])),
            (1, vs("d", &[Some(4.0), Some(9.0)])),
            (1, vs("e", &[Some(0.5), Some(3.0)])),
        ]
    };
    let got = rerank::rerank(all(), 2.0, true, one, false).expect("no ties");
    let shown: Vec<(String, Vec<Option<f64>>)> = got
        .iter()
        .map(|s| (s.labels.to_string(), s.vals.clone()))
        .collect();
    assert_eq!(
        shown,
        [
            ("{s=\"a\"}".to_string(), vec![Some(5.0), None]),
            ("{s=\"d\"}".to_string(), vec![Some(4.0), Some(9.0)]),
            ("{s=\"e\"}".to_string(), vec![None, Some(3.0)]),
        ]
    );
    // One step: best first.
    let first = |s: &VSeries| s.vals[0];
    let step0: Vec<VSeries> = all()
        .into_iter()
        .map(|(r, mut s)| {
            s.vals.truncate(1);
            (r, s)
        })
        .map(|(_, s)| s)
        .collect();
    let got = rerank::rerank(
        step0.into_iter().map(|s| (0, s)).collect(),
        3.0,
        false,
        one,
        true,
    )
    .expect("no ties");
    assert_eq!(
        got.iter().map(first).collect::<Vec<_>>(),
        [Some(0.5), Some(1.0), Some(3.0)]
    );
    // A tie at the boundary, among the kept, or a NaN: not certain.
    let tie = vec![
        (0, vs("a", &[Some(5.0)])),
        (1, vs("b", &[Some(3.0)])),
        (1, vs("c", &[Some(3.0)])),
    ];
    assert!(rerank::rerank(tie.clone(), 2.0, true, one, true).is_none());
    assert!(rerank::rerank(tie.clone(), 3.0, true, one, true).is_none());
    assert!(rerank::rerank(tie, 1.0, true, one, true).is_some());
    let nan = vec![(0, vs("a", &[Some(f64::NAN)])), (1, vs("b", &[Some(1.0)]))];
    assert!(rerank::rerank(nan, 1.0, true, one, true).is_none());
    // A backend that answered k + 1 whose last is the k-th value: its
    // left-out series may tie.
    let hidden = vec![
        (0, vs("a", &[Some(5.0)])),
        (0, vs("b", &[Some(3.0)])),
        (1, vs("c", &[Some(3.0)])),
    ];
    assert!(rerank::rerank(hidden, 1.0, true, one, true).is_some());
    // k not a whole number: read raw.
    assert!(rerank::rerank(all(), 1.5, true, one, true).is_none());
}
