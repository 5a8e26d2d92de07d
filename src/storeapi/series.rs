//! `thanos.Store/Series`: the request's selection goes through the
//! federation (routing, fan-out, HA dedup, limits) as a PromQL select does;
//! the answer is streamed as XOR chunks of at most 120 samples, in frames
//! of `response_batch_size` series.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;

use super::error::StoreApiError;
use super::request;
use crate::api::AppState;
use crate::limits::memory::Held;
use crate::limits::meter::{label_bytes, SAMPLE_BYTES};
use crate::model::{Labels, Sample};
use crate::source::remote_read::chunk_encode::{encode_chunks, MAX_SAMPLES_PER_CHUNK};
use crate::source::thanos_store::storepb::{
    self, series_response::Result as Frame, SeriesRequest, SeriesResponse,
};
use crate::source::Source;

/// One series of the answer: labels, and samples unless chunks are skipped.
type Item = (Labels, Vec<Sample>);

/// The query-log text of a selection.
fn describe(sel: &[promql_parser::label::Matcher]) -> String {
    let parts: Vec<String> = sel.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// Answers a `Series` call: selects under promfed's limits within
/// `timeout` (the shorter of `limits.query_timeout` and the request's gRPC
/// deadline), then returns the frames to stream.
pub async fn series(
    st: Arc<AppState>,
    req: SeriesRequest,
    deadline: Option<Duration>,
) -> Result<Frames, StoreApiError> {
    let sel = request::select_of(&req)?;
    let timeout = deadline.map_or_else(
        || st.limits.timeout_for(None),
        |d| d.min(st.limits.timeout_for(None)),
    );
    let ends = Instant::now() + timeout;
    let what = describe(&sel.matchers);
    let fed = st.federation.clone();
    let skip_chunks = req.skip_chunks;
    let meta = if skip_chunks {
        Some(request::series_meta_of(&req)?)
    } else {
        None
    };
    let limit = usize::try_from(req.limit.max(0)).unwrap_or(usize::MAX);
    let fetched = st
        .limits
        .run("storeapi_series", &what, timeout, async {
            let r = if let Some(q) = &meta {
                fed.series(q).await.map(|o| {
                    let items: Vec<Item> = o.items.into_iter().map(|l| (l, Vec::new())).collect();
                    (items, o.warnings)
                })
            } else {
                fed.select(&sel).await.map(|o| {
                    let items: Vec<Item> = o
                        .series
                        .into_iter()
                        .map(|s| (s.labels, s.samples))
                        .collect();
                    (items, o.warnings)
                })
            };
            let (mut items, warnings) = match r {
                Ok(x) => x,
                Err(e) => return Ok(Err(StoreApiError::from(e))),
            };
            // Sorted by label set, as StoreAPI readers merge streams.
            items.sort_by(|a, b| a.0.cmp(&b.0));
            if limit > 0 {
                items.truncate(limit);
            }
            // What the stream holds until sent stays taken from the memory
            // pool past the query (`limits.max_memory_bytes`).
            let bytes = items.iter().map(item_bytes).sum();
            let held = match crate::limits::current() {
                Some(ctx) => ctx.keep_answer(bytes),
                None => Ok(Held::new(None, 0)),
            };
            Ok::<_, crate::api::ApiError>(
                held.map(|h| (items, warnings, h))
                    .map_err(StoreApiError::Memory),
            )
        })
        .await
        .map_err(StoreApiError::Admission)??;
    let (items, warnings, held) = fetched;
    Ok(Frames {
        warnings: warnings.into(),
        items: items.into(),
        held,
        batch: usize::try_from(req.response_batch_size.max(1)).unwrap_or(1),
        max_bytes: st.limits.config.max_response_bytes,
        sent_bytes: 0,
        sent_series: 0,
        deadline: ends,
        done: false,
    })
}

/// Bytes one series of the answer holds in memory until it is sent.
fn item_bytes(item: &Item) -> u64 {
    label_bytes(&item.0) + item.1.len() as u64 * SAMPLE_BYTES
}

/// The frames of one answer, built as they are sent: warnings first, then
/// series in batches. The stream ends with an error status when the answer
/// outgrows `limits.max_response_bytes` or the deadline passes. The series
/// not yet sent stay counted in the memory pool; each frame's series are
/// given back as the frame goes to the encoder, the rest when the stream
/// ends or its client goes away.
pub struct Frames {
    warnings: VecDeque<String>,
    items: VecDeque<Item>,
    held: Held,
    batch: usize,
    max_bytes: u64,
    sent_bytes: u64,
    sent_series: usize,
    deadline: Instant,
    done: bool,
}

/// One series as the StoreAPI carries it.
pub fn store_series(labels: &Labels, samples: &[Sample]) -> storepb::Series {
    storepb::Series {
        labels: labels
            .iter()
            .map(|l| storepb::Label {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect(),
        chunks: encode_chunks(samples, MAX_SAMPLES_PER_CHUNK)
            .into_iter()
            .map(|c| storepb::AggrChunk {
                min_time: c.min_t,
                max_time: c.max_t,
                raw: Some(storepb::Chunk {
                    r#type: storepb::ChunkEncoding::Xor.into(),
                    data: c.data.into(),
                }),
            })
            .collect(),
    }
}

impl Frames {
    fn fail(&mut self, e: StoreApiError) -> Option<Result<SeriesResponse, tonic::Status>> {
        self.done = true;
        self.items.clear();
        self.held.give_back(u64::MAX);
        Some(Err(e.status()))
    }
}

impl Iterator for Frames {
    type Item = Result<SeriesResponse, tonic::Status>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if Instant::now() >= self.deadline {
            let series = self.sent_series;
            return self.fail(StoreApiError::DeadlineWhileStreaming { series });
        }
        let (frame, n) = if let Some(w) = self.warnings.pop_front() {
            (Frame::Warning(w), 0)
        } else if self.items.is_empty() {
            self.done = true;
            return None;
        } else if self.batch <= 1 {
            let Some(item) = self.items.pop_front() else {
                self.done = true;
                return None;
            };
            self.held.give_back(item_bytes(&item));
            (Frame::Series(store_series(&item.0, &item.1)), 1)
        } else {
            let take = self.batch.min(self.items.len());
            let mut freed = 0;
            let series: Vec<storepb::Series> = self
                .items
                .drain(..take)
                .map(|item| {
                    freed += item_bytes(&item);
                    store_series(&item.0, &item.1)
                })
                .collect();
            self.held.give_back(freed);
            (Frame::Batch(storepb::SeriesBatch { series }), take)
        };
        let frame = SeriesResponse {
            result: Some(frame),
        };
        let len = frame.encoded_len() as u64;
        if self.sent_bytes.saturating_add(len) > self.max_bytes {
            let (limit, series) = (self.max_bytes, self.sent_series);
            return self.fail(StoreApiError::AnswerTooLarge { limit, series });
        }
        self.sent_bytes += len;
        self.sent_series += n;
        Some(Ok(frame))
    }
}
