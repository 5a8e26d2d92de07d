//! A backend's HTTP/1.1 client: hyper-util's pool over a
//! [`CappedConnector`], so that at most
//! `max_connections` sockets are ever open to the backend, idle ones
//! closing after `idle_connection_timeout`. Requests carry the backend's
//! credentials; answers the client asked gzip for are decompressed as they
//! arrive. Errors never carry the URL (which may hold credentials).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connector::CappedConnector;

/// Why a request to a backend failed (the URL never appears).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("{}", chain(.0))]
    Request(hyper_util::client::legacy::Error),
    #[error("{}", chain(.0))]
    Body(hyper::Error),
    #[error("gzip: {0}")]
    Gzip(std::io::Error),
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// A request body sent whole.
pub struct Full(Option<Bytes>);

impl Body for Full {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// The HTTP client of one backend (cheap to clone: clones share the pool
/// and the connection cap).
#[derive(Clone)]
pub struct BackendHttp {
    client: Client<CappedConnector, Full>,
    connector: CappedConnector,
    /// Sent with every request (credentials, marked sensitive).
    headers: HeaderMap,
}

impl BackendHttp {
    /// A client of at most `max_connections` connections, idle ones closed
    /// after `idle`; `tls` serves `https` URLs.
    pub fn new(
        max_connections: usize,
        idle: Duration,
        connect_wait: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
        headers: HeaderMap,
    ) -> Self {
        let connector = CappedConnector::new(max_connections, connect_wait, tls);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(max_connections)
            .build(connector.clone());
        BackendHttp {
            client,
            connector,
            headers,
        }
    }

    /// A client of plain `http` URLs without credentials, with a default
    /// backend's cap (8 connections, idle ones closed after 5 s).
    pub fn plain() -> Self {
        let idle = Duration::from_secs(5);
        BackendHttp::new(8, idle, idle, None, HeaderMap::new())
    }

    /// Connections open to the backend now.
    pub fn open_connections(&self) -> usize {
        self.connector.open()
    }

    pub fn get(&self, url: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::GET, url.into())
    }

    pub fn post(&self, url: impl Into<String>) -> RequestBuilder<'_> {
        self.request(Method::POST, url.into())
    }

    fn request(&self, method: Method, url: String) -> RequestBuilder<'_> {
        RequestBuilder {
            http: self,
            method,
            url,
            headers: self.headers.clone(),
            body: Bytes::new(),
            gzip: true,
        }
    }
}

impl std::fmt::Debug for BackendHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BackendHttp({} connections open)",
            self.open_connections()
        )
    }
}

/// A request being built (the parts of reqwest's builder the sources use).
pub struct RequestBuilder<'a> {
    http: &'a BackendHttp,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    /// Whether to offer gzip (unless a header says otherwise).
    gzip: bool,
}

impl RequestBuilder<'_> {
    pub fn header(mut self, name: HeaderName, value: &'static str) -> Self {
        if name == ACCEPT_ENCODING {
            self.gzip = false;
        }
        self.headers.insert(name, HeaderValue::from_static(value));
        self
    }

    /// `params` as the URL's query string.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, params: &[(K, V)]) -> Self {
        if !params.is_empty() {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            self.url.push(sep);
            self.url.push_str(&encode(params));
        }
        self
    }

    /// `params` as a form body.
    pub fn form<K: AsRef<str>, V: AsRef<str>>(mut self, params: &[(K, V)]) -> Self {
        self.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self.body = Bytes::from(encode(params));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Bytes::from(body);
        self
    }

    pub async fn send(self) -> Result<HttpResponse, HttpError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpError::Url(e.to_string()))?;
        let mut req = http::Request::new(Full(Some(self.body)));
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers;
        if self.gzip {
            req.headers_mut()
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let resp = self
            .http
            .client
            .request(req)
            .await
            .map_err(HttpError::Request)?;
        let (parts, body) = resp.into_parts();
        let gzip = self.gzip
            && parts
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        Ok(HttpResponse {
            status: parts.status,
            headers: parts.headers,
            body,
            gunzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
            pending: Bytes::new(),
        })
    }
}

