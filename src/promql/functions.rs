//! PromQL functions: the one table from a function's name to its
//! implementation, and the helpers the families share.

mod hist_over_time;
mod hist_rate;
mod histogram;
mod info;
mod labels;
mod math;
mod native;
mod over_time;
mod rate;
mod time;
mod trend;
mod vector;

use promql_parser::parser::{Call, Expr};

use super::eval::Evaluator;
use super::steps::{RangeVec, VSeries, Val};
use super::EngineError;
use crate::limits::meter;
use crate::model::Sample;

/// A function argument list as the parser gives it.
pub(crate) type Args = [Box<Expr>];

/// How a function is evaluated.
#[derive(Clone, Copy)]
pub(crate) enum Impl {
    /// Maps every value of its one instant-vector argument; drops the name.
    Map(fn(f64) -> f64),
    /// One value per window of its one range-vector argument.
    Window {
        f: fn(&[Sample], &Window) -> Option<f64>,
        /// Keeps the metric name (last_over_time, first_over_time).
        keep_name: bool,
    },
    /// Anything else: evaluates its own arguments.
    Call(fn(&mut Evaluator<'_>, &Args) -> Result<Val, EngineError>),
}

/// What a window function knows about the window besides its samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Exclusive start, ms.
    pub lo: i64,
    /// Inclusive end, ms.
    pub hi: i64,
    /// Range of the selector, ms.
    pub range_ms: i64,
}

/// The table: every function the engine evaluates.
static FUNCTIONS: &[(&str, Impl)] = &[
    // rate.rs
    ("rate", Impl::Call(rate::rate)),
    ("increase", Impl::Call(rate::increase)),
    ("delta", Impl::Call(rate::delta)),
    ("irate", Impl::Call(rate::irate)),
    ("idelta", Impl::Call(rate::idelta)),
    // over_time.rs
    (
        "avg_over_time",
        Impl::Window {
            f: over_time::avg,
            keep_name: false,
        },
    ),
    (
        "sum_over_time",
        Impl::Window {
            f: over_time::sum,
            keep_name: false,
        },
    ),
    (
        "min_over_time",
        Impl::Window {
            f: over_time::min,
            keep_name: false,
        },
    ),
    (
        "max_over_time",
        Impl::Window {
            f: over_time::max,
            keep_name: false,
        },
    ),
    (
        "count_over_time",
        Impl::Window {
            f: over_time::count,
            keep_name: false,
        },
    ),
    (
        "last_over_time",
        Impl::Window {
            f: over_time::last,
            keep_name: true,
        },
    ),
    (
        "first_over_time",
        Impl::Window {
            f: over_time::first,
            keep_name: true,
        },
    ),
    (
        "present_over_time",
        Impl::Window {
            f: over_time::present,
            keep_name: false,
        },
    ),
    (
        "stddev_over_time",
        Impl::Window {
            f: over_time::stddev,
            keep_name: false,
        },
    ),
    (
        "stdvar_over_time",
        Impl::Window {
            f: over_time::stdvar,
            keep_name: false,
        },
    ),
    (
        "mad_over_time",
        Impl::Window {
            f: over_time::mad,
            keep_name: false,
        },
    ),
    (
        "ts_of_min_over_time",
        Impl::Window {
            f: over_time::ts_of_min,
            keep_name: false,
        },
    ),
    (
        "ts_of_max_over_time",
        Impl::Window {
            f: over_time::ts_of_max,
            keep_name: false,
        },
    ),
    (
        "ts_of_first_over_time",
        Impl::Window {
            f: over_time::ts_of_first,
            keep_name: false,
        },
    ),
    (
        "ts_of_last_over_time",
        Impl::Window {
            f: over_time::ts_of_last,
            keep_name: false,
        },
    ),
    (
        "changes",
        Impl::Window {
            f: over_time::changes,
            keep_name: false,
        },
    ),
    (
        "resets",
        Impl::Window {
            f: over_time::resets,
            keep_name: false,
        },
    ),
    (
        "quantile_over_time",
        Impl::Call(over_time::quantile_over_time),
    ),
    ("absent_over_time", Impl::Call(vector::absent_over_time)),
    // trend.rs
    (
        "deriv",
        Impl::Window {
            f: trend::deriv,
            keep_name: false,
        },
    ),
    ("predict_linear", Impl::Call(trend::predict_linear)),
    (
        "double_exponential_smoothing",
        Impl::Call(trend::double_exponential_smoothing),
    ),
    // math.rs
    ("abs", Impl::Map(f64::abs)),
    ("ceil", Impl::Map(f64::ceil)),
    ("floor", Impl::Map(f64::floor)),
    ("exp", Impl::Map(f64::exp)),
    ("sqrt", Impl::Map(f64::sqrt)),
    // Go's logarithms, bit for bit (libm's differ in the last bit).
    ("ln", Impl::Map(crate::model::gomath::ln)),
    ("log2", Impl::Map(crate::model::gomath::log2)),
    ("log10", Impl::Map(crate::model::gomath::log10)),
    ("sgn", Impl::Map(math::sgn)),
    ("acos", Impl::Map(f64::acos)),
    ("acosh", Impl::Map(f64::acosh)),
    ("asin", Impl::Map(f64::asin)),
    ("asinh", Impl::Map(f64::asinh)),
    ("atan", Impl::Map(f64::atan)),
    ("atanh", Impl::Map(f64::atanh)),
    ("cos", Impl::Map(f64::cos)),
    ("cosh", Impl::Map(f64::cosh)),
    ("sin", Impl::Map(f64::sin)),
    ("sinh", Impl::Map(f64::sinh)),
    ("tan", Impl::Map(f64::tan)),
    ("tanh", Impl::Map(f64::tanh)),
    ("deg", Impl::Map(f64::to_degrees)),
    ("rad", Impl::Map(f64::to_radians)),
    ("pi", Impl::Call(math::pi)),
    ("round", Impl::Call(math::round)),
    ("clamp", Impl::Call(math::clamp)),
    ("clamp_min", Impl::Call(math::clamp_min)),
    ("clamp_max", Impl::Call(math::clamp_max)),
    // time.rs
    ("time", Impl::Call(time::time)),
    ("timestamp", Impl::Call(time::timestamp)),
    ("minute", Impl::Call(time::minute)),
    ("hour", Impl::Call(time::hour)),
    ("day_of_week", Impl::Call(time::day_of_week)),
    ("day_of_month", Impl::Call(time::day_of_month)),
    ("day_of_year", Impl::Call(time::day_of_year)),
    ("days_in_month", Impl::Call(time::days_in_month)),
    ("month", Impl::Call(time::month)),
    ("year", Impl::Call(time::year)),
    // labels.rs
    ("label_replace", Impl::Call(labels::label_replace)),
    ("label_join", Impl::Call(labels::label_join)),
    ("sort_by_label", Impl::Call(labels::sort_by_label)),
    ("sort_by_label_desc", Impl::Call(labels::sort_by_label_desc)),
    // vector.rs
    ("vector", Impl::Call(vector::vector)),
    ("scalar", Impl::Call(vector::scalar)),
    ("absent", Impl::Call(vector::absent)),
    ("sort", Impl::Call(vector::sort)),
    ("sort_desc", Impl::Call(vector::sort_desc)),
    // info.rs
    ("info", Impl::Call(info::info)),
    // histogram.rs
    (
        "histogram_quantile",
        Impl::Call(histogram::histogram_quantile),
    ),
    (
        "histogram_fraction",
        Impl::Call(histogram::histogram_fraction),
    ),
    ("histogram_count", Impl::Call(native::histogram_count)),
    ("histogram_sum", Impl::Call(native::histogram_sum)),
    ("histogram_avg", Impl::Call(native::histogram_avg)),
    ("histogram_stddev", Impl::Call(native::histogram_stddev)),
    ("histogram_stdvar", Impl::Call(native::histogram_stdvar)),
];

/// Looks a function up in the table.
pub(crate) fn lookup(name: &str) -> Option<Impl> {
    FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
}

/// Evaluates a function call.
pub(crate) fn call(ev: &mut Evaluator<'_>, c: &Call) -> Result<Val, EngineError> {
    let name = c.func.name;
    let imp = lookup(name)
        .ok_or_else(|| EngineError::Execution(format!("function {name:?} is not supported")))?;
    let args = &c.args.args[..];
    let res = match imp {
        Impl::Map(f) => {
            let v = ev.eval_vector(arg(args, 0)?)?;
            Val::Vector(map_values(v, |_, x| Some(f(x))))
        }
        Impl::Window { f, keep_name } => {
            let m = ev.eval_matrix(arg(args, 0)?)?;
            let mut out = map_windows(&m, keep_name, |_, s, w| f(s, w))?;
            hist_over_time::add_histogram_windows(name, &m, keep_name, &mut out, ev.ann)?;
            Val::Vector(out)
        }
        Impl::Call(f) => {
            // Inside histogram_count/sum/avg selectors read statistics
            // only; histogram_quantile/fraction need whole histograms.
            let outer = ev.stats_only;
            ev.stats_only = match name {
                "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                "histogram_quantile" | "histogram_fraction" => false,
                _ => outer,
            };
            let res = f(ev, args);
            ev.stats_only = outer;
            res?
        }
    };
    Ok(if KEEPS_HISTOGRAMS.contains(&name) {
        res
    } else {
        without_histograms(res)
    })
}

/// Functions whose result may hold native histograms; every other
/// function drops histogram points (Prometheus skips them).
const KEEPS_HISTOGRAMS: &[&str] = &[
    "label_replace",
    "label_join",
    "sort_by_label",
    "sort_by_label_desc",
    "info",
    "last_over_time",
    "first_over_time",
    "sum_over_time",
    "avg_over_time",
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
];

/// A value without its histogram points (series left empty are dropped).
fn without_histograms(v: Val) -> Val {
    match v {
        Val::Vector(mut vs) => {
            if vs.iter().any(|s| !s.hists.is_empty()) {
                for s in &mut vs {
                    s.hists = Vec::new();
                }
                vs.retain(|s| !s.is_empty());
            }
            Val::Vector(vs)
        }
        other => other,
    }
}

/// The `i`th argument.
pub(crate) fn arg(args: &Args, i: usize) -> Result<&Expr, EngineError> {
    args.get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| EngineError::Execution(format!("missing argument {}", i + 1)))
}

