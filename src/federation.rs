//! Fans one select out to every backend, adds each backend's external
//! labels, and merges the answers by label set.

mod batch;
pub mod dedup;
pub mod health;
pub mod observe;
pub(crate) mod points;
pub mod pushdown;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::{join_all, BoxFuture};
use promql_parser::label::Matcher;

use crate::model::{Labels, Series};
use crate::source::{
    matches_all, ApiData, MetaOutput, MetaQuery, ReadOptions, Select, SelectOutput, Source,
    SourceError, StoreInfo,
};

/// One federated backend: a source and the labels that identify it.
pub struct Backend {
    /// Name used in errors and warnings.
    pub name: String,
    /// Added to each series that lacks them.
    pub external_labels: BTreeMap<String, String>,
    pub source: Arc<dyn Source>,
}

impl Backend {
    /// The labels of this backend's series: the configured
    /// `external_labels`, overridden by the ones its store announces (a
    /// Thanos store's Info) when it announces exactly one label set.
    pub fn labels(&self) -> Cow<'_, BTreeMap<String, String>> {
        match self.source.store_info() {
            Some(info) if info.label_sets.len() == 1 => {
                let mut all = self.external_labels.clone();
                for l in info.label_sets[0].iter() {
                    all.insert(l.name.to_string(), l.value.to_string());
                }
                Cow::Owned(all)
            }
            _ => Cow::Borrowed(&self.external_labels),
        }
    }

    /// Whether this backend may hold a series matching `matchers` in
    /// `[start_ms, end_ms]`, by what its store announces (always true for
    /// sources that announce nothing).
    fn may_hold(
        &self,
        info: Option<&StoreInfo>,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> bool {
        let Some(info) = info else { return true };
        if !info.overlaps(start_ms, end_ms) {
            return false;
        }
        // A store of several label sets (a store gateway, a querier) may
        // match when one of its sets does.
        info.label_sets.len() <= 1
            || info.label_sets.iter().any(|set| {
                matchers
                    .iter()
                    .all(|m| set.get(&m.name).is_none_or(|v| m.is_match(v)))
            })
    }
}

/// Where a backend's configured external labels disagree with the ones its
/// store announces (a value differs), for the log and `/api/v1/stores`.
pub fn labels_disagreement(b: &Backend, info: &StoreInfo) -> Option<String> {
    if b.external_labels.is_empty() || info.label_sets.is_empty() {
        return None;
    }
    let agrees = |set: &Labels| {
        b.external_labels
            .iter()
            .all(|(k, v)| set.get(k).is_none_or(|x| x == v))
    };
    if info.label_sets.iter().any(agrees) {
        return None;
    }
    let sets: Vec<String> = info.label_sets.iter().map(|l| l.to_string()).collect();
    Some(format!(
        "configured external_labels {} disagree with the store's label sets {}",
        external_labels_of(b),
        sets.join(", ")
    ))
}

/// Federation-wide defaults, from the config.
#[derive(Debug, Clone, Default)]
pub struct FederationOptions {
    /// Leave failed backends out with a warning instead of failing.
    pub partial_response: bool,
    /// Labels that tell HA replicas apart.
    pub replica_labels: Vec<String>,
}

/// The answers of the backends that answered, and the warnings.
pub type Gathered<'b, T> = (Vec<(&'b Backend, T)>, Vec<String>);

/// A `Source` made of backends.
pub struct Federation {
    backends: Vec<Backend>,
    opts: FederationOptions,
    health: health::HealthBoard,
    /// Per backend, whether sub-queries may be pushed down to it (empty:
    /// pushdown off).
    pushable: Vec<bool>,
}

/// Functions under which a replica switch must not make a counter go backwards.
const COUNTER_FUNCS: [&str; 4] = ["rate", "irate", "increase", "resets"];

