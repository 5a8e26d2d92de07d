//! Takes one measurement of a Prometheus metric as Argo Rollouts' provider
//! does: an instant query (POST, GET on 405/501), the answer's values as
//! `result`, then the metric's conditions.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value as Json;

use super::condition::{evaluate_result, Val};
use super::template::Metric;
use super::Phase;

/// One measurement, as Argo records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Measurement {
    pub metric: String,
    /// When it was taken (the query's `time`), Unix milliseconds.
    pub at_ms: i64,
    pub phase: Phase,
    /// The values as Argo prints them (`[0.97]`); empty on Error.
    pub value: String,
    pub message: String,
    /// Warnings of the answer (Argo keeps them in the metadata).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Argo's provider timeout when the metric sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)` as `model.SampleValue`
/// prints it.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's Display is the shortest round-trip form without exponent.
        format!("{f}")
    }
}

/// The query's `time` as client_golang sends it.
fn go_time(at_ms: i64) -> String {
    go_float(at_ms as f64 / 1000.0)
}

/// A Prometheus API answer's body, as far as a measurement reads it.
#[derive(Deserialize)]
pub struct ApiBody {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// An answer's `data`.
#[derive(Deserialize)]
pub struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Json,
}

/// Why a measurement's query gave no answer: the message Argo shows, as
/// client_golang words it.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad_response: readObjectStart: {0}")]
    BadJson(#[from] serde_json::Error),
    #[error("{error_type}: {error}")]
    Api { error_type: String, error: String },
    #[error("bad_response: no data in the answer")]
    NoData,
    #[error("{method} {url:?}: {chain}")]
    Send {
        method: &'static str,
        url: String,
        chain: String,
    },
    #[error("reading the answer: {0}")]
    Read(reqwest::Error),
    #[error("server_error: server error: {0}")]
    Server(u16),
    #[error("client_error: client error: {0}")]
    Client(u16),
    #[error("context deadline exceeded")]
    Timeout,
}

/// Why an answer's `data` gives no `result`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed sample in the answer")]
    MalformedSample,
    #[error("bad sample value {0:?}")]
    BadValue(String),
    #[error("Prometheus metric type not supported")]
    UnsupportedType,
}

/// What the query gave, or why it gave nothing.
pub type Answer = Result<(Data, Vec<String>), QueryError>;

impl ApiBody {
    /// The answer in a JSON body, read as client_golang reads it.
    pub fn read(body: &[u8]) -> Answer {
        let parsed: ApiBody = serde_json::from_slice(body)?;
        if parsed.status == "error" {
            return Err(QueryError::Api {
                error_type: parsed.error_type.unwrap_or_default(),
                error: parsed.error.unwrap_or_default(),
            });
        }
        parsed
            .data
            .map(|d| (d, parsed.warnings))
            .ok_or(QueryError::NoData)
    }
}

/// Where a measurement's instant query goes: a Prometheus HTTP API
/// ([`HttpApi`]), or promfed's own engine when the server runs an analysis.
pub trait QueryApi: Send + Sync {
    fn instant<'a>(
        &'a self,
        query: &'a str,
        at_ms: i64,
        headers: &'a [(String, String)],
    ) -> BoxFuture<'a, Answer>;
}

/// A Prometheus HTTP API at `address`, asked as Argo's provider asks it.
pub struct HttpApi {
    pub client: reqwest::Client,
    pub address: String,
}

impl QueryApi for HttpApi {
    fn instant<'a>(
        &'a self,
        q: &'a str,
        at_ms: i64,
        headers: &'a [(String, String)],
    ) -> BoxFuture<'a, Answer> {
        Box::pin(query(&self.client, &self.address, q, at_ms, headers))
    }
}

/// Takes the measurement of `metric` at `at_ms` through `api`.
pub async fn measure(api: &dyn QueryApi, metric: &Metric, at_ms: i64) -> Measurement {
    let mut m = Measurement {
        metric: metric.name.clone(),
        at_ms,
        phase: Phase::Error,
        value: String::new(),
        message: String::new(),
        warnings: Vec::new(),
    };
    let Some(prom) = &metric.provider.prometheus else {
        m.message = "analyze runs only Prometheus metrics".into();
        return m;
    };
    if prom.range_query.is_some() {
        m.message = "rangeQuery is not supported by promfed analyze".into();
        return m;
    }
    let timeout = match prom.timeout {
        Some(t) if t < 0 => {
            m.message = "prometheus timeout should not be negative".into();
            return m;
        }
        Some(t) => Duration::from_secs(t as u64),
        None => DEFAULT_TIMEOUT,
    };
    let headers: Vec<(String, String)> = prom
        .headers
        .iter()
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    let answer = tokio::time::timeout(timeout, api.instant(&prom.query, at_ms, &headers))
        .await
        .unwrap_or(Err(QueryError::Timeout));
    let (data, warnings) = match answer {
        Ok(a) => a,
        Err(e) => {
            m.message = e.to_string();
            return m;
        }
    };
    let (result, value) = match decode(&data) {
        Ok(r) => r,
        Err(e) => {
            m.message = e.to_string();
            return m;
        }
    };
    match evaluate_result(
        &result,
        &metric.success_condition,
        &metric.failure_condition,
    ) {
        Ok(phase) => {
            m.phase = phase;
            m.value = value;
            m.warnings = warnings;
        }
        Err(e) => m.message = e.to_string(),
    }
    m
}

