//! Reads raw series from a Thanos StoreAPI (a sidecar, store gateway or
//! any `thanos.Store` server) over gRPC, and learns its external labels and
//! time range from `thanos.info.Info`.

pub mod storepb;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use promql_parser::label::{MatchOp, Matcher};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use self::storepb::series_response::Result as Frame;
use self::storepb::{ChunkEncoding, MatcherType, PartialResponseStrategy};
use super::remote_read::chunk::{decode_xor_into, xor_sample_count};
use super::{
    any_series_matcher, MetaOutput, MetaQuery, ReadOptions, Select, SelectOutput, Source,
    SourceError, StoreInfo,
};
use crate::model::{Labels, Sample, Series};

const SERIES: &str = "/thanos.Store/Series";
const LABEL_NAMES: &str = "/thanos.Store/LabelNames";
const LABEL_VALUES: &str = "/thanos.Store/LabelValues";
const INFO: &str = "/thanos.info.Info/Info";

/// Series per `Series` response frame asked of the store (Thanos Query's
/// default batch size).
const RESPONSE_BATCH_SIZE: i64 = 64;
/// Longest wait for a TCP (and TLS) connection, within the call deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings on open connections find a frozen peer between calls.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Limits on what one call may bring back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThanosStoreOptions {
    /// Largest gRPC message (one response frame) accepted, bytes.
    pub max_frame_bytes: usize,
    /// Largest whole answer (all frames of one call) accepted, bytes.
    pub max_response_bytes: usize,
    /// Most samples one select may decode to.
    pub max_samples: usize,
}

impl Default for ThanosStoreOptions {
    fn default() -> Self {
        ThanosStoreOptions {
            max_frame_bytes: super::remote_read::DEFAULT_MAX_FRAME_BYTES,
            max_response_bytes: super::remote_read::DEFAULT_MAX_RESPONSE_BYTES,
            max_samples: super::remote_read::DEFAULT_MAX_SAMPLES,
        }
    }
}

/// A Thanos StoreAPI endpoint read over gRPC.
pub struct ThanosStoreSource {
    name: String,
    /// `http://host:port`: the address tonic dials (TLS is added by our
    /// own connector when configured).
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    /// `authorization` metadata sent with every call.
    authorization: Option<AsciiMetadataValue>,
    options: ThanosStoreOptions,
    /// Made on first use, inside the runtime (it spawns a task).
    channel: OnceLock<Channel>,
    /// What the last successful Info call said.
    info: RwLock<Option<StoreInfo>>,
}

