//! The UI's analysis runs: `POST /ui/analyze` replays an AnalysisTemplate
//! over a past window with `promfed analyze`'s rules, each measurement's
//! query answered by this promfed itself (through its cache and limits, as
//! Argo's would be), never by an address from the request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::json;

use crate::analyze::measure::{Answer, ApiBody, QueryApi, QueryError};
use crate::analyze::run::{run, Window};
use crate::analyze::template::{parse_arg, Template};
use crate::api::{params::parse_time, ApiError, AppState, Params};
use crate::cache::Variant;
use crate::promql::QueryOptions;
use crate::wire;

/// Most measurements one run from the UI may take.
pub const MAX_MEASUREMENTS: usize = 1000;

/// This promfed as the measurements' Prometheus.
struct LocalApi {
    st: Arc<AppState>,
}

impl QueryApi for LocalApi {
    fn instant<'a>(
        &'a self,
        q: &'a str,
        at_ms: i64,
        _headers: &'a [(String, String)],
    ) -> BoxFuture<'a, Answer> {
        Box::pin(async move {
            let st = &self.st;
            let timeout = st.limits.timeout_for(None);
            let opts = QueryOptions::default();
            let body = async {
                st.limits.check_query_text("query", q)?;
                st.limits
                    .run("instant", q, timeout, async {
                        match &st.cache {
                            Some(c) => c
                                .instant(q, at_ms, &opts, &Variant::default(), timeout)
                                .await
                                .map(|a| a.body.to_vec())
                                .map_err(ApiError::from),
                            None => st
                                .engine
                                .instant(q, at_ms, &opts)
                                .await
                                .map(|r| wire::query_body(&r).into_bytes())
                                .map_err(ApiError::from),
                        }
                    })
                    .await
            };
            match body.await {
                Ok(b) => ApiBody::read(&b),
                Err(e) => Err(QueryError::Api {
                    error_type: e.kind.as_str().to_string(),
                    error: e.message,
                }),
            }
        })
    }
}

fn bad(message: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "error": message.to_string()})),
    )
        .into_response()
}

/// Form: `template` (YAML), `args` (lines of NAME=VALUE), `from`, `to`.
pub(super) async fn analyze(State(st): State<Arc<AppState>>, p: Params) -> Response {
    let template = match Template::parse(p.get("template").unwrap_or("")) {
        Ok(t) => t,
        Err(e) => return bad(e),
    };
    let args: Result<Vec<_>, _> = p
        .get("args")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(parse_arg)
        .collect();
    let metrics = match args.and_then(|a| template.resolve(&a)) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let time =
        |name: &str| parse_time(p.get(name).unwrap_or("")).map_err(|e| format!("{name}: {e}"));
    let (start_ms, end_ms) = match (time("from"), time("to")) {
        (Ok(f), Ok(t)) if t >= f => (f, t),
        (Ok(_), Ok(_)) => return bad("to is before from"),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let api: Arc<dyn QueryApi> = Arc::new(LocalApi { st: st.clone() });
    let apis = vec![api; metrics.len()];
    let window = Window::Replay { start_ms, end_ms };
    match run(&metrics, &apis, window, MAX_MEASUREMENTS, |_| {}).await {
        Ok(r) => axum::Json(json!({
            "status": "success",
            "data": {
                "measurements": r.measurements,
                "run": {"phase": r.phase, "message": r.message, "metrics": r.metrics},
            }
        }))
        .into_response(),
        Err(e) => bad(e),
    }
}