impl Federation {
    pub fn new(backends: Vec<Backend>, opts: FederationOptions) -> Self {
        let health = health::HealthBoard::new(backends.len());
        Federation {
            backends,
            opts,
            health,
            pushable: Vec::new(),
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    fn partial(&self, read: &ReadOptions) -> bool {
        read.partial_response.unwrap_or(self.opts.partial_response)
    }

    /// `read` with the federation's defaults filled in, as sent to backends
    /// (a StoreAPI request carries its partial-response strategy and the
    /// replica labels to strip).
    fn resolved(&self, read: &ReadOptions) -> ReadOptions {
        let replicas = self.dedup_labels(read);
        ReadOptions {
            partial_response: Some(self.partial(read)),
            dedup: Some(replicas.is_some()),
            replica_labels: Some(replicas.map(<[String]>::to_vec).unwrap_or_default()),
        }
    }

    /// The replica labels to merge over, or `None` when dedup is off.
    fn dedup_labels<'a>(&'a self, read: &'a ReadOptions) -> Option<&'a [String]> {
        if !read.dedup.unwrap_or(true) {
            return None;
        }
        let labels = read
            .replica_labels
            .as_ref()
            .unwrap_or(&self.opts.replica_labels);
        (!labels.is_empty()).then_some(labels.as_slice())
    }

    /// Keeps the answers of the backends that answered; a failure either
    /// fails the whole call or, under partial response, becomes a warning.
    fn gather<'b, T>(
        &self,
        read: &ReadOptions,
        asked: impl IntoIterator<Item = (&'b Backend, Result<T, SourceError>)>,
    ) -> Result<Gathered<'b, T>, SourceError> {
        let partial = self.partial(read);
        let mut ok = Vec::new();
        let mut warnings = Vec::new();
        for (b, answer) in asked {
            self.record_outcome(b, &answer);
            match answer {
                Ok(v) => ok.push((b, v)),
                Err(e) if partial => warnings.push(format!(
                    "partial response: backend {} left out: {e}",
                    b.name
                )),
                Err(e) => return Err(e),
            }
        }
        Ok((ok, warnings))
    }

    /// The metadata query to send to each backend that can match `q`.
    fn meta_plans(&self, q: &MetaQuery) -> Vec<(&Backend, MetaQuery)> {
        let read = self.resolved(&q.read);
        self.backends
            .iter()
            .filter_map(|b| {
                let info = b.source.store_info();
                if info
                    .as_ref()
                    .is_some_and(|i| !i.overlaps(q.start_ms, q.end_ms))
                {
                    return None;
                }
                let labels = b.labels();
                let sets: Vec<Vec<Matcher>> = q
                    .matchers
                    .iter()
                    .filter(|m| b.may_hold(info.as_ref(), m, q.start_ms, q.end_ms))
                    .filter_map(|m| route_matchers(&labels, m))
                    .collect();
                if !q.matchers.is_empty() && sets.is_empty() {
                    return None;
                }
                Some((
                    b,
                    MetaQuery {
                        matchers: sets,
                        read: read.clone(),
                        ..q.clone()
                    },
                ))
            })
            .collect()
    }

    /// Adds `external` (a backend's labels) to `labels` where absent.
    fn with_external(external: &BTreeMap<String, String>, mut labels: Labels) -> Labels {
        for (k, v) in external {
            if labels.get(k).is_none() {
                labels.set(k, v);
            }
        }
        labels
    }

    async fn series_all(&self, q: &MetaQuery) -> Result<MetaOutput<Labels>, SourceError> {
        let plans = self.meta_plans(q);
        let answers = join_all(plans.iter().map(|(b, pq)| b.source.series(pq))).await;
        let (ok, mut warnings) =
            self.gather(&q.read, plans.iter().map(|(b, _)| *b).zip(answers))?;
        let dedup = self.dedup_labels(&q.read);
        let mut items = Vec::new();
        for (b, out) in ok {
            warnings.extend(out.warnings);
            let external = b.labels();
            for l in out.items {
                let mut l = Self::with_external(&external, l);
                if !q.matchers.is_empty() && !q.matchers.iter().any(|m| matches_all(&l, m)) {
                    continue;
                }
                if let Some(replicas) = dedup {
                    l.retain(|x| !replicas.iter().any(|r| x.name == *r));
                }
                items.push(l);
            }
        }
        items.sort();
        items.dedup();
        Ok(MetaOutput { items, warnings })
    }

    async fn label_names_all(&self, q: &MetaQuery) -> Result<MetaOutput<String>, SourceError> {
        let plans = self.meta_plans(q);
        let answers = join_all(plans.iter().map(|(b, pq)| b.source.label_names(pq))).await;
        let (ok, mut warnings) =
            self.gather(&q.read, plans.iter().map(|(b, _)| *b).zip(answers))?;
        let dedup = self.dedup_labels(&q.read);
        let mut items = Vec::new();
        for (b, out) in ok {
            warnings.extend(out.warnings);
            let any = !out.items.is_empty();
            items.extend(out.items);
            if any {
                items.extend(b.labels().keys().cloned());
            }
        }
        if let Some(replicas) = dedup {
            items.retain(|n| !replicas.contains(n));
        }
        items.sort();
        items.dedup();
        Ok(MetaOutput { items, warnings })
    }

    async fn label_values_all(
        &self,
        name: &str,
        q: &MetaQuery,
    ) -> Result<MetaOutput<String>, SourceError> {
        if self
            .dedup_labels(&q.read)
            .is_some_and(|r| r.iter().any(|x| x == name))
        {
            return Ok(MetaOutput::default());
        }
        let plans = self.meta_plans(q);
        let answers = join_all(plans.iter().map(|(b, pq)| async move {
            let external = b.labels();
            // A store answers for the labels it announces itself.
            let announced = b
                .source
                .store_info()
                .is_some_and(|i| i.label_sets.iter().any(|l| l.get(name).is_some()));
            if external.contains_key(name) && !announced {
                // The backend's storage lacks its external labels: derive the
                // values from its series.
                b.source.series(pq).await.map(|s| MetaOutput {
                    items: s
                        .items
                        .into_iter()
                        .filter_map(|l| {
                            Self::with_external(&external, l)
                                .get(name)
                                .map(str::to_string)
                        })
                        .collect(),
                    warnings: s.warnings,
                })
            } else {
                b.source.label_values(name, pq).await
            }
        }))
        .await;
        let (ok, mut warnings) =
            self.gather(&q.read, plans.iter().map(|(b, _)| *b).zip(answers))?;
        let mut items = Vec::new();
        for (_, out) in ok {
            warnings.extend(out.warnings);
            items.extend(out.items);
        }
        items.sort();
        items.dedup();
        Ok(MetaOutput { items, warnings })
    }

    /// GETs `path` from every backend that has an HTTP API; per-backend
    /// answers (with the backend) and warnings.
    pub async fn api_get_all(
        &self,
        path: &str,
        params: &[(String, String)],
        read: &ReadOptions,
    ) -> Result<Gathered<'_, ApiData>, SourceError> {
        let answers = join_all(self.backends.iter().map(|b| b.source.api_get(path, params))).await;
        let (ok, mut warnings) = self.gather(read, self.backends.iter().zip(answers))?;
        let mut out = Vec::new();
        for (b, d) in ok {
            if let Some(d) = d {
                warnings.extend(d.warnings.iter().cloned());
                out.push((b, d));
            }
        }
        Ok((out, warnings))
    }

