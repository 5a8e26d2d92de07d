//! Reads raw series from a Prometheus through its remote-read API
//! (`POST /api/v1/read`), as streamed XOR chunks when the server offers
//! them, else as plain samples.

pub mod chunk;
pub mod chunk_encode;
mod collect;
pub mod frame;
pub(crate) mod held;
pub mod histogram_chunk;
pub mod histogram_pb;
pub mod prompb;
mod xor_value;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use promql_parser::label::{MatchOp, Matcher};
use prost::Message;

use self::collect::{CollectError, Collectors};
use self::frame::FrameReader;
use self::held::HeldBytes;
use self::prompb::{MatcherType, ResponseType};
use super::{Select, SelectOutput, Source, SourceError};

/// Content type of a STREAMED_XOR_CHUNKS response.
const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf";
/// The message a streamed response must carry.
const STREAMED_PROTO: &str = "proto=prometheus.ChunkedReadResponse";
/// Remote-read protocol version promfed speaks.
const READ_VERSION: &str = "0.1.0";
/// How much of an error body is quoted in an error message.
const ERROR_BODY_QUOTE: usize = 512;

/// Default limit on one frame of a streamed response (Prometheus itself
/// sends frames of about 1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 256 << 20;
/// Default limit on a whole response body, and on a decompressed SAMPLES
/// response (`backends[].max_response_bytes`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 128 << 20;
/// Default limit on the samples of one select once decoded (16 bytes each:
/// 800 MB; Prometheus's own remote-read sample limit is the same number).
pub const DEFAULT_MAX_SAMPLES: usize = 50_000_000;

/// The most selects one remote-read request carries: a query of 1000
/// `or`-joined selectors makes 10 requests to each backend, not 1000.
pub const MAX_QUERIES_PER_READ: usize = 100;

/// Which response types a source asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// Streamed XOR chunks, falling back to samples when the server does not
    /// offer chunks (what Prometheus ≥ 2.13 answers with).
    #[default]
    Chunks,
    /// Samples only (one snappy-compressed `ReadResponse`).
    Samples,
}

/// Tuning of a [`RemoteReadSource`] beyond its address and deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReadOptions {
    /// Response types to ask for.
    pub mode: ResponseMode,
    /// Largest frame accepted in a streamed response, bytes.
    pub max_frame_bytes: usize,
    /// Largest response body accepted, bytes (also bounds a decompressed
    /// SAMPLES response).
    pub max_response_bytes: usize,
    /// Most samples one select may decode to (chunks compress about tenfold,
    /// so the body limit alone does not bound memory).
    pub max_samples: usize,
}

impl Default for RemoteReadOptions {
    fn default() -> Self {
        RemoteReadOptions {
            mode: ResponseMode::Chunks,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_samples: DEFAULT_MAX_SAMPLES,
        }
    }
}

/// A Prometheus (or anything serving `/api/v1/read`) read through remote
/// read.
#[derive(Debug)]
pub struct RemoteReadSource {
    name: String,
    url: String,
    timeout: Duration,
    client: super::http::BackendHttp,
    options: RemoteReadOptions,
    stats: Counters,
}

/// What a source has received over its life (for metrics and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteReadStats {
    /// Response body bytes received (after any HTTP content decoding).
    pub bytes_read: u64,
    /// Responses that came as streamed XOR chunks.
    pub chunked_responses: u64,
    /// Responses that came as one SAMPLES message.
    pub sample_responses: u64,
}

#[derive(Debug, Default)]
struct Counters {
    bytes_read: AtomicU64,
    chunked_responses: AtomicU64,
    sample_responses: AtomicU64,
}

