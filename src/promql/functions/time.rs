//! Time functions: time, timestamp and the calendar functions (UTC).

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::parser::Expr;

use super::{arg, map_values, Args};
use crate::promql::eval::Evaluator;
use crate::promql::selector;
use crate::promql::steps::{VSeries, Val};
use crate::promql::EngineError;

pub(crate) fn time(ev: &mut Evaluator<'_>, _: &Args) -> Result<Val, EngineError> {
    Ok(Val::Scalar(
        ev.grid.timestamps().map(|t| t as f64 / 1000.0).collect(),
    ))
}

pub(crate) fn timestamp(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let mut e = arg(args, 0)?;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    if let Expr::VectorSelector(vs) = e {
        let mut v = selector::instant_timestamps(ev, vs);
        for s in &mut v {
            s.drop_name = true;
        }
        return Ok(Val::Vector(v));
    }
    let v = ev.eval_vector(e)?;
    let grid = ev.grid;
    Ok(Val::Vector(map_values(v, |i, _| {
        Some(grid.ts(i) as f64 / 1000.0)
    })))
}

/// A calendar function: of its vector argument's values (Unix seconds) or,
/// without one, of each step's time.
fn calendar(
    ev: &mut Evaluator<'_>,
    args: &Args,
    f: fn(DateTime<chrono::Utc>) -> f64,
) -> Result<Val, EngineError> {
    let of = |secs: f64| -> f64 {
        if !secs.is_finite() {
            return f64::NAN;
        }
        match DateTime::from_timestamp(secs.floor() as i64, 0) {
            Some(t) => f(t),
            None => f64::NAN,
        }
    };
    if args.is_empty() {
        let grid = ev.grid;
        return Ok(Val::Vector(vec![VSeries {
            labels: Default::default(),
            drop_name: false,
            vals: grid
                .timestamps()
                .map(|t| Some(of(t as f64 / 1000.0)))
                .collect(),
        }]));
    }
    let v = ev.eval_vector(arg(args, 0)?)?;
    Ok(Val::Vector(map_values(v, |_, x| Some(of(x)))))
}

pub(crate) fn minute(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.minute() as f64)
}

pub(crate) fn hour(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.hour() as f64)
}

pub(crate) fn day_of_week(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.weekday().num_days_from_sunday() as f64)
}

pub(crate) fn day_of_month(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.day() as f64)
}

pub(crate) fn day_of_year(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.ordinal() as f64)
}

pub(crate) fn days_in_month(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| {
        let (y, m) = (t.year(), t.month());
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        match (
            chrono::NaiveDate::from_ymd_opt(y, m, 1),
            chrono::NaiveDate::from_ymd_opt(ny, nm, 1),
        ) {
            (Some(a), Some(b)) => (b - a).num_days() as f64,
            _ => f64::NAN,
        }
    })
}

pub(crate) fn month(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.month() as f64)
}

pub(crate) fn year(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    calendar(ev, args, |t| t.year() as f64)
}
