//! Label functions: label_replace, label_join, sort_by_label(_desc).

use std::cmp::Ordering;

use regex::Regex;

use super::{arg, string_arg, Args};
use crate::limits::meter;
use crate::model::METRIC_NAME;
use crate::promql::eval::{merge_same_labels, Evaluator};
use crate::promql::steps::{VSeries, Val};
use crate::promql::EngineError;

pub(crate) fn label_replace(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let mut v = ev.eval_vector(arg(args, 0)?)?;
    let dst = string_arg(ev, args, 1)?;
    let repl = string_arg(ev, args, 2)?;
    let src = string_arg(ev, args, 3)?;
    let re_src = string_arg(ev, args, 4)?;
    let re = Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
        EngineError::Execution(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if dst.is_empty() {
        return Err(EngineError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    // Each `$` of the replacement expands to at most the whole source value.
    let refs = repl.bytes().filter(|&b| b == b'$').count() as u64;
    for s in &mut v {
        meter::tick()?;
        let value = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&value) {
            // The new label is charged before it is built.
            let most = repl.len() as u64 + refs * value.len() as u64 + 48;
            meter::charge(0, most)?;
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            meter::release(0, most.saturating_sub(res.len() as u64 + 48));
            s.labels.set(&dst, &res);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
        }
    }
    merge_same_labels(v).map(Val::Vector)
}

pub(crate) fn label_join(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let mut v = ev.eval_vector(arg(args, 0)?)?;
    let dst = string_arg(ev, args, 1)?;
    let sep = string_arg(ev, args, 2)?;
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        srcs.push(string_arg(ev, args, i)?);
    }
    if dst.is_empty() {
        return Err(EngineError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    for s in &mut v {
        meter::tick()?;
        let len: usize = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or("").len())
            .sum();
        meter::charge(0, (len + sep.len() * srcs.len() + 48) as u64)?;
        let joined = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        s.labels.set(&dst, &joined);
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
    }
    merge_same_labels(v).map(Val::Vector)
}

pub(crate) fn sort_by_label(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    sort_labels(ev, args, false)
}

pub(crate) fn sort_by_label_desc(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    sort_labels(ev, args, true)
}

fn sort_labels(ev: &mut Evaluator<'_>, args: &Args, desc: bool) -> Result<Val, EngineError> {
    let v: Vec<VSeries> = ev.eval_vector(arg(args, 0)?)?;
    let mut names = Vec::new();
    for i in 1..args.len() {
        names.push(string_arg(ev, args, i)?);
    }
    let v = meter::sort_by(v, |a, b| {
        let mut ord = Ordering::Equal;
        for n in &names {
            ord = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if ord != Ordering::Equal {
                break;
            }
        }
        if ord == Ordering::Equal {
            ord = a.labels.cmp(&b.labels);
        }
        if desc {
            ord.reverse()
        } else {
            ord
        }
    })?;
    Ok(Val::Vector(v))
}

/// Natural order: runs of digits compare by number, everything else by character.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i])
                .unwrap_or("")
                .trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j])
                .unwrap_or("")
                .trim_start_matches('0');
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

#[cfg(test)]
mod tests {
    use crate::model::Labels;
    use crate::promql::testutil::{assert_matrix, at, random_series, range, source, steps};

    #[test]
    fn label_replace_and_join_rewrite_each_series() {
        let data = random_series(80, "m", 5, 20, true);
        let src = source(&data);
        let (start, end, step) = steps(20);
        let points = |s: &crate::model::Series| -> Vec<(i64, f64)> {
            (start..=end)
                .step_by(step as usize)
                .filter_map(|t| at(&s.samples, t).map(|v| (t, v)))
                .collect()
        };
        let q = r#"label_replace(m, "dst", "x-$1-$2", "i", "(\\d)()")"#;
        let want = data
            .iter()
            .map(|s| {
                let mut l = s.labels.clone();
                l.set("dst", &format!("x-{}-", s.labels.get("i").unwrap_or("")));
                (l, points(s))
            })
            .collect();
        assert_matrix(q, &range(&src, q, start, end, step), want);
        let q = r#"label_join(m, "j", "/", "g", "__name__", "i")"#;
        let want = data
            .iter()
            .map(|s| {
                let mut l: Labels = s.labels.clone();
                let g = s.labels.get("g").unwrap_or("");
                let i = s.labels.get("i").unwrap_or("");
                l.set("j", &format!("{g}/m/{i}"));
                (l, points(s))
            })
            .collect();
        assert_matrix(q, &range(&src, q, start, end, step), want);
    }

    #[test]
    fn natural_order_compares_numbers_by_value() {
        use super::natural_cmp;
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("a2", "a10"), Less);
        assert_eq!(natural_cmp("a10", "a10"), Equal);
        assert_eq!(natural_cmp("b1", "a2"), Greater);
        assert_eq!(natural_cmp("1.2.10", "1.2.9"), Greater);
    }
}
