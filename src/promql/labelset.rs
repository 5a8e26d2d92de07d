//! Label-set helpers for the evaluator: name dropping, match signatures and grouping keys.

use crate::model::{Label, Labels, METRIC_NAME};

/// Labels that go with the metric name when it is dropped.
pub(crate) const TYPE_LABEL: &str = "__type__";
pub(crate) const UNIT_LABEL: &str = "__unit__";

/// True for the metric name and the metadata labels dropped along with it.
pub(crate) fn is_name_like(name: &str) -> bool {
    name == METRIC_NAME || name == TYPE_LABEL || name == UNIT_LABEL
}

/// A copy of `labels` without the metric name and its metadata labels.
pub(crate) fn drop_name(labels: &Labels) -> Labels {
    if !labels.iter().any(|l| is_name_like(&l.name)) {
        return labels.clone();
    }
    Labels::from_sorted(
        labels
            .iter()
            .filter(|l| !is_name_like(&l.name))
            .cloned()
            .collect(),
    )
}

/// How series are matched or grouped: by the listed labels (`on`/`by`) or
/// by all labels except the listed ones and the metric name
/// (`ignoring`/`without`).
#[derive(Debug, Clone)]
pub(crate) struct Grouping {
    pub include: bool,
    /// Sorted, unique label names.
    pub names: Vec<String>,
}

impl Grouping {
    pub fn new(include: bool, names: &[String]) -> Self {
        let mut names: Vec<String> = names.to_vec();
        names.sort();
        names.dedup();
        Grouping { include, names }
    }

    /// Everything but the metric name (the default of binary matching).
    pub fn all() -> Self {
        Grouping {
            include: false,
            names: Vec::new(),
        }
    }

    fn keeps(&self, name: &str) -> bool {
        if self.include {
            self.names
                .binary_search_by(|n| n.as_str().cmp(name))
                .is_ok()
        } else {
            name != METRIC_NAME
                && self
                    .names
                    .binary_search_by(|n| n.as_str().cmp(name))
                    .is_err()
        }
    }

    /// The labels this grouping keeps.
    pub fn project(&self, labels: &Labels) -> Labels {
        Labels::from_sorted(
            labels
                .iter()
                .filter(|l| self.keeps(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// A key equal for two label sets exactly when their projections are equal.
    pub fn key(&self, labels: &Labels) -> String {
        let mut k = String::new();
        for l in labels.iter().filter(|l| self.keeps(&l.name)) {
            push_label(&mut k, l);
        }
        k
    }
}

/// A key for a whole label set.
pub(crate) fn full_key(labels: &Labels) -> String {
    let mut k = String::new();
    for l in labels.iter() {
        push_label(&mut k, l);
    }
    k
}

fn push_label(k: &mut String, l: &Label) {
    k.push_str(&l.name);
    k.push('\u{ff}');
    k.push_str(&l.value);
    k.push('\u{fe}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_without_drops_name() {
        let l = Labels::from_pairs([("__name__", "x"), ("a", "1"), ("b", "2")]);
        let g = Grouping::new(false, &["b".to_string()]);
        assert_eq!(g.project(&l), Labels::from_pairs([("a", "1")]));
        let g = Grouping::new(true, &["__name__".to_string(), "b".to_string()]);
        assert_eq!(
            g.project(&l),
            Labels::from_pairs([("__name__", "x"), ("b", "2")])
        );
        assert_ne!(g.key(&l), Grouping::all().key(&l));
    }

    #[test]
    fn drop_name_drops_metadata() {
        let l = Labels::from_pairs([("__name__", "x"), ("__type__", "counter"), ("a", "1")]);
        assert_eq!(drop_name(&l), Labels::from_pairs([("a", "1")]));
    }
}
