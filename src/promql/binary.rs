//! Binary operators: arithmetic, comparison and set operators, with vector matching.

mod hist;

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::annotations::Annotations;
use super::eval::{merge_same_labels, type_error, Evaluator, DUPLICATE_LABELSET};
use super::labelset::Grouping;
use super::steps::{VSeries, Val};
use super::EngineError;
use crate::limits::meter;
use crate::model::Labels;
use hist::Elem;

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    pub fn from_token(t: &str) -> Option<Op> {
        Some(match t {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// `(value, keep)` for one pair of operands, as Prometheus's vectorElemBinop.
    pub fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (l % r, true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (l, true),
        }
    }
}

/// Evaluates a binary expression.
pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr) -> Result<Val, EngineError> {
    let op = Op::from_token(&b.op.to_string())
        .ok_or_else(|| EngineError::Execution(format!("unsupported binary operator {}", b.op)))?;
    let return_bool = b.return_bool();
    let lhs = ev.eval(&b.lhs)?;
    let rhs = ev.eval(&b.rhs)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(&r)
                .map(|(&l, &r)| {
                    let (v, keep) = op.apply(l, r);
                    if op.is_comparison() {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(v), Val::Scalar(s)) => Ok(Val::Vector(vector_scalar(
            op,
            v,
            &s,
            false,
            return_bool,
            ev.ann,
        ))),
        (Val::Scalar(s), Val::Vector(v)) => Ok(Val::Vector(vector_scalar(
            op,
            v,
            &s,
            true,
            return_bool,
            ev.ann,
        ))),
        (Val::Vector(l), Val::Vector(r)) => {
            let grouping = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(ls)) => Grouping::new(true, &ls.labels),
                Some(LabelModifier::Exclude(ls)) => Grouping::new(false, &ls.labels),
                None => Grouping::all(),
            };
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            let n = ev.grid.len();
            match op {
                Op::And | Op::Unless => {
                    Ok(Val::Vector(and_unless(op == Op::And, l, &r, &grouping)))
                }
                Op::Or => Ok(Val::Vector(merge_same_labels(or(l, r, &grouping, n))?)),
                _ => Ok(Val::Vector(vector_vector(
                    op,
                    l,
                    r,
                    &grouping,
                    &card,
                    return_bool,
                    ev,
                )?)),
            }
        }
        (l, r) => {
            let bad = if matches!(l, Val::Scalar(_) | Val::Vector(_)) {
                r
            } else {
                l
            };
            Err(type_error("scalar or instant vector", &bad))
        }
    }
}

fn vector_scalar(
    op: Op,
    mut v: Vec<VSeries>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    ann: &mut Annotations,
) -> Vec<VSeries> {
    let drop = !op.is_comparison() || return_bool;
    let mut last = hist::LastPerStep::default();
    for series in &mut v {
        let n = series.hists.len();
        for (i, hp) in series.hists.iter_mut().enumerate() {
            let Some(h) = hp.take() else { continue };
            let sv = Elem::F(s[i]);
            let hv = Elem::H(h);
            let (l, r) = if swap { (&sv, &hv) } else { (&hv, &sv) };
            let mut note = Annotations::default();
            let applied = hist::apply(op, l, r, &mut note);
            last.keep(i, n, note);
            let Some((res, keep)) = applied else {
                continue;
            };
            let res = if op.is_comparison() && swap { hv } else { res };
            if return_bool {
                series.vals[i] = Some(if keep { 1.0 } else { 0.0 });
            } else if keep {
                match res {
                    Elem::H(h) => *hp = Some(h),
                    Elem::F(f) => series.vals[i] = Some(f),
                }
            }
        }
        for (x, &sv) in series.vals.iter_mut().zip(s) {
            let Some(xv) = *x else { continue };
            let (l, r) = if swap { (sv, xv) } else { (xv, sv) };
            let (mut val, keep) = op.apply(l, r);
            if op.is_comparison() && swap {
                val = r;
            }
            *x = if return_bool {
                Some(if keep { 1.0 } else { 0.0 })
            } else if keep {
                Some(val)
            } else {
                None
            };
        }
        if drop {
            series.drop_name = true;
        }
    }
    last.flush(ann);
    v.retain(|s| !s.is_empty());
    v
}

