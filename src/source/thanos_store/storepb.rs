//! The Thanos StoreAPI and Info API messages (`thanos.Store`,
//! `thanos.info.Info`), written by hand with prost's derive macros from the
//! field numbers of Thanos v0.42's `pkg/store/storepb/{rpc,types}.proto`,
//! `pkg/store/labelpb/types.proto` and `pkg/info/infopb/rpc.proto`.
//!
//! The .proto files carry gogoproto options; those only change Go code
//! generation, the wire format is plain proto3. Only the fields promfed
//! reads or writes are declared; prost skips the others when decoding.
//!
//! Messages of the same shape stay apart (`LabelNamesRequest` and
//! `LabelValuesRequest`, their responses; remote read's in
//! `remote_read/prompb.rs`): each is its own wire message with its own
//! field numbers in its own protocol, declared as its .proto declares it.

/// `thanos.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `thanos.ZLabelSet` (and `thanos.LabelSet`: the same layout).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelSet {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
}

/// `thanos.LabelMatcher` and its `Type`: on the wire the same message as
/// remote read's `prometheus.LabelMatcher` (same fields, numbers and enum
/// values), so one definition serves both.
pub use crate::source::remote_read::prompb::{LabelMatcher, MatcherType};

/// `thanos.PartialResponseStrategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PartialResponseStrategy {
    /// Errors of single stores become warnings.
    Warn = 0,
    /// Any error fails the call.
    Abort = 1,
}

/// `thanos.Aggr`: which downsampled aggregate a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Aggr {
    Raw = 0,
    Count = 1,
    Sum = 2,
    Min = 3,
    Max = 4,
    Counter = 5,
}

/// `thanos.SeriesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesRequest {
    /// Inclusive, ms.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// Inclusive, ms.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// 0: raw data only.
    #[prost(int64, tag = "4")]
    pub max_resolution_window: i64,
    #[prost(enumeration = "Aggr", repeated, packed = "true", tag = "5")]
    pub aggregates: Vec<i32>,
    #[prost(enumeration = "PartialResponseStrategy", tag = "7")]
    pub partial_response_strategy: i32,
    /// Labels only, no chunks (series and label calls).
    #[prost(bool, tag = "8")]
    pub skip_chunks: bool,
    /// Query step, ms.
    #[prost(int64, tag = "10")]
    pub step: i64,
    /// Range of the range selector, ms.
    #[prost(int64, tag = "11")]
    pub range: i64,
    #[prost(message, optional, tag = "12")]
    pub query_hints: Option<QueryHints>,
    /// Replica labels the store strips from its answer (when its Info says
    /// `supports_without_replica_labels`).
    #[prost(string, repeated, tag = "14")]
    pub without_replica_labels: Vec<String>,
    /// Most series to return (0: no limit).
    #[prost(int64, tag = "15")]
    pub limit: i64,
    /// Batch this many series per response frame (0 or 1: one per frame).
    #[prost(int64, tag = "16")]
    pub response_batch_size: i64,
}

/// `thanos.QueryHints`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QueryHints {
    #[prost(int64, tag = "1")]
    pub step_millis: i64,
    #[prost(message, optional, tag = "2")]
    pub func: Option<Func>,
    #[prost(message, optional, tag = "5")]
    pub range: Option<Range>,
}

/// `thanos.Func`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Func {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `thanos.Range`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Range {
    #[prost(int64, tag = "1")]
    pub millis: i64,
}

/// `thanos.SeriesResponse`: one frame of the `Series` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesResponse {
    #[prost(oneof = "series_response::Result", tags = "1, 2, 3, 4")]
    pub result: Option<series_response::Result>,
}

/// The variants of [`SeriesResponse`].
pub mod series_response {
    /// `thanos.SeriesResponse.result`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "1")]
        Series(super::Series),
        /// A warning in place of a series (e.g. a partial answer).
        #[prost(string, tag = "2")]
        Warning(String),
        /// Store-specific hints (`google.protobuf.Any`); ignored.
        #[prost(message, tag = "3")]
        Hints(super::Any),
        #[prost(message, tag = "4")]
        Batch(super::SeriesBatch),
    }
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `thanos.SeriesBatch`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesBatch {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<Series>,
}

/// `thanos.Series`: a series (or a time slice of it) with its chunks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Series {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<AggrChunk>,
}

/// `thanos.AggrChunk`: a raw chunk, or the aggregates of a downsampled one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggrChunk {
    /// Inclusive, ms.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// Inclusive, ms.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    #[prost(message, optional, tag = "3")]
    pub raw: Option<Chunk>,
}

/// `thanos.Chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    #[prost(enumeration = "ChunkEncoding", tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: bytes::Bytes,
}

/// `thanos.Chunk.Encoding`: StoreAPI's numbering, which starts at XOR
/// (remote read's starts at UNKNOWN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChunkEncoding {
    Xor = 0,
    Histogram = 1,
    FloatHistogram = 2,
}

/// `thanos.LabelNamesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelNamesRequest {
    #[prost(enumeration = "PartialResponseStrategy", tag = "2")]
    pub partial_response_strategy: i32,
    /// ms.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// ms.
    #[prost(int64, tag = "4")]
    pub end: i64,
    #[prost(message, repeated, tag = "6")]
    pub matchers: Vec<LabelMatcher>,
    #[prost(string, repeated, tag = "7")]
    pub without_replica_labels: Vec<String>,
    /// Most names to return (0: no limit).
    #[prost(int64, tag = "8")]
    pub limit: i64,
}

/// `thanos.LabelNamesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelNamesResponse {
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}

/// `thanos.LabelValuesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelValuesRequest {
    #[prost(string, tag = "1")]
    pub label: String,
    #[prost(enumeration = "PartialResponseStrategy", tag = "3")]
    pub partial_response_strategy: i32,
    /// ms.
    #[prost(int64, tag = "4")]
    pub start: i64,
    /// ms.
    #[prost(int64, tag = "5")]
    pub end: i64,
    #[prost(message, repeated, tag = "7")]
    pub matchers: Vec<LabelMatcher>,
    #[prost(string, repeated, tag = "8")]
    pub without_replica_labels: Vec<String>,
    /// Most values to return (0: no limit).
    #[prost(int64, tag = "9")]
    pub limit: i64,
}

/// `thanos.LabelValuesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelValuesResponse {
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}

/// `thanos.info.InfoRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InfoRequest {}

/// `thanos.info.InfoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    /// The store's external label sets.
    #[prost(message, repeated, tag = "1")]
    pub label_sets: Vec<LabelSet>,
    /// `sidecar`, `store`, `query`, `rule`, `receive`.
    #[prost(string, tag = "2")]
    pub component_type: String,
    /// Present when the component serves the StoreAPI.
    #[prost(message, optional, tag = "3")]
    pub store: Option<StoreInfo>,
}

/// `thanos.info.StoreInfo`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StoreInfo {
    /// ms.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// ms.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    #[prost(bool, tag = "3")]
    pub supports_sharding: bool,
    #[prost(bool, tag = "5")]
    pub supports_without_replica_labels: bool,
}