impl RemoteReadSource {
    /// A source named `name` (the name errors and warnings carry) reading
    /// from the Prometheus at `base_url` (e.g. `http://prom:9090`, or with a
    /// path prefix); `timeout` bounds each whole exchange, body included.
    pub fn new(
        name: impl Into<String>,
        base_url: &str,
        timeout: Duration,
        client: super::http::BackendHttp,
    ) -> Self {
        RemoteReadSource {
            name: name.into(),
            url: format!("{}/api/v1/read", base_url.trim_end_matches('/')),
            timeout,
            client,
            options: RemoteReadOptions::default(),
            stats: Counters::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: RemoteReadOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the largest response body accepted
    /// (`backends[].max_response_bytes`); frames are never larger.
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.options.max_response_bytes = max;
        self.options.max_frame_bytes = self.options.max_frame_bytes.min(max);
        self
    }

    /// Asks for samples only, never chunks.
    pub fn samples_only(mut self) -> Self {
        self.options.mode = ResponseMode::Samples;
        self
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What this source has received so far, over every select.
    pub fn stats(&self) -> RemoteReadStats {
        RemoteReadStats {
            bytes_read: self.stats.bytes_read.load(Ordering::Relaxed),
            chunked_responses: self.stats.chunked_responses.load(Ordering::Relaxed),
            sample_responses: self.stats.sample_responses.load(Ordering::Relaxed),
        }
    }

    /// A decoding error; over the query's own sample budget, the limit
    /// error that no partial response tolerates.
    fn collect_error(&self, what: &str, e: CollectError, budget_binds: bool) -> SourceError {
        match e {
            CollectError::TooManySamples(_) if budget_binds => {
                SourceError::Limit(crate::limits::TOO_MANY_SAMPLES.to_string())
            }
            CollectError::Budget => SourceError::Limit(crate::limits::TOO_MANY_SAMPLES.to_string()),
            e => self.error(format!("{what}: {e}")),
        }
    }

    /// The query's byte budget has no room for an answer's buffers.
    fn over_budget(&self, e: crate::limits::meter::LimitError) -> SourceError {
        SourceError::Limit(format!("backend {}: remote read response: {e}", self.name))
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::Backend {
            backend: self.name.clone(),
            message: message.into(),
        }
    }

    /// One request for every select of `sels`: one answer each, in order
    /// (the request's failure fails them all).
    async fn exchange(&self, sels: &[Select]) -> Result<Vec<SelectOutput>, SourceError> {
        let request = build_batch_request(sels, self.options.mode).encode_to_vec();
        let body = snap::raw::Encoder::new()
            .compress_vec(&request)
            .map_err(|e| self.error(format!("compressing remote read request: {e}")))?;
        let mut response = self
            .client
            .post(&self.url)
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(
                http::HeaderName::from_static("x-prometheus-remote-read-version"),
                READ_VERSION,
            )
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(format!("remote read request failed: {}", chain(e))))?;

        let status = response.status();
        if !status.is_success() {
            let quote = self
                .read_body(
                    &mut response,
                    ERROR_BODY_QUOTE,
                    false,
                    |_| Ok(true),
                    &mut HeldBytes::new(),
                )
                .await;
            let text = match quote {
                Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
                Err(e) => format!("(body unreadable: {e})"),
            };
            return Err(self.error(format!("remote read answered HTTP {status}: {text}")));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // Decoding stops at the query's sample budget as well: chunks
        // compress tenfold or more, so bytes alone do not bound memory.
        let left = crate::limits::current().map_or(u64::MAX, |c| c.samples_left());
        let max_samples = usize::try_from(left).map_or(self.options.max_samples, |left| {
            left.min(self.options.max_samples)
        });
        let mut out = Collectors::new(sels, max_samples);
        let budget_binds = max_samples < self.options.max_samples;
        if content_type.starts_with(STREAMED_CONTENT_TYPE) {
            if !content_type.contains(STREAMED_PROTO) {
                return Err(self.error(format!(
                    "remote read streamed an unexpected message: {content_type:?}"
                )));
            }
            self.stats.chunked_responses.fetch_add(1, Ordering::Relaxed);
            self.read_chunks(&mut response, &mut out, budget_binds)
                .await?;
        } else {
            // One byte over the limit tells a body at the limit from a longer one.
            let limit = self.options.max_response_bytes;
            let mut held = HeldBytes::new();
            let body = match self
                .read_body(
                    &mut response,
                    limit,
                    true,
                    declared_len_within(limit),
                    &mut held,
                )
                .await
            {
                Ok(body) => body,
                Err(BodyError::Source(e)) => return Err(e),
                Err(e) => return Err(self.error(e.to_string())),
            };
            self.stats.sample_responses.fetch_add(1, Ordering::Relaxed);
            self.decode_samples(body, held, &content_type, &mut out, budget_binds)?;
        }
        Ok(out.finish(&self.name))
    }

    /// Reads the body, at most `limit` bytes of it: more is left unread,
    /// or with `strict` an error (at once when the answer's Content-Length
    /// declares more). Every piece read is charged to the current query;
    /// the buffer is reserved for what the answer announces and never grows
    /// past `limit`. `head` is shown the bytes read so far until it answers
    /// `Ok(true)` (it has seen enough) or refuses the body.
    async fn read_body(
        &self,
        response: &mut super::http::HttpResponse,
        limit: usize,
        strict: bool,
        mut head: impl FnMut(&[u8]) -> Result<bool, BodyError>,
        held: &mut HeldBytes,
    ) -> Result<Vec<u8>, BodyError> {
        let announced = response.content_length().unwrap_or(0);
        if strict && announced > limit as u64 {
            return Err(BodyError::TooLarge(limit));
        }
        let reserve = (announced as usize).min(limit);
        held.take(reserve)
            .map_err(|e| BodyError::Source(self.over_budget(e)))?;
        let mut body = Vec::with_capacity(reserve);
        let mut head_seen = false;
        while body.len() < limit || strict {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    self.stats
                        .bytes_read
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    if strict && body.len() + bytes.len() > limit {
                        return Err(BodyError::TooLarge(limit));
                    }
                    crate::limits::fetched::charge(bytes.len())
                        .map_err(|e| BodyError::Source(e.into()))?;
                    let take = bytes.len().min(limit - body.len());
                    if body.capacity() - body.len() < take {
                        let want = (body.len() + take).max(body.capacity() * 2).min(limit);
                        // The buffer is charged for before it grows.
                        held.take(want.saturating_sub(body.capacity()))
                            .map_err(|e| BodyError::Source(self.over_budget(e)))?;
                        body.reserve_exact(want - body.len());
                    }
                    body.extend_from_slice(&bytes[..take]);
                    if !head_seen {
                        head_seen = head(&body)?;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(BodyError::Read(chain(e))),
            }
        }
        Ok(body)
    }

    /// Decodes a streamed response frame by frame as it arrives.
    async fn read_chunks(
        &self,
        response: &mut super::http::HttpResponse,
        out: &mut Collectors,
        budget_binds: bool,
    ) -> Result<(), SourceError> {
        let mut frames = FrameReader::new(self.options.max_frame_bytes);
        let mut total: usize = 0;
        loop {
            let bytes = match response.chunk().await {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(e) => {
                    return Err(self.error(format!("reading remote read response: {}", chain(e))))
                }
            };
            self.stats
                .bytes_read
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            total = total.saturating_add(bytes.len());
            if total > self.options.max_response_bytes {
                return Err(self.error(too_large(self.options.max_response_bytes)));
            }
            crate::limits::fetched::charge(bytes.len())?;
            frames.push(&bytes);
            while let Some(data) = frames
                .next_frame()
                .map_err(|e| self.error(format!("remote read stream: {e}")))?
            {
                let msg = prompb::ChunkedReadResponse::decode(data).map_err(|e| {
                    self.error(format!("remote read stream: bad ChunkedReadResponse: {e}"))
                })?;
                let query = usize::try_from(msg.query_index)
                    .ok()
                    .filter(|&i| i < out.len())
                    .ok_or_else(|| {
                        self.error(format!(
                            "remote read stream answers query {} of a {}-query request",
                            msg.query_index,
                            out.len()
                        ))
                    })?;
                for series in msg.chunked_series {
                    out.add_chunked(query, series)
                        .map_err(|e| self.collect_error("remote read stream", e, budget_binds))?;
                }
            }
        }
        frames
            .finish()
            .map_err(|e| self.error(format!("remote read stream: {e}")))
    }

    /// Decodes a SAMPLES response: a snappy-compressed `ReadResponse`, one
    /// result per query. Its decompressed length is checked against the
    /// cap and charged to the query before it is allocated; the compressed
    /// body is freed (and given back) once decompressed.
    fn decode_samples(
        &self,
        body: Vec<u8>,
        mut held: HeldBytes,
        content_type: &str,
        out: &mut Collectors,
        budget_binds: bool,
    ) -> Result<(), SourceError> {
        let bad = |what: String| {
            self.error(format!(
                "remote read response (content type {content_type:?}) is not a snappy-compressed ReadResponse: {what}"
            ))
        };
        let len = snap::raw::decompress_len(&body).map_err(|e| bad(e.to_string()))?;
        if len > self.options.max_response_bytes {
            return Err(self.error(
                BodyError::Declared {
                    len,
                    limit: self.options.max_response_bytes,
                }
                .to_string(),
            ));
        }
        // The decompressed message is charged to the query (beside the
        // compressed body, charged as it was read) before it is allocated;
        // each buffer is given back as soon as it is dropped.
        held.take(len).map_err(|e| self.over_budget(e))?;
        let compressed = body.capacity();
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| bad(e.to_string()))?;
        drop(body);
        held.give(compressed);
        let response =
            prompb::ReadResponse::decode(raw.as_slice()).map_err(|e| bad(e.to_string()))?;
        drop(raw);
        drop(held);
        // Every query is answered (an empty answer stands for none).
        if !response.results.is_empty() && response.results.len() != out.len() {
            return Err(self.error(format!(
                "remote read answered {} results to a {}-query request",
                response.results.len(),
                out.len()
            )));
        }
        for (query, result) in response.results.into_iter().enumerate() {
            for ts in result.timeseries {
                out.add_samples(query, ts)
                    .map_err(|e| self.collect_error("remote read response", e, budget_binds))?;
            }
        }
        Ok(())
    }

    /// Answers `sels` in requests of at most [`MAX_QUERIES_PER_READ`]
    /// selects, each under this backend's deadline.
    async fn select_batches(&self, sels: &[Select]) -> Vec<Result<SelectOutput, SourceError>> {
        let batches = sels.chunks(MAX_QUERIES_PER_READ).map(|batch| async move {
            match tokio::time::timeout(self.timeout, self.exchange(batch)).await {
                Ok(Ok(outs)) => outs.into_iter().map(Ok).collect(),
                Ok(Err(e)) => batch.iter().map(|_| Err(e.clone())).collect(),
                Err(_) => {
                    let e = SourceError::Timeout {
                        backend: self.name.clone(),
                        timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                    };
                    batch.iter().map(|_| Err(e.clone())).collect::<Vec<_>>()
                }
            }
        });
        futures::future::join_all(batches)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Source for RemoteReadSource {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async move {
            self.select_batches(std::slice::from_ref(sel))
                .await
                .pop()
                .unwrap_or_else(|| Ok(SelectOutput::default()))
        })
    }

    /// A query's selects go in few requests: `ReadRequest` carries several
    /// queries, and each result (or streamed frame, by its `query_index`)
    /// is split back to its select.
    fn select_many<'a>(
        &'a self,
        sels: &'a [Select],
    ) -> BoxFuture<'a, Vec<Result<SelectOutput, SourceError>>> {
        Box::pin(self.select_batches(sels))
    }

    fn batch_limit(&self) -> usize {
        MAX_QUERIES_PER_READ
    }
}

