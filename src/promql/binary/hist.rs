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
                        // 3.8 reports the collision as the pair's error:
                        // the pair gives no element.
                        if c.counter_reset_collision {
                            ann.counter_reset_collision(what);
                            return None;
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

/// The one annotation per step a binary operator reports in 3.8: its loop
/// over the elements of the left-hand (the "many") side keeps only the
/// last annotation a pair gave (`lastErr` in `VectorBinop` and
/// `VectorscalarBinop`). Pairs note into a scratch [`Annotations`] handed
/// to [`LastPerStep::keep`]; [`LastPerStep::flush`] reports what is left.
#[derive(Default)]
pub(crate) struct LastPerStep(Vec<Option<Annotations>>);

impl LastPerStep {
    /// Keeps `note` as the last annotation of `step` (of `n`), when there is one.
    pub(crate) fn keep(&mut self, step: usize, n: usize, note: Annotations) {
        if note.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0 = vec![None; n];
        }
        if let Some(slot) = self.0.get_mut(step) {
            *slot = Some(note);
        }
    }

    /// Reports the last annotation of every step.
    pub(crate) fn flush(self, ann: &mut Annotations) {
        for note in self.0.into_iter().flatten() {
            ann.absorb(note);
        }
    }
}

/// Prometheus's `FloatHistogram.Equals` (bit for bit, explicit empty
/// buckets count).
fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.equals(b)
}