/// Per match key, at which steps some series of `side` has a point.
fn presence<'a>(side: &'a [VSeries], keys: &'a [String], n: usize) -> HashMap<&'a str, Vec<bool>> {
    let mut m: HashMap<&str, Vec<bool>> = HashMap::new();
    for (s, k) in side.iter().zip(keys) {
        let p = m.entry(k.as_str()).or_insert_with(|| vec![false; n]);
        for (i, (dst, v)) in p.iter_mut().zip(&s.vals).enumerate() {
            *dst |= v.is_some() || s.hist(i).is_some();
        }
    }
    m
}

fn and_unless(is_and: bool, mut l: Vec<VSeries>, r: &[VSeries], g: &Grouping) -> Vec<VSeries> {
    let n = l.first().map(|s| s.vals.len()).unwrap_or(0);
    let rkeys: Vec<String> = r.iter().map(|s| g.key(&s.labels)).collect();
    let rp = presence(r, &rkeys, n);
    for s in &mut l {
        let key = g.key(&s.labels);
        let p = rp.get(key.as_str());
        for (i, v) in s.vals.iter_mut().enumerate() {
            let present = p.is_some_and(|p| p[i]);
            if present != is_and {
                *v = None;
                if let Some(h) = s.hists.get_mut(i) {
                    *h = None;
                }
            }
        }
    }
    l.retain(|s| !s.is_empty());
    l
}

fn or(l: Vec<VSeries>, mut r: Vec<VSeries>, g: &Grouping, n: usize) -> Vec<VSeries> {
    let lkeys: Vec<String> = l.iter().map(|s| g.key(&s.labels)).collect();
    let lp = presence(&l, &lkeys, n);
    for s in &mut r {
        let key = g.key(&s.labels);
        if let Some(p) = lp.get(key.as_str()) {
            for (i, (v, &present)) in s.vals.iter_mut().zip(p).enumerate() {
                if present {
                    *v = None;
                    if let Some(h) = s.hists.get_mut(i) {
                        *h = None;
                    }
                }
            }
        }
    }
    let mut out = l;
    out.extend(r.into_iter().filter(|s| !s.is_empty()));
    out
}

