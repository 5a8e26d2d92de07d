//! Vector plumbing: vector, scalar, absent, absent_over_time, sort, sort_desc.

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};

use super::{arg, Args};
use crate::model::{Labels, METRIC_NAME};
use crate::promql::eval::Evaluator;
use crate::promql::steps::{VSeries, Val};
use crate::promql::EngineError;

pub(crate) fn vector(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let s = ev.eval_scalar(arg(args, 0)?)?;
    Ok(Val::Vector(vec![VSeries {
        labels: Labels::empty(),
        drop_name: false,
        vals: s.into_iter().map(Some).collect(),
        hists: Vec::new(),
    }]))
}

pub(crate) fn scalar(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let v = ev.eval_vector(arg(args, 0)?)?;
    let n = ev.grid.len();
    Ok(Val::Scalar(
        (0..n)
            .map(|i| {
                let mut present = v.iter().filter_map(|s| s.vals[i]);
                match (present.next(), present.next()) {
                    (Some(x), None) => x,
                    _ => f64::NAN,
                }
            })
            .collect(),
    ))
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// The labels `absent` gives its output: the selector's equality matchers
/// (a label matched twice is left out).
fn absent_labels(vs: Option<&VectorSelector>) -> Labels {
    let Some(vs) = vs else {
        return Labels::empty();
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    let all = vs.matchers.matchers.iter();
    for m in all {
        if m.name == METRIC_NAME {
            continue;
        }
        if pairs.iter().any(|(n, _)| n == &m.name) {
            dropped.push(m.name.clone());
            continue;
        }
        if matches!(m.op, MatchOp::Equal) {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    pairs.retain(|(n, _)| !dropped.contains(n));
    Labels::from_pairs(pairs)
}

pub(crate) fn absent(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let e = arg(args, 0)?;
    let v = ev.eval_vector(e)?;
    let n = ev.grid.len();
    let vs = match unparen(e) {
        Expr::VectorSelector(vs) => Some(vs),
        _ => None,
    };
    let vals: Vec<Option<f64>> = (0..n)
        .map(|i| (!v.iter().any(|s| s.vals[i].is_some() || s.hist(i).is_some())).then_some(1.0))
        .collect();
    Ok(Val::Vector(one_series(absent_labels(vs), vals)))
}

pub(crate) fn absent_over_time(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let e = arg(args, 0)?;
    let m = ev.eval_matrix(e)?;
    let vs = match unparen(e) {
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let n = m.windows.len();
    let mut present = vec![false; n];
    for s in &m.series {
        m.for_each_window(s, |i, w| present[i] |= !w.is_empty())?;
        if !s.hists.is_empty() {
            for (i, &(lo, hi)) in m.windows.iter().enumerate() {
                present[i] |= s.hists.iter().any(|h| h.t > lo && h.t <= hi);
            }
        }
    }
    let vals = present.into_iter().map(|p| (!p).then_some(1.0)).collect();
    Ok(Val::Vector(one_series(absent_labels(vs), vals)))
}

fn one_series(labels: Labels, vals: Vec<Option<f64>>) -> Vec<VSeries> {
    let s = VSeries {
        labels,
        drop_name: false,
        vals,
        hists: Vec::new(),
    };
    if s.is_empty() {
        Vec::new()
    } else {
        vec![s]
    }
}

pub(crate) fn sort(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    sort_by_value(ev, args, false)
}

pub(crate) fn sort_desc(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    sort_by_value(ev, args, true)
}

fn sort_by_value(ev: &mut Evaluator<'_>, args: &Args, desc: bool) -> Result<Val, EngineError> {
    let mut v = ev.eval_vector(arg(args, 0)?)?;
    if ev.grid.len() == 1 {
        let key = |s: &VSeries| s.vals[0].unwrap_or(f64::NAN);
        v.sort_by(|a, b| {
            let (x, y) = (key(a), key(b));
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            }
        });
    }
    Ok(Val::Vector(v))
}

#[cfg(test)]
mod tests {
    use crate::model::Labels;
    use crate::promql::testutil::{assert_matrix, at, random_series, range, source, steps};

    #[test]
    fn absent_scalar_and_vector_follow_presence() {
        let data = random_series(90, "m", 3, 30, true);
        let src = source(&data);
        let (start, end, step) = steps(30);
        let ts = || (start..=end).step_by(step as usize);
        let present = |t: i64| {
            data.iter()
                .filter_map(|s| at(&s.samples, t))
                .collect::<Vec<f64>>()
        };
        let q = r#"absent(nope{i="0", g=~".+", x="y", x="z"})"#;
        let want = vec![(
            Labels::from_pairs([("i", "0")]),
            ts().map(|t| (t, 1.0)).collect(),
        )];
        assert_matrix(q, &range(&src, q, start, end, step), want);
        let q = "absent(m)";
        let want = vec![(
            Labels::empty(),
            ts().filter(|t| present(*t).is_empty())
                .map(|t| (t, 1.0))
                .collect(),
        )];
        assert_matrix(q, &range(&src, q, start, end, step), want);
        let q = "vector(scalar(m))";
        let want = vec![(
            Labels::empty(),
            ts().map(|t| {
                let p = present(t);
                (t, if p.len() == 1 { p[0] } else { f64::NAN })
            })
            .collect(),
        )];
        assert_matrix(q, &range(&src, q, start, end, step), want);
    }
}
