//! Reads raw samples from any Prometheus-compatible HTTP API by asking
//! `/api/v1/query` for a range selector at the window's end.

mod answer;
mod matrix;

use std::time::Duration;

use futures::future::BoxFuture;
use promql_parser::label::{MatchOp, Matcher};

use super::{ApiData, MetaOutput, MetaQuery, Select, SelectOutput, Source, SourceError};
use crate::model::Labels;

/// Largest answer body read from a backend's HTTP API by default (JSON is
/// about 25 bytes a sample: some 5 M samples); `backends[].max_response_bytes`.
pub const MAX_RESPONSE_BYTES: usize = 128 << 20;

/// Longest URL query string sent by GET; longer parameters go as a POST
/// form where the endpoint takes one (Prometheus refuses URLs over 64 KiB,
/// many proxies far less).
pub const MAX_GET_QUERY_BYTES: usize = 4096;

/// A backend read through the Prometheus HTTP query API.
#[derive(Debug, Clone)]
pub struct PrometheusHttpSource {
    name: String,
    base: String,
    client: super::http::BackendHttp,
    timeout: Duration,
    max_response_bytes: usize,
    /// Whether metadata and other API answers may come gzipped.
    metadata_gzip: bool,
}

impl PrometheusHttpSource {
    /// `base` is the API root, e.g. `http://prometheus:9090` (no trailing `/api/v1`).
    pub fn new(
        name: &str,
        base: &str,
        client: super::http::BackendHttp,
        timeout: Duration,
    ) -> Self {
        PrometheusHttpSource {
            name: name.to_string(),
            base: base.trim_end_matches('/').to_string(),
            client,
            timeout,
            max_response_bytes: MAX_RESPONSE_BYTES,
            metadata_gzip: false,
        }
    }

    /// Lets metadata and other API answers (not sample reads) come gzipped
    /// (`backends[].metadata_gzip`).
    pub fn with_metadata_gzip(mut self, on: bool) -> Self {
        self.metadata_gzip = on;
        self
    }

    /// Sets the largest answer body read (`backends[].max_response_bytes`).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max.max(1);
        self
    }

    fn err(&self, message: impl Into<String>) -> SourceError {
        SourceError::Backend {
            backend: self.name.clone(),
            message: message.into(),
        }
    }

    async fn fetch(&self, sel: &Select) -> Result<SelectOutput, SourceError> {
        if sel.end_ms < sel.start_ms {
            return Ok(SelectOutput::default());
        }
        // A range selector at `end` covers (end - range, end]; one extra
        // millisecond makes it cover `start` too (and Prometheus 2's closed
        // window then includes start-1, which is filtered out below).
        let range_ms = sel.end_ms - sel.start_ms + 1;
        let query = format!("{}[{}ms]", selector_text(&sel.matchers), range_ms);
        let time = format_api_time(sel.end_ms);
        let req = self
            .client
            .post(format!("{}/api/v1/query", self.base))
            .form(&[("query", query.as_str()), ("time", time.as_str())]);
        let what = "/api/v1/query";
        let mut resp = self.send(req, what).await?;
        let status = resp.status().as_u16();
        let unexpected = |e: &dyn std::fmt::Display| {
            self.err(format!(
                "unexpected response to {what} (HTTP {status}): {e}"
            ))
        };
        // The series are decoded one by one as the answer arrives, their
        // samples charged to the query's budget before they are kept.
        let mut reader = matrix::MatrixReader::new(sel.start_ms, sel.end_ms);
        self.read_body(&mut resp, what, |piece| {
            reader.feed(piece).map_err(|e| match e {
                matrix::MatrixError::Budget(e) => e,
                matrix::MatrixError::Held(e) => {
                    SourceError::Limit(format!("backend {}: query API answer: {e}", self.name))
                }
                e => unexpected(&e),
            })
        })
        .await?;
        let answer = reader.finish().map_err(|e| match e {
            matrix::MatrixError::Budget(e) => e,
            e => unexpected(&e),
        })?;
        let (data, mut warnings, _) =
            self.envelope::<answer::MatrixData>(&answer.envelope, what, status)?;
        let data = data.ok_or_else(|| self.err("success response without data"))?;
        if data.result_type != "matrix" {
            return Err(self.err(format!(
                "expected a matrix for a range selector, got {}",
                data.result_type
            )));
        }
        if !data.result.is_empty() {
            return Err(unexpected(
                &"data.result could not be read series by series",
            ));
        }
        let mut series = answer.series;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        if answer.histograms > 0 {
            // Never a silently smaller answer: say what was left out.
            warnings.push(format!(
                "backend {}: skipped {} native histogram sample(s): the query_api protocol cannot carry them exactly (use remote_read or thanos_store)",
                self.name, answer.histograms
            ));
        }
        Ok(SelectOutput { series, warnings })
    }
}

