//! Annotations (warnings and infos) worded as Prometheus words them.

mod histogram;

pub(crate) use histogram::HistOp;

/// Warnings and infos collected while evaluating one query, without duplicates.
#[derive(Debug, Default, Clone)]
pub(crate) struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    pub fn info(&mut self, msg: String) {
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }

    /// True when nothing was noted.
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }

    /// Adds every annotation of `other` (without duplicates).
    pub fn absorb(&mut self, other: Annotations) {
        for w in other.warnings {
            self.warn(w);
        }
        for i in other.infos {
            self.info(i);
        }
    }

    /// `rate`/`increase` over a metric whose name says it is no counter.
    pub fn possible_non_counter(&mut self, metric: &str) {
        self.info(format!(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
        ));
    }

    /// A quantile parameter outside [0, 1].
    pub fn invalid_quantile(&mut self, q: f64) {
        self.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            go_float(q)
        ));
    }

    /// A `limit_ratio` parameter outside [-1, 1].
    pub fn invalid_ratio(&mut self, r: f64, capped: f64) {
        self.warn(format!(
            "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
            go_float(r),
            go_float(capped)
        ));
    }

    /// A classic histogram bucket without a parsable `le`.
    pub fn bad_bucket_label(&mut self, metric: &str, le: &str) {
        self.warn(format!(
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {metric:?}"
        ));
    }

    /// Classic buckets that had to be made monotonic.
    pub fn histogram_monotonicity(&mut self, metric: &str) {
        self.info(format!(
            "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?}"
        ));
    }
}

/// Formats a float as Go's `%g` does for the values annotations print.
pub(crate) fn go_float(v: f64) -> String {
    crate::model::histogram::go_g(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_go_g() {
        assert_eq!(go_float(1.1), "1.1");
        assert_eq!(go_float(-1.0), "-1");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-5), "1.5e-05");
    }
}
