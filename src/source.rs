//! The `Source` trait: anything that answers "which series match these
//! matchers, with which samples between these times".

pub mod arrival;
pub mod body;
pub mod client;
pub mod connector;
pub mod guard;
pub mod http;
mod in_time_order;
pub mod memory;
pub mod prometheus;
pub mod remote_read;
pub mod thanos_store;

use futures::future::BoxFuture;
use promql_parser::label::Matcher;

use crate::model::{Labels, Series};

/// What the engine knows about why it selects (passed to backends that use
/// it, such as remote read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// Evaluation start, ms.
    pub start_ms: i64,
    /// Evaluation end, ms.
    pub end_ms: i64,
    /// Query step, ms (0 for instant queries).
    pub step_ms: i64,
    /// The function the selector is an argument of, if any (e.g. `rate`).
    pub func: Option<String>,
    /// The range of a range selector, ms (0 for instant selectors).
    pub range_ms: i64,
}

/// Per-request federation options (Thanos' query parameters); `None`
/// means "the configured default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ReadOptions {
    /// `partial_response`: `true` leaves out failed backends with a warning,
    /// `false` fails the query.
    pub partial_response: Option<bool>,
    /// `dedup`: merge HA replicas (default true).
    pub dedup: Option<bool>,
    /// `replicaLabels[]`: the labels that tell replicas apart.
    pub replica_labels: Option<Vec<String>>,
}

/// One selection: every series matching all `matchers` (the `__name__`
/// matcher included), with its samples in `[start_ms, end_ms]`.
#[derive(Debug, Clone)]
pub struct Select {
    pub matchers: Vec<Matcher>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub hints: SelectHints,
    /// Federation options of the request this select serves.
    pub read: ReadOptions,
}

/// The answer to a [`Select`]: series sorted by labels, unique label sets,
/// samples in time order; plus warnings that the caller must pass on.
#[derive(Debug, Clone, Default)]
pub struct SelectOutput {
    pub series: Vec<Series>,
    pub warnings: Vec<String>,
}

/// Why a select failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// A backend answered with an error or could not be reached.
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    /// A backend did not answer within its deadline.
    #[error("backend {backend}: timed out after {timeout_ms} ms")]
    Timeout { backend: String, timeout_ms: u64 },
    /// The selection itself is not acceptable (e.g. matches every series).
    #[error("{0}")]
    BadSelect(String),
    /// The query broke a configured limit (`limits:`); never tolerated as
    /// a partial response.
    #[error("{0}")]
    Limit(String),
}

/// A metadata request (`/api/v1/series`, `labels`, `label/<name>/values`).
#[derive(Debug, Clone)]
pub struct MetaQuery {
    /// Selector alternatives (`match[]`); empty means every series.
    pub matchers: Vec<Vec<Matcher>>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub read: ReadOptions,
    /// The request's `limit` (0: none), passed on to backends that take it.
    pub limit: usize,
}

/// Label sets, names or values with the warnings that came with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaOutput<T> {
    pub items: Vec<T>,
    pub warnings: Vec<String>,
}

/// What a store says about itself (the Thanos Info API): shown on
/// `/api/v1/stores` and used to route selects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreInfo {
    /// The component behind the address: `sidecar`, `store`, `query`, ...
    pub component: String,
    /// Its external label sets (a sidecar has one).
    pub label_sets: Vec<Labels>,
    /// The oldest sample it may hold, ms.
    pub min_time_ms: i64,
    /// The newest sample it may hold, ms.
    pub max_time_ms: i64,
    /// Whether it strips replica labels itself when asked.
    pub supports_without_replica_labels: bool,
}

impl StoreInfo {
    /// False when no series of this store can be in `[start_ms, end_ms]`.
    pub fn overlaps(&self, start_ms: i64, end_ms: i64) -> bool {
        start_ms <= self.max_time_ms && end_ms >= self.min_time_ms
    }
}

/// A matcher that every series with a metric name satisfies.
pub fn any_series_matcher() -> Matcher {
    match Matcher::new_matcher(
        promql_parser::parser::token::T_EQL_REGEX,
        crate::model::METRIC_NAME.to_string(),
        ".+".to_string(),
    ) {
        Ok(m) => m,
        // ".+" always compiles; keep a harmless fallback rather than panic.
        Err(_) => Matcher::new(
            promql_parser::label::MatchOp::NotEqual,
            crate::model::METRIC_NAME,
            "",
        ),
    }
}

/// Anything that can answer a select. The federation layer is itself a
/// `Source` made of `Source`s.
///
/// The metadata methods have defaults derived from `select`; sources with a
/// cheaper way (the Prometheus HTTP API) override them.
pub trait Source: Send + Sync {
    /// Selects the series matching `sel`.
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>>;

