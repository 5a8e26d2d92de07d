//! Reads a backend's answer from Prometheus's HTTP API: the request sent
//! under the size cap, the body read as it arrives, the envelope
//! (`status`, `data`, `error`, `warnings`) parsed.

use serde::Deserialize;

use super::PrometheusHttpSource;
use crate::source::SourceError;

/// An answer's `data`, warnings and infos.
pub(super) type Answer<T> = (Option<T>, Vec<String>, Vec<String>);

impl PrometheusHttpSource {
    /// Sends `req`; an answer that declares more than the cap is refused
    /// unread.
    pub(super) async fn send(
        &self,
        req: crate::source::http::RequestBuilder<'_>,
        what: &str,
    ) -> Result<crate::source::http::HttpResponse, SourceError> {
        let resp = req
            .send()
            .await
            .map_err(|e| self.err(format!("request failed: {}", without_url(&e))))?;
        let max = self.max_response_bytes;
        let announced = resp.content_length().unwrap_or(0);
        if announced > max as u64 {
            return Err(self.err(format!(
                "answer to {what} declares {announced} bytes, over the limit of {max} bytes (backends[].max_response_bytes)"
            )));
        }
        Ok(resp)
    }

    /// Reads `resp`'s body as it arrives, under the cap, giving `each`
    /// every piece.
    pub(super) async fn read_body(
        &self,
        resp: &mut crate::source::http::HttpResponse,
        what: &str,
        each: impl FnMut(&[u8]) -> Result<(), SourceError>,
    ) -> Result<usize, SourceError> {
        let max = self.max_response_bytes;
        crate::source::body::read_capped(
            resp,
            max,
            each,
            || {
                self.err(format!(
                    "answer to {what} is larger than {max} bytes (backends[].max_response_bytes)"
                ))
            },
            |e| self.err(format!("reading response: {}", without_url(&e))),
        )
        .await
    }

    /// Sends `req` and reads Prometheus's answer envelope: its `data` and
    /// warnings, or an error naming this backend and `what` was asked.
    pub(super) async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        req: crate::source::http::RequestBuilder<'_>,
        what: &str,
    ) -> Result<Answer<T>, SourceError> {
        let mut resp = self.send(req, what).await?;
        let status = resp.status().as_u16();
        let max = self.max_response_bytes;
        // Reserved for what the answer announces, never past the cap: the
        // buffer does not grow by doubling beyond it.
        let announced = resp.content_length().unwrap_or(0).min(max as u64);
        let mut body: Vec<u8> = Vec::with_capacity(announced as usize);
        self.read_body(&mut resp, what, |chunk| {
            if body.capacity() - body.len() < chunk.len() {
                let want = (body.len() + chunk.len()).max(body.capacity() * 2).min(max);
                body.reserve_exact(want - body.len());
            }
            body.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        self.envelope(&body, what, status)
    }

    /// Parses Prometheus's answer envelope from `body`.
    pub(super) fn envelope<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
        what: &str,
        status: u16,
    ) -> Result<Answer<T>, SourceError> {
        let parsed: Envelope<T> = serde_json::from_slice(body).map_err(|e| {
            self.err(format!(
                "unexpected response to {what} (HTTP {status}): {e}"
            ))
        })?;
        if parsed.status != "success" {
            return Err(self.err(format!(
                "{what}: {}: {}",
                parsed.error_type.unwrap_or_default(),
                parsed.error.unwrap_or_default()
            )));
        }
        Ok((parsed.data, parsed.warnings, parsed.infos))
    }
}

/// An HTTP error and its causes (never the URL, which may hold
/// credentials).
pub(super) fn without_url(e: &crate::source::http::HttpError) -> String {
    e.to_string()
}

/// Prometheus's answer envelope.
#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    infos: Vec<String>,
}

/// The envelope's `data` of a matrix answer (its series are read apart,
/// by `matrix::MatrixReader`).
#[derive(Deserialize)]
pub(super) struct MatrixData {
    #[serde(rename = "resultType")]
    pub(super) result_type: String,
    /// Series left in the envelope: none when the answer is read as a
    /// stream (any would mean it was not understood).
    #[serde(default)]
    pub(super) result: Vec<serde::de::IgnoredAny>,
}
