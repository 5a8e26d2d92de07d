//! Whole backend answers through the real sources: a loopback HTTP server
//! answers with the fuzz input as a query-API JSON body, a metadata JSON
//! body, a remote-read SAMPLES body or a streamed-chunks body. Every answer
//! must end in a result or a `SourceError`, never a panic.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use promfed::source::prometheus::PrometheusHttpSource;
use promfed::source::remote_read::frame::encode_frame;
use promfed::source::remote_read::RemoteReadSource;
use promfed::source::{MetaQuery, Select, Source};
use promql_parser::label::{MatchOp, Matcher};

/// What the loopback backend answers next: content type and body.
type Answer = Arc<Mutex<(&'static str, Vec<u8>)>>;

struct Harness {
    rt: tokio::runtime::Runtime,
    answer: Answer,
    api: PrometheusHttpSource,
    rread: RemoteReadSource,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let answer: Answer = Arc::new(Mutex::new(("application/json", Vec::new())));
        let served = answer.clone();
        let addr = rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            let addr = l.local_addr().expect("addr");
            let app = axum::Router::new().fallback(move || {
                let served = served.clone();
                async move {
                    let (ct, body) = served.lock().map(|a| a.clone()).unwrap_or_default();
                    ([(header::CONTENT_TYPE, ct)], body).into_response()
                }
            });
            tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            });
            addr
        });
        let base = format!("http://{addr}");
        let client = promfed::source::http::BackendHttp::plain();
        Harness {
            api: PrometheusHttpSource::new("fuzz", &base, client.clone(), Duration::from_secs(5)),
            rread: RemoteReadSource::new("fuzz", &base, Duration::from_secs(5), client),
            rt,
            answer,
        }
    })
}

fn select() -> Select {
    Select {
        matchers: vec![Matcher::new(MatchOp::Equal, "__name__", "up")],
        start_ms: 0,
        end_ms: 3_600_000,
        hints: Default::default(),
        read: Default::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let h = harness();
    let (ct, bytes): (&'static str, Vec<u8>) = match mode % 5 {
        0 | 1 => ("application/json", body.to_vec()),
        2 => (
            "application/x-protobuf",
            snap::raw::Encoder::new()
                .compress_vec(body)
                .unwrap_or_default(),
        ),
        3 => ("application/x-protobuf", body.to_vec()),
        _ => {
            let mut framed = Vec::new();
            encode_frame(body, &mut framed);
            (
                "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse",
                framed,
            )
        }
    };
    if let Ok(mut a) = h.answer.lock() {
        *a = (ct, bytes);
    }
    let sel = select();
    h.rt.block_on(async {
        match mode % 5 {
            0 => {
                let _ = h.api.select(&sel).await;
            }
            1 => {
                let q = MetaQuery {
                    matchers: vec![],
                    start_ms: 0,
                    end_ms: 3_600_000,
                    read: Default::default(),
                    limit: 0,
                };
                let _ = h.api.series(&q).await;
                let _ = h.api.label_names(&q).await;
            }
            _ => {
                let _ = h.rread.select(&sel).await;
            }
        }
    });
});