    /// Selects for every select of `sels` (one query's), one answer each in
    /// their order. Sources that answer several selects in one request
    /// (remote read) batch them, up to [`Source::batch_limit`] a request;
    /// the others ask for each one at once, as `select` would.
    fn select_many<'a>(
        &'a self,
        sels: &'a [Select],
    ) -> BoxFuture<'a, Vec<Result<SelectOutput, SourceError>>> {
        Box::pin(futures::future::join_all(
            sels.iter().map(|s| self.select(s)),
        ))
    }

    /// The most selects one request of this source carries (1: a request
    /// per select).
    fn batch_limit(&self) -> usize {
        1
    }

    /// The label sets of the series matching any of `q.matchers`, sorted and unique.
    fn series<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<Labels>, SourceError>> {
        Box::pin(async move {
            let sets = if q.matchers.is_empty() {
                vec![vec![any_series_matcher()]]
            } else {
                q.matchers.clone()
            };
            let mut out = MetaOutput::default();
            for matchers in sets {
                let sel = Select {
                    matchers,
                    start_ms: q.start_ms,
                    end_ms: q.end_ms,
                    hints: SelectHints {
                        start_ms: q.start_ms,
                        end_ms: q.end_ms,
                        func: Some("series".into()),
                        ..Default::default()
                    },
                    read: q.read.clone(),
                };
                let r = self.select(&sel).await?;
                out.items.extend(r.series.into_iter().map(|s| s.labels));
                out.warnings.extend(r.warnings);
            }
            out.items.sort();
            out.items.dedup();
            Ok(out)
        })
    }

    /// The label names of the series matching `q`, sorted and unique.
    fn label_names<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(async move {
            let s = self.series(q).await?;
            let mut names: Vec<String> = s
                .items
                .iter()
                .flat_map(|l| l.iter().map(|l| l.name.to_string()))
                .collect();
            names.sort();
            names.dedup();
            Ok(MetaOutput {
                items: names,
                warnings: s.warnings,
            })
        })
    }

    /// The values of label `name` among the series matching `q`, sorted and unique.
    fn label_values<'a>(
        &'a self,
        name: &'a str,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(async move {
            let s = self.series(q).await?;
            let mut values: Vec<String> = s
                .items
                .iter()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect();
            values.sort();
            values.dedup();
            Ok(MetaOutput {
                items: values,
                warnings: s.warnings,
            })
        })
    }

    /// Checks that the source answers at all (health probes).
    fn probe(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async { Ok(()) })
    }

    /// What the source last learnt about itself from the store it reads
    /// (Thanos Info, refreshed by [`Source::probe`]); `None` for sources
    /// without such an API, or before the first successful probe.
    fn store_info(&self) -> Option<StoreInfo> {
        None
    }

    /// The labels this source merges HA replicas over (its dedup), for the
    /// request's `read` options: a matcher on one of them must reach the
    /// source, while a matcher on any other label may instead be applied
    /// to the series a wider select returns (the engine shares one read
    /// between selectors that differ only in such matchers). `None` when
    /// unknown: then no matcher is applied after a select.
    fn replica_labels(&self, read: &ReadOptions) -> Option<Vec<String>> {
        let _ = read;
        None
    }

    /// The `data` of a GET on another API endpoint (metadata, rules,
    /// alerts, exemplars), for sources that have an HTTP API; `None` when
    /// this source has none.
    fn api_get<'a>(
        &'a self,
        path: &'a str,
        params: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<ApiData>, SourceError>> {
        let _ = (path, params);
        Box::pin(async { Ok(None) })
    }
}

/// The `data` and `warnings` of a backend's API answer.
#[derive(Debug, Clone, Default)]
pub struct ApiData {
    pub data: serde_json::Value,
    pub warnings: Vec<String>,
    /// Info-level annotations (`infos`) of a query answer.
    pub infos: Vec<String>,
}

/// A source that stamps the request's [`ReadOptions`] on every select it
/// passes to `inner`: how per-request federation options reach the
/// federation without the engine knowing about them.
pub struct WithReadOptions {
    pub inner: std::sync::Arc<dyn Source>,
    pub read: ReadOptions,
}

impl Source for WithReadOptions {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async move {
            let mut sel = sel.clone();
            sel.read = self.read.clone();
            self.inner.select(&sel).await
        })
    }

    fn select_many<'a>(
        &'a self,
        sels: &'a [Select],
    ) -> BoxFuture<'a, Vec<Result<SelectOutput, SourceError>>> {
        Box::pin(async move {
            let sels: Vec<Select> = sels
                .iter()
                .map(|s| Select {
                    read: self.read.clone(),
                    ..s.clone()
                })
                .collect();
            self.inner.select_many(&sels).await
        })
    }

    fn replica_labels(&self, _: &ReadOptions) -> Option<Vec<String>> {
        self.inner.replica_labels(&self.read)
    }
}

/// True when `labels` satisfies every matcher (a missing label matches as "").
pub fn matches_all(labels: &Labels, matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
}

impl From<crate::limits::fetched::FetchLimit> for SourceError {
    fn from(e: crate::limits::fetched::FetchLimit) -> Self {
        SourceError::Limit(e.to_string())
    }
}

/// A backend that cannot be set up from its config (client, TLS, address).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub String);

impl From<String> for SetupError {
    fn from(message: String) -> Self {
        SetupError(message)
    }
}
