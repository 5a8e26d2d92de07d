//! The web UI for people, served at `/`: a query page (instant and range,
//! table and graph), the stores page and the cache page. The assets are
//! compiled into the binary; the pages call promfed's own API, behind the
//! same authentication. The analyze page runs `promfed analyze` here,
//! against this promfed ([`analyze`]).

pub mod analyze;

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// The UI's routes: `/` and `/ui/*`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ui/analyze", post(analyze::analyze))
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/ui/style.css",
            get(|| asset("text/css; charset=utf-8", STYLE_CSS)),
        )
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn state() -> Arc<AppState> {
        let fed = crate::federation::Federation::new(Vec::new(), Default::default());
        AppState::new(Arc::new(fed))
    }

    #[tokio::test]
    async fn serves_the_pages_and_their_assets() {
        for (path, ct, needle) in [
            ("/", "text/html", "<script src=\"/ui/app.js\">"),
            ("/ui/app.js", "text/javascript", "function renderGraph"),
            ("/ui/style.css", "text/css", "#graph"),
        ] {
            let resp = router(state())
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let got_ct = resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .to_string();
            assert!(got_ct.starts_with(ct), "{path}: {got_ct}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body");
            assert!(
                String::from_utf8_lossy(&body).contains(needle),
                "{path} lacks {needle}"
            );
        }
    }
}
