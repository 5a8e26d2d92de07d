//! The HTTP client of one configured backend: its connection pool, TLS
//! settings and credentials (and the redactor of those credentials). It
//! lives with the sources, which use it, above the config and TLS services
//! it reads.

/// The HTTP client of backend `b` (its own connection pool, TLS settings
/// and credentials, sent as a default, sensitive header) and the redactor
/// of those credentials.
pub fn backend_client(
    b: &crate::config::BackendConfig,
) -> Result<(reqwest::Client, crate::source::guard::Redactor), super::SetupError> {
    let at = |e: String| format!("backend {}: {e}", b.name);
    let auth =
        crate::auth::backend_authorization(b.bearer_token_file.as_ref(), b.basic_auth.as_ref())
            .map_err(|e| at(e.to_string()))?;
    // At most `max_connections` requests run at once (see
    // `source::guard`), so no more connections are ever kept; unused ones
    // close after `idle_connection_timeout`.
    let mut builder = reqwest::Client::builder()
        .pool_idle_timeout(b.idle_connection_timeout)
        .pool_max_idle_per_host(b.max_connections);
    let mut redactor = crate::source::guard::Redactor::default();
    if let Some(v) = auth {
        if let Ok(text) = v.to_str() {
            redactor = crate::source::guard::Redactor::for_authorization(text);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, v);
        builder = builder.default_headers(headers);
    }
    if let Some(t) = &b.tls {
        builder = t.apply(builder).map_err(|e| at(e.to_string()))?;
    }
    let client = builder
        .build()
        .map_err(|e| at(format!("building HTTP client: {e}")))?;
    Ok((client, redactor))
}
