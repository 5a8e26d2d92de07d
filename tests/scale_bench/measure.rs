//! What the scale benchmark reads off processes: CPU time and memory from
//! `/proc`, counters from `/metrics` pages.

use std::time::Duration;

use super::common::{self, HarnessError};

/// utime + stime of `pid` (every thread, living or ended), clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// The CPU ticks of several processes together.
pub fn cpu_ticks_all(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

pub fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `/proc/<pid>/status` field, kB.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sum of a metric's samples on a `/metrics` page whose line passes `keep`.
async fn metric_where(
    base: &str,
    name: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<f64, HarnessError> {
    let (_, text) = common::client::get_text(base, "/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter(|l| keep(l))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A metric's value (summed over its series) from a `/metrics` page.
pub async fn metric(base: &str, name: &str) -> Result<f64, HarnessError> {
    metric_where(base, name, |_| true).await
}

/// Bytes the Prometheus servers at `urls` have sent so far (their
/// `prometheus_http_response_size_bytes_sum`, every handler but
/// `/metrics`): remote read and query API answers alike, as sent.
pub async fn sent_bytes(urls: &[&str]) -> Result<f64, HarnessError> {
    let mut total = 0.0;
    for u in urls {
        total += metric_where(u, "prometheus_http_response_size_bytes_sum", |l| {
            !l.contains("handler=\"/metrics\"")
        })
        .await?;
    }
    Ok(total)
}

/// Connections the Prometheus servers at `urls` have accepted so far
/// (`net_conntrack_listener_conn_accepted_total`).
pub async fn accepted_connections(urls: &[&str]) -> Result<f64, HarnessError> {
    let mut total = 0.0;
    for u in urls {
        total += metric(u, "net_conntrack_listener_conn_accepted_total").await?;
    }
    Ok(total)
}
