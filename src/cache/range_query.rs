//! Range queries: the stored extents of a (query, step, `start % step`,
//! options) key, and evaluations of only what they lack; the freshest
//! points are never stored.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;

use super::key::{self, Canonical};
use super::range::{self, Extent};
use super::{
    flight_panicked, push_unique, query_time_left, Answer, CacheError, CacheStatus, Evaluate,
    Flown, Inner, QueryCache, Variant, RANGE_HISTORY_STEPS,
};
use crate::promql::{QueryOptions, QueryResult, Value};

impl QueryCache {
    /// Answers a range query from stored extents and evaluations of what
    /// they lack.
    #[allow(clippy::too_many_arguments)]
    pub async fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        opts: &QueryOptions,
        variant: &Variant,
        timeout: Duration,
    ) -> Result<Answer, CacheError> {
        let inner = &self.inner;
        let eval = variant.eval.clone().unwrap_or_else(|| inner.eval.clone());
        let canon = match inner.canon.get(query) {
            Some(c) if c.range_cacheable && inner.settings.range_enabled && step_ms > 0 => c,
            _ => {
                inner.count("range", CacheStatus::Bypass);
                let r = inner
                    .bounded(timeout, eval.range(query, start_ms, end_ms, step_ms, opts))
                    .await?;
                return Answer::of(r, CacheStatus::Bypass).await;
            }
        };
        let rkey = key::range_key(&canon, step_ms, start_ms, opts, &variant.key);
        let fkey = format!("{rkey}|{start_ms}|{end_ms}");
        let (flight, leader) = inner.flights.join_or_start(
            &fkey,
            || {
                let (inner, opts) = (self.inner.clone(), opts.clone());
                async move {
                    inner
                        .evaluate_range(eval, &rkey, &canon, start_ms, end_ms, step_ms, &opts)
                        .await
                }
            },
            flight_panicked,
        );
        self.finish("range", timeout, flight, leader).await
    }
}

impl Inner {
    #[allow(clippy::too_many_arguments)]
    async fn evaluate_range(
        &self,
        eval: Arc<dyn Evaluate>,
        rkey: &str,
        canon: &Canonical,
        start: i64,
        end: i64,
        step: i64,
        opts: &QueryOptions,
    ) -> Flown {
        let ttl = self.settings.range_ttl;
        let extents: Vec<Extent> = match self.stores.get(rkey, ttl).await {
            Some(b) => range::codec::decode(&b).unwrap_or_default(),
            None => Vec::new(),
        };
        let last = range::last_point(start, end, step);
        let gaps = range::gaps(&extents, start, last, step);
        if gaps.is_empty() {
            let series = range::merge(extents.iter().map(|x| x.series.as_slice()), start, last);
            let r = QueryResult {
                value: Value::Matrix(series),
                warnings: Vec::new(),
                infos: Vec::new(),
            };
            return Answer::of(r, CacheStatus::Hit).await;
        }
        let status = if gaps == [(start, last)] {
            CacheStatus::Miss
        } else {
            CacheStatus::Partial
        };
        self.metrics
            .evaluations
            .with_label_values(&["range"])
            .inc_by(gaps.len() as u64);
        let evals = gaps.iter().map(|&(s, e)| {
            self.bounded(query_time_left(), eval.range(&canon.text, s, e, step, opts))
        });
        let mut pieces = Vec::with_capacity(gaps.len());
        let (mut warnings, mut infos) = (Vec::new(), Vec::new());
        for (&(s, e), r) in gaps.iter().zip(join_all(evals).await) {
            let r = r?;
            push_unique(&mut warnings, r.warnings);
            push_unique(&mut infos, r.infos);
            match r.value {
                Value::Matrix(series) => pieces.push(Extent {
                    start: s,
                    end: e,
                    series,
                }),
                _ => {
                    // Not a range result: answer the request as sent, uncached.
                    let r = self
                        .bounded(
                            query_time_left(),
                            eval.range(&canon.text, start, end, step, opts),
                        )
                        .await?;
                    return Answer::of(r, CacheStatus::Bypass).await;
                }
            }
        }
        let series = range::merge(
            extents
                .iter()
                .chain(pieces.iter())
                .map(|x| x.series.as_slice()),
            start,
            last,
        );
        let annotated = !warnings.is_empty() || !infos.is_empty();
        let r = QueryResult {
            value: Value::Matrix(series),
            warnings,
            infos,
        };
        let answer = Answer::of(r, status).await?;
        if annotated {
            // Extents carry no annotations: a later hit could not repeat them.
            self.not_stored("annotations");
            return Ok(answer);
        }
        let cacheable_end = (self.clock)().saturating_sub(self.settings.max_freshness_ms);
        let new: Vec<Extent> = pieces
            .into_iter()
            .filter_map(|p| {
                let hi = p.end.min(range::last_point(p.start, cacheable_end, step));
                (hi >= p.start).then(|| Extent {
                    start: p.start,
                    end: hi,
                    series: range::merge([p.series.as_slice()], p.start, hi),
                })
            })
            .collect();
        if new.is_empty() {
            self.not_stored("fresh");
        } else {
            let keep_from = last.saturating_sub(RANGE_HISTORY_STEPS.saturating_mul(step));
            let kept = range::insert(extents, new, step, keep_from);
            self.stores
                .put(rkey, Bytes::from(range::codec::encode(&kept)), ttl)
                .await;
        }
        Ok(answer)
    }
}
