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
