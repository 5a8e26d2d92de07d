//! Reads raw series from a Thanos StoreAPI (a sidecar, store gateway or
//! any `thanos.Store` server) over gRPC, and learns its external labels and
//! time range from `thanos.info.Info`.

pub mod storepb;
mod translate;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use self::storepb::series_response::Result as Frame;
pub use self::translate::series_request;
use self::translate::{
    label_matcher_sets, labels_of, matcher_sets, store_info_of, store_matchers, strategy, Collector,
};
use super::{
    MetaOutput, MetaQuery, ReadOptions, Select, SelectOutput, Source, SourceError, StoreInfo,
};
use crate::config::grpc_authority;
use crate::model::Labels;

const SERIES: &str = "/thanos.Store/Series";
const LABEL_NAMES: &str = "/thanos.Store/LabelNames";
const LABEL_VALUES: &str = "/thanos.Store/LabelValues";
const INFO: &str = "/thanos.info.Info/Info";

/// Series per `Series` response frame asked of the store (Thanos Query's
/// default batch size).
pub(super) const RESPONSE_BATCH_SIZE: i64 = 64;
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
    #[error("{method}: answer exceeds {limit} bytes (backends[].max_response_bytes)")]
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
    ) -> Result<Self, super::SetupError> {
        let name = name.into();
        let authority = grpc_authority(url).map_err(|e| e.0)?;
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| format!("backend {name}: url {url:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .tcp_nodelay(true)
            // Flow-control windows sized by the measured bandwidth-delay
            // product (as grpc-go, Thanos's own client, does) rather than
            // hyper's fixed 2 MB a stream: a store whose frames arrive
            // faster than they are decoded waits instead of filling
            // promfed's memory (peak +62 MB -> +38 MB in
            // tests/scale_budget_sources.rs).
            .http2_adaptive_window(true);
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

    /// [`status`], except that a frame refused for its size when frames
    /// are capped by `max_response_bytes` is that limit's error.
    fn status(&self, method: &'static str, s: &tonic::Status) -> CallError {
        let limit = self.options.max_response_bytes;
        if s.code() == tonic::Code::OutOfRange
            && self.options.max_frame_bytes >= limit
            && s.message().contains("message length too large")
        {
            return CallError::TooLarge { method, limit };
        }
        status(method, s)
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
            .map_err(|s| self.status(path, &s))
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
            .map_err(|s| self.status(SERIES, &s))?
            .into_inner();
        let mut warnings = Vec::new();
        let mut bytes: usize = 0;
        while let Some(frame) = stream
            .message()
            .await
            .map_err(|s| self.status(SERIES, &s))?
        {
            let len = prost::Message::encoded_len(&frame);
            crate::limits::fetched::charge(len).map_err(|e| CallError::Budget(e.into()))?;
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
        let request = |matchers| storepb::LabelNamesRequest {
            partial_response_strategy: strategy(&q.read).into(),
            start: q.start_ms,
            end: q.end_ms,
            matchers,
            without_replica_labels: self.strip_replicas(&q.read),
            limit: i64::try_from(q.limit).unwrap_or(0),
        };
        self.label_call(LABEL_NAMES, q, request, |r: storepb::LabelNamesResponse| {
            (r.names, r.warnings)
        })
        .await
    }

    async fn label_values_call(
        &self,
        name: &str,
        q: &MetaQuery,
    ) -> Result<MetaOutput<String>, CallError> {
        let request = |matchers| storepb::LabelValuesRequest {
            label: name.to_string(),
            partial_response_strategy: strategy(&q.read).into(),
            start: q.start_ms,
            end: q.end_ms,
            matchers,
            without_replica_labels: self.strip_replicas(&q.read),
            limit: i64::try_from(q.limit).unwrap_or(0),
        };
        self.label_call(
            LABEL_VALUES,
            q,
            request,
            |r: storepb::LabelValuesResponse| (r.values, r.warnings),
        )
        .await
    }

    /// One call of `path` per matcher set of `q` (`request` builds it,
    /// `items` splits its answer into items and warnings), merged: items
    /// sorted and unique, warnings naming the backend.
    async fn label_call<Req, Resp>(
        &self,
        path: &'static str,
        q: &MetaQuery,
        request: impl Fn(Vec<storepb::LabelMatcher>) -> Req,
        items: impl Fn(Resp) -> (Vec<String>, Vec<String>),
    ) -> Result<MetaOutput<String>, CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut out = MetaOutput::default();
        for matchers in label_matcher_sets(q) {
            let (found, warnings) = items(self.unary(path, request(matchers)).await?);
            out.items.extend(found);
            out.warnings.extend(
                warnings
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

#[cfg(test)]
mod tests;
