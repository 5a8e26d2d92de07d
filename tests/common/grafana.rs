//! The calls Grafana's Prometheus datasource makes when a dashboard of a
//! few panels loads and a user opens the query editor, as one sequence
//! that can be replayed against any Prometheus-compatible API and timed.
//!
//! Taken from Grafana's datasource (grafana/grafana, `pkg/promlib` and
//! `packages/grafana-prometheus`), not from promfed:
//! - the dashboard's variable `label_values(istio_requests_total, cluster)`
//!   is `GET /api/v1/label/cluster/values?match[]=...&start&end`, resolved
//!   before the panels run;
//! - each panel's query is a `POST /api/v1/query_range` (form) sent by
//!   Grafana's backend, all panels at once; the step is the interval
//!   Grafana computes (range / max data points, at least the 15 s scrape
//!   interval) and `start`/`end` are rounded down to a multiple of the step
//!   (`AlignTimeRange`); `$__rate_interval` is max(step + scrape, 4 x
//!   scrape) = 1m here; a stat panel is an instant `POST /api/v1/query`;
//! - opening the code editor starts the language provider:
//!   `GET /api/v1/status/buildinfo` (the datasource's version probe), then
//!   `GET /api/v1/label/__name__/values` with the range, then
//!   `/api/v1/metadata` and `/api/v1/labels` together; the metrics browser
//!   for the panel's metric asks `/api/v1/labels?match[]=`,
//!   `/api/v1/label/<name>/values?match[]=` and
//!   `/api/v1/series?match[]=...&limit=40000`.
//!
//! Label-browser ranges are whole minutes around the dashboard's range,
//! as Grafana's `getAdjustedInterval` makes them.

use std::time::{Duration, Instant};

use super::HarnessError;

/// Grafana's minimum interval (the datasource's scrape interval).
pub const SCRAPE_SECS: f64 = 15.0;
/// The panels' range-query expressions (`$__rate_interval` = 1m).
pub const PANELS: [&str; 4] = [
    istio_sim::SUCCESS_RATE_QUERY,
    "sum by (cluster) (rate(istio_requests_total{reporter=\"source\"}[1m]))",
    "sum by (destination_version) (rate(istio_requests_total{reporter=\"destination\",response_code=~\"5..\"}[1m]))",
    "histogram_quantile(0.99, sum by (cluster, le) (rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\"}[1m])))",
];
/// The stat panel's instant query.
pub const STAT: &str = "sum by (cluster) (rate(istio_requests_total[5m]))";

/// One HTTP call: GET with `params` in the URL, or POST with them as a
/// form.
#[derive(Debug, Clone)]
pub struct Call {
    pub post: bool,
    pub path: String,
    pub params: Vec<(&'static str, String)>,
}

fn get(path: impl Into<String>, params: &[(&'static str, String)]) -> Call {
    Call {
        post: false,
        path: path.into(),
        params: params.to_vec(),
    }
}

fn post(path: &str, params: Vec<(&'static str, String)>) -> Call {
    Call {
        post: true,
        path: path.into(),
        params,
    }
}

/// Calls sent together; the groups of a sequence run one after another.
pub type Group = Vec<Call>;

/// The sequence for a dashboard showing `[from, to]` (Unix seconds) with
/// `max_points` data points per panel.
pub fn sequence(from: f64, to: f64, max_points: f64) -> Vec<Group> {
    let step = ((to - from) / max_points).floor().max(SCRAPE_SECS);
    let (start, end) = ((from / step).floor() * step, (to / step).floor() * step);
    let (ms, me) = ((from / 60.0).floor() * 60.0, (to / 60.0).ceil() * 60.0);
    let range = [("start", format!("{ms}")), ("end", format!("{me}"))];
    let with = |extra: &[(&'static str, String)]| {
        let mut v = extra.to_vec();
        v.extend_from_slice(&range);
        v
    };
    let metric = "istio_requests_total";
    let mut panels: Group = PANELS
        .iter()
        .map(|q| {
            post(
                "/api/v1/query_range",
                vec![
                    ("query", q.to_string()),
                    ("start", format!("{start}")),
                    ("end", format!("{end}")),
                    ("step", format!("{step}")),
                ],
            )
        })
        .collect();
    panels.push(post(
        "/api/v1/query",
        vec![("query", STAT.to_string()), ("time", format!("{to}"))],
    ));
    vec![
        // The dashboard: its variable, then every panel at once.
        vec![get(
            "/api/v1/label/cluster/values",
            &with(&[("match[]", metric.into())]),
        )],
        panels,
        // The query editor opens.
        vec![get("/api/v1/status/buildinfo", &[])],
        vec![get("/api/v1/label/__name__/values", &range)],
        vec![get("/api/v1/metadata", &[]), get("/api/v1/labels", &range)],
        // The metrics browser on the panel's metric.
        vec![
            get("/api/v1/labels", &with(&[("match[]", metric.into())])),
            get(
                "/api/v1/label/destination_service/values",
                &with(&[("match[]", format!("{metric}{{reporter=\"source\"}}"))]),
            ),
            get(
                "/api/v1/series",
                &with(&[
                    (
                        "match[]",
                        format!("{metric}{{reporter=\"source\",response_code=~\"5..\"}}"),
                    ),
                    ("limit", "40000".into()),
                ]),
            ),
        ],
    ]
}

/// Runs `seq` against `base` with `client` (kept across calls, as
/// Grafana's is) and returns how long the whole sequence took. Every
/// answer must be a 200 `success`.
pub async fn run(
    client: &reqwest::Client,
    base: &str,
    seq: &[Group],
) -> Result<Duration, HarnessError> {
    let t0 = Instant::now();
    for group in seq {
        let calls = group.iter().map(|c| one(client, base, c));
        for r in futures::future::join_all(calls).await {
            r?;
        }
    }
    Ok(t0.elapsed())
}

async fn one(client: &reqwest::Client, base: &str, call: &Call) -> Result<(), HarnessError> {
    let url = format!("{base}{}", call.path);
    let req = if call.post {
        client.post(&url).form(&call.params)
    } else {
        client.get(&url).query(&call.params)
    };
    let err = |message: String| HarnessError::Query {
        what: format!(
            "{} {url} {:?}",
            if call.post { "POST" } else { "GET" },
            call.params
        ),
        message,
    };
    let resp = req.send().await.map_err(|e| err(e.to_string()))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| err(e.to_string()))?;
    let ok = status == 200
        && serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v["status"] == "success");
    if ok {
        Ok(())
    } else {
        Err(err(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        )))
    }
}