impl std::fmt::Debug for ThanosStoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThanosStoreSource")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.uri())
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why a call failed, before it is named after the backend.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("connecting: {0}")]
    Connect(String),
    #[error("{method}: gRPC status {code:?}: {message}")]
    Status {
        method: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{method}: answer exceeds {limit} bytes")]
    TooLarge { method: &'static str, limit: usize },
    #[error("series {labels}: {problem}")]
    Chunk { labels: String, problem: String },
    #[error("more than {0} samples selected")]
    TooManySamples(usize),
    /// The query's own budget (`limits.max_fetched_bytes`) ran out.
    #[error("{0}")]
    Budget(SourceError),
}

impl ThanosStoreSource {
    /// A source named `name` for the StoreAPI at `url` (`grpc://host:port`);
    /// `timeout` bounds each whole call, stream included.
    pub fn new(
        name: impl Into<String>,
        url: &str,
        timeout: Duration,
        tls: Option<&crate::tls::BackendTlsConfig>,
        authorization: Option<http::HeaderValue>,
    ) -> Result<Self, String> {
        let name = name.into();
        let authority = grpc_authority(url)?;
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| format!("backend {name}: url {url:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .tcp_nodelay(true);
        let tls = match tls {
            Some(t) => Some(Arc::new(
                t.rustls_client_config(&[b"h2"])
                    .map_err(|e| format!("backend {name}: {e}"))?,
            )),
            None => None,
        };
        let authorization = match authorization {
            Some(v) => Some(
                AsciiMetadataValue::try_from(v.as_bytes())
                    .map_err(|e| format!("backend {name}: credentials: {e}"))?,
            ),
            None => None,
        };
        Ok(ThanosStoreSource {
            name,
            endpoint,
            tls,
            timeout,
            authorization,
            options: ThanosStoreOptions::default(),
            channel: OnceLock::new(),
            info: RwLock::new(None),
        })
    }

    /// Replaces the limits.
    pub fn with_options(mut self, options: ThanosStoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Caps one answer (all frames of a call) at `max` bytes, as the
    /// other protocols' `max_response_bytes`.
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.options.max_response_bytes = max;
        self.options.max_frame_bytes = self.options.max_frame_bytes.min(max);
        self
    }

    fn error(&self, e: CallError) -> SourceError {
        match e {
            CallError::Budget(e) => e,
            e => SourceError::Backend {
                backend: self.name.clone(),
                message: format!("StoreAPI {e}"),
            },
        }
    }

    fn channel(&self) -> Channel {
        if let Some(c) = self.channel.get() {
            return c.clone();
        }
        let made = match &self.tls {
            None => self.endpoint.connect_lazy(),
            Some(cfg) => {
                let connector = tls_connector(cfg.clone());
                self.endpoint.connect_with_connector_lazy(connector)
            }
        };
        self.channel.get_or_init(|| made).clone()
    }

    async fn client(&self) -> Result<tonic::client::Grpc<Channel>, CallError> {
        let mut grpc = tonic::client::Grpc::new(self.channel())
            .max_decoding_message_size(self.options.max_frame_bytes);
        grpc.ready()
            .await
            .map_err(|e| CallError::Connect(error_chain(&e)))?;
        Ok(grpc)
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(v) = &self.authorization {
            r.metadata_mut().insert("authorization", v.clone());
        }
        r
    }

    /// Runs `call` within the deadline; the error names this backend.
    async fn deadline<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(SourceError::Timeout {
                backend: self.name.clone(),
                timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    async fn unary<Req, Resp>(&self, path: &'static str, req: Req) -> Result<Resp, CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.client().await?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        grpc.unary(self.request(req), PathAndQuery::from_static(path), codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| status(path, &s))
    }

    /// Streams one `Series` call, handing each series to `on_series`;
    /// returns the store's warnings.
    async fn series_call(
        &self,
        req: storepb::SeriesRequest,
        mut on_series: impl FnMut(storepb::Series) -> Result<(), CallError>,
    ) -> Result<Vec<String>, CallError> {
        let mut grpc = self.client().await?;
        let codec =
            tonic_prost::ProstCodec::<storepb::SeriesRequest, storepb::SeriesResponse>::default();
        let mut stream = grpc
            .server_streaming(self.request(req), PathAndQuery::from_static(SERIES), codec)
            .await
            .map_err(|s| status(SERIES, &s))?
            .into_inner();
        let mut warnings = Vec::new();
        let mut bytes: usize = 0;
        while let Some(frame) = stream.message().await.map_err(|s| status(SERIES, &s))? {
            let len = prost::Message::encoded_len(&frame);
            crate::limits::fetched::charge(len).map_err(CallError::Budget)?;
            bytes = bytes.saturating_add(len);
            if bytes > self.options.max_response_bytes {
                return Err(CallError::TooLarge {
                    method: SERIES,
                    limit: self.options.max_response_bytes,
                });
            }
            match frame.result {
                Some(Frame::Series(s)) => on_series(s)?,
                Some(Frame::Batch(b)) => {
                    for s in b.series {
                        on_series(s)?;
                    }
                }
                Some(Frame::Warning(w)) => warnings.push(format!("backend {}: {w}", self.name)),
                Some(Frame::Hints(_)) | None => {}
            }
        }
        Ok(warnings)
    }

    async fn select_call(&self, sel: &Select) -> Result<SelectOutput, CallError> {
        let req = series_request(sel);
        let mut out = Collector::new(sel.start_ms, sel.end_ms, self.options.max_samples);
        let warnings = self.series_call(req, |s| out.add(s)).await?;
        let mut answer = out.finish();
        answer.warnings = warnings;
        Ok(answer)
    }

    /// The replica labels the store should strip from label answers, when
    /// it can and the request deduplicates.
    fn strip_replicas(&self, read: &ReadOptions) -> Vec<String> {
        let supported = self
            .store_info()
            .is_some_and(|i| i.supports_without_replica_labels);
        match (&read.replica_labels, read.dedup) {
            (Some(r), Some(true) | None) if supported => r.clone(),
            _ => Vec::new(),
        }
    }

    async fn series_meta(&self, q: &MetaQuery) -> Result<MetaOutput<Labels>, CallError> {
        let mut items = Vec::new();
        let mut warnings = Vec::new();
        for matchers in matcher_sets(q) {
            let req = storepb::SeriesRequest {
                min_time: q.start_ms,
                max_time: q.end_ms,
                matchers: store_matchers(&matchers),
                aggregates: vec![storepb::Aggr::Raw.into()],
                partial_response_strategy: strategy(&q.read).into(),
                skip_chunks: true,
                without_replica_labels: self.strip_replicas(&q.read),
                response_batch_size: RESPONSE_BATCH_SIZE,
                ..Default::default()
            };
            warnings.extend(
                self.series_call(req, |s| {
                    items.push(labels_of(s.labels));
                    Ok(())
                })
                .await?,
            );
        }
        items.sort();
        items.dedup();
        Ok(MetaOutput { items, warnings })
    }

    async fn label_names_call(&self, q: &MetaQuery) -> Result<MetaOutput<String>, CallError> {
        let mut out = MetaOutput::default();
        for matchers in label_matcher_sets(q) {
            let r: storepb::LabelNamesResponse = self
                .unary(
                    LABEL_NAMES,
                    storepb::LabelNamesRequest {
                        partial_response_strategy: strategy(&q.read).into(),
                        start: q.start_ms,
                        end: q.end_ms,
                        matchers,
                        without_replica_labels: self.strip_replicas(&q.read),
                        limit: i64::try_from(q.limit).unwrap_or(0),
                    },
                )
                .await?;
            out.items.extend(r.names);
            out.warnings.extend(
                r.warnings
                    .into_iter()
                    .map(|w| format!("backend {}: {w}", self.name)),
            );
        }
        out.items.sort();
        out.items.dedup();
        Ok(out)
    }

    async fn label_values_call(
        &self,
        name: &str,
        q: &MetaQuery,
    ) -> Result<MetaOutput<String>, CallError> {
        let mut out = MetaOutput::default();
        for matchers in label_matcher_sets(q) {
            let r: storepb::LabelValuesResponse = self
                .unary(
                    LABEL_VALUES,
                    storepb::LabelValuesRequest {
                        label: name.to_string(),
                        partial_response_strategy: strategy(&q.read).into(),
                        start: q.start_ms,
                        end: q.end_ms,
                        matchers,
                        without_replica_labels: self.strip_replicas(&q.read),
                        limit: i64::try_from(q.limit).unwrap_or(0),
                    },
                )
                .await?;
            out.items.extend(r.values);
            out.warnings.extend(
                r.warnings
                    .into_iter()
                    .map(|w| format!("backend {}: {w}", self.name)),
            );
        }
        out.items.sort();
        out.items.dedup();
        Ok(out)
    }

    async fn info_call(&self) -> Result<StoreInfo, CallError> {
        let r: storepb::InfoResponse = self.unary(INFO, storepb::InfoRequest {}).await?;
        Ok(store_info_of(r))
    }
}

impl Source for ThanosStoreSource {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(self.deadline(self.select_call(sel)))
    }

    fn series<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<Labels>, SourceError>> {
        Box::pin(self.deadline(self.series_meta(q)))
    }

    fn label_names<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.deadline(self.label_names_call(q)))
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.deadline(self.label_values_call(name, q)))
    }

    /// Calls Info and keeps what it says (the last known answer stays when
    /// a call fails).
    fn probe(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async move {
            let info = self.deadline(self.info_call()).await?;
            if let Ok(mut slot) = self.info.write() {
                *slot = Some(info);
            }
            Ok(())
        })
    }

    fn store_info(&self) -> Option<StoreInfo> {
        self.info.read().ok().and_then(|i| i.clone())
    }
}

