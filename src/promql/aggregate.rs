//! Aggregation operators (sum, avg, count, topk, quantile, …) with by/without.

mod hist;

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::eval::Evaluator;
use super::functions::quantile as quantile_of;
use super::labelset::Grouping;
use super::steps::{VSeries, Val};
use super::EngineError;
use crate::limits::meter;
use crate::model::Labels;

/// Neumaier-compensated summation step, as Prometheus's kahanSumInc.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Running state of one group at one step.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    n: f64,
    v: f64,
    c: f64,
    mean: f64,
    incremental: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
}

/// Evaluates an aggregation.
pub(crate) fn eval(ev: &mut Evaluator<'_>, a: &AggregateExpr) -> Result<Val, EngineError> {
    let op = a.op.to_string().to_lowercase();
    let grouping = match &a.modifier {
        Some(LabelModifier::Include(ls)) => Grouping::new(true, &ls.labels),
        Some(LabelModifier::Exclude(ls)) => Grouping::new(false, &ls.labels),
        None => Grouping::new(true, &[]),
    };
    let n = ev.grid.len();
    let simple = match op.as_str() {
        "sum" => Some(Kind::Sum),
        "avg" => Some(Kind::Avg),
        "min" => Some(Kind::Min),
        "max" => Some(Kind::Max),
        "count" => Some(Kind::Count),
        "group" => Some(Kind::Group),
        "stddev" => Some(Kind::Stddev),
        "stdvar" => Some(Kind::Stdvar),
        _ => None,
    };
    if let Some(kind) = simple {
        let input = ev.eval_vector(&a.expr)?;
        return Ok(Val::Vector(simple_agg(
            kind, &op, &input, &grouping, n, ev.ann,
        )?));
    }
    let param = a
        .param
        .as_deref()
        .ok_or_else(|| EngineError::Execution(format!("{op} needs a parameter")))?;
    match op.as_str() {
        "count_values" => {
            let label = match ev.eval(unparen(param))? {
                Val::String(s) => s,
                other => return Err(super::eval::type_error("string", &other)),
            };
            let input = ev.eval_vector(&a.expr)?;
            count_values(&label, &input, &grouping, n).map(Val::Vector)
        }
        "quantile" => {
            let q = ev.eval_scalar(param)?;
            let mut input = ev.eval_vector(&a.expr)?;
            hist::ignore_histograms(&mut input, "quantile", ev.ann);
            Ok(Val::Vector(quantile_agg(ev, &q, &input, &grouping, n)?))
        }
        "topk" | "bottomk" | "limitk" => {
            let k = ev.eval_scalar(param)?;
            if k.iter().any(|k| k.is_nan()) {
                return Err(EngineError::Execution("Parameter value is NaN".into()));
            }
            let mut input = ev.eval_vector(&a.expr)?;
            if op != "limitk" {
                hist::ignore_histograms(&mut input, &op, ev.ann);
            }
            k_agg(&op, &k, input, &grouping, n).map(Val::Vector)
        }
        "limit_ratio" => {
            let r = ev.eval_scalar(param)?;
            if r.iter().any(|r| r.is_nan()) {
                return Err(EngineError::Execution("Ratio value is NaN".into()));
            }
            let r: Vec<f64> = r
                .into_iter()
                .map(|r| {
                    let c = r.clamp(-1.0, 1.0);
                    if c != r {
                        ev.ann.invalid_ratio(r, c);
                    }
                    c
                })
                .collect();
            let input = ev.eval_vector(&a.expr)?;
            Ok(Val::Vector(limit_ratio(&r, input)?))
        }
        other => Err(EngineError::Execution(format!(
            "unknown aggregation {other}"
        ))),
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        e => e,
    }
}

/// Assigns each series to a group: (group of each series, labels of each group).
/// The group of each series, and each group's labels and name flag.
type Groups = (Vec<usize>, Vec<(Labels, bool)>);

