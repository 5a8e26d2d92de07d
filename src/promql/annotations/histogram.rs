//! The annotations Prometheus 3.8 gives about native histograms, worded as it words them.

use super::Annotations;

/// Which histogram operation an annotation is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HistOp {
    Add,
    Sub,
    Agg,
}

impl HistOp {
    fn word(self) -> &'static str {
        match self {
            HistOp::Add => "addition",
            HistOp::Sub => "subtraction",
            HistOp::Agg => "aggregation",
        }
    }
}

/// ` for metric name "x"` when the name is known.
fn for_metric(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" for metric name {name:?}")
    }
}

impl Annotations {
    /// A binary operator between a float and a histogram (or two
    /// histograms) that it cannot combine: the pair gives no result.
    pub fn incompatible_types_in_binop(&mut self, lhs: &str, op: &str, rhs: &str) {
        self.info(format!(
            "PromQL info: incompatible sample types encountered for binary operator {op:?}: {lhs} {op} {rhs}"
        ));
    }

    /// One side of an addition or subtraction said CounterReset, the other NotCounterReset.
    pub fn counter_reset_collision(&mut self, op: HistOp) {
        self.warn(format!(
            "PromQL warning: conflicting counter resets during histogram {}",
            op.word()
        ));
    }

    /// Custom bucket bounds differed and were intersected.
    pub fn mismatched_custom_buckets(&mut self, op: HistOp) {
        self.info(format!(
            "PromQL info: mismatched custom buckets were reconciled during {}",
            op.word()
        ));
    }

    /// A range or group held floats and histograms where one kind is needed.
    pub fn mixed_floats_histograms(&mut self, metric: &str) {
        self.warn(format!(
            "PromQL warning: encountered a mix of histograms and floats for metric name {metric:?}"
        ));
    }

    /// Exponential and custom-bucket histograms cannot be combined.
    pub fn mixed_exponential_custom(&mut self, metric: &str) {
        self.warn(format!(
            "PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {metric:?}"
        ));
    }

    /// A `*_over_time` over a range with both kinds used the floats only.
    pub fn histogram_ignored_in_mixed_range(&mut self, metric: &str) {
        self.info(format!(
            "PromQL info: ignored histograms in a range containing both floats and histograms for metric name {metric:?}"
        ));
    }

    /// histogram_quantile over a histogram with NaN observations.
    pub fn quantile_nan_result(&mut self, metric: &str) {
        self.info(format!(
            "PromQL info: input to histogram_quantile has NaN observations, result is NaN{}",
            for_metric(metric)
        ));
    }

    /// histogram_quantile over a histogram with some NaN observations.
    pub fn quantile_nan_skew(&mut self, metric: &str) {
        self.info(format!(
            "PromQL info: input to histogram_quantile has NaN observations, result is skewed higher{}",
            for_metric(metric)
        ));
    }

    /// histogram_fraction over a histogram with NaN observations.
    pub fn fraction_nans(&mut self, metric: &str) {
        self.info(format!(
            "PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions{}",
            for_metric(metric)
        ));
    }

    /// A vector mixing classic and native histograms of one name.
    pub fn mixed_classic_native(&mut self, metric: &str) {
        self.warn(format!(
            "PromQL warning: vector contains a mix of classic and native histograms{}",
            for_metric(metric)
        ));
    }
}

impl Annotations {
    /// Histograms with exponential and custom buckets met in a binary operator.
    pub fn incompatible_bucket_layout_in_binop(&mut self, op: &str) {
        self.warn(format!(
            "PromQL warning: incompatible bucket layout encountered for binary operator {op}"
        ));
    }
}

impl Annotations {
    /// A counter function over a gauge histogram.
    pub fn native_histogram_not_counter(&mut self, metric: &str) {
        self.warn(format!(
            "PromQL warning: this native histogram metric is not a counter: {metric:?}"
        ));
    }

    /// A gauge function over a counter histogram.
    pub fn native_histogram_not_gauge(&mut self, metric: &str) {
        self.warn(format!(
            "PromQL warning: this native histogram metric is not a gauge: {metric:?}"
        ));
    }
}