/// `processResponse`: `result` and its printed form.
fn decode(data: &Data) -> Result<(Val, String), DecodeError> {
    let num = |v: &Json| -> Result<f64, DecodeError> {
        let s = v
            .get(1)
            .and_then(Json::as_str)
            .ok_or(DecodeError::MalformedSample)?;
        crate::source::prometheus::parse_value(s)
            .ok_or_else(|| DecodeError::BadValue(s.to_string()))
    };
    let empty = Vec::new();
    let items = data.result.as_array().unwrap_or(&empty);
    let values: Vec<f64> = match data.result_type.as_str() {
        "scalar" => {
            let f = num(&data.result)?;
            return Ok((Val::Float(f), go_float(f)));
        }
        "vector" => items
            .iter()
            .map(|s| num(s.get("value").unwrap_or(&Json::Null)))
            .collect::<Result<_, _>>()?,
        "matrix" => {
            let mut out = Vec::new();
            for s in items {
                for p in s.get("values").and_then(Json::as_array).unwrap_or(&empty) {
                    out.push(num(p)?);
                }
            }
            out
        }
        _ => return Err(DecodeError::UnsupportedType),
    };
    let printed = format!(
        "[{}]",
        values
            .iter()
            .map(|v| go_float(*v))
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok((
        Val::List(values.into_iter().map(Val::Float).collect()),
        printed,
    ))
}

/// POSTs the instant query (form), falling back to GET as client_golang
/// does; errors read as client_golang reports them.
async fn query(
    client: &reqwest::Client,
    address: &str,
    q: &str,
    at_ms: i64,
    headers: &[(String, String)],
) -> Answer {
    let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
    let form = [("query", q.to_string()), ("time", go_time(at_ms))];
    let with_headers = |mut rb: reqwest::RequestBuilder| {
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        rb
    };
    let mut resp = with_headers(client.post(&url).form(&form))
        .send()
        .await
        .map_err(|e| QueryError::Send {
            method: "Post",
            url: url.clone(),
            chain: error_chain(&e),
        })?;
    if matches!(resp.status().as_u16(), 403 | 405 | 501) {
        resp = with_headers(client.get(&url).query(&form))
            .send()
            .await
            .map_err(|e| QueryError::Send {
                method: "Get",
                url: url.clone(),
                chain: error_chain(&e),
            })?;
    }
    let code = resp.status().as_u16();
    let body = resp.bytes().await.map_err(QueryError::Read)?;
    let json_ok = (200..300).contains(&code) || code == 400 || code == 422;
    if !json_ok {
        return Err(if code >= 500 {
            QueryError::Server(code)
        } else {
            QueryError::Client(code)
        });
    }
    ApiBody::read(&body)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_go_does() {
        // Go: strconv.FormatFloat(f, 'f', -1, 64).
        assert_eq!(go_float(0.9731), "0.9731");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(1e-7), "0.0000001");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_time(1_724_000_000_123), "1724000000.123");
    }

    #[test]
    fn vectors_matrices_and_scalars_decode_like_the_provider() {
        let d = |t: &str, r: &str| Data {
            result_type: t.into(),
            result: serde_json::from_str(r).expect("json"),
        };
        let (v, s) = decode(&d(
            "vector",
            r#"[{"metric":{},"value":[1,"0.5"]},{"metric":{},"value":[1,"NaN"]}]"#,
        ))
        .expect("ok");
        assert_eq!(s, "[0.5,NaN]");
        assert!(matches!(v, Val::List(ref xs) if xs.len() == 2));
        let (_, s) = decode(&d(
            "matrix",
            r#"[{"metric":{},"values":[[1,"1"],[2,"2"]]}]"#,
        ))
        .expect("ok");
        assert_eq!(s, "[1,2]");
        let (v, s) = decode(&d("scalar", r#"[1,"+Inf"]"#)).expect("ok");
        assert_eq!((v, s.as_str()), (Val::Float(f64::INFINITY), "+Inf"));
        assert_eq!(decode(&d("vector", "[]")).expect("ok").1, "[]");
        assert!(decode(&d("string", r#"[1,"x"]"#)).is_err());
    }
}
