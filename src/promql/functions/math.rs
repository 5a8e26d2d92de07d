//! Math on instant vectors: sgn, round, clamp*, pi (the plain maps are in the table).

use super::{arg, map_values, scalar_arg, Args};
use crate::promql::eval::Evaluator;
use crate::promql::steps::Val;
use crate::promql::EngineError;

pub(crate) fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// Go's `math.Max`: NaN wins.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            b
        } else {
            a
        }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN wins.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() {
            a
        } else {
            b
        }
    } else if a < b {
        a
    } else {
        b
    }
}

pub(crate) fn pi(ev: &mut Evaluator<'_>, _: &Args) -> Result<Val, EngineError> {
    Ok(Val::Scalar(vec![std::f64::consts::PI; ev.grid.len()]))
}

pub(crate) fn round(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let v = ev.eval_vector(arg(args, 0)?)?;
    let to = if args.len() > 1 {
        scalar_arg(ev, args, 1)?
    } else {
        vec![1.0; ev.grid.len()]
    };
    Ok(Val::Vector(map_values(v, |i, x| {
        let inv = 1.0 / to[i];
        Some((x * inv + 0.5).floor() / inv)
    })))
}

pub(crate) fn clamp(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let v = ev.eval_vector(arg(args, 0)?)?;
    let lo = scalar_arg(ev, args, 1)?;
    let hi = scalar_arg(ev, args, 2)?;
    Ok(Val::Vector(map_values(v, |i, x| {
        (hi[i] >= lo[i] || hi[i].is_nan() || lo[i].is_nan())
            .then(|| go_max(lo[i], go_min(hi[i], x)))
    })))
}

pub(crate) fn clamp_min(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let v = ev.eval_vector(arg(args, 0)?)?;
    let lo = scalar_arg(ev, args, 1)?;
    Ok(Val::Vector(map_values(v, |i, x| Some(go_max(lo[i], x)))))
}

pub(crate) fn clamp_max(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let v = ev.eval_vector(arg(args, 0)?)?;
    let hi = scalar_arg(ev, args, 1)?;
    Ok(Val::Vector(map_values(v, |i, x| Some(go_min(hi[i], x)))))
}
