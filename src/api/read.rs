//! The read API besides queries: series, labels, label values, metadata,
//! exemplars, query formatting and parsing, rules, alerts and stores, merged
//! across backends.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use serde_json::{json, Value as Json};

use super::error::{ApiError, ErrorType};
use super::params::{Params, MAX_TIME_MS, MIN_TIME_MS};
use super::{json_response, read_options, AppState};
use crate::model::{Labels, METRIC_NAME};
use crate::source::prometheus::unescape_label_name;
use crate::source::{MetaQuery, Source};
use crate::wire;

/// Parses `match[]` selectors into matcher sets (an `or` selector gives one
/// set per alternative).
fn parse_match(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for m in p.all("match[]") {
        let expr = crate::model::query_text::parse(m)
            .map_err(|e| ApiError::invalid_param("match[]", e))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(ApiError::invalid_param(
                "match[]",
                format!("{m:?} is not a series selector"),
            ));
        };
        let mut alternatives = if vs.matchers.or_matchers.is_empty() {
            vec![vs.matchers.matchers.clone()]
        } else {
            vs.matchers.or_matchers.clone()
        };
        if let Some(name) = &vs.name {
            for a in &mut alternatives {
                if !a.iter().any(|x| x.name == METRIC_NAME) {
                    a.push(Matcher::new(
                        promql_parser::label::MatchOp::Equal,
                        METRIC_NAME,
                        name,
                    ));
                }
            }
        }
        sets.extend(alternatives);
    }
    Ok(sets)
}

fn meta_query(p: &Params) -> Result<MetaQuery, ApiError> {
    let start = p.time_or("start", MIN_TIME_MS)?;
    let end = p.time_or("end", MAX_TIME_MS)?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok(MetaQuery {
        matchers: parse_match(p)?,
        start_ms: start,
        end_ms: end,
        read: read_options(p)?,
        limit: limit(p, "limit")?,
    })
}

/// Runs a metadata request as a query of `kind`: it waits for an
/// admission slot, ends at the deadline (`limits.query_timeout`, or the
/// request's shorter `timeout`) and its backend reads are charged to a
/// budget of its own.
async fn admitted<T>(
    st: &AppState,
    p: &Params,
    kind: &'static str,
    fut: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let timeout = st.limits.timeout_for(p.duration("timeout")?);
    let what = p.all("match[]").join(" ");
    let what = if what.is_empty() {
        p.get("query").or(p.get("metric")).unwrap_or("").to_string()
    } else {
        what
    };
    st.limits.run(kind, &what, timeout, fut).await
}

/// The `limit` parameter (0 or absent: no limit).
fn limit(p: &Params, name: &str) -> Result<usize, ApiError> {
    match p.non_empty(name) {
        None => Ok(0),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n as usize)
            .ok_or_else(|| {
                ApiError::invalid_param(
                    name,
                    format!("cannot parse {v:?}: must be a non-negative integer"),
                )
            }),
    }
}

/// Truncates to `limit` (if set), warning as Prometheus does.
fn apply_limit<T>(items: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit".to_string());
    }
}

fn ok(data: Json, warnings: &[String]) -> Response {
    json_response(
        StatusCode::OK,
        wire::success_body(&data.to_string(), warnings),
    )
}

fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|x| (x.name.to_string(), Json::String(x.value.to_string())))
            .collect(),
    )
}

pub(super) async fn series(
    State(st): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let q = meta_query(&p)?;
    let lim = q.limit;
    let mut out = admitted(&st, &p, "series", async {
        st.federation.series(&q).await.map_err(source_err)
    })
    .await?;
    apply_limit(&mut out.items, lim, &mut out.warnings);
    let data = Json::Array(out.items.iter().map(labels_json).collect());
    Ok(ok(data, &out.warnings))
}