/// The labels of each new group are charged before they are built.
fn assign_groups(input: &[VSeries], g: &Grouping) -> Result<Groups, EngineError> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups = Vec::new();
    let mut ids = Vec::with_capacity(input.len());
    for s in input {
        meter::tick()?;
        let key = g.key(&s.labels);
        let id = match index.get(&key) {
            Some(&id) => id,
            None => {
                meter::charge(0, 2 * meter::label_bytes(&s.labels) + key.len() as u64)?;
                groups.push((g.project(&s.labels), s.drop_name));
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        ids.push(id);
    }
    Ok((ids, groups))
}

/// Charges the bytes of `cells` working cells of `bytes` each about to be
/// allocated (the result's points are charged when the node is done).
fn charge_cells(cells: usize, bytes: usize) -> Result<(), EngineError> {
    meter::charge(0, (cells as u64).saturating_mul(bytes as u64))?;
    Ok(())
}

fn simple_agg(
    kind: Kind,
    op: &str,
    input: &[VSeries],
    g: &Grouping,
    n: usize,
    ann: &mut super::annotations::Annotations,
) -> Result<Vec<VSeries>, EngineError> {
    let (ids, groups) = assign_groups(input, g)?;
    charge_cells(groups.len() * n, std::mem::size_of::<Acc>())?;
    let mut acc = vec![Acc::default(); groups.len() * n];
    for (s, &gi) in input.iter().zip(&ids) {
        meter::tick_by(n)?;
        let row = &mut acc[gi * n..(gi + 1) * n];
        for (a, v) in row.iter_mut().zip(&s.vals) {
            if let Some(v) = *v {
                add(kind, a, v);
            }
        }
        if matches!(kind, Kind::Count | Kind::Group) {
            // Histograms count as elements.
            for (a, h) in row.iter_mut().zip(&s.hists) {
                if h.is_some() {
                    add(kind, a, 1.0);
                }
            }
        }
    }
    let mut hists = hist::aggregate(kind, op, input, &ids, groups.len(), n, ann);
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(gi, (labels, drop_name))| {
            let mut vals: Vec<Option<f64>> = acc[gi * n..(gi + 1) * n]
                .iter()
                .map(|a| finish(kind, a))
                .collect();
            let mut hs = Vec::new();
            if let Some(all) = hists.as_mut() {
                hs = all[gi * n..(gi + 1) * n]
                    .iter_mut()
                    .map(Option::take)
                    .collect();
                for (v, h) in vals.iter_mut().zip(hs.iter_mut()) {
                    if v.is_some() && h.is_some() {
                        // Floats and histograms in one group: no result.
                        ann.mixed_floats_histograms_agg();
                        *v = None;
                        *h = None;
                    }
                }
            }
            VSeries {
                labels,
                drop_name,
                vals,
                hists: hs,
            }
        })
        .filter(|s| !s.is_empty())
        .collect())
}

fn add(kind: Kind, a: &mut Acc, v: f64) {
    if a.n == 0.0 {
        a.n = 1.0;
        a.v = match kind {
            Kind::Stddev | Kind::Stdvar if v.is_nan() || v.is_infinite() => f64::NAN,
            Kind::Stddev | Kind::Stdvar => 0.0,
            _ => v,
        };
        a.mean = v;
        a.c = 0.0;
        return;
    }
    a.n += 1.0;
    match kind {
        Kind::Sum => (a.v, a.c) = kahan_inc(v, a.v, a.c),
        Kind::Avg => {
            if !a.incremental {
                let (nv, nc) = kahan_inc(v, a.v, a.c);
                if !nv.is_infinite() {
                    (a.v, a.c) = (nv, nc);
                    return;
                }
                a.incremental = true;
                a.mean = a.v / (a.n - 1.0);
                a.c /= a.n - 1.0;
            }
            if a.mean.is_infinite() {
                if v.is_infinite() && (a.mean > 0.0) == (v > 0.0) {
                    return;
                }
                if !v.is_infinite() && !v.is_nan() {
                    return;
                }
            }
            let q = (a.n - 1.0) / a.n;
            (a.mean, a.c) = kahan_inc(v / a.n, q * a.mean, q * a.c);
        }
        Kind::Min => {
            if a.v > v || a.v.is_nan() {
                a.v = v;
            }
        }
        Kind::Max => {
            if a.v < v || a.v.is_nan() {
                a.v = v;
            }
        }
        Kind::Count | Kind::Group => {}
        Kind::Stddev | Kind::Stdvar => {
            let delta = v - a.mean;
            a.mean += delta / a.n;
            a.v += delta * (v - a.mean);
        }
    }
}

fn finish(kind: Kind, a: &Acc) -> Option<f64> {
    if a.n == 0.0 {
        return None;
    }
    Some(match kind {
        Kind::Sum => a.v + a.c,
        Kind::Avg if a.incremental => a.mean + a.c,
        Kind::Avg => (a.v + a.c) / a.n,
        Kind::Min | Kind::Max => a.v,
        Kind::Count => a.n,
        Kind::Group => 1.0,
        Kind::Stdvar => a.v / a.n,
        Kind::Stddev => (a.v / a.n).sqrt(),
    })
}

