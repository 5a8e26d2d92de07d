//! Checks of single config values that other layers share: label names
//! and StoreAPI (`grpc://host:port`) addresses.

/// True for a legacy Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `host:port` of a `thanos_store` backend URL (`grpc://host:port`).
pub fn grpc_authority(url: &str) -> Result<String, UrlError> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    if u.scheme() != "grpc" {
        return Err(format!(
            "url {url:?}: a StoreAPI address is grpc://host:port (TLS is set with `tls:`)"
        )
        .into());
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("url {url:?} has no host"))?;
    let port = u.port().ok_or_else(|| {
        format!("url {url:?} has no port (the StoreAPI usually listens on 10901)")
    })?;
    if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() {
        return Err(format!("url {url:?}: a StoreAPI address has no path or query").into());
    }
    Ok(format!("{host}:{port}"))
}

/// Checks a `thanos_store` backend URL (for config validation).
pub fn validate_url(url: &str) -> Result<(), UrlError> {
    grpc_authority(url).map(|_| ())
}

/// A backend address that promfed cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

impl From<String> for UrlError {
    fn from(message: String) -> Self {
        UrlError(message)
    }
}
