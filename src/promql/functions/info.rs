//! info(): enriches series with the data labels of matching info metrics (target_info by default).

use std::collections::HashMap;

use promql_parser::parser::{Expr, VectorSelector};

use super::{arg, Args};
use crate::model::{Labels, METRIC_NAME};
use crate::promql::eval::{merge_same_labels, Evaluator};
use crate::promql::plan::{DEFAULT_INFO, DEFAULT_INFO_METRIC};
use crate::promql::selector;
use crate::promql::steps::{VSeries, Val};
use crate::promql::EngineError;

/// Labels that tie a series to its info series.
const IDENTIFYING: [&str; 2] = ["instance", "job"];

pub(crate) fn info(ev: &mut Evaluator<'_>, args: &Args) -> Result<Val, EngineError> {
    let base = ev.eval_vector(arg(args, 0)?)?;
    let sel: &VectorSelector = match args.get(1).map(|a| a.as_ref()) {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(_) => {
            return Err(EngineError::Execution(
                "expected label selectors as the second argument of info".into(),
            ))
        }
        None => &DEFAULT_INFO,
    };
    let all = sel
        .matchers
        .matchers
        .iter()
        .chain(sel.matchers.or_matchers.iter().flatten());
    let name_matchers: Vec<_> = all.clone().filter(|m| m.name == METRIC_NAME).collect();
    let data_matchers: Vec<_> = all.filter(|m| m.name != METRIC_NAME).collect();
    let is_info_metric = |l: &Labels| {
        let name = l.metric_name().unwrap_or("");
        match (&sel.name, name_matchers.is_empty()) {
            (Some(n), _) => n == name,
            (None, true) => name == DEFAULT_INFO_METRIC,
            (None, false) => name_matchers.iter().all(|m| m.is_match(name)),
        }
    };
    let infos: Vec<VSeries> = selector::instant_series_with_ts(ev, sel)?
        .into_iter()
        .filter(|s| is_info_metric(&s.0.labels))
        .map(|(mut s, ts)| {
            // Keep the sample timestamps in place of the values: the newest info sample wins.
            s.vals = ts;
            s
        })
        .collect();
    let id_key = |l: &Labels| -> Vec<String> {
        IDENTIFYING
            .iter()
            .map(|n| l.get(n).unwrap_or("").to_string())
            .collect()
    };
    let mut by_id: HashMap<Vec<String>, Vec<&VSeries>> = HashMap::new();
    for i in &infos {
        by_id.entry(id_key(&i.labels)).or_default().push(i);
    }
    let drop_unmatched = data_matchers.iter().any(|m| !m.is_match(""));
    let n = ev.grid.len();
    reject_histogram_infos(&base, &infos, &is_info_metric, n)?;
    let mut out: Vec<VSeries> = Vec::new();
    for s in base {
        if is_info_metric(&s.labels) {
            out.push(s);
            continue;
        }
        let candidates = by_id.get(&id_key(&s.labels));
        let mut per_labels: HashMap<Labels, usize> = HashMap::new();
        for step in 0..n {
            let Some(v) = s.vals[step] else { continue };
            // Newest info series per info metric name present at this step.
            let mut chosen: HashMap<&str, (f64, &VSeries)> = HashMap::new();
            for i in candidates.into_iter().flatten() {
                let Some(t) = i.vals[step] else { continue };
                let name = i.labels.metric_name().unwrap_or("");
                match chosen.get(name) {
                    Some((ct, _)) if *ct >= t => {}
                    _ => {
                        chosen.insert(name, (t, i));
                    }
                }
            }
            let mut labels = s.labels.clone();
            let mut matched = false;
            let mut names: Vec<&&str> = chosen.keys().collect();
            names.sort();
            for name in names {
                let (_, i) = chosen[*name];
                matched = true;
                for l in i.labels.iter() {
                    if l.name == METRIC_NAME || IDENTIFYING.contains(&l.name.as_str()) {
                        continue;
                    }
                    if !data_matchers.is_empty() && !data_matchers.iter().any(|m| m.name == l.name)
                    {
                        continue;
                    }
                    if s.labels.get(&l.name).is_none() {
                        labels.set(&l.name, &l.value);
                    }
                }
            }
            if !matched && drop_unmatched {
                continue;
            }
            let idx = *per_labels.entry(labels.clone()).or_insert_with(|| {
                out.push(VSeries {
                    labels,
                    drop_name: s.drop_name,
                    vals: vec![None; n],
                    hists: Vec::new(),
                });
                out.len() - 1
            });
            out[idx].vals[step] = Some(v);
        }
    }
    merge_same_labels(out).map(Val::Vector)
}

/// Fails as 3.8 does ("info sample should be float") when, at a step where
/// the base vector has any sample, an info series Prometheus would fetch
/// holds a histogram: it fetches those whose `instance`/`job` values appear
/// on some base series that is not itself an info series (each label
/// checked on its own, only labels some base series has).
fn reject_histogram_infos(
    base: &[VSeries],
    infos: &[VSeries],
    is_info_metric: &dyn Fn(&Labels) -> bool,
    n: usize,
) -> Result<(), EngineError> {
    if infos.iter().all(|i| i.hists.iter().all(Option::is_none)) {
        return Ok(());
    }
    let mut wanted: [Vec<&str>; IDENTIFYING.len()] = Default::default();
    for s in base.iter().filter(|s| !is_info_metric(&s.labels)) {
        for (k, name) in IDENTIFYING.iter().enumerate() {
            match s.labels.get(name) {
                Some(v) if !v.is_empty() => wanted[k].push(v),
                _ => {}
            }
        }
    }
    if wanted.iter().all(Vec::is_empty) {
        return Ok(());
    }
    let fetched = |l: &Labels| {
        IDENTIFYING
            .iter()
            .zip(&wanted)
            .all(|(name, vals)| vals.is_empty() || vals.contains(&l.get(name).unwrap_or("")))
    };
    for step in 0..n {
        let base_here = base
            .iter()
            .any(|s| s.vals[step].is_some() || s.hist(step).is_some());
        if base_here
            && infos
                .iter()
                .any(|i| i.hist(step).is_some() && fetched(&i.labels))
        {
            return Err(EngineError::Execution("info sample should be float".into()));
        }
    }
    Ok(())
}
