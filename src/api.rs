//! The Prometheus HTTP API: routes, parameter handling and responses.

pub mod error;
pub mod hot_path;
pub mod params;
pub mod read;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::cache::{Answer, QueryCache, Variant, CACHE_HEADER};
use crate::federation::Federation;
use crate::promql::{Engine, QueryOptions};
use crate::source::{ReadOptions, WithReadOptions};
pub use error::{ApiError, ErrorType};
pub use params::Params;

/// The instant query endpoint.
pub use crate::model::time::{DEFAULT_QUERY_TIMEOUT, MAX_POINTS_PER_SERIES};

pub use hot_path::on_workers;

pub(crate) const QUERY_PATH: &str = "/api/v1/query";

/// Response header listing the backends a query's evaluation read from
/// (comma-separated; absent when nothing was evaluated, e.g. a cache hit).
pub const BACKENDS_HEADER: &str = "x-promfed-backends";
/// Answer header: what exact pushdown sent to backends' query APIs (or
/// read raw, and why), one note a node, `; `-separated.
pub const PLAN_HEADER: &str = "x-promfed-plan";

/// Largest request body accepted by default, bytes (`limits.max_body_bytes`).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// What the handlers share.
pub struct AppState {
    pub engine: Engine,
    pub federation: Arc<Federation>,
    /// Set once the listener serves.
    pub ready: AtomicBool,
    /// The query cache, when configured.
    pub cache: Option<QueryCache>,
    /// Query admission and budgets (`limits:` in the config); the cache's
    /// warmer shares them.
    pub limits: Arc<crate::limits::Limits>,
    /// The worker pool (the runtime the state was built in) where requests
    /// are evaluated; `None` outside a runtime (then they run in place).
    pub workers: Option<tokio::runtime::Handle>,
}

impl AppState {
    pub fn new(federation: Arc<Federation>) -> Arc<Self> {
        Self::build(federation, None, crate::limits::LimitsConfig::default())
    }

    /// State whose `query` and `query_range` go through `cache`.
    pub fn with_cache(federation: Arc<Federation>, cache: Option<QueryCache>) -> Arc<Self> {
        Self::build(federation, cache, crate::limits::LimitsConfig::default())
    }

    /// The state with the config's limits.
    pub fn with_limits(
        federation: Arc<Federation>,
        limits: crate::limits::LimitsConfig,
    ) -> Arc<Self> {
        Self::build(federation, None, limits)
    }

    /// The state with a cache (if any) and the config's limits.
    pub fn build(
        federation: Arc<Federation>,
        cache: Option<QueryCache>,
        limits: crate::limits::LimitsConfig,
    ) -> Arc<Self> {
        Arc::new(AppState {
            engine: Engine::over_federation(federation.clone()),
            federation,
            ready: AtomicBool::new(false),
            cache,
            limits: Arc::new(crate::limits::Limits::new(limits)),
            workers: tokio::runtime::Handle::try_current().ok(),
        })
    }
}

