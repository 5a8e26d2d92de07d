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

#[cfg(test)]
mod tests {
    use crate::model::Labels;
    use crate::promql::labelset::drop_name;
    use crate::promql::testutil::{assert_matrix, at, random_series, range, source, steps};

    type Case = (&'static str, Box<dyn Fn(f64) -> f64>);

    #[test]
    fn math_functions_match_std_on_random_data() {
        let data = random_series(30, "m", 5, 40, true);
        let src = source(&data);
        let (start, end, step) = steps(40);
        let cases: Vec<Case> = vec![
            ("abs(m - 500)", Box::new(|x| (x - 500.0).abs())),
            ("ceil(m / 7)", Box::new(|x| (x / 7.0).ceil())),
            ("floor(m / 7)", Box::new(|x| (x / 7.0).floor())),
            ("sqrt(m)", Box::new(f64::sqrt)),
            ("ln(m)", Box::new(f64::ln)),
            ("exp(m / 1000)", Box::new(|x| (x / 1000.0).exp())),
            (
                "sgn(m - 300)",
                Box::new(|x| {
                    let d = x - 300.0;
                    if d > 0.0 {
                        1.0
                    } else if d < 0.0 {
                        -1.0
                    } else {
                        d
                    }
                }),
            ),
            ("round(m, 5)", Box::new(|x| (x / 5.0 + 0.5).floor() * 5.0)),
            (
                "clamp(m, 100, 400)",
                Box::new(|x| if x.is_nan() { x } else { x.clamp(100.0, 400.0) }),
            ),
            (
                "clamp_min(m, 100)",
                Box::new(|x| if x.is_nan() { x } else { x.max(100.0) }),
            ),
            (
                "clamp_max(m, 400)",
                Box::new(|x| if x.is_nan() { x } else { x.min(400.0) }),
            ),
            ("cos(m)", Box::new(f64::cos)),
        ];
        for (q, f) in cases {
            let got = range(&src, q, start, end, step);
            let want = data
                .iter()
                .map(|s| {
                    let pts = (start..=end)
                        .step_by(step as usize)
                        .filter_map(|t| at(&s.samples, t).map(|v| (t, f(v))))
                        .collect();
                    (drop_name(&s.labels), pts)
                })
                .collect::<Vec<(Labels, _)>>();
            assert_matrix(q, &got, want);
        }
    }
}
