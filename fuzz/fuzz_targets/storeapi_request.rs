//! promfed's StoreAPI server decoding requests: any bytes, sent as the
//! message of any of its gRPC methods, get an answer with a gRPC status
//! (never a panic or a hang); a request accepted as a select has matchers
//! and an ordered time range.
#![no_main]

use std::sync::Arc;

use axum::body::Body;
use axum::http;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use promfed::api::AppState;
use promfed::federation::{Federation, FederationOptions};
use promfed::source::thanos_store::storepb;
use promfed::storeapi::{self, request};

const PATHS: [&str; 5] = [
    storeapi::INFO,
    storeapi::SERIES,
    storeapi::LABEL_NAMES,
    storeapi::LABEL_VALUES,
    "/thanos.Store/Info",
];

fn state() -> &'static Arc<AppState> {
    static S: std::sync::OnceLock<Arc<AppState>> = std::sync::OnceLock::new();
    S.get_or_init(|| AppState::new(Arc::new(Federation::new(vec![], FederationOptions::default()))))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    // The conversions on their own.
    if let Ok(r) = storepb::SeriesRequest::decode(body) {
        if let Ok(sel) = request::select_of(&r) {
            assert!(!sel.matchers.is_empty());
            assert!(sel.start_ms <= sel.end_ms);
        }
    }
    if let Ok(r) = storepb::LabelNamesRequest::decode(body) {
        let _ = request::label_names_of(&r);
    }
    if let Ok(r) = storepb::LabelValuesRequest::decode(body) {
        let _ = request::label_values_of(&r);
    }
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = request::grpc_timeout(s);
    }
    // The whole call, as a gRPC frame: flag, length, message.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    let path = PATHS[usize::from(which) % PATHS.len()];
    let Ok(req) = http::Request::builder()
        .method("POST")
        .uri(format!("http://promfed{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::from(frame))
    else {
        return;
    };
    runtime().block_on(async {
        let resp = storeapi::handle(state().clone(), req).await;
        assert_eq!(resp.status(), http::StatusCode::OK);
        let (parts, body) = resp.into_parts();
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            axum::body::to_bytes(Body::new(body), 64 << 20),
        )
        .await
        .expect("the answer ends");
        // A trailers-only error keeps its status in the headers.
        assert!(answered.is_ok() || parts.headers.contains_key("grpc-status"));
    });
});
