//! Binary operators where one operand or both are native histograms
//! (Prometheus 3.8's `vectorElemBinop` for histogram operands).

use std::sync::Arc;

use super::Op;
use crate::model::histogram::{CounterResetHint, FloatHistogram, HistogramError};
use crate::promql::annotations::{Annotations, HistOp};

/// One operand or result: a float or a histogram.
#[derive(Debug, Clone)]
pub(crate) enum Elem {
    F(f64),
    H(Arc<FloatHistogram>),
}

impl Elem {
    fn kind(&self) -> &'static str {
        match self {
            Elem::F(_) => "float",
            Elem::H(_) => "histogram",
        }
    }
}

/// The operator as Prometheus names it in annotations.
fn op_name(op: Op) -> &'static str {
    match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        Op::Div => "/",
        Op::Mod => "%",
        Op::Pow => "^",
        Op::Atan2 => "atan2",
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Lt => "<",
        Op::Ge => ">=",
        Op::Le => "<=",
        Op::And => "and",
        Op::Or => "or",
        Op::Unless => "unless",
    }
}

/// `(result, keep)` for a pair where at least one side is a histogram;
/// `None` when the pair gives no result (annotated as Prometheus does).
pub(crate) fn apply(op: Op, l: &Elem, r: &Elem, ann: &mut Annotations) -> Option<(Elem, bool)> {
    let incompatible = |ann: &mut Annotations| {
        ann.incompatible_types_in_binop(l.kind(), op_name(op), r.kind());
        None
    };
    match (l, r) {
        (Elem::F(f), Elem::H(h)) | (Elem::H(h), Elem::F(f)) if op == Op::Mul => {
            let mut h = (**h).clone();
            h.mul(*f);
            h.compact();
            Some((Elem::H(Arc::new(h)), true))
        }
        (Elem::H(h), Elem::F(f)) if op == Op::Div => {
            let mut h = (**h).clone();
            h.div(*f);
            h.compact();
            Some((Elem::H(Arc::new(h)), true))
        }
        (Elem::H(a), Elem::H(b)) => match op {
            Op::Add | Op::Sub => {
                let mut res = (**a).clone();
                let (combined, what) = if op == Op::Add {
                    (res.add(b), HistOp::Add)
                } else {
                    (res.sub(b), HistOp::Sub)
                };
                match combined {
                    Ok(c) => {
                        if c.counter_reset_collision {
                            ann.counter_reset_collision(what);
                        }
                        if c.nhcb_bounds_reconciled {
                            ann.mismatched_custom_buckets(what);
                        }
                    }
                    Err(HistogramError::IncompatibleSchema) => {
                        ann.incompatible_bucket_layout_in_binop(op_name(op));
                        return None;
                    }
                    Err(_) => return None,
                }
                if op == Op::Sub {
                    res.counter_reset_hint = CounterResetHint::Gauge;
                }
                res.compact();
                Some((Elem::H(Arc::new(res)), true))
            }
            Op::Eq => Some((Elem::H(Arc::clone(a)), equals(a, b))),
            Op::Ne => Some((Elem::H(Arc::clone(a)), !equals(a, b))),
            _ => incompatible(ann),
        },
        _ => incompatible(ann),
    }
}

/// Prometheus's `FloatHistogram.Equals` (bit for bit, explicit empty
/// buckets count).
fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.equals(b)
}
