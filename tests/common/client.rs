//! Queries a Prometheus-compatible HTTP API the way Argo Rollouts does
//! (POST form, float `time`), and reads the answers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::HarnessError;

/// One API answer: the HTTP status and the JSON body.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

/// One sample of a vector: its labels and value.
pub type VectorSample = (BTreeMap<String, String>, f64);

/// One series of a matrix: its labels and `(t, v)` points.
pub type MatrixSeries = (BTreeMap<String, String>, Vec<(f64, f64)>);

impl ApiResponse {
    /// `data.resultType`.
    pub fn result_type(&self) -> Option<&str> {
        self.body["data"]["resultType"].as_str()
    }

    /// `data.result`.
    pub fn result(&self) -> &Value {
        &self.body["data"]["result"]
    }

    /// Whether `status` is `success` with HTTP 200.
    pub fn is_success(&self) -> bool {
        self.status == 200 && self.body["status"] == "success"
    }

    /// The samples of a `vector` result (labels, value), in response order.
    pub fn vector(&self) -> Vec<VectorSample> {
        self.result()
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| Some((labels_of(&e["metric"]), value_of(&e["value"])?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value Argo Rollouts calls `result[0]`: the scalar, or the first
    /// sample of a vector.
    pub fn first_value(&self) -> Option<f64> {
        match self.result_type()? {
            "scalar" => value_of(self.result()),
            "vector" => self.vector().first().map(|(_, v)| *v),
            _ => None,
        }
    }

    /// The series of a `matrix` result: labels and `(t, v)` points.
    pub fn matrix(&self) -> Vec<MatrixSeries> {
        self.result()
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let points = e["values"]
                            .as_array()
                            .map(|vs| {
                                vs.iter()
                                    .filter_map(|p| Some((p[0].as_f64()?, value_of(p)?)))
                                    .collect()
                            })
                            .unwrap_or_default();
                        (labels_of(&e["metric"]), points)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `[t, "v"]` into v (NaN and ±Inf included).
fn value_of(p: &Value) -> Option<f64> {
    match p[1].as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s => s.parse().ok(),
    }
}

/// A `time`/`start`/`end` parameter: float seconds with milliseconds.
pub fn fmt_time(t: f64) -> String {
    format!("{t:.3}")
}

fn client() -> Result<reqwest::Client, HarnessError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| HarnessError::Query {
            what: "building client".into(),
            message: e.to_string(),
        })
}

/// POSTs `form` to `base` + `path` and returns the status and JSON body.
pub async fn post_form(
    base: &str,
    path: &str,
    form: &[(&str, String)],
) -> Result<ApiResponse, HarnessError> {
    let url = format!("{base}{path}");
    let err = |message: String| HarnessError::Query {
        what: format!("POST {url}"),
        message,
    };
    let resp = client()?
        .post(&url)
        .form(form)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    let body = serde_json::from_str(&text).map_err(|e| err(format!("{e}; body: {text}")))?;
    Ok(ApiResponse { status, body })
}

/// GETs `base` + `path` and returns the status and body text.
pub async fn get_text(base: &str, path: &str) -> Result<(u16, String), HarnessError> {
    let url = format!("{base}{path}");
    let err = |message: String| HarnessError::Query {
        what: format!("GET {url}"),
        message,
    };
    let resp = client()?
        .get(&url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    Ok((status, text))
}

/// Instant query, as Argo Rollouts sends it: `POST /api/v1/query` with form
/// `query` and float `time`.
pub async fn query(base: &str, expr: &str, time: f64) -> Result<ApiResponse, HarnessError> {
    post_form(
        base,
        "/api/v1/query",
        &[("query", expr.to_string()), ("time", fmt_time(time))],
    )
    .await
}

/// Range query: `POST /api/v1/query_range` with float `start`, `end`, `step`.
pub async fn query_range(
    base: &str,
    expr: &str,
    start: f64,
    end: f64,
    step: f64,
) -> Result<ApiResponse, HarnessError> {
    post_form(
        base,
        "/api/v1/query_range",
        &[
            ("query", expr.to_string()),
            ("start", fmt_time(start)),
            ("end", fmt_time(end)),
            ("step", format!("{step}")),
        ],
    )
    .await
}
