//! Binary operators: arithmetic, comparison and set operators, with vector matching.

use std::collections::HashMap;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{merge_same_labels, type_error, Evaluator, DUPLICATE_LABELSET};
use super::labelset::Grouping;
use super::steps::{VSeries, Val};
use super::EngineError;
use crate::model::Labels;

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
        (Val::Vector(v), Val::Scalar(s)) => {
            Ok(Val::Vector(vector_scalar(op, v, &s, false, return_bool)))
        }
        (Val::Scalar(s), Val::Vector(v)) => {
            Ok(Val::Vector(vector_scalar(op, v, &s, true, return_bool)))
        }
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
                    n,
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
) -> Vec<VSeries> {
    let drop = !op.is_comparison() || return_bool;
    for series in &mut v {
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
    v.retain(|s| !s.is_empty());
    v
}

/// Per match key, at which steps some series of `side` has a point.
fn presence<'a>(side: &'a [VSeries], keys: &'a [String], n: usize) -> HashMap<&'a str, Vec<bool>> {
    let mut m: HashMap<&str, Vec<bool>> = HashMap::new();
    for (s, k) in side.iter().zip(keys) {
        let p = m.entry(k.as_str()).or_insert_with(|| vec![false; n]);
        for (dst, v) in p.iter_mut().zip(&s.vals) {
            *dst |= v.is_some();
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
            for (v, &present) in s.vals.iter_mut().zip(p) {
                if present {
                    *v = None;
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
    n: usize,
) -> Result<Vec<VSeries>, EngineError> {
    let (swapped, include) = match card {
        VectorMatchCardinality::OneToMany(ls) => (true, Some(&ls.labels)),
        VectorMatchCardinality::ManyToOne(ls) => (false, Some(&ls.labels)),
        _ => (false, None),
    };
    let one_to_one = include.is_none();
    let (many, one) = if swapped { (r, l) } else { (l, r) };
    let mkeys: Vec<String> = many.iter().map(|s| g.key(&s.labels)).collect();
    let okeys: Vec<String> = one.iter().map(|s| g.key(&s.labels)).collect();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, k) in okeys.iter().enumerate() {
        groups.entry(k.as_str()).or_default().push(j);
    }
    // The "one" side must be unique per match key at every step.
    for idxs in groups.values().filter(|g| g.len() > 1) {
        for step in 0..n {
            let mut present = idxs.iter().filter(|&&j| one[j].vals[step].is_some());
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
    let mut matched: HashMap<&str, Vec<bool>> = HashMap::new();
    let mut out: Vec<(VSeries, usize)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (i, ls) in many.iter().enumerate() {
        let key = mkeys[i].as_str();
        let Some(js) = groups.get(key) else { continue };
        for &j in js {
            let rs = &one[j];
            let mut vals: Vec<Option<f64>> = vec![None; n];
            let mut any = false;
            for step in 0..n {
                let (Some(lv), Some(rv)) = (ls.vals[step], rs.vals[step]) else {
                    continue;
                };
                let (fl, fr) = if swapped { (rv, lv) } else { (lv, rv) };
                let (v, keep) = op.apply(fl, fr);
                let v = if return_bool {
                    if keep {
                        1.0
                    } else {
                        0.0
                    }
                } else if keep {
                    v
                } else {
                    continue;
                };
                if one_to_one {
                    let m = matched.entry(key).or_insert_with(|| vec![false; n]);
                    if m[step] {
                        return Err(EngineError::Execution(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                        ));
                    }
                    m[step] = true;
                }
                vals[step] = Some(v);
                any = true;
            }
            if !any {
                continue;
            }
            let labels = result_labels(&ls.labels, &rs.labels, g, include);
            let drop_name = drop_for_op || ls.drop_name;
            match index.get(&labels) {
                None => {
                    index.insert(labels.clone(), out.len());
                    out.push((
                        VSeries {
                            labels,
                            drop_name,
                            vals,
                        },
                        i,
                    ));
                }
                Some(&o) => {
                    let (existing, from) = &mut out[o];
                    let same_key = mkeys[*from] == mkeys[i];
                    for (dst, src) in existing.vals.iter_mut().zip(vals) {
                        let Some(v) = src else { continue };
                        if dst.is_some() {
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
                        .filter(|l| g.names.binary_search(&l.name).is_ok())
                        .cloned()
                        .collect(),
                )
            } else {
                Labels::from_sorted(
                    many.iter()
                        .filter(|l| g.names.binary_search(&l.name).is_err())
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