/// Maps every point of an instant vector (with its step); drops the name.
pub(crate) fn map_values(
    mut v: Vec<VSeries>,
    mut f: impl FnMut(usize, f64) -> Option<f64>,
) -> Vec<VSeries> {
    for s in &mut v {
        s.drop_name = true;
        for (i, x) in s.vals.iter_mut().enumerate() {
            if let Some(xv) = *x {
                *x = f(i, xv);
            }
        }
    }
    v.retain(|s| !s.is_empty());
    v
}

/// One value per non-empty window of every series of a range vector.
pub(crate) fn map_windows(
    m: &RangeVec,
    keep_name: bool,
    mut f: impl FnMut(usize, &[Sample], &Window) -> Option<f64>,
) -> Result<Vec<VSeries>, EngineError> {
    let n = m.windows.len();
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        // One point per step and a copy of the labels, charged before they
        // are built; given back when no window has a value.
        let cost = (
            n as u64,
            n as u64 * meter::POINT_BYTES + meter::label_bytes(&s.labels),
        );
        meter::charge(cost.0, cost.1)?;
        let mut vals = vec![None; n];
        let mut any = false;
        m.for_each_window(s, |i, w| {
            if w.is_empty() {
                return;
            }
            let (lo, hi) = m.windows[i];
            let win = Window {
                lo,
                hi,
                range_ms: m.range_ms,
            };
            if let Some(v) = f(i, w, &win) {
                vals[i] = Some(v);
                any = true;
            }
        })?;
        if any {
            out.push(VSeries {
                labels: s.labels.clone(),
                drop_name: s.drop_name || !keep_name,
                vals,
                hists: Vec::new(),
            });
        } else {
            meter::release(cost.0, cost.1);
        }
    }
    Ok(out)
}

/// The `q`-quantile of `values` as Prometheus computes it (sorts `values`).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Evaluates a scalar argument.
pub(crate) fn scalar_arg(
    ev: &mut Evaluator<'_>,
    args: &Args,
    i: usize,
) -> Result<Vec<f64>, EngineError> {
    ev.eval_scalar(arg(args, i)?)
}

/// Evaluates a string argument.
pub(crate) fn string_arg(
    ev: &mut Evaluator<'_>,
    args: &Args,
    i: usize,
) -> Result<String, EngineError> {
    match ev.eval(arg(args, i)?)? {
        Val::String(s) => Ok(s),
        other => Err(super::eval::type_error("string", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_function_is_in_the_table_once() {
        for (i, (n, _)) in FUNCTIONS.iter().enumerate() {
            assert!(FUNCTIONS[i + 1..].iter().all(|(m, _)| m != n), "{n} twice");
        }
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(0.0, &mut v), 1.0);
        assert_eq!(quantile(1.0, &mut v), 4.0);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut v).is_nan());
    }
}