/// The `ReadRequest` for one select: its matchers, its time range, and the
/// engine's hints.
pub fn build_request(sel: &Select, mode: ResponseMode) -> prompb::ReadRequest {
    build_batch_request(std::slice::from_ref(sel), mode)
}

/// The `ReadRequest` for several selects: one query each, in order.
pub fn build_batch_request(sels: &[Select], mode: ResponseMode) -> prompb::ReadRequest {
    let accepted = match mode {
        ResponseMode::Chunks => vec![ResponseType::StreamedXorChunks, ResponseType::Samples],
        ResponseMode::Samples => vec![ResponseType::Samples],
    };
    prompb::ReadRequest {
        queries: sels.iter().map(query_of).collect(),
        accepted_response_types: accepted.into_iter().map(i32::from).collect(),
    }
}

fn query_of(sel: &Select) -> prompb::Query {
    let hints = prompb::ReadHints {
        step_ms: sel.hints.step_ms,
        func: sel.hints.func.clone().unwrap_or_default(),
        // A server selects with the hints' range when hints are present, so
        // they carry the selection's own range.
        start_ms: sel.start_ms,
        end_ms: sel.end_ms,
        grouping: Vec::new(),
        by: false,
        range_ms: sel.hints.range_ms,
    };
    prompb::Query {
        start_timestamp_ms: sel.start_ms,
        end_timestamp_ms: sel.end_ms,
        matchers: sel.matchers.iter().map(to_label_matcher).collect(),
        hints: Some(hints),
    }
}

