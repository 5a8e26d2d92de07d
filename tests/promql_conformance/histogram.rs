//! Native histograms in the test language: `{{schema:0 sum:5 count:4 buckets:[1 2 1] …}}`,
//! and the counter reset hints Prometheus's TSDB gives loaded samples back with.

use std::sync::Arc;

use promfed::model::histogram::{CounterResetHint, FloatHistogram, Span};

use super::dsl::parse_number;

/// Parses the inside of `{{ … }}`.
pub fn parse(body: &str) -> Result<FloatHistogram, String> {
    let mut h = FloatHistogram::default();
    let (mut pos, mut neg): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (mut off, mut noff) = (0i32, 0i32);
    let mut rest = body.trim();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("bad histogram field in {body:?}"))?;
        let key = rest[..colon].trim();
        rest = rest[colon + 1..].trim_start();
        let value: &str;
        if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("unclosed [ in {body:?}"))?;
            value = &r[..end];
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = &rest[..end];
            rest = rest[end..].trim_start();
        }
        let num = |v: &str| parse_number(v).ok_or_else(|| format!("bad number {v:?} in {body:?}"));
        let list =
            |v: &str| -> Result<Vec<f64>, String> { v.split_whitespace().map(num).collect() };
        match key {
            "schema" => h.schema = num(value)? as i32,
            "sum" => h.sum = num(value)?,
            "count" => h.count = num(value)?,
            "z_bucket" => h.zero_count = num(value)?,
            "z_bucket_w" => h.zero_threshold = num(value)?,
            "buckets" => pos = list(value)?,
            "n_buckets" => neg = list(value)?,
            "offset" => off = num(value)? as i32,
            "n_offset" => noff = num(value)? as i32,
            "custom_values" => h.custom_values = Arc::from(list(value)?),
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other:?}")),
                }
            }
            other => return Err(format!("unknown histogram field {other:?}")),
        }
    }
    let span = |offset: i32, n: usize| {
        if n == 0 {
            Vec::new()
        } else {
            vec![Span {
                offset,
                length: n as u32,
            }]
        }
    };
    h.positive = FloatHistogram::buckets_from_spans(&span(off, pos.len()), &pos)
        .map_err(|e| e.to_string())?;
    h.negative = FloatHistogram::buckets_from_spans(&span(noff, neg.len()), &neg)
        .map_err(|e| e.to_string())?;
    Ok(h)
}

/// Expands `{{a}}`, `{{a}}xN`, `{{a}}+{{b}}xN` and `{{a}}-{{b}}xN` into histograms.
pub fn expand(item: &str) -> Result<Vec<FloatHistogram>, String> {
    let close = item
        .find("}}")
        .ok_or_else(|| format!("bad histogram {item:?}"))?;
    let base = parse(&item[2..close])?;
    let rest = &item[close + 2..];
    if rest.is_empty() {
        return Ok(vec![base]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().map_err(|_| format!("bad repeat in {item:?}"))?;
        return Ok(vec![base; n + 1]);
    }
    let sign = match rest.as_bytes().first() {
        Some(b'+') => 1.0,
        Some(b'-') => -1.0,
        _ => return Err(format!("bad histogram series {item:?}")),
    };
    let inc_end = rest
        .rfind("}}x")
        .ok_or_else(|| format!("bad histogram series {item:?}"))?;
    let inc = parse(rest[1..inc_end].trim_start_matches("{{"))?;
    let n: usize = rest[inc_end + 3..]
        .parse()
        .map_err(|_| format!("bad repeat in {item:?}"))?;
    let mut out = vec![base.clone()];
    let mut cur = base;
    for _ in 0..n {
        if cur.schema > inc.schema {
            return Err(format!(
                "error combining histograms: cannot merge from schema {} to {}",
                inc.schema, cur.schema
            ));
        }
        let mut next = cur.clone();
        if sign > 0.0 {
            next.add(&inc).map_err(|e| e.to_string())?;
        } else {
            next.sub(&inc).map_err(|e| e.to_string())?;
        }
        out.push(next.clone());
        cur = next;
    }
    Ok(out)
}

/// The counter reset hint a histogram sample reads back with from
/// Prometheus's TSDB (chunk headers): gauges stay gauges; the first
/// histogram of a chunk says CounterReset when it was cut for a reset,
/// Unknown when cut for another reason (a float sample before it, a new
/// schema or zero threshold); later ones say NotCounterReset.
pub fn tsdb_hint(prev: Option<&FloatHistogram>, h: &FloatHistogram) -> CounterResetHint {
    use CounterResetHint::*;
    if h.counter_reset_hint == Gauge {
        return Gauge;
    }
    if h.counter_reset_hint == CounterReset {
        return CounterReset;
    }
    let Some(p) = prev else {
        return Unknown;
    };
    if h.count < p.count {
        return CounterReset;
    }
    if h.schema != p.schema || h.zero_threshold != p.zero_threshold {
        return Unknown;
    }
    if h.uses_custom_buckets() && h.custom_values[..] != p.custom_values[..] {
        return CounterReset;
    }
    if h.zero_count < p.zero_count {
        return CounterReset;
    }
    let mut probe = h.clone();
    probe.counter_reset_hint = Unknown;
    if probe.detect_reset(p) {
        CounterReset
    } else {
        NotCounterReset
    }
}
