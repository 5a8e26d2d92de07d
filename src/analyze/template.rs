//! Reads an Argo Rollouts AnalysisTemplate (or ClusterAnalysisTemplate, or
//! AnalysisRun) from YAML and resolves `{{args.*}}` in its metrics as
//! Argo's `ResolveMetricArgs` does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// Why a template cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("no AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun with spec.metrics found")]
    NoMetrics,
    #[error("argument \"{0}\" was not supplied")]
    MissingArg(String),
    #[error(
        "argument {0:?} has valueFrom (a Secret or field reference): pass it with --arg {0}=VALUE"
    )]
    ValueFrom(String),
    #[error("metric {metric:?}: failed to resolve {{{{{tag}}}}}")]
    Unresolved { metric: String, tag: String },
    #[error("metric {metric:?}: {message}")]
    Invalid { metric: String, message: String },
    #[error("--arg {0:?}: want NAME=VALUE")]
    BadArg(String),
}

/// Kubernetes' IntOrString, read as `intstr.IntValue()` does (a string
/// that is not an integer is 0).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl IntOrString {
    pub fn value(&self) -> i64 {
        match self {
            IntOrString::Int(i) => *i,
            IntOrString::Str(s) => s.trim().parse().unwrap_or(0),
        }
    }
}

/// One `spec.args` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<Value>,
}

/// A metric's `provider.prometheus`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub query: String,
    /// Seconds (Argo's default: 30).
    #[serde(default)]
    pub timeout: Option<i64>,
    #[serde(default)]
    pub headers: Vec<Header>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub range_query: Option<Value>,
}

/// A `headers` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub key: String,
    pub value: String,
}

/// A metric's `provider`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Provider {
    #[serde(default)]
    pub prometheus: Option<PrometheusMetric>,
    /// Any other provider (web, datadog, ...), which `analyze` cannot run.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One `spec.metrics` entry, its arguments resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub name: String,
    #[serde(default)]
    pub interval: String,
    #[serde(default)]
    pub initial_delay: String,
    #[serde(default)]
    pub count: Option<IntOrString>,
    #[serde(default)]
    pub success_condition: String,
    #[serde(default)]
    pub failure_condition: String,
    #[serde(default)]
    pub failure_limit: Option<IntOrString>,
    #[serde(default)]
    pub inconclusive_limit: Option<IntOrString>,
    #[serde(default)]
    pub consecutive_error_limit: Option<IntOrString>,
    #[serde(default)]
    pub consecutive_success_limit: Option<IntOrString>,
    #[serde(default)]
    pub provider: Provider,
}

/// Argo's default `consecutiveErrorLimit`.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i64 = 4;

impl Metric {
    /// `EffectiveCount`: `count`, else 1 without an interval, else none
    /// (the metric runs until the run ends).
    pub fn effective_count(&self) -> Option<i64> {
        match self.count.as_ref().map(IntOrString::value) {
            Some(n) if n != 0 => Some(n),
            _ if self.interval.is_empty() => Some(1),
            _ => None,
        }
    }

    pub fn failure_limit(&self) -> i64 {
        self.failure_limit.as_ref().map_or(0, IntOrString::value)
    }

    pub fn inconclusive_limit(&self) -> i64 {
        self.inconclusive_limit
            .as_ref()
            .map_or(0, IntOrString::value)
    }

    pub fn consecutive_error_limit(&self) -> i64 {
        self.consecutive_error_limit
            .as_ref()
            .map_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT, IntOrString::value)
    }

    pub fn consecutive_success_limit(&self) -> i64 {
        self.consecutive_success_limit
            .as_ref()
            .map_or(0, IntOrString::value)
    }

    /// The interval between measurements (`None` without one).
    pub fn interval(&self) -> Result<Option<Duration>, TemplateError> {
        self.duration_field("interval", &self.interval)
    }

    /// The delay before the first measurement.
    pub fn initial_delay(&self) -> Result<Duration, TemplateError> {
        Ok(self
            .duration_field("initialDelay", &self.initial_delay)?
            .unwrap_or_default())
    }

    fn duration_field(&self, field: &str, s: &str) -> Result<Option<Duration>, TemplateError> {
        if s.is_empty() {
            return Ok(None);
        }
        parse_go_duration(s)
            .map(Some)
            .map_err(|message| TemplateError::Invalid {
                metric: self.name.clone(),
                message: format!("{field}: {message}"),
            })
    }
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    args: Vec<Argument>,
    #[serde(default)]
    metrics: Vec<Value>,
}

/// What a YAML file (one or more documents) holds: the template's metrics
/// (still unresolved) and its arguments with their defaults.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub metrics: Vec<Value>,
    pub args: Vec<Argument>,
}

