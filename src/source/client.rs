//! The HTTP client of one configured backend: its connection pool under
//! the backend's connection cap, TLS settings and credentials (and the
//! redactor of those credentials). It lives with the sources, which use
//! it, above the config and TLS services it reads.

use super::http::BackendHttp;

/// The HTTP client of backend `b` (its own pool of at most
/// `max_connections` sockets, TLS settings and credentials, sent as a
/// sensitive header with every request) and the redactor of those
/// credentials.
pub fn backend_client(
    b: &crate::config::BackendConfig,
) -> Result<(BackendHttp, crate::source::guard::Redactor), super::SetupError> {
    let at = |e: String| format!("backend {}: {e}", b.name);
    let auth =
        crate::auth::backend_authorization(b.bearer_token_file.as_ref(), b.basic_auth.as_ref())
            .map_err(|e| at(e.to_string()))?;
    let mut redactor = crate::source::guard::Redactor::default();
    let mut headers = http::HeaderMap::new();
    if let Some(mut v) = auth {
        if let Ok(text) = v.to_str() {
            redactor = crate::source::guard::Redactor::for_authorization(text);
        }
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
    }
    let https = b
        .url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    let tls = if https || b.tls.is_some() {
        let cfg = b
            .tls
            .clone()
            .unwrap_or_default()
            .rustls_client_config(&[b"http/1.1"])
            .map_err(|e| at(e.to_string()))?;
        Some(std::sync::Arc::new(cfg))
    } else {
        None
    };
    // A socket is opened only under one of the `max_connections` permits
    // and gives it back when it closes (`source::connector`); unused ones
    // close after `idle_connection_timeout`. A request needing a socket
    // gets one within a connect's time (requests in flight are capped at
    // `max_connections` too, see `source::guard`): a connect still waiting
    // after the idle timeout is one the pool no longer needs, and gives up.
    let connect_wait = b.idle_connection_timeout.min(b.timeout);
    let client = BackendHttp::new(
        b.max_connections,
        b.idle_connection_timeout,
        connect_wait,
        tls,
        headers,
    );
    Ok((client, redactor))
}