/// `host:port` of a `grpc://host:port` URL.
fn grpc_authority(url: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    if u.scheme() != "grpc" {
        return Err(format!(
            "url {url:?}: a StoreAPI address is grpc://host:port (TLS is set with `tls:`)"
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("url {url:?} has no host"))?;
    let port = u.port().ok_or_else(|| {
        format!("url {url:?} has no port (the StoreAPI usually listens on 10901)")
    })?;
    if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() {
        return Err(format!(
            "url {url:?}: a StoreAPI address has no path or query"
        ));
    }
    Ok(format!("{host}:{port}"))
}

/// Checks a `thanos_store` backend URL (for config validation).
pub fn validate_url(url: &str) -> Result<(), String> {
    grpc_authority(url).map(|_| ())
}

/// A connector that dials TCP and completes a TLS handshake (ALPN h2).
fn tls_connector(
    cfg: Arc<rustls::ClientConfig>,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = BoxFuture<
        'static,
        std::io::Result<
            hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        >,
    >,
> + Clone
       + Send
       + 'static {
    tower::service_fn(move |uri: http::Uri| {
        let cfg = cfg.clone();
        let fut: BoxFuture<'static, _> = Box::pin(async move {
            let bad =
                |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
            let host = uri.host().ok_or_else(|| bad("no host"))?.to_string();
            let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let bare = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let server_name = rustls::pki_types::ServerName::try_from(bare)
                .map_err(|e| bad(&format!("server name {host:?}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(cfg)
                .connect(server_name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        });
        fut
    })
}

fn status(method: &'static str, s: &tonic::Status) -> CallError {
    // A transport failure keeps its root cause (e.g. "connection refused")
    // at the end of the status's source chain.
    let mut message = s.message().to_string();
    let mut root = std::error::Error::source(s);
    while let Some(next) = root.and_then(std::error::Error::source) {
        root = Some(next);
    }
    if let Some(root) = root.map(ToString::to_string) {
        if !message.contains(&root) {
            message = format!("{message}: {root}");
        }
    }
    CallError::Status {
        method,
        code: s.code(),
        message,
    }
}

/// An error and its causes on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

/// The partial-response strategy of promfed's policy for this request.
fn strategy(read: &ReadOptions) -> PartialResponseStrategy {
    if read.partial_response == Some(true) {
        PartialResponseStrategy::Warn
    } else {
        PartialResponseStrategy::Abort
    }
}

/// `matchers` with a metric-name matcher: a sidecar drops the matchers
/// its external labels satisfy and refuses a request left with none
/// (`{cluster="k8s-1"}` before its Info is known), so a selector without
/// one gets `__name__=~".+"`, which every series satisfies.
fn with_name_matcher(matchers: &[Matcher]) -> Vec<Matcher> {
    let mut out = matchers.to_vec();
    if !out.iter().any(|m| m.name == crate::model::METRIC_NAME) {
        out.push(any_series_matcher());
    }
    out
}

/// The `Series` request of one select.
pub fn series_request(sel: &Select) -> storepb::SeriesRequest {
    storepb::SeriesRequest {
        min_time: sel.start_ms,
        max_time: sel.end_ms,
        matchers: store_matchers(&with_name_matcher(&sel.matchers)),
        max_resolution_window: 0,
        aggregates: vec![storepb::Aggr::Raw.into()],
        partial_response_strategy: strategy(&sel.read).into(),
        skip_chunks: false,
        step: sel.hints.step_ms,
        range: sel.hints.range_ms,
        query_hints: Some(storepb::QueryHints {
            step_millis: sel.hints.step_ms,
            func: sel
                .hints
                .func
                .as_ref()
                .map(|f| storepb::Func { name: f.clone() }),
            range: (sel.hints.range_ms > 0).then_some(storepb::Range {
                millis: sel.hints.range_ms,
            }),
        }),
        // Replica labels stay: deduplication (the penalty rule) needs the
        // replicas told apart, which stripping them would undo.
        without_replica_labels: Vec::new(),
        limit: 0,
        response_batch_size: RESPONSE_BATCH_SIZE,
    }
}

/// The matcher sets of a series call: `match[]`, or every series.
fn matcher_sets(q: &MetaQuery) -> Vec<Vec<Matcher>> {
    if q.matchers.is_empty() {
        return vec![vec![any_series_matcher()]];
    }
    q.matchers.iter().map(|m| with_name_matcher(m)).collect()
}

/// The matcher sets of a label call: none at all when `match[]` is absent.
fn label_matcher_sets(q: &MetaQuery) -> Vec<Vec<storepb::LabelMatcher>> {
    if q.matchers.is_empty() {
        return vec![Vec::new()];
    }
    matcher_sets(q).iter().map(|m| store_matchers(m)).collect()
}

fn store_matchers(ms: &[Matcher]) -> Vec<storepb::LabelMatcher> {
    ms.iter()
        .map(|m| storepb::LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => MatcherType::Eq,
                MatchOp::NotEqual => MatcherType::Neq,
                MatchOp::Re(_) => MatcherType::Re,
                MatchOp::NotRe(_) => MatcherType::Nre,
            }
            .into(),
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

fn labels_of(labels: Vec<storepb::Label>) -> Labels {
    Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
}

fn store_info_of(r: storepb::InfoResponse) -> StoreInfo {
    let store = r.store.unwrap_or_default();
    StoreInfo {
        component: r.component_type,
        label_sets: r
            .label_sets
            .into_iter()
            .map(|s| labels_of(s.labels))
            .collect(),
        min_time_ms: store.min_time,
        max_time_ms: store.max_time,
        supports_without_replica_labels: store.supports_without_replica_labels,
    }
}

/// Gathers the series of one `Series` stream, clipped to the selection.
struct Collector {
    start_ms: i64,
    end_ms: i64,
    max_samples: usize,
    total: usize,
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl Collector {
    fn new(start_ms: i64, end_ms: i64, max_samples: usize) -> Self {
        Collector {
            start_ms,
            end_ms,
            max_samples,
            total: 0,
            series: BTreeMap::new(),
        }
    }

    /// Adds one series (or a time slice of it: a store may split a series
    /// over consecutive frames).
    fn add(&mut self, s: storepb::Series) -> Result<(), CallError> {
        let labels = labels_of(s.labels);
        let (start, end) = (self.start_ms, self.end_ms);
        let mut total = self.total;
        let samples = self.series.entry(labels.clone()).or_default();
        for c in s.chunks {
            if c.max_time < start || c.min_time > end {
                continue;
            }
            let bad = |problem: String| CallError::Chunk {
                labels: labels.to_string(),
                problem,
            };
            let raw = c.raw.ok_or_else(|| {
                bad("a chunk without raw data (downsampled data is not read)".into())
            })?;
            match ChunkEncoding::try_from(raw.r#type) {
                Ok(ChunkEncoding::Xor) => {
                    let announced = xor_sample_count(&raw.data);
                    if total.saturating_add(announced) > self.max_samples {
                        return Err(CallError::TooManySamples(self.max_samples));
                    }
                    let before = samples.len();
                    decode_xor_into(&raw.data, start, end, samples)
                        .map_err(|e| bad(e.to_string()))?;
                    total += samples.len() - before;
                }
                Ok(ChunkEncoding::Histogram | ChunkEncoding::FloatHistogram) => {
                    return Err(bad(format!(
                        "a native histogram chunk (encoding {}): native histograms are not evaluated yet",
                        raw.r#type
                    )))
                }
                Err(_) => {
                    return Err(bad(format!("a chunk of unknown encoding {}", raw.r#type)));
                }
            }
        }
        self.total = total;
        Ok(())
    }

    /// Series sorted by labels, samples in time order, one per timestamp;
    /// series without samples in range are dropped.
    fn finish(self) -> SelectOutput {
        let series = self
            .series
            .into_iter()
            .filter_map(|(labels, mut samples)| {
                if !samples.is_sorted_by(|a, b| a.t < b.t) {
                    samples.sort_by_key(|s| s.t);
                    samples.dedup_by_key(|s| s.t);
                }
                (!samples.is_empty()).then_some(Series { labels, samples })
            })
            .collect();
        SelectOutput {
            series,
            warnings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::remote_read::chunk::tests::encode_xor;
    use super::*;
    use prost::Message;

    fn sel(matchers: Vec<Matcher>, start_ms: i64, end_ms: i64) -> Select {
        Select {
            matchers,
            start_ms,
            end_ms,
            hints: Default::default(),
            read: Default::default(),
        }
    }

    fn label(name: &str, value: &str) -> storepb::Label {
        storepb::Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn samples(ts: impl IntoIterator<Item = i64>) -> Vec<Sample> {
        ts.into_iter().map(|t| Sample { t, v: t as f64 }).collect()
    }

    fn chunk(kind: ChunkEncoding, s: &[Sample]) -> storepb::AggrChunk {
        storepb::AggrChunk {
            min_time: s.first().map_or(0, |x| x.t),
            max_time: s.last().map_or(0, |x| x.t),
            raw: Some(storepb::Chunk {
                r#type: kind.into(),
                data: encode_xor(s).into(),
            }),
        }
    }

    #[test]
    fn wire_layout_matches_the_store_api_field_numbers() {
        // Chunk: type=1 varint, data=2 bytes; XOR is 0 (omitted), HISTOGRAM 1.
        let c = storepb::Chunk {
            r#type: ChunkEncoding::Histogram.into(),
            data: bytes::Bytes::from_static(b"z"),
        };
        assert_eq!(c.encode_to_vec(), b"\x08\x01\x12\x01z");
        // SeriesRequest: min_time=1, max_time=2, matchers=3, skip_chunks=8,
        // without_replica_labels=14, response_batch_size=16.
        let r = storepb::SeriesRequest {
            min_time: 1,
            max_time: 2,
            matchers: vec![storepb::LabelMatcher {
                r#type: MatcherType::Nre.into(),
                name: "a".into(),
                value: "b".into(),
            }],
            partial_response_strategy: PartialResponseStrategy::Abort.into(),
            skip_chunks: true,
            without_replica_labels: vec!["r".into()],
            response_batch_size: 3,
            ..Default::default()
        };
        assert_eq!(
            r.encode_to_vec(),
            b"\x08\x01\x10\x02\x1a\x08\x08\x03\x12\x01a\x1a\x01b\x38\x01\x40\x01\x72\x01r\x80\x01\x03"
        );
        // SeriesResponse oneof: warning=2, batch=4.
        let w = storepb::SeriesResponse {
            result: Some(Frame::Warning("w".into())),
        };
        assert_eq!(w.encode_to_vec(), b"\x12\x01w");
        let b = storepb::SeriesResponse {
            result: Some(Frame::Batch(storepb::SeriesBatch { series: vec![] })),
        };
        assert_eq!(b.encode_to_vec(), b"\x22\x00");
        // InfoResponse: label_sets=1, ComponentType=2, store=3 {min=1, max=2,
        // supports_without_replica_labels=5}.
        let i = storepb::InfoResponse {
            label_sets: vec![storepb::LabelSet {
                labels: vec![label("c", "1")],
            }],
            component_type: "sidecar".into(),
            store: Some(storepb::StoreInfo {
                min_time: 5,
                max_time: 6,
                supports_sharding: false,
                supports_without_replica_labels: true,
            }),
        };
        let bytes = i.encode_to_vec();
        assert_eq!(
            bytes,
            b"\x0a\x08\x0a\x06\x0a\x01c\x12\x011\x12\x07sidecar\x1a\x06\x08\x05\x10\x06\x28\x01"
        );
        let info = store_info_of(storepb::InfoResponse::decode(bytes.as_slice()).expect("decodes"));
        assert_eq!(info.component, "sidecar");
        assert_eq!(info.label_sets, vec![Labels::from_pairs([("c", "1")])]);
        assert_eq!((info.min_time_ms, info.max_time_ms), (5, 6));
        assert!(info.supports_without_replica_labels);
    }

    #[test]
    fn series_request_carries_matchers_range_hints_and_policy() {
        let mut s = sel(
            vec![
                Matcher::new(MatchOp::Equal, "__name__", "up"),
                Matcher::new(
                    MatchOp::Re(regex::Regex::new("^(?:a|b)$").expect("regex")),
                    "job",
                    "a|b",
                ),
            ],
            1000,
            2000,
        );
        s.hints.step_ms = 15_000;
        s.hints.range_ms = 300_000;
        s.hints.func = Some("rate".into());
        let r = series_request(&s);
        assert_eq!((r.min_time, r.max_time), (1000, 2000));
        let ms: Vec<(i32, &str, &str)> = r
            .matchers
            .iter()
            .map(|m| (m.r#type, m.name.as_str(), m.value.as_str()))
            .collect();
        assert_eq!(ms, vec![(0, "__name__", "up"), (2, "job", "a|b")]);
        assert_eq!((r.step, r.range), (15_000, 300_000));
        let h = r.query_hints.expect("hints");
        assert_eq!(h.func.map(|f| f.name), Some("rate".to_string()));
        assert_eq!(h.range.map(|r| r.millis), Some(300_000));
        assert!(!r.skip_chunks);
        assert!(r.without_replica_labels.is_empty());
        // Abort unless the request tolerates partial answers.
        assert_eq!(r.partial_response_strategy, 1);
        s.read.partial_response = Some(true);
        assert_eq!(series_request(&s).partial_response_strategy, 0);
        // No matcher at all, or none on the name: every series with a name.
        let r = series_request(&sel(vec![], 0, 1));
        assert_eq!(r.matchers.len(), 1);
        assert_eq!(
            (r.matchers[0].r#type, r.matchers[0].value.as_str()),
            (2, ".+")
        );
        let r = series_request(&sel(
            vec![Matcher::new(MatchOp::Equal, "cluster", "k8s-1")],
            0,
            1,
        ));
        let ms: Vec<(&str, &str)> = r
            .matchers
            .iter()
            .map(|m| (m.name.as_str(), m.value.as_str()))
            .collect();
        assert_eq!(ms, vec![("cluster", "k8s-1"), ("__name__", ".+")]);
    }

    #[test]
    fn split_series_merge_and_chunks_are_clipped() {
        let mut c = Collector::new(15, 45, 100);
        let labels = || vec![label("job", "a"), label("__name__", "up")];
        c.add(storepb::Series {
            labels: labels(),
            chunks: vec![chunk(ChunkEncoding::Xor, &samples([10, 20, 30]))],
        })
        .expect("decodes");
        c.add(storepb::Series {
            labels: labels(),
            chunks: vec![
                chunk(ChunkEncoding::Xor, &samples([30, 40, 50])),
                chunk(ChunkEncoding::Xor, &samples([100, 200])),
            ],
        })
        .expect("decodes");
        c.add(storepb::Series {
            labels: vec![label("__name__", "gone")],
            chunks: vec![chunk(ChunkEncoding::Xor, &samples([1, 2]))],
        })
        .expect("decodes");
        let out = c.finish();
        assert_eq!(
            out.series.len(),
            1,
            "the series without samples in range is dropped"
        );
        assert_eq!(
            out.series[0].labels.to_string(),
            r#"{__name__="up", job="a"}"#
        );
        let ts: Vec<i64> = out.series[0].samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, vec![20, 30, 40]);
    }

    #[test]
    fn histogram_unknown_and_downsampled_chunks_are_refused() {
        for (kind, raw, want) in [
            (1, true, "native histogram chunk (encoding 1)"),
            (2, true, "native histogram chunk (encoding 2)"),
            (9, true, "unknown encoding 9"),
            (0, false, "without raw data"),
        ] {
            let mut ch = chunk(ChunkEncoding::Xor, &samples([10]));
            if let Some(r) = ch.raw.as_mut() {
                r.r#type = kind;
            }
            if !raw {
                ch.raw = None;
            }
            let mut c = Collector::new(0, 100, 100);
            let err = c
                .add(storepb::Series {
                    labels: vec![label("__name__", "h")],
                    chunks: vec![ch],
                })
                .expect_err("refused");
            let text = err.to_string();
            assert!(
                text.contains(want) && text.contains("__name__=\"h\""),
                "{text}"
            );
        }
    }

    #[test]
    fn sample_limit_is_enforced() {
        let mut c = Collector::new(0, 1000, 4);
        let series = |ts: &[i64]| storepb::Series {
            labels: vec![label("__name__", "a")],
            chunks: vec![chunk(ChunkEncoding::Xor, &samples(ts.iter().copied()))],
        };
        c.add(series(&[1, 2, 3])).expect("3 of 4");
        assert!(matches!(
            c.add(series(&[4, 5])),
            Err(CallError::TooManySamples(4))
        ));
    }

    #[test]
    fn urls_must_be_grpc_host_port() {
        assert_eq!(
            grpc_authority("grpc://127.0.0.1:10901").as_deref(),
            Ok("127.0.0.1:10901")
        );
        assert_eq!(
            grpc_authority("grpc://[::1]:10901/").as_deref(),
            Ok("[::1]:10901")
        );
        for bad in [
            "http://127.0.0.1:10901",
            "grpc://127.0.0.1",
            "grpc://h:1/path",
            "127.0.0.1:10901",
        ] {
            assert!(grpc_authority(bad).is_err(), "{bad}");
        }
    }

    /// One gRPC message as it travels in an HTTP/2 DATA frame.
    fn grpc_frame(msg: &impl Message) -> bytes::Bytes {
        let body = msg.encode_to_vec();
        let mut out = vec![0u8];
        out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
        out.extend_from_slice(&body);
        out.into()
    }

    /// A bare HTTP/2 server on loopback answering every `Series` call with a
    /// warning frame and one series, then either ending the stream or
    /// stalling (for at most 30 s); stopped when the handle is dropped.
    async fn scripted_store(stall: bool) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut conn) = h2::server::handshake(sock).await else {
                return;
            };
            while let Some(Ok((_req, mut respond))) = conn.accept().await {
                tokio::spawn(async move {
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .expect("response head");
                    let Ok(mut send) = respond.send_response(head, false) else {
                        return;
                    };
                    let warning = storepb::SeriesResponse {
                        result: Some(Frame::Warning("block 01ABC unavailable".into())),
                    };
                    let series = storepb::SeriesResponse {
                        result: Some(Frame::Batch(storepb::SeriesBatch {
                            series: vec![storepb::Series {
                                labels: vec![label("__name__", "up")],
                                chunks: vec![chunk(ChunkEncoding::Xor, &samples([10, 20]))],
                            }],
                        })),
                    };
                    let _ = send.send_data(grpc_frame(&warning), false);
                    let _ = send.send_data(grpc_frame(&series), false);
                    if stall {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    } else {
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let _ = send.send_trailers(trailers);
                    }
                });
            }
        });
        (format!("grpc://{addr}"), task)
    }

    #[tokio::test]
    async fn store_warnings_reach_the_answer() {
        let (url, task) = scripted_store(false).await;
        let s = ThanosStoreSource::new("k8s-7", &url, Duration::from_secs(5), None, None)
            .expect("source");
        let out = s
            .select(&sel(
                vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
                0,
                100,
            ))
            .await
            .expect("answers");
        task.abort();
        assert_eq!(out.series.len(), 1);
        assert_eq!(out.series[0].samples.len(), 2);
        assert_eq!(
            out.warnings,
            vec!["backend k8s-7: block 01ABC unavailable".to_string()]
        );
    }

    /// A stream that stalls after its first frames is cut at the deadline.
    #[tokio::test]
    async fn a_stream_stalling_mid_way_is_cut_at_the_deadline() {
        let (url, task) = scripted_store(true).await;
        let s = ThanosStoreSource::new("k8s-8", &url, Duration::from_millis(700), None, None)
            .expect("source");
        let t0 = std::time::Instant::now();
        let err = s
            .select(&sel(
                vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
                0,
                100,
            ))
            .await
            .expect_err("stalls");
        let took = t0.elapsed();
        task.abort();
        assert!(
            matches!(&err, SourceError::Timeout { backend, timeout_ms: 700 } if backend == "k8s-8"),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn replica_labels_are_stripped_by_stores_that_support_it_when_deduplicating() {
        let s = ThanosStoreSource::new(
            "k",
            "grpc://127.0.0.1:1",
            Duration::from_secs(1),
            None,
            None,
        )
        .expect("source");
        let read = |dedup| ReadOptions {
            partial_response: Some(false),
            dedup: Some(dedup),
            replica_labels: Some(vec!["replica".into()]),
        };
        // Unknown support (no Info yet): nothing stripped.
        assert!(s.strip_replicas(&read(true)).is_empty());
        let set = |supports| {
            if let Ok(mut i) = s.info.write() {
                *i = Some(StoreInfo {
                    supports_without_replica_labels: supports,
                    ..Default::default()
                });
            }
        };
        set(true);
        assert_eq!(s.strip_replicas(&read(true)), vec!["replica".to_string()]);
        assert!(s.strip_replicas(&read(false)).is_empty());
        set(false);
        assert!(s.strip_replicas(&read(true)).is_empty());
    }

    /// A store that cannot be reached fails with an error naming it, within
    /// its deadline.
    #[tokio::test]
    async fn an_unreachable_store_is_named() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let s = ThanosStoreSource::new(
            "k8s-9",
            &format!("grpc://127.0.0.1:{port}"),
            Duration::from_secs(5),
            None,
            None,
        )
        .expect("source");
        let t0 = std::time::Instant::now();
        let err = s
            .select(&sel(
                vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
                0,
                1,
            ))
            .await
            .expect_err("nobody listens");
        assert!(err.to_string().contains("k8s-9"), "{err}");
        // The root cause is kept, not just "tcp connect error".
        assert!(err.to_string().contains("refused"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(s.probe().await.is_err());
        assert_eq!(s.store_info(), None);
    }
}