impl Template {
    pub fn load(path: &std::path::Path) -> Result<Template, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Template::parse(&text)
    }

    /// The template in `text`; an AnalysisRun's args in the same file
    /// override the template's defaults.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut template = Template::default();
        let mut run_args = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value = Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            let doc: Document = serde_yaml_ng::from_value(value)?;
            let Some(spec) = doc.spec else { continue };
            let is_run = doc.kind.as_deref() == Some("AnalysisRun");
            if template.metrics.is_empty() && !spec.metrics.is_empty() {
                template.metrics = spec.metrics;
                if !is_run {
                    template.args = spec.args;
                    continue;
                }
            }
            if is_run {
                run_args.extend(spec.args);
            }
        }
        if template.metrics.is_empty() {
            return Err(TemplateError::NoMetrics);
        }
        template.args = merge_args(template.args, run_args);
        Ok(template)
    }

    /// The metrics with `{{args.NAME}}` replaced, `overrides` (from the
    /// command line) taking precedence over the file's values.
    pub fn resolve(&self, overrides: &[(String, String)]) -> Result<Vec<Metric>, TemplateError> {
        let given: Vec<Argument> = overrides
            .iter()
            .map(|(k, v)| Argument {
                name: k.clone(),
                value: Some(v.clone()),
                value_from: None,
            })
            .collect();
        let args = merge_args(self.args.clone(), given);
        let mut values = BTreeMap::new();
        for a in &args {
            match (&a.value, &a.value_from) {
                (Some(v), _) => {
                    values.insert(format!("args.{}", a.name), v.clone());
                }
                (None, Some(_)) => return Err(TemplateError::ValueFrom(a.name.clone())),
                (None, None) => return Err(TemplateError::MissingArg(a.name.clone())),
            }
        }
        self.metrics
            .iter()
            .map(|m| {
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let resolved = substitute(m, &values).map_err(|UnknownTag(tag)| {
                    TemplateError::Unresolved {
                        metric: name.clone(),
                        tag,
                    }
                })?;
                let metric: Metric = serde_yaml_ng::from_value(resolved)?;
                Ok(metric)
            })
            .collect()
    }
}

/// `base` with each argument of `over` replacing the one of the same name.
fn merge_args(mut base: Vec<Argument>, over: Vec<Argument>) -> Vec<Argument> {
    for a in over {
        match base.iter_mut().find(|b| b.name == a.name) {
            Some(b) => *b = a,
            None => base.push(a),
        }
    }
    base
}

/// A `{{ tag }}` that no argument fills (or an unclosed one: the text after
/// its `{{`).
#[derive(Debug, thiserror::Error)]
#[error("failed to resolve {{{{{0}}}}}")]
struct UnknownTag(String);

/// Why Go's `time.ParseDuration` refuses a duration (Go's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("negative duration {0:?}")]
    Negative(String),
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
}

/// Replaces every `{{ tag }}` in every string of `v` (fasttemplate with
/// Argo's `resolve`: the tag is trimmed; an unknown tag is an error).
fn substitute(v: &Value, values: &BTreeMap<String, String>) -> Result<Value, UnknownTag> {
    Ok(match v {
        Value::String(s) => Value::String(substitute_str(s, values)?),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|i| substitute(i, values))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            let mut out = serde_yaml_ng::Mapping::new();
            for (k, v) in m {
                out.insert(k.clone(), substitute(v, values)?);
            }
            Value::Mapping(out)
        }
        other => other.clone(),
    })
}

fn substitute_str(s: &str, values: &BTreeMap<String, String>) -> Result<String, UnknownTag> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            // fasttemplate: an unclosed tag is an error of the template.
            return Err(UnknownTag(after.to_string()));
        };
        let tag = &after[..close];
        match values.get(tag.trim()) {
            Some(v) => out.push_str(v),
            None => return Err(UnknownTag(tag.to_string())),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Go's `time.ParseDuration` (`20s`, `1m30s`, `1.5h`, `500ms`).
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Invalid(s.to_string());
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err(DurationError::Negative(s.to_string()));
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::MissingUnit(s.to_string()))?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => {
                return Err(DurationError::UnknownUnit {
                    unit: u.to_string(),
                    input: s.to_string(),
                })
            }
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses `NAME=VALUE` from the command line.
pub fn parse_arg(s: &str) -> Result<(String, String), TemplateError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(TemplateError::BadArg(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  args:
    - name: service
    - name: threshold
      value: "0.90"
  metrics:
    - name: success-rate
      interval: 20s
      count: "{{args.count}}"
      successCondition: result[0] > {{ args.threshold }}
      failureLimit: 3
      provider:
        prometheus:
          address: http://promfed:9090
          query: sum(rate(x{svc="{{args.service}}"}[1m]))
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
spec:
  args:
    - name: count
      value: "5"
"#;

    #[test]
    fn args_resolve_from_defaults_runs_and_the_command_line() {
        let t = Template::parse(TEMPLATE).expect("parses");
        let ms = t
            .resolve(&[("service".into(), "canary".into())])
            .expect("resolves");
        assert_eq!(ms.len(), 1);
        let m = &ms[0];
        assert_eq!(m.success_condition, "result[0] > 0.90");
        let p = m.provider.prometheus.as_ref().expect("prometheus");
        assert_eq!(p.query, r#"sum(rate(x{svc="canary"}[1m]))"#);
        assert_eq!(m.effective_count(), Some(5));
        assert_eq!(m.failure_limit(), 3);
        assert_eq!(m.consecutive_error_limit(), 4);
        assert_eq!(m.interval().expect("ok"), Some(Duration::from_secs(20)));
        // The command line overrides a default.
        let ms = t
            .resolve(&[
                ("service".into(), "c".into()),
                ("threshold".into(), "0.5".into()),
            ])
            .expect("resolves");
        assert_eq!(ms[0].success_condition, "result[0] > 0.5");
        // A required argument left out.
        assert!(matches!(
            t.resolve(&[]),
            Err(TemplateError::MissingArg(a)) if a == "service"
        ));
    }

    #[test]
    fn unknown_tags_and_go_durations() {
        let t = Template::parse(
            "kind: AnalysisTemplate\nspec:\n  metrics:\n  - name: m\n    successCondition: '{{args.nope}}'\n",
        )
        .expect("parses");
        assert!(matches!(
            t.resolve(&[]),
            Err(TemplateError::Unresolved { .. })
        ));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5d").is_err());
        assert!(Template::parse("kind: Rollout\n").is_err());
    }
}