fn quantile_agg(
    ev: &mut Evaluator<'_>,
    q: &[f64],
    input: &[VSeries],
    g: &Grouping,
    n: usize,
) -> Result<Vec<VSeries>, EngineError> {
    for &q in q {
        if !(0.0..=1.0).contains(&q) {
            ev.ann.invalid_quantile(q);
        }
    }
    let (ids, groups) = assign_groups(input, g)?;
    // A list per group and step, then every input point copied into them.
    charge_cells(groups.len() * n, std::mem::size_of::<Vec<f64>>())?;
    let points: usize = input.iter().map(|s| s.vals.len()).sum();
    charge_cells(points, 8)?;
    let mut vals: Vec<Vec<f64>> = vec![Vec::new(); groups.len() * n];
    for (s, &gi) in input.iter().zip(&ids) {
        meter::tick_by(n)?;
        for (step, v) in s.vals.iter().enumerate() {
            if let Some(v) = *v {
                vals[gi * n + step].push(v);
            }
        }
    }
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(gi, (labels, drop_name))| VSeries {
            labels,
            drop_name,
            vals: (0..n)
                .map(|step| {
                    let vs = &mut vals[gi * n + step];
                    (!vs.is_empty()).then(|| quantile_of(q[step], vs))
                })
                .collect(),
            hists: Vec::new(),
        })
        .filter(|s| !s.is_empty())
        .collect())
}

/// Formats a value as Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn go_format_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// True for a valid Prometheus label name.
pub(crate) fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