fn encode<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k.as_ref(), v.as_ref());
    }
    s.finish()
}

/// A backend's answer, its body read piece by piece.
pub struct HttpResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: hyper::body::Incoming,
    /// Decompresses a gzip body as it arrives.
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    /// Compressed bytes not yet given to `gunzip`.
    pending: Bytes,
}

impl HttpResponse {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body's length as the answer declares it (none for a body
    /// decompressed here: its length is only known once read).
    pub fn content_length(&self) -> Option<u64> {
        if self.gunzip.is_some() {
            return None;
        }
        self.headers
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// The next piece of the body (decompressed), `None` at its end. A
    /// gzip body is fed to the decoder a few KiB at a time, so that one
    /// piece stays small whatever the compression ratio.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        use std::io::Write as _;
        loop {
            if let Some(d) = &mut self.gunzip {
                while !self.pending.is_empty() {
                    let piece = self.pending.split_to(self.pending.len().min(GUNZIP_STEP));
                    d.write_all(&piece).map_err(HttpError::Gzip)?;
                    let out = std::mem::take(d.get_mut());
                    if !out.is_empty() {
                        return Ok(Some(Bytes::from(out)));
                    }
                }
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_frame(cx)).await;
            let data = match frame {
                None => {
                    return match self.gunzip.take() {
                        Some(d) => {
                            let rest = d.finish().map_err(HttpError::Gzip)?;
                            Ok((!rest.is_empty()).then(|| Bytes::from(rest)))
                        }
                        None => Ok(None),
                    }
                }
                Some(Err(e)) => return Err(HttpError::Body(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers.
                    Err(_) => continue,
                },
            };
            if self.gunzip.is_none() {
                return Ok(Some(data));
            }
            self.pending = data;
        }
    }
}

/// Compressed bytes fed to the gzip decoder at once (deflate expands at
/// most ~1000-fold: a piece of output stays under ~4 MiB).
const GUNZIP_STEP: usize = 4 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-answer HTTP server sending `body` gzip-compressed, and the
    /// request it read.
    async fn gzip_server(body: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        use std::io::Write as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/api/v1/labels", l.local_addr().expect("addr"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&body).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accept");
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.expect("read");
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
                gz.len()
            );
            s.write_all(head.as_bytes()).await.expect("write");
            s.write_all(&gz).await.expect("write");
            String::from_utf8_lossy(&req[..n]).to_string()
        });
        (url, task)
    }

    #[tokio::test]
    async fn gzip_answers_are_decompressed_in_small_pieces() {
        // 8 MiB of zeros compress ~1000-fold: still read in pieces of
        // at most a few MiB, and whole.
        let body = vec![0u8; 8 << 20];
        let (url, server) = gzip_server(body.clone()).await;
        let http = BackendHttp::plain();
        let mut r = http
            .get(url)
            .query(&[("match[]", "up{a=\"b c\"}")])
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.content_length(), None, "length unknown until inflated");
        let (mut total, mut largest) = (0, 0);
        while let Some(piece) = r.chunk().await.expect("chunk") {
            assert!(piece.iter().all(|&b| b == 0));
            total += piece.len();
            largest = largest.max(piece.len());
        }
        assert_eq!(total, body.len());
        assert!(largest <= 5 << 20, "a piece of {largest} bytes");
        let req = server.await.expect("server");
        assert!(
            req.starts_with("GET /api/v1/labels?match%5B%5D=up%7Ba%3D%22b+c%22%7D HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase().contains("accept-encoding: gzip"),
            "{req}"
        );
        drop(r);
        // The connection went back to the pool: one open, within the cap.
        assert!(http.open_connections() <= 1);
    }
}
