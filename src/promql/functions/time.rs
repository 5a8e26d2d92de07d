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
        let mut v = selector::instant_timestamps(ev, vs)?;
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
            hists: Vec::new(),
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

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::model::{Labels, Sample, Series};
    use crate::promql::labelset::drop_name;
    use crate::promql::testutil::{assert_matrix, at, range, source, steps};

    /// Civil date from days since the epoch (Howard Hinnant's algorithm).
    fn civil(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    fn leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    fn reference(f: &str, secs: f64) -> f64 {
        if !secs.is_finite() {
            return f64::NAN;
        }
        let s = secs.floor() as i64;
        let days = s.div_euclid(86_400);
        let (y, m, d) = civil(days);
        let month_len = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        (match f {
            "minute" => s.rem_euclid(3600) / 60,
            "hour" => s.rem_euclid(86_400) / 3600,
            "day_of_week" => (days + 4).rem_euclid(7),
            "day_of_month" => d,
            "day_of_year" => month_len[..(m - 1) as usize].iter().sum::<i64>() + d,
            "days_in_month" => month_len[(m - 1) as usize],
            "month" => m,
            "year" => y,
            other => panic!("no reference for {other}"),
        }) as f64
    }

    #[test]
    fn calendar_functions_match_civil_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(60);
        let data: Vec<Series> = (0..4)
            .map(|i| Series {
                labels: Labels::from_pairs([("__name__", "ts".to_string()), ("i", i.to_string())]),
                samples: (0..30)
                    .map(|k| Sample {
                        t: k * 15_000,
                        v: match rng.gen_range(0..20) {
                            0 => f64::NAN,
                            1 => f64::INFINITY,
                            _ => rng.gen_range(-2.0e9..5.0e9f64),
                        },
                    })
                    .collect(),
                histograms: Vec::new(),
            })
            .collect();
        let src = source(&data);
        let (start, end, step) = steps(30);
        for f in [
            "minute",
            "hour",
            "day_of_week",
            "day_of_month",
            "day_of_year",
            "days_in_month",
            "month",
            "year",
        ] {
            let q = format!("{f}(ts)");
            let got = range(&src, &q, start, end, step);
            let want = data
                .iter()
                .map(|s| {
                    let pts = (start..=end)
                        .step_by(step as usize)
                        .filter_map(|t| at(&s.samples, t).map(|v| (t, reference(f, v))))
                        .collect();
                    (drop_name(&s.labels), pts)
                })
                .collect::<Vec<(Labels, _)>>();
            assert_matrix(&q, &got, want);
        }
    }
}
