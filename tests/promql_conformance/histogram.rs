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
/// Prometheus's TSDB: gauges stay gauges; the first histogram of a chunk
/// reads back Unknown (a chunk is cut by a float before it, a change to or
/// from a gauge, an explicit or detected counter reset, a new schema, zero
/// threshold or custom bounds); later ones in a chunk NotCounterReset.
pub fn tsdb_hint(prev: Option<&FloatHistogram>, h: &FloatHistogram) -> CounterResetHint {
    use CounterResetHint::*;
    if h.counter_reset_hint == Gauge {
        return Gauge;
    }
    let Some(p) = prev else {
        return Unknown;
    };
    let new_chunk = h.counter_reset_hint == CounterReset
        || p.counter_reset_hint == Gauge
        || h.count < p.count
        || h.schema != p.schema
        || h.zero_threshold != p.zero_threshold
        || (h.uses_custom_buckets() && h.custom_values[..] != p.custom_values[..])
        || h.zero_count < p.zero_count
        || {
            let mut probe = h.clone();
            probe.counter_reset_hint = Unknown;
            probe.detect_reset(p)
        };
    if new_chunk {
        Unknown
    } else {
        NotCounterReset
    }
}

/// Classic histogram series (`X_bucket{le}`, `X_count`, `X_sum`) converted
/// into native histograms with custom buckets named `X`, as promqltest's
/// `load_with_nhcb` does (Prometheus's `convertnhcb`). Samples that do not
/// make a valid histogram are left out.
pub fn nhcb_from_classic(
    series: &[(promfed::model::Labels, Vec<(i64, super::dsl::Point)>)],
) -> Vec<(promfed::model::Labels, Vec<(i64, FloatHistogram)>)> {
    use std::collections::BTreeMap;

    use promfed::model::{Labels, METRIC_NAME};

    use super::dsl::Point;

    #[derive(Default)]
    struct Temp {
        /// (le, cumulative count) sorted by le; the first value for an le wins.
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
        bad: bool,
    }
    let mut by_series: BTreeMap<Labels, BTreeMap<i64, Temp>> = BTreeMap::new();
    for (labels, points) in series {
        let Some(name) = labels.metric_name() else {
            continue;
        };
        let (kind, base) = if let Some(b) = name.strip_suffix("_bucket") {
            (0, b)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (1, b)
        } else if let Some(b) = name.strip_suffix("_count") {
            (2, b)
        } else {
            continue;
        };
        let le = if kind == 0 {
            match labels.get("le").and_then(|v| v.parse::<f64>().ok()) {
                Some(le) if !le.is_nan() => Some(le),
                _ => continue,
            }
        } else {
            None
        };
        let mut key = labels.clone();
        key.remove("le");
        key.set(METRIC_NAME, base);
        let temps = by_series.entry(key).or_default();
        for (t, p) in points {
            let Point::Float(v) = p else { continue };
            let temp = temps.entry(*t).or_default();
            match (kind, le) {
                (0, Some(le)) => {
                    if *v < 0.0 {
                        temp.bad = true;
                    }
                    let i = temp.buckets.partition_point(|b| b.0 < le);
                    if temp.buckets.get(i).is_some_and(|b| b.0 == le) {
                        continue;
                    }
                    let below = i.checked_sub(1).map(|j| temp.buckets[j].1);
                    let above = temp.buckets.get(i).map(|b| b.1);
                    if below.is_some_and(|c| *v < c) || above.is_some_and(|c| *v > c) {
                        temp.bad = true;
                    }
                    temp.buckets.insert(i, (le, *v));
                }
                (1, _) => temp.sum = *v,
                _ => {
                    if *v < 0.0 {
                        temp.bad = true;
                    }
                    temp.count = Some(*v);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (labels, temps) in by_series {
        let mut pts = Vec::new();
        for (t, mut temp) in temps {
            if temp.bad {
                continue;
            }
            let count = temp
                .count
                .unwrap_or_else(|| temp.buckets.last().map(|b| b.1).unwrap_or(0.0));
            if temp.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                temp.buckets.push((f64::INFINITY, count));
            }
            if temp.buckets.last().is_some_and(|b| b.1 != count) {
                continue;
            }
            let mut prev = 0.0;
            let mut positive = Vec::new();
            for (i, b) in temp.buckets.iter().enumerate() {
                let c = b.1 - prev;
                prev = b.1;
                if c != 0.0 {
                    positive.push(promfed::model::histogram::Bucket {
                        index: i as i32,
                        count: c,
                    });
                }
            }
            let bounds: Vec<f64> = temp.buckets[..temp.buckets.len() - 1]
                .iter()
                .map(|b| b.0)
                .collect();
            pts.push((
                t,
                FloatHistogram {
                    schema: promfed::model::histogram::CUSTOM_BUCKETS_SCHEMA,
                    count,
                    sum: temp.sum,
                    positive,
                    custom_values: Arc::from(bounds),
                    ..FloatHistogram::default()
                },
            ));
        }
        if !pts.is_empty() {
            out.push((labels, pts));
        }
    }
    out
}