/// The router for every endpoint promfed serves.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(QUERY_PATH, get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(read::series).post(read::series))
        .route("/api/v1/labels", get(read::labels).post(read::labels))
        // POST too (Prometheus takes GET only): many `match[]` do not fit a URL.
        .route(
            "/api/v1/label/{name}/values",
            get(read::label_values).post(read::label_values),
        )
        .route("/api/v1/metadata", get(read::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(read::query_exemplars).post(read::query_exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(read::format_query).post(read::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(read::parse_query).post(read::parse_query),
        )
        .route("/api/v1/rules", get(read::rules))
        .route("/api/v1/alerts", get(read::alerts))
        .route("/api/v1/stores", get(read::stores))
        .route("/api/v1/status/cache", get(status::cache))
        .route("/metrics", get(metrics))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.config.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn(crate::telemetry::track_http))
        .with_state(state)
}

impl FromRequest<Arc<AppState>> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let mut p = Params::default();
        if let Some(q) = req.uri().query() {
            p.add_urlencoded(q.as_bytes());
        }
        // A GET's query string too long for the URI (`server::long_uri`).
        if let Some(params::LongTarget::Query(q)) = req.extensions().get::<params::LongTarget>() {
            p.add_urlencoded(q);
        }
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            // A body trickling in must not hold its connection (busy, so
            // never closed for idleness) past what its query may take.
            let within = state.limits.config.query_timeout;
            let body = tokio::time::timeout(within, Bytes::from_request(req, state))
                .await
                .map_err(|_| {
                    ApiError::bad_data(format!(
                        "error parsing form values: the request body took longer than {} s to arrive",
                        within.as_secs()
                    ))
                })?
                .map_err(|e| {
                    ApiError::bad_data(format!("error parsing form values: {}", e.body_text()))
                })?;
            p.add_urlencoded(&body);
        }
        // Query text is bounded before anything parses it (every endpoint).
        for name in ["query", "match[]"] {
            for q in p.all(name) {
                state.limits.check_query_text(name, q)?;
            }
        }
        Ok(p)
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Options shared by instant and range queries.
fn query_options(
    p: &Params,
    limits: &crate::limits::Limits,
) -> Result<(QueryOptions, Duration), ApiError> {
    let mut opts = QueryOptions::default();
    if let Some(ms) = p.duration("lookback_delta")? {
        if ms < 0 {
            return Err(ApiError::invalid_param(
                "lookback_delta",
                "lookback delta cannot be negative",
            ));
        }
        if ms > 0 {
            opts.lookback_delta_ms = ms;
        }
    }
    let timeout = limits.timeout_for(p.duration("timeout")?);
    Ok((opts, timeout))
}

/// Thanos' federation parameters: `partial_response`, `dedup`, `replicaLabels[]`.
pub fn read_options(p: &Params) -> Result<ReadOptions, ApiError> {
    let flag = |name: &str| -> Result<Option<bool>, ApiError> {
        match p.non_empty(name) {
            None => Ok(None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
                ApiError::invalid_param(name, format!("cannot parse {v:?} as a boolean"))
            }),
        }
    };
    let replica_labels: Vec<String> = p
        .all("replicaLabels[]")
        .into_iter()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok(ReadOptions {
        partial_response: flag("partial_response")?,
        dedup: flag("dedup")?,
        replica_labels: (!replica_labels.is_empty()).then_some(replica_labels),
    })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl AppState {
    /// The engine for a request with these federation options.
    fn engine_for(&self, read: ReadOptions) -> Engine {
        if read == ReadOptions::default() {
            self.engine.clone()
        } else {
            Engine::new(Arc::new(WithReadOptions {
                inner: self.engine.source().clone(),
                read,
            }))
        }
    }
}

/// Chunks an answer is sent in: all but the last one or two have been
/// written when the body ends and gives its memory back.
const BODY_CHUNK: usize = 1 << 20;

/// An answer's bytes, sent in chunks, with the memory they hold kept
/// taken from the query memory pool until the body is dropped.
struct HeldBody {
    rest: axum::body::Bytes,
    _held: Option<crate::limits::memory::Held>,
}

impl hyper::body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.rest.is_empty() {
            return std::task::Poll::Ready(None);
        }
        let n = self.rest.len().min(BODY_CHUNK);
        let chunk = self.rest.split_to(n);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// A query answer; results with warnings must not be cached by proxies.