pub(super) async fn labels(
    State(st): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let q = meta_query(&p)?;
    let lim = q.limit;
    let mut out = admitted(&st, &p, "labels", async {
        st.federation.label_names(&q).await.map_err(source_err)
    })
    .await?;
    apply_limit(&mut out.items, lim, &mut out.warnings);
    Ok(ok(json!(out.items), &out.warnings))
}

pub(super) async fn label_values(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, ApiError> {
    let name = unescape_label_name(&name);
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let q = meta_query(&p)?;
    let lim = q.limit;
    let mut out = admitted(&st, &p, "label_values", async {
        st.federation
            .label_values(&name, &q)
            .await
            .map_err(source_err)
    })
    .await?;
    apply_limit(&mut out.items, lim, &mut out.warnings);
    Ok(ok(json!(out.items), &out.warnings))
}

/// Parameters passed on to backends unchanged.
fn forward(p: &Params, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .flat_map(|n| {
            p.all(n)
                .into_iter()
                .map(move |v| (n.to_string(), v.to_string()))
        })
        .collect()
}

pub(super) async fn metadata(
    State(st): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let lim = limit(&p, "limit")?;
    let per_metric = limit(&p, "limit_per_metric")?;
    let read = read_options(&p)?;
    let params = forward(&p, &["metric", "limit", "limit_per_metric"]);
    let (answers, warnings) = admitted(&st, &p, "metadata", async {
        st.federation
            .api_get_all("/api/v1/metadata", &params, &read)
            .await
            .map_err(source_err)
    })
    .await?;
    let mut merged: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for (_, d) in answers {
        if let Json::Object(m) = d.data {
            for (metric, entries) in m {
                let slot = merged.entry(metric).or_default();
                if let Json::Array(entries) = entries {
                    for e in entries {
                        if !slot.contains(&e) {
                            slot.push(e);
                        }
                    }
                }
            }
        }
    }
    let mut data = serde_json::Map::new();
    for (metric, mut entries) in merged {
        if lim > 0 && data.len() >= lim {
            break;
        }
        if per_metric > 0 {
            entries.truncate(per_metric);
        }
        data.insert(metric, Json::Array(entries));
    }
    Ok(ok(Json::Object(data), &warnings))
}

pub(super) async fn query_exemplars(
    State(st): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    let q = p.get("query").unwrap_or("");
    crate::model::query_text::parse(q).map_err(|e| ApiError::invalid_param("query", e))?;
    // Grafana's probe sends milliseconds; any number or RFC3339 is accepted
    // and passed on as given.
    for name in ["start", "end"] {
        p.time_or(name, 0)?;
    }
    let read = read_options(&p)?;
    let params = forward(&p, &["query", "start", "end"]);
    let (answers, warnings) = admitted(&st, &p, "exemplars", async {
        st.federation
            .api_get_all("/api/v1/query_exemplars", &params, &read)
            .await
            .map_err(source_err)
    })
    .await?;
    let mut all = Vec::new();
    for (b, d) in answers {
        if let Json::Array(items) = d.data {
            for mut item in items {
                if let Some(Json::Object(labels)) = item.get_mut("seriesLabels") {
                    for (k, v) in &b.external_labels {
                        labels
                            .entry(k.clone())
                            .or_insert_with(|| Json::String(v.clone()));
                    }
                }
                all.push(item);
            }
        }
    }
    Ok(ok(Json::Array(all), &warnings))
}

pub(super) async fn format_query(p: Params) -> Result<Response, ApiError> {
    let q = p.get("query").unwrap_or("");
    let expr =
        crate::model::query_text::parse(q).map_err(|e| ApiError::invalid_param("query", e))?;
    Ok(ok(Json::String(expr.prettify()), &[]))
}

pub(super) async fn parse_query(p: Params) -> Result<Response, ApiError> {
    let q = p.get("query").unwrap_or("");
    let expr =
        crate::model::query_text::parse(q).map_err(|e| ApiError::invalid_param("query", e))?;
    let ast = serde_json::to_value(&expr)
        .map_err(|e| ApiError::new(ErrorType::Internal, format!("encoding the AST: {e}")))?;
    Ok(ok(ast, &[]))
}

/// Concatenates the list under `key` of every backend's answer.
async fn concat(
    st: &AppState,
    p: &Params,
    kind: &'static str,
    path: &str,
    key: &str,
    pass: &[&str],
) -> Result<Response, ApiError> {
    let read = read_options(p)?;
    let params = forward(p, pass);
    let (answers, warnings) = admitted(st, p, kind, async {
        st.federation
            .api_get_all(path, &params, &read)
            .await
            .map_err(source_err)
    })
    .await?;
    let mut all = Vec::new();
    for (_, d) in answers {
        if let Some(Json::Array(items)) = d.data.get(key) {
            all.extend(items.iter().cloned());
        }
    }
    let mut data = serde_json::Map::new();
    data.insert(key.to_string(), Json::Array(all));
    Ok(ok(Json::Object(data), &warnings))
}

pub(super) async fn rules(
    State(st): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    concat(
        &st,
        &p,
        "rules",
        "/api/v1/rules",
        "groups",
        &[
            "type",
            "rule_name[]",
            "rule_group[]",
            "file[]",
            "match[]",
            "exclude_alerts",
        ],
    )
    .await
}

pub(super) async fn alerts(
    State(st): State<Arc<AppState>>,
    p: Params,
) -> Result<Response, ApiError> {
    concat(&st, &p, "alerts", "/api/v1/alerts", "alerts", &[]).await
}

/// Thanos' `/api/v1/stores`: every backend with its health, grouped by
/// component type. A StoreAPI backend shows what its Info last said (type,
/// label sets, time range); the others show their configured labels.
/// Beyond Thanos' fields each entry says `up` (the last probe succeeded)
/// and `latencyMs` (how long it took); `probe=true` probes every backend
/// first instead of showing the last background probe.
pub(super) async fn stores(State(st): State<Arc<AppState>>, p: Params) -> Response {
    if p.non_empty("probe")
        .is_some_and(|v| v == "true" || v == "1")
    {
        st.federation.probe_all().await;
    }
    let mut groups: serde_json::Map<String, Json> = serde_json::Map::new();
    for (i, b) in st.federation.backends().iter().enumerate() {
        let h = st.federation.health(i);
        let to_json = |pairs: Vec<(String, String)>| -> Json {
            Json::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, Json::String(v)))
                    .collect(),
            )
        };
        let info = b.source.store_info();
        let (kind, label_sets, min, max) = match &info {
            Some(info) => (
                if info.component.is_empty() {
                    "store".to_string()
                } else {
                    info.component.clone()
                },
                info.label_sets
                    .iter()
                    .map(|l| {
                        to_json(
                            l.iter()
                                .map(|x| (x.name.to_string(), x.value.to_string()))
                                .collect(),
                        )
                    })
                    .collect(),
                info.min_time_ms,
                info.max_time_ms,
            ),
            None => (
                "sidecar".to_string(),
                vec![to_json(b.external_labels.clone().into_iter().collect())],
                MIN_TIME_MS,
                MAX_TIME_MS,
            ),
        };
        let entry = json!({
            "name": b.name,
            "lastCheck": h.last_check,
            "lastError": h.last_error,
            "up": h.up,
            "latencyMs": h.latency_ms,
            "labelSets": label_sets,
            "minTime": min,
            "maxTime": max,
            "labelsDisagreement": h.labels_disagreement,
        });
        if let Json::Array(list) = groups
            .entry(kind)
            .or_insert_with(|| Json::Array(Vec::new()))
        {
            list.push(entry);
        }
    }
    ok(Json::Object(groups), &[])
}

fn source_err(e: crate::source::SourceError) -> ApiError {
    ApiError::from(crate::promql::EngineError::Source(e))
}
