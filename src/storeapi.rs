//! promfed as a Thanos StoreAPI server: `thanos.info.Info/Info` and
//! `thanos.Store/{Series,LabelNames,LabelValues}` answered from the
//! federation, so that Thanos Query (or another promfed) can use promfed
//! as a store. This module decodes and answers one gRPC call; the
//! listener is [`crate::server::grpc`].

pub mod error;
pub mod meta;
pub mod request;
pub mod series;

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::server::Grpc;
use tonic_prost::ProstCodec;

use crate::api::AppState;
use crate::source::thanos_store::storepb::{
    InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, SeriesRequest, SeriesResponse,
};

pub const INFO: &str = "/thanos.info.Info/Info";
pub const SERIES: &str = "/thanos.Store/Series";
pub const LABEL_NAMES: &str = "/thanos.Store/LabelNames";
pub const LABEL_VALUES: &str = "/thanos.Store/LabelValues";

/// Largest request message accepted, bytes (requests are matchers and a
/// few numbers; Thanos's own default receive limit is far larger).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The request's gRPC deadline (`grpc-timeout`), if it sent one.
fn deadline<T>(r: &tonic::Request<T>) -> Option<Duration> {
    r.metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(request::grpc_timeout)
}

/// Answers one gRPC call (an HTTP/2 request) with `st`.
pub async fn handle<B>(
    st: Arc<AppState>,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let path = req
        .uri()
        .path_and_query()
        .map(PathAndQuery::path)
        .unwrap_or("")
        .to_string();
    match path.as_str() {
        INFO => {
            let svc = tower::service_fn(move |_r: tonic::Request<InfoRequest>| {
                let st = st.clone();
                async move { Ok(tonic::Response::new(meta::info(&st))) }
            });
            grpc::<InfoRequest, InfoResponse>().unary(svc, req).await
        }
        SERIES => {
            let svc = tower::service_fn(move |r: tonic::Request<SeriesRequest>| {
                let st = st.clone();
                async move {
                    let d = deadline(&r);
                    let frames = series::series(st, r.into_inner(), d).await?;
                    Ok::<_, tonic::Status>(tonic::Response::new(futures::stream::iter(frames)))
                }
            });
            grpc::<SeriesRequest, SeriesResponse>()
                .server_streaming(svc, req)
                .await
        }
        LABEL_NAMES => {
            let svc = tower::service_fn(move |r: tonic::Request<LabelNamesRequest>| {
                let st = st.clone();
                async move {
                    let d = deadline(&r);
                    let out = meta::label_names(st, r.into_inner(), d).await?;
                    Ok::<_, tonic::Status>(tonic::Response::new(out))
                }
            });
            grpc::<LabelNamesRequest, LabelNamesResponse>()
                .unary(svc, req)
                .await
        }
        LABEL_VALUES => {
            let svc = tower::service_fn(move |r: tonic::Request<LabelValuesRequest>| {
                let st = st.clone();
                async move {
                    let d = deadline(&r);
                    let out = meta::label_values(st, r.into_inner(), d).await?;
                    Ok::<_, tonic::Status>(tonic::Response::new(out))
                }
            });
            grpc::<LabelValuesRequest, LabelValuesResponse>()
                .unary(svc, req)
                .await
        }
        other => tonic::Status::unimplemented(format!(
            "promfed serves thanos.info.Info/Info and thanos.Store/{{Series,LabelNames,LabelValues}}, not {other}"
        ))
        .into_http(),
    }
}

fn grpc<Req, Resp>() -> Grpc<ProstCodec<Resp, Req>>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
{
    Grpc::new(ProstCodec::<Resp, Req>::default()).max_decoding_message_size(MAX_REQUEST_BYTES)
}