    async fn select_all(&self, sel: &Select) -> Result<SelectOutput, SourceError> {
        self.select_batch(std::slice::from_ref(sel))
            .await
            .pop()
            .unwrap_or_else(|| Ok(SelectOutput::default()))
    }
}

impl Source for Federation {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(self.select_all(sel))
    }

    fn select_many<'a>(
        &'a self,
        sels: &'a [Select],
    ) -> BoxFuture<'a, Vec<Result<SelectOutput, SourceError>>> {
        Box::pin(self.select_batch(sels))
    }

    fn replica_labels(&self, read: &ReadOptions) -> Option<Vec<String>> {
        Some(
            self.dedup_labels(read)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
        )
    }

    fn series<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<Labels>, SourceError>> {
        Box::pin(self.series_all(q))
    }

    fn label_names<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.label_names_all(q))
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.label_values_all(name, q))
    }
}

/// The matchers to send to `b`: without those its external labels satisfy
/// (its own storage does not hold them), or `None` when its external labels
/// contradict one.
fn route_matchers(labels: &BTreeMap<String, String>, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut out: Vec<Matcher> = Vec::with_capacity(matchers.len());
    for m in matchers {
        match labels.get(&m.name) {
            Some(v) if m.is_match(v) => {}
            Some(_) => return None,
            None => out.push(m.clone()),
        }
    }
    Some(out)
}

/// The select to send to `b` (with the request's options resolved to
/// `read`), or `None` when `b` cannot hold a matching series.
fn backend_select(b: &Backend, sel: &Select, read: &ReadOptions) -> Option<Select> {
    let info = b.source.store_info();
    if !b.may_hold(info.as_ref(), &sel.matchers, sel.start_ms, sel.end_ms) {
        return None;
    }
    Some(Select {
        matchers: route_matchers(&b.labels(), &sel.matchers)?,
        start_ms: sel.start_ms,
        end_ms: sel.end_ms,
        hints: sel.hints.clone(),
        read: read.clone(),
    })
}

/// Sorts series by labels and merges those with equal label sets into one,
/// keeping one sample per timestamp (the first source's on a tie, whether
/// float or native histogram).
pub fn merge_series(mut all: Vec<Series>) -> Vec<Series> {
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                if last.histograms.is_empty() && s.histograms.is_empty() {
                    last.samples = points::merge_sorted(&last.samples, &s.samples);
                } else {
                    let merged =
                        points::merge_sorted(&points::points_of(last), &points::points_of(&s));
                    (last.samples, last.histograms) = points::split(merged);
                }
            }
            _ => out.push(s),
        }
    }
    out
}

/// Label set of a backend's external labels, for display.
pub fn external_labels_of(b: &Backend) -> Labels {
    Labels::from_pairs(
        b.external_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

#[cfg(test)]
mod tests;
