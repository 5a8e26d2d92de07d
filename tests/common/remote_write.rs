//! A small remote-write v1 client (a snappy-compressed protobuf
//! `WriteRequest`) and Prometheus 3.8 servers that receive it: how tests
//! put native histograms, which no text format backfills, into a real
//! Prometheus head.

use promfed::source::remote_read::prompb;
use prost::Message;

use super::{HarnessError, PromServer, TempDir, Tools, READY_TIMEOUT};

/// Starts a Prometheus 3.8 with `--web.enable-remote-write-receiver`, an
/// empty TSDB and `external_labels`; it has its own directory and stops on
/// drop.
pub fn start_receiver(
    name: &str,
    external_labels: &[(&str, &str)],
) -> Result<PromServer, HarnessError> {
    let tools = Tools::v3()?;
    let dir = TempDir::new(&format!("promfed-rw-{name}"))?;
    let tsdb = dir.path().join("tsdb");
    let mut server = PromServer::start_with_args(
        &tools,
        name,
        &tsdb,
        external_labels,
        dir.path(),
        &["--web.enable-remote-write-receiver"],
    )?;
    server.own_dir(dir);
    server.wait_ready(READY_TIMEOUT)?;
    Ok(server)
}

/// Labels as the message carries them.
pub fn labels(pairs: &[(&str, &str)]) -> Vec<prompb::Label> {
    let mut v: Vec<prompb::Label> = pairs
        .iter()
        .map(|(n, v)| prompb::Label {
            name: (*n).to_string(),
            value: (*v).to_string(),
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Sends `series` to `base`'s `/api/v1/write` in requests of at most
/// 50 series; fails on any status but 2xx.
pub async fn write(base: &str, series: &[prompb::TimeSeries]) -> Result<(), HarnessError> {
    let client = reqwest::Client::new();
    for part in series.chunks(50) {
        let request = prompb::WriteRequest {
            timeseries: part.to_vec(),
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|e| HarnessError::Query {
                what: "remote write".into(),
                message: e.to_string(),
            })?;
        let response = client
            .post(format!("{base}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .timeout(std::time::Duration::from_secs(30))
            .body(body)
            .send()
            .await
            .map_err(|e| HarnessError::Query {
                what: format!("remote write to {base}"),
                message: e.to_string(),
            })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(HarnessError::Query {
                what: format!("remote write to {base}"),
                message: format!("{status}: {text}"),
            });
        }
    }
    Ok(())
}