fn to_label_matcher(m: &Matcher) -> prompb::LabelMatcher {
    let kind = match m.op {
        MatchOp::Equal => MatcherType::Eq,
        MatchOp::NotEqual => MatcherType::Neq,
        MatchOp::Re(_) => MatcherType::Re,
        MatchOp::NotRe(_) => MatcherType::Nre,
    };
    prompb::LabelMatcher {
        r#type: kind.into(),
        name: m.name.clone(),
        value: m.value.clone(),
    }
}

/// A check of a SAMPLES body's first bytes: the decompressed length its
/// snappy header declares must be within `limit`, so a body that would
/// decompress past the cap is refused before the rest of it is read.
fn declared_len_within(limit: usize) -> impl FnMut(&[u8]) -> Result<bool, BodyError> {
    move |head: &[u8]| match snap::raw::decompress_len(head) {
        Ok(len) if len > limit => Err(BodyError::Declared { len, limit }),
        Ok(_) => Ok(true),
        // The header is a varint of at most 5 bytes: wait for all of it;
        // a malformed one is left to the decoder's error.
        Err(_) => Ok(head.len() >= 5),
    }
}

/// The error text of a response over the byte cap.
fn too_large(limit: usize) -> String {
    format!("remote read response exceeds {limit} bytes (backends[].max_response_bytes)")
}

/// Why a response body could not be read whole.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("{}", too_large(*.0))]
    TooLarge(usize),
    #[error("remote read response declares {len} bytes decompressed, over the limit of {limit} bytes (backends[].max_response_bytes)")]
    Declared { len: usize, limit: usize },
    #[error("reading remote read response: {0}")]
    Read(String),
    /// The query's own budget is spent.
    #[error(transparent)]
    Source(SourceError),
}

/// An error and its causes on one line (never the URL, which may carry
/// credentials).
fn chain(e: super::http::HttpError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests;