impl PrometheusHttpSource {
    /// Runs `fut` under this backend's deadline.
    async fn deadline<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Timeout {
                backend: self.name.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            }),
        }
    }

    /// Asks `path` for `params` and returns the answer's `data` and
    /// warnings: by GET, or by POST form when the parameters are long and
    /// the endpoint takes POST.
    async fn get_data(
        &self,
        path: &str,
        params: &[(String, String)],
    ) -> Result<ApiData, SourceError> {
        let url = format!("{}{}", self.base, path);
        let req = if takes_post(path) && encoded_len(params) > MAX_GET_QUERY_BYTES {
            self.client.post(url).form(params)
        } else {
            self.client.get(url).query(params)
        };
        // The client offers gzip unless a request says otherwise. Query
        // answers (pushed-down sub-queries: one JSON point per series and
        // step, label sets repeated) are always taken gzipped, as sample
        // reads are.
        let evaluates = matches!(path, "/api/v1/query" | "/api/v1/query_range");
        let req = if self.metadata_gzip || evaluates {
            req
        } else {
            req.header(http::header::ACCEPT_ENCODING, "identity")
        };
        let (data, warnings, infos) = self.exchange::<serde_json::Value>(req, path).await?;
        Ok(ApiData {
            data: data.unwrap_or_default(),
            warnings,
            infos,
        })
    }

    fn meta_params(q: &MetaQuery) -> Vec<(String, String)> {
        let mut params = Self::meta_params_unlimited(q);
        if q.limit > 0 {
            params.push(("limit".into(), q.limit.to_string()));
        }
        params
    }

    fn meta_params_unlimited(q: &MetaQuery) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = q
            .matchers
            .iter()
            .map(|m| ("match[]".to_string(), selector_text(m)))
            .collect();
        if q.start_ms > crate::model::time::MIN_TIME_MS {
            params.push(("start".into(), format_api_time(q.start_ms)));
        }
        if q.end_ms < crate::model::time::MAX_TIME_MS {
            params.push(("end".into(), format_api_time(q.end_ms)));
        }
        params
    }

    fn typed<T: serde::de::DeserializeOwned>(
        &self,
        d: ApiData,
        what: &str,
    ) -> Result<MetaOutput<T>, SourceError> {
        let items: Vec<T> = serde_json::from_value(d.data)
            .map_err(|e| self.err(format!("unexpected {what} answer: {e}")))?;
        Ok(MetaOutput {
            items,
            warnings: d.warnings,
        })
    }
}

impl Source for PrometheusHttpSource {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(self.deadline(self.fetch(sel)))
    }

    fn series<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<Labels>, SourceError>> {
        Box::pin(self.deadline(async move {
            let mut q = q.clone();
            if q.matchers.is_empty() {
                q.matchers = vec![vec![super::any_series_matcher()]];
            }
            let d = self
                .get_data("/api/v1/series", &Self::meta_params(&q))
                .await?;
            let raw: MetaOutput<std::collections::HashMap<String, String>> =
                self.typed(d, "series")?;
            let mut items: Vec<Labels> = raw.items.into_iter().map(Labels::from_pairs).collect();
            items.sort();
            items.dedup();
            Ok(MetaOutput {
                items,
                warnings: raw.warnings,
            })
        }))
    }

    fn label_names<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.deadline(async move {
            let d = self
                .get_data("/api/v1/labels", &Self::meta_params(q))
                .await?;
            self.typed(d, "labels")
        }))
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        Box::pin(self.deadline(async move {
            let params = Self::meta_params(q);
            if encoded_len(&params) > MAX_GET_QUERY_BYTES {
                // Label values takes GET only: too many matchers for a URL
                // are asked of the series endpoint (by POST) instead.
                let d = self
                    .get_data("/api/v1/series", &Self::meta_params_unlimited(q))
                    .await?;
                let raw: MetaOutput<std::collections::HashMap<String, String>> =
                    self.typed(d, "series")?;
                let mut items: Vec<String> = raw
                    .items
                    .into_iter()
                    .filter_map(|mut l| l.remove(name))
                    .collect();
                items.sort();
                items.dedup();
                if q.limit > 0 {
                    items.truncate(q.limit);
                }
                return Ok(MetaOutput {
                    items,
                    warnings: raw.warnings,
                });
            }
            let path = format!("/api/v1/label/{}/values", escape_label_name(name));
            let d = self.get_data(&path, &params).await?;
            self.typed(d, "label values")
        }))
    }

    fn api_get<'a>(
        &'a self,
        path: &'a str,
        params: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<ApiData>, SourceError>> {
        Box::pin(self.deadline(async move { self.get_data(path, params).await.map(Some) }))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.deadline(async move {
            self.get_data("/api/v1/query", &[("query".to_string(), "1".to_string())])
                .await
                .map(|_| ())
        }))
    }
}