fn count_values(
    label: &str,
    input: &[VSeries],
    g: &Grouping,
    n: usize,
) -> Result<Vec<VSeries>, EngineError> {
    if !is_valid_label_name(label) {
        return Err(EngineError::Execution(format!(
            "invalid label name {label:?}"
        )));
    }
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<VSeries> = Vec::new();
    for s in input {
        let base = g.project(&s.labels);
        for (step, v) in s.vals.iter().enumerate() {
            meter::tick()?;
            // A histogram's value is Go's `FloatHistogram.String`.
            let value = match (*v, s.hist(step)) {
                (Some(v), _) => go_format_f(v),
                (None, Some(h)) => h.go_string(),
                (None, None) => continue,
            };
            let mut labels = base.clone();
            labels.set(label, &value);
            let i = match index.get(&labels) {
                Some(&i) => i,
                None => {
                    // A new series: its points and labels (twice, with the
                    // index), charged before they are built.
                    let lb = meter::label_bytes(&labels);
                    meter::charge(n as u64, n as u64 * meter::POINT_BYTES + 2 * lb)?;
                    index.insert(labels.clone(), out.len());
                    out.push(VSeries {
                        labels,
                        drop_name: false,
                        vals: vec![None; n],
                        hists: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let c = out[i].vals[step].get_or_insert(0.0);
            *c += 1.0;
        }
    }
    Ok(out)
}

fn k_agg(
    op: &str,
    k: &[f64],
    input: Vec<VSeries>,
    g: &Grouping,
    n: usize,
) -> Result<Vec<VSeries>, EngineError> {
    let (ids, groups) = assign_groups(&input, g)?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
    for (i, &gi) in ids.iter().enumerate() {
        members[gi].push(i);
    }
    charge_cells(input.len() * n, 1)?;
    let mut keep = vec![vec![false; n]; input.len()];
    // For a one-step evaluation, the order Prometheus returns elements in.
    let mut order: Vec<usize> = Vec::new();
    for step in 0..n {
        let kf = k[step];
        if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&kf) {
            return Err(EngineError::Execution(format!(
                "Scalar value {kf} overflows int64"
            )));
        }
        let kk = kf as i64;
        if kk < 1 {
            continue;
        }
        for m in &members {
            meter::tick_by(m.len())?;
            let mut present: Vec<usize> = m
                .iter()
                .copied()
                .filter(|&i| input[i].vals[step].is_some() || input[i].hist(step).is_some())
                .collect();
            let val = |i: usize| input[i].vals[step].unwrap_or(f64::NAN);
            match op {
                "topk" => present.sort_by(|&a, &b| desc_nan_last(val(a), val(b))),
                "bottomk" => present.sort_by(|&a, &b| asc_nan_last(val(a), val(b))),
                _ => {}
            }
            present.truncate(usize::try_from(kk).unwrap_or(usize::MAX));
            for &i in &present {
                keep[i][step] = true;
            }
            if n == 1 {
                order.extend(present);
            }
        }
    }
    let mut input: Vec<Option<VSeries>> = input.into_iter().map(Some).collect();
    let mut out = Vec::new();
    let mut emit = |i: usize, input: &mut Vec<Option<VSeries>>| {
        if let Some(mut s) = input[i].take() {
            for (step, (v, &k)) in s.vals.iter_mut().zip(&keep[i]).enumerate() {
                if !k {
                    *v = None;
                    if let Some(h) = s.hists.get_mut(step) {
                        *h = None;
                    }
                }
            }
            if !s.is_empty() {
                out.push(s);
            }
        }
    };
    if n == 1 {
        for i in order {
            emit(i, &mut input);
        }
    } else {
        for i in 0..input.len() {
            emit(i, &mut input);
        }
    }
    Ok(out)
}

fn desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// `limit_ratio`: keeps a series when its label hash, as a fraction of the
/// hash space, falls within the ratio (from the top for negative ratios).
fn limit_ratio(r: &[f64], mut input: Vec<VSeries>) -> Result<Vec<VSeries>, EngineError> {
    for s in &mut input {
        meter::tick_by(s.vals.len())?;
        let offset = super::hash::labels_hash(&s.labels) as f64 / u64::MAX as f64;
        for (step, (v, &ratio)) in s.vals.iter_mut().zip(r).enumerate() {
            let add = (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio);
            if !add {
                *v = None;
                if let Some(h) = s.hists.get_mut(step) {
                    *h = None;
                }
            }
        }
    }
    input.retain(|s| !s.is_empty());
    Ok(input)
}

#[cfg(test)]
mod tests {
    use crate::model::{Labels, Series};
    use crate::promql::testutil::{assert_matrix, at, random_series, range, source, steps};

    fn variance(v: &[f64]) -> f64 {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n
    }

    /// Plain definitions of each aggregation over one group's values.
    fn reference(op: &str, v: &[f64]) -> f64 {
        let non_nan = || v.iter().copied().filter(|x| !x.is_nan());
        match op {
            "sum" => v.iter().sum(),
            "avg" => v.iter().sum::<f64>() / v.len() as f64,
            "min" => non_nan().reduce(f64::min).unwrap_or(f64::NAN),
            "max" => non_nan().reduce(f64::max).unwrap_or(f64::NAN),
            "count" => v.len() as f64,
            "group" => 1.0,
            "stdvar" => variance(v),
            "stddev" => variance(v).sqrt(),
            other => panic!("no reference for {other}"),
        }
    }

    /// Per group label value `g`, per step, the values present.
    fn grouped(data: &[Series], t: i64) -> Vec<(String, Vec<f64>)> {
        let mut out: Vec<(String, Vec<f64>)> = Vec::new();
        for s in data {
            let g = s.labels.get("g").unwrap_or("").to_string();
            if let Some(v) = at(&s.samples, t) {
                match out.iter_mut().find(|(k, _)| *k == g) {
                    Some((_, vs)) => vs.push(v),
                    None => out.push((g, vec![v])),
                }
            }
        }
        out
    }

    #[test]
    fn aggregations_match_reference_on_random_data() {
        for seed in 40..43 {
            let data = random_series(seed, "m", 9, 40, true);
            let src = source(&data);
            let (start, end, step) = steps(40);
            for op in [
                "sum", "avg", "min", "max", "count", "group", "stdvar", "stddev",
            ] {
                for q in [format!("{op} by (g) (m)"), format!("{op} without (i) (m)")] {
                    let got = range(&src, &q, start, end, step);
                    let mut want: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
                    for t in (start..=end).step_by(step as usize) {
                        for (g, vs) in grouped(&data, t) {
                            let l = Labels::from_pairs([("g", g)]);
                            let v = reference(op, &vs);
                            match want.iter_mut().find(|(k, _)| *k == l) {
                                Some((_, p)) => p.push((t, v)),
                                None => want.push((l, vec![(t, v)])),
                            }
                        }
                    }
                    assert_matrix(&q, &got, want);
                }
            }
        }
    }

    #[test]
    fn topk_and_bottomk_pick_the_extreme_values() {
        let data = random_series(44, "m", 9, 30, true);
        let src = source(&data);
        let (start, end, step) = steps(30);
        for (q, top) in [
            ("topk by (g) (2, m)", true),
            ("bottomk by (g) (2, m)", false),
        ] {
            let got = range(&src, q, start, end, step);
            for t in (start..=end).step_by(step as usize) {
                for (g, mut vs) in grouped(&data, t) {
                    // NaN ranks last either way.
                    vs.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if top => b.total_cmp(a),
                        _ => a.total_cmp(b),
                    });
                    vs.truncate(2);
                    let mut picked: Vec<f64> = got
                        .iter()
                        .filter(|s| s.labels.get("g") == Some(g.as_str()))
                        .filter_map(|s| s.samples.iter().find(|p| p.t == t).map(|p| p.v))
                        .collect();
                    let key = |v: &f64| if v.is_nan() { f64::INFINITY } else { *v };
                    picked.sort_by(|a, b| key(a).total_cmp(&key(b)));
                    vs.sort_by(|a, b| key(a).total_cmp(&key(b)));
                    assert_eq!(picked.len(), vs.len(), "{q} at {t}");
                    for (a, b) in picked.iter().zip(&vs) {
                        assert!(
                            a == b || (a.is_nan() && b.is_nan()),
                            "{q} at {t}: {picked:?} vs {vs:?}"
                        );
                    }
                }
            }
        }
    }
}
