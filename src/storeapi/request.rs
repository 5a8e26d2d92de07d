//! Turns StoreAPI requests into promfed's selects and metadata queries:
//! matchers, time range, hints, partial-response strategy and the replica
//! labels that switch deduplication on.

use std::time::Duration;

use promql_parser::label::{MatchOp, Matcher};

use crate::source::thanos_store::storepb::{
    LabelMatcher, LabelNamesRequest, LabelValuesRequest, MatcherType, PartialResponseStrategy,
    SeriesRequest,
};
use crate::source::{MetaQuery, ReadOptions, Select, SelectHints};

/// Why a request cannot be served as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("matcher {index}: unknown matcher type {kind}")]
    MatcherType { index: usize, kind: i32 },
    #[error("matcher {index} on label {name:?}: {problem}")]
    Matcher {
        index: usize,
        name: String,
        problem: String,
    },
    #[error("no matchers specified")]
    NoMatchers,
    #[error("max_time {max} is before min_time {min}")]
    TimeRange { min: i64, max: i64 },
    #[error("unknown partial_response_strategy {0}")]
    Strategy(i32),
    #[error("label name is empty")]
    EmptyLabel,
}

/// The request's matchers as PromQL matchers (regular expressions
/// anchored, as the StoreAPI means them).
pub fn matchers_of(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, RequestError> {
    ms.iter()
        .enumerate()
        .map(|(index, m)| {
            let kind = MatcherType::try_from(m.r#type).map_err(|_| RequestError::MatcherType {
                index,
                kind: m.r#type,
            })?;
            let bad = |problem: String| RequestError::Matcher {
                index,
                name: m.name.clone(),
                problem,
            };
            Ok(match kind {
                MatcherType::Eq => Matcher::new(MatchOp::Equal, &m.name, &m.value),
                MatcherType::Neq => Matcher::new(MatchOp::NotEqual, &m.name, &m.value),
                MatcherType::Re | MatcherType::Nre => {
                    let token = if kind == MatcherType::Re {
                        promql_parser::parser::token::T_EQL_REGEX
                    } else {
                        promql_parser::parser::token::T_NEQ_REGEX
                    };
                    Matcher::new_matcher(token, m.name.clone(), m.value.clone()).map_err(bad)?
                }
            })
        })
        .collect()
}

/// The read options of a request: its partial-response strategy, and
/// deduplication over `without_replica_labels` when it lists any. Thanos
/// Query lists its replica labels only when it deduplicates; without them
/// it asks for every replica, labels kept.
pub fn read_options(
    strategy: i32,
    without_replica_labels: &[String],
) -> Result<ReadOptions, RequestError> {
    let partial = match PartialResponseStrategy::try_from(strategy) {
        Ok(PartialResponseStrategy::Warn) => true,
        Ok(PartialResponseStrategy::Abort) => false,
        Err(_) => return Err(RequestError::Strategy(strategy)),
    };
    let replicas: Vec<String> = without_replica_labels
        .iter()
        .filter(|l| !l.is_empty())
        .cloned()
        .collect();
    Ok(ReadOptions {
        partial_response: Some(partial),
        dedup: Some(!replicas.is_empty()),
        replica_labels: (!replicas.is_empty()).then_some(replicas),
    })
}

fn time_range(min: i64, max: i64) -> Result<(), RequestError> {
    if max < min {
        return Err(RequestError::TimeRange { min, max });
    }
    Ok(())
}

/// The select of a `Series` request.
pub fn select_of(r: &SeriesRequest) -> Result<Select, RequestError> {
    let matchers = matchers_of(&r.matchers)?;
    if matchers.is_empty() {
        return Err(RequestError::NoMatchers);
    }
    time_range(r.min_time, r.max_time)?;
    let hints = r.query_hints.as_ref();
    let step_ms = hints.map_or(0, |h| h.step_millis).max(r.step).max(0);
    let range_ms = hints
        .and_then(|h| h.range.as_ref())
        .map_or(0, |x| x.millis)
        .max(r.range)
        .max(0);
    let func = hints
        .and_then(|h| h.func.as_ref())
        .map(|f| f.name.clone())
        .filter(|f| !f.is_empty());
    Ok(Select {
        matchers,
        start_ms: r.min_time,
        end_ms: r.max_time,
        hints: SelectHints {
            start_ms: r.min_time,
            end_ms: r.max_time,
            step_ms,
            func,
            range_ms,
        },
        read: read_options(r.partial_response_strategy, &r.without_replica_labels)?,
    })
}

/// A request's `limit` as a count (0: none).
fn limit(l: i64) -> usize {
    usize::try_from(l.max(0)).unwrap_or(usize::MAX)
}

/// The metadata query of a `Series` request with `skip_chunks`.
pub fn series_meta_of(r: &SeriesRequest) -> Result<MetaQuery, RequestError> {
    let sel = select_of(r)?;
    Ok(MetaQuery {
        matchers: vec![sel.matchers],
        start_ms: sel.start_ms,
        end_ms: sel.end_ms,
        read: sel.read,
        limit: limit(r.limit),
    })
}