/// A Prometheus backend whose samples come from another source (remote
/// read) and whose metadata comes from its HTTP API.
pub struct SamplesVia<S> {
    pub samples: S,
    pub api: PrometheusHttpSource,
}

impl<S: Source> Source for SamplesVia<S> {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        self.samples.select(sel)
    }

    fn select_many<'a>(
        &'a self,
        sels: &'a [Select],
    ) -> BoxFuture<'a, Vec<Result<SelectOutput, SourceError>>> {
        self.samples.select_many(sels)
    }

    fn batch_limit(&self) -> usize {
        self.samples.batch_limit()
    }

    fn series<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<Labels>, SourceError>> {
        self.api.series(q)
    }

    fn label_names<'a>(
        &'a self,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        self.api.label_names(q)
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        q: &'a MetaQuery,
    ) -> BoxFuture<'a, Result<MetaOutput<String>, SourceError>> {
        self.api.label_values(name, q)
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), SourceError>> {
        self.api.probe()
    }

    fn api_get<'a>(
        &'a self,
        path: &'a str,
        params: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<Option<ApiData>, SourceError>> {
        self.api.api_get(path, params)
    }
}

/// A label name as a URL path segment: legacy names as they are, others in
/// Prometheus's `U__` escaping (`_` doubled, other characters `_<hex>_`).
pub fn escape_label_name(name: &str) -> String {
    if crate::config::is_valid_label_name(name) {
        return name.to_string();
    }
    let mut out = String::from("U__");
    for c in name.chars() {
        match c {
            '_' => out.push_str("__"),
            c if c.is_ascii_alphanumeric() => out.push(c),
            c => out.push_str(&format!("_{:x}_", c as u32)),
        }
    }
    out
}

/// Reverses [`escape_label_name`]; names without the `U__` prefix are
/// returned as they are, and so are malformed escapes.
pub fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        let mut closed = false;
        for h in chars.by_ref() {
            if h == '_' {
                closed = true;
                break;
            }
            hex.push(h);
        }
        match (
            closed,
            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32),
        ) {
            (true, Some(ch)) => out.push(ch),
            _ => return name.to_string(),
        }
    }
    out
}

/// Whether Prometheus answers `path` by POST form as well as GET.
fn takes_post(path: &str) -> bool {
    matches!(
        path,
        "/api/v1/series" | "/api/v1/labels" | "/api/v1/query_exemplars" | "/api/v1/query"
    )
}

/// The length of `params` as a URL query string, roughly (each byte that
/// needs escaping counted as three).
fn encoded_len(params: &[(String, String)]) -> usize {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { 1 } else { 3 })
            .sum::<usize>()
    };
    params.iter().map(|(k, v)| enc(k) + enc(v) + 2).sum()
}

/// Parses a sample value as Prometheus writes it (`NaN`, `+Inf`, `-Inf`, decimals).
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Formats milliseconds as the API's float seconds (`1724000000.123`).
pub fn format_api_time(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// Renders matchers as a PromQL selector, e.g. `{__name__="up",job=~"a.*"}`.
pub fn selector_text(matchers: &[Matcher]) -> String {
    let mut out = String::from("{");
    let mut any_non_empty = false;
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if crate::config::is_valid_label_name(&m.name) {
            out.push_str(&m.name);
        } else {
            out.push_str(&quote(&m.name));
        }
        out.push_str(match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        });
        out.push_str(&quote(&m.value));
        any_non_empty |= !m.is_match("");
    }
    if !any_non_empty {
        // Prometheus refuses selectors whose every matcher matches "".
        if !matchers.is_empty() {
            out.push(',');
        }
        out.push_str("__name__=~\".+\"");
    }
    out.push('}');
    out
}

/// Quotes a string as a PromQL double-quoted literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
