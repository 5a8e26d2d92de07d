//! Reads raw samples from any Prometheus-compatible HTTP API by asking
//! `/api/v1/query` for a range selector at the window's end.

use std::time::Duration;

use futures::future::BoxFuture;
use promql_parser::label::{MatchOp, Matcher};
use serde::Deserialize;

use super::{Select, SelectOutput, Source, SourceError};
use crate::model::{Labels, Sample, Series};

/// A backend read through the Prometheus HTTP query API.
#[derive(Debug, Clone)]
pub struct PrometheusHttpSource {
    name: String,
    base: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl PrometheusHttpSource {
    /// `base` is the API root, e.g. `http://prometheus:9090` (no trailing `/api/v1`).
    pub fn new(name: &str, base: &str, client: reqwest::Client, timeout: Duration) -> Self {
        PrometheusHttpSource {
            name: name.to_string(),
            base: base.trim_end_matches('/').to_string(),
            client,
            timeout,
        }
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
        let url = format!("{}/api/v1/query", self.base);
        let resp = self
            .client
            .post(&url)
            .form(&[("query", query.as_str()), ("time", time.as_str())])
            .send()
            .await
            .map_err(|e| self.err(format!("request failed: {}", without_url(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.err(format!("reading response: {}", without_url(&e))))?;
        let parsed: ApiResponse = serde_json::from_slice(&body).map_err(|e| {
            self.err(format!(
                "unexpected response (HTTP {}): {e}",
                status.as_u16()
            ))
        })?;
        if parsed.status != "success" {
            return Err(self.err(format!(
                "{}: {}",
                parsed.error_type.unwrap_or_default(),
                parsed.error.unwrap_or_default()
            )));
        }
        let data = parsed
            .data
            .ok_or_else(|| self.err("success response without data"))?;
        if data.result_type != "matrix" {
            return Err(self.err(format!(
                "expected a matrix for a range selector, got {}",
                data.result_type
            )));
        }
        let mut series = Vec::with_capacity(data.result.len());
        for s in data.result {
            let labels = Labels::from_pairs(s.metric);
            let mut samples = Vec::with_capacity(s.values.len());
            for (ts, v) in s.values {
                let t = (ts * 1000.0).round() as i64;
                if t < sel.start_ms || t > sel.end_ms {
                    continue;
                }
                let v =
                    parse_value(&v).ok_or_else(|| self.err(format!("bad sample value {v:?}")))?;
                samples.push(Sample { t, v });
            }
            if !samples.is_empty() {
                series.push(Series { labels, samples });
            }
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(SelectOutput {
            series,
            warnings: parsed.warnings,
        })
    }
}

impl Source for PrometheusHttpSource {
    fn select<'a>(&'a self, sel: &'a Select) -> BoxFuture<'a, Result<SelectOutput, SourceError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.fetch(sel)).await {
                Ok(r) => r,
                Err(_) => Err(SourceError::Timeout {
                    backend: self.name.clone(),
                    timeout_ms: self.timeout.as_millis() as u64,
                }),
            }
        })
    }
}

/// Hides the URL (which may hold credentials) from a reqwest error.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(u) = e.url() {
        msg = msg.replace(u.as_str(), "<backend>");
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<ApiSeries>,
}

#[derive(Deserialize)]
struct ApiSeries {
    metric: std::collections::HashMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
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
mod tests {
    use super::*;

    #[test]
    fn selector_text_round_trips_through_the_parser() {
        let cases = [
            r#"{__name__="up",job=~"a.*|b\\d"}"#,
            r#"{__name__="x",path="say \"hi\"\\n"}"#,
            r#"{job!="",env!~"dev"}"#,
        ];
        for c in cases {
            let expr = promql_parser::parser::parse(c).expect("test selector parses");
            let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
                panic!("not a selector: {c}");
            };
            let text = selector_text(&vs.matchers.matchers);
            let again = promql_parser::parser::parse(&text).expect("rendered selector parses");
            let promql_parser::parser::Expr::VectorSelector(vs2) = again else {
                panic!("not a selector: {text}");
            };
            assert_eq!(vs.matchers.matchers, vs2.matchers.matchers, "{c} -> {text}");
        }
    }

    #[test]
    fn all_empty_matchers_get_a_name_matcher() {
        let m = vec![Matcher::new(MatchOp::Equal, "job", "")];
        assert_eq!(selector_text(&m), r#"{job="",__name__=~".+"}"#);
    }

    #[test]
    fn api_time_has_millisecond_precision() {
        assert_eq!(format_api_time(1_724_000_000_123), "1724000000.123");
        assert_eq!(format_api_time(5), "0.005");
        assert_eq!(format_api_time(-1500), "-1.500");
    }

    #[test]
    fn special_values() {
        assert!(parse_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("1.5e-7"), Some(1.5e-7));
        assert_eq!(parse_value("bogus"), None);
    }
}