fn query_response(
    body: String,
    has_warnings: bool,
    held: Option<crate::limits::memory::Held>,
) -> Response {
    let body = HeldBody {
        rest: axum::body::Bytes::from(body),
        _held: held,
    };
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::new(body),
    )
        .into_response();
    if has_warnings {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// A cached answer: its body and a header saying how it was obtained.
fn cached_response(a: Answer) -> Response {
    // Built directly (static header names and values): this is the hit path.
    let mut resp = Response::new(axum::body::Body::from(a.body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::HeaderName::from_static(CACHE_HEADER),
        header::HeaderValue::from_static(a.status.as_str()),
    );
    if a.has_warnings {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

/// What the cache needs to know of a request's federation options: the
/// engine that honours them (none for the defaults) and their key.
fn cache_variant(st: &AppState, read: ReadOptions) -> Variant {
    if read == ReadOptions::default() {
        return Variant::default();
    }
    Variant {
        key: format!("{read:?}"),
        eval: Some(Arc::new(st.engine_for(read))),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a query asks for: one time, or every step of a range.
#[derive(Clone, Copy)]
enum Ask {
    Instant { t: i64 },
    Range { start: i64, end: i64, step: i64 },
}

/// Answers `q` through the cache when there is one, else from the engine;
/// either way under the query limits.
async fn answer(st: &AppState, p: &Params, q: &str, ask: Ask) -> Result<Response, ApiError> {
    let (opts, timeout) = query_options(p, &st.limits)?;
    let read = read_options(p)?;
    let kind = match ask {
        Ask::Instant { .. } => "instant",
        Ask::Range { .. } => "range",
    };
    if let Some(c) = &st.cache {
        let v = cache_variant(st, read);
        let (a, backends) = (st.limits)
            .run::<_, ApiError>(kind, q, timeout, async {
                let a = match ask {
                    Ask::Instant { t } => c.instant(q, t, &opts, &v, timeout).await?,
                    Ask::Range { start, end, step } => {
                        c.range(q, start, end, step, &opts, &v, timeout).await?
                    }
                };
                crate::limits::note_cache(a.status.as_str());
                Ok((a, backends_read()))
            })
            .await?;
        return Ok(with_backends(cached_response(a), &backends));
    }
    let engine = st.engine_for(read);
    let (body, has_warnings, held, backends) = (st.limits)
        .run::<_, ApiError>(kind, q, timeout, async {
            let r = match ask {
                Ask::Instant { t } => engine.instant(q, t, &opts).await,
                Ask::Range { start, end, step } => engine.range(q, start, end, step, &opts).await,
            }?;
            let has_warnings = !r.warnings.is_empty();
            // Encoding is part of the query: within its deadline and budget.
            let small = small_answer(&r.value);
            let body = crate::limits::meter::blocking_unless_small(
                "response encoding",
                small,
                move || crate::wire::query_body_checked(&r),
            )
            .await?;
            // The answer stays counted against the memory of all queries
            // until it has been sent.
            let held = crate::limits::current().map(|c| c.keep_bytes(body.capacity() as u64));
            Ok((body, has_warnings, held, (backends_read(), plan_notes())))
        })
        .await?;
    let (backends, plan) = backends;
    Ok(with_plan(
        with_backends(query_response(body, has_warnings, held), &backends),
        &plan,
    ))
}

/// The planner's notes for the current query.
fn plan_notes() -> Vec<String> {
    crate::limits::current()
        .map(|ctx| ctx.plan())
        .unwrap_or_default()
}

/// `resp` with the [`PLAN_HEADER`] when the planner noted anything.
fn with_plan(resp: Response, plan: &[String]) -> Response {
    with_list_header(resp, PLAN_HEADER, plan, "; ")
}

/// Whether an answer is small enough to encode on the current thread
/// rather than hop to a blocking one (about a millisecond of work at most).
fn small_answer(v: &crate::promql::Value) -> bool {
    use crate::promql::Value;
    match v {
        Value::Scalar { .. } | Value::String { .. } => true,
        Value::Vector(v) => v.len() <= 1000,
        Value::Matrix(m) => m.iter().map(|s| s.samples.len() + 1).sum::<usize>() <= 10_000,
    }
}

/// The backends the current query has read from so far.
fn backends_read() -> Vec<String> {
    crate::limits::current()
        .map(|ctx| ctx.backends())
        .unwrap_or_default()
}

/// `resp` with the [`BACKENDS_HEADER`] when any backend was read.
fn with_backends(resp: Response, backends: &[String]) -> Response {
    with_list_header(resp, BACKENDS_HEADER, backends, ",")
}

/// `resp` with header `name` holding `items` joined by `sep`, unless there
/// are none (or they cannot be a header value).
fn with_list_header(
    mut resp: Response,
    name: &'static str,
    items: &[String],
    sep: &str,
) -> Response {
    if items.is_empty() {
        return resp;
    }
    if let Ok(v) = header::HeaderValue::from_str(&items.join(sep)) {
        resp.headers_mut()
            .insert(header::HeaderName::from_static(name), v);
    }
    resp
}

/// A grid cell this process holds in memory, answered at once: it costs
/// no backend or engine work, so it takes no admission slot and is served
/// even while the evaluation queue is full. `parse`: a text not seen
/// before is parsed to find its cell (only on the workers).
async fn cached_instant(
    st: &AppState,
    c: &QueryCache,
    p: &Params,
    q: &str,
    t: i64,
    parse: bool,
) -> Result<Option<Response>, ApiError> {
    let (opts, _) = query_options(p, &st.limits)?;
    let v = cache_variant(st, read_options(p)?);
    let started = std::time::Instant::now();
    let hit = if parse {
        c.instant_hit_parsing(q, t, &opts, &v).await
    } else {
        c.instant_hit(q, t, &opts, &v).await
    };
    let Some(a) = hit else {
        return Ok(None);
    };
    crate::telemetry::query_done(&crate::telemetry::QueryRecord {
        kind: "instant",
        query: q,
        duration: started.elapsed(),
        samples: 0,
        backends: Vec::new(),
        cache: Some(a.status.as_str()),
        error: None,
    });
    Ok(Some(cached_response(a)))
}

async fn query(State(st): State<Arc<AppState>>, p: Params) -> Result<Response, ApiError> {
    let t = p.time_or("time", now_ms())?;
    let q = p.get("query").unwrap_or("");
    let Some(c) = &st.cache else {
        return answer(&st, &p, q, Ask::Instant { t }).await;
    };
    // With a cache, this runs on the connection's thread (the rule is
    // `hot_path`'s): a hit is answered here, the rest on the workers.
    if let Some(r) = cached_instant(&st, c, &p, q, t, false).await? {
        return Ok(r);
    }
    let state = st.clone();
    on_workers(&st, async move {
        let q = p.get("query").unwrap_or("");
        // A text not seen before, parsed here: its cell may be held too,
        // and a held cell is answered without an admission slot.
        if let Some(c) = &state.cache {
            if let Some(r) = cached_instant(&state, c, &p, q, t, true).await? {
                return Ok(r);
            }
        }
        answer(&state, &p, q, Ask::Instant { t }).await
    })
    .await?
}

async fn query_range(State(st): State<Arc<AppState>>, p: Params) -> Result<Response, ApiError> {
    let start = p.time("start")?;
    let end = p.time("end")?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = match p.non_empty("step") {
        None => {
            return Err(ApiError::invalid_param(
                "step",
                "cannot parse \"\" to a valid duration",
            ))
        }
        Some(_) => p.duration("step")?.unwrap_or(0),
    };
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let q = p.get("query").unwrap_or("");
    answer(&st, &p, q, Ask::Range { start, end, step }).await
}

async fn buildinfo() -> Response {
    let data = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("PROMFED_REVISION").unwrap_or("unknown"),
        "branch": option_env!("PROMFED_BRANCH").unwrap_or("unknown"),
        "buildUser": "promfed",
        "buildDate": option_env!("PROMFED_BUILD_DATE").unwrap_or("unknown"),
        "goVersion": "none (promfed is written in Rust)",
    });
    json_response(
        StatusCode::OK,
        crate::wire::success_body(&data.to_string(), &[]),
    )
}

async fn metrics() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "promfed is Healthy.\n"
}

async fn ready(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "promfed is Ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable: promfed is not ready yet.\n",
        )
            .into_response()
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorType::NotFound,
        format!("{method} {} is not an endpoint promfed serves", uri.path()),
    )
}

#[cfg(test)]
mod tests;