fn meta_of(
    matchers: &[LabelMatcher],
    start: i64,
    end: i64,
    strategy: i32,
    without_replica_labels: &[String],
    max: i64,
) -> Result<MetaQuery, RequestError> {
    let matchers = matchers_of(matchers)?;
    time_range(start, end)?;
    Ok(MetaQuery {
        matchers: if matchers.is_empty() {
            Vec::new()
        } else {
            vec![matchers]
        },
        start_ms: start,
        end_ms: end,
        read: read_options(strategy, without_replica_labels)?,
        limit: limit(max),
    })
}

/// The metadata query of a `LabelNames` request (no matchers: every series).
pub fn label_names_of(r: &LabelNamesRequest) -> Result<MetaQuery, RequestError> {
    meta_of(
        &r.matchers,
        r.start,
        r.end,
        r.partial_response_strategy,
        &r.without_replica_labels,
        r.limit,
    )
}

/// The label name and metadata query of a `LabelValues` request.
pub fn label_values_of(r: &LabelValuesRequest) -> Result<(String, MetaQuery), RequestError> {
    if r.label.is_empty() {
        return Err(RequestError::EmptyLabel);
    }
    let q = meta_of(
        &r.matchers,
        r.start,
        r.end,
        r.partial_response_strategy,
        &r.without_replica_labels,
        r.limit,
    )?;
    Ok((r.label.clone(), q))
}

/// The `grpc-timeout` header: up to 8 digits and a unit (`H`, `M`, `S`,
/// `m`, `u`, `n`); `None` when absent or malformed.
pub fn grpc_timeout(v: &str) -> Option<Duration> {
    // The header is ASCII ("1-8 digits, then a unit"): anything else,
    // including a multi-byte last character, is no timeout.
    if !v.is_ascii() || v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::thanos_store::storepb::{Func, QueryHints};

    fn m(kind: MatcherType, name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: kind.into(),
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn matchers_hints_and_dedup_come_from_the_request() {
        let r = SeriesRequest {
            min_time: 1000,
            max_time: 5000,
            matchers: vec![
                m(MatcherType::Eq, "__name__", "up"),
                m(MatcherType::Re, "job", "api|web"),
                m(MatcherType::Nre, "code", "5.."),
                m(MatcherType::Neq, "pod", ""),
            ],
            partial_response_strategy: PartialResponseStrategy::Abort.into(),
            query_hints: Some(QueryHints {
                step_millis: 30_000,
                func: Some(Func {
                    name: "rate".into(),
                }),
                range: None,
            }),
            range: 300_000,
            without_replica_labels: vec!["replica".into()],
            ..Default::default()
        };
        let s = select_of(&r).expect("valid");
        assert_eq!((s.start_ms, s.end_ms), (1000, 5000));
        assert_eq!(s.matchers.len(), 4);
        // Anchored: "api|web" does not match "xapi".
        assert!(s.matchers[1].is_match("web") && !s.matchers[1].is_match("xapi"));
        assert!(!s.matchers[2].is_match("503") && s.matchers[2].is_match("200"));
        assert_eq!(s.hints.step_ms, 30_000);
        assert_eq!(s.hints.range_ms, 300_000);
        assert_eq!(s.hints.func.as_deref(), Some("rate"));
        assert_eq!(s.read.partial_response, Some(false));
        assert_eq!(s.read.dedup, Some(true));
        assert_eq!(s.read.replica_labels, Some(vec!["replica".to_string()]));
        // Without replica labels: every replica, raw; WARN is the default.
        let raw = select_of(&SeriesRequest {
            without_replica_labels: vec![],
            partial_response_strategy: 0,
            ..r.clone()
        })
        .expect("valid");
        assert_eq!(raw.read.dedup, Some(false));
        assert_eq!(raw.read.partial_response, Some(true));
    }

    #[test]
    fn bad_requests_are_named() {
        let base = SeriesRequest {
            matchers: vec![m(MatcherType::Eq, "__name__", "up")],
            max_time: 10,
            ..Default::default()
        };
        let bad = |r: SeriesRequest| select_of(&r).expect_err("refused").to_string();
        assert_eq!(
            bad(SeriesRequest {
                matchers: vec![],
                ..base.clone()
            }),
            "no matchers specified"
        );
        assert_eq!(
            bad(SeriesRequest {
                min_time: 11,
                ..base.clone()
            }),
            "max_time 10 is before min_time 11"
        );
        assert!(bad(SeriesRequest {
            matchers: vec![m(MatcherType::Re, "job", "(")],
            ..base.clone()
        })
        .contains("matcher 0 on label \"job\""));
        let mut odd = base.clone();
        odd.matchers[0].r#type = 9;
        assert_eq!(bad(odd), "matcher 0: unknown matcher type 9");
        assert_eq!(
            bad(SeriesRequest {
                partial_response_strategy: 7,
                ..base
            }),
            "unknown partial_response_strategy 7"
        );
    }

    #[test]
    fn grpc_timeouts_parse_as_grpc_defines_them() {
        assert_eq!(grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(grpc_timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["", "S", "5", "5s", "-5S", "123456789S", "5 S", "~µ", "5µ"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
