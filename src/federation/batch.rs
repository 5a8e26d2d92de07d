//! Fans a query's selects out to the backends together: each backend gets
//! all of its selects in one call (so remote read batches them into few
//! requests), and the answers are merged back per select.

use futures::future::try_join_all;

use super::{backend_select, dedup, merge_series, Backend, Federation, COUNTER_FUNCS};
use crate::model::Series;
use promql_parser::label::Matcher;

use crate::source::{matches_all, Select, SelectOutput, SourceError};

/// One backend's answers to the selects routed to it: the index of each
/// select in the query's list, and its answer.
type Answers<'a> = (&'a Backend, Vec<(usize, Result<SelectOutput, SourceError>)>);

impl Federation {
    /// Answers every select of `sels`, in order. A backend's failure that
    /// the query's policy does not tolerate fails every select at once.
    pub(super) async fn select_batch(
        &self,
        sels: &[Select],
    ) -> Vec<Result<SelectOutput, SourceError>> {
        let reads: Vec<_> = sels.iter().map(|s| self.resolved(&s.read)).collect();
        // Route: per backend, the selects it may hold, with the matchers
        // its external labels alone satisfy dropped.
        let plans: Vec<(&Backend, Vec<usize>, Vec<Select>)> = self
            .backends
            .iter()
            .filter_map(|b| {
                let (idx, mine): (Vec<usize>, Vec<Select>) = sels
                    .iter()
                    .zip(&reads)
                    .enumerate()
                    .filter_map(|(i, (s, read))| backend_select(b, s, read).map(|s| (i, s)))
                    .unzip();
                (!idx.is_empty()).then_some((b, idx, mine))
            })
            .collect();
        let asked = plans.iter().map(|(b, idx, mine)| async move {
            let started = std::time::Instant::now();
            let mut outs = b.source.select_many(mine).await;
            if outs.len() != mine.len() {
                let e = SourceError::Backend {
                    backend: b.name.clone(),
                    message: format!("{} answers to {} selects", outs.len(), mine.len()),
                };
                outs = mine.iter().map(|_| Err(e.clone())).collect();
            }
            let mut answers = Vec::with_capacity(outs.len());
            for (&i, out) in idx.iter().zip(outs) {
                let out = super::observe::observed_select(&b.name, started, out);
                self.record_outcome(b, &out);
                if let Err(e) = &out {
                    if !self.tolerates(&sels[i], e) {
                        return Err(e.clone());
                    }
                }
                answers.push((i, out));
            }
            Ok::<Answers<'_>, SourceError>((*b, answers))
        });
        let answered = match try_join_all(asked).await {
            Ok(a) => a,
            Err(e) => return sels.iter().map(|_| Err(e.clone())).collect(),
        };
        // Per select, the backends' answers in backend order.
        let mut per_select: Vec<Vec<(&Backend, Result<SelectOutput, SourceError>)>> =
            sels.iter().map(|_| Vec::new()).collect();
        for (b, answers) in answered {
            for (i, out) in answers {
                per_select[i].push((b, out));
            }
        }
        sels.iter()
            .zip(per_select)
            .map(|(sel, answers)| self.combine(sel, answers))
            .collect()
    }

    /// Whether the query's partial-response policy leaves out a backend
    /// that failed `sel` with `e` (a broken limit never is).
    fn tolerates(&self, sel: &Select, e: &SourceError) -> bool {
        let partial = sel
            .read
            .partial_response
            .unwrap_or(self.opts.partial_response);
        partial && !matches!(e, SourceError::Limit(_))
    }

    /// One select's answer from its backends' answers: external labels
    /// added, merged by label set, replicas deduplicated, tolerated
    /// failures turned into warnings.
    fn combine(
        &self,
        sel: &Select,
        answers: Vec<(&Backend, Result<SelectOutput, SourceError>)>,
    ) -> Result<SelectOutput, SourceError> {
        let mut warnings = Vec::new();
        let mut all: Vec<Series> = Vec::new();
        for (b, answer) in answers {
            let out = match answer {
                Ok(out) => out,
                Err(e) if self.tolerates(sel, &e) => {
                    warnings.push(format!(
                        "partial response: backend {} left out: {e}",
                        b.name
                    ));
                    continue;
                }
                Err(e) => return Err(e),
            };
            warnings.extend(out.warnings);
            let labels = b.labels();
            // Re-check the matchers on external labels: a series may carry
            // its own value for a label that is also external. The backend
            // applied every other matcher itself.
            let recheck: Vec<Matcher> = sel
                .matchers
                .iter()
                .filter(|m| labels.contains_key(&m.name))
                .cloned()
                .collect();
            for mut s in out.series {
                for (k, v) in labels.iter() {
                    if s.labels.get(k).is_none() {
                        s.labels.set(k, v);
                    }
                }
                if matches_all(&s.labels, &recheck) {
                    all.push(s);
                }
            }
        }
        let mut series = merge_series(all);
        if let Some(replica_labels) = self.dedup_labels(&sel.read) {
            let counter = sel
                .hints
                .func
                .as_deref()
                .is_some_and(|f| COUNTER_FUNCS.contains(&f));
            series = dedup::dedup(series, replica_labels, counter);
        }
        Ok(SelectOutput { series, warnings })
    }
}