fn vector_vector(
    op: Op,
    l: Vec<VSeries>,
    r: Vec<VSeries>,
    g: &Grouping,
    card: &VectorMatchCardinality,
    return_bool: bool,
    ev: &mut Evaluator<'_>,
) -> Result<Vec<VSeries>, EngineError> {
    let n = ev.grid.len();
    let ann = &mut *ev.ann;
    let (swapped, include) = match card {
        VectorMatchCardinality::OneToMany(ls) => (true, Some(&ls.labels)),
        VectorMatchCardinality::ManyToOne(ls) => (false, Some(&ls.labels)),
        _ => (false, None),
    };
    let one_to_one = include.is_none();
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let mkeys: Vec<String> = many.iter().map(|s| g.key(&s.labels)).collect();
    let okeys: Vec<String> = one.iter().map(|s| g.key(&s.labels)).collect();
    // Match groups by key, then by index: no hashing inside the step loops.
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (j, k) in okeys.iter().enumerate() {
        let gi = *group_of.entry(k.as_str()).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[gi].push(j);
    }
    let many_group: Vec<Option<usize>> = mkeys
        .iter()
        .map(|k| group_of.get(k.as_str()).copied())
        .collect();
    let mut many_count = vec![0usize; members.len()];
    for gi in many_group.iter().flatten() {
        many_count[*gi] += 1;
    }
    // The "one" side must be unique per match key at every step.
    for idxs in members.iter().filter(|g| g.len() > 1) {
        for step in 0..n {
            let mut present = idxs
                .iter()
                .filter(|&&j| one[j].vals[step].is_some() || one[j].hist(step).is_some());
            if let (Some(&a), Some(&b)) = (present.next(), present.next()) {
                let side = if swapped { "left" } else { "right" };
                return Err(EngineError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    g.project(&one[b].labels),
                    one[b].labels,
                    one[a].labels
                )));
            }
        }
    }
    let drop_for_op = !op.is_comparison() || return_bool;
    // Per group, the steps at which some element already matched (only
    // needed where several elements of the "many" side share a group).
    let mut matched: Vec<Vec<bool>> = vec![Vec::new(); members.len()];
    let mut out: Vec<(VSeries, usize)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut last = hist::LastPerStep::default();
    for (i, ls) in many.iter().enumerate() {
        let Some(gi) = many_group[i] else { continue };
        let track = one_to_one && many_count[gi] > 1;
        if track && matched[gi].is_empty() {
            matched[gi] = vec![false; n];
        }
        for &j in &members[gi] {
            let rs = &one[j];
            // A result's points, charged before they are built.
            let cost = (n as u64, n as u64 * meter::POINT_BYTES);
            meter::charge(cost.0, cost.1)?;
            meter::tick_by(n)?;
            let mut vals: Vec<Option<f64>> = vec![None; n];
            let mut hists: Vec<Option<std::sync::Arc<crate::model::histogram::FloatHistogram>>> =
                Vec::new();
            let mut any = false;
            for step in 0..n {
                let lh = ls.hist(step);
                let rh = rs.hist(step);
                let (v, h) = if lh.is_none() && rh.is_none() {
                    let (Some(lv), Some(rv)) = (ls.vals[step], rs.vals[step]) else {
                        continue;
                    };
                    let (fl, fr) = if swapped { (rv, lv) } else { (lv, rv) };
                    let (v, keep) = op.apply(fl, fr);
                    if return_bool {
                        (if keep { 1.0 } else { 0.0 }, None)
                    } else if keep {
                        (v, None)
                    } else {
                        continue;
                    }
                } else {
                    let elem = |f: Option<f64>, h: Option<&std::sync::Arc<_>>| match (f, h) {
                        (_, Some(h)) => Some(Elem::H(std::sync::Arc::clone(h))),
                        (Some(f), None) => Some(Elem::F(f)),
                        (None, None) => None,
                    };
                    let (Some(le), Some(re)) = (elem(ls.vals[step], lh), elem(rs.vals[step], rh))
                    else {
                        continue;
                    };
                    let (el, er) = if swapped { (re, le) } else { (le, re) };
                    let mut note = Annotations::default();
                    let applied = hist::apply(op, &el, &er, &mut note);
                    last.keep(step, n, note);
                    let Some((res, keep)) = applied else {
                        continue;
                    };
                    if return_bool {
                        (if keep { 1.0 } else { 0.0 }, None)
                    } else if !keep {
                        continue;
                    } else {
                        match res {
                            Elem::H(h) => (0.0, Some(h)),
                            Elem::F(f) => (f, None),
                        }
                    }
                };
                if track {
                    let m = &mut matched[gi];
                    if m[step] {
                        return Err(EngineError::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                    m[step] = true;
                }
                match h {
                    Some(h) => {
                        if hists.is_empty() {
                            hists = vec![None; n];
                        }
                        hists[step] = Some(h);
                    }
                    None => vals[step] = Some(v),
                }
                any = true;
            }
            if !any {
                meter::release(cost.0, cost.1);
                continue;
            }
            let labels = result_labels(&ls.labels, &rs.labels, g, include);
            meter::charge(0, 2 * meter::label_bytes(&labels))?;
            let drop_name = drop_for_op || ls.drop_name;
            match index.get(&labels) {
                None => {
                    index.insert(labels.clone(), out.len());
                    out.push((
                        VSeries {
                            labels,
                            drop_name,
                            vals,
                            hists,
                        },
                        i,
                    ));
                }
                Some(&o) => {
                    let (existing, from) = &mut out[o];
                    let same_key = mkeys[*from] == mkeys[i];
                    if !hists.is_empty() && existing.hists.is_empty() {
                        existing.hists = vec![None; n];
                    }
                    for (step, h) in hists.into_iter().enumerate() {
                        let Some(h) = h else { continue };
                        if existing.vals[step].is_some() || existing.hists[step].is_some() {
                            return Err(EngineError::Execution(DUPLICATE_LABELSET.into()));
                        }
                        existing.hists[step] = Some(h);
                    }
                    for (step, (dst, src)) in existing.vals.iter_mut().zip(vals).enumerate() {
                        let Some(v) = src else { continue };
                        if dst.is_some() || existing.hists.get(step).is_some_and(Option::is_some) {
                            return Err(EngineError::Execution(if same_key && !one_to_one {
                                "multiple matches for labels: grouping labels must ensure unique matches".into()
                            } else {
                                DUPLICATE_LABELSET.into()
                            }));
                        }
                        *dst = Some(v);
                    }
                }
            }
        }
    }
    last.flush(ann);
    Ok(out.into_iter().map(|(s, _)| s).collect())
}

/// The labels of a result element, as Prometheus's resultMetric (the name
/// itself is dropped later through the element's `drop_name`).
fn result_labels(
    many: &Labels,
    one: &Labels,
    g: &Grouping,
    include: Option<&Vec<String>>,
) -> Labels {
    match include {
        None => {
            if g.include {
                Labels::from_sorted(
                    many.iter()
                        .filter(|l| {
                            g.names
                                .binary_search_by(|n| n.as_str().cmp(&l.name))
                                .is_ok()
                        })
                        .cloned()
                        .collect(),
                )
            } else {
                Labels::from_sorted(
                    many.iter()
                        .filter(|l| {
                            g.names
                                .binary_search_by(|n| n.as_str().cmp(&l.name))
                                .is_err()
                        })
                        .cloned()
                        .collect(),
                )
            }
        }
        Some(extra) => {
            let mut out = many.clone();
            for name in extra {
                out.set(name, one.get(name).unwrap_or(""));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Labels, Series};
    use crate::promql::labelset::drop_name;
    use crate::promql::testutil::{assert_matrix, at, random_series, range, source, steps};

    fn both(a: &[Series], b: &[Series]) -> Vec<Series> {
        a.iter().chain(b).cloned().collect()
    }

    /// Per series of `a` (matched on `i` with `b`), the points `f` keeps.
    fn pairwise(
        a: &[Series],
        b: &[Series],
        keep_name: bool,
        f: impl Fn(Option<f64>, Option<f64>) -> Option<f64>,
    ) -> Vec<(Labels, Vec<(i64, f64)>)> {
        let (start, end, step) = steps(40);
        a.iter()
            .map(|sa| {
                let sb = b.iter().find(|s| s.labels.get("i") == sa.labels.get("i"));
                let pts = (start..=end)
                    .step_by(step as usize)
                    .filter_map(|t| {
                        let vb = sb.and_then(|s| at(&s.samples, t));
                        f(at(&sa.samples, t), vb).map(|v| (t, v))
                    })
                    .collect();
                let l = if keep_name {
                    sa.labels.clone()
                } else {
                    drop_name(&sa.labels)
                };
                (l, pts)
            })
            .collect()
    }

    type Arith = fn(f64, f64) -> f64;
    type Cmp = fn(f64, f64) -> bool;

    #[test]
    fn operators_match_reference_on_random_data() {
        let a = random_series(50, "a", 6, 40, true);
        let b = random_series(51, "b", 6, 40, true);
        let src = source(&both(&a, &b));
        let (start, end, step) = steps(40);
        let arith: [(&str, Arith); 6] = [
            ("+", |x, y| x + y),
            ("-", |x, y| x - y),
            ("*", |x, y| x * y),
            ("/", |x, y| x / y),
            ("%", |x, y| x % y),
            ("^", |x, y| x.powf(y / 1000.0)),
        ];
        for (op, f) in arith {
            let q = if op == "^" {
                "a ^ on(i, g) (b / 1000)".to_string()
            } else {
                format!("a {op} ignoring(x) b")
            };
            let got = range(&src, &q, start, end, step);
            assert_matrix(&q, &got, pairwise(&a, &b, false, |x, y| Some(f(x?, y?))));
        }
        let cmp: [(&str, Cmp); 6] = [
            ("==", |x, y| x == y),
            ("!=", |x, y| x != y),
            (">", |x, y| x > y),
            ("<", |x, y| x < y),
            (">=", |x, y| x >= y),
            ("<=", |x, y| x <= y),
        ];
        for (op, f) in cmp {
            let q = format!("a {op} b");
            let got = range(&src, &q, start, end, step);
            assert_matrix(
                &q,
                &got,
                pairwise(&a, &b, true, |x, y| f(x?, y?).then_some(x?)),
            );
            let q = format!("a {op} bool b");
            let got = range(&src, &q, start, end, step);
            assert_matrix(
                &q,
                &got,
                pairwise(&a, &b, false, |x, y| {
                    Some(if f(x?, y?) { 1.0 } else { 0.0 })
                }),
            );
        }
        let q = "a and b";
        assert_matrix(
            q,
            &range(&src, q, start, end, step),
            pairwise(&a, &b, true, |x, y| y.and(x)),
        );
        let q = "a unless b";
        assert_matrix(
            q,
            &range(&src, q, start, end, step),
            pairwise(&a, &b, true, |x, y| if y.is_some() { None } else { x }),
        );
        let q = "a or b";
        let mut want = pairwise(&a, &b, true, |x, _| x);
        want.extend(pairwise(
            &b,
            &a,
            true,
            |y, x| if x.is_some() { None } else { y },
        ));
        assert_matrix(q, &range(&src, q, start, end, step), want);
    }
}
