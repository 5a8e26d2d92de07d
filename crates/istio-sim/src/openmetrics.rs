//! Writes simulated series as OpenMetrics text that
//! `promtool tsdb create-blocks-from openmetrics` reads.
//!
//! One `# TYPE` group per family (counters as `# TYPE name counter` with
//! samples named `name_total`), all samples of a series in time order, every
//! sample with a timestamp in seconds with millisecond precision, `# EOF` at
//! the end.

use std::io::{self, Write};

use super::{ClusterData, Family, Kind};
use promfed::model::Labels;

/// Writes the families of every part; a part's `Some(cluster)` adds the
/// `cluster` label to each of its series.
pub(super) fn write(
    families: &[Family],
    parts: &[(&ClusterData, Option<&str>)],
    w: &mut dyn Write,
) -> io::Result<()> {
    for (fi, fam) in families.iter().enumerate() {
        let any = parts
            .iter()
            .any(|(c, _)| c.series.iter().any(|s| s.family == fi));
        if !any {
            continue;
        }
        let kind = match fam.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        writeln!(w, "# TYPE {} {kind}", fam.name)?;
        writeln!(w, "# HELP {} {}", fam.name, fam.help)?;
        for (data, cluster) in parts {
            for s in data.series.iter().filter(|s| s.family == fi) {
                let mut labels = s.labels.clone();
                if let Some(c) = cluster {
                    labels.set("cluster", c);
                }
                let prefix = format!("{}{} ", s.name, format_labels(&labels));
                for sample in &s.samples {
                    writeln!(
                        w,
                        "{prefix}{} {}.{:03}",
                        format_value(sample.v),
                        sample.t.div_euclid(1000),
                        sample.t.rem_euclid(1000)
                    )?;
                }
            }
        }
    }
    w.write_all(b"# EOF\n")
}

/// `{a="1",b="2"}` with OpenMetrics escaping; empty for no labels.
pub(super) fn format_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&l.name);
        out.push_str("=\"");
        for ch in l.value.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Shortest text that parses back to `v` (integers without a fraction).
pub(super) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}
