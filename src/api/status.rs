//! `GET /api/v1/status/cache` (a promfed extension, for the UI's cache
//! page): the cache's settings, its counters and the grid cells evaluated
//! lately.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use prometheus::core::Collector;
use serde_json::{json, Value as Json};

use super::{json_response, AppState};
use crate::wire;

/// Every child of a counter vector as `{labels..., "value"}` rows.
fn counter_rows(c: &prometheus::IntCounterVec) -> Vec<Json> {
    let mut rows = Vec::new();
    for family in c.collect() {
        for m in family.get_metric() {
            let mut row = serde_json::Map::new();
            for l in m.get_label() {
                row.insert(l.name().to_string(), Json::String(l.value().to_string()));
            }
            row.insert("value".into(), json!(m.get_counter().get_value()));
            rows.push(Json::Object(row));
        }
    }
    rows
}

pub(super) async fn cache(State(st): State<Arc<AppState>>) -> Response {
    let data = match &st.cache {
        None => json!({ "enabled": false }),
        Some(c) => {
            let m = c.metrics();
            let cells: Vec<Json> = c
                .recent_cells()
                .into_iter()
                .map(|cell| {
                    json!({
                        "query": cell.query,
                        "time": cell.time_ms as f64 / 1000.0,
                        "evaluations": cell.evaluations,
                        "lastEvaluation": cell.last_ms as f64 / 1000.0,
                    })
                })
                .collect();
            json!({
                "enabled": true,
                "gridSeconds": c.grid_ms() as f64 / 1000.0,
                "store": if c.stores().shared().is_some() { "redis" } else { "memory" },
                "warmQueries": c.warm_queries(),
                "requests": counter_rows(&m.requests),
                "evaluations": counter_rows(&m.evaluations),
                "notStored": counter_rows(&m.not_stored),
                "cells": cells,
            })
        }
    };
    json_response(StatusCode::OK, wire::success_body(&data.to_string(), &[]))
}
