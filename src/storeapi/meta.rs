//! `thanos.info.Info/Info`, `thanos.Store/LabelNames` and
//! `thanos.Store/LabelValues`: what promfed's federation holds, as one
//! query-like store.

use std::sync::Arc;
use std::time::Duration;

use super::error::StoreApiError;
use super::request;
use crate::api::AppState;
use crate::model::Labels;
use crate::source::thanos_store::storepb::{
    self, InfoResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse,
};
use crate::source::{MetaOutput, Source};

/// The component type promfed announces: what Thanos Query announces for
/// itself when another querier uses it as a store.
pub const COMPONENT_TYPE: &str = "query";

fn label_set(l: &Labels) -> storepb::LabelSet {
    storepb::LabelSet {
        labels: l
            .iter()
            .map(|l| storepb::Label {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect(),
    }
}

/// Info: the union of the backends' external label sets, the time range
/// their stores announce (all time when one announces none), and a
/// StoreAPI that strips replica labels when asked.
pub fn info(st: &AppState) -> InfoResponse {
    let mut sets: Vec<Labels> = Vec::new();
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for b in st.federation.backends() {
        let configured = Labels::from_pairs(b.external_labels.iter());
        match b.source.store_info() {
            Some(i) => {
                min_time = min_time.min(i.min_time_ms);
                max_time = max_time.max(i.max_time_ms);
                if i.label_sets.is_empty() {
                    sets.push(configured.clone());
                }
                for s in &i.label_sets {
                    let mut l = configured.clone();
                    for x in s.iter() {
                        l.set(&x.name, &x.value);
                    }
                    sets.push(l);
                }
            }
            None => {
                // A source without Info may hold anything, at any time.
                min_time = i64::MIN;
                max_time = i64::MAX;
                sets.push(Labels::from_pairs(b.labels().iter()));
            }
        }
    }
    if st.federation.backends().is_empty() {
        (min_time, max_time) = (i64::MIN, i64::MAX);
    }
    sets.sort();
    sets.dedup();
    InfoResponse {
        label_sets: sets.iter().map(label_set).collect(),
        component_type: COMPONENT_TYPE.to_string(),
        store: Some(storepb::StoreInfo {
            min_time,
            max_time,
            supports_sharding: false,
            supports_without_replica_labels: true,
        }),
    }
}

fn timeout(st: &AppState, deadline: Option<Duration>) -> Duration {
    let most = st.limits.timeout_for(None);
    deadline.map_or(most, |d| d.min(most))
}

/// Runs a metadata call under promfed's limits.
async fn admitted<T>(
    st: &AppState,
    kind: &'static str,
    what: &str,
    deadline: Option<Duration>,
    fut: impl std::future::Future<Output = Result<MetaOutput<T>, crate::source::SourceError>>,
) -> Result<MetaOutput<T>, StoreApiError> {
    st.limits
        .run(kind, what, timeout(st, deadline), async {
            Ok::<_, crate::api::ApiError>(fut.await)
        })
        .await
        .map_err(StoreApiError::Admission)?
        .map_err(StoreApiError::from)
}

/// `LabelNames`.
pub async fn label_names(
    st: Arc<AppState>,
    req: LabelNamesRequest,
    deadline: Option<Duration>,
) -> Result<LabelNamesResponse, StoreApiError> {
    let q = request::label_names_of(&req)?;
    let fed = st.federation.clone();
    let mut out = admitted(&st, "storeapi_labels", "", deadline, fed.label_names(&q)).await?;
    if q.limit > 0 {
        out.items.truncate(q.limit);
    }
    Ok(LabelNamesResponse {
        names: out.items,
        warnings: out.warnings,
    })
}

/// `LabelValues`.
pub async fn label_values(
    st: Arc<AppState>,
    req: LabelValuesRequest,
    deadline: Option<Duration>,
) -> Result<LabelValuesResponse, StoreApiError> {
    let (name, q) = request::label_values_of(&req)?;
    let fed = st.federation.clone();
    let mut out = admitted(
        &st,
        "storeapi_label_values",
        &name,
        deadline,
        fed.label_values(&name, &q),
    )
    .await?;
    if q.limit > 0 {
        out.items.truncate(q.limit);
    }
    Ok(LabelValuesResponse {
        values: out.items,
        warnings: out.warnings,
    })
}
