//! Time bounds, durations and the query limits every layer shares: the
//! times Prometheus accepts, the default query timeout, the most points a
//! series may have, and Prometheus's duration syntax (`1h30m`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Smallest and largest times Prometheus accepts (its `minTime`/`maxTime`), ms.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// Most points a range query may return per series, as Prometheus.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Default and largest query timeout (Prometheus's default is 2 m); the
/// config's `limits.query_timeout` replaces it.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Deserializes a Prometheus duration (`30s`) from a config string.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_prometheus_duration(&s)
        .map(|ms| Duration::from_millis(ms as u64))
        .map_err(serde::de::Error::custom)
}

/// Parses a Prometheus duration (`1h30m`, `250ms`, `2d`) into milliseconds.
/// Units must fall in order `y w d h m s ms`, each at most once.
pub fn parse_prometheus_duration(s: &str) -> Result<i64, DurationError> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let bad = || format!("not a valid duration string: {s:?}");
    if s.is_empty() {
        return Err(bad().into());
    }
    if s == "0" {
        return Ok(0);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(bad().into());
        }
        let n: i64 = s[start..i].parse().map_err(|_| DurationError(bad()))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let idx = UNITS.iter().position(|(u, _)| *u == unit).ok_or_else(bad)?;
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(bad().into());
        }
        last_unit = Some(idx);
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Text that is not a Prometheus duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(pub String);

impl From<String> for DurationError {
    fn from(message: String) -> Self {
        DurationError(message)
    }
}
